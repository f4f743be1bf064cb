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
  ratio stayed below ``tiny_ratio`` (3e-5, a third of the slowest start that learned) on
  each of the run's first ``reports`` reports with no warm-up: the logged lr not rising 10 %
  over them, or, where the run logs no lr since the report before (an lr logged once an epoch
  says nothing of a per-step warm-up in between), the ratio not doubling (at a constant lr the
  ratio also rises as momentum builds up: SGD at lr 1e-6, 2.7e-8 to 1.5e-7 in three reports).
  A report at a logged lr of 0 is not judged: the schedule has not begun (LambdaLR(epoch / 5)
  is 0 through epoch 0). A ratio that was larger once never counts: a schedule that decays the
  lr later is the user's.
  Adam moves each weight about lr a step whatever its gradient, so at lr 1e-6 its ratio is lr over
  the weights' size: 1e-5 to 1.6e-5 on held-out runs whose loss never moved (an LSTM, a VAE, an MLP
  under gradient accumulation; /work/rev-ag), where the lowest first report of 150 healthy held-out
  runs was 1.6e-3 (/work/rev-ad, /work/rev-ag). At the threshold of 1e-5 they read as moving and
  were left to the loss's own check (step 150). A ratio from ``tiny_ratio`` to 10 times it (a 512-input
  layer under Adam at lr 1e-6: 4e-5; the slow starters) decides neither way: the step's size is asked,
  as for a run that sends no ratios.
  A run that sends no update ratios but its learning rate and global gradient norm (what a
  hand-written loop logs) is told by the size of a plain SGD step, lr x grad norm (the lr in
  effect at each norm's step; an lr of 0 is no step yet): on the bench's runs the stalled
  one's median over its first 16 steps was 3e-8; every healthy run's, warm-ups included, 3e-4
  to 0.45 (its smallest single step 2.5e-5, at the start of an Adam warm-up) and the slow
  starters' 7e-3. ``stalled`` when the median of the run's first ``head`` steps is below
  ``tiny_step`` (1e-6: a weight norm of 1 moves a millionth a step), the lr did not rise 10 %
  over them (a warm-up, however slow, is not judged), and the loss neither fell ``min_drop``
  from the first half of its first ``head`` values to the second nor since (a run that logs
  every few steps is judged on fewer, at least 4, once they span 150 steps: every 50 steps,
  at its 4th point, where 16 took it to step 799). Adam's real step
  is about lr per weight, larger than lr x grad norm when the gradient is small, so an Adam
  run at lr 1e-6 or below with a gradient norm under 1, whose loss has not moved, reads as
  stalled: the message says lr x grad norm, so a person can tell.
* **plateau after an lr change the loss punishes**: the ratio follows the learning rate, so
  the user's schedules move it by a decade (a x0.1 step) or gradually (cosine); a drop of
  ``drop`` (3) decades from one report to the next is the weights all but stopping. It is a
  ``plateau`` when the ratio stays down for ``reports`` reports and the loss has not improved
  by ``min_drop`` since (the bench's lr x1e-6 at step 100: found at step 120; the loss alone
  needs the 100+ steps of :class:`~aitrace.detect.training.PlateauCheck`, since a slowing
  healthy run looks the same for that long). Where the run logs the lr that fell,
  :class:`~aitrace.detect.lr_cut.LrCut` judges the losses after the cut instead (step 116 on the
  bench), in blocks of 16: a single look at the loss 3 reports on read batch noise as learning on
  21 of 72 real cuts; without an lr, the ratios' rule asks again at each report whether the loss
  improved ``min_drop`` since the last.
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

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from aitrace.detect.finding import Finding
from aitrace.detect.lr_cut import LrCut, logged_rates
from aitrace.detect.rolling import rolling_median
from aitrace.detect.training import VANISHING_DECADES, layer_spread

_TRAIN_LOSS = frozenset({"loss", "train_loss", "train/loss"})
# A (positive) loss below this share of its first value has learnt: a gradient that then falls by decades is a
# full batch at its optimum (a linear regression on diabetes, full-batch SGD: the loss 1.10 -> 0.48, its floor, the
# norm 2.2 -> 1e-3), not a collapse. The collapsing nets' losses stay at their first value (chance) or above it.
_LEARNT = 0.75
# A run logged every few steps (Lightning's default: 50) has its step sizes and its start's losses judged on as
# few as this many points once they span _START_SPAN steps, where the step sizes or update ratios are the
# evidence (the loss alone waits for StallCheck's 32 points: steps have no unit, samples seen or batches)
SPARSE_POINTS = 4
_START_SPAN = 150.0  # steps: as StallCheck's horizon; a run logged sparsely has its start judged once past it
_WARMING = 1.1  # an lr that rose 10 % over the first steps is warming up: a stall is not judged
# Update ratios from tiny_ratio to this many times it are a slow start's or a tiny lr's: the ratio alone decides
# neither, and the step's size (lr x grad norm) is asked too
_SLOW_BAND = 10.0
_SAME = 1e-6  # losses this close (relative: a float32's precision, with room) are one value


class RunChecks:
    """The cross-series checks of one training run (see the module's docstring).

    ``update(series)`` takes one chunk of the run: ``{metric name: (steps, values)}`` for the
    training split, and returns the findings among it; ``to_state()`` / ``from_state()``
    carry it between chunks.
    """

    def __init__(
        self,
        *,
        tiny_ratio: float = 3e-5,
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
        self.seen = 0  # finite losses so far (the plateau's rule compares windows that do not overlap)
        self.ratios: list[float] = []  # median update ratio across layers, per report, while it is tiny
        self.ratio_lr: float | None = None  # the logged lr at the first of those reports (None: not logged)
        self.peak = -math.inf  # log10 of the highest grad-norm level
        self.peak_loss: float | None = None  # the loss level when the grad-norm level was last at its peak
        self.norms: list[float] = []  # the last `head` finite global grad norms
        # points per grad-norm level: `head` when the norm is logged every step, fewer when every few steps
        # (`_norm_window`); decided from the steps of the first 4 norms (kept till then), None before
        self.norm_window: int | None = None
        self.norm_steps: list[float] = []
        self.stall_done = self.vanished = False
        self.last_ratio: float | None = None  # log10 of the last report's median update ratio
        self.frozen: dict[str, Any] | None = None  # since a drop of `drop` decades: step, before, loss, n
        self.step_sizes: list[float] = []  # the last `head` finite lr x global grad norm
        self.first_sizes: list[float] = []  # the run's first `head` steps (lr x grad norm, lr > 0)
        self.sized_at = math.nan  # the step of the last of them
        self.sized_from = math.nan  # and of the first
        self.loss_span: list[float] | None = None  # the steps of the run's first and last finite loss
        self.lr_span: list[float] | None = None  # lowest and highest lr over them
        self.steps_done = False  # the step-size stall is judged (no update ratios sent)
        self.lr_cut = LrCut(drop=drop, head=head, min_drop=min_drop)  # tracks the run's last lr
        # each verdict found so far, at its last step (the training loss does not page it again)
        self.reported: dict[str, float] = {}

    def update(self, series: dict[str, tuple[Any, Any]]) -> list[Finding]:
        out: list[Finding] = []
        losses = None  # the loss level at each loss step of the chunk
        for name in _TRAIN_LOSS.intersection(series):
            losses = self._loss_levels(*series[name])
            self._losses(series[name][1])
            self._loss_span(*series[name])
        lr = next((series[n] for n in ("lr", "learning_rate") if n in series), None)
        rate_at = _rate_at(lr)
        if "grad_norm" in series:  # before the lr is tracked: the lr carried into this chunk
            self._step_sizes(lr, series["grad_norm"])
        levels = losses or self._loss_levels([], [])
        loss = next((series[n] for n in sorted(_TRAIN_LOSS) if n in series), None)
        # with update ratios sent, the lr's cut concludes only once they say the weights stopped too (a cut read
        # from an lr logged once an epoch under warm restarts is the last step of a cycle, not a stop)
        ratios = self.last_ratio is not None or any(n.startswith("update_ratio/") for n in series)
        cut = self.lr_cut.update(
            lr, loss, lambda step: float(_level_at(*levels, np.array([step]))[0]), judge=not ratios or bool(self.frozen)
        )
        after = -math.inf  # the report before, in this chunk
        for step, (level, layers) in _report_levels(series).items():
            out += self._stall(step, level, layers, rate_at(after, step)) if not self.stall_done else []
            out += self._frozen(step, level)
            after = step
        if ratios and self.frozen and not cut:  # (they fell in this chunk)
            cut = self.lr_cut.judge_pending()
        out += [f for f in cut if not self.frozen or not self.frozen.get("judged")]  # (the weights' rule told it)
        out += self._step_stall()
        spread = layer_spread({n: v for n, (_, v) in series.items() if n.startswith("grad_norm/")})
        if spread is not None and spread[0] >= VANISHING_DECADES:
            self.vanished = True  # the per-layer rule's (processors.detection_runs): it names the starved layer
        if "grad_norm" in series and not self.vanished:
            out += self._collapse(*series["grad_norm"], losses or self._loss_levels([], []))
        self.reported.update((f.reason, f.step) for f in out)
        return out

    @property
    def lr(self) -> float | None:
        """The run's last logged learning rate."""
        return self.lr_cut.lr

    def _loss_span(self, steps: Any, values: Any) -> None:
        """Widen the steps of the run's first and last finite loss by a chunk's."""
        ok = np.isfinite(np.asarray(values, dtype=np.float64).ravel())
        at = np.asarray(steps, dtype=np.float64).ravel()[ok]
        if at.size:
            low, high = float(at.min()), float(at.max())
            self.loss_span = [low, high] if self.loss_span is None else [
                min(self.loss_span[0], low), max(self.loss_span[1], high)
            ]  # fmt: skip

    def _losses(self, values: Any) -> None:
        head = self.params["head"]
        vals = np.asarray(values, dtype=np.float64).ravel()
        finite = vals[np.isfinite(vals)]
        if len(self.start) < head:
            self.start += finite[: head - len(self.start)].tolist()
        self.recent = [*self.recent, *finite[-head:].tolist()][-head:]
        self.seen += finite.size

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

    def _step_sizes(self, lr: tuple[Any, Any] | None, norm: tuple[Any, Any]) -> None:
        """Keep lr x grad norm, the size of a plain SGD step, at each grad norm's step: the lr in effect
        there is the last one logged at or before it (this chunk's, else the run's last). An lr of 0 is
        no step (a schedule that starts at 0 has not begun)."""
        lr_steps, lrs = logged_rates(lr)
        steps = np.asarray(norm[0], dtype=np.float64).ravel()
        k = np.searchsorted(lr_steps, steps, side="right") - 1
        prior = math.nan if self.lr_cut.lr is None else self.lr_cut.lr
        rates = np.where(k >= 0, lrs[np.maximum(k, 0)] if lrs.size else prior, prior)
        with np.errstate(invalid="ignore", over="ignore"):
            sizes = rates * np.asarray(norm[1], dtype=np.float64).ravel()
        ok = np.isfinite(sizes) & (sizes >= 0) & (rates > 0)
        steps, rates, sizes = steps[ok], rates[ok], sizes[ok]
        head = self.params["head"]
        self.step_sizes = [*self.step_sizes, *sizes[-head:].tolist()][-head:]
        need = head - len(self.first_sizes)
        if need > 0 and sizes.size:
            if not self.first_sizes:
                self.sized_from = float(steps[0])
            self.first_sizes += sizes[:need].tolist()
            self.sized_at = float(steps[:need][-1])
            low, high = self.lr_span or (float(rates[0]), float(rates[0]))
            self.lr_span = [low, max(high, float(rates[:need].max()))]

    def _step_stall(self) -> list[Finding]:
        """Without update ratios, or with ratios under ``_SLOW_BAND`` x ``tiny_ratio`` (Adam at lr 1e-6 moves
        64-input layers 1.4e-5 of their size a step, over the ratio's threshold: found at step 150 by the loss
        alone, or never, where the same run without its ratios was found at step 15): the run's first ``head``
        steps (lr x grad norm) tiny, the lr not
        rising over them, and the loss not falling from the first half of its first ``head`` values
        to the second (nor since). A run logged every few steps is judged on fewer points once they
        span ``_START_SPAN`` steps (:data:`SPARSE_POINTS` at least). See the module's docstring."""
        p = self.params
        sizes = len(self.first_sizes)
        spanned = sizes >= SPARSE_POINTS and self.sized_at - self.sized_from >= _START_SPAN
        ready = (sizes >= p["head"] or spanned) and self._start_losses() is not None
        slow = self.last_ratio is None or self.last_ratio < math.log10(_SLOW_BAND * p["tiny_ratio"])
        if self.steps_done or self.stall_done or not slow or not ready:
            return []
        self.steps_done = True  # judged once, on the run's first steps
        size, levels, half = _median(self.first_sizes), self._at_start(), len(self.start) // 2
        early, late = _median(self.start[:half]), _median(self.start[half:])
        low, high = self.lr_span or (0.0, 0.0)
        if size < p["tiny_step"] and high > _WARMING * low and levels is not None:  # a warm-up, however slow:
            self.steps_done, self.first_sizes, self.lr_span = False, [], None  # judged on the steps after it
            return []
        if size >= p["tiny_step"] or levels is None or late < early - p["min_drop"] * abs(early):
            return []
        self.stall_done = True
        msg = (
            f"each step moves the weights by about lr x grad norm = {size:.2g} (median of the run's first "
            f"{sizes} logged steps, lr {high:.2g}) and the loss is still at its start ({levels[0]:.4g}, now "
            f"{levels[1]:.4g}): the learning rate is too small to train"
        )
        return [Finding(0, float(self.sized_at), size, 1.0, "stalled", msg, p["tiny_step"], "lr")]

    def _at_start(self) -> tuple[float, float] | None:
        """(start, now) loss levels while the loss has not left its start, else None."""
        losses = self._start_losses()
        if losses is None:
            return None
        start, now = _median(losses[0]), _median(losses[1])
        return (start, now) if now >= start - self.params["min_drop"] * abs(start) else None

    def _start_losses(self) -> tuple[list[float], list[float]] | None:
        """(the run's first losses, its last as many): ``head`` of each, or the first and the second
        half of fewer once they span ``_START_SPAN`` steps (a loss logged every 50 steps has 4 by step
        150, where 16 took it to step 800); None before."""
        n, span = len(self.start), self.loss_span
        if n >= self.params["head"]:
            return self.start, self.recent
        if n < SPARSE_POINTS or span is None or span[1] - span[0] < _START_SPAN:
            return None
        return self.start[: n // 2], self.recent[-(n // 2) :]

    def _stall(self, step: float, level: float, layers: int, lr: float | None) -> list[Finding]:
        """One report of the median update ratio (``lr``: the run's logged lr there, if any): still tiny
        since the first report?

        A warm-up is told by the lr where the run logs it: the ratio's own rise over the first reports
        is momentum building up (SGD's x0.9: 2.7e-8 to 1.5e-7 in three reports at lr 1e-6), which once
        read as a warm-up left the stall to the loss's own check at step 150. An lr of 0 is no step yet.
        The reports are counted again from the last whose lr rose: a warm-up ends, and a stall under one (a
        mistyped peak of 1e-7 under a linear warm-up or OneCycle) is judged on the reports after it, where
        once a warm-up left it to the loss's own check at step 150 (/work/rev-ad). Without a logged lr the
        ratio doubling is read as a warm-up, and the stall is left to that check."""
        p = self.params
        if lr == 0.0:
            return []
        if not self.ratios:
            self.ratio_lr = lr
        warming = self.ratio_lr is not None and lr is not None and lr > _WARMING * self.ratio_lr
        if warming and level < p["tiny_ratio"]:  # judged again from here: on reports after the warm-up
            self.ratios, self.ratio_lr = [], lr
        elif level >= _SLOW_BAND * p["tiny_ratio"] or (lr is None and self.ratios and level > 2.0 * min(self.ratios)):
            self.stall_done, self.ratios = True, []  # the weights moved (or, without an lr, the ratio doubled)
            return []
        elif level >= p["tiny_ratio"]:  # slow: the step's size may still tell (_step_stall)
            self.ratios = []
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
                self.frozen = {
                    "step": step, "before": self.last_ratio, "loss": _median(self.recent), "n": 1, "seen": self.seen
                }  # fmt: skip
            self.last_ratio = log
            return []
        if f["before"] - log < p["drop"]:  # moving again: re-armed
            self.frozen, self.last_ratio = None, log
            return []
        f["n"] += 1
        now = _median(self.recent)
        told = f.get("judged") or self.reported.get("plateau", -math.inf) >= f["step"]  # (a state written before)
        fresh = self.seen - f.get("seen", 0) >= p["head"]  # a window of losses after the last one compared
        if f["n"] < p["reports"] or told or not fresh or self.lr_cut.cut is not None:  # (an lr cut: LrCut judges)
            return []
        if now < f["loss"] - p["min_drop"] * abs(f["loss"]):  # still improving: asked again on the next window
            f["loss"], f["since"], f["seen"] = now, step, self.seen
            return []
        f["judged"] = True
        if max(self.recent) - min(self.recent) <= _SAME * abs(now):
            # the loss repeats one value: a full-batch fit at its optimum (LBFGS stops at its tolerance: its update
            # ratio 0 and its loss the same to the last bit, /work/rev-ad), not weights an lr change stopped, whose
            # loss keeps each batch's noise. A minibatch run whose weights stop keeps that noise, and is paged.
            return []
        msg = (
            f"weights stopped moving at step {f['step']:g} (update ratio 10^{f['before']:.1f} to 10^{log:.1f}) "
            f"and the loss has stopped improving ({f['loss']:.4g} at step {f.get('since', f['step']):g}, "
            f"{now:.4g} now)"
        )
        return [Finding(0, step, level, 1.0, "plateau", msg, p["drop"], "update_ratio")]

    def _collapse(self, steps: Any, values: Any, losses: tuple[np.ndarray, np.ndarray]) -> list[Finding]:
        p = self.params
        vals = np.asarray(values, dtype=np.float64).ravel()
        ok = np.isfinite(vals) & (vals > 0)
        kept = vals[ok]
        window = self._norm_window(np.asarray(steps, dtype=np.float64).ravel()[ok])
        # math's log10, as for the states written before (NumPy's may differ in the last bit)
        logs = np.fromiter(map(math.log10, kept.tolist()), dtype=np.float64, count=kept.size)
        norms = np.concatenate([np.asarray(self.norms, dtype=np.float64), logs])
        self.norms = norms[-p["head"] :].tolist()
        if window is None or norms.size < window:
            return []
        # every step's level at once, and the loss level at its step
        levels = rolling_median(norms, window)[-logs.size :] if logs.size else norms[:0]
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
        ready = len(self.start) >= window  # as many losses as the rule has seen at the start
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

    def _norm_window(self, steps: np.ndarray) -> int | None:
        """Points per grad-norm level: ``head`` steps' worth, 3 at least. A norm logged every 5 steps
        that collapsed within its first 30 steps (the bench's 12-layer tanh nets) had no level of 16
        points before the collapse: its peak was never seen, and the collapse was never found."""
        if self.norm_window is None:
            for step in steps:  # distinct rising steps: a norm sent twice a step (two loggers) is not a gap of 0
                if len(self.norm_steps) == SPARSE_POINTS:
                    break
                if not self.norm_steps or step > self.norm_steps[-1]:
                    self.norm_steps.append(float(step))
            if len(self.norm_steps) == SPARSE_POINTS:  # the median gap: one norm lost to a NaN changes nothing
                gap = max(1.0, _median([b - a for a, b in itertools.pairwise(self.norm_steps)]))
                self.norm_window, self.norm_steps = (
                    max(3, min(self.params["head"], round(self.params["head"] / gap))),
                    [],
                )
        return self.norm_window

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
            "seen": self.seen,
            "ratios": list(self.ratios),
            "peak": self.peak if math.isfinite(self.peak) else None,
            "peak_loss": self.peak_loss,
            "norms": list(self.norms),
            "norm_window": self.norm_window,
            "norm_steps": list(self.norm_steps),
            "stalled": self.stall_done,
            "ratio_lr": self.ratio_lr,
            "last_ratio": self.last_ratio,
            "frozen": dict(self.frozen) if self.frozen else None,
            "vanished": self.vanished,
            "step_sizes": list(self.step_sizes),
            "first_sizes": list(self.first_sizes),
            "sized_at": self.sized_at if math.isfinite(self.sized_at) else None,
            "sized_from": self.sized_from if math.isfinite(self.sized_from) else None,
            "loss_span": list(self.loss_span) if self.loss_span else None,
            "lr_span": list(self.lr_span) if self.lr_span else None,
            "steps_done": self.steps_done,
            "lr_cut": self.lr_cut.to_state(),
            "reported": dict(self.reported),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunChecks:
        check = cls(**state["params"])
        check.start, check.recent = [float(v) for v in state["start"]], [float(v) for v in state["recent"]]
        check.ratios, check.norms = [float(v) for v in state["ratios"]], [float(v) for v in state["norms"]]
        check.seen = int(state.get("seen", len(check.recent)))  # absent from states written before
        check.peak = -math.inf if state["peak"] is None else float(state["peak"])
        peak_loss = state.get("peak_loss")  # absent from states written before
        check.peak_loss = None if peak_loss is None else float(peak_loss)
        check.stall_done, check.vanished = bool(state["stalled"]), bool(state["vanished"])
        # a state written before windows were read from the cadence: `head` points, as it was judged
        check.norm_window = state["norm_window"] if "norm_window" in state else check.params["head"]
        check.norm_steps = [float(v) for v in state.get("norm_steps", [])]
        check.ratio_lr = None if state.get("ratio_lr") is None else float(state["ratio_lr"])  # absent before
        check.last_ratio = state["last_ratio"]
        check.frozen = dict(state["frozen"]) if state["frozen"] else None
        check.step_sizes = [float(v) for v in state.get("step_sizes", [])]  # absent from states written before
        if "lr_cut" in state:
            check.lr_cut = LrCut.from_state(state["lr_cut"])
        elif state.get("lr") is not None:  # a state written before: its last lr
            check.lr_cut.lr = float(state["lr"])
        check.first_sizes = [float(v) for v in state.get("first_sizes", [])]
        check.reported = {str(r): float(step) for r, step in dict(state.get("reported") or {}).items()}
        check.sized_at = math.nan if state.get("sized_at") is None else float(state["sized_at"])
        check.sized_from = math.nan if state.get("sized_from") is None else float(state["sized_from"])  # absent before
        check.loss_span = [float(v) for v in state["loss_span"]] if state.get("loss_span") else None
        check.lr_span = [float(v) for v in state["lr_span"]] if state.get("lr_span") else None
        # a state written before this check, past the run's start, is not judged on its later steps
        check.steps_done = bool(state.get("steps_done", len(check.start) >= check.params["head"]))
        return check


def _rate_at(lr: tuple[Any, Any] | None) -> Callable[[float, float], float | None]:
    """The lr at a report (``step``): the chunk's last logged at or before it and after the report
    before (``after``), else None. An lr logged earlier is stale: a loop that logs its lr once an
    epoch under a per-step warm-up read the lr of step 0 at steps 10 and 20 as not rising, and a
    real Adam run warming up over 10,000 steps paged ``stalled`` at step 20 (logged every step: 150)."""
    steps, rates = logged_rates(lr)

    def at(after: float, step: float) -> float | None:
        k = int(np.searchsorted(steps, step, side="right")) - 1
        return float(rates[k]) if k >= 0 and steps[k] > after else None

    return at


def _level_at(steps: np.ndarray, levels: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The loss level after the last loss at or before each step of ``at``. Steps that go back inside
    a chunk (a job resumed from a checkpoint, ranks sending one block) are put in order first; a
    step sent twice keeps its last level."""
    if steps.size > 1 and np.any(steps[1:] < steps[:-1]):
        order = np.argsort(steps, kind="stable")
        steps, levels = steps[order], levels[order]
    return levels[np.searchsorted(steps, at, side="right") - 1]


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
