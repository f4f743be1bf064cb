"""The integrations under odd values: nothing raises into the app or framework that would not without aitrace,
and a bad value costs only itself. From a report-only fuzz of the integrations (/work/rev-u): each of these lost
an event, or raised where the app's own code would not."""

from __future__ import annotations

import io
import logging
import math
from collections import Counter
from typing import Any

import pytest
from test_bad_values import _client, _sent, _Unprintable
from test_producer_support import decode


def test_the_stdlib_handler_sends_a_users_logger_named_like_ours_and_an_int_extra_key() -> None:
    """Loggers "aitracer" or "aitrace_demo" were taken for aitrace's own and dropped uncounted; extra={1: "x"} lost
    its record (client.log(**{1: ...}))."""
    from aitrace.producers.logging_handler import AitraceHandler

    c = _client()
    handler = AitraceHandler(c)
    for name in ("aitracer", "aitrace_demo", "app"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
        logger.warning("from %s", name, extra={1: "x"} if name == "app" else None)
        logger.removeHandler(handler)
    assert _sent(c) == Counter({"LogRecord": 3})


def test_the_structlog_processor_sends_an_event_with_no_text_of_its_own() -> None:
    pytest.importorskip("structlog")
    from aitrace.producers.logging_bridges import StructlogProcessor

    c = _client()
    processor = StructlogProcessor(c)
    processor(None, "info", {"event": _Unprintable()})
    assert _sent(c) == Counter({"LogRecord": 1}) and processor.errors == 0


def test_the_loguru_sink_keeps_a_record_whose_extra_holds_half_a_trace_context() -> None:
    pytest.importorskip("loguru")
    from aitrace.producers.logging_bridges import _TRACE_KEY, LoguruSink
    from loguru import logger

    c = _client()
    sink = LoguruSink(c)
    handle = logger.add(sink, level="INFO")
    try:
        logger.bind(**{_TRACE_KEY: "0" * 31 + "1"}).info("half a context")
    finally:
        logger.remove(handle)
    assert _sent(c) == Counter({"LogRecord": 1}) and sink.errors == 0


def test_a_traced_handler_raising_an_unprintable_exception_keeps_its_inference_record() -> None:
    from aitrace.producers.inference import traced

    c = _client()

    @traced(client=c, model="m")
    def predict(x: int) -> int:
        raise _Unprintable()

    with pytest.raises(_Unprintable):
        predict(1)
    assert _sent(c) == Counter({"InferenceRecord": 1, "Span": 1})


def _wsgi(app: Any, client: Any, environ: dict[str, Any]) -> list[bytes]:
    """The response as a server reads it: iterated, then closed (which sends the record)."""
    from aitrace.producers.wsgi import AitraceWSGIMiddleware

    base = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "wsgi.input": io.BytesIO(b'{"x": 1}')}
    body = AitraceWSGIMiddleware(app, client, model="m")({**base, **environ}, lambda *a: None)
    try:
        return list(body)
    finally:
        getattr(body, "close", lambda: None)()  # (an untraced response is the app's own list)


def test_a_wsgi_app_seeking_its_input_and_sending_a_status_past_64_bits_is_served_and_recorded() -> None:
    """The counted input lacked the stream's other attributes (seek: AttributeError, a 500); a status past 64 bits
    failed the record's JSON summary and lost the record."""
    c = _client()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.input"].seek(0)
        start_response("99999999999999999999999 X", [])
        return [environ["wsgi.input"].read()]

    assert _wsgi(app, c, {"CONTENT_LENGTH": "8"}) == [b'{"x": 1}']
    assert _sent(c) == Counter({"InferenceRecord": 1, "Span": 1})


def test_the_otel_exporter_sends_a_batchs_good_spans_around_a_bad_one() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from aitrace.producers.otel import AitraceSpanExporter
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for name in ("a", "b"):
        with provider.get_tracer("t").start_as_current_span(name):
            pass
    good = memory.get_finished_spans()
    c = _client()
    result = AitraceSpanExporter(c).export([good[0], ReadableSpan(name="broken"), good[1]])
    assert result == SpanExportResult.FAILURE and _sent(c) == Counter({"Span": 2})
    assert c.stats()["rejected_bad_event"] == 1


def test_the_transformers_callback_takes_a_nan_epoch_and_a_summary_with_a_message_key() -> None:
    pytest.importorskip("transformers")
    from aitrace.producers.transformers import AitraceCallback
    from transformers import TrainerControl, TrainerState, TrainingArguments

    c = _client()
    callback = AitraceCallback(c, lifecycle=False)
    state, args = TrainerState(global_step=7), TrainingArguments(output_dir="/tmp/aitrace-unused", report_to=[])
    callback.on_log(args, state, TrainerControl(), logs={"loss": 0.5, "epoch": math.nan})
    callback.on_log(args, state, TrainerControl(), logs={"total_flos": 1.0, "message": "m", "event": "e"})
    assert _sent(c) == Counter({"metric": 1, "LogRecord": 1})


def test_the_lightning_logger_reports_a_failure_whose_exception_has_no_text() -> None:
    """finalize formatted the exception: Lightning's fit() raised aitrace's RuntimeError instead of the user's, and
    the FAILED event was lost."""
    pytest.importorskip("lightning")
    from aitrace.producers.lightning import AitraceLogger

    c = _client()
    logger = AitraceLogger(c)
    logger.log_metrics({"loss": 0.5}, step=0)  # the run starts
    try:
        raise _Unprintable()
    except _Unprintable:
        logger.finalize("failed")
    sent = _sent(c)
    assert sent["RunLifecycle"] == 2 and sent["LogRecord"] == 1


def test_a_request_id_given_as_a_uuid_is_sent_as_it_prints_so_its_label_joins() -> None:
    """A review of the fix above: the id went through the client's JSON text (with its quotes), and the ground
    truth sent with str(uuid) no longer joined its prediction."""
    import uuid

    from aitrace.producers.inference import annotate, traced

    c, rid = _client(), uuid.UUID(int=7)

    @traced(client=c, model="m")
    def predict(x: int) -> int:
        annotate(request_id=rid, error=ValueError("too long"))
        return x

    predict(1)
    c._exporter._take()
    c._exporter._send_pending()
    (payload,) = [
        e["payload"][1] for r in c.transport.records for e in decode(r.value)["events"] if "error" in e["payload"][1]
    ]
    assert (payload["request_id"], payload["error"]) == (str(rid), "too long")


def test_requests_whose_metadata_breaks_the_specs_reach_the_app_untraced_or_counted() -> None:
    """ASGI headers as str and a WSGI PATH_INFO as bytes raised before the app ran; a response body of None raised
    before the app's send (the server's to refuse)."""
    import asyncio

    from aitrace.producers.asgi import AitraceMiddleware

    c, seen = _client(), []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": None})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        seen.append(message["type"])

    scope = {"type": "http", "method": "GET", "path": "/a", "headers": [("x-a", "b")]}
    asyncio.run(AitraceMiddleware(app, c, model="m")(scope, receive, send))
    asyncio.run(AitraceMiddleware(app, c, model="m")({**scope, "headers": []}, receive, send))
    assert seen == ["/a", "http.response.start", "http.response.body"] * 2

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    assert _wsgi(wsgi_app, c, {"PATH_INFO": b"/p"}) == [b"ok"]


_TPS = (
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
)


def test_two_traceparents_continue_no_trace_under_asgi_as_under_wsgi() -> None:
    """W3C Trace Context: a request with two traceparent headers has no parent. A WSGI server folds them into one
    ("A, B": malformed, counted); the ASGI middleware took the last one and continued its trace."""
    import asyncio

    from aitrace.producers.asgi import AitraceMiddleware

    c = _client()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    headers = [(b"traceparent", tp.encode()) for tp in _TPS]
    scope = {"type": "http", "method": "GET", "path": "/a", "headers": headers}
    asyncio.run(AitraceMiddleware(app, c, model="m")(scope, receive, send))

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    _wsgi(wsgi_app, c, {"HTTP_TRACEPARENT": ", ".join(_TPS), "HTTP_X_REQUEST_ID": "client-7f3a, proxy-91bc"})
    c._exporter._take()
    c._exporter._send_pending()
    events = [e for r in c.transport.records for e in decode(r.value)["events"]]
    traces = {e["trace_id"] for e in events}
    assert len(traces) == 2 and not traces & {tp.split("-")[1] for tp in _TPS}
    assert c.stats()["bad_traceparent"] == 2
    # a repeated X-Request-ID (a client's, then a proxy's) names the request by the first, so its label joins
    # (a review of the fold above, /work/rev-y D7: "client-7f3a, proxy-91bc")
    ids = {e["payload"][1]["request_id"] for e in events if e["payload"][0] == "aitrace.InferenceRecord"}
    assert "client-7f3a" in ids
