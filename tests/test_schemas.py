"""Schemas: every file parses; every payload round-trips through both wire formats; an independent
reader (Apache ``avro``) decodes our single-object bodies; data written with the released 0.1
schemas still reads with the current ones; the compatibility checker catches breaking changes.
"""

from __future__ import annotations

import copy
import io
import json
import math
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import avro.io
import avro.schema
import fastavro
import pytest
from aitrace import schemas
from aitrace.schemas import codec, compat
from aitrace.schemas.registry import SchemaRegistryClient

NOW = 1_795_700_000_000_000

PAYLOADS: dict[str, dict[str, Any]] = {
    "aitrace.TrainingMetric": {"step": 120, "epoch": 2, "split": "train", "metrics": {"loss": 0.31, "lr": 1e-3}},
    "aitrace.RunLifecycle": {
        "status": "FAILED",
        "config": {"lr": "0.1"},
        "seed": 7,
        "code_version": "abc123",
        "library_versions": {"torch": "2.13.0"},
        "message": "diverged",
    },
    "aitrace.DataStats": {
        "stage": "ingest",
        "dataset": "wine",
        "batch": "b1",
        "row_count": 178,
        "rows_dropped": 2,
        "features": [
            {
                "name": "alcohol",
                "dtype": "numeric",
                "count": 178,
                "missing": 1,
                "mean": 13.0,
                "variance": 0.65,
                "min": 11.0,
                "max": 14.8,
                "quantiles": {"0.5": 13.05},
                "histogram_edges": [11.0, 13.0, 14.8],
                "histogram_counts": [80, 98],
                "categories": {},
            }
        ],
        "label": "class",
        "class_counts": {"0": 59, "1": 71, "2": 48},
        "ingest_delay_ms": 12.5,
    },
    "aitrace.InferenceRecord": {
        "request_id": "r1",
        "model_name": "wine-clf",
        "model_version": "3",
        "latency_ms": 4.5,
        "status": "error",
        "error": "timeout",
        "features": {"alcohol": 13.0},
        "categorical_features": {"color": "red"},
        "inputs_summary": "1 row",
        "prediction": "1",
        "confidence": 0.93,
        "feature_version": "fv2",
    },
    "aitrace.GroundTruth": {"request_id": "r1", "model_name": "wine-clf", "label": "1"},
    "aitrace.LogRecord": {
        "level": "error",
        "message": "CUDA OOM",
        "logger": "train",
        "attributes": {"batch": "17"},
        "error_type": "RuntimeError",
        "error_message": "out of memory",
        "stack_trace": "Traceback ...",
    },
    "aitrace.ResourceSample": {
        "cpu_percent": 97.5,
        "memory_rss_bytes": 1 << 30,
        "memory_percent": 12.5,
        "disk_read_bytes_per_s": 2.5e6,
        "disk_write_bytes_per_s": 0.0,
        "host_cpu_percent": 61.0,
        "host_memory_used_bytes": 40 << 30,
        "host_memory_total_bytes": 512 << 30,
        "host_memory_percent": 7.8,
        "host_disk_read_bytes_per_s": 3e6,
        "host_disk_write_bytes_per_s": 1e5,
        "host_net_sent_bytes_per_s": None,
        "host_net_recv_bytes_per_s": 1.2e7,
        "gpus": [
            {
                "index": 0,
                "name": "H100",
                "utilization_percent": 99.0,
                "memory_used_bytes": 70 << 30,
                "memory_total_bytes": 80 << 30,
                "temperature_c": 71.0,
                "power_w": 640.5,
            }
        ],
    },
    "aitrace.Span": {
        "name": "preprocess",
        "kind": "internal",
        "start_time": NOW,
        "duration_us": 1500,
        "status": "ok",
        "error_type": None,
        "error_message": None,
        "attributes": {"rows": "3"},
    },
    "aitrace.Trace": {
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "root_span_id": "00f067aa0ba902b7",
        "root_name": "request",
        "services": ["gateway", "model"],
        "start_time": NOW,
        "end_time": NOW + 2000,
        "duration_us": 2000,
        "span_count": 2,
        "event_count": 5,
        "complete": True,
        "has_error": False,
        "first_error": None,
        "critical_path": ["00f067aa0ba902b7"],
        "spans": [
            {
                "span_id": "00f067aa0ba902b7",
                "parent_span_id": None,
                "service": "gateway",
                "name": "request",
                "start_time": NOW,
                "duration_us": 2000,
                "status": "ok",
            }
        ],
    },
    "aitrace.Alert": {
        "alert_id": "a1",
        "version": 2,
        "kind": "drift",
        "detector": "ks",
        "severity": "warning",
        "state": "open",
        "title": "alcohol drifted",
        "series": "wine-clf/alcohol",
        "service": "model",
        "run_id": None,
        "model": "wine-clf",
        "feature": "alcohol",
        "trace_id": None,
        "step": None,
        "first_seen": NOW,
        "last_seen": NOW + 10,
        "score": 0.9,
        "statistic": 0.31,
        "threshold": 0.2,
        "pvalue": 1e-6,
        "evidence": [0.1, 0.2],
        "details": {"window": "1000"},
    },
}


def event(name: str, payload: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "time": NOW + i,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "parent_span_id": None,
        "service": "svc",
        "service_version": "1.0",
        "environment": "test",
        "host": "h",
        "pid": 42,
        "run_id": "run-7",
        "sampled": True,
        "labels": {"team": "ml"},
        "payload": (name, payload),
    }


METRIC_BLOCK = {
    "block_id": "b1",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
    "parent_span_id": None,
    "service": "trainer",
    "service_version": None,
    "environment": "test",
    "host": "h",
    "pid": 42,
    "run_id": "run-7",
    "split": "train",
    "steps": [1, 2, 3],
    "times": [NOW, NOW + 1, NOW + 2],
    "epochs": [],
    "series": [{"name": "loss", "values": [0.5, math.inf, 0.25]}],
}


def batch() -> dict[str, Any]:
    events = [event(name, payload, i) for i, (name, payload) in enumerate(PAYLOADS.items())]
    return {"batch_id": "batch-1", "events": events, "metric_blocks": [METRIC_BLOCK]}


# -- parsing


@pytest.mark.parametrize("directory", [schemas.SCHEMA_DIR, compat.RELEASED_DIR / "0.1"], ids=["current", "0.1"])
def test_every_schema_file_parses(directory: Path) -> None:
    files = sorted(directory.glob("aitrace.*.avsc"))
    assert len(files) >= 16
    load = compat.loader_for(directory)
    for path in files:
        name = path.name[: -len(".avsc")]
        raw = json.loads(path.read_text())
        assert f"{raw.get('namespace', 'aitrace')}.{raw['name']}" == name
        fastavro.parse_schema(schemas.expanded(name, load))
        avro.schema.parse(json.dumps(schemas.expanded(name, load)))


def test_every_payload_type_of_the_event_union_has_a_sample() -> None:
    union = next(f["type"] for f in schemas.raw("aitrace.Event")["fields"] if f["name"] == "payload")
    assert sorted(union) == sorted(PAYLOADS)


# -- round trips


def test_single_object_round_trip_of_every_payload_type() -> None:
    data = codec.AvroSerializer("aitrace.Batch")(batch(), codec.SerializationContext("t"))
    assert data[:2] == codec.SINGLE_OBJECT_MAGIC
    name, decoded = codec.AvroDeserializer().decode(data)
    assert name == "aitrace.Batch"
    assert decoded == batch()


class _FakeRegistry(BaseHTTPRequestHandler):
    """A Confluent-compatible registry with two endpoints, in memory (a unit fake for the codec test)."""

    ids: ClassVar[dict[str, int]] = {}
    texts: ClassVar[dict[int, str]] = {}
    subjects: ClassVar[list[str]] = []
    gets: ClassVar[list[int]] = []  # schema ids asked for, in order

    def do_POST(self) -> None:
        self.subjects.append(self.path.split("/")[2])  # /subjects/<subject>/versions
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        schema_id = self.ids.setdefault(body["schema"], len(self.ids) + 1)
        self.texts[schema_id] = body["schema"]
        self._reply(200, {"id": schema_id})

    def do_GET(self) -> None:
        schema_id = int(self.path.rsplit("/", 1)[-1])
        self.gets.append(schema_id)
        if schema_id in self.texts:
            self._reply(200, {"schema": self.texts[schema_id]})
        else:
            self._reply(404, {"error_code": 40403, "message": "Schema not found"})

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_confluent_wire_format_round_trip_through_a_registry(registry_url: str) -> None:
    writer_registry = SchemaRegistryClient(registry_url)
    data = codec.AvroSerializer("aitrace.Batch", registry=writer_registry)(batch(), codec.SerializationContext("t"))
    assert data[:1] == codec.CONFLUENT_MAGIC
    reader = codec.AvroDeserializer(registry=SchemaRegistryClient(registry_url))  # a separate process's view
    name, decoded = reader.decode(data)
    assert name == "aitrace.Batch" and decoded == batch()
    # The single-object decoder of the same reader still reads the default format.
    assert reader.decode(codec.AvroSerializer("aitrace.Batch")(batch()))[1] == batch()


def test_a_schema_id_the_registry_does_not_know_is_asked_once_in_a_while_not_per_record(registry_url: str) -> None:
    """Any Kafka client can write records framed with random schema ids; each would be one HTTP
    request on the worker's event loop. A refused id is not asked again for RETRY_S seconds."""
    reader = codec.AvroDeserializer(registry=SchemaRegistryClient(registry_url))
    framed = codec.CONFLUENT_MAGIC + (987_654).to_bytes(4, "big") + b"\x00" * 8
    for _ in range(3):
        with pytest.raises(codec.DecodeError) as exc:
            reader.decode(framed)
        assert exc.value.reason == "unknown-schema"
    assert _FakeRegistry.gets.count(987_654) == 1
    reader._failed[987_654] = (reader._failed[987_654][0] - codec.AvroDeserializer.RETRY_S, "old")  # time passed
    with pytest.raises(codec.DecodeError):
        reader.decode(framed)
    assert _FakeRegistry.gets.count(987_654) == 2


class _CountingRegistry(SchemaRegistryClient):
    asked: ClassVar[list[int]] = []

    def schema(self, schema_id: int) -> str:
        self.asked.append(schema_id)
        return super().schema(schema_id)


def test_while_the_registry_is_unreachable_no_schema_id_is_asked() -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on: the connection is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reader = codec.AvroDeserializer(registry=_CountingRegistry(f"http://127.0.0.1:{port}", timeout=2.0))
    for schema_id in (1, 2, 3):
        with pytest.raises(codec.DecodeError) as exc:
            reader.decode(codec.CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + b"\x00")
        assert exc.value.reason == "unknown-schema" and "unreachable" in exc.value.detail
    assert _CountingRegistry.asked == [1]


def test_the_apache_avro_reader_decodes_our_single_object_bodies() -> None:
    for name, payload in PAYLOADS.items():
        data = codec.AvroSerializer("aitrace.Event")(event(name, payload))
        schema = avro.schema.parse(json.dumps(schemas.expanded("aitrace.Event")))
        decoded = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
        expected = event(name, payload)
        got_payload = decoded.pop("payload")
        expected_payload = expected.pop("payload")[1]
        assert _without_dates(decoded) == expected
        assert _without_dates(got_payload) == expected_payload, name


def test_the_single_object_header_carries_the_spec_fingerprint() -> None:
    # GroundTruth has no logical types: Apache avro's canonical form agrees with the spec there.
    data = codec.AvroSerializer("aitrace.GroundTruth")(PAYLOADS["aitrace.GroundTruth"])
    schema = avro.schema.parse(json.dumps(schemas.expanded("aitrace.GroundTruth")))
    assert data[2:10] == schema.fingerprint("CRC-64-AVRO")


def _without_dates(value: Any) -> Any:
    """Apache avro turns timestamp-micros into datetimes: compare as int microseconds."""
    import datetime

    if isinstance(value, datetime.datetime):
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        return (value - epoch) // datetime.timedelta(microseconds=1)
    if isinstance(value, dict):
        return {k: _without_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_dates(v) for v in value]
    return value


# -- compatibility with the released schemas


def _released_parsed(name: str) -> Any:
    return fastavro.parse_schema(schemas.without_logical_types(compat.released("0.1")[name]))


def test_data_written_with_the_released_schemas_reads_with_the_current_ones() -> None:
    old_payload = {k: v for k, v in PAYLOADS["aitrace.InferenceRecord"].items() if k != "feature_version"}
    old_batch = batch()
    old_batch["events"] = [
        event(n, old_payload if n == "aitrace.InferenceRecord" else p, i) for i, (n, p) in enumerate(PAYLOADS.items())
    ]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _released_parsed("aitrace.Batch"), old_batch)
    current = codec.compiled("aitrace.Batch").parsed
    decoded = fastavro.schemaless_reader(
        io.BytesIO(buf.getvalue()), _released_parsed("aitrace.Batch"), current, return_record_name=True
    )
    inference = next(e for e in decoded["events"] if e["payload"][0] == "aitrace.InferenceRecord")["payload"][1]
    assert inference["feature_version"] is None  # the new field's default
    assert {k: v for k, v in inference.items() if k != "feature_version"} == old_payload
    assert decoded["metric_blocks"] == [METRIC_BLOCK]


def test_the_current_schemas_are_compatible_with_the_release() -> None:
    assert compat.releases() == ["0.1"]
    assert compat.check_release("0.1", mode="FULL") == {}


def test_the_release_differs_from_the_current_tree_only_by_compatible_changes() -> None:
    old = compat.released("0.1")["aitrace.InferenceRecord"]
    new = schemas.expanded("aitrace.InferenceRecord")
    added = {f["name"] for f in new["fields"]} - {f["name"] for f in old["fields"]}
    assert added == {"feature_version"}
    assert next(f for f in new["fields"] if f["name"] == "feature_version")["default"] is None


def _variant(tmp_path: Path, name: str, change: Any) -> dict[str, dict[str, Any]]:
    """Every current schema, with ``change(schema_json)`` applied to one file, expanded."""
    shutil.copytree(
        schemas.SCHEMA_DIR, tmp_path / "s", ignore=shutil.ignore_patterns("released", "*.py", "__pycache__")
    )
    path = tmp_path / "s" / f"{name}.avsc"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    load = compat.loader_for(tmp_path / "s")
    return {n: schemas.expanded(n, load) for n in schemas.names()}


def _field(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in doc["fields"] if f["name"] == name)


def _add_required(doc: dict[str, Any]) -> None:
    doc["fields"].append({"name": "segment", "type": "string"})


def _narrow_type(doc: dict[str, Any]) -> None:
    _field(doc, "latency_ms")["type"] = "int"


def _remove_required(doc: dict[str, Any]) -> None:
    doc["fields"] = [f for f in doc["fields"] if f["name"] != "request_id"]


def _remove_enum_symbol(doc: dict[str, Any]) -> None:
    status = _field(doc, "status")["type"]
    status["symbols"].remove("KILLED")
    del status["default"]


def _widen_type(doc: dict[str, Any]) -> None:
    _field(doc, "row_count")["type"] = "double"  # long -> double: Avro promotes


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        ("aitrace.InferenceRecord", _add_required, "segment: new field without default"),
        ("aitrace.InferenceRecord", _narrow_type, "latency_ms: type double cannot be read as int"),
        ("aitrace.InferenceRecord", _remove_required, "request_id: removed field without default"),
        ("aitrace.RunLifecycle", _remove_enum_symbol, "enum symbols ['KILLED'] removed without an enum default"),
    ],
)
def test_the_checker_reports_a_breaking_change(tmp_path: Path, name: str, change: Any, expected: str) -> None:
    report = compat.check_release("0.1", mode="FULL", current=_variant(tmp_path, name, change))
    assert name in report and "aitrace.Event" in report and "aitrace.Batch" in report  # seen where it is used
    assert any(expected in problem for problem in report[name]), report[name]


def test_the_checker_accepts_a_promotion_and_reports_a_removed_schema(tmp_path: Path) -> None:
    widened = _variant(tmp_path, "aitrace.DataStats", _widen_type)
    assert compat.check_release("0.1", mode="BACKWARD", current=widened) == {}
    assert compat.check_release("0.1", mode="FORWARD", current=widened)  # double cannot be read as long
    missing = copy.deepcopy(widened)
    del missing["aitrace.GroundTruth"]
    assert compat.check_release("0.1", mode="BACKWARD", current=missing)["aitrace.GroundTruth"] == [
        "schema aitrace.GroundTruth removed"
    ]
    with pytest.raises(ValueError, match="mode"):
        compat.check({}, {}, mode="SIDEWAYS")


def test_released_fingerprints_are_known_where_they_differ_from_the_current_ones() -> None:
    old = compat.released_compiled()
    current = {codec.compiled(n).fingerprint for n in schemas.names()}
    changed = {c.name for fp, c in old.items() if fp not in current}
    # InferenceRecord and ResourceSample gained fields, so they and every schema that contains them have new ones.
    assert changed == {"aitrace.InferenceRecord", "aitrace.ResourceSample", "aitrace.Event", "aitrace.Batch"}


def test_a_record_from_a_released_producer_decodes_with_the_current_decoder() -> None:
    old_payload = {k: v for k, v in PAYLOADS["aitrace.InferenceRecord"].items() if k != "feature_version"}
    old_batch = {"batch_id": "old", "events": [event("aitrace.InferenceRecord", old_payload)], "metric_blocks": []}
    old_schema = next(c for c in compat.released_compiled().values() if c.name == "aitrace.Batch")
    buf = io.BytesIO(codec.SINGLE_OBJECT_MAGIC + old_schema.fingerprint)
    buf.seek(0, io.SEEK_END)
    fastavro.schemaless_writer(buf, old_schema.parsed, old_batch)
    name, decoded = codec.AvroDeserializer().decode(buf.getvalue())
    assert name == "aitrace.Batch"
    assert decoded["events"][0]["payload"][1]["feature_version"] is None
