"""Cheaper steps of an inference block's way to its model chunk give what the code they replaced gave
(kept here as the reference): a block's doubles read from their bytes (fastcolumns._doubles) bit for bit,
NaN payloads, -0.0 and missing values included, and a block's feature columns (chunks._feature_columns)
with the same values, NaN where a record lacks a feature, names in the same order."""

from __future__ import annotations

import math
import struct
from typing import Any, cast

import numpy as np
import pytest
from aitrace.processors.chunks import _feature_columns
from aitrace.processors.fastcolumns import _doubles


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
    assert _bits(_doubles(buf, positions)) == _bits(_old_doubles(buf, positions))
    assert _doubles(buf, positions[:0]) == []


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
    for rows in (np.arange(n), np.sort(rng.choice(n, 25, replace=False)), np.arange(40, n), np.arange(0)):
        got, want = _feature_columns(features, rows), _old_feature_columns(features, rows)
        assert _same(got, want), rows
