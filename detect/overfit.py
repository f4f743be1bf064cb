"""Overfitting of a training run: validation loss rising while training loss falls or holds.

:func:`overfitting` tests a pair of aligned train/validation loss curves over their
recent evaluations (Mann-Kendall trend of each, and the change of the gap between
them) and names the checkpoint to keep (the lowest validation loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OverfitResult:
    """Outcome of :func:`overfitting`.

    overfitting: validation loss rises significantly while training loss does not.
    score: in [0, 1], 1 - p-value of the validation trend when the pattern holds, else 0.
    val_trend, train_trend: Kendall's tau of each curve against time over the window.
    val_pvalue: one-sided p-value that the validation loss is not rising.
    best_index: index of the lowest validation loss (the checkpoint to keep).
    gap_change: (val - train) at the window's end minus at its start (medians of 5 points).
    message: one sentence.
    """

    overfitting: bool
    score: float
    val_trend: float
    train_trend: float
    val_pvalue: float
    best_index: int
    gap_change: float
    message: str = field(default="")


def mann_kendall(y: np.ndarray) -> tuple[float, float]:
    """Kendall's tau of y against its index and the one-sided p-value for an upward trend.

    Mann-Kendall with the normal approximation (variance without tie correction,
    continuity-corrected), which is adequate from about 10 points.
    """
    n = y.size
    diff = np.sign(y[None, :] - y[:, None])
    s = float(np.triu(diff, 1).sum())
    pairs = n * (n - 1) / 2.0
    var = n * (n - 1) * (2 * n + 5) / 18.0
    z = (s - 1.0) / math.sqrt(var) if s > 0 else (s + 1.0) / math.sqrt(var) if s < 0 else 0.0
    p_up = 0.5 * math.erfc(z / math.sqrt(2.0))
    return s / pairs, p_up


def overfitting(
    train_loss: Any, val_loss: Any, *, window: int = 50, alpha: float = 0.01, min_points: int = 10
) -> OverfitResult:
    """Is the model overfitting? Validation loss rising while training loss keeps falling (or holds).

    ``train_loss`` and ``val_loss`` are aligned per evaluation (same length; use the
    training loss at each validation step). Only the last ``window`` evaluations are
    tested, so a curve that overfit long ago and was stopped is judged on its recent
    behaviour. NaN entries are dropped pairwise.

    >>> import numpy as np
    >>> t = np.arange(60.0)
    >>> train = 2.0 * np.exp(-t / 15)
    >>> val = 2.0 * np.exp(-t / 15) + 0.002 * np.maximum(t - 20, 0) ** 1.5
    >>> r = overfitting(train, val, window=30)
    >>> r.overfitting, 30 < r.best_index < 45
    (True, True)
    """
    tr = np.asarray(train_loss, dtype=np.float64).reshape(-1)
    va = np.asarray(val_loss, dtype=np.float64).reshape(-1)
    if tr.shape != va.shape:
        raise ValueError(f"train_loss and val_loss differ in length: {tr.shape} vs {va.shape}")
    if window < min_points or min_points < 4:
        raise ValueError("need window >= min_points >= 4")
    ok = np.isfinite(tr) & np.isfinite(va)
    idx = np.flatnonzero(ok)
    best = int(idx[np.argmin(va[ok])]) if idx.size else -1
    if idx.size < min_points:
        return OverfitResult(False, 0.0, 0.0, 0.0, 1.0, best, 0.0, f"need {min_points} finite points, got {idx.size}")
    recent = idx[-window:]
    tr_w, va_w = tr[recent], va[recent]
    val_tau, val_p = mann_kendall(va_w)
    train_tau, _ = mann_kendall(tr_w)
    gap = va_w - tr_w
    k = min(5, gap.size // 2)
    gap_change = float(np.median(gap[-k:]) - np.median(gap[:k]))
    flagged = val_p < alpha and train_tau <= 0.0 and gap_change > 0.0
    score = (1.0 - val_p) if flagged else 0.0
    if flagged:
        msg = (
            f"validation loss rises (tau={val_tau:.2f}, p={val_p:.2g}) while training loss falls "
            f"(tau={train_tau:.2f}); best validation loss at index {best}"
        )
    else:
        msg = "no overfitting pattern in the recent window"
    return OverfitResult(
        bool(flagged), float(score), float(val_tau), float(train_tau), float(val_p), best, gap_change, msg
    )
