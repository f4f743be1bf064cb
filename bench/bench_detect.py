"""Benchmark of ``aitrace.detect`` next to numpy, scipy.stats and river, measured in the same run.

Reports (medians of ``--repeat`` runs, single thread, so "per second" is per core):

* Numba start-up: a fresh process importing ``aitrace.detect`` and scoring its
  first points with an empty cache (cold: compiles) and again with the cache
  the first one wrote (warm: loads);
* anomaly scoring on ``--points`` points (default 10 million): one-shot
  ``anomaly_scores`` and the stateful ``AnomalyDetector`` fed in chunks of
  ``--chunk`` points (what a processor does per Kafka batch) and of 50, next to the same
  rolling median/MAD computed with numpy (``sliding_window_view`` + ``np.median``)
  and to river's ADWIN, KSWIN and PageHinkley, on a subset and scaled per point;
  the aitrace rows beside the same runs on ``--baseline-ref``'s ``detect/`` (default
  main) in a fresh process, in alternating rounds, per second of wall time and of
  CPU time (which a loaded machine disturbs less);
* one series update (``from_state`` + ``score`` of 1, 10, 100 or 1,000 points +
  ``to_state``, also through orjson as the worker's table stores it, and with a
  ``ScoreCalibrator``), beside the same loop run on ``--baseline-ref``'s ``detect/``
  (default main) in a fresh process, in alternating rounds; and the same for a live
  ``ServiceSeries`` (latency, confidence) and ``RateSeries`` (``update`` + ``to_state``, as the
  worker's ``LiveRules`` does) on this machine's own requests (``bench/data``);
* drift tests per second: ``ks_2samp_batched`` against ``scipy.stats.ks_2samp``
  called per feature (exact and asymptotic regimes), Wasserstein, chi-square and
  Jensen-Shannon against scipy's functions.

pandas is not installed in this environment, so the numpy rolling baseline is
the "numpy/pandas" column. Run:  .venv/bin/python bench/bench_detect.py [--quick]
(``--skip startup,update,drift`` for the anomaly figures alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

START_PROBE = """
import time
t0 = time.perf_counter()
import numpy as np
import aitrace.detect as d
t1 = time.perf_counter()
d.anomaly_scores(np.arange(100.0))
t2 = time.perf_counter()
d.ks_2samp(np.arange(10.0), np.arange(12.0) + 0.5)
t3 = time.perf_counter()
print(f"{t1 - t0} {t2 - t1} {t3 - t2}")
"""


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def row(name: str, rate: float, unit: str, baseline: float | None = None, note: str = "") -> None:
    ratio = f"{rate / baseline:10.1f}x" if baseline else " " * 11
    print(f"  {name:<44} {rate:>14,.0f} {unit:<9} {ratio}  {note}")


# ---------------------------------------------------------------------------- start-up
def bench_startup() -> dict[str, float]:
    print("\nNumba start-up (fresh process; import / first anomaly_scores / first ks_2samp), seconds")
    cache = tempfile.mkdtemp(prefix="aitrace-bench-cache-")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["AITRACE_NUMBA_CACHE_DIR"] = cache
    out: dict[str, float] = {}
    for label in ("cold", "warm"):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", START_PROBE], env=env, capture_output=True, text=True, check=True)
        total = time.perf_counter() - t
        imp, first, ks = (float(v) for v in proc.stdout.split())
        out[label] = first
        print(
            f"  {label:<5} cache: import {imp:6.3f}  first anomaly_scores {first:6.3f}  "
            f"first ks_2samp {ks:6.3f}  whole process {total:6.2f}"
        )
    print(f"  (cache dir {cache})")
    return out


# ---------------------------------------------------------------------------- anomaly
def numpy_rolling_scores(x: np.ndarray, window: int) -> np.ndarray:
    """The same causal robust z, vectorized in numpy: median and MAD of the previous ``window`` points."""
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(x[:-1], window)
    med = np.median(win, axis=1)
    mad = np.median(np.abs(win - med[:, None]), axis=1)
    z = (x[window:] - med) / np.maximum(1.4826 * mad, 1e-300)
    return z * z / (z * z + 25.0)


def river_rate(make: Callable[[], Any], x: np.ndarray) -> float:
    det = make()
    values = x.tolist()
    t = time.perf_counter()
    for v in values:
        det.update(v)
        _ = det.drift_detected
    return len(values) / (time.perf_counter() - t)


ANOMALY_RATES = ("window 64", "window 32", "chunked, details", "chunked, details=False", "short chunks, details")
SHORT_CHUNK = 50  # a Kafka batch of one series: the per-call cost (dispatch, allocations) shows here


def anomaly_rates(n: int, chunk: int) -> dict[str, float]:
    """Points/s of one-shot ``anomaly_scores`` (windows 64 and 32) and of ``AnomalyDetector`` fed in chunks,
    on a fixed series (the baseline's subprocess builds the same one): per second of wall time, and
    per second of this process's CPU time (``<key> cpu``), which a loaded machine disturbs less."""
    from aitrace.detect import AnomalyDetector, anomaly_scores

    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    x[rng.integers(0, n, n // 10000)] += 20.0  # a few real spikes
    anomaly_scores(x[:1000])  # compiled or loaded before timing

    def chunked(details: bool, size: int = chunk) -> None:
        det = AnomalyDetector()
        for i in range(0, n, size):
            det.score(x[i : i + size], details=details)

    runs: dict[str, Callable[[], Any]] = {
        "window 64": lambda: anomaly_scores(x),
        "window 32": lambda: anomaly_scores(x, window=32),
        "chunked, details": lambda: chunked(True),
        "chunked, details=False": lambda: chunked(False),
        "short chunks, details": lambda: chunked(True, SHORT_CHUNK),
    }
    out = {}
    for key, fn in runs.items():
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        out[key] = n / (time.perf_counter() - wall)
        out[f"{key} cpu"] = n / (time.process_time() - cpu)
    return out


def bench_anomaly(
    n: int, chunk: int, repeat: int, river_n: int, numpy_n: int, baseline_ref: str | None
) -> dict[str, float]:
    """Ours and the baseline's (``baseline_ref``'s detect/ in a fresh process) in alternating rounds,
    so that a change in the machine's load falls on both; medians over the rounds."""
    ours, base = [], []
    env = dict(os.environ, PYTHONPATH=baseline_tree(baseline_ref)) if baseline_ref else None
    cmd = [sys.executable, os.path.abspath(__file__), "--anomaly-only", "--points", str(n), "--chunk", str(chunk)]
    for _ in range(repeat):
        ours.append(anomaly_rates(n, chunk))
        if env is not None:
            base.append(json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout))
    mine = {k: statistics.median(r[k] for r in ours) for k in ours[0]}
    old = {k: statistics.median(r[k] for r in base) for k in base[0]} if base else None
    x = np.random.default_rng(0).normal(size=max(numpy_n, river_n))
    sub = x[:numpy_n]
    numpy_rate = numpy_n / timed(lambda: numpy_rolling_scores(sub, 64), 1)

    from river.drift import ADWIN, KSWIN, PageHinkley

    rsub = x[:river_n]
    rates = {
        "river ADWIN": river_rate(ADWIN, rsub),
        "river KSWIN (window 100)": river_rate(lambda: KSWIN(seed=0), rsub[: max(river_n // 10, 1000)]),
        "river PageHinkley": river_rate(PageHinkley, rsub),
    }
    label = f"; baseline = git {baseline_ref} in a fresh process, alternating rounds" if old else ""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nAnomaly scoring, {n:,} points (single thread, medians of {repeat} rounds{label}; load {load})")
    print("  ratio = ours / baseline for aitrace rows, ours / that row for the others; wall time, and CPU time")
    for key in ANOMALY_RATES:
        name = f"aitrace {'anomaly_scores (' + key + ')' if key.startswith('window') else 'AnomalyDetector'}"
        size = SHORT_CHUNK if key.startswith("short") else chunk
        note = f"chunks of {size}, {key.split(', ')[1]}; " if "chunk" in key else ""
        cpu = f"{key} cpu"
        if old:
            row(f"{name} [{baseline_ref}]", old[key], "points/s", note=f"{note}{old[cpu]:,.0f} per CPU s")
        ratio = f" ({mine[cpu] / old[cpu]:.2f}x)" if old else ""
        row(name, mine[key], "points/s", old[key] if old else None, note=f"{note}{mine[cpu]:,.0f} per CPU s{ratio}")
    one_shot = mine["window 64"]
    row(
        "numpy rolling median/MAD (window 64)",
        numpy_rate,
        "points/s",
        note=f"ours {one_shot / numpy_rate:.0f}x; on {numpy_n:,}",
    )
    for name, rate in rates.items():
        row(name, rate, "points/s", note=f"ours {one_shot / rate:.0f}x; on a subset, per point")
    out = {"anomaly_scores": one_shot, "stateful": mine["chunked, details"], "numpy": numpy_rate, **rates}
    if old:
        out.update({f"baseline {k}": v for k, v in old.items()})
    return out


# ---------------------------------------------------------------------------- per-update cost
UPDATE_SIZES = (1, 10, 100, 1000)


UPDATE_KINDS = ("memory", "orjson", "+calibrator")


def update_cost(repeat: int) -> dict[str, Any]:
    """Per-update cost of one series: restore, score a chunk, save (what the worker does per batch).

    ``memory`` keeps the state dict between updates; ``orjson`` also writes it to bytes and
    reads it back, as the worker's Faust table does (its JSON codec is orjson);
    ``+calibrator`` adds a :class:`ScoreCalibrator` (restore, ``rare``, save) to the orjson
    case, as a model's latency series does. Medians of ``repeat`` runs of ``updates`` updates.
    """
    import aitrace.detect.anomaly as anomaly_module
    import orjson
    from aitrace.detect import AnomalyDetector
    from aitrace.detect.calibrate import ScoreCalibrator

    x = np.random.default_rng(2).standard_t(3, size=200_000)
    warm, cal = AnomalyDetector(), ScoreCalibrator()
    cal.rare(warm.score(x[:5000]), warm.last_codes, threshold=0.9)
    first = {"det": warm.to_state(), "cal": cal.to_state()}
    out: dict[str, Any] = {
        "module": anomaly_module.__file__,
        "state_bytes": len(orjson.dumps(first["det"])),
        "sizes": {},
    }
    for size in UPDATE_SIZES:
        updates = max(100, 40_000 // size)
        chunks = [x[5000 + k * size : 5000 + (k + 1) * size] for k in range(updates)]

        def run(kind: str, chunks: list[np.ndarray] = chunks) -> None:
            codec, calibrate = kind != "memory", kind == "+calibrator"
            state: Any = orjson.dumps(first) if codec else first
            for chunk in chunks:
                st = orjson.loads(state) if codec else state
                det = AnomalyDetector.from_state(st["det"])
                scores = det.score(chunk)
                new = {"det": det.to_state(), "cal": st["cal"]}
                if calibrate:
                    c = ScoreCalibrator.from_state(st["cal"])
                    c.rare(scores, det.last_codes, threshold=0.9)
                    new["cal"] = c.to_state()
                state = orjson.dumps(new) if codec else new

        run("+calibrator")
        out["sizes"][size] = {kind: timed(lambda kind=kind: run(kind), repeat) / updates for kind in UPDATE_KINDS}
        out["sizes"][size].update(service_update_cost(size, repeat))
    return out


SERVICE_KINDS = ("latency", "confidence", "error_rate")
ALL_KINDS = UPDATE_KINDS + SERVICE_KINDS
REQUESTS_CSV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "telemetry-vm-20261205.requests.csv.gz")


def _requests() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This machine's own ASGI service, one row per request: times (us), latency (ms), failed (0/1)."""
    rows = np.loadtxt(REQUESTS_CSV, delimiter=",", skiprows=1, dtype=str)
    times = np.char.rstrip(rows[:, 0], "Z").astype("datetime64[us]").astype(np.int64)  # UTC
    return times, rows[:, 1].astype(np.float64), 1.0 - rows[:, 2].astype(np.float64)


def service_update_cost(size: int, repeat: int) -> dict[str, float]:
    """Per-update cost of a model's series in the worker: ``update(chunk)`` + ``to_state`` on the live
    object (``LiveRules`` keeps it between chunks), on real requests after 20,000 of warm-up (in
    each run, untimed). ``confidence`` scores the latencies too: the same rules
    less the level-shift monitor."""
    from aitrace.detect.service import RateSeries, ServiceSeries

    times, latency, failed = _requests()
    updates, warm = max(30, 4000 // size), 20_000
    out = {}
    for kind in SERVICE_KINDS:
        values = failed if kind == "error_rate" else latency
        costs = []
        for _ in range(repeat + 1):  # the first run loads the kernels
            rules = RateSeries(kind) if kind == "error_rate" else ServiceSeries(kind)
            rules.update(times[:warm], values[:warm])
            t0 = time.perf_counter()
            for k in range(warm, warm + updates * size, size):
                rules.update(times[k : k + size], values[k : k + size])
                rules.to_state()
            costs.append((time.perf_counter() - t0) / updates)
        out[kind] = statistics.median(costs[1:])
    return out


def baseline_tree(ref: str) -> str:
    """A folder where ``import aitrace.detect`` loads ``detect/`` as of git ``ref`` (kept, so its
    Numba cache stays warm between runs)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sha = subprocess.run(["git", "-C", repo, "rev-parse", ref], capture_output=True, text=True, check=True).stdout
    root = os.path.join(tempfile.gettempdir(), f"aitrace-bench-{sha.strip()[:12]}")
    if not os.path.isdir(os.path.join(root, "aitrace", "detect")):
        os.makedirs(os.path.join(root, "aitrace"), exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", repo, "archive", ref, "detect", "aitrace/__init__.py"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", root], input=archive.stdout, check=True)
        os.replace(os.path.join(root, "detect"), os.path.join(root, "aitrace", "detect"))
    return root


def _median_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    sizes = {
        str(size): {kind: statistics.median(r["sizes"][str(size)][kind] for r in rounds) for kind in ALL_KINDS}
        for size in UPDATE_SIZES
    }
    return {**rounds[0], "sizes": sizes}


def bench_update_cost(rounds: int, baseline_ref: str | None) -> dict[str, Any]:
    """Ours and the baseline's (a fresh process on ``baseline_ref``'s detect/) in alternating rounds,
    so that a change in the machine's load falls on both."""
    ours, base = [], []
    env = dict(os.environ, PYTHONPATH=baseline_tree(baseline_ref)) if baseline_ref else None
    cmd = [sys.executable, os.path.abspath(__file__), "--update-cost-only", "--repeat", "3"]
    for _ in range(rounds):
        ours.append(json.loads(json.dumps(update_cost(3))))  # same str keys as the baseline's
        if env is not None:
            base.append(json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout))
    mine, old = _median_rounds(ours), _median_rounds(base) if base else None
    label = f"; baseline = git {baseline_ref} in alternating rounds, loaded from {old['module']}" if old else ""
    print(f"\nOne series update, per update (medians of {rounds} rounds){label}")
    print("  memory/orjson/+calibrator: AnomalyDetector from_state + score(chunk) + to_state;")
    print("  latency/confidence/error_rate: a live ServiceSeries/RateSeries, update(chunk) + to_state, real requests")
    print(
        f"  state size as JSON: {mine['state_bytes']:,} bytes" + (f" (baseline {old['state_bytes']:,})" if old else "")
    )
    for size in UPDATE_SIZES:
        for kind in ALL_KINDS:
            cost = mine["sizes"][str(size)][kind]
            note = f"{size / cost:>12,.0f} points/s"
            if old:
                was = old["sizes"][str(size)][kind]
                note += f"   baseline {was * 1e6:7.1f} us, {size / was:>12,.0f} points/s   {was / cost:5.2f}x faster"
            print(f"  {size:>5} points/update, {kind:<11}  {cost * 1e6:7.1f} us  {note}")
    return {"ours": mine, "baseline": old}


# ---------------------------------------------------------------------------- drift
def bench_drift(repeat: int) -> dict[str, float]:
    import scipy.stats
    from aitrace.detect import (
        chi2_drift,
        chi2_drift_batched,
        jensen_shannon_from_counts,
        ks_2samp,
        ks_2samp_batched,
        psi,
        psi_batched,
        wasserstein_1d,
        wasserstein_1d_batched,
    )
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(1)
    out: dict[str, float] = {}
    print("\nDrift tests (tests/s; ratio = ours / scipy per feature, same data, same run)")
    configs = [
        ("KS exact, 500 vs 500", 400, 500, 500),
        ("KS exact, 1000 vs 800", 200, 1000, 800),
        ("KS exact, 100 vs 60", 1000, 100, 60),
        ("KS asymptotic, 20000 vs 15000", 40, 20000, 15000),
    ]
    ks_2samp_batched(rng.normal(size=(2, 50)), rng.normal(size=(2, 40)))  # warm the kernels
    for label, k, n1, n2 in configs:
        a = rng.normal(size=(k, n1))
        b = rng.normal(0.05, 1.0, size=(k, n2))
        ours = k / timed(lambda a=a, b=b: ks_2samp_batched(a, b), repeat)
        single = k / timed(lambda a=a, b=b: [ks_2samp(ra, rb) for ra, rb in zip(a, b, strict=True)], 1)
        ref = k / timed(lambda a=a, b=b: [scipy.stats.ks_2samp(ra, rb) for ra, rb in zip(a, b, strict=True)], 1)
        row(f"{label}: ks_2samp_batched", ours, "tests/s", ref)
        row(f"{label}: aitrace ks_2samp per feature", single, "tests/s", ref)
        row(f"{label}: scipy.stats.ks_2samp per feature", ref, "tests/s")
        out[label] = ours / ref

    k, n1, n2 = 300, 2000, 2000
    a, b = rng.normal(size=(k, n1)), rng.normal(size=(k, n2))
    wasserstein_1d_batched(a[:2], b[:2])
    psi_batched(a[:2], b[:2])
    chi2_drift_batched(np.ones((2, 3)), np.ones((2, 3)))
    batched = k / timed(lambda: wasserstein_1d_batched(a, b), repeat)
    ours = k / timed(lambda: [wasserstein_1d(a[i], b[i]) for i in range(k)], repeat)
    ref = k / timed(lambda: [scipy.stats.wasserstein_distance(a[i], b[i]) for i in range(k)], 1)
    row("wasserstein_1d_batched, 2000 vs 2000", batched, "tests/s", ref)
    row("wasserstein_1d per feature", ours, "tests/s", ref)
    row("scipy.stats.wasserstein_distance", ref, "tests/s")
    batched = k / timed(lambda: psi_batched(a, b), repeat)
    ours = k / timed(lambda: [psi(a[i], b[i]) for i in range(k)], repeat)
    row("psi_batched, 10 bins, 2000 vs 2000", batched, "tests/s", ours, note="ratio vs psi per feature")
    row("psi per feature (numpy quantiles + searchsorted)", ours, "tests/s")

    counts_a = rng.integers(1, 1000, size=(k, 12))
    counts_b = rng.integers(1, 1000, size=(k, 12))
    batched = k / timed(lambda: chi2_drift_batched(counts_a, counts_b), repeat)
    ours = k / timed(lambda: [chi2_drift(counts_a[i], counts_b[i]) for i in range(k)], repeat)
    ref = k / timed(lambda: [scipy.stats.chi2_contingency(np.vstack([counts_a[i], counts_b[i]])) for i in range(k)], 1)
    row("chi2_drift_batched, 12 categories", batched, "tests/s", ref)
    row("chi2_drift per feature", ours, "tests/s", ref)
    row("scipy.stats.chi2_contingency", ref, "tests/s")

    ours = k / timed(lambda: [jensen_shannon_from_counts(counts_a[i], counts_b[i]) for i in range(k)], repeat)
    ref = k / timed(lambda: [jensenshannon(counts_a[i], counts_b[i], base=2) for i in range(k)], 1)
    row("jensen_shannon_from_counts, 12 bins", ours, "tests/s", ref)
    row("scipy.spatial.distance.jensenshannon", ref, "tests/s")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=10_000_000, help="series length for anomaly scoring")
    parser.add_argument("--chunk", type=int, default=1000, help="chunk size for the stateful form")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--river-points", type=int, default=50_000, help="subset for river (scaled per point)")
    parser.add_argument("--numpy-points", type=int, default=300_000, help="subset for the numpy baseline")
    parser.add_argument("--quick", action="store_true", help="1M points, fewer repeats (a smoke run)")
    parser.add_argument("--json", help="also write the headline figures to this JSON file")
    parser.add_argument(
        "--baseline-ref",
        default="main",
        help="git ref whose detect/ is the baseline of anomaly scoring and update cost ('' skips)",
    )
    parser.add_argument("--update-cost-only", action="store_true", help=argparse.SUPPRESS)  # the baseline's subprocess
    parser.add_argument("--anomaly-only", action="store_true", help=argparse.SUPPRESS)  # the baseline's subprocess
    parser.add_argument("--skip", default="", help="sections to skip: startup,anomaly,update,drift")
    args = parser.parse_args()
    if args.update_cost_only:
        print(json.dumps(update_cost(args.repeat)))
        return 0
    if args.anomaly_only:
        print(json.dumps(anomaly_rates(args.points, args.chunk)))
        return 0
    if args.quick:
        args.points, args.repeat, args.river_points, args.numpy_points = 1_000_000, 2, 10_000, 50_000
    import numba
    import scipy

    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, numba {numba.__version__}, scipy {scipy.__version__}"
    )
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()}")
    t0 = time.perf_counter()
    skip = set(args.skip.split(","))
    baseline = args.baseline_ref or None
    results: dict[str, Any] = {}
    if "startup" not in skip:
        results["startup_s"] = bench_startup()
    if "anomaly" not in skip:
        results["anomaly_points_per_s"] = bench_anomaly(
            args.points, args.chunk, args.repeat, args.river_points, args.numpy_points, baseline
        )
    if "update" not in skip:
        results["update_cost"] = bench_update_cost(5, baseline)
    if "drift" not in skip:
        results["ks_batched_over_scipy"] = bench_drift(args.repeat)
    print(f"\nbenchmark took {time.perf_counter() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
