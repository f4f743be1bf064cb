"""Training runs side by side: what their lifecycle events say (status, config) and how their configs differ.

Shared by ``aitrace report`` (the config table of a page over several runs) and ``aitrace compare``.
The documents are the run events :mod:`aitrace.sinks.documents` indexes (``aitrace.kind: run``):
``aitrace.run.status`` in lower case, ``aitrace.run.config`` with each hyper-parameter as the
JSON text the producer wrote (nested configs flattened to dotted keys), ``seed`` and
``code_version`` beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Doc = dict[str, Any]


@dataclass
class RunInfo:
    """One run as its lifecycle events describe it: the last status and the last start's config."""

    run: str
    status: str = "unknown"  # no lifecycle event read for the run
    config: dict[str, str] = field(default_factory=dict)  # key -> JSON text, as indexed


def run_infos(runs: Sequence[str], docs: Iterable[Doc]) -> dict[str, RunInfo]:
    """``runs`` -> their :class:`RunInfo`, from run lifecycle documents in time order."""
    infos = {run: RunInfo(run) for run in runs}
    for doc in docs:
        run_id: Any = (doc.get("aitrace") or {}).get("run_id")
        info = infos.get(run_id)
        lifecycle = (doc.get("aitrace") or {}).get("run") or {}
        if info is None:
            continue
        info.status = lifecycle.get("status") or info.status
        if info.status == "started":  # a resumed run restarts with the config it now has
            info.config = _config(lifecycle)
    return infos


def _config(lifecycle: Doc) -> dict[str, str]:
    """The run's config plus its seed and code version, which the producer sends beside it."""
    config = {str(k): str(v) for k, v in (lifecycle.get("config") or {}).items()}
    for key in ("seed", "code_version"):
        if lifecycle.get(key) is not None and key not in config:
            config[key] = json.dumps(lifecycle[key])
    return config


def config_differences(infos: Sequence[RunInfo]) -> list[tuple[str, list[str | None]]]:
    """Every config key whose value is not the same in all runs: ``(key, [text per run])``.

    A key one run lacks differs; its text is None there. Keys sorted by name.
    """
    keys = sorted({k for info in infos for k in info.config})
    rows = [(key, [info.config.get(key) for info in infos]) for key in keys]
    return [(key, values) for key, values in rows if len(set(values)) > 1]


def config_value(text: str) -> Any:
    """The value a config text stands for (``"0.5"`` -> 0.5, ``"null"`` -> None); plain text stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text  # strings travel unquoted (the producer sends a str as it is)
