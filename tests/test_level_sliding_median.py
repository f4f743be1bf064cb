"""The level-shift gate's sliding medians equal np.median over each test's windows, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from aitrace.detect.level import LevelShift, LevelShiftDetector, _logs, _window_median_gaps
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


class _OldGate(LevelShiftDetector):
    """The detector as it gated its tests before _gated_tests (numpy, a call per step): the parity reference."""

    def _run(self, logs: np.ndarray, done: int, where: np.ndarray, seen: int) -> tuple[int, LevelShift | None]:
        p = self.params
        todo = logs[done:]
        first = p["stride"] - self.n_accepted % p["stride"]
        if first > todo.size:
            self._push(todo)
            return logs.size, None
        held = self.baseline.size + self.recent.size
        hist = np.concatenate((self.baseline, self.recent, todo))
        tests = np.arange(first, todo.size + 1, p["stride"])
        ends = held + tests - 1
        gates = np.ones(tests.size, dtype=bool)
        full = ends - p["recent"] + 1 >= p["baseline"]
        if full.any():
            log_ratio = _old_window_median_gaps(hist, ends[full], p["recent"], p["baseline"])
            step = math.log(p["min_ratio"])
            rises = (log_ratio >= step) & (p["direction"] != "down")
            gates[full] = rises | ((log_ratio <= -step) & (p["direction"] != "up"))
        pushed = 0
        for j in tests[gates].tolist():
            self._push(todo[pushed:j])
            pushed = j
            self.n_seen = seen + int(where[done + j - 1]) + 1
            shift = self._test()
            if shift is not None:
                return done + j, shift
        self._push(todo[pushed:])
        return logs.size, None


def _latencies(rng: np.random.Generator, n: int) -> np.ndarray:
    """Latencies with steps up and down, NaN, inf, zeros and negatives (not accepted), ties."""
    x = rng.gamma(4.0, 5.0, n)
    for at in rng.integers(0, n, size=4):
        x[at:] *= float(rng.choice([0.2, 0.5, 1.6, 3.0, 8.0]))
    if rng.random() < 0.5:
        x = np.round(x)  # ties, and zeros
    bad = rng.random(n)
    x[bad < 0.03] = np.nan
    x[(bad >= 0.03) & (bad < 0.04)] = -1.0
    x[(bad >= 0.04) & (bad < 0.045)] = np.inf
    return x


@pytest.mark.parametrize("seed", range(24))
def test_gated_tests_give_the_old_gates_findings_and_state(seed: int) -> None:
    """Same shifts (every field) and the same saved state after every chunk: random directions, ratios,
    windows and strides, chunks of 0, 1 and up to 400 values, state round trips between some."""
    rng = np.random.default_rng(seed)
    recent = int(rng.integers(2, 40))
    params = {
        "recent": recent,
        "min_baseline": (mb := int(rng.integers(recent, 3 * recent + 2))),
        "baseline": int(rng.integers(mb, 300)),
        "min_ratio": float(rng.choice([1.05, 1.5, 3.0])),
        "min_z": float(rng.choice([1.0, 5.0])),
        "direction": str(rng.choice(["up", "down", "both"])),
        "stride": int(rng.integers(1, 2 * recent)),
    }
    new, old = LevelShiftDetector(**params), _OldGate(**params)
    x = _latencies(rng, 3000)
    cuts = np.sort(rng.integers(0, x.size, size=30))
    found = 0
    for chunk in np.split(x, np.concatenate([cuts, cuts[:3]])):  # the repeated cuts: empty chunks
        got, want = new.update(chunk), old.update(chunk)
        assert got == want
        found += len(got)
        assert new.to_state() == old.to_state()
        if rng.random() < 0.3:
            new = LevelShiftDetector.from_state(new.to_state())
    assert found or params["min_ratio"] == 3.0 or params["direction"] == "down"  # mostly something to get wrong


@pytest.mark.parametrize("direction", ["up", "down", "both"])
def test_a_median_moved_by_exactly_the_ratio_passes_the_gate_as_before(direction: str) -> None:
    """A step of exactly ``min_ratio`` (log 1 is 0, so the gap is math.log(min_ratio) to the bit) is tested."""
    ratio = 1.5
    low, high = (1.0, ratio) if direction != "down" else (ratio, 1.0)
    x = np.concatenate([np.full(300, low), np.full(100, high)])
    new = LevelShiftDetector(direction=direction, min_ratio=ratio, min_z=1.0)
    old = _OldGate(direction=direction, min_ratio=ratio, min_z=1.0)
    got = new.update(x)
    assert got == old.update(x)
    assert len(got) == 1 and abs(math.log(got[0].ratio)) == pytest.approx(math.log(ratio))
