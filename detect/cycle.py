"""Daily and weekly cycles: find a series' own period, then judge each point against its phase.

The idea
--------
Service telemetry often follows the clock: traffic, latency and water flow are higher in
the day than at night and lower at weekends. Against its recent level alone, every
morning's ramp is a level shift and a quiet night looks like a drop; against the same
hour of earlier days it is normal, and a night at daytime levels is what stands out.

:class:`CycleModel` keeps hourly means of the series (at most four weeks of them, 672
floats) and, once a day of new hours has come in, asks how much of the series a cycle of
one day, or one week, explains. The series is cut into cycles (rows) of the candidate
period; each row's median is its own level (so a slow trend or a step between days is not
taken for a cycle), the mean over rows of each phase is the profile, and the strength is

    1 - var(residual) * c / (c - 1) / var(centred rows)

with the variances of the values within 5 robust sd (the hours beyond, a dip to a quarter
of the usual flow, say, are left out: a few broken hours neither make nor hide a cycle)
and ``c`` the number of cycles (the factor undoes the profile, a mean over ``c`` rows,
fitting their noise). A candidate needs ``min_cycles`` cycles of
history; weekly wins over daily only when it explains clearly more (``min_gain``), as a
weekly profile also contains the daily one (and the weekly test centres days on their week,
where a daily profile cannot explain a weekend). :meth:`offset` is the profile at a time,
interpolated linearly between hours. :meth:`observe` subtracts it (the residual, which the
caller's windowed detector scores for spikes and repeats) and judges the residual, smoothed
over an hour, against its own slow level (time constant: one period) in units of its usual
spread: a night at daytime levels, or a day whose peak does not come, is many spreads off
although its recent level moved smoothly into it. The
profile is re-estimated once a day from the cycles in the history (without the broken
hours: one bad day does not move it much), and a cycle that fades (strength below half the threshold)
is dropped.

Until a cycle is found (and after one is dropped), the same judgement runs from the series'
first day of hourly means on with a flat profile: the hour-smoothed value against the level
of the last day. Two guards keep it to sustained moves: it scores only once three points in
a row are each ``PHASE_H`` spreads off on the side of the smoothed gap (one hourly value, or
one heavy-tailed burst, is no hour of evidence), and a gap counts into the usual spread as
at most four spreads (else a fall to a quarter of the flow widens the spread within its
first hours and hides itself before the three points are in).

How the defaults were chosen
----------------------------
``min_cycles=4``: the correction above keeps independent noise near 0 from three cycles
on, but not a random walk, whose wander within a cycle a profile of three fits by chance;
with four, few of 120 series without a cycle (noise, Gaussian and heavy-tailed random
walks, six weeks hourly; ``tests/test_detect_cycle.py``) turn a cycle on for a while (3 with
clipped rather than dropped outliers; 8 with three cycles). ``min_strength=0.5``: half the
centred variance explained by the phase; of those 120 series, the highest strength any of
them reached was 0.61 and 5 reached 0.4. On real data (``bench/bench_realdata.py`` (f)):
pmdarima's taylor electricity demand is at 0.98-0.99 from its second day (weekly from its
fourth week); river's WaterFlow, whose daily swing (about 3 l/s on 102) is small against
the wander between days, starts at 0.41 after four days and passes 0.5 only after 26 (0.66
after seven weeks), so there the cycle helps late. Series without a clock cycle in the
bench (SKAB's pump sensors, this machine's own telemetry) never have four days of history
and never turn one on (nor a day: the flat profile never starts there). ``min_gain=0.1``
keeps a daily series daily unless its weekdays differ. The flat profile's guards: on
WaterFlow, judged against its last day's level, the second of its outages (to 24 l/s, five
days after a first one whose scores the calibrator had recorded) pages, 3 of the 4 described
segments against 2, with no false incident (without the cap on the spread: 2); on taylor the
false incidents stay at 1; on synthetic series without a cycle (hourly i.i.d. t3 and
lognormal noise, six weeks) the guards keep false incidents at what they were without the
flat profile (without the three-point run they rose from 0.55 to 1.44 and from 1.24 to 3.42
per 1,000 points).

Example
-------
>>> import numpy as np
>>> from aitrace.detect.cycle import CycleModel
>>> hour = 3_600_000_000
>>> t = np.arange(24 * 6) * hour                       # six days, hourly
>>> day = np.sin(2 * np.pi * np.arange(t.size) / 24)   # a daily swing
>>> x = 100 + 5 * day + np.random.default_rng(0).normal(0, 0.3, t.size)
>>> m = CycleModel()
>>> view = m.observe(t, x)
>>> m.period_hours, view.switches
(24, [96])
>>> bool(np.std(view.resid[96:]) < 0.5 < np.std(x[96:]))   # the day's swing is gone from the residuals
True
>>> bool(abs(m.offset(t[-1:])[0] - 5 * day[-1]) < 1.0)
True
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

HOUR_US = 3_600_000_000
PHASE_H = 3.0  # the hour-smoothed residual, in its usual spread, that scores 0.5 (as AnomalyParams.shift_h)
_MEAN_ABS_SD = math.sqrt(math.pi / 2)  # sd / mean absolute deviation, for normal noise
# phase state: [level of the residual, its hour-smoothed value, mean |smoothed - level|, last time,
# signed count of the last points in a row each PHASE_H usual spreads off the level on one side]
_P_LEVEL, _P_SMOOTH, _P_DEV, _P_LAST, _P_RUN = range(5)
_CANDIDATES = (24, 168)  # hours: a day, a week
_MAD_SD = 1.4826
_MIN_RUN = 3  # points in a row off the level on the side of the smoothed gap before the phase scores
# The profile is linear between hourly means: a smooth cycle sampled every 5 minutes departs from it by up to
# 0.86 % of its swing (a sine: (pi/12)**2 / 8), less once smoothed over the hour. A usual spread below a fraction
# of that is the interpolation's: an exactly repeating daily sine paged 2,472 level shifts in 5,000 points, each
# "1e13 usual spreads" off. On a 20-day sine every 5 minutes, floors of 0.1-0.5 % of the swing all kept it quiet
# (7,389 findings without) and found a 3-hour bump of 10 % at noise of 2 %; at 1 % the bump went unfound.
_SPREAD_FLOOR = 0.002
_DEV_CAP = 4.0  # a gap counts into the usual spread as at most this many spreads: an outage does not hide itself


def _robust_var(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if x.size < 8:
        return math.nan
    mad = float(np.median(np.abs(x - np.median(x))))
    return (mad * _MAD_SD) ** 2


@njit(cache=True, error_model="numpy")
def _hour_sums(times: np.ndarray, vals: np.ndarray) -> tuple[float, int, float]:
    """The finite values' sum and count, and the sum of their positions inside their hour (0..1): one pass
    where numpy's masks and reductions took 10 us of a 10-point update."""
    total, n, pos = 0.0, 0, 0.0
    for k in range(vals.size):
        if math.isfinite(vals[k]):
            total += vals[k]
            n += 1
            pos += (times[k] % HOUR_US) / HOUR_US
    return total, n, pos


@njit(cache=True, error_model="numpy")
def _phase_kernel(
    resid: np.ndarray,
    times: np.ndarray,
    state: np.ndarray,
    tau_long: float,
    inv_h: float,
    out_score: np.ndarray,
    out_z: np.ndarray,
    out_level: np.ndarray,
    dev_floor: float,
) -> None:
    """The residual from the profile, smoothed over an hour, against its own level and spread.

    The level (time constant: one period) absorbs a lasting change within a cycle or so; the
    spread is the mean absolute gap between the smoothed residual and that level, and never
    less than ``dev_floor``. It scores only once ``_MIN_RUN`` points in a row were each off on
    the side of the gap (an hour of one hourly value, or a heavy-tailed burst, is no sustained move).
    """
    level, smooth, dev, last, run = state[_P_LEVEL], state[_P_SMOOTH], state[_P_DEV], state[_P_LAST], state[_P_RUN]
    for i in range(resid.shape[0]):
        r = resid[i]
        out_score[i] = 0.0
        out_z[i] = 0.0
        out_level[i] = level
        if not math.isfinite(r):
            continue
        dt = float(times[i]) - last if last >= 0.0 else 0.0
        dt = dt if dt > 0.0 else 0.0
        smooth += (1.0 - math.exp(-dt / HOUR_US)) * (r - smooth)
        gap = smooth - level
        spread = dev if dev > dev_floor else dev_floor
        if spread > 0.0:
            z = gap / (spread * _MEAN_ABS_SD)
            off = (r - level) * inv_h / (spread * _MEAN_ABS_SD)
            run = max(run, 0.0) + 1.0 if off >= 1.0 else (min(run, 0.0) - 1.0 if off <= -1.0 else 0.0)
            q = z * inv_h
            out_z[i] = z
            if abs(run) >= _MIN_RUN and run * z > 0.0:
                out_score[i] = 1.0 if q * q > 1e300 else q * q / (q * q + 1.0)
        a_long = 1.0 - math.exp(-dt / tau_long)
        level += a_long * (r - level)
        dev += a_long * (min(abs(gap), _DEV_CAP * dev) - dev)
        last = float(times[i])
    state[_P_LEVEL], state[_P_SMOOTH], state[_P_DEV], state[_P_LAST], state[_P_RUN] = level, smooth, dev, last, run


@dataclass
class CycleView:
    """What :meth:`CycleModel.observe` says about a batch.

    resid: value minus the profile (the value itself where no cycle is in use).
    score, z: the hour-smoothed residual against its usual spread (0 before a day of history;
        without a cycle, against a flat profile: the level of the last day),
        squashed as the anomaly scores are (``PHASE_H`` sd score 0.5).
    expected: what the cycle (or the last day's level) expects at the point (NaN before a day of history).
    switches: batch positions where the profile in use switched on, off or to another period.
    periods: the period in use from each switch on (0: none).
    """

    resid: np.ndarray
    score: np.ndarray
    z: np.ndarray
    expected: np.ndarray
    switches: list[int]
    periods: list[int] = field(default_factory=list)


def _rows(hist: np.ndarray, last_bucket: int, period: int) -> np.ndarray:
    """Hourly means arranged as cycles x phases (NaN where an hour had no value)."""
    ids = last_bucket - np.arange(hist.size)[::-1]
    cycle = ids // period
    rows = np.full((int(cycle[-1] - cycle[0]) + 1, period), np.nan)
    rows[cycle - cycle[0], ids % period] = hist
    return rows


def strength(hist: np.ndarray, last_bucket: int, period: int, level_period: int = 0) -> tuple[float, np.ndarray, int]:
    """How much of the series a cycle of ``period`` hours explains, its profile, and the cycles used.

    Each stretch of ``level_period`` hours (default: the period) is centred on its own median
    first; only cycles with at least 3/4 of their hours seen count. Values beyond 5 robust sd
    are left out, so a few broken hours neither make nor hide a cycle.
    """
    groups = (last_bucket - np.arange(hist.size)[::-1]) // (level_period or period)
    centred = hist.copy()
    for g in np.unique(groups).tolist():
        part = centred[groups == g]
        if np.isfinite(part).any():
            centred[groups == g] = part - np.nanmedian(part)
    rows = _rows(centred, last_bucket, period)
    rows = rows[np.count_nonzero(np.isfinite(rows), axis=1) >= 0.75 * period]
    c = rows.shape[0]
    total = _robust_var(rows.ravel()) if c >= 2 else math.nan
    if not total > 0:
        return 0.0, np.zeros(period), c
    limit = 5.0 * math.sqrt(total)
    centred = np.where(np.abs(rows) <= limit, rows, np.nan)
    seen = np.count_nonzero(np.isfinite(centred), axis=0)
    profile = np.where(seen > 0, np.nansum(centred, axis=0) / np.maximum(seen, 1), 0.0)
    # plain variances of what is left: a MAD would not see a weekend that is a different level
    spread = float(np.nanvar(centred))
    resid = float(np.nanvar(centred - profile))
    if not spread > 0:
        return 0.0, profile, c
    return 1.0 - resid * c / (c - 1) / spread, profile, c


class CycleModel:
    """A series' daily or weekly profile, learnt from its own hourly means.

    Parameters
    ----------
    min_cycles:
        Cycles of history a period needs before it is tested.
    min_strength:
        Share of the centred variance the profile must explain to be used.
    min_gain:
        How much more a weekly profile must explain than a daily one to be chosen.

    :meth:`observe` takes the next points (times in microseconds, non-decreasing) and returns
    a :class:`CycleView`: residuals, phase scores, what the cycle expected, and the positions
    in that batch where the profile in use changed (switched on, off, or to another period):
    a windowed score before and after such a point is not comparable.
    :meth:`offset` gives the profile's value at given times (0 without a cycle).
    """

    def __init__(self, *, min_cycles: int = 4, min_strength: float = 0.5, min_gain: float = 0.1) -> None:
        if min_cycles < 2 or not 0.0 < min_strength < 1.0:
            raise ValueError("need min_cycles >= 2 and 0 < min_strength < 1")
        self.min_cycles, self.min_strength, self.min_gain = int(min_cycles), float(min_strength), float(min_gain)
        self.hist = np.zeros(0)  # hourly means, oldest first, the last one is hour ``last_bucket``
        self.last_bucket = -1
        self.open_bucket = -1
        self.open_sum, self.open_n, self.open_pos = 0.0, 0, 0.0
        self.since_eval = 0
        self.period = 0  # hours; 0: no cycle in use
        self.profile = np.zeros(0)
        self.score = 0.0
        self.centre, self.n_points = 0.5, 0  # mean position of a value inside its hour, values seen
        self.phase = np.array([0.0, 0.0, 0.0, -1.0, 0.0])  # see _phase_kernel
        self.watch = False  # the phase judgement runs (with the profile, or without one: a flat profile)

    @property
    def period_hours(self) -> int:
        return self.period

    @property
    def capacity(self) -> int:
        return (self.min_cycles + 1) * max(_CANDIDATES)  # a week's worth more: whole weeks never fall short

    def observe(self, times_us: Any, values: Any, cuts: Sequence[int] = ()) -> CycleView:
        """Fold the next points in; each judged against the profile in force at its time.

        ``cuts``: positions (increasing) where the caller's next chunk begins, for several chunks
        observed in one call: an hour's values are summed chunk by chunk there, as one call per chunk
        sums them (a float sum in another order differs in its last bits), so the state, and all
        that is judged after, is the same bit for bit.
        """
        times = np.asarray(times_us, dtype=np.int64).ravel()
        vals = np.asarray(values, dtype=np.float64).ravel()
        buckets = times // HOUR_US
        n = vals.size
        view = CycleView(vals.copy(), np.zeros(n), np.zeros(n), np.full(n, np.nan), [])
        # points of one hour are summed at once; an hour closes when the next one starts
        bounds = [0, *(np.flatnonzero(buckets[1:] != buckets[:-1]) + 1).tolist(), n] if n else [0]
        for lo, hi in itertools.pairwise(bounds):
            b = int(buckets[lo])
            if b != self.open_bucket:
                before = self.period
                if self.open_n:
                    self._close()
                if self.period != before:
                    view.switches.append(lo)
                    view.periods.append(self.period)
                self.open_bucket, self.open_sum, self.open_n, self.open_pos = b, 0.0, 0, 0.0
            if self.watch:
                self._judge(times[lo:hi], vals[lo:hi], view, lo)
            inner = cuts[bisect.bisect_right(cuts, lo) : bisect.bisect_left(cuts, hi)]
            for a, b in itertools.pairwise([lo, *inner, hi]):
                self._add(times[a:b], vals[a:b])
        return view

    def _add(self, times: np.ndarray, vals: np.ndarray) -> None:
        """Points of the open hour (of one chunk) into its sum, count and mean position."""
        total, n, pos = _hour_sums(times, vals)
        self.open_sum += total
        self.open_n += n
        self.open_pos += pos

    def _judge(self, times: np.ndarray, vals: np.ndarray, view: CycleView, lo: int) -> None:
        hi = lo + vals.size
        offset = self.offset(times)
        view.resid[lo:hi] = vals - offset
        level = np.zeros(vals.size)
        tau = float((self.period or min(_CANDIDATES)) * HOUR_US)
        floor = _SPREAD_FLOOR * float(np.ptp(self.profile)) if self.profile.size else 0.0
        _phase_kernel(
            view.resid[lo:hi], times, self.phase, tau, 1.0 / PHASE_H, view.score[lo:hi], view.z[lo:hi], level, floor
        )
        view.expected[lo:hi] = offset + level

    def _close(self) -> None:
        mean = self.open_sum / self.open_n
        # where in its hour a value usually lies (hourly samples at :00 are not mid-hour means)
        self.n_points += self.open_n
        self.centre += (self.open_pos - self.open_n * self.centre) / self.n_points
        self.open_pos = 0.0
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
        before = self.period
        self._choose()
        if not self.period and (before or not self.watch):
            # no cycle (yet, or any more): the level of the last day is the baseline, a flat profile
            self.phase, self.watch = self._phase_start(1, np.zeros(1)), True

    def _choose(self) -> None:
        day, week = _CANDIDATES
        s, profile, c = strength(self.hist, self.last_bucket, day)
        if c < self.min_cycles:
            return
        period = day
        weekly, weekly_profile, weeks = strength(self.hist, self.last_bucket, week)
        if weeks >= self.min_cycles:
            # centred per week, a daily profile cannot explain a weekend: compare the two on that footing
            daily_by_week = strength(self.hist, self.last_bucket, day, level_period=week)[0]
            gain = self.min_gain / 2 if self.period == week else self.min_gain  # no flapping at the margin
            if weekly >= daily_by_week + gain:
                period, s, profile = week, weekly, weekly_profile
        if s >= self.min_strength or (period == self.period and s >= self.min_strength / 2):
            if period != self.period:
                self.phase, self.watch = self._phase_start(period, profile), True
            self.period, self.profile, self.score = period, profile, s
        else:
            self.period, self.profile, self.score = 0, np.zeros(0), s

    def _phase_start(self, period: int, profile: np.ndarray) -> np.ndarray:
        """Level and spread of the residual from the last day and week of hourly means."""
        ids = self.last_bucket - np.arange(self.hist.size)[::-1]
        resid = self.hist - profile[ids % period]
        resid = resid[np.isfinite(resid)][-168:]
        level = float(np.median(resid[-24:]))
        # a median, so the broken hours in the history do not widen the usual spread
        dev = float(np.median(np.abs(resid - level))) * math.sqrt(2 / math.pi) / 0.6744897501960817
        return np.array([level, level, dev, -1.0, 0.0])

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
        """JSON-safe (NaN hours as None); at most four weeks of hourly means and one profile."""
        return {
            "params": [self.min_cycles, self.min_strength, self.min_gain],
            "hist": [None if not math.isfinite(v) else float(v) for v in self.hist.tolist()],
            "last_bucket": self.last_bucket,
            "open": [self.open_bucket, _json(self.open_sum), self.open_n, _json(self.open_pos)],
            "since_eval": self.since_eval,
            "period": self.period,
            "profile": self.profile.tolist(),
            "score": _json(self.score),
            "centre": [_json(self.centre), self.n_points],
            "phase": self.phase.tolist(),
            "watch": self.watch,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CycleModel:
        cycles, strength_, gain = state["params"]
        m = cls(min_cycles=int(cycles), min_strength=float(strength_), min_gain=float(gain))
        m.hist = np.asarray([math.nan if v is None else v for v in state["hist"]], dtype=np.float64)
        m.last_bucket = int(state["last_bucket"])
        bucket, total, n, pos = state["open"]
        m.open_bucket, m.open_sum, m.open_n, m.open_pos = int(bucket), _float(total), int(n), _float(pos)
        m.since_eval, m.period = int(state["since_eval"]), int(state["period"])
        m.profile = np.asarray(state["profile"], dtype=np.float64)
        m.score = _float(state["score"])
        centre, n = state["centre"]
        m.centre, m.n_points = _float(centre), int(n)
        m.phase = np.r_[np.asarray(state["phase"], dtype=np.float64), 0.0][:5]  # saved without the run: none
        m.watch = bool(state.get("watch", m.period > 0))  # states saved before the flat watch
        return m


def _json(value: float) -> float | None:
    """A float for the state: NaN and Inf as None, as JSON (the worker's tables) has neither. An hour's
    sum of latencies of 1e308 was Inf, came back null, and from_state raised TypeError on every later
    chunk of the model."""
    return value if math.isfinite(value) else None


def _float(value: float | None) -> float:
    """A float of the state: None (NaN or Inf when saved) as NaN, an hour with no usable mean."""
    return math.nan if value is None else float(value)
