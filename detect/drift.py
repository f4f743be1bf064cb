"""Distribution drift between a reference window and a current window.

Kernels (plain arrays in, floats out, Numba underneath):

* :func:`ks_2samp` / :func:`ks_2samp_batched`: two-sample Kolmogorov-Smirnov,
  two-sided, equal to ``scipy.stats.ks_2samp(method='auto')``: the exact
  distribution (Hodges' lattice-path counts, scipy's algorithms ported to Numba)
  when both samples have at most 10,000 points, Smirnov's asymptotic
  ``kstwo.sf(D, round(m n / (m + n)))`` above that (evaluated by
  ``scipy.stats.kstwo`` when scipy is installed, else by the Kolmogorov limit with
  Stephens' correction, which is good to about 1e-3).
* :func:`psi`, :func:`jensen_shannon`, :func:`wasserstein_1d` (equal to
  ``scipy.stats.wasserstein_distance``) and :func:`chi2_drift` (equal to
  ``scipy.stats.chi2_contingency`` on the 2 x k table of counts).

Non-finite input: NaN is dropped from raw samples (``nan_policy='omit'``); +-Inf
is an ordinary, extreme value for KS and an error for the moment-based measures.
An empty sample raises ``ValueError``. No function returns NaN silently.

Example
-------
>>> import numpy as np
>>> from aitrace.detect import ks_2samp
>>> rng = np.random.default_rng(0)
>>> d, p = ks_2samp(rng.normal(size=300), rng.normal(0.5, 1, size=300))
>>> bool(d > 0.15 and p < 1e-4)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from aitrace.detect import _cache  # noqa: F401  (sets the Numba cache dir before any @njit)
from numba import njit

MAX_EXACT_N = 10_000  # scipy's MAX_AUTO_N: 'auto' is exact when both samples are at most this long
_INT32_MAX = 2**31 - 1
PSI_EPS = 1e-4  # floor on bin proportions so an empty bin does not make PSI infinite


# --------------------------------------------------------------------------- KS statistic
@njit(cache=True, error_model="numpy")
def _ks_stat_sorted(a: np.ndarray, n1: int, b: np.ndarray, n2: int) -> tuple[float, float]:
    """(max(F1 - F2), max(F2 - F1) clipped to [0, 1]) over all data points, as scipy evaluates them.

    scipy evaluates both ECDFs (side='right') at every point of both samples. We walk
    the merged order one element at a time and evaluate only where the next value
    differs (the last of a run of ties), which visits the same (i, j) pairs; written
    with selects instead of nested loops it has almost no unpredictable branches.
    """
    i = 0
    j = 0
    max_s = -np.inf
    min_s = np.inf
    total = n1 + n2
    va = a[0]
    vb = b[0]
    for t in range(total):
        take_a = (j >= n2) or (i < n1 and va <= vb)
        v = va if take_a else vb
        i += take_a
        j += 1 - take_a
        va = a[i] if i < n1 else np.inf
        vb = b[j] if j < n2 else np.inf
        nxt = va if va < vb else vb
        if t == total - 1 or nxt != v:
            diff = i / n1 - j / n2
            max_s = diff if diff > max_s else max_s
            min_s = diff if diff < min_s else min_s
    neg = -min_s
    neg = 0.0 if neg < 0.0 else (1.0 if neg > 1.0 else neg)
    return max_s, neg


# --------------------------------------------------------------------------- exact p-values
@njit(cache=True, error_model="numpy")
def _round_half_even(v: float) -> float:
    r: float = math.floor(v + 0.5)
    if r - v == 0.5 and r % 2.0 == 1.0:
        r -= 1.0
    return r


@njit(cache=True, error_model="numpy")
def _prob_outside_square(n: int, h: int) -> float:
    """P(D_{n,n} >= h/n): scipy's ``_compute_prob_outside_square`` (Horner-like, no cancellation)."""
    p = 0.0
    k = math.floor(n / h)
    while k >= 0:
        # The ratios are independent of each other; only the product is a chain, so
        # the divisions pipeline (a few ulp from scipy's order, tested to 1e-9).
        p1 = 1.0
        for j in range(h):
            p1 *= (n - k * h - j) / (n + k * h + j + 1)
        p = p1 * (1.0 - p)
        k -= 1
    return 2 * p


@njit(cache=True, error_model="numpy")
def _outer_prob_inside(m: int, n: int, g: int, h: int) -> float:
    """1 - P(paths stay strictly inside |x/m - y/n| < h/lcm): scipy's ``_compute_outer_prob_inside_method``.

    Viehmann's recursion (arXiv:2102.08037), which computes 1 - p directly.
    """
    if m < n:
        m, n = n, m
    mg = m // g
    ng = n // g
    minj = 0
    maxj = min(math.ceil(h / mg), n + 1)
    curlen = maxj - minj
    len_a = min(2 * maxj + 2, n + 1)
    a = np.ones(len_a)
    a[minj:maxj] = 0.0
    recip = np.empty(len_a)
    for i in range(1, m + 1):
        lastminj = minj
        lastlen = curlen
        minj = max(math.floor((ng * i - h) / mg) + 1, 0)
        minj = min(minj, n)
        maxj = min(math.ceil((ng * i + h) / mg), n + 1)
        if maxj <= minj:
            return 1.0
        # The recursion is a chain of dependent divisions; dividing up front (independent,
        # pipelined) and multiplying in the chain halves the time. Differences from
        # scipy's order of operations stay at a few ulp (tested against scipy to 1e-9).
        for jj in range(maxj - minj):
            recip[jj] = 1.0 / (i + jj + minj)
        val = 0.0 if minj == 0 else 1.0
        for jj in range(maxj - minj):
            j = jj + minj
            val = (a[jj + minj - lastminj] * i + val * j) * recip[jj]
            a[jj] = val
        curlen = maxj - minj
        if lastlen > curlen:
            a[maxj - minj : maxj - minj + (lastlen - curlen)] = 1.0
    return a[maxj - minj - 1]


@njit(cache=True, error_model="numpy")
def _exact_two_sided(n1: int, n2: int, d: float) -> tuple[bool, float, float]:
    """(success, rounded d, p) as scipy's ``_attempt_exact_2kssamp`` for 'two-sided'."""
    g = _gcd(n1, n2)
    lcm = (n1 // g) * n2
    h = int(_round_half_even(d * lcm))
    d = h * 1.0 / lcm
    if h == 0:
        return True, d, 1.0
    prob = _prob_outside_square(n1, h) if n1 == n2 else _outer_prob_inside(n1, n2, g, h)
    if not (0.0 <= prob <= 1.0):  # also false for NaN: fall back to the asymptotic regime
        return False, d, prob
    return True, d, prob


@njit(cache=True, error_model="numpy")
def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


@njit(cache=True, error_model="numpy")
def _ks_batch_kernel(
    a: np.ndarray, na: np.ndarray, b: np.ndarray, nb: np.ndarray, exact_limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: statistic, exact p-value (NaN where the asymptotic regime applies), en for it."""
    k = a.shape[0]
    stat = np.empty(k)
    prob = np.empty(k)
    en = np.empty(k)
    for r in range(k):
        n1 = na[r]
        n2 = nb[r]
        max_s, min_s = _ks_stat_sorted(a[r], n1, b[r], n2)
        d = min_s if min_s > max_s else max_s
        prob[r] = np.nan
        mode_exact = max(n1, n2) <= exact_limit
        if mode_exact:
            ok, d_round, p = _exact_two_sided(n1, n2, d)
            d = d_round
            if ok:
                prob[r] = p
        stat[r] = d
        big = float(max(n1, n2))
        small = float(min(n1, n2))
        en[r] = big * small / (big + small)
    return stat, prob, en


@njit(cache=True, error_model="numpy")
def _kolmogorov_sf(x: float) -> float:
    """Kolmogorov's limiting survival function (fallback when scipy is not installed)."""
    if x <= 0.0:
        return 1.0
    if x < 1.0:
        # small x: the Jacobi theta form converges fast
        w = math.sqrt(2.0 * math.pi) / x
        s = 0.0
        for k in range(1, 40, 2):
            s += math.exp(-(k * k) * math.pi * math.pi / (8.0 * x * x))
        return 1.0 - w * s
    s = 0.0
    sign = 1.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * x * x)
        s += sign * term
        sign = -sign
        if term < 1e-300:
            break
    p = 2.0 * s
    return min(max(p, 0.0), 1.0)


def _asymptotic_pvalues(d: np.ndarray, en: np.ndarray) -> np.ndarray:
    """kstwo.sf(d, round(en)) for two-sided KS, vectorized (scipy when present)."""
    n = np.round(en)
    try:
        from scipy.stats import kstwo
    except ImportError:  # scipy is optional at run time; Stephens' correction keeps ~1e-3
        sq = np.sqrt(n)
        return np.array([_kolmogorov_sf(float((s + 0.12 + 0.11 / s) * x)) for s, x in zip(sq, d, strict=True)])
    return np.clip(np.asarray(kstwo.sf(d, n), dtype=np.float64), 0.0, 1.0)


def _clean_sample(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        raise ValueError(f"{name} is empty (after dropping NaN)")
    return arr


def ks_2samp(a: Any, b: Any, *, method: str = "auto") -> tuple[float, float]:
    """Two-sided two-sample KS test: (statistic, p-value), equal to ``scipy.stats.ks_2samp``.

    ``method`` is scipy's: 'auto' (exact when both samples have <= 10,000 points),
    'exact' or 'asymp'. NaN values are dropped; an empty sample raises ValueError.

    >>> ks_2samp([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    (0.0, 1.0)
    """
    stats, pvals = ks_2samp_batched([a], [b], method=method)
    return float(stats[0]), float(pvals[0])


def _pack_rows(samples: Sequence[Any] | np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted rows padded with +inf, and each row's count of non-NaN values."""
    if isinstance(samples, np.ndarray) and samples.ndim == 2:
        if samples.dtype.kind not in "fiub":
            raise TypeError(f"{name} must be numeric, got dtype {samples.dtype}")
        rows = np.sort(samples.astype(np.float64, copy=False), axis=1)  # NaN sorts last
        counts = np.count_nonzero(~np.isnan(rows), axis=1).astype(np.int64)
    else:
        cleaned = [_clean_sample(s, f"{name}[{i}]") for i, s in enumerate(samples)]
        width = max((len(c) for c in cleaned), default=0)
        rows = np.full((len(cleaned), width), np.inf)
        counts = np.empty(len(cleaned), dtype=np.int64)
        for i, c in enumerate(cleaned):
            rows[i, : len(c)] = np.sort(c)
            counts[i] = len(c)
    if np.any(counts == 0):
        raise ValueError(f"{name}: row {int(np.argmin(counts))} is empty (after dropping NaN)")
    return np.ascontiguousarray(rows), counts


def ks_2samp_batched(
    reference: Sequence[Any] | np.ndarray, current: Sequence[Any] | np.ndarray, *, method: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """KS test for many features at once: row i of ``reference`` against row i of ``current``.

    Accepts two 2-D arrays (features x samples; NaN entries are ignored, so ragged
    data can be NaN-padded) or two equal-length sequences of 1-D arrays. Returns
    ``(statistics, pvalues)`` as float64 arrays, each equal to what
    ``scipy.stats.ks_2samp`` gives for that pair. Sorting happens in numpy, the
    statistic and the exact p-values in one Numba loop, the asymptotic p-values in
    one vectorized call.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(3, 200)); cur = rng.normal(size=(3, 150)); cur[2] += 1
    >>> d, p = ks_2samp_batched(ref, cur)
    >>> bool(p[2] < 1e-6 < p[0])
    True
    """
    if method not in ("auto", "exact", "asymp"):
        raise ValueError(f"method must be 'auto', 'exact' or 'asymp', got {method!r}")
    a, na = _pack_rows(reference, "reference")
    b, nb = _pack_rows(current, "current")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"reference has {a.shape[0]} features, current has {b.shape[0]}")
    if a.shape[0] == 0:
        return np.zeros(0), np.zeros(0)
    if method == "auto":
        limit = MAX_EXACT_N
    elif method == "exact":
        limit = np.iinfo(np.int64).max
    else:
        limit = -1
    stat, prob, en = _ks_batch_kernel(a, na, b, nb, limit)
    if method == "exact":
        # as scipy: an lcm beyond int32 cannot be done exactly
        g = np.gcd(na, nb)
        too_big = (na // g) >= _INT32_MAX / (nb // g)
        if np.any(too_big):
            stat_asymp, _, _ = _ks_batch_kernel(a[too_big], na[too_big], b[too_big], nb[too_big], -1)
            stat[too_big] = stat_asymp
            prob[too_big] = np.nan
    need = np.isnan(prob)
    if np.any(need):
        prob[need] = _asymptotic_pvalues(stat[need], en[need])
    return stat, np.clip(prob, 0.0, 1.0)


# --------------------------------------------------------------------------- Wasserstein
@njit(cache=True, error_model="numpy")
def _wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    nu = u.shape[0]
    nv = v.shape[0]
    i = 0
    j = 0
    total = 0.0
    # walk the merged order; between consecutive points both ECDFs are constant
    prev = u[0] if u[0] <= v[0] else v[0]
    while i < nu or j < nv:
        x = u[i] if j >= nv or (i < nu and u[i] <= v[j]) else v[j]
        total += abs(i / nu - j / nv) * (x - prev)
        prev = x
        while i < nu and u[i] <= x:
            i += 1
        while j < nv and v[j] <= x:
            j += 1
    return total


def wasserstein_1d(u: Any, v: Any) -> float:
    """Earth mover's distance between two 1-D samples (= ``scipy.stats.wasserstein_distance``).

    NaN is dropped; +-Inf raises ValueError (the distance would be infinite). Values
    near the float64 limit are rescaled first so that differences do not overflow; a
    distance beyond the largest float is returned as inf.

    >>> wasserstein_1d([0.0, 1.0, 3.0], [5.0, 6.0, 8.0])
    5.0
    """
    a = _clean_sample(u, "u")
    b = _clean_sample(v, "v")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("wasserstein_1d needs finite values (got +-Inf)")
    big = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))))
    if big > 1e300:
        with np.errstate(over="ignore"):
            return float(_wasserstein_sorted(np.sort(a / big), np.sort(b / big)) * big)
    return float(_wasserstein_sorted(np.sort(a), np.sort(b)))


# --------------------------------------------------------------------------- binned measures
def _finite(x: Any, name: str) -> np.ndarray:
    arr = _clean_sample(x, name)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError(f"{name} has no finite values")
    return arr


def quantile_edges(reference: Any, bins: int = 10) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (deduplicated); outer bins are open-ended."""
    if int(bins) != bins or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    ref = _finite(reference, "reference")
    inner = np.quantile(ref, np.linspace(0, 1, int(bins) + 1)[1:-1])
    return np.unique(inner)


def _binned_counts(x: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    # bin k holds inner_edges[k-1] < x <= inner_edges[k]; the first and last bins are open
    return np.bincount(np.searchsorted(inner_edges, x, side="left"), minlength=len(inner_edges) + 1).astype(np.float64)


def psi_from_counts(reference_counts: Any, current_counts: Any, *, eps: float = PSI_EPS) -> float:
    """Population stability index of two aligned count (or proportion) vectors.

    ``sum((c - r) * ln(c / r))`` over bins with proportions floored at ``eps``.
    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
    """
    r = _proportions(reference_counts, "reference_counts")
    c = _proportions(current_counts, "current_counts")
    if r.shape != c.shape:
        raise ValueError(f"count vectors differ in length: {r.shape} vs {c.shape}")
    r = np.maximum(r, eps)
    c = np.maximum(c, eps)
    return float(np.sum((c - r) * np.log(c / r)))


def _proportions(counts: Any, name: str) -> np.ndarray:
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    total = arr.sum()
    if total <= 0:
        raise ValueError(f"{name} sums to zero")
    return arr / total


def psi(reference: Any, current: Any, *, bins: int = 10, eps: float = PSI_EPS) -> float:
    """Population stability index of two raw samples, on ``bins`` reference-quantile bins.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=5000)
    >>> bool(psi(ref, rng.normal(size=5000)) < 0.05), bool(psi(ref, rng.normal(1, 1, 5000)) > 0.25)
    (True, True)
    """
    ref = _finite(reference, "reference")
    cur = _finite(current, "current")
    edges = quantile_edges(ref, bins)
    return psi_from_counts(_binned_counts(ref, edges), _binned_counts(cur, edges), eps=eps)


def jensen_shannon_from_counts(p: Any, q: Any) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two aligned count vectors.

    Equal to ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.
    """
    pp = _proportions(p, "p")
    qq = _proportions(q, "q")
    if pp.shape != qq.shape:
        raise ValueError(f"count vectors differ in length: {pp.shape} vs {qq.shape}")
    m = (pp + qq) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(pp > 0, pp * np.log(pp / m), 0.0)
        right = np.where(qq > 0, qq * np.log(qq / m), 0.0)
    js = (left.sum() + right.sum()) / np.log(2.0)
    return float(np.sqrt(max(js, 0.0) / 2.0))


def jensen_shannon(reference: Any, current: Any, *, bins: int = 10) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two raw samples on reference-quantile bins."""
    ref = _finite(reference, "reference")
    cur = _finite(current, "current")
    edges = quantile_edges(ref, bins)
    return jensen_shannon_from_counts(_binned_counts(ref, edges), _binned_counts(cur, edges))


# --------------------------------------------------------------------------- chi-square
@njit(cache=True, error_model="numpy")
def _gammaincc(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) (series below a + 1, Lentz continued fraction above)."""
    if x <= 0.0:
        return 1.0
    if math.isinf(x):
        return 0.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        ap = a
        term = 1.0 / a
        total = term
        for _ in range(100000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-17:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < tiny:
            d = tiny
        c = b + an / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return math.exp(log_prefix) * h


def chi2_sf(statistic: float, dof: int) -> float:
    """Survival function of the chi-square distribution (``scipy.stats.chi2.sf``)."""
    if dof <= 0:
        raise ValueError(f"dof must be positive, got {dof}")
    if not statistic > 0:
        return 1.0
    return float(_gammaincc(dof / 2.0, statistic / 2.0))


def align_categories(
    reference: dict[Any, float], current: dict[Any, float]
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Union of category keys (sorted by str) and the two aligned count vectors."""
    keys = sorted(set(reference) | set(current), key=str)
    ref = np.array([float(reference.get(k, 0)) for k in keys])
    cur = np.array([float(current.get(k, 0)) for k in keys])
    return keys, ref, cur


def chi2_drift(reference_counts: Any, current_counts: Any, *, correction: bool = True) -> tuple[float, float, int]:
    """Chi-square test of homogeneity on category counts: (statistic, p-value, dof).

    Inputs are aligned count vectors or ``{category: count}`` dicts. The result
    equals ``scipy.stats.chi2_contingency([ref, cur], correction=correction)`` after
    dropping categories that are empty in both (scipy refuses those). Fewer than two
    non-empty categories gives (0.0, 1.0, 0): nothing can have shifted.

    >>> stat, p, dof = chi2_drift({"a": 500, "b": 500}, {"a": 300, "b": 700})
    >>> dof, p < 1e-10
    (1, True)
    """
    if isinstance(reference_counts, dict) or isinstance(current_counts, dict):
        if not (isinstance(reference_counts, dict) and isinstance(current_counts, dict)):
            raise TypeError("pass both counts as dicts or both as vectors")
        _, ref, cur = align_categories(reference_counts, current_counts)
    else:
        ref = np.asarray(reference_counts, dtype=np.float64)
        cur = np.asarray(current_counts, dtype=np.float64)
    if ref.ndim != 1 or ref.shape != cur.shape:
        raise ValueError(f"count vectors must be 1-D and aligned, got {ref.shape} and {cur.shape}")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(cur))) or np.any(ref < 0) or np.any(cur < 0):
        raise ValueError("counts must be finite and non-negative")
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("both reference and current counts must have a positive total")
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    if ref.size < 2:
        return 0.0, 1.0, 0
    table = np.vstack([ref, cur])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    dof = ref.size - 1
    diff = table - expected
    if correction and dof == 1:
        # Yates' continuity correction, as scipy applies it for one degree of freedom
        direction = np.sign(diff)
        magnitude = np.minimum(0.5, np.abs(diff))
        diff = diff - direction * magnitude
    stat = float(np.sum(diff * diff / expected))
    return stat, chi2_sf(stat, dof), int(dof)


# --------------------------------------------------------------------------- p-values from statistics
def ks_pvalue(statistic: float, n1: int, n2: int) -> float:
    """Two-sided two-sample KS p-value of a statistic ``d`` for sample sizes ``n1``, ``n2``.

    The same distribution ``ks_2samp`` uses (exact up to 10,000 points, Smirnov's
    asymptotic form above). A statistic that is a lower bound on the true KS distance
    (as summaries give, see :func:`aitrace.detect.drift_monitor.ks_from_summaries`)
    gets a p-value that is at least the true one: the test stays valid, only less
    powerful.

    >>> round(ks_pvalue(0.5, 20, 20), 4)
    0.0123
    """
    n1, n2 = int(n1), int(n2)
    if n1 < 1 or n2 < 1:
        raise ValueError("sample sizes must be positive")
    d = float(min(max(statistic, 0.0), 1.0))
    if d == 0.0:
        return 1.0
    if max(n1, n2) <= MAX_EXACT_N:
        ok, d_round, p = _exact_two_sided(n1, n2, d)
        if ok:
            return float(min(max(p, 0.0), 1.0))
        d = d_round
    en = n1 * n2 / (n1 + n2)
    return float(_asymptotic_pvalues(np.array([d]), np.array([en]))[0])


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = tiny if abs(d) < tiny else d
    d = 1.0 / d
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def t_pvalue(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with ``df`` degrees of freedom (= ``2 * scipy.stats.t.sf(|t|, df)``).

    >>> round(t_pvalue(2.0, 10), 6)
    0.073388
    """
    if math.isnan(t) or not df > 0:
        raise ValueError(f"need a t statistic and df > 0, got {t}, {df}")
    if math.isinf(t):
        return 0.0
    if math.isinf(df) or df > 1e7:
        return math.erfc(abs(t) / math.sqrt(2.0))
    return float(min(max(_betainc(df / 2.0, 0.5, df / (df + t * t)), 0.0), 1.0))


def welch_t(n1: int, mean1: float, var1: float, n2: int, mean2: float, var2: float) -> tuple[float, float, float]:
    """Welch's unequal-variance t test from counts, means and *sample* variances (ddof=1).

    Returns ``(t, df, two-sided p)``; equals ``scipy.stats.ttest_ind_from_stats(..., equal_var=False)``.
    Two constant samples: t is 0 (equal means, p = 1) or infinite (p = 0).

    >>> t, df, p = welch_t(50, 0.0, 1.0, 50, 0.5, 1.0)
    >>> round(t, 3), round(df, 1), round(p, 4)
    (-2.5, 98.0, 0.0141)
    """
    if n1 < 2 or n2 < 2:
        raise ValueError("Welch's t needs at least two points in each sample")
    a = max(float(var1), 0.0) / n1
    b = max(float(var2), 0.0) / n2
    diff = float(mean1) - float(mean2)
    if a + b == 0.0:
        return (0.0, math.inf, 1.0) if diff == 0.0 else (math.copysign(math.inf, diff), math.inf, 0.0)
    t = diff / math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
    return t, df, t_pvalue(t, df)
