"""Incidents as the benches count them: the worker's rule on one series fed in chunks, and the baselines'
flags grouped into runs (``bench_realdata.py``, its sections' helpers and ``bench_training.py`` share them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

T0 = 1_800_000_000_000_000
GAP = 50  # normal points that close an incident (the worker's IncidentPolicy.resolve_after)
CHUNK = 50  # points per chunk, as a metric batch reaches the worker


def worker_incidents(values: np.ndarray, name: str = "sensor", times: np.ndarray | None = None) -> list[int]:
    """Indices where the worker's anomaly rule opens an incident on one series fed in chunks (one point a
    second unless ``times``, microseconds, are given)."""
    from aitrace.processors.detection import SeriesDetectors

    det = SeriesDetectors({})
    opened = []
    times = T0 + np.arange(values.size, dtype=np.int64) * 1_000_000 if times is None else times
    steps = np.arange(values.size, dtype=np.int64)
    for k, lo in enumerate(range(0, values.size, CHUNK)):
        hi = min(lo + CHUNK, values.size)
        chunk = {
            "kind": "run",
            "run_id": "bench",
            "service": "bench",
            "trace_id": "0" * 32,
            "ctx": None,
            "series": {f"|{name}": {"steps": steps[lo:hi], "times": times[lo:hi], "values": values[lo:hi]}},
        }
        for alert in det.apply(chunk, source="s:0", offset=k).alerts:
            if alert["version"] == 1 and alert["state"] == "open":
                opened.append(int(np.searchsorted(times, alert["first_seen"])))
    return opened


def run_starts(flags: np.ndarray, gap: int = GAP) -> list[int]:
    """Start indices of runs of flags separated by at least ``gap`` normal points."""
    starts, last = [], -(10**9)
    for i in np.flatnonzero(flags).tolist():
        if i - last > gap:
            starts.append(i)
        last = i
    return starts


def zscore_incidents(values: np.ndarray, window: int = 100, limit: float = 4.0) -> list[int]:
    """Baseline: |z| > 4 against the mean / sd of the previous 100 points."""
    from numpy.lib.stride_tricks import sliding_window_view

    if values.size <= window:
        return []
    win = sliding_window_view(values, window)[:-1]
    mu, sd = win.mean(axis=1), win.std(axis=1)
    x = values[window:]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, np.abs(x - mu) / sd, np.where(x != mu, np.inf, 0.0))
    flags = np.zeros(values.size, dtype=bool)
    flags[window:] = z > limit
    return run_starts(flags)


def river_incidents(values: np.ndarray, make: Callable[[], Any]) -> list[int]:
    det = make()
    flags = np.zeros(values.size, dtype=bool)
    for i, v in enumerate(values.tolist()):
        det.update(v)
        flags[i] = det.drift_detected
    return run_starts(flags)
