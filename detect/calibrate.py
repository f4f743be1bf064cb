"""Scores calibrated against the series' own history: a point pages only when it is rare *here*.

The idea
--------
The anomaly scores of :mod:`aitrace.detect.anomaly` measure a point against the recent
window's noise. A real service's telemetry has bursts that are normal for it (a CPU at 1 s
resolution, a queue that drains every minute): each one scores high against the quiet
between them, and a fixed threshold pages on every one. So beside the threshold a point
must also be rare in this series' history of scores: fewer than ``rarity`` of the points
seen so far scored as high (within a quarter decade of odds, about 1.33x the robust z),
in the same family of reasons (spikes and dips, level shifts, variance changes, flat
runs). The first bursts of a bursty series page; once they are part of its history, the
next ones of the same size do not, and a clearly bigger one still does.
NaN and infinite values are never calibrated away.

History is a histogram per family over the log-odds of the score (``log10(s / (1 - s))``,
which stretches the scores near 1 where the findings live), so the state is a few hundred
integers whatever the series' length. Decisions are causal and chunk-invariant: a point
is judged against every point before it, in this chunk or earlier ones, except the points
below the threshold of the run it belongs to (consecutive points of its family as high as the
threshold, less the slack): an event whose score climbs to the threshold is not calibrated
away by its own climb. They join the history when the run ends.

A score measures a point against the recent window's noise, and that noise can swing tenfold
between windows: a quantized CPU reading 0.134 with an occasional 0.066 or 0.2 has a noise of
0.003 in a window without those steps and 0.035 in one with them (NAB's
``ec2_cpu_utilization_24ae8d``). Its daily 1.5 spike scored higher against a quiet window
than the labelled 2.3 spike against a noisier one, so the 2.3 was "as high as before". So
the caller may also give each point's ``moves`` (its distance from the recent level in the
series' own units; :func:`point_moves`): a flagged point whose move is more than ``RECORD``
(1.33, the same slack as a bin) times the largest flagged move of its family so far pages
whatever its score says, unless the family's last record is fewer than ``1 / rarity`` points
old: records that keep coming are a series growing (each burst beats the one before), and
only the first of them pages.

How the defaults were chosen
----------------------------
``rarity=1e-3`` is the alert budget the issue sets (one false incident per 1,000 points of
normal operation), stated as what the series itself does; ``min_history=200`` points before
the history is trusted (until then the plain threshold decides); one bin of slack (a
quarter decade of odds) so that the next burst of the usual size, a little bigger by
chance, is still the usual. Measured through the worker's rule in chunks of 50
(``bench/bench_realdata.py``), on the SKAB pump recordings: false incidents on the
anomaly-free run 0.05 -> 0.04 per 1,000 points, fault experiments detected inside their
labelled window 26 -> 28 of 34 (an early false incident no longer swallows the fault's;
29 once a climb was no longer calibrated away by itself);
half a decade of slack cost 5 of those detections; a rarity of 5e-3 gained 3 and raised
the false incidents on the first 534 s of this machine's own telemetry from 1.6 to 1.9 per
1,000 points. The record rule (2026-12-06, ``bench_realdata.py``, worker rule): NAB's 18
real AWS server series (``--nab``, section (g)) windows found 10 -> 15 of 33, false
incidents 0.11 -> 0.14 per 1,000 points, NAB score 26 -> 39; SKAB faults 29 -> 30 of 34,
anomaly-free 0.05 -> 0.05; this machine's telemetry 0.71 -> 0.80 and 0.39 -> 0.49 per
1,000 points. A record factor of 1.5 gave the same within one incident. Without the window
between records, a series growing 0.3 % a point with a burst every 100 paged 40 times in
6,000 points (2 without the rule).

Example
-------
>>> import numpy as np
>>> from aitrace.detect.anomaly import AnomalyDetector
>>> from aitrace.detect.calibrate import ScoreCalibrator
>>> rng = np.random.default_rng(1)
>>> x = rng.normal(0, 1, 3000)
>>> x[::100] += 20                        # this series bursts every 100 points: its normal
>>> x[2950] += 80                         # and once far more than it ever did
>>> det, cal = AnomalyDetector(), ScoreCalibrator()
>>> scores = det.score(x)
>>> keep = cal.rare(scores, det.last_codes, threshold=0.9)
>>> int(np.count_nonzero(scores >= 0.9)) > 20, [int(i) for i in np.flatnonzero(keep) if i > 1000]
(True, [2950])
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from aitrace.detect.anomaly_kernel import (
    CODE_DIP,
    CODE_FLAT,
    CODE_INF,
    CODE_LEVEL_DOWN,
    CODE_LEVEL_UP,
    CODE_NAN,
    CODE_NONE,
    CODE_SPIKE,
    CODE_VARIANCE,
)
from numba import njit

_LO, _HI, _STEP = -4.0, 16.0, 0.25  # log10 odds of a score; beyond _HI is the last bin
N_BINS = int((_HI - _LO) / _STEP) + 1
_SLACK_BINS = 1  # a quarter decade of odds (about 1.33x the robust z) counts as "as high"
# a move this much larger than the series' largest flagged move of its family is news, whatever its score
RECORD = 1.33
_FAMILY = np.zeros(256, dtype=np.int64)  # reason code -> family (0: none / never calibrated)
_FAMILY[[CODE_SPIKE, CODE_DIP]] = 1
_FAMILY[[CODE_LEVEL_UP, CODE_LEVEL_DOWN]] = 2
_FAMILY[CODE_VARIANCE] = 3
_FAMILY_FLAT = 4
_FAMILY[CODE_FLAT] = _FAMILY_FLAT
N_FAMILIES = 5


def _bins(scores: np.ndarray) -> np.ndarray:
    # minimum/maximum rather than np.clip, whose Python wrapper costs ten times more on the
    # few points of a short update; both arguments of each log10 are >= 1e-300. The logs stay
    # numpy's (its log10 differs from the C library's in the last bit), the rest is one loop.
    s = np.minimum(np.maximum(np.asarray(scores, dtype=np.float64), 1e-300), 1.0)
    return _odds_bins(np.log10(s), np.log10(np.maximum(1.0 - s, 1e-300)))


def varied_through(vals: np.ndarray, first: float | None) -> tuple[float | None, np.ndarray]:
    """``(first, varied)``: the series' first finite value (``first`` if already known) and, per point,
    whether the series took two different values up to and including it. A repeat is news only for a
    series that varied: a constant logged per step, or a count that stays at 0, is not a flat line."""
    finite = np.isfinite(vals)
    if first is None and finite.any():
        first = float(vals[finite][0])
    if first is None:
        return None, np.zeros(vals.size, dtype=bool)
    return first, np.cumsum(finite & (vals != first)) > 0


def point_moves(
    values: np.ndarray, codes: np.ndarray, z: np.ndarray, noise: np.ndarray, level: np.ndarray
) -> np.ndarray:
    """Each scored point's move in the series' own units for :meth:`ScoreCalibrator.rare`, from a
    detector's details (``last_z``, ``last_noise``, ``last_level``): its distance from the recent level,
    or for a level shift the shift's size where that is larger; NaN for a flat run, no reason, and where
    not finite (a step after a constant window, whose noise is the detector's floor of 1e-300). A point
    that both tips a level and stands far off it (a CPU at 99.7 % over a level of 2.4) is named for the
    level, and its own distance is its size."""
    vals, codes = np.asarray(values, dtype=np.float64), np.asarray(codes)
    z, noise, level = (np.asarray(a, dtype=np.float64) for a in (z, noise, level))
    if vals.ndim != 1 or any(a.shape != vals.shape for a in (codes, z, noise, level)):
        shapes = [np.shape(a) for a in (vals, codes, z, noise, level)]
        raise ValueError(f"values, codes, z, noise and level must be 1-D of one length, got {shapes}")
    out = np.empty(vals.size)
    _moves(vals, codes, z, noise, level, out)
    return out


@njit(cache=True, error_model="numpy")
def _moves(
    values: np.ndarray, codes: np.ndarray, z: np.ndarray, noise: np.ndarray, level: np.ndarray, out: np.ndarray
) -> None:
    """:func:`point_moves` in one pass (numpy's seven calls and an errstate cost 15 us of a 10-point update)."""
    for k in range(values.size):
        c = codes[k]
        m = abs(values[k] - level[k])
        if c in (CODE_LEVEL_UP, CODE_LEVEL_DOWN):
            size = abs(z[k] * noise[k])
            if m != m or size > m:  # np.fmax: the larger, and a NaN only where both are
                m = size
        out[k] = m if c != CODE_FLAT and c != CODE_NONE and math.isfinite(m) else np.nan


@functools.lru_cache(maxsize=64)
def _floor_bin(threshold: float) -> int:
    """The lowest bin "as high" as a point at the threshold (one call per update: cached)."""
    return int(_bins(np.array([threshold]))[0]) - _SLACK_BINS


@njit(cache=True)
def _odds_bins(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``clip(((num - den - _LO) / _STEP).astype(int64), 0, N_BINS - 1)``, NaN in the first bin as there."""
    out = np.empty(num.size, dtype=np.int64)
    for k in range(num.size):
        b = (num[k] - den[k] - _LO) / _STEP
        out[k] = min(int(b), N_BINS - 1) if b >= 0.0 else 0
    return out


class ScoreCalibrator:
    """Per-family histogram of a series' scores; :meth:`rare` says which points page.

    Parameters
    ----------
    rarity:
        A point pages only when fewer than this share of all earlier points scored as
        high in its family.
    min_history:
        Points seen before the history is trusted; until then only the threshold decides.
    """

    def __init__(self, *, rarity: float = 1e-3, min_history: int = 200) -> None:
        if not 0.0 < rarity < 1.0 or min_history < 0:
            raise ValueError("need 0 < rarity < 1 and min_history >= 0")
        self.rarity, self.min_history = float(rarity), int(min_history)
        self.hist = np.zeros((N_FAMILIES, N_BINS), dtype=np.int64)
        self.total = 0
        # The run of points going on now (one family, scores near the threshold or above): its points
        # below the threshold are held out of the history until it ends, so that an event whose score
        # climbs to the threshold is not calibrated away by its own approach.
        self.pending = np.zeros((N_FAMILIES, N_BINS), dtype=np.int64)
        self.run = np.zeros(1, dtype=np.int64)  # its family; 0: none
        # per family, the largest move of a flagged point so far (NaN: none yet) and the point (counted
        # from the series' first) where a move last beat the largest by RECORD (-1: never)
        self.largest = np.full(N_FAMILIES, np.nan)
        self.record_at = np.full(N_FAMILIES, -1, dtype=np.int64)

    def rare(self, scores: Any, codes: Any, *, threshold: float, moves: Any = None) -> np.ndarray:
        """For each point: at or above ``threshold`` and rare for this series (then recorded, or held
        while its run goes on).

        ``moves``: :func:`point_moves` of the same points. A flagged point (not a flat run) whose
        move is ``RECORD`` times the largest such move of its family so far pages even where its score
        is usual, unless the family's last record is recent: a score is relative to the recent
        window's noise, which on a quantized or bursty series swings tenfold between windows, so a CPU
        spike half again as high as any before could score below the usual ones."""
        scores = np.asarray(scores, dtype=np.float64)
        codes = np.asarray(codes, dtype=np.int64)
        out = scores >= threshold
        floor = _floor_bin(float(threshold))
        records = np.zeros(scores.size, dtype=np.bool_)
        if moves is not None:
            size = np.asarray(moves, dtype=np.float64)
            if size.shape != scores.shape:
                raise ValueError(f"moves must be one per score: {size.shape} for {scores.shape}")
            records = _records(
                codes, out, size, _FAMILY, self.largest, self.record_at, self.total, self.min_history, self.rarity
            )
        _rare_walk(
            codes, _bins(scores), out, self.hist, self.pending, self.run, floor, self.total, self.min_history,
            self.rarity, _FAMILY, records,
        )  # fmt: skip
        self.total += int(scores.size)
        return out

    def to_state(self) -> dict[str, Any]:
        """Sparse and JSON-safe: only the non-empty bins."""
        cells = _cells(self.hist).tolist()  # [[family, bin, count], ...] of plain ints
        state = {"rarity": self.rarity, "min_history": self.min_history, "total": self.total, "cells": cells}
        state["largest"] = [None if v != v else v for v in self.largest.tolist()]  # NaN: none yet
        state["record_at"] = self.record_at.tolist()
        return state | ({"run": int(self.run[0]), "pending": _cells(self.pending).tolist()} if self.run[0] else {})

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ScoreCalibrator:
        cal = cls(rarity=state["rarity"], min_history=state["min_history"])
        total = state["total"]
        if not isinstance(total, int) or isinstance(total, bool) or not 0 <= total < 2**62:
            raise ValueError(f"calibrator total must be a count of points, got {total!r}")
        cal.total = total
        _fill(cal.hist, state["cells"])
        if "record_at" in state:  # a state from before has no record: its first flagged move sets one
            cal.largest[:], cal.record_at[:] = _records_state(state.get("largest"), state["record_at"], cal.total)
        if state.get("run"):  # a state from before has no run going on
            _fill(cal.pending, state["pending"])
            if not 0 < state["run"] < N_FAMILIES:
                raise ValueError(f"calibrator run must name a family 1..{N_FAMILIES - 1}, got {state['run']!r}")
            cal.run[0] = int(state["run"])
        return cal


def _fill(hist: np.ndarray, saved: Any) -> None:
    cells = np.asarray(saved, dtype=np.int64)
    cells = cells.reshape(0, 3) if cells.size == 0 else cells
    if cells.ndim != 2 or cells.shape[1] != 3:
        raise ValueError(f"calibrator cells must be [family, bin, count] triples, got shape {cells.shape}")
    fam, at, count = cells.T
    if np.any((fam < 0) | (fam >= N_FAMILIES) | (at < 0) | (at >= N_BINS) | (count < 0)):
        raise ValueError("calibrator cells out of range: family, bin or a negative count")
    hist[fam, at] = count


@njit(cache=True)
def _cells(hist: np.ndarray) -> np.ndarray:
    """The non-empty cells of the histogram as (family, bin, count) rows, in np.nonzero's order."""
    out = np.empty((np.count_nonzero(hist), 3), dtype=np.int64)
    n = 0
    for f in range(hist.shape[0]):
        for b in range(hist.shape[1]):
            if hist[f, b]:
                out[n, 0], out[n, 1], out[n, 2] = f, b, hist[f, b]
                n += 1
    return out


def _records_state(largest: Any, record_at: Any, total: int) -> tuple[list[float], list[int]]:
    """``largest`` and ``record_at`` of a saved state, checked: a negative move, or a record after the points
    seen, would page every usual spike as a record (a NaN move is none yet, as null)."""
    if (
        not (isinstance(largest, list) and isinstance(record_at, list))
        or not len(largest) == len(record_at) == N_FAMILIES
    ):
        raise ValueError(
            f"calibrator largest and record_at must be lists of {N_FAMILIES}, got {largest!r}, {record_at!r}"
        )
    moves = [np.nan if v is None else v for v in largest]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and (v != v or 0 <= v < 1e300) for v in moves):
        raise ValueError(f"calibrator largest must hold moves in [0, 1e300) or null, got {largest!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and -1 <= v <= total for v in record_at):
        raise ValueError(f"calibrator record_at must hold points in -1..{total} (the points seen), got {record_at!r}")
    return [float(v) for v in moves], record_at


@njit(cache=True)
def _records(
    codes: np.ndarray,
    flagged: np.ndarray,
    moves: np.ndarray,
    family: np.ndarray,
    largest: np.ndarray,
    record_at: np.ndarray,
    total: int,
    min_history: int,
    rarity: float,
) -> np.ndarray:
    """Per point: a flagged spike, dip, level shift or variance change whose move is ``RECORD`` times the
    largest such move of its family so far, unless the family's last such record is fewer than ``1 / rarity``
    points old. ``largest`` and ``record_at`` move on in place. Records that keep coming are the series
    growing, not news: every burst of a series growing 0.3 % a point beat the one before by 1.35x and paged,
    and a cap on their count let a long quiet history page through the growth that came after it."""
    out = np.zeros(codes.size, dtype=np.bool_)
    for k in range(codes.size):
        f = family[codes[k]]
        m = moves[k]
        if not flagged[k] or m != m or f == 0 or f == _FAMILY_FLAT:
            continue
        at = total + k
        if m > RECORD * largest[f] and at >= min_history:  # False while largest is NaN (none yet)
            out[k] = record_at[f] < 0 or (at - record_at[f]) * rarity > 1.0  # the first window's moves settle
            record_at[f] = at
        if not m <= largest[f]:
            largest[f] = m
    return out


@njit(cache=True)
def _rare_walk(
    codes: np.ndarray,
    bins: np.ndarray,
    out: np.ndarray,
    hist: np.ndarray,
    pending: np.ndarray,
    run: np.ndarray,
    floor: int,
    total: int,
    min_history: int,
    rarity: float,
    family: np.ndarray,
    records: np.ndarray,
) -> None:
    """In order: a flagged point stays flagged only if fewer than ``rarity`` of the points before it
    scored as high in its family; every point is then counted into ``hist``, except the unflagged
    points of the run going on (consecutive points of one family at ``floor`` or above), held in
    ``pending`` until it ends: a level shift's score climbed 0.888, 0.895, 0.899 to 0.905 and was
    not rare against its own climb. O(points + flagged x bins), where counting the chunk's prefix per
    flagged point was quadratic."""
    r = run[0]
    for k in range(codes.size):
        f = family[codes[k]]
        high = f != 0 and bins[k] >= floor
        if r != 0 and (not high or f != r):  # the run ended: it is history now
            for b in range(hist.shape[1]):
                hist[r, b] += pending[r, b]
                pending[r, b] = 0
            r = 0
        skip = codes[k] == CODE_NAN or codes[k] == CODE_INF  # never calibrated away
        flagged = out[k]
        if flagged and not skip and f != 0 and total + k >= min_history:
            # as high = within _SLACK_BINS of its score's odds: the next burst of the usual size is not news
            earlier = 0
            for b in range(max(bins[k] - _SLACK_BINS, 0), hist.shape[1]):
                earlier += hist[f, b]
            out[k] = earlier < rarity * (total + k) or records[k]
        if high and not flagged:  # the run's approach to the threshold: not yet history
            pending[f, bins[k]] += 1
            r = f
        else:
            hist[f, bins[k]] += 1
    run[0] = r
