"""The faster anomaly kernel gives bit for bit the scores, reason codes, diagnostics and state of the
kernel it replaced (main at a172a77, kept below as the reference), on real series (SKAB pump sensors
when ../shared/data is present, this machine's telemetry in bench/data), on awkward synthetic input
(NaN, Inf, constant, quantized, huge, -0.0) and across random chunkings with state round trips."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aitrace.detect.anomaly import AnomalyDetector
from aitrace.detect.anomaly_kernel import (
    _F_LAST,
    _F_MED_L,
    _F_RUN_P,
    _F_SD_L,
    _F_SD_S,
    _I_HAS_LAST,
    _I_HEADL,
    _I_HEADS,
    _I_NEVICTED,
    _I_NL,
    _I_NS,
    _I_NSORTED,
    _I_PENDING,
    _I_REPEATS,
    _I_RUN,
    _I_SEEN,
    _REFRESH,
    CODE_DIP,
    CODE_FLAT,
    CODE_INF,
    CODE_LEVEL_DOWN,
    CODE_LEVEL_UP,
    CODE_NAN,
    CODE_NONE,
    CODE_SPIKE,
    CODE_VARIANCE,
    MAX_ABS,
    _block_terms,
    _squash,
)
from aitrace.detect.sorted_window import (
    _NET16,
    _dev,
    _insertion_sort,
    _lower_bound,
    _median_sorted,
    _network_sort16,
    _rms_dev,
    _robust_sd,
    _sorted_insert,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numba import njit

ROOT = Path(__file__).resolve().parent.parent
TELEMETRY = ROOT / "bench" / "data" / "telemetry-vm-20261205.csv"
REQUESTS = ROOT / "bench" / "data" / "telemetry-vm-20261205.requests.csv.gz"
SKAB = ROOT.parent / "shared" / "data" / "skab"
_MAD_TO_SD = 1.482602218505602


# ---------------------------------------------------------------- the previous code (reference)
@njit(error_model="numpy")
def old_kth_deviation(buf: np.ndarray, n: int, med: float, s: int, k: int) -> float:
    a = s
    b = n - s
    lo = max(0, k + 1 - b)
    hi = min(k + 1, a)
    while lo < hi:
        t = (lo + hi) >> 1
        if _dev(buf, s, med, 0, t) < _dev(buf, s, med, 1, k - t):
            lo = t + 1
        else:
            hi = t
    t = lo
    best = -np.inf
    if t > 0:
        best = _dev(buf, s, med, 0, t - 1)
    if k - t >= 0:
        v = _dev(buf, s, med, 1, k - t)
        if v > best:
            best = v
    return best


@njit(error_model="numpy")
def old_robust_sd(buf: np.ndarray, n: int, med: float) -> float:
    s = _lower_bound(buf, n, med)
    h = n >> 1
    if n & 1:
        mad = old_kth_deviation(buf, n, med, s, h)
    else:
        mad = 0.5 * (old_kth_deviation(buf, n, med, s, h - 1) + old_kth_deviation(buf, n, med, s, h))
    if mad > 0.0:
        return _MAD_TO_SD * mad
    return _rms_dev(buf, n, med)


@njit(error_model="numpy")
def old_push(ring: np.ndarray, buf: np.ndarray, n: int, head: int, new: float) -> None:
    if n < ring.shape[0]:
        _sorted_insert(buf, n, new)
    else:
        old = ring[head]
        i = _lower_bound(buf, n, old)
        if new >= old:
            while i + 1 < n and buf[i + 1] < new:
                buf[i] = buf[i + 1]
                i += 1
        else:
            while i > 0 and buf[i - 1] > new:
                buf[i] = buf[i - 1]
                i -= 1
        buf[i] = new
    ring[head] = new


@njit(error_model="numpy")
def old_merge_block(
    srt: np.ndarray,
    n: int,
    evicted: np.ndarray,
    ne: int,
    added: np.ndarray,
    na: int,
    scratch: np.ndarray,
    net: np.ndarray,
) -> int:
    if ne == 16:
        _network_sort16(evicted, net)
    else:
        _insertion_sort(evicted, ne)
    if na == 16:
        _network_sort16(added, net)
    else:
        _insertion_sort(added, na)
    scratch[:n] = srt[:n]
    j = 0
    k = 0
    o = 0
    for t in range(n):
        v = scratch[t]
        if j < ne and v == evicted[j]:
            j += 1  # one copy of an evicted value leaves
            continue
        while k < na and added[k] < v:
            srt[o] = added[k]
            o += 1
            k += 1
        srt[o] = v
        o += 1
    while k < na:
        srt[o] = added[k]
        o += 1
        k += 1
    return o


@njit(error_model="numpy")
def old_score_kernel(
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
    scratch = np.empty(w)
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
            if z != 0.0:
                point_score = _squash(z, inv_threshold)
                score = point_score
                code = CODE_SPIKE if z > 0 else CODE_DIP

            # level shift: the recent level against the long one
            lv = (med_s - med_l) * inv_scale
            sc = _squash(lv, inv_shift_h)
            if sc > score:
                score = sc
                code = CODE_LEVEL_UP if lv > 0 else CODE_LEVEL_DOWN

            # variance increase: the recent spread against the long one (changes only per block)
            if var_score > score:
                score = var_score
                code = CODE_VARIANCE

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

        if code != CODE_SPIKE and code != CODE_DIP and point_score > 0.0:
            # Level and variance evidence is shared by neighbouring points; the point's own
            # residual breaks the ties so that scores still rank within an incident.
            score = score + (1.0 - score) * 1e-3 * point_score
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
        old_push(ring_s, sort_s, ns, heads, xi)
        ns = ns + 1 if ns < m else ns
        heads = heads + 1 if heads + 1 < m else 0
        last = xi
        has_last = 1
        seen += 1
        pending += 1

        # The long window's sorted copy, median and MAD follow in blocks of
        # _REFRESH points: one linear merge instead of an O(window) shift per point.
        if pending == block:
            for k in range(pending):
                added[k] = ring_l[(headl - pending + k) % w]
            n_sorted = old_merge_block(sort_l, n_sorted, evicted, n_evicted, added, pending, scratch, _NET16)
            pending = 0
            n_evicted = 0
            med_l = _median_sorted(sort_l, n_sorted)
            sd_l = old_robust_sd(sort_l, n_sorted, med_l)
            sd_s = old_robust_sd(sort_s, ns, _median_sorted(sort_s, ns))
            inv_scale, var_score = _block_terms(med_l, sd_l, sd_s, var_h)

    fs[_F_LAST], fs[_F_RUN_P], fs[_F_SD_L], fs[_F_SD_S], fs[_F_MED_L] = last, run_p, sd_l, sd_s, med_l
    ist[_I_NL], ist[_I_HEADL], ist[_I_NS], ist[_I_HEADS] = nl, headl, ns, heads
    ist[_I_HAS_LAST], ist[_I_RUN], ist[_I_REPEATS] = has_last, run, repeats
    ist[_I_SEEN], ist[_I_PENDING], ist[_I_NSORTED], ist[_I_NEVICTED] = seen, pending, n_sorted, n_evicted


class OldDetector(AnomalyDetector):
    """AnomalyDetector driving the reference kernel on the same state arrays."""

    def score(self, values: Any, *, details: bool = True) -> np.ndarray:
        x = np.ascontiguousarray(values, dtype=np.float64)
        n = x.shape[0]
        out, codes = np.empty(n), np.empty(n, dtype=np.int8)
        zs, levels, noises = (np.empty(n), np.empty(n), np.empty(n)) if details else (np.empty(0),) * 3
        p = self.params
        args = (self._ring_l, self._sort_l, self._evicted, self._ring_s, self._sort_s, self._fs, self._is)
        hs = (float(p.threshold), float(p.shift_h), float(p.var_h), float(p.flat_h), int(p.min_periods or 0))
        old_score_kernel(x, *args, *hs, out, codes, zs, levels, noises, details)
        self.last_codes, self.last_z, self.last_level, self.last_noise = codes, zs, levels, noises
        return out


# ---------------------------------------------------------------- comparison
def bits(a: np.ndarray) -> np.ndarray:
    """The array's bytes: equal bits, NaN payloads and signed zeros included."""
    return np.ascontiguousarray(a).view(np.uint8)


def assert_same(new: AnomalyDetector, old: AnomalyDetector, got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_array_equal(bits(got), bits(want))
    for name in ("last_codes", "last_z", "last_level", "last_noise"):
        np.testing.assert_array_equal(bits(getattr(new, name)), bits(getattr(old, name)), err_msg=name)
    assert new.to_state() == old.to_state()
    np.testing.assert_array_equal(bits(new._is), bits(old._is))
    np.testing.assert_array_equal(bits(new._fs), bits(old._fs))
    n_sorted, ns = int(new._is[_I_NSORTED]), int(new._is[_I_NS])
    np.testing.assert_array_equal(bits(new._sort_l[:n_sorted]), bits(old._sort_l[:n_sorted]))
    np.testing.assert_array_equal(bits(new._sort_s[:ns]), bits(old._sort_s[:ns]))


def both_score(x: np.ndarray, window: int, details: bool = True) -> None:
    new, old = AnomalyDetector(window=window), OldDetector(window=window)
    assert_same(new, old, new.score(x, details=details), old.score(x, details=details))


def chunked(x: np.ndarray, window: int, rng: np.random.Generator, max_chunk: int) -> None:
    """Feed both in the same random chunks, each restored from the other's JSON state half the time."""
    new, old = AnomalyDetector(window=window), OldDetector(window=window)
    at = 0
    while at < x.size:
        size = int(rng.integers(1, max_chunk + 1))
        if rng.random() < 0.5:
            state = json.loads(json.dumps(new.to_state()))
            new, old = AnomalyDetector.from_state(state), OldDetector.from_state(state)
        chunk = x[at : at + size]
        assert_same(new, old, new.score(chunk), old.score(chunk))
        at += size


# ---------------------------------------------------------------- real series
def _csv_columns(path: Path, sep: str, skip_last: int = 0) -> list[np.ndarray]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        rows = [line.rstrip("\n").split(sep)[1:] for line in fh.readlines()[1:]]
    cols = list(zip(*rows, strict=True))
    out = []
    for col in cols[: len(cols) - skip_last]:
        try:
            out.append(np.array([float(v) if v else math.nan for v in col]))
        except ValueError:
            continue  # a text column
    return out


def real_series() -> list[np.ndarray]:
    series = _csv_columns(TELEMETRY, ",") + _csv_columns(REQUESTS, ",")
    if SKAB.is_dir():
        for path in sorted(SKAB.glob("*/*.csv"))[::4]:
            series += _csv_columns(path, ";", skip_last=2 if "anomaly-free" not in str(path) else 0)
    return series


REAL = real_series()


@pytest.mark.parametrize("window", [64, 32, 17, 8])
def test_real_series_one_shot_bit_identical(window: int) -> None:
    for x in REAL:
        both_score(x, window)
    both_score(np.concatenate(REAL), window, details=False)


@pytest.mark.parametrize("window", [64, 32, 12])
def test_real_series_random_chunks_and_state_round_trips(window: int) -> None:
    rng = np.random.default_rng(window)
    for x in REAL[::3]:
        chunked(x, window, rng, max_chunk=int(rng.choice([3, 40, 700])))


def test_real_series_cover_every_reason() -> None:
    # The comparison means something only if the real series reach every branch of the kernel.
    codes = set()
    for x in REAL:
        det = AnomalyDetector(window=32)
        det.score(np.r_[x, math.nan, math.inf, 2e300])
        codes |= set(det.last_codes.tolist())
    want = {CODE_NONE, CODE_SPIKE, CODE_DIP, CODE_LEVEL_UP, CODE_LEVEL_DOWN, CODE_VARIANCE, CODE_FLAT}
    assert want | {CODE_NAN, CODE_INF} <= codes


# ---------------------------------------------------------------- awkward input
def awkward(rng: np.random.Generator, n: int) -> np.ndarray:
    """Quantized, constant, tied and wide values with NaN, +-Inf, huge values and signed zeros."""
    x = np.round(rng.standard_t(2, n) * 3) / 4
    x[rng.random(n) < 0.2] = 0.0
    x[rng.random(n) < 0.05] = -0.0
    runs = rng.integers(0, n, 6)
    for r in runs:
        x[r : r + int(rng.integers(5, 120))] = x[r]
    special = [math.nan, math.inf, -math.inf, 1e300, -1e300, 2e300, 1e-310, 5e-324, MAX_ABS, -MAX_ABS]
    picks = rng.integers(0, n, n // 50)
    x[picks] = rng.choice(special, picks.size)
    with np.errstate(over="ignore"):  # 1e300 * 1e12 is +-Inf: one more special value
        x[: n // 7] *= 1e12
    return x


@pytest.mark.parametrize("seed", range(6))
def test_awkward_input_bit_identical(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = awkward(rng, 5000)
    for window in (64, 32, 9, 8):
        both_score(x, window)
        chunked(x, window, rng, max_chunk=60)
    both_score(np.full(300, 7.25), 64)  # constant from the start


@settings(max_examples=80, deadline=None)
@given(
    values=hnp.arrays(
        np.float64,
        st.integers(0, 400),
        elements=st.one_of(
            st.sampled_from([0.0, -0.0, 1.0, 1.5, -2.0, math.nan, math.inf, -math.inf, 1e300, -1e308]),
            st.floats(allow_nan=True, allow_infinity=True),
            st.floats(-10, 10),
        ),
    ),
    window=st.sampled_from([8, 12, 16, 17, 33, 64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_input_bit_identical(values: np.ndarray, window: int, seed: int) -> None:
    both_score(values, window)
    chunked(values, window, np.random.default_rng(seed), max_chunk=20)


@settings(max_examples=300, deadline=None)
@given(
    values=hnp.arrays(
        np.float64,
        st.integers(1, 70),
        elements=st.one_of(st.sampled_from([0.0, 1.0, 2.0, -3.0, 1e-300, 1e300]), st.floats(-1e6, 1e6)),
    ),
)
def test_noise_scale_bit_identical(values: np.ndarray) -> None:
    # ties, repeated medians and one-sided windows: every split the MAD search can meet
    buf = np.sort(values + 0.0)
    med = float(_median_sorted(buf, buf.size))
    assert (
        bits(np.array([_robust_sd(buf, buf.size, med)])).tobytes()
        == bits(np.array([old_robust_sd(buf, buf.size, med)])).tobytes()
    )


def test_reference_kernel_is_what_main_ran() -> None:
    # The reference must not drift from the code it stands for: a detector fed by it keeps
    # the invariants main's state checks enforce, and its first block is the merge's result.
    old = OldDetector(window=16)
    x = np.arange(40.0)[::-1].copy()
    old.score(x)
    assert int(old._is[_I_NSORTED]) == 16 and int(old._is[_I_PENDING]) == 40 % _REFRESH
    np.testing.assert_array_equal(old._sort_l[:16], np.sort(x[16:32]))
    assert old.to_state()["ints"][_I_SEEN] == 40
