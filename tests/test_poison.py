"""Poison records: tombstones, records that crash a step, rejected documents, skewed event times.

Unit tests drive :class:`aitrace.processors.runtime.Runtime` of an app that is built but never
started (outputs captured in place of Kafka sends); the end-to-end test runs ``aitrace worker``
against the real Tansu and osmem-server with tombstones mixed into a stream of valid events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import synth as S
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from aitrace.processors.app import create_app
from aitrace.processors.decode import RecordDecoder
from aitrace.processors.dlq import DeadLetter, fitted, parse_headers
from aitrace.processors.options import TimeSkew, WorkerOptions
from aitrace.processors.pipeline import Pipeline
from aitrace.producers.config import Settings
from aitrace.sinks.indexer import IndexerClosed, Rejection
from confluent_kafka import Producer
from test_e2e_processors import Worker, _consume_all, _count, _search, _trace_batch, _wait, worker_factory

__all__ = ["worker_factory"]  # the fixture, imported for the end-to-end test

DAY_S = 86400.0


@dataclass
class Msg:
    """What the agents read of a Faust message."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **kw: Any) -> None:
        self.sent.append(kw)


def _runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, index: bool = False) -> tuple[Any, list[DeadLetter]]:
    app = create_app(
        Settings.from_env(kafka_bootstrap="127.0.0.1:9"), WorkerOptions(data_dir=str(tmp_path), index=index)
    )
    runtime = app.aitrace  # type: ignore[attr-defined]
    letters: list[DeadLetter] = []

    async def capture(new: Any) -> None:
        for letter in new:
            # what aiokafka asserts before it sends anything
            assert letter.key is not None or letter.value is not None, "Need at least one: key or value"
            letters.append(letter)

    monkeypatch.setattr(runtime.outputs, "send_letters", capture)
    monkeypatch.setattr(runtime.outputs, "series_topic", FakeTopic())
    monkeypatch.setattr("aitrace.processors.guard.BACKOFF_S", 0.001)
    return runtime, letters


def _log_record() -> bytes:
    tr = S.trace_id()
    return S.encode(S.batch([S.event(S.log("info", "hi"), trace=tr)]))


# ---------------------------------------------------------------- dead letters


def test_a_tombstone_dead_letter_is_keyed_by_its_source() -> None:
    letter = DeadLetter(None, None, "t.events.system", 3, 41, "tombstone", "null value")
    assert letter.key == b"tombstone:t.events.system/3/41" and letter.value is None
    assert DeadLetter(None, b"k", "t", 0, 1, "empty", "").key == b"k"  # a real key stays


def test_a_dead_letter_too_large_for_one_record_keeps_its_head_size_and_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A garbage record of 15,999,800 bytes (under the broker's 16 MiB and the worker's fetch size) went to the
    DLQ as the same bytes plus headers: the worker's producer (max_request_size = MAX_RECORD_BYTES) refused it,
    the quarantine sent it again, and the agent died on that record at every restart. Sent through the real
    Outputs.send_letters to aiokafka's own size check."""
    import hashlib

    from aiokafka import AIOKafkaProducer
    from aitrace.processors.options import MAX_RECORD_BYTES

    runtime, _ = _runtime(tmp_path, monkeypatch)
    sent: list[tuple[bytes | None, bytes, dict[str, str]]] = []
    huge = bytes(range(256)) * (15_999_800 // 256)
    topic = runtime.input_names[0]

    async def main() -> None:
        check = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", max_request_size=MAX_RECORD_BYTES)

        async def send(key: bytes | None = None, value: bytes = b"", headers: Any = None, **_: Any) -> None:
            check._serialize(key, value, headers)  # what Faust's topic.send meets first: raises when too large
            sent.append((key, value, parse_headers(headers)))

        monkeypatch.setattr(runtime.outputs.dlq, "send", send)
        outputs = runtime.outputs
        monkeypatch.setattr(outputs, "send_letters", type(outputs).send_letters.__get__(outputs))
        await runtime.guarded(runtime.on_records, [Msg(huge, b"k", topic, 0, 0), Msg(_log_record(), b"k", topic, 0, 1)])

    asyncio.run(main())
    [(key, value, head)] = sent
    assert key == b"k" and huge.startswith(value) and 15_900_000 < len(value) < len(huge)
    assert head["truncated"] == str(len(huge)) and head["sha256"] == hashlib.sha256(huge).hexdigest()
    small = DeadLetter(b"x" * 100, b"k", "t", 0, 0, "corrupt-body", "d")
    assert fitted(small, MAX_RECORD_BYTES) is small and "truncated" not in parse_headers(small.headers())


def test_tombstones_in_a_batch_go_to_the_dlq_and_the_rest_is_processed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, letters = _runtime(tmp_path, monkeypatch)
    topic = runtime.input_names[0]
    msgs = [Msg(None, None, topic, 1, i) if i % 2 else Msg(_log_record(), b"k", topic, 1, i) for i in range(12)]
    asyncio.run(runtime.guarded(runtime.on_records, msgs))
    assert [(lt.offset, lt.reason) for lt in letters] == [(i, "tombstone") for i in range(1, 12, 2)]
    assert all(lt.key == f"tombstone:{topic}/1/{lt.offset}".encode() for lt in letters)
    assert runtime.pipeline.counters["events"] == 6


# ---------------------------------------------------------------- a record that crashes a step


def test_a_record_that_fails_twice_is_quarantined_and_the_batch_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, letters = _runtime(tmp_path, monkeypatch)
    topic = runtime.input_names[0]
    msgs = [Msg(_log_record(), b"k", topic, 0, i) for i in range(6)]
    original = runtime._process
    calls: list[int] = []

    def process(message: Any, staged: Any, now: float) -> Any:
        calls.append(message.offset)
        if message.offset == 3:
            raise AssertionError("injected")  # outside _process's own guard, like the DLQ send was
        return original(message, staged, now)

    monkeypatch.setattr(runtime, "_process", process)
    asyncio.run(runtime.guarded(runtime.on_records, msgs))
    [letter] = letters
    assert (letter.reason, letter.offset, letter.value, letter.topic) == ("quarantined", 3, msgs[3].value, topic)
    assert "AssertionError: injected" in letter.detail
    assert calls.count(3) == 2  # the batch, then alone: twice, never more
    assert set(calls) == set(range(6))
    assert runtime.pipeline.dlq.snapshot() == {"quarantined": 1}


def test_infrastructure_failures_are_not_blamed_on_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, letters = _runtime(tmp_path, monkeypatch)

    async def closed(messages: list[Any]) -> None:
        raise IndexerClosed("shutting down")

    msgs = [Msg(_log_record(), b"k", runtime.input_names[0], 0, 0)]
    with pytest.raises(IndexerClosed):
        asyncio.run(runtime.guarded(closed, msgs))
    assert letters == []


def test_an_unreadable_series_record_is_dead_lettered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, letters = _runtime(tmp_path, monkeypatch)
    topic = runtime.outputs.series_topic
    msgs = [Msg(None, None, "app-series", 0, 5), Msg(b"AG1\xff", b"run/x", "app-series", 0, 6)]
    asyncio.run(runtime.guarded(runtime.on_chunks, msgs))
    assert [(lt.offset, lt.reason) for lt in letters] == [(5, "processing-error"), (6, "processing-error")]
    assert letters[0].key == b"tombstone:app-series/0/5"
    assert topic.sent == []


# ---------------------------------------------------------------- rejected documents keep their source


def test_a_rejected_document_dead_letters_its_source_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, letters = _runtime(tmp_path, monkeypatch, index=True)
    topic = runtime.input_names[2]
    tr = S.trace_id()
    bad = S.encode(S.batch([S.event(S.log("info", f"m{i}"), trace=tr) for i in range(3)]))
    good = _log_record()
    msgs = [Msg(good, b"g", topic, 1, 7), Msg(bad, tr.encode(), topic, 0, 8)]

    class Indexer:
        async def index(self, actions: list[Any]) -> None:
            for action in actions:
                if action["_source"].get("message", "").startswith("m"):  # every document of `bad`
                    await runtime.indexing.on_reject(Rejection(action, 400, "mapper_parsing_exception", "no"))

    async def indexer() -> Any:
        return Indexer()

    monkeypatch.setattr(runtime.indexing, "indexer", indexer)
    asyncio.run(runtime.guarded(runtime.on_records, msgs))
    [letter] = letters  # three documents refused, one dead letter: their record
    assert (letter.value, letter.key, letter.topic, letter.partition, letter.offset) == (bad, tr.encode(), topic, 0, 8)
    assert letter.reason == "index-rejected" and "mapper_parsing_exception" in letter.detail
    assert runtime.indexing._sources == {}  # references dropped once the bulk answered


# ---------------------------------------------------------------- event times far from ingest time


def test_far_event_times_go_to_the_ingest_day_flagged() -> None:
    now = time.time()
    pipe = Pipeline(WorkerOptions(raw_metrics=True), skew=TimeSkew(7 * DAY_S, DAY_S))
    tr = S.trace_id()
    old_us = int((now - 400 * DAY_S) * 1e6)
    events = [S.event(S.log("info", "old"), trace=tr, time_us=old_us), S.event(S.log("info", "fresh"), trace=tr)]
    block = S.metric_block(trace=tr, run_id="r", start_step=0, series={"loss": np.ones(3)}, start_us=old_us)
    out = pipe.process_record(
        S.encode(S.batch(events, [block])), key=None, topic="t", partition=0, offset=0, traces={}, now=now
    )
    today = time.strftime("%Y.%m.%d", time.gmtime(now))
    docs = [a for a in out.actions if "-events-" in a["_index"]]
    assert docs and all(a["_index"] == f"aitrace-events-{today}" for a in docs)
    skewed = [a["_source"] for a in docs if a["_source"].get("message") != "fresh"]
    assert len(skewed) == 4  # the old log and three metric points
    for src in skewed:
        assert src["labels"]["time_skew"] == "past" and int(src["labels"]["time_skew_s"]) < -399 * DAY_S
        assert src["@timestamp"].startswith(time.strftime("%Y-%m-%d", time.gmtime(old_us / 1e6)))
    [fresh] = [a["_source"] for a in docs if a["_source"].get("message") == "fresh"]
    assert "time_skew" not in fresh.get("labels", {})


def test_time_skew_setting() -> None:
    assert TimeSkew.from_env({}) == TimeSkew(7 * DAY_S, DAY_S)
    assert TimeSkew.from_env({"AITRACE_MAX_TIME_SKEW_S": "60"}) == TimeSkew(60.0, 60.0)
    assert TimeSkew.from_env({"AITRACE_MAX_TIME_SKEW_S": "3600,5"}) == TimeSkew(3600.0, 5.0)
    for bad in ("x", "1,2,3", "-1"):
        with pytest.raises(ValueError, match="AITRACE_MAX_TIME_SKEW_S"):
            TimeSkew.from_env({"AITRACE_MAX_TIME_SKEW_S": bad})


# ---------------------------------------------------------------- through a running worker


def _produce_raw(bootstrap: str, records: list[tuple[str, bytes | None, bytes | None]]) -> None:
    """Produce (topic, key, value) records, None allowed, and insist on a delivery report for each."""
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for topic, key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, _m: err and errors.append(str(err)))
    assert producer.flush(60) == 0 and not errors, errors


def test_tombstones_through_a_running_worker(
    kafka: Any, search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker]
) -> None:
    prefix = unique_name("tomb")
    system = f"{prefix}.events.system"
    worker = worker_factory(kafka.bootstrap, search.url, prefix)
    worker.start()
    waves = [[_trace_batch(2) for _ in range(10)] for _ in range(2)]
    tombstones = 0
    for wave in waves:  # the second wave proves the worker still works after the first's tombstones
        records: list[tuple[str, bytes | None, bytes | None]] = []
        for tr, batch in wave:
            records.append((system, tr.encode(), S.encode(batch)))
            records.append((system, None, None))  # a tombstone after every valid record
        tombstones += len(wave)
        _produce_raw(kafka.bootstrap, records)
        ids = [e["event_id"] for w in waves[: waves.index(wave) + 1] for _, b in w for e in b["events"]]
        _wait(
            f"{len(ids)} events indexed",
            lambda ids=ids: _count(search.url, f"{prefix}-events-*", {"terms": {"event.id": ids}}) == len(ids),
            worker,
        )
    dead = _consume_all(kafka.bootstrap, f"{prefix}.dlq", tombstones)
    assert len(dead) == tombstones
    for msg in dead:
        meta = parse_headers(msg.headers())
        assert msg.value() is None and meta["reason"] == "tombstone" and meta["topic"] == system
        assert msg.key() == f"tombstone:{system}/{meta['partition']}/{meta['offset']}".encode()
    assert (
        len({(parse_headers(m.headers())["partition"], parse_headers(m.headers())["offset"]) for m in dead})
        == tombstones
    )
    events = sum(len(b["events"]) for w in waves for _, b in w)
    assert _count(search.url, f"{prefix}-events-*") == events  # nothing else indexed, nothing twice
    assert _search(search.url, f"{prefix}-events-*", {"match_all": {}})["hits"]["total"]["value"] == events
    worker.stop()
    assert f"dlq={tombstones} (tombstone:{tombstones})" in worker.tail()


def test_a_trace_of_far_times_is_indexed_by_its_first_ingest_day() -> None:
    first = time.time()
    pipe = Pipeline(WorkerOptions(idle_timeout_s=1.0), skew=TimeSkew(7 * DAY_S, DAY_S))
    tr, traces = S.trace_id(), {}
    old_us = int((first - 400 * DAY_S) * 1e6)
    record = S.encode(S.batch([S.event(S.log("error", "old"), trace=tr, time_us=old_us)]))
    pipe.process_record(record, key=None, topic="t", partition=0, offset=0, traces=traces, now=first)
    day = time.strftime("%Y.%m.%d", time.gmtime(first))
    # closed two days later (a late tick): the index is still the first ingest's day, not the tick's
    [action] = pipe.tick(0, traces, now=first + 2 * DAY_S)
    assert action["_index"] == f"aitrace-traces-{day}" and action["_source"]["labels"]["time_skew"] == "past"


@dataclass
class StampedMsg(Msg):
    """A Faust message with its Kafka record's timestamp (epoch s)."""

    timestamp: float = 0.0


def test_a_record_delivered_again_the_next_day_indexes_into_the_day_it_first_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event outside the skew window goes to the ingest day's index: by the wall clock, the record delivered
    again after midnight UTC (the worker died between the bulk request and the offset commit) put the same _id
    into a second daily index. The ingest time is the Kafka record's timestamp, the same at every delivery."""
    runtime, _ = _runtime(tmp_path, monkeypatch, index=True)
    topic = runtime.input_names[2]
    stamp = 1_790_000_000.0 - 1_790_000_000.0 % DAY_S + DAY_S - 60  # a minute before midnight UTC
    tr = S.trace_id()
    late = int((stamp - 10 * DAY_S) * 1e6)  # past the 7-day window
    record = S.encode(S.batch([S.event(S.log("error", "late"), trace=tr, time_us=late, event_id="e1")]))
    indexed: list[list[tuple[str, str, Any]]] = []

    async def index(actions: list[Any], sources: Any) -> None:
        indexed.append(sorted((a["_index"], a["_id"], a["_source"].get("labels")) for a in actions))

    monkeypatch.setattr(runtime.indexing, "index", index)
    monkeypatch.setattr(runtime.pipeline, "skew", TimeSkew(7 * DAY_S, DAY_S))
    monkeypatch.setattr("aitrace.processors.runtime.table_writer", lambda table: lambda *_: None)  # died: no commit
    for clock in (stamp + 1, stamp + 3600):  # delivered, then again an hour later: the next day
        monkeypatch.setattr("aitrace.processors.runtime.time.time", lambda clock=clock: clock)
        asyncio.run(runtime.on_records([StampedMsg(record, tr.encode(), topic, 0, 7, timestamp=stamp)]))
    first, again = indexed
    day = time.strftime("%Y.%m.%d", time.gmtime(stamp))
    assert first == again and [a[0] for a in first] == [f"aitrace-events-{day}"]


def test_a_record_timestamp_outside_the_skew_window_is_not_its_ingest_time() -> None:
    """The producer sets the timestamp (CreateTime): one further out than the window would let a client pick the
    day's index of events outside it. The wall clock then, as without a timestamp."""
    pipe = Pipeline(WorkerOptions(), skew=TimeSkew(7 * DAY_S, DAY_S))
    now = 1_790_000_000.0
    assert pipe.ingest_time(now - 3 * DAY_S, now) == now - 3 * DAY_S
    assert pipe.ingest_time(now + 0.5 * DAY_S, now) == now + 0.5 * DAY_S
    for stamp in (None, now - 8 * DAY_S, now + 2 * DAY_S, float("nan"), float("inf")):
        assert pipe.ingest_time(stamp, now) == now
    tr, traces = S.trace_id(), {}
    old = int((now - 400 * DAY_S) * 1e6)
    record = S.encode(S.batch([S.event(S.log("error", "old"), trace=tr, time_us=old)]))
    stamp = now - 3 * DAY_S
    out = pipe.process_record(
        record, key=None, topic="t", partition=0, offset=0, traces=traces, now=now, timestamp=stamp
    )
    day = time.strftime("%Y.%m.%d", time.gmtime(stamp))
    assert [a["_index"] for a in out.actions] == [f"aitrace-events-{day}"]
    assert traces[tr]["ingested"] == stamp and traces[tr]["touched"] == now  # idle times run by the wall clock


def test_a_span_starting_out_of_range_is_rejected() -> None:
    tr = S.trace_id()
    bad = S.event(S.span("s", 12345, 5), trace=tr)  # seconds-like start: a unit mistake or a bit flip
    good = S.event(S.span("s", S.now_us(), 5), trace=tr)
    decoded = RecordDecoder().decode(S.encode(S.batch([bad, good])))
    assert [(r.index, r.reason) for r in decoded.rejected] == [(0, "bad-time")]


def test_a_transient_broker_failure_redoes_the_batch_and_quarantines_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, letters = _runtime(tmp_path, monkeypatch)
    msgs = [Msg(_log_record(), b"k", runtime.input_names[0], 0, i) for i in range(3)]
    attempts: list[int] = []

    async def flaky(batch: list[Any]) -> None:
        attempts.append(len(batch))
        if len(attempts) <= 2:
            raise KafkaConnectionError("broker gone")

    asyncio.run(runtime.guarded(flaky, msgs))
    assert attempts == [3, 3, 3] and letters == []  # the whole batch, again, until it went through


def test_a_non_transient_send_error_is_blamed_on_its_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, letters = _runtime(tmp_path, monkeypatch)
    msgs = [Msg(_log_record(), b"k", runtime.input_names[0], 0, i) for i in range(3)]

    async def too_big(batch: list[Any]) -> None:
        if any(m.offset == 1 for m in batch):
            raise MessageSizeTooLargeError("output too large")

    asyncio.run(runtime.guarded(too_big, msgs))
    assert [(lt.offset, lt.reason) for lt in letters] == [(1, "quarantined")]
