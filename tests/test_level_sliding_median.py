"""The level-shift gate's sliding medians equal np.median over each test's windows, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from aitrace.detect.level import _logs, _window_median_gaps


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
