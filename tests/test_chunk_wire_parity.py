"""pack_chunk / unpack_chunk, one loop per dict instead of a call per value, write the same bytes and read
the same chunks as the code they replaced (kept here as the reference), and refuse the same bad records
with the same words."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
import synth as S
from aitrace.processors.chunk_wire import pack_chunk, unpack_chunk
from aitrace.processors.chunks import extract_chunks, share_axes
from aitrace.processors.decode import RecordDecoder
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline
from aitrace.schemas.metric_block import MetricBlock

_MAGIC = b"AC1"
_LEN = struct.Struct("<I")


def _old_pack(chunk: dict[str, Any]) -> bytes:
    buffers: list[bytes] = []
    offset = 0

    def walk(node: Any) -> Any:
        nonlocal offset
        if isinstance(node, np.ndarray):
            arr = np.ascontiguousarray(node)
            raw = arr.tobytes()
            buffers.append(raw)
            ref = {"__nd": [arr.dtype.str, offset, int(arr.size)]}
            offset += len(raw)
            return ref
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node

    header = orjson.dumps(walk(chunk), option=orjson.OPT_SERIALIZE_NUMPY)
    return _MAGIC + _LEN.pack(len(header)) + header + b"".join(buffers)


def _old_unpack(data: bytes) -> dict[str, Any]:
    if data[:3] != _MAGIC:
        raise ValueError(f"not a series chunk (first bytes {data[:3]!r})")
    (n,) = _LEN.unpack_from(data, 3)
    base = 7 + n
    header = orjson.loads(data[7:base])
    end = 0

    def walk(node: Any) -> Any:
        nonlocal end
        if isinstance(node, dict):
            ref = node.get("__nd")
            if ref is not None and len(node) == 1:
                dtype, off, count = ref
                if off != end or count < 0:
                    raise ValueError(f"series chunk array at {off} (count {count}): the next starts at {end}")
                array = np.frombuffer(data, dtype=dtype, count=count, offset=base + off).copy()
                end += array.nbytes
                return array
            return {k: walk(v) for k, v in node.items()}
        return node

    chunk = walk(header)
    if base + end != len(data):
        raise ValueError(f"series chunk of {len(data)} bytes: its arrays end at {base + end}")
    return chunk


def _same(a: Any, b: Any) -> bool:
    """Equal values, keys in the same order, arrays of the same dtype, shape and bytes, each its own
    writable copy."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and (a.dtype, a.shape, a.tobytes()) == (b.dtype, b.shape, b.tobytes())
            and a.flags.writeable
            and a.flags.owndata == b.flags.owndata
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _model_chunks() -> list[dict[str, Any]]:
    """Model chunks as the worker cuts them from client blocks and single events (several models)."""
    rng = np.random.default_rng(3)
    pipe = Pipeline(WorkerOptions(index=False), decoder=RecordDecoder())
    out = []
    tr, root = S.trace_id(), S.span_id()
    events = [
        S.event(
            S.inference(f"q{j}", f"m{j % 3}", float(rng.gamma(4, 5)), features={"a": float(rng.normal()), "b": 1.0}),
            trace=tr,
            parent=root,
            service="svc",
            time_us=S.now_us() + j,
        )
        for j in range(50)
    ]
    for offset, value in enumerate([S.encode(S.batch(events))]):
        for _key, packed in pipe.process_record(
            value, key=None, topic="t", partition=0, offset=offset, traces={}, now=0.0
        ).chunks:
            out.append(_old_unpack(packed))
    assert len(out) == 3
    return out


def _run_chunks() -> list[dict[str, Any]]:
    rng = np.random.default_rng(2)
    train = S.metric_block(trace="a" * 32, run_id="r", start_step=0, series={m: rng.normal(size=30) for m in "xyz"})
    val = S.metric_block(trace="a" * 32, run_id="r", start_step=0, series={"x": rng.normal(size=3)}, split="val")
    blocks = [MetricBlock.from_record(b) for b in (train, val)]
    return [share_axes(c) for c in extract_chunks([], blocks).values()]


def _odd_chunks() -> list[dict[str, Any]]:
    """Arrays not contiguous, of other dtypes and byte orders, empty, 0-d and 2-d, at several depths;
    lists, None and strings beside them; a dict that looks like a reference but has more keys."""
    grid = np.arange(24, dtype=np.float64).reshape(4, 6)
    return [
        {},
        {"a": grid[:, ::2], "b": grid.T, "c": grid[1]},
        {"x": np.arange(5, dtype=">i4"), "y": np.array([True, False]), "z": np.array(3.5), "w": np.empty(0)},
        {"n": {"m": {"k": np.arange(3, dtype=np.int8), "l": [1, 2.5, None, "s"]}}, "u": np.arange(2, dtype=np.uint16)},
        {"__nd": ["<f8", 0, 0], "other": 1, "v": np.ones(2)},
        {"s": "text", "f": 1.5, "i": -3, "t": True, "none": None, "lst": [[1], {"__nd": 1}]},
    ]


@pytest.mark.parametrize("source", ["model", "run", "odd"])
def test_the_same_bytes_and_the_same_chunks_as_before(source: str) -> None:
    chunks = {"model": _model_chunks, "run": _run_chunks, "odd": _odd_chunks}[source]()
    for chunk in chunks:
        packed = pack_chunk(chunk)
        assert packed == _old_pack(chunk)
        back, old = unpack_chunk(packed), _old_unpack(packed)
        assert _same(back, old)


def test_unpacked_arrays_are_copies_of_their_own() -> None:
    packed = pack_chunk({"a": np.arange(4.0), "b": {"c": np.arange(3)}})
    back = unpack_chunk(packed)
    back["a"][0] = 9.0
    back["b"]["c"][0] = 9
    again = unpack_chunk(packed)
    assert again["a"][0] == 0.0 and again["b"]["c"][0] == 0


def _record(header: Any, tail: bytes = b"") -> bytes:
    raw = orjson.dumps(header)
    return _MAGIC + _LEN.pack(len(raw)) + raw + tail


@pytest.mark.parametrize(
    "data",
    [
        b"XY1" + b"\0" * 10,
        _record({"a": {"__nd": ["<f8", 8, 1]}}, b"\0" * 16),  # not back to back
        _record({"a": {"__nd": ["<f8", 0, -1]}}, b""),
        _record({"a": {"__nd": ["<f8", 0, 1]}, "b": {"__nd": ["<f8", 0, 1]}}, b"\0" * 8),  # the same bytes twice
        _record({"a": {"__nd": ["<f8", 0, 1]}}, b"\0" * 9),  # bytes past the arrays
        _record({"a": {"__nd": ["<f8", 0, 2]}}, b"\0" * 8),  # past the end
        _record({"a": 1}, b"\0"),
        _record([1, {"__nd": ["<f8", 0, 1]}]),  # not a dict: no array read, the bytes said
        _record({"__nd": ["<i2", 0, 1]}, b"\1\0"),  # the chunk is one array
    ],
)
def test_bad_records_refused_as_before(data: bytes) -> None:
    def outcome(unpack: Any) -> Any:
        try:
            return ("ok", unpack(data))
        except (ValueError, TypeError) as exc:
            return (type(exc), str(exc))

    new, old = outcome(unpack_chunk), outcome(_old_unpack)
    assert new[0] == old[0]
    assert _same(new[1], old[1]) if new[0] == "ok" else new == old
