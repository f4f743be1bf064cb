"""Run-level training checks that need more than one series of the same run.

The idea
--------
:class:`~aitrace.detect.series.TrainingSeries` sees one series at a time, and three training
pathologies cannot be told early, or at all, from one series:

* **stalled from the start**: a loss that has not left its starting level looks the same
  for the first ~110 steps whether the learning rate is 1e-7 (nothing will ever happen) or
  the network is a slow starter (a 6-layer ReLU net with PyTorch's default init sat at its
  starting loss 90 to 150 steps, then learned). The update ratios that ``aitrace.torch.watch``
  sends (``update_ratio/<layer>``: norm of the step's update over the norm of the weights)
  tell them apart at once: on the real runs of ``bench/bench_training.py`` the stalled run's
  median ratio across layers was 1e-6 from the first report, the slow starters' 1e-4 to
  4e-4, the healthy runs' 1e-3 to 2e-2. A weight that moves 1e-6 of its size per step needs
  a million steps to change: ``stalled`` once the loss is still at its start and the median
  ratio stayed below ``tiny_ratio`` (1e-5, a decade under the slowest start that learned) on
  each of the run's first ``reports`` reports without rising (a warm-up from lr 0 rises). A
  ratio that was larger once never counts: a schedule that decays the lr later is the user's.
  A run that sends no update ratios but its learning rate and global gradient norm (what a
  hand-written loop logs) is told by the size of a plain step, lr x grad norm: on the bench's
  runs the stalled one's median over its first 16 steps was 3e-8; every healthy run's,
  warm-ups included, 3e-4 to 0.45 (its smallest single step 2.5e-5, at the start of an Adam
  warm-up) and the slow starters' 7e-3. ``stalled`` once the loss is still at its start and
  the median of the first ``head`` steps is below ``tiny_step`` (1e-6: a weight norm of 1
  moves a millionth a step; Adam's real step is larger than lr x grad norm, so this errs
  towards quiet) while the lr did not rise (a warm-up is not judged). Fine-tuning at lr 1e-6
  or below with a gradient norm under 1 reads as this too: its message says lr x grad norm.
* **plateau after an lr change the loss punishes**: the ratio follows the learning rate, so
  the user's schedules move it by a decade (a x0.1 step) or gradually (cosine); a drop of
  ``drop`` (3) decades from one report to the next is the weights all but stopping. It is a
  ``plateau`` when the ratio stays down for ``reports`` reports and the loss has not improved
  by ``min_drop`` since (the bench's lr x1e-6 at step 100: found at step 120; the loss alone
  needs the 100+ steps of :class:`~aitrace.detect.training.PlateauCheck`, since a slowing
  healthy run looks the same for that long). Without update ratios, the learning rate that
  the run sends tells the same: a fall of ``drop`` decades from one logged value to the next
  (or to 0) is the weights all but stopped, and it is a ``plateau`` at the first block of
  ``head`` losses after it that neither falls (Mann-Kendall, one-sided p < 0.05) nor sits
  ``min_drop`` below the block before (the bench's lr x1e-6 at step 100: step 116).
  Schedules do not fall that far between two values (a x0.1 step decay is one decade, a
  cosine approaches 0 gradually); a cosine's last value of exactly 0 ends the run.
* **vanishing gradients in the global norm**: the global gradient norm also collapses
  by decades when a run memorizes its data (the bench's over-fitting runs on 64 and 48 rows:
  2 to 5 decades while their loss went to 1e-3 to 1e-7): under cross-entropy the gradient
  shrinks with the loss it comes from. The signature is a fall the loss does not explain:
  ``vanishing`` once the norm's level (median of ``head`` steps) is ``decades`` (1.5) below
  the run's highest level by more than the loss fell since that level (both in decades, the
  loss's level at each step; a loss that rose explains nothing). On 55 real runs of the bench
  (healthy at seeds 0-5, slow starters, over- and under-fitting at seeds 0-2, every other
  pathology) that unexplained fall never passed 0.5 decades; on 12-layer tanh nets whose
  capped output saturates (``vanishing-deep``, SGD and Adam, seeds 0-5), whose norm falls 3
  to 5 decades (the first decade by step 10 to 24) while the loss stays at chance or above, it reached
  2.5 to 5, and passed 1.5 at 7 to 24 steps after that first decade. The 12-layer sigmoid run
  of the bench is not found this way: its last layers learn and carry the global norm (0.53
  to 0.33); only the spread across per-layer norms shows it. Per-layer norms
  (``grad_norm/<layer>``) ``VANISHING_DECADES`` (5) apart are the per-layer rule's case
  (``processors.detection_runs``, which names the starved layer): this verdict is then not
  taken. Layers that fall together (a saturated output starves them all) leave it to this one.
  A loss below 75 % of its first value has learnt (``_LEARNT``): a full batch at its optimum
  (linear regression on diabetes by full-batch descent: its gradient 3 decades down at a loss
  floor of 0.48) is no collapse.

Each verdict is taken once per run (the plateau re-arms when the weights move again). The
worker runs it on each chunk of a run's training series (``processors.detection_runs``,
series ``run/<run_id>/checks``); ``bench/bench_training.py`` prints what it finds alone
beside the worker's findings.

Example
-------
>>> import numpy as np
>>> from aitrace.detect.run_checks import RunChecks
>>> rng = np.random.default_rng(0)
>>> steps = np.arange(0, 40)
>>> chunk = {
...     "loss": (steps, 2.3 + 0.02 * rng.normal(size=40)),
...     "update_ratio/fc1": (steps[::10], np.full(4, 1e-6)),
...     "update_ratio/fc2": (steps[::10], np.full(4, 2e-6)),
... }
>>> [(f.step, f.reason) for f in RunChecks().update(chunk)]
[(20.0, 'stalled')]
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
from aitrace.detect.finding import Finding
from aitrace.detect.overfit import mann_kendall
from aitrace.detect.rolling import rolling_median
from aitrace.detect.training import VANISHING_DECADES, layer_spread

_TRAIN_LOSS = frozenset({"loss", "train_loss", "train/loss"})
# A (positive) loss below this share of its first value has learnt: a gradient that then falls by decades is a
# full batch at its optimum (a linear regression on diabetes, full-batch SGD: the loss 1.10 -> 0.48, its floor, the
# norm 2.2 -> 1e-3), not a collapse. The collapsing nets' losses stay at their first value (chance) or above it.
_LEARNT = 0.75
_STILL_FALLING = 0.05  # one-sided p of a falling trend among the losses after an lr cut


class RunChecks:
    """The cross-series checks of one training run (see the module's docstring).

    ``update(series)`` takes one chunk of the run: ``{metric name: (steps, values)}`` for the
    training split, and returns the findings among it; ``to_state()`` / ``from_state()``
    carry it between chunks.
    """

    def __init__(
        self,
        *,
        tiny_ratio: float = 1e-5,
        reports: int = 3,
        decades: float = 1.5,
        drop: float = 3.0,
        head: int = 16,
        min_drop: float = 0.05,
        tiny_step: float = 1e-6,
    ) -> None:
        fractions = 0 < tiny_ratio < 1 and 0 < tiny_step < 1 and 0 < min_drop < 1
        if not fractions or reports < 2 or min(decades, drop) <= 0 or head < 2:
            raise ValueError("need 0 < tiny_ratio, tiny_step, min_drop < 1, reports >= 2, decades, drop > 0, head >= 2")
        self.params: dict[str, Any] = {
            "tiny_ratio": tiny_ratio,
            "reports": reports,
            "decades": decades,
            "drop": drop,
            "head": head,
            "min_drop": min_drop,
            "tiny_step": tiny_step,
        }
        self.start: list[float] = []  # the first `head` finite losses
        self.recent: list[float] = []  # the last `head` finite losses
        self.ratios: list[float] = []  # median update ratio across layers, per report, while it is tiny
        self.peak = -math.inf  # log10 of the highest grad-norm level
        self.peak_loss: float | None = None  # the loss level when the grad-norm level was last at its peak
        self.norms: list[float] = []  # the last `head` finite global grad norms
        self.stall_done = self.vanished = False
        self.last_ratio: float | None = None  # log10 of the last report's median update ratio
        self.frozen: dict[str, Any] | None = None  # since a drop of `drop` decades: step, before, loss, n
        self.step_sizes: list[float] = []  # the last `head` finite lr x global grad norm
        self.lr: float | None = None  # the last finite learning rate
        self.first_lr: float | None = None  # the first finite learning rate: a warm-up rises from it
        self.steps_done = False  # the step-size stall is judged (no update ratios sent)
        self.cut: dict[str, Any] | None = None  # since the lr fell `drop` decades: step, before, loss, n

    def update(self, series: dict[str, tuple[Any, Any]]) -> list[Finding]:
        out: list[Finding] = []
        losses = None  # the loss level at each loss step of the chunk
        for name in _TRAIN_LOSS.intersection(series):
            losses = self._loss_levels(*series[name])
            self._losses(series[name][1])
        lr = next((series[n] for n in ("lr", "learning_rate") if n in series), None)
        for step, (level, layers) in _report_levels(series).items():
            out += self._stall(step, level, layers) if not self.stall_done else []
            out += self._frozen(step, level)
        if lr is not None:
            loss = next((series[n] for n in _TRAIN_LOSS if n in series), None)
            out += self._lr_cut(lr, loss, losses or self._loss_levels([], []))
        if lr is not None and "grad_norm" in series:
            self._step_sizes(lr, series["grad_norm"])
            out += self._step_stall(series["grad_norm"][0])
        spread = layer_spread({n: v for n, (_, v) in series.items() if n.startswith("grad_norm/")})
        if spread is not None and spread[0] >= VANISHING_DECADES:
            self.vanished = True  # the per-layer rule's (processors.detection_runs): it names the starved layer
        if "grad_norm" in series and not self.vanished:
            out += self._collapse(*series["grad_norm"], losses or self._loss_levels([], []))
        return out

    def _losses(self, values: Any) -> None:
        head = self.params["head"]
        vals = np.asarray(values, dtype=np.float64).ravel()
        finite = vals[np.isfinite(vals)]
        if len(self.start) < head:
            self.start += finite[: head - len(self.start)].tolist()
        self.recent = [*self.recent, *finite[-head:].tolist()][-head:]

    def _loss_levels(self, steps: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
        """(steps, levels): the loss level (median of the last ``head`` finite losses) after each
        finite loss of the chunk, led by the level before it at step -inf (NaN when none)."""
        vals = np.asarray(values, dtype=np.float64).ravel()
        ok = np.isfinite(vals)
        at = np.concatenate([[-math.inf], np.asarray(steps, dtype=np.float64).ravel()[ok]])
        head, prior, new = self.params["head"], self.recent, vals[ok]
        if len(prior) >= head:  # the usual chunk: every window is full
            return at, rolling_median(np.concatenate([prior, new]), head)
        both = [*prior, *new.tolist()]
        ends = range(len(prior), len(both) + 1)
        return at, np.array([_median(both[max(0, e - head) : e]) if e else math.nan for e in ends])

    def _step_sizes(self, lr: tuple[Any, Any], norm: tuple[Any, Any]) -> None:
        """Keep lr x grad norm at the steps both were sent: the size of a plain SGD step."""
        lrs = np.asarray(lr[1], dtype=np.float64).ravel()
        lr_at = dict(zip(np.asarray(lr[0]).ravel().tolist(), lrs.tolist(), strict=True))
        norms = zip(
            np.asarray(norm[0]).ravel().tolist(), np.asarray(norm[1], dtype=np.float64).ravel().tolist(), strict=True
        )
        sizes = [lr_at[step] * g for step, g in norms if step in lr_at]
        self.step_sizes = [*self.step_sizes, *(x for x in sizes if math.isfinite(x) and x >= 0)][-self.params["head"] :]

    def _step_stall(self, steps: Any) -> list[Finding]:
        """Without update ratios: the first ``head`` steps (lr x grad norm) tiny, the lr not rising
        and the loss still at its start (see the module's docstring)."""
        p = self.params
        if self.steps_done or self.stall_done or self.last_ratio is not None or len(self.step_sizes) < p["head"]:
            return []
        self.steps_done = True  # judged once, on the run's first `head` steps
        size, levels = _median(self.step_sizes), self._at_start()
        rising = self.lr is not None and self.first_lr is not None and self.lr > 2.0 * self.first_lr
        if size >= p["tiny_step"] or rising or levels is None:
            return []
        self.stall_done = True
        step = float(np.max(np.asarray(steps, dtype=np.float64)))
        msg = (
            f"each step moves the weights by lr x grad norm = {size:.2g} (median of the first {p['head']} steps) "
            f"and the loss is still at its start ({levels[0]:.4g}, now {levels[1]:.4g}): {self._stall_cause()}"
        )
        return [Finding(0, step, size, 1.0, "stalled", msg, p["tiny_step"], "lr")]

    def _lr_cut(
        self, lr: tuple[Any, Any], loss: tuple[Any, Any] | None, levels: tuple[np.ndarray, np.ndarray]
    ) -> list[Finding]:
        """Track the learning rate; without update ratios, a fall of ``drop`` decades from one logged
        value to the next is the weights all but stopped, a plateau if the loss then stops falling."""
        for step, x in zip(_floats(lr[0]), _floats(lr[1]), strict=True):
            if not math.isfinite(x) or x < 0:
                continue
            if self.lr is not None and self.last_ratio is None:
                self._mark_cut(step, self.lr, x, float(_level_at(*levels, np.array([step]))[0]))
            self.lr, self.first_lr = x, x if self.first_lr is None else self.first_lr
        if self.cut is None or self.cut["judged"] or loss is None:
            return []
        kept = [
            (t, v)
            for t, v in zip(_floats(loss[0]), _floats(loss[1]), strict=True)
            if t > self.cut["step"] and math.isfinite(v)
        ]
        self.cut["losses"] += kept
        return self._judge_cut()

    def _mark_cut(self, step: float, before: float, now: float, level: float) -> None:
        fell = before > 0 and (now == 0 or math.log10(before / now) >= self.params["drop"])
        if self.cut is None and fell:
            self.cut = {"step": step, "before": before, "after": now, "loss": level, "losses": [], "judged": False}
        elif self.cut is not None and now > 0 and math.log10(self.cut["before"] / now) < self.params["drop"]:
            self.cut = None  # moving again: re-armed

    def _judge_cut(self) -> list[Finding]:
        """Each block of ``head`` losses after the cut: still falling? A falling trend (Mann-Kendall,
        one-sided p < 0.05) or a median ``min_drop`` below the block before is; the first block that
        is neither is the plateau (a flat loss passes the trend test in 95 % of blocks)."""
        p, cut = self.params, cast(dict[str, Any], self.cut)
        while len(cut["losses"]) >= p["head"]:
            block, cut["losses"] = cut["losses"][: p["head"]], cut["losses"][p["head"] :]
            values = np.array([v for _, v in block])
            level, before = _median(values.tolist()), cut.get("prev")
            cut["prev"] = level
            lower = before is not None and level < before - p["min_drop"] * abs(before)
            if lower or mann_kendall(-values)[1] < _STILL_FALLING:
                continue
            cut["judged"], cut["losses"] = True, []
            msg = (
                f"the learning rate fell from {cut['before']:.2g} to {cut['after']:.2g} at step {cut['step']:g} "
                f"and the loss has stopped falling (level {cut['loss']:.4g} then, {level:.4g} over the "
                f"{p['head']} steps to {block[-1][0]:g})"
            )
            return [Finding(0, float(block[-1][0]), cut["after"], 1.0, "plateau", msg, p["drop"], "lr")]
        return []

    def _at_start(self) -> tuple[float, float] | None:
        """(start, now) loss levels while the loss has not left its start, else None."""
        if len(self.start) < self.params["head"] or not self.recent:
            return None
        start, now = _median(self.start), _median(self.recent)
        return (start, now) if now >= start - self.params["min_drop"] * abs(start) else None

    def _stall(self, step: float, level: float, layers: int) -> list[Finding]:
        """One report of the median update ratio: still tiny since the first report?"""
        p = self.params
        if level >= p["tiny_ratio"] or (self.ratios and level > 2.0 * min(self.ratios)):
            self.stall_done, self.ratios = True, []  # the weights moved (or a warm-up is rising)
            return []
        self.ratios.append(level)
        levels = self._at_start()
        if len(self.ratios) < p["reports"] or levels is None:
            return []
        self.stall_done = True
        msg = (
            f"weights move {level:.2g} of their size per step (median over {layers} layers) for "
            f"{len(self.ratios)} reports and the loss is still at its start ({levels[0]:.4g}, now "
            f"{levels[1]:.4g}): {self._stall_cause()}"
        )
        return [Finding(0, step, level, 1.0, "stalled", msg, p["tiny_ratio"], "update_ratio")]

    def _stall_cause(self) -> str:
        """Why the weights do not move. A step (lr x grad norm) under ``tiny_ratio`` moves no layer,
        whose weights' norm is of order 1 or more, by more than that share: the learning rate is
        too small (lr 1e-7 on the bench: 3e-8). A normal step that the layers do not feel (the
        12-layer sigmoid net at lr 0.05: 0.02) is spent on a few layers: the rest get no gradient."""
        if not self.step_sizes or self.lr is None:
            return "the learning rate is too small to train"
        size = _median(self.step_sizes)
        if size < self.params["tiny_ratio"]:
            return f"the learning rate ({self.lr:.2g}; step lr x grad norm {size:.2g}) is too small to train"
        return (
            f"stalled at a normal step (lr {self.lr:.2g} x grad norm = {size:.2g}): the updates do not reach "
            "most layers (vanishing gradients or frozen layers)"
        )

    def _frozen(self, step: float, level: float) -> list[Finding]:
        """The update ratio fell ``drop`` decades from one report to the next and stays there
        while the loss stops improving: an lr change the loss then punishes."""
        p, f = self.params, self.frozen
        log = math.log10(max(level, 1e-300))
        if f is None:
            if self.last_ratio is not None and self.last_ratio - log >= p["drop"] and self.recent:
                self.frozen = {"step": step, "before": self.last_ratio, "loss": _median(self.recent), "n": 1}
            self.last_ratio = log
            return []
        if f["before"] - log < p["drop"]:  # moving again: re-armed
            self.frozen, self.last_ratio = None, log
            return []
        f["n"] += 1
        now = _median(self.recent)
        if f["n"] != p["reports"] or now < f["loss"] - p["min_drop"] * abs(f["loss"]):
            return []
        msg = (
            f"weights stopped moving at step {f['step']:g} (update ratio 10^{f['before']:.1f} to 10^{log:.1f}) "
            f"and the loss has not improved since ({f['loss']:.4g} then, {now:.4g} now)"
        )
        return [Finding(0, step, level, 1.0, "plateau", msg, p["drop"], "update_ratio")]

    def _collapse(self, steps: Any, values: Any, losses: tuple[np.ndarray, np.ndarray]) -> list[Finding]:
        p = self.params
        vals = np.asarray(values, dtype=np.float64).ravel()
        ok = np.isfinite(vals) & (vals > 0)
        kept = vals[ok]
        # math's log10, as for the states written before (NumPy's may differ in the last bit)
        logs = np.fromiter(map(math.log10, kept.tolist()), dtype=np.float64, count=kept.size)
        norms = np.concatenate([np.asarray(self.norms, dtype=np.float64), logs])
        self.norms = norms[-p["head"] :].tolist()
        if norms.size < p["head"]:
            return []
        # every step's level at once, and the loss level at its step
        levels = rolling_median(norms, p["head"])[-logs.size :] if logs.size else norms[:0]
        at = np.asarray(steps, dtype=np.float64).ravel()[ok][logs.size - levels.size :]
        loss = _level_at(*losses, at)
        running = np.maximum.accumulate(np.concatenate([[self.peak], levels]))
        before, peaks = running[:-1], running[1:]
        # the loss level when the norm was last at its peak (a state written before has none:
        # the starting loss, from when its early peak was)
        renewed = np.maximum.accumulate(np.where(levels > before, np.arange(levels.size), -1))
        kept_loss = self.peak_loss if self.peak_loss is not None else _median(self.start) if self.start else math.nan
        ref = np.where(renewed >= 0, loss[np.maximum(renewed, 0)], kept_loss)
        unexplained = peaks - levels - self._explained(ref, loss)
        ready = len(self.start) >= p["head"]  # as many losses as the rule has seen at the start
        start = self.start[0] if ready else math.nan  # the first loss: a full batch falls within the first `head`
        learnt = (loss < _LEARNT * start) if start > 0 else np.zeros(loss.shape, dtype=bool)
        hit = np.flatnonzero((unexplained >= p["decades"]) & ~learnt) if ready else levels[:0]
        if not hit.size:
            self.peak = float(peaks[-1]) if peaks.size else self.peak
            self.peak_loss = float(ref[-1]) if ref.size and math.isfinite(ref[-1]) else self.peak_loss
            return []
        k = int(hit[0])
        self.peak, level, then, now = float(peaks[k]), float(levels[k]), float(ref[k]), float(loss[k])
        self.peak_loss = then if math.isfinite(then) else self.peak_loss  # as one call over the run keeps it
        k += logs.size - levels.size  # the value whose window it was (earlier ones had no full window)
        self.norms = norms[: norms.size - logs.size + k + 1][-p["head"] :].tolist()
        self.vanished = True
        step, x = np.asarray(steps).ravel()[ok][k].item(), float(vals[ok][k])
        msg = (
            f"gradient norm fell {self.peak - level:.1f} decades (10^{self.peak:.1f} to 10^{level:.1f}) while the "
            f"loss went from {then:.4g} to {now:.4g}: a collapse the loss does not explain"
        )
        return [Finding(0, float(step), x, 1.0, "vanishing", msg, p["decades"], "grad_norm", "critical")]

    def _explained(self, then: np.ndarray, now: np.ndarray) -> np.ndarray:
        """Decades of gradient-norm fall the loss explains: how far it fell from ``then`` to ``now``
        (under cross-entropy a gradient shrinks with its loss; a loss that rose explains nothing).
        A loss that is not positive has no decades: it explains nothing if it did not improve by
        ``min_drop``, everything if it did; an unknown (NaN) loss explains everything."""
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.maximum(0.0, np.log10(then / now))
        stuck = np.where(now >= then - self.params["min_drop"] * np.abs(then), 0.0, np.inf)
        return np.where((then > 0) & (now > 0), logs, np.where(np.isfinite(then + now), stuck, np.inf))

    def to_state(self) -> dict[str, Any]:
        return {
            "params": dict(self.params),
            "start": list(self.start),
            "recent": list(self.recent),
            "ratios": list(self.ratios),
            "peak": self.peak if math.isfinite(self.peak) else None,
            "peak_loss": self.peak_loss,
            "norms": list(self.norms),
            "stalled": self.stall_done,
            "last_ratio": self.last_ratio,
            "frozen": dict(self.frozen) if self.frozen else None,
            "vanished": self.vanished,
            "step_sizes": list(self.step_sizes),
            "lr": self.lr,
            "first_lr": self.first_lr,
            "steps_done": self.steps_done,
            "cut": dict(self.cut) if self.cut else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunChecks:
        check = cls(**state["params"])
        check.start, check.recent = [float(v) for v in state["start"]], [float(v) for v in state["recent"]]
        check.ratios, check.norms = [float(v) for v in state["ratios"]], [float(v) for v in state["norms"]]
        check.peak = -math.inf if state["peak"] is None else float(state["peak"])
        peak_loss = state.get("peak_loss")  # absent from states written before
        check.peak_loss = None if peak_loss is None else float(peak_loss)
        check.stall_done, check.vanished = bool(state["stalled"]), bool(state["vanished"])
        check.last_ratio = state["last_ratio"]
        check.frozen = dict(state["frozen"]) if state["frozen"] else None
        check.step_sizes = [float(v) for v in state.get("step_sizes", [])]  # absent from states written before
        check.lr = state.get("lr")
        # absent from states written before
        check.first_lr, check.steps_done = state.get("first_lr", check.lr), bool(state.get("steps_done", False))
        check.cut = dict(state["cut"]) if state.get("cut") else None
        return check


def _level_at(steps: np.ndarray, levels: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The loss level after the last loss at or before each step of ``at``. Steps that go back inside
    a chunk (a job resumed from a checkpoint, ranks sending one block) are put in order first; a
    step sent twice keeps its last level."""
    if steps.size > 1 and np.any(steps[1:] < steps[:-1]):
        order = np.argsort(steps, kind="stable")
        steps, levels = steps[order], levels[order]
    return levels[np.searchsorted(steps, at, side="right") - 1]


def _floats(values: Any) -> list[float]:
    return list(np.asarray(values, dtype=np.float64).ravel().tolist())


def _median(values: list[float]) -> float:
    """np.median of a short list of finite floats, the same float without NumPy's per-call cost."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def _report_levels(series: dict[str, tuple[Any, Any]]) -> dict[float, tuple[float, int]]:
    """Per report step: the median update ratio across the layers that moved, and their count.

    A ratio of exactly 0 is a layer outside the optimizer (or in a param group at lr 0, as
    when fine-tuning a head): left out, unless no layer moved at all (the level is then 0).
    """
    by_step: dict[float, list[float]] = {}
    for name, (steps, values) in series.items():
        if not name.startswith("update_ratio/"):
            continue
        pairs = zip(
            np.asarray(steps, dtype=np.float64).tolist(), np.asarray(values, dtype=np.float64).tolist(), strict=True
        )
        for step, x in pairs:
            if math.isfinite(x) and x >= 0:
                by_step.setdefault(step, []).append(x)
    out = {}
    for step, at in sorted(by_step.items()):
        moved = [x for x in at if x > 0]
        out[step] = (float(np.median(moved)) if moved else 0.0, len(moved))
    return out
