"""Producer benchmark: caller-side cost per event and sustained events/s, next to raw confluent-kafka.

Runs against a Tansu it starts on a free port (or ``--bootstrap``). Each figure is the median
over ``--repeats`` runs, measured in this same process and run:

- **client, caller µs/event**: wall time of the caller's loop of ``client.metric(...)`` (or
  ``client.log(...)``) divided by the events, with the exporter thread running alongside (it
  shares the GIL, so its work shows up here too, as it would in a training loop);
- **client, events/s**: events from the first call until ``flush()`` returned True (every event
  acknowledged by the broker);
- **sender CPU, GC**: the exporter thread's CPU time (its own clock) over the same span, and the CPU
  time of every garbage collection on either thread (``gc.callbacks``), each per event: where the
  time goes, since caller, sender and collector take turns on one GIL;
- **raw produce()**: the same count of records, each one pre-encoded single-event
  ``aitrace.Batch`` (encoding not timed), through ``Producer.produce()`` with the client's
  producer settings (idempotent, acks=all, linger 2 ms), until ``flush()`` returned.

- **background path** (``--background``): the client's sender alone. The sender is held (the bench
  thread holds the exporter's ``take_lock``) while the caller queues the events; then it is let go and
  the drain is timed until ``flush()`` returned True: events/s (wall) and the sender thread's CPU µs
  per event (its own clock, ``time.pthread_getcpuclockid``). Beside it, in the same repeat, raw
  ``produce()`` of as many copies of one pre-encoded single-event record *of that kind* (the block
  the client would send for one event alone, so of similar size), until ``flush()`` returned.

Targets (issue 11): caller CPU <= 2 µs/event and client rate >= 0.5 x raw produce rate, for every kind
(``--kinds`` picks some of metric, log, inference, span, ground_truth, data_stats). ``data_stats_skab``
(not run by default) sends what :func:`aitrace.summarize` makes of 100-row batches of the SKAB
sensor table (8 numeric columns: quantiles and exact histograms), found under ``--data``.

    .venv/bin/python bench/bench_producer.py --events 100000 --repeats 5
"""

from __future__ import annotations

import argparse
import csv
import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aitrace
from aitrace.infra.stack import TansuProcess
from aitrace.producers.config import KafkaConfig
from aitrace.schemas.codec import AvroSerializer, SerializationContext
from confluent_kafka import Producer
from scratch import scratch_dir


def _client(bootstrap: str, prefix: str, events: int) -> aitrace.Client:
    return aitrace.init(
        service="bench",
        run_id=f"bench-{prefix}",
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        spool_dir=scratch_dir("aitrace-bench-spool-"),
        queue_size=events + 1000,  # measure throughput, not drops
    )


KINDS = ("metric", "log", "inference", "span", "ground_truth", "data_stats")
EXTRA_KINDS = ("data_stats_skab",)
FEATURES = [{"name": f"f{j}", "count": 1000, "mean": 0.5, "variance": 0.1, "quantiles": {"0.5": 0.5}} for j in range(4)]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # beside the checkout, as bench_realdata finds it


def skab_summaries(data: Path = DATA, rows: int = 100) -> list[list[dict[str, Any]]]:
    """:func:`aitrace.summarize` of consecutive ``rows``-row batches of SKAB's anomaly-free sensor table."""
    with (data / "skab" / "anomaly-free" / "anomaly-free.csv").open() as fh:
        table = list(csv.reader(fh, delimiter=";"))
    header, body = table[0], table[1:]
    columns = [(i, h) for i, h in enumerate(header) if h != "datetime"]
    batches = [body[lo : lo + rows] for lo in range(0, len(body) - rows + 1, rows)]
    return [aitrace.summarize({h: [float(r[i]) for r in batch] for i, h in columns}) for batch in batches]


def caller(client: aitrace.Client, kind: str) -> Callable[[int], None]:
    """One call of ``kind`` for event ``i``: the shapes a training job, a model server or a pipeline sends."""
    if kind == "metric":
        metric = client.metric
        return lambda i: metric({"loss": 0.5, "grad_norm": 1.5}, step=i)
    if kind == "log":
        log = client.log
        return lambda i: log("info", "batch done", batch=i)
    if kind == "inference":
        inference = client.inference
        features = {"amount": 12.5, "age": 41, "country": "DE"}
        return lambda i: inference(f"req-{i}", "fraud", 3.2, "v7", features=features, prediction=1, confidence=0.9)
    if kind == "span":
        span = client.span

        def call(i: int) -> None:
            with span("predict", route="/v1/predict"):
                pass

        return call
    if kind == "ground_truth":
        ground_truth = client.ground_truth
        return lambda i: ground_truth(f"req-{i}", "fraud", 1)
    if kind == "data_stats":
        data_stats = client.data_stats
        return lambda i: data_stats("ingest", "tx", FEATURES, row_count=1000, batch=str(i))
    if kind == "data_stats_skab":
        data_stats, batches = client.data_stats, skab_summaries()
        return lambda i: data_stats("ingest", "skab", batches[i % len(batches)], row_count=100, batch=str(i))
    raise ValueError(f"unknown kind {kind!r}")


class GcClock:
    """CPU seconds spent in garbage collections, whichever thread ran them (each runs on the thread that
    allocated past the threshold, holding the GIL: its own clock times it)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._start


def run_client(bootstrap: str, prefix: str, events: int, kind: str) -> tuple[float, float, float, dict[str, Any]]:
    """(caller CPU µs/event, caller wall µs/event, events/s end to end, stats) for one run of the client; stats
    also hold the sender thread's and the collector's CPU µs/event (``bench_sender_us``, ``bench_gc_us``)."""
    client = _client(bootstrap, prefix, events)
    client.log("info", "warm up")
    client.flush(30)
    call = caller(client, kind)
    sender_clock = time.pthread_getcpuclockid(client._exporter._thread.ident)
    gc_clock = GcClock()
    gc.callbacks.append(gc_clock)
    sender_start = time.clock_gettime(sender_clock)
    start = time.perf_counter()
    cpu_start = time.thread_time()
    for i in range(events):
        call(i)
    caller_cpu_s = time.thread_time() - cpu_start
    caller_s = time.perf_counter() - start
    ok = client.flush(timeout=300)
    total_s = time.perf_counter() - start
    sender_s = time.clock_gettime(sender_clock) - sender_start
    gc.callbacks.remove(gc_clock)
    stats = client.stats()
    client.close(timeout=10)
    if not ok:
        raise RuntimeError(f"client did not deliver everything: {stats}")
    stats["bench_sender_us"], stats["bench_gc_us"] = sender_s / events * 1e6, gc_clock.seconds / events * 1e6
    return caller_cpu_s / events * 1e6, caller_s / events * 1e6, events / total_s, stats


def run_background(bootstrap: str, prefix: str, events: int, kind: str) -> tuple[float, float, float]:
    """(caller CPU µs/event, sender thread CPU µs/event, events/s of the drain) with the sender held while queuing."""
    client = _client(bootstrap, prefix, events)
    client.log("info", "warm up")
    client.flush(30)
    call = caller(client, kind)
    exporter = client._exporter
    clock = time.pthread_getcpuclockid(exporter._thread.ident)
    with exporter.take_lock:  # the sender waits here, before it takes anything from the queue
        cpu_start = time.thread_time()
        for i in range(events):
            call(i)
        caller_cpu_s = time.thread_time() - cpu_start
        sender_start = time.clock_gettime(clock)
        start = time.perf_counter()
    ok = client.flush(timeout=300)
    drain_s = time.perf_counter() - start
    sender_s = time.clock_gettime(clock) - sender_start
    stats = client.stats()
    client.close(timeout=10)
    if not ok or stats["sent"] < events:
        raise RuntimeError(f"client did not deliver everything: {stats}")
    return caller_cpu_s / events * 1e6, sender_s / events * 1e6, events / drain_s


def one_event_record(kind: str) -> bytes:
    """The record the client sends for one ``kind`` event alone (encoded through its real exporter)."""
    from collections import Counter, deque

    from aitrace.producers.client import default_processors
    from aitrace.producers.config import Settings
    from aitrace.producers.exporter import Exporter
    from aitrace.producers.transport import MemoryTransport

    settings = Settings.from_env(service="bench", run_id="bench-raw")
    stats: Counter[str] = Counter()
    transport = MemoryTransport(stats)
    envelope = {"service": "bench", "service_version": None, "environment": "prod", "host": "bench-host-1"}
    envelope |= {"pid": 4242, "run_id": "bench-raw", "sampled": True, "labels": {}}
    processors, _ = default_processors(settings)
    exporter = Exporter(settings, deque(), envelope, processors, "7d33302d1864", stats, transport)
    caller(queue_only_client(exporter), kind)(7)
    exporter._take()
    exporter._send_pending()
    (record,) = transport.records
    return record.value


def queue_only_client(exporter: Any) -> aitrace.Client:
    """A client without its exporter thread: the real event methods, over ``exporter``'s queue that nobody drains."""
    from aitrace.producers import tracecontext as tc
    from aitrace.producers.client import Client
    from aitrace.producers.config import Settings

    client = Client.__new__(Client)
    client.settings = Settings(producer=exporter.producer)
    client._queue, client._qmax, client._run_id = exporter.queue, 1 << 62, exporter.producer.run_id
    client._closed, client._auto_step, client._exporter = False, 0, exporter
    client._root = tc.SpanContext(tc.trace_id_for(exporter.producer.run_id), tc.new_span_id())
    return client


def run_raw(bootstrap: str, topic: str, events: int, value: bytes | None = None) -> tuple[float, float, float]:
    """(CPU µs and wall µs per produce() call, records/s until flush) for pre-encoded single-event records:
    single-event metric blocks, or ``events`` copies of ``value``."""
    kafka = KafkaConfig.from_env(kafka_bootstrap=bootstrap)
    serializer = AvroSerializer("aitrace.Batch")
    ctx = SerializationContext(topic)
    template = {
        "batch_id": "b",
        "events": [],
        "metric_blocks": [
            {
                "block_id": "b",
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "00f067aa0ba902b7",
                "service": "bench",
                "steps": [0],
                "times": [0],
                "series": [{"name": "loss", "values": [0.5]}, {"name": "grad_norm", "values": [1.5]}],
            }
        ],
    }
    values = []
    for i in range(events if value is None else 0):
        template["metric_blocks"][0]["block_id"] = f"b{i}"
        template["metric_blocks"][0]["steps"] = [i]
        values.append(serializer(template, ctx))
    if value is not None:
        values = [value] * events
    key = b"4bf92f3577b34da6a3ce929d0e0e4736"
    producer = Producer(
        {
            **kafka.kafka_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "queue.buffering.max.kbytes": 64 * 1024,
        }
    )
    producer.produce(topic, b"warm-up", key)
    producer.flush(30)
    produce = producer.produce
    start = time.perf_counter()
    cpu_start = time.thread_time()
    for value in values:
        try:
            produce(topic, value, key)
        except BufferError:
            producer.poll(0.01)
            produce(topic, value, key)
    caller_cpu_s = time.thread_time() - cpu_start
    caller_s = time.perf_counter() - start
    left = producer.flush(300)
    total_s = time.perf_counter() - start
    if left:
        raise RuntimeError(f"raw producer left {left} records undelivered")
    return caller_cpu_s / events * 1e6, caller_s / events * 1e6, events / total_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bootstrap", help="an existing broker; default: start Tansu on a free port")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {','.join(KINDS + EXTRA_KINDS)}")
    parser.add_argument("--background", action="store_true", help="time the sender alone (see the module doc)")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if args.background:
        return background(args.bootstrap, kinds, args.events, args.repeats)

    broker = None
    if args.bootstrap is None:
        broker = TansuProcess(None, scratch_dir("aitrace-bench-")).start().wait_ready(60)
    bootstrap = args.bootstrap or broker.bootstrap
    rows: dict[str, list[tuple[float, float, float]]] = {k: [] for k in ["raw", *kinds]}
    parts: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    try:
        for rep in range(args.repeats):
            line = []
            for kind in kinds:
                cpu, wall, rate, stats = run_client(bootstrap, f"bench-{kind}{rep}", args.events, kind)
                rows[kind].append((cpu, wall, rate))
                parts[kind].append((stats["bench_sender_us"], stats["bench_gc_us"]))
                line.append(f"{kind} {cpu:.2f}/{wall:.2f} µs {rate:,.0f}/s ({stats['records_sent']} rec)")
            rows["raw"].append(run_raw(bootstrap, f"bench-raw{rep}", args.events))
            r_cpu, r_wall, r_rate = rows["raw"][-1]
            print(f"repeat {rep + 1}: " + " | ".join(line) + f" | raw {r_cpu:.2f}/{r_wall:.2f} µs {r_rate:,.0f}/s")
    finally:
        if broker is not None:
            broker.kill()
    med = {k: [statistics.median(col) for col in zip(*v, strict=True)] for k, v in rows.items()}
    # Each repeat's rate over the raw rate of the same repeat, then the median: the load of a shared
    # machine drifts between repeats more than within one.
    raw_rates = [raw[2] for raw in rows["raw"]]
    ratio = {k: statistics.median(r[2] / raw for r, raw in zip(v, raw_rates, strict=True)) for k, v in rows.items()}
    print(f"\n{args.events:,} events per run, medians of {args.repeats} runs (Tansu, same process)")
    head = f"{'path':<30}{'caller CPU µs/ev':>17}{'caller wall µs/ev':>18}{'events/s':>12}{'rate/raw':>10}"
    print(head + f"{'sender CPU µs/ev':>18}{'GC µs/ev':>10}")
    for key in rows:
        cpu, wall, rate = med[key]
        label = "raw produce(), pre-encoded" if key == "raw" else f"client.{key}()"
        line = f"{label:<30}{cpu:>17.2f}{wall:>18.2f}{rate:>12,.0f}{ratio[key]:>10.2f}"
        if key in parts:
            sender, collector = (statistics.median(c) for c in zip(*parts[key], strict=True))
            line += f"{sender:>18.2f}{collector:>10.2f}"
        print(line)
    print("rate/raw: the median over repeats of each repeat's rate over its own raw rate")
    print("caller CPU: the calling thread's own CPU time (time.thread_time); wall: includes waiting for the GIL")
    print("sender CPU: the exporter thread's CPU time; GC: collections on either thread (also in caller or sender CPU)")
    print("targets (issue 11): caller CPU <= 2 µs/event; rate >= 0.50 x raw, every kind")
    return 0


def background(bootstrap: str | None, kinds: list[str], events: int, repeats: int) -> int:
    """The sender alone per kind, beside raw produce() of that kind's one-event record, alternating in each repeat."""
    broker = None
    if bootstrap is None:
        broker = TansuProcess(None, scratch_dir("aitrace-bench-")).start().wait_ready(60)
        bootstrap = broker.bootstrap
    records = {kind: one_event_record(kind) for kind in kinds}
    rows: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in kinds}
    try:
        for rep in range(repeats):
            line = []
            for kind in kinds:
                cpu, sender, rate = run_background(bootstrap, f"bg-{kind}{rep}", events, kind)
                _, _, raw_rate = run_raw(bootstrap, f"bg-raw-{kind}{rep}", events, records[kind])
                rows[kind].append((cpu, sender, rate, raw_rate))
                line.append(f"{kind} {sender:.2f} µs {rate:,.0f}/s raw {raw_rate:,.0f}/s")
            print(f"repeat {rep + 1}: " + " | ".join(line), flush=True)
    finally:
        if broker is not None:
            broker.kill()
    print(f"\nbackground path: {events:,} events queued with the sender held, then drained; medians of {repeats}")
    head = ("kind", "caller CPU µs", "sender CPU µs", "drain events/s", "raw produce/s", "record B", "rate/raw")
    print(f"{head[0]:<14}{head[1]:>14}{head[2]:>15}{head[3]:>16}{head[4]:>15}{head[5]:>10}{head[6]:>10}")
    for kind, runs in rows.items():
        cpu, sender, rate, raw_rate = (statistics.median(col) for col in zip(*runs, strict=True))
        ratio = statistics.median(r[2] / r[3] for r in runs)  # per repeat: raw ran right after it
        size = len(records[kind])
        print(f"{kind:<14}{cpu:>14.2f}{sender:>15.2f}{rate:>16,.0f}{raw_rate:>15,.0f}{size:>10}{ratio:>10.2f}")
    print("raw produce/s: copies of the kind's one-event record (its size: record B); rate/raw: per repeat, median")
    print("targets (issue 11): caller CPU <= 2 µs/event; drain rate >= 0.50 x raw, every kind")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
