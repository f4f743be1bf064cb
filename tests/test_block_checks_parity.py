"""A block's time and span checks on its lists (blocks of up to 32 rows: a client's log and span blocks hold a
record or two) take and refuse exactly the blocks the numpy checks they replaced took and refused (kept here
as the reference), at every bound; and a trace widens to the same times."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
import test_fastcolumns as fastcolumns_tests
from aitrace.processors import block_columns as B
from aitrace.processors import decode as checks
from aitrace.processors.fastcolumns import long_column
from aitrace.schemas.block_shape import BlockShape
from aitrace.schemas.codec import AvroDeserializer
from test_exporter import Running, start

__all__ = ["start"]  # the fixture, imported
AVRO = AvroDeserializer()
MAX_TIME = 1_800_000_000_000_000


def _old_span_ok(block: Mapping[str, Any], max_time: int, arrays: Mapping[str, Any]) -> bool:
    starts = np.asarray(block["start_time"], dtype=np.int64)
    durations = np.asarray(block["duration_us"], dtype=np.int64)
    return (
        all(block["name"])
        and bool((durations >= 0).all())
        and bool(starts.min() >= checks.MIN_TIME_US and starts.max() <= max_time)
        and bool((durations <= max_time - starts).all())
    )


def _old_taken(schema: str, block: Mapping[str, Any], max_time: int) -> bool:
    """Whether block_columns took the block before: its time check and payload check (numpy's), the rest as now."""
    shape = B.SHAPES[schema]
    try:
        n = B.rows(shape, block)
    except (ValueError, TypeError, KeyError):
        return False
    if n == 0 or not block["block_id"] or not block["service"] or not B._ids_valid(block):
        return False
    times = long_column(block, {}, "time")
    if times.min() < checks.MIN_TIME_US or times.max() > max_time:
        return False
    payload = _old_span_ok if schema == "aitrace.SpanBlock" else B._PAYLOAD_CHECKS[schema]
    return payload(block, max_time, {})


def _row_columns(shape: BlockShape, block: Mapping[str, Any]) -> list[str]:
    """The columns with one entry per row (as rows() checks them)."""
    names = ["time", "span_index", *shape.rows, *(f"{t}_index" for t, _ in shape.tables)]
    return names + [name for name in shape.optional_rows if block.get(name)]


def _grown(shape: BlockShape, block: dict[str, Any], n: int) -> dict[str, Any]:
    """The block with its first row repeated to ``n`` rows."""
    out = copy.deepcopy(block)
    for name in _row_columns(shape, block):
        out[name] = [block[name][0]] * n
    for name in shape.column_maps:
        out[name] = {key: [values[0]] * n for key, values in (block.get(name) or {}).items()}
    return out


_TIMES = [checks.MIN_TIME_US - 1, checks.MIN_TIME_US, MAX_TIME - 5, MAX_TIME, MAX_TIME + 1]


def _variants(shape: BlockShape, block: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Blocks of 1 to 40 rows (either side of the list/array threshold) with times, starts and durations at
    and across every bound the checks draw, and empty span names."""
    out = []
    for n in (1, 2, 5, 32, 33, 40):
        for _ in range(12):
            b = _grown(shape, block, n)
            b["time"] = [int(rng.choice(_TIMES)) if rng.random() < 0.15 else MAX_TIME - 10 for _ in range(n)]
            if shape.schema == "aitrace.SpanBlock":
                b["start_time"] = [int(rng.choice(_TIMES)) for _ in range(n)]
                b["duration_us"] = [int(rng.choice([-1, 0, 3, 4, 5, 6, 10**6])) for _ in range(n)]
                if rng.random() < 0.1:
                    b["name"] = ["", *b["name"][1:]] if b["name"] else b["name"]
            out.append(b)
    return out


def test_small_blocks_taken_and_refused_as_before(start: Callable[..., Running]) -> None:
    rng = np.random.default_rng(5)
    seen: dict[tuple[str, bool], int] = {}
    for data in fastcolumns_tests._blocks(start):
        writer, reader, offset = AVRO.resolve(data)
        if writer.name == "aitrace.InferenceBlock":
            continue
        block = AVRO.decode_body(data, writer, reader, offset)
        for variant in _variants(B.SHAPES[writer.name], block, rng):
            want = _old_taken(writer.name, variant, MAX_TIME)
            got = B.block_columns(writer.name, variant, MAX_TIME)
            assert (got is not None) == want
            seen[(writer.name, want)] = seen.get((writer.name, want), 0) + 1
    assert set(seen) == {(kind, ok) for kind in ("aitrace.LogBlock", "aitrace.SpanBlock") for ok in (True, False)}


@pytest.mark.parametrize("n", [1, 3, 32, 33, 300])
def test_least_and_greatest_as_numpy_gave_them(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(20):
        values = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
        column = values.tolist()
        got = B.least_greatest(column, values)
        assert got == (int(values.min()), int(values.max()))
        assert all(type(v) is int for v in got)
