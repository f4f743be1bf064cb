"""Event builders: from what the caller handed over to the Avro shapes of ``schemas/``.

The caller's thread only puts a small tuple on the queue (see :mod:`aitrace.producers.client`); the
exporter thread calls these functions to build ``aitrace.Event`` payloads and columnar
``aitrace.MetricBlock`` s. Bad values never raise here: a value that does not fit is turned
into a string (counted as ``stringified``) or left out (counted as ``rejected_*``), and the
exporter logs it.

:func:`~aitrace.producers.summaries.summarize` builds the ``aitrace.FeatureStats`` dicts that
``client.data_stats`` carries.
"""

from __future__ import annotations

import math
import sys
import traceback
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

# Kinds of queued items; the tuple layout of each is documented on the client.
METRIC, LOG, RUN, DATA, INFERENCE, GROUND_TRUTH, RESOURCE, SPAN = range(8)

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
    if isinstance(level, int):
        return LEVELS[min(max(level // 10 - 1, 0), 4)]
    text = str(level).strip().lower()
    text = _LEVEL_ALIASES.get(text, text)
    return text if text in LEVELS else "info"


def is_urgent_level(level: str) -> bool:
    """Errors and worse leave at once instead of waiting out the linger."""
    return level in ("error", "critical")


def text_value(value: Any, stats: Counter[str]) -> str:
    """A value as text for a ``map<string>`` field: strings as they are, the rest as JSON.

    Objects JSON cannot express are written with ``repr`` and counted as ``stringified``.
    """
    if isinstance(value, str):
        return value
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


def optional_text(value: Any, stats: Counter[str]) -> str | None:
    """None stays None; anything else becomes text."""
    return None if value is None else text_value(value, stats)


def as_float(value: Any) -> float | None:
    """A number as float (numpy scalars, 0-d tensors included); None when it is not one."""
    if isinstance(value, float):
        return value
    if isinstance(value, bool | int):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError, RuntimeError):
        return None


def as_int(value: Any) -> int | None:
    """An integer or None (bools and floats with a fraction are not steps)."""
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


# -- payloads of single events


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
        payload["error_message"] = text_value(str(exc), stats)
        payload["stack_trace"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return payload


def run_payload(fields: dict[str, Any], stats: Counter[str]) -> dict[str, Any]:
    """``aitrace.RunLifecycle``; unknown status names become UNKNOWN."""
    status = str(fields.get("status", "UNKNOWN")).upper()
    seed = as_int(fields.get("seed"))
    return {
        "status": status if status in RUN_STATUSES else "UNKNOWN",
        "config": text_map(flatten(fields.get("config") or {}), stats),
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
        "histogram_edges": [float(x) for x in raw.get("histogram_edges") or ()],
        "histogram_counts": [int(x) for x in raw.get("histogram_counts") or ()],
        "categories": {str(k): int(v) for k, v in (raw.get("categories") or {}).items()},
    }


def inference_payload(fields: dict[str, Any], stats: Counter[str]) -> dict[str, Any]:
    """``aitrace.InferenceRecord``: numeric features to ``features``, text ones to ``categorical_features``."""
    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    for key, value in (fields.get("features") or {}).items():
        if value is None:
            numeric[str(key)] = math.nan  # a missing input is data for data-quality checks
        elif isinstance(value, str):
            categorical[str(key)] = value
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
        "model_name": text_value(fields["model_name"], stats),
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
        "model_name": text_value(fields["model_name"], stats),
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


class MetricBlockBuilder:
    """The columns of one metric block: points of one (trace, span, split, metric names).

    A new set of metric names starts a new block, so NaN in a block is always a value the
    caller sent (data), never a filler for an absent metric.
    """

    __slots__ = ("columns", "epochs", "names", "parent_span_id", "span_id", "split", "steps", "times", "trace_id")

    def __init__(self, ctx: Any, split: str | None, names: tuple) -> None:
        self.trace_id = ctx.trace_id
        self.span_id = ctx.span_id
        self.parent_span_id = ctx.parent_span_id
        self.split = split
        self.names = names
        self.steps: list[int] = []
        self.times: list[int] = []
        self.epochs: list[int] = []
        self.columns: list[list[float]] = [[] for _ in names]

    def __len__(self) -> int:
        return len(self.steps)

    def build(self, block_id: str, envelope: dict[str, Any], lo: int = 0, hi: int | None = None) -> dict[str, Any]:
        """The ``aitrace.MetricBlock`` of rows ``lo:hi``."""
        hi = len(self.steps) if hi is None else hi
        epochs = self.epochs[lo:hi]
        return {
            "block_id": block_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "service": envelope["service"],
            "service_version": envelope["service_version"],
            "environment": envelope["environment"],
            "host": envelope["host"],
            "pid": envelope["pid"],
            "run_id": envelope["run_id"],
            "split": self.split,
            "steps": self.steps[lo:hi],
            "times": self.times[lo:hi],
            "epochs": [] if all(e == -1 for e in epochs) else epochs,
            "series": [{"name": n, "values": c[lo:hi]} for n, c in zip(self.names, self.columns, strict=True)],
        }


def metric_blocks(items: list[tuple], stats: Counter[str]) -> list[MetricBlockBuilder]:
    """Columnar blocks from queued metric tuples ``(METRIC, time_us, ctx, values, step, epoch, split)``.

    The common case (int steps, numeric values) is a few list comprehensions per block: the
    transposition into columns runs in C (``zip``), which keeps the exporter's share of the GIL
    small. A block with anything unusual is rebuilt row by row, where bad values are left out
    and counted.
    """
    rows_by_key: dict[tuple, list[tuple]] = {}
    for item in items:
        key = (item[2].span_id, item[6], *item[3])  # span, split, metric names
        rows = rows_by_key.get(key)
        if rows is None:
            rows_by_key[key] = [item]
        else:
            rows.append(item)
    out: list[MetricBlockBuilder] = []
    for key, rows in rows_by_key.items():
        names = key[2:]
        if not names:
            stats["rejected_empty_metric"] += len(rows)
            continue
        try:
            out.append(_fast_block(rows, key[1], names))
        except (TypeError, ValueError, OverflowError, RuntimeError):
            out.extend(_slow_blocks(rows, stats))
    return out


_INT = {int}
_FLOAT = {float}


def _fast_block(rows: list[tuple], split: str | None, names: tuple) -> MetricBlockBuilder:
    steps = [r[4] for r in rows]
    if set(map(type, steps)) != _INT:
        raise TypeError("steps that are not int")
    epochs = [r[5] for r in rows]
    block = MetricBlockBuilder(rows[0][2], split, names)
    block.steps = steps
    block.times = [r[1] for r in rows]
    no_epochs = epochs.count(None) == len(rows)
    block.epochs = [-1] * len(rows) if no_epochs else [-1 if e is None else int(e) for e in epochs]
    columns = [[r[3][name] for r in rows] for name in names]
    for i, column in enumerate(columns):
        if set(map(type, column)) != _FLOAT:
            columns[i] = [float(v) for v in column]  # ints, numpy scalars; anything else raises
    block.columns = columns
    return block


def _slow_blocks(rows: list[tuple], stats: Counter[str]) -> list[MetricBlockBuilder]:
    """Row by row: values that are not numbers are left out (counted); bad steps drop the row."""
    blocks: dict[tuple, MetricBlockBuilder] = {}
    for _kind, time_us, ctx, values, step, epoch, split in rows:
        names, floats = metric_point(values, stats)
        step_i = as_int(step)
        if step_i is None or (isinstance(step, bool | float) and step != step_i):
            stats["rejected_bad_step"] += 1
            continue
        if not names:
            stats["rejected_empty_metric"] += 1
            continue
        block = blocks.get(names)
        if block is None:
            block = blocks[names] = MetricBlockBuilder(ctx, split, names)
        epoch_i = as_int(epoch)
        block.steps.append(step_i)
        block.times.append(time_us)
        block.epochs.append(-1 if epoch_i is None else epoch_i)
        for column, value in zip(block.columns, floats, strict=True):
            column.append(value)
    return list(blocks.values())


def metric_point(values: Mapping[Any, Any], stats: Counter[str]) -> tuple[tuple, list[float]]:
    """``(names, floats)`` of one ``client.metric`` call; values that are not numbers are left out and counted.

    NaN and Inf are numbers: they are kept (a diverging loss is the point of logging it).
    """
    kept_names = []
    floats = []
    for k, v in values.items():
        number = as_float(v)
        if number is None:
            stats["rejected_non_numeric_metric"] += 1
            continue
        kept_names.append(k)
        floats.append(number)
    return tuple(kept_names), floats


def library_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of the ML libraries this process has imported (never imports one itself)."""
    versions = {"python": sys.version.split()[0]}
    for name in (*_LIBRARIES, *extra):
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if version is not None:
            versions[name] = str(version)
    return versions
