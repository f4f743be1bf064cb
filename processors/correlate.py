"""Assemble the events of one trace id into one ``aitrace.Trace`` document.

State is one plain dict per trace (JSON-safe, so a Faust table stores it): the spans seen,
services touched, time bounds, the first error, and per source partition (``topic:partition``)
the last applied offset, so that a redelivered record is a no-op: Faust is at-least-once and
re-applies a record after a restart. Per partition, not per topic: the producer keys records by
trace id, but a client that keys them otherwise (or not at all) spreads a trace over partitions,
and an offset of one partition compared with another's skipped records never applied.

Life of a trace:

- open while events arrive;
- **closed complete** when its root span (a span without parent) ends;
- **closed incomplete** after ``idle_timeout_s`` without events and without a root end
  (a service that never answered);
- a late event after closing updates the same document (``_id`` = trace id) at the next tick,
  once however many late records came (``dirty``: rebuilding a trace of 2,000 spans for every
  one-line late record cost the trace's size per record); the late end of the root, which
  flips it to complete (once per trace), updates it at once;
- evicted ``grace_s`` after the last change of a closed trace, so state stays bounded.

A document is emitted at every close and every later change; never while open (a trace
that is still being written would be rewritten on every batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from aitrace.processors.block_columns import BlockColumns, least_greatest
from aitrace.processors.event_columns import EventColumns
from aitrace.schemas.metric_block import MetricBlock

# span entry layout in state["spans"][span_id]
_PARENT, _SERVICE, _NAME, _START, _DURATION, _STATUS = range(6)
_ERROR_LEVELS = frozenset({"error", "critical", "fatal"})
# payload union branches as the codec names them (fastavro's record names)
_SPAN, _INFERENCE, _LOG, _LIFECYCLE = (
    "aitrace.Span",
    "aitrace.InferenceRecord",
    "aitrace.LogRecord",
    "aitrace.RunLifecycle",
)


_MAX_ERROR_CHARS = 4_096  # of the first error's text a trace keeps (one per trace, so not a setting)


@dataclass(frozen=True)
class CorrelationConfig:
    """Timeouts (processing time, seconds) and the bounds on spans and services kept per trace."""

    idle_timeout_s: float = 30.0
    grace_s: float = 600.0
    max_spans: int = 2000
    # A trace's services are a list in its state: without a bound, every record of a trace that
    # named new services scanned all earlier ones (8 records of 15,000 new names: 1 s, then 21 s).
    max_services: int = 256
    # Names (spans, services) are kept this long (the first error's text _MAX_ERROR_CHARS): 2,000 spans of
    # 1 MB names made a state that no changelog record could hold. The events' own documents keep them whole.
    max_name_chars: int = 1_024


def new_state(trace_id: str, partition: int, ingested: float | None = None) -> dict[str, Any]:
    """An empty trace state; ``ingested``: processing time (epoch s) of the trace's first record."""
    return {
        # fixed for the trace's life: a trace whose times are far off is indexed by this day, stably
        "ingested": ingested,
        "trace_id": trace_id,
        "partition": partition,
        "applied": {},
        "batches": [],
        "spans": {},
        "services": [],
        "start": None,
        "end": None,
        "events": 0,
        "dropped_spans": 0,
        "error": None,  # [time, text] of the earliest error seen
        "root": None,
        "root_name": None,
        "root_done": False,
        "closed": False,
        "complete": False,
        "dirty": False,  # closed, and changed since its last document
        "touched": 0.0,
        "context": {},
    }


_NONE = type(None)
_MISSING = object()
# The top level of a trace state as new_state and apply_record leave it: key -> the types its value may have
_SHAPE: dict[str, tuple[type, ...]] = {
    "trace_id": (str,),
    "partition": (int,),
    "applied": (dict,),
    "batches": (list,),
    "spans": (dict,),
    "services": (list,),
    "start": (int, _NONE),
    "end": (int, _NONE),
    "events": (int,),
    "dropped_spans": (int,),
    "error": (list, _NONE),
    "root": (str, _NONE),
    "root_name": (str, _NONE),
    "root_done": (bool,),
    "closed": (bool,),
    "complete": (bool,),
    "touched": (int, float),
    "context": (dict,),
}


def sound_state(state: Any) -> bool:
    """Whether ``state``, read from the traces table, has the shape of a trace state (its top level, ~1.5 us).

    The table is restored from its changelog, a topic any client can write: a value of another shape made
    every later record of the trace raise (and be dead-lettered whole, the other traces' events with it).
    """
    if type(state) is not dict:
        return False
    for key, types in _SHAPE.items():
        if not isinstance(state.get(key, _MISSING), types):
            return False
    ingested = state.get("ingested")
    return ingested is None or isinstance(ingested, int | float)


RECENT_BATCHES = 64


def already_applied(state: dict[str, Any], source: str, offset: int, batch_id: str | None = None) -> bool:
    """True when this record was applied before: same offset in its ``source`` partition
    (``topic:partition``; a Kafka redelivery) or same batch id among the recent ones (a producer
    retry that wrote the batch twice)."""
    return offset <= state["applied"].get(source, -1) or (batch_id is not None and batch_id in state["batches"])


def apply_record(
    state: dict[str, Any],
    events: list[dict[str, Any]],
    blocks: list[MetricBlock],
    *,
    source: str,
    offset: int,
    now: float,
    config: CorrelationConfig,
    batch_id: str | None = None,
    column_blocks: Sequence[BlockColumns] = (),
    event_rows: tuple[EventColumns, np.ndarray] | None = None,
) -> dict[str, Any] | None:
    """Fold one record's events of this trace into ``state``; return a Trace to emit, or None.

    ``column_blocks``: event blocks of the trace kept as columns (their events are not in ``events``);
    ``event_rows``: single events kept as columns, and the rows of those of this trace.
    The caller checks :func:`already_applied` first (this function records the offset).
    """
    if events:
        _apply_events(state, events, config)
    if event_rows is not None:
        _apply_event_columns(state, *event_rows, config)
    for columns in column_blocks:
        _apply_columns(state, columns, config)
    for block in blocks:
        _apply_block(state, block, config)
    state["applied"][source] = offset
    if batch_id is not None:
        state["batches"] = [*state["batches"][-(RECENT_BATCHES - 1) :], batch_id]
    state["touched"] = now
    if state["closed"]:
        if state["complete"] or not state["root_done"]:
            state["dirty"] = True  # the tick rebuilds it: once, not once per late record
            return None
        state["complete"], state["dirty"] = True, False
        return build_trace(state)
    if state["root_done"]:
        state["closed"] = True
        state["complete"] = True
        return build_trace(state)
    return None


def on_tick(state: dict[str, Any], *, now: float, config: CorrelationConfig) -> tuple[str, dict[str, Any] | None]:
    """Timer step: ``("close", trace)`` when idle, ``("update", trace)`` when closed and changed since its
    last document, ``("evict", None)`` after the grace period, else ``("keep", None)``.

    Only called from an event of the trace's partition (a tick record), since Faust tables
    can be changed only inside a stream event.
    """
    idle = now - state["touched"]
    if not state["closed"]:
        if idle >= config.idle_timeout_s:
            state["closed"] = True
            state["complete"] = state["root_done"]
            state["touched"] = now  # the grace period runs from the close
            return "close", build_trace(state)
        return "keep", None
    if state.get("dirty"):  # states from before it was kept have none
        state["dirty"] = False
        return "update", build_trace(state)
    if idle >= config.grace_s:
        return "evict", None
    return "keep", None


def _widen(state: dict[str, Any], start: int, end: int) -> None:
    state["start"] = start if state["start"] is None else min(state["start"], start)
    state["end"] = end if state["end"] is None else max(state["end"], end)


def _touch_service(state: dict[str, Any], service: str, config: CorrelationConfig) -> None:
    """Note a service of the trace; past ``config.max_services`` further ones are not listed."""
    services = state["services"]
    service = service[: config.max_name_chars]
    if len(services) < config.max_services and service not in services:
        services.append(service)


def _set_context(state: dict[str, Any], context: dict[str, str | None], config: CorrelationConfig) -> None:
    state["context"] = {k: v[: config.max_name_chars] if v else v for k, v in context.items()}


def _note_error(state: dict[str, Any], when: int, text: str) -> None:
    if state["error"] is None or when < state["error"][0]:
        state["error"] = [when, text[:_MAX_ERROR_CHARS]]


def _apply_events(state: dict[str, Any], events: list[dict[str, Any]], config: CorrelationConfig) -> None:
    """Fold a record's events of this trace: counts, services and time bounds once per record;
    spans and errors event by event, in order (the first of equally early errors is kept)."""
    state["events"] += len(events)
    for service in dict.fromkeys([e["service"] for e in events]):
        _touch_service(state, service, config)
    if not state["context"]:
        _set_context(state, {k: events[0].get(k) for k in ("environment", "host", "run_id")}, config)
    lo = hi = None
    for event in events:
        kind, p = event["payload"]
        if kind == _SPAN:
            _apply_span(state, (event["span_id"], event.get("parent_span_id"), event["service"]), p, config)
            continue
        t = event["time"]
        if lo is None or t < lo:
            lo = t
        if hi is None or t > hi:
            hi = t
        if kind == _INFERENCE:
            if p["status"] == "error":
                _note_error(state, t, f"{event['service']}: {p['model_name']}: {p.get('error') or 'inference error'}")
        elif kind == _LOG:
            if p["level"].lower() in _ERROR_LEVELS:
                detail = p.get("error_type") or p["level"].upper()
                _note_error(state, t, f"{event['service']}: {detail}: {p.get('error_message') or p['message']}")
        elif kind == _LIFECYCLE and p["status"] == "FAILED":
            _note_error(state, t, f"{event['service']}: run failed: {p.get('message') or ''}".rstrip(": "))
    if lo is not None and hi is not None:
        _widen(state, lo, hi)


def _apply_span(
    state: dict[str, Any], ids: tuple[str, str | None, str], p: dict[str, Any], config: CorrelationConfig
) -> None:
    """One span: ``ids`` are its span id, parent span id and service; ``p`` its payload."""
    span_id, parent, service = ids
    start, duration = p["start_time"], p["duration_us"]
    _widen(state, start, start + duration)
    name = p["name"][: config.max_name_chars]
    if span_id in state["spans"] or len(state["spans"]) < config.max_spans:
        state["spans"][span_id] = [parent, service[: config.max_name_chars], name, start, duration, p["status"]]
    else:
        state["dropped_spans"] += 1
    if p["status"] == "error":
        text = p.get("error_message") or p.get("error_type") or "span failed"
        _note_error(state, start + duration, f"{service}: {name}: {text}")
    if parent is None:
        state["root"] = span_id
        state["root_name"] = name
        state["root_done"] = True


def _apply_columns(state: dict[str, Any], columns: BlockColumns, config: CorrelationConfig) -> None:
    """What :func:`_apply_events` does with the block's events, on its columns (spans: row by row)."""
    state["events"] += columns.n
    _touch_service(state, columns.service, config)
    if not state["context"]:
        _set_context(state, {k: columns.block.get(k) for k in ("environment", "host", "run_id")}, config)
    if columns.kind == _SPAN:  # each span changes the span tree; its event dict was built for this alone
        for ids, p in _span_rows(columns):
            _apply_span(state, ids, p, config)
        return
    _widen(state, *least_greatest(columns.block["time"], columns.times))
    first = _first_error_row(columns)
    if first is not None:
        _note_error(state, int(columns.times[first]), _error_text(columns, first))


def _span_rows(columns: BlockColumns) -> list[tuple[tuple[str, str | None, str], dict[str, Any]]]:
    """A span block's rows as :func:`_apply_span` reads its events: (span id, parent, service), and the
    payload fields it reads (tables looked up, absent optional columns null, as the block's events have them)."""
    b, n = columns.block, columns.n
    ids = b["span_id"]
    parents = b.get("parent_span_id") or [None] * len(ids)
    names, statuses = b["name"], b["status"]
    types, messages = b.get("error_type") or [None] * n, b.get("error_message") or [None] * n
    return [
        (
            (ids[s], parents[s], columns.service),
            {
                "name": names[b["name_index"][i]],
                "start_time": b["start_time"][i],
                "duration_us": b["duration_us"][i],
                "status": statuses[b["status_index"][i]],
                "error_type": types[i],
                "error_message": messages[i],
            },
        )
        for i, s in enumerate(b["span_index"])
    ]


def _first_error_row(columns: BlockColumns) -> int | None:
    """The earliest error record of an inference or log block (the first of equally early ones)."""
    if columns.kind == _INFERENCE:
        table, bad = "status", [i for i, value in enumerate(columns.block["status"]) if value == "error"]
    elif columns.kind == _LOG:
        table, bad = "level", [i for i, value in enumerate(columns.block["level"]) if value.lower() in _ERROR_LEVELS]
    else:
        return None
    if not bad:
        return None
    rows = np.flatnonzero(np.isin(np.asarray(columns.block[f"{table}_index"]), bad))
    if not len(rows):
        return None
    return int(rows[np.argmin(columns.times[rows])])


def _error_text(columns: BlockColumns, i: int) -> str:
    b, service = columns.block, columns.service

    def row(name: str) -> Any:
        return (b.get(name) or [None] * columns.n)[i]

    def table(name: str) -> Any:
        return b[name][b[f"{name}_index"][i]]

    if columns.kind == _INFERENCE:
        return f"{service}: {table('model_name')}: {row('error') or 'inference error'}"
    detail = row("error_type") or table("level").upper()
    return f"{service}: {detail}: {row('error_message') or table('message')}"


def _apply_event_columns(state: dict[str, Any], c: EventColumns, rows: np.ndarray, config: CorrelationConfig) -> None:
    """What :func:`_apply_events` does with the events at ``rows``, a column at a time. Of the errors
    met in event order the earliest is kept (the first of equally early ones), as one by one."""
    state["events"] += len(rows)
    for service in c.groups("service", rows)[0]:
        _touch_service(state, service, config)
    if not state["context"]:
        _set_context(state, {k: c.opt_text(k, rows[:1])[0] for k in ("environment", "host", "run_id")}, config)
    kinds = c.kinds[rows]
    spans = rows[kinds == c.branch[_SPAN]]
    others = rows[kinds != c.branch[_SPAN]]
    errors = _column_span_errors(state, c, spans, config) + _column_errors(c, others)
    if len(others):
        times = c.long("time", others)
        _widen(state, int(times.min()), int(times.max()))
    if errors:
        when, _, text = min(errors, key=lambda e: (e[0], e[1]))
        _note_error(state, when, text)


def _column_errors(c: EventColumns, rows: np.ndarray) -> list[tuple[int, int, str]]:
    """(time, row, text) of each inference or log error at ``rows``."""
    out: list[tuple[int, int, str]] = []
    inference = rows[c.kinds[rows] == c.branch[_INFERENCE]]
    f = f"{_INFERENCE}."
    bad = inference[c.equals(f + "status", inference, "error")]
    for row, service, model, error, t in zip(
        bad.tolist(),
        c.text("service", bad),
        c.text(f + "model_name", bad),
        c.opt_text(f + "error", bad),
        c.long("time", bad).tolist(),
        strict=True,
    ):
        out.append((t, row, f"{service}: {model}: {error or 'inference error'}"))
    logs = rows[c.kinds[rows] == c.branch[_LOG]]
    f = f"{_LOG}."
    levels = c.text(f + "level", logs)
    bad = logs[np.asarray([level.lower() in _ERROR_LEVELS for level in levels], dtype=bool)]
    for row, service, level, kind, error, message, t in zip(
        bad.tolist(),
        c.text("service", bad),
        c.text(f + "level", bad),
        c.opt_text(f + "error_type", bad),
        c.opt_text(f + "error_message", bad),
        c.text(f + "message", bad),
        c.long("time", bad).tolist(),
        strict=True,
    ):
        out.append((t, row, f"{service}: {kind or level.upper()}: {error or message}"))
    return out


def _column_span_errors(
    state: dict[str, Any], c: EventColumns, rows: np.ndarray, config: CorrelationConfig
) -> list[tuple[int, int, str]]:
    """:func:`_apply_span` for the spans at ``rows``, in order; (end, row, text) of each failed one."""
    out: list[tuple[int, int, str]] = []
    if not len(rows):
        return out
    f = f"{_SPAN}."
    starts, durations = c.long(f + "start_time", rows), c.long(f + "duration_us", rows)
    _widen(state, int(starts.min()), int((starts + durations).max()))
    columns = zip(
        rows.tolist(),
        c.text("span_id", rows),
        c.opt_text("parent_span_id", rows),
        c.text("service", rows),
        c.text(f + "name", rows),
        starts.tolist(),
        durations.tolist(),
        c.text(f + "status", rows),
        strict=True,
    )
    for row, span_id, parent, long_service, long_name, start, duration, status in columns:
        service, name = long_service[: config.max_name_chars], long_name[: config.max_name_chars]
        if span_id in state["spans"] or len(state["spans"]) < config.max_spans:
            state["spans"][span_id] = [parent, service, name, start, duration, status]
        else:
            state["dropped_spans"] += 1
        if status == "error":
            one = np.array([row])
            text = c.opt_text(f + "error_message", one)[0] or c.opt_text(f + "error_type", one)[0] or "span failed"
            out.append((start + duration, row, f"{service}: {name}: {text}"))
        if parent is None:
            state["root"] = span_id
            state["root_name"] = name
            state["root_done"] = True
    return out


def _apply_block(state: dict[str, Any], block: MetricBlock, config: CorrelationConfig) -> None:
    times = block.times
    state["events"] += len(times)
    _touch_service(state, block.service, config)
    if len(times):
        _widen(state, int(times.min()), int(times.max()))
    if not state["context"]:
        _set_context(state, {"environment": block.environment, "host": block.host, "run_id": block.run_id}, config)


def critical_path(spans: dict[str, list[Any]], root: str | None) -> list[str]:
    """Span ids from the root down, following at each level the child that ends last.

    That child is what the parent waited for; with no root span known, the path starts at
    the earliest span whose parent is not among the spans seen.
    """
    if not spans:
        return []
    children: dict[str, list[str]] = {}
    for span_id, s in spans.items():
        if s[_PARENT] in spans:
            children.setdefault(s[_PARENT], []).append(span_id)
    if root not in spans:
        tops = [sid for sid, s in spans.items() if s[_PARENT] not in spans]
        root = min(tops, key=lambda sid: spans[sid][_START]) if tops else None
    path: list[str] = []
    seen: set[str] = set()
    node = root
    while node is not None and node not in seen:
        path.append(node)
        seen.add(node)
        kids = children.get(node)
        node = max(kids, key=lambda sid: spans[sid][_START] + spans[sid][_DURATION]) if kids else None
    return path


def build_trace(state: dict[str, Any]) -> dict[str, Any]:
    """The ``aitrace.Trace`` record of the state as it is now."""
    spans = state["spans"]
    start = state["start"] if state["start"] is not None else 0
    end = state["end"] if state["end"] is not None else start
    ordered = sorted(spans.items(), key=lambda kv: kv[1][_START])
    error = state["error"]
    return {
        "trace_id": state["trace_id"],
        "root_span_id": state["root"],
        "root_name": state["root_name"],
        "services": list(state["services"]),
        "start_time": start,
        "end_time": end,
        "duration_us": max(0, end - start),
        "span_count": len(spans) + state["dropped_spans"],
        "event_count": state["events"],
        "complete": bool(state["complete"]),
        "has_error": error is not None,
        "first_error": error[1] if error else None,
        "critical_path": critical_path(spans, state["root"]),
        "spans": [
            {
                "span_id": sid,
                "parent_span_id": s[_PARENT],
                "service": s[_SERVICE],
                "name": s[_NAME],
                "start_time": s[_START],
                "duration_us": s[_DURATION],
                "status": s[_STATUS],
            }
            for sid, s in ordered
        ],
    }
