"""Decode/validate, dead letters, the Faust-free pipeline and the worker CLI (no broker needed)."""

from __future__ import annotations

import argparse
import struct
import time

import numpy as np
import orjson
import pytest
import synth as S
from aitrace.processors.decode import InvalidRecord, RecordDecoder, valid_span_id, valid_trace_id
from aitrace.processors.dlq import DlqCounter, parse_headers
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline, Staged
from aitrace.processors.worker import add_arguments, options_from_args
from aitrace.processors.worker import run as worker_run
from aitrace.schemas.codec import AvroSerializer, DecodeError
from aitrace.schemas.metric_block import MetricBlock
from aitrace.schemas.registry import SchemaRegistryClient


def _ok_event(**kw: object) -> dict:
    return S.event(S.log("info", "hi"), trace=S.trace_id(), **kw)


def _record(events: list[dict] = (), blocks: list[dict] = ()) -> bytes:
    return S.encode(S.batch(list(events), list(blocks)))


# ---------------------------------------------------------------- ids and decoding


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a" * 32, True), ("0" * 32, False), ("A" * 32, False), ("a" * 31, False), ("g" * 32, False), (None, False)],
)
def test_trace_id_rules(value: object, ok: bool) -> None:
    assert valid_trace_id(value) is ok


def test_span_id_rules() -> None:
    assert valid_span_id("0123456789abcdef")
    assert not valid_span_id("0" * 16)
    assert not valid_span_id("0123456789ABCDEF")


def test_decodes_a_valid_batch_with_events_and_blocks() -> None:
    tr = S.trace_id()
    block = S.metric_block(trace=tr, run_id="r", start_step=0, series={"loss": np.ones(10)})
    decoded = RecordDecoder().decode(_record([_ok_event(), _ok_event()], [block]))
    assert decoded.schema == "aitrace.Batch"
    assert len(decoded.events) == 2 and len(decoded.metric_blocks) == 1
    assert decoded.event_count == 12
    assert decoded.rejected == []


def test_decodes_a_lone_event_record_as_a_batch_of_one() -> None:
    event = _ok_event()
    decoded = RecordDecoder().decode(AvroSerializer("aitrace.Event")(event))
    assert [e["event_id"] for e in decoded.events] == [event["event_id"]]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"\xc3\x01\x00", "truncated"),
        (b"\xff\xfe garbage", "bad-magic"),
        (b"\xc3\x01" + struct.pack("<Q", 12345) + b"body", "unknown-schema"),
        (b"\x00\x00\x00\x00\x07body", "no-registry"),
    ],
)
def test_undecodable_bytes_raise_with_a_stable_reason(data: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        RecordDecoder().decode(data)
    assert info.value.reason == reason


def test_corrupt_body_is_reported() -> None:
    good = _record([_ok_event()])
    with pytest.raises(DecodeError) as info:
        RecordDecoder().decode(good[:14])
    assert info.value.reason == "corrupt-body"


def test_invalid_events_are_rejected_and_the_rest_kept() -> None:
    bad_trace = S.event(S.log("info", "x"), trace="A" * 32)
    bad_span = S.event(S.log("info", "x"), trace=S.trace_id(), span="123")
    in_seconds = S.event(S.log("info", "x"), trace=S.trace_id(), time_us=int(time.time()))
    empty_request = S.event(S.inference("", "m", 1.0), trace=S.trace_id())
    nan_latency = S.event(S.inference("r", "m", float("nan")), trace=S.trace_id())
    good = _ok_event()
    decoded = RecordDecoder().decode(_record([bad_trace, good, bad_span, in_seconds, empty_request, nan_latency]))
    assert [e["event_id"] for e in decoded.events] == [good["event_id"]]
    assert [(r.index, r.reason) for r in decoded.rejected] == [
        (0, "invalid-trace-id"),
        (2, "invalid-span-id"),
        (3, "bad-time"),
        (4, "missing-field"),
        (5, "bad-value"),
    ]


def test_a_batch_with_nothing_valid_is_invalid_as_a_whole() -> None:
    with pytest.raises(InvalidRecord) as info:
        RecordDecoder().decode(_record([S.event(S.log("info", "x"), trace="0" * 32)]))
    assert info.value.reason == "invalid-trace-id"


def test_metric_block_checks_are_array_checks() -> None:
    tr = S.trace_id()
    short = S.metric_block(trace=tr, run_id="r", start_step=0, series={"loss": np.ones(5)})
    short["series"][0]["values"] = [1.0, 2.0]
    future = S.metric_block(trace=tr, run_id="r", start_step=0, series={"loss": np.ones(5)}, start_us=S.now_us() * 2)
    good = S.metric_block(trace=tr, run_id="r", start_step=0, series={"loss": np.ones(5)})
    decoded = RecordDecoder().decode(_record([], [short, future, good]))
    assert [(r.where, r.index, r.reason) for r in decoded.rejected] == [
        ("block", 0, "bad-shape"),
        ("block", 1, "bad-time"),
    ]
    assert [b.block_id for b in decoded.metric_blocks] == [good["block_id"]]


# ---------------------------------------------------------------- dead letters


def test_dead_letter_headers_round_trip_and_counter() -> None:
    pipe = Pipeline(WorkerOptions(index=False))
    out = pipe.process_record(b"\x01nope", key=b"k", topic="t", partition=3, offset=17, traces={}, now=0.0)
    [letter] = out.dead_letters
    assert letter.value == b"\x01nope" and letter.key == b"k"
    meta = parse_headers(letter.headers())
    assert meta["reason"] == "bad-magic"
    assert (meta["topic"], meta["partition"], meta["offset"]) == ("t", "3", "17")
    assert "neither" in meta["detail"]
    assert pipe.dlq.snapshot() == {"bad-magic": 1}


def test_partly_invalid_batch_is_dead_lettered_whole_and_its_good_part_processed() -> None:
    pipe = Pipeline(WorkerOptions())
    good, bad = _ok_event(), S.event(S.log("info", "x"), trace="z" * 32)
    value = _record([good, bad])
    out = pipe.process_record(value, key=None, topic="t", partition=0, offset=1, traces={}, now=0.0)
    [letter] = out.dead_letters
    assert letter.value == value
    assert parse_headers(letter.headers())["rejected"] == '["event:1"]'
    assert [a["_id"] for a in out.actions] == [good["event_id"]]


def test_dlq_counter_text() -> None:
    c = DlqCounter()
    assert str(c) == "dlq=0"
    c.add("a")
    c.add("b", 2)
    assert str(c) == "dlq=3 (a:1,b:2)" and c.total == 3


# ---------------------------------------------------------------- pipeline


def test_redelivered_record_changes_no_state_and_emits_no_second_trace() -> None:
    pipe = Pipeline(WorkerOptions())
    tr, root = S.trace_id(), S.span_id()
    value = _record([S.event(S.span("root", S.now_us(), 10), trace=tr, span=root)])
    traces: dict = {}
    first = pipe.process_record(value, key=None, topic="t", partition=0, offset=5, traces=traces, now=1.0)
    again = pipe.process_record(value, key=None, topic="t", partition=0, offset=5, traces=traces, now=2.0)
    copy = pipe.process_record(value, key=None, topic="t", partition=0, offset=9, traces=traces, now=3.0)
    assert sum("traces" in a["_index"] for a in first.actions) == 1
    assert not any("traces" in a["_index"] for a in again.actions + copy.actions)
    assert traces[tr]["events"] == 1
    # raw events are re-indexed on redelivery: same _id, so idempotent in the index
    assert [a["_id"] for a in again.actions] == [a["_id"] for a in first.actions if "events" in a["_index"]]


def test_series_chunks_are_applied_once() -> None:
    pipe = Pipeline(WorkerOptions())
    loss = np.r_[np.random.default_rng(1).normal(1, 0.01, 200), 50.0]
    block = S.metric_block(trace=S.trace_id(), run_id="r9", start_step=0, series={"loss": loss})
    out = pipe.process_record(_record([], [block]), key=None, topic="t", partition=0, offset=0, traces={}, now=0.0)
    [(key, chunk)] = out.chunks
    assert key == "run/r9"
    table: dict = {}
    alerts, _ = pipe.series(chunk, table)
    assert [a["detector"] for a in alerts] == ["spike"]
    snapshot = orjson.dumps(table)
    assert pipe.series(chunk, table) == ([], [])
    assert orjson.dumps(table) == snapshot


def test_slow_series_are_indexed_raw_and_fast_ones_rolled_up() -> None:
    pipe = Pipeline(WorkerOptions(max_raw_rate=2.0))
    tr = S.trace_id()
    slow = S.metric_block(trace=tr, run_id="r", start_step=0, series={"acc": np.ones(3)}, step_us=10_000_000)
    fast = S.metric_block(trace=tr, run_id="r", start_step=0, series={"loss": np.ones(300)}, step_us=1000)
    out = pipe.process_record(_record([], [slow, fast]), key=None, topic="t", partition=0, offset=0, traces={}, now=0)
    raw_ids = [a["_id"] for a in out.actions if "events" in a["_index"]]
    assert raw_ids == [f"{slow['block_id']}:{i}:acc" for i in range(3)]
    _, actions = pipe.series(out.chunks[0][1], {})
    rollups = [a for a in actions if a["_id"].startswith("rollup:")]
    assert sum(a["_source"]["aitrace"]["metric"]["count"] for a in rollups) == 300


def test_ground_truth_is_indexed_joined_to_its_prediction() -> None:
    pipe = Pipeline(WorkerOptions())
    table: dict = {}
    label = S.event(S.ground_truth("q1", "m", "cat"), trace=S.trace_id())
    out = pipe.process_record(_record([label]), key=None, topic="t", partition=0, offset=0, traces={}, now=0)
    assert out.actions == [] or all("traces" in a["_index"] for a in out.actions)  # not indexed before the join
    _, early = pipe.series(out.chunks[0][1], table)
    assert early[0]["_id"] == label["event_id"] and "prediction" not in early[0]["_source"]["aitrace"]["ground_truth"]
    pred = S.event(S.inference("q1", "m", 5.0, prediction="dog"), trace=S.trace_id())
    out = pipe.process_record(_record([pred]), key=None, topic="t", partition=1, offset=0, traces={}, now=0)
    _, later = pipe.series(out.chunks[0][1], table)
    joined = [a for a in later if a["_id"] == label["event_id"]]
    assert joined[0]["_source"]["aitrace"]["ground_truth"]["prediction"] == "dog"
    assert joined[0]["_source"]["aitrace"]["ground_truth"]["correct"] is False


def test_staged_writes_reach_the_table_only_on_commit() -> None:
    table = {"a": 1, "b": 2}
    staged = Staged(table)
    staged["a"] = 10
    staged["c"] = 3
    del staged["b"]
    assert staged.get("a") == 10 and "b" not in staged and sorted(staged) == ["a", "c"]
    assert table == {"a": 1, "b": 2}
    with pytest.raises(KeyError):
        del staged["zz"]
    staged.commit()
    assert table == {"a": 10, "c": 3}


def test_tick_closes_idle_traces_of_its_partition_only() -> None:
    pipe = Pipeline(WorkerOptions(idle_timeout_s=5, grace_s=10))
    traces: dict = {}
    t0, t1 = S.trace_id(), S.trace_id()
    pipe.process_record(
        _record([S.event(S.log("info", "a"), trace=t0)]),
        key=None,
        topic="t",
        partition=0,
        offset=0,
        traces=traces,
        now=100.0,
    )
    pipe.process_record(
        _record([S.event(S.log("info", "b"), trace=t1)]),
        key=None,
        topic="t",
        partition=1,
        offset=0,
        traces=traces,
        now=100.0,
    )
    assert pipe.tick(0, traces, now=104.0) == []
    [closed] = pipe.tick(0, traces, now=106.0)
    assert closed["_id"] == t0 and closed["_source"]["aitrace"]["trace"]["complete"] is False
    assert pipe.tick(0, traces, now=110.0) == [] and t0 in traces
    pipe.tick(0, traces, now=117.0)
    assert t0 not in traces and t1 in traces


def test_tick_on_a_table_restored_with_keys_holding_none() -> None:
    """Evicted traces' changelog records used to be the JSON b"null", not a Kafka null: a restore reads
    such a key back as holding None, and the tick's index rebuild crashed on it."""
    pipe = Pipeline(WorkerOptions(idle_timeout_s=5, grace_s=10))
    traces: dict = {"evicted-long-ago": None}
    t0 = S.trace_id()
    record = _record([S.event(S.log("info", "a"), trace=t0)])
    pipe.process_record(record, key=None, topic="t", partition=0, offset=0, traces=traces, now=100.0)
    pipe.forget_partitions({0})  # as after a restart: the index is rebuilt from the table
    [closed] = pipe.tick(0, traces, now=106.0)
    assert closed["_id"] == t0


# ---------------------------------------------------------------- options and CLI


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments("worker", parser)
    return parser.parse_args(argv)


def test_worker_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITRACE_WORKER_PARTITIONS", "8")
    monkeypatch.setenv("AITRACE_WORKER_INDEX", "false")
    settings, options = options_from_args(_parse(["--kafka", "127.0.0.1:1", "--idle-timeout-s", "7"]))
    assert settings.kafka.kafka_bootstrap == "127.0.0.1:1"
    assert (options.partitions, options.index, options.idle_timeout_s) == (8, False, 7.0)
    _, options = options_from_args(_parse(["--partitions", "2", "--index"]))
    assert (options.partitions, options.index) == (2, True)


def test_worker_rejects_bad_settings(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert worker_run("worker", _parse(["--partitions", "0"])) == 2
    assert "partitions" in capsys.readouterr().err
    monkeypatch.setenv("AITRACE_WORKER_PARTITIONS", "many")
    assert worker_run("worker", _parse([])) == 2
    assert "AITRACE_WORKER_PARTITIONS" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--anomaly-threshold", "5"),  # flagged nothing
        ("--anomaly-threshold", "0"),
        ("--web-port", "99999"),  # a Faust traceback
        ("--stats-interval-s", "-1"),
        ("--tick-interval-s", "nan"),  # NaN passed every comparison
        ("--idle-timeout-s", "inf"),
        ("--drift-window", "1"),  # every chunk with features failed in its drift test
    ],
)
def test_worker_refuses_options_out_of_range(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert worker_run("worker", _parse([flag, value])) == 2
    err = capsys.readouterr().err
    variable = "AITRACE_WORKER_" + flag[2:].replace("-", "_").upper()
    assert err.startswith(f"aitrace worker: {flag} (or {variable}) must be") and err.count("\n") == 1, err


def test_an_option_out_of_range_from_the_environment_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docker-compose sets the worker's options as variables: the message named only a flag nobody typed."""
    monkeypatch.setenv("AITRACE_WORKER_ANOMALY_THRESHOLD", "5")
    assert worker_run("worker", _parse([])) == 2
    assert "AITRACE_WORKER_ANOMALY_THRESHOLD" in capsys.readouterr().err


def test_prepare_topics_reports_an_unreachable_broker(tmp_path: object) -> None:
    from aitrace.infra.service_probes import free_port
    from aitrace.processors.topics import prepare_topics
    from confluent_kafka import KafkaException

    settings, options = options_from_args(_parse(["--kafka", f"127.0.0.1:{free_port()}"]))
    with pytest.raises(KafkaException):
        prepare_topics(settings.kafka, options, timeout=2.0)


def test_chunk_codec_round_trips_nested_arrays_and_rejects_foreign_bytes() -> None:
    from aitrace.processors.chunk_wire import pack_chunk, unpack_chunk

    chunk = {
        "kind": "run",
        "series": {"|loss": {"steps": np.arange(5), "values": np.array([1.0, np.nan, np.inf, -2.5, 0.0])}},
        "labels": [{"payload": ["aitrace.GroundTruth", {"label": "x"}]}],
        "none": None,
    }
    back = unpack_chunk(pack_chunk(chunk))
    np.testing.assert_array_equal(back["series"]["|loss"]["values"], chunk["series"]["|loss"]["values"])
    assert back["series"]["|loss"]["steps"].dtype == np.int64 and back["labels"] == chunk["labels"]
    back["series"]["|loss"]["values"][0] = 7.0  # writable copies
    with pytest.raises(ValueError):
        unpack_chunk(b'{"kind": "run"}')


def test_fast_metric_decoder_matches_fastavro() -> None:
    from aitrace.processors.fastblock import decode_metric_batch
    from aitrace.schemas.codec import AvroDeserializer

    rng = np.random.default_rng(7)
    blocks = [
        S.metric_block(
            trace=S.trace_id(), run_id=None, start_step=-3, series={"loss": rng.normal(size=300), "lr": [np.nan] * 300}
        ),
        S.metric_block(trace=S.trace_id(), run_id="r", start_step=2**40, series={"acc": [0.5] * 3}, split="val"),
    ]
    blocks[0]["epochs"] = list(range(300))
    blocks[0]["parent_span_id"] = S.span_id()
    blocks[0]["pid"] = -5
    data = _record([], blocks)
    fast = decode_metric_batch(data, 10)
    slow = AvroDeserializer().decode(data)[1]
    assert fast is not None and fast["batch_id"] == slow["batch_id"]
    assert fast["metric_blocks"] == [MetricBlock.from_record(s) for s in slow["metric_blocks"]]
    assert list(fast["metric_blocks"][0].series) == ["loss", "lr"] and fast["metric_blocks"][0].epochs.size == 300
    # batches with events, truncated or trailing bytes: not for the fast path
    assert decode_metric_batch(_record([_ok_event()], blocks), 10) is None
    assert decode_metric_batch(data[:-3], 10) is None
    assert decode_metric_batch(data + b"\x00", 10) is None


class _MemoryRegistry(SchemaRegistryClient):
    """A registry in memory: ids in registration order, no HTTP."""

    def __init__(self) -> None:
        super().__init__("memory://")
        self.texts: list[str] = []

    def register(self, subject: str, schema_text: str) -> int:
        if schema_text not in self.texts:
            self.texts.append(schema_text)
        return self.texts.index(schema_text) + 1

    def schema(self, schema_id: int) -> str:
        return self.texts[schema_id - 1]


def test_confluent_framed_metric_batches_take_the_fast_path_like_single_object_ones() -> None:
    from aitrace.processors.fastblock import decode_metric_batch
    from aitrace.schemas.codec import AvroDeserializer, SerializationContext

    rng = np.random.default_rng(3)
    block = S.metric_block(trace=S.trace_id(), run_id="r", start_step=5, series={"loss": rng.normal(size=50)})
    block["epochs"] = [1] * 50
    batch = S.batch([], [block])
    registry = _MemoryRegistry()
    single = AvroSerializer("aitrace.Batch")(batch)
    confluent = AvroSerializer("aitrace.Batch", registry=registry)(batch, SerializationContext("t"))
    assert single[:2] == b"\xc3\x01" and confluent[:1] == b"\x00" and single[10:] == confluent[5:]
    decoder = RecordDecoder(AvroDeserializer(registry))
    a, b = decoder.decode(single), decoder.decode(confluent)
    assert (
        (a.schema, a.batch_id, a.event_count)
        == (b.schema, b.batch_id, b.event_count)
        == ("aitrace.Batch", batch["batch_id"], 50)
    )
    # both framings took the array fast path
    assert decode_metric_batch(single, 10) is not None and decode_metric_batch(confluent, 5) is not None
    assert a.metric_blocks == b.metric_blocks == [MetricBlock.from_record(block)]
    # and match what fastavro makes of the same bytes
    assert b.metric_blocks == [
        MetricBlock.from_record(r) for r in AvroDeserializer(registry)(confluent)["metric_blocks"]
    ]

    # the Batch schema registered with other text but the same canonical form (a doc): still fast
    import json

    from aitrace.schemas.codec import compiled

    text = json.loads(compiled("aitrace.Batch").text)
    text["doc"] = "registered by another producer"
    other_id = registry.register("t-value", json.dumps(text))
    c = decoder.decode(b"\x00" + struct.pack(">I", other_id) + confluent[5:])
    assert c.metric_blocks == a.metric_blocks

    # an id of another schema: fastavro decides (here: an Event, a batch of one)
    event = _ok_event()
    framed = AvroSerializer("aitrace.Event", registry=registry)(event, SerializationContext("t"))
    assert decoder.decode(framed).events[0]["event_id"] == event["event_id"]
    # a registry-framed record with no registry configured is still dead-lettered as before
    with pytest.raises(DecodeError) as exc:
        RecordDecoder().decode(confluent)
    assert exc.value.reason == "no-registry"


def test_a_block_with_two_series_of_one_name_is_rejected_on_either_path() -> None:
    from aitrace.processors.fastblock import decode_metric_batch

    twice = S.metric_block(trace=S.trace_id(), run_id="r", start_step=0, series={"loss": np.ones(5)})
    twice["series"].append({"name": "loss", "values": [2.0] * 5})
    good = S.metric_block(trace=S.trace_id(), run_id="r", start_step=0, series={"loss": np.ones(5)})
    data = _record([], [twice, good])
    assert decode_metric_batch(data, 10) is None  # the fast path leaves it to fastavro's
    decoded = RecordDecoder().decode(data)
    assert [b.block_id for b in decoded.metric_blocks] == [good["block_id"]]
    assert [(r.where, r.index, r.reason) for r in decoded.rejected] == [("block", 0, "bad-shape")]
    assert "appears twice" in decoded.rejected[0].detail


def test_fast_path_records_validate_and_process_like_fastavro_ones() -> None:
    tr = S.trace_id()
    block = S.metric_block(trace=tr, run_id="r", start_step=0, series={"loss": np.ones(20)})
    decoded = RecordDecoder().decode(_record([], [block]))
    assert decoded.metric_blocks[0].times.dtype == np.int64 and decoded.event_count == 20
    bad = S.metric_block(trace="0" * 32, run_id="r", start_step=0, series={"loss": np.ones(20)})
    with pytest.raises(InvalidRecord):
        RecordDecoder().decode(_record([], [bad]))
    out = Pipeline(WorkerOptions()).process_record(
        _record([], [block]), key=None, topic="t", partition=0, offset=0, traces={}, now=0
    )
    assert out.events == 20 and len(out.chunks) == 1
