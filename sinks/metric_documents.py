"""Metric documents that do not come one event at a time: columnar MetricBlock points and per-window rollups.

Both use the name/value layout of a TrainingMetric document (see :mod:`aitrace.sinks.documents`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aitrace.schemas.metric_block import MetricBlock
from aitrace.sinks.ecs_envelope import (
    EVENTS,
    Action,
    Doc,
    DocumentError,
    IngestWindow,
    bulk_action,
    envelope_fields,
    index_name,
    nonfinite_label,
    num,
    prune,
    require,
    reroute,
    with_meta,
)


def metric_block_actions(
    block: MetricBlock,
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
    require(block_context(block), "trace_id", "span_id", "service", what="MetricBlock")
    if not block.block_id:
        raise DocumentError("MetricBlock lacks required field(s) block_id")
    steps, times, epochs = block.steps, block.times, block.epochs
    if steps.shape != times.shape:
        raise DocumentError(f"MetricBlock {block.block_id!r}: {len(steps)} steps but {len(times)} times")
    ctx = block_context(block)
    actions: list[Action] = []
    for name, values in block.series.items():
        if series is not None and name not in series:
            continue
        if values.shape != steps.shape:
            raise DocumentError(f"MetricBlock {block.block_id!r}: series {name!r} has {len(values)} values")
        finite = np.isfinite(values)
        for i, value in enumerate(values.tolist()):
            metric = {"name": name, "step": int(steps[i]), "split": block.split}
            if finite[i]:
                metric["value"] = value
            else:
                metric["nonfinite"] = nonfinite_label(value)
            if epochs.size and epochs[i] >= 0:
                metric["epoch"] = int(epochs[i])
            doc = _metric_doc(ctx, int(times[i]), f"{block.block_id}:{i}", metric)
            action = bulk_action(index_name(prefix, EVENTS, int(times[i])), f"{block.block_id}:{i}:{name}", doc)
            skew = window.skew_us(int(times[i])) if window is not None else 0
            actions.append(reroute(action, prefix, window, skew) if skew and window else action)
    return actions


def block_context(block: MetricBlock) -> dict[str, Any]:
    """The envelope fields of a MetricBlock (what every point document repeats)."""
    return {k: getattr(block, k) for k in _BLOCK_CONTEXT}


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
    doc = with_meta(envelope_fields(event), "aitrace.TrainingMetric")
    doc["aitrace"]["metric"] = metric
    return prune(doc)


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
    first: float | None = None,
) -> Action:
    """One per-window rollup document of a metric series (name/value layout, value = mean).

    ``count``, ``minimum``, ``maximum``, ``mean``, ``first`` and ``last`` describe the finite points;
    ``nonfinite`` counts the NaN/Inf points of the window (a window of only those has
    ``count`` 0 and no value).

    ``_id`` = ``rollup:<trace_id>:<run_id>:<split>:<name>:<window_us>:<window_start_us>``: a
    window recomputed after redelivery overwrites itself. The run id is in it: the runs of a sweep
    logged inside one driver's span share its trace, and each overwrote the others' windows
    (/work/rev-ae D3: of two trials, one had no loss document).
    """
    run = ctx.get("run_id") or ""
    doc_id = f"rollup:{ctx.get('trace_id')}:{run}:{split or ''}:{name}:{window_us}:{window_start_us}"
    metric = {
        "name": name,
        "value": num(mean),
        "split": split,
        "rollup": True,
        "count": int(count),
        "nonfinite_count": int(nonfinite),
        "min": num(minimum),
        "max": num(maximum),
        "first": num(first),
        "last": num(last),
        "step": int(last_step),
        "first_step": int(first_step),
        "last_step": int(last_step),
        "window_us": int(window_us),
    }
    doc = _metric_doc(ctx, window_start_us, doc_id, metric)
    doc["event"]["duration"] = int(window_us) * 1000
    return bulk_action(index_name(prefix, EVENTS, window_start_us), doc_id, doc)


__all__ = ["block_context", "metric_block_actions", "rollup_action"]
