"""Distribution drift between a reference window and a current window: distances.

Kernels (plain arrays in, floats out, Numba underneath):

* :func:`psi`, :func:`jensen_shannon` (on reference-quantile bins, or from counts)
  and :func:`wasserstein_1d` (equal to ``scipy.stats.wasserstein_distance``) here;
* the tests beside them: two-sample Kolmogorov-Smirnov in :mod:`aitrace.detect.ks`
  (:func:`~aitrace.detect.ks.ks_2samp`, equal to ``scipy.stats.ks_2samp(method='auto')``),
  chi-square on category counts in :mod:`aitrace.detect.chi2`
  (:func:`~aitrace.detect.chi2.chi2_drift`, equal to ``scipy.stats.chi2_contingency`` on
  the 2 x k table of counts), Welch's t in :mod:`aitrace.detect.welch`.

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

from typing import Any

import numpy as np
from aitrace.detect import _cache  # noqa: F401  (sets the Numba cache dir before any @njit)
from aitrace.detect.ks import _clean_sample
from numba import njit

PSI_EPS = 1e-4  # floor on bin proportions so an empty bin does not make PSI infinite


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
