"""One ``aitrace.LogBlock`` read back as the per-record events it stands for.

The producer sends a trace's log records as columns (``schemas/aitrace.LogBlock.avsc``): times
one per record, spans, levels, messages and loggers as tables of distinct values with an index
per record, attributes as one column per name (the layout of :mod:`aitrace.schemas.block_shape`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aitrace.schemas.block_shape import BlockShape, block_events

LOG_RECORD = "aitrace.LogRecord"
ERROR_COLUMNS = ("error_type", "error_message", "stack_trace")
LOG_SHAPE = BlockShape(
    kind="log",
    schema="aitrace.LogBlock",
    record=LOG_RECORD,
    optional_rows=ERROR_COLUMNS,
    tables=(("level", False), ("message", False), ("logger", True)),
    column_maps=("attributes",),
)


def log_events(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of a decoded log block, shaped as fastavro decodes an ``aitrace.Event``; ValueError when malformed."""
    return block_events(LOG_SHAPE, block)
