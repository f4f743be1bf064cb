"""An OpenTelemetry SDK ``SpanExporter`` that sends finished OTel spans as ``aitrace.Span`` events.

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(AitraceSpanExporter(client)))

Each span keeps its trace id, span id and parent span id (the envelope's ``trace_id``,
``span_id``, ``parent_span_id``), name, kind, start time, duration, status and attributes, so
spans of OTel-instrumented code and aitrace's own events share one trace. An error status (or a
recorded exception) marks the span ``error`` with the exception's type and message; error spans
leave at once and are never sampled out. The instrumentation scope goes in the attribute
``otel.scope``, the span's events in ``otel.events`` (name and attributes, JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import StatusCode
except ImportError as exc:
    raise ImportError("aitrace.otel needs the OpenTelemetry SDK: pip install 'aitrace[otel]'") from exc

from aitrace.producers import events as ev
from aitrace.producers import tracecontext as tc

__all__ = ["AitraceSpanExporter"]

_KINDS = {0: "internal", 1: "server", 2: "client", 3: "producer", 4: "consumer"}


class AitraceSpanExporter(SpanExporter):
    """Turn OTel ``ReadableSpan``s into aitrace spans through ``client`` (default: the last :func:`aitrace.init`)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client
        self._shutdown = False

    def _target(self) -> Any:
        if self._client is not None:
            return self._client
        from aitrace.producers.client import get_client

        return get_client()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        client = self._target()
        if self._shutdown or client is None:
            return SpanExportResult.FAILURE
        failed = 0
        for span in spans:  # one span that cannot be read costs only itself, counted, not the rest of its batch
            try:
                ctx, end_us, fields = span_fields(span)
            except Exception:
                failed += 1
                continue
            client._put((ev.SPAN, end_us, ctx, fields, fields["status"] == "error"))
        if failed:
            with client._caller_lock:  # a caller's counter (the sender thread owns stats_counter)
                client._caller_stats["rejected_bad_event"] += failed
        return SpanExportResult.FAILURE if failed else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Stop exporting; the client stays open (it is the caller's)."""
        self._shutdown = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        client = self._target()
        return True if client is None else bool(client.flush(timeout=timeout_millis / 1000))


def span_fields(span: ReadableSpan) -> tuple[tc.SpanContext, int, dict[str, Any]]:
    """The aitrace context, end time (µs) and ``aitrace.Span`` fields of one finished OTel span."""
    sc = span.get_span_context()
    assert sc is not None  # a finished SDK span always has its context
    parent = span.parent
    ctx = tc.SpanContext(
        f"{sc.trace_id:032x}",
        f"{sc.span_id:016x}",
        f"{parent.span_id:016x}" if parent is not None and parent.span_id else None,
        bool(parent.is_remote) if parent is not None else False,
    )
    start_us = (span.start_time or 0) // 1000
    end_us = (span.end_time or span.start_time or 0) // 1000
    status = span.status
    error = status is not None and status.status_code is StatusCode.ERROR
    error_type = error_message = None
    for event in span.events:
        if event.name == "exception":
            attrs = event.attributes or {}
            error_type = error_type or attrs.get("exception.type")
            error_message = error_message or attrs.get("exception.message")
    if error and status.description:
        error_message = status.description
    attributes: dict[str, Any] = dict(span.attributes or {})
    scope = span.instrumentation_scope
    if scope is not None and scope.name:
        attributes["otel.scope"] = scope.name
    if span.events:
        attributes["otel.events"] = [{"name": e.name, **dict(e.attributes or {})} for e in span.events]
    fields = {
        "name": span.name,
        "kind": _KINDS.get(getattr(span.kind, "value", 0), "internal"),
        "start_time": start_us,
        "duration_us": max(0, end_us - start_us),
        "status": "error" if error else "ok",
        "error_type": str(error_type) if error and error_type else ("Error" if error else None),
        "error_message": str(error_message) if error and error_message else None,
        "attributes": attributes,
    }
    return ctx, end_us, fields
