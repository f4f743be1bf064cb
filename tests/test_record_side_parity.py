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
import test_fastcolumns as fastcolumns_tests
import test_inference_blocks as inference
from aitrace.processors import fastcolumns as F
from aitrace.processors.block_columns import block_columns
from aitrace.processors.chunk_wire import pack_chunk
from aitrace.processors.chunks import _feature_columns, _join_model_chunks, _model_columns, column_chunks, share_axes
from aitrace.processors.fastcolumns import _doubles, decode_columns, long_column
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


def _old_column_chunks(blocks: list[Any]) -> dict[str, Any]:
    """chunks.column_chunks before a block of one model skipped np.unique."""
    chunks: dict[str, Any] = {}
    for columns in blocks:
        if columns.kind != "aitrace.InferenceRecord":
            continue
        index = long_column(columns.block, columns.arrays, "model_name_index")
        models, first = np.unique(index, return_index=True)
        for m in models[np.argsort(first, kind="stable")]:
            rows = np.flatnonzero(index == m)
            key = f"model/{columns.block['model_name'][m]}"
            part = _model_columns(columns, columns.block["model_name"][m], rows)
            chunks[key] = part if key not in chunks else _join_model_chunks(chunks[key], part)
    return chunks


@pytest.mark.parametrize("models", [[0, 0, 0, 0], [0], [1, 1, 0, 1], [2, 0, 1, 0], [0, 1, 0, 1]])
def test_model_chunks_of_a_block_as_before(models: list[int], start: Callable[..., Running]) -> None:
    """One model or several (in any order of first rows, one model's rows apart): the same chunks, keys in the
    same order, packed to the same bytes; with a block of the clients beside it (joined into its chunk)."""
    n = len(models)
    times = [1_700_000_000_000_000 + i for i in range(n)]
    fields = {"time": times, "span_index": [0] * n, "request_id": [f"r{i}" for i in range(n)],
              "latency_ms": [float(i + 1) for i in range(n)], "model_name": ["m", "n", "o"][: max(models) + 1],
              "model_name_index": models, "status_index": [0] * n, "prediction_index": [-1] * n,
              "features": {"x": [float(i) for i in range(n)]}}  # fmt: skip
    data = inference._encoded(inference._block(**fields))
    decoded = [data, *_client_blocks(start)[:2]]
    blocks = []
    for value in decoded:
        writer, _reader, offset = AVRO.resolve(value)
        found = decode_columns(writer.name, value, offset)
        assert found is not None
        taken = block_columns(writer.name, found[0], 2**62, found[1])
        assert taken is not None
        blocks.append(taken)
    for some in (blocks[:1], blocks):
        got, want = column_chunks(some), _old_column_chunks(some)
        assert list(got) == list(want)
        assert [pack_chunk(share_axes(c)) for c in got.values()] == [pack_chunk(share_axes(c)) for c in want.values()]


def _old_column_arrays(
    names: tuple[str, ...], codes: list[int], tok: list[int], read: tuple[np.ndarray, np.ndarray],
    strs: list[str | None], ent: list[int],
) -> dict[str, Any]:  # fmt: skip
    """fastcolumns._column_arrays, the second pass over the fields that _fields now makes in its own."""
    longs, doubles = read
    out: dict[str, Any] = {}
    for i, (name, code) in enumerate(zip(names, codes, strict=True)):
        a, b = tok[2 * i], tok[2 * i + 1]
        if code == F.ARR_LONG:
            out[name] = longs[a : a + b]
        elif code in (F.ARR_DOUBLE, F.ARR_OPT_DOUBLE):
            out[name] = doubles[a : a + b]
        elif code == F.MAP_ARR_OPT_DOUBLE:
            entries = range(3 * a, 3 * (a + b), 3)
            out[name] = {strs[ent[j]]: doubles[ent[j + 1] : ent[j + 1] + ent[j + 2]] for j in entries}
    return out


def _old_arrays(data: bytes) -> dict[str, Any]:
    """decode_columns' arrays as the code before made them, from the same walk."""
    writer, _reader, offset = AVRO.resolve(data)
    found = F.layout(writer.name)
    assert found is not None
    names, codes = found
    buf, room = np.frombuffer(data, dtype=np.uint8), len(data) - offset + 1
    tok = np.zeros(2 * len(codes), dtype=np.int64)
    iv, fp = np.empty(room, dtype=np.int64), np.empty(room, dtype=np.int64)
    sv, ent = np.empty(2 * room, dtype=np.int64), np.empty(3 * room, dtype=np.int64)
    cnt, ascii = np.zeros(4, dtype=np.int64), np.ones(1, dtype=np.int64)
    assert F._walk(buf, offset, codes, tok, iv, fp, sv, ent, cnt, ascii) == len(data)
    strs = F._strings(data, sv[: 2 * cnt[F._S]].tolist(), bool(ascii[0]))
    _, read = F._doubles(buf, fp[: cnt[F._F]])
    read_all = (iv[: cnt[F._I]], read)
    return _old_column_arrays(names, codes.tolist(), tok.tolist(), read_all, strs, ent[: 3 * cnt[F._E]].tolist())


def _same_arrays(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same_arrays(a[k], b[k]) for k in a)
    return (a.dtype, a.shape, a.tobytes()) == (b.dtype, b.shape, b.tobytes()) and not a.flags.writeable


def test_one_pass_over_the_fields_gives_the_arrays_the_second_pass_gave(start: Callable[..., Running]) -> None:
    """Inference, log and span blocks of the clients (NaN, absent and categorical features, maps of strings):
    the block's arrays, from the pass that builds its dict, are those the separate pass made, in the same order."""
    records = fastcolumns_tests._blocks(start) + _client_blocks(start)
    kinds = set()
    for data in records:
        writer, _reader, offset = AVRO.resolve(data)
        found = decode_columns(writer.name, data, offset)
        if found is None:
            continue
        kinds.add(writer.name)
        assert _same_arrays(found[1], _old_arrays(data))
    assert kinds == {"aitrace.InferenceBlock", "aitrace.LogBlock", "aitrace.SpanBlock"}
