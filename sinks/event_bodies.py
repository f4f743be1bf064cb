"""The kind-specific part of an event document: logs, runs, data stats, inference, resources, spans, metrics.

:func:`event_documents` builds the ``(_id, document)`` pairs of one decoded event: the ECS
envelope (:mod:`aitrace.sinks.ecs_envelope`) plus the body its payload kind fills in; a
TrainingMetric becomes one document per metric (name/value layout).
"""

from __future__ import annotations

import math
from typing import Any

from aitrace.sinks.ecs_envelope import (
    Doc,
    DocumentError,
    envelope_fields,
    iso_time,
    nonfinite_label,
    num,
    payload_of,
    prune,
    require,
    with_meta,
)


def _log(doc: Doc, p: dict[str, Any]) -> None:
    doc["log"] = {"level": p.get("level"), "logger": p.get("logger")}
    doc["message"] = p.get("message")
    doc["error"] = {"type": p.get("error_type"), "message": p.get("error_message"), "stack_trace": p.get("stack_trace")}
    doc["aitrace"]["attributes"] = dict(p.get("attributes") or {})


def _run(doc: Doc, p: dict[str, Any]) -> None:
    status = p.get("status")
    doc["message"] = p.get("message")
    doc["aitrace"]["run"] = {
        "status": status.lower() if isinstance(status, str) else None,
        "seed": p.get("seed"),
        "code_version": p.get("code_version"),
        "config": dict(p.get("config") or {}),
        "library_versions": dict(p.get("library_versions") or {}),
    }
    if status in ("FAILED", "KILLED"):
        doc["event"]["outcome"] = "failure"
    elif status == "FINISHED":
        doc["event"]["outcome"] = "success"


def _feature(f: dict[str, Any]) -> Doc:
    return {
        "name": f.get("name"),
        "dtype": f.get("dtype"),
        "count": f.get("count"),
        "missing": f.get("missing"),
        "mean": num(f.get("mean")),
        "variance": num(f.get("variance")),
        "min": num(f.get("min")),
        "max": num(f.get("max")),
        # source-only detail: keys are user data (quantile levels, category names)
        "detail": {
            "quantiles": {k: num(v) for k, v in (f.get("quantiles") or {}).items()},
            "histogram_edges": [num(v) for v in f.get("histogram_edges") or []],
            "histogram_counts": list(f.get("histogram_counts") or []),
            "categories": dict(f.get("categories") or {}),
        },
    }


def _data(doc: Doc, p: dict[str, Any]) -> None:
    doc["aitrace"]["data"] = {
        "stage": p.get("stage"),
        "dataset": p.get("dataset"),
        "batch": p.get("batch"),
        "row_count": p.get("row_count"),
        "rows_dropped": p.get("rows_dropped"),
        "label": p.get("label"),
        "ingest_delay_ms": num(p.get("ingest_delay_ms")),
        "features": [prune(_feature(f)) for f in p.get("features") or []],
        "class_counts": [{"name": k, "count": v} for k, v in (p.get("class_counts") or {}).items()],
    }


def _inference(doc: Doc, p: dict[str, Any]) -> None:
    latency = num(p.get("latency_ms"))
    status = p.get("status")
    doc["aitrace"]["inference"] = {
        "request_id": p.get("request_id"),
        "model": p.get("model_name"),
        "model_version": p.get("model_version"),
        "feature_version": p.get("feature_version"),
        "latency_ms": latency,
        "status": status,
        "prediction": p.get("prediction"),
        "confidence": num(p.get("confidence")),
        "inputs_summary": p.get("inputs_summary"),
        "features": {k: num(v) for k, v in (p.get("features") or {}).items()},
        "categorical_features": dict(p.get("categorical_features") or {}),
    }
    if latency is not None:
        doc["event"]["duration"] = int(latency * 1_000_000)
    doc["event"]["outcome"] = "failure" if status == "error" else "success"
    if p.get("error"):
        doc["error"] = {"message": p["error"]}


def _ground_truth(doc: Doc, p: dict[str, Any]) -> None:
    doc["aitrace"]["inference"] = {"request_id": p.get("request_id"), "model": p.get("model_name")}
    doc["aitrace"]["ground_truth"] = {"label": p.get("label")}


def _gpu(g: dict[str, Any]) -> Doc:
    return {
        "index": g.get("index"),
        "name": g.get("name"),
        "utilization_percent": num(g.get("utilization_percent")),
        "memory_used_bytes": g.get("memory_used_bytes"),
        "memory_total_bytes": g.get("memory_total_bytes"),
        "temperature_c": num(g.get("temperature_c")),
        "power_w": num(g.get("power_w")),
    }


_RESOURCE_RATES = (  # the sampler's psutil figures (rates since the previous sample), as doubles
    "disk_read_bytes_per_s",
    "disk_write_bytes_per_s",
    "host_cpu_percent",
    "host_memory_percent",
    "host_disk_read_bytes_per_s",
    "host_disk_write_bytes_per_s",
    "host_net_sent_bytes_per_s",
    "host_net_recv_bytes_per_s",
)


def _resource(doc: Doc, p: dict[str, Any]) -> None:
    gpus = [prune(_gpu(g)) for g in p.get("gpus") or []]
    used = [g["memory_used_bytes"] for g in gpus if g.get("memory_used_bytes") is not None]
    util = [g["utilization_percent"] for g in gpus if g.get("utilization_percent") is not None]
    doc["aitrace"]["resources"] = {
        "cpu_percent": num(p.get("cpu_percent")),
        "memory_rss_bytes": p.get("memory_rss_bytes"),
        "memory_percent": num(p.get("memory_percent")),
        **{name: num(p.get(name)) for name in _RESOURCE_RATES},
        **{name: p.get(name) for name in ("host_memory_used_bytes", "host_memory_total_bytes")},
        "gpu": gpus,
        # host-level summaries so a chart needs no per-GPU split
        "gpu_memory_used_bytes": sum(used) if used else None,
        "gpu_utilization_max": max(util) if util else None,
    }


def _span(doc: Doc, p: dict[str, Any]) -> None:
    duration_us = p.get("duration_us")
    status = p.get("status") or "ok"
    doc["aitrace"]["span"] = {
        "name": p.get("name"),
        "kind": p.get("kind"),
        "status": status,
        "start": iso_time(p["start_time"]) if p.get("start_time") is not None else None,
        "attributes": dict(p.get("attributes") or {}),
    }
    if duration_us is not None:
        doc["event"]["duration"] = int(duration_us) * 1000
    doc["event"]["outcome"] = "failure" if status == "error" else "success"
    doc["error"] = {"type": p.get("error_type"), "message": p.get("error_message")}


_FILLERS = {
    "aitrace.RunLifecycle": _run,
    "aitrace.DataStats": _data,
    "aitrace.InferenceRecord": _inference,
    "aitrace.GroundTruth": _ground_truth,
    "aitrace.LogRecord": _log,
    "aitrace.ResourceSample": _resource,
    "aitrace.Span": _span,
}


def _metric_docs(event: dict[str, Any], p: dict[str, Any]) -> list[tuple[str, Doc]]:
    require(p, "step", "metrics", what=f"TrainingMetric of event {event.get('event_id')!r}")
    out = []
    for name, raw in p["metrics"].items():
        doc = with_meta(envelope_fields(event), "aitrace.TrainingMetric")
        value = float(raw)
        doc["aitrace"]["metric"] = {
            "name": name,
            "value": value if math.isfinite(value) else None,
            "nonfinite": nonfinite_label(value),
            "step": p["step"],
            "epoch": p.get("epoch"),
            "split": p.get("split"),
        }
        out.append((f"{event['event_id']}:{name}", prune(doc)))
    return out


def event_documents(event: dict[str, Any]) -> list[tuple[str, Doc]]:
    """``(_id, document)`` pairs of one decoded event for the events index.

    One pair for most events; one per metric for a TrainingMetric (name/value
    layout). Raises :class:`DocumentError` for a record that cannot be indexed.
    Trace and Alert payloads are not events: use :func:`event_actions`.
    """
    record_name, p = payload_of(event)
    if record_name == "aitrace.TrainingMetric":
        return _metric_docs(event, p)
    filler = _FILLERS.get(record_name)
    if filler is None:
        raise DocumentError(f"event {event.get('event_id')!r}: no event document for payload {record_name}")
    doc = with_meta(envelope_fields(event), record_name)
    try:
        filler(doc, p)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:  # Overflow: int() of a float as large as 1e308
        raise DocumentError(f"event {event.get('event_id')!r}: malformed {record_name}: {exc}") from exc
    return [(event["event_id"], prune(doc))]


__all__ = ["event_documents"]
