"""Series kinds: what each kind of metric means to :class:`~aitrace.detect.monitor.SeriesMonitor`.

``KINDS`` names them; ``PROFILES`` gives each its :class:`KindProfile`: whether to
score log(value) (multiplicative noise such as grad norms, latencies and rates),
which generic reasons are normal for it (a loss dip is good news, a throughput dip
is not), its hard limits (a learning rate <= 0, an accuracy above 1) and whether the
gaps between steps are scored too. The kinds that the monitor calibrates against the series'
own history (all but loss, grad_norm and lr) page at the worker's threshold, 0.9.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("loss", "grad_norm", "lr", "accuracy", "latency", "error_rate", "confidence", "throughput", "generic")


@dataclass(frozen=True)
class KindProfile:
    """What a series kind means to the monitor (see :data:`PROFILES`)."""

    log: bool = False  # score log(value): multiplicative noise becomes additive
    ignore: frozenset[str] = frozenset()  # generic reasons that are normal for this kind
    lower: float | None = None  # values below are a rule violation
    upper: float | None = None  # values above are a rule violation
    threshold: float = 0.5
    window: int = 64
    gap_monitor: bool = False  # also score the gaps between steps (ingestion delays)
    tiny: float | None = None  # positive values below are "far off" (a learning rate of 1e-12)


PROFILES: dict[str, KindProfile] = {
    # Dips are good news for a loss; rises and non-finite values are the failures.
    "loss": KindProfile(ignore=frozenset({"dip", "level_down"})),
    # Gradient norms are multiplicative: explosions and collapses are orders of magnitude. A norm falls as its loss
    # does (a full batch of digits under Adam: 0.55 to 0.07 in 31 steps, paged as a level shift): only a fall by
    # decades is news (``vanishing``: SeriesMonitor's growth rule, or a point 100x below its recent level). Nor is
    # its spread: a norm clipped by ``clip_grad_norm_`` (as the optimizer sees it) sits at the clip on most steps,
    # its robust spread near 0, and its ordinary dips below the clip paged "noisier than its recent history" on 6
    # of 9 healthy GRU runs (/work/rev-ad); an explosion is a rise, and rises are still paged.
    "grad_norm": KindProfile(log=True, ignore=frozenset({"dip", "level_down", "variance_change"}), lower=0.0),
    # Schedules step down by 10x routinely and hold constant for long stretches.
    # Sane learning rates for SGD/Adam-family optimizers lie within [1e-8, 10].
    "lr": KindProfile(
        log=True, ignore=frozenset({"flat", "dip", "level_down", "variance_change"}), lower=0.0, upper=10.0, tiny=1e-8
    ),
    "accuracy": KindProfile(threshold=0.9, ignore=frozenset({"spike", "level_up"}), lower=0.0, upper=1.0),
    "confidence": KindProfile(threshold=0.9, ignore=frozenset({"spike", "level_up"}), lower=0.0, upper=1.0),
    "latency": KindProfile(threshold=0.9, log=True, ignore=frozenset({"dip", "level_down", "flat"}), lower=0.0),
    # Mostly zero with bursts: repeats (zero) are normal.
    "error_rate": KindProfile(threshold=0.9, ignore=frozenset({"dip", "level_down", "flat"}), lower=0.0),
    "throughput": KindProfile(
        threshold=0.9, log=True, ignore=frozenset({"spike", "level_up"}), lower=0.0, gap_monitor=True
    ),
    "generic": KindProfile(threshold=0.9),
}
