"""Idle expiry of the series table's entities (processors/expiry.py).

Unit tests drive :class:`~aitrace.processors.pipeline.Pipeline` with a changelog kept as a list
(what a restarted worker restores from) and :class:`~aitrace.processors.runtime.Runtime` of an
app that is built but never started; the end-to-end test runs ``aitrace worker`` on Tansu and
restarts it after an expiry.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
import synth as S
from aitrace.processors.chunk_wire import SWEEP, pack_chunk, unpack_chunk
from aitrace.processors.expiry import MARK, EntityExpiry, ExpiryPolicy
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline, Staged
from confluent_kafka import Consumer, TopicPartition
from faust.types import TP
from test_e2e_processors import Worker, _count, _produce, _wait, worker_factory
from test_poison import FakeTopic, Msg, _log_record, _runtime

__all__ = ["worker_factory"]  # the fixture, imported for the end-to-end test

Changelog = list[tuple[str, Any, int]]


def _lifecycle(status: str) -> tuple[str, dict[str, Any]]:
    fields = {"status": status, "config": {}, "seed": None, "code_version": None, "library_versions": {}}
    return "aitrace.RunLifecycle", {**fields, "message": None}


def _chunk(
    pipe: Pipeline, run_id: str, offset: int, *, metrics: tuple[str, ...] = ("loss",), status: str = ""
) -> bytes:
    """The series chunk of one record of run ``run_id``: a block of ``metrics`` and/or a lifecycle event."""
    tr = S.trace_id()
    series = {m: np.linspace(1.0, 0.5, 5) for m in metrics}
    blocks = [S.metric_block(trace=tr, run_id=run_id, start_step=offset * 5, series=series)] if metrics else []
    events = [S.event(_lifecycle(status), trace=tr, run_id=run_id)] if status else []
    value = S.encode(S.batch(events, blocks))
    out = pipe.process_record(value, key=None, topic="t", partition=0, offset=offset, traces={}, now=0.0)
    [(key, chunk)] = out.chunks
    assert key == f"run/{run_id}"
    return chunk


def _writer(table: dict[str, Any], changelog: Changelog) -> Callable[[str, Any, int], None]:
    """What the worker's table_writer does: the store, and the changelog record on the write's partition."""

    def write(key: str, value: Any, partition: int) -> None:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
        changelog.append((key, value, partition))

    return write


def _apply(pipe: Pipeline, table: dict[str, Any], log: Changelog, chunk: bytes, partition: int, now: float) -> None:
    staged = Staged(table)
    staged.partition = partition
    pipe.series(chunk, staged, now=now)
    staged.commit(_writer(table, log))


def _sweep(
    pipe: Pipeline, table: dict[str, Any], log: Changelog, partition: int, now: float, home: Any = None
) -> list[str]:
    staged = Staged(table)
    staged.partition = partition
    gone = pipe.sweep(partition, staged, now=now, home=home or (lambda key: None))
    write = _writer(table, log)
    staged.commit(write)
    for entity, others in gone:
        for p in others:
            write(entity, None, p)
    return [entity for entity, _ in gone]


def _restored(log: Changelog) -> dict[str, Any]:
    """The table a restarted worker restores: the changelog replayed, through JSON as the table keeps it."""
    table: dict[str, Any] = {}
    for key, value, _ in log:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = orjson.loads(orjson.dumps(value))
    return table


def _pipe(**idle: float) -> Pipeline:
    return Pipeline(WorkerOptions(partitions=2, **idle))


# ---------------------------------------------------------------- the sweep


def test_an_entity_idle_past_its_time_is_deleted_with_a_tombstone_on_its_partition() -> None:
    pipe, table, log = _pipe(run_idle_s=100.0), {}, []
    _apply(pipe, table, log, _chunk(pipe, "r", 0), partition=1, now=1000.0)
    assert table["run/r"][MARK] == {"t": 1000.0, "p": [1], "end": False}
    assert _sweep(pipe, table, log, 1, now=1099.0) == [] and "run/r" in table
    assert _sweep(pipe, table, log, 0, now=1101.0) == [] and "run/r" in table  # another partition's sweep
    assert _sweep(pipe, table, log, 1, now=1101.0) == ["run/r"]
    assert table == {} and log[-1] == ("run/r", None, 1)
    assert {p for _, _, p in log} == {1} and _restored(log) == {}
    assert pipe.counters["expired"] == 1 and " expired=1 " in pipe.stats_line()
    assert _sweep(pipe, table, log, 1, now=5000.0) == []  # once


def test_a_change_renews_the_idle_time_and_a_returning_entity_starts_afresh() -> None:
    pipe, table, log = _pipe(run_idle_s=100.0), {}, []
    _apply(pipe, table, log, _chunk(pipe, "r", 0), partition=0, now=1000.0)
    _apply(pipe, table, log, _chunk(pipe, "r", 1), partition=0, now=1050.0)
    assert _sweep(pipe, table, log, 0, now=1101.0) == []
    assert _sweep(pipe, table, log, 0, now=1151.0) == ["run/r"]
    _apply(pipe, table, log, _chunk(pipe, "r", 0), partition=0, now=2000.0)  # offset 0 again: applied, not skipped
    assert table["run/r"]["run/r/train/loss"]["applied"] == {"t:0": 0}


def test_an_ended_run_expires_sooner_and_one_started_again_waits_as_before() -> None:
    pipe, table, log = _pipe(run_idle_s=100.0, ended_run_idle_s=10.0), {}, []
    for run in ("done", "resumed"):
        _apply(pipe, table, log, _chunk(pipe, run, 0), partition=0, now=1000.0)
        _apply(pipe, table, log, _chunk(pipe, run, 1, metrics=(), status="FINISHED"), partition=0, now=1001.0)
    _apply(pipe, table, log, _chunk(pipe, "resumed", 2, metrics=(), status="STARTED"), partition=0, now=1002.0)
    _apply(pipe, table, log, _chunk(pipe, "never-logged", 0, metrics=(), status="FAILED"), partition=0, now=1000.0)
    assert table["run/done"][MARK]["end"] is True and "run/never-logged" not in table  # no state: none made
    assert _sweep(pipe, table, log, 0, now=1012.0) == ["run/done"]
    assert _sweep(pipe, table, log, 0, now=1101.0) == []
    assert _sweep(pipe, table, log, 0, now=1103.0) == ["run/resumed"]


def test_models_and_data_stages_have_their_own_idle_time() -> None:
    policy = ExpiryPolicy(run_idle_s=1.0, ended_run_idle_s=2.0, model_idle_s=3.0, data_idle_s=4.0)
    assert [policy.idle_s("run/a", False), policy.idle_s("run/a", True)] == [1.0, 2.0]
    assert [policy.idle_s("model/m", False), policy.idle_s("data/d/s", False), policy.idle_s("x", False)] == [3, 4, 4]
    assert not ExpiryPolicy(0, 0, 0, 0).enabled and ExpiryPolicy(0, 0, 0, 1).enabled


def test_an_idle_time_of_zero_never_expires() -> None:
    pipe, table, log = _pipe(run_idle_s=0.0), {}, []
    _apply(pipe, table, log, _chunk(pipe, "r", 0), partition=0, now=1000.0)
    assert _sweep(pipe, table, log, 0, now=1e12) == [] and "run/r" in table


def test_the_mark_is_no_series_and_is_written_only_with_a_wall_clock() -> None:
    pipe, table, log = _pipe(), {}, []
    pipe.detection = replace(pipe.detection, max_series=5)
    _apply(pipe, table, log, _chunk(pipe, "r", 0, metrics=("loss", "acc")), partition=0, now=1000.0)
    _apply(pipe, table, log, _chunk(pipe, "r", 1, metrics=("lr",)), partition=0, now=1001.0)
    series = [k for k in table["run/r"] if k != MARK]  # loss, acc, lr, the overfitting and run checks
    assert pipe.counters["series_refused"] == 0 and len(series) == 5 and MARK in table["run/r"]
    plain: dict[str, Any] = {}
    pipe.series(_chunk(pipe, "p", 0), plain)  # tests and benchmarks: the table as it always was
    assert MARK not in plain["run/p"]


# ---------------------------------------------------------------- cheap, and restarts


class _Counting(dict[str, Any]):
    """A table that counts how often it is read (a scan reads every key)."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.reads += 1
        return super().__getitem__(key)

    def __iter__(self) -> Iterator[str]:
        self.reads += len(self)
        return super().__iter__()


def test_a_sweep_reads_only_the_entities_that_are_due() -> None:
    pipe, table, log = _pipe(run_idle_s=1000.0), _Counting(), []
    for i in range(300):
        _apply(pipe, table, log, _chunk(pipe, f"r{i}", 0), partition=0, now=1000.0 + i)
    _sweep(pipe, table, log, 0, now=1300.0)  # the first sweep after a start builds the index from the table
    table.reads = 0
    assert _sweep(pipe, table, log, 0, now=1999.5) == [] and table.reads == 0
    assert _sweep(pipe, table, log, 0, now=2001.5) == ["run/r0", "run/r1"]  # the two due ones
    assert table.reads <= 4 and "run/r2" in table and "run/r1" not in table


def test_a_restarted_worker_keeps_each_entitys_clock() -> None:
    first, table, log = _pipe(run_idle_s=100.0), {}, []
    _apply(first, table, log, _chunk(first, "r", 0), partition=1, now=1000.0)
    again = _restored(log)
    restarted = _pipe(run_idle_s=100.0)
    assert _sweep(restarted, again, log, 1, now=1050.0) == []  # builds its index from the marks
    assert _sweep(restarted, again, log, 1, now=1101.0) == ["run/r"]
    assert log[-1] == ("run/r", None, 1) and _restored(log) == {}


def test_state_written_before_marks_is_marked_at_the_first_sweep_and_expires_from_then() -> None:
    pipe, table, log = _pipe(run_idle_s=100.0), {}, []
    old = Pipeline(WorkerOptions(partitions=2))
    old.series(_chunk(old, "old", 0), table)  # no wall clock: as an older worker wrote it
    table["run/elsewhere"] = dict(table["run/old"])
    home = {"run/old": 1, "run/elsewhere": 0}.get
    assert _sweep(pipe, table, log, 1, now=1000.0, home=home) == []
    assert log == [("run/old", table["run/old"], 1)] and table["run/old"][MARK]["t"] == 1000.0
    restarted = _pipe(run_idle_s=100.0)  # the mark came back from the changelog: the clock goes on
    assert _sweep(restarted, _restored(log), log, 1, now=1050.0, home=home) == []
    assert _sweep(restarted, _restored(log), log, 1, now=1101.0, home=home) == ["run/old"]
    nowhere = _pipe(run_idle_s=100.0)  # a key whose partition is unknown: kept (no tombstone could reach it)
    assert _sweep(nowhere, {"run/x": table["run/elsewhere"]}, [], 1, now=1e12) == []


def test_an_entity_written_on_two_partitions_gets_a_tombstone_on_each() -> None:
    pipe, table, log = _pipe(run_idle_s=100.0), {}, []
    _sweep(pipe, table, log, 0, now=0.0)
    _sweep(pipe, table, log, 1, now=0.0)
    _apply(pipe, table, log, _chunk(pipe, "r", 0), partition=0, now=1000.0)
    _apply(pipe, table, log, _chunk(pipe, "r", 1), partition=1, now=1001.0)  # a client's explicit partition
    assert table["run/r"][MARK]["p"] == [0, 1]
    assert _sweep(pipe, table, log, 0, now=2000.0) == []  # its chunks come on 1 now: swept there
    assert _sweep(pipe, table, log, 1, now=2000.0) == ["run/r"]
    assert sorted((p, v) for k, v, p in log[-2:]) == [(0, None), (1, None)] and _restored(log) == {}


def test_only_marks_it_wrote_count_and_a_forged_status_changes_nothing() -> None:
    expiry = EntityExpiry(ExpiryPolicy(), partitions=2)
    good = {"t": 1.0, "p": [1], "end": False}
    assert expiry.valid(good) is good
    bad = [None, [], {}, {**good, "t": "1"}, {**good, "t": math.nan}, {**good, "p": []}, {**good, "p": [2]}]
    bad += [{**good, "p": [True]}, {**good, "p": 1}, {**good, "end": 1}, {"t": 1.0, "p": [0]}]
    assert [expiry.valid(mark) for mark in bad] == [None] * len(bad)
    pipe, table, log = _pipe(run_idle_s=100.0, ended_run_idle_s=1.0), {}, []
    _apply(pipe, table, log, _chunk(pipe, "r", 0), partition=0, now=1000.0)
    forged = unpack_chunk(_chunk(pipe, "r", 1, status="FINISHED"))
    for status in (["FINISHED"], {"a": 1}, 7, "finished"):
        _apply(pipe, table, log, pack_chunk({**forged, "status": status}), partition=0, now=1000.0)
    assert table["run/r"][MARK]["end"] is False
    table["run/r"][MARK] = {"t": 1e300, "p": [0], "end": "yes"}  # a forged changelog value: a fresh mark
    assert _sweep(_pipe(run_idle_s=100.0), table, log, 0, now=1000.0, home={"run/r": 0}.get) == []
    assert table["run/r"][MARK] == {"t": 1000.0, "p": [0], "end": False}


# ---------------------------------------------------------------- the worker's agents


def _changelog_of(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> Changelog:
    """The changelog records the runtime's series table sends (a None sent through JSON shows as b"null")."""
    sent: Changelog = []

    def send(partition: int, key: str, value: Any, value_serializer: str | None = None) -> None:
        sent.append((key, b"null" if value is None and value_serializer != "raw" else value, partition))

    monkeypatch.setattr(runtime.series_state, "send_changelog", send)
    return sent


def test_ticks_ask_each_series_partition_for_a_sweep_at_most_every_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, _ = _runtime(tmp_path, monkeypatch)
    runtime.options = replace(runtime.options, expiry_interval_s=3600.0)
    highwater: dict[Any, int | None] = {}  # (topic, partition) -> the broker's next offset at the last fetch
    assigned = [TP(name, p) for name in runtime.input_names for p in (0, 1)]
    consumer = SimpleNamespace(highwater=highwater.__getitem__, assignment=lambda: [*assigned, TP("app-ticks", 0)])
    monkeypatch.setattr(runtime, "app", SimpleNamespace(consumer=consumer))
    ticks = [Msg(b"", None, runtime.ticks_name, p, i) for i, p in enumerate([0, 1, 0, 1, 0])]
    topic: FakeTopic = runtime.outputs.series_topic
    asyncio.run(runtime.guarded(runtime.on_records, ticks))
    assert topic.sent == []  # nothing fetched yet: whether a backlog waits is unknown
    training = runtime.input_names[0]
    highwater.update(dict.fromkeys(assigned, 0))
    highwater[TP(training, 1)] = 5  # input partition 1 has a backlog: five records the agent has not read
    asyncio.run(runtime.guarded(runtime.on_records, ticks))
    assert topic.sent == []  # on any partition: an entity's records come under any trace id
    backlog = [Msg(_log_record(), None, training, 1, offset) for offset in range(5)]
    asyncio.run(runtime.guarded(runtime.on_records, [*backlog, *ticks]))  # read up to the highwater, then ticked
    asyncio.run(runtime.guarded(runtime.on_records, ticks))
    assert sorted((s["partition"], s["value"]) for s in topic.sent) == [(0, SWEEP), (1, SWEEP)]
    runtime.options = replace(runtime.options, expiry_interval_s=0.0)
    runtime._swept.clear()
    asyncio.run(runtime.guarded(runtime.on_records, ticks))
    assert len(topic.sent) == 2


def _series_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle: float) -> tuple[Any, Changelog, list[Any]]:
    """A runtime whose series agent applied a chunk of run/r on partition 1 (idle past ``idle`` s on return)."""
    runtime, letters = _runtime(tmp_path, monkeypatch)
    runtime.pipeline.expiry.policy = ExpiryPolicy(run_idle_s=idle)
    log = _changelog_of(runtime, monkeypatch)
    chunk = _chunk(runtime.pipeline, "r", 0)
    asyncio.run(runtime.guarded(runtime.on_chunks, [Msg(chunk, b"run/r", "app-series", 1, 0)]))
    assert runtime.series_state.data.get("run/r") and log[-1][::2] == ("run/r", 1) and letters == []
    time.sleep(0.01)  # past the idle time of 1 us
    return runtime, log, letters


def test_a_sweep_record_expires_inside_the_series_agent_and_anything_else_is_safe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, log, letters = _series_runtime(tmp_path, monkeypatch, idle=1e-6)
    garbage = [SWEEP + b"x", b"", None, b"AS", SWEEP + SWEEP]
    msgs = [Msg(value, b"\xff" * 3, "app-series", 0, 1 + i) for i, value in enumerate(garbage)]
    msgs += [Msg(SWEEP, b"garbage", "app-series", 0, 9)]  # partition 0: run/r is 1's
    asyncio.run(runtime.guarded(runtime.on_chunks, msgs))
    assert runtime.series_state.data.get("run/r") and runtime.pipeline.counters["expired"] == 0
    assert runtime.pipeline.counters["series"] == 1 and len(letters) == len(garbage)  # dead-lettered
    asyncio.run(runtime.guarded(runtime.on_chunks, [Msg(SWEEP, None, "app-series", 1, 1)]))
    assert "run/r" not in runtime.series_state.data and log[-1] == ("run/r", None, 1)
    assert runtime.pipeline.counters["expired"] == 1


def test_a_sweep_whose_batch_failed_is_done_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, log, letters = _series_runtime(tmp_path, monkeypatch, idle=1e-6)
    calls: list[int] = []

    async def fails_once(actions: Any, sources: Any) -> None:
        calls.append(len(actions))
        if len(calls) == 1:
            raise RuntimeError("bulk request failed")

    monkeypatch.setattr(runtime.indexing, "index", fails_once)
    sweep = Msg(SWEEP, None, "app-series", 1, 1)
    asyncio.run(runtime.guarded(runtime.on_chunks, [sweep]))  # fails, then retried alone
    assert len(calls) == 2 and "run/r" not in runtime.series_state.data and log[-1] == ("run/r", None, 1)
    assert letters == []


# ---------------------------------------------------------------- end to end


def _changelog_records(bootstrap: str, topic: str, key: bytes, timeout: float = 60.0) -> list[Any]:
    """The records of ``key`` in changelog ``topic`` up to its first tombstone (or what ``timeout`` allows)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "check", "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (out and out[-1].value() is None):
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error() and msg.key() == key:
            out.append(msg)
    consumer.close()
    return out


def test_an_expired_run_stays_gone_after_the_worker_restores_its_table(
    kafka: Any, search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker]
) -> None:
    """A run idle past a tiny idle time is deleted, its tombstone on the partition of its writes: a
    worker restarted without expiry restores the table from the changelog, and the same record sent
    again is applied anew (its spike alerted again) instead of skipped as already applied."""
    prefix = unique_name("expiry")
    training = f"{prefix}.events.training"
    loss = np.random.default_rng(0).normal(1.0, 0.01, 300)
    loss[250] = 40.0
    run_id = f"run-{prefix}"
    block = S.metric_block(trace=S.trace_id(), run_id=run_id, start_step=0, series={"loss": loss}, step_us=20_000)
    record = [(training, block["trace_id"], S.encode(S.batch([], [block])))]
    idle = ("--run-idle-s", "2", "--expiry-interval-s", "0.5")
    worker = worker_factory(kafka.bootstrap, search.url, prefix, *idle)
    worker.start()
    _produce(kafka.bootstrap, record)
    _wait("the loss-spike alert", lambda: _count(search.url, f"{prefix}-alerts-*") >= 1, worker)
    _wait("the run expired", lambda: f"expired run/{run_id}" in worker.log.read_text(errors="replace"), worker)
    worker.stop()
    changelog = f"{prefix}-app-series-changelog"
    written = _changelog_records(kafka.bootstrap, changelog, orjson.dumps(f"run/{run_id}"))
    assert written and written[-1].value() is None, worker.tail()
    assert len({m.partition() for m in written}) == 1  # the tombstone went where the writes went

    worker.extra = ("--run-idle-s", "0")  # a state restored now would stay
    worker.start()
    _produce(kafka.bootstrap, record)
    _wait("the spike alerted again", lambda: " alerts=1 " in worker.last_stats(), worker)
    worker.stop()


# ---------------------------------------------------------------- review: hostile keys, recreated entities


def test_a_key_of_no_string_in_the_table_does_not_stop_the_sweep() -> None:
    """The changelog's keys are JSON: a client's record keyed b"5" or b"null" restores as the key 5 or None.
    A sweep that read its kind off it raised at every interval (the sweep record dead-lettered, its batch
    retried record by record) and its partition never expired anything."""
    pipe, table, log = _pipe(run_idle_s=100.0), {}, []
    _apply(pipe, table, log, _chunk(pipe, "r", 0), partition=0, now=1000.0)
    table[5] = dict(table["run/r"])  # type: ignore[index]  # a valid mark, forged under a number
    table[None] = {"x": {}}  # type: ignore[index]  # no mark: written "before marks"
    home = {"run/r": 0, 5: 0, None: 0}.get
    assert _sweep(pipe, table, log, 0, now=1050.0, home=home) == []
    assert _sweep(pipe, table, log, 0, now=1101.0, home=home) == ["run/r"]


@pytest.mark.parametrize("again_on", [1, 0])
def test_an_entity_expired_and_written_again_in_one_batch_keeps_its_new_state(
    again_on: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run/r's writes went to partitions 0 and 1 (a client wrote a chunk to 0); it expires in a sweep on 1 and a
    chunk after the sweep, in the same batch (on 1, or on 0 again), starts it afresh. The fresh value stays in
    the store and in the changelog, every other partition gets a tombstone: the tombstone for 0 went through the
    store, so it took the fresh value out of memory (its next chunk started from nothing again) and, written on
    0, out of the changelog too, while partition 1 kept the expired value for a restart to bring back."""
    runtime, letters = _runtime(tmp_path, monkeypatch)
    runtime.pipeline.expiry.policy = ExpiryPolicy(run_idle_s=1e-6)
    log = _changelog_of(runtime, monkeypatch)
    pipe = runtime.pipeline
    first = [Msg(_chunk(pipe, "r", i), b"run/r", "app-series", p, 0) for i, p in enumerate((0, 1))]
    asyncio.run(runtime.guarded(runtime.on_chunks, first))
    assert runtime.series_state.data["run/r"][MARK]["p"] == [0, 1]
    time.sleep(0.01)
    again = [Msg(SWEEP, None, "app-series", 1, 1), Msg(_chunk(pipe, "r", 2), b"run/r", "app-series", again_on, 2)]
    asyncio.run(runtime.guarded(runtime.on_chunks, again))
    assert letters == [] and runtime.pipeline.counters["expired"] == 1
    assert runtime.series_state.data.get("run/r"), "the fresh state was dropped from memory"
    assert runtime.series_state.data["run/r"][MARK]["p"] == [again_on]
    last = {p: v for k, v, p in log if k == "run/r"}  # each partition's last record, as a restart reads it
    assert last[1 - again_on] is None and last[again_on] == runtime.series_state.data["run/r"]
