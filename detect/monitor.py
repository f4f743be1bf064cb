"""Per-series monitors for the processors: values in, findings out, state in a dict.

:class:`SeriesMonitor` wraps :class:`~aitrace.detect.anomaly.AnomalyDetector`
with what a series *kind* means: which transform makes its noise stable (log for
positive, multiplicative quantities such as grad norms, latencies and rates),
which directions matter (a loss dip is good news, a throughput dip is not), hard
limits (a learning rate <= 0, an accuracy above 1), and the words a person on
call wants to read ("exploding", "diverging", "vanishing", "error_burst").

:func:`~aitrace.detect.overfit.overfitting` checks a pair of train/validation loss curves; the
series kinds (``KINDS``, ``PROFILES``) are in :mod:`aitrace.detect.series_kinds`.

Example
-------
>>> import numpy as np
>>> from aitrace.detect import SeriesMonitor
>>> rng = np.random.default_rng(0)
>>> steps = np.arange(400)
>>> grad = np.exp(rng.normal(0.0, 0.2, 400))
>>> grad[300:] *= 1e4                      # gradients blow up at step 300
>>> mon = SeriesMonitor("grad_norm")
>>> found = mon.update(steps[:250], grad[:250]) + mon.update(steps[250:], grad[250:])
>>> int(found[0].step), found[0].reason
(300, 'exploding')
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from aitrace.detect.anomaly import AnomalyDetector
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
)
from aitrace.detect.calibrate import ScoreCalibrator, point_moves, varied_through
from aitrace.detect.finding import Finding
from aitrace.detect.series_kinds import KINDS, PROFILES
from numba import njit

_LOG10 = math.log(10.0)
# The kinds the worker's training rules run through this monitor, as tuned on real runs, and a
# learning rate (a schedule: its rules are its limits and a jump up). Every other kind pages on a
# windowed score only where it is also rare for the series (``ScoreCalibrator``), as the worker's
# rules for any other series do: raw, the generic monitor flagged 17.9 % of the points of this
# machine's real telemetry (``bench/bench_realdata.py`` (e)), an all-zero error count as ``flat`` at
# every point.
_UNCALIBRATED = frozenset({"loss", "grad_norm", "lr"})
# A loss's level shift up is "diverging" only this far above the best level it reached (``rise``): a smooth
# validation loss climbing 7 % past its best as a warm restart's lr came back (CosineAnnealingWarmRestarts on a
# regression MLP, /work/rev-ad) is many times its tiny noise and paged critical; a rise near the best is the
# over-fitting rule's question, which weighs the training loss beside it. Over-fitting rises 10-25 % past its best
# at the 3 evaluations that rule waits for on the bench's runs (bench/training_runs.py); a divergence runs away.
LOSS_LEVEL_RISE = 0.25
_REASON_CODES = {
    "spike": CODE_SPIKE,
    "dip": CODE_DIP,
    "level_up": CODE_LEVEL_UP,
    "level_down": CODE_LEVEL_DOWN,
    "flat": CODE_FLAT,
    "variance_change": CODE_VARIANCE,
}


# Growth state: [baseline, best, noise at best, points seen by the baseline]
_G_BASE, _G_BEST, _G_BEST_NOISE, _G_COUNT = range(4)
# The baseline's memory, in detector windows. Long enough that a series growing
# 4 % per step runs away from it by decades; with a running mean for the first
# points, so an ordinary early transient (gradients settling after init) is
# averaged in rather than taken as the reference.
BASELINE_WINDOWS = 16


@njit(cache=True, error_model="numpy")
def _growth_kernel(
    levels: np.ndarray,
    noise: np.ndarray,
    alpha: float,
    state: np.ndarray,
    out_log_ratio: np.ndarray,
    out_rise: np.ndarray,
) -> None:
    """Slow drifts the windowed detector cannot see, because its windows ride along with them.

    out_log_ratio: recent level minus a slow baseline (a running mean of the levels,
    turning into an exponential average with time constant 1/alpha points); in log
    space this is log(level / baseline), the measure of an exploding or vanishing
    series. out_rise: how far the recent level sits above
    the best (lowest) level seen, relative to that best, where the gap is also
    larger than 5 noise sd at the time of the best; 0 otherwise (a diverging loss).
    """
    for i in range(levels.shape[0]):
        lv = levels[i]
        out_log_ratio[i] = 0.0
        out_rise[i] = 0.0
        if not math.isfinite(lv):
            continue
        if state[_G_COUNT] == 0.0:
            state[_G_BASE] = lv
            state[_G_BEST] = lv
            state[_G_BEST_NOISE] = noise[i]
            state[_G_COUNT] = 1.0
            continue
        out_log_ratio[i] = lv - state[_G_BASE]
        best = state[_G_BEST]
        gap = lv - best
        if gap > 5.0 * state[_G_BEST_NOISE] and best != 0.0:
            out_rise[i] = gap / abs(best)
        state[_G_COUNT] += 1.0
        rate = 1.0 / state[_G_COUNT]
        state[_G_BASE] += (rate if rate > alpha else alpha) * (lv - state[_G_BASE])
        if lv < best:
            state[_G_BEST] = lv
            state[_G_BEST_NOISE] = noise[i]


class SeriesMonitor:
    """Watch one metric series of a known kind; return :class:`Finding` objects per batch.

    Parameters
    ----------
    kind:
        One of :data:`KINDS` (see :data:`PROFILES` for what each means).
        ``generic`` reports every reason in both directions. For parameter-update
        norms ("vanishing updates") use ``grad_norm``: the same multiplicative rules.
    threshold:
        Score at or above which a point is reported (default: the kind's, 0.5 for loss,
        grad_norm and lr, the worker's 0.9 for the others). For every kind but those three a
        windowed score also pages only where it is rare for the series itself
        (:class:`~aitrace.detect.calibrate.ScoreCalibrator`; the directions the kind ignores
        are not part of that history), and a repeated value only once the series has varied,
        as the worker's rules for any other series do. Hard limits, NaN/Inf and the gaps
        between steps (``throughput``) are not calibrated.
    skip_seen:
        Ignore points whose step is not greater than the last step processed, so a
        batch delivered twice (Kafka/Faust are at-least-once) changes nothing.
    **params:
        Passed to :class:`~aitrace.detect.anomaly.AnomalyDetector`: ``window``,
        ``shift_h``, ``var_h``, ``flat_h``, ``min_periods``; the detector's own
        ``threshold`` (robust z at score 0.5) is spelled ``z_threshold`` here.

    ``update(steps, values)`` takes two equal-length arrays (steps: a step number or
    a timestamp per value, finite) and returns the findings among them, in order;
    ``to_state()`` / ``from_state()`` carry everything between batches as a plain
    dict. Besides the windowed scores, a slow baseline of the level catches growth
    the windows ride along with: ``exploding`` / ``vanishing`` once the level is a
    decade away from it (grad_norm), ``diverging`` once a loss sits 50 % above the
    best level it reached (and 5 noise sd). Example in the module docstring.
    """

    STATE_VERSION = 1

    def __init__(
        self, kind: str = "generic", *, threshold: float | None = None, skip_seen: bool = True, **params: Any
    ) -> None:
        if kind not in PROFILES:
            raise ValueError(f"unknown series kind {kind!r}; expected one of {', '.join(KINDS)}")
        self.kind = kind
        self.profile = PROFILES[kind]
        self.threshold = float(self.profile.threshold if threshold is None else threshold)
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        self.skip_seen = bool(skip_seen)
        if "z_threshold" in params:
            params["threshold"] = params.pop("z_threshold")
        params.setdefault("window", self.profile.window)
        self.params = params
        self.detector = AnomalyDetector(**params)
        self.gap_detector = AnomalyDetector(**params) if self.profile.gap_monitor else None
        self.n_points = 0
        self.last_step: float | None = None
        self.growth = np.zeros(4)
        self.calibrator = None if kind in _UNCALIBRATED else ScoreCalibrator()
        # the directions this kind ignores stay out of its history: a throughput's usual bursts up must not
        # make its first drop of the same size "usual" (spikes and dips are one family)
        self._good_news = np.array(sorted(_REASON_CODES[r] for r in self.profile.ignore), dtype=np.int64)
        self.first: float | None = None  # the first finite value: a repeat is news only once the series varied
        self.varied = False

    # ------------------------------------------------------------------ update
    def update(self, steps: Any, values: Any) -> list[Finding]:
        """Score the next batch of points and return those worth reporting, in order."""
        steps_arr = np.asarray(steps, dtype=np.float64).reshape(-1)
        vals = np.asarray(values, dtype=np.float64).reshape(-1)
        if steps_arr.shape != vals.shape:
            raise ValueError(f"steps and values differ in length: {steps_arr.shape} vs {vals.shape}")
        if not np.all(np.isfinite(steps_arr)):
            raise ValueError("steps must be finite numbers (a step or a timestamp per value)")
        if self.skip_seen and self.last_step is not None and steps_arr.size:
            keep = steps_arr > self.last_step
            steps_arr, vals = steps_arr[keep], vals[keep]
        if vals.size == 0:
            return []
        transformed, violations = self._transform(vals)
        scores = self.detector.score(transformed)
        codes = self.detector.last_codes
        level = self.detector.last_level
        log_ratio = np.zeros(vals.size)
        rise = np.zeros(vals.size)
        alpha = 1.0 / (BASELINE_WINDOWS * self.detector.params.window)
        _growth_kernel(level, self.detector.last_noise, alpha, self.growth, log_ratio, rise)
        gap_scores = self._gap_scores(steps_arr)
        # Only candidates go through the (Python) classification.
        paged = self._scored(scores, codes, vals)
        candidates = paged | (violations != "") | ~np.isfinite(vals)
        if gap_scores is not None:
            candidates |= gap_scores >= self.threshold
        if self.kind in ("grad_norm", "loss"):
            candidates |= (np.abs(log_ratio) >= math.log(10.0)) | (rise >= 0.5)
        findings: list[Finding] = []
        for k in np.flatnonzero(candidates):
            finding = self._classify(
                int(k), steps_arr, vals, scores, codes, violations, level, gap_scores, log_ratio[k], rise[k], paged[k]
            )
            if finding is not None:
                findings.append(finding)
        self.n_points += int(vals.size)
        finite_steps = steps_arr[np.isfinite(steps_arr)]
        if finite_steps.size:
            self.last_step = float(finite_steps.max())
        return findings

    def _scored(self, scores: np.ndarray, codes: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """The points whose windowed score pages: at the threshold, and for a calibrated kind rare for
        this series too and no repeat of a series that never varied (a constant, a count at 0)."""
        if self.calibrator is None:
            return scores >= self.threshold
        news = np.where(np.isin(codes, self._good_news), CODE_NONE, codes) if self._good_news.size else codes
        det = self.detector
        # a generic series' record move pages as in the worker's rules; a training kind's own rules judge its size
        moves = point_moves(vals, codes, det.last_z, det.last_noise, det.last_level) if self.kind == "generic" else None
        rare = self.calibrator.rare(scores, news, threshold=self.threshold, moves=moves)
        if self.varied:
            return rare
        self.first, moved = varied_through(vals, self.first)
        self.varied = bool(moved[-1])
        return rare & ((codes != CODE_FLAT) | np.concatenate([[False], moved[:-1]]))  # varied before the point

    def _transform(self, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values the detector sees, and a per-point rule-violation label ('' when none)."""
        p = self.profile
        violations = np.full(vals.shape, "", dtype=object)
        finite = np.isfinite(vals)
        if p.lower is not None:
            # for log kinds, 0 itself is out of the detector's domain but may be meaningful
            low = finite & ((vals <= p.lower) if p.log else (vals < p.lower))
            violations[low] = "below"
        if p.upper is not None:
            violations[finite & (vals > p.upper)] = "above"
        if p.tiny is not None:
            violations[finite & (vals > 0) & (vals < p.tiny)] = "tiny"
        if not p.log:
            return vals, violations
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(finite & (vals > 0), np.log(np.where(vals > 0, vals, 1.0)), np.nan)
        out = np.where(np.isfinite(vals), out, vals)  # NaN/Inf stay themselves for the detector
        # a non-positive value of a log kind is reported by its rule, not as "nan"
        return out, violations

    def _gap_scores(self, steps: np.ndarray) -> np.ndarray | None:
        if self.gap_detector is None:
            return None
        prev = np.concatenate([[self.last_step if self.last_step is not None else np.nan], steps[:-1]])
        gaps = steps - prev
        with np.errstate(divide="ignore", invalid="ignore"):
            lg = np.where(gaps > 0, np.log(np.where(gaps > 0, gaps, 1.0)), np.nan)
        # the first point of a series has no gap: skip it rather than call it NaN
        lg_valid = lg[np.isfinite(lg)]
        scores = np.zeros(steps.shape)
        if lg_valid.size:
            s = self.gap_detector.score(lg_valid)
            z = self.gap_detector.last_z
            scores[np.isfinite(lg)] = np.where(z > 0, s, 0.0)  # only longer gaps are delays
        return scores

    # ------------------------------------------------------------------ classification
    def _classify(
        self,
        k: int,
        steps: np.ndarray,
        vals: np.ndarray,
        scores: np.ndarray,
        codes: np.ndarray,
        violations: np.ndarray,
        level: np.ndarray,
        gap_scores: np.ndarray | None,
        log_ratio: float,
        rise: float,
        scored: bool,
    ) -> Finding | None:
        value = float(vals[k])
        index = self.n_points + k
        step = float(steps[k])
        make = lambda score, reason, message, severity="warning": Finding(  # noqa: E731
            index, step, value, float(score), reason, message, self.threshold, self.kind, severity
        )
        if violations[k]:
            return self._rule_finding(make, value, violations[k])
        code = int(codes[k])
        score = float(scores[k])
        if code in (CODE_NAN, CODE_INF):
            what = "NaN" if code == CODE_NAN else "infinite"
            reason = CODE_NAMES[code]
            if self.kind == "loss":
                return make(1.0, "diverging", f"loss became {what} at step {step:g}: training diverged", "critical")
            return make(1.0, reason, f"{self.kind} is {what} at step {step:g}", "critical")
        if gap_scores is not None and gap_scores[k] >= self.threshold and gap_scores[k] > score:
            return make(gap_scores[k], "ingestion_delay", f"unusually long gap before step {step:g}")
        slow = self._growth_finding(make, value, log_ratio, rise)
        if slow is not None and max(slow.score, score) >= self.threshold:
            # an explosion or divergence names the incident, whichever component scored higher
            return replace(slow, score=max(slow.score, score))
        if score < self.threshold or code == CODE_NONE or not scored:
            return None
        generic = CODE_NAMES[code]
        key = {CODE_LEVEL_UP: "level_up", CODE_LEVEL_DOWN: "level_down"}.get(code, generic)
        if (key in self.profile.ignore or generic in self.profile.ignore) and not self._collapse(code, value, level[k]):
            return None
        return self._kind_finding(make, code, score, value, float(level[k]), rise)

    def _collapse(self, code: int, value: float, level: float) -> bool:
        """A gradient norm's point 100x or more below its recent level: ``vanishing``, though a fall is normal."""
        return self.kind == "grad_norm" and code in (CODE_DIP, CODE_LEVEL_DOWN) and self._ratio(value, level) <= 0.01

    def _growth_finding(self, make: Any, value: float, log_ratio: float, rise: float) -> Finding | None:
        """Exploding/vanishing gradients and diverging loss measured against the slow baseline."""
        decades = log_ratio / _LOG10
        if self.kind == "grad_norm" and abs(decades) >= 1.0:
            # one decade scores 0.5, two 0.8, three 0.9
            score = decades * decades / (decades * decades + 1.0)
            if decades > 0:
                msg = f"gradient norm {value:g} has grown {10**decades:.3g}x above its baseline"
                return make(score, "exploding", msg, "critical")
            msg = f"gradient norm {value:g} has collapsed to {10**decades:.2g}x its baseline"
            return make(score, "vanishing", msg, "critical")
        if self.kind == "loss" and rise >= 0.5:
            score = rise * rise / (rise * rise + 0.25)  # 50 % above the best loss scores 0.5
            msg = f"loss {value:g} is {100 * rise:.0f}% above the best level it reached: training is diverging"
            return make(score, "diverging", msg, "critical" if rise >= 1.0 else "warning")
        return None

    def _rule_finding(self, make: Any, value: float, violation: str) -> Finding:
        kind = self.kind
        if kind == "grad_norm" and violation == "below":
            return make(1.0, "vanishing", f"gradient norm is {value:g}: no gradient flows", "critical")
        if kind == "lr":
            why = {"below": "is not positive", "above": "is far too large", "tiny": "is far too small to learn"}
            return make(1.0, "lr_out_of_range", f"learning rate {value:g} {why[violation]}", "critical")
        if kind == "throughput" and violation == "below":
            return make(1.0, "throughput_drop", f"throughput fell to {value:g}: the pipeline stalled", "critical")
        p = self.profile
        bound = p.lower if violation == "below" else p.upper
        side = "below" if violation == "below" else "above"
        return make(1.0, "out_of_range", f"{kind} {value:g} is {side} its valid range limit {bound:g}", "critical")

    def _kind_finding(
        self, make: Any, code: int, score: float, value: float, level: float, rise: float
    ) -> Finding | None:
        kind = self.kind
        up = code in (CODE_SPIKE, CODE_LEVEL_UP)
        down = code in (CODE_DIP, CODE_LEVEL_DOWN)
        ratio = self._ratio(value, level)  # to the recent level, in raw units
        severity = "critical" if score >= 0.9 else "warning"
        generic = CODE_NAMES[code]
        if kind == "grad_norm" and up and ratio >= 10.0:
            return make(score, "exploding", f"gradient norm {value:g} is {ratio:.3g}x its recent level", "critical")
        if kind == "grad_norm" and down and ratio <= 0.01:
            return make(
                score, "vanishing", f"gradient norm {value:g} fell to {ratio:.2g}x its recent level", "critical"
            )
        if kind == "loss" and code == CODE_LEVEL_UP:
            if rise < LOSS_LEVEL_RISE:  # a rise beyond its noise, but close to its best: not a divergence
                return None
            return make(score, "diverging", f"loss is rising away from its recent level ({value:g})", severity)
        if kind == "lr" and up:
            return make(
                score, "lr_jump", f"learning rate jumped to {value:g} ({ratio:.3g}x its recent level)", severity
            )
        if kind == "latency" and up:
            reason = "latency_spike" if code == CODE_SPIKE else "level_shift"
            return make(score, reason, f"latency {value:g} is {ratio:.3g}x its recent level", severity)
        if kind == "error_rate" and up:
            return make(score, "error_burst", f"error rate {value:g} is well above its recent level", severity)
        if kind == "throughput" and down:
            return make(score, "throughput_drop", f"throughput {value:g} is {ratio:.2g}x its recent level", severity)
        if code == CODE_FLAT:
            return make(
                score, "flat", f"{kind} has repeated the value {value:g} {self.detector.flat_run} times", severity
            )
        if code == CODE_VARIANCE:
            return make(score, generic, f"{kind} has become noisier than its recent history", severity)
        direction = "above" if up else "below"
        return make(score, generic, f"{kind} {value:g} is far {direction} its recent level", severity)

    def _ratio(self, value: float, level: float) -> float:
        if not math.isfinite(level):
            return 1.0
        ref = math.exp(level) if self.profile.log else level
        if ref == 0 or not math.isfinite(ref):
            return math.inf if value > 0 else 1.0
        return value / ref

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue, as a plain dict (JSON- and pickle-safe)."""
        return {
            "version": self.STATE_VERSION,
            "kind": self.kind,
            "threshold": self.threshold,
            "skip_seen": self.skip_seen,
            "params": dict(self.params),
            "n_points": self.n_points,
            "last_step": self.last_step,
            "growth": self.growth.tolist(),
            "detector": self.detector.to_state(),
            "gap_detector": self.gap_detector.to_state() if self.gap_detector is not None else None,
            "calibrator": self.calibrator.to_state() if self.calibrator is not None else None,
            "first": self.first,
            "varied": self.varied,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeriesMonitor:
        """Restore a monitor from :meth:`to_state`; raise ValueError on a malformed state."""
        try:
            if state["version"] != cls.STATE_VERSION:
                raise ValueError(f"unsupported state version {state['version']!r}")
            mon = cls(state["kind"], threshold=state["threshold"], skip_seen=state["skip_seen"], **state["params"])
            mon.n_points = int(state["n_points"])
            mon.last_step = None if state["last_step"] is None else float(state["last_step"])
            mon.detector = AnomalyDetector.from_state(state["detector"])
            growth = np.asarray(state["growth"], dtype=np.float64)
            if growth.shape != (4,) or not np.all(np.isfinite(growth)):
                raise ValueError("malformed series monitor state: bad growth state")
            mon.growth = growth
            if state["gap_detector"] is not None:
                mon.gap_detector = AnomalyDetector.from_state(state["gap_detector"])
            if mon.calibrator is not None and state.get("calibrator") is not None:  # a state from before: afresh
                mon.calibrator = ScoreCalibrator.from_state(state["calibrator"])
            mon.first = None if state.get("first") is None else float(state["first"])
            mon.varied = bool(state.get("varied", False))
        except (KeyError, TypeError, IndexError, OverflowError) as exc:
            raise ValueError(f"malformed series monitor state: {exc!r}") from exc
        return mon

    def __repr__(self) -> str:
        return f"SeriesMonitor(kind={self.kind!r}, threshold={self.threshold}, n_points={self.n_points})"
