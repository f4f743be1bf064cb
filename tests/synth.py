"""Synthetic, schema-valid batches for the processors' tests and benchmark.

Each builder returns plain dicts in the shape of the Avro schemas (times in int
microseconds, payloads as ``(record_name, dict)``); :func:`encode` turns a batch into the
bytes a producer would send (single-object encoding).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from aitrace.schemas.codec import AvroSerializer

_BATCH = AvroSerializer("aitrace.Batch")


def trace_id() -> str:
    return os.urandom(16).hex()


def span_id() -> str:
    return os.urandom(8).hex()


def now_us() -> int:
    return int(time.time() * 1_000_000)


def encode(batch: dict[str, Any]) -> bytes:
    return _BATCH(batch)


def event(
    payload: tuple[str, dict[str, Any]],
    *,
    trace: str,
    span: str | None = None,
    parent: str | None = None,
    service: str = "svc",
    time_us: int | None = None,
    event_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id or os.urandom(10).hex(),
        "time": time_us if time_us is not None else now_us(),
        "trace_id": trace,
        "span_id": span or span_id(),
        "parent_span_id": parent,
        "service": service,
        "service_version": None,
        "environment": "test",
        "host": "h1",
        "pid": 1,
        "run_id": run_id,
        "sampled": True,
        "labels": {},
        "payload": payload,
    }


def span(name: str, start_us: int, duration_us: int, status: str = "ok", error: str | None = None) -> tuple[str, dict]:
    return (
        "aitrace.Span",
        {
            "name": name,
            "kind": "internal",
            "start_time": start_us,
            "duration_us": duration_us,
            "status": status,
            "error_type": "Error" if error else None,
            "error_message": error,
            "attributes": {},
        },
    )


def log(level: str, message: str) -> tuple[str, dict]:
    return ("aitrace.LogRecord", {"level": level, "message": message, "logger": "t", "attributes": {}})


def inference(
    request_id: str,
    model: str,
    latency_ms: float,
    *,
    status: str = "ok",
    confidence: float | None = 0.9,
    prediction: str | None = "1",
    features: dict[str, float] | None = None,
) -> tuple[str, dict]:
    return (
        "aitrace.InferenceRecord",
        {
            "request_id": request_id,
            "model_name": model,
            "model_version": "1",
            "latency_ms": latency_ms,
            "status": status,
            "error": "boom" if status == "error" else None,
            "features": features or {},
            "categorical_features": {},
            "inputs_summary": None,
            "prediction": prediction,
            "confidence": confidence,
        },
    )


def ground_truth(request_id: str, model: str, label: str) -> tuple[str, dict]:
    return ("aitrace.GroundTruth", {"request_id": request_id, "model_name": model, "label": label})


def data_stats(dataset: str, stage: str, features: list[dict[str, Any]], class_counts: dict[str, int]) -> tuple:
    return (
        "aitrace.DataStats",
        {
            "stage": stage,
            "dataset": dataset,
            "batch": None,
            "row_count": 1000,
            "rows_dropped": 0,
            "features": features,
            "label": "y",
            "class_counts": class_counts,
            "ingest_delay_ms": None,
        },
    )


def feature(name: str, *, mean: float, variance: float = 1.0, missing: int = 0, categories: dict | None = None) -> dict:
    return {
        "name": name,
        "dtype": "categorical" if categories else "numeric",
        "count": 1000,
        "missing": missing,
        "mean": mean,
        "variance": variance,
        "min": None,
        "max": None,
        "quantiles": {},
        "histogram_edges": [],
        "histogram_counts": [],
        "categories": categories or {},
    }


def metric_block(
    *,
    trace: str,
    run_id: str,
    start_step: int,
    series: dict[str, np.ndarray],
    start_us: int | None = None,
    step_us: int = 1000,
    block_id: str | None = None,
    split: str | None = None,
) -> dict[str, Any]:
    """A columnar block: one point per step, ``step_us`` apart."""
    n = len(next(iter(series.values())))
    t0 = start_us if start_us is not None else now_us()
    return {
        "block_id": block_id or os.urandom(8).hex(),
        "trace_id": trace,
        "span_id": span_id(),
        "parent_span_id": None,
        "service": "trainer",
        "service_version": None,
        "environment": "test",
        "host": "h1",
        "pid": 1,
        "run_id": run_id,
        "split": split,
        "steps": list(range(start_step, start_step + n)),
        "times": (t0 + np.arange(n, dtype=np.int64) * step_us).tolist(),
        "epochs": [],
        "series": [{"name": k, "values": np.asarray(v, dtype=np.float64).tolist()} for k, v in series.items()],
    }


def batch(
    events: Sequence[dict[str, Any]] = (), blocks: Sequence[dict[str, Any]] = (), batch_id: str | None = None
) -> dict:
    return {"batch_id": batch_id or os.urandom(8).hex(), "events": list(events), "metric_blocks": list(blocks)}
