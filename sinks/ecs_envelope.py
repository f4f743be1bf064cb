"""What every aitrace document shares: the ECS envelope, index names, times, and the helpers.

The envelope (``@timestamp``, ``event.id``, ``trace.id``, ``service.*``, ``labels.*``, ...)
of an event document, the daily index of a document, microsecond times as ISO strings, and
:class:`IngestWindow` (an event time far from its ingest time goes to the ingest day's
index, flagged). The kind-specific bodies are in :mod:`aitrace.sinks.event_bodies`,
:mod:`aitrace.sinks.metric_documents`, :mod:`aitrace.sinks.trace_documents` and
:mod:`aitrace.sinks.alert_documents`; :mod:`aitrace.sinks.documents` is the entry point.
"""

from __future__ import annotations

import hashlib
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


def as_micros(value: Any) -> int:
    """An event time as int microseconds; anything else is a DocumentError (DLQ), never a crash."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DocumentError(f"time must be int microseconds since epoch, got {value!r:.60}")
    return int(value)


def index_name(prefix: str, family: str, time_us: int) -> str:
    """Daily index of a document: ``aitrace-events-2026.11.26`` (UTC day of ``time_us``)."""
    try:
        return f"{prefix}-{family}-{_day(as_micros(time_us) // _DAY_US)}"
    except (OverflowError, ValueError) as exc:
        raise DocumentError(f"time {time_us!r} is out of range: {exc}") from exc


def iso_time(time_us: int) -> str:
    """Microseconds since epoch -> ISO 8601 UTC with microseconds (what ``date`` fields parse)."""
    try:
        return (_EPOCH + timedelta(microseconds=as_micros(time_us))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except OverflowError as exc:
        raise DocumentError(f"time {time_us!r} is out of range: {exc}") from exc


def num(value: Any) -> float | None:
    """A finite float, or None: JSON has no NaN/Inf and the server would reject them."""
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def nonfinite_label(value: float) -> str | None:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def prune(doc: Doc) -> Doc:
    """Drop None values and empty objects so documents carry only what is known."""
    out: Doc = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            value = prune(value)
            if not value:
                continue
        elif value is None:
            continue
        out[key] = value
    return out


def require(record: dict[str, Any], *names: str, what: str) -> None:
    missing = [n for n in names if record.get(n) is None]
    if missing:
        raise DocumentError(f"{what} lacks required field(s) {', '.join(missing)}")


def payload_of(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    payload = event.get("payload")
    if not (isinstance(payload, tuple | list) and len(payload) == 2 and isinstance(payload[1], dict)):
        raise DocumentError(
            f"event {event.get('event_id')!r}: payload must be (record_name, dict), got {type(payload).__name__}"
        )
    return str(payload[0]), payload[1]


def bulk_action(index: str, doc_id: str, source: Doc) -> Action:
    return {"_index": index, "_id": bounded_id(doc_id), "_source": source}


MAX_ID_BYTES = 512  # Elasticsearch refuses a longer _id ("id is too long"): the document was dead-lettered


def bounded_id(doc_id: str) -> str:
    """``doc_id``, or where it is past :data:`MAX_ID_BYTES` in UTF-8 its start and a digest of the whole: a metric
    point's and a window's ids hold the metric's name, and a name of 170 CJK characters or 470 ASCII ones made
    every document of its series a rejection. The same id gives the same result (a redelivery overwrites)."""
    if len(doc_id) <= MAX_ID_BYTES // 4:  # 4 bytes a character at most: no encoding on the common path
        return doc_id
    raw = doc_id.encode("utf-8", "surrogatepass")  # (a client's lone surrogate is no reason to fail)
    if len(raw) <= MAX_ID_BYTES:
        return doc_id
    digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
    head = raw[: MAX_ID_BYTES - len(digest) - 1].decode("utf-8", "ignore")
    return f"{head}~{digest}"


# ---------------------------------------------------------------- envelope


def envelope_fields(event: dict[str, Any]) -> Doc:
    """ECS fields every event document shares (no payload-specific parts)."""
    require(event, "event_id", "time", "trace_id", "span_id", "service", what="event")
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


def with_meta(base: Doc, record_name: str) -> Doc:
    kind, dataset, event_kind, category = _PAYLOAD_META[record_name]
    base["event"].update({"kind": event_kind, "dataset": dataset})
    if category:
        base["event"]["category"] = category
    base["aitrace"]["kind"] = kind
    return base


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


def reroute(action: Action, prefix: str, window: IngestWindow, skew_us: int, family: str = EVENTS) -> Action:
    """Send an out-of-window document to the ingest day's index, flagged (see :class:`IngestWindow`)."""
    # Labels only: they are mapped dynamically (keyword); ``event.ingested`` / ``aitrace.time_skew_s``
    # would need the index templates to map them first (an unmapped field is not searchable).
    labels = action["_source"].setdefault("labels", {})
    labels["time_skew"] = "future" if skew_us > 0 else "past"
    labels["time_skew_s"] = str(skew_us // 1_000_000)
    labels["ingested"] = iso_time(window.ingest_us)
    action["_index"] = index_name(prefix, family, window.ingest_us)
    return action


__all__ = [
    "ALERTS",
    "EVENTS",
    "FAMILIES",
    "TRACES",
    "Action",
    "Doc",
    "DocumentError",
    "IngestWindow",
    "as_micros",
    "bulk_action",
    "envelope_fields",
    "index_name",
    "iso_time",
    "nonfinite_label",
    "num",
    "payload_of",
    "prune",
    "require",
    "reroute",
    "with_meta",
]
