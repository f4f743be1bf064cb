"""Span blocks: a trace's finished spans leave as one ``aitrace.SpanBlock`` and read back as the events
they would have been one at a time (redaction, sampling, splitting, the DLQ)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aitrace
import pytest
from aitrace.producers import events as ev
from aitrace.producers import span_blocks
from aitrace.producers import tracecontext as tc
from aitrace.producers.blocks import new_block
from aitrace.producers.client import default_processors
from aitrace.producers.config import Settings
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler
from aitrace.schemas.codec import AvroSerializer
from test_e2e_processors import Worker, worker_factory
from test_exporter import _ENVELOPE, Running, start
from test_inference_blocks import _same
from test_log_blocks import (
    _TRACE,
    DECODER,
    _PerEvent,
    _sent,
    check_bad_shape,
    check_bit_flips,
    indexed_once,
    sending_client,
    spooled,
)

__all__ = ["start", "worker_factory"]  # the fixtures, imported


def _span(i: int, *, odd: bool, secret: bool) -> tuple[tc.SpanContext, dict[str, Any]]:
    attributes: dict[Any, Any] = {"route": f"/items/{i % 4}", "rows": i} if i % 3 else {}
    if i % 5:
        attributes["auth"] = "healthy" if i % 2 else f"tok-{i}-9f8e7d"  # a status word stays, a secret goes
    if secret:
        attributes["user"] = f"bob{i}@example.com"
    if odd:
        attributes[3] = None
    error = i % 10 == 7
    fields = {"name": ("load", "predict", "save")[i % 3], "kind": "server" if i % 2 else "internal",
              "start_time": 1_700_000_000_000_000 + i, "duration_us": 100 + i, "status": "error" if error else "ok",
              "error_type": "ValueError" if error else None, "error_message": f"bad {i}" if error else None,
              "attributes": attributes}  # fmt: skip
    if odd and i == 4:
        fields["span_id"] = tc.new_span_id()  # as an exporter of another tracer may hand one over
    if odd and i == 6:
        fields["duration_us"] = 106.0  # a float: made an int, as a single event does
    return tc.SpanContext(_TRACE.trace_id, tc.new_span_id(), _TRACE.span_id if i % 2 else None), fields


def _queue(running: Running, n: int, *, odd: bool = False, secret: bool = False) -> None:
    for i in range(n):
        ctx, fields = _span(i, odd=odd, secret=secret)
        running.queue.append((ev.SPAN, fields["start_time"] + 100, ctx, fields, False))
    running.exporter.wake.set()


@pytest.mark.parametrize(("odd", "secret"), [(False, False), (False, True), (True, False)])
def test_a_block_reads_back_as_the_events_sent_one_at_a_time(
    start: Callable[..., Running], odd: bool, secret: bool
) -> None:
    redactor, single_redactor = Redactor(hash_key="k"), Redactor(hash_key="k")
    blocks = start([TraceSampler(1.0), redactor])
    single = start([TraceSampler(1.0), single_redactor, _PerEvent()])
    for running in (blocks, single):
        _queue(running, 40, odd=odd, secret=secret)
    from_blocks, from_events = _sent(blocks), _sent(single)
    assert [DECODER.decode(r.value).schema for r in blocks.transport.records] == ["aitrace.SpanBlock"]
    assert {DECODER.decode(r.value).schema for r in single.transport.records} == {"aitrace.Batch"}
    spans_only = [{**e, "span_id": None} for e in from_blocks], [{**e, "span_id": None} for e in from_events]
    assert _same(*spans_only)  # envelope, payload, redaction alike (span ids are new per queueing)
    assert [e["parent_span_id"] for e in from_blocks] == [e["parent_span_id"] for e in from_events]
    block_id = from_blocks[0]["event_id"].rsplit(":", 1)[0]
    assert [e["event_id"] for e in from_blocks] == [f"{block_id}:{i}" for i in range(40)]
    text = repr(from_blocks)
    assert "tok-" not in text and "'auth': 'healthy'" in text and "example.com" not in text
    assert redactor.counts == single_redactor.counts
    assert blocks.stats["sent"] == single.stats["sent"] == 40


def test_span_ids_are_those_of_the_spans(start: Callable[..., Running]) -> None:
    running = start([Redactor()])
    queued = [_span(i, odd=True, secret=False) for i in range(8)]
    for ctx, fields in queued:
        running.queue.append((ev.SPAN, fields["start_time"], ctx, fields, False))
    events = _sent(running)
    expected = [fields.get("span_id") or ctx.span_id for ctx, fields in queued]
    assert [e["span_id"] for e in events] == expected
    assert [e["parent_span_id"] for e in events] == [ctx.parent_span_id for ctx, _ in queued]


def test_an_unsampled_trace_keeps_its_error_spans_marked_unsampled(start: Callable[..., Running]) -> None:
    running = start([TraceSampler(0.0), Redactor()])
    _queue(running, 40)
    events = _sent(running)
    assert [e["payload"][1]["error_message"] for e in events] == ["bad 7", "bad 17", "bad 27", "bad 37"]
    assert {e["sampled"] for e in events} == {False}
    assert running.stats["sampled_out"] == 36 and running.stats["sent"] == 4


def test_a_block_above_max_record_bytes_is_split_with_unique_ids(start: Callable[..., Running]) -> None:
    running = start(max_record_bytes=2000)
    _queue(running, 200)
    events = _sent(running)
    assert [e["payload"][1]["duration_us"] for e in events] == [100 + i for i in range(200)]
    assert len({e["event_id"] for e in events}) == 200
    assert len(running.transport.records) > 4 and all(len(r.value) <= 2000 for r in running.transport.records)


def test_unbuildable_spans_are_left_out_and_counted() -> None:
    stats: Counter[str] = Counter()
    ctx, good = _span(1, odd=False, secret=False)
    rows = [(ev.SPAN, 1, ctx, good, False), (ev.SPAN, 2, ctx, {**good, "start_time": "soon"}, False),
            (ev.SPAN, 3, ctx, {**good, "name": 5}, False)]  # fmt: skip
    columns = span_blocks.span_columns(rows, stats)
    assert columns["time"] == [1, 3] and stats["rejected_bad_event"] == 1 and columns["name"] == ["predict", "5"]


def test_the_default_chain_reads_blocks() -> None:
    processors, _ = default_processors(Settings(service="s"))
    assert span_blocks.block_chain(processors) is not None
    assert span_blocks.block_chain([*processors, _PerEvent()]) is None


# ---------------------------------------------------------------- the worker side


def _block(**changes: Any) -> dict[str, Any]:
    columns = {
        "time": [1_700_000_000_000_100, 1_700_000_000_000_101], "span_id": [_TRACE.span_id, "00f067aa0ba902b7"],
        "parent_span_id": [], "span_index": [0, 1], "start_time": [1_700_000_000_000_000, 1_700_000_000_000_001],
        "duration_us": [100, 100], "name": ["load"], "name_index": [0, 0], "kind": ["internal"], "kind_index": [0, 0],
        "status": ["ok", "error"], "status_index": [0, 1], "error_type": [None, "E"], "error_message": [],
        "attributes": {"route": ["/a", None]},
    }  # fmt: skip
    block = new_block("b1", _TRACE.trace_id, _ENVELOPE, columns)
    block.update(changes)
    return block


def _encoded(block: dict[str, Any]) -> bytes:
    return AvroSerializer("aitrace.SpanBlock")(block)


def test_a_well_formed_block_decodes_to_its_records() -> None:
    decoded = DECODER.decode(_encoded(_block()))
    assert [e["event_id"] for e in decoded.events] == ["b1:0", "b1:1"] and not decoded.rejected
    first, second = (e["payload"][1] for e in decoded.events)
    assert (first["status"], second["status"], second["error_type"]) == ("ok", "error", "E")
    assert first["attributes"] == {"route": "/a"} and second["attributes"] == {}


@pytest.mark.parametrize(
    "changes",
    [
        {"start_time": [1]},
        {"duration_us": [1, 2, 3]},
        {"name_index": [0, 1]},
        {"kind_index": [0]},
        {"status_index": [0, 2]},
        {"error_message": ["x"]},
        {"attributes": {"a": ["x"]}},
        {"span_index": [0, 2]},
    ],
)
def test_a_block_whose_columns_do_not_line_up_is_rejected_whole(changes: dict[str, Any]) -> None:
    check_bad_shape(_encoded(_block(**changes)))


def test_bit_flips_of_a_block_decode_or_reject_with_a_reason() -> None:
    check_bit_flips(_encoded(_block()), 13)


def test_the_spool_carries_blocks(tmp_path: Path) -> None:
    """A client whose broker is down spools its span block; the bytes read back as every record."""

    def send(client: aitrace.Client) -> None:
        for i in range(30):
            with client.span(f"work {i}"):
                pass

    events, schemas = spooled(tmp_path, send, 30)
    # in whatever order the records failed (the first one alone may spill after the block behind it)
    assert sorted((e["payload"][1]["name"] for e in events), key=lambda n: int(n.split()[1])) == [
        f"work {i}" for i in range(30)
    ]
    assert schemas == {"aitrace.SpanBlock"}


def test_span_blocks_through_the_worker_are_indexed_once_and_a_bad_one_dead_lettered(
    kafka: Any, search: Any, unique_name: Callable[[str], str], worker_factory: Callable[..., Worker],
    tmp_path: Path,
) -> None:  # fmt: skip
    prefix = unique_name("spanblk")
    client = sending_client(kafka, prefix, tmp_path)
    for trace in range(3):
        with client.span(f"request {trace}"):
            for i in range(49):
                with client.span(f"step {i % 5}", i=i):
                    pass
    n = 150  # 49 steps and the request, per trace
    assert client.flush(60)
    client.close(10)
    bad = _encoded(_block(duration_us=[1], block_id=f"bad-{os.urandom(4).hex()}"))
    indexed_once(kafka, search, worker_factory, prefix, ("aitrace.Span", n), ("events.system", bad))
