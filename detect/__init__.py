"""``aitrace.detect``: Numba-compiled anomaly and drift detectors with plain-array entry points.

The same functions run offline (``aitrace backtest`` on a CSV) and inside the
processors (one call per batch, state in a Faust table).

Anomaly scores (``aitrace.detect.anomaly``)
    ``anomaly_scores(values, *, window=64, **params) -> float64 array in [0, 1]``
        causal robust score per point (spikes, dips, level shifts, variance
        increases, flat lines; NaN/Inf score 1.0).
    ``anomaly_details(values, **params) -> (scores, codes, z)``; ``CODE_NAMES`` (the reason
        codes, in ``aitrace.detect.anomaly_kernel`` with the kernel that writes them).
    ``AnomalyDetector(**params)``: chunked form; ``.score(chunk)``, ``.to_state()``,
        ``AnomalyDetector.from_state(d)``; chunked scores equal one-shot scores.
    ``AnomalyParams``: the parameters and their defaults.

Series monitors for the processors (``aitrace.detect.monitor``; kinds in ``.series_kinds``,
``overfitting`` in ``.overfit``)
    ``SeriesMonitor(kind, *, threshold=None, skip_seen=True, **params)`` with kind in
        ``KINDS`` = loss, grad_norm, lr, accuracy, latency, error_rate, confidence,
        throughput, generic; ``.update(steps, values) -> list[Finding]``,
        ``.to_state()`` / ``SeriesMonitor.from_state(d)``.
    ``Finding(index, step, value, score, reason, message, threshold, kind, severity, category,
        time_us, statistic, pvalue, evidence, details)`` (``aitrace.detect.finding``): the one
        record every rule returns; the processors turn a batch's worst into an incident.
    ``overfitting(train_loss, val_loss, *, window=50, alpha=0.01) -> OverfitResult``.

Sustained level changes (``aitrace.detect.level``)
    ``LevelShiftDetector(recent=32, baseline=256, min_ratio=1.5, min_z=5, direction='both')``:
        ``.update(values) -> list[LevelShift]``, a positive series' median moved by a
        factor and beyond chance (rank test), reported once; ``.to_state()`` / ``.from_state()``.

Training runs, as the worker judges them (``aitrace.detect.series``, ``aitrace.detect.training``)
    ``metric_role(name) -> 'schedule' | 'loss' | 'grad_norm' | 'score' | 'other'``;
    ``pace_direction(name) -> 1 | -1 | 0``: a run's step time (+1) or throughput (-1), whose
        only findings are sustained slowdowns and NaN (``PaceShiftMonitor``).
    ``TrainingSeries(metric, split='train', threshold=0.9)``: ``.update(steps, values) -> list[Finding]``
        (SeriesMonitor for losses and gradient norms, stall and plateau checks, schedules
        never); ``aitrace backtest --metric NAME`` runs it over a CSV.

A model in service, as the worker judges it (``aitrace.detect.service``, ``aitrace.detect.cycle``)
    ``ServiceSeries(metric, threshold=0.9)``: latency, confidence, any numeric series;
        calibrated anomaly scores, judged against the series' own daily or weekly cycle
        (``CycleModel``) once it has one; latency level shifts.
    ``RateSeries(what, window=50, min_events=5)``: error / wrong-prediction rate windows.
    ``DriftWindows(feature, window=200, alpha=0.001)``: input drift, window against reference.
    Each ``.update(times_us, values) -> list[Finding]``, ``.to_state()`` / ``.from_state()``;
    ``aitrace backtest --service KIND`` runs them over a CSV.

Drift kernels (``aitrace.detect.drift``; KS in ``.ks``, chi-square in ``.chi2``, Welch's t in ``.welch``)
    ``ks_2samp(a, b, *, method='auto') -> (statistic, pvalue)`` (= scipy.stats.ks_2samp)
    ``ks_2samp_batched(reference, current) -> (statistics, pvalues)`` for many features
    ``psi(reference, current, *, bins=10)``, ``psi_from_counts(ref_counts, cur_counts)``
    ``jensen_shannon(reference, current, *, bins=10)``, ``jensen_shannon_from_counts(p, q)``
    ``wasserstein_1d(u, v)`` (= scipy.stats.wasserstein_distance)
    ``chi2_drift(ref_counts, cur_counts) -> (statistic, pvalue, dof)`` (= scipy chi2_contingency)
    ``chi2_sf(statistic, dof)`` (= scipy.stats.chi2.sf)
    ``ks_pvalue(d, n1, n2)`` (the KS distribution ks_2samp uses), ``t_pvalue(t, df)``,
    ``welch_t(n1, mean1, var1, n2, mean2, var2) -> (t, df, p)`` (= scipy ttest_ind_from_stats)

Batched drift statistics, one row per feature (``aitrace.detect.batched``)
    ``wasserstein_1d_batched(reference, current)``, ``psi_batched(reference, current, *, bins=10)``,
    ``jensen_shannon_batched(reference, current, *, bins=10)``,
    ``chi2_drift_batched(ref_counts, cur_counts) -> (statistics, pvalues, dofs)``
    (``ks_2samp_batched`` above); each row equals the per-feature function.

Drift verdicts (``aitrace.detect.drift_monitor``; the per-feature tests in ``.drift_tests``)
    ``detect_drift(reference, current, **config) -> list[DriftResult]``: per feature,
        raw arrays or data-stats summaries (histogram, quantiles, categories, moments);
        test chosen by type and size, p-values adjusted (Holm by default: family-wise
        error over the features of one comparison), effect sizes, ``drifted`` verdict.
        Summaries are tested validly: ``ks_from_summaries`` bounds the KS distance from
        two histograms (``cdf_bounds``), Welch's t works on the exact moments.
    ``DriftMonitor(reference_size=1000, window=1000, check_every=500, **config)``:
        streaming form with ``.update(features)``, ``.to_state()`` / ``.from_state()``.
    ``DriftResult``, ``DriftConfig``, ``adjust_pvalues(pvalues, method)``, ``rebin_counts``,
    ``describe(test, details, statistic, n_ref, n_cur)`` (the words of a verdict).

Compiled kernels are cached on disk (``cache=True``); ``CACHE_DIR`` is the directory
chosen, a folder per version of the sources (None: Numba's own choice); see
``aitrace.detect._cache`` for the rules when the package directory is read-only.
"""

from aitrace.detect import _cache  # first: Numba's cache directory must be set before any kernel
from aitrace.detect.anomaly import AnomalyDetector, AnomalyParams, anomaly_details, anomaly_scores
from aitrace.detect.anomaly_kernel import CODE_NAMES
from aitrace.detect.batched import (
    chi2_drift_batched,
    jensen_shannon_batched,
    psi_batched,
    wasserstein_1d_batched,
)
from aitrace.detect.chi2 import chi2_drift, chi2_sf
from aitrace.detect.cycle import CycleModel
from aitrace.detect.drift import jensen_shannon, jensen_shannon_from_counts, psi, psi_from_counts, wasserstein_1d
from aitrace.detect.drift_monitor import (
    DriftConfig,
    DriftMonitor,
    DriftResult,
    adjust_pvalues,
    describe,
    detect_drift,
)
from aitrace.detect.drift_tests import cdf_bounds, ks_from_summaries, rebin_counts
from aitrace.detect.finding import Finding
from aitrace.detect.ks import ks_2samp, ks_2samp_batched, ks_pvalue
from aitrace.detect.level import LevelShift, LevelShiftDetector
from aitrace.detect.monitor import SeriesMonitor
from aitrace.detect.overfit import OverfitResult, overfitting
from aitrace.detect.series import TrainingSeries
from aitrace.detect.series_kinds import KINDS
from aitrace.detect.service import DriftWindows, RateSeries, ServiceSeries
from aitrace.detect.training import metric_role, pace_direction
from aitrace.detect.welch import t_pvalue, welch_t

CACHE_DIR = _cache.CACHE_DIR

__all__ = [
    "CACHE_DIR",
    "CODE_NAMES",
    "KINDS",
    "AnomalyDetector",
    "AnomalyParams",
    "CycleModel",
    "DriftConfig",
    "DriftMonitor",
    "DriftResult",
    "DriftWindows",
    "Finding",
    "LevelShift",
    "LevelShiftDetector",
    "OverfitResult",
    "RateSeries",
    "SeriesMonitor",
    "ServiceSeries",
    "TrainingSeries",
    "adjust_pvalues",
    "anomaly_details",
    "anomaly_scores",
    "cdf_bounds",
    "chi2_drift",
    "chi2_drift_batched",
    "chi2_sf",
    "describe",
    "detect_drift",
    "jensen_shannon",
    "jensen_shannon_batched",
    "jensen_shannon_from_counts",
    "ks_2samp",
    "ks_2samp_batched",
    "ks_from_summaries",
    "ks_pvalue",
    "metric_role",
    "overfitting",
    "pace_direction",
    "psi",
    "psi_batched",
    "psi_from_counts",
    "rebin_counts",
    "t_pvalue",
    "wasserstein_1d",
    "wasserstein_1d_batched",
    "welch_t",
]
