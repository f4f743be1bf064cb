"""Two-sample Kolmogorov-Smirnov: the statistic, its exact and asymptotic p-values, many features at once.

:func:`ks_2samp` and :func:`ks_2samp_batched` equal ``scipy.stats.ks_2samp(method='auto')``,
two-sided: the exact distribution (Hodges' lattice-path counts, scipy's algorithms
ported to Numba) when both samples have at most 10,000 points, Smirnov's asymptotic
``kstwo.sf(D, round(m n / (m + n)))`` above that (evaluated by ``scipy.stats.kstwo``
when scipy is installed, else by the Kolmogorov limit with Stephens' correction,
which is good to about 1e-3). :func:`ks_pvalue` gives the same distribution's
p-value for a statistic computed elsewhere. NaN is dropped from raw samples; +-Inf is
an ordinary, extreme value; an empty sample raises ``ValueError``. The other drift
measures are in :mod:`aitrace.detect.drift`.
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
    return _ks_packed(a, na, b, nb, method)


def ks_2samp_sorted_reference(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ks_2samp_batched(reference, current)`` where every row of the 2-D ``reference`` is already
    sorted and finite (a drift rule's full reference window, sorted once): only ``current`` is sorted.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = np.sort(rng.normal(size=(2, 200)), axis=1); cur = rng.normal(size=(2, 200))
    >>> all(np.array_equal(x, y) for x, y in zip(ks_2samp_sorted_reference(ref, cur), ks_2samp_batched(ref, cur)))
    True
    """
    a = np.ascontiguousarray(reference, dtype=np.float64)
    if not (isinstance(current, np.ndarray) and current.dtype == np.float64 and current.ndim == 2):
        b, nb = _pack_rows(current, "current")
        if a.ndim != 2 or a.shape[0] != b.shape[0] or a.shape[1] == 0:
            raise ValueError(f"reference of shape {a.shape} for {b.shape[0]} current rows")
        return _ks_packed(a, np.full(a.shape[0], a.shape[1], dtype=np.int64), b, nb, "auto")
    if a.ndim != 2 or a.shape[0] != current.shape[0] or a.shape[1] == 0:
        raise ValueError(f"reference of shape {a.shape} for {current.shape[0]} current rows")
    if a.shape[0] == 0:
        return np.zeros(0), np.zeros(0)
    # the drift windows' call (float64 rows): numpy's sort (NaN last; faster than Numba's), then count and
    # test in one kernel call, where _pack_rows' count and checks and _ks_packed's were six numpy calls
    stat, prob, en, empty = _ks_sorted_reference_kernel(a, np.sort(current, axis=1), MAX_EXACT_N)
    if empty >= 0:
        raise ValueError(f"current: row {empty} is empty (after dropping NaN)")
    need = np.isnan(prob)
    if need.any():
        prob[need] = _asymptotic_pvalues(stat[need], en[need])
    return stat, np.clip(prob, 0.0, 1.0)


@njit(cache=True, error_model="numpy")
def _ks_sorted_reference_kernel(
    a: np.ndarray, b: np.ndarray, exact_limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """:func:`_ks_batch_kernel` on full sorted reference rows ``a`` and the sorted rows ``b`` (NaN last, not
    counted: what ``_pack_rows`` makes of them); the first row left empty, or -1."""
    nb = np.empty(b.shape[0], dtype=np.int64)
    for r in range(b.shape[0]):
        n = b.shape[1]
        while n > 0 and np.isnan(b[r, n - 1]):
            n -= 1
        if n == 0:
            return np.empty(0), np.empty(0), np.empty(0), r
        nb[r] = n
    na = np.full(a.shape[0], a.shape[1], dtype=np.int64)
    stat, prob, en = _ks_batch_kernel(a, na, b, nb, exact_limit)
    return stat, prob, en, -1


def _ks_packed(
    a: np.ndarray, na: np.ndarray, b: np.ndarray, nb: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Statistics and p-values of sorted rows padded with +inf (``_pack_rows``'), ``na``/``nb`` values each."""
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


# --------------------------------------------------------------------------- p-value of a statistic
def ks_pvalue(statistic: float, n1: int, n2: int) -> float:
    """Two-sided two-sample KS p-value of a statistic ``d`` for sample sizes ``n1``, ``n2``.

    The same distribution ``ks_2samp`` uses (exact up to 10,000 points, Smirnov's
    asymptotic form above). A statistic that is a lower bound on the true KS distance
    (as summaries give, see :func:`aitrace.detect.drift_tests.ks_from_summaries`)
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
