"""Ground-truth blocks: a trace's queued ``client.ground_truth`` labels as the columns of one block.

The block is an ``aitrace.GroundTruthBlock``: request ids a column, model names and labels tables
of distinct values; the shared machinery (processor chain, sampling, redaction, splitting) is
:mod:`aitrace.producers.blocks`. Sampling keeps nothing of an unsampled trace but what its labels
mark as an anomaly, as for single events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from aitrace.producers import blocks
from aitrace.producers import events as ev
from aitrace.producers.blocks import Block
from aitrace.schemas.ground_truth_block import GROUND_TRUTH_SHAPE

_NAMES = ("request_id", "model_name", "label")


def block_chain(processors: list[Callable[[Block], Any]]) -> list[Callable[[Block], Any]] | None:
    """The chain to run on ground-truth blocks, or None when a processor reads single events only."""
    return blocks.block_chain(processors, GROUND_TRUTH_SHAPE, _nothing)


def _nothing(block: Block) -> Iterator[dict[str, Any]]:
    """Sampling reads nothing of a label but the block's envelope labels."""
    return ({} for _ in block["time"])


def halves(block: Block) -> list[Block]:
    """A ground-truth block's records in two blocks."""
    return blocks.halves(GROUND_TRUTH_SHAPE, block)


def ground_truth_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    """The columns of queued labels; values made text as :func:`events.ground_truth_payload` makes them."""
    values = blocks.flat_columns(rows, ev.GROUND_TRUTH_FIELDS)
    if values is not None:  # as the client queues them
        ids, models, labels = (values[name] for name in _NAMES)
    else:
        rows = blocks.unflattened(rows)
        fields = blocks.row_fields(rows)
        try:
            ids, models, labels = ([f[name] for f in fields] for name in _NAMES)
        except (KeyError, TypeError):
            rows = [(k, t, c, ev.fields_dict(k, f), u) for k, t, c, f, u in rows]
            rows, fields = blocks.built(rows, ev.ground_truth_payload, stats)
            ids, models, labels = ([f[name] for f in fields] for name in _NAMES)
    ids, models, labels = (_texts(c, stats) for c in (ids, models, labels))
    columns = {"time": blocks.row_times(rows), **blocks.span_columns(blocks.row_contexts(rows))}
    columns["request_id"] = ids
    columns["model_name"], columns["model_name_index"] = blocks.interned(ev.model_names(models, stats))
    columns["label"], columns["label_index"] = blocks.interned(labels)
    return columns


def _texts(values: list[Any], stats: Counter[str]) -> list[Any]:
    """Each value as :func:`events.text_value` writes it (None too: ``"null"``), by C loops when they are texts or
    numbers (labels: a JSON call for the column, not one per record)."""
    kinds = set(map(type, values))
    if kinds <= {str}:
        return values
    if type(None) not in kinds:
        return blocks.texts(values, stats)
    return [v if type(v) is str else ev.text_value(v, stats) for v in values]
