"""One ``aitrace.DataStatsBlock`` read back as the per-record events it stands for.

The producer sends a trace's data statistics as columns (``schemas/aitrace.DataStatsBlock.avsc``,
the layout of :mod:`aitrace.schemas.block_shape`): stages, datasets and label names as tables,
counts one per record, class counts one column per class. The records' features are one more
table (``aitrace.FeatureColumns``): one row per feature, record after record, with quantiles one
column per level, histograms concatenated with a length per row, and categories one list of
(row, count) pairs per category name, so a batch of many features costs a few columns, not a
record per feature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any

from aitrace.schemas.block_shape import BlockShape, block_events

# What a worker takes of one feature: a histogram's bins (summarize makes at most 2 x 128) and the
# length of a category's or class's name (the reference keeps 1,000 categories, each by name).
MAX_HISTOGRAM_BINS = 4_096
MAX_CATEGORY_CHARS = 1_024

DATA_STATS_SHAPE = BlockShape(
    kind="data_stats",
    schema="aitrace.DataStatsBlock",
    record="aitrace.DataStats",
    rows=("row_count", "rows_dropped"),
    optional_rows=("batch", "ingest_delay_ms"),
    tables=(("stage", False), ("dataset", False), ("label", True)),
    column_maps=("class_counts",),
    numeric_maps=("class_counts",),
)
# The per-row columns of aitrace.FeatureColumns that may be empty (no row has a value).
OPTIONAL_STATS = ("mean", "variance", "min", "max")
# Concatenated per-row lists: (values, their length per row).
LISTS = (("histogram_edges", "histogram_edges_length"), ("histogram_counts", "histogram_counts_length"))


def data_stats_events(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of a decoded data-stats block, as fastavro decodes ``aitrace.Event`` s; ValueError when malformed."""
    features = block["features"]
    per_record = features["per_record"]
    if len(per_record) != len(block["time"]) or min(per_record, default=0) < 0:
        raise ValueError(f"data_stats block {block['block_id']!r}: features.per_record does not match its records")
    stats = feature_stats(features, f"data_stats block {block['block_id']!r}")
    ends = list(accumulate(per_record))
    grouped = [stats[end - n : end] for n, end in zip(per_record, ends, strict=True)]
    return block_events(DATA_STATS_SHAPE, block, {"features": grouped})


def feature_stats(columns: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
    """Every row of an ``aitrace.FeatureColumns`` as the ``aitrace.FeatureStats`` it stands for."""
    n = sum(columns["per_record"])
    names, dtypes = _table(columns, "name", n, what), _table(columns, "dtype", n, what)
    for name in ("count", "missing"):
        _length(columns[name], n, f"{what}: features.{name}")
    optional = {}
    for name in OPTIONAL_STATS:
        column = columns.get(name) or [None] * n
        optional[name] = _length(column, n, f"{what}: features.{name}")
    quantiles = _per_row_maps(columns.get("quantiles") or {}, n, what)
    edges, counts = (_per_row_lists(columns, values, lengths, n, what) for values, lengths in LISTS)
    categories: list[dict[str, int]] = [{} for _ in range(n)]
    for category, pairs in (columns.get("categories") or {}).items():
        if len(pairs) % 2 or any(not 0 <= row < n for row in pairs[::2]):
            raise ValueError(f"{what}: features.categories {category!r} names rows outside 0..{n - 1}")
        for row, count in zip(pairs[::2], pairs[1::2], strict=True):
            categories[row][category] = count
    rows = zip(names, dtypes, columns["count"], columns["missing"], *optional.values(), quantiles, edges, counts,
               categories, strict=True)  # fmt: skip
    keys = ("name", "dtype", "count", "missing", *OPTIONAL_STATS, "quantiles", "histogram_edges", "histogram_counts",
            "categories")  # fmt: skip
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _length(column: Sequence[Any], n: int, what: str) -> Sequence[Any]:
    if len(column) != n:
        raise ValueError(f"{what} has {len(column)} entries, not {n}")
    return column


def _table(columns: Mapping[str, Any], name: str, n: int, what: str) -> list[str]:
    table, index = columns[name], _length(columns[f"{name}_index"], n, f"{what}: features.{name}_index")
    if n and (min(index) < 0 or max(index) >= len(table)):
        raise ValueError(f"{what}: features.{name}_index points outside {name} ({len(table)} entries)")
    return [table[i] for i in index]


def _per_row_maps(columns: Mapping[str, Sequence[Any]], n: int, what: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, values in columns.items():
        for row, value in zip(out, _length(values, n, f"{what}: features.quantiles {key!r}"), strict=True):
            if value is not None:
                row[key] = value
    return out


def _per_row_lists(columns: Mapping[str, Any], values: str, lengths: str, n: int, what: str) -> list[list[Any]]:
    flat, sizes = columns.get(values) or [], columns.get(lengths) or []
    if not sizes:
        if flat:
            raise ValueError(f"{what}: features.{values} has values but no {lengths}")
        return [[] for _ in range(n)]
    _length(sizes, n, f"{what}: features.{lengths}")
    if min(sizes) < 0 or sum(sizes) != len(flat):
        raise ValueError(f"{what}: features.{lengths} does not add up to the {len(flat)} {values}")
    ends = list(accumulate(sizes))
    return [flat[end - size : end] for size, end in zip(sizes, ends, strict=True)]
