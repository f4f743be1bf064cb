"""A series chunk is JSON where its input record was Avro: a control character, 1 byte in Avro, is 6 in JSON, and a
label's or a data stage's field names are not in Avro at all. So an input record well under the worker's limit
(MAX_RECORD_BYTES) made a chunk past it, which the records agent could not send (aiokafka's
MessageSizeTooLargeError): the whole record was quarantined. A chunk too large for one series record now goes in
pieces (Pipeline.chunks), each with a source and a batch id of its own, so a piece is no redelivery of its sibling
while a redelivered record is still skipped piece by piece."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import synth as S
from aiokafka.errors import MessageSizeTooLargeError
from aitrace.processors import pipeline as pipeline_module
from aitrace.processors.chunk_wire import CHUNK_MAX_BYTES, group_chunks, pack_chunk, split_chunks, unpack_chunk
from aitrace.processors.options import MAX_RECORD_BYTES, WorkerOptions
from aitrace.processors.pipeline import Pipeline, Staged
from test_poison import Msg, _runtime
from test_series_copy_on_write import T0, _record

N = 2_800  # events of 1,000 control characters each: a ~3 MB record, a ~17 MB chunk


def _inference_record() -> bytes:
    tr = S.trace_id()
    events = [
        S.event(S.inference("\x01" * 1000 + str(i), "m", 5.0), trace=tr, time_us=T0 + i, event_id=f"{i:020x}")
        for i in range(N)
    ]
    return S.encode(S.batch(events))


def _label_record() -> bytes:
    tr = S.trace_id()
    events = [
        S.event(S.ground_truth(f"q{i}", "m", "\x01" * 1000), trace=tr, time_us=T0 + i, event_id=f"{i:020x}")
        for i in range(N)
    ]
    return S.encode(S.batch(events))


def _apply(pipe: Pipeline, chunks: list[tuple[str, bytes]], table: dict[str, Any]) -> list[Any]:
    """The chunks through the series side as the worker applies a batch of them (groups, else one by one)."""
    view, out = Staged(table), []
    for _, value in group_chunks(chunks):
        parts = split_chunks(value)
        done = pipe.series_group(parts, view) if len(parts) > 1 else None
        out += done if done is not None else [pipe.series(part, view) for part in parts]
    view.commit()
    return out


class SizedTopic:
    """The series topic as aiokafka's producer takes it: a record past max_request_size is refused."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **kw: Any) -> None:
        if len(kw.get("key") or b"") + len(kw["value"]) > MAX_RECORD_BYTES:
            raise MessageSizeTooLargeError(f"{len(kw['value'])} bytes")
        self.sent.append(kw)


def test_a_record_whose_chunk_would_pass_the_limit_is_not_quarantined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, letters = _runtime(tmp_path, monkeypatch)
    topic = SizedTopic()
    monkeypatch.setattr(runtime.outputs, "series_topic", topic)
    value = _inference_record()
    assert len(value) < MAX_RECORD_BYTES // 4
    asyncio.run(runtime.guarded(runtime.on_records, [Msg(value, b"k", runtime.input_names[2], 0, 7)]))
    assert letters == []  # was: [quarantined]
    sizes = [len(kw["key"]) + len(kw["value"]) for kw in topic.sent]
    assert len(sizes) > 1 and max(sizes) <= CHUNK_MAX_BYTES and sum(sizes) > MAX_RECORD_BYTES, sizes


def test_the_pieces_of_a_chunk_are_all_applied_and_a_redelivery_of_them_skipped() -> None:
    pipe, value = Pipeline(WorkerOptions(index=True)), _label_record()
    out = pipe.process_record(value, key=None, topic="t", partition=0, offset=3, traces={}, now=0.0)
    assert out.dead_letters == [] and len(out.chunks) > 1
    assert all(len(key) + len(value) <= CHUNK_MAX_BYTES for key, value in out.chunks)
    series, table = Pipeline(WorkerOptions(index=True)), {}
    labels = [a["_id"] for _, actions in _apply(series, out.chunks, table) for a in actions]
    assert len(labels) == len(set(labels)) == N  # each piece applied: none taken for a redelivery of its sibling
    assert series.counters["duplicates"] == 0
    before = orjson.dumps(table, option=orjson.OPT_SERIALIZE_NUMPY)
    again = _apply(series, out.chunks, table)  # the record delivered again (the worker died before its commit)
    assert [a for _, actions in again for a in actions] == [] and series.counters["duplicates"] == len(out.chunks)
    assert orjson.dumps(table, option=orjson.OPT_SERIALIZE_NUMPY) == before
    retry = pipe.process_record(value, key=None, topic="t", partition=0, offset=9, traces={}, now=0.0)
    # a producer's retry of the batch (same bytes, so the same batch ids, at a later offset): skipped too
    retried = Pipeline(WorkerOptions(index=True))
    _apply(retried, out.chunks, table := {})
    assert [a for _, actions in _apply(retried, retry.chunks, table) for a in actions] == []


def _alerts_and_labels(limit: int, records: list[bytes], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    monkeypatch.setattr(pipeline_module, "CHUNK_MAX_BYTES", limit)
    pipe, traces, chunks = Pipeline(WorkerOptions(index=True)), {}, []
    for offset, value in enumerate(records):
        out = pipe.process_record(value, key=None, topic="t", partition=0, offset=offset, traces=traces, now=0.0)
        assert out.dead_letters == []
        chunks += out.chunks
    series, table = Pipeline(WorkerOptions(index=True)), {}
    applied = _apply(series, chunks, table)
    alerts = sorted((a["alert_id"], a["version"], a["kind"], a["severity"], a["state"]) for a, _ in applied for a in a)
    labels = sorted(
        orjson.dumps(a, option=orjson.OPT_SORT_KEYS)
        for _, actions in applied
        for a in actions
        if a["_source"]["aitrace"]["kind"] == "ground_truth"
    )
    redelivered = _apply(series, chunks, table)
    assert [x for alerts, actions in redelivered for x in alerts + actions] == []
    return [len(value) for _, value in chunks], alerts, labels


def test_ordinary_chunks_in_pieces_give_the_same_alerts_and_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model, a training run and a data stage each (test_series_copy_on_write), whole and in pieces of at most
    12 KB (the series records' limit made small): the same alerts and versions, the same label documents."""
    rng = np.random.default_rng(11)
    records = [_record(i, rng) for i in range(12)]
    whole = _alerts_and_labels(10**9, records, monkeypatch)
    pieces = _alerts_and_labels(12_000, records, monkeypatch)
    assert max(whole[0]) > 12_000 and max(pieces[0]) <= 12_000 and len(pieces[0]) > len(whole[0])
    assert whole[1] and pieces[1] == whole[1]
    assert whole[2] and pieces[2] == whole[2]


def _one_large_label(label: str) -> bytes:
    tr = S.trace_id()
    events = [
        S.event(S.ground_truth("q", "m", label), trace=tr, time_us=T0, event_id="a" * 20),
        S.event(S.ground_truth("q2", "m2", "ok"), trace=tr, time_us=T0, event_id="b" * 20),
        S.event(S.inference("q3", "m3", 5.0), trace=tr, time_us=T0, event_id="c" * 20),
    ]
    return S.encode(S.batch(events))


def test_one_event_whose_json_passes_the_limit_goes_with_its_texts_as_bytes() -> None:
    """A piece of one event's worth cannot be cut: a label of 2.8 million control characters (2.8 MB in the record,
    17 MB as JSON) goes with its texts as UTF-8 bytes, and its document is the label's."""
    label = "\x01" * 2_800_000
    pipe = Pipeline(WorkerOptions(index=True))
    out = pipe.process_record(_one_large_label(label), key=None, topic="t", partition=0, offset=0, traces={}, now=0.0)
    assert out.dead_letters == []
    assert sorted(key for key, _ in out.chunks) == ["model/m", "model/m2", "model/m3"]
    assert all(len(key) + len(value) <= CHUNK_MAX_BYTES for key, value in out.chunks)
    docs = [a for _, actions in _apply(Pipeline(WorkerOptions(index=True)), out.chunks, {}) for a in actions]
    labels = {d["_id"]: d["_source"]["aitrace"]["ground_truth"]["label"] for d in docs}
    assert labels == {"a" * 20: label, "b" * 20: "ok"}


def test_one_event_too_large_even_so_is_dead_lettered_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Too large with its texts as bytes too (here the limit made small): that piece is left out with a dead
    letter; the record's other chunks and documents are kept."""
    monkeypatch.setattr(pipeline_module, "CHUNK_MAX_BYTES", 100_000)
    pipe = Pipeline(WorkerOptions(index=True))
    value = _one_large_label("x" * 200_000)
    out = pipe.process_record(value, key=None, topic="t", partition=0, offset=0, traces={}, now=0.0)
    assert [(lt.reason, lt.offset) for lt in out.dead_letters] == [("series-too-large", 0)]
    assert sorted(key for key, _ in out.chunks) == ["model/m2", "model/m3"]
    assert [a["_id"] for a in out.actions if a["_index"].startswith("aitrace-events")] == ["c" * 20]


NASTY = {
    "kind": "model",
    "plain": "text",
    "ctl": 'a\x00b\x1f"q"\\',
    "features": {"f\x01": np.arange(3.0), "g": np.arange(2, dtype=np.int64), "__nd": np.zeros(1)},
    "requests": [["\x02" * 5, "1", 7, "e", "t"], ["r", None, 8, "e2", "t"]],
    "labels": [{"payload": ("aitrace.GroundTruth", {"label": "\x03", "request_id": "r"}), "time": 1}],
    "markers": [{"__s": [0, 1]}, {"__kv": 1}, {"__d": {"x": "\n"}}, {"__dict": 2}, {"\t__s": 3}],
    "deep": {"a": {"b\x04": {"c": np.ones(2)}}},
}


def test_texts_as_bytes_read_back_as_the_json_chunk_does() -> None:
    json_chunk, raw = pack_chunk(NASTY), pack_chunk(NASTY, raw_texts=True)
    assert raw[:3] == b"AC2" and json_chunk[:3] == b"AC1"
    want, got = unpack_chunk(json_chunk), unpack_chunk(raw)
    dumps = orjson.OPT_SERIALIZE_NUMPY
    assert orjson.dumps(got, option=dumps) == orjson.dumps(want, option=dumps)
    assert got["features"]["f\x01"].dtype == np.float64 and got["features"]["g"].dtype == np.int64
    big = {"kind": "model", "ids": ["\x01" * 1000] * 100}
    assert len(pack_chunk(big, raw_texts=True)) < len(pack_chunk(big)) / 5


def test_texts_as_bytes_that_do_not_lie_back_to_back_are_refused() -> None:
    raw = pack_chunk({"kind": "model", "a": "\x01" * 10, "b": "\x02" * 10}, raw_texts=True)
    (n,) = struct.unpack_from("<I", raw, 3)
    header = raw[7 : 7 + n]
    for bad in (header.replace(b"[10,10]", b"[0,10]"), header.replace(b"[10,10]", b"[10,1000000]")):
        forged = raw[:3] + struct.pack("<I", len(bad)) + bad + raw[7 + n :]
        with pytest.raises(ValueError, match="series chunk text"):
            unpack_chunk(forged)
    with pytest.raises(ValueError, match="its texts end"):
        unpack_chunk(raw[:-5])


def test_a_forged_text_of_a_lone_surrogate_is_refused() -> None:
    """Shown by a review: texts as bytes were read with surrogatepass, so a record written to the series topic
    could carry an entity with a lone surrogate, which no changelog record can hold: the batch's commit failed
    and was retried record by record, sending other entities' alerts twice. orjson refuses one in a JSON chunk."""
    raw = pack_chunk({"kind": "model", "entity": "\x01model/m"}, raw_texts=True)
    forged = raw.replace(b"\x01model/m", b"\xed\xb2\x80model")
    assert len(forged) == len(raw)
    with pytest.raises(ValueError):
        unpack_chunk(forged)


def test_a_part_every_piece_carries_is_not_cut_without_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shown by a review: a field every piece repeats (a model chunk's service, of 2.7 million control
    characters) does not shrink with cutting, so a 2.7 MB record was cut to one event a piece: 200 records of
    540 MB in all. Cutting that does not make the pieces fit stops with a dead letter for that entity's chunk."""
    monkeypatch.setattr(pipeline_module, "CHUNK_MAX_BYTES", 200_000)
    tr = S.trace_id()
    events = [
        S.event(S.inference(f"q{i}", "m", 5.0), trace=tr, time_us=T0 + i, event_id=f"{i:020x}", service="\x01" * 50_000)
        for i in range(200)
    ]
    pipe = Pipeline(WorkerOptions(index=True))
    out = pipe.process_record(S.encode(S.batch(events)), key=None, topic="t", partition=0, offset=0, traces={}, now=0.0)
    assert [lt.reason for lt in out.dead_letters] == ["series-too-large"]
    assert sum(len(value) for _, value in out.chunks) < 1_000_000


def test_a_label_goes_in_the_piece_of_its_prediction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shown by a review: predictions and labels were each cut at their own half, so labels met their
    predictions only through the waiting rooms (5,000 entries): 38 % of 35,000 labels lost their prediction."""
    monkeypatch.setattr(pipeline_module, "CHUNK_MAX_BYTES", 400_000)
    tr, n = S.trace_id(), 12_000
    events = [
        S.event(S.inference(f"q{i}", "m", 5.0), trace=tr, time_us=T0 + i, event_id=f"p{i:019x}") for i in range(n)
    ]
    events += [
        S.event(S.ground_truth(f"q{i}", "m", "1"), trace=tr, time_us=T0 + 2 * n - i, event_id=f"g{i:019x}")
        for i in reversed(range(n))  # the last predictions' labels first
    ]
    pipe = Pipeline(WorkerOptions(index=True))
    out = pipe.process_record(S.encode(S.batch(events)), key=None, topic="t", partition=0, offset=0, traces={}, now=0.0)
    assert out.dead_letters == [] and len(out.chunks) > 1
    docs = [a for _, actions in _apply(Pipeline(WorkerOptions(index=True)), out.chunks, {}) for a in actions]
    truth = [d["_source"]["aitrace"]["ground_truth"] for d in docs if d["_source"]["aitrace"]["kind"] == "ground_truth"]
    assert len(truth) == n and all(t.get("prediction") is not None for t in truth)
