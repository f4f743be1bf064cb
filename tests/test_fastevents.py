"""The event fast path reads what fastavro reads, or steps aside (None) and lets fastavro decide.

``fastevents.decode_event_batch`` must give the same object as fastavro, field for field, in
the same key order, payloads as ``(record name, dict)``: every payload kind of the schema,
optional fields set and unset, maps with and without entries, non-ASCII text, NaN. For any
bytes (bit flips, truncations, random bodies) it returns either fastavro's object or None, and
None whenever fastavro fails, so a malformed record still reaches the DLQ with fastavro's reason.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

import fastavro
import pytest
import synth as S
from aitrace.processors.decode import InvalidRecord, RecordDecoder
from aitrace.processors.fastevents import Layout, decode_event_batch, layout
from aitrace.schemas.codec import compiled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_schemas import PAYLOADS

EXAMPLES = 2000 if os.environ.get("AITRACE_FULL_TESTS") == "1" else 300
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _fastavro(data: bytes) -> Any:
    schema = compiled("aitrace.Batch").parsed
    return fastavro.schemaless_reader(io.BytesIO(data[10:]), schema, None, return_record_name=True)


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN, types and dict key order included."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _every_kind() -> bytes:
    tr = S.trace_id()
    events = [S.event((name, payload), trace=tr) for name, payload in PAYLOADS.items()]
    full = S.event(S.log("error", "naïve ünïcode ✓"), trace=tr, parent=S.span_id(), run_id="run-1")
    full["labels"] = {"team": "ml", "zone": "eu-1"}
    full["service_version"] = "1.2"
    full["pid"] = -(2**31)
    events.append(full)
    nan = S.event(S.inference("q1", "m", float("nan"), features={"a": float("inf"), "b": -0.0}), trace=tr)
    nan["payload"][1].update(confidence=None, prediction=None, model_version=None)
    events.append(nan)
    return S.encode(S.batch(events))


def _fast_kinds() -> bytes:
    tr = S.trace_id()
    t0 = S.now_us()
    events = [S.event(S.inference(f"q{i}", "m", 3.5, features={"f0": 1.0, "f1": float(i)}), trace=tr) for i in range(5)]
    events += [S.event(S.log("info", "ok"), trace=tr), S.event(S.span("root", t0, 9), trace=tr)]
    events += [S.event(S.ground_truth("q1", "m", "1"), trace=tr)]
    return S.encode(S.batch(events))


SEEDS = [_fast_kinds(), _every_kind()]


def test_the_layout_reads_the_kinds_of_the_hot_path() -> None:
    names = [n for n, b in zip(layout().names, layout().builders, strict=True) if b is not None]
    for kind in ("aitrace.InferenceRecord", "aitrace.Span", "aitrace.LogRecord", "aitrace.GroundTruth"):
        assert kind in names


def test_event_batches_decode_as_fastavro_decodes_them() -> None:
    data = SEEDS[0]
    fast = decode_event_batch(data, 10)
    assert fast is not None
    assert same(fast, _fastavro(data))


def test_a_payload_it_cannot_read_sends_the_batch_to_fastavro() -> None:
    # DataStats carries arrays of records: not for the walk, so the whole batch goes to fastavro
    assert decode_event_batch(SEEDS[1], 10) is None
    decoded = RecordDecoder().decode(SEEDS[1])
    dropped = {r.index for r in decoded.rejected}  # the NaN latency, the worker's own outputs (Trace, Alert)
    outputs = {i for i, name in enumerate(PAYLOADS) if name in ("aitrace.Trace", "aitrace.Alert")}
    assert dropped == {len(PAYLOADS) + 1, *outputs} and len(outputs) == 2
    assert same(decoded.events, [e for i, e in enumerate(_fastavro(SEEDS[1])["events"]) if i not in dropped])


def test_every_readable_kind_with_optional_fields_set_and_unset() -> None:
    tr = S.trace_id()
    lay = layout()
    readable = {n for n, b in zip(lay.names, lay.builders, strict=True) if b is not None}
    events = [S.event((n, p), trace=tr) for n, p in PAYLOADS.items() if n in readable]
    full = S.event(S.log("error", "naïve ünïcode ✓"), trace=tr, parent=S.span_id(), run_id="run-1")
    full.update(labels={"team": "ml", "zoné": "eu-1 ✓"}, service_version="1.2", pid=-(2**31))
    nan = S.event(S.inference("q1", "m", float("nan"), features={"a": float("inf"), "b": -0.0}), trace=tr)
    nan["payload"][1].update(confidence=None, prediction=None, model_version=None)
    data = S.encode(S.batch([*events, full, nan]))
    fast = decode_event_batch(data, 10)
    assert fast is not None and len(fast["events"]) == len(events) + 2
    assert same(fast, _fastavro(data))


def test_a_batch_with_metric_blocks_is_not_for_this_path() -> None:
    tr = S.trace_id()
    block = S.metric_block(trace=tr, run_id="r", start_step=0, series={"loss": [1.0, 0.5]})
    assert decode_event_batch(S.encode(S.batch([S.event(S.log("info", "x"), trace=tr)], [block])), 10) is None


def _agrees(data: bytes) -> None:
    fast = decode_event_batch(data, 10) if len(data) >= 10 else None
    try:
        slow = _fastavro(data)
    except Exception:  # whatever fastavro raises, the fast path must have stepped aside
        assert fast is None
        return
    assert fast is None or same(fast, slow)


@FUZZ
@given(st.lists(st.integers(0, 100_000), min_size=1, max_size=6))
def test_bit_flips_decode_as_fastavro_or_not_at_all(positions: list[int]) -> None:
    buf = bytearray(SEEDS[0])
    for p in positions:
        bit = 80 + p % ((len(buf) - 10) * 8)  # the body, not the header
        buf[bit // 8] ^= 1 << (bit % 8)
    _agrees(bytes(buf))


@FUZZ
@given(st.data())
def test_truncations_decode_as_fastavro_or_not_at_all(data: st.DataObject) -> None:
    _agrees(SEEDS[0][: data.draw(st.integers(10, len(SEEDS[0])))])


@FUZZ
@given(st.binary(max_size=400))
def test_random_bodies_decode_as_fastavro_or_not_at_all(body: bytes) -> None:
    _agrees(SEEDS[0][:10] + body)


@pytest.mark.parametrize("count", [2**31, 2**60])
def test_an_absurd_event_count_is_refused_before_allocating(count: int) -> None:
    data = SEEDS[0]
    bid_len = data[10] // 2  # batch_id: a short string, so its length is one varint byte
    body = data[: 11 + bid_len] + _zigzag(count) + data[11 + bid_len + 1 :]
    assert decode_event_batch(body, 10) is None


def _zigzag(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b, z = z & 0x7F, z >> 7
        if not z:
            return bytes([*out, b])
        out.append(b | 0x80)


def test_more_events_than_real_ones_fit_go_to_fastavro_with_its_verdict() -> None:
    # events far smaller than valid ids allow: more than the walk makes room for
    tiny = [S.event(S.log("info", ""), trace="t") | {"span_id": "s", "event_id": "e", "service": "v"}] * 200
    data = S.encode(S.batch(tiny))
    assert decode_event_batch(data, 10) is None
    with pytest.raises(InvalidRecord) as err:
        RecordDecoder().decode(data)
    assert err.value.reason == "invalid-trace-id"


def test_an_envelope_the_walk_cannot_read_leaves_every_batch_to_fastavro() -> None:
    event = compiled("aitrace.Batch").parsed["fields"][1]["type"]["items"]
    changed = {**event, "fields": [{"name": "tags", "type": {"type": "array", "items": "string"}}, *event["fields"]]}
    assert not Layout(changed).readable
    assert Layout(event).readable


def test_an_event_array_written_as_a_sized_block_decodes_as_fastavro_decodes_it() -> None:
    """Avro lets a writer give a block a negative count followed by its size in bytes (Java's
    writers do, for skipping); fastavro's writer never does, so the bytes are rewritten here."""
    data = _fast_kinds()
    bid_len = data[10] // 2
    count = data[11 + bid_len] // 2  # 8 events: one varint byte
    assert data[-2:] == b"\x00\x00"  # the events' end, then no metric blocks
    items = data[12 + bid_len : -2]
    sized = data[: 11 + bid_len] + _zigzag(-count) + _zigzag(len(items)) + items + data[-2:]
    fast = decode_event_batch(sized, 10)
    assert fast is not None and same(fast, _fastavro(sized))
    assert same(fast["events"], _fastavro(data)["events"])
    assert decode_event_batch(sized[: 12 + bid_len], 10) is None  # a count without its size: malformed
