"""The cheaper per-update paths of a model's series (ServiceSeries with its cycle, level-shift
monitor and calibrator) give exactly the findings and state of the code they replaced (kept
here, below, as the reference), on real series chunked in several ways and through JSON state
round trips."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aitrace.detect.anomaly import AnomalyDetector
from aitrace.detect.anomaly_kernel import CODE_LEVEL_DOWN, CODE_LEVEL_UP
from aitrace.detect.calibrate import ScoreCalibrator
from aitrace.detect.cycle import HOUR_US, CycleModel, CycleView
from aitrace.detect.finding import Finding
from aitrace.detect.level import LatencyShiftMonitor, LevelShift, LevelShiftDetector
from aitrace.detect.service import ServiceSeries, _arrays

DATA = Path(__file__).resolve().parent.parent / "bench" / "data"
SKAB = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "skab"  # as bench_realdata finds it


# ---------------------------------------------------------------- the previous code (reference)


class OldLevel(LevelShiftDetector):
    def _run(self, logs: np.ndarray, done: int, where: np.ndarray, seen: int) -> tuple[int, LevelShift | None]:
        p = self.params
        todo = logs[done:]
        held = len(self.baseline) + len(self.recent)
        hist = np.concatenate((self.baseline, self.recent, todo))  # the detector keeps arrays now
        tests = np.arange(p["stride"] - self.n_accepted % p["stride"], len(todo) + 1, p["stride"])
        ends = held + tests - 1
        gates = np.ones(tests.size, dtype=bool)
        full = ends - p["recent"] + 1 >= p["baseline"]
        if full.any():
            e = ends[full][:, None]
            rec = np.median(hist[e + np.arange(1 - p["recent"], 1)], axis=1)
            base = np.median(hist[e + np.arange(1 - p["recent"] - p["baseline"], 1 - p["recent"])], axis=1)
            gates[full] = self._moved(rec - base)
        pushed = 0
        for j in tests[gates].tolist():
            self._push(todo[pushed:j])
            pushed = j
            self.n_seen = seen + int(where[done + j - 1]) + 1
            shift = self._test()
            if shift is not None:
                return done + j, shift
        self._push(todo[pushed:])
        return len(logs), None

    def _moved(self, log_ratio: np.ndarray) -> np.ndarray:
        """Whether each change of the median is large enough, in a direction that counts (the detector's
        own before its gate went into one kernel, level._gated_tests)."""
        p, step = self.params, math.log(self.params["min_ratio"])
        rises = (log_ratio >= step) & (p["direction"] != "down")
        return rises | ((log_ratio <= -step) & (p["direction"] != "up"))


class OldLatency(LatencyShiftMonitor):
    def __init__(self) -> None:
        super().__init__()
        self.sharp = OldLevel(direction="up", min_ratio=3.0)
        self.sustained = OldLevel(direction="up", min_ratio=1.5)


class OldCalibrator(ScoreCalibrator):
    def to_state(self) -> dict[str, Any]:
        fam, bins = np.nonzero(self.hist)
        cells = np.column_stack((fam, bins, self.hist[fam, bins])).tolist()
        state = {"rarity": self.rarity, "min_history": self.min_history, "total": self.total, "cells": cells}
        largest = [None if np.isnan(v) else float(v) for v in self.largest]  # the record rule, since 2026-12-06
        return state | {"largest": largest, "record_at": self.record_at.tolist()}


class OldCycle(CycleModel):
    def observe(self, times_us: Any, values: Any) -> CycleView:
        times = np.asarray(times_us, dtype=np.int64).ravel()
        vals = np.asarray(values, dtype=np.float64).ravel()
        buckets = times // HOUR_US
        n = vals.size
        view = CycleView(vals.copy(), np.zeros(n), np.zeros(n), np.full(n, np.nan), [])
        starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]]) if n else np.zeros(0, np.int64)
        ends = np.r_[starts[1:], n] if n else starts
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            b = int(buckets[lo])
            if b != self.open_bucket:
                before = self.period
                if self.open_n:
                    self._close()
                if self.period != before:
                    view.switches.append(lo)
                self.open_bucket, self.open_sum, self.open_n, self.open_pos = b, 0.0, 0, 0.0
            if self.watch:
                self._judge(times[lo:hi], vals[lo:hi], view, lo)
            self._add(times[lo:hi], vals[lo:hi])  # one hour's sums, as the current code sums them
        return view


class OldService(ServiceSeries):
    def __init__(self, metric: str) -> None:
        super().__init__(metric)
        self.calibrator, self.cycle = OldCalibrator(), OldCycle()
        self.shift = OldLatency() if metric == "latency" else None

    def update(self, times_us: Any, values: Any) -> list[Finding]:
        times, vals = _arrays(times_us, values)
        view = CycleView(vals, np.zeros(vals.size), np.zeros(vals.size), np.full(vals.size, np.nan), [])
        if self.cycle is not None:
            view = self.cycle.observe(times, vals)
        bounds = [0, *view.switches, vals.size]
        scores = np.zeros(vals.size)
        codes = np.zeros(vals.size, dtype=np.int8)
        found: list[Finding] = []
        for lo, hi in itertools.pairwise(bounds):
            if lo > 0:
                self.detector, self.calibrator = AnomalyDetector(), OldCalibrator()
                if self.shift is not None:
                    self.shift, self.shift_base = OldLatency(), self.n_seen + lo
            scores[lo:hi] = self.detector.score(view.resid[lo:hi])
            codes[lo:hi] = self.detector.last_codes
            off = view.score[lo:hi]
            phase = ((off > scores[lo:hi]) | (off >= self.threshold)) & np.isfinite(vals[lo:hi])
            scores[lo:hi] = np.where(phase, view.score[lo:hi], scores[lo:hi])
            codes[lo:hi] = np.where(phase, np.where(view.z[lo:hi] > 0, CODE_LEVEL_UP, CODE_LEVEL_DOWN), codes[lo:hi])
            found += self._points(times, vals, scores, codes, lo, hi, view, phase)
            if self.shift is not None:
                shifts = self.shift.update(times[lo:hi], view.resid[lo:hi])
                found += [self._shift_finding(s, times, vals) for s in shifts if not self._recurs(s, times)]
        found.sort(key=lambda f: f.index)
        judged_after = vals.size - 1 - (found[-1].index - self.n_seen) if found else vals.size
        bad = (scores >= self.threshold) & ~np.isin(codes, self.ignored)  # a latency's falls: since 2026-12-06
        self.clean = int(judged_after - np.count_nonzero(bad[vals.size - judged_after :]))
        self.n_seen += int(vals.size)
        return found

    def _varied_at(self, vals: np.ndarray) -> np.ndarray:
        finite = np.isfinite(vals)
        if self.first is None and finite.any():
            self.first = float(vals[finite][0])
        differs = finite & (vals != self.first) if self.first is not None else np.zeros(vals.size, dtype=bool)
        varied = self.varied | (np.cumsum(differs) > 0)
        self.varied = bool(varied[-1]) if varied.size else self.varied
        return varied


# ---------------------------------------------------------------- real series


def _requests() -> tuple[np.ndarray, np.ndarray]:
    """This machine's ASGI service, one row per request (the first 8,000): latency in ms."""
    with gzip.open(DATA / "telemetry-vm-20261205.requests.csv.gz", "rt") as f:
        rows = list(itertools.islice(csv.reader(f), 1, 8_001))
    times = np.array([np.datetime64(r[0].rstrip("Z"), "us").astype(np.int64) for r in rows], dtype=np.int64)
    return times, np.array([float(r[1]) for r in rows])


def _respaced(values: np.ndarray, every_s: int) -> tuple[np.ndarray, np.ndarray]:
    """Real values one every ``every_s`` seconds: long enough for the cycle model to judge days."""
    return 1_800_000_000_000_000 + np.arange(values.size, dtype=np.int64) * every_s * 1_000_000, values


def _telemetry(column: str) -> tuple[np.ndarray, np.ndarray]:
    with open(DATA / "telemetry-vm-20261205.csv") as f:
        vals = np.array([float(r[column]) for r in csv.DictReader(f)])
    return _respaced(vals, 300)  # 1,920 rows: 6.7 days


def _skab(name: str, column: str, every_s: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A SKAB pump recording's column at its own times (one a second), or respaced."""
    path = SKAB / name
    if not path.exists():
        pytest.skip(f"{path} not here")
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    vals = np.array([float(r[column]) for r in rows])
    if every_s:
        return _respaced(vals, every_s)
    times = [np.datetime64(r["datetime"].replace(" ", "T"), "us").astype(np.int64) for r in rows]
    return np.array(times, dtype=np.int64), vals


SOURCES = {
    "requests": _requests,
    "cpu": lambda: _telemetry("cpu_pct"),
    "p95": lambda: _telemetry("latency_p95_ms"),
    "skab-accel": lambda: _skab("anomaly-free/anomaly-free.csv", "Accelerometer1RMS"),
    "skab-current-days": lambda: _skab("anomaly-free/anomaly-free.csv", "Current", every_s=120),  # 13 days
}


def _cuts(n: int, how: str) -> list[tuple[int, int]]:
    if how == "random":
        bounds = [0, *sorted(set(np.random.default_rng(5).integers(1, n, 80).tolist())), n]
    else:
        bounds = [0, n] if how == "whole" else [*range(0, n, int(how)), n]
    return list(itertools.pairwise(bounds))


@pytest.mark.parametrize("how", ["whole", "1", "7", "100", "random"])
@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("metric", ["latency", "confidence"])
def test_service_series_matches_the_previous_code(metric: str, source: str, how: str) -> None:
    times, vals = SOURCES[source]()
    if how == "1" and vals.size > 2000:
        times, vals = times[:2000], vals[:2000]  # a point per update: the first 2,000 are enough
    new, old = ServiceSeries(metric), OldService(metric)
    got, want = [], []
    for k, (lo, hi) in enumerate(_cuts(vals.size, how)):
        got += [repr(f) for f in new.update(times[lo:hi], vals[lo:hi])]
        want += [repr(f) for f in old.update(times[lo:hi], vals[lo:hi])]
        assert new.clean == old.clean
        if k % 5 == 4:
            new = ServiceSeries.from_state(json.loads(json.dumps(new.to_state())))
    assert got == want
    assert json.dumps(new.to_state()) == json.dumps(old.to_state())


def test_the_inputs_page_and_reach_the_cycle() -> None:
    """The parity above compares findings, not only empty lists, and reaches the cycle model's
    judgement (a profile, or the last day's level)."""
    paging = 0
    for source, load in SOURCES.items():
        times, vals = load()
        series = ServiceSeries("latency")
        paging += bool(series.update(times, vals))
        if source == "cpu":
            assert series.cycle is not None and series.cycle.watch
    assert paging >= 3
