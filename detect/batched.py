"""Batched drift statistics: many features in one call, one Numba loop over the rows.

Row ``i`` of ``reference`` is compared with row ``i`` of ``current``. Raw samples
come as two 2-D arrays (features x samples; NaN entries are ignored, so ragged data
can be NaN-padded) or two equal-length sequences of 1-D arrays; counts come as two
2-D arrays (features x bins or categories). Each result equals the per-feature
function of :mod:`aitrace.detect.drift` or :mod:`aitrace.detect.chi2` on that row
(``ks_2samp_batched`` lives in :mod:`aitrace.detect.ks`).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = rng.normal(size=(3, 1000)); cur = rng.normal(size=(3, 800)); cur[1] += 1.0
>>> psi_batched(ref, cur).round(1).tolist()
[0.0, 1.0, 0.0]
>>> w = wasserstein_1d_batched(ref, cur)
>>> bool(0.9 < w[1] < 1.1 and w[0] < 0.1)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from aitrace.detect import _cache  # noqa: F401  (sets the Numba cache dir before any @njit)
from aitrace.detect.chi2 import _gammaincc
from aitrace.detect.drift import PSI_EPS, _wasserstein_sorted
from aitrace.detect.drift_monitor import DriftConfig, detect_drift
from aitrace.detect.finding import Finding
from aitrace.detect.ks import _pack_rows, ks_2samp_sorted_reference
from aitrace.detect.service import DriftWindows, _arrays, _Window, by_chunk, part_latest
from numba import njit


def _paired_rows(
    reference: Sequence[Any] | np.ndarray, current: Sequence[Any] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    a, na = _pack_rows(reference, "reference")
    b, nb = _pack_rows(current, "current")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"reference has {a.shape[0]} features, current has {b.shape[0]}")
    return a, na, b, nb


# --------------------------------------------------------------------------- Wasserstein
@njit(cache=True, error_model="numpy")
def _wasserstein_rows(a: np.ndarray, na: np.ndarray, b: np.ndarray, nb: np.ndarray) -> np.ndarray:
    out = np.empty(a.shape[0])
    for r in range(a.shape[0]):
        out[r] = _wasserstein_sorted(a[r, : na[r]], b[r, : nb[r]])
    return out


def wasserstein_1d_batched(reference: Sequence[Any] | np.ndarray, current: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Earth mover's distance per feature (= ``wasserstein_1d`` per row); +-Inf raises ValueError."""
    a, na, b, nb = _paired_rows(reference, current)
    for rows, counts, name in ((a, na, "reference"), (b, nb, "current")):
        valid = np.arange(rows.shape[1])[None, :] < counts[:, None]
        if not np.all(np.isfinite(rows[valid])):
            raise ValueError(f"wasserstein_1d_batched needs finite values (+-Inf in {name})")
    big = max(float(np.max(np.abs(rows[np.isfinite(rows)]), initial=0.0)) for rows in (a, b))
    if big > 1e300:  # rescale so that differences cannot overflow
        with np.errstate(over="ignore"):
            return _wasserstein_rows(a / big, na, b / big, nb) * big
    return _wasserstein_rows(a, na, b, nb)


# --------------------------------------------------------------------------- binned measures
@njit(cache=True, error_model="numpy")
def _count_bins(x: np.ndarray, lo: int, hi: int, edges: np.ndarray, n_edges: int, out: np.ndarray) -> None:
    """Histogram of x[lo:hi] on open-ended bins split at edges[:n_edges] (searchsorted side='left')."""
    out[: n_edges + 1] = 0.0
    for t in range(lo, hi):
        v = x[t]
        k0 = 0
        k1 = n_edges
        while k0 < k1:
            mid = (k0 + k1) >> 1
            if edges[mid] < v:
                k0 = mid + 1
            else:
                k1 = mid
        out[k0] += 1.0


@njit(cache=True, error_model="numpy")
def _finite_span(row: np.ndarray, n: int) -> tuple[int, int]:
    lo = 0
    while lo < n and row[lo] == -np.inf:
        lo += 1
    hi = n
    while hi > lo and row[hi - 1] == np.inf:
        hi -= 1
    return lo, hi


@njit(cache=True, error_model="numpy")
def _binned_kernel(
    a: np.ndarray, na: np.ndarray, b: np.ndarray, nb: np.ndarray, edges: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    k = a.shape[0]
    n_bins = edges.shape[1] + 1
    psi_out = np.empty(k)
    js_out = np.empty(k)
    uniq = np.empty(edges.shape[1])
    rc = np.empty(n_bins)
    cc = np.empty(n_bins)
    for r in range(k):
        # deduplicated inner edges, as np.unique does for the per-feature form
        m = 0
        for e in range(edges.shape[1]):
            if m == 0 or edges[r, e] != uniq[m - 1]:
                uniq[m] = edges[r, e]
                m += 1
        alo, ahi = _finite_span(a[r], na[r])
        blo, bhi = _finite_span(b[r], nb[r])
        _count_bins(a[r], alo, ahi, uniq, m, rc)
        _count_bins(b[r], blo, bhi, uniq, m, cc)
        rt = 0.0
        ct = 0.0
        for t in range(m + 1):
            rt += rc[t]
            ct += cc[t]
        p_total = 0.0
        js = 0.0
        for t in range(m + 1):
            p = rc[t] / rt
            q = cc[t] / ct
            pf = p if p > eps else eps
            qf = q if q > eps else eps
            p_total += (qf - pf) * math.log(qf / pf)
            mid = 0.5 * (p + q)
            if p > 0.0:
                js += p * math.log(p / mid)
            if q > 0.0:
                js += q * math.log(q / mid)
        psi_out[r] = p_total
        js = js / math.log(2.0)
        js_out[r] = math.sqrt(js / 2.0) if js > 0.0 else 0.0
    return psi_out, js_out


def _row_edges(a: np.ndarray, na: np.ndarray, bins: int) -> np.ndarray:
    """Reference-quantile inner edges per row, computed by np.quantile exactly as ``quantile_edges``."""
    if int(bins) != bins or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    levels = np.linspace(0, 1, int(bins) + 1)[1:-1]
    edges = np.empty((a.shape[0], levels.size))
    for r in range(a.shape[0]):
        row = a[r, : na[r]]
        row = row[np.isfinite(row)]
        if row.size == 0:
            raise ValueError(f"reference row {r} has no finite values")
        edges[r] = np.quantile(row, levels)
    return edges


def _binned(reference: Any, current: Any, bins: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    a, na, b, nb = _paired_rows(reference, current)
    edges = _row_edges(a, na, bins)
    for r in range(b.shape[0]):
        row = b[r, : nb[r]]
        if not np.any(np.isfinite(row)):
            raise ValueError(f"current row {r} has no finite values")
    return _binned_kernel(a, na, b, nb, edges, float(eps))


def psi_batched(
    reference: Sequence[Any] | np.ndarray, current: Sequence[Any] | np.ndarray, *, bins: int = 10, eps: float = PSI_EPS
) -> np.ndarray:
    """Population stability index per feature on reference-quantile bins (= ``psi`` per row)."""
    return _binned(reference, current, bins, eps)[0]


def jensen_shannon_batched(
    reference: Sequence[Any] | np.ndarray, current: Sequence[Any] | np.ndarray, *, bins: int = 10
) -> np.ndarray:
    """Jensen-Shannon distance (base 2) per feature on reference-quantile bins (= ``jensen_shannon`` per row)."""
    return _binned(reference, current, bins, PSI_EPS)[1]


# --------------------------------------------------------------------------- chi-square
@njit(cache=True, error_model="numpy")
def _chi2_rows(ref: np.ndarray, cur: np.ndarray, correction: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k, c = ref.shape
    stat = np.zeros(k)
    pval = np.ones(k)
    dof = np.zeros(k, dtype=np.int64)
    for r in range(k):
        rt = 0.0
        ct = 0.0
        cols = 0
        for j in range(c):
            rt += ref[r, j]
            ct += cur[r, j]
            if ref[r, j] + cur[r, j] > 0.0:
                cols += 1
        if cols < 2:
            continue
        total = rt + ct
        d = cols - 1
        s = 0.0
        for j in range(c):
            col = ref[r, j] + cur[r, j]
            if col <= 0.0:
                continue
            for obs, row_total in ((ref[r, j], rt), (cur[r, j], ct)):
                exp = row_total * col / total
                diff = obs - exp
                if correction and d == 1:  # Yates, as scipy applies it for one degree of freedom
                    mag = abs(diff) if abs(diff) < 0.5 else 0.5
                    diff = diff - mag if diff > 0 else diff + mag
                s += diff * diff / exp
        stat[r] = s
        dof[r] = d
        pval[r] = _gammaincc(d / 2.0, s / 2.0) if s > 0.0 else 1.0
    return stat, pval, dof


def chi2_drift_batched(
    reference_counts: Any, current_counts: Any, *, correction: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chi-square homogeneity test per feature on aligned count rows: (statistics, p-values, dofs).

    Each row equals ``chi2_drift`` on that row (categories empty in both are dropped;
    fewer than two non-empty categories gives (0, 1, 0)).
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    if ref.ndim != 2 or ref.shape != cur.shape:
        raise ValueError(f"counts must be two aligned 2-D arrays, got {ref.shape} and {cur.shape}")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(cur))) or np.any(ref < 0) or np.any(cur < 0):
        raise ValueError("counts must be finite and non-negative")
    if np.any(ref.sum(axis=1) <= 0) or np.any(cur.sum(axis=1) <= 0):
        raise ValueError("every row of both count arrays needs a positive total")
    return _chi2_rows(np.ascontiguousarray(ref), np.ascontiguousarray(cur), bool(correction))


# --------------------------------------------------------------------------- drift windows


def update_drift_windows(rules: Sequence[DriftWindows], times_us: Any, values: Sequence[Any]) -> list[list[Finding]]:
    """``[rule.update(times_us, v) for rule, v in zip(rules, values)]`` with one KS call for every window.

    Same findings, ``clean`` and state as the rules' own updates. A window is let through
    on the batched KS p-value alone where :func:`~aitrace.detect.drift_monitor.detect_drift`
    would run that same KS test on it (a numeric reference, enough values) and its p-value
    is not below the rule's ``alpha`` (no correction: one feature per call), so it cannot
    drift; every other window (the few that may drift) gets ``detect_drift`` as ``update``
    gives it. That skips the Wasserstein distance and the PSI of every quiet window, which
    were two thirds of a window's cost, and one call per feature.

    >>> import numpy as np
    >>> from aitrace.detect.service import DriftWindows
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(600) * 1000
    >>> a, b = rng.normal(size=600), rng.normal(size=600); b[400:] += 2
    >>> rules = [DriftWindows("a"), DriftWindows("b")]
    >>> [[f.index for f in found] for found in update_drift_windows(rules, t, [a, b])]
    [[], [599]]
    """
    out = []
    for rule, windows in zip(rules, _update_windows(rules, times_us, values), strict=True):
        found, (rule.clean,) = by_chunk(windows, [np.asarray(times_us).size], rule.window)
        out.append(found[0])
    return out


def update_drift_windows_chunks(
    rules: Sequence[DriftWindows], chunks: Sequence[tuple[Any, Sequence[Any]]]
) -> list[list[list[Finding]]]:
    """:func:`update_drift_windows` on each chunk (times, one value array per rule) in turn, in one call:
    per rule, each chunk's findings, and ``cleans`` on each rule its ``clean`` of each chunk (``clean``: the
    last chunk's), with the same state. Windows and dates do not depend on where chunks are cut (a window is
    the next ``window`` finite values, dated by the latest time among them), so the chunks are joined and
    each window given back to the chunk of its last value: one KS call for the windows of all the chunks.
    """
    if not chunks:
        return [[] for _ in rules]
    for _, values in chunks:
        if len(values) != len(rules):
            raise ValueError(f"{len(rules)} rules but {len(values)} value arrays")
    # each chunk's arrays checked against its own times, as update_drift_windows checks a chunk's: joined, one
    # chunk's values short and a later one's long (a client writes the series topic) would line up unnoticed
    each = [np.asarray(t, dtype=np.int64).reshape(-1) for t, _ in chunks]
    flat = [[np.asarray(v, dtype=np.float64).reshape(-1) for v in values] for _, values in chunks]
    for t, arrays in zip(each, flat, strict=True):
        for a in arrays:
            if a.size != t.size:
                raise ValueError(f"times and values differ in length: {t.shape} vs {a.shape}")
    times = np.concatenate(each)
    joined = [np.concatenate([arrays[k] for arrays in flat]) for k in range(len(rules))]
    sizes = [t.size for t in each]
    out = []
    for rule, windows in zip(rules, _update_windows(rules, times, joined), strict=True):
        found, rule.cleans = by_chunk(windows, sizes, rule.window)
        rule.clean = rule.cleans[-1]
        out.append(found)
    return out


def _update_windows(
    rules: Sequence[DriftWindows], times_us: Any, values: Sequence[Any]
) -> list[list[tuple[int, Finding | None]]]:
    """Fold each rule's values in; per rule, every window it completed: (position of its last value, its
    finding, None where it did not drift)."""
    if len(rules) != len(values):
        raise ValueError(f"{len(rules)} rules but {len(values)} value arrays")
    times = np.asarray(times_us, dtype=np.int64).reshape(-1)
    arrays = [_arrays(times, v)[1] for v in values]  # times already an int64 vector: no copy
    starts = [rule.past_reference(a) for rule, a in zip(rules, arrays, strict=True)]
    cut, finite = _cut_all(rules, arrays)
    quiet = _quiet_windows([(rule, w) for rule, windows in zip(rules, cut, strict=True) for w in windows])
    out, k = [], 0
    parts: dict[tuple[int, ...], tuple[list[int], int | None]] = {}  # of finite rows cut alike: the same
    for rule, windows, a, start, whole in zip(rules, cut, arrays, starts, finite, strict=True):
        done: list[tuple[int, Finding | None]] = []
        ends = [i for i, _ in windows]
        key = (start, *ends)
        part = parts.get(key) if whole else None
        if part is None:
            part = part_latest(times, a, start, ends, whole)
            if whole:
                parts[key] = part
        for (i, cur), time_us in zip(windows, rule.dates(*part), strict=True):
            verdict = None if quiet[k] else _verdict(rule, cur)
            k += 1
            drifted = verdict is not None and verdict.drifted
            done.append((i, rule._finding(rule.n_seen + i, time_us, verdict) if drifted else None))
        rule.n_seen += int(a.size)
        out.append(done)
    return out


def _cut_all(rules: Sequence[DriftWindows], arrays: list[np.ndarray]) -> tuple[list[list[_Window]], list[bool]]:
    """Every rule's completed windows, and whether each rule's values are all finite. Rules in step (same
    window, same fill of reference and current window) whose values are all finite are cut together, as
    rows of one block: the same cut for each, with numpy's work per group rather than per feature."""
    cut: list[list[_Window]] = [[] for _ in rules]
    if not arrays:
        return cut, []
    block = np.stack(arrays)  # every array has the times' length (_arrays checked it)
    finite = np.isfinite(block).all(axis=1).tolist()
    together: dict[tuple[int, int, int], list[int]] = {}
    for k, rule in enumerate(rules):
        if finite[k]:
            together.setdefault((rule.window, rule.ref.size, rule.cur.size), []).append(k)
        else:
            cut[k] = rule.cut(arrays[k])
    for rows in together.values():
        rows_block = block if len(rows) == len(rules) else block[rows]  # all in step (the usual chunk): no copy
        for k, windows in zip(rows, _cut_together([rules[k] for k in rows], rows_block), strict=True):
            cut[k] = windows
    return cut, finite


def _cut_together(rules: list[DriftWindows], block: np.ndarray) -> list[list[_Window]]:
    """``[rule.cut(row) for rule, row in zip(rules, block)]`` for rules in step and finite rows."""
    first, n = rules[0], block.shape[1]
    pos = min(n, max(0, first.window - first.ref.size))
    if pos:
        refs = np.concatenate((np.stack([r.ref for r in rules]), block[:, :pos]), axis=1)
        for rule, row in zip(rules, refs, strict=True):
            rule.set_reference(row)
    out: list[list[_Window]] = [[] for _ in rules]
    cur = np.stack([r.cur for r in rules])
    while n - pos >= first.window - cur.shape[1]:
        take = first.window - cur.shape[1]
        full = np.concatenate((cur, block[:, pos : pos + take]), axis=1)
        pos += take
        for windows, row in zip(out, full, strict=True):
            windows.append((pos - 1, row))
        cur = full[:, :0]
    for rule, row in zip(rules, np.concatenate((cur, block[:, pos:]), axis=1), strict=True):
        rule.cur = row
    return out


_DRIFT_CONFIG = DriftConfig()  # frozen: detect_drift's defaults, made once


def _quiet_windows(windows: list[tuple[DriftWindows, _Window]]) -> list[bool]:
    """Per window: whether detect_drift's own KS test keeps it below the rule's level (so no drift).

    Windows of one size are stacked and sorted in one call; each rule's reference is sorted
    once (it no longer changes), and its distinct values (what ``_is_categorical`` counts with
    ``np.unique``) are the steps of that sorted row, as the windows hold finite values only;
    both are kept on the rule, so a full reference is neither sorted nor counted again per window.
    That replaced two ``np.unique`` and two sorts per window.
    """
    cfg = _DRIFT_CONFIG
    sized: dict[tuple[int, int], list[int]] = {}
    for n, (rule, (_, cur)) in enumerate(windows):
        if min(rule.ref.size, cur.size) >= cfg.min_samples:
            sized.setdefault((rule.ref.size, cur.size), []).append(n)
    quiet = [False] * len(windows)
    for rows in sized.values():
        tested = [n for n in rows if windows[n][0].reference_distinct() > cfg.max_categories_numeric]
        if tested:
            refs = np.stack([windows[n][0].sorted_reference() for n in tested])
            _, pvalues = ks_2samp_sorted_reference(refs, np.stack([windows[n][1][1] for n in tested]))
            for n, p in zip(tested, pvalues.tolist(), strict=True):
                quiet[n] = p >= windows[n][0].alpha
    return quiet


def _verdict(rule: DriftWindows, cur: np.ndarray) -> Any:
    return detect_drift({rule.feature: rule.ref}, {rule.feature: cur}, alpha=rule.alpha, correction="none")[0]
