"""Which features drifted? Test choice, multiple-testing control and effect sizes.

:func:`detect_drift` compares a reference and a current window feature by feature;
:class:`DriftMonitor` does the same over a stream (a frozen reference window, a
sliding current window, a test every ``check_every`` points) and keeps its state
in a plain dict.

Each feature may be given as

* a raw sample (1-D array): numeric, or categorical (strings, booleans, or numbers
  with at most ``max_categories_numeric`` distinct values);
* a data-stats summary (a mapping like ``aitrace.FeatureStats``): ``categories``
  (category -> count), or ``histogram_edges`` + ``histogram_counts``, or
  ``quantiles`` (level -> value) with ``count``, or just ``count``/``mean``/``variance``.
  The pipeline publishes these instead of rows.

How the test is chosen (the Evidently / NannyML convention, adapted):

=================  ==========================  ================================
data               test (p-value)              effect size (``effect_name``)
=================  ==========================  ================================
numeric, raw       two-sample KS (batched)     Wasserstein / reference sd
categorical, raw   chi-square homogeneity      Jensen-Shannon distance
histogram summary  KS bound on the CDFs, and   KS distance / std. mean diff.
                   Welch t on the moments      (+ PSI); Simes over the two
category summary   chi-square homogeneity      Jensen-Shannon distance
quantile summary   KS on interpolated CDFs     quantile-Wasserstein / ref IQR*0.7413
moments summary    Welch t on the means        standardized mean difference
=================  ==========================  ================================

A histogram summary's KS test is valid however its edges were chosen: the statistic is
the gap between the two empirical CDFs that the histograms prove (exact at shared edges,
a bound inside bins), never more than the rows' own KS statistic, so its p-value is at
least theirs. :func:`aitrace.summarize` makes small or discrete batches exact and can
reuse a reference's edges. Welch's t joins it only where the difference of the two means
is close to normal if nothing drifted (``mean_difference_skewness`` in
:mod:`aitrace.detect.drift_tests`): a small batch of skewed values against a large
reference makes Welch's p-values too small, and the KS bound then decides alone.

P-values are adjusted across all features of one comparison (Holm by default: the
chance of any false verdict in a comparison stays below ``alpha``; ``fdr_bh``,
``bonferroni`` or ``none``). A feature is ``drifted`` when its
adjusted p-value is below ``alpha`` and, once both windows are large (more than
``large_n`` points, where any difference becomes "significant"), also its effect
size reaches ``min_effect``. PSI is reported for numeric features as well.

Example
-------
>>> import numpy as np
>>> from aitrace.detect import detect_drift
>>> rng = np.random.default_rng(2)
>>> ref = {"age": rng.normal(40, 10, 800), "country": rng.choice(["de", "fr"], 800)}
>>> cur = {"age": rng.normal(48, 10, 800), "country": rng.choice(["de", "fr"], 800)}
>>> [(r.feature, r.test, r.drifted) for r in detect_drift(ref, cur)]
[('age', 'ks', True), ('country', 'chi2', False)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from aitrace.detect.drift_tests import (
    _categorical_test,
    _category_counts,
    _is_categorical,
    _is_summary,
    _numeric_effect,
    _Raw,
    _summary_test,
)
from aitrace.detect.ks import ks_2samp_batched

CORRECTIONS = ("fdr_bh", "holm", "bonferroni", "none")


@dataclass(frozen=True)
class DriftResult:
    """Drift verdict for one feature.

    test: 'ks', 'chi2', 'hist_ks', 'welch_t', 'quantile_ks' or 'none' (not testable).
    statistic, pvalue: the test's; pvalue_adjusted after the multiple-testing correction.
    effect_size, effect_name: how large the change is, comparable across sample sizes.
    psi: population stability index where it applies (else None).
    drifted: the verdict (see the module docstring).
    """

    feature: str
    test: str
    statistic: float
    pvalue: float
    pvalue_adjusted: float
    effect_size: float
    effect_name: str
    drifted: bool
    n_reference: int
    n_current: int
    psi: float | None = None
    message: str = ""
    details: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def adjust_pvalues(pvalues: Any, method: str = "fdr_bh") -> np.ndarray:
    """Multiple-testing adjusted p-values (as ``statsmodels.stats.multitest.multipletests``).

    >>> adjust_pvalues([0.01, 0.02, 0.03, 0.5], "fdr_bh").round(3).tolist()
    [0.04, 0.04, 0.04, 0.5]
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = p.size
    if m == 0 or method == "none":
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="mergesort")
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate(ranked * (m - np.arange(m)))
    elif method == "fdr_bh":
        adj = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"unknown correction {method!r}; expected one of {CORRECTIONS}")
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


# ---------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class DriftConfig:
    """Settings of :func:`detect_drift` / :class:`DriftMonitor` (see the module docstring)."""

    alpha: float = 0.05
    correction: str = "holm"
    large_n: int = 1000
    min_effect_numeric: float = 0.1  # Wasserstein / reference sd
    min_effect_categorical: float = 0.1  # Jensen-Shannon distance
    min_effect_ks: float = 0.1  # KS distance between the summaries' CDFs
    min_effect_smd: float = 0.2  # Cohen's "small" effect
    max_categories_numeric: int = 5
    min_samples: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}, got {self.correction!r}")

    def min_effect(self, effect_name: str) -> float:
        if effect_name == "js_distance":
            return self.min_effect_categorical
        if effect_name == "smd":
            return self.min_effect_smd
        if effect_name == "ks_distance":
            return self.min_effect_ks
        return self.min_effect_numeric


def detect_drift(reference: Mapping[str, Any], current: Mapping[str, Any], **config: Any) -> list[DriftResult]:
    """Compare two windows feature by feature; one :class:`DriftResult` per shared feature.

    ``reference`` and ``current`` map feature names to raw samples or summaries (see
    the module docstring). Features present in only one window are skipped. Settings
    are those of :class:`DriftConfig`.
    """
    cfg = DriftConfig(**config)
    names = [k for k in reference if k in current]
    raws: dict[str, _Raw] = {}
    numeric: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name in names:
        ref, cur = reference[name], current[name]
        if _is_summary(ref) or _is_summary(cur):
            if not (_is_summary(ref) and _is_summary(cur)):
                raise TypeError(f"{name}: compare a summary with a summary, or raw data with raw data")
            raws[name] = _summary_test(name, ref, cur)
            continue
        r = np.asarray(ref).reshape(-1)
        c = np.asarray(cur).reshape(-1)
        if r.dtype.kind not in "fiubOUS" or c.dtype.kind not in "fiubOUS":
            raise TypeError(f"{name}: unsupported dtype {r.dtype} / {c.dtype}")
        categorical = _is_categorical(r, cfg.max_categories_numeric) or c.dtype.kind in "OUSb"
        if categorical:
            raws[name] = _categorical_test(name, _category_counts(r), _category_counts(c), "chi2")
            continue
        r = r.astype(np.float64)
        c = c.astype(np.float64)
        nr, nc = int(np.count_nonzero(~np.isnan(r))), int(np.count_nonzero(~np.isnan(c)))
        if min(nr, nc) < cfg.min_samples:
            raws[name] = _Raw(name, "none", 0.0, 1.0, 0.0, "wasserstein_norm", nr, nc, note="too few samples")
            continue
        numeric.append((name, r, c))
    if numeric:
        stats, pvals = ks_2samp_batched([r for _, r, _ in numeric], [c for _, _, c in numeric])
        for (name, r, c), d, p in zip(numeric, stats, pvals, strict=True):
            effect, psi_value = _numeric_effect(r, c)
            nr, nc = int(np.count_nonzero(~np.isnan(r))), int(np.count_nonzero(~np.isnan(c)))
            raws[name] = _Raw(
                name,
                "ks",
                float(d),
                float(p),
                effect,
                "wasserstein_norm",
                nr,
                nc,
                psi=psi_value,
                details={"ks_distance": float(d)},
            )
    ordered = [raws[n] for n in names]
    adjusted = adjust_pvalues([r.pvalue for r in ordered], cfg.correction)
    return [_verdict(raw, float(adj), cfg) for raw, adj in zip(ordered, adjusted, strict=True)]


def _verdict(raw: _Raw, adjusted: float, cfg: DriftConfig) -> DriftResult:
    significant = raw.test != "none" and adjusted < cfg.alpha
    large = min(raw.n_ref, raw.n_cur) > cfg.large_n
    big_enough = raw.effect_size >= cfg.min_effect(raw.effect_name)
    drifted = bool(significant and (big_enough or not large))
    if raw.test == "none":
        message = f"{raw.feature}: not tested ({raw.note})"
    elif drifted:
        message = f"{raw.feature} drifted: {describe(raw.test, raw.details, raw.statistic, raw.n_ref, raw.n_cur)}"
        message += f", p={adjusted:.3g} adjusted over the features (alpha {cfg.alpha:g})"
    else:
        message = (
            f"{raw.feature}: no drift ({raw.test} adjusted p={adjusted:.3g}, {raw.effect_name}={raw.effect_size:.3g})"
        )
    return DriftResult(
        raw.feature,
        raw.test,
        float(raw.statistic),
        float(raw.pvalue),
        adjusted,
        float(raw.effect_size),
        raw.effect_name,
        drifted,
        raw.n_ref,
        raw.n_cur,
        raw.psi,
        message,
        dict(raw.details),
    )


def describe(test: str, details: Mapping[str, float], statistic: float, n_ref: int, n_cur: int) -> str:
    """What moved, by how much, against what: one phrase for an alert or a report."""
    sizes = f"{n_cur} values against {n_ref} in the reference"
    parts = []
    if test in ("ks", "hist_ks", "quantile_ks"):
        d = details.get("ks_distance", statistic)
        parts.append(f"the share of values below some point differs by {d:.0%} (KS distance, {sizes})")
    elif test in ("chi2", "hist_chi2"):
        parts.append(f"category shares differ (chi-square {statistic:.3g}, {sizes})")
    if "mean_current" in details:
        sd = details.get("sd_reference", 0.0)
        moved = details["mean_current"] - details["mean_reference"]
        rel = f", {moved / sd:+.2f} reference sd" if sd > 0 else ""
        t = details.get("welch_t", 0.0)
        se = f", {abs(t):.1f} standard errors (Welch t)" if math.isfinite(t) else ""
        phrase = f"mean {details['mean_reference']:.4g} -> {details['mean_current']:.4g}{rel}{se}"
        if test == "welch_t":
            parts.insert(0, phrase + f" ({sizes})")
        elif details.get("welch_pvalue", 1.0) < 0.05:
            parts.append(phrase)
    return "; ".join(parts) or f"{test} statistic {statistic:.3g} ({sizes})"


# ---------------------------------------------------------------------- streaming
class DriftMonitor:
    """Streaming drift detection over a frozen reference window and a sliding current window.

    The first ``reference_size`` values of each feature form its reference (or call
    :meth:`set_reference`); later values fill a current window of the last
    ``window`` values. Every ``check_every`` new values (counted over all features
    of a batch: one batch of rows counts its row count) the windows are compared
    with :func:`detect_drift` and the results returned; otherwise ``update`` returns
    an empty list. Numeric and categorical (string/boolean) features both work; the
    state stays JSON-safe.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> mon = DriftMonitor(reference_size=500, window=300, check_every=300)
    >>> _ = mon.update({"x": rng.normal(size=500)})
    >>> mon.update({"x": rng.normal(size=300)})[0].drifted
    False
    >>> mon.update({"x": rng.normal(2.0, 1.0, size=300)})[0].drifted
    True
    """

    STATE_VERSION = 1

    def __init__(
        self, *, reference_size: int = 1000, window: int = 1000, check_every: int = 500, **config: Any
    ) -> None:
        if min(reference_size, window, check_every) < 1:
            raise ValueError("reference_size, window and check_every must be >= 1")
        self.reference_size = int(reference_size)
        self.window = int(window)
        self.check_every = int(check_every)
        self.config = DriftConfig(**config)
        self._config_kwargs = dict(config)
        self.reference: dict[str, np.ndarray] = {}
        self.current: dict[str, np.ndarray] = {}
        self.since_check = 0
        self.last_results: list[DriftResult] = []

    def set_reference(self, features: Mapping[str, Any]) -> None:
        """Replace the reference windows (the last ``reference_size`` values of each feature)."""
        self.reference = {k: _tail(_as_column(k, v), self.reference_size) for k, v in features.items()}
        self.current = {}
        self.since_check = 0

    def update(self, features: Mapping[str, Any]) -> list[DriftResult]:
        """Add a batch (feature -> values); return results when a check is due, else [].

        Numeric values are kept as float64, anything else (strings, booleans) as
        strings and tested as categories.
        """
        batch_len = 0
        for name, values in features.items():
            arr = _as_column(name, values)
            batch_len = max(batch_len, arr.size)
            ref = self.reference.get(name, arr[:0])
            room = self.reference_size - ref.size
            if room > 0:
                self.reference[name] = np.concatenate([ref, arr[:room]])
                arr = arr[room:]
            if arr.size:
                cur = self.current.get(name, arr[:0])
                self.current[name] = _tail(np.concatenate([cur, arr]), self.window)
        if not self.current:
            return []
        self.since_check += batch_len
        if self.since_check < self.check_every:
            return []
        self.since_check = 0
        ready = {k: v for k, v in self.current.items() if v.size >= self.config.min_samples and k in self.reference}
        if not ready:
            return []
        self.last_results = detect_drift({k: self.reference[k] for k in ready}, ready, **self._config_kwargs)
        return self.last_results

    def to_state(self) -> dict[str, Any]:
        """Plain dict of lists (JSON- and pickle-safe); size bounded by reference_size + window per feature."""
        return {
            "version": self.STATE_VERSION,
            "reference_size": self.reference_size,
            "window": self.window,
            "check_every": self.check_every,
            "config": dict(self._config_kwargs),
            "reference": {k: v.tolist() for k, v in self.reference.items()},
            "current": {k: v.tolist() for k, v in self.current.items()},
            "since_check": self.since_check,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DriftMonitor:
        """Restore from :meth:`to_state`; raise ValueError on a malformed state."""
        try:
            if state["version"] != cls.STATE_VERSION:
                raise ValueError(f"unsupported state version {state['version']!r}")
            mon = cls(
                reference_size=state["reference_size"],
                window=state["window"],
                check_every=state["check_every"],
                **state["config"],
            )
            mon.reference = {k: _as_column(k, v) for k, v in state["reference"].items()}
            mon.current = {k: _as_column(k, v) for k, v in state["current"].items()}
            mon.since_check = int(state["since_check"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed drift monitor state: {exc!r}") from exc
        return mon


def _as_column(name: str, values: Any) -> np.ndarray:
    """A 1-D float64 column for numbers, a str column for everything else (JSON-safe either way)."""
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind in "fiu":
        return arr.astype(np.float64)
    if arr.dtype.kind in "bOUS":
        return arr.astype(str)
    raise TypeError(f"{name}: unsupported dtype {arr.dtype}")


def _tail(arr: np.ndarray, n: int) -> np.ndarray:
    return arr[-n:].copy() if arr.size > n else arr
