"""The Numba block reader (:mod:`aitrace.processors.fastcolumns`) gives fastavro's dict for every block,
and nothing (the caller then asks fastavro) for anything it would read differently."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import test_inference_blocks as inference
import test_log_blocks as logs
import test_span_blocks as spans
from aitrace.processors.fastcolumns import decode_block, layout
from aitrace.producers.client import default_processors
from aitrace.producers.config import Settings
from aitrace.schemas.codec import AvroDeserializer, DecodeError
from test_exporter import Running, start

__all__ = ["start"]  # the fixture, imported

AVRO = AvroDeserializer()


def _same(a: Any, b: Any) -> bool:
    """Equal values and types, keys in the same order; NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _fastavro(data: bytes) -> tuple[str, int, Any]:
    writer, reader, offset = AVRO.resolve(data)
    try:
        return writer.name, offset, AVRO.decode_body(data, writer, reader, offset)
    except DecodeError:
        return writer.name, offset, None


def _blocks(start: Callable[..., Running]) -> list[bytes]:
    running = start(default_processors(Settings(service="unit"))[0])
    inference._queue(running, 50, odd=True, secret=True)  # NaN, absent and categorical features, errors
    logs._queue_logs(running, 30, secret=True)  # non-ASCII-free and redacted texts, exceptions
    spans._queue(running, 20, odd=True)
    running.flush()
    return [r.value for r in running.transport.records]


def test_every_block_reads_as_fastavro_reads_it(start: Callable[..., Running]) -> None:
    records = _blocks(start)
    extra = inference._block(features={"x": [1.0, None], "é": [None, float("nan")]}, request_id=["r1", "ünï"])
    records.append(inference._encoded(extra))  # non-ASCII strings: decoded one by one
    assert len({_fastavro(r)[0] for r in records}) == 3
    for data in records:
        name, offset, expected = _fastavro(data)
        got = decode_block(name, data, offset)
        assert got is not None and _same(got, expected)


def test_a_damaged_block_reads_as_fastavro_reads_it_or_not_at_all(start: Callable[..., Running]) -> None:
    rng = random.Random(7)
    taken = 0
    for data in _blocks(start):
        name, offset, _ = _fastavro(data)
        for _ in range(150):
            flipped = bytearray(data)
            at = rng.randrange(offset, len(data))
            flipped[at] ^= 1 << rng.randrange(8)
            cut = bytes(flipped[: len(flipped) - rng.choice((0, 0, 0, 1, 5))])
            got = decode_block(name, cut, offset)
            if got is not None:
                taken += 1
                assert _same(got, _fastavro(cut)[2])
    assert taken > 0  # some flips leave a readable block (a changed digit, a changed letter)


def test_trailing_bytes_and_unknown_field_types_are_left_to_fastavro() -> None:
    data = inference._encoded(inference._block())
    name, offset, _ = _fastavro(data)
    assert decode_block(name, data + b"\x00", offset) is None
    assert decode_block(name, data[:-1], offset) is None
    assert layout("aitrace.MetricBlock") is None  # arrays of records: not read here
