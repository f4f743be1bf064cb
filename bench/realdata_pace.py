"""(h) A run's pace on real step times: the step times and samples/s of the bench's healthy PyTorch runs
(``bench/data/steptimes-*.csv.gz``, written by ``record_steptimes.py``: nothing injected, so every incident
is false), through the worker's rule for a run's metric under its own name (a pace: only sustained
slowdowns page) and under a name that is no pace (the generic scores), beside a rolling z-score; then the
same series with the step time made 4x slower from 60 % of each run on (samples/s a quarter): runs found
and the delay in steps.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
from realdata_incidents import worker_incidents, zscore_incidents

PACES = ("step_time_ms", "samples_per_sec")
SLOWER = 4.0  # the injected slowdown: past the sharp view's 3x, which needs no 32 seconds of it
ONSET = 0.6


def read_steptimes(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{run: {"time_us": ..., "step_time_ms": ..., "samples_per_sec": ...}}`` in step order."""
    rows: dict[str, list[tuple[int, int, float, float]]] = {}
    with gzip.open(path, "rt", newline="") as fh:
        for r in csv.DictReader(fh):
            rows.setdefault(r["run"], []).append(
                (int(r["step"]), int(r["time_us"]), float(r["step_time_ms"]), float(r["samples_per_sec"]))
            )
    out = {}
    for run, got in rows.items():
        got.sort()
        cols = np.asarray([g[1:] for g in got], dtype=np.float64)
        out[run] = {"time_us": cols[:, 0].astype(np.int64), PACES[0]: cols[:, 1], PACES[1]: cols[:, 2]}
    return out


def _slowed(series: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    n = series[PACES[0]].size
    at = int(ONSET * n)
    factor = np.where(np.arange(n) < at, 1.0, SLOWER)
    return {PACES[0]: series[PACES[0]] * factor, PACES[1]: series[PACES[1]] / factor}, at


def bench_pace(folder: Path) -> None:
    for path in sorted(folder.glob("steptimes-*.csv.gz")):
        runs = read_steptimes(path)
        points = sum(s[m].size for s in runs.values() for m in PACES)
        print(
            f"(h) a run's pace, {path.name} ({len(runs)} healthy runs x {len(PACES)} series, {points} points, "
            "nothing injected: every incident is false), then each run 4x slower from 60 % of it on"
        )
        ways = {
            "worker rule, named as a pace": lambda v, m, t: worker_incidents(v, m, t),
            "worker rule, a name no pace": lambda v, m, t: worker_incidents(v, f"series_{m[:4]}", t),
            "rolling z |z|>4 / 100": lambda v, m, t: zscore_incidents(v),
        }
        for label, fn in ways.items():
            false = sum(len(fn(s[m], m, s["time_us"])) for s in runs.values() for m in PACES)
            found, delays = 0, []
            for s in runs.values():
                slowed, at = _slowed(s)
                hits = [i - at for m in PACES for i in fn(slowed[m], m, s["time_us"]) if i >= at]
                found += bool(hits)
                delays += [min(hits)] if hits else []
            delay = f"{np.median(delays):.0f}" if delays else "-"
            print(
                f"    {label:30s} false {1000 * false / points:6.2f} per 1,000 ({false:3d}); slowed runs found "
                f"{found}/{len(runs)} (median delay {delay} steps)"
            )
