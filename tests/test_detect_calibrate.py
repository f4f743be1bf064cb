"""ScoreCalibrator: a point pages only when it is rare for the series itself."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from aitrace.detect.anomaly import AnomalyDetector
from aitrace.detect.anomaly_kernel import (
    CODE_DIP,
    CODE_FLAT,
    CODE_LEVEL_DOWN,
    CODE_LEVEL_UP,
    CODE_NAN,
    CODE_NONE,
    CODE_SPIKE,
)
from aitrace.detect.calibrate import ScoreCalibrator, point_moves


def _bursty(n: int = 4000, seed: int = 2) -> np.ndarray:
    x = np.random.default_rng(seed).normal(0, 1, n)
    x[50::100] += 20  # a burst every 100 points: this series' normal
    return x


def _paging(x: np.ndarray, chunk: int | None = None, **kw: float) -> list[int]:
    det, cal, out = AnomalyDetector(), ScoreCalibrator(**kw), []
    step = chunk or x.size
    for lo in range(0, x.size, step):
        det = AnomalyDetector.from_state(det.to_state())
        cal = ScoreCalibrator.from_state(cal.to_state())
        scores = det.score(x[lo : lo + step])
        out += [lo + int(k) for k in np.flatnonzero(cal.rare(scores, det.last_codes, threshold=0.9))]
    return out


def test_regular_bursts_page_until_they_are_the_series_normal_and_a_bigger_one_still_does() -> None:
    x = _bursty()
    plain = int(np.count_nonzero(AnomalyDetector().score(x) >= 0.9))
    x[3333] += 200
    paged = _paging(x)
    assert plain >= 30  # a fixed threshold pages on nearly every burst
    assert 3333 in paged and len([i for i in paged if i > 1000]) <= 2


@pytest.mark.parametrize("chunk", [1, 17, 500])
def test_decisions_are_causal_and_chunk_invariant(chunk: int) -> None:
    x = _bursty(1500)
    x[1400] += 150
    assert _paging(x, chunk) == _paging(x)


def test_nan_always_pages_and_before_min_history_the_threshold_decides() -> None:
    cal = ScoreCalibrator(min_history=10)
    scores = np.r_[np.full(5, 0.95), np.full(20, 0.95), [1.0]]
    codes = np.r_[np.full(25, CODE_SPIKE), [CODE_NAN]]
    keep = cal.rare(scores, codes, threshold=0.9)
    assert keep[:10].all() and not keep[10:25].any() and keep[25]
    assert cal.total == 26


def test_state_is_small_and_round_trips() -> None:
    x = _bursty(3000)
    det, cal = AnomalyDetector(), ScoreCalibrator()
    cal.rare(det.score(x), det.last_codes, threshold=0.9)
    state = cal.to_state()
    assert len(state["cells"]) < 200 and ScoreCalibrator.from_state(state).to_state() == state
    with pytest.raises(ValueError):
        ScoreCalibrator(rarity=0)


def test_bins_equal_the_clipped_log_odds() -> None:
    from aitrace.detect.calibrate import _HI, _LO, _STEP, N_BINS, _bins

    s = np.r_[0.0, 5e-324, 1e-300, 1e-5, 0.5, 0.9, 1 - 1e-16, 1.0, np.random.default_rng(0).random(1000)]
    with np.errstate(divide="ignore"):
        odds = np.log10(np.clip(s, 1e-300, 1.0)) - np.log10(np.maximum(1.0 - np.clip(s, 1e-300, 1.0), 1e-300))
    expected = np.clip(((odds - _LO) / _STEP).astype(np.int64), 0, N_BINS - 1)
    np.testing.assert_array_equal(_bins(s), expected)
    assert _bins(np.r_[1.0])[0] == N_BINS - 1 == int((_HI - _LO) / _STEP)


def test_state_cells_are_plain_int_triples_and_bad_cells_raise() -> None:
    cal = ScoreCalibrator()
    cal.rare(np.r_[0.95, 0.2, 0.95], np.r_[CODE_SPIKE, CODE_SPIKE, CODE_SPIKE], threshold=0.9)
    cells = cal.to_state()["cells"]
    assert all(type(v) is int for cell in cells for v in cell) and sum(c[2] for c in cells) == 3
    empty = ScoreCalibrator().to_state()
    assert empty["cells"] == [] and ScoreCalibrator.from_state(empty).to_state() == empty
    for bad in ([[1, 2]], [[1, 2], [3, 4], [5, 6]], [[1, 2, 3, 4]]):
        with pytest.raises(ValueError):
            ScoreCalibrator.from_state({**empty, "cells": bad})


class _PrefixCountingCalibrator(ScoreCalibrator):
    """rare() written out: every point seen kept, each flagged point counted against all of them but
    the unflagged points of the run it continues (the points just before it of its family at the
    threshold's bin less the slack or above)."""

    seen_family: np.ndarray = np.zeros(0, dtype=np.int64)
    seen_bin: np.ndarray = np.zeros(0, dtype=np.int64)
    seen_flag: np.ndarray = np.zeros(0, dtype=bool)

    def rare(self, scores, codes, *, threshold: float):  # type: ignore[no-untyped-def]
        from aitrace.detect.anomaly_kernel import CODE_INF
        from aitrace.detect.calibrate import _FAMILY, _SLACK_BINS, _bins

        scores, codes = np.asarray(scores, dtype=np.float64), np.asarray(codes, dtype=np.int64)
        floor = int(_bins(np.r_[threshold])[0]) - _SLACK_BINS
        out = scores >= threshold
        fam = np.concatenate([self.seen_family, _FAMILY[codes]])
        bins = np.concatenate([self.seen_bin, _bins(scores)])
        flag = np.concatenate([self.seen_flag, out])
        n0 = self.seen_family.size
        for k in np.flatnonzero(out):
            j = n0 + int(k)
            if codes[k] in (CODE_NAN, CODE_INF) or fam[j] == 0 or self.total + k < self.min_history:
                continue
            run = j
            while run > 0 and fam[run - 1] == fam[j] and bins[run - 1] >= floor:
                run -= 1
            counted = np.ones(j, dtype=bool)
            counted[run:j] = flag[run:j]  # the run's unflagged points are not history yet
            lo = max(int(bins[j]) - _SLACK_BINS, 0)
            earlier = np.count_nonzero(counted & (fam[:j] == fam[j]) & (bins[:j] >= lo))
            out[k] = earlier < self.rarity * (self.total + k)
        self.seen_family, self.seen_bin, self.seen_flag = fam, bins, flag
        self.total += int(scores.size)
        return out


def _ramps(seed: int) -> np.ndarray:
    """Bursts, and level shifts whose score climbs to the threshold over a few points."""
    x = _bursty(seed=seed)
    for at, by in ((1200, 9.0), (2100, -9.0), (2900, 9.0), (3500, -9.0)):  # each climbs to 0.9 and past it
        x[at:] += by
    return x


@pytest.mark.parametrize("chunk", [1, 37, 500, 4000])
@pytest.mark.parametrize("seed", [2, 3])
@pytest.mark.parametrize("series", [_bursty, _ramps])
def test_rare_walk_decides_as_the_prefix_counting_code(chunk: int, seed: int, series: Any) -> None:
    det = AnomalyDetector()
    scores = det.score(series(seed=seed))
    codes = det.last_codes.copy()
    codes[::97] = CODE_NAN  # NaNs among them always page and are counted
    new, old = ScoreCalibrator(), _PrefixCountingCalibrator()
    got = []
    for i in range(0, scores.size, chunk):
        new = ScoreCalibrator.from_state(new.to_state())
        got.append(new.rare(scores[i : i + chunk], codes[i : i + chunk], threshold=0.9))
    want = [old.rare(scores[i : i + chunk], codes[i : i + chunk], threshold=0.9) for i in range(0, scores.size, chunk)]
    assert np.concatenate(got).any() and (scores >= 0.9).sum() > np.concatenate(got).sum()  # some held back
    assert np.array_equal(np.concatenate(got), np.concatenate(want)) and new.total == old.total


def test_a_score_that_climbs_to_the_threshold_is_not_calibrated_away_by_its_climb() -> None:
    """A level shift of an accuracy by 10 sd scored 0.888, 0.895, 0.899, then 0.905: against its own
    climb it was not rare, and the drop was never paged."""
    from aitrace.detect.anomaly_kernel import CODE_LEVEL_DOWN

    cal = ScoreCalibrator()
    quiet = cal.rare(np.full(1500, 0.1), np.full(1500, CODE_LEVEL_DOWN), threshold=0.9)
    climb = np.r_[0.888, 0.895, 0.899, 0.905, 0.907, 0.907, 0.911]
    keep = cal.rare(climb, np.full(climb.size, CODE_LEVEL_DOWN), threshold=0.9)
    assert not quiet.any() and keep.tolist() == [False, False, False, True, True, False, False]
    cal.rare(np.full(10, 0.1), np.full(10, CODE_LEVEL_DOWN), threshold=0.9)  # it ended: all history now
    again = cal.rare(climb, np.full(climb.size, CODE_LEVEL_DOWN), threshold=0.9)
    assert not again.any()  # the same climb again is this series' usual
    state = cal.to_state()  # the second climb goes on: its three points below the threshold are held
    assert sum(c[2] for c in state["cells"]) == cal.total - 3 and sum(c[2] for c in state["pending"]) == 3


def test_bins_at_the_bin_edges_and_nan_match_numpy() -> None:
    """The bins' loop gives numpy's truncation and clipping, at and next to every edge, and NaN's first bin."""
    from aitrace.detect.calibrate import _LO, _STEP, N_BINS, _bins

    edges = _LO + _STEP * np.arange(-2, N_BINS + 2)
    odds = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    s = np.r_[1.0 / (1.0 + 10.0 ** (-odds)), np.nan, np.random.default_rng(1).random(5000) ** 8]
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.minimum(np.maximum(s, 1e-300), 1.0)
        raw = ((np.log10(c) - np.log10(np.maximum(1.0 - c, 1e-300)) - _LO) / _STEP).astype(np.int64)
    np.testing.assert_array_equal(_bins(s), np.minimum(np.maximum(raw, 0), N_BINS - 1))


def test_state_cells_are_the_nonzero_cells_in_order() -> None:
    cal = ScoreCalibrator()
    cal.hist[:] = np.random.default_rng(2).integers(0, 3, cal.hist.shape) * (np.arange(cal.hist.size) % 7 == 0).reshape(
        cal.hist.shape
    )
    fam, bins = np.nonzero(cal.hist)
    assert cal.to_state()["cells"] == np.column_stack((fam, bins, cal.hist[fam, bins])).tolist()


def _spikes(cal: ScoreCalibrator, moves: list[float], *, given: bool = True) -> list[bool]:
    """Each move as one flagged spike (score 0.99) among 299 quiet points, in turn; whether it paged.
    ``given``: whether the calibrator is told the moves."""
    out = []
    for move in moves:
        scores, codes = np.r_[np.zeros(299), [0.99]], np.full(300, CODE_SPIKE)
        told = np.r_[np.zeros(299), [move]] if given else None
        out.append(bool(cal.rare(scores, codes, threshold=0.9, moves=told)[-1]))
    return out


def test_a_move_well_past_the_largest_flagged_one_pages_though_its_score_is_usual() -> None:
    # a quantized CPU (NAB's ec2_cpu_utilization_24ae8d): a daily spike of ~1.4 scored higher against a quiet
    # window than a spike of 2.2 against a noisier one, so the 2.2 was "as high as before" by its score
    cal = ScoreCalibrator(rarity=1e-3)
    paged = _spikes(cal, [1.4, 1.5, 1.4, 1.6, 1.5, 1.45, 2.2, 2.3, 1.5])
    assert paged[:1] == [True] and not any(paged[1:6])  # the first pages (nothing before), then usual
    assert paged[6] is True  # 2.2 > 1.33 x 1.6
    assert paged[7:] == [False, False]  # 2.3 is within 1.33x of 2.2: the record moved
    plain = ScoreCalibrator(rarity=1e-3)
    # without the moves, by score alone: usual
    assert not any(_spikes(plain, [1.4, 1.5, 1.4, 1.6, 1.5, 1.45, 2.2], given=False)[1:])


def _growing(n: int = 6000, seed: int = 4, quiet: int = 0) -> np.ndarray:
    """``quiet`` points of a steady level, then 0.3 % growth a point; 1 % noise, the level doubled for one
    point every 100 (the review's series)."""
    rng = np.random.default_rng(seed)
    x = np.exp(0.003 * np.maximum(np.arange(quiet + n) - quiet, 0)) * (1 + 0.01 * rng.normal(size=quiet + n))
    x[50::100] *= 2
    return x


def _pages(x: np.ndarray, told: bool, chunk: int = 50) -> list[int]:
    det, cal, out = AnomalyDetector(), ScoreCalibrator(), []
    for lo in range(0, x.size, chunk):
        scores = det.score(x[lo : lo + chunk])
        moves = point_moves(x[lo : lo + chunk], det.last_codes, det.last_z, det.last_noise, det.last_level)
        keep = cal.rare(scores, det.last_codes, threshold=0.9, moves=moves if told else None)
        out += [lo + int(k) for k in np.flatnonzero(keep)]
        cal = ScoreCalibrator.from_state(json.loads(json.dumps(cal.to_state(), allow_nan=False)))
    return out


@pytest.mark.parametrize("quiet", [0, 20_000])
def test_records_that_keep_coming_are_growth_and_page_once(quiet: int) -> None:
    # each burst beat the one before by 1.35x: with the moves told and no cap the series paged 40 times in
    # 6,000 points where the score alone paged 2; with a cap of 1 record in 1,000 points, a quiet history
    # of 20,000 points first left it 25 pages of allowance through the growth
    x = _growing(quiet=quiet)
    told, alone = ([i for i in _pages(x, told=flag, chunk=500) if i >= quiet] for flag in (True, False))
    assert len(told) <= len(alone) + 1


def test_a_step_after_a_constant_window_keeps_the_state_json_safe() -> None:
    # the window's noise is the detector's floor (1e-300): the step's size in it was inf, saved as Infinity
    x = np.r_[np.zeros(2000), np.full(500, 2e8), 2e8 + np.random.default_rng(0).normal(0, 1e6, 1500)]
    x[3000] += 2.5e7
    assert _pages(x, told=True) == _pages(x, told=True, chunk=x.size)


def test_moves_of_another_length_are_refused() -> None:
    with pytest.raises(ValueError, match="moves must be one per score"):
        ScoreCalibrator().rare(np.full(10, 0.95), np.full(10, CODE_SPIKE), threshold=0.9, moves=np.ones(1))


def test_the_largest_move_round_trips_and_a_state_from_before_starts_without_one() -> None:
    cal = ScoreCalibrator()
    _spikes(cal, [1.0, 1.1])
    back = ScoreCalibrator.from_state(cal.to_state())
    assert back.largest[1] == pytest.approx(1.1) and back.record_at[1] == -1  # 1.1 set no record over 1.0
    assert _spikes(back, [1.6]) == [True]
    old = cal.to_state()
    del old["largest"], old["record_at"]
    before = ScoreCalibrator.from_state(old)
    assert _spikes(before, [5.0, 5.1, 7.0]) == [False, False, True]  # 5.0 sets the record, 7.0 beats it
    with pytest.raises(ValueError, match="largest"):
        ScoreCalibrator.from_state(cal.to_state() | {"largest": [1.0]})


@pytest.mark.parametrize(
    "bad",
    [
        {"largest": [None, -1.0, None, None, None]},  # a negative move: every usual spike a record
        {"largest": [None, "abc", None, None, None]},
        {"largest": [None, [1], None, None, None]},
        {"record_at": [-1, None, -1, -1, -1]},
        {"record_at": [-1, 2.9, -1, -1, -1]},
        {"record_at": [-1, 10**30, -1, -1, -1]},  # after the points seen
        {"record_at": [-1, -50, -1, -1, -1]},
        {"record_at": [-1, -1, -1]},
        {"largest": [None, 10**400, None, None, None]},  # OverflowError in float()
        {"total": 2**71, "record_at": [-1, 2**70, -1, -1, -1]},  # OverflowError into int64
        {"total": True},
        {"total": 1.5},
    ],
)
def test_a_hostile_record_state_is_refused_with_a_clear_error(bad: dict[str, Any]) -> None:
    cal = ScoreCalibrator()
    _spikes(cal, [1.0])
    with pytest.raises(ValueError, match=r"calibrator (largest|record_at|total)"):
        ScoreCalibrator.from_state(cal.to_state() | bad)


def test_a_state_with_the_largest_move_but_no_record_point_starts_without_a_record() -> None:
    cal = ScoreCalibrator()
    _spikes(cal, [1.0])
    early = cal.to_state()
    del early["record_at"]  # written by f5859b8, which kept the largest move alone
    assert np.isnan(ScoreCalibrator.from_state(early).largest).all()


def test_a_latency_fall_is_never_the_largest_move() -> None:
    # one 2 ms request among ~100 ms ones set the spike family's record at 98 ms, and a later 115 ms spike
    # (news against usual 52 ms ones) stayed quiet
    from aitrace.detect.service import ServiceSeries

    rng = np.random.default_rng(3)
    t = 1_800_000_000_000_000 + np.arange(3000, dtype=np.int64) * 1_000_000
    lat = 100 + rng.normal(0, 3, 3000)
    lat[300::400] += 52
    records = []
    for fall in (False, True):
        x = lat.copy()
        if fall:
            x[1205] = 2.0
        s = ServiceSeries("latency", cycle=False)
        s.update(t, x)
        records.append(float(s.calibrator.largest[1]))
    assert records[0] == records[1]


def test_a_points_move_is_its_distance_from_the_level_and_a_shift_its_size_where_larger() -> None:
    """point_moves by hand: a spike's distance from the level; a level shift's larger of that and its own size
    (z x noise, either may be NaN); none for a flat run or no reason; none where not finite (a step after a
    constant window, noise 1e-300, z 1e306: an overflow)."""
    codes = np.array([CODE_SPIKE, CODE_DIP, CODE_LEVEL_UP, CODE_LEVEL_DOWN, CODE_LEVEL_UP, CODE_FLAT, CODE_NONE,
                      CODE_SPIKE, CODE_LEVEL_UP, CODE_LEVEL_UP], dtype=np.int8)  # fmt: skip
    values = np.array([5.0, -3.0, 2.0, 1.0, np.nan, 7.0, 7.0, np.inf, 1.0, 4.0])
    level = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, np.nan])
    z = np.array([9.0, -9.0, 6.0, -6.0, 6.0, 0.0, 0.0, 9.0, 1e306, np.nan])
    noise = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1e300, 0.5])
    moves = point_moves(values, codes, z, noise, level)
    want = [4.0, 4.0, 3.0, 3.0, 3.0, np.nan, np.nan, np.nan, np.nan, np.nan]
    assert np.array_equal(moves, want, equal_nan=True), moves


def test_point_moves_refuses_details_of_another_length() -> None:
    """The compiled pass reads every array at each point's index: a shorter one was read past its end."""
    x = np.arange(4.0)
    codes = np.full(4, CODE_SPIKE, dtype=np.int8)
    with pytest.raises(ValueError, match="one length"):
        point_moves(x, codes, np.ones(2), np.ones(2), np.ones(4))
    with pytest.raises(ValueError, match="one length"):
        point_moves(x, codes, np.ones(4), np.ones(4), np.ones(1))
