"""Decoded events, traces and alerts -> ECS documents and bulk actions.

Pure functions: no I/O, no state. The processors call them on decoded records
(``aitrace.schemas.codec`` output: ``time`` in int microseconds, ``payload`` as
``(record_name, dict)``) and hand the actions to :mod:`aitrace.sinks.indexer`.

Layout (the index templates in :mod:`aitrace.sinks.templates` map exactly these):

* ECS fields for the envelope: ``@timestamp``, ``event.id``, ``trace.id``,
  ``span.id``, ``parent.id``, ``service.{name,version,environment}``,
  ``host.name``, ``process.pid``, ``labels.*``, ``event.{kind,category,dataset,
  duration (ns),outcome}``, ``log.*``, ``message``, ``error.*``.
* ML fields under ``aitrace.*``. Free-form maps whose keys the user chooses
  (log attributes, run config, inference features, quantiles) are kept in
  ``_source`` under objects the templates mark ``enabled: false``: readable,
  never a new mapped field.
* Training metrics use a **name/value layout**: one document per metric per
  point (``aitrace.metric.name`` keyword + ``aitrace.metric.value`` double), so
  any metric name costs no mapping and Kibana can chart ``value`` split or
  filtered by ``name``. Its ``_id`` is ``<event_id>:<name>`` (the event id of a
  columnar point is ``<block_id>:<i>``), deterministic, so redelivery overwrites.
  NaN/Inf are data, in a TrainingMetric and in a MetricBlock alike (the producer
  starts a new block for a new set of metric names, so every cell of a block is
  a value the caller sent): ``value`` is null and ``aitrace.metric.nonfinite``
  says ``nan``, ``inf`` or ``-inf``.
* High-rate series are indexed as per-window rollups (:func:`rollup_action`,
  built by the processors' table-backed :mod:`aitrace.processors.rollup`): same
  name/value layout with ``value`` = mean of the finite points plus
  ``aitrace.metric.{count,min,max,last,first_step,last_step}`` over them,
  ``aitrace.metric.nonfinite_count`` (NaN/Inf points of the window, counted, not
  summarised) and ``aitrace.metric.rollup: true``.

``_id`` is the event id for events, the trace id for traces and the alert id
(dedup key) for alerts. Traces go to the daily index of their start time and
alerts to that of ``first_seen``: both are stable while the document is updated,
so a late update overwrites the same document instead of creating a second one
in the next day's index. An event whose time lies far from its ingest time (see
:class:`IngestWindow`) goes to the ingest day's index instead, flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np

Doc = dict[str, Any]
Action = dict[str, Any]

EVENTS, TRACES, ALERTS = "events", "traces", "alerts"
FAMILIES = (EVENTS, TRACES, ALERTS)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_US = 86_400_000_000
_SEVERITY = {"info": 1, "warning": 2, "critical": 3}

# record name -> (aitrace.kind, event.dataset, event.kind, event.category)
_PAYLOAD_META: dict[str, tuple[str, str, str, list[str]]] = {
    "aitrace.TrainingMetric": ("metric", "aitrace.training", "metric", ["process"]),
    "aitrace.RunLifecycle": ("run", "aitrace.training", "event", ["process"]),
    "aitrace.DataStats": ("data", "aitrace.data", "metric", ["database"]),
    "aitrace.InferenceRecord": ("inference", "aitrace.inference", "event", ["api"]),
    "aitrace.GroundTruth": ("ground_truth", "aitrace.inference", "event", ["api"]),
    "aitrace.LogRecord": ("log", "aitrace.log", "event", []),
    "aitrace.ResourceSample": ("resource", "aitrace.resources", "metric", ["host"]),
    "aitrace.Span": ("span", "aitrace.span", "event", ["process"]),
}


class DocumentError(ValueError):
    """A record cannot become a document (missing or malformed field); DLQ it."""


# ---------------------------------------------------------------- helpers


@lru_cache(maxsize=64)
def _day(day_number: int) -> str:
    return (_EPOCH + timedelta(days=day_number)).strftime("%Y.%m.%d")


def _micros(value: Any) -> int:
    """An event time as int microseconds; anything else is a DocumentError (DLQ), never a crash."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DocumentError(f"time must be int microseconds since epoch, got {value!r:.60}")
    return int(value)


def index_name(prefix: str, family: str, time_us: int) -> str:
    """Daily index of a document: ``aitrace-events-2026.11.26`` (UTC day of ``time_us``)."""
    try:
        return f"{prefix}-{family}-{_day(_micros(time_us) // _DAY_US)}"
    except (OverflowError, ValueError) as exc:
        raise DocumentError(f"time {time_us!r} is out of range: {exc}") from exc


def iso_time(time_us: int) -> str:
    """Microseconds since epoch -> ISO 8601 UTC with microseconds (what ``date`` fields parse)."""
    try:
        return (_EPOCH + timedelta(microseconds=_micros(time_us))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except OverflowError as exc:
        raise DocumentError(f"time {time_us!r} is out of range: {exc}") from exc


def _num(value: Any) -> float | None:
    """A finite float, or None: JSON has no NaN/Inf and the server would reject them."""
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _nonfinite(value: float) -> str | None:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def _prune(doc: Doc) -> Doc:
    """Drop None values and empty objects so documents carry only what is known."""
    out: Doc = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            value = _prune(value)
            if not value:
                continue
        elif value is None:
            continue
        out[key] = value
    return out


def _require(record: dict[str, Any], *names: str, what: str) -> None:
    missing = [n for n in names if record.get(n) is None]
    if missing:
        raise DocumentError(f"{what} lacks required field(s) {', '.join(missing)}")


def _payload(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    payload = event.get("payload")
    if not (isinstance(payload, tuple | list) and len(payload) == 2 and isinstance(payload[1], dict)):
        raise DocumentError(
            f"event {event.get('event_id')!r}: payload must be (record_name, dict), got {type(payload).__name__}"
        )
    return str(payload[0]), payload[1]


def _action(index: str, doc_id: str, source: Doc) -> Action:
    return {"_index": index, "_id": doc_id, "_source": source}


# ---------------------------------------------------------------- envelope


def envelope_fields(event: dict[str, Any]) -> Doc:
    """ECS fields every event document shares (no payload-specific parts)."""
    _require(event, "event_id", "time", "trace_id", "span_id", "service", what="event")
    return {
        "@timestamp": iso_time(event["time"]),
        "event": {"id": event["event_id"]},
        "trace": {"id": event["trace_id"]},
        "span": {"id": event["span_id"]},
        "parent": {"id": event.get("parent_span_id")},
        "service": {
            "name": event["service"],
            "version": event.get("service_version"),
            "environment": event.get("environment"),
        },
        "host": {"name": event.get("host")},
        "process": {"pid": event.get("pid")},
        "labels": _labels(event.get("labels")),
        "aitrace": {"run_id": event.get("run_id")},
    }


def _labels(labels: dict[str, str] | None) -> dict[str, str]:
    """ECS labels: keys without dots (``k8s.pod`` -> ``k8s_pod``), so ``a`` and ``a.b`` never collide
    as keyword vs object in the mapping, which would reject one of the documents."""
    return {str(k).replace(".", "_"): v for k, v in (labels or {}).items()}


def _with_meta(base: Doc, record_name: str) -> Doc:
    kind, dataset, event_kind, category = _PAYLOAD_META[record_name]
    base["event"].update({"kind": event_kind, "dataset": dataset})
    if category:
        base["event"]["category"] = category
    base["aitrace"]["kind"] = kind
    return base


# ---------------------------------------------------------------- payloads


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
        "mean": _num(f.get("mean")),
        "variance": _num(f.get("variance")),
        "min": _num(f.get("min")),
        "max": _num(f.get("max")),
        # source-only detail: keys are user data (quantile levels, category names)
        "detail": {
            "quantiles": {k: _num(v) for k, v in (f.get("quantiles") or {}).items()},
            "histogram_edges": [_num(v) for v in f.get("histogram_edges") or []],
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
        "ingest_delay_ms": _num(p.get("ingest_delay_ms")),
        "features": [_prune(_feature(f)) for f in p.get("features") or []],
        "class_counts": [{"name": k, "count": v} for k, v in (p.get("class_counts") or {}).items()],
    }


def _inference(doc: Doc, p: dict[str, Any]) -> None:
    latency = _num(p.get("latency_ms"))
    status = p.get("status")
    doc["aitrace"]["inference"] = {
        "request_id": p.get("request_id"),
        "model": p.get("model_name"),
        "model_version": p.get("model_version"),
        "feature_version": p.get("feature_version"),
        "latency_ms": latency,
        "status": status,
        "prediction": p.get("prediction"),
        "confidence": _num(p.get("confidence")),
        "inputs_summary": p.get("inputs_summary"),
        "features": {k: _num(v) for k, v in (p.get("features") or {}).items()},
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
        "utilization_percent": _num(g.get("utilization_percent")),
        "memory_used_bytes": g.get("memory_used_bytes"),
        "memory_total_bytes": g.get("memory_total_bytes"),
        "temperature_c": _num(g.get("temperature_c")),
        "power_w": _num(g.get("power_w")),
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
    gpus = [_prune(_gpu(g)) for g in p.get("gpus") or []]
    used = [g["memory_used_bytes"] for g in gpus if g.get("memory_used_bytes") is not None]
    util = [g["utilization_percent"] for g in gpus if g.get("utilization_percent") is not None]
    doc["aitrace"]["resources"] = {
        "cpu_percent": _num(p.get("cpu_percent")),
        "memory_rss_bytes": p.get("memory_rss_bytes"),
        "memory_percent": _num(p.get("memory_percent")),
        **{name: _num(p.get(name)) for name in _RESOURCE_RATES},
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
    _require(p, "step", "metrics", what=f"TrainingMetric of event {event.get('event_id')!r}")
    out = []
    for name, raw in p["metrics"].items():
        doc = _with_meta(envelope_fields(event), "aitrace.TrainingMetric")
        value = float(raw)
        doc["aitrace"]["metric"] = {
            "name": name,
            "value": value if math.isfinite(value) else None,
            "nonfinite": _nonfinite(value),
            "step": p["step"],
            "epoch": p.get("epoch"),
            "split": p.get("split"),
        }
        out.append((f"{event['event_id']}:{name}", _prune(doc)))
    return out


def event_documents(event: dict[str, Any]) -> list[tuple[str, Doc]]:
    """``(_id, document)`` pairs of one decoded event for the events index.

    One pair for most events; one per metric for a TrainingMetric (name/value
    layout). Raises :class:`DocumentError` for a record that cannot be indexed.
    Trace and Alert payloads are not events: use :func:`event_actions`.
    """
    record_name, p = _payload(event)
    if record_name == "aitrace.TrainingMetric":
        return _metric_docs(event, p)
    filler = _FILLERS.get(record_name)
    if filler is None:
        raise DocumentError(f"event {event.get('event_id')!r}: no event document for payload {record_name}")
    doc = _with_meta(envelope_fields(event), record_name)
    try:
        filler(doc, p)
    except (TypeError, ValueError, KeyError) as exc:
        raise DocumentError(f"event {event.get('event_id')!r}: malformed {record_name}: {exc}") from exc
    return [(event["event_id"], _prune(doc))]


@dataclass(frozen=True)
class IngestWindow:
    """Event times the daily index may follow: ``[ingest - past, ingest + future]`` (microseconds).

    A bit-flipped or badly clocked event time would otherwise create (or fill) the daily
    index of some other year. Outside the window the document keeps its ``@timestamp`` but
    goes to the index of the ingest day, flagged with the labels ``time_skew`` (``past`` /
    ``future``), ``time_skew_s`` (signed seconds) and ``ingested`` (ISO time).
    """

    ingest_us: int
    past_us: int
    future_us: int

    def skew_us(self, time_us: int) -> int:
        """0 inside the window, else how far the time lies from the ingest time (signed)."""
        d = int(time_us) - self.ingest_us
        return d if d < -self.past_us or d > self.future_us else 0


def _reroute(action: Action, prefix: str, window: IngestWindow, skew_us: int, family: str = EVENTS) -> Action:
    """Send an out-of-window document to the ingest day's index, flagged (see :class:`IngestWindow`)."""
    # Labels only: they are mapped dynamically (keyword); ``event.ingested`` / ``aitrace.time_skew_s``
    # would need the index templates to map them first (an unmapped field is not searchable).
    labels = action["_source"].setdefault("labels", {})
    labels["time_skew"] = "future" if skew_us > 0 else "past"
    labels["time_skew_s"] = str(skew_us // 1_000_000)
    labels["ingested"] = iso_time(window.ingest_us)
    action["_index"] = index_name(prefix, family, window.ingest_us)
    return action


def event_actions(
    event: dict[str, Any], *, prefix: str = "aitrace", window: IngestWindow | None = None
) -> list[Action]:
    """Bulk actions for one decoded event (Trace/Alert payloads go to their own index)."""
    record_name, p = _payload(event)
    if record_name == "aitrace.Trace":
        return [trace_action(p, prefix=prefix, context=event)]
    if record_name == "aitrace.Alert":
        return [alert_action(p, prefix=prefix)]
    index = index_name(prefix, EVENTS, event["time"]) if "time" in event else ""
    actions = [_action(index, doc_id, doc) for doc_id, doc in event_documents(event)]
    skew = window.skew_us(_micros(event["time"])) if window is not None and "time" in event else 0
    return [_reroute(a, prefix, window, skew) for a in actions] if skew and window else actions


# ---------------------------------------------------------------- metric blocks


def metric_block_actions(
    block: dict[str, Any],
    *,
    prefix: str = "aitrace",
    series: set[str] | None = None,
    window: IngestWindow | None = None,
) -> list[Action]:
    """Raw name/value documents for the points of a columnar MetricBlock.

    ``series`` limits to those metric names (the others are rolled up). Every cell is
    a point: NaN/Inf are values the caller sent (a diverged loss), indexed like a
    TrainingMetric's (``value`` null, ``nonfinite`` = nan/inf/-inf). ``_id`` is
    ``<block_id>:<i>:<name>``.
    """
    _require(block, "block_id", "trace_id", "span_id", "service", "steps", "times", "series", what="MetricBlock")
    steps = np.asarray(block["steps"], dtype=np.int64)
    times = np.asarray(block["times"], dtype=np.int64)
    if steps.shape != times.shape:
        raise DocumentError(f"MetricBlock {block['block_id']!r}: {len(steps)} steps but {len(times)} times")
    epochs = np.asarray(block.get("epochs") or [], dtype=np.int64)
    ctx = block_context(block)
    actions: list[Action] = []
    for s in block["series"]:
        name = s["name"]
        if series is not None and name not in series:
            continue
        values = np.asarray(s["values"], dtype=np.float64)
        if values.shape != steps.shape:
            raise DocumentError(f"MetricBlock {block['block_id']!r}: series {name!r} has {len(values)} values")
        finite = np.isfinite(values)
        for i, value in enumerate(values.tolist()):
            metric = {"name": name, "step": int(steps[i]), "split": block.get("split")}
            if finite[i]:
                metric["value"] = value
            else:
                metric["nonfinite"] = _nonfinite(value)
            if epochs.size and epochs[i] >= 0:
                metric["epoch"] = int(epochs[i])
            doc = _metric_doc(ctx, int(times[i]), f"{block['block_id']}:{i}", metric)
            action = _action(index_name(prefix, EVENTS, int(times[i])), f"{block['block_id']}:{i}:{name}", doc)
            skew = window.skew_us(int(times[i])) if window is not None else 0
            actions.append(_reroute(action, prefix, window, skew) if skew and window else action)
    return actions


def block_context(block: dict[str, Any]) -> dict[str, Any]:
    """The envelope fields of a MetricBlock (what every point document repeats)."""
    return {k: block.get(k) for k in _BLOCK_CONTEXT}


_BLOCK_CONTEXT = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "service",
    "service_version",
    "environment",
    "host",
    "pid",
    "run_id",
)


def _metric_doc(ctx: dict[str, Any], time_us: int, event_id: str, metric: Doc) -> Doc:
    event = {**ctx, "event_id": event_id, "time": time_us}
    doc = _with_meta(envelope_fields(event), "aitrace.TrainingMetric")
    doc["aitrace"]["metric"] = metric
    return _prune(doc)


def rollup_action(
    ctx: dict[str, Any],
    *,
    name: str,
    split: str | None,
    window_start_us: int,
    window_us: int,
    count: int,
    minimum: float | None,
    maximum: float | None,
    mean: float | None,
    last: float | None,
    first_step: int,
    last_step: int,
    nonfinite: int = 0,
    prefix: str = "aitrace",
) -> Action:
    """One per-window rollup document of a metric series (name/value layout, value = mean).

    ``count``, ``minimum``, ``maximum``, ``mean`` and ``last`` describe the finite points;
    ``nonfinite`` counts the NaN/Inf points of the window (a window of only those has
    ``count`` 0 and no value).

    ``_id`` = ``rollup:<trace_id>:<split>:<name>:<window_us>:<window_start_us>``: a
    window recomputed after redelivery overwrites itself.
    """
    doc_id = f"rollup:{ctx.get('trace_id')}:{split or ''}:{name}:{window_us}:{window_start_us}"
    metric = {
        "name": name,
        "value": _num(mean),
        "split": split,
        "rollup": True,
        "count": int(count),
        "nonfinite_count": int(nonfinite),
        "min": _num(minimum),
        "max": _num(maximum),
        "last": _num(last),
        "step": int(last_step),
        "first_step": int(first_step),
        "last_step": int(last_step),
        "window_us": int(window_us),
    }
    doc = _metric_doc(ctx, window_start_us, doc_id, metric)
    doc["event"]["duration"] = int(window_us) * 1000
    return _action(index_name(prefix, EVENTS, window_start_us), doc_id, doc)


# ---------------------------------------------------------------- traces and alerts


def trace_document(trace: dict[str, Any], context: dict[str, Any] | None = None) -> Doc:
    """An assembled aitrace.Trace -> document for the traces index.

    ``context`` (optional) is an event of the trace whose environment, host and
    run id are copied; the services touched are ``aitrace.trace.services``.
    """
    _require(trace, "trace_id", "start_time", "end_time", "duration_us", what="trace")
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
    return _prune(doc)


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
    action = _action(index_name(prefix, TRACES, trace["start_time"]), trace["trace_id"], doc)
    skew = window.skew_us(_micros(trace["start_time"])) if window is not None else 0
    return _reroute(action, prefix, window, skew, TRACES) if skew and window else action


def alert_document(alert: dict[str, Any]) -> Doc:
    """An aitrace.Alert -> document for the alerts index (``@timestamp`` = first_seen)."""
    _require(alert, "alert_id", "kind", "detector", "severity", "title", "series", "first_seen", what="alert")
    last_seen = alert.get("last_seen", alert["first_seen"])
    severity = alert["severity"]
    doc = {
        "@timestamp": iso_time(alert["first_seen"]),
        "message": alert["title"],
        "trace": {"id": alert.get("trace_id")},
        "service": {"name": alert.get("service")},
        "event": {
            "id": alert["alert_id"],
            "kind": "alert",
            "dataset": "aitrace.alert",
            "severity": _SEVERITY.get(severity, 0),
            "start": iso_time(alert["first_seen"]),
            "end": iso_time(last_seen),
            "duration": max(0, int(last_seen) - int(alert["first_seen"])) * 1000,
        },
        "aitrace": {
            "kind": "alert",
            "run_id": alert.get("run_id"),
            "alert": {
                "id": alert["alert_id"],
                "version": alert.get("version", 1),
                "kind": alert["kind"],
                "detector": alert["detector"],
                "severity": severity,
                "state": alert.get("state", "open"),
                "title": alert["title"],
                "series": alert["series"],
                "model": alert.get("model"),
                "feature": alert.get("feature"),
                "step": alert.get("step"),
                "last_seen": iso_time(last_seen),
                "score": _num(alert.get("score")),
                "statistic": _num(alert.get("statistic")),
                "threshold": _num(alert.get("threshold")),
                "pvalue": _num(alert.get("pvalue")),
                "evidence": [_num(v) for v in alert.get("evidence") or []],
                "details": dict(alert.get("details") or {}),
            },
        },
    }
    return _prune(doc)


def alert_action(alert: dict[str, Any], *, prefix: str = "aitrace") -> Action:
    """Bulk action for an alert: ``_id`` = alert id (dedup key), daily index of first_seen."""
    doc = alert_document(alert)
    return _action(index_name(prefix, ALERTS, alert["first_seen"]), alert["alert_id"], doc)
