"""Log blocks: a trace's queued ``client.log`` records as the columns of one ``aitrace.LogBlock``.

Spans, levels, messages and loggers are tables of distinct values (a repeated message is
redacted and encoded once), attributes one column per name; the shared machinery (processor
chain, sampling, redaction, splitting) is :mod:`aitrace.producers.blocks`. Head sampling keeps an
unsampled trace's error and anomaly records.

Bad values never raise here: a record that cannot be built is left out and counted
(``rejected_bad_event``), as in :mod:`aitrace.producers.events`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from aitrace.producers import blocks
from aitrace.producers import events as ev
from aitrace.producers.blocks import Block, new_block
from aitrace.schemas.log_block import ERROR_COLUMNS, LOG_SHAPE

__all__ = ["block_chain", "halves", "log_columns", "new_block", "take_rows"]


def block_chain(processors: list[Callable[[Block], Any]]) -> list[Callable[[Block], Any]] | None:
    """The chain to run on log blocks, or None when a processor reads single events only (see :mod:`blocks`)."""
    return blocks.block_chain(processors, LOG_SHAPE, keep_fields)


def keep_fields(block: Block) -> Iterator[dict[str, Any]]:
    """What sampling reads of each record: its level and ``anomaly`` attribute."""
    levels = block["level"]
    anomaly = block["attributes"].get("anomaly") or [None] * len(block["time"])
    for level, flag in zip(block["level_index"], anomaly, strict=True):
        yield {"level": levels[level], "attributes": {"anomaly": flag}}


def take_rows(block: Block, keep: list[int]) -> Block:
    """A copy of a log block holding only the records at ``keep`` (in order)."""
    return blocks.take_rows(LOG_SHAPE, block, keep)


def halves(block: Block) -> list[Block]:
    """A log block's records in two blocks."""
    return blocks.halves(LOG_SHAPE, block)


def log_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    """The columns of queued log records (fields as :meth:`ClientEvents.log` builds them).

    The common case (text messages and levels, no exception) is a few list comprehensions; a
    batch with anything unusual is built record by record through :func:`events.log_payload`,
    which turns odd values into text and leaves out (counted) what cannot be built.
    """
    values = blocks.flat_columns(rows, ev.LOG_FIELDS)
    if values is None:
        values = _by_name(blocks.row_fields(blocks.unflattened(rows)))
    if values is None:
        return _slow_columns(rows, stats)
    levels, messages, loggers, attributes, excs = (values[name] for name in ev.LOG_FIELDS)
    if set(map(type, levels)) != {str} or set(map(type, messages)) != {str} or excs.count(None) != len(excs):
        return _slow_columns(rows, stats)
    if set(map(type, loggers)) - {str, type(None)}:
        return _slow_columns(rows, stats)
    columns = _columns(rows, levels, messages, loggers)
    columns["attributes"] = blocks.text_columns(attributes, stats)
    for name in ERROR_COLUMNS:
        columns[name] = []
    return columns


def _by_name(fields: list[Any]) -> dict[str, list[Any]] | None:
    """Each field's column (rows not queued flat): tuples in the order of :data:`events.LOG_FIELDS` taken apart by one
    ``zip``, dicts (records queued by hand) by name; None when a record is of neither shape or lacks a field."""
    if set(map(type, fields)) == {tuple} and set(map(len, fields)) == {len(ev.LOG_FIELDS)}:
        return dict(zip(ev.LOG_FIELDS, map(list, zip(*fields, strict=True)), strict=True))
    try:
        return {name: [f[name] for f in fields] for name in ev.LOG_FIELDS}
    except (KeyError, TypeError):
        return None


def _slow_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    rows = [(k, t, c, ev.fields_dict(k, f), u) for k, t, c, f, u in blocks.unflattened(rows)]
    kept, payloads = blocks.built(rows, ev.log_payload, stats)
    levels, messages, loggers = ([p[name] for p in payloads] for name in ("level", "message", "logger"))
    columns = _columns(kept, levels, messages, loggers)
    columns["attributes"] = blocks.text_columns([p["attributes"] for p in payloads], stats)
    for name in ERROR_COLUMNS:
        columns[name] = blocks.optional_column([p[name] for p in payloads])
    return columns


def _columns(rows: list[ev.Queued], levels: list[str], messages: list[str], loggers: list[Any]) -> Block:
    columns = {"time": blocks.row_times(rows), **blocks.span_columns(blocks.row_contexts(rows))}
    columns["level"], columns["level_index"] = blocks.interned(levels)
    columns["message"], columns["message_index"] = blocks.interned(messages)
    columns["logger"], columns["logger_index"] = blocks.optional_interned(loggers)
    return columns
