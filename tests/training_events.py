"""Read back what a training integration sent: metric points by split and step, run events, logs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aitrace
from aitrace.infra.stack import TansuProcess
from test_producer_support import all_ids, consume


@dataclass
class Sent:
    """``points[(split, step)] = {name: value}`` (split None for training), their epochs, runs and logs in order."""

    points: dict[tuple[str | None, int], dict[str, float]] = field(default_factory=dict)
    epochs: dict[tuple[str | None, int], int] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)

    def series(self, name: str, split: str | None = None) -> dict[int, float]:
        """One metric of one split as ``{step: value}``."""
        return {step: v[name] for (s, step), v in sorted(self.points.items(), key=_order) if s == split and name in v}

    def statuses(self) -> list[str]:
        return [r["status"] for r in self.runs]


def _order(item: tuple[tuple[str | None, int], Any]) -> tuple[str, int]:
    (split, step), _ = item
    return split or "", step


def read_back(client: aitrace.Client) -> Sent:
    """Everything ``client`` sent, read from its topics once all of it arrived."""
    assert client.flush(timeout=30)
    stats = client.stats()
    assert stats["dropped"] == 0, stats
    records = consume(
        client.settings.kafka.kafka_bootstrap,
        client.settings.kafka.topic_prefix,
        lambda r: len(all_ids(r)) >= stats["sent"],
        30.0,
    )
    sent = Sent()
    events = []
    for _, batch in records:
        for block in batch["metric_blocks"]:
            epochs = block["epochs"] or [-1] * len(block["steps"])
            for series in block["series"]:
                for step, epoch, value in zip(block["steps"], epochs, series["values"], strict=True):
                    sent.points.setdefault((block["split"], step), {})[series["name"]] = value
                    sent.epochs[(block["split"], step)] = epoch
        events += batch["events"]
    events.sort(key=lambda e: e["time"])
    sent.runs = [e["payload"][1] for e in events if e["payload"][0] == "aitrace.RunLifecycle"]
    sent.logs = [e["payload"][1] for e in events if e["payload"][0] == "aitrace.LogRecord"]
    return sent


def open_client(kafka: TansuProcess, tmp_path: Path, unique_name: Callable[[str], str]) -> aitrace.Client:
    """A client of its own run and topics on the session's broker."""
    return aitrace.init(
        service="trainer",
        run_id=unique_name("run"),
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=unique_name("p"),
        spool_dir=str(tmp_path / "spool"),
    )
