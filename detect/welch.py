"""Welch's t test from counts, means and variances, and Student's t two-sided p-value.

:func:`welch_t` equals ``scipy.stats.ttest_ind_from_stats(..., equal_var=False)``;
:func:`t_pvalue` equals ``2 * scipy.stats.t.sf(|t|, df)``, through a regularized
incomplete beta (modified Lentz continued fraction). The drift verdicts use them on
the exact moments of two summaries (:mod:`aitrace.detect.drift_tests`).
"""

from __future__ import annotations

import math
import sys


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
    a = min(max(float(var1), 0.0) / n1, sys.float_info.max)  # an Inf variance: as large as a float goes
    b = min(max(float(var2), 0.0) / n2, sys.float_info.max)
    diff = float(mean1) - float(mean2)
    if a + b == 0.0:
        return (0.0, math.inf, 1.0) if diff == 0.0 else (math.copysign(math.inf, diff), math.inf, 0.0)
    # In units of the larger share: (a + b) ** 2 and a * a overflowed for variances near 1e308 (df NaN:
    # ValueError) and underflowed near 1e-170 (ZeroDivisionError); the ratios x, y in [0, 1] do neither.
    m = max(a, b)
    x, y = a / m, b / m
    t = diff / (math.sqrt(m) * math.sqrt(x + y))
    df = (x + y) ** 2 / (x * x / (n1 - 1) + y * y / (n2 - 1))
    return t, df, t_pvalue(t, df)
