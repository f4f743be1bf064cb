"""Fuzz the record decoders: whatever bytes arrive, they reject with their own error, quickly and cheaply.

``RecordDecoder.decode`` (fastavro or the metric fast path) and ``fastblock.decode_metric_batch``
get random bytes, truncations and bit flips of valid records, and valid records whose array
counts were replaced by absurd ones. Allowed outcomes: a :class:`Decoded`, a
:class:`DecodeError` (the DLQ path), or None from the fast path. Anything else would escape
into the worker. Allocation is bounded with tracemalloc: a bit-flipped count once made the fast
path ask for 8 TiB.
"""

from __future__ import annotations

import contextlib
import os
import time
import tracemalloc

import numpy as np
import pytest
import synth as S
from aitrace.processors.decode import Decoded, RecordDecoder
from aitrace.processors.fastblock import decode_metric_batch
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline
from aitrace.schemas.codec import AvroSerializer, DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FULL = os.environ.get("AITRACE_FULL_TESTS") == "1"
EXAMPLES = 2000 if FULL else 200
# far above what decoding a few hundred bytes needs, far below anything absurd
MAX_PEAK_BYTES = 16 * 1024 * 1024

DECODER = RecordDecoder()


def _metric_record() -> bytes:
    tr = S.trace_id()
    block = S.metric_block(
        trace=tr, run_id="fuzz", start_step=0, series={"loss": np.linspace(1, 0, 6), "lr": np.ones(6)}
    )
    return S.encode(S.batch([], [block]))


def _event_record() -> bytes:
    tr = S.trace_id()
    return S.encode(S.batch([S.event(S.log("info", "hello"), trace=tr), S.event(S.span("s", S.now_us(), 5), trace=tr)]))


def _log_block_record() -> bytes:
    """A log block as the producer writes it: tables, indexes, an attribute column with a gap, an error."""
    block = {
        "block_id": "lb", "trace_id": S.trace_id(), "service": "fuzz", "service_version": None,
        "environment": None, "host": "h", "pid": 1, "run_id": None, "sampled": True, "labels": {},
        "time": [S.now_us() + i for i in range(3)], "span_id": [S.span_id()], "parent_span_id": [],
        "span_index": [0, 0, 0], "level": ["info", "error"], "level_index": [0, 0, 1],
        "message": ["a", "b"], "message_index": [0, 1, 1], "logger": ["app"], "logger_index": [0, -1, 0],
        "attributes": {"n": ["1", None, "3"]}, "error_type": [None, None, "E"], "error_message": [None, None, "x"],
        "stack_trace": [None, None, "tb"],
    }  # fmt: skip
    return AvroSerializer("aitrace.LogBlock")(block)


def _inference_block_record() -> bytes:
    """An inference block as the producer writes it: tables with nulls, feature columns with gaps and a NaN."""
    block = {
        "block_id": "ib", "trace_id": S.trace_id(), "service": "fuzz", "service_version": None,
        "environment": None, "host": "h", "pid": 1, "run_id": None, "sampled": True, "labels": {},
        "time": [S.now_us() + i for i in range(3)], "span_id": [S.span_id()], "parent_span_id": [],
        "span_index": [0, 0, 0], "request_id": ["r0", "r1", "r2"], "latency_ms": [1.0, 2.5, 3.0],
        "model_name": ["m"], "model_name_index": [0, 0, 0], "status": ["ok", "error"], "status_index": [0, 0, 1],
        "model_version": ["v1"], "model_version_index": [0, -1, 0], "prediction": ["1", "0"],
        "prediction_index": [0, 1, -1], "feature_version": [], "feature_version_index": [],
        "confidence": [0.9, None, 0.1], "error": [None, None, "boom"], "inputs_summary": [],
        "features": {"x": [1.0, None, float("nan")]}, "categorical_features": {"c": ["a", "b", None]},
    }  # fmt: skip
    return AvroSerializer("aitrace.InferenceBlock")(block)


def _span_block_record() -> bytes:
    """A span block as the producer writes it: a span with a parent, an error span, an attribute with a gap."""
    block = {
        "block_id": "sb", "trace_id": S.trace_id(), "service": "fuzz", "service_version": None,
        "environment": None, "host": "h", "pid": 1, "run_id": None, "sampled": True, "labels": {},
        "time": [S.now_us() + i for i in range(2)], "span_id": [S.span_id(), S.span_id()],
        "parent_span_id": [None, S.span_id()], "span_index": [0, 1], "start_time": [S.now_us(), S.now_us()],
        "duration_us": [5, 7], "name": ["a", "b"], "name_index": [0, 1], "kind": ["internal"], "kind_index": [0, 0],
        "status": ["ok", "error"], "status_index": [0, 1], "error_type": [None, "E"], "error_message": [None, "x"],
        "attributes": {"n": ["1", None]},
    }  # fmt: skip
    return AvroSerializer("aitrace.SpanBlock")(block)


def _ground_truth_block_record() -> bytes:
    block = {"block_id": "gb", "trace_id": S.trace_id(), "service": "fuzz", "service_version": None,
             "environment": None, "host": "h", "pid": 1, "run_id": None, "sampled": True, "labels": {},
             "time": [S.now_us(), S.now_us()], "span_id": [S.span_id()], "parent_span_id": [], "span_index": [0, 0],
             "request_id": ["r0", "r1"], "model_name": ["m"], "model_name_index": [0, 0], "label": ["1", "0"],
             "label_index": [0, 1]}  # fmt: skip
    return AvroSerializer("aitrace.GroundTruthBlock")(block)


SEEDS = [_metric_record(), _event_record(), _log_block_record(), _inference_block_record(), _span_block_record(),
         _ground_truth_block_record()]  # fmt: skip


def _warm_up() -> None:
    """Run every decode path once untraced: what the first call builds (parsed schemas, compiled
    readers: 21 MB for a header-only record) is set-up, not the allocation a hostile record asks for."""
    for data in (*SEEDS, SEEDS[0][:10]):
        with contextlib.suppress(DecodeError):
            DECODER.decode(data)
        decode_metric_batch(data, 10)


_warm_up()


def _decode_checked(data: bytes) -> None:
    """Decode ``data``: only a Decoded or a DecodeError, under MAX_PEAK_BYTES (a hang: pytest's timeout)."""
    tracemalloc.start()
    try:
        out = DECODER.decode(data)
        assert isinstance(out, Decoded)
    except DecodeError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"decoding {len(data)} bytes peaked at {peak} bytes"
    fast = decode_metric_batch(data, 10) if len(data) >= 10 else None
    assert fast is None or isinstance(fast, dict)


def _zigzag(n: int) -> bytes:
    """Avro long encoding of ``n``."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _decode_checked(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bodies_behind_a_valid_header(body: bytes) -> None:
    # the header of the Batch schema sends them down the fast path first, then fastavro
    _decode_checked(SEEDS[0][:10] + body)


@FUZZ
@given(st.sampled_from(SEEDS), st.data())
def test_truncations(seed: bytes, data: st.DataObject) -> None:
    _decode_checked(seed[: data.draw(st.integers(0, len(seed)))])


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(st.integers(0, 10_000), min_size=1, max_size=8))
def test_bit_flips(seed: bytes, positions: list[int]) -> None:
    buf = bytearray(seed)
    for p in positions:
        bit = p % (len(buf) * 8)
        if bit >= 80:  # keep the header: the body is what gets exercised
            buf[bit // 8] ^= 1 << (bit % 8)
    _decode_checked(bytes(buf))


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.integers(10, 400),
    st.one_of(st.integers(2**22, 2**62), st.integers(-(2**62), -(2**22)), st.just(2**40)),
)
def test_absurd_counts_spliced_in(seed: bytes, at: int, count: int) -> None:
    # an absurd count (as a varint) replacing a byte anywhere in the body: array and string sizes
    at = min(at, len(seed) - 1)
    _decode_checked(seed[:at] + _zigzag(count) + seed[at + 1 :])


def test_fast_path_rejects_a_terabyte_count_without_allocating() -> None:
    seed = SEEDS[0]
    assert decode_metric_batch(seed, 10) is not None  # the seed itself takes the fast path
    # the fast path reads batch_id, events count, then the blocks count: make the steps count absurd
    # by splicing it at every position; none may allocate more than the bound
    tracemalloc.start()
    try:
        for at in range(10, len(seed)):
            decode_metric_batch(seed[:at] + _zigzag(2**40) + seed[at + 1 :], 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES


@pytest.mark.parametrize("value", [None, b"", b"\x00" * 5_000_000, os.urandom(2_000_000)])
def test_pipeline_dead_letters_null_empty_and_huge(value: bytes | None) -> None:
    pipe = Pipeline(WorkerOptions(index=False))
    out = pipe.process_record(value, key=None, topic="t", partition=1, offset=9, traces={}, now=time.time())
    [letter] = out.dead_letters
    assert letter.value is value and (letter.topic, letter.partition, letter.offset) == ("t", 1, 9)
    assert letter.key is not None or letter.value is not None  # Kafka needs one of the two
    assert letter.reason
