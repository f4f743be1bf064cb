"""LevelShiftDetector: a sustained change of a positive series' median, reported once."""

from __future__ import annotations

import numpy as np
import pytest
from aitrace.detect import LevelShiftDetector
from aitrace.detect.level import LatencyShiftMonitor


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


def _requests(seconds: float, rate: float, seed: int, median: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Request times (µs) at ``rate`` per second and heavy-tailed latencies."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    times = (np.cumsum(rng.exponential(1.0 / rate, n)) * 1e6).astype(np.int64)
    return times, _latency(n, seed + 100, median=median)


def test_a_sharp_rise_is_found_within_a_few_dozen_requests() -> None:
    times, lat = _requests(120, 30, 1)
    lat[3000:] *= 12  # a backing store went from 5 ms to 60 ms
    [shift] = LatencyShiftMonitor().update(times, lat)
    assert 3000 < shift.index <= 3032 and shift.ratio > 6


def test_a_one_second_blip_is_not_an_incident_but_a_minute_long_rise_is() -> None:
    times, lat = _requests(600, 30, 2)
    seconds = (times - times[0]) / 1e6
    blips = lat.copy()
    for start in range(120, 560, 40):  # contention: 2x slower for one second, every 40 s
        blips[(seconds >= start) & (seconds < start + 1)] *= 2
    assert LatencyShiftMonitor().update(times, blips) == []
    sustained = lat.copy()
    sustained[seconds >= 300] *= 2
    [shift] = LatencyShiftMonitor().update(times, sustained)
    found_at = (times[shift.index] - times[0]) / 1e6
    assert 300 < found_at < 340 and 1.5 <= shift.ratio <= 2.6


@pytest.mark.parametrize("chunk", [1, 50, 977])
def test_latency_monitor_in_chunks_with_its_state_gives_the_same_shifts(chunk: int) -> None:
    times, lat = _requests(400, 20, 3)
    lat[(times - times[0]) >= 200e6] *= 2.2
    lat[5000:5040] *= 10
    whole = LatencyShiftMonitor().update(times, lat)
    mon, pieces = LatencyShiftMonitor(), []
    for lo in range(0, lat.size, chunk):
        mon = LatencyShiftMonitor.from_state(mon.to_state())
        pieces += mon.update(times[lo : lo + chunk], lat[lo : lo + chunk])
    assert pieces == whole and whole
