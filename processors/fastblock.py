"""Decode metric-only ``aitrace.Batch`` records straight into NumPy arrays.

A training job's batch is columnar metric blocks: thousands of steps, times and values per
record. fastavro turns each of them into a Python int or float (about half a microsecond
apiece here), and the detectors then turn them back into arrays. This reader walks the
same Avro binary encoding with the arrays read in bulk: ``array<double>`` items are
8-byte little-endian floats (``np.frombuffer``), ``array<long>`` items zigzag varints
(a Numba loop). Anything else, a batch that carries events, or a value outside what the
loop decodes exactly, returns None and the caller uses fastavro: the result is the same
either way, one :class:`aitrace.schemas.metric_block.MetricBlock` per block (the tests
compare them). Counts read from the
wire are checked against the bytes left before anything is allocated by them.

Layout read (``schemas/aitrace.Batch.avsc`` / ``aitrace.MetricBlock.avsc``; this module does
not read the header: :class:`aitrace.processors.decode.RecordDecoder` calls it only on records
written in the current Batch schema, single-object or Confluent-framed, with the offset of
the body after either header): batch_id, events (must be
empty), metric_blocks; each block: block_id, trace_id, span_id, parent_span_id?, service,
service_version?, environment?, host?, pid? (int), run_id?, split?, steps, times, epochs (int),
series[{name, values}].
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aitrace.detect import _cache  # noqa: F401  (Numba cache dir, set before any @njit)
from aitrace.schemas.metric_block import MetricBlock
from numba import njit


class _NotFast(Exception):
    """This record is not for the fast path (or is malformed: fastavro will say how)."""


@njit(cache=True)
def _varints(buf: np.ndarray, pos: int, n: int, out: np.ndarray, at: int) -> int:  # pragma: no cover - jitted
    """Decode n zigzag varints from buf[pos:] into out[at:]; new position, or -1 if malformed."""
    size = buf.shape[0]
    for i in range(n):
        result: Any = 0  # then an np.int64 (the annotation is for mypy; Numba does not read it)
        shift = 0
        while True:
            if pos >= size or shift > 56:
                return -1
            b = np.int64(buf[pos])
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        out[at + i] = (result >> 1) ^ -(result & 1)
    return pos


class _Reader:
    __slots__ = ("arr", "data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.arr = np.frombuffer(data, dtype=np.uint8)
        self.pos = pos

    def long(self) -> int:
        """One zigzag varint, in Python: a jitted call per header field cost more than the loop.

        The same limits as ``_varints`` (at most 9 bytes), so both paths accept the same input."""
        data, pos = self.data, self.pos
        result = shift = 0
        while True:
            if pos >= len(data) or shift > 56:
                raise _NotFast
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        self.pos = pos
        return (result >> 1) ^ -(result & 1)

    def string(self) -> str:
        n = self.long()
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise _NotFast
        text = self.data[self.pos : end].decode("utf-8")
        self.pos = end
        return text

    def optional(self, read: Any) -> Any:
        branch = self.long()
        if branch == 0:
            return None
        if branch != 1:
            raise _NotFast
        return read()

    def blocks(self) -> Any:
        """Yield the item count of each block of an Avro array (skipping byte sizes)."""
        while True:
            count = self.long()
            if count == 0:
                return
            if count < 0:
                count = -count
                self.long()  # block size in bytes, not needed
            # Every item takes at least one byte: a count beyond the bytes left is corrupt, and
            # checking it here, before ``longs`` sizes an array by it, keeps a bit-flipped count
            # from asking for terabytes.
            if count > len(self.data) - self.pos:
                raise _NotFast
            yield count

    def longs(self) -> np.ndarray:
        parts: list[np.ndarray] = []
        for count in self.blocks():
            out = np.empty(count, dtype=np.int64)
            pos = _varints(self.arr, self.pos, count, out, 0)
            if pos < 0:
                raise _NotFast
            self.pos = pos
            parts.append(out)
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def doubles(self) -> np.ndarray:
        parts: list[np.ndarray] = []
        for count in self.blocks():
            end = self.pos + 8 * count
            if end > len(self.data):
                raise _NotFast
            parts.append(np.frombuffer(self.data, dtype="<f8", count=count, offset=self.pos).astype(np.float64))
            self.pos = end
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)


def _block(r: _Reader) -> MetricBlock:
    # read in the order of the fields on the wire
    block_id, trace_id, span_id = r.string(), r.string(), r.string()
    parent_span_id = r.optional(r.string)
    service = r.string()
    service_version, environment, host = r.optional(r.string), r.optional(r.string), r.optional(r.string)
    pid = r.optional(r.long)
    run_id, split = r.optional(r.string), r.optional(r.string)
    steps, times, epochs = r.longs(), r.longs(), r.longs()
    series: dict[str, np.ndarray] = {}
    for count in r.blocks():
        for _ in range(count):
            name = r.string()
            if name in series:  # not keyable by name: fastavro's path rejects the block
                raise _NotFast
            series[name] = r.doubles()
    return MetricBlock(
        block_id=block_id,
        trace_id=trace_id,
        span_id=span_id,
        service=service,
        steps=steps,
        times=times,
        epochs=epochs,
        series=series,
        parent_span_id=parent_span_id,
        service_version=service_version,
        environment=environment,
        host=host,
        pid=pid,
        run_id=run_id,
        split=split,
    )


def decode_metric_batch(data: bytes, body_offset: int) -> dict[str, Any] | None:
    """The Batch at ``data[body_offset:]``, its blocks as :class:`MetricBlock` s, or None.

    None means: not a metric-only batch, or not decodable here; decode it with fastavro.
    """
    try:
        r = _Reader(data, body_offset)
        batch_id = r.string()
        if r.long() != 0:  # events present: fastavro does the whole record
            return None
        blocks = [_block(r) for count in r.blocks() for _ in range(count)]
        if r.pos != len(data):
            return None
    except (_NotFast, UnicodeDecodeError, ValueError):
        return None
    return {"batch_id": batch_id, "events": [], "metric_blocks": blocks}
