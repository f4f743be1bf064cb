"""End to end through real processes: producer -> Tansu -> `aitrace worker` (Faust) -> osmem-server.

Each test runs the worker as a subprocess (the way operators run it) with its own topic and
index prefixes. Waits are generous polls (the machine is shared), never timing asserts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import synth as S
from aitrace.processors.dlq import parse_headers
from aitrace.schemas.codec import AvroDeserializer
from confluent_kafka import Consumer, Producer, TopicPartition
from worker_log import log_digest

WAIT_S = 240.0  # first Faust group join on a loaded 2-core box can take tens of seconds


class Worker:
    """One `aitrace worker` subprocess; its log is kept for failure messages."""

    def __init__(self, kafka: str, es_url: str, prefix: str, workdir: Path, *extra: str) -> None:
        self.kafka, self.es_url, self.prefix, self.workdir, self.extra = kafka, es_url, prefix, workdir, extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "worker.log"

    def start(self) -> None:
        env = {
            **os.environ,
            "AITRACE_KAFKA_BOOTSTRAP": self.kafka,
            "AITRACE_ES_URL": self.es_url,
            "AITRACE_TOPIC_PREFIX": self.prefix,
            "AITRACE_INDEX_PREFIX": self.prefix,
        }
        argv = [sys.executable, "-m", "aitrace.infra.cli", "worker", "--app-id", f"{self.prefix}-app"]
        argv += ["--partitions", "2", "--workers-dir", str(self.workdir / "faust"), "--stats-interval-s", "2"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([*argv, *self.extra], env=env, stdout=log, stderr=subprocess.STDOUT)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        return log_digest(self.log)

    def last_stats(self) -> str:
        """The last stats line of the process running now ("" before its first)."""
        assert self.proc is not None
        stats = f"[{self.proc.pid}] [INFO] aitrace stats"
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if stats in line]
        return lines[-1] if lines else ""


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def make(kafka: str, es_url: str, prefix: str, *extra: str) -> Worker:
        w = Worker(kafka, es_url, prefix, tmp_path, *extra)
        started.append(w)
        return w

    yield make
    for w in started:
        w.kill()


def _search(url: str, index: str, query: dict[str, Any], size: int = 0) -> dict[str, Any]:
    body = json.dumps({"query": query, "size": size, "track_total_hits": True}).encode()
    req = urllib.request.Request(f"{url}/{index}/_search", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # index not created yet
            return {"hits": {"total": {"value": 0}, "hits": []}}
        raise


def _count(url: str, index: str, query: dict[str, Any] | None = None) -> int:
    try:
        return int(_search(url, index, query or {"match_all": {}})["hits"]["total"]["value"])
    except (urllib.error.URLError, OSError):
        return -1  # server down or restarting


def _wait(what: str, check: Callable[[], bool], worker: Worker, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        assert worker.running(), f"worker exited while waiting for {what}:\n{worker.tail()}"
        time.sleep(1.0)
    pytest.fail(f"timed out waiting for {what}; worker log:\n{worker.tail()}")


def _produce(bootstrap: str, records: list[tuple[str, str, bytes]]) -> dict[int, int]:
    """Produce (topic, key, value) and insist on a delivery report for each (Tansu watermarks lie).

    Returns each partition's end as the reports tell it: one past its last delivered offset.
    """
    errors: list[str] = []
    ends: dict[int, int] = {}

    def delivered(err: Any, msg: Any) -> None:
        if err:
            errors.append(str(err))
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for topic, key, value in records:
        producer.produce(topic, key=key.encode(), value=value, on_delivery=delivered)
    assert producer.flush(60) == 0 and not errors, errors
    return ends


def _positions(bootstrap: str, group: str, topic: str, ends: dict[int, int]) -> str:
    """Each partition's committed offset for ``group`` beside its ``ends``: where a stuck worker stopped."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in sorted(ends)], timeout=10)
        return ", ".join(f"[{tp.partition}] committed {tp.offset} end {ends[tp.partition]}" for tp in committed)
    except Exception as exc:  # a diagnostic: never hide the failure it explains
        return f"(offsets unavailable: {exc!r})"
    finally:
        consumer.close()


def _consume_all(bootstrap: str, topic: str, expect: int, timeout: float = 60.0) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{os.urandom(4).hex()}",
            "fetch.queue.backoff.ms": 1,
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            out.append(msg)
    consumer.close()
    return out


def _trace_batch(n_logs: int, *, service: str = "api") -> tuple[str, dict[str, Any]]:
    tr, root = S.trace_id(), S.span_id()
    t0 = S.now_us()
    events = [
        S.event(S.log("info", f"step {i} of {tr}"), trace=tr, span=root, service=service, time_us=t0 + i)
        for i in range(n_logs)
    ]
    events.append(S.event(S.span("request", t0, 5000), trace=tr, span=root, service=service, time_us=t0 + n_logs))
    return tr, S.batch(events)


# ---------------------------------------------------------------- tests


def test_produce_to_search_hit_dlq_alert_and_idempotent_redelivery(
    kafka: Any, search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker]
) -> None:
    prefix = unique_name("e2e")
    system, training = f"{prefix}.events.system", f"{prefix}.events.training"
    tr, batch = _trace_batch(3)
    log_bytes = S.encode(batch)
    corrupt = b"\xc3\x01" + os.urandom(30)
    loss = np.random.default_rng(0).normal(1.0, 0.01, 300)
    loss[250] = 40.0
    run_trace = S.trace_id()
    block = S.metric_block(trace=run_trace, run_id=f"run-{prefix}", start_step=0, series={"loss": loss}, step_us=20_000)
    worker = worker_factory(kafka.bootstrap, search.url, prefix, "--idle-timeout-s", "3")
    worker.start()
    # the same record twice (a producer retry) and a corrupt one
    _produce(
        kafka.bootstrap,
        [
            (system, tr, log_bytes),
            (system, tr, corrupt),
            (system, tr, log_bytes),
            (training, run_trace, S.encode(S.batch([], [block]))),
        ],
    )

    events_index, traces_index, alerts_index = f"{prefix}-events-*", f"{prefix}-traces-*", f"{prefix}-alerts-*"
    first_id = batch["events"][0]["event_id"]
    _wait(
        "a search hit for the first event",
        lambda: _count(search.url, events_index, {"term": {"event.id": first_id}}) == 1,
        worker,
    )
    _wait("the assembled trace", lambda: _count(search.url, traces_index, {"term": {"trace.id": tr}}) == 1, worker)
    _wait("the loss-spike alert", lambda: _count(search.url, alerts_index) >= 1, worker)
    _wait(
        "the idle-closed training trace",
        lambda: _count(search.url, traces_index, {"term": {"trace.id": run_trace}}) == 1,
        worker,
    )

    # redelivered bytes: same _ids, and the trace state did not count the copy
    assert _count(search.url, events_index, {"term": {"trace.id": tr}}) == 4
    [trace_hit] = _search(search.url, traces_index, {"term": {"trace.id": tr}}, size=1)["hits"]["hits"]
    assert trace_hit["_id"] == tr
    assert trace_hit["_source"]["aitrace"]["trace"]["event_count"] == 4
    assert trace_hit["_source"]["aitrace"]["trace"]["complete"] is True

    [dead] = _consume_all(kafka.bootstrap, f"{prefix}.dlq", 1)
    meta = parse_headers(dead.headers())
    assert dead.value() == corrupt and meta["reason"] == "unknown-schema"
    assert meta["topic"] == system and meta["offset"].isdigit() and "fingerprint" in meta["detail"]

    alerts = [AvroDeserializer().decode(m.value())[1] for m in _consume_all(kafka.bootstrap, f"{prefix}.alerts", 1)]
    assert alerts and alerts[0]["detector"] == "spike" and alerts[0]["step"] == 250
    assert alerts[0]["run_id"] == f"run-{prefix}"
    worker.stop()
    assert "dlq=1 (unknown-schema:1)" in worker.tail()


def test_worker_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(
    kafka: Any, search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker]
) -> None:
    prefix = unique_name("kill")
    system = f"{prefix}.events.system"
    batches = [_trace_batch(9) for _ in range(120)]
    records = [(system, tr, S.encode(b)) for tr, b in batches]
    worker = worker_factory(kafka.bootstrap, search.url, prefix)
    worker.start()
    ends = _produce(kafka.bootstrap, records[:80])
    events_index, traces_index = f"{prefix}-events-*", f"{prefix}-traces-*"
    _wait("some documents indexed", lambda: _count(search.url, events_index) >= 100, worker)
    worker.kill()  # SIGKILL: no flush, no commit of what is in flight
    ends.update(_produce(kafka.bootstrap, records[80:]))
    worker.start()
    try:
        _wait("every event indexed", lambda: _count(search.url, events_index) >= 1200, worker)
    except pytest.fail.Exception as exc:
        where = _positions(kafka.bootstrap, f"{prefix}-app", system, ends)
        pytest.fail(f"{exc}\nindexed {_count(search.url, events_index)} of 1200; {system}: {where}")
    _wait("every trace indexed", lambda: _count(search.url, traces_index) >= 120, worker)
    worker.stop()
    assert _count(search.url, events_index) == 1200  # _id = event_id: redelivery overwrote, never added
    assert _count(search.url, traces_index) == 120
    hits = _search(search.url, traces_index, {"match_all": {}}, size=200)["hits"]["hits"]
    # trace state restored from its changelog skipped the redelivered records: nothing counted twice
    assert sorted({h["_source"]["aitrace"]["trace"]["event_count"] for h in hits}) == [10]


def _records(stats_line: str) -> int:
    """The ``records=`` count of a worker's stats line (0 before its first)."""
    return int(stats_line.split(" records=", 1)[1].split(" ", 1)[0]) if " records=" in stats_line else 0


def test_trace_state_restored_after_a_restart_holds_every_record_it_applied(
    kafka: Any, search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker]
) -> None:
    """Trace state comes back from its changelog whole: after a graceful restart, every record sent
    again (a producer's retry: the same batch ids) is skipped, and no trace counts an event twice.

    Each trace spans two records, so a state restored short of its changelog's end (Tansu's end offset
    is one past the first record of a log's last record batch, and Faust's recovery reads up to it)
    would apply the second record again."""
    prefix = unique_name("replay")
    system = f"{prefix}.events.system"
    records = []
    for _ in range(40):
        tr, batch = _trace_batch(9)
        events = batch["events"]
        records += [(system, tr, S.encode(S.batch(events[:5]))), (system, tr, S.encode(S.batch(events[5:])))]
    worker = worker_factory(kafka.bootstrap, search.url, prefix)
    worker.start()
    _produce(kafka.bootstrap, records)
    traces_index = f"{prefix}-traces-*"
    _wait("every trace indexed", lambda: _count(search.url, traces_index) >= 40, worker)
    worker.stop()
    worker.start()
    _produce(kafka.bootstrap, records)
    # the copies, and the records the first run had not committed (read again from the commit)
    _wait("the records sent again read", lambda: _records(worker.last_stats()) >= len(records), worker)
    time.sleep(6)  # the last of them applied
    worker.stop()
    last = worker.last_stats()
    assert " traces=0 " in last, f"a trace changed on reading its own records again: {last}"
    hits = _search(search.url, traces_index, {"match_all": {}}, size=100)["hits"]["hits"]
    assert len(hits) == 40 and sorted({h["_source"]["aitrace"]["trace"]["event_count"] for h in hits}) == [10]


def test_search_server_down_for_a_while_loses_nothing(
    kafka: Any, fresh_search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker]
) -> None:
    prefix = unique_name("down")
    system = f"{prefix}.events.system"
    worker = worker_factory(kafka.bootstrap, fresh_search.url, prefix)
    worker.start()
    tr, first = _trace_batch(1)
    _produce(kafka.bootstrap, [(system, tr, S.encode(first))])
    events_index = f"{prefix}-events-*"
    _wait("the first batch indexed", lambda: _count(fresh_search.url, events_index) == 2, worker)
    fresh_search.stop()
    during = [_trace_batch(4, service="Feature-Service") for _ in range(30)]
    _produce(kafka.bootstrap, [(system, t, S.encode(b)) for t, b in during])
    time.sleep(8)  # the worker keeps retrying meanwhile; it must neither crash nor skip
    assert worker.running(), worker.tail()
    fresh_search.start()
    fresh_search.wait_ready(60)
    # osmem-server keeps documents in memory: the restarted server starts empty, so count what was sent meanwhile
    ids = [e["event_id"] for _, b in during for e in b["events"]]
    _wait(
        "every event sent during the outage",
        lambda: _count(fresh_search.url, events_index, {"terms": {"event.id": ids}}) == len(ids),
        worker,
    )
    worker.stop()
    # ... with its index templates put again first: the day's index made on the empty server had dynamic mappings
    # (its service a text field, which a term query on the name as sent does not find; /work/rev-ae D4)
    assert _count(fresh_search.url, events_index, {"term": {"service.name": "Feature-Service"}}) == len(ids)


def test_a_worker_given_the_schema_registry_reads_registry_framed_records(
    kafka: Any,
    search: Any,
    unique_name: Callable[[str], str],
    worker_factory: Callable[..., Worker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Producers with AITRACE_SCHEMA_REGISTRY_URL write magic 0 + schema id; a worker with the same
    setting reads them (it dead-lettered every one as no-registry before)."""
    from http.server import ThreadingHTTPServer
    from threading import Thread

    from aitrace.schemas.codec import AvroSerializer, SerializationContext
    from aitrace.schemas.registry import SchemaRegistryClient
    from test_schemas import _FakeRegistry

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeRegistry)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("AITRACE_SCHEMA_REGISTRY_URL", url)
        prefix = unique_name("registry")
        tr, batch = _trace_batch(3)
        topic = f"{prefix}.events.system"
        framed = AvroSerializer("aitrace.Batch", registry=SchemaRegistryClient(url))(batch, SerializationContext(topic))
        assert framed[:1] == b"\x00"
        worker = worker_factory(kafka.bootstrap, search.url, prefix)
        worker.start()
        _produce(kafka.bootstrap, [(topic, tr, framed)])
        first_id = batch["events"][0]["event_id"]
        _wait(
            "a search hit for a registry-framed event",
            lambda: _count(search.url, f"{prefix}-events-*", {"term": {"event.id": first_id}}) == 1,
            worker,
        )
    finally:
        server.shutdown()
        server.server_close()


def test_a_record_that_is_not_json_on_a_tables_changelog_does_not_stop_the_worker_starting(
    kafka: Any, search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker]
) -> None:
    """The tables are restored from their changelog topics, which any client can write: one record whose key or
    value is not JSON (``b"\\xff"``) made Faust's recovery log "Error in recovery" and wait for that offset for
    ever, and the worker never became ready again (/work/rev-ae D7). It reads as a value the pipeline drops."""
    prefix = unique_name("changelog")
    system, training = f"{prefix}.events.system", f"{prefix}.events.training"
    worker = worker_factory(kafka.bootstrap, search.url, prefix)
    worker.start()
    tr, first = _trace_batch(2)
    block = S.metric_block(trace=tr, run_id="r1", start_step=0, series={"loss": [1.0, 0.9, 0.8, 0.7]})
    _produce(kafka.bootstrap, [(system, tr, S.encode(first)), (training, tr, S.encode(S.batch([], [block])))])
    events_index = f"{prefix}-events-*"
    _wait("the first batch indexed", lambda: _count(search.url, events_index) >= 2, worker)
    time.sleep(4)  # the metric points indexed too
    before = _count(search.url, events_index)
    worker.stop()
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for table in ("series", "traces"):
        for key, value in ((b'"run/r1"', b"\xff"), (b"\xff", b"{}"), (b"\xff\xfe", b"not json")):
            for partition in (0, 1):
                producer.produce(f"{prefix}-app-{table}-changelog", key=key, value=value, partition=partition)
    assert producer.flush(30) == 0
    worker.start()
    tr, second = _trace_batch(3)
    _produce(kafka.bootstrap, [(system, tr, S.encode(second))])
    after = before + len(second["events"])
    _wait("the batch after the restart indexed", lambda: _count(search.url, events_index) == after, worker, timeout=120)
