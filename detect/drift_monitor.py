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
histogram summary  chi-square on bin counts    Jensen-Shannon distance (+ PSI)
category summary   chi-square homogeneity      Jensen-Shannon distance
quantile summary   KS on interpolated CDFs     quantile-Wasserstein / ref IQR*0.7413
moments summary    Welch z-test on the means   standardized mean difference
=================  ==========================  ================================

P-values are adjusted across all features of one comparison (Benjamini-Hochberg by
default; ``holm``, ``bonferroni`` or ``none``). A feature is ``drifted`` when its
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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from aitrace.detect.drift import (
    _asymptotic_pvalues,
    align_categories,
    chi2_drift,
    jensen_shannon_from_counts,
    ks_2samp_batched,
    psi,
    psi_from_counts,
    wasserstein_1d,
)

CORRECTIONS = ("fdr_bh", "holm", "bonferroni", "none")


@dataclass(frozen=True)
class DriftResult:
    """Drift verdict for one feature.

    test: 'ks', 'chi2', 'hist_chi2', 'quantile_ks', 'mean_z' or 'none' (not testable).
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


# ---------------------------------------------------------------------- per-feature tests
@dataclass
class _Raw:
    feature: str
    test: str
    statistic: float
    pvalue: float
    effect_size: float
    effect_name: str
    n_ref: int
    n_cur: int
    psi: float | None = None
    note: str = ""


def _is_summary(x: Any) -> bool:
    return isinstance(x, Mapping)


def _is_categorical(arr: np.ndarray, max_numeric: int) -> bool:
    if arr.dtype.kind in "OUSb":
        return True
    finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
    return np.unique(finite).size <= max_numeric


def _category_counts(arr: np.ndarray) -> dict[Any, float]:
    if arr.dtype.kind == "f":
        arr = arr[~np.isnan(arr)]
    keys, counts = np.unique(arr.astype(str) if arr.dtype.kind == "O" else arr, return_counts=True)
    return {k.item() if hasattr(k, "item") else k: float(c) for k, c in zip(keys, counts, strict=True)}


def _categorical_test(name: str, ref: Mapping[Any, float], cur: Mapping[Any, float], test: str) -> _Raw:
    _keys, r, c = align_categories(dict(ref), dict(cur))
    n_ref, n_cur = int(r.sum()), int(c.sum())
    if n_ref == 0 or n_cur == 0:
        return _Raw(name, "none", 0.0, 1.0, 0.0, "js_distance", n_ref, n_cur, note="an empty window")
    stat, p, _ = chi2_drift(r, c)
    return _Raw(name, test, stat, p, jensen_shannon_from_counts(r, c), "js_distance", n_ref, n_cur)


def _numeric_effect(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float | None]:
    rf = ref[np.isfinite(ref)]
    cf = cur[np.isfinite(cur)]
    if rf.size == 0 or cf.size == 0:
        return 0.0, None
    w = wasserstein_1d(rf, cf)
    big = float(np.max(np.abs(rf)))
    sd = float(np.std(rf / big)) * big if big > 0 else 0.0  # scaled: no overflow near 1e308
    if sd == 0.0:
        effect = 0.0 if w == 0.0 else math.inf  # a constant reference: any movement is total
    elif math.isinf(sd):
        effect = 0.0 if math.isinf(w) else w / sd
    else:
        effect = w / sd
    return effect, (psi(rf, cf) if rf.size >= 2 else None)


def _histogram_test(name: str, ref: Mapping[str, Any], cur: Mapping[str, Any]) -> _Raw:
    r_edges = np.asarray(ref["histogram_edges"], dtype=np.float64)
    r_counts = np.asarray(ref["histogram_counts"], dtype=np.float64)
    c_edges = np.asarray(cur["histogram_edges"], dtype=np.float64)
    c_counts = np.asarray(cur["histogram_counts"], dtype=np.float64)
    for edges, counts, which in ((r_edges, r_counts, "reference"), (c_edges, c_counts, "current")):
        if edges.size != counts.size + 1 or counts.size == 0 or np.any(np.diff(edges) <= 0):
            raise ValueError(f"{name}: {which} histogram needs len(edges) == len(counts) + 1 and rising edges")
    if r_edges.shape != c_edges.shape or not np.allclose(r_edges, c_edges, rtol=1e-12, atol=0.0):
        c_counts = rebin_counts(c_edges, c_counts, r_edges)
    n_ref, n_cur = round(r_counts.sum()), round(c_counts.sum())
    if n_ref == 0 or n_cur == 0:
        return _Raw(name, "none", 0.0, 1.0, 0.0, "js_distance", n_ref, n_cur, note="an empty histogram")
    stat, p, _ = chi2_drift(r_counts, c_counts)
    js = jensen_shannon_from_counts(r_counts, c_counts)
    return _Raw(name, "hist_chi2", stat, p, js, "js_distance", n_ref, n_cur, psi=psi_from_counts(r_counts, c_counts))


def rebin_counts(edges: Any, counts: Any, new_edges: Any) -> np.ndarray:
    """Counts of one histogram re-binned onto other edges, assuming uniform mass within a bin.

    Mass outside ``new_edges`` is added to the first or last new bin.

    >>> rebin_counts([0, 2, 4], [10, 30], [0, 1, 4]).tolist()
    [5.0, 35.0]
    """
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    ne = np.asarray(new_edges, dtype=np.float64)
    cdf = np.concatenate([[0.0], np.cumsum(c)])
    inner = np.interp(ne, e, cdf)  # piecewise-linear CDF == uniform within each bin
    out = np.diff(inner)
    out[0] += inner[0]
    out[-1] += cdf[-1] - inner[-1]
    return out


def _quantile_test(name: str, ref: Mapping[str, Any], cur: Mapping[str, Any]) -> _Raw:
    rq = {float(k): float(v) for k, v in ref["quantiles"].items()}
    cq = {float(k): float(v) for k, v in cur["quantiles"].items()}
    levels = sorted(set(rq) & set(cq))
    n_ref, n_cur = int(ref.get("count") or 0), int(cur.get("count") or 0)
    if len(levels) < 3 or n_ref == 0 or n_cur == 0:
        return _Raw(name, "none", 0.0, 1.0, 0.0, "quantile_wasserstein", n_ref, n_cur, note="too few shared quantiles")
    lv = np.array(levels)
    r = np.maximum.accumulate(np.array([rq[k] for k in levels]))
    c = np.maximum.accumulate(np.array([cq[k] for k in levels]))
    # KS distance between the two piecewise-linear CDFs, evaluated at every knot of either
    knots = np.union1d(r, c)
    d = float(np.max(np.abs(np.interp(knots, r, lv) - np.interp(knots, c, lv))))
    en = n_ref * n_cur / (n_ref + n_cur)
    p = float(_asymptotic_pvalues(np.array([d]), np.array([en]))[0])
    # mean absolute quantile difference approximates W1 between the distributions
    w = float(np.trapezoid(np.abs(r - c), lv)) / max(lv[-1] - lv[0], 1e-12)
    iqr_sd = _iqr_sd(rq)
    effect = w / iqr_sd if iqr_sd > 0 else (0.0 if w == 0 else math.inf)
    return _Raw(name, "quantile_ks", d, p, effect, "quantile_wasserstein", n_ref, n_cur)


def _iqr_sd(q: Mapping[float, float]) -> float:
    if 0.25 in q and 0.75 in q:
        return (q[0.75] - q[0.25]) / 1.349  # IQR of a normal is 1.349 sd
    vals = sorted(q.values())
    return (vals[-1] - vals[0]) / 4.0 if len(vals) > 1 else 0.0


def _moments_test(name: str, ref: Mapping[str, Any], cur: Mapping[str, Any]) -> _Raw:
    n1, n2 = int(ref.get("count") or 0), int(cur.get("count") or 0)
    m1, m2 = ref.get("mean"), cur.get("mean")
    v1, v2 = ref.get("variance"), cur.get("variance")
    if n1 < 2 or n2 < 2 or None in (m1, m2, v1, v2):
        return _Raw(name, "none", 0.0, 1.0, 0.0, "smd", n1, n2, note="summary lacks count/mean/variance")
    se = math.sqrt(max(v1, 0.0) / n1 + max(v2, 0.0) / n2)
    diff = float(m2) - float(m1)
    z = (0.0 if diff == 0.0 else math.inf) if se == 0.0 else diff / se
    p = math.erfc(abs(z) / math.sqrt(2.0))
    pooled = math.sqrt((max(v1, 0.0) + max(v2, 0.0)) / 2.0)
    smd = abs(diff) / pooled if pooled > 0 else (0.0 if diff == 0 else math.inf)
    return _Raw(name, "mean_z", abs(z), p, smd, "smd", n1, n2)


def _summary_test(name: str, ref: Mapping[str, Any], cur: Mapping[str, Any]) -> _Raw:
    if ref.get("categories") and cur.get("categories"):
        return _categorical_test(name, ref["categories"], cur["categories"], "chi2")
    if len(ref.get("histogram_counts") or ()) and len(cur.get("histogram_counts") or ()):
        return _histogram_test(name, ref, cur)
    if ref.get("quantiles") and cur.get("quantiles"):
        return _quantile_test(name, ref, cur)
    return _moments_test(name, ref, cur)


# ---------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class DriftConfig:
    """Settings of :func:`detect_drift` / :class:`DriftMonitor` (see the module docstring)."""

    alpha: float = 0.05
    correction: str = "fdr_bh"
    large_n: int = 1000
    min_effect_numeric: float = 0.1  # Wasserstein / reference sd
    min_effect_categorical: float = 0.1  # Jensen-Shannon distance
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
            raws[name] = _Raw(name, "ks", float(d), float(p), effect, "wasserstein_norm", nr, nc, psi=psi_value)
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
        message = (
            f"{raw.feature} drifted: {raw.test} p={adjusted:.3g} (adjusted), {raw.effect_name}={raw.effect_size:.3g}"
        )
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
    )


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
