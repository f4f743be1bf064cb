"""Sustained level change of a positive series (a latency whose median doubled).

The idea
--------
The point scores of :mod:`aitrace.detect.anomaly` measure a level shift in units of the
series' own point noise (3 sd by default), which is right for a spike but blind to what an
operator of a service calls an incident: the median latency went from 40 ms to 85 ms and
stays there. A real service's latency is heavy-tailed (requests of 10 ms and 140 ms
under the same load), so a doubling of its median is about 1.3 point-sd in log space.
That is invisible to a point score, yet, over 32 requests, far beyond chance.

So this detector compares two samples instead of one point with a level: the last
``recent`` values against the ``baseline`` values before them (in log space: a latency
changes by factors), and reports when both hold:

* **the change matters**: the median moved by at least ``min_ratio`` (1.5x by default;
  ``direction='up'`` for latencies, where only slower is bad);
* **the change is not chance**: the Mann-Whitney rank statistic of the recent window
  against the baseline is at least ``min_z`` standard errors from its null mean. Ranks
  make it indifferent to the tails and to the scale.

A change is reported once: the recent window then becomes the baseline (the new normal),
and the next test waits until the baseline holds ``min_baseline`` points again. Tests run
every ``stride`` accepted points, counted across chunks, so chunked and one-shot input
give the same findings at the same indices. Values that are not finite or not positive
are skipped (they are the point detector's business).

How the defaults were chosen
----------------------------
``recent=32``: a median of 32 heavy-tailed points is stable to about 15 % and a sustained
change shows within 16-24 points (half the window plus one stride). ``baseline=256``
(the recent past, a few minutes of a busy service) and ``min_baseline=64``. ``min_z=5``:
serially correlated telemetry inflates a rank statistic that assumes independent points,
so the bar is far above the nominal 1e-6 tail; ``min_ratio=1.5``: a smaller move of the
median is tuning, not an incident.

Example
-------
>>> import numpy as np
>>> from aitrace.detect import LevelShiftDetector
>>> rng = np.random.default_rng(0)
>>> latency = np.exp(rng.normal(np.log(40.0), 0.6, 400))  # a heavy-tailed service, median 40 ms
>>> latency[300:] *= 2.1                                   # its median doubles at request 300
>>> det = LevelShiftDetector(direction="up")
>>> [(s.index, round(s.ratio, 1)) for s in det.update(latency)]
[(327, 2.0)]
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from aitrace.detect import _cache  # noqa: F401  (sets the Numba cache dir before any @njit)
from numba import njit

_DIRECTIONS = ("up", "down", "both")
_BUCKET_CAP = 512  # values kept per latency bucket: its median needs no more


@dataclass(frozen=True)
class LevelShift:
    """One sustained change: where it was confirmed, and by how much."""

    index: int  # position in the series (accepted or not) counted from the detector's first value
    ratio: float  # recent median / baseline median
    z: float  # Mann-Whitney statistic in standard errors (positive: recent higher)
    baseline_median: float
    recent_median: float
    n_baseline: int
    n_recent: int

    def describe(self, what: str) -> str:
        """The change in words: what moved, by how much, against what."""
        verb = "rose" if self.ratio >= 1 else "fell to"
        return (
            f"median {what} {verb} {self.ratio:.2g}x, {self.baseline_median:.3g} -> {self.recent_median:.3g} "
            f"(last {self.n_recent} against the {self.n_baseline} before them, rank test z {self.z:.1f})"
        )


class LevelShiftDetector:
    """Reports a sustained change of a positive series' median, once per change.

    Parameters
    ----------
    recent, baseline, min_baseline:
        Window lengths (points): the recent sample, the most baseline points kept, the
        fewest the test needs.
    min_ratio:
        Smallest change of the median (as a factor) that is reported.
    min_z:
        Smallest Mann-Whitney statistic, in standard errors, that is reported.
    direction:
        ``up`` (only rises count: latencies), ``down`` or ``both``.
    stride:
        Test every ``stride`` accepted points.
    """

    def __init__(
        self,
        *,
        recent: int = 32,
        baseline: int = 256,
        min_baseline: int = 64,
        min_ratio: float = 1.5,
        min_z: float = 5.0,
        direction: str = "both",
        stride: int = 8,
    ) -> None:
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {_DIRECTIONS}, not {direction!r}")
        if not 2 <= recent <= min_baseline <= baseline:
            raise ValueError("need 2 <= recent <= min_baseline <= baseline")
        if min_ratio <= 1 or min_z <= 0 or stride < 1:
            raise ValueError("need min_ratio > 1, min_z > 0 and stride >= 1")
        self.params: dict[str, Any] = {
            "recent": recent,
            "baseline": baseline,
            "min_baseline": min_baseline,
            "min_ratio": min_ratio,
            "min_z": min_z,
            "direction": direction,
            "stride": stride,
        }
        self.recent = np.empty(0)  # log values, oldest first
        self.baseline = np.empty(0)
        self.n_seen = 0  # every value offered
        self.n_accepted = 0

    def update(self, values: Any) -> list[LevelShift]:
        """Feed values in order; the changes confirmed among them."""
        vals = np.asarray(values, dtype=np.float64).ravel()
        where = np.flatnonzero(np.isfinite(vals) & (vals > 0))
        logs = _logs(vals[where])
        seen, found, done = self.n_seen, [], 0
        while done < logs.size:
            done, shift = self._run(logs, done, where, seen)
            if shift is not None:
                found.append(shift)
                self.baseline, self.recent = self.recent, self.recent[:0]  # the new normal
        self.n_seen = seen + int(vals.size)
        return found

    def _run(self, logs: np.ndarray, done: int, where: np.ndarray, seen: int) -> tuple[int, LevelShift | None]:
        """Push ``logs[done:]`` up to the first confirmed change: (values pushed in all, the change).

        The medians of every test point's windows come in one call; only where they move by
        ``min_ratio`` does :meth:`_test` run (the same arithmetic, so the same verdicts).
        """
        p = self.params
        todo = logs[done:]
        first = p["stride"] - self.n_accepted % p["stride"]  # values pushed before the first test
        if first > todo.size:  # no test in this chunk (most short updates): nothing to gate
            self._push(todo)
            return logs.size, None
        hist = np.concatenate((self.baseline, self.recent, todo))
        step, direction = math.log(p["min_ratio"]), p["direction"]
        gated = _gated_tests(
            hist, hist.size - todo.size, first, p["stride"], p["recent"], p["baseline"], step,
            direction != "down", direction != "up",
        )  # fmt: skip
        pushed = 0
        for j in gated.tolist():
            self._push(todo[pushed:j])
            pushed = j
            self.n_seen = seen + int(where[done + j - 1]) + 1
            shift = self._test()
            if shift is not None:
                return done + j, shift
        self._push(todo[pushed:])
        return logs.size, None

    def _push(self, ys: np.ndarray) -> None:
        p = self.params
        self.n_accepted += ys.size
        recent = np.concatenate((self.recent, ys))
        over = recent.size - p["recent"]
        if over > 0:
            baseline = np.concatenate((self.baseline, recent[:over]))
            self.baseline = baseline[max(0, baseline.size - p["baseline"]) :].copy()  # no view of a long update
            recent = recent[over:].copy()
        self.recent = recent

    def _test(self) -> LevelShift | None:
        p = self.params
        if self.recent.size < p["recent"] or self.baseline.size < p["min_baseline"]:
            return None
        rec, base = self.recent, np.sort(self.baseline)
        log_ratio = float(np.median(rec) - np.median(base))
        rises = log_ratio >= math.log(p["min_ratio"])
        falls = log_ratio <= -math.log(p["min_ratio"])
        if not ((rises and p["direction"] != "down") or (falls and p["direction"] != "up")):
            return None
        z = _mann_whitney_z(rec, base)
        if abs(z) < p["min_z"] or (z > 0) != rises:
            return None
        return LevelShift(
            index=self.n_seen - 1,
            ratio=math.exp(log_ratio),
            z=z,
            baseline_median=math.exp(float(np.median(base))),
            recent_median=math.exp(float(np.median(rec))),
            n_baseline=base.size,
            n_recent=rec.size,
        )

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot; ``from_state`` restores the detector exactly."""
        return {
            "params": dict(self.params),
            "recent": self.recent.tolist(),
            "baseline": self.baseline.tolist(),
            "n_seen": self.n_seen,
            "n_accepted": self.n_accepted,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LevelShiftDetector:
        det = cls(**state["params"])
        det.recent = np.asarray(state["recent"], dtype=np.float64).reshape(-1)
        det.baseline = np.asarray(state["baseline"], dtype=np.float64).reshape(-1)
        det.n_seen, det.n_accepted = int(state["n_seen"]), int(state["n_accepted"])
        return det

    def __repr__(self) -> str:
        return (
            f"LevelShiftDetector(seen={self.n_seen}, baseline={len(self.baseline)}, "
            f"recent={len(self.recent)}, {self.params})"
        )


@njit(cache=True)
def _logs(x: np.ndarray) -> np.ndarray:
    """``math.log`` of each value, bit for bit (``np.log``'s own kernels differ in the last bit for a
    few values, and the windows of a saved state hold math.log's), without a Python call per value."""
    out = np.empty(x.size)
    for i in range(x.size):
        out[i] = math.log(x[i])
    return out


@njit(cache=True)
def _gated_tests(
    hist: np.ndarray, held: int, first: int, stride: int, recent: int, baseline: int, step: float, up: bool, down: bool
) -> np.ndarray:
    """The tests of ``hist[held:]`` (values pushed before each: ``first``, then every ``stride``) that the
    median gate lets through to :meth:`LevelShiftDetector._test`: all while the baseline is not full, then
    those where the recent window's median moved from the baseline's by ``step`` (log) or more, up (``up``)
    or down (``down``). One call for what were a dozen numpy operations of about a microsecond each."""
    tests = np.arange(first, hist.size - held + 1, stride)
    ends = held + tests - 1  # the newest value of each test's recent window, in hist
    full = ends - recent + 1 >= baseline
    gates = np.ones(tests.size, dtype=np.bool_)
    if full.any():
        gaps = _window_median_gaps(hist, ends[full], recent, baseline)
        gates[full] = ((gaps >= step) & up) | ((gaps <= -step) & down)
    return tests[gates]


@njit(cache=True)
def _window_median_gaps(hist: np.ndarray, ends: np.ndarray, recent: int, baseline: int) -> np.ndarray:
    """For each end: median of the ``recent`` values up to it less that of the ``baseline`` before them.

    The same numbers as ``np.median`` over the stacked windows. Both windows are kept sorted and
    slid from one end to the next (a value in, a value out, one shift of the values between),
    where a median per test partitioned 288 values afresh: it was most of a short update's cost.
    """
    out = np.empty(ends.size)
    rec = np.empty(recent)
    base = np.empty(baseline)
    prev = -1  # exclusive end of the windows held sorted in rec and base
    for k in range(ends.size):
        e = ends[k] + 1
        if prev < 0 or e - prev >= recent:
            rec[:] = np.sort(hist[e - recent : e])
            base[:] = np.sort(hist[e - recent - baseline : e - recent])
        else:
            for j in range(prev, e):
                _replace_sorted(rec, hist[j - recent], hist[j])
                _replace_sorted(base, hist[j - recent - baseline], hist[j - recent])
        prev = e
        out[k] = _sorted_median(rec) - _sorted_median(base)
    return out


@njit(cache=True)
def _replace_sorted(s: np.ndarray, old: float, new: float) -> None:
    """Take one ``old`` out of the sorted array ``s`` and put ``new`` in, keeping it sorted.

    Both places are counted (:func:`_below`) rather than searched or found by walking: the
    branches of a binary search or of a compare per step are mispredicted on fresh latencies
    every few values, a count over the window is not; the shift between is then a plain copy.
    Where ``new`` goes among values equal to it does not change the array.
    """
    i = _below(s, old)  # the first ``old``
    if new >= old:
        j = max(i, _below(s, new) - 1)  # the last value below ``new``, or ``old``'s own place
        for k in range(i, j):
            s[k] = s[k + 1]
    else:
        j = _below(s, new)  # the first value not below ``new`` (before ``old``)
        for k in range(i, j, -1):
            s[k] = s[k - 1]
    s[j] = new


@njit(cache=True)
def _below(s: np.ndarray, x: float) -> int:
    """How many values of ``s`` are below ``x``: a count without a branch per value."""
    n = 0
    for k in range(s.size):
        n += s[k] < x
    return n


@njit(cache=True)
def _sorted_median(s: np.ndarray) -> float:
    half = s.size >> 1
    return (s[half - 1] + s[half]) / 2 if s.size % 2 == 0 else s[half]


def _mann_whitney_z(recent: np.ndarray, sorted_baseline: np.ndarray) -> float:
    """(U - mean) / sd of the rank-sum statistic, ties counted half, with the tie correction."""
    m, n = recent.size, sorted_baseline.size
    below = np.searchsorted(sorted_baseline, recent, side="left")
    not_above = np.searchsorted(sorted_baseline, recent, side="right")
    u = float(np.sum(below + not_above)) / 2.0
    _, counts = np.unique(np.concatenate([recent, sorted_baseline]), return_counts=True)
    total = m + n
    ties = float(np.sum(counts.astype(np.float64) ** 3 - counts)) / (total * (total - 1))
    var = m * n / 12.0 * ((total + 1) - ties)
    return 0.0 if var <= 0 else (u - m * n / 2.0) / math.sqrt(var)


class LatencyShiftMonitor:
    """A service's latency got worse and stays so: sharply (many times slower, within a few
    dozen requests) or moderately (1.5x and more, held for half a minute and longer).

    Two :class:`LevelShiftDetector` views of one series:

    * **sharp**: every request, ``min_ratio=3``: a backing store that went from 3 ms to 60 ms
      shows within 32 requests, however busy the service;
    * **sustained**: the median of each ``bucket_s`` second of requests, ``min_ratio=1.5``: the
      recent window is then 32 seconds (or 32 requests, for a service that answers fewer than
      one a second), the baseline up to 256. On this machine's own ASGI service at 30
      requests/s under a busy test suite (``bench/data/``), per-request windows with
      ``min_ratio=1.5`` reported 57 rises of 1.5-2.8x in 32 minutes, each lasting about a
      second (CPU contention); the two views together reported 2.

    ``update(times_us, values)`` returns the confirmed shifts, ``index`` counting every value
    offered; chunked input gives the same shifts as one call.
    """

    def __init__(
        self, *, bucket_s: float = 1.0, sharp_ratio: float = 3.0, sustained_ratio: float = 1.5, direction: str = "up"
    ) -> None:
        if bucket_s <= 0:
            raise ValueError("bucket_s must be positive")
        self.bucket_us = int(bucket_s * 1e6)
        self.sharp = LevelShiftDetector(direction=direction, min_ratio=sharp_ratio)
        self.sustained = LevelShiftDetector(direction=direction, min_ratio=sustained_ratio)
        self.bucket: int | None = None  # the open bucket's number and values (capped: a median needs few)
        self.pending: list[float] = []
        self.n_seen = 0

    def update(self, times_us: Any, values: Any) -> list[LevelShift]:
        times = np.asarray(times_us, dtype=np.int64).ravel()
        vals = np.asarray(values, dtype=np.float64).ravel()
        if times.shape != vals.shape:
            raise ValueError(f"times and values differ in length: {times.shape} vs {vals.shape}")
        found = self.sharp.update(vals)  # its index already counts every value offered
        if vals.size:
            found += self._buckets(times // self.bucket_us, vals)
        self.n_seen += int(vals.size)
        return sorted(found, key=lambda s: s.index)

    def _buckets(self, buckets: np.ndarray, vals: np.ndarray) -> list[LevelShift]:
        """Each closed bucket's median into the sustained view, confirmed when the next bucket's
        first value came."""
        ok = np.isfinite(vals) & (vals > 0)
        if self.bucket is not None and bool((buckets == self.bucket).all()):  # no bucket closes: most short updates
            self.pending += vals[ok][: max(0, _BUCKET_CAP - len(self.pending))].tolist()
            return []
        bounds = [0, *(np.flatnonzero(np.diff(buckets)) + 1).tolist(), vals.size]
        medians: list[float] = []
        at: list[int] = []
        for lo, hi in itertools.pairwise(bounds):
            if (lo > 0 or (self.bucket is not None and int(buckets[0]) != self.bucket)) and self.pending:
                medians.append(_median(self.pending))
                at.append(self.n_seen + lo)
                self.pending = []
            room = _BUCKET_CAP - len(self.pending)
            if room > 0:
                self.pending += vals[lo:hi][ok[lo:hi]][:room].tolist()
        self.bucket = int(buckets[-1])
        first = self.sustained.n_seen
        return [replace(s, index=at[s.index - first]) for s in self.sustained.update(medians)]

    def to_state(self) -> dict[str, Any]:
        return {
            "bucket_us": self.bucket_us,
            "sharp": self.sharp.to_state(),
            "sustained": self.sustained.to_state(),
            "bucket": self.bucket,
            "pending": list(self.pending),
            "n_seen": self.n_seen,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LatencyShiftMonitor:
        mon = cls(bucket_s=state["bucket_us"] / 1e6)
        mon.sharp = LevelShiftDetector.from_state(state["sharp"])
        mon.sustained = LevelShiftDetector.from_state(state["sustained"])
        mon.bucket, mon.pending, mon.n_seen = state["bucket"], [float(v) for v in state["pending"]], state["n_seen"]
        return mon


# A throughput of 0 or less (a run that made no progress) is read as this time per unit of work, so that a stall
# still counts (a rank test, not a ratio alone, confirms a change); a median this far up mixes it in: shown as 0
_PACE_STALL, _STALLED = 1e300, 1e100


def _median(values: list[float]) -> float:
    """``np.median`` of a short list, the same number: numpy's call costs ~20 us, most of a bucket's."""
    s, n = sorted(values), len(values)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


class PaceShiftMonitor:
    """A training run got slower and stays so: :class:`LatencyShiftMonitor` on its time per step (a
    throughput is read as its reciprocal, a time per unit of work), so a run's slowdown is judged as a
    service's latency is: 3x within 32 steps, or 1.5x held for 32 seconds (32 steps, for a run slower
    than a step a second; without event times, only the 3x view). A change either way is the new normal
    (a run that warms up for minutes, then runs 3x faster, is judged against its fast pace); only a
    slowdown is reported. A throughput of 0 or less is no progress at all; a time per step of 0 or less
    (faster than its timer) is left out, so a time that rises from 0 is judged only once it has a
    positive baseline.

    A run's pace jitters with the machine (a garbage collection, a data loader's refill, another
    process on the core): single slow steps, and bursts of a dozen, are not the run's. On the step
    times and samples/s of the bench's healthy PyTorch runs (60 series, 20,808 points, steps of about
    0.5 ms on this 2-core machine), the generic windowed scores opened 13 incidents (slow steps,
    throughput dips, level shifts) and this monitor none; a :class:`LevelShiftDetector` on every
    step at 1.5x opened 4 (1.5-1.6x for 32 steps: 16 ms).

    ``pace``: +1 for a time per step (a rise is a slowdown), -1 for a throughput (a fall is).
    """

    def __init__(self, pace: int) -> None:
        if pace not in (-1, 1):
            raise ValueError(f"pace must be -1 or 1, got {pace!r}")
        self.pace = pace
        self.monitor = LatencyShiftMonitor(direction="both")

    @property
    def sustained(self) -> LevelShiftDetector:
        return self.monitor.sustained

    def update(self, times_us: Any, values: Any) -> list[LevelShift]:
        """The confirmed slowdowns among the next values (event times in microseconds)."""
        vals = np.asarray(values, dtype=np.float64).ravel()
        per_step = vals
        if self.pace < 0:
            with np.errstate(divide="ignore", over="ignore"):
                per_step = np.where(vals > 0.0, 1.0 / vals, np.where(np.isnan(vals), np.nan, _PACE_STALL))
        found = [s for s in self.monitor.update(times_us, per_step) if s.ratio > 1.0]
        return found if self.pace > 0 else [self._throughput(s) for s in found]

    @staticmethod
    def _throughput(shift: LevelShift) -> LevelShift:
        """A slowdown in a throughput's own terms: its medians (0 where it stalled) and their ratio."""
        base, recent = (0.0 if m >= _STALLED else 1.0 / m for m in (shift.baseline_median, shift.recent_median))
        ratio = recent / base if base > 0 else 1.0 / shift.ratio
        return replace(shift, ratio=ratio, z=-shift.z, baseline_median=base, recent_median=recent)

    def to_state(self) -> dict[str, Any]:
        """The monitor's state with ``pace`` beside it: flat, so a release before (whose rules take it for a
        latency's monitor) still reads it."""
        return self.monitor.to_state() | {"pace": self.pace}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PaceShiftMonitor:
        mon = cls(int(state["pace"]))
        mon.monitor = LatencyShiftMonitor.from_state(state)
        return mon
