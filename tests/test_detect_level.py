"""LevelShiftDetector: a sustained change of a positive series' median, reported once."""

from __future__ import annotations

import numpy as np
import pytest
from aitrace.detect import LevelShiftDetector


def _latency(n: int, seed: int, median: float = 40.0, sigma: float = 0.6) -> np.ndarray:
    """Heavy-tailed (log-normal) latencies, as a real service's are."""
    return np.exp(np.random.default_rng(seed).normal(np.log(median), sigma, n))


def test_a_doubled_median_is_reported_once_within_a_window_and_becomes_the_new_normal() -> None:
    x = _latency(1200, 0)
    x[400:] *= 2.0
    det = LevelShiftDetector(direction="up")
    [shift] = det.update(x)
    assert 400 < shift.index <= 400 + 32 and 1.5 <= shift.ratio <= 3.0 and shift.z >= 5
    assert shift.baseline_median < shift.recent_median
    assert "rose" in shift.describe("latency (ms)") and "-> " in shift.describe("latency (ms)")


@pytest.mark.parametrize("seed", range(20))
def test_stationary_heavy_tailed_series_raise_nothing(seed: int) -> None:
    det = LevelShiftDetector(direction="both")
    assert det.update(_latency(3000, seed, sigma=1.0)) == []


def test_direction_up_ignores_a_fall_and_down_ignores_a_rise() -> None:
    x = _latency(800, 3)
    x[400:] /= 3.0
    assert LevelShiftDetector(direction="up").update(x) == []
    [fall] = LevelShiftDetector(direction="down").update(x)
    assert fall.ratio < 1 and fall.z < 0 and "fell" in fall.describe("x")
    y = _latency(800, 4)
    y[400:] *= 3.0
    assert LevelShiftDetector(direction="down").update(y) == []


def test_a_small_move_of_the_median_is_not_reported_however_certain() -> None:
    x = _latency(4000, 5, sigma=0.05)  # very quiet: a 20% move is far beyond chance
    x[2000:] *= 1.2
    assert LevelShiftDetector().update(x) == []


@pytest.mark.parametrize("chunk", [1, 7, 37, 500])
def test_chunked_input_and_state_round_trips_give_the_same_findings(chunk: int) -> None:
    x = _latency(1500, 6)
    x[600:] *= 2.5
    x[1100:] *= 3.0
    x[50] = np.nan  # skipped, but counted in the index
    x[60] = -1.0
    whole = LevelShiftDetector().update(x)
    det = LevelShiftDetector()
    pieces = []
    for i in range(0, x.size, chunk):
        det = LevelShiftDetector.from_state(det.to_state())
        pieces += det.update(x[i : i + chunk])
    assert pieces == whole and len(whole) == 2
    assert det.n_seen == x.size and det.n_accepted == x.size - 2


def test_bad_parameters_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="direction"):
        LevelShiftDetector(direction="sideways")
    with pytest.raises(ValueError, match="recent"):
        LevelShiftDetector(recent=64, min_baseline=32)
    with pytest.raises(ValueError, match="min_ratio"):
        LevelShiftDetector(min_ratio=1.0)
