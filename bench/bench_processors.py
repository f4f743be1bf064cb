"""Processor throughput and produce-to-searchable latency, each next to its baseline in the same run.

Throughput (indexing aside), on one topic of batch records that a private Tansu holds:

1. raw consume: confluent-kafka reading the records (``fetch.queue.backoff.ms=1``), no decode;
2. Faust counting agent: a Faust worker whose agent only counts records (Faust's floor);
3. pipeline in-process: confluent-kafka + decode/validate + correlation + detection
   (:class:`aitrace.processors.pipeline.Pipeline`, both the trace-keyed and the series side);
   and the rate of its trace-keyed side alone (decode, validate, correlate, cut into chunks;
   the rest of the time is the detectors on the series side);
4. ``aitrace worker --no-index``: the real Faust worker, both agents, tables with changelogs.

Events are counted as the schema does: one per event, one per step of a columnar metric block
(each step carries several metric points, also reported). Workloads: ``training`` (columnar
metric blocks of 1,000 steps x 4 metrics), ``mixed`` (inference records with features, spans
and logs, 200 events per batch, one event at a time as older clients send them) and
``client-mixed`` (the same events as this version's client sends them: a columnar block per
kind and trace, built by the client's own exporter and processor chain).

Latency: a worker with indexing on, osmem-server, batches produced at ``--rate`` documents/s;
the time from produce to the moment ``_count`` on the index reaches that document's ordinal
(documents become visible roughly in produce order), p50/p99.

    .venv/bin/python bench/bench_processors.py                 # all of it, small sizes
    .venv/bin/python bench/bench_processors.py --records 400 --skip-latency
    .venv/bin/python bench/bench_processors.py --records 1200 --repeat 3 --workload training --skip-latency
    .venv/bin/python bench/bench_processors.py --records 4000 --repeat 3 --workload client-mixed \
        --skip-latency --compare-tree ../base-checkout     # before/after of a change, one run

The worker row is also given as events per worker CPU-second (its stats lines' ``cpu_s``): on a
shared machine its wall-time rate swings with the other load far more than its CPU cost does.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from aitrace.infra.stack import OsmemProcess, TansuProcess, start_service
from aitrace.processors.decode import RecordDecoder
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the test data generator
import synth as S
from scratch import scratch_dir

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- workloads


def training_records(n: int, steps: int = 1000) -> list[tuple[str, bytes, int, int]]:
    """(key, value, events, metric points): one run per 10 records, 4 metrics per step."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        run = f"run-{i % 8}"
        trace = f"{(i % 8) + 1:032x}"
        series = {
            "loss": rng.normal(1.0, 0.02, steps),
            "grad_norm": rng.lognormal(0.0, 0.1, steps),
            "lr": np.full(steps, 1e-3),
            "accuracy": rng.uniform(0.8, 0.9, steps),
        }
        block = S.metric_block(trace=trace, run_id=run, start_step=(i // 8) * steps, series=series, step_us=1000)
        out.append((trace, S.encode(S.batch([], [block])), steps, steps * 4))
    return out


def mixed_records(n: int, per_batch: int = 200) -> list[tuple[str, bytes, int, int]]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        trace, root = S.trace_id(), S.span_id()
        t0 = S.now_us()
        events = []
        for j in range(per_batch - 2):
            feats = {f"f{k}": float(rng.normal()) for k in range(4)}
            payload = S.inference(f"q{i}-{j}", f"model-{i % 3}", float(rng.gamma(4, 5)), features=feats)
            events.append(S.event(payload, trace=trace, parent=root, service="model-server", time_us=t0 + j))
        events.append(S.event(S.log("info", "served"), trace=trace, span=root, service="api", time_us=t0))
        events.append(S.event(S.span("request", t0, 900), trace=trace, span=root, service="api", time_us=t0 + 1))
        out.append((trace, S.encode(S.batch(events)), per_batch, per_batch))
    return out


def client_mixed_records(n: int, per_batch: int = 200) -> list[tuple[str, bytes, int, int]]:
    """The mixed workload as aitrace's client sends it: per trace, 198 inference records with 4
    features, a log and a span, queued into the client's own exporter and default processor chain
    (sampling, redaction), which sends each kind of a trace as one columnar block."""
    from collections import Counter, deque

    from aitrace.producers import events as ev
    from aitrace.producers import tracecontext as tc
    from aitrace.producers.client import default_processors
    from aitrace.producers.config import Settings
    from aitrace.producers.exporter import Exporter
    from aitrace.producers.transport import MemoryTransport

    settings = Settings(service="model-server", spool_dir=scratch_dir("bench-spool-"))
    processors, _ = default_processors(settings)
    stats: Counter[str] = Counter()
    transport, queue = MemoryTransport(stats), deque()
    envelope = {"service": "model-server", "service_version": None, "environment": "bench", "host": "bench",
                "pid": os.getpid(), "run_id": None, "sampled": True, "labels": {}}  # fmt: skip
    exporter = Exporter(settings, queue, envelope, processors, "events", stats, transport)
    rng = np.random.default_rng(1)
    t0 = time.time_ns() // 1000
    for i in range(n):
        root = tc.new_root()
        for j in range(per_batch - 2):
            fields = {"request_id": f"q{i}-{j}", "model_name": f"model-{i % 3}", "model_version": None,
                      "latency_ms": float(rng.gamma(4, 5)), "status": "ok",
                      "features": {f"f{k}": float(rng.normal()) for k in range(4)}, "prediction": None,
                      "confidence": None, "error": None, "inputs_summary": None, "feature_version": None}  # fmt: skip
            queue.append((ev.INFERENCE, t0 + j, root, fields, False))
        log = {"level": "info", "message": "served", "logger": None, "attributes": {}, "exc": None}
        span = {"name": "request", "kind": "server", "start_time": t0, "duration_us": 900, "status": "ok",
                "error_type": None, "error_message": None, "attributes": {}}  # fmt: skip
        queue.extend([(ev.LOG, t0, root, log, False), (ev.SPAN, t0 + 900, root, span, False)])
    exporter.start()
    exporter.force_flush(600.0)
    exporter.stop(5.0)
    if stats["sent"] != n * per_batch:
        raise RuntimeError(f"the exporter sent {stats['sent']} of {n * per_batch} events: {dict(stats)}")
    return [(r.key.decode(), r.value, r.events, r.events) for r in transport.records]


def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes, int, int]]) -> None:
    errors: list[Any] = []
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 10_000_000})
    for key, value, _, _ in records:
        p.produce(topic, key=key.encode(), value=value, on_delivery=lambda e, _m: e and errors.append(e))
        p.poll(0)
    if p.flush(120) or errors:
        raise RuntimeError(f"produce failed: {errors[:3]}")


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        fut.result(30)


# ---------------------------------------------------------------- measurements


def _consumer(bootstrap: str, topic: str) -> Consumer:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{os.urandom(4).hex()}",
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 1,
            "fetch.max.bytes": 50_000_000,
            "max.partition.fetch.bytes": 10_000_000,
        }
    )
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    return c


def raw_consume(bootstrap: str, topic: str, n: int) -> tuple[float, list[Any]]:
    """Seconds to read n records, from the first record (connection set-up excluded)."""
    c = _consumer(bootstrap, topic)
    msgs: list[Any] = []
    start = None
    while len(msgs) < n:
        called = time.perf_counter()
        batch = c.consume(min(1000, n - len(msgs)), 1.0)
        if batch and start is None:
            start = called  # the call that fetched the first records counts, connection set-up does not
        msgs.extend(m for m in batch if not m.error())
    elapsed = time.perf_counter() - (start or time.perf_counter())
    c.close()
    return elapsed, msgs


def pipeline_in_process(msgs: list[Any]) -> tuple[float, float, int, int]:
    """Decode + correlate + detect on already-fetched messages.

    Seconds in all, seconds of them on the trace-keyed side (decode, validate, correlate,
    cut into chunks; the rest is the detectors on the series side), events, series chunks.
    """
    # A whole pass first: a detector's kernels load (or compile, on a cold cache) the first time
    # its windows fill, which a few records do not reach; that is start-up, not the steady state.
    warm = Pipeline(WorkerOptions(index=False))
    warm_traces: dict[str, Any] = {}
    warm_series: dict[str, Any] = {}
    for m in msgs:
        for _key, chunk in warm.process_record(
            m.value(), key=None, topic="w", partition=0, offset=0, traces=warm_traces, now=0
        ).chunks:
            warm.series(chunk, warm_series)
    del warm, warm_traces, warm_series  # its state, left alive, would slow every collection of the timed pass
    gc.collect()
    pipe = Pipeline(WorkerOptions(index=False), decoder=RecordDecoder())
    traces: dict[str, Any] = {}
    series: dict[str, Any] = {}
    events = chunks = 0
    trace_side = 0.0
    t = time.perf_counter()
    for m in msgs:
        t_record = time.perf_counter()
        out = pipe.process_record(
            m.value(), key=m.key(), topic=m.topic(), partition=m.partition(), offset=m.offset(), traces=traces, now=0.0
        )
        trace_side += time.perf_counter() - t_record
        events += out.events
        chunks += len(out.chunks)
        for _key, chunk in out.chunks:
            pipe.series(chunk, series)
    return time.perf_counter() - t, trace_side, events, chunks


_STATS = re.compile(r"aitrace stats t=([\d.]+) records=(\d+) events=(\d+) chunks=(\d+) series=(\d+)")
_CPU = re.compile(r" cpu_s=([\d.]+)")


def _window(log: str, n_records: int, n_chunks: int) -> tuple[str, str] | None:
    """The stats lines that bound the steady state: the first at or past 10 % of the records (group
    join and first-call kernel loading behind it) and the one where every record and chunk is done."""
    start = None
    for line in log.splitlines():
        m = _STATS.search(line)
        if not m:
            continue
        records, series = int(m[2]), int(m[5])
        if start is None and n_records // 10 <= records < n_records:
            start = line
        if records >= n_records and series >= n_chunks:
            return (start, line) if start is not None else None
    return None


def worker_cpu(log: str, n_records: int, n_chunks: int) -> float | None:
    """CPU seconds (all threads) the worker spent on all ``n_records``, from its stats lines'
    ``cpu_s`` over the same window as :func:`faust_worker` (None: an older worker without it).
    Other processes on a shared machine change wall time far more than CPU time."""
    window = _window(log, n_records, n_chunks)
    if window is None:
        return None
    (a, b), (ma, mb) = window, (_STATS.search(window[0]), _STATS.search(window[1]))
    ca, cb = _CPU.search(a), _CPU.search(b)
    if ca is None or cb is None or ma is None or mb is None:
        return None
    return (float(cb[1]) - float(ca[1])) * n_records / (n_records - int(ma[2]))


def faust_worker(
    bootstrap: str,
    prefix: str,
    n_records: int,
    n_chunks: int,
    workdir: Path,
    app_id: str = "",
    tree: Path | None = None,
) -> tuple[float, str]:
    """Run `aitrace worker --no-index`; seconds per ``n_records`` in steady state, and its log.

    Measured between the first stats line at or past 10 % of the records and the line where
    every record and every series chunk is done (:func:`_window`), then scaled to all records.
    Stats come every 0.1 s; a worker that is through every record before its first stats line
    is not measured (give it more records). ``tree``: run the worker of that checkout (its
    ``.venv``), e.g. the base of a change, beside this one's.
    """
    env = {**os.environ, "AITRACE_KAFKA_BOOTSTRAP": bootstrap, "AITRACE_TOPIC_PREFIX": prefix}
    app_id = app_id or f"{prefix}-bench"  # a new app id per repeat: a new consumer group reads from the start
    python = str(tree / ".venv" / "bin" / "python") if tree else sys.executable
    argv = [python, "-m", "aitrace.infra.cli", "worker", "--no-index", "--app-id", app_id]
    argv += ["--partitions", "1", "--stats-interval-s", "0.1", "--workers-dir", str(workdir), "-l", "info"]
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "worker.log"
    proc = subprocess.Popen(argv, env=env, cwd=tree, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    window = None
    try:
        deadline = time.monotonic() + 600
        while window is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            window = _window(log.read_text(errors="replace"), n_records, n_chunks)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    ms = [_STATS.search(line) for line in window] if window else []
    if len(ms) != 2 or ms[0] is None or ms[1] is None or float(ms[1][1]) <= float(ms[0][1]):
        raise RuntimeError(
            "worker did not finish, or finished every record before its first stats line "
            f"(use more --records):\n{log.read_text(errors='replace')[-3000:]}"
        )
    start_t, start_records, end_t = float(ms[0][1]), int(ms[0][2]), float(ms[1][1])
    return (end_t - start_t) * n_records / (n_records - start_records), log.read_text(errors="replace")


FAUST_COUNTER = r"""
import sys, time, os, faust
bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = faust.App(f"count-{os.getpid()}", broker=f"kafka://{bootstrap}", value_serializer="raw",
                broker_session_timeout=10, consumer_auto_offset_reset="earliest", web_enabled=False,
                topic_partitions=1, autodiscover=False, store="memory://", datadir=sys.argv[4])
src = app.topic(topic, value_type=bytes)
state = {"n": 0, "t0": None}
@app.agent(src)
async def count(stream):
    async for _ in stream:
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
        state["n"] += 1
        if state["n"] >= n:
            with open(sys.argv[5], "w") as f:  # Faust redirects stdout into its log
                f.write(str(time.perf_counter() - state["t0"]))
            os._exit(0)
from faust.worker import Worker
Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
"""


def faust_count(bootstrap: str, topic: str, n: int, workdir: Path) -> float:
    workdir.mkdir(parents=True, exist_ok=True)
    result = workdir / "count.txt"
    out = subprocess.run(
        [sys.executable, "-c", FAUST_COUNTER, bootstrap, topic, str(n), str(workdir), str(result)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if not result.exists():
        raise RuntimeError(f"faust counter failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    # the first record is seen at t0, so n - 1 records were counted in that time
    return float(result.read_text()) * n / max(n - 1, 1)


# ---------------------------------------------------------------- latency


def latency(bootstrap: str, es_url: str, rate: float, seconds: float, workdir: Path) -> dict[str, float]:
    """Produce log batches at ``rate`` docs/s; produce-to-searchable per document (by ordinal)."""
    prefix = f"lat{os.urandom(3).hex()}"
    topic = f"{prefix}.events.system"
    create_topic(bootstrap, topic, 1)
    env = {**os.environ, "AITRACE_KAFKA_BOOTSTRAP": bootstrap, "AITRACE_ES_URL": es_url}
    env |= {"AITRACE_TOPIC_PREFIX": prefix, "AITRACE_INDEX_PREFIX": prefix}
    argv = [sys.executable, "-m", "aitrace.infra.cli", "worker", "--app-id", f"{prefix}-app", "--partitions", "1"]
    argv += ["--workers-dir", str(workdir / "lat"), "--stats-interval-s", "5"]
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "latency-worker.log"
    proc = subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    count_url = f"{es_url}/{prefix}-events-*/_count"
    try:
        # warm-up: one batch, wait until the worker has joined and indexed it
        tr, warm = _log_batch(10)
        producer.produce(topic, key=tr.encode(), value=S.encode(warm))
        producer.flush(30)
        _wait_count(count_url, 10, 300)
        per_batch = 20
        sent: list[float] = []
        visible: list[float] = []
        last_poll = [0.0]
        batches = int(rate * seconds / per_batch)
        t_start = time.perf_counter()
        for i in range(batches):
            due = t_start + i * per_batch / rate
            while time.perf_counter() < due:
                time.sleep(0.0005)
            tr, batch = _log_batch(per_batch)
            producer.produce(topic, key=tr.encode(), value=S.encode(batch))
            producer.poll(0)
            sent.extend([time.perf_counter()] * per_batch)
            _poll_visible(count_url, sent, visible, last_poll)
        producer.flush(30)
        deadline = time.monotonic() + 120
        while len(visible) < len(sent) and time.monotonic() < deadline:
            _poll_visible(count_url, sent, visible, last_poll)
            time.sleep(0.02)
        lat = np.asarray([visible[i] - sent[i] for i in range(min(len(visible), len(sent)))])
        achieved = len(sent) / (sent[-1] - sent[0]) if len(sent) > 1 else 0.0
        return {
            "docs": len(sent),
            "visible": len(lat),
            "rate": achieved,
            "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _poll_visible(url: str, sent: list[float], visible: list[float], last_poll: list[float]) -> None:
    """Every 20 ms at most: documents up to the index's count are visible now (ordinal order)."""
    now = time.perf_counter()
    if now - last_poll[0] < 0.02:
        return
    last_poll[0] = now
    n = _count(url) - 10  # minus the warm-up batch
    while len(visible) < min(n, len(sent)):
        visible.append(now)


def _count(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(json.load(resp)["count"])
    except OSError:
        return 0


def _wait_count(url: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _count(url) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("worker never indexed the warm-up batch")
        time.sleep(0.5)


def _log_batch(n: int) -> tuple[str, dict[str, Any]]:
    tr = S.trace_id()
    t0 = S.now_us()
    return tr, S.batch([S.event(S.log("info", f"m{i}"), trace=tr, service="api", time_us=t0 + i) for i in range(n)])


# ---------------------------------------------------------------- main


def run_workload(
    name: str,
    records: list[tuple[str, bytes, int, int]],
    bootstrap: str,
    workdir: Path,
    repeat: int = 1,
    compare: Path | None = None,
) -> None:
    """The rows, each measured ``repeat`` times in turn on the same topic; medians printed.

    ``compare``: another checkout whose worker runs beside this one's in every repeat (alternating
    which goes first), e.g. the base of a change; its row and its CPU figure are printed too.
    """
    prefix = f"b{os.urandom(3).hex()}"
    topic = f"{prefix}.events.training" if name == "training" else f"{prefix}.events.inference"
    create_topic(bootstrap, topic, 1)
    produce(bootstrap, topic, records)
    n = len(records)
    events = sum(r[2] for r in records)
    points = sum(r[3] for r in records)
    mb = sum(len(r[1]) for r in records) / 1e6
    workers: dict[str, Path | None] = {WORKER_ROW: None}
    if compare is not None:
        workers[f"  the same, {compare}"] = compare
    times: dict[str, list[float]] = {label: [] for label in (*ROWS, *workers)}
    cpu: dict[str, list[float]] = {label: [] for label in workers}
    for i in range(repeat):
        raw_s, msgs = raw_consume(bootstrap, topic, n)
        proc_s, trace_s, proc_events, n_chunks = pipeline_in_process(msgs)
        assert proc_events == events, (proc_events, events)
        count_s = faust_count(bootstrap, topic, n, workdir / f"count-{name}-{i}")
        for label, secs in zip(ROWS, (raw_s, count_s, proc_s, trace_s), strict=True):
            times[label].append(secs)
        for j, (label, tree) in enumerate(list(workers.items())[:: 1 if i % 2 == 0 else -1]):
            worker_s, log = faust_worker(
                bootstrap, prefix, n, n_chunks, workdir / f"worker-{name}-{i}-{j}", f"{prefix}-bench{i}-{j}", tree
            )
            times[label].append(worker_s)
            cpu_s = worker_cpu(log, n, n_chunks)
            if cpu_s:
                cpu[label].append(cpu_s)
    print(f"\n== {name}: {n} records, {events} events ({points} metric points / values), {mb:.1f} MB")
    print(f"   median of {repeat} run(s) per row, rows interleaved")
    base = events / float(np.median(times[ROWS[0]]))
    count = events / float(np.median(times[ROWS[1]]))
    for label, runs in times.items():
        secs = float(np.median(runs))
        rate = events / secs
        each = ", ".join(f"{events / t:,.0f}" for t in runs)
        print(
            f"  {label:<38} {n / secs:>10,.0f} records/s {rate:>12,.0f} events/s  ({rate / base:5.2f} x raw, "
            f"{rate / count:5.2f} x count-only)" + (f"  [each run: {each}]" if repeat > 1 else ""),
            flush=True,
        )
    for label, runs in cpu.items():
        if runs:
            each = ", ".join(f"{events / c:,.0f}" for c in runs)
            print(f"  {label.strip():<38} {events / float(np.median(runs)):>12,.0f} events per worker CPU-s  [{each}]")


WORKER_ROW = "aitrace worker --no-index (Faust)"
ROWS = (
    "raw consume (confluent-kafka)",
    "Faust agent that only counts",
    "decode+correlate+detect in-process",
    "  of which decode+correlate+chunk alone",
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=300, help="batch records per workload")
    ap.add_argument("--rate", type=float, default=1000.0, help="indexed documents/s for the latency run")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each throughput row (medians printed)")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--workload", choices=["training", "mixed", "client-mixed", "both"], default="both")
    ap.add_argument("--compare-tree", type=Path, help="another checkout (with its .venv) whose worker runs beside")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-proc-"))
    kafka = start_service(TansuProcess, workdir / "kafka", timeout=60)
    search = None
    try:
        print(f"machine: {os.cpu_count()} cpus; Tansu {kafka.bootstrap}; work dir {workdir}")
        if not args.skip_throughput:
            if args.workload in ("training", "both"):
                records = training_records(args.records)
                run_workload("training", records, kafka.bootstrap, workdir, args.repeat, args.compare_tree)
            if args.workload in ("mixed", "both"):
                records = mixed_records(args.records)
                run_workload("mixed", records, kafka.bootstrap, workdir, args.repeat, args.compare_tree)
            if args.workload in ("client-mixed", "both"):
                records = client_mixed_records(args.records)
                run_workload("client-mixed", records, kafka.bootstrap, workdir, args.repeat, args.compare_tree)
        if not args.skip_latency:
            search = start_service(OsmemProcess, workdir / "search", timeout=60)
            res = latency(kafka.bootstrap, search.url, args.rate, args.seconds, workdir)
            print(
                f"\n== produce -> searchable, log batches of 20 at {res['rate']:,.0f} docs/s target {args.rate:,.0f}: "
                f"{res['visible']}/{res['docs']} visible, "
                f"p50 {res['p50'] * 1000:.0f} ms, p99 {res['p99'] * 1000:.0f} ms"
            )
    finally:
        kafka.stop()
        if search is not None:
            search.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
