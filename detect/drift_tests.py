"""The per-feature drift tests: which test a feature gets and its statistic, p-value and effect size.

Raw samples: two-sample KS with the Wasserstein distance over the reference sd (and
PSI) for numbers, chi-square with the Jensen-Shannon distance for categories. Data-stats
summaries: chi-square on category counts, a KS bound from two histograms
(:func:`cdf_bounds`, :func:`ks_from_summaries`) with Welch's t on the exact moments where
the means are close to normal (:func:`mean_difference_skewness`; :func:`simes_pair` joins the two),
KS on interpolated quantile CDFs, or Welch's t on the moments alone. Each test returns
an unadjusted ``_Raw`` result; :func:`aitrace.detect.drift_monitor.detect_drift`
adjusts the p-values over the features and gives the verdicts (the table of which
test applies, and why the summary tests are valid, is in that module's docstring).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aitrace.detect.chi2 import align_categories, chi2_drift
from aitrace.detect.drift import jensen_shannon_from_counts, psi, psi_from_counts, wasserstein_1d
from aitrace.detect.ks import _asymptotic_pvalues, ks_pvalue
from aitrace.detect.welch import welch_t

# Above this skewness of the difference of means (mean_difference_skewness), Welch's p-value
# is left out and the KS bound decides alone. Welch's rejection rate under no drift over the
# nominal level, simulated on gamma values (reference 100-1000 rows, batch 10-100), at 0.05 and
# at 0.002 (Holm over ~25 features tests the smallest p-value there): 0.04-0.06 -> 1.01-1.07 and
# 1.06-1.3; 0.12 -> 1.06 and 1.6-1.8; 0.24 -> 1.2 and 3.5; 0.46 -> 1.6 and 7. On macrodata's
# unemployment rate (skewness ~0.7) a 20-row batch against 101 rows (0.1) gave Welch p ~0.001 twice in 25.
MAX_MEAN_SKEW = 0.06


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


def histogram_skewness(summary: Mapping[str, Any]) -> float:
    """Standardized third moment of the values a histogram summary describes (0 when constant, inf when unknown).

    From bin midpoints about the summary's exact mean and variance: exact for the one-value
    bins of :func:`aitrace.summarize`'s small or discrete batches, close for its quantile bins.

    >>> summary = {"histogram_edges": [0, 1, 2, 3], "histogram_counts": [6, 3, 1], "mean": 1.0, "variance": 0.45}
    >>> round(histogram_skewness(summary), 3)  # the values 0.5 x6, 1.5 x3, 2.5
    0.994
    """
    edges = np.asarray(summary["histogram_edges"], dtype=np.float64)
    counts = np.asarray(summary["histogram_counts"], dtype=np.float64)
    variance = float(summary.get("variance") or 0.0)
    if variance <= 0 or counts.sum() <= 0:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # values near the float limit: no finite answer
        z = (edges[:-1] / 2.0 + edges[1:] / 2.0 - float(summary["mean"])) / math.sqrt(variance)
        g = float(np.sum(counts * z**3) / counts.sum())
    return g if math.isfinite(g) else math.inf


def mean_difference_skewness(ref: Mapping[str, Any], cur: Mapping[str, Any]) -> float:
    """Skewness of the difference of the two windows' means if nothing drifted.

    ``|g| |1/n2^2 - 1/n1^2| / (1/n1 + 1/n2)^1.5`` for windows of ``n1`` and ``n2`` values:
    ``g`` is the larger window's skewness (it estimates the shared shape better). Equal
    windows cancel it; a small batch of skewed values against a large reference does not,
    and there the mean and its standard error move together, so Welch's p-value runs small.
    """
    n1, n2 = _summary_n(ref), _summary_n(cur)
    g = histogram_skewness(ref if n1 >= n2 else cur)
    return abs(g) * abs(1.0 / n2**2 - 1.0 / n1**2) / (1.0 / n1 + 1.0 / n2) ** 1.5


def _histogram_test(name: str, ref: Mapping[str, Any], cur: Mapping[str, Any]) -> _Raw:
    """KS bound on the two histograms and Welch's t on the moments, Simes over the two (:func:`simes_pair`)."""
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
    details = {"ks_distance": d, "ks_pvalue": p_ks}
    welch = _welch_from_summaries(ref, cur)
    skew_d = mean_difference_skewness(ref, cur) if welch is not None else math.inf
    if math.isfinite(skew_d):
        details["mean_difference_skewness"] = skew_d
    if welch is None or not skew_d <= MAX_MEAN_SKEW:
        return _Raw(name, "hist_ks", d, p_ks, d, "ks_distance", n_ref, n_cur, psi=psi_value, details=details)
    t, p_t, smd, _, _ = welch
    details.update(_moment_details(ref, cur, t, p_t))
    p = simes_pair(p_ks, p_t)
    if p_t < p_ks:
        return _Raw(name, "welch_t", abs(t), p, smd, "smd", n_ref, n_cur, psi=psi_value, details=details)
    return _Raw(name, "hist_ks", d, p, d, "ks_distance", n_ref, n_cur, psi=psi_value, details=details)


def simes_pair(p1: float, p2: float) -> float:
    """Simes' combination of two p-values of one feature: ``min(2 * smaller, larger)``.

    The KS bound and Welch's t test the same two samples, and both grow as the samples move
    apart: positively dependent, where Simes' test holds its level. Never above Bonferroni's
    ``2 * smaller``, and below it when both tests see the shift: a feature of a small batch that
    both find at p ~0.01 (spector's GPA by grade: KS 0.009, Welch 0.013) is no longer lost to
    the factor 2 that KS alone on the rows does not pay.

    >>> simes_pair(0.009, 0.013), simes_pair(0.01, 0.5)
    (0.013, 0.02)
    """
    lo, hi = min(p1, p2), max(p1, p2)
    return min(1.0, 2.0 * lo, hi)


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
