"""The level-shift gate's sliding medians equal np.median over each test's windows, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from aitrace.detect.level import _logs, _window_median_gaps
from numba import njit


def _medians(hist: np.ndarray, ends: np.ndarray, recent: int, baseline: int) -> np.ndarray:
    gaps = [np.median(hist[e + 1 - recent : e + 1]) - np.median(hist[e + 1 - recent - baseline : e + 1 - recent])
            for e in ends]  # fmt: skip
    return np.array(gaps)


WINDOWS = [(32, 256, 8), (5, 17, 1), (4, 9, 3), (8, 8, 8), (6, 12, 40)]  # (recent, baseline, stride)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("recent", "baseline", "stride"), WINDOWS)
def test_sliding_medians_match_np_median(seed: int, recent: int, baseline: int, stride: int) -> None:
    rng = np.random.default_rng(seed)
    n = recent + baseline + 300
    hist = rng.normal(size=n)
    if seed % 2:  # ties: repeated values enter and leave the windows
        hist = np.round(hist * 2) / 2
    if seed == 4:  # a step, as a level shift makes
        hist[n // 2 :] += 3.0
    first = recent + baseline - 1 + int(rng.integers(0, stride))
    ends = np.arange(first, n, stride)
    got = _window_median_gaps(hist, ends, recent, baseline)
    np.testing.assert_array_equal(got, _medians(hist, ends, recent, baseline))


def test_uneven_ends_and_one_end() -> None:
    rng = np.random.default_rng(9)
    hist = np.log(rng.gamma(4, 5, 600))
    ends = np.array([300, 301, 305, 340, 341, 599])
    np.testing.assert_array_equal(_window_median_gaps(hist, ends, 32, 256), _medians(hist, ends, 32, 256))
    one = np.array([450])
    np.testing.assert_array_equal(_window_median_gaps(hist, one, 32, 256), _medians(hist, one, 32, 256))


def test_logs_are_math_log_bit_for_bit() -> None:
    """The windows of saved states hold math.log's values; np.log differs from it in the last bit."""
    x = np.exp(np.random.default_rng(3).uniform(-700.0, 700.0, 200_000))
    x = np.concatenate([x, [5e-324, 1e-300, 1.0, 2.0, 1.7e308]])
    np.testing.assert_array_equal(_logs(x), np.array([math.log(v) for v in x.tolist()]))


@njit(cache=False)
def _old_replace_sorted(s: np.ndarray, old: float, new: float) -> None:
    """The window update before the counted one (the parity reference), walking a step at a time."""
    i = np.searchsorted(s, old)
    if new >= old:
        while i + 1 < s.size and s[i + 1] < new:
            s[i] = s[i + 1]
            i += 1
    else:
        while i > 0 and s[i - 1] > new:
            s[i] = s[i - 1]
            i -= 1
    s[i] = new


@njit(cache=False)
def _old_window_median_gaps(hist: np.ndarray, ends: np.ndarray, recent: int, baseline: int) -> np.ndarray:
    out = np.empty(ends.size)
    rec = np.empty(recent)
    base = np.empty(baseline)
    prev = -1
    for k in range(ends.size):
        e = ends[k] + 1
        if prev < 0 or e - prev >= recent:
            rec[:] = np.sort(hist[e - recent : e])
            base[:] = np.sort(hist[e - recent - baseline : e - recent])
        else:
            for j in range(prev, e):
                _old_replace_sorted(rec, hist[j - recent], hist[j])
                _old_replace_sorted(base, hist[j - recent - baseline], hist[j - recent])
        prev = e
        s, b = rec.size >> 1, base.size >> 1
        med_rec = (rec[s - 1] + rec[s]) / 2 if rec.size % 2 == 0 else rec[s]
        med_base = (base[b - 1] + base[b]) / 2 if base.size % 2 == 0 else base[b]
        out[k] = med_rec - med_base
    return out


def _hist(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    """Log latencies, ties of every kind (two values, one value), a step, a ramp and its reverse."""
    if kind == 0:
        return np.log(rng.gamma(4, 5, n))
    if kind == 1:
        return rng.integers(0, 2, n).astype(np.float64)  # most replacements swap a value for its equal
    if kind == 2:
        return np.full(n, 1.25)
    if kind == 3:
        return np.concatenate([rng.normal(size=n // 2), rng.normal(size=n - n // 2) + 4.0])
    if kind == 4:
        return np.arange(n, dtype=np.float64)  # every new value is the window's largest
    if kind == 5:
        return -np.arange(n, dtype=np.float64)  # and here its smallest
    return np.round(rng.normal(size=n) * 3) / 3


@pytest.mark.parametrize("kind", range(7))
@pytest.mark.parametrize("seed", range(8))
def test_counted_window_update_matches_the_walked_one(kind: int, seed: int) -> None:
    """The kernel with counted places gives the old kernel's numbers bit for bit: random window sizes,
    strides and ends (a gap of a whole window or more sorts afresh, a smaller one slides)."""
    rng = np.random.default_rng(100 * kind + seed)
    recent = int(rng.integers(2, 40))
    baseline = int(rng.integers(recent, 300))
    n = recent + baseline + int(rng.integers(1, 400))
    hist = _hist(rng, kind, n)
    first = recent + baseline - 1
    steps = rng.integers(1, 2 * recent + 2, size=n)  # some below a window, some past it
    ends = np.minimum(first + np.cumsum(np.concatenate([[0], steps])), n - 1)
    ends = np.unique(ends).astype(np.int64)
    np.testing.assert_array_equal(
        _window_median_gaps(hist, ends, recent, baseline), _old_window_median_gaps(hist, ends, recent, baseline)
    )
    np.testing.assert_array_equal(
        _window_median_gaps(hist, ends, recent, baseline), _medians(hist, ends, recent, baseline)
    )
