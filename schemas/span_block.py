"""One ``aitrace.SpanBlock`` read back as the per-record events it stands for.

The producer sends a trace's finished spans as columns (``schemas/aitrace.SpanBlock.avsc``, the
layout of :mod:`aitrace.schemas.block_shape`): start times and durations one per record, names,
kinds and statuses as tables, attributes one column per name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aitrace.schemas.block_shape import BlockShape, block_events

SPAN_RECORD = "aitrace.Span"
SPAN_SHAPE = BlockShape(
    kind="span",
    schema="aitrace.SpanBlock",
    record=SPAN_RECORD,
    rows=("start_time", "duration_us"),
    optional_rows=("error_type", "error_message"),
    tables=(("name", False), ("kind", False), ("status", False)),
    column_maps=("attributes",),
)


def span_events(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of a decoded span block, as fastavro decodes ``aitrace.Event`` s; ValueError when malformed."""
    return block_events(SPAN_SHAPE, block)
