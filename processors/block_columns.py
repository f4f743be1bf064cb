"""A valid inference, log or span block kept as columns, its events built only when asked for.

:func:`aitrace.schemas.codec.as_batch` turns a block into one dict per record, so that the
rest of the worker sees a batch of events. With ``--no-index`` nothing after decoding needs
those dicts: correlation wants a block's time bounds and first error, the series side a model's
latency, status and feature columns. Building the dicts was a third of the worker's time on
what clients send (bench_processors ``client-mixed``), so a block that passes every check here
stays columns; :meth:`BlockColumns.events` builds the dicts for the document path.

The checks are those :mod:`aitrace.processors.decode` makes per event, on whole columns and
stricter (every table entry, not only those a record points to). A block that fails one, or
whose columns do not line up, is not taken here: the caller decodes it event by event, which
finds and reports exactly what is wrong, as before.

:func:`events_valid` does the same for a batch of single events (clients that send one event at
a time): the batch's ids, times and payload fields checked a field at a time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from aitrace.processors import decode as checks  # decode imports this module too: names read at call time
from aitrace.processors.fastcolumns import decode_columns, double_column, long_column
from aitrace.schemas.block_shape import BlockShape, block_events, rows
from aitrace.schemas.codec import CompiledSchema
from aitrace.schemas.inference_block import INFERENCE_SHAPE
from aitrace.schemas.log_block import LOG_SHAPE
from aitrace.schemas.span_block import SPAN_SHAPE

SHAPES: dict[str, BlockShape] = {s.schema: s for s in (INFERENCE_SHAPE, LOG_SHAPE, SPAN_SHAPE)}


class BlockColumns:
    """The decoded columns of one block (as fastavro gives them) that passed every check."""

    def __init__(
        self,
        shape: BlockShape,
        block: Mapping[str, Any],
        n: int,
        times: np.ndarray,
        arrays: Mapping[str, Any] | None = None,
    ) -> None:
        """``arrays``: ``block``'s double columns as float64 arrays (fastcolumns.decode_columns), where it has them."""
        self.shape = shape
        self.block = block
        self.arrays: Mapping[str, Any] = arrays or {}
        self.n = n
        self.times = times  # int64, one per record
        self.trace_id: str = block["trace_id"]
        self.service: str = block["service"]
        self._events: list[dict[str, Any]] | None = None

    @property
    def kind(self) -> str:
        """The record type each row stands for (``aitrace.InferenceRecord``, ...)."""
        return self.shape.record

    def events(self) -> list[dict[str, Any]]:
        """The block's records as the events they stand for (built once)."""
        if self._events is None:
            self._events = block_events(self.shape, self.block)
        return self._events


def read_block(
    data: bytes, writer: CompiledSchema, reader: CompiledSchema, offset: int
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A block of a kind taken here, read as written (:mod:`aitrace.processors.fastcolumns`), with its double
    columns as arrays (:func:`~aitrace.processors.fastcolumns.decode_columns`); else None.

    Below ``FASTAVRO_BYTES`` fastavro is as fast (its fixed cost per record is lower; a log or
    span block of one record: 24-28 us either way, an inference block of 200: 920 us against 265 on the
    loaded 2-core bench machine).
    """
    if writer.name not in SHAPES or reader is not writer or len(data) < FASTAVRO_BYTES:
        return None
    return decode_columns(writer.name, data, offset)


FASTAVRO_BYTES = 1024


def block_columns(
    schema: str, block: Mapping[str, Any], max_time: int, arrays: Mapping[str, Any] | None = None
) -> BlockColumns | None:
    """The block as columns when it is of a kind taken here and every check passes; else None.
    ``arrays``: its double columns as arrays, where :func:`read_block` read it."""
    arrays = arrays or {}
    shape = SHAPES.get(schema)
    if shape is None:
        return None
    try:
        n = rows(shape, block)
    except (ValueError, TypeError, KeyError):
        return None  # the event-by-event path raises the bad-shape error with its text
    if n == 0 or not block["block_id"] or not block["service"] or not _ids_valid(block):
        return None
    times = long_column(block, arrays, "time")
    least, greatest = least_greatest(block["time"], times)
    if least < checks.MIN_TIME_US or greatest > max_time:
        return None
    if not _PAYLOAD_CHECKS[shape.schema](block, max_time, arrays):
        return None
    return BlockColumns(shape, block, n, times, arrays)


# Rows up to which a check runs on a column's list rather than its array: a client sends its logs and spans
# in blocks of a record or two, where each numpy reduction (~2 us) cost more than the loop over the list.
_SHORT = 32


def least_greatest(column: list[int], array: np.ndarray) -> tuple[int, int]:
    """The least and greatest of a long column, given as its list and as its int64 array (the same values)."""
    if len(column) <= _SHORT:
        return min(column), max(column)
    return int(array.min()), int(array.max())


def _ids_valid(block: Mapping[str, Any]) -> bool:
    if not checks.valid_trace_id(block["trace_id"]):
        return False
    parents = [p for p in block.get("parent_span_id") or () if p is not None]
    return all(map(checks.valid_span_id, block["span_id"])) and all(map(checks.valid_span_id, parents))


def _inference_ok(block: Mapping[str, Any], max_time: int, arrays: Mapping[str, Any]) -> bool:
    latency = double_column(block, arrays, "latency_ms")
    return (
        all(block["request_id"])
        and all(block["model_name"])
        and all(s in checks.STATUSES for s in block["status"])
        and bool((latency >= 0).all())  # NaN fails too
    )


def _log_ok(block: Mapping[str, Any], max_time: int, arrays: Mapping[str, Any]) -> bool:
    return all(level.lower() in checks.LOG_LEVELS for level in block["level"])


def _span_ok(block: Mapping[str, Any], max_time: int, arrays: Mapping[str, Any]) -> bool:
    if len(block["start_time"]) <= _SHORT:  # the same checks on the lists (rows() lined them up)
        starts, durations = block["start_time"], block["duration_us"]
        return (
            all(block["name"])
            and all(d >= 0 for d in durations)
            and min(starts) >= checks.MIN_TIME_US
            and max(starts) <= max_time
            and all(d <= max_time - s for s, d in zip(starts, durations, strict=True))
        )
    starts = np.asarray(block["start_time"], dtype=np.int64)
    durations = np.asarray(block["duration_us"], dtype=np.int64)
    return (
        all(block["name"])
        and bool((durations >= 0).all())
        and bool(starts.min() >= checks.MIN_TIME_US and starts.max() <= max_time)
        and bool((durations <= max_time - starts).all())  # the end too; start + duration may overflow int64
    )


_PAYLOAD_CHECKS = {
    INFERENCE_SHAPE.schema: _inference_ok,
    LOG_SHAPE.schema: _log_ok,
    SPAN_SHAPE.schema: _span_ok,
}


def events_valid(events: list[dict[str, Any]], max_time: int) -> bool:
    """Whether every event passes :mod:`aitrace.processors.decode`'s per-event checks, checked a field at a time.

    The checks are the same, or stricter; False sends the batch through them event by event,
    which says which events fail and why.
    """
    if not events:
        return True
    spans = {e["span_id"] for e in events} | {e.get("parent_span_id") for e in events}
    spans.discard(None)
    if not _all_hex({e["trace_id"] for e in events}, 32) or not _all_hex(spans, 16):
        return False
    times = [e["time"] for e in events]
    if min(times) < checks.MIN_TIME_US or max(times) > max_time:
        return False
    if not all(e["event_id"] and e["service"] for e in events):
        return False
    inference = [p for kind, p in (e["payload"] for e in events) if kind == _INFERENCE]
    if not all(p["request_id"] and p["model_name"] and p["status"] in checks.STATUSES for p in inference):
        return False
    if not all(p["latency_ms"] >= 0 for p in inference):  # also rejects NaN
        return False
    others = [(e["event_id"], *e["payload"]) for e in events if e["payload"][0] != _INFERENCE]
    return all(checks.check_payload(event_id, kind, p, max_time) is None for event_id, kind, p in others)


def _all_hex(ids: set[Any], digits: int) -> bool:
    """Whether every id is ``digits`` lowercase hex digits, not all zero: one regex match for them all
    (a single-event batch has a span id per event)."""
    try:
        joined = "".join(ids)
    except TypeError:  # not all text
        return False
    return set(map(len, ids)) == {digits} and "0" * digits not in ids and _HEX.fullmatch(joined) is not None


_HEX = re.compile("[0-9a-f]*")
_INFERENCE = INFERENCE_SHAPE.record
