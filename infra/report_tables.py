"""The tables of ``aitrace report``: alerts, incomplete traces, and the config keys that differ between runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aitrace.infra.report_data import Table
from aitrace.infra.report_fetch import Doc, _ms
from aitrace.infra.runs import config_differences, run_infos
from aitrace.sinks.hit_rows import get


def _fmt_time(iso: str | None) -> str:
    ms = _ms(iso)
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms is not None else ""


def _fmt_num(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def alert_table(alerts: Sequence[Doc]) -> Table:
    rows = []
    for doc in sorted(alerts, key=lambda d: get(d, "@timestamp") or ""):
        a = get(doc, "aitrace.alert", {})
        where = ", ".join(
            f"{label} {value}"
            for label, value in (
                ("run", get(doc, "aitrace.run_id")),
                ("model", a.get("model")),
                ("feature", a.get("feature")),
                ("service", get(doc, "service.name")),
            )
            if value
        )
        measure = a.get("statistic") if a.get("statistic") is not None else a.get("score")
        rows.append(
            [
                _fmt_time(get(doc, "@timestamp")),
                str(a.get("severity", "")),
                str(a.get("kind", "")),
                str(a.get("detector", "")),
                str(a.get("title", "")),
                where,
                _fmt_num(a.get("step")),
                _fmt_num(measure),
                f"{a.get('state', '')} v{a.get('version', 1)}",
            ]
        )
    columns = ["first seen (UTC)", "severity", "kind", "detector", "title", "where", "step", "statistic", "state"]
    return Table("alerts", "Alerts", columns, rows, "No alerts in this scope.")


def trace_table(traces: Sequence[Doc]) -> Table:
    rows = []
    for doc in traces:
        t = get(doc, "aitrace.trace", {})
        rows.append(
            [
                _fmt_time(get(doc, "@timestamp")),
                str(get(doc, "trace.id", "")),
                str(t.get("root_name") or ""),
                ", ".join(t.get("services") or []),
                _fmt_num(t.get("span_count")),
                _fmt_num((t.get("duration_us") or 0) / 1000),
                str(t.get("first_error") or ""),
            ]
        )
    columns = ["start (UTC)", "trace id", "root", "services", "spans", "duration ms", "first error"]
    return Table("incomplete-traces", "Incomplete traces", columns, rows, "Every trace in this scope completed.")


def config_table(runs: Sequence[str], lifecycle: Sequence[Doc]) -> Table:
    """The config keys whose values differ between ``runs``, one column per run (``-``: the run lacks the key)."""
    infos = run_infos(runs, lifecycle)
    rows = [
        [key, *(v if v is not None else "-" for v in values)]
        for key, values in config_differences(list(infos.values()))
    ]
    unsent = [run for run, info in infos.items() if not info.config]
    empty = "The runs' configs are the same." if not unsent else f"No config was sent by {', '.join(unsent)}."
    return Table("config", "Config differences", ["config key", *runs], rows, empty)
