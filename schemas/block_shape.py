"""The layout shared by the columnar event blocks (``aitrace.LogBlock``, ``aitrace.InferenceBlock``).

A block holds the records of one trace from one process. Every block has the client's envelope,
``time`` (one per record) and the span table (``span_id``, ``parent_span_id``, ``span_index``);
each field of the record it stands for is a column of the same name, in one of four forms
(:class:`BlockShape`): one value per record, a column that is empty or one per record, a table of
distinct values with an index column ``<name>_index`` (-1: null, when optional), or a map of
columns (one per attribute or feature name, null where a record has none). Record ``i`` reads
back as the ``aitrace.Event`` ``<block_id>:<i>`` carrying that record, so everything after decoding
is the same as for records sent one event at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from aitrace import schemas


@dataclass(frozen=True)
class BlockShape:
    """Which column form each field of a block's record takes (see the module doc)."""

    kind: str  # "log", "inference": names the block in errors and the ``accepts_<kind>_blocks`` flag
    schema: str
    record: str
    rows: tuple[str, ...] = ()
    optional_rows: tuple[str, ...] = ()
    tables: tuple[tuple[str, bool], ...] = ()  # (table, may its index column be empty)
    column_maps: tuple[str, ...] = ()
    numeric_maps: tuple[str, ...] = ()  # those of column_maps that hold numbers

    @property
    def fields(self) -> tuple[str, ...]:
        """The record's fields in schema order (each is a column of the block)."""
        return tuple(f["name"] for f in schemas.raw(self.record)["fields"])


def rows(shape: BlockShape, block: Mapping[str, Any]) -> int:
    """Records in the block; raises ValueError when its columns do not line up or an index points nowhere."""
    n = len(block["time"])
    what = f"{shape.kind} block {block['block_id']!r}"
    indexed = [("span_index", "span_id", False), *((f"{t}_index", t, o) for t, o in shape.tables)]
    for index, table, optional in indexed:
        column = block.get(index) or []
        if optional and not column:
            continue
        if len(column) != n:
            raise ValueError(f"{what}: {index} has {len(column)} entries, time has {n}")
        lowest = -1 if optional else 0
        if n and (min(column) < lowest or max(column) >= len(block[table])):
            raise ValueError(f"{what}: {index} points outside {table} ({len(block[table])} entries)")
    parents = block.get("parent_span_id") or []
    if parents and len(parents) != len(block["span_id"]):
        raise ValueError(f"{what}: parent_span_id has {len(parents)} entries, span_id has {len(block['span_id'])}")
    for name in shape.rows:
        if len(block[name]) != n:
            raise ValueError(f"{what}: {name} has {len(block[name])} entries, time has {n}")
    for name in shape.optional_rows:
        column = block.get(name) or []
        if column and len(column) != n:
            raise ValueError(f"{what}: {name} has {len(column)} entries, not 0 or {n}")
    for name in shape.column_maps:
        for key, values in (block.get(name) or {}).items():
            if len(values) != n:
                raise ValueError(f"{what}: {name} {key!r} has {len(values)} values, not {n}")
    labels = len(block.get("labels") or ())
    if n * labels > MAX_LABEL_VALUES:
        raise ValueError(f"{what}: {labels} labels on each of {n} records, over {MAX_LABEL_VALUES:,} label values")
    return n


# Every record of a block carries the block's labels (in its event and its document): 8,000 labels on 8,000 rows,
# a 143 KB record, took the worker 1.75 GB (a review). A client's labels are a few tags set once.
MAX_LABEL_VALUES = 250_000


def _per_record(columns: Mapping[str, Sequence[Any]], n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, values in columns.items():
        for attrs, value in zip(out, values, strict=True):
            if value is not None:
                attrs[key] = value
    return out


def _field_columns(shape: BlockShape, block: Mapping[str, Any], n: int) -> dict[str, Iterable[Any]]:
    """Each record field as a column of ``n`` values (or an endless null)."""
    out: dict[str, Iterable[Any]] = {}
    for name in shape.rows:
        out[name] = block[name]
    for name in shape.optional_rows:
        out[name] = block.get(name) or repeat(None, n)
    for name, _ in shape.tables:
        index = block.get(f"{name}_index") or []
        table = [*block.get(name, ()), None]  # index -1 (null) reads the last slot
        out[name] = [table[i] for i in index] if index else repeat(None, n)
    for name in shape.column_maps:
        out[name] = _per_record(block.get(name) or {}, n)
    return out


def block_events(
    shape: BlockShape, block: Mapping[str, Any], nested: Mapping[str, Iterable[Any]] | None = None
) -> list[dict[str, Any]]:
    """The events of a decoded block, shaped as fastavro decodes an ``aitrace.Event``; ValueError when malformed.

    ``nested``: the fields the shape's forms do not cover (a data-stats block's features), one value per record.
    """
    n = rows(shape, block)
    block_id, trace_id = block["block_id"], block["trace_id"]
    envelope = {
        "service": block["service"],
        "service_version": block.get("service_version"),
        "environment": block.get("environment"),
        "host": block.get("host"),
        "pid": block.get("pid"),
        "run_id": block.get("run_id"),
        "sampled": block.get("sampled", True),
    }
    labels = block.get("labels") or {}
    span_ids = block["span_id"]
    parents = block.get("parent_span_id") or [None] * len(span_ids)
    spans = [(span_ids[i], parents[i]) for i in block["span_index"]]
    fields = shape.fields
    columns = _field_columns(shape, block, n)
    columns.update(nested or {})
    payloads = zip(*(columns[f] for f in fields), strict=False)  # an endless null column stops with the rest
    return [
        {
            "event_id": f"{block_id}:{i}",
            "time": time,
            "trace_id": trace_id,
            "span_id": span[0],
            "parent_span_id": span[1],
            **envelope,
            "labels": dict(labels),
            "payload": (shape.record, dict(zip(fields, values, strict=True))),
        }
        for i, (time, span, values) in enumerate(zip(block["time"], spans, payloads, strict=False))
    ]
