"""An assembled trace -> its document and bulk action for the traces index."""

from __future__ import annotations

from typing import Any

from aitrace.sinks.ecs_envelope import (
    TRACES,
    Action,
    Doc,
    IngestWindow,
    as_micros,
    bulk_action,
    index_name,
    iso_time,
    prune,
    require,
    reroute,
)


def trace_document(trace: dict[str, Any], context: dict[str, Any] | None = None) -> Doc:
    """An assembled aitrace.Trace -> document for the traces index.

    ``context`` (optional) is an event of the trace whose environment, host and
    run id are copied; the services touched are ``aitrace.trace.services``.
    """
    require(trace, "trace_id", "start_time", "end_time", "duration_us", what="trace")
    ctx = context or {}
    spans = [
        {**s, "start": iso_time(s["start_time"]) if s.get("start_time") is not None else None}
        for s in trace.get("spans") or []
    ]
    root = next((s for s in spans if s.get("span_id") == trace.get("root_span_id")), None)
    services = list(trace.get("services") or [])
    has_error = bool(trace.get("has_error"))
    doc = {
        "@timestamp": iso_time(trace["start_time"]),
        "trace": {"id": trace["trace_id"]},
        "span": {"id": trace.get("root_span_id")},
        "service": {
            "name": (root or {}).get("service") or (services[0] if services else None),
            "environment": ctx.get("environment"),
        },
        "host": {"name": ctx.get("host")},
        "message": trace.get("first_error") or trace.get("root_name"),
        "event": {
            "kind": "event",
            "dataset": "aitrace.trace",
            "duration": int(trace["duration_us"]) * 1000,
            "outcome": "failure" if has_error else "success",
            "start": iso_time(trace["start_time"]),
            "end": iso_time(trace["end_time"]),
        },
        "error": {"message": trace.get("first_error")},
        "aitrace": {
            "kind": "trace",
            "run_id": ctx.get("run_id"),
            "trace": {
                "root_name": trace.get("root_name"),
                "services": services,
                "span_count": trace.get("span_count"),
                "event_count": trace.get("event_count"),
                "complete": bool(trace.get("complete")),
                "has_error": has_error,
                "first_error": trace.get("first_error"),
                "duration_us": trace["duration_us"],
                "critical_path": list(trace.get("critical_path") or []),
                "span_names": sorted({s["name"] for s in spans if s.get("name")}),
                "spans": spans,
            },
        },
    }
    return prune(doc)


def trace_action(
    trace: dict[str, Any],
    *,
    prefix: str = "aitrace",
    context: dict[str, Any] | None = None,
    window: IngestWindow | None = None,
) -> Action:
    """Bulk action for a trace: ``_id`` = trace id, daily index of its start time.

    ``window``: around the trace's first ingest; a start time outside it picks that day instead.
    """
    doc = trace_document(trace, context)
    action = bulk_action(index_name(prefix, TRACES, trace["start_time"]), trace["trace_id"], doc)
    skew = window.skew_us(as_micros(trace["start_time"])) if window is not None else 0
    return reroute(action, prefix, window, skew, TRACES) if skew and window else action


__all__ = ["trace_action", "trace_document"]
