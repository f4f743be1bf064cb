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
                   Welch t on the moments      (+ PSI); Bonferroni over the two
category summary   chi-square homogeneity      Jensen-Shannon distance
quantile summary   KS on interpolated CDFs     quantile-Wasserstein / ref IQR*0.7413
moments summary    Welch t on the means        standardized mean difference
=================  ==========================  ================================

A histogram summary's KS test is valid however its edges were chosen: the statistic is
the gap between the two empirical CDFs that the histograms prove (exact at shared edges,
a bound inside bins), never more than the rows' own KS statistic, so its p-value is at
least theirs. :func:`aitrace.summarize` makes small or discrete batches exact and can
reuse a reference's edges.

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
from aitrace.detect.chi2 import align_categories, chi2_drift
from aitrace.detect.drift import jensen_shannon_from_counts, psi, psi_from_counts, wasserstein_1d
from aitrace.detect.ks import _asymptotic_pvalues, ks_2samp_batched, ks_pvalue
from aitrace.detect.welch import welch_t

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
    details: dict[str, float] = field(default_factory=dict)


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


def _summary_n(summary: Mapping[str, Any]) -> int:
    """Values a summary describes: its histogram's total, else count less missing."""
    counts = summary.get("histogram_counts") or ()
    if len(counts):
        return round(float(np.sum(np.asarray(counts, dtype=np.float64))))
    count, missing = int(summary.get("count") or 0), int(summary.get("missing") or 0)
    return count - missing if 0 <= missing <= count else count


def _check_histogram(name: str, which: str, edges: np.ndarray, counts: np.ndarray) -> None:
    if edges.size != counts.size + 1 or counts.size == 0 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"{name}: {which} histogram needs len(edges) == len(counts) + 1 and rising edges")
    if not (np.all(np.isfinite(counts)) and np.all(counts >= 0)):
        raise ValueError(f"{name}: {which} histogram counts must be finite and non-negative")


def cdf_bounds(edges: Any, counts: Any, points: Any) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``lo <= F(t-) <= hi`` on the share of values below each point ``t``, from a histogram.

    Bins are ``[e_k, e_k+1)`` (the last one closed), as ``numpy.histogram`` and
    :func:`aitrace.summarize` count them. At an edge the share below is known exactly;
    inside a bin it lies between the cumulative counts of the bin's two ends.

    >>> lo, hi = cdf_bounds([0, 1, 2], [3, 1], [-1, 0, 0.5, 1, 2, 3])
    >>> lo.tolist(), hi.tolist()
    ([0.0, 0.0, 0.0, 0.75, 0.75, 1.0], [0.0, 0.0, 0.75, 0.75, 1.0, 1.0])
    """
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    t = np.asarray(points, dtype=np.float64)
    n = c.sum()
    cum = np.concatenate([[0.0], np.cumsum(c)]) / n  # cum[k] = share below e_k (k < K); cum[K] = 1
    nbins = c.size
    k = np.searchsorted(e, t, side="left")  # e[k-1] < t <= e[k]
    on_edge = (k <= nbins) & (e[np.minimum(k, nbins)] == t)
    lo = np.where(k == 0, 0.0, cum[np.clip(k - 1, 0, nbins)])
    hi = np.where(k > nbins, 1.0, cum[np.clip(k, 0, nbins)])
    exact = on_edge & (k < nbins)
    lo = np.where(exact, cum[np.clip(k, 0, nbins)], lo)
    hi = np.where(exact, cum[np.clip(k, 0, nbins)], hi)
    lo = np.where(k > nbins, 1.0, lo)
    return lo, hi


def ks_from_summaries(
    ref_edges: Any, ref_counts: Any, cur_edges: Any, cur_counts: Any
) -> tuple[float, float, int, int]:
    """A two-sample KS test from two histograms: ``(d, pvalue, n_ref, n_cur)``.

    ``d`` is the largest gap between the two empirical CDFs that the histograms prove:
    at every edge of either, the lower bound of ``|F_ref - F_cur|`` given what each
    histogram says (exact at its own edges, a range inside its bins). So ``d`` never
    exceeds the KS statistic of the rows themselves and the p-value (KS distribution
    for the two sample sizes) is valid, conservative where the edges differ. With the
    same edges (``summarize(..., reference=...)``), or exact summaries of small
    batches, ``d`` equals the row-level statistic at those edges.

    >>> d, p, n1, n2 = ks_from_summaries([0, 1, 2, 3], [50, 50, 0], [0, 1, 2, 3], [0, 50, 50])
    >>> d, n1, n2, p < 1e-10
    (0.5, 100, 100, True)
    """
    re_, rc = np.asarray(ref_edges, dtype=np.float64), np.asarray(ref_counts, dtype=np.float64)
    ce, cc = np.asarray(cur_edges, dtype=np.float64), np.asarray(cur_counts, dtype=np.float64)
    n_ref, n_cur = round(rc.sum()), round(cc.sum())
    if n_ref == 0 or n_cur == 0:
        return 0.0, 1.0, n_ref, n_cur
    points = np.union1d(re_, ce)
    r_lo, r_hi = cdf_bounds(re_, rc, points)
    c_lo, c_hi = cdf_bounds(ce, cc, points)
    gap = np.maximum(np.maximum(r_lo - c_hi, c_lo - r_hi), 0.0)
    d = float(np.max(gap)) if gap.size else 0.0
    return d, ks_pvalue(d, n_ref, n_cur), n_ref, n_cur


def _welch_from_summaries(
    ref: Mapping[str, Any], cur: Mapping[str, Any]
) -> tuple[float, float, float, int, int] | None:
    """Welch's t on the summaries' exact moments: ``(t, p, smd, n_ref, n_cur)``, None if they lack them.

    Summaries carry the population variance (ddof=0, as :func:`aitrace.summarize`
    computes it); it is turned into the sample variance first.
    """
    n1, n2 = _summary_n(ref), _summary_n(cur)
    moments: list[Any] = [ref.get("mean"), cur.get("mean"), ref.get("variance"), cur.get("variance")]
    m1, m2, v1, v2 = moments
    if n1 < 2 or n2 < 2 or None in (m1, m2, v1, v2):
        return None
    if not all(math.isfinite(float(x)) for x in (m1, m2, v1, v2)):
        return None
    s1 = max(float(v1), 0.0) * n1 / (n1 - 1)
    s2 = max(float(v2), 0.0) * n2 / (n2 - 1)
    t, _df, p = welch_t(n2, float(m2), s2, n1, float(m1), s1)
    pooled = math.sqrt((max(float(v1), 0.0) + max(float(v2), 0.0)) / 2.0)
    diff = float(m2) - float(m1)
    smd = abs(diff) / pooled if pooled > 0 else (0.0 if diff == 0 else math.inf)
    return t, p, smd, n1, n2


def _histogram_test(name: str, ref: Mapping[str, Any], cur: Mapping[str, Any]) -> _Raw:
    """KS bound on the two histograms and Welch's t on the moments, Bonferroni over the two."""
    r_edges = np.asarray(ref["histogram_edges"], dtype=np.float64)
    r_counts = np.asarray(ref["histogram_counts"], dtype=np.float64)
    c_edges = np.asarray(cur["histogram_edges"], dtype=np.float64)
    c_counts = np.asarray(cur["histogram_counts"], dtype=np.float64)
    _check_histogram(name, "reference", r_edges, r_counts)
    _check_histogram(name, "current", c_edges, c_counts)
    d, p_ks, n_ref, n_cur = ks_from_summaries(r_edges, r_counts, c_edges, c_counts)
    if n_ref == 0 or n_cur == 0:
        return _Raw(name, "none", 0.0, 1.0, 0.0, "ks_distance", n_ref, n_cur, note="an empty histogram")
    same_edges = r_edges.shape == c_edges.shape and np.allclose(r_edges, c_edges, rtol=1e-12, atol=0.0)
    aligned = c_counts if same_edges else rebin_counts(c_edges, c_counts, r_edges)
    psi_value = psi_from_counts(r_counts, aligned) if aligned.sum() > 0 else None
    welch = _welch_from_summaries(ref, cur)
    details = {"ks_distance": d, "ks_pvalue": p_ks}
    if welch is None:
        return _Raw(name, "hist_ks", d, p_ks, d, "ks_distance", n_ref, n_cur, psi=psi_value, details=details)
    t, p_t, smd, _, _ = welch
    details.update(_moment_details(ref, cur, t, p_t))
    if p_t < p_ks:
        p = min(1.0, 2.0 * p_t)
        return _Raw(name, "welch_t", abs(t), p, smd, "smd", n_ref, n_cur, psi=psi_value, details=details)
    p = min(1.0, 2.0 * p_ks)
    return _Raw(name, "hist_ks", d, p, d, "ks_distance", n_ref, n_cur, psi=psi_value, details=details)


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
    welch = _welch_from_summaries(ref, cur)
    if welch is None:
        n1, n2 = _summary_n(ref), _summary_n(cur)
        return _Raw(name, "none", 0.0, 1.0, 0.0, "smd", n1, n2, note="summary lacks count/mean/variance")
    t, p, smd, n1, n2 = welch
    return _Raw(name, "welch_t", abs(t), p, smd, "smd", n1, n2, details=_moment_details(ref, cur, t, p))


def _moment_details(ref: Mapping[str, Any], cur: Mapping[str, Any], t: float, p: float) -> dict[str, float]:
    return {
        "mean_reference": float(ref["mean"]),
        "mean_current": float(cur["mean"]),
        "sd_reference": math.sqrt(max(float(ref["variance"]), 0.0)),
        "welch_t": float(t),
        "welch_pvalue": float(p),
    }


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
