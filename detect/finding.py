"""The one record every detection rule returns: :class:`Finding`.

A monitor (:class:`~aitrace.detect.monitor.SeriesMonitor`,
:class:`~aitrace.detect.series.TrainingSeries`, the service monitors of
:mod:`aitrace.detect.service`) returns a list of findings per batch; the processors turn the
worst of a batch into an incident (:mod:`aitrace.processors.incidents`), ``aitrace backtest``
prints them. The first nine fields say what was found on which point; the rest carry what
an alert shows beside it (when, against what statistic, with which evidence).

Example
-------
>>> from aitrace.detect.finding import Finding
>>> f = Finding(7, 7.0, 31.0, 0.97, "spike", "loss 31 against a recent level of 2", 0.9, "loss")
>>> f.severity, f.category, f.has_step
('warning', 'anomaly', True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One flagged point (or one failed check) of a series.

    index: position of the point in the series as the monitor has seen it (0-based).
    step: the caller's step or timestamp for the point (NaN: the check has no step, e.g. a
        drift window of a model in service).
    value: the raw value (or the check's statistic).
    score: anomaly score in [0, 1] (1.0 for rule violations such as NaN or lr <= 0; NaN when
        the check has no score, e.g. a drift test).
    reason: short machine-readable cause: spike, dip, level_shift, variance_change,
        flat, nan, inf, exploding, vanishing, diverging, overfitting, underfitting, lr_out_of_range, lr_jump,
        out_of_range, latency_spike, error_burst, throughput_drop, ingestion_delay, ks, psi...
        (an alert's ``detector``).
    message: one sentence for a person (an alert's ``title``).
    threshold: the score (or statistic) threshold that was crossed.
    kind: the monitor's series kind (loss, latency, ...).
    severity: 'warning' or 'critical'; 'info' for advice about a run (underfitting).
    category: what kind of alert it makes: anomaly, drift, error_rate, data_quality, training.
    time_us: event time of the point, in microseconds since the epoch (None: unknown).
    statistic, pvalue: the test's statistic and p-value, where there is a test.
    evidence: the values the finding rests on (the last points, the statistics).
    details: more words and figures for a person, as strings.
    """

    index: int
    step: float
    value: float
    score: float
    reason: str
    message: str
    threshold: float
    kind: str
    severity: str = "warning"
    category: str = "anomaly"
    time_us: int | None = None
    statistic: float | None = None
    pvalue: float | None = None
    evidence: tuple[float, ...] = ()
    details: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def has_step(self) -> bool:
        """Whether the finding is at a step (a training step) rather than only at a time."""
        return math.isfinite(self.step)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-safe except a NaN/Inf value, which is kept as a float)."""
        return {**asdict(self), "evidence": list(self.evidence)}
