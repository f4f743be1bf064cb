"""Span blocks: a trace's finished spans as the columns of one ``aitrace.SpanBlock``.

Start times and durations are columns; names, kinds and statuses tables of distinct values;
attributes one column per name. The shared machinery (processor chain, sampling, redaction,
splitting) is :mod:`aitrace.producers.blocks`; head sampling keeps an unsampled trace's error
spans.

The values are those :func:`events.span_payload` gives a single event. Bad values never raise
here: a span that cannot be built is left out and counted (``rejected_bad_event``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from aitrace.producers import blocks
from aitrace.producers import events as ev
from aitrace.producers import tracecontext as tc
from aitrace.producers.blocks import Block
from aitrace.producers.spans import Span, Stage
from aitrace.schemas.span_block import SPAN_SHAPE

_FIELDS = 8  # the fields Span.fields and otel.py hand over; more (a span_id of its own) takes the slow path
_SPAN_TYPES = frozenset((Span, Stage))
_READERS = tuple(
    map(attrgetter, ("name", "kind", "status", "_t0", "_t1", "end_us", "error_type", "error_message", "attributes"))
)
_SPAN_ID, _PARENT_ID = attrgetter("span_id"), attrgetter("parent_span_id")  # of a span, or a SpanContext (otel.py)
_END_US = attrgetter("end_us")
_TEXT = frozenset((str, type(None)))


def block_chain(processors: list[Callable[[Block], Any]]) -> list[Callable[[Block], Any]] | None:
    """The chain to run on span blocks, or None when a processor reads single events only."""
    return blocks.block_chain(processors, SPAN_SHAPE, blocks.status_fields)


def halves(block: Block) -> list[Block]:
    """A span block's records in two blocks."""
    return blocks.halves(SPAN_SHAPE, block)


def span_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    """The columns of queued spans: :class:`spans.Span` objects as the caller enqueued them, or fields as
    ``otel.py`` builds them.

    The common case (span objects with text names, kinds and statuses) is one C pass per field
    over the span objects, a table per text field looked at once, and a few list comprehensions;
    a batch with anything else is built record by record through :func:`events.span_payload`.
    """
    if rows and set(map(type, rows)) <= _SPAN_TYPES:  # spans as the client queues them: each its own row
        objects, times, ctxs = rows, list(map(_END_US, rows)), rows
    else:
        rows = _five_item(rows)
        objects = blocks.row_fields(rows)
        if not objects or not set(map(type, objects)) <= _SPAN_TYPES:
            return _dict_columns(rows, stats)
        times, ctxs = blocks.row_times(rows), blocks.row_contexts(rows)
    names, kinds, statuses, t0s, t1s, ends, error_types, messages, attributes = (
        list(map(read, objects)) for read in _READERS
    )
    columns = {"time": times, **_span_table(ctxs)}
    for name, values in (("name", names), ("kind", kinds), ("status", statuses)):
        try:
            table, index = blocks.interned(values)
        except TypeError:  # a name that cannot be hashed (a list): the rows as fields, where it is read as text
            return _dict_columns(_five_item(rows), stats)
        if set(map(type, table)) != {str}:  # (a table of the distinct values: a look at a few)
            return _dict_columns(_five_item(rows), stats)
        columns[name], columns[f"{name}_index"] = table, index
    columns["error_type"], columns["error_message"] = errors = tuple(
        map(blocks.optional_column, (error_types, messages))
    )
    if any(set(map(type, c)) - _TEXT for c in errors):
        return _dict_columns(_five_item(rows), stats)
    columns["duration_us"] = durations = [(b - a) // 1000 for a, b in zip(t0s, t1s, strict=True)]
    columns["start_time"] = [e - d for e, d in zip(ends, durations, strict=True)]
    columns["attributes"] = blocks.text_columns(attributes, stats)
    return columns


def _five_item(rows: list[ev.Queued]) -> list[ev.Queued]:
    """The rows as ``(SPAN, end_us, ctx, fields, urgent)``: a span queued as itself (spans.py) made one."""
    return [row if type(row) is tuple else (ev.SPAN, row.end_us, row, row, row.status == "error") for row in rows]


def _span_table(ctxs: list[Any]) -> Block:
    """:func:`blocks.span_columns` for records that are each a span of their own (the table is their ids in
    order), checked in one set; else that function."""
    ids = list(map(_SPAN_ID, ctxs))
    if len(set(ids)) != len(ids):
        return blocks.span_columns(ctxs)
    parents = blocks.optional_column(list(map(_PARENT_ID, ctxs)))
    return {"span_id": ids, "parent_span_id": parents, "span_index": list(range(len(ids)))}


def _dict_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    """As :func:`span_columns`, for spans handed over as fields (``otel.py``), or a batch mixing both."""
    fields = [f.fields() if type(f) in _SPAN_TYPES else f for _, _, _, f, _ in rows]
    rows = [(k, t, c, f, u) for (k, t, c, _, u), f in zip(rows, fields, strict=True)]
    if set(map(len, fields)) != {_FIELDS}:
        return _slow_columns(rows, stats)
    try:
        names, kinds, statuses = ([f[k] for f in fields] for k in ("name", "kind", "status"))
        starts, durations = [f["start_time"] for f in fields], [f["duration_us"] for f in fields]
        error_types, messages = [f["error_type"] for f in fields], [f["error_message"] for f in fields]
        attributes = [f["attributes"] for f in fields]
    except (KeyError, TypeError):
        return _slow_columns(rows, stats)
    if any(set(map(type, c)) != {str} for c in (names, kinds, statuses)):
        return _slow_columns(rows, stats)
    if set(map(type, starts)) != {int} or set(map(type, durations)) != {int}:
        return _slow_columns(rows, stats)
    if any(set(map(type, c)) - _TEXT for c in (error_types, messages)):
        return _slow_columns(rows, stats)
    columns = _columns(rows, blocks.row_contexts(rows), names, kinds, statuses)
    columns.update(start_time=starts, duration_us=durations)
    columns["error_type"], columns["error_message"] = map(blocks.optional_column, (error_types, messages))
    columns["attributes"] = blocks.text_columns(attributes, stats)
    return columns


def _slow_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    kept, payloads = blocks.built(rows, ev.span_payload, stats)
    ctxs = [  # a span handed over with ids of its own (from another tracer) keeps them, as in a single event
        tc.SpanContext(c.trace_id, f.get("span_id") or c.span_id, f.get("parent_span_id", c.parent_span_id))
        for _, _, c, f, _ in kept
    ]
    names, kinds, statuses = ([p[k] for p in payloads] for k in ("name", "kind", "status"))
    columns = _columns(kept, ctxs, names, kinds, statuses)
    for name in ("start_time", "duration_us"):
        columns[name] = [p[name] for p in payloads]
    for name in ("error_type", "error_message"):
        columns[name] = blocks.optional_column([p[name] for p in payloads])
    columns["attributes"] = blocks.text_columns([p["attributes"] for p in payloads], stats)
    return columns


def _columns(rows: list[ev.Queued], ctxs: list[Any], names: list[Any], kinds: list[Any], statuses: list[Any]) -> Block:
    columns = {"time": blocks.row_times(rows), **blocks.span_columns(ctxs)}
    columns["name"], columns["name_index"] = blocks.interned(names)
    columns["kind"], columns["kind_index"] = blocks.interned(kinds)
    columns["status"], columns["status_index"] = blocks.interned(statuses)
    return columns
