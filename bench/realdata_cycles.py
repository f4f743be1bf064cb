"""(f) of ``bench_realdata.py``: series with a daily or weekly cycle, each detector beside the others.

* river's ``WaterFlow`` (bundled with river): hourly water flow through a pipeline branch,
  about 2 months, a daily swing of about 3 l/s on 102 l/s. river's description names four
  anomalous segments (three "low value moments", water losses or maintenance, and a small
  pumping peak after the first two) but ships no labels; the bench marks them by that
  description, the same way for every detector: runs of hours below 95 l/s or above 108
  l/s (the normal hours lie within 99-107), printed with their times. Detected: an incident
  opens inside the segment or within 6 hours after it (delay: from the segment's first hour
  to the first such incident); every other incident is false, counted per 1,000 points
  outside the segments.
* pmdarima's ``load_taylor`` (if pmdarima is installed): half-hourly electricity demand of
  England and Wales, Monday 5 June to Sunday 27 August 2000, daily and weekly cycles, no
  labelled anomaly: every incident is false.

Incidents: the indices where a detector flags, runs closer than ``GAP`` points merged (as
the other sections). ``ServiceSeries`` is the worker's rule for a model's numeric series
(``aitrace.detect.service``), with its cycle and without; the rolling z-score and river's
detectors are the baselines.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from realdata_incidents import run_starts, worker_incidents

HOUR_US = 3_600_000_000
AFTER_US = 6 * HOUR_US  # an incident on the way back from a segment still belongs to it


def _water_flow() -> tuple[np.ndarray, np.ndarray] | None:
    try:
        import river.datasets
    except ImportError:
        return None
    path = Path(river.datasets.__file__).parent / "water-flow.csv"
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    times = np.array([int(datetime.fromisoformat(r["Time"]).timestamp() * 1e6) for r in rows], dtype=np.int64)
    return times, np.array([float(r["Water flow [l/s]"]) for r in rows])


def _taylor() -> tuple[np.ndarray, np.ndarray] | None:
    try:
        from pmdarima.datasets import load_taylor
    except ImportError:
        return None
    y = np.asarray(load_taylor(), dtype=np.float64)
    start = int(datetime(2000, 6, 5, tzinfo=UTC).timestamp() * 1e6)
    return start + np.arange(y.size, dtype=np.int64) * (HOUR_US // 2), y


def _segments(values: np.ndarray) -> list[tuple[int, int]]:
    """Runs of points outside the normal band, as the dataset's description names them."""
    out = (values < 95.0) | (values > 108.0)
    edges = np.flatnonzero(np.diff(np.r_[0, out.astype(np.int8), 0]))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def service_incidents(times: np.ndarray, values: np.ndarray, *, cycle: bool, chunk: int, gap: int) -> list[int]:
    from aitrace.detect.service import ServiceSeries

    rules, flags = ServiceSeries("series", cycle=cycle), np.zeros(values.size, dtype=bool)
    for lo in range(0, values.size, chunk):
        for f in rules.update(times[lo : lo + chunk], values[lo : lo + chunk]):
            flags[f.index] = True
    return run_starts(flags, gap)


def _detectors(times: np.ndarray, chunk: int, gap: int, base: dict[str, Callable]) -> dict[str, Callable]:
    out: dict[str, Callable[[np.ndarray], list[int]]] = {
        "worker rule (a run's metric)": lambda v: run_starts(_flags(worker_incidents(v, "series", times), v.size), gap),
        "ServiceSeries, cycle": lambda v: service_incidents(times, v, cycle=True, chunk=chunk, gap=gap),
        "ServiceSeries, no cycle": lambda v: service_incidents(times, v, cycle=False, chunk=chunk, gap=gap),
    }
    out.update({k: v for k, v in base.items() if not k.startswith(("worker", "service"))})
    return out


def _flags(opened: list[int], n: int) -> np.ndarray:
    flags = np.zeros(n, dtype=bool)
    flags[opened] = True
    return flags


def bench_cycles(base: dict[str, Callable], chunk: int, gap: int) -> None:
    from aitrace.detect.cycle import CycleModel

    water = _water_flow()
    if water is None:
        print("(f) WaterFlow skipped: river is not installed")
    else:
        times, values = water
        segs = _segments(values)
        when = [datetime.fromtimestamp(times[a] / 1e6, tz=UTC).strftime("%m-%d %H:%M") for a, _ in segs]
        inside = np.zeros(values.size, dtype=bool)
        for a, b in segs:
            inside[a : b + 1] = True
        m = CycleModel()
        m.observe(times, values)
        print(
            f"(f) river WaterFlow ({values.size} hourly points; cycle found: {m.period_hours or 'none'} h, "
            f"strength {m.score:.2f}); {len(segs)} segments by the description ({', '.join(when)} UTC)"
        )
        for label, fn in _detectors(times, chunk, gap, base).items():
            opened = fn(values)
            delays = [
                min((times[i] - times[a]) / HOUR_US for i in hits)
                for a, b in segs
                if (hits := [i for i in opened if times[a] <= times[i] <= times[b] + AFTER_US])
            ]
            false = [i for i in opened if not any(times[a] <= times[i] <= times[b] + AFTER_US for a, b in segs)]
            rate = 1000 * len(false) / max(int((~inside).sum()), 1)
            delay = f"{np.median(delays):.0f} h" if delays else "-"
            print(
                f"    {label:28s} segments {len(delays)}/{len(segs)} (median delay {delay}), "
                f"false {rate:6.2f} per 1,000 points ({len(false)})"
            )
    taylor = _taylor()
    if taylor is None:
        print("(f) taylor skipped: pmdarima is not installed (pip install pmdarima, for the bench only)")
        return
    times, values = taylor
    m = CycleModel()
    m.observe(times, values)
    print(
        f"(f) pmdarima taylor ({values.size} half-hourly points, no labelled anomaly; cycle found: "
        f"{m.period_hours or 'none'} h, strength {m.score:.2f}): false incidents per 1,000 points"
    )
    for label, fn in _detectors(times, chunk, gap, base).items():
        n = len(fn(values))
        print(f"    {label:28s} {1000 * n / values.size:8.2f}   ({n} incidents)   target <= 1")
