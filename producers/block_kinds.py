"""The event kinds that leave the exporter as columnar blocks, and how each is built, processed, split and encoded.

One :class:`BlockKind` per kind whose every processor reads blocks (:func:`block_kinds`): its
column builder (``<kind>_blocks.<kind>_columns``), its processor chain (``block_chain``), its
halves for a record above ``max_record_bytes`` and its serializers (the configured wire format,
and single-object encoding for when the schema registry cannot be reached).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from aitrace.producers import data_stats_blocks, ground_truth_blocks, inference_blocks, log_blocks, span_blocks
from aitrace.producers import events as ev
from aitrace.schemas.codec import AvroSerializer

Processor = Callable[[dict[str, Any]], "dict[str, Any] | None"]


class BlockKind:
    """How one event kind leaves as blocks: its columns, processor chain, halves and serializers."""

    __slots__ = ("chain", "columns", "halves", "plain", "record_bytes", "serializer")

    def __init__(self, module: Any, columns: Any, chain: list[Processor], schema: str, registry: Any) -> None:
        self.columns: Callable[[list[ev.Queued], Counter[str]], dict[str, Any]] = columns
        self.halves: Callable[[dict[str, Any]], list[dict[str, Any]]] = module.halves
        self.record_bytes: Callable[[ev.Queued], int] | None = getattr(module, "record_bytes", None)
        self.chain = chain
        self.serializer = AvroSerializer(schema, registry=registry, record_subject=True)
        self.plain = AvroSerializer(schema)

    def rows_per_block(self, rows: list[ev.Queued], most: int, max_record_bytes: int) -> int:
        """``most``, or fewer when this kind's records are so large (data statistics with histograms) that ``most``
        of them would exceed ``max_record_bytes``.

        Splitting an encoded block in halves until it fits costs an encode and a copy per level; the first
        record's size (the kind's ``record_bytes``, an estimate) sets the block's length up front instead.
        """
        if self.record_bytes is None or not rows:
            return most
        return max(1, min(most, int(max_record_bytes * 0.8) // max(1, self.record_bytes(rows[0]))))


def block_kinds(processors: list[Processor], registry: Any) -> dict[int, BlockKind]:
    """The kinds that leave as blocks: those whose every processor reads blocks."""
    out = {}
    for kind, module, columns, schema in (
        (ev.LOG, log_blocks, log_blocks.log_columns, "aitrace.LogBlock"),
        (ev.INFERENCE, inference_blocks, inference_blocks.inference_columns, "aitrace.InferenceBlock"),
        (ev.SPAN, span_blocks, span_blocks.span_columns, "aitrace.SpanBlock"),
        (ev.GROUND_TRUTH, ground_truth_blocks, ground_truth_blocks.ground_truth_columns, "aitrace.GroundTruthBlock"),
        (ev.DATA, data_stats_blocks, data_stats_blocks.data_stats_columns, "aitrace.DataStatsBlock"),
    ):
        chain = module.block_chain(processors)
        if chain is not None:
            out[kind] = BlockKind(module, columns, chain, schema, registry)
    return out
