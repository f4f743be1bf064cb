"""One ``aitrace.InferenceBlock`` read back as the per-record events it stands for.

The producer sends a trace's inference records as columns (``schemas/aitrace.InferenceBlock.avsc``,
the layout of :mod:`aitrace.schemas.block_shape`): request ids and latencies one per record,
model names, versions, statuses, predictions and feature versions as tables, numeric and
categorical features one column per name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aitrace.schemas.block_shape import BlockShape, block_events

INFERENCE_RECORD = "aitrace.InferenceRecord"
INFERENCE_SHAPE = BlockShape(
    kind="inference",
    schema="aitrace.InferenceBlock",
    record=INFERENCE_RECORD,
    rows=("request_id", "latency_ms"),
    optional_rows=("confidence", "error", "inputs_summary"),
    tables=(
        ("model_name", False),
        ("status", False),
        ("model_version", True),
        ("prediction", True),
        ("feature_version", True),
    ),
    column_maps=("features", "categorical_features"),
    numeric_maps=("features",),
)


def inference_events(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of a decoded inference block, as fastavro decodes ``aitrace.Event`` s; ValueError when malformed."""
    return block_events(INFERENCE_SHAPE, block)
