"""Daily and weekly cycles: find a series' own period, then judge each point against its phase.

The idea
--------
Service telemetry often follows the clock: traffic, latency and water flow are higher in
the day than at night and lower at weekends. Against its recent level alone, every
morning's ramp is a level shift and a quiet night looks like a drop; against the same
hour of earlier days it is normal, and a night at daytime levels is what stands out.

:class:`CycleModel` keeps hourly means of the series (at most three weeks of them, 504
floats) and, once a day of new hours has come in, asks how much of the series a cycle of
one day, or one week, explains. The series is cut into cycles (rows) of the candidate
period; each row's median is its own level (so a slow trend or a step between days is not
taken for a cycle), the median over rows of each phase is the profile, and the strength is

    1 - var(residual) * c / (c - 1) / var(centred rows)

with robust variances (MAD squared) and ``c`` the number of cycles (the factor undoes the
profile fitting the noise of only ``c`` rows). A candidate needs ``min_cycles`` cycles of
history; weekly wins over daily only when it explains clearly more (``min_gain``), as a
weekly profile also contains the daily one. :meth:`offset` is the profile at a time,
interpolated linearly between hours; the caller subtracts it before scoring, so a point is
compared with the same phase of previous cycles rather than with the recent level. The
profile is re-estimated once a day from the last ``min_cycles`` or more cycles (medians: one
bad day does not move it much), and a cycle that fades (strength below half the threshold)
is dropped.

How the defaults were chosen
----------------------------
``min_cycles=3``: with two cycles the median profile is the mean of two rows and fits
their noise; three is the least that gives a median. ``min_strength=0.5``: half the
centred variance explained by the phase. On real data (``bench/bench_realdata.py``):
river's WaterFlow (hourly, a daily swing of about 3 l/s on 102 l/s, noise about 0.5)
scores above it for a day cycle; series without a clock cycle (SKAB's pump sensors, this
machine's own telemetry) never have three days of history in the bench and so never turn
a cycle on; noise and a random walk stay near 0 (tests). ``min_gain=0.1`` keeps a daily
series daily unless its weekdays differ.

Example
-------
>>> import numpy as np
>>> from aitrace.detect.cycle import CycleModel
>>> hour = 3_600_000_000
>>> t = np.arange(24 * 5) * hour                       # five days, hourly
>>> day = np.sin(2 * np.pi * np.arange(t.size) / 24)   # a daily swing
>>> x = 100 + 5 * day + np.random.default_rng(0).normal(0, 0.3, t.size)
>>> m = CycleModel()
>>> resid, switches = m.observe(t, x)
>>> m.period_hours, switches
(24, [72])
>>> bool(np.std(resid[96:]) < 0.5 < np.std(x[96:]))   # the day's swing is gone from the residuals
True
>>> bool(abs(m.offset(t[-1:])[0] - 5 * day[-1]) < 1.0)
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

HOUR_US = 3_600_000_000
_CANDIDATES = (24, 168)  # hours: a day, a week
_MAD_SD = 1.4826


def _robust_var(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if x.size < 8:
        return math.nan
    mad = float(np.median(np.abs(x - np.median(x))))
    return (mad * _MAD_SD) ** 2


def _rows(hist: np.ndarray, last_bucket: int, period: int) -> np.ndarray:
    """Hourly means arranged as cycles x phases (NaN where an hour had no value)."""
    ids = last_bucket - np.arange(hist.size)[::-1]
    cycle = ids // period
    rows = np.full((int(cycle[-1] - cycle[0]) + 1, period), np.nan)
    rows[cycle - cycle[0], ids % period] = hist
    return rows


def strength(hist: np.ndarray, last_bucket: int, period: int) -> tuple[float, np.ndarray, int]:
    """How much of the series a cycle of ``period`` hours explains, its profile, and the cycles used.

    Only complete-enough cycles count (at least 3/4 of their hours seen).
    """
    rows = _rows(hist, last_bucket, period)
    rows = rows[np.count_nonzero(np.isfinite(rows), axis=1) >= 0.75 * period]
    c = rows.shape[0]
    if c < 2:
        return 0.0, np.zeros(period), c
    centred = rows - np.nanmedian(rows, axis=1, keepdims=True)
    profile = np.nanmedian(centred, axis=0)
    profile = np.where(np.isfinite(profile), profile, 0.0)
    total = _robust_var(centred.ravel())
    resid = _robust_var((centred - profile).ravel())
    if not (total > 0 and math.isfinite(resid)):
        return 0.0, profile, c
    return 1.0 - resid * c / (c - 1) / total, profile, c


class CycleModel:
    """A series' daily or weekly profile, learnt from its own hourly means.

    Parameters
    ----------
    min_cycles:
        Cycles of history a period needs before it is tested (3: the least that has a median).
    min_strength:
        Share of the centred variance the profile must explain to be used.
    min_gain:
        How much more a weekly profile must explain than a daily one to be chosen.

    :meth:`observe` takes the next points (times in microseconds, non-decreasing) and returns
    the positions in that batch where the profile in use changed (switched on, off, or to
    another period): scores before and after such a point are not comparable.
    :meth:`offset` gives the profile's value at given times (0 without a cycle).
    """

    def __init__(self, *, min_cycles: int = 3, min_strength: float = 0.5, min_gain: float = 0.1) -> None:
        if min_cycles < 2 or not 0.0 < min_strength < 1.0:
            raise ValueError("need min_cycles >= 2 and 0 < min_strength < 1")
        self.min_cycles, self.min_strength, self.min_gain = int(min_cycles), float(min_strength), float(min_gain)
        self.hist = np.zeros(0)  # hourly means, oldest first, the last one is hour ``last_bucket``
        self.last_bucket = -1
        self.open_bucket = -1
        self.open_sum, self.open_n = 0.0, 0
        self.since_eval = 0
        self.period = 0  # hours; 0: no cycle in use
        self.profile = np.zeros(0)
        self.score = 0.0
        self.centre, self.n_points = 0.5, 0  # mean position of a value inside its hour, values seen

    @property
    def period_hours(self) -> int:
        return self.period

    @property
    def capacity(self) -> int:
        return self.min_cycles * max(_CANDIDATES)

    def observe(self, times_us: Any, values: Any) -> tuple[np.ndarray, list[int]]:
        """Fold the next points in; their residuals from the profile in force at each point
        (the values themselves without a cycle), and the batch positions where the profile in
        use switched on, off or to another period."""
        times = np.asarray(times_us, dtype=np.int64).ravel()
        vals = np.asarray(values, dtype=np.float64).ravel()
        buckets = times // HOUR_US
        resid = vals.copy()
        switches = []
        # points of one hour are summed at once; an hour closes when the next one starts
        starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]]) if times.size else np.zeros(0, np.int64)
        ends = np.r_[starts[1:], times.size]
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            b = int(buckets[lo])
            if b != self.open_bucket:
                before = self.period
                if self.open_n:
                    self._close()
                if self.period != before:
                    switches.append(lo)
                self.open_bucket, self.open_sum, self.open_n = b, 0.0, 0
            if self.period:
                resid[lo:hi] -= self.offset(times[lo:hi])
            ok = np.isfinite(vals[lo:hi])
            self.open_sum += float(vals[lo:hi][ok].sum())
            self.open_n += int(ok.sum())
            # where in its hour a value usually lies (hourly samples at :00 are not mid-hour means)
            self.n_points += int(ok.sum())
            within = (times[lo:hi][ok] % HOUR_US) / HOUR_US
            self.centre += float(np.sum(within - self.centre)) / max(self.n_points, 1)
        return resid, switches

    def _close(self) -> None:
        mean = self.open_sum / self.open_n
        gap = self.open_bucket - self.last_bucket if self.last_bucket >= 0 else 1
        if gap <= 0:
            return  # out of order: the hour was closed already
        filler = np.full(min(gap - 1, self.capacity), np.nan)
        self.hist = np.r_[self.hist, filler, mean][-self.capacity :]
        self.last_bucket = self.open_bucket
        self.since_eval += int(gap)
        if self.since_eval >= min(_CANDIDATES):
            self.since_eval = 0
            self._evaluate()

    def _evaluate(self) -> None:
        best = (0, 0.0, np.zeros(0))
        for period in _CANDIDATES:
            s, profile, c = strength(self.hist, self.last_bucket, period)
            if c < self.min_cycles:
                continue
            if best[0] == 0 or s >= best[1] + self.min_gain:
                best = (period, s, profile)
        period, s, profile = best
        if period and (s >= self.min_strength or (period == self.period and s >= self.min_strength / 2)):
            self.period, self.profile, self.score = period, profile, s
        elif period:
            self.period, self.profile, self.score = 0, np.zeros(0), s

    def offset(self, times_us: Any) -> np.ndarray:
        """The profile at these times, linear between the hours' mean points in time (0 without a cycle)."""
        times = np.asarray(times_us, dtype=np.int64).ravel()
        if not self.period:
            return np.zeros(times.size)
        u = (times % (self.period * HOUR_US)) / HOUR_US - self.centre
        i0 = np.floor(u).astype(np.int64)
        w = u - i0
        return (1.0 - w) * self.profile[i0 % self.period] + w * self.profile[(i0 + 1) % self.period]

    def to_state(self) -> dict[str, Any]:
        """JSON-safe (NaN hours as None); at most three weeks of hourly means and one profile."""
        return {
            "params": [self.min_cycles, self.min_strength, self.min_gain],
            "hist": [None if not math.isfinite(v) else float(v) for v in self.hist.tolist()],
            "last_bucket": self.last_bucket,
            "open": [self.open_bucket, self.open_sum, self.open_n],
            "since_eval": self.since_eval,
            "period": self.period,
            "profile": self.profile.tolist(),
            "score": self.score,
            "centre": [self.centre, self.n_points],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CycleModel:
        cycles, strength_, gain = state["params"]
        m = cls(min_cycles=int(cycles), min_strength=float(strength_), min_gain=float(gain))
        m.hist = np.asarray([math.nan if v is None else v for v in state["hist"]], dtype=np.float64)
        m.last_bucket = int(state["last_bucket"])
        bucket, total, n = state["open"]
        m.open_bucket, m.open_sum, m.open_n = int(bucket), float(total), int(n)
        m.since_eval, m.period = int(state["since_eval"]), int(state["period"])
        m.profile = np.asarray(state["profile"], dtype=np.float64)
        m.score = float(state["score"])
        centre, n = state["centre"]
        m.centre, m.n_points = float(centre), int(n)
        return m
