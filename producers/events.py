"""Event builders: from what the caller handed over to the Avro shapes of ``schemas/``.

The caller's thread only puts a small tuple on the queue (see :mod:`aitrace.producers.client`); the
exporter thread calls these functions to build ``aitrace.Event`` payloads (and those of
:mod:`aitrace.producers.metric_blocks` to build columnar ``aitrace.MetricBlock`` s). Bad values
never raise here: a value that does not fit is turned into a string (counted as
``stringified``) or left out (counted as ``rejected_*``), and the exporter logs it.

:func:`~aitrace.producers.summaries.summarize` builds the ``aitrace.FeatureStats`` dicts that
``client.data_stats`` carries.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import traceback
import types
from collections import Counter
from collections.abc import Iterable, Mapping
from numbers import Integral
from typing import Any

import orjson

# Kinds of queued items.
METRIC, LOG, RUN, DATA, INFERENCE, GROUND_TRUTH, RESOURCE, SPAN = range(8)

Queued = Any
"""One queued event: ``(kind, time_us, ctx, fields, urgent)``, flat: ``(kind, time_us, ctx, None, urgent, *fields)``,
or an ended span.

``ctx`` is the :class:`~aitrace.producers.tracecontext.SpanContext` it belongs to (an ended
:class:`~aitrace.producers.spans.Span` stands for its own: it has the same ids); ``fields`` is
what the caller handed over: a dict of the payload builder's arguments, for ``METRIC`` a
:data:`MetricPoint`, for the kinds of :data:`QUEUED_FIELDS` a tuple of those arguments in its order;
``urgent`` makes the exporter send at once (errors). A plain tuple, not a class: building it is
the caller's whole cost (a NamedTuple costs the caller about 0.1-0.4 µs more).

An ended :class:`~aitrace.producers.spans.Span` is queued as itself: it is its own row, read
by attribute (kind SPAN, time ``end_us``, the span as context and fields, urgent when its status is
an error). The client queues logs, inference records, ground truth and data statistics flat: their
fields (in the order of :data:`QUEUED_FIELDS`) after the first five items, not a tuple of their own.
One object less per queued event: the garbage collector counts every object a queued event keeps
alive towards its next collection, and each full collection walks the whole queue (bench_producer.py:
GC per event). Readers of ``fields`` take a flat row through :func:`~aitrace.producers.blocks.unflattened`.
"""
MetricPoint = tuple[dict[str, Any], int, Any, Any]
"""The fields of one ``client.metric`` call: ``(values, step, epoch, split)``."""
INFERENCE_FIELDS = ("request_id", "model_name", "model_version", "latency_ms", "status", "features", "prediction",
                    "confidence", "error", "inputs_summary", "feature_version")  # fmt: skip
"""The fields of one ``client.inference`` call, in the order it queues them, flat (an 11-key dict cost the
caller about 0.2 µs of its 1.7, and the exporter a look-up per field and record to take apart again)."""
DATA_FIELDS = ("stage", "dataset", "features", "row_count", "class_counts", "label", "batch", "rows_dropped",
               "ingest_delay_ms")  # fmt: skip
"""The fields of one ``client.data_stats`` call, in the order it queues them, flat (a dict: ~0.17 µs more)."""
LOG_FIELDS = ("level", "message", "logger", "attributes", "exc")
"""The fields of one ``client.log`` call, in the order it queues them, flat (a dict cost the caller 0.17-0.2 µs
more with the collections it brought on, bench/bench_sender.py; the exporter took it apart by name per record)."""
GROUND_TRUTH_FIELDS = ("request_id", "model_name", "label")
"""The fields of one ``client.ground_truth`` call, in the order it queues them, flat."""
QUEUED_FIELDS: dict[int, tuple[str, ...]] = {
    INFERENCE: INFERENCE_FIELDS, DATA: DATA_FIELDS, LOG: LOG_FIELDS, GROUND_TRUTH: GROUND_TRUTH_FIELDS,
}  # fmt: skip
"""Kinds whose fields the client queues in order (flat, see :data:`Queued`; a tuple at index 3 still reads)."""


def fields_dict(kind: int, fields: Any) -> Any:
    """A queued item's fields as the payload builder reads them: a dict (a tuple of :data:`QUEUED_FIELDS` named).
    A tuple of another length (queued by hand) stays one: its builder rejects that one event (TypeError), where a
    ValueError of the builders' callers dropped every event of its group."""
    names = QUEUED_FIELDS.get(kind)
    if names is None or type(fields) is not tuple or len(fields) != len(names):
        return fields
    return dict(zip(names, fields, strict=True))


class DropEvent(Exception):  # structlog's name for the same signal
    """Raised by a processor of the client's chain to drop the item it was given (counted, not sent).

    Out of band, as in structlog, so a processor's return value is always an item. Returning None
    still drops too, for processors written before this existed.
    """


TOPIC_OF_KIND = {
    METRIC: "events.training",
    RUN: "events.training",
    DATA: "events.data",
    INFERENCE: "events.inference",
    GROUND_TRUTH: "events.inference",
    LOG: "events.system",
    RESOURCE: "events.system",
    SPAN: "events.system",
}
RECORD_OF_KIND = {
    LOG: "aitrace.LogRecord",
    RUN: "aitrace.RunLifecycle",
    DATA: "aitrace.DataStats",
    INFERENCE: "aitrace.InferenceRecord",
    GROUND_TRUTH: "aitrace.GroundTruth",
    RESOURCE: "aitrace.ResourceSample",
    SPAN: "aitrace.Span",
}
LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical", "exception": "error", "trace": "debug"}
LEVEL_OF = {
    spelled: _LEVEL_ALIASES.get(name, name)
    for name in (*LEVELS, *_LEVEL_ALIASES)
    for spelled in (name, name.upper(), name.capitalize())
}
RUN_STATUSES = ("STARTED", "RUNNING", "FINISHED", "FAILED", "KILLED", "UNKNOWN")
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

_LIBRARIES = (
    "torch",
    "numpy",
    "scipy",
    "sklearn",
    "pandas",
    "transformers",
    "jax",
    "tensorflow",
    "lightning",
    "pytorch_lightning",
    "xgboost",
    "lightgbm",
    "numba",
    "faust",
    "confluent_kafka",
    "fastavro",
    "aitrace",
)


def normalize_level(level: Any) -> str:
    """``"ERROR"``, ``"warn"``, 40 -> the schema's lower-case level names."""
    known = LEVEL_OF.get(level) if type(level) is str else None
    if known is not None:  # the caller's hot path: "info", "INFO", "warn", ...
        return known
    if isinstance(level, Integral):  # numpy's integers too: np.int64(40) read "info", not urgent
        return LEVELS[min(max(int(level) // 10 - 1, 0), 4)]
    text = plain_text(level).strip().lower()
    text = _LEVEL_ALIASES.get(text, text)
    return text if text in LEVELS else "info"


URGENT_LEVELS = frozenset({"error", "critical"})


def is_urgent_level(level: str) -> bool:
    """Errors and worse leave at once instead of waiting out the linger."""
    return level in URGENT_LEVELS


def text_value(value: Any, stats: Counter[str]) -> str:
    """A value as text for a ``map<string>`` field: strings as they are, the rest as JSON.

    Objects JSON cannot express are written with ``repr`` and counted as ``stringified``. A ``str`` subclass
    (``numpy.str_``, a ``StrEnum`` member) becomes a plain ``str``: the redactor scans plain strings only.
    """
    if isinstance(value, str):
        return value if type(value) is str else str.__str__(value)
    try:
        return orjson.dumps(value, option=_JSON_OPTS).decode()
    except TypeError:
        stats["stringified"] += 1
        try:
            return repr(value)
        except Exception:
            return f"<unrepresentable {type(value).__name__}>"


def text_map(values: Mapping[Any, Any] | None, stats: Counter[str]) -> dict[str, str]:
    """A mapping as ``map<string>``: keys made strings, values via :func:`text_value`."""
    if not values:
        return {}
    return {str(k): text_value(v, stats) for k, v in values.items()}


UNKNOWN_MODEL = "unknown"
"""The model name of a prediction that names none (what ``aitrace.inference.traced`` sends when not told one)."""


def model_name(value: Any, stats: Counter[str]) -> str:
    """A model's name as its series and documents key it: its text without surrounding whitespace.

    Otherwise a name is an identity, compared exactly (``Ranker`` and ``ranker`` are two models,
    as run ids, services and metric names are two when they differ): only whitespace that a config
    file or an environment variable carried along is dropped, so that ``"ranker\n"`` does not start
    a series beside ``"ranker"``. No name (empty, or only whitespace) is :data:`UNKNOWN_MODEL`,
    counted as ``unnamed_model``: sent empty, the worker refused the record (``missing-field``,
    to the DLQ); only whitespace, it keyed a series of its own with a blank name. The worker takes
    the name as it arrives (see :mod:`aitrace.processors.chunks`).
    """
    text = text_value(value, stats).strip()
    if text:
        return text
    stats["unnamed_model"] += 1
    return UNKNOWN_MODEL


def model_names(names: list[str], stats: Counter[str]) -> list[str]:
    """:func:`model_name` over a column of texts; the column itself when each name already is one.

    Checked once per distinct name (a batch has a few), so the common case costs one ``set``.
    """
    if all(name and name == name.strip() for name in set(names)):
        return names
    return [model_name(name, stats) for name in names]


def optional_text(value: Any, stats: Counter[str]) -> str | None:
    """None stays None; anything else becomes text."""
    return None if value is None else text_value(value, stats)


def as_float(value: Any) -> float | None:
    """A number as float (numpy scalars, 0-d tensors included); None when it is not one."""
    if isinstance(value, float):
        return value
    try:  # an int past a double's range (10**400) raises OverflowError; a caller's object anything: no number
        return float(value)
    except Exception:
        return None


def as_int(value: Any) -> int | None:
    """An integer or None (bools and floats with a fraction are not steps)."""
    if value is None:
        return None
    try:
        return int(value)
    except Exception:  # a tensor of many elements raises RuntimeError, a caller's object anything
        return None


# -- payloads of single events


def plain_text(value: Any) -> str:
    """``str(value)`` (a UUID, a date and an exception read as they print), or, where that raises,
    ``<unrepresentable X>``: the text of a value (an exception's message, a request id, a note) must never
    cost its event, nor replace the caller's own exception."""
    try:
        return str(value)
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"


def log_payload(fields: dict[str, Any], stats: Counter[str]) -> dict[str, Any]:
    """``aitrace.LogRecord`` from ``client.log`` arguments (exception formatted here, off the caller)."""
    exc = fields.get("exc")
    payload = {
        "level": fields["level"],
        "message": text_value(fields["message"], stats),
        "logger": optional_text(fields.get("logger"), stats),
        "attributes": text_map(fields.get("attributes"), stats),
        "error_type": None,
        "error_message": None,
        "stack_trace": None,
    }
    if isinstance(exc, BaseException):
        payload["error_type"] = type(exc).__qualname__
        payload["error_message"] = plain_text(exc)
        payload["stack_trace"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return payload


def run_payload(fields: dict[str, Any], stats: Counter[str]) -> dict[str, Any]:
    """``aitrace.RunLifecycle``; unknown status names become UNKNOWN."""
    status = str(fields.get("status", "UNKNOWN")).upper()
    seed = as_int(fields.get("seed"))
    config = text_map(flatten(fields.get("config") or {}), stats)
    if seed is not None and not -(2**63) <= seed < 2**63:
        # torch.initial_seed() of an unseeded run is any 64-bit unsigned number, half of them past the schema's
        # long: the whole run event was refused; the seed goes into the config as text instead
        config.setdefault("seed", str(seed))
        seed = None
    return {
        "status": status if status in RUN_STATUSES else "UNKNOWN",
        "config": config,
        "seed": seed,
        "code_version": optional_text(fields.get("code_version"), stats),
        "library_versions": dict(fields.get("library_versions") or {}),
        "message": optional_text(fields.get("message"), stats),
    }


def flatten(config: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Nested config dicts as dotted keys (``optim.lr``), so each hyper-parameter is one field."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and depth < 4:
            out.update(flatten(value, f"{name}.", depth + 1))
        else:
            out[name] = value
    return out


def data_payload(fields: dict[str, Any], stats: Counter[str]) -> dict[str, Any]:
    """``aitrace.DataStats``: feature summaries checked field by field."""
    return {
        "stage": text_value(fields["stage"], stats),
        "dataset": text_value(fields["dataset"], stats),
        "batch": optional_text(fields.get("batch"), stats),
        "row_count": as_int(fields.get("row_count")) or 0,
        "rows_dropped": as_int(fields.get("rows_dropped")) or 0,
        "features": [feature_stats(f, stats) for f in fields.get("features") or ()],
        "label": optional_text(fields.get("label"), stats),
        "class_counts": {str(k): as_int(v) or 0 for k, v in (fields.get("class_counts") or {}).items()},
        "ingest_delay_ms": as_float(fields.get("ingest_delay_ms")),
    }


def feature_stats(raw: Mapping[str, Any], stats: Counter[str]) -> dict[str, Any]:
    """One ``aitrace.FeatureStats`` from a dict such as :func:`summarize` returns."""
    return {
        "name": text_value(raw["name"], stats),
        "dtype": str(raw.get("dtype", "numeric")),
        "count": as_int(raw.get("count")) or 0,
        "missing": as_int(raw.get("missing")) or 0,
        "mean": as_float(raw.get("mean")),
        "variance": as_float(raw.get("variance")),
        "min": as_float(raw.get("min")),
        "max": as_float(raw.get("max")),
        "quantiles": {str(k): as_float(v) for k, v in (raw.get("quantiles") or {}).items()},
        "histogram_edges": [float(x) for x in _listed(raw.get("histogram_edges"))],
        "histogram_counts": [int(x) for x in _listed(raw.get("histogram_counts"))],
        "categories": {str(k): int(v) for k, v in (raw.get("categories") or {}).items()},
    }


def _listed(values: Any) -> Any:
    """A sequence of numbers, or () for none: np.histogram's arrays too (``array or ()`` raised ValueError)."""
    return () if values is None else values


def inference_payload(fields: dict[str, Any], stats: Counter[str]) -> dict[str, Any]:
    """``aitrace.InferenceRecord``: numeric features to ``features``, text ones to ``categorical_features``."""
    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    for key, value in (fields.get("features") or {}).items():
        if value is None:
            numeric[str(key)] = math.nan  # a missing input is data for data-quality checks
        elif isinstance(value, str):
            categorical[str(key)] = value if type(value) is str else str.__str__(value)
        else:
            number = as_float(value)
            if number is None:
                categorical[str(key)] = text_value(value, stats)
            else:
                numeric[str(key)] = number
    latency = as_float(fields.get("latency_ms"))
    if latency is None:
        stats["rejected_bad_latency"] += 1
        latency = math.nan
    status = "error" if fields.get("error") is not None or fields.get("status") == "error" else "ok"
    return {
        "request_id": text_value(fields["request_id"], stats),
        "model_name": model_name(fields["model_name"], stats),
        "model_version": optional_text(fields.get("model_version"), stats),
        "latency_ms": latency,
        "status": status,
        "error": optional_text(fields.get("error"), stats),
        "features": numeric,
        "categorical_features": categorical,
        "inputs_summary": optional_text(fields.get("inputs_summary"), stats),
        "prediction": optional_text(fields.get("prediction"), stats),
        "confidence": as_float(fields.get("confidence")),
        "feature_version": optional_text(fields.get("feature_version"), stats),
    }


def ground_truth_payload(fields: dict[str, Any], stats: Counter[str]) -> dict[str, Any]:
    """``aitrace.GroundTruth``."""
    return {
        "request_id": text_value(fields["request_id"], stats),
        "model_name": model_name(fields["model_name"], stats),
        "label": text_value(fields["label"], stats),
    }


def resource_payload(fields: dict[str, Any], stats: Counter[str]) -> dict[str, Any]:
    """``aitrace.ResourceSample`` (already built by :mod:`aitrace.producers.resources`)."""
    return fields


def span_payload(fields: dict[str, Any], stats: Counter[str]) -> dict[str, Any]:
    """``aitrace.Span``."""
    return {
        "name": text_value(fields["name"], stats),
        "kind": str(fields.get("kind", "internal")),
        "start_time": int(fields["start_time"]),
        "duration_us": int(fields["duration_us"]),
        "status": fields.get("status", "ok"),
        "error_type": fields.get("error_type"),
        "error_message": optional_text(fields.get("error_message"), stats),
        "attributes": text_map(fields.get("attributes"), stats),
    }


PAYLOAD_BUILDERS = {
    LOG: log_payload,
    RUN: run_payload,
    DATA: data_payload,
    INFERENCE: inference_payload,
    GROUND_TRUTH: ground_truth_payload,
    RESOURCE: resource_payload,
    SPAN: span_payload,
}


def config_fields(config: Any) -> dict[Any, Any]:
    """A run's config as a dict: a mapping (or pairs) as it is; a dataclass, a pydantic model or an
    ``argparse.Namespace`` (what training scripts hold their settings in) by its fields."""
    if isinstance(config, argparse.Namespace | types.SimpleNamespace):
        return dict(vars(config))
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    dump = getattr(config, "model_dump", None)  # pydantic 2
    return dict(dump() if callable(dump) and not isinstance(config, type) else config)


def library_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of the ML libraries this process has imported (never imports one itself)."""
    versions = {"python": sys.version.split()[0]}
    for name in (*_LIBRARIES, *extra):
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if version is not None:
            versions[name] = str(version)
    return versions
