"""RateSeries folds a chunk's outcomes a window at a time: the same alerts and state as outcome by outcome."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from aitrace.detect.finding import Finding
from aitrace.detect.service import RateSeries


class _PerOutcome(RateSeries):
    """main's update: one Python step per outcome."""

    def update(self, times_us: Any, flags: Any) -> list[Finding]:
        times = np.asarray(times_us, dtype=np.int64)
        bad = np.asarray(flags, dtype=np.float64)
        w, found, self.clean = self.window, [], 0
        for i, b in enumerate(bad.tolist()):
            self.pending_n += 1
            self.pending_bad += int(b)
            if self.pending_n < w:
                continue
            count, rate = self.pending_bad, self.pending_bad / w
            self.pending_n = self.pending_bad = 0
            if self.base is None:
                self.base, self.clean = rate, self.clean + w
                continue
            limit = self.base + 4.0 * math.sqrt(max(self.base, 1.0 / w) * (1.0 - min(self.base, 0.99)) / w) + 0.02
            if count >= self.min_events and rate > limit:
                found.append(self._finding(self.n_seen + i, int(times[i]), rate, self.base, limit, count))
                self.clean = 0
            else:
                self.base = 0.9 * self.base + 0.1 * rate
                self.clean += w
        self.n_seen += int(bad.size)
        return found


@pytest.mark.parametrize(("window", "min_events"), [(1, 0), (7, 0), (20, 2), (50, 5), (50, 0), (64, 5)])
def test_windows_at_once_equal_outcome_by_outcome(window: int, min_events: int) -> None:
    rng = np.random.default_rng(window + min_events)
    n = 5000
    p = np.where((np.arange(n) // 700) % 3 == 2, 0.5, 0.03)  # bursts of errors between quiet stretches
    flags = (rng.random(n) < p).astype(np.float64)
    times = np.cumsum(rng.integers(1, 5000, n)) + 1_700_000_000_000_000
    new, old = RateSeries(window=window, min_events=min_events), _PerOutcome(window=window, min_events=min_events)
    at, alerts = 0, 0
    while at < n:
        size = int(rng.choice([0, 1, 3, 49, 50, 51, 198, 1000]))
        got, want = (
            new.update(times[at : at + size], flags[at : at + size]),
            old.update(times[at : at + size], flags[at : at + size]),
        )
        assert got == want and new.clean == old.clean and new.to_state() == old.to_state()
        alerts += len(got)
        at += size
        new = RateSeries.from_state(new.to_state())  # as the worker does between chunks, at times
    assert alerts > 0 or window == 1  # a window of one outcome never passes its limit (4 standard errors)


def test_a_state_whose_window_is_overfull_closes_it_at_the_first_outcome() -> None:
    state = {**RateSeries(window=10).to_state(), "pending": [12, 3], "base": 0.0}
    new, old = RateSeries.from_state(state), _PerOutcome.from_state(state)
    old.__class__ = _PerOutcome
    flags = np.zeros(25)
    times = np.arange(25) + 1_700_000_000_000_000
    assert new.update(times, flags) == old.update(times, flags)
    assert new.to_state() == old.to_state()


def test_a_nan_outcome_is_refused_as_before() -> None:
    with pytest.raises(ValueError):
        RateSeries(window=5).update([1, 2], [0.0, math.nan])


def test_flags_that_are_not_zero_or_one_count_as_int_truncates_them() -> None:
    """The running counts are numpy's now: the same truncation as int() on each flag, and huge flags too."""
    rng = np.random.default_rng(4)
    flags = np.round(rng.normal(0.3, 2.0, 3000), 2)
    flags[::500] = 2.0**60  # beyond float64's exact integers: the per-outcome int() path
    times = np.arange(flags.size) + 1_700_000_000_000_000
    new, old = RateSeries(window=50, min_events=0), _PerOutcome(window=50, min_events=0)
    for lo in range(0, flags.size, 137):
        assert new.update(times[lo : lo + 137], flags[lo : lo + 137]) == old.update(
            times[lo : lo + 137], flags[lo : lo + 137]
        )
        assert new.to_state() == old.to_state()
    assert type(new.to_state()["pending"][1]) is int
