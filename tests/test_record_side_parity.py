"""Cheaper steps of an inference block's way to its model chunk give what the code they replaced gave
(kept here as the reference): a block's doubles read from their bytes (fastcolumns._doubles) bit for bit,
NaN payloads, -0.0 and missing values included, and a block's feature columns (chunks._feature_columns)
with the same values, NaN where a record lacks a feature, names in the same order."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pytest
import test_inference_blocks as inference
from aitrace.processors.block_columns import block_columns
from aitrace.processors.chunk_wire import pack_chunk
from aitrace.processors.chunks import _feature_columns, column_chunks, share_axes
from aitrace.processors.fastcolumns import _doubles, decode_columns
from aitrace.producers.client import default_processors
from aitrace.producers.config import Settings
from aitrace.schemas.codec import AvroDeserializer
from test_exporter import Running, start

__all__ = ["start"]  # the fixture, imported
AVRO = AvroDeserializer()


def _old_doubles(buf: np.ndarray, positions: np.ndarray) -> list[float | None]:
    present = positions >= 0
    values = np.empty(len(positions), dtype=np.float64)
    at = positions[present]
    values[present] = buf[at[:, None] + np.arange(8)].view("<f8").ravel() if len(at) else []
    out = cast("list[float | None]", values.tolist())
    for k in np.flatnonzero(~present).tolist():
        out[k] = None
    return out


def _bits(values: list[float | None]) -> list[bytes | None]:
    return [None if v is None else struct.pack("<d", v) for v in values]


@pytest.mark.parametrize("seed", range(4))
def test_doubles_read_bit_for_bit_as_before(seed: int) -> None:
    rng = np.random.default_rng(seed)
    odd = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1e308, -1.5]
    raw = b"".join(struct.pack("<d", v) for v in odd) + rng.bytes(8 * 300)  # random bytes: NaN payloads too
    raw += struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF)  # a quiet NaN with a payload
    buf = np.frombuffer(b"\x01\x02\x03" + raw, dtype=np.uint8)  # doubles off 8-byte alignment
    positions = 3 + 8 * np.arange(len(raw) // 8, dtype=np.int64)
    positions[rng.random(positions.size) < 0.2] = -1  # missing values
    rng.shuffle(positions)
    values, read = _doubles(buf, positions)
    assert _bits(values) == _bits(_old_doubles(buf, positions))
    # the array is what np.asarray makes of the list (a None: its NaN), NaN payloads and -0.0 kept
    assert read.dtype == np.float64 and read.tobytes() == np.asarray(values, dtype=np.float64).tobytes()
    assert not read.flags.writeable  # views of it go to the block's callers: none may change another's column
    assert _doubles(buf, positions[:0])[0] == []


def _old_feature_columns(features: dict[str, list[float | None]], rows: np.ndarray) -> dict[str, np.ndarray]:
    found: list[tuple[int, str, np.ndarray]] = []
    for name, column in features.items():
        values = np.asarray(column, dtype=object)[rows] if None in column else None
        if values is None:
            found.append((0, name, np.asarray(column, dtype=np.float64)[rows]))
            continue
        present = np.flatnonzero(values != None)  # noqa: E711
        if len(present):
            aligned = np.full(len(rows), math.nan)
            aligned[present] = values[present].astype(np.float64)
            found.append((int(present[0]), name, aligned))
    found.sort(key=lambda f: f[0])
    return {name: values for _, name, values in found}


def _column(rng: np.random.Generator, n: int, none: float, nan: float) -> list[float | None]:
    values: list[float | None] = rng.normal(size=n).tolist()
    for i in range(n):
        r = rng.random()
        values[i] = None if r < none else math.nan if r < none + nan else values[i]
    return values


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(x.tobytes() == y.tobytes() for x, y in zip(a.values(), b.values(), strict=True))


@pytest.mark.parametrize("seed", range(6))
def test_feature_columns_as_before(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    features: dict[str, Any] = {
        "plain": _column(rng, n, 0.0, 0.0),
        "nan": _column(rng, n, 0.0, 0.1),
        "late": [None] * 30 + _column(rng, n - 30, 0.0, 0.0),  # first met by a later record: put after
        "gaps": _column(rng, n, 0.2, 0.0),
        "both": _column(rng, n, 0.2, 0.2),
        "never": [None] * n,
        "ints": list(range(n)),
    }
    arrays = {"features": {name: np.asarray(column, dtype=np.float64) for name, column in features.items()}}
    for rows in (np.arange(n), np.sort(rng.choice(n, 25, replace=False)), np.arange(40, n), np.arange(0)):
        want = _old_feature_columns(features, rows)
        assert _same(_feature_columns({"features": features}, {}, rows), want), rows  # fastavro's block: lists
        assert _same(_feature_columns({"features": features}, arrays, rows), want), rows  # with the read arrays


def test_blocks_read_with_their_arrays_make_the_chunks_their_lists_made(start: Callable[..., Running]) -> None:
    """The clients' blocks (NaN, absent and categorical features, errors, confidences): decode_columns' arrays
    (long and double columns) are np.asarray of decode_block's lists bit for bit, and a model chunk cut with
    them packs to the same bytes as one cut from the lists alone (as fastavro's dict has no arrays)."""
    records = _client_blocks(start)
    taken = 0
    for data in records:
        writer, _reader, offset = AVRO.resolve(data)
        found = decode_columns(writer.name, data, offset)
        assert found is not None
        block, arrays = found
        for name, held in arrays.items():
            lists = block[name] if isinstance(held, np.ndarray) else None
            pairs = [(held, lists)] if lists is not None else [(held[k], block[name][k]) for k in held]
            for array, column in pairs:
                ints = all(isinstance(v, int) for v in column)  # a long column (or an empty one)
                assert array.dtype == (np.int64 if ints and column else np.float64) or not column
                assert array.tobytes() == np.asarray(column, dtype=array.dtype).tobytes()
                assert not array.flags.writeable
        assert {"time", "span_index", "status_index", "model_name_index", "latency_ms"} <= set(arrays)
        with_arrays = block_columns(writer.name, block, 2**62, arrays)
        lists_only = block_columns(writer.name, block, 2**62)
        assert (with_arrays is None) == (lists_only is None)
        if with_arrays is None or lists_only is None:
            continue
        got, want = column_chunks([with_arrays]), column_chunks([lists_only])
        assert list(got) == list(want)
        for key in got:
            taken += 1
            assert pack_chunk(share_axes(got[key])) == pack_chunk(share_axes(want[key]))
    assert taken >= 3


def _client_blocks(start: Callable[..., Running]) -> list[bytes]:
    running = start(default_processors(Settings(service="unit"))[0])
    inference._queue(running, 300, odd=True, secret=True)  # NaN, absent and categorical features, errors
    running.flush()
    records = [r.value for r in running.transport.records]
    extra = inference._block(features={"x": [1.0, None], "y": [None, float("nan")]}, confidence=[0.5, None])
    return [*records, inference._encoded(extra)]
