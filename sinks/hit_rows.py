"""Indexed documents as terminal rows: time, service, level or kind, text, trace id.

One row per event, trace or alert document (the fields :mod:`aitrace.sinks.documents`
writes), aligned and optionally coloured; ``aitrace search`` prints them, ``aitrace trace``
lists a trace's events and alerts with them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from aitrace.sinks.documents import ALERTS, EVENTS, TRACES
from aitrace.sinks.search import LOG_LEVELS, Source
from aitrace.sinks.terminal import DIM, RED, RESET, YELLOW


def get(source: Source, dotted: str, default: Any = None) -> Any:
    """``get(doc, "service.name")``; also reads flat keys with dots, as some writers send them."""
    if dotted in source:
        return source[dotted]
    node: Any = source
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def iso_to_micros(text: str | None) -> int | None:
    when = parse_iso(text)
    return None if when is None else int(when.timestamp() * 1_000_000)


def show_time(text: str | None) -> str:
    """``2026-11-26 15:30:12.123Z`` (milliseconds), or the raw text when it is not a date."""
    when = parse_iso(text)
    if when is None:
        return text or "-"
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def show_duration(micros: float | None) -> str:
    """``850µs``, ``12.3ms``, ``1.23s``, ``2m03s``."""
    if micros is None:
        return "-"
    if micros < 1_000:
        return f"{micros:.0f}µs"
    if micros < 1_000_000:
        return f"{micros / 1_000:.3g}ms"
    if micros < 60_000_000:
        return f"{micros / 1_000_000:.3g}s"
    minutes, seconds = divmod(micros / 1_000_000, 60)
    return f"{minutes:.0f}m{seconds:02.0f}s"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _event_text(doc: Source) -> str:
    """What an event says, for the kinds that carry no ``message``."""
    kind = get(doc, "aitrace.kind")
    if kind == "metric":
        m = get(doc, "aitrace.metric", {})
        value = m.get("value") if m.get("value") is not None else m.get("nonfinite")
        text = f"{m.get('name')}={_number(value)} step={m.get('step')}"
        return text + (f" (rollup of {m.get('count')})" if m.get("rollup") else "")
    if kind == "inference":
        i = get(doc, "aitrace.inference", {})
        parts = [f"{i.get('model') or '?'}", f"latency={_number(i.get('latency_ms'))}ms", f"status={i.get('status')}"]
        if i.get("prediction") is not None:
            parts.append(f"prediction={i['prediction']}")
        if i.get("confidence") is not None:
            parts.append(f"confidence={_number(i['confidence'])}")
        return " ".join(parts)
    if kind == "span":
        s = get(doc, "aitrace.span", {})
        duration_ns = get(doc, "event.duration")
        duration = show_duration(duration_ns / 1000 if duration_ns is not None else None)
        return f"span {s.get('name')} {duration} {s.get('status')}"
    if kind == "data":
        d = get(doc, "aitrace.data", {})
        return f"data {d.get('stage')} {d.get('dataset')} rows={d.get('row_count')}"
    if kind == "resource":
        r = get(doc, "aitrace.resources", {})
        return f"cpu={_number(r.get('cpu_percent'))}% rss={r.get('memory_rss_bytes')}"
    if kind == "run":
        return f"run {get(doc, 'aitrace.run.status')}"
    if kind == "ground_truth":
        return f"label={get(doc, 'aitrace.ground_truth.label')} for {get(doc, 'aitrace.inference.request_id')}"
    return ""


def event_row(doc: Source) -> tuple[str, str, str, str, str]:
    """(time, service, level-or-kind, text, trace id) of an event document."""
    level = get(doc, "log.level") or get(doc, "aitrace.kind") or get(doc, "event.dataset") or "-"
    text = get(doc, "message") or _event_text(doc)
    error = get(doc, "error.message")
    if error and error not in text:
        text = f"{text}  error: {error}" if text else f"error: {error}"
    return (show_time(get(doc, "@timestamp")), get(doc, "service.name") or "-", level, text, get(doc, "trace.id") or "")


def trace_row(doc: Source) -> tuple[str, str, str, str, str]:
    t = get(doc, "aitrace.trace", {})
    state = "error" if t.get("has_error") else ("trace" if t.get("complete", True) else "incomplete")
    text = f"{t.get('root_name') or '?'} {show_duration(t.get('duration_us'))} spans={t.get('span_count')}"
    text += f" services={','.join(t.get('services') or [])}"
    if t.get("first_error"):
        text += f"  error: {t['first_error']}"
    return (show_time(get(doc, "@timestamp")), get(doc, "service.name") or "-", state, text, get(doc, "trace.id") or "")


def alert_row(doc: Source) -> tuple[str, str, str, str, str]:
    a = get(doc, "aitrace.alert", {})
    text = f"{a.get('title') or get(doc, 'message')} [{a.get('state', 'open')} v{a.get('version', 1)}]"
    evidence = " ".join(
        f"{name}={_number(a[name])}" for name in ("statistic", "threshold", "score") if a.get(name) is not None
    )
    if evidence:
        text += f"  {evidence}"
    return (
        show_time(get(doc, "@timestamp")),
        get(doc, "service.name") or "-",
        a.get("severity") or "-",
        text,
        get(doc, "trace.id") or "",
    )


ROWS = {EVENTS: event_row, TRACES: trace_row, ALERTS: alert_row}


def format_rows(rows: Iterable[tuple[str, str, str, str, str]], colour: bool = False) -> list[str]:
    """Aligned rows: service and level padded to the widest (bounded) value."""
    rows = list(rows)
    width_service = min(24, max((len(r[1]) for r in rows), default=0))
    width_level = min(12, max((len(r[2]) for r in rows), default=0))
    out = []
    for when, service, level, text, trace_id in rows:
        level_text = f"{level:<{width_level}}"
        if colour:
            level_text = _paint_level(level, level_text)
        trace = f"  {DIM}{trace_id}{RESET}" if colour and trace_id else (f"  {trace_id}" if trace_id else "")
        out.append(f"{when}  {service:<{width_service}}  {level_text}  {text}{trace}")
    return out


def _paint_level(level: str, text: str) -> str:
    rank = LOG_LEVELS.get(level.lower(), -1)
    if rank >= LOG_LEVELS["error"] or level in ("incomplete",):
        return f"{RED}{text}{RESET}"
    if rank == LOG_LEVELS["warning"]:
        return f"{YELLOW}{text}{RESET}"
    return text


__all__ = [
    "ROWS",
    "alert_row",
    "event_row",
    "format_rows",
    "get",
    "iso_to_micros",
    "parse_iso",
    "show_duration",
    "show_time",
    "trace_row",
]
