"""The worker's rules for the series of a model in service, one stateful object per series.

The processors keep one object per model and series (``model/<m>/latency``,
``model/<m>/error_rate``, ``model/<m>/feature/<f>`` ...) and ``aitrace backtest --service
KIND`` runs the same object over a CSV, so an alert the worker raised can be replayed offline.
Every object takes event times in microseconds and values, returns
:class:`~aitrace.detect.finding.Finding` objects in order (``index`` counting every value
offered; chunked input gives the findings of one call) and keeps its state in a plain dict.

* :class:`ServiceSeries` (``latency``, ``confidence``, any other numeric series): the anomaly
  scores, paging only on points rare for the series itself
  (:class:`~aitrace.detect.calibrate.ScoreCalibrator`), judged against the series' own
  daily or weekly cycle once it has one, and from its second day until then against its last
  day's level (:class:`~aitrace.detect.cycle.CycleModel`); a
  ``flat`` run only once the series has varied; for latency also a sustained rise of the
  median (:class:`~aitrace.detect.level.LatencyShiftMonitor`), held when it recurs at the hour of
  a shift of the day before (a daily rise not learnt yet).
* :class:`RateSeries` (``error_rate``, ``wrong_predictions``): the share of bad outcomes per
  window of requests against an average of earlier windows.
* :class:`DriftWindows` (an input feature): a reference window, then every full window of
  the same length tested against it (:func:`~aitrace.detect.drift_monitor.detect_drift`).

After each update, ``clean`` is how many points (or window points) were judged normal after
the last finding of that update (all judged ones when it had none): what an open incident
counts towards its resolution.

Example
-------
>>> import numpy as np
>>> from aitrace.detect.service import RateSeries, ServiceSeries
>>> t = 1_800_000_000_000_000 + np.arange(2000) * 100_000    # ten requests a second
>>> lat = np.random.default_rng(0).lognormal(np.log(20), 0.1, 2000)
>>> lat[1500] = 2000.0                                      # one request stuck for 2 s
>>> [(f.index, f.reason) for f in ServiceSeries("latency").update(t, lat)]
[(1500, 'spike')]
>>> errors = np.zeros(2000); errors[1800:1900] = 1          # a burst of failures
>>> [(f.index, f.reason, round(f.value, 2)) for f in RateSeries("error_rate").update(t, errors)]
[(1849, 'error_rate_burst', 1.0), (1899, 'error_rate_burst', 1.0)]
"""

from __future__ import annotations

import binascii
import bisect
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from aitrace.detect import _cache  # noqa: F401  (sets the Numba cache dir before any @njit)
from aitrace.detect.anomaly import AnomalyDetector, explain
from aitrace.detect.anomaly_kernel import (
    CODE_DIP,
    CODE_FLAT,
    CODE_INF,
    CODE_LEVEL_DOWN,
    CODE_LEVEL_UP,
    CODE_NAMES,
    CODE_NAN,
    CODE_NONE,
    CODE_SPIKE,
    CODE_VARIANCE,
    MAX_ABS,
)
from aitrace.detect.calibrate import ScoreCalibrator, point_moves, varied_through
from aitrace.detect.cycle import CycleModel, CycleView
from aitrace.detect.drift_monitor import detect_drift
from aitrace.detect.finding import Finding
from aitrace.detect.level import LatencyShiftMonitor, LevelShift, PaceShiftMonitor
from numba import njit

SERVICE_KINDS = ("latency", "confidence", "error_rate", "wrong_predictions", "feature")
DAY_US = 24 * 3_600_000_000
# a rise confirmed within this much of the hour of an earlier one, whole days later, is that rise again
RECUR_US = 3 * 3_600_000_000
# how far back an earlier rise counts: a daily rise recurs every day, and if one day's is not
# confirmed the next day's still matches the day before; an incident at a random hour lands
# within RECUR_US of the hour of a given shift of those two days by chance at 2 x 6/24
RECUR_DAYS = 2


def _shift_score(factor: float) -> float:
    """A level shift's score in [0, 1], as every finding's: the share of the level that is new (2x: 0.5)."""
    return 1.0 - 1.0 / factor


def _arrays(times_us: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    times = np.asarray(times_us, dtype=np.int64).reshape(-1)
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    if times.shape != vals.shape:
        raise ValueError(f"times and values differ in length: {times.shape} vs {vals.shape}")
    return times, vals


@njit(cache=True)
def _phase_overlay(
    scores: np.ndarray, codes: np.ndarray, off: np.ndarray, z: np.ndarray, vals: np.ndarray, threshold: float
) -> np.ndarray:
    """Where a finite point is off its cycle's phase (or its last day's level) by more than the
    windows say, or enough to page by itself, the phase names it: its score and a level code go
    in place (one pass, where numpy took eight calls of a few microseconds each)."""
    phase = np.zeros(scores.size, dtype=np.bool_)
    for k in range(scores.size):
        if (off[k] > scores[k] or off[k] >= threshold) and math.isfinite(vals[k]):
            phase[k] = True
            scores[k] = off[k]
            codes[k] = CODE_LEVEL_UP if z[k] > 0 else CODE_LEVEL_DOWN
    return phase


class ServiceSeries:
    """One numeric series of a model in service (latency, confidence, ...), scored against itself.

    Parameters
    ----------
    metric:
        The series' name; ``latency`` adds the sustained-rise check.
    threshold:
        Anomaly score in [0, 1] from which a rare point is a finding (the worker's default 0.9).
    critical:
        Score from which a finding is critical (NaN and Inf always are).
    cycle:
        Judge the series against its own daily or weekly cycle once it has one.
    pace:
        +1 for a run's time per step, -1 for its throughput
        (:func:`~aitrace.detect.training.pace_direction`): such a series pages only a sustained slowdown
        (:class:`~aitrace.detect.level.PaceShiftMonitor`) and NaN or Inf, and learns no cycle. Its single
        slow steps are the machine's (a garbage collection, a data loader's refill, another process on the
        core: on the bench's healthy PyTorch runs a 0.5 ms step took up to 2.5 ms), not the run's.
    """

    def __init__(
        self, metric: str, *, threshold: float = 0.9, critical: float = 0.999, cycle: bool = True, pace: int = 0
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        self.metric, self.threshold, self.critical = metric, float(threshold), float(critical)
        self.detector = AnomalyDetector()
        self.calibrator = ScoreCalibrator()
        self.cycle = CycleModel() if cycle and not pace else None  # a run's pace keeps no clock's cycle
        self.pace = pace
        self.shift = _shift_monitor(metric, pace)
        self.ignored = _ignored(metric, pace)
        self.shift_base = 0  # points seen before the shift monitor (re)started
        self.shift_at: list[int] = []  # times of the level shifts of the last RECUR_DAYS, reported or held
        self.n_seen = 0
        self.first: float | None = None
        self.varied = False
        self.clean = 0
        self.cleans: list[int] = []  # of each chunk of the last update_chunks

    def update(self, times_us: Any, values: Any, *, timed: bool = True) -> list[Finding]:
        """Score the next points (event times in microseconds, values); the findings among them.

        ``timed=False``: the times are no clock (a training step): the cycle neither learns from these
        points nor judges them."""
        return self.update_chunks([(times_us, values)], timed=timed)[0]

    def update_chunks(self, chunks: Sequence[tuple[Any, Any]], *, timed: bool = True) -> list[list[Finding]]:
        """Score several chunks (times, values) in one pass: each chunk's findings, and ``cleans`` each
        chunk's ``clean``, the same as :meth:`update` on each chunk in turn, and the same state after.

        A call's fixed cost (the cycle, the windows, the calibrator, the shift monitor: ~100 us) is paid
        once; the parts that are not chunk-invariant follow the chunks: the cycle sums an hour chunk by
        chunk, a finding's evidence stops at its chunk's first value, and the cycle switching at a
        chunk's first point restarts nothing (:meth:`update` saw it at position 0).
        """
        parts = [_arrays(t, v) for t, v in chunks]
        times, vals = parts[0] if len(parts) == 1 else (np.concatenate(p) for p in zip(*parts, strict=True))
        starts = [0, *itertools.accumulate(p[1].size for p in parts)]
        if self.pace:
            return self._pace_chunks(times, vals, starts)
        period = self._period() if timed else 0
        if self.cycle is not None and timed:
            view = self.cycle.observe(times, vals, cuts=starts[1:-1])
        else:
            view = CycleView(vals, np.zeros(vals.size), np.zeros(vals.size), np.full(vals.size, np.nan), [])
        where = _Chunks(starts, view, period)
        firsts = set(starts[:-1])
        bounds = [0, *(s for s in view.switches if s not in firsts), vals.size]
        scores = np.zeros(vals.size)
        codes = np.zeros(vals.size, dtype=np.int8)
        found: list[Finding] = []
        for lo, hi in itertools.pairwise(bounds):
            if lo > 0:  # the baseline changed meaning (cycle on, off or new): scores start afresh
                self.detector, self.calibrator = AnomalyDetector(), ScoreCalibrator()
                if self.shift is not None:
                    self.shift, self.shift_base = _shift_monitor(self.metric, self.pace), self.n_seen + lo
            scores[lo:hi] = self.detector.score(view.resid[lo:hi])
            codes[lo:hi] = self.detector.last_codes
            phase = _phase_overlay(
                scores[lo:hi], codes[lo:hi], view.score[lo:hi], view.z[lo:hi], vals[lo:hi], self.threshold
            )
            found += self._points(times, vals, scores, codes, lo, hi, view, phase, where)
            if self.shift is not None:  # a day's rise is no level shift: it sees the values less their cycle
                shifts = self.shift.update(times[lo:hi], view.resid[lo:hi])
                found += [self._shift_finding(s, times, vals, where) for s in shifts if not self._recurs(s, times)]
        found.sort(key=lambda f: f.index)
        out = self._per_chunk(found, scores, codes, starts)
        self.n_seen += int(vals.size)
        return out

    def _pace_chunks(self, times: np.ndarray, vals: np.ndarray, starts: list[int]) -> list[list[Finding]]:
        """A run's pace: NaN and Inf, and the slowdown monitor. Every other reason of the windowed scores is
        ignored on a pace, so they are not run (~40 us an update, for nothing); their state stays as it was."""
        bad = ~(np.abs(vals) <= MAX_ABS)  # what the windowed scores call nan or inf: past 1e300 too
        scores = bad.astype(np.float64)
        codes = np.where(np.isnan(vals), CODE_NAN, CODE_INF).astype(np.int8) * bad
        self._varied_at(vals)
        found = [self._non_finite(times, vals, int(i), starts) for i in np.flatnonzero(bad)]
        assert self.shift is not None
        found += [
            self._shift_finding(s, times, vals) for s in self.shift.update(times, vals) if not self._recurs(s, times)
        ]
        found.sort(key=lambda f: f.index)
        out = self._per_chunk(found, scores, codes, starts)
        self.n_seen += int(vals.size)
        return out

    def _non_finite(self, times: np.ndarray, vals: np.ndarray, i: int, starts: list[int]) -> Finding:
        value = float(vals[i])
        start = starts[bisect.bisect_right(starts, i) - 1]
        return Finding(
            self.n_seen + i,
            float(times[i]),
            value,
            1.0,
            "nan" if math.isnan(value) else "inf",
            f"{self.metric} is {value}",
            self.threshold,
            self.metric,
            "critical",
            time_us=int(times[i]),
            statistic=0.0 if math.isnan(value) else value,
            evidence=tuple(vals[max(start, i - 15) : i + 1].tolist()),
        )

    def _per_chunk(
        self, found: list[Finding], scores: np.ndarray, codes: np.ndarray, starts: list[int]
    ) -> list[list[Finding]]:
        """The findings of each chunk (``starts``: where each begins, and the end); ``cleans`` and
        ``clean`` (the last chunk's) set: the points judged normal after each chunk's last finding."""
        out: list[list[Finding]] = []
        self.cleans = []
        at = 0
        for lo, hi in itertools.pairwise(starts):
            end = at
            while end < len(found) and found[end].index < self.n_seen + hi:
                end += 1
            mine, at = found[at:end], end
            judged_after = hi - 1 - (mine[-1].index - self.n_seen) if mine else hi - lo
            bad = scores[hi - judged_after : hi] >= self.threshold
            for code in self.ignored:  # two codes: a compare each is ~1 us, np.isin ~20 us of a 200-point update
                bad &= codes[hi - judged_after : hi] != code
            self.cleans.append(int(judged_after - np.count_nonzero(bad)))
            out.append(mine)
        self.clean = self.cleans[-1]
        return out

    def _varied_at(self, vals: np.ndarray) -> np.ndarray:
        """Per point: whether the series took two different values up to and including it."""
        if self.varied:  # once varied, always: no pass over the values
            return np.ones(vals.size, dtype=bool)
        self.first, varied = varied_through(vals, self.first)
        self.varied = bool(varied[-1]) if varied.size else self.varied
        return varied

    def _points(
        self,
        times: np.ndarray,
        vals: np.ndarray,
        scores: np.ndarray,
        codes: np.ndarray,
        lo: int,
        hi: int,
        view: CycleView,
        phase: np.ndarray,
        where: _Chunks | None = None,
    ) -> list[Finding]:
        """The findings among points ``lo:hi``; ``where``: the chunks of the update (None: one)."""
        det = self.detector
        moves = point_moves(view.resid[lo:hi], codes[lo:hi], det.last_z, det.last_noise, det.last_level)
        for code in self.ignored:  # a latency's falls are never news, so never the largest move either
            moves[codes[lo:hi] == code] = np.nan
        rare = self.calibrator.rare(scores[lo:hi], codes[lo:hi], threshold=self.threshold, moves=moves)
        # the phase score is already in the series' own usual spread (and its slow rise into an
        # anomaly would count as "as high before" in the calibrator's history)
        rare |= phase & (scores[lo:hi] >= self.threshold)
        varied = self._varied_at(vals[lo:hi])
        out = []
        for k in np.flatnonzero(rare).tolist():
            code = int(codes[lo + k])
            # a repeat is news only for a series that varied before (not a constant logged per request)
            if code == CODE_NONE or (code == CODE_FLAT and not varied[k]) or code in self.ignored:
                continue
            i, reason = lo + k, CODE_NAMES[code]
            score, value = float(scores[i]), float(vals[i])
            critical = score >= self.critical or code in (CODE_NAN, CODE_INF)
            # the words name the cycle in use at the end of the point's chunk, as an update of that chunk did
            start, period = where.at(i) if where is not None else (0, self._period())
            if phase[k]:
                z = float(view.z[i])
                message = self._phase_words(value, float(view.expected[i]), z, period)
            else:
                message, z = explain(self.metric, reason, value, det, k) + _cycle_words(period), float(det.last_z[k])
            out.append(
                Finding(
                    self.n_seen + i,
                    float(times[i]),
                    value,
                    score,
                    reason,
                    message,
                    self.threshold,
                    self.metric,
                    "critical" if critical else "warning",
                    time_us=int(times[i]),
                    statistic=z,
                    evidence=tuple(vals[max(start, i - 15) : i + 1].tolist()),
                )
            )
        return out

    def _period(self) -> int:
        return self.cycle.period if self.cycle is not None else 0

    def _phase_words(self, value: float, expected: float, z: float, period: int) -> str:
        if not period:
            return (
                f"{self.metric} {value:.4g} against its level of the last day, about {expected:.4g} "
                f"(the last hour {abs(z):.1f} usual spreads {'above' if z > 0 else 'below'} it)"
            )
        when = "hour of the day" if period == 24 else "hour of the week"
        return (
            f"{self.metric} {value:.4g} where its cycle expects about {expected:.4g} at this {when} "
            f"(the last hour {abs(z):.1f} usual spreads {'above' if z > 0 else 'below'} it)"
        )

    def _recurs(self, shift: LevelShift, times: np.ndarray) -> bool:
        """Whether the shift came at the hour of an earlier one, a whole number of days later.

        Before the cycle is learnt (four days), a daily rise is confirmed as a shift once a day,
        near the same hour (the recent window fills at a different point of the rise each day,
        as the baseline regrows after each confirmed shift: on a 1.5x daily swing sampled every
        5 minutes, successive confirmations came 21.4 to 26.6 hours apart, hence ``RECUR_US``):
        that is the series' cycle, not a new incident, so it is held. The first one still pages:
        one day alone cannot tell a cycle from a step. Every shift, held or reported, is the new
        normal of the monitor.
        """
        t = int(times[self.shift_base + shift.index - self.n_seen])
        self.shift_at = [s for s in self.shift_at if t - s <= RECUR_DAYS * DAY_US + RECUR_US]
        recurs = any(
            t - s >= DAY_US - RECUR_US and abs((t - s + DAY_US // 2) % DAY_US - DAY_US // 2) <= RECUR_US
            for s in self.shift_at
        )
        self.shift_at.append(t)
        return recurs

    def _shift_finding(
        self, shift: LevelShift, times: np.ndarray, vals: np.ndarray, where: _Chunks | None = None
    ) -> Finding:
        assert self.shift is not None
        index = self.shift_base + shift.index
        i = index - self.n_seen  # position in this batch
        period = where.at(i)[1] if where is not None else self._period()
        factor = max(shift.ratio, 1 / shift.ratio) if shift.ratio > 0 else 1e300  # a throughput stalled at 0: no end
        unit = "_ms" if not self.pace else ""
        return Finding(
            index,
            float(times[i]),
            float(vals[i]),
            _shift_score(factor),
            "level_shift",
            shift.describe("latency (ms)" if not self.pace else self.metric) + _cycle_words(period),
            _shift_score(self.shift.sustained.params["min_ratio"]),  # the least shift it reports
            self.metric,
            "critical" if factor >= 3 else "warning",
            time_us=int(times[i]),
            statistic=shift.z,
            evidence=(shift.baseline_median, shift.recent_median),
            details={
                f"baseline_median{unit}": f"{shift.baseline_median:.4g}",
                f"median{unit}": f"{shift.recent_median:.4g}",
                "factor": f"{factor:.3g}",
            },
        )

    def headline(self, found: list[Finding]) -> Finding | None:
        """The finding that names a batch's incident: a critical point first, then a level
        shift (it says more than one slow request), then the highest score."""
        critical = [f for f in found if f.severity == "critical" and f.reason != "level_shift"]
        shifts = [f for f in found if f.reason == "level_shift"]
        pool = critical or shifts or found
        return max(pool, key=lambda f: (f.severity == "critical", f.score), default=None)

    def to_state(self) -> dict[str, Any]:
        """A JSON-safe dict that :meth:`from_state` restores exactly."""
        return {
            "metric": self.metric,
            "threshold": self.threshold,
            "critical": self.critical,
            "n_seen": self.n_seen,
            "first": self.first,
            "varied": self.varied,
            "detector": self.detector.to_state(),
            "calibrator": self.calibrator.to_state(),
            "cycle": self.cycle.to_state() if self.cycle is not None else None,
            "shift": self.shift.to_state() if self.shift is not None else None,
            "shift_base": self.shift_base,
            "shift_at": list(self.shift_at),
            "pace": self.pace,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ServiceSeries:
        pace = state.get("pace", 0)  # states saved before it was kept: none
        if pace not in (-1, 0, 1) or isinstance(pace, bool):
            raise ValueError(f"pace must be -1, 0 or 1, got {pace!r}")
        s = cls(state["metric"], threshold=state["threshold"], critical=state["critical"], cycle=False, pace=pace)
        s.n_seen, s.first, s.varied = int(state["n_seen"]), state["first"], bool(state["varied"])
        s.detector = AnomalyDetector.from_state(state["detector"])
        s.calibrator = ScoreCalibrator.from_state(state["calibrator"])
        s.cycle = CycleModel.from_state(state["cycle"]) if state["cycle"] is not None else None
        shift = state["shift"]
        s.shift = (
            None if shift is None else (PaceShiftMonitor if "pace" in shift else LatencyShiftMonitor).from_state(shift)
        )
        s.shift_base = int(state["shift_base"])
        s.shift_at = [int(v) for v in state.get("shift_at", [])]  # states saved before it was kept
        return s


def _ignored(metric: str, pace: int) -> tuple[int, ...]:
    """The reasons of the windowed scores a series never pages for. A latency that falls is not an incident:
    the fall back from a spike that lasted long enough to be the recent level scored as a critical "dip" and
    paged when the incident ended. A run's pace pages only NaN and Inf of them; its slowdowns are
    :class:`~aitrace.detect.level.PaceShiftMonitor`'s."""
    if pace:
        return (CODE_SPIKE, CODE_DIP, CODE_LEVEL_UP, CODE_LEVEL_DOWN, CODE_VARIANCE, CODE_FLAT)
    return (CODE_DIP, CODE_LEVEL_DOWN) if metric == "latency" else ()


def _shift_monitor(metric: str, pace: int) -> LatencyShiftMonitor | PaceShiftMonitor | None:
    if pace:
        return PaceShiftMonitor(pace)
    return LatencyShiftMonitor() if metric == "latency" else None


def _cycle_words(period: int) -> str:
    if not period:
        return ""
    return f" (after its usual {'daily' if period == 24 else 'weekly'} cycle is taken out)"


class _Chunks:
    """The chunks of one :meth:`ServiceSeries.update_chunks`: where each begins, and the cycle's period
    at its end (what an update of that chunk alone left in force; ``period``: before the update)."""

    def __init__(self, starts: list[int], view: CycleView, period: int) -> None:
        self.starts = starts
        self.periods: list[int] = []
        switch = 0
        for end in starts[1:]:
            while switch < len(view.switches) and view.switches[switch] < end:
                period = view.periods[switch]
                switch += 1
            self.periods.append(period)

    def at(self, i: int) -> tuple[int, int]:
        """Where the chunk of point ``i`` begins, and the period at its end."""
        c = bisect.bisect_right(self.starts, i) - 1
        return self.starts[c], self.periods[c]


def by_chunk(
    windows: list[tuple[int, Finding | None]], sizes: list[int], window: int
) -> tuple[list[list[Finding]], list[int]]:
    """Windows that an update of several chunks (of ``sizes``) completed, (position of the last value, finding
    or None), given back to their chunks: each chunk's findings, and its clean count (the points of the windows
    after its last finding, as an update of that chunk alone counts them)."""
    found: list[list[Finding]] = [[] for _ in sizes]
    cleans = [0] * len(sizes)
    c, end = 0, sizes[0] if sizes else 0
    for i, finding in windows:
        while i >= end:
            c += 1
            end += sizes[c]
        if finding is not None:
            found[c].append(finding)
        cleans[c] = 0 if finding is not None else cleans[c] + window
    return found, cleans


_NUMPY_COUNTS_FROM = 100  # outcomes; below about this many the Python loop is faster (numpy's calls cost ~6 us)


def _running_counts(flags: np.ndarray) -> list[int]:
    """``itertools.accumulate(map(int, flags))``: in numpy where ``int`` is a plain truncation
    (finite flags, exact as floats) and the chunk is long enough to repay numpy's few microseconds
    of calls, a Python call per outcome otherwise (a chunk of one outcome is the common update)."""
    if flags.size >= _NUMPY_COUNTS_FROM and np.all(np.abs(flags) < 2.0**53):  # False for NaN and Inf too
        return np.cumsum(flags.astype(np.int64)).tolist()
    return list(itertools.accumulate(map(int, flags.tolist())))


class RateSeries:
    """Windowed rate of bad outcomes (errors, wrong predictions) against its own baseline.

    Cut 0/1 outcomes into windows of ``window``; the first window sets the baseline, an
    exponential average (weight 0.1) of earlier windows that did not alert. A window alerts
    when it has at least ``min_events`` bad outcomes and its rate exceeds the baseline by 4
    binomial standard errors (the baseline at least 1/window) plus 2 points.
    """

    def __init__(self, what: str = "error_rate", *, window: int = 50, min_events: int = 5) -> None:
        if window < 1 or min_events < 0:
            raise ValueError("need window >= 1 and min_events >= 0")
        self.what, self.window, self.min_events = what, int(window), int(min_events)
        self.pending_n, self.pending_bad = 0, 0
        self.base: float | None = None
        self.n_seen = 0
        self.clean = 0
        self.cleans: list[int] = []  # of each chunk of the last update_chunks

    def update(self, times_us: Any, flags: Any) -> list[Finding]:
        """Fold the outcomes in; the windows that alerted. Python work per window, not per outcome."""
        return self.update_chunks([(times_us, flags)])[0]

    def update_chunks(self, chunks: Sequence[tuple[Any, Any]]) -> list[list[Finding]]:
        """:meth:`update` on each chunk (times, outcomes) in turn, in one pass: each chunk's findings, and
        ``cleans`` each chunk's ``clean``; the same state. Windows do not depend on where chunks are cut (the
        next ``window`` outcomes): a window is given back to the chunk of its last outcome."""
        parts = [_arrays(t, v) for t, v in chunks]
        times, bad = parts[0] if len(parts) == 1 else (np.concatenate(p) for p in zip(*parts, strict=True))
        w = self.window
        windows: list[tuple[int, Finding | None]] = []  # (position of its last outcome, its finding)
        counts = [0, *_running_counts(bad)]  # bad outcomes among the first j
        taken = 0  # outcomes of this update in windows closed so far
        for end in range(max(1, w - self.pending_n), bad.size + 1, w):  # a window closes at outcome end - 1
            i = end - 1
            count = self.pending_bad + counts[end] - counts[taken]
            rate = count / w
            self.pending_n = self.pending_bad = 0
            taken = end
            if self.base is None:
                self.base = rate
                windows.append((i, None))
                continue
            limit = self.base + 4.0 * math.sqrt(max(self.base, 1.0 / w) * (1.0 - min(self.base, 0.99)) / w) + 0.02
            if count >= self.min_events and rate > limit:
                windows.append((i, self._finding(self.n_seen + i, int(times[i]), rate, self.base, limit, count)))
            else:
                self.base = 0.9 * self.base + 0.1 * rate
                windows.append((i, None))
        self.pending_n += bad.size - taken
        self.pending_bad += counts[-1] - counts[taken]
        self.n_seen += int(bad.size)
        found, self.cleans = by_chunk(windows, [p[1].size for p in parts], w)
        self.clean = self.cleans[-1]
        return found

    def _finding(self, index: int, time_us: int, rate: float, base: float, limit: float, count: int) -> Finding:
        label = "error rate" if self.what == "error_rate" else "wrong-prediction rate"
        return Finding(
            index,
            float(time_us),
            rate,
            rate,
            f"{self.what}_burst",
            f"{label} {rate:.0%} (baseline {base:.1%})",
            limit,
            self.what,
            "critical" if rate >= max(0.5, 4 * limit) else "warning",
            category="error_rate" if self.what == "error_rate" else "anomaly",
            time_us=time_us,
            statistic=rate,
            evidence=(rate, base, float(count)),
            details={"window": str(self.window)},
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "window": self.window,
            "min_events": self.min_events,
            "pending": [self.pending_n, self.pending_bad],
            "base": self.base,
            "n_seen": self.n_seen,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RateSeries:
        r = cls(state["what"], window=state["window"], min_events=state["min_events"])
        r.pending_n, r.pending_bad = (int(v) for v in state["pending"])
        r.base, r.n_seen = state["base"], int(state["n_seen"])
        return r


_Window = tuple[int, np.ndarray]  # (position in the update of its last value, the current window)


class DriftWindows:
    """One input feature's distribution: a reference window, then each full window tested against it.

    ``alpha`` is the feature's share of the family-wise level (the worker divides its level
    by the number of features: Bonferroni); ``psi_critical`` the PSI from which a drift is
    critical. The verdict is :func:`~aitrace.detect.drift_monitor.detect_drift`'s.
    """

    def __init__(
        self,
        feature: str,
        *,
        window: int = 200,
        alpha: float = 0.001,
        min_effect: float = 0.1,
        psi_critical: float = 0.5,
    ) -> None:
        if window < 2 or not 0.0 < alpha < 1.0:
            raise ValueError("need window >= 2 and 0 < alpha < 1")
        self.feature, self.window, self.alpha = feature, int(window), float(alpha)
        self.min_effect, self.psi_critical = float(min_effect), float(psi_critical)
        # finite values as arrays: a completed window is tested as it is, no list to convert
        self.ref = np.empty(0)
        self.cur = np.empty(0)
        self._sorted_ref: np.ndarray | None = None
        self._ref_distinct: int | None = None  # distinct values of the reference, counted with its sort
        self.n_seen = 0
        self.clean = 0
        self.cleans: list[int] = []  # of each chunk of the last batched.update_drift_windows_chunks
        self.cur_latest: int | None = None  # the latest event time among the values in ``cur``

    def update(self, times_us: Any, values: Any) -> list[Finding]:
        times, vals = _arrays(times_us, values)
        found, self.clean = [], 0
        start = self.past_reference(vals)
        windows = self.cut(vals)
        dates = self.dates(*part_latest(times, vals, start, [i for i, _ in windows]))
        for (i, cur), time_us in zip(windows, dates, strict=True):
            verdict = detect_drift({self.feature: self.ref}, {self.feature: cur}, alpha=self.alpha, correction="none")
            if verdict[0].drifted:
                found.append(self._finding(self.n_seen + i, time_us, verdict[0]))
                self.clean = 0
            else:
                self.clean += self.window
        self.n_seen += int(vals.size)
        return found

    def past_reference(self, vals: np.ndarray) -> int:
        """Where in ``vals`` the values past the reference begin (call before :meth:`cut` fills it)."""
        room = self.window - self.ref.size
        if room <= 0:
            return 0
        where = np.flatnonzero(np.isfinite(vals))
        return int(where[room - 1]) + 1 if where.size >= room else int(vals.size)

    def dates(self, windows: list[int], rest: int | None) -> list[int]:
        """The event time each window that :meth:`cut` completed is dated by: the latest among its values.

        ``windows`` and ``rest`` are :func:`part_latest`'s for the update; what is left in ``cur``
        keeps its latest time in ``cur_latest`` for the window it will complete. The last value to
        arrive is not the latest: the worker reads a model's records from several partitions, in no
        time order, and a window that a lagging partition's old records completed was dated by one
        of them, before most of its values (an incident that seemed to end before the drift in it began).
        """
        latest, out = self.cur_latest, []
        for part in windows:
            out.append(part if latest is None else max(latest, part))
            latest = None
        if rest is not None:
            latest = rest if latest is None else max(latest, rest)
        self.cur_latest = latest if self.cur.size else None
        return out

    def cut(self, vals: np.ndarray) -> list[_Window]:
        """Fill the reference, then the current window, with the finite values; each window that
        completes, as (position in ``vals`` of its last value, the window). The reference is full
        once any window completes (and stays the same array from then on)."""
        where = np.flatnonzero(np.isfinite(vals))
        finite = vals if where.size == vals.size else vals[where]
        pos = min(finite.size, max(0, self.window - self.ref.size))
        if pos:
            self.set_reference(np.concatenate((self.ref, finite[:pos])))
        windows = []
        while finite.size - pos >= self.window - self.cur.size:
            take = self.window - self.cur.size
            cur = np.concatenate((self.cur, finite[pos : pos + take]))
            pos += take
            windows.append((int(where[pos - 1]), cur))
            self.cur = cur[:0]
        if pos < finite.size:
            self.cur = np.concatenate((self.cur, finite[pos:]))
        return windows

    def set_reference(self, ref: np.ndarray) -> None:
        """A new (longer) reference: what was derived from the old one is dropped."""
        self.ref, self._sorted_ref, self._ref_distinct = ref, None, None

    def sorted_reference(self) -> np.ndarray:
        """The reference window sorted, once per reference (it no longer changes once full)."""
        if self._sorted_ref is None:
            self._sorted_ref = np.sort(self.ref)
        return self._sorted_ref

    def reference_distinct(self) -> int:
        """Distinct values of the reference (finite only: the steps of its sort), counted once per reference."""
        if self._ref_distinct is None:
            self._ref_distinct = int(np.count_nonzero(np.diff(self.sorted_reference()))) + 1
        return self._ref_distinct

    def _finding(self, index: int, time_us: int, verdict: Any) -> Finding:
        psi_value = verdict.psi if verdict.psi is not None else 0.0
        stat = float(verdict.details.get("ks_distance", verdict.statistic))
        return Finding(
            index,
            math.nan,  # a window, not a step
            stat,
            stat,
            verdict.test,
            f"input drift of {self.feature!r} (KS {stat:.2f}, PSI {psi_value:.2f})",
            self.min_effect,
            "feature",
            "critical" if psi_value >= self.psi_critical else "warning",
            category="drift",
            time_us=time_us,
            statistic=stat,
            pvalue=verdict.pvalue,
            evidence=(stat, psi_value),
            details={"alpha": f"{self.alpha:.3g}", "window": str(self.window), "why": verdict.message},
        )

    def to_state(self) -> dict[str, Any]:
        """JSON-safe; the windows as base64 of little-endian float64 (see :func:`_pack_floats`)."""
        return {
            "feature": self.feature,
            "params": [self.window, self.alpha, self.min_effect, self.psi_critical],
            "ref": _pack_floats(self.ref),
            "cur": _pack_floats(self.cur),
            "cur_latest": self.cur_latest,
            "n_seen": self.n_seen,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DriftWindows:
        """Restore :meth:`to_state`'s dict, or one written before the windows were packed (lists of floats)."""
        window, alpha, min_effect, psi_critical = state["params"]
        d = cls(state["feature"], window=int(window), alpha=alpha, min_effect=min_effect, psi_critical=psi_critical)
        d.ref = _unpack_floats(state["ref"])
        d.cur = _unpack_floats(state["cur"])
        d.n_seen = int(state["n_seen"])
        d.cur_latest = state.get("cur_latest")  # states saved before it was kept: the window's own chunk dates it
        return d


_WIRE_FLOAT = np.dtype("<f8")
_NO_TIME = np.iinfo(np.int64).min  # the time of a value that is in no window (not finite)


def part_latest(
    times: np.ndarray, vals: np.ndarray, start: int, ends: list[int], finite: bool | None = None
) -> tuple[list[int], int | None]:
    """The latest event time among the finite values of each window's part of an update (from ``start``,
    :meth:`DriftWindows.past_reference`'s, or the last end, to each end: the windows' last positions),
    and of the part left after the last end (None: no finite value). ``finite``: all of ``vals`` is."""
    stamps = times[start:]
    if not (finite if finite is not None else bool(np.isfinite(vals[start:]).all())):
        stamps = np.where(np.isfinite(vals[start:]), stamps, _NO_TIME)
    bounds = [i + 1 - start for i in ends]
    windows = [int(stamps[lo:hi].max()) for lo, hi in itertools.pairwise([0, *bounds])]
    lo = bounds[-1] if bounds else 0
    rest = int(stamps[lo:].max()) if lo < stamps.size else _NO_TIME
    return windows, None if rest == _NO_TIME else rest  # a window ends on a finite value: it has a time


def _pack_floats(values: np.ndarray) -> str:
    """A float array as base64 of its little-endian float64 bytes: a full window of 200 floats is 2.1 KB
    of text instead of about 3.9 KB of JSON numbers, and encodes and parses without a Python float each."""
    blob = np.ascontiguousarray(values, dtype=_WIRE_FLOAT)
    return binascii.b2a_base64(blob.tobytes(), newline=False).decode("ascii")


def _unpack_floats(saved: str | list[float]) -> np.ndarray:
    """:func:`_pack_floats`'s text, or the list of floats states held before: a float64 array either way."""
    if isinstance(saved, str):
        return np.frombuffer(binascii.a2b_base64(saved, strict_mode=True), dtype=_WIRE_FLOAT).astype(np.float64)
    return np.asarray(saved, dtype=np.float64).reshape(-1)
