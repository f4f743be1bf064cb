"""The anomaly scoring kernel: one Numba loop over a chunk, state in two flat arrays.

:func:`_score_chunk` scores each point against the windows of
:mod:`aitrace.detect.sorted_window` and updates them; the reason codes it writes
(``CODE_*``, named in :data:`CODE_NAMES`) and the layout of the float and integer
state vectors live here with it. The method, its parameters and how the defaults
were chosen are in :mod:`aitrace.detect.anomaly`, whose
:class:`~aitrace.detect.anomaly.AnomalyDetector` owns the state and calls the kernel
through :func:`_score_kernel`, on its one float buffer.

Numba's on-disk cache keys a kernel on its own source file only: the helpers of
:mod:`aitrace.detect.sorted_window` are inlined here, so a change to them must come
with a change to this file, or a warm cache keeps running the old code. That
includes the tests' cache: tests/conftest.py sets NUMBA_CACHE_DIR, which skips the
source stamp of :mod:`aitrace.detect._cache`.
"""

from __future__ import annotations

import math

import numpy as np
from aitrace.detect import _cache  # noqa: F401  (sets the Numba cache dir before any @njit)
from aitrace.detect.sorted_window import _NET16, _median_sorted, _merge_block, _push, _robust_sd
from numba import njit

# Reason codes written by the kernel (one int8 per point).
CODE_NONE = 0
CODE_SPIKE = 1
CODE_DIP = 2
CODE_LEVEL_UP = 3
CODE_LEVEL_DOWN = 4
CODE_VARIANCE = 5
CODE_FLAT = 6
CODE_NAN = 7
CODE_INF = 8

CODE_NAMES = {
    CODE_NONE: "none",
    CODE_SPIKE: "spike",
    CODE_DIP: "dip",
    CODE_LEVEL_UP: "level_shift",
    CODE_LEVEL_DOWN: "level_shift",
    CODE_VARIANCE: "variance_change",
    CODE_FLAT: "flat",
    CODE_NAN: "nan",
    CODE_INF: "inf",
}

# Layout of the float and integer state vectors the kernel mutates in place.
_F_LAST, _F_RUN_P, _F_SD_L, _F_SD_S, _F_MED_L = range(5)
_N_F = 5
(_I_NL, _I_HEADL, _I_NS, _I_HEADS, _I_HAS_LAST, _I_RUN, _I_REPEATS, _I_SEEN, _I_PENDING, _I_NSORTED, _I_NEVICTED) = (
    range(11)
)
_N_I = 11

# The long window's median and noise scale move slowly and cost more than
# everything else per point, so they are brought up to date every _REFRESH
# accepted points. The cadence counts accepted points, so chunked and one-shot
# scoring agree exactly.
_REFRESH = 16

# Beyond this magnitude differences of two values can overflow float64: such values
# are scored like +-Inf (1.0, reason "inf") and kept out of the windows.
MAX_ABS = 1e300


@njit(cache=True, inline="always", error_model="numpy")
def _squash(s: float, inv_h: float) -> float:
    """r**2 / (r**2 + 1) with r = s / h: 0.5 at s == h, 1.0 only in the floating-point limit.

    Takes 1 / h so that the per-point cost is one division.
    """
    r = s * inv_h
    r2 = r * r
    if r2 > 1e300:  # s**2 would overflow: the ratio is 1 to double precision long before
        return 1.0
    return r2 / (r2 + 1.0)


# --------------------------------------------------------------------------- the kernel
@njit(cache=True, inline="always", error_model="numpy")
def _block_terms(med_l: float, sd_l: float, sd_s: float, var_h: float) -> tuple[float, float]:
    """1 / noise scale and the variance-change score; both change only when the long window does."""
    floor = 1e-12 * abs(med_l)  # below this the window is constant for practical purposes
    if floor < 1e-300:
        floor = 1e-300
    scale = sd_l if sd_l > floor else floor
    var_score = 0.0
    if sd_s > sd_l > floor:
        var_score = _squash(math.log(sd_s / sd_l), 1.0 / var_h)
    return 1.0 / scale, var_score


@njit(cache=True, error_model="numpy")
def _score_chunk(
    x: np.ndarray,
    ring_l: np.ndarray,
    sort_l: np.ndarray,
    evicted: np.ndarray,
    ring_s: np.ndarray,
    sort_s: np.ndarray,
    fs: np.ndarray,
    ist: np.ndarray,
    threshold: float,
    shift_h: float,
    var_h: float,
    flat_h: float,
    min_periods: int,
    out_score: np.ndarray,
    out_code: np.ndarray,
    out_z: np.ndarray,
    out_level: np.ndarray,
    out_noise: np.ndarray,
    details: bool,
) -> None:
    w = ring_l.shape[0]
    m = ring_s.shape[0]
    added = np.empty(_REFRESH)
    # a value must reach the sorted copy before it can be evicted from it
    block = _REFRESH if w >= _REFRESH else w
    inv_threshold, inv_shift_h, inv_flat_h = 1.0 / threshold, 1.0 / shift_h, 1.0 / flat_h
    scratch = np.empty(w + 2 * _REFRESH + 3)  # see _merge_block
    # Scalars live in locals for the loop: stores into the state arrays would
    # alias the windows and force LLVM to reload everything on every point.
    last, run_p, sd_l, sd_s, med_l = fs[_F_LAST], fs[_F_RUN_P], fs[_F_SD_L], fs[_F_SD_S], fs[_F_MED_L]
    nl, headl, ns, heads = ist[_I_NL], ist[_I_HEADL], ist[_I_NS], ist[_I_HEADS]
    has_last, run, repeats = ist[_I_HAS_LAST], ist[_I_RUN], ist[_I_REPEATS]
    seen, pending, n_sorted, n_evicted = ist[_I_SEEN], ist[_I_PENDING], ist[_I_NSORTED], ist[_I_NEVICTED]
    inv_scale, var_score = _block_terms(med_l, sd_l, sd_s, var_h)
    for i in range(x.shape[0]):
        xi = x[i]
        if not abs(xi) <= MAX_ABS:  # NaN, +-Inf, and values whose differences would overflow
            out_score[i] = 1.0
            out_code[i] = CODE_NAN if math.isnan(xi) else CODE_INF
            if details:
                out_z[i] = 0.0 if math.isnan(xi) else xi
                out_level[i] = math.nan
                out_noise[i] = math.nan
            continue
        xi = xi + 0.0  # -0.0 -> 0.0 so the windows never hold both zeros
        score = 0.0
        code = CODE_NONE
        z = 0.0
        lv = 0.0
        med_s = math.nan
        point_score = 0.0
        repeat = has_last == 1 and xi == last

        if n_sorted >= min_periods:
            med_s = _median_sorted(sort_s, ns)
            # spike / dip: the point against the recent level, in units of the long window's noise
            z = (xi - med_s) * inv_scale
            point_score = _squash(z, inv_threshold)  # 0.0 at z == 0, as initialised
            score = point_score
            code = CODE_NONE if z == 0.0 else CODE_SPIKE if z > 0 else CODE_DIP

            # level shift: the recent level against the long one. Selects, not branches:
            # whether the point's or the level's evidence is larger is a coin flip on noise.
            lv = (med_s - med_l) * inv_scale
            sc = _squash(lv, inv_shift_h)
            level_code = CODE_LEVEL_UP if lv > 0 else CODE_LEVEL_DOWN
            better = sc > score
            code = level_code if better else code
            score = sc if better else score

            # variance increase: the recent spread against the long one (changes only per block)
            better = var_score > score
            code = CODE_VARIANCE if better else code
            score = var_score if better else score

        # flat line: evidence grows with the run length, weighted by how rare repeats were
        if repeat:
            if run == 0:
                pairs = nl - 1 if nl > 1 else 0
                run_p = (repeats + 0.5) / (pairs + 1.0)
            run += 1
            if n_sorted >= min_periods:
                sc = _squash(-math.log(run_p) * run, inv_flat_h)
                if sc > score:
                    score = sc
                    code = CODE_FLAT
        else:
            run = 0

        # Level and variance evidence is shared by neighbouring points; the point's own
        # residual breaks the ties so that scores still rank within an incident (a select:
        # as a branch it mispredicted wherever level and point evidence trade places).
        tie = (code != CODE_SPIKE) & (code != CODE_DIP) & (point_score > 0.0)
        tied = score + (1.0 - score) * 1e-3 * point_score
        score = tied if tie else score
        out_score[i] = score
        out_code[i] = code
        if details:  # loop-invariant: LLVM unswitches it, so scores alone skip these stores
            # a level code's z is the level's (the recent median against the long one), not the
            # point's: the point that tips a level shift may be a normal one, e.g. the first after a burst
            out_z[i] = lv if (code == CODE_LEVEL_UP) | (code == CODE_LEVEL_DOWN) else z
            out_level[i] = med_s
            out_noise[i] = 1.0 / inv_scale if n_sorted >= min_periods and inv_scale > 0.0 else math.nan

        # ---- accept the point; keep the count of exact repeats among adjacent window pairs
        if nl == w:
            oldest = ring_l[headl]
            if oldest == ring_l[headl + 1 if headl + 1 < w else 0]:
                repeats -= 1
            evicted[n_evicted] = oldest
            n_evicted += 1
        if repeat:
            repeats += 1
        ring_l[headl] = xi
        nl = nl + 1 if nl < w else nl
        headl = headl + 1 if headl + 1 < w else 0
        _push(ring_s, sort_s, ns, heads, xi)
        ns = ns + 1 if ns < m else ns
        heads = heads + 1 if heads + 1 < m else 0
        last = xi
        has_last = 1
        seen += 1
        pending += 1

        # The long window's sorted copy, median and MAD follow in blocks of
        # _REFRESH points: one linear merge instead of an O(window) shift per point.
        if pending == block:
            if ns == pending:  # the recent window holds just the block's values, sorted already
                n_sorted = _merge_block(sort_l, n_sorted, evicted, n_evicted, sort_s, pending, scratch, _NET16, True)
            else:
                # (a % w per value compiled to an integer division)
                start = headl - pending if headl >= pending else headl - pending + w
                for k in range(pending):
                    at = start + k
                    added[k] = ring_l[at if at < w else at - w]
                n_sorted = _merge_block(sort_l, n_sorted, evicted, n_evicted, added, pending, scratch, _NET16, False)
            pending = 0
            n_evicted = 0
            med_l = _median_sorted(sort_l, n_sorted)
            sd_l = _robust_sd(sort_l, n_sorted, med_l)
            sd_s = _robust_sd(sort_s, ns, _median_sorted(sort_s, ns))
            inv_scale, var_score = _block_terms(med_l, sd_l, sd_s, var_h)

    fs[_F_LAST], fs[_F_RUN_P], fs[_F_SD_L], fs[_F_SD_S], fs[_F_MED_L] = last, run_p, sd_l, sd_s, med_l
    ist[_I_NL], ist[_I_HEADL], ist[_I_NS], ist[_I_HEADS] = nl, headl, ns, heads
    ist[_I_HAS_LAST], ist[_I_RUN], ist[_I_REPEATS] = has_last, run, repeats
    ist[_I_SEEN], ist[_I_PENDING], ist[_I_NSORTED], ist[_I_NEVICTED] = seen, pending, n_sorted, n_evicted


# Layout of the parameter vector _score_kernel reads: a detector builds it once.
_P_THRESHOLD, _P_SHIFT_H, _P_VAR_H, _P_FLAT_H, _P_MIN_PERIODS, _P_WINDOW = range(6)


def buffer_size(w: int) -> int:
    """Floats in a detector's one buffer at window ``w`` (laid out as :func:`_views` reads it)."""
    return 2 * w + _REFRESH + 2 * (w // 4) + _N_F


@njit(cache=True, inline="always", error_model="numpy")
def _views(buf: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ring_l, sort_l, evicted, ring_s, sort_s and the float scalars, in a detector's one buffer.

    The kernels take the buffer rather than six arrays: Numba's dispatch checks every
    argument's type on each call, and 19 arguments cost about as much as scoring 10 points.
    """
    m = w // 4
    end = 2 * w + _REFRESH
    return buf[:w], buf[w : 2 * w], buf[2 * w : end], buf[end : end + m], buf[end + m : end + 2 * m], buf[end + 2 * m :]


@njit(cache=True, error_model="numpy")
def _score_kernel(
    x: np.ndarray,
    buf: np.ndarray,
    ist: np.ndarray,
    params: np.ndarray,
    out_score: np.ndarray,
    out_code: np.ndarray,
    out_z: np.ndarray,
    out_level: np.ndarray,
    out_noise: np.ndarray,
    details: bool,
) -> None:
    """_score_chunk on a detector's buffer and parameter vector."""
    ring_l, sort_l, evicted, ring_s, sort_s, fs = _views(buf, int(params[_P_WINDOW]))
    _score_chunk(
        x,
        ring_l,
        sort_l,
        evicted,
        ring_s,
        sort_s,
        fs,
        ist,
        params[_P_THRESHOLD],
        params[_P_SHIFT_H],
        params[_P_VAR_H],
        params[_P_FLAT_H],
        int(params[_P_MIN_PERIODS]),
        out_score,
        out_code,
        out_z,
        out_level,
        out_noise,
        details,
    )


# --------------------------------------------------------------------------- state (de)serialization
# One compiled call each way: restoring or saving a state per Kafka batch from numpy
# slices, copies and sorts cost several times what scoring a short chunk does.
# Why _restore_windows refused a state (0: it did not).
RESTORE_ERRORS = {
    1: "window sizes out of bounds, or not matching the number of floats",
    2: "non-finite entries",
    3: "pending or evicted counts beyond a block",
    4: "recent window or points seen do not match the long window",
    5: "bad run/repeat counters",
    6: "the sorted window's size does not match the long window",
}


@njit(cache=True, error_model="numpy")
def _state_problem(n_floats: int, ist: np.ndarray, w: int, m: int) -> int:
    """The first reason (a key of RESTORE_ERRORS) the kernels could not run on this state, else 0."""
    nl, ns, ne, pending = ist[_I_NL], ist[_I_NS], ist[_I_NEVICTED], ist[_I_PENDING]
    if not (0 <= nl <= w and 0 <= ns <= m and ne >= 0 and n_floats == _N_F + nl + ne + ns):
        return 1
    if not (0 <= pending < (_REFRESH if w >= _REFRESH else w) and ne <= pending and pending <= nl):
        return 3
    if ns != (nl if nl < m else m) or ist[_I_SEEN] < nl:
        return 4
    bad_last = ist[_I_HAS_LAST] != 0 and ist[_I_HAS_LAST] != 1
    if bad_last or ist[_I_RUN] < 0 or not 0 <= ist[_I_REPEATS] <= (nl - 1 if nl > 1 else 0):
        return 5
    if ist[_I_NSORTED] != nl - pending + ne:
        return 6
    return 0


@njit(cache=True, error_model="numpy")
def _restore_windows(flat: np.ndarray, buf: np.ndarray, ist: np.ndarray, w: int) -> int:
    """Fill a detector's buffer (window ``w``) from the state layout ``floats | long | evicted |
    recent`` (rings oldest first), with sizes and counters already in ``ist``; rebuild both sorted copies.

    Checks first everything the scoring kernel, which does no bounds checks, relies on,
    and returns the reason (a key of RESTORE_ERRORS) if a check fails, else 0. The long
    window's sorted copy holds every value but the newest ``pending`` (not merged yet)
    plus the ``evicted`` ones (not yet removed); a multiset has one sorted order.
    """
    ring_l, sort_l, evicted, ring_s, sort_s, fs = _views(buf, w)
    m = ring_s.shape[0]
    problem = _state_problem(flat.shape[0], ist, w, m)
    if problem:
        return problem
    for t in range(flat.shape[0]):
        if not math.isfinite(flat[t]):
            return 2
    nl, ne, ns, pending = ist[_I_NL], ist[_I_NEVICTED], ist[_I_NS], ist[_I_PENDING]
    ist[_I_HEADL] = nl % w  # rings are stored oldest first: the head is the next slot to overwrite
    ist[_I_HEADS] = ns % m
    fs[:] = flat[:_N_F]
    ring_l[:nl] = flat[_N_F : _N_F + nl]
    evicted[:ne] = flat[_N_F + nl : _N_F + nl + ne]
    ring_s[:ns] = flat[_N_F + nl + ne :]
    sort_s[:ns] = flat[_N_F + nl + ne :]
    sort_s[:ns].sort()
    merged = nl - pending
    sort_l[:merged] = ring_l[:merged]
    sort_l[merged : merged + ne] = evicted[:ne]
    sort_l[: merged + ne].sort()
    return 0


@njit(cache=True, error_model="numpy")
def _pack_windows(buf: np.ndarray, ist: np.ndarray, w: int) -> np.ndarray:
    """The floats of a state in the layout :func:`_restore_windows` reads, rings oldest first."""
    ring_l, _, evicted, ring_s, _, fs = _views(buf, w)
    nl, headl, ns, heads, ne = ist[_I_NL], ist[_I_HEADL], ist[_I_NS], ist[_I_HEADS], ist[_I_NEVICTED]
    out = np.empty(_N_F + nl + ne + ns)
    out[:_N_F] = fs
    at = _N_F
    start = headl if nl == ring_l.shape[0] else 0  # a full ring's oldest value is at its head
    for t in range(nl):
        k = start + t
        out[at + t] = ring_l[k if k < nl else k - nl]
    at += nl
    out[at : at + ne] = evicted[:ne]
    at += ne
    start = heads if ns == ring_s.shape[0] else 0
    for t in range(ns):
        k = start + t
        out[at + t] = ring_s[k if k < ns else k - ns]
    return out
