"""Detectors on real data, each figure beside a baseline measured in the same run.

    .venv/bin/python bench/bench_realdata.py [--data ../shared/data] [--quick] [--nab NAB]
        [--only-telemetry] [--only-cycles] [--only-nab] [--only-pace]

(a) drift on summaries (``aitrace.summarize`` -> ``detect_drift``) of real tables
    (scikit-learn's bundled wine, breast_cancer, iris, diabetes): share of random,
    same-population splits reported as drift (false positive rate, target <= 5 %), and
    power on splits that differ (one class against another; diabetes by sex), against
    scipy's two-sample KS on the raw rows with Bonferroni over the features.
(a2) the same on statsmodels' bundled real tables (``realdata_tables.py``: period and group
    splits, batches against a reference), skipped with one line when statsmodels is missing;
(a3) (a)'s tables as a monitor sees them: 20-row batches against a reference.
(b) false incidents per 1,000 points on SKAB anomaly-free (every sensor a series, fed
    in chunks as the worker receives them): the worker's anomaly rule against a rolling
    z-score (|z| > 4 over 100 points) and river's detectors when river is installed.
(c) SKAB labelled faults (valve1, valve2, other): experiments detected (an incident,
    on any sensor, opens inside the labelled window) and the delay from the window's start.
(d) points/s of the anomaly kernel.
(e) false incidents per 1,000 points on this machine's own telemetry (bench/data/*.csv,
    written by bench/record_telemetry.py: real, unlabelled, normal operation), every
    numeric column a series fed in chunks as in (b), with a table of which columns fire;
    and every request's latency through the worker's model path (inference chunks).
(f) series with a daily or weekly cycle (``realdata_cycles.py``): river's WaterFlow (segments
    named by its description) and pmdarima's taylor electricity demand, the worker's rule for
    a model's numeric series with and without its cycle, beside the baselines.
(g) real cloud server metrics every 5 minutes with labelled incident windows (``realdata_nab.py``,
    the Numenta Anomaly Benchmark's AWS CloudWatch series, from a NAB checkout given by ``--nab``):
    false incidents per 1,000 points, windows found and NAB's standard score, beside the baselines.
(h) a run's pace (``realdata_pace.py``): real step times and samples/s of the bench's healthy PyTorch
    runs (bench/data/steptimes-*.csv.gz), false incidents, and the same runs made 4x slower.

(b), (c) and (e) also run that rule through the worker (``service path``: a model's series,
``aitrace.detect.service.ServiceSeries``, one point a second) beside the training-run rule, and
the public ``SeriesMonitor("generic")`` at its defaults (what ``aitrace backtest --kind generic`` runs).

The SKAB recordings are not part of the project (see the data folder's README); (b)-(d)
are skipped when they are not found.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sections' modules, also under python -m
from realdata_incidents import CHUNK, GAP, T0, river_incidents, run_starts, worker_incidents, zscore_incidents

ALPHA = 0.05


# ----------------------------------------------------------------------------- (a) tables
def _tables() -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    from sklearn import datasets

    out = {}
    for name in ("wine", "breast_cancer", "iris", "diabetes"):
        d = getattr(datasets, f"load_{name}")()
        out[name] = (np.asarray(d.data, dtype=np.float64), np.asarray(d.target), list(d.feature_names))
    return out


def _ours(a: np.ndarray, b: np.ndarray, names: list[str]) -> bool:
    import aitrace
    from aitrace.detect import detect_drift

    ref = {f["name"]: f for f in aitrace.summarize({n: a[:, i] for i, n in enumerate(names)})}
    cur = {f["name"]: f for f in aitrace.summarize({n: b[:, i] for i, n in enumerate(names)})}
    return any(r.drifted for r in detect_drift(ref, cur, alpha=ALPHA, correction="holm"))


def _scipy_ks(a: np.ndarray, b: np.ndarray, names: list[str]) -> bool:
    from scipy.stats import ks_2samp

    p = [ks_2samp(a[:, i], b[:, i]).pvalue for i in range(len(names))]
    return min(p) * len(names) < ALPHA


def _split_pairs(rng: np.random.Generator, tables: dict, repeats: int, size: int | None) -> Iterable[tuple]:
    """Same population: random halves (or two disjoint random batches of ``size`` rows)."""
    for name, (x, _y, names) in tables.items():
        for _ in range(repeats):
            order = rng.permutation(len(x))
            half = len(x) // 2 if size is None else size
            yield name, x[order[:half]], x[order[half : 2 * half]], names


def _group_pairs(rng: np.random.Generator, tables: dict, repeats: int, size: int | None) -> Iterable[tuple]:
    """Different populations: one class against another (diabetes: by sex, sex left out)."""
    for name, (x, y, names) in tables.items():
        if name == "diabetes":
            col = names.index("sex")
            keep = [i for i in range(len(names)) if i != col]
            sex = x[:, col]
            a_rows, b_rows = x[sex == sex.min()][:, keep], x[sex == sex.max()][:, keep]
            cols = [names[i] for i in keep]
        else:
            classes = {"breast_cancer": (0, 1)}.get(name, (0, 1))
            a_rows, b_rows, cols = x[y == classes[0]], x[y == classes[1]], names
        for _ in range(repeats if size is not None else 1):
            if size is None:
                yield name, a_rows, b_rows, cols
            else:
                yield (
                    name,
                    a_rows[rng.choice(len(a_rows), size, replace=False)],
                    b_rows[rng.choice(len(b_rows), size, replace=False)],
                    cols,
                )


def _rate(pairs: Iterable[tuple], test: Callable[..., bool]) -> tuple[float, int]:
    hits = total = 0
    for _name, a, b, names in pairs:
        hits += bool(test(a, b, names))
        total += 1
    return hits / max(total, 1), total


def bench_tables(quick: bool) -> list[tuple[str, str, str, str]]:
    tables = _tables()
    rows = []
    repeats = 25 if quick else 100
    for label, gen, size in (
        ("null FPR, random halves", _split_pairs, None),
        ("null FPR, 50-row batches", _split_pairs, 50),
        ("power, whole groups", _group_pairs, None),
        ("power, 20-row samples per group", _group_pairs, 20),
        ("power, 10-row samples per group", _group_pairs, 10),
    ):
        ours, n = _rate(gen(np.random.default_rng(1), tables, repeats, size), _ours)
        base, _ = _rate(gen(np.random.default_rng(1), tables, repeats, size), _scipy_ks)
        target = "<= 5%" if "null" in label else ">= baseline"
        rows.append((label, f"{ours:.1%} of {n}", f"{base:.1%}", target))
    return rows


# ----------------------------------------------------------------------------- SKAB series
def _read_skab(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    import csv

    with path.open() as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    header, body = rows[0], rows[1:]
    cols = {h: np.array([float(r[i]) for r in body]) for i, h in enumerate(header) if h != "datetime"}
    labels = cols.pop("anomaly", None)
    cols.pop("changepoint", None)
    return cols, labels


def service_path_incidents(values: np.ndarray, times: np.ndarray | None = None) -> list[int]:
    """Indices where the worker opens an incident on a model's numeric series (its ``confidence``,
    which runs ``aitrace.detect.service.ServiceSeries`` with its cycle), in chunks; one point a second
    unless ``times`` (microseconds) are given."""
    from aitrace.processors.detection import SeriesDetectors

    det = SeriesDetectors({})
    opened = []
    times = T0 + np.arange(values.size, dtype=np.int64) * 1_000_000 if times is None else times
    for k, lo in enumerate(range(0, values.size, CHUNK)):
        part = slice(lo, lo + CHUNK)
        n = values[part].size
        chunk = {
            "kind": "model",
            "model": "bench",
            "service": "bench",
            "times": times[part],
            "latency": np.ones(n),  # a constant: never pages
            "errors": np.zeros(n),
            "confidence": values[part],
            "features": {},
            "requests": [],
            "labels": [],
        }
        for alert in det.apply(chunk, source="s:0", offset=k).alerts:
            if alert["version"] == 1 and alert["state"] == "open" and alert["feature"] == "confidence":
                opened.append(int(np.searchsorted(times, alert["first_seen"])))
    return opened


def monitor_incidents(values: np.ndarray) -> list[int]:
    """Where ``SeriesMonitor("generic")`` (the public monitor, ``aitrace backtest --kind generic``) flags,
    at its defaults, fed in chunks."""
    from aitrace.detect import SeriesMonitor

    mon, flags = SeriesMonitor("generic"), np.zeros(values.size, dtype=bool)
    for lo in range(0, values.size, CHUNK):
        for f in mon.update(np.arange(lo, min(lo + CHUNK, values.size)), values[lo : lo + CHUNK]):
            flags[f.index] = True
    return run_starts(flags)


def _detectors() -> dict[str, Callable[[np.ndarray], list[int]]]:
    out: dict[str, Callable[[np.ndarray], list[int]]] = {
        "worker rule (aitrace)": worker_incidents,
        "service path (aitrace)": service_path_incidents,
        "SeriesMonitor (aitrace)": monitor_incidents,
        "rolling z |z|>4 / 100": zscore_incidents,
    }
    try:
        from river import drift
    except ImportError:
        return out
    out["river ADWIN"] = lambda v: river_incidents(v, drift.ADWIN)
    out["river PageHinkley"] = lambda v: river_incidents(v, drift.PageHinkley)
    return out


def _timed_detectors() -> dict[str, Callable[[np.ndarray, np.ndarray], list[int]]]:
    """The detectors of ``_detectors`` given each point's time (microseconds) as well."""
    from realdata_cycles import service_incidents

    out: dict[str, Callable[[np.ndarray, np.ndarray], list[int]]] = {
        "worker rule (a run's metric)": lambda t, v: worker_incidents(v, "series", t),
        "service path (aitrace)": lambda t, v: service_path_incidents(v, t),
        "ServiceSeries, no cycle": lambda t, v: service_incidents(t, v, cycle=False, chunk=CHUNK, gap=GAP),
    }
    untimed = {k: fn for k, fn in _detectors().items() if not k.startswith(("worker", "service"))}
    out.update({k: (lambda t, v, fn=fn: fn(v)) for k, fn in untimed.items()})
    return out


def bench_skab(root: Path) -> None:
    free = root / "skab" / "anomaly-free" / "anomaly-free.csv"
    if not free.exists():
        print(f"(b)-(c) skipped: {free} not found")
        return
    dets = _detectors()
    cols, _ = _read_skab(free)
    points = sum(v.size for v in cols.values())
    print(
        "(b) false incidents per 1,000 points, SKAB anomaly-free "
        f"({len(cols)} sensors, {points} points, chunks of {CHUNK})"
    )
    for label, fn in dets.items():
        n = sum(len(fn(v)) for v in cols.values())
        print(f"    {label:28s} {1000 * n / points:8.2f}   ({n} incidents)   target <= 1")
    sys.stdout.flush()
    files = sorted(p for d in ("valve1", "valve2", "other") for p in (root / "skab" / d).glob("*.csv"))
    print(f"(c) SKAB fault experiments ({len(files)}): detected inside the labelled window, delay, pre-fault incidents")
    stats = {label: [0, [], 0, 0] for label in dets}  # detected, delays, pre-fault incidents, pre-fault points
    for path in files:
        cols, labels = _read_skab(path)
        if labels is None or not labels.any():
            continue
        inside = np.flatnonzero(labels > 0)
        start, end = int(inside[0]), int(inside[-1])
        for label, fn in dets.items():
            opened = sorted(i for v in cols.values() for i in fn(v))
            hit = [i for i in opened if start <= i <= end]
            st = stats[label]
            if hit:
                st[0] += 1
                st[1].append(hit[0] - start)
            st[2] += sum(1 for i in opened if i < start)
            st[3] += start * len(cols)
    for label, (found, delays, pre, pre_points) in stats.items():
        med = f"{np.median(delays):.0f} s" if delays else "-"
        print(
            f"    {label:28s} detected {found}/{len(files)} ({found / len(files):.0%}), median delay {med}, "
            f"pre-fault {1000 * pre / max(pre_points, 1):.2f} per 1,000 points   target >= 80%"
        )
    sys.stdout.flush()


# ----------------------------------------------------------------------------- (e) own telemetry
def _read_telemetry(path: Path) -> dict[str, np.ndarray]:
    """Numeric columns of one recording; empty cells (a second without a request) are dropped."""
    import csv

    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    cols = {}
    for name in rows[0] if rows else ():
        if name != "time":
            v = np.array([float(r[name]) if r[name] else np.nan for r in rows])
            cols[name] = v[np.isfinite(v)]
    return cols


def _read_requests(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unix us, latency ms, error flag) of every request of a recording."""
    import csv
    import gzip
    from datetime import datetime

    with gzip.open(path, "rt") as fh:
        rows = list(csv.DictReader(fh))
    times = np.array([int(datetime.fromisoformat(r["time"]).timestamp() * 1e6) for r in rows], dtype=np.int64)
    latency = np.array([float(r["latency_ms"]) for r in rows])
    return times, latency, np.array([1.0 - float(r["ok"]) for r in rows])


def model_incidents(times: np.ndarray, latency: np.ndarray, errors: np.ndarray) -> dict[str, int]:
    """Incidents opened, by feature/detector, when requests reach the worker as inference events."""
    from aitrace.processors.detection import SeriesDetectors

    det = SeriesDetectors({})
    opened: dict[str, int] = {}
    for k, lo in enumerate(range(0, latency.size, CHUNK)):
        part = slice(lo, lo + CHUNK)
        n = latency[part].size
        chunk = {
            "kind": "model",
            "model": "bench",
            "service": "bench",
            "times": times[part],
            "latency": latency[part],
            "errors": errors[part],
            "confidence": np.full(n, np.nan),  # the service reports none: no confidence series
            "features": {},
            "requests": [],
            "labels": [],
        }
        for alert in det.apply(chunk, source="s:0", offset=k).alerts:
            if alert["version"] == 1 and alert["state"] == "open":
                key = f"{alert['feature']}/{alert['detector']}"
                opened[key] = opened.get(key, 0) + 1
    return opened


def _print_columns(counts: dict[str, dict[str, int]]) -> None:
    """Incidents per column and detector: which signals the false alarms come from."""
    short = [label.split()[1] if label.startswith("river") else label.split()[0] for label in counts]
    print(f"      {'column':18s}" + "".join(f"{s:>14s}" for s in short))
    for name in next(iter(counts.values())):
        print(f"      {name:18s}" + "".join(f"{per[name]:14d}" for per in counts.values()))


def _bench_requests(path: Path, dets: dict[str, Callable[[np.ndarray], list[int]]]) -> None:
    rq = path.with_name(path.stem + ".requests.csv.gz")
    if not rq.exists():
        return
    times, latency, errors = _read_requests(rq)
    opened = model_incidents(times, latency, errors)
    n, total = latency.size, sum(opened.values())
    print(f"    every request ({rq.name}: {n} requests, {int(errors.sum())} errors, chunks of {CHUNK}), latency")
    label = "worker model path (aitrace)"
    print(f"    {label:28s} {1000 * total / n:8.2f}   ({total} incidents {opened})   target <= 1")
    for label, fn in dets.items():
        k = len(fn(latency))
        print(f"    {label:28s} {1000 * k / n:8.2f}   ({k} incidents)   target <= 1")


def bench_telemetry(folder: Path) -> None:
    files = sorted(folder.glob("*.csv"))
    if not files:
        print(f"(e) skipped: no telemetry CSV in {folder}")
        return
    dets = _detectors()
    for path in files:
        cols = _read_telemetry(path)
        points = sum(v.size for v in cols.values())
        print(
            f"(e) false incidents per 1,000 points, own telemetry {path.name} "
            f"({len(cols)} series, {points} points, chunks of {CHUNK}; normal operation, so every incident is false)"
        )
        counts = {label: {name: len(fn(v)) for name, v in cols.items()} for label, fn in dets.items()}
        for label, per in counts.items():
            n = sum(per.values())
            print(f"    {label:28s} {1000 * n / points:8.2f}   ({n} incidents)   target <= 1")
        _print_columns(counts)
        _bench_requests(path, dets)
        sys.stdout.flush()


def bench_speed() -> None:
    from aitrace.detect import AnomalyDetector

    rng = np.random.default_rng(0)
    x = rng.normal(size=1_000_000)
    AnomalyDetector().score(x[:1000])  # compile / load from cache
    for chunk in (1_000_000, 1000, 50):
        det = AnomalyDetector()
        t = time.perf_counter()
        n = 0
        for lo in range(0, 200_000 if chunk < 1000 else x.size, chunk):
            det.score(x[lo : lo + chunk])
            n += min(chunk, x.size - lo)
        dt = time.perf_counter() - t
        print(f"(d) anomaly kernel, chunks of {chunk:>9,d}: {n / dt:14,.0f} points/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    here = Path(__file__).resolve().parent / "data"
    parser.add_argument("--telemetry", type=Path, default=here, help="folder of record_telemetry.py CSVs")
    parser.add_argument("--only-telemetry", action="store_true", help="run (e) alone")
    parser.add_argument("--only-cycles", action="store_true", help="run (f) alone")
    parser.add_argument("--nab", type=Path, default=None, help="a NAB checkout (github.com/numenta/NAB) for (g)")
    parser.add_argument("--only-nab", action="store_true", help="run (g) alone")
    parser.add_argument("--only-pace", action="store_true", help="run (h) alone")
    args = parser.parse_args(argv)
    from realdata_cycles import bench_cycles
    from realdata_nab import bench_nab
    from realdata_pace import bench_pace
    from realdata_tables import bench_sklearn_batches, bench_statsmodels_tables

    if args.only_telemetry:
        bench_telemetry(args.telemetry)
        return 0
    if args.only_cycles:
        bench_cycles(_detectors(), CHUNK, GAP)
        return 0
    if args.only_nab:
        bench_nab(args.nab, _timed_detectors())
        return 0
    if args.only_pace:
        bench_pace(args.telemetry)
        return 0
    print(
        "(a) drift on summaries of real tables: ours (summarize -> detect_drift, Holm) vs scipy KS + Bonferroni on rows"
    )
    print(f"    {'comparison':36s} {'ours':>14s} {'baseline':>10s}  target")
    for label, ours, base, target in bench_tables(args.quick):
        print(f"    {label:36s} {ours:>14s} {base:>10s}  {target}")
    bench_statsmodels_tables(args.quick)
    bench_sklearn_batches(args.quick)
    sys.stdout.flush()
    bench_skab(args.data)
    bench_telemetry(args.telemetry)
    bench_cycles(_detectors(), CHUNK, GAP)
    bench_nab(args.nab, _timed_detectors())
    bench_pace(args.telemetry)
    bench_speed()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
