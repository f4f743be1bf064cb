"""The suite's parts, each built on the functions of one bench/ script and returning figures with baselines.

Every part takes the scale (``quick`` or ``full``) and returns ``Figure`` and
``Skip`` rows; the sizes per scale are in :data:`SIZES`. Broker and search server are started once,
on first use, and shared (each part works under its own topic and index prefixes).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # the scripts import each other as top-level modules
sys.path.insert(0, str(BENCH.parent / "tests"))  # synth, the test data generator

from suite import Figure, Part, Result, Skip, failure, missing  # noqa: E402

SIZES: dict[str, dict[str, Any]] = {
    "quick": {"events": 20_000, "repeats": 1, "training_records": 600, "mixed_records": 600, "worker_repeat": 1,
              "docs": 3000, "rounds": 2, "points": 1_000_000, "detect_repeat": 2, "river": 10_000, "numpy": 50_000,
              "rate": 500, "seconds": 10},
    "full": {"events": 100_000, "repeats": 5, "training_records": 1200, "mixed_records": 1200, "worker_repeat": 3,
             "docs": 10_000, "rounds": 3, "points": 10_000_000, "detect_repeat": 3, "river": 50_000, "numpy": 300_000,
             "rate": 1000, "seconds": 60},
}  # fmt: skip


class Services:
    """Tansu and osmem-server, each started on first use and stopped by :meth:`stop`."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-suite-"))
        self._kafka: Any = None
        self._search: Any = None

    @property
    def bootstrap(self) -> str:
        if self._kafka is None:
            from aitrace.infra.stack import TansuProcess, start_service

            self._kafka = start_service(TansuProcess, self.workdir / "kafka", timeout=60)
        return str(self._kafka.bootstrap)

    @property
    def search_url(self) -> str:
        if self._search is None:
            from aitrace.infra.stack import OsmemProcess, start_service

            self._search = start_service(OsmemProcess, self.workdir / "search", timeout=60)
        return str(self._search.url)

    def stop(self) -> None:
        """Stop what was started and remove the work folder (the broker's log segments)."""
        for service in (self._kafka, self._search):
            if service is not None:
                service.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _med(rows: Sequence[tuple[float, ...]]) -> list[float]:
    return [statistics.median(col) for col in zip(*rows, strict=True)]


# ---------------------------------------------------------------- producer


def producer(services: Services, scale: str) -> list[Result]:
    """bench_producer's client and raw ``produce()`` per kind, then the libraries people use instead."""
    import bench_producer as bp

    size = SIZES[scale]
    n, tag = size["events"], os.urandom(2).hex()
    rows: dict[str, list[tuple[float, float, float]]] = {k: [] for k in ("raw", *bp.KINDS)}
    for rep in range(size["repeats"]):
        for kind in bp.KINDS:
            cpu, wall, rate, _ = bp.run_client(services.bootstrap, f"suite{tag}-{kind}{rep}", n, kind)
            rows[kind].append((cpu, wall, rate))
        rows["raw"].append(bp.run_raw(services.bootstrap, f"suite{tag}-raw{rep}", n))
    raw_cpu, _, raw_rate = _med(rows["raw"])
    out: list[Result] = []
    ours: dict[str, tuple[float, float]] = {}
    for kind in bp.KINDS:
        cpu, _, rate = _med(rows[kind])
        ours[kind] = (cpu, rate)
        # per repeat over the same repeat's raw, then the median: load drifts between repeats more than within
        ratio = statistics.median(r[2] / raw[2] for r, raw in zip(rows[kind], rows["raw"], strict=True))
        note = f"{n:,} events, median of {size['repeats']}"
        out.append(Figure("producer", f"client.{kind}() caller CPU", cpu, "µs/event", "raw produce()", raw_cpu, False))
        out.append(
            Figure(
                "producer",
                f"client.{kind}() delivered",
                rate,
                "events/s",
                "raw produce()",
                raw_rate,
                note=note,
                ratio=ratio,
            )
        )
    return out + background_figures(services, n, size["repeats"], tag) + library_figures(ours, n)


def background_figures(services: Services, n: int, repeats: int, tag: str) -> list[Result]:
    """The sender alone per kind (bench_producer --background: events queued while the sender is held,
    then drained), beside raw produce() of copies of that kind's one-event record, right after it."""
    import bench_producer as bp

    out: list[Result] = []
    for kind in bp.KINDS:
        record = bp.one_event_record(kind)
        runs = []
        for rep in range(repeats):
            _, _, rate = bp.run_background(services.bootstrap, f"suite{tag}-bg-{kind}{rep}", n, kind)
            _, _, raw_rate = bp.run_raw(services.bootstrap, f"suite{tag}-bg-raw-{kind}{rep}", n, record)
            runs.append((rate, raw_rate))
        rate, raw_rate = (statistics.median(col) for col in zip(*runs, strict=True))
        ratio = statistics.median(r / raw for r, raw in runs)
        note = f"{n:,} events queued with the sender held, then drained; raw: copies of its {len(record)} B record"
        label = f"client.{kind}() sender alone"
        out.append(Figure("producer", label, rate, "events/s", "raw produce()", raw_rate, note=note, ratio=ratio))
    return out


def library_figures(ours: dict[str, tuple[float, float]], n: int) -> list[Result]:
    """Each installed library beside the aitrace call it stands in for: caller CPU and calls/s."""
    from producer_baselines import BASELINES

    out: list[Result] = []
    for kind, label, module, measure, share in BASELINES:
        skip = missing("producer", label, module)
        if skip is not None:
            out.append(skip)
            continue
        try:
            with tempfile.TemporaryDirectory(prefix="bench-suite-baselines-") as folder:  # its files go with it
                cpu, rate = measure(max(100, int(n * share)), Path(folder))
        except Exception as exc:  # one library's failure must not lose the client's figures
            out.append(failure("producer", label, exc))
            continue
        our_cpu, our_rate = ours[kind]
        out.append(Figure("producer", f"client.{kind}() caller CPU", our_cpu, "µs/event", label, cpu, False))
        out.append(Figure("producer", f"client.{kind}() delivered", our_rate, "events/s", label, rate))
    return out


# ---------------------------------------------------------------- worker


def worker(services: Services, scale: str) -> list[Result]:
    """bench_processors' throughput rows per workload: the worker beside raw consume and a counting agent."""
    import bench_processors as bp

    size = SIZES[scale]
    out: list[Result] = []
    workloads = (("training", bp.training_records, "training"), ("mixed", bp.mixed_records, "mixed"),
                 ("client-mixed", bp.client_mixed_records, "mixed"))  # fmt: skip
    for name, make, sized in workloads:
        try:
            out += _workload(services, name, make(size[f"{sized}_records"]), size["worker_repeat"])
        except Exception as exc:  # the other workload's figures still count
            out.append(failure("worker", name, exc))
    return out


def _workload(services: Services, name: str, records: list[tuple[str, bytes, int, int]], repeat: int) -> list[Result]:
    import bench_processors as bp

    prefix = f"s{os.urandom(3).hex()}"
    topic = f"{prefix}.events.{'training' if name == 'training' else 'inference'}"
    bp.create_topic(services.bootstrap, topic, 1)
    bp.produce(services.bootstrap, topic, records)
    n, events, points = len(records), sum(r[2] for r in records), sum(r[3] for r in records)
    times: dict[str, list[float]] = {k: [] for k in ("raw", "count", "pipeline", "worker")}
    for i in range(repeat):
        raw_s, msgs = bp.raw_consume(services.bootstrap, topic, n)
        proc_s, _, _, chunks = bp.pipeline_in_process(msgs)
        work = services.workdir / f"{prefix}-{i}"
        count_s = bp.faust_count(services.bootstrap, topic, n, work / "count")
        worker_s, _ = bp.faust_worker(services.bootstrap, prefix, n, chunks, work / "worker", app_id=f"{prefix}-{i}")
        for key, secs in zip(times, (raw_s, count_s, proc_s, worker_s), strict=True):
            times[key].append(secs)
    rate = {k: events / statistics.median(v) for k, v in times.items()}
    note = f"{n} records, {events:,} events, median of {repeat}"
    label = f"{name}: aitrace worker --no-index"
    out: list[Result] = [
        Figure("worker", label, rate["worker"], "events/s", "raw consume", rate["raw"], note=note),
        Figure("worker", label, rate["worker"], "events/s", "count-only Faust agent", rate["count"], note=note),
        Figure("worker", f"{name}: decode+correlate+detect in-process", rate["pipeline"], "events/s",
               "raw consume", rate["raw"], note=note),
    ]  # fmt: skip
    if name == "training":
        per_point = points / events
        out.append(Figure("worker", label, rate["worker"] * per_point, "points/s", "count-only Faust agent",
                          rate["count"] * per_point, note=f"{per_point:g} metric points per step"))  # fmt: skip
    return out


# ---------------------------------------------------------------- sink


def sink(services: Services, scale: str) -> list[Result]:
    """bench_sink's BulkIndexer beside a raw ``_bulk`` of the same documents, rounds alternating."""
    size = SIZES[scale]
    raw, ours, version = asyncio.run(_sink_rounds(services.search_url, size["docs"], size["rounds"]))
    note = f"{size['docs']:,} docs x {size['rounds']} rounds after a warm-up round, {version}"
    return [Figure("sink", "BulkIndexer", ours, "docs/s", "raw _bulk, pre-serialized", raw, note=note)]


async def _sink_rounds(url: str, docs: int, rounds: int) -> tuple[float, float, str]:
    import bench_sink as bs
    from aitrace.producers.config import SearchConfig
    from aitrace.sinks import es, templates
    from aitrace.sinks.indexer import IndexerConfig

    client = await es.connect(SearchConfig(es_url=url))
    caps = es.capabilities_of(client)
    rates: dict[str, list[float]] = {"raw": [], "indexer": []}
    try:
        for r in range(rounds + 1):  # round 0 warms the server's templates and the client's pool, and is dropped
            for name, run in (("raw", bs.run_raw), ("indexer", bs.run_indexer)):
                prefix = f"suite{os.urandom(2).hex()}{name}"
                await templates.install_templates_async(client, caps, prefix=prefix)
                rates[name].append(await run(client, bs.make_actions(docs, prefix, seed=r), IndexerConfig()))
                await client.options(ignore_status=404).indices.delete(index=f"{prefix}-*")
    finally:
        await client.close()
    raw, ours = statistics.median(rates["raw"][1:]), statistics.median(rates["indexer"][1:])
    return raw, ours, f"{caps.distribution} {caps.version}"


# ---------------------------------------------------------------- detectors

_ROW = re.compile(r"^  (?P<name>\S.*?)\s+(?P<rate>[\d,]+) (?P<unit>points/s|tests/s)\s+(?:(?P<ratio>[\d.]+)x)?")


def detect(scale: str) -> list[Result]:
    """bench_detect's anomaly scoring (beside numpy and river) and drift tests (beside scipy)."""
    import bench_detect as bd

    size = SIZES[scale]
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        rates = bd.bench_anomaly(size["points"], 1000, size["detect_repeat"], size["river"], size["numpy"], None)
        drift_from = len(captured.getvalue())
        bd.bench_drift(size["detect_repeat"])
    print(captured.getvalue(), end="")
    note = f"{size['points']:,} points"
    out: list[Result] = [
        Figure("detect", "anomaly_scores (window 64)", rates["anomaly_scores"], "points/s",
               "numpy rolling median/MAD", rates["numpy"], note=note),
    ]  # fmt: skip
    for key, value in rates.items():
        if key.startswith("river"):
            out.append(Figure("detect", "AnomalyDetector, chunks of 1000", rates["stateful"], "points/s", key, value))
    return out + drift_rows(captured.getvalue()[drift_from:])


def drift_rows(text: str) -> list[Figure]:
    """bench_detect's printed drift rows: a row with a ratio stands beside the next row without one."""
    rows = [m.groupdict() for line in text.splitlines() if (m := _ROW.match(line))]
    out = []
    for i, row in enumerate(rows):
        if not row["ratio"]:
            continue
        base = next((b for b in rows[i + 1 :] if not b["ratio"]), None)
        if base is not None:
            value, base_value = float(row["rate"].replace(",", "")), float(base["rate"].replace(",", ""))
            out.append(Figure("detect", row["name"], value, row["unit"], base["name"], base_value))
    if not out:
        raise ValueError("no drift rows with a baseline in bench_detect's output (its format changed?)")
    return out


# ---------------------------------------------------------------- produce to searchable


def latency(services: Services, scale: str) -> list[Result]:
    """Log batches at a fixed rate through ``aitrace worker`` with indexing on: produce to searchable."""
    size = SIZES[scale]
    lat, sent, achieved = produce_to_searchable(services, size["rate"], size["seconds"])
    note = (
        f"{len(lat):,} of {sent:,} docs visible, sent at {achieved:,.0f} docs/s (target {size['rate']}), "
        "20 per batch, index polled every 20 ms"
    )
    return [
        Figure("latency", f"produce to searchable p{q:g}", float(np.percentile(lat, q)) * 1e3, "ms",
               higher_is_better=False, note=note)
        for q in (50, 99, 99.9)
    ]  # fmt: skip


def produce_to_searchable(services: Services, rate: float, seconds: float) -> tuple[list[float], int, float]:
    """Seconds from produce to visible per document, in ordinal order (as bench_processors.latency
    measures it, but every document's figure is kept, for p99.9), and the rate achieved."""
    import bench_processors as bp
    import synth as S
    from confluent_kafka import Producer

    prefix = f"lat{os.urandom(3).hex()}"
    topic = f"{prefix}.events.system"
    bp.create_topic(services.bootstrap, topic, 1)
    env = {**os.environ, "AITRACE_KAFKA_BOOTSTRAP": services.bootstrap, "AITRACE_ES_URL": services.search_url}
    env |= {"AITRACE_TOPIC_PREFIX": prefix, "AITRACE_INDEX_PREFIX": prefix}
    argv = [sys.executable, "-m", "aitrace.infra.cli", "worker", "--app-id", f"{prefix}-app", "--partitions", "1"]
    argv += ["--workers-dir", str(services.workdir / prefix), "--stats-interval-s", "5"]
    log = services.workdir / f"{prefix}.log"
    proc = subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    producer = Producer({"bootstrap.servers": services.bootstrap, "linger.ms": 1})
    count = _counter(f"{services.search_url}/{prefix}-events-*/_count")

    def send(n: int) -> None:
        trace, t0 = S.trace_id(), S.now_us()
        batch = S.batch([S.event(S.log("info", f"m{i}"), trace=trace, service="api", time_us=t0 + i) for i in range(n)])
        producer.produce(topic, key=trace.encode(), value=S.encode(batch))
        producer.poll(0)

    try:
        send(10)  # warm-up: the worker has joined and indexed once before the clock starts
        producer.flush(30)
        _wait(lambda: count() >= 10, 300, f"worker never indexed the warm-up batch; log: {log}")
        sent, visible = _paced(send, count, rate, seconds, per_batch=20)
        producer.flush(30)
        deadline = time.monotonic() + 120
        while not _see(count, sent, visible) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    achieved = len(sent) / (sent[-1] - sent[0]) if len(sent) > 1 else 0.0
    return [v - s for s, v in zip(sent, visible, strict=False)], len(sent), achieved


def _paced(send: Callable[[int], None], count: Callable[[], int], rate: float, seconds: float, per_batch: int
           ) -> tuple[list[float], list[float]]:  # fmt: skip
    """Send a batch on schedule; between batches, poll the index's count every 20 ms at most."""
    sent: list[float] = []
    visible: list[float] = []
    last = 0.0
    start = time.perf_counter()
    for i in range(int(rate * seconds / per_batch)):
        while time.perf_counter() < start + i * per_batch / rate:
            if sent and time.perf_counter() - last >= 0.02:
                last = time.perf_counter()
                _see(count, sent, visible)
            time.sleep(0.0005)
        send(per_batch)
        sent.extend([time.perf_counter()] * per_batch)
    return sent, visible


def _see(count: Callable[[], int], sent: list[float], visible: list[float]) -> bool:
    """Documents up to the index's count (less the warm-up's 10) are visible now; True once all are."""
    now, n = time.perf_counter(), count() - 10
    while len(visible) < min(n, len(sent)):
        visible.append(now)
    return len(visible) >= len(sent)


def _counter(url: str) -> Callable[[], int]:
    def count() -> int:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return int(json.load(resp)["count"])
        except OSError:
            return 0

    return count


def _wait(done: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.2)


def all_parts(services: Services) -> dict[str, Part]:
    return {
        "producer": lambda scale: producer(services, scale),
        "worker": lambda scale: worker(services, scale),
        "sink": lambda scale: sink(services, scale),
        "detect": detect,
        "latency": lambda scale: latency(services, scale),
    }


__all__ = ["SIZES", "Figure", "Services", "Skip", "all_parts", "drift_rows", "library_figures"]
