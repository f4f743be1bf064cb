"""W3C traceparent parsing and formatting, context propagation, OpenTelemetry pick-up."""

from __future__ import annotations

import asyncio
import re
import sys
import time

import aitrace
import pytest
from aitrace.producers import tracecontext as tc

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_parse_and_format_round_trip() -> None:
    ctx = tc.parse_traceparent(VALID)
    assert ctx == tc.SpanContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", None, remote=True)
    assert tc.format_traceparent(ctx) == VALID
    assert tc.format_traceparent(ctx, sampled=False).endswith("-00")
    assert tc.parse_traceparent(VALID.encode()) == ctx
    assert tc.parse_traceparent(VALID.upper()) == ctx  # tolerant of case


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # 31 hex trace id
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ],
)
def test_invalid_traceparents_are_rejected(bad: str | None) -> None:
    assert tc.parse_traceparent(bad) is None


def test_header_lookup_in_dicts_and_kafka_header_lists() -> None:
    assert tc.header_value({"TraceParent": VALID}) == VALID
    assert tc.header_value([("traceparent", VALID.encode())]) == VALID.encode()
    assert tc.header_value({"other": "x"}) is None
    assert tc.header_value(None) is None


def test_ids_are_well_formed_and_distinct() -> None:
    traces = {tc.new_trace_id() for _ in range(1000)}
    spans = {tc.new_span_id() for _ in range(1000)}
    assert len(traces) == 1000 and len(spans) == 1000
    assert all(len(t) == 32 and int(t, 16) for t in traces)
    assert all(len(s) == 16 and int(s, 16) for s in spans)
    assert tc.trace_id_for("run-7") == tc.trace_id_for("run-7") != tc.trace_id_for("run-8")


def test_a_new_root_has_two_well_formed_non_zero_ids_even_when_the_random_bits_are_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    roots = [tc.new_root() for _ in range(1000)]
    assert len({r.trace_id for r in roots}) == 1000 and len({r.span_id for r in roots}) == 1000
    assert all(len(r.trace_id) == 32 and len(r.span_id) == 16 and r.parent_span_id is None for r in roots)
    monkeypatch.setattr(tc._rng, "getrandbits", lambda bits: 0)
    zero = tc.new_root()
    assert int(zero.trace_id, 16) and int(zero.span_id, 16)
    assert tc.parse_traceparent(tc.format_traceparent(zero)) == zero._replace(remote=True)


def test_pooled_span_ids_are_non_zero_even_when_the_random_bits_are_zero_and_dropped_on_reseed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tc.reseed()  # an empty pool: the next id draws a fresh one
    monkeypatch.setattr(tc._rng, "getrandbits", lambda bits: 0)
    assert tc.new_span_id() == "0000000000000001"
    monkeypatch.undo()
    pooled = tc.new_span_id()
    tc.reseed()  # as in a forked child: what the parent had pooled is never handed out there
    fresh = [tc.new_span_id() for _ in range(3 * tc._POOL)]
    assert "0000000000000001" not in fresh and pooled not in fresh and len(set(fresh)) == len(fresh)


def test_a_forked_child_does_not_repeat_its_parents_span_ids() -> None:
    import os

    aitrace.Client  # noqa: B018 - the client module registers the reseed after fork
    tc.new_span_id()  # the parent's pool is filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, "".join(tc.new_span_id() for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 1024).decode()
    os.waitpid(pid, 0)
    parent = [tc.new_span_id() for _ in range(8)]
    assert len(child) == 128 and not {child[i : i + 16] for i in range(0, 128, 16)} & set(parent)


def test_push_pop_and_isolation_between_asyncio_tasks() -> None:
    a = tc.SpanContext("a" * 32, "1" * 16)
    b = tc.SpanContext("b" * 32, "2" * 16)

    async def task(ctx: tc.SpanContext) -> tc.SpanContext | None:
        token = tc.push(ctx)
        await asyncio.sleep(0.01)
        seen = tc.current()
        tc.pop(token)
        return seen

    async def main() -> list[tc.SpanContext | None]:
        return list(await asyncio.gather(task(a), task(b)))

    assert asyncio.run(main()) == [a, b]
    assert tc.current() is None


def test_current_opentelemetry_span_is_picked_up() -> None:
    trace = pytest.importorskip("opentelemetry.trace")
    span_ctx = trace.SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=trace.TraceFlags(1),
    )
    with trace.use_span(trace.NonRecordingSpan(span_ctx)):
        ctx = tc.current()
    assert ctx == tc.SpanContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", None, False)
    assert tc.current() is None  # no OTel span current any more


def test_without_opentelemetry_loaded_nothing_is_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "opentelemetry.trace", raising=False)
    assert tc.otel_current() is None


def test_a_broken_opentelemetry_does_not_break_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        @staticmethod
        def get_current_span() -> None:
            raise RuntimeError("misconfigured SDK")

    monkeypatch.setitem(sys.modules, "opentelemetry.trace", Broken)
    assert tc.otel_current() is None


def test_trace_context_crosses_a_real_kafka_hop_in_message_headers(kafka, tmp_path, unique_name) -> None:
    """A producer service injects into Kafka headers; the consumer service's spans join its trace."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = unique_name("orders")
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    common = {"kafka_bootstrap": kafka.bootstrap, "topic_prefix": unique_name("p")}
    upstream = aitrace.init(service="checkout", spool_dir=str(tmp_path / "a"), **common)
    downstream = aitrace.init(service="fraud-scorer", spool_dir=str(tmp_path / "b"), **common)
    try:
        producer = Producer({"bootstrap.servers": kafka.bootstrap})
        with upstream.span("publish order", kind="producer") as span:
            headers = upstream.inject([("content-type", b"application/json")])
            producer.produce(topic, b'{"order": 1}', headers=headers)
            assert producer.flush(30) == 0
        consumer = Consumer(
            {"bootstrap.servers": kafka.bootstrap, "group.id": unique_name("g"), "fetch.queue.backoff.ms": 1}
        )
        consumer.assign([TopicPartition(topic, 0, 0)])
        message = None
        deadline = time.monotonic() + 30
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(1.0)
        consumer.close()
        assert message is not None and message.error() is None
        assert [k for k, _ in message.headers()] == ["content-type", "traceparent"]
        with downstream.extract(message.headers()) as remote, downstream.span("score order", kind="consumer") as child:
            assert remote is not None and remote.trace_id == span.trace_id
            assert child.trace_id == span.trace_id and child.context.parent_span_id == span.span_id
    finally:
        upstream.close(timeout=5)
        downstream.close(timeout=5)


def test_inject_into_kafka_headers_replaces_a_stale_traceparent() -> None:
    client = aitrace.init(service="svc", kafka_bootstrap="127.0.0.1:9")
    try:
        headers = client.inject([("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"), ("k", b"v")])
        assert [k for k, _ in headers] == ["k", "traceparent"] and b"1" * 32 not in headers[1][1]
    finally:
        client.close(timeout=1)


def test_pooled_span_ids_are_the_draws_hex_digits_sixteen_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    tc.reseed()
    draw = int("".join(f"{i:016x}" for i in range(1, tc._POOL + 1)), 16)  # id i is i in 16 hex digits
    monkeypatch.setattr(tc._rng, "getrandbits", lambda bits: draw)
    taken = [tc.new_span_id() for _ in range(tc._POOL)]
    assert sorted(taken) == [f"{i:016x}" for i in range(1, tc._POOL + 1)]
    monkeypatch.undo()
    tc.reseed()
    assert all(re.fullmatch("[0-9a-f]{16}", tc.new_span_id()) for _ in range(3 * tc._POOL))
