"""The inference charts of ``aitrace report``: latency percentiles and error rate per time bucket, per model."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from aitrace.infra.report_data import Chart, Marker, Series
from aitrace.infra.report_fetch import Doc, _ms
from aitrace.sinks.hit_rows import get

PERCENTILES = (50, 95, 99)
BUCKET_CHOICES_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
MAX_BUCKETS = 40


def _bucket_seconds(span_ms: float) -> float:
    for choice in BUCKET_CHOICES_S:
        if span_ms / (choice * 1000) <= MAX_BUCKETS:
            return choice
    return BUCKET_CHOICES_S[-1]


@dataclass
class Buckets:
    starts_ms: list[float]
    percentiles: dict[int, list[float | None]]
    error_rate: list[float | None]
    requests: list[int]


def latency_buckets(docs: Sequence[Doc]) -> Buckets:
    """Per time bucket: latency percentiles of the answered requests, error rate of all requests."""
    rows = [
        (t, get(d, "aitrace.inference.latency_ms"), get(d, "aitrace.inference.status") == "error")
        for d in docs
        if (t := _ms(get(d, "@timestamp"))) is not None
    ]
    if not rows:
        return Buckets([], {p: [] for p in PERCENTILES}, [], [])
    start = min(r[0] for r in rows)
    width = _bucket_seconds(max(r[0] for r in rows) - start) * 1000
    groups: dict[int, list[tuple[float | None, bool]]] = defaultdict(list)
    for t, latency, error in rows:
        groups[int((t - start) // width)].append((latency, error))
    out = Buckets([], {p: [] for p in PERCENTILES}, [], [])
    for index in range(max(groups) + 1):
        members = groups.get(index, [])
        out.starts_ms.append(start + index * width)
        ok = [lat for lat, error in members if not error and lat is not None]
        for p in PERCENTILES:
            out.percentiles[p].append(float(np.percentile(ok, p)) if ok else None)
        out.requests.append(len(members))
        out.error_rate.append(sum(error for _, error in members) / len(members) if members else None)
    return out


def inference_charts(docs: Sequence[Doc], alerts: Sequence[Doc]) -> list[Chart]:
    """Latency percentiles and error rate over time for each model, alerts marked at first_seen."""
    charts = []
    models = sorted({m for d in docs if (m := get(d, "aitrace.inference.model"))})
    for model in models:
        buckets = latency_buckets([d for d in docs if get(d, "aitrace.inference.model") == model])
        markers = [
            Marker(t, str(get(a, "aitrace.alert.title")), get(a, "aitrace.alert.severity", "warning"))
            for a in alerts
            if get(a, "aitrace.alert.model") == model
            and get(a, "aitrace.alert.kind") != "drift"
            and (t := _ms(get(a, "@timestamp"))) is not None
        ]
        latency = [
            Series(f"p{p}", [[t, v] for t, v in zip(buckets.starts_ms, buckets.percentiles[p], strict=True)])
            for p in PERCENTILES
        ]
        errors = [Series("error rate", [[t, v] for t, v in zip(buckets.starts_ms, buckets.error_rate, strict=True)])]
        charts.append(Chart(f"latency-{model}", f"{model}: latency", "time", "ms", latency, markers))
        charts.append(Chart(f"errors-{model}", f"{model}: error rate", "time", "fraction of requests", errors, markers))
    return charts
