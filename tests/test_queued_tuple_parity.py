"""The client queues the fields of an inference record and of a batch's statistics as a tuple (events.INFERENCE_FIELDS,
events.DATA_FIELDS), no longer as a dict: the blocks it makes are byte for byte those of the code before (copies of
its column builders below, fed the dicts it queued)."""

from __future__ import annotations

import threading
from collections import Counter, deque
from itertools import repeat
from types import SimpleNamespace
from typing import Any

import pytest
from aitrace.producers import blocks, data_stats_blocks, inference_blocks
from aitrace.producers import events as ev
from aitrace.producers import tracecontext as tc
from aitrace.producers.blocks import Block, block_chain, new_block, status_fields
from aitrace.producers.client import Client
from aitrace.producers.config import Settings
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler
from aitrace.schemas.avro_writer import Doubles
from aitrace.schemas.codec import AvroSerializer
from aitrace.schemas.inference_block import INFERENCE_SHAPE
from test_data_stats_blocks import _features
from test_exporter import _ENVELOPE
from test_inference_blocks import _fields
from test_log_blocks import _CHILD, _TRACE

_ENCODE = AvroSerializer("aitrace.InferenceBlock")
_ENCODE_DATA = AvroSerializer("aitrace.DataStatsBlock")


# -- the column builder before the change (77a834f), verbatim but for names: it read dicts


def _old_columns_of(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    fields = blocks.row_fields(rows)
    try:
        ids = [f["request_id"] for f in fields]
        models = [f["model_name"] for f in fields]
        errors = [f["error"] for f in fields]
        statuses = ["error" if f["status"] == "error" else "ok" for f in fields]
        latencies = [f["latency_ms"] for f in fields]
    except (KeyError, TypeError):
        return _old_slow(rows, stats)
    if set(map(type, ids)) != {str} or set(map(type, models)) != {str} or errors.count(None) != len(errors):
        return _old_slow(rows, stats)
    latency_kinds = set(map(type, latencies))
    if not latency_kinds <= {float, int}:
        return _old_slow(rows, stats)
    columns = _old_columns(rows, fields, ids, models, statuses, stats)
    columns["latency_ms"] = Doubles(latencies if int not in latency_kinds else map(float, latencies))
    features = [f["features"] for f in fields]
    columns["features"], columns["categorical_features"] = inference_blocks._feature_columns(features, stats)
    return columns


def _old_slow(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    kept, payloads = blocks.built(rows, ev.inference_payload, stats)
    ids, models, statuses = ([p[name] for p in payloads] for name in ("request_id", "model_name", "status"))
    columns = _old_columns(kept, payloads, ids, models, statuses, stats)
    columns["latency_ms"] = [p["latency_ms"] for p in payloads]
    columns["features"] = blocks.numeric_columns([p["features"] for p in payloads])
    columns["categorical_features"] = blocks.text_columns([p["categorical_features"] for p in payloads], stats)
    return columns


def _old_columns(rows: list[ev.Queued], fields: list[Any], ids: list[str], models: list[str], statuses: list[str],
                 stats: Counter[str]) -> Block:  # fmt: skip
    columns = {"time": blocks.row_times(rows), **blocks.span_columns(blocks.row_contexts(rows))}
    columns["request_id"] = ids
    columns["model_name"], columns["model_name_index"] = blocks.interned(models)
    columns["status"], columns["status_index"] = blocks.interned(statuses)
    texts = {n: blocks.texts(list(map(dict.get, fields, repeat(n))), stats) for n in inference_blocks._OPTIONAL_TEXTS}
    for name in ("model_version", "prediction", "feature_version"):
        columns[name], columns[f"{name}_index"] = blocks.optional_interned(texts[name])
    columns["error"] = blocks.optional_column(texts["error"])
    columns["inputs_summary"] = blocks.optional_column(texts["inputs_summary"])
    confidence = list(map(dict.get, fields, repeat("confidence")))
    kinds = set(map(type, confidence))
    if kinds == {float}:
        confidence = Doubles(confidence)
    elif not kinds <= {float, type(None)}:
        confidence = [ev.as_float(c) for c in confidence]
    columns["confidence"] = blocks.optional_column(confidence)
    return columns


def _old_queued_fields(request_id: str, model_name: str, latency_ms: float, model_version: str | None = None,
                       status: str = "ok", features: Any = None, prediction: Any = None,
                       confidence: float | None = None, error: Any = None, inputs_summary: str | None = None,
                       feature_version: str | None = None) -> dict[str, Any]:  # fmt: skip
    """What ClientEvents.inference queued before: a dict."""
    return {
        "request_id": request_id, "model_name": model_name, "model_version": model_version, "latency_ms": latency_ms,
        "status": status, "features": dict(features or {}), "prediction": prediction, "confidence": confidence,
        "error": error, "inputs_summary": inputs_summary, "feature_version": feature_version,
    }  # fmt: skip


# -- the client's tuples against the old dicts


def _queued_by_client(calls: list[dict[str, Any]], method: str = "inference") -> list[ev.Queued]:
    exporter: Any = SimpleNamespace(sleeping=False, wake=threading.Event())
    client = Client.__new__(Client)
    client.settings = Settings(service="unit")
    client._queue, client._qmax, client._run_id, client._closed, client._exporter = deque(), 10**6, "r", False, exporter
    client._root = _TRACE
    for i, call in enumerate(calls):
        token = tc.push(_CHILD if i % 2 else _TRACE)
        try:
            getattr(client, method)(**call)
        finally:
            tc.pop(token)
    return list(client._queue)


def _calls(n: int, *, odd: bool, secret: bool) -> list[dict[str, Any]]:
    return [_fields(i, odd=odd, secret=secret) for i in range(n)]


def _encoded(rows: list[ev.Queued], build: Any, redactor: Redactor) -> tuple[bytes, Counter[str]]:
    stats: Counter[str] = Counter()
    block = new_block("b1", _TRACE.trace_id, dict(_ENVELOPE), build(rows, stats))
    chain = block_chain([TraceSampler(1.0), redactor], INFERENCE_SHAPE, status_fields)
    assert chain is not None
    for processor in chain:
        block = processor(block)
    return _ENCODE(block), stats


@pytest.mark.parametrize(("odd", "secret"), [(False, False), (True, False), (False, True), (True, True)])
def test_the_clients_tuples_make_the_blocks_the_old_dicts_made(odd: bool, secret: bool) -> None:
    calls = _calls(40, odd=odd, secret=secret)
    queued = _queued_by_client(calls)
    assert {len(item) for item in queued} == {5 + len(ev.INFERENCE_FIELDS)}  # queued flat (events.Queued)
    unflat = blocks.unflattened(queued)
    old_rows = [(k, t, c, _old_queued_fields(**call), u) for (k, t, c, _, u), call in zip(unflat, calls, strict=True)]
    new_redactor, old_redactor = Redactor(hash_key="k"), Redactor(hash_key="k")
    new, new_stats = _encoded(queued, inference_blocks.inference_columns, new_redactor)
    old, old_stats = _encoded(old_rows, _old_columns_of, old_redactor)
    assert new == old and new_stats == old_stats
    assert new_redactor.counts == old_redactor.counts


def test_a_tuple_reads_back_as_the_dict_the_client_queued_before() -> None:
    call = _fields(3, odd=True, secret=True)
    (queued,) = _queued_by_client([call])
    assert ev.fields_dict(ev.INFERENCE, queued[5:]) == _old_queued_fields(**call)
    assert ev.fields_dict(ev.LOG, {"message": "m"}) == {"message": "m"}  # other kinds: as queued


# -- data statistics: the column builder before the change (77a834f), verbatim but for names


def _old_data_columns_of(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    try:
        return _old_data_columns(rows, blocks.row_fields(rows), stats)
    except data_stats_blocks._BAD:
        pass
    kept, payloads = blocks.built(rows, ev.data_payload, stats)
    good = [i for i, p in enumerate(payloads) if all(None not in f["quantiles"].values() for f in p["features"])]
    stats["rejected_schema"] += len(payloads) - len(good)
    return _old_data_columns([kept[i] for i in good], [payloads[i] for i in good], stats)


def _old_data_columns(rows: list[ev.Queued], fields: list[dict[str, Any]], stats: Counter[str]) -> Block:
    d, get = data_stats_blocks, data_stats_blocks._get
    columns = {"time": blocks.row_times(rows), **blocks.span_columns(blocks.row_contexts(rows))}
    for name in ("stage", "dataset"):
        values = [f[name] for f in fields]
        columns[name], columns[f"{name}_index"] = blocks.interned(d._texts(values, stats))
    columns["batch"] = blocks.optional_column(blocks.texts(get(fields, "batch"), stats))
    columns["row_count"] = d._ints(get(fields, "row_count"))
    columns["rows_dropped"] = d._ints(get(fields, "rows_dropped"))
    columns["label"], columns["label_index"] = blocks.optional_interned(blocks.texts(get(fields, "label"), stats))
    counts = get(fields, "class_counts")
    columns["class_counts"] = d._class_counts([c or {} for c in counts]) if any(counts) else {}
    columns["ingest_delay_ms"] = blocks.optional_column(d._floats(get(fields, "ingest_delay_ms")))
    per_record = [f.get("features") or () for f in fields]
    flat = [f for features in per_record for f in features]
    columns["features"] = d._feature_columns([len(f) for f in per_record], flat, stats)
    return columns


def _old_record_bytes(row: ev.Queued) -> int:
    try:
        features = row[3].get("features") or ()
        numbers = sum(
            len(f.get(k) or ()) for f in features for k in ("quantiles", "histogram_edges", "histogram_counts")
        )
    except (AttributeError, TypeError):
        return 64
    return 64 * (1 + len(features)) + 9 * numbers


def _old_data_fields(stage: str, dataset: str, features: Any = (), row_count: int = 0, class_counts: Any = None,
                     label: str | None = None, batch: Any = None, rows_dropped: int = 0,
                     ingest_delay_ms: float | None = None) -> dict[str, Any]:  # fmt: skip
    """What ClientEvents.data_stats queued before: a dict."""
    return {
        "stage": stage, "dataset": dataset, "features": list(features), "row_count": row_count,
        "class_counts": dict(class_counts or {}), "label": label, "batch": batch, "rows_dropped": rows_dropped,
        "ingest_delay_ms": ingest_delay_ms,
    }  # fmt: skip


def _data_calls(n: int, secret: bool) -> list[dict[str, Any]]:
    return [
        {"stage": ("ingest", "train")[i % 2], "dataset": "tx" if i != 4 else 4, "features": _features(i, secret),
         "row_count": 1000 + i, "class_counts": {"fraud": i, 0: 3} if i % 2 else None,
         "label": "is_fraud" if i % 3 else None, "batch": i if i % 5 else f"b-{i}", "rows_dropped": i % 2,
         "ingest_delay_ms": 1.5 if i % 2 else (None if i % 3 else 2)}
        for i in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize("secret", [False, True])
def test_the_clients_statistics_tuples_make_the_blocks_the_old_dicts_made(secret: bool) -> None:
    calls = _data_calls(30, secret)
    queued = _queued_by_client(calls, "data_stats")
    assert {len(item) for item in queued} == {5 + len(ev.DATA_FIELDS)}  # queued flat (events.Queued)
    unflat = blocks.unflattened(queued)
    old_rows = [(k, t, c, _old_data_fields(**call), u) for (k, t, c, _, u), call in zip(unflat, calls, strict=True)]
    encoded = []
    for rows, build in ((queued, data_stats_blocks.data_stats_columns), (old_rows, _old_data_columns_of)):
        stats: Counter[str] = Counter()
        redactor = Redactor(hash_key="k")
        block = new_block("b1", _TRACE.trace_id, dict(_ENVELOPE), build(rows, stats))
        chain = data_stats_blocks.block_chain([TraceSampler(1.0), redactor])
        assert chain is not None
        for processor in chain:
            block = processor(block)
        encoded.append((_ENCODE_DATA(block), stats, redactor.counts))
    assert encoded[0] == encoded[1]
    assert [data_stats_blocks.record_bytes(r) for r in queued] == [_old_record_bytes(r) for r in old_rows]
    assert ev.fields_dict(ev.DATA, unflat[3][3]) == old_rows[3][3]


@pytest.mark.parametrize("kind", [ev.INFERENCE, ev.DATA], ids=["inference", "data_stats"])
def test_a_tuple_of_another_length_queued_by_hand_loses_only_itself(kind: int, tmp_path: Any) -> None:
    """fields_dict's strict zip raised ValueError outside every builder's try: the exporter dropped the whole group
    (3 events as dropped_exporter_error, 1 of them bad); now its builder rejects that one (as a bad dict is)."""
    from aitrace.producers.exporter import Exporter
    from aitrace.producers.transport import MemoryTransport

    stats: Counter[str] = Counter()
    queue: deque[ev.Queued] = deque()
    exporter = Exporter(
        Settings(service="unit", spool_dir=str(tmp_path)), queue, dict(_ENVELOPE), [], "t", stats,
        MemoryTransport(stats),
    )  # fmt: skip
    good = len(ev.QUEUED_FIELDS[kind]) * [None]
    good[:4] = ["r", "m", None, 1.0] if kind == ev.INFERENCE else ["ingest", "ds", [], 5]
    if kind == ev.INFERENCE:
        good[4], good[5] = "ok", {}
    ctx = tc.new_root()
    for i, fields in enumerate([tuple(good), ("r", "m"), tuple(good)]):
        queue.append((kind, i + 1, ctx, fields, False))
    exporter.start()
    assert exporter.force_flush(10.0)
    exporter.stop(5.0)
    assert stats["rejected_bad_event"] == 1 and stats["sent"] == 2, stats
    assert stats["dropped_exporter_error"] == 0
