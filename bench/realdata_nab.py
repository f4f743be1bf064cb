"""(g) of ``bench_realdata.py``: real cloud server metrics every 5 minutes with labelled incident windows.

The Numenta Anomaly Benchmark (NAB, github.com/numenta/NAB, AGPL-3.0; not part of this
project) publishes real AWS CloudWatch metrics (EC2 CPU, disk writes, network in, ELB request
counts, RDS CPU) and a request-latency series from a known system failure, each about 2
weeks at 5-minute intervals, with windows around each labelled incident
(``labels/combined_windows.json``). Point ``--nab`` at a NAB checkout (its ``data/`` and
``labels/`` folders); the section is skipped without one.

Each series goes through each detector in chunks of ``CHUNK`` points with its real
timestamps. Figures, for every detector beside the others:

* false incidents per 1,000 points: incidents that open outside every window, after NAB's
  probation (the first 15 % of each file, at most 750 points, is for learning and not scored);
* windows detected (an incident opens inside) and the median delay from the window's start;
* NAB's standard score, normalised so that a detector that never fires scores 0 and one that
  fires at the start of every window and nowhere else scores 100 (true positive +1 scaled by
  how early in the window, false positive -0.11, less right after a window, missed window -1).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

FOLDERS = ("realAWSCloudwatch", "realKnownCause/ec2_request_latency_system_failure.csv")
TP, FP, FN = 1.0, 0.11, 1.0  # NAB's standard profile


def _us(text: str) -> int:
    return int(datetime.fromisoformat(text[:19]).replace(tzinfo=UTC).timestamp() * 1_000_000)


def _short(key: str) -> str:
    """A file's name in the per-file column: its hash (ec2_cpu_utilization_24ae8d: 24ae8d), else its name."""
    stem = Path(key).stem
    tail = stem.rsplit("_", 1)[-1]
    return tail if len(tail) == 6 and all(c in "0123456789abcdef" for c in tail) else stem


def read_nab(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]]:
    """``{file: (times_us, values, [(first, last) index of each window])}`` for the files of ``FOLDERS``."""
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    out = {}
    for key in sorted(windows):
        if not any(key == f or key.startswith(f + "/") for f in FOLDERS):
            continue
        path = root / "data" / key
        if not path.exists():
            continue
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        times = np.array([_us(r["timestamp"]) for r in rows], dtype=np.int64)
        values = np.array([float(r["value"]) for r in rows])
        spans = []
        for a, b in windows[key]:
            lo, hi = np.searchsorted(times, _us(a)), np.searchsorted(times, _us(b), side="right") - 1
            spans.append((int(lo), int(hi)))
        out[key] = (times, values, spans)
    return out


def _sigmoid(position: float) -> float:
    """NAB's scaled sigmoid: about 1 at a window's start, 0 at its end, towards -1 after it."""
    return -1.0 if position > 3.0 else 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def nab_score(opened: list[int], n: int, spans: list[tuple[int, int]]) -> tuple[float, int, list[int], int]:
    """(raw score, windows detected, delays in points, false incidents) of one file."""
    probation = min(int(0.15 * n), 750)
    score, found, delays, false = -FN * len(spans), 0, [], 0
    hit = [False] * len(spans)
    for i in sorted(set(opened)):
        if i < probation:
            continue
        inside = [k for k, (a, b) in enumerate(spans) if a <= i <= b]
        if inside:
            k = inside[0]
            if not hit[k]:
                a, b = spans[k]
                hit[k] = True
                score += FN + TP * _sigmoid(-(b - i + 1) / (b - a + 1))
                found += 1
                delays.append(i - a)
            continue
        false += 1
        before = [(a, b) for a, b in spans if b < i]  # in time order, as NAB lists them
        if before:
            a, b = before[-1]
            score += FP * _sigmoid((i - b) / max(b - a, 1))
        else:
            score -= FP
    return score, found, delays, false


def bench_nab(root: Path | None, detectors: dict[str, Callable[[np.ndarray, np.ndarray], list[int]]]) -> None:
    if root is None or not (root / "labels" / "combined_windows.json").exists():
        print("(g) NAB server metrics skipped: pass --nab <a NAB checkout> (github.com/numenta/NAB)")
        return
    series = read_nab(root)
    points = sum(v.size for _, v, _ in series.values())
    n_windows = sum(len(s) for _, _, s in series.values())
    perfect = sum(TP * _sigmoid(-1.0) for _, _, s in series.values() for _ in s)
    print(
        f"(g) NAB real server metrics every 5 minutes ({len(series)} series, {points} points, {n_windows} "
        "labelled windows): false incidents per 1,000 points, windows found, NAB standard score "
        "(never fires = 0, perfect = 100)"
    )
    for label, fn in detectors.items():
        total, found, delays, false, per_file = 0.0, 0, [], 0, []
        for key, (times, values, spans) in series.items():
            s, f, d, fp = nab_score(fn(times, values), values.size, spans)
            total, found, false = total + s, found + f, false + fp
            delays += d
            per_file.append(f"{_short(key)}:{fp}")
        norm = 100 * (total + FN * n_windows) / (perfect + FN * n_windows)
        delay = f"{np.median(delays):.0f}" if delays else "-"
        print(
            f"    {label:28s} false {1000 * false / points:6.2f} per 1,000 ({false:3d}), windows {found}/{n_windows} "
            f"(median delay {delay} points), score {norm:6.1f}"
        )
        print(f"        false per file: {' '.join(per_file)}")
