"""How the worker scales: workers x partitions, cost per series as their number grows, memory over a run.

(a) Throughput: W ``aitrace worker --no-index`` processes in one consumer group (W = 1, 2, 4)
    on an input topic of P partitions (P = 1, 4, 16, and the worker's own topics as many), the
    ``mixed`` workload of ``bench_processors.py`` (inference records, spans and logs keyed by
    trace). The workers join first; then the records are produced, and events/s run from the
    moment the first record is processed to the moment every record and series chunk is done,
    summed over the workers' stats lines. Beside it, in the same run: raw consume of the same
    topic (confluent-kafka, no decode), the ceiling of one reader.
(b) Series: one chunk per run of ``--points`` points for R runs x M metrics (10 to 100,000
    series), through :class:`~aitrace.processors.detection.SeriesDetectors` in-process, first
    with no state (every series new), then again on the state it left (the steady case): us per
    series update and metric points/s. The state table is a dict here; the worker's also writes
    one changelog record per series and chunk.
(b2) Features: one model's F input features (10 to 1,000), chunks of ``--points`` requests, window
    200: us per feature update through :func:`~aitrace.detect.batched.update_drift_windows` (the
    worker's path: every completed window in one KS call), beside each feature's own
    ``DriftWindows.update`` one at a time, in the same run on the same values.
(c) Memory: one worker fed at a fixed rate for ``--memory-seconds``; its RSS every 5 s, and the
    growth between the end of the first fifth (warm) and the end.

This machine has 2 cores: 4 workers, Tansu and the producer share them, so (a) shows the
trend the partitions and the group allow here, not what 4 machines would do.

    .venv/bin/python bench/bench_scaling.py                     # bounded: about 6 minutes
    .venv/bin/python bench/bench_scaling.py --full              # 5-minute memory run, up to 100,000 series
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from aitrace.infra.stack import TansuProcess, start_service

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_processors as BP
import synth as S  # bench_processors put tests/ on the path

T0 = 1_800_000_000_000_000


# ---------------------------------------------------------------- (a) workers x partitions


def _start_worker(
    bootstrap: str, prefix: str, partitions: int, workdir: Path, name: str, *extra: str
) -> subprocess.Popen:
    env = {**os.environ, "AITRACE_KAFKA_BOOTSTRAP": bootstrap, "AITRACE_TOPIC_PREFIX": prefix}
    argv = [sys.executable, "-m", "aitrace.infra.cli", "worker", "--no-index", "--app-id", f"{prefix}-app"]
    argv += ["--partitions", str(partitions), "--stats-interval-s", "0.1", "--workers-dir", str(workdir / name), *extra]
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


def _totals(logs: list[Path]) -> tuple[int, int, int]:
    """(records, series chunks, workers that have logged stats) summed over the workers' last stats lines."""
    records = series = seen = 0
    for log in logs:
        lines = BP._STATS.findall(log.read_text(errors="replace"))
        if lines:
            last = lines[-1]
            records, series, seen = records + int(last[1]), series + int(last[4]), seen + 1
    return records, series, seen


def group_throughput(
    bootstrap: str, workers: int, partitions: int, records: list, n_chunks: int, workdir: Path
) -> float:
    """Seconds from the first record processed to the last, W workers on P partitions."""
    prefix = f"s{os.urandom(3).hex()}"
    BP.create_topic(bootstrap, f"{prefix}.events.inference", partitions)
    procs = [_start_worker(bootstrap, prefix, partitions, workdir / prefix, f"w{i}") for i in range(workers)]
    logs = [workdir / prefix / f"w{i}.log" for i in range(workers)]
    try:
        deadline = time.monotonic() + 180
        while _totals(logs)[2] < workers and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(5)  # the group's last rebalance settles before the records come
        BP.produce(bootstrap, f"{prefix}.events.inference", records)
        first = end = None
        deadline = time.monotonic() + 600
        while end is None and time.monotonic() < deadline:
            done, series, _ = _totals(logs)
            now = time.monotonic()
            if first is None and done > 0:
                first = now
            if done >= len(records) and series >= n_chunks:
                end = now
            time.sleep(0.1)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
    if first is None or end is None:
        raise RuntimeError(f"{workers} workers on {partitions} partitions did not finish; logs in {workdir / prefix}")
    return max(end - first, 0.1)


def section_a(bootstrap: str, n: int, workdir: Path) -> None:
    records = BP.mixed_records(n)
    events = sum(r[2] for r in records)
    topic = f"raw{os.urandom(3).hex()}"
    BP.create_topic(bootstrap, topic, 4)
    BP.produce(bootstrap, topic, records)
    raw_s, msgs = BP.raw_consume(bootstrap, topic, len(records))
    _, _, _, n_chunks = BP.pipeline_in_process(msgs)
    print(f"(a) workers x partitions, mixed workload: {len(records)} records, {events:,} events")
    print(f"    raw consume, one reader, 4 partitions: {events / raw_s:,.0f} events/s (the ceiling of one reader)")
    print(f"    {'partitions':>10} {'workers':>8} {'events/s':>12} {'x 1 worker':>11}")
    for partitions in (1, 4, 16):
        one = None
        for workers in (1, 2, 4):
            secs = group_throughput(bootstrap, workers, partitions, records, n_chunks, workdir)
            rate = events / secs
            one = one or rate
            print(f"    {partitions:>10} {workers:>8} {rate:>12,.0f} {rate / one:>10.2f}x", flush=True)


# ---------------------------------------------------------------- (b) many series


def _chunks(runs: int, metrics: int, points: int, start: int) -> list[tuple[str, dict]]:
    from aitrace.processors.chunks import extract_chunks
    from aitrace.schemas.metric_block import MetricBlock

    rng = np.random.default_rng(start)
    blocks = []
    for r in range(runs):
        series = {f"m{k}": rng.normal(1.0, 0.05, points) for k in range(metrics)}
        block = S.metric_block(trace=f"{r + 1:032x}", run_id=f"run-{r}", start_step=start, series=series, start_us=T0)
        blocks.append(MetricBlock.from_record(block))
    return list(extract_chunks([], blocks).items())


def section_b(sizes: list[tuple[int, int]], points: int) -> None:
    from aitrace.processors.detection import SeriesDetectors

    def apply(tables: dict[str, dict], chunks: list[tuple[str, dict]], offset: int) -> None:
        # one table value per entity, as the worker keeps them: one flat dict for every run held
        # max_series series in all, and refused the rest (8,138 of the 10,000 series of 1000 x 10)
        for entity, chunk in chunks:
            SeriesDetectors(tables.setdefault(entity, {})).apply(chunk, source="b:0", offset=offset)

    warm_up: dict[str, dict] = {}  # Numba's first calls compile: not a series' cost
    for offset, start in enumerate((0, points)):
        apply(warm_up, _chunks(2, 2, points, start), offset)
    print(f"\n(b) series: one chunk of {points} points per series, in-process SeriesDetectors")
    print(f"    {'runs x metrics':>16} {'series':>8} {'new: us/series':>15} {'steady: us/series':>18} {'points/s':>12}")
    for runs, metrics in sizes:
        tables: dict[str, dict] = {}
        cold, warm = _chunks(runs, metrics, points, 0), _chunks(runs, metrics, points, points)
        t = time.perf_counter()
        apply(tables, cold, 0)
        new = time.perf_counter() - t
        t = time.perf_counter()
        apply(tables, warm, 1)
        steady = time.perf_counter() - t
        assert sum(len(v) for v in tables.values()) >= runs * metrics  # every series tracked, none refused
        n = runs * metrics
        print(
            f"    {f'{runs} x {metrics}':>16} {n:>8,} {new / n * 1e6:>15,.0f} {steady / n * 1e6:>18,.0f}"
            f" {n * points / steady:>12,.0f}",
            flush=True,
        )


def section_b2(features: list[int], points: int, chunks: int = 60) -> None:
    from aitrace.detect.batched import update_drift_windows
    from aitrace.detect.service import DriftWindows

    print(f"\n(b2) features: one model, chunks of {points} requests, window 200, steady (references full)")
    print(f"    {'features':>8} {'batched: us/feature':>20} {'one by one: us/feature':>23} {'ratio':>6}")
    for n in features:
        rng = np.random.default_rng(n)
        cols = rng.normal(size=(n, points * (chunks + 40)))
        times = T0 + np.arange(cols.shape[1], dtype=np.int64) * 1000
        batched = [DriftWindows(f"f{k}", alpha=0.001 / n) for k in range(n)]
        single = [DriftWindows(f"f{k}", alpha=0.001 / n) for k in range(n)]
        warm = slice(0, points * 40)  # the references fill (200 values) before the timing
        update_drift_windows(batched, times[warm], list(cols[:, warm]))
        for rule, col in zip(single, cols[:, warm], strict=True):
            rule.update(times[warm], col)
        spent = [0.0, 0.0]
        for c in range(40, 40 + chunks):
            at = slice(c * points, (c + 1) * points)
            t = time.perf_counter()
            update_drift_windows(batched, times[at], list(cols[:, at]))
            spent[0] += time.perf_counter() - t
            t = time.perf_counter()
            for rule, col in zip(single, cols[:, at], strict=True):
                rule.update(times[at], col)
            spent[1] += time.perf_counter() - t
        each = [x / (n * chunks) * 1e6 for x in spent]
        print(f"    {n:>8,} {each[0]:>20.1f} {each[1]:>23.1f} {each[1] / each[0]:>5.1f}x", flush=True)


# ---------------------------------------------------------------- (c) memory


def section_c(bootstrap: str, seconds: float, rate: float, workdir: Path, grace_s: float | None) -> None:
    prefix = f"m{os.urandom(3).hex()}"
    BP.create_topic(bootstrap, f"{prefix}.events.inference", 1)
    extra = ("--grace-s", str(grace_s)) if grace_s is not None else ()
    proc = _start_worker(bootstrap, prefix, 1, workdir / prefix, "w0", *extra)
    per_batch = 200
    stop = threading.Event()

    def feed() -> None:
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 10_000_000})
        interval, i = per_batch / rate, 0
        next_at = time.monotonic()
        while not stop.is_set():
            ((key, value, _, _),) = BP.mixed_records(1, per_batch)  # new trace, span and event ids each time
            p.produce(f"{prefix}.events.inference", key=key.encode(), value=value)
            p.poll(0)
            i += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        p.flush(30)

    feeder = threading.Thread(target=feed, daemon=True)
    samples: list[tuple[float, float]] = []
    try:
        time.sleep(10)  # the worker joins
        feeder.start()
        start = time.monotonic()
        worker = psutil.Process(proc.pid)
        while time.monotonic() - start < seconds:
            time.sleep(5)
            samples.append((time.monotonic() - start, worker.memory_info().rss / 2**20))
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    grace = f"--grace-s {grace_s:g}" if grace_s is not None else "the default grace_s (600 s)"
    print(f"\n(c) memory: one worker, {rate:,.0f} events/s (mixed) for {seconds:.0f} s, {grace}; RSS (MiB) every 5 s")
    print("    (a closed trace's state is kept grace_s for late events: it levels off after idle_timeout_s + grace_s)")
    print("    " + " ".join(f"{mb:.0f}" for _, mb in samples))
    warm = next(mb for t, mb in samples if t >= seconds / 5)
    end = samples[-1][1]
    minutes = (samples[-1][0] - seconds / 5) / 60
    print(f"    warm (t={seconds / 5:.0f} s) {warm:.0f} MiB, end {end:.0f} MiB: {(end - warm) / minutes:+.1f} MiB/min")
    records, _, _ = _totals([workdir / prefix / "w0.log"])
    print(f"    records processed: {records}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="5-minute memory run, up to 100,000 series")
    ap.add_argument("--records", type=int, default=200, help="batch records of 200 events for (a)")
    ap.add_argument("--points", type=int, default=10, help="points per series and chunk in (b)")
    ap.add_argument("--rate", type=float, default=2000.0, help="events/s fed to the worker in (c)")
    ap.add_argument("--skip", default="", help="sections to skip, e.g. 'ac'")
    ap.add_argument("--grace-s", type=float, default=None, help="the worker's grace_s in (c) (default: its own)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    kafka = start_service(TansuProcess, workdir / "kafka", timeout=60)
    try:
        print(f"machine: {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; Tansu {kafka.bootstrap}; {workdir}")
        if "a" not in args.skip:
            section_a(kafka.bootstrap, args.records, workdir)
        if "b" not in args.skip:
            sizes = [(10, 1), (10, 10), (100, 10), (1000, 10)] + ([(1000, 100)] if args.full else [])
            section_b(sizes, args.points)
            section_b2([10, 100] + ([1000] if args.full else []), 50)
        if "c" not in args.skip:
            section_c(kafka.bootstrap, 300.0 if args.full else 60.0, args.rate, workdir, args.grace_s)
    finally:
        kafka.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
