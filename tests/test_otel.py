"""``aitrace.otel.AitraceSpanExporter`` inside a real OpenTelemetry SDK, read back from a real Tansu."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import aitrace
import aitrace.producers.client
import pytest
from aitrace.infra.stack import TansuProcess
from test_producer_support import all_ids, consume

pytest.importorskip("opentelemetry.sdk.trace")
from aitrace.producers.otel import AitraceSpanExporter
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult


@pytest.fixture
def client(kafka: TansuProcess, tmp_path: Path, unique_name: Callable[[str], str]) -> Iterator[aitrace.Client]:
    made = aitrace.init(
        service="api", kafka_bootstrap=kafka.bootstrap, topic_prefix=unique_name("p"), spool_dir=str(tmp_path / "s")
    )
    yield made
    made.close(timeout=5)


def test_parent_and_child_spans_keep_their_trace_and_parent_links(client: aitrace.Client) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(AitraceSpanExporter(client)))
    tracer = provider.get_tracer("test.otel")
    with tracer.start_as_current_span("POST /predict", kind=trace.SpanKind.SERVER) as parent:
        parent.set_attribute("http.route", "/predict")
        client.log("info", "inside the otel span")  # aitrace events take the current OTel span
        with pytest.raises(ValueError), tracer.start_as_current_span("score") as child:
            child.set_attribute("rows", 3)
            raise ValueError("bad row")
    provider.shutdown()
    assert client.flush(timeout=30)
    records = consume(
        client.settings.kafka.kafka_bootstrap, client.settings.kafka.topic_prefix, lambda r: len(all_ids(r)) >= 3
    )
    events = [e for _, batch in records for e in batch["events"]]
    spans = {e["payload"][1]["name"]: e for e in events if e["payload"][0] == "aitrace.Span"}
    (log,) = [e for e in events if e["payload"][0] == "aitrace.LogRecord"]
    p_ctx, c_ctx = parent.get_span_context(), child.get_span_context()
    outer, inner = spans["POST /predict"], spans["score"]
    assert outer["trace_id"] == inner["trace_id"] == log["trace_id"] == f"{p_ctx.trace_id:032x}"
    assert outer["span_id"] == f"{p_ctx.span_id:016x}" and outer["parent_span_id"] is None
    assert inner["span_id"] == f"{c_ctx.span_id:016x}" and inner["parent_span_id"] == outer["span_id"]
    assert log["span_id"] == outer["span_id"]
    o, i = outer["payload"][1], inner["payload"][1]
    assert o["kind"] == "server" and o["status"] == "ok" and o["attributes"]["http.route"] == "/predict"
    assert o["attributes"]["otel.scope"] == "test.otel"
    assert i["status"] == "error" and i["error_type"] == "ValueError" and "bad row" in i["error_message"]
    assert i["attributes"]["rows"] == "3"
    assert o["start_time"] <= i["start_time"] and i["duration_us"] <= o["duration_us"]
    assert (
        o["start_time"] == parent.start_time // 1000
        and o["duration_us"] == parent.end_time // 1000 - parent.start_time // 1000  # both ends in µs
    )


def test_export_after_shutdown_or_without_a_client_fails_softly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aitrace.producers.client, "_default", None)
    assert AitraceSpanExporter().export([]) is SpanExportResult.FAILURE
    exporter = AitraceSpanExporter(object())
    exporter.shutdown()
    assert exporter.export([]) is SpanExportResult.FAILURE


def test_a_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    monkeypatch.delitem(sys.modules, "aitrace.producers.otel")
    with pytest.raises(ImportError, match=r"pip install 'aitrace\[otel\]'"):
        importlib.import_module("aitrace.producers.otel")
