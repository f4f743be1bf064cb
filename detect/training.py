"""What a training metric's name says about it, and the run-level checks on a loss curve.

The idea
--------
A training job logs dozens of series under names it chooses. Their meaning decides what is
news: a falling loss is the point of training, a learning rate that drops tenfold is the
user's schedule, a batch accuracy that repeats 1.0 is a model that fits its batches. So the
processors first ask :func:`metric_role` what a name is, then score it with the matching
:class:`~aitrace.detect.monitor.SeriesMonitor` kind (or the generic detector with the
harmless direction left out), and never page on a schedule.

:class:`StallCheck` answers one question the point scores cannot: did the loss ever leave
the level it started at? A stalled run (a learning rate of 1e-7, a frozen network) has a
loss that is flat *and* normal by every point score.

How the defaults were chosen
----------------------------
On real PyTorch runs on scikit-learn's digits and breast-cancer tables (MLP and CNN with
Adam, warm-up and cosine decay; a tabular MLP with AdamW; an 8-layer ReLU net with SGD,
momentum and step decay; three seeds each: ``bench/bench_training.py``) every healthy
run's loss was 5 % below its starting level by step 63. A 6-layer ReLU net with PyTorch's
default initialisation and SGD at 0.05 (``training_runs.slow_starters``) sat at its starting
loss for 90 to 150 steps before it learned: one seed was still within 1 % of its start at
step 150. What told it from a stall was the trend against the loss's own noise: the last 64
losses of every slow starter fell with Mann-Kendall p < 0.001 from step 128 on (one seed
was flat, p = 0.69, at step 64), while those of the stalled (lr 1e-7) and vanishing-gradient
runs never went below p = 0.07 in 17 windows. So the verdict waits ``min_steps=150`` steps
and is "stalled" only when the loss is within 5 % of its start *and* not falling at
p < 0.01. The loss alone cannot be faster: a slow starter is flat until ~110 steps.
:class:`~aitrace.detect.run_checks.RunChecks` can, from the update ratios or the size of a step (lr x
grad norm).

Example
-------
>>> import numpy as np
>>> from aitrace.detect.training import StallCheck, metric_role
>>> metric_role("val_loss"), metric_role("lr/encoder"), metric_role("grad_norm/fc1")
('loss', 'schedule', 'grad_norm')
>>> rng = np.random.default_rng(0)
>>> check = StallCheck()
>>> loss = 2.30 + 0.05 * rng.normal(size=400)          # lr 1e-7: the loss never moves
>>> step, start, now = check.update(np.arange(400), loss)
>>> step, round(start, 2), round(now, 2)
(150, 2.29, 2.31)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np
from aitrace.detect.overfit import mann_kendall
from aitrace.detect.rolling import rolling_median

_SCHEDULES = (
    "lr", "learning_rate", "epoch", "step", "global_step", "batch_step", "batch_size", "momentum", "weight_decay"
)  # fmt: skip
# mixed-precision scalers (a loss's, or GradScaler's scale): they halve and double by design
_SCALERS = ("loss_scale", "loss_scaler", "grad_scale", "grad_scaler")
TRAIN_SPLITS = frozenset({"", "train", "training"})  # a run's training series: its loss gets the run checks
# A split a metric's name carries: its first word (Keras' and Lightning's ``val_loss``, W&B's ``val/loss``) or,
# in a name of two parts, its last (``Loss/test``, as in PyTorch's TensorBoard tutorial).
SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "eval": "val",
    "dev": "val",
    "test": "test",
}
# other names of the series the run's rules read: the global gradient norm (fairseq's ``gnorm``, the
# ``total_norm`` clip_grad_norm_ returns) and the learning rate
_ALIASES = {
    "learning_rate": "lr",
    "gradient_norm": "grad_norm",
    "global_grad_norm": "grad_norm",
    "grad_norm_total": "grad_norm",
    "total_grad_norm": "grad_norm",
    "total_norm": "grad_norm",
    "gnorm": "grad_norm",
}
_LIGHTNING_LR = re.compile(r"lr-[A-Za-z]\w*")  # LearningRateMonitor's ``lr-Adam`` (one optimizer, one group)
# the scores of a classifier (a run that sends one is judged for under-fitting: underfit.py), then others
_CLASSIFIER_SCORES = frozenset(
    {"accuracy", "acc", "top1", "top5", "f1", "precision", "recall", "auc", "auroc", "map", "iou"}
)  # fmt: skip
_SCORES = _CLASSIFIER_SCORES | {
    "miou", "dice", "bleu", "rouge", "rouge1", "rouge2", "rougel", "psnr", "ssim", "r2", "mcc", "ndcg", "mrr"
}  # fmt: skip
# A model's error by another name than loss: a regression's mse or mae, a cross-entropy, a word error rate, a
# classifier's error rate (top1_err). Read as "other" (a server's series), a loss's fall paged as level shifts
# and dips: a training loss logged as mse, 49 incidents on 120 healthy runs of 10 families where as loss 12.
# In the order one stands for the run's loss (run_loss_name): what a model trains on before what it is judged by.
# A VAE's negative ELBO is what it trains on; the ELBO itself is maximised: no loss.
_LOSS_ORDER = (
    "nll", "ce", "cross_entropy", "crossentropy", "xent", "bce", "logloss", "nelbo", "neg_elbo", "negative_elbo",
    "mse", "huber", "smooth_l1", "rmse", "mae", "msle", "rmsle", "mape", "smape", "bpd", "bpc", "bpb", "wer", "cer",
    "err", "error", "fid",
)  # fmt: skip
_LOSSES = frozenset(_LOSS_ORDER)
# words that make such a name a setting or a tally, not the error itself: mse_weight, huber_delta, error_count
_NOT_A_MEASURE = frozenset(
    {"count", "counts", "num", "weight", "weights", "coef", "coeff", "delta", "lambda", "alpha", "beta", "gamma"}
    | {"scale", "factor", "threshold", "thresh", "eps", "margin", "clip", "temperature", "temp"}
)


def _parts(name: str) -> list[str]:
    return [p for p in name.lower().replace("/", ".").replace("-", "_").split(".") if p]


def _names_an_error(parts: list[str]) -> bool:
    """Whether the name's own part (its last: ``mae_vit/acc`` is a masked autoencoder's accuracy) names a
    model's error (``mse``, ``val_top1_err``), not a setting or a tally of it (``mse_weight``, ``error_count``)."""
    last = parts[-1] if parts else ""
    words = last.split("_")
    return (last in _LOSSES or any(w in _LOSSES for w in words)) and not any(w in _NOT_A_MEASURE for w in words)


def metric_role(name: str) -> str:
    """``schedule``, ``loss``, ``grad_norm``, ``score`` (higher is better) or ``other``.

    The role is read from the name's words (``val_loss``, ``train/acc``, ``lr/encoder``,
    ``grad_norm/fc1``, ``update_ratio/fc1``, Lightning's ``lr-Adam``, a regression's ``mse``), never from its
    values.
    """
    rule_name = series_name("", name)[1]
    parts = _parts(rule_name)
    head = parts[0] if parts else ""
    words = [w for p in parts for w in p.split("_")]
    if head in _SCHEDULES or (parts[-1:] and parts[-1] in _SCHEDULES) or head.endswith(("_lr", "_learning_rate")):
        return "schedule"
    # Lightning's lr-SGD-momentum, lr-Adam/pg1; not any name whose first word is lr (lr_loss, lr_acc: a
    # logistic-regression probe's loss and accuracy were read as schedules, their NaN never paged)
    if rule_name.lower().startswith("lr-") or any(p in _SCALERS for p in parts):
        return "schedule"
    if head in ("grad_norm", "gradient_norm", "update_ratio", "grad_norm_total") or head.startswith("grad_norm_"):
        return "grad_norm"
    if "loss" in words or head in ("nll", "perplexity", "ppl") or _names_an_error(parts):
        return "loss"
    if any(w in _SCORES for w in words):
        return "score"
    return "other"


def classifier_score(name: str) -> bool:
    """Whether a series is a classifier's score (accuracy, F1, AUC, ...): a run that sends one is a classifier,
    judged for under-fitting. A regression's r2, an image model's psnr or a segmenter's dice are scores, not
    that (underfit.py: a regression loss does not start at a chance level)."""
    return metric_role(name) == "score" and any(w in _CLASSIFIER_SCORES for p in _parts(name) for w in p.split("_"))


def run_loss_name(names: Iterable[str]) -> str | None:
    """Of one split's series (by the names the rules read them by), the one that stands for the run's loss:
    ``loss`` itself, else a model's error by another name (``mse``, ``cross_entropy``) or a ``total_loss``
    (the first by :func:`_loss_rank`), else None. A run that logs its
    regression loss as ``mse`` gets the run's checks and over- and under-fitting as one that logs ``loss``.
    A loss by a name of its own stands for it only alone (``ctc_loss``): of several (a VAE's ``recon_loss`` and
    ``kl_loss``, an actor-critic's ``entropy_loss``, which rises by design) none does, and each keeps its own
    checks. Never a per-layer series, a per-step or per-epoch copy or a name past 200 characters.

    >>> run_loss_name(["mae", "mse", "lr"]), run_loss_name(["loss_cls", "total_loss"]), run_loss_name(["ctc_loss"])
    ('mse', 'total_loss', 'ctc_loss')
    >>> run_loss_name(["kl_loss", "recon_loss"]) is None
    True
    """
    names = list(names)
    if "loss" in names:
        return "loss"
    losses = [n for n in names if len(n) <= 200 and "/" not in n and not n.endswith(("_epoch", "_step"))]
    losses = [n for n in losses if metric_role(n) == "loss"]
    errors = [n for n in losses if _names_an_error(_parts(n)) or _totals(n)]
    if not errors:  # one loss alone (ctc_loss) is the run's; of several parts (a VAE's, an actor-critic's) none is
        return losses[0] if len(losses) == 1 else None
    return min(errors, key=_loss_rank)


def _totals(name: str) -> bool:
    words = name.lower().split("_")
    return "total" in words and "loss" in words


def _loss_rank(name: str) -> tuple[int, str]:
    """A total loss first, then by :data:`_LOSS_ORDER` (``mse`` before ``mae``: a regression trains on the
    first and reports the second), then alphabetical."""
    if _totals(name):
        return -1, name
    low = name.lower()
    words = low.split("_")
    return min((i for i, w in enumerate(_LOSS_ORDER) if w in words or w == low), default=len(_LOSS_ORDER)), name


# A run's pace (how fast it trains) in its metrics' words: a time per step, iteration or batch, or a rate
# of training units per second
_PACE_TIMES = frozenset({"time", "ms", "sec", "secs", "seconds", "duration", "dt"})
_PACE_OF = frozenset({"step", "it", "iter", "iteration", "batch", "data", "fwd", "bwd", "forward", "backward", "epoch"})
_PACE_UNITS = frozenset(
    {"samples", "sample", "tokens", "tok", "toks", "images", "imgs", "img", "examples", "seqs", "sequences"}
    | {"step", "steps", "it", "iter", "iters", "iteration", "iterations", "batch", "batches", "epoch", "epochs"}
)
_PACE_RATES = frozenset({"throughput", "mfu", "ips", "fps", "tps"})


def pace_direction(name: str) -> int:
    """Whether a run's series is its pace: +1 where a higher value is a slower run (``step_time``, nanoGPT's
    ``dt``, timm's ``data_time``), -1 where a lower one is (``throughput``, ``samples_per_second``,
    ``tokens/s``, ``mfu``), else 0. Read from the name's words only, and only of units of training:
    a server's ``ctxt_per_s`` or ``latency_p50_ms`` is no pace.

    >>> [pace_direction(n) for n in ("step_time_ms", "dt", "samples_per_second", "it/s", "ctxt_per_s", "loss")]
    [1, 1, -1, -1, 0, 0]
    """
    words = re.findall(r"[a-z0-9]+", name.lower())
    timed = any(w in _PACE_TIMES for w in words)
    per_second = words[-1:] in (["s"], ["ps"], ["sec"], ["second"])
    if any(w in _PACE_RATES for w in words) or (
        per_second and any(w in _PACE_UNITS for w in words) and not any(w in _PACE_TIMES for w in words[:-1])
    ):
        return -1
    # a bare time ("time", "elapsed", "duration") is as often a run's whole elapsed time, which only grows
    if timed and (any(w in _PACE_OF for w in words) or words == ["dt"]):
        return 1
    return 0


def series_name(split: str, metric: str) -> tuple[str, str]:
    """The split and the name the run's rules read a series by.

    Trackers name the same series differently: ``val/loss`` (W&B), ``val_loss`` (Keras, Lightning),
    ``Loss/test`` (TensorBoard's tutorial), ``train_loss_step`` (Lightning's step values),
    ``epoch/val_loss`` and ``batch/loss`` (W&B's Keras logger),
    ``lr-Adam`` (Lightning's learning-rate monitor), ``gnorm`` (fairseq). A split in the name counts
    where the event's own split is a training one or the same; the name is then read without it, and
    a known other name of the loss, learning rate or global gradient norm is read as ``loss``, ``lr``
    or ``grad_norm``. Anything else is returned as sent: a name is never guessed from its values.

    >>> series_name("", "val/loss"), series_name("train", "Loss/test"), series_name("", "lr-Adam")
    (('val', 'loss'), ('test', 'loss'), ('', 'lr'))
    >>> series_name("", "train_loss_step"), series_name("val", "val_loss_epoch"), series_name("", "accuracy")
    (('train', 'loss'), ('val', 'loss'), ('', 'accuracy'))
    """
    if len(split) + len(metric) > _CACHED_CHARS:
        return _read_name(split, metric)
    return _cached_name(split, metric)


def _read_name(split: str, metric: str) -> tuple[str, str]:
    cadence, slash, rest = metric.partition("/")
    if slash and rest and cadence.lower() in ("epoch", "batch"):  # W&B's Keras logger: epoch/val_loss, batch/loss
        metric = rest
    named, base = _named_split(metric)
    if named is not None and (split in TRAIN_SPLITS or SPLIT_WORDS.get(split.lower()) == named):
        split = named
    else:
        base = metric
    low = base.lower()
    if slash and cadence.lower() == "epoch" and low == "loss" and split in TRAIN_SPLITS:
        return split, "loss_epoch"  # the epoch's mean beside batch/loss, as Lightning's train_loss_epoch
    # the loss's values of each step of training, of each epoch of validation (Lightning's on_step / on_epoch)
    if low in ("loss", "loss_step" if split in TRAIN_SPLITS else "loss_epoch"):
        return split, "loss"
    copy = "_step" if split in TRAIN_SPLITS else "_epoch"  # and a loss by another name's (train_mse_step)
    if low.endswith(copy) and _names_an_error(_parts(low[: -len(copy)])):
        return split, base[: -len(copy)]
    return split, _ALIASES.get(low, "lr" if _LIGHTNING_LR.fullmatch(base) else base)


# Names are read per chunk, per series (10x faster from the cache), but the cache keeps its names and their
# reading: 4,096 distinct names of 100,000 characters (a hostile client; nothing caps a name's length before
# the worker) kept 780 MiB after their chunks were gone. No series key past 1,024 characters is kept
# (max_key_chars): longer names are read afresh each time.
_CACHED_CHARS = 1_024
_cached_name = lru_cache(maxsize=4096)(_read_name)


def _named_split(metric: str) -> tuple[str | None, str]:
    """(the split a name's first word, or the last of its two parts, says, the name without it)."""
    cut = min((i for i in (metric.find("/"), metric.find("_")) if i > 0), default=-1)
    if cut > 0 and metric[:cut].lower() in SPLIT_WORDS and metric[cut + 1 :]:
        return SPLIT_WORDS[metric[:cut].lower()], metric[cut + 1 :]
    head, slash, last = metric.rpartition("/")
    word, _, copy = last.lower().rpartition("_")  # Lightning's copies of a logged value: loss/val_epoch
    if copy not in ("step", "epoch") or word not in SPLIT_WORDS:
        word, copy = last.lower(), ""
    if slash and head and "/" not in head and word in SPLIT_WORDS:
        return SPLIT_WORDS[word], head + (f"_{copy}" if copy else "")
    return None, metric


class StallCheck:
    """Reports once whether a loss never left its starting level.

    Parameters
    ----------
    min_steps:
        Steps after the first loss point at which the verdict is taken.
    head:
        Points whose median is the starting level (the first ``head``), and whose median is
        the level at the verdict (the last ``head`` before it); half the points seen where fewer
        than ``2 * head`` came.
    min_drop:
        The fall (relative to the starting level) that counts as having left it.
    trend, alpha:
        A loss still within ``min_drop`` of its start is not stalled when its last ``trend``
        values fall significantly against their own noise (Mann-Kendall, one-sided p below
        ``alpha``): it has begun to leave.

    ``update(steps, values)`` returns ``(step, start_level, level)`` the one time the
    verdict is "stalled", else None; ``to_state()`` / ``from_state()`` carry it.
    """

    def __init__(
        self, *, min_steps: int = 150, head: int = 32, min_drop: float = 0.05, trend: int = 64, alpha: float = 0.01
    ) -> None:
        if head < 2 or min_steps < head or not 0 < min_drop < 1 or trend < 10 or not 0 < alpha < 1:
            raise ValueError("need head >= 2, min_steps >= head, 0 < min_drop < 1, trend >= 10 and 0 < alpha < 1")
        self.params: dict[str, Any] = {
            "min_steps": min_steps,
            "head": head,
            "min_drop": min_drop,
            "trend": trend,
            "alpha": alpha,
        }
        self.first_step: int | None = None
        self.start: list[float] = []  # the first `head` finite values
        self.recent: list[float] = []  # the last max(head, trend) finite values
        self.decided = False

    def update(self, steps: Any, values: Any) -> tuple[int, float, float] | None:
        if self.decided:
            return None
        p = self.params
        for step, x in zip(np.asarray(steps).tolist(), np.asarray(values, dtype=np.float64).tolist(), strict=True):
            if not math.isfinite(x):
                continue
            if self.first_step is None:
                self.first_step = int(step)
            if len(self.start) < p["head"]:
                self.start.append(x)
            self.recent = [*self.recent[-(max(p["head"], p["trend"]) - 1) :], x]
            if int(step) - self.first_step >= p["min_steps"] and len(self.recent) >= p["head"]:
                return self._verdict(int(step))
        return None

    def _verdict(self, step: int) -> tuple[int, float, float] | None:
        self.decided = True
        p = self.params
        # the first and the last `head` values, halves of the values seen where fewer than 2 x head came
        # (logged every 5 steps, at step 160: the first 16 against the last 16, not the same 32 twice).
        # The loss alone is not judged on fewer points: steps have no unit (samples seen, 0, 64, 128, ...:
        # 6 batches took 320 steps, and 16 of 20 healthy runs read as stalled there)
        k = min(p["head"], len(self.recent) // 2)
        start, now = float(np.median(self.start[:k])), float(np.median(self.recent[-k:]))
        if now < start - p["min_drop"] * abs(start):
            return None
        _, p_up = mann_kendall(-np.asarray(self.recent[-p["trend"] :]))
        if p_up < p["alpha"]:  # falling against its own noise: a slow starter on its way
            return None
        return step, start, now

    def to_state(self) -> dict[str, Any]:
        return {
            "params": dict(self.params),
            "first_step": self.first_step,
            "start": list(self.start),
            "recent": list(self.recent),
            "decided": self.decided,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StallCheck:
        check = cls(**state["params"])
        check.first_step = state["first_step"]
        check.start = [float(v) for v in state["start"]]
        check.recent = [float(v) for v in state["recent"]]
        check.decided = bool(state["decided"])
        return check


# The lr had fallen this many decades (x3) below its peak when the loss stopped improving: its fall stopped the loss
LR_FELL = 0.5


class PlateauCheck:
    """Reports when a loss that was improving stops improving while training goes on.

    The level is the median of the last ``window`` values; a *new best* is a level at least
    ``min_gain`` below the best so far. A plateau is reported once no new best has come for
    ``max(patience, share x steps so far)`` steps. The share keeps the converged tail of a
    healthy run quiet (on the real runs of ``bench/bench_training.py`` the longest stretch
    without a new 2 % best was 72 steps, always at the end of a decaying schedule); a run that
    stopped learning a third of the way through is reported. Only a loss that had improved
    (10 % below its first level) can plateau: one that never moved is :class:`StallCheck`'s.
    Re-armed once the level falls 5 x ``min_gain`` below the plateau (learning resumed). A level more
    than half ``min_gain`` under the best when the wait is over is still creeping down, not stopped:
    with the loss alone, a VAE's loss 1.1 % lower 100 steps on paged on 6 of 6 seeds (4 now, 150-290 steps
    later), Adagrad's on wine on 6 of 9 (none now; /work/rev-ag, rev-ad), where the lr cut to ~0 leaves the
    level on its best (every plateau of the bench, rev-ad and rev-ag found at the same step with the loss alone).

    A loss whose best is below ``floor`` (1 %) of its start, two decades down, has learnt what it
    can: cross-entropy and squared error end at 0, so under 1 % of the start is left to gain, and
    the noise of a loss near 0 is as large as the loss (one hard example in a batch), so its 2 %
    gains come only by chance. On the bench's SGD + momentum MLP on digits (a x0.1 step decay,
    no lr sent) the loss stood at 0.2 % of its start when the plateau paged at seeds 0-2; the
    bench's real plateau (the lr cut to ~0 at step 100) stopped at 7 % of its start. A loss
    that is negative at its start (a log-likelihood) has no such floor and is judged as before.

    Given the run's learning rate (``lr``, one per value; NaN where not logged), a plateau is
    reported only where the lr is ``lr_decades`` (3, RunChecks' ``drop``) or more below the
    highest it has been: the weights were all but stopped (the bench's lr x1e-6). A loss that
    stops improving at an lr that still moves the weights has reached the floor its data and
    noise allow, which the loss alone cannot tell from a stop: on healthy PyTorch runs outside
    the bench's recipes, a linear regression on diabetes by SGD at a constant lr (its floor 0.48
    reached by step ~100 of 330), SGD + Nesterov with a x0.3 step decay on digits (its loss
    still drifting down inside the ~15 % noise of its level) and a OneCycle anneal paged at an
    lr 1x to 6x below their peak. Nor does a plateau that began at such an lr become one when
    a schedule later takes the lr 3 decades down (a cosine's last steps): at the loss's last
    best the lr must already have fallen :data:`LR_FELL` (half a decade) below its peak, or
    stopped the weights by ``window`` steps after it (a median lags the turn). A regression MLP
    on diabetes (AdamW, warm-up and cosine) at its noise floor from step ~80 (the lr 0.76 of its
    peak) paged at step 216 of 220, when its lr reached 9e-7 (2 of 12 seeds); the bench's cut
    x1e-6 at step 100 stops a loss still improving, a loss already at its floor there (a
    linear regression by SGD) is reported too, as before, and so is an lr decaying x0.9 a step
    from step 100 (the bench's MLP: its loss stopped at step 119, the lr 0.87 decades down).
    """

    def __init__(
        self,
        *,
        window: int = 32,
        min_gain: float = 0.02,
        patience: int = 100,
        share: float = 0.25,
        lr_decades: float = 3.0,
        floor: float = 0.01,
    ) -> None:
        if window < 2 or not 0 < min_gain < 1 or patience < 1 or not 0 <= share < 1 or lr_decades <= 0:
            raise ValueError("need window >= 2, 0 < min_gain < 1, patience >= 1, 0 <= share < 1 and lr_decades > 0")
        if not 0 <= floor < 1:
            raise ValueError("need 0 <= floor < 1")
        self.params: dict[str, Any] = {
            "window": window,
            "min_gain": min_gain,
            "patience": patience,
            "share": share,
            "lr_decades": lr_decades,
            "floor": floor,
        }
        self.recent: list[float] = []
        self.first_step: int | None = None
        self.start = math.inf  # the first full window's level
        self.best = math.inf
        self.best_step = 0
        self.peak_lr = math.nan  # the highest learning rate seen; NaN while none was logged
        self.last_lr = math.nan  # the last one logged: it holds until the next (an lr logged every N steps)
        self.reported = False
        # the step since which the lr has stopped the weights: -inf while no lr is known, None while it moves them
        self.stopped_from: float | None = -math.inf
        self.best_fell = False  # the lr stood LR_FELL decades or more below its peak at the last best

    def update(self, steps: Any, values: Any, lr: Any = None) -> tuple[int, int, float, float] | None:
        """``(step, best step, best level, level)`` the first time a plateau holds, else None.

        ``lr``: the run's learning rate at each of ``steps`` (NaN where not logged), or None."""
        p = self.params
        vals = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(vals)
        kept_steps = np.asarray(steps).ravel()[finite].astype(np.int64)
        drops = self._lr_drops(vals.size, lr)[finite]
        if not kept_steps.size:
            return None
        first = self.first_step = int(kept_steps[0]) if self.first_step is None else self.first_step
        # every window's level at once (one median per step was the cost of the whole check)
        window = np.concatenate([np.asarray(self.recent, dtype=np.float64), vals[finite]])
        self.recent = window[-p["window"] :].tolist()
        if window.size < p["window"]:
            return None
        levels = rolling_median(window, p["window"])
        first_full = kept_steps.size - levels.size  # values before it had no full window yet
        at = slice(max(0, first_full), None)
        return self._walk(kept_steps[at], levels[max(0, -first_full) :], drops[at], first)

    def _lr_drops(self, n: int, lr: Any) -> np.ndarray:
        """Decades the logged lr (carried forward to the steps it was not logged at) stands below its peak
        so far; NaN where no lr is known yet."""
        logged = np.full(n, math.nan) if lr is None else np.asarray(lr, dtype=np.float64).ravel()
        rates = np.concatenate([[self.last_lr], logged])
        last = np.maximum.accumulate(np.where(np.isfinite(rates), np.arange(n + 1), 0))
        rates = rates[last][1:]
        peaks = np.fmax.accumulate(np.concatenate([[self.peak_lr], rates]))[1:]  # fmax skips NaN
        if n:
            self.peak_lr, self.last_lr = float(peaks[-1]), float(rates[-1])
        with np.errstate(invalid="ignore", divide="ignore"):  # an lr of 0: inf decades
            return np.log10(peaks / rates)

    def _walk(
        self, steps: np.ndarray, levels: np.ndarray, drops: np.ndarray, first: int
    ) -> tuple[int, int, float, float] | None:
        """The levels in order, jumping from one event (a new best, a plateau) to the next: between
        two new bests the thresholds are fixed, so each next event is one vectorized search.
        ``drops``: decades the lr stands below its peak at each level (NaN: not known). A plateau may be
        reported where it is not known or ``lr_decades`` down (the weights stopped)."""
        p, out, i = self.params, None, 0
        with np.errstate(invalid="ignore"):  # NaN compares False
            stopped = ~(drops < p["lr_decades"])
        since = self._stopped_since(steps, stopped)
        if levels.size and not math.isfinite(self.start):
            self.start = float(levels[0])
        while i < levels.size:
            if not math.isfinite(self.best):
                self.best, self.best_step, self.reported = float(levels[i]), int(steps[i]), False
                self.best_fell = bool(drops[i] >= LR_FELL)
                i += 1
                continue
            gain = p["min_gain"] * (5 if self.reported else 1)  # re-armed by real progress, not by noise
            better = np.flatnonzero(levels[i:] < self.best - gain * abs(self.best))
            end = i + int(better[0]) if better.size else levels.size  # the next new best
            improved = self.best < self.start - 0.1 * abs(self.start)  # else it never learned: a stall
            learnt = 0 <= self.best < p["floor"] * self.start  # two decades down: converged
            if improved and not learnt and not self.reported:
                wait = np.maximum(p["patience"], p["share"] * (steps[i:end] - first))
                # the lr's fall stopped the loss: it was falling at the last best, or stopped the weights
                # by then (a window's grace: a median lags); one that fell later found the loss at its floor
                cut = (since[i:end] <= self.best_step + p["window"]) | self.best_fell
                # a level below the best by half the gain is still creeping down (a VAE's loss 1.1 % lower 100
                # steps on, paged as "not improved", /work/rev-ag): a converging run, not a stop
                creeping = levels[i:end] < self.best - 0.5 * gain * abs(self.best)
                due = np.flatnonzero((steps[i:end] - self.best_step >= wait) & stopped[i:end] & cut & ~creeping)
                if due.size:
                    k = i + int(due[0])
                    self.reported = True
                    out = out or (int(steps[k]), self.best_step, self.best, float(levels[k]))
                    i = k + 1
                    continue
            if end < levels.size:
                self.best, self.best_step, self.reported = float(levels[end]), int(steps[end]), False
                self.best_fell = bool(drops[end] >= LR_FELL)
            i = end + 1
        return out

    def _stopped_since(self, steps: np.ndarray, stopped: np.ndarray) -> np.ndarray:
        """At each level, the step since which the lr has stopped the weights without a break (NaN where it
        moves them); a stretch that goes on from the chunk before keeps its start."""
        if not steps.size:
            return steps.astype(np.float64)
        idx = np.arange(steps.size)
        first = np.maximum.accumulate(np.where(stopped, -1, idx)) + 1  # where each stretch of stops began
        carried = float(steps[0]) if self.stopped_from is None else self.stopped_from
        starts = np.where(first == 0, carried, steps[np.minimum(first, steps.size - 1)].astype(np.float64))
        since = np.where(stopped, starts, math.nan)
        self.stopped_from = float(since[-1]) if stopped[-1] else None
        return since

    def to_state(self) -> dict[str, Any]:
        return {
            "params": dict(self.params),
            "recent": list(self.recent),
            "first_step": self.first_step,
            "start": self.start if math.isfinite(self.start) else None,
            "best": self.best if math.isfinite(self.best) else None,
            "best_step": self.best_step,
            "peak_lr": self.peak_lr if math.isfinite(self.peak_lr) else None,
            "last_lr": self.last_lr if math.isfinite(self.last_lr) else None,
            "reported": self.reported,
            "stopped_from": "ever" if self.stopped_from == -math.inf else self.stopped_from,
            "best_fell": self.best_fell,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PlateauCheck:
        check = cls(**state["params"])
        check.recent = [float(v) for v in state["recent"]]
        check.first_step = state["first_step"]
        check.start = math.inf if state["start"] is None else float(state["start"])
        check.best = math.inf if state["best"] is None else float(state["best"])
        check.best_step = int(state["best_step"])
        check.peak_lr = math.nan if state.get("peak_lr") is None else float(state["peak_lr"])
        check.last_lr = math.nan if state.get("last_lr") is None else float(state["last_lr"])
        check.reported = bool(state["reported"])
        since = state.get("stopped_from", "ever")  # absent from states written before: as they were judged
        check.stopped_from = -math.inf if since == "ever" else None if since is None else float(since)
        check.best_fell = bool(state.get("best_fell", False))
        return check


VANISHING_DECADES = 5.0  # per-layer gradient norms this many decades apart are vanishing gradients


def layer_spread(norms: dict[str, Any]) -> tuple[float, str, str] | None:
    """How many decades separate the smallest per-layer gradient norm from the largest.

    ``norms`` maps layer names to arrays of that layer's gradient norms (the
    ``grad_norm/<layer>`` series of one chunk); each layer counts with the median of its
    finite, positive norms. Returns ``(decades, smallest layer, largest layer)``, or None
    with fewer than two such layers. In a 12-layer sigmoid net on digits the first layer's
    gradient was 1e-9 of the last's (nine decades) from the first step; He-initialised ReLU
    nets stay within one or two.
    """
    medians = {}
    for name, values in norms.items():
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v) & (v > 0)]
        if v.size:
            medians[name] = math.log10(float(np.median(v)))
    if len(medians) < 2:
        return None
    lo, hi = min(medians, key=medians.__getitem__), max(medians, key=medians.__getitem__)
    return medians[hi] - medians[lo], lo, hi
