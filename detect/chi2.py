"""Chi-square test of homogeneity on category counts, and the chi-square survival function.

:func:`chi2_drift` equals ``scipy.stats.chi2_contingency`` on the 2 x k table of
counts (Yates' correction for one degree of freedom, as scipy applies it);
:func:`chi2_sf` equals ``scipy.stats.chi2.sf``, through a Numba regularized upper
incomplete gamma that :mod:`aitrace.detect.batched` shares.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from aitrace.detect import _cache  # noqa: F401  (sets the Numba cache dir before any @njit)
from numba import njit


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
