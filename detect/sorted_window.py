"""Sorted windows: the rolling median and robust noise scale under the anomaly kernel.

A window is a ring of its values in arrival order plus a sorted copy. These Numba
helpers keep the sorted copy current (one insert or replace per point, or one
linear merge per block of points for the long window, its blocks sorted by a
branch-free network), and read the median, the MAD and the robust sd off it in
O(log n). :func:`aitrace.detect.anomaly_kernel._score_chunk` is their only caller;
the method is described in :mod:`aitrace.detect.anomaly`.
"""

from __future__ import annotations

import math

import numpy as np
from aitrace.detect import _cache  # noqa: F401  (sets the Numba cache dir before any @njit)
from numba import njit

_MAD_TO_SD = 1.482602218505602  # 1 / Phi^-1(3/4): MAD of a normal -> its sd


# --------------------------------------------------------------------------- sorted windows
@njit(cache=True, inline="always", error_model="numpy")
def _lower_bound(buf: np.ndarray, n: int, x: float) -> int:
    """First index of buf[:n] (sorted) whose value is >= x.

    Branch-free halving (Khuong & Morin's layout study): a data-dependent branch
    here mispredicts about half the time and dominated the kernel's cost.
    """
    if n == 0:
        return 0
    base = 0
    length = n
    while length > 1:
        half = length >> 1
        base += half * (buf[base + half] < x)
        length -= half
    return base + (buf[base] < x)


@njit(cache=True, inline="always", error_model="numpy")
def _sorted_insert(buf: np.ndarray, n: int, x: float) -> None:
    """Insert x into buf[:n] (sorted); the caller grows n."""
    i = n
    while i > 0 and buf[i - 1] > x:
        buf[i] = buf[i - 1]
        i -= 1
    buf[i] = x


@njit(cache=True, inline="always", error_model="numpy")
def _median_sorted(buf: np.ndarray, n: int) -> float:
    h = n >> 1
    if n & 1:
        return buf[h]
    return 0.5 * buf[h - 1] + 0.5 * buf[h]  # halves first: no overflow near the float limit


@njit(cache=True, inline="always", error_model="numpy")
def _dev(buf: np.ndarray, s: int, med: float, side: int, j: int) -> float:
    # j-th smallest absolute deviation on one side of the split point s
    if side == 0:
        return med - buf[s - 1 - j]
    return buf[s + j] - med


@njit(cache=True, inline="always", error_model="numpy")
def _split(buf: np.ndarray, n: int, med: float, s: int, k: int) -> int:
    """How many of the k + 1 smallest |buf[i] - med| lie left of s (see _kth_deviation).

    The first t in [lo, hi] whose left deviation is not below the right one (hi if
    none), found by halving without a data-dependent branch, as in _lower_bound: the
    comparison went either way about half the time.
    """
    lo = max(0, k + 1 - (n - s))
    hi = min(k + 1, s)
    t = lo
    length = hi - lo + 1
    while length > 1:
        half = length >> 1
        u = t + half - 1
        t += half * (_dev(buf, s, med, 0, u) < _dev(buf, s, med, 1, k - u))
        length -= half
    return t


@njit(cache=True, inline="always", error_model="numpy")
def _largest_taken(buf: np.ndarray, s: int, med: float, k: int, t: int) -> float:
    # the k-th smallest deviation: the larger of the last taken on each side
    best = -np.inf
    if t > 0:
        best = _dev(buf, s, med, 0, t - 1)
    if k - t >= 0:
        v = _dev(buf, s, med, 1, k - t)
        if v > best:
            best = v
    return best


@njit(cache=True, error_model="numpy")
def _kth_deviation(buf: np.ndarray, n: int, med: float, s: int, k: int) -> float:
    """k-th smallest |buf[i] - med| (0-based) in O(log n).

    Left of s the deviations grow as we walk down, right of s as we walk up: two
    sorted sequences, so the k-th of their union is a binary search on how many
    come from the left one.
    """
    return _largest_taken(buf, s, med, k, _split(buf, n, med, s, k))


@njit(cache=True, error_model="numpy")
def _mad_sorted(buf: np.ndarray, n: int, med: float) -> float:
    s = _lower_bound(buf, n, med)
    h = n >> 1
    if n & 1:
        return _kth_deviation(buf, n, med, s, h)
    # The h-th smallest deviation follows the (h-1)-th: the smaller of the next one on
    # each side of the split, so one search serves both.
    k = h - 1
    t = _split(buf, n, med, s, k)
    above = np.inf
    if t < s:
        above = _dev(buf, s, med, 0, t)
    if k + 1 - t < n - s:
        v = _dev(buf, s, med, 1, k + 1 - t)
        if v < above:
            above = v
    return 0.5 * (_largest_taken(buf, s, med, k, t) + above)


@njit(cache=True, error_model="numpy")
def _rms_dev(buf: np.ndarray, n: int, med: float) -> float:
    # scaled by the largest deviation so that squaring cannot overflow
    big = max(abs(buf[0] - med), abs(buf[n - 1] - med))
    if big == 0.0:
        return 0.0
    acc = 0.0
    for i in range(n):
        d = (buf[i] - med) / big
        acc += d * d
    return big * math.sqrt(acc / n)


@njit(cache=True, error_model="numpy")
def _robust_sd(buf: np.ndarray, n: int, med: float) -> float:
    mad = _mad_sorted(buf, n, med)
    if mad > 0.0:
        return _MAD_TO_SD * mad
    # More than half the window equals the median (counts, quantized or sparse
    # series). The RMS deviation from the median still sees the departures and,
    # unlike the mean absolute deviation, is not fooled into calling the usual
    # 1s and 2s of a sparse count series outliers.
    return _rms_dev(buf, n, med)


@njit(cache=True, inline="always", error_model="numpy")
def _replace(buf: np.ndarray, n: int, old: float, new: float) -> None:
    """Replace one copy of old by new in buf[:n] (sorted, holding old).

    Both ranks are counts of smaller values (the lower bounds, buf being sorted),
    found without a data-dependent branch; then the values between the two slots
    move one step towards old's slot. Kernel at window 64, M points/s, one process:
    these fixed-length loops 12.5, shifting only the moving values 11.9 (the length
    mispredicts), the direction a select as well 10.9; and in an earlier round one
    select loop carrying the previous value 10.4 against 11.3 for the short shift.
    Equal values are bit-identical (no -0.0, no NaN in a window), so which copy of
    old leaves does not matter.
    """
    p = 0
    c = 0
    for i in range(n):
        p += buf[i] < old
        c += buf[i] < new
    # Every slot is rewritten (its own value or its neighbour's) so that the loops
    # have a fixed length and vectorize; only the direction is a branch.
    if new > old:  # old is among the c smaller values: slots p..c-2 move down, new goes to c-1
        for i in range(n - 1):
            buf[i] = buf[i + 1] if p <= i < c - 1 else buf[i]
        buf[c - 1] = new
    else:  # slots c..p-1 move up, new goes to c
        for i in range(n - 1, 0, -1):
            buf[i] = buf[i - 1] if c < i <= p else buf[i]
        buf[c] = new


@njit(cache=True, inline="always", error_model="numpy")
def _push(ring: np.ndarray, srt: np.ndarray, n: int, head: int, x: float) -> None:
    """Write x at ring[head] and into the sorted copy, evicting ring[head] when full."""
    if n < ring.shape[0]:
        _sorted_insert(srt, n, x)
    else:
        _replace(srt, n, ring[head], x)
    ring[head] = x


def _batcher_pairs(n: int) -> np.ndarray:
    """Comparator pairs of Batcher's odd-even merge sort for n (a power of two) inputs."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64)


# 63 comparators: sorts a full block without a single data-dependent branch.
_NET16 = _batcher_pairs(16)


@njit(cache=True, inline="always", error_model="numpy")
def _network_sort16(a: np.ndarray, pairs: np.ndarray) -> None:
    for t in range(pairs.shape[0]):
        i = pairs[t, 0]
        j = pairs[t, 1]
        x = a[i]
        y = a[j]
        a[i] = x if x < y else y
        a[j] = y if x < y else x


@njit(cache=True, inline="always", error_model="numpy")
def _insertion_sort(a: np.ndarray, n: int) -> None:
    for i in range(1, n):
        v = a[i]
        j = i
        while j > 0 and a[j - 1] > v:
            a[j] = a[j - 1]
            j -= 1
        a[j] = v


@njit(cache=True, inline="always", error_model="numpy")
def _keep(srt: np.ndarray, t: int, ev: np.ndarray, j: int, kept: np.ndarray, o: int) -> tuple[int, int]:
    """One step of removing ev (sorted, +inf after its end) from srt: srt[t] joins kept[:o]
    unless it matches ev[j], whose one copy then leaves. Returns the new o and j."""
    v = srt[t]
    hit = v == ev[j]
    kept[o] = v  # overwritten by the next kept value when v leaves
    return o + 1 - hit, j + hit


@njit(cache=True, error_model="numpy")
def _merge_block(
    srt: np.ndarray,
    n: int,
    evicted: np.ndarray,
    ne: int,
    added: np.ndarray,
    na: int,
    scratch: np.ndarray,
    net: np.ndarray,
    added_sorted: bool,
) -> int:
    """Remove evicted[:ne] from srt[:n] and merge added[:na] in one linear pass each; return the new size.

    evicted, and added unless added_sorted, are sorted in place (they hold at most
    _REFRESH values); scratch holds at least n + 2 * _REFRESH + 3 floats. Removal and
    merge are branch-free, with +inf ending each input (windows hold finite values
    only): the compare-and-branch merge mispredicted on about every value it moved.
    """
    # Full blocks (the steady state) go through the sorting network: insertion sort's
    # mispredicted branches cost about a fifth of the whole kernel.
    if ne == 16:
        _network_sort16(evicted, net)
    else:
        _insertion_sort(evicted, ne)
    if added_sorted:
        pass
    elif na == 16:
        _network_sort16(added, net)
    else:
        _insertion_sort(added, na)
    ev = scratch[n + 1 : n + ne + 2]
    ad = scratch[n + ne + 2 : n + ne + na + 3]
    for t in range(ne):
        ev[t] = evicted[t]
    ev[ne] = np.inf
    for t in range(na):
        ad[t] = added[t]
    ad[na] = np.inf
    # The removal runs ne values ahead of the merge in the same loop (no more than ne
    # values leave, so each kept value is in place before the merge reads it): the two
    # chains of loads then overlap (+3% on the kernel, on real and on normal series).
    lead = ne
    j = 0
    o = 0
    for t in range(lead):
        o, j = _keep(srt, t, ev, j, scratch, o)
    if lead == n:
        scratch[o] = np.inf
    k = 0
    j_add = 0
    for t in range(n - ne + na):
        c = t + lead
        if c < n:
            o, j = _keep(srt, c, ev, j, scratch, o)
            if c == n - 1:
                scratch[o] = np.inf
        a = ad[j_add]
        b = scratch[k]
        take = a < b
        srt[t] = a if take else b  # the merge writes behind the removal's reads
        j_add += take
        k += 1 - take
    return n - ne + na
