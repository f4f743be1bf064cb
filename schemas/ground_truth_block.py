"""One ``aitrace.GroundTruthBlock`` read back as the per-record events it stands for.

The producer sends a trace's ground-truth labels as columns (``schemas/aitrace.GroundTruthBlock.avsc``,
the layout of :mod:`aitrace.schemas.block_shape`): request ids one per record, model names and
labels as tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aitrace.schemas.block_shape import BlockShape, block_events

GROUND_TRUTH_SHAPE = BlockShape(
    kind="ground_truth",
    schema="aitrace.GroundTruthBlock",
    record="aitrace.GroundTruth",
    rows=("request_id",),
    tables=(("model_name", False), ("label", False)),
)


def ground_truth_events(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of a decoded ground-truth block, as fastavro decodes events; ValueError when malformed."""
    return block_events(GROUND_TRUTH_SHAPE, block)
