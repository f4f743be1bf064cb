"""The worker's rules for one metric series of a training run, as one stateful object.

The processors keep one :class:`TrainingSeries` per run, split and metric, and ``aitrace
backtest --metric NAME`` runs the same object over a CSV, so an alert the worker raised can
be replayed offline and a threshold tried before it pages anyone.

What a series is asked follows its name (:func:`~aitrace.detect.training.metric_role`):

* ``schedule`` (``lr``, ``momentum``, ...): nothing; a schedule never pages by itself.
* ``loss``: :class:`~aitrace.detect.monitor.SeriesMonitor` ``loss`` (spikes, divergence,
  NaN; a falling loss is good news), and on the training split :class:`StallCheck` and
  :class:`PlateauCheck` (which takes the run's learning rate where the worker has it). A
  training loss under :data:`LOSS_FLOOR` of its first value is at its floor: it diverges only
  by leaving it.
* ``grad_norm``: ``SeriesMonitor`` ``grad_norm`` (explosions and collapses by decades, NaN)
  on the global norm; given the run's loss beside it (the worker gives it), a rise while the
  loss falls fast is the model leaving its flat start and is held, and a collapse at a step whose
  loss is at its floor is a fitted batch (no gradient left), held too. The per-layer series
  (``grad_norm/<layer>``, ``update_ratio/<layer>``) get no point rules: they are read across layers (``layer_spread``,
  :class:`~aitrace.detect.run_checks.RunChecks`). On the real runs of
  ``bench/bench_training.py`` each step decay raised a ``level_shift`` or ``vanishing`` per
  layer's update ratio, a slow starter that began to learn an ``exploding`` on one layer's
  norm, and a NaN one alert per layer beside the global one.
* ``score`` (accuracy-like): the generic anomaly scores without the rises and repeats,
  which are good news or quantization.
* ``other`` (a throughput, a GPU's memory, a server's CPU logged as a run's metric): the rules of a
  model in service's series (:class:`~aitrace.detect.service.ServiceSeries`): the generic anomaly
  scores, judged against the series' own daily or weekly cycle once it has one when the points come
  with their event times (``times``; the worker has them), and a ``flat`` run only once the series has
  varied. A run's pace (its step time or throughput, :func:`~aitrace.detect.training.pace_direction`)
  pages only a sustained slowdown and NaN or Inf, not the slow steps the machine's jitter makes.

The generic scores page only on points that are also rare for the series itself
(:class:`~aitrace.detect.calibrate.ScoreCalibrator`): its normal bursts do not.

Findings are :class:`~aitrace.detect.monitor.Finding` objects, in order; ``index`` counts
every value offered. Chunked input gives the same findings as one call.

Example
-------
>>> import numpy as np
>>> from aitrace.detect.series import TrainingSeries
>>> loss = 2.0 * np.exp(-np.arange(300) / 60) + 0.05
>>> loss[200] = 40.0                                   # one exploding batch
>>> s = TrainingSeries("loss")
>>> [(int(f.step), f.reason) for f in s.update(np.arange(300), loss)]
[(200, 'spike')]
>>> TrainingSeries("lr").update(np.arange(3), [1e-3, 1e-4, 0.0])  # a schedule: never
[]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from aitrace.detect.anomaly import AnomalyDetector, explain
from aitrace.detect.anomaly_kernel import (
    CODE_DIP,
    CODE_FLAT,
    CODE_LEVEL_DOWN,
    CODE_LEVEL_UP,
    CODE_NAMES,
    CODE_NONE,
    CODE_SPIKE,
)
from aitrace.detect.calibrate import ScoreCalibrator, point_moves
from aitrace.detect.monitor import Finding, SeriesMonitor
from aitrace.detect.service import ServiceSeries
from aitrace.detect.training import (
    TRAIN_SPLITS,
    PlateauCheck,
    StallCheck,
    metric_role,
    pace_direction,
    series_name,
)

# A gradient norm's rise is held while the median of the loss's last LEARNING_REPORTS reports sits LEARNING_FALL
# or more below that of the first LEARNING_REPORTS of its last LEARNING_SPAN: the model is leaving its flat start,
# and its norm settles at a new level. A 6-layer ReLU net logged every 5 steps: norm 0.16 to 4.5 in 25 steps while
# its loss fell 2.3 to 1.5, paged exploding, then 2.0 for good as a level shift; an explosion drags the loss up.
LEARNING_REPORTS, LEARNING_SPAN, LEARNING_FALL = 4, 16, 0.05
# A training loss three decades under the run's first loss has learnt all but a thousandth of it: there a batch's
# loss is set by one example or two and by float precision (0 and 1e-8 among 1e-5), so its moves by decades are no
# evidence. Runs that memorize their rows (the bench's tabular MLPs on 48 rows, losses 1e-8 to 3e-5 from 0.7: 4-5
# decades down) paged a loss "diverging" from 1e-7 to 1e-5 and a gradient norm "vanishing" at a batch whose loss was
# 0 (a fitted batch has no gradient). Two decades (1 %) was too few: an MLP regressing wine's unscaled alcohol
# (first loss ~168) whose ReLUs an lr jump killed sits at 0.65, the cost of predicting the mean, 2.4 decades down,
# and its divergence and vanishing gradients must page (a review, /work/rev-s). The bench's lr x100 leaves any floor.
LOSS_FLOOR = 1e-3
_NORM_RISES = frozenset({"exploding", "spike", "level_shift", "variance_change"})
_ULP = 1e-6  # a float32's relative precision, with room: values this close are one value
CONVERGED_FALLS = 8  # falls with no rise that lead a loss to the value it repeats: a deterministic fit converged
CONVERGED_STEP = 1e-5  # ... the last of them this small (relative): it slowed to a stop (LBFGS: 2e-7 to 6e-7)

# a score's rises are good news and its repeats quantization (an accuracy that holds 0.98)
_GOOD_NEWS = frozenset({CODE_SPIKE, CODE_LEVEL_UP, CODE_FLAT})
_GOOD_NEWS_CODES = np.array(sorted(_GOOD_NEWS), dtype=np.int64)


class TrainingSeries:
    """One training metric series scored as what its name says it is.

    Parameters
    ----------
    metric:
        The metric's name (its role decides the rules).
    split:
        ``train`` (or empty) gets the run-level checks on a loss (stall, plateau).
    threshold:
        Anomaly score in [0, 1] from which a point is a finding (the worker's default 0.9).
    checks:
        False: a training loss without the stall and plateau checks (the worker's for a loss beside the run's
        own, ``mse`` beside ``loss``: one stall, not one per loss).
    """

    def __init__(self, metric: str, *, split: str = "train", threshold: float = 0.9, checks: bool = True) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        self.metric, self.split, self.threshold = metric, split, float(threshold)
        rule_split, rule_name = series_name(split, metric)  # ``val/loss`` sent without a split is a validation loss
        self.role = metric_role(rule_name)
        self.n_seen = 0
        self.first: float | None = None
        # a loss's lowest finite value so far, its last, and its falls since it last rose (see _converged)
        self.lowest, self.prev, self.falls, self.last_fall = math.inf, math.nan, 0, math.nan
        # A score's resolution: the smallest move between consecutive values so far (1/32 for the accuracy of
        # batches of 32), and the last value. A move of one step is one example more or fewer: counting noise.
        self.quantum, self.last = math.inf, math.nan
        # Per-layer series get no point rules. An update ratio follows the learning rate by
        # construction (a x0.1 step decay is a x0.1 ratio); a layer's gradient norm that explodes
        # explodes the global norm too (its root-sum-square), and one that starves is
        # layer_spread's. Scored one by one, a model of N layers paged N times for one event.
        per_layer = rule_name.lower().startswith(("update_ratio/", "grad_norm/"))
        monitored = self.role in ("loss", "grad_norm") and not per_layer
        self.monitor = SeriesMonitor(self.role, threshold=threshold, skip_seen=False) if monitored else None
        self.detector = AnomalyDetector() if self.role == "score" else None
        self.calibrator = ScoreCalibrator() if self.role == "score" else None
        other = self.role == "other"
        self.service = ServiceSeries(metric, threshold=threshold, pace=pace_direction(rule_name)) if other else None
        self.checks = self.role == "loss" and rule_split in TRAIN_SPLITS  # a training loss
        self.stall = StallCheck() if self.checks and checks else None
        self.plateau = PlateauCheck() if self.checks and checks else None
        self.losses: list[float] = []  # a global gradient norm's: the run's last losses, read beside it
        self.first_loss: float | None = None  # and the run's first finite one

    def update(self, steps: Any, values: Any, lr: Any = None, loss: Any = None, times: Any = None) -> list[Finding]:
        """Score the next points (steps and values of equal length); the findings among them.

        ``lr``: the run's learning rate at each step (NaN where not logged), for the plateau check; ``loss``:
        the run's training loss at each step (NaN where not logged, +-inf where it diverged or went NaN), for
        a global gradient norm: its rise while the loss falls fast is learning, not an explosion; ``times``:
        the points' event times in microseconds, for an ``other`` series' clock: its daily or weekly cycle (until
        it has one, from its second day its last day's level) and, for a latency, its sustained rises. Without
        them an ``other`` series gets neither."""
        steps_arr = np.asarray(steps, dtype=np.float64).reshape(-1)
        vals = np.asarray(values, dtype=np.float64).reshape(-1)
        if steps_arr.shape != vals.shape:
            raise ValueError(f"steps and values differ in length: {steps_arr.shape} vs {vals.shape}")
        found: list[Finding] = []
        if self.monitor is not None:
            found = self.monitor.update(steps_arr, vals)
            if loss is not None and self.role == "grad_norm":
                losses = np.asarray(loss, dtype=np.float64).reshape(-1)
                if losses.shape != vals.shape:
                    raise ValueError(f"loss and values differ in length: {losses.shape} vs {vals.shape}")
                found = self._learning_held(found, losses)
        elif self.detector is not None:
            found = self._scored(steps_arr, vals)
        elif self.service is not None:
            found = self._served(steps_arr, vals, times)
        self._note_first(vals)
        converged = self._converged(vals)
        found = [f for f in found if not (self._hard_batch(f) or self._at_floor(f) or converged(f))]
        found += self._run_checks(steps_arr, vals, lr)
        self.n_seen += int(vals.size)
        return sorted(found, key=lambda f: f.index)

    def headline(self, found: list[Finding]) -> Finding | None:
        """The finding that names a chunk's incident: an ``other`` series' as a model's series names it
        (:meth:`ServiceSeries.headline`: a sustained shift before a higher-scored point), else :func:`worst`."""
        return self.service.headline(found) if self.service is not None else worst(found)

    def _scored(self, steps: np.ndarray, vals: np.ndarray) -> list[Finding]:
        """A ``score`` series: the generic anomaly scores, its falls only, beyond its resolution."""
        assert self.detector is not None and self.calibrator is not None
        scores = self.detector.score(vals)
        codes = self.detector.last_codes
        quanta = self._quanta(vals)
        out = []
        # good news stays out of the history: a score's usual rises would make its first fall as large usual
        news = np.where(np.isin(codes, _GOOD_NEWS_CODES), CODE_NONE, codes)
        det = self.detector
        moves = point_moves(vals, codes, det.last_z, det.last_noise, det.last_level)
        for k in np.flatnonzero(self.calibrator.rare(scores, news, threshold=self.threshold, moves=moves)):
            code = int(codes[k])
            if code in _GOOD_NEWS or code == CODE_NONE:
                continue
            if self._moved(code, float(vals[k]), int(k)) < self._resolved(code, int(k), float(quanta[k])):
                continue  # a few examples more or fewer than its level: the resolution of the score
            reason = CODE_NAMES[code]
            critical = scores[k] >= 0.999 or reason in ("nan", "inf")
            message = explain(self.metric, reason, float(vals[k]), self.detector, int(k))
            out.append(
                Finding(
                    self.n_seen + int(k),
                    float(steps[k]),
                    float(vals[k]),
                    float(scores[k]),
                    reason,
                    message,
                    self.threshold,
                    self.role,
                    "critical" if critical else "warning",
                )
            )
        return out

    def _served(self, steps: np.ndarray, vals: np.ndarray, times: Any) -> list[Finding]:
        """An ``other`` series through the service path's rules: its findings at the run's steps. Without
        event times the steps stand in for them (as microseconds: no day, hour or sustained rise is ever
        told) and no cycle is learnt or applied."""
        assert self.service is not None
        timed, base = times is not None, self.service.n_seen
        clock = times if timed else np.nan_to_num(steps).astype(np.int64)
        out = []
        for f in self.service.update(clock, vals, timed=timed):
            k = f.index - base  # its position in this chunk
            when = f.time_us if timed else None
            out.append(replace(f, index=self.n_seen + k, step=float(steps[k]), kind=self.role, time_us=when))
        return out

    def _learning_held(self, found: list[Finding], loss: np.ndarray) -> list[Finding]:
        """``found`` less the norm's rises at points where the loss's last reports fell by a tenth or more
        against the first of its last ``LEARNING_SPAN``; the last losses are kept for the next update."""
        logged = ~np.isnan(loss)
        # a diverged loss is no fall: it ends the hold, where dropping it left the falls before it in the window
        seen = np.concatenate([self.losses, np.where(np.isinf(loss[logged]), np.inf, loss[logged])])
        known = len(self.losses) + np.cumsum(logged)  # losses known up to and including each point
        k, out = LEARNING_REPORTS, []
        for f in found:
            n = int(known[f.index - self.n_seen])
            span = seen[max(n - LEARNING_SPAN, 0) : n]
            then = np.median(span[:k]) if span.size >= 2 * k else math.nan
            # by a tenth of its size, whatever its sign (a negative log-likelihood sits below zero)
            learning = math.isfinite(then) and np.median(span[-k:]) < then - LEARNING_FALL * abs(then)
            # the collapse of a fitted batch: its own loss at the floor (the loss logged at the norm's step)
            fitted = f.reason == "vanishing" and n > 0 and _under_floor(float(seen[n - 1]), self.first_loss)
            if not (learning and f.reason in _NORM_RISES) and not fitted:
                out.append(f)
        if self.first_loss is None and (finite := seen[np.isfinite(seen)]).size:
            self.first_loss = float(finite[0])
        self.losses = seen[-LEARNING_SPAN:].tolist()
        return out

    def _quanta(self, vals: np.ndarray) -> np.ndarray:
        """The series' resolution before each value: its smallest move between consecutive values up to
        the one before (inf until it moved). On 35 healthy PyTorch recipes a batch accuracy of 1.0 that
        read 31/32 once and a validation accuracy on 114 rows that lost one row (0.9825 to 0.9737) paged."""
        with np.errstate(invalid="ignore"):
            moves = np.abs(np.diff(np.concatenate([[self.last], vals])))
        moves = np.where(np.isfinite(moves) & (moves > 0), moves, math.inf)
        quanta = np.minimum.accumulate(np.concatenate([[self.quantum], moves]))
        finite = vals[np.isfinite(vals)]
        self.quantum, self.last = float(quanta[-1]), float(finite[-1]) if finite.size else self.last
        return quanta[:-1]

    def _resolved(self, code: int, k: int, quantum: float) -> float:
        """The smallest move of point ``k`` that pages: 1.5 examples (the score's resolution); for a single
        point, where the series' spread is under one example, 3 examples. A batch accuracy that reads 32/32
        nearly always has a spread of 0.004 (batches of 32): a batch at 30/32 read 16 spreads down and paged
        on a healthy Nesterov run, while a count's noise is one example at least. A shift of the level is the
        detector's own test, as before: a bar of the threshold in examples (15 of 32) missed collapses to 0.7
        that stayed (a review, /work/rev-v)."""
        assert self.detector is not None
        point = code in (CODE_SPIKE, CODE_DIP)
        if point and float(self.detector.last_noise[k]) < quantum:
            return 3.0 * quantum
        return 1.5 * quantum

    def _moved(self, code: int, value: float, k: int) -> float:
        """How far point ``k`` moved from the detector's level; for a level shift, the level's own move."""
        assert self.detector is not None
        if code in (CODE_LEVEL_UP, CODE_LEVEL_DOWN):
            return abs(float(self.detector.last_z[k]) * float(self.detector.last_noise[k]))
        return abs(value - float(self.detector.last_level[k]))

    def _hard_batch(self, finding: Finding) -> bool:
        """A training loss's one-point spike that stays below the run's first loss (the untrained model's):
        a batch with a hard example in it, not weights gone wrong. Near zero a batch loss is heavy-tailed (one
        example of 32 at a loss of 2 lifts a batch at 0.002 to 0.06, far outside its spread): healthy SGD and
        Adam runs on digits and wine at batches of 16-32 paged 0.03-0.65 against first losses of 1.1-2.3. A
        batch above where the run began (the exploding batch of 40 at a start of 2) is still a spike."""
        return (
            finding.reason == "spike"
            and self.checks
            and self.first is not None
            and math.isfinite(finding.value)
            and finding.value < self.first
        )

    def _at_floor(self, finding: Finding) -> bool:
        """A training loss "diverging" while it stays under :data:`LOSS_FLOOR` of the run's first loss."""
        return finding.reason == "diverging" and self.checks and _under_floor(finding.value, self.first)

    def _converged(self, vals: np.ndarray) -> Callable[[Finding], bool]:
        """Whether a finding is a loss's ``flat`` at the lowest value it has had, reached by a descent of at least
        :data:`CONVERGED_FALLS` falls with no rise since, the last of them under :data:`CONVERGED_STEP`: a
        deterministic fit at its optimum (LBFGS stops at its tolerance, its loss repeating to the last bit: paged
        critical on 3 of 3 healthy runs, /work/rev-ad). A batch's loss rises every few steps, so a loss that froze
        after them (a loop logging a stale value), or above its lowest, is still flat; so is a full-batch descent
        stopped mid-way, its last fall large (an lr schedule that went to 0: 1e-3 of the loss a step, /work/rev-af)."""
        if self.role != "loss":  # (a hot path: every series' every update; only a loss can have converged)
            return lambda f: False
        finite = vals[np.isfinite(vals)]
        prev = np.concatenate([[self.prev], finite[:-1]]) if finite.size else finite
        with np.errstate(invalid="ignore"):
            rose = finite > prev + _ULP * np.abs(prev)
            fell = finite < prev - _ULP * np.abs(prev)
        falls = np.cumsum(fell) + self.falls  # falls since the chunk began, on the carried count
        # less the falls counted up to the last rise at or before each point
        since = falls - np.maximum.accumulate(np.where(rose, falls - fell, 0)) if finite.size else falls
        lows = np.minimum.accumulate(np.concatenate([[self.lowest], finite]))[1:]
        # the size of the last fall at or before each point, relative to the value it fell from
        with np.errstate(invalid="ignore", divide="ignore"):
            sizes = np.concatenate([[self.last_fall], np.where(fell, (prev - finite) / np.abs(prev), np.nan)])
        last = np.maximum.accumulate(np.where(np.isfinite(sizes), np.arange(sizes.size), 0))
        steps = sizes[last][1:]
        at = np.flatnonzero(np.isfinite(vals))  # each value's place among the finite ones, for the findings
        base = self.n_seen
        if finite.size:
            self.prev, self.lowest, self.falls = float(finite[-1]), float(lows[-1]), int(since[-1])
            self.last_fall = float(steps[-1])

        def converged(f: Finding) -> bool:
            if f.reason != "flat" or not math.isfinite(f.value):
                return False
            k = int(np.searchsorted(at, f.index - base))
            lowest = f.value <= lows[k] + _ULP * abs(lows[k])
            return int(since[k]) >= CONVERGED_FALLS and lowest and bool(steps[k] <= CONVERGED_STEP)

        return converged

    def _note_first(self, vals: np.ndarray) -> None:
        if self.first is None and (finite := vals[np.isfinite(vals)]).size:
            self.first = float(finite[0])

    def _run_checks(self, steps: np.ndarray, vals: np.ndarray, lr: Any) -> list[Finding]:
        out = []
        if self.stall is not None and (verdict := self.stall.update(steps, vals)) is not None:
            step, start, now = verdict
            msg = f"{self.metric} still at its starting level after {step} steps ({start:.4g} then, {now:.4g} now)"
            out.append(self._at(steps, vals, step, "stalled", msg, since=self.stall.first_step))
        if self.plateau is not None and (plateau := self.plateau.update(steps, vals, lr)) is not None:
            step, best_step, best, now = plateau
            # "not improved" beside a lower value read as a contradiction (/work/rev-ag): the gain asked is named
            gain = self.plateau.params["min_gain"]
            msg = (
                f"{self.metric} has not improved by {gain:.0%} since step {best_step} ({best:.4g} then, {now:.4g} now)"
            )
            # the episode began by the first loss of the best level's window (a median lags the turn)
            since = best_step - self.plateau.params["window"] + 1
            out.append(self._at(steps, vals, step, "plateau", msg, since=since))
        return out

    def _at(
        self, steps: np.ndarray, vals: np.ndarray, step: int, reason: str, message: str, *, since: int | None
    ) -> Finding:
        """The run check's finding at ``step``; ``since``: the step its episode began (details ``since_step``)."""
        k = int(np.searchsorted(steps, step))
        k = min(k, vals.size - 1)
        details = {} if since is None else {"since_step": str(since)}
        value = float(vals[k])
        return Finding(
            self.n_seen + k, float(step), value, 1.0, reason, message, self.threshold, "loss", details=details
        )

    # -- state -------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """A JSON-safe dict that :meth:`from_state` restores exactly."""
        return {
            "metric": self.metric,
            "split": self.split,
            "threshold": self.threshold,
            "n_seen": self.n_seen,
            "first": self.first,
            "lowest": None if math.isinf(self.lowest) else self.lowest,
            "prev": None if math.isnan(self.prev) else self.prev,
            "falls": self.falls,
            "last_fall": None if math.isnan(self.last_fall) else self.last_fall,
            "quantum": None if math.isinf(self.quantum) else self.quantum,
            "last": None if math.isnan(self.last) else self.last,
            "monitor": self.monitor.to_state() if self.monitor else None,
            "detector": self.detector.to_state() if self.detector else None,
            "calibrator": self.calibrator.to_state() if self.calibrator else None,
            "service": self.service.to_state() if self.service else None,
            # read by releases before 2026-12-07 (a rollback fails without it); no rule here reads it
            "varied": bool(self.service and self.service.varied),
            "stall": self.stall.to_state() if self.stall else None,
            "plateau": self.plateau.to_state() if self.plateau else None,
            "losses": [None if math.isinf(v) else v for v in self.losses],  # a diverged loss, JSON-safe
            "first_loss": self.first_loss,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrainingSeries:
        s = cls(state["metric"], split=state["split"], threshold=state["threshold"])
        s.n_seen, s.first = int(state["n_seen"]), state["first"]
        # (absent from states written before: the descent is counted from here)
        s.lowest = math.inf if state.get("lowest") is None else float(state["lowest"])
        s.prev = math.nan if state.get("prev") is None else float(state["prev"])
        falls = state.get("falls", 0)
        if type(falls) is not int or not 0 <= falls < 2**62:  # (1e30 from a forged changelog overflowed a C long)
            raise ValueError(f"falls must be an int in [0, 2**62), got {falls!r}")
        s.falls = falls
        s.last_fall = math.nan if state.get("last_fall") is None else float(state["last_fall"])
        s.quantum = math.inf if state.get("quantum") is None else float(state["quantum"])
        s.last = math.nan if state.get("last") is None else float(state["last"])
        s.losses = [math.inf if v is None else float(v) for v in state.get("losses", [])][-LEARNING_SPAN:]
        first_loss = state.get("first_loss")  # absent from states written before: the next loss read stands in
        s.first_loss = None if first_loss is None else float(first_loss)
        # Only the rules the name gets now, from a state written when the name read otherwise (before
        # series_name: lr-Adam scored as "other" kept paging its decay, val/loss sent without a split
        # kept its stall check). A check the state lacks is not begun mid-run: a fresh stall check on
        # train/ppl (not a loss before) took the converged run's level as its start and paged stalled.
        if s.monitor is not None and state["monitor"] is not None:
            s.monitor = SeriesMonitor.from_state(state["monitor"])
        elif s.monitor is not None:  # a monitor begun here counts the points from where the series stands: its
            s.monitor.n_points = s.n_seen  # findings' indices are the series' (from 0 they indexed before the chunk)
        if s.detector is not None and state["detector"] is not None:
            s.detector = AnomalyDetector.from_state(state["detector"])
            s.calibrator = ScoreCalibrator.from_state(state["calibrator"])
        if s.service is not None:
            s.service = _service_from(state, s.service)
        s.stall = StallCheck.from_state(state["stall"]) if s.stall is not None and state["stall"] is not None else None
        s.plateau = (
            PlateauCheck.from_state(state["plateau"])
            if s.plateau is not None and state["plateau"] is not None
            else None
        )
        return s

    def __repr__(self) -> str:
        return f"TrainingSeries({self.metric!r}, role={self.role!r}, split={self.split!r}, seen={self.n_seen})"


def _service_from(state: dict[str, Any], fresh: ServiceSeries) -> ServiceSeries:
    """An ``other`` series' service rules from its state; from a state saved before they were (its own
    detector and calibrator, no cycle yet), the same windows and history, so it does not page afresh."""
    if state.get("service") is not None:
        restored = ServiceSeries.from_state(state["service"])
        if restored.pace == fresh.pace:
            return restored
        # The name decides the rules: a run's pace saved before it was told (a cycle learnt, single slow steps
        # scored) gets a pace's, and only where the series stands carries over.
        fresh.n_seen, fresh.first, fresh.varied = restored.n_seen, restored.first, restored.varied
        fresh.shift_base = fresh.n_seen
        return fresh
    if state["detector"] is not None:
        fresh.detector = AnomalyDetector.from_state(state["detector"])
        fresh.calibrator = ScoreCalibrator.from_state(state["calibrator"])
        fresh.n_seen, fresh.first, fresh.varied = int(state["n_seen"]), state["first"], bool(state["varied"])
        fresh.shift_base = fresh.n_seen  # a latency's sustained-rise check starts here: its indices count from it
    return fresh


def _under_floor(value: float, first: float | None) -> bool:
    """A loss in ``[0, LOSS_FLOOR x first)``: a positive first loss, all but a thousandth of it learnt."""
    return first is not None and first > 0 and 0.0 <= value < LOSS_FLOOR * first


def worst(findings: list[Finding]) -> Finding | None:
    """The finding that names a chunk's incident: critical first, then the highest score."""
    return max(findings, key=lambda f: (f.severity == "critical", f.score), default=None)
