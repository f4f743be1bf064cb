"""The fast decoder's scalar varint reader agrees with its jitted array reader, bytes for bytes."""

from __future__ import annotations

import numpy as np
import pytest
from aitrace.processors.fastblock import _NotFast, _Reader, _varints


def _jitted(data: bytes, pos: int) -> tuple[int, int] | None:
    out = np.empty(1, dtype=np.int64)
    end = _varints(np.frombuffer(data, dtype=np.uint8), pos, 1, out, 0)
    return None if end < 0 else (int(out[0]), end)


def _python(data: bytes, pos: int) -> tuple[int, int] | None:
    r = _Reader(data, pos)
    try:
        return r.long(), r.pos
    except _NotFast:
        return None


def _zigzag(n: int) -> bytes:
    z, out = (n << 1) ^ (n >> 63), bytearray()
    z &= (1 << 64) - 1
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    return bytes([*out, z])


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, 2**31, -(2**31), 2**55, 2**62 - 1, -(2**62), 2**63 - 1, -(2**63)])
def test_values(n: int) -> None:
    data = b"\x07" + _zigzag(n) + b"\x00"
    assert _python(data, 1) == _jitted(data, 1)
    if len(_zigzag(n)) <= 9:  # 10-byte varints are fastavro's (both readers refuse them)
        assert _python(data, 1) == (n, 1 + len(_zigzag(n)))


def test_malformed_and_random_bytes() -> None:
    rng = np.random.default_rng(3)
    cases = [b"", b"\x80", b"\xff" * 12, b"\x80" * 9 + b"\x01"]
    cases += [rng.integers(0, 256, rng.integers(0, 12)).astype(np.uint8).tobytes() for _ in range(2000)]
    cases += [bytes([0x80 | int(b) for b in rng.integers(0, 128, k)]) + b"\x05" for k in range(12)]
    for data in cases:
        assert _python(data, 0) == _jitted(data, 0), data.hex()
