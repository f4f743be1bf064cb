"""Data-stats blocks: a trace's queued ``client.data_stats`` batches as the columns of one ``aitrace.DataStatsBlock``.

Sent one event at a time, a batch of statistics cost the exporter about 75 µs
(``bench/bench_sender.py --profile data_stats``): the redactor walked every feature's dict and
quantile map, :func:`events.feature_stats` checked every number of every feature in Python, and
the writer framed one ``aitrace.FeatureStats`` record per feature. Here stages, datasets and label
names are tables; the features of all records are one table of rows (``aitrace.FeatureColumns``):
names and dtypes interned, counts and moments one column each, quantiles one column per level,
histograms concatenated, categories one list of (row, count) pairs per category name. The
redactor then scrubs each distinct name once and skips the number columns; the writer packs them.

The shared machinery (processor chain, sampling, redaction) is :mod:`aitrace.producers.blocks`:
the redactor reads the features' columns under the field names of ``aitrace.FeatureStats``
(``name``, ``dtype``; quantile levels and category names are map keys, as in a single event), so
each text is scrubbed with the plan it gets in a single event. Sampling keeps nothing of an
unsampled trace but what its labels mark as an anomaly, as for single events.

The values are those :func:`events.data_payload` gives a single event. Bad values never raise
here: a record that cannot be built is left out and counted (``rejected_bad_event``; one whose
quantile is not a number, ``rejected_schema``, as its single event would be at encoding).
"""

from __future__ import annotations

import struct
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import accumulate, chain, repeat
from typing import Any

from aitrace.producers import blocks
from aitrace.producers import events as ev
from aitrace.producers.blocks import Block
from aitrace.producers.redact import Redactor
from aitrace.schemas.avro_writer import Doubles, SmallInts
from aitrace.schemas.data_stats_block import DATA_STATS_SHAPE, LISTS, OPTIONAL_STATS, feature_stats

_FLOATS: frozenset[type] = frozenset({float, type(None)})
_INTS: frozenset[type] = frozenset({int, type(None)})
_SIZED = ("quantiles", "histogram_edges", "histogram_counts")  # what makes a feature large
_ABSENT = object()  # a feature without a name: its single event cannot be built
_BAD = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


def block_chain(processors: list[Callable[[Block], Any]]) -> list[Callable[[Block], Any]] | None:
    """The chain to run on data-stats blocks, or None when a processor reads single events only."""
    chain = blocks.block_chain(processors, DATA_STATS_SHAPE, _nothing)
    if chain is None:
        return None
    return [_keys_only(p) for p in chain]


def _keys_only(processor: Callable[[Block], Any]) -> Callable[[Block], Any]:
    """The block redaction (it holds its redactor) wrapped in :class:`_KeysOnly`; any other processor as it is."""
    redactor = getattr(processor, "redactor", None)
    return _KeysOnly(processor, redactor) if isinstance(redactor, Redactor) else processor


class _KeysOnly:
    """The block redaction, with the features' quantiles and categories set aside: only their keys are text.

    In a single event they are maps of numbers, whose keys the redactor scrubs as names and whose
    numbers it leaves (a secret-named category keeps its count). Walked as columns, a secret-named
    key would blank its list of numbers; so each key is scrubbed here once, and what it counts is
    counted once per row that has it, as one event per feature would count it.
    """

    def __init__(self, redacting: Callable[[Block], Block], redactor: Redactor) -> None:
        self.redacting = redacting
        self.redactor = redactor

    def __call__(self, block: Block) -> Block:
        features = dict(block["features"])
        if any(self.redactor.key_action(name) == 1 for name in features["name"]):
            features = self._hidden(features, block["block_id"])
        quantiles, categories = features.pop("quantiles"), features.pop("categories")
        out = self.redacting({**block, "features": features})
        out["features"]["quantiles"] = self._keys(quantiles, _present, _later_wins)
        out["features"]["categories"] = self._keys(categories, _pairs, list.__add__)
        return out

    def _hidden(self, features: Block, block_id: str) -> Block:
        """The feature table with the values of secret-named columns taken out, by the rule of a single event
        (:meth:`Redactor.hidden_feature`): read back as rows, changed, built again (such columns are rare)."""
        rows = feature_stats(features, f"data_stats block {block_id!r}")
        rows = [self.redactor.hidden_feature(row) or row for row in rows]
        return _feature_columns(features["per_record"], rows, Counter())

    def _keys(
        self,
        columns: dict[str, list[Any]],
        rows: Callable[[list[Any]], int],
        merge: Callable[[list[Any], list[Any]], list[Any]],
    ) -> dict[str, list[Any]]:
        """The columns under their scrubbed keys; two keys scrubbed alike are merged (as in a dict, the later wins).

        ``rows(column)``: how many rows have the key, counted only for a key the redactor found something in
        (a None count over a column of doubles compares each to None: ~0.1 µs per event and level).
        """
        counts = self.redactor.counts
        out: dict[str, list[Any]] = {}
        for name, values in columns.items():
            before = Counter(counts)
            scrubbed = self.redactor.scrub(name, True)
            found = counts - before
            if found:
                times = rows(values)
                for kind, n in found.items():
                    counts[kind] += n * (times - 1)
            out[scrubbed] = merge(out[scrubbed], values) if scrubbed in out else values
        return out


def _present(column: list[Any]) -> int:
    """Rows with a value in a quantile level's column."""
    return len(column) - column.count(None)


def _pairs(column: list[Any]) -> int:
    """Rows with a count in a category's (row, count) pairs."""
    return len(column) // 2


def _later_wins(first: list[Any], second: list[Any]) -> list[Any]:
    """Two columns of one quantile level, row by row: the second's value where it has one."""
    return [a if b is None else b for a, b in zip(first, second, strict=True)]


def _nothing(block: Block) -> Iterator[dict[str, Any]]:
    """Sampling reads nothing of a batch's statistics but the block's envelope labels."""
    return ({} for _ in block["time"])


def record_bytes(row: ev.Queued) -> int:
    """About how many bytes one record of statistics takes in a block: 9 per number of its features, 64 per
    feature besides (names, counts, moments). An estimate that sets how many records go in one block."""
    try:
        features = ev.fields_dict(ev.DATA, row[3] if len(row) == 5 else row[5:]).get("features") or ()
        numbers = sum(
            len(f.get(k) if f.get(k) is not None else ())
            for f in features
            for k in ("quantiles", "histogram_edges", "histogram_counts")
        )
    except Exception:  # an estimate: a row it cannot read is built (or rejected) on its own later
        return 64
    return 64 * (1 + len(features)) + 9 * numbers


def data_stats_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    """The columns of queued statistics (fields as :meth:`ClientEvents.data_stats` queues them: a tuple in the order
    of :data:`events.DATA_FIELDS`; or a dict of those names).

    The common case (the dicts :func:`aitrace.summarize` returns) is a few list comprehensions
    over all the records' features together; a batch with anything else is built record by record
    through :func:`events.data_payload`.
    """
    try:
        values = blocks.flat_columns(rows, ev.DATA_FIELDS)
        if values is None:
            values = _by_name(blocks.row_fields(blocks.unflattened(rows)))
        return _columns(rows, values, stats)
    except _BAD:
        pass
    rows = [(k, t, c, ev.fields_dict(k, f), u) for k, t, c, f, u in blocks.unflattened(rows)]
    kept, payloads = blocks.built(rows, ev.data_payload, stats)
    good = [i for i, p in enumerate(payloads) if all(None not in f["quantiles"].values() for f in p["features"])]
    stats["rejected_schema"] += len(payloads) - len(good)
    return _columns([kept[i] for i in good], _by_name([payloads[i] for i in good]), stats)


def _by_name(fields: list[Any]) -> dict[str, list[Any]]:
    """Each field's column: the client's tuples taken apart by one ``zip`` (C loops, no look-up per field and
    record); dicts by name (a missing stage or dataset raises, any other field is None where absent)."""
    if set(map(type, fields)) == {tuple} and set(map(len, fields)) == {len(ev.DATA_FIELDS)}:
        return dict(zip(ev.DATA_FIELDS, map(list, zip(*fields, strict=True)), strict=True))
    return {name: [f[name] for f in fields] if name in ("stage", "dataset") else _get(fields, name)
            for name in ev.DATA_FIELDS}  # fmt: skip


def _columns(rows: list[ev.Queued], values: dict[str, list[Any]], stats: Counter[str]) -> Block:
    columns = {"time": blocks.row_times(rows), **blocks.span_columns(blocks.row_contexts(rows))}
    for name in ("stage", "dataset"):
        columns[name], columns[f"{name}_index"] = blocks.interned(_texts(values[name], stats))
    columns["batch"] = blocks.optional_column(blocks.texts(values["batch"], stats))
    columns["row_count"] = _ints(values["row_count"])
    columns["rows_dropped"] = _ints(values["rows_dropped"])
    columns["label"], columns["label_index"] = blocks.interned_texts(values["label"], stats)
    counts = values["class_counts"]
    columns["class_counts"] = _class_counts([c or {} for c in counts]) if any(counts) else {}  # {}: none counted
    columns["ingest_delay_ms"] = blocks.optional_column(_floats(values["ingest_delay_ms"]))
    features = values["features"]
    per_record = features if all(features) else [f or () for f in features]  # (all(): a C loop, as the lists are)
    columns["features"] = _feature_columns(list(map(len, per_record)), list(chain.from_iterable(per_record)), stats)
    return columns


def _feature_columns(per_record: list[int], flat: list[Any], stats: Counter[str]) -> Block:
    """``aitrace.FeatureColumns`` of every record's features in a row; raises on a feature that cannot be built.

    A statistic no feature has (``keys``: hand-written summaries without ``missing``, ``min`` or histograms)
    takes no look at the rows: its column is what the rows' absent values would give.
    """
    column, keys = _transposed(flat)
    out: Block = {"per_record": per_record}
    out["name"], out["name_index"] = _names(column("name", _ABSENT), per_record, stats)
    dtypes = column("dtype", "numeric")
    if "dtype" in keys and not _only(dtypes, str):
        dtypes = list(map(str, dtypes))
    out["dtype"], out["dtype_index"] = blocks.interned(dtypes)
    for name in ("count", "missing"):
        out[name] = _ints(column(name)) if name in keys else [0] * len(flat)
    for name in OPTIONAL_STATS:
        out[name] = _optional_floats(column(name)) if name in keys else []
    out["quantiles"] = _quantiles(_or_empty(column("quantiles"), {})) if "quantiles" in keys else {}
    for (values, lengths), convert in zip(LISTS, (_edges, _counts), strict=True):
        lists = _or_empty(column(values), ()) if values in keys else []
        out[values] = convert(lists)
        out[lengths] = list(map(len, lists)) if out[values] else []
    out["categories"] = _categories(column("categories")) if "categories" in keys else {}
    return out


def _names(names: list[Any], per_record: list[int], stats: Counter[str]) -> tuple[list[str], list[int]]:
    """The name table and index of every feature (``blocks.interned`` of their texts); raises when one has none.

    Records of one batch shape (the same names in the same order, as :func:`aitrace.summarize` gives each
    batch of a table) are the first record's names repeated: one comparison finds that, and the index is
    ``0..k-1`` repeated, without a table look-up per feature.
    """
    if not _only(names, str):
        if _ABSENT in names:
            raise KeyError("name")
        names = [ev.text_value(v, stats) for v in names]
    k = per_record[0] if per_record else 0
    first = names[:k]
    if k and per_record.count(k) == len(per_record) and first * len(per_record) == names and len(set(first)) == k:
        return first, list(range(k)) * len(per_record)
    return blocks.interned(names)


def _transposed(flat: list[Any]) -> tuple[Callable[..., list[Any]], set[str]]:
    """``(column, keys)``: ``column(name, default=None)`` is each feature's value of ``name`` (``default`` where it
    has none), by a C loop; ``keys`` the names any feature has.

    Anything but dicts raises: the caller builds those one by one. (Transposing features of one
    key order at once by ``zip`` costs as much: a key tuple per feature to check the order.) A key no feature
    has (``missing``, ``min``, histograms in hand-written summaries) costs no loop: one union of the keys
    finds those, at about the cost of two columns.
    """
    if not _only(flat, dict):
        raise TypeError("a feature is not a dict")
    keys = set().union(*flat)

    def column(name: str, default: Any = None) -> list[Any]:
        if name not in keys:
            return [default] * len(flat)
        return list(map(dict.get, flat, repeat(name), repeat(default)))

    return column, keys


def _edges(lists: list[Any]) -> array[float]:
    """Every row's histogram edges in one ``array("d")`` (float() of each, as a single event takes them; a text
    raises TypeError): built and written by C loops.

    ``struct.pack`` converts about four times faster than ``array("d", items)``, which parses each item
    with a format string; both take any number (``__float__`` or ``__index__``) and refuse the rest. The
    edges go to it straight from the rows' lists (their lengths are read for the block anyway), without a
    list of all of them first: ~30 % of this function's time.
    """
    try:
        return array("d", struct.pack(f"{sum(map(len, lists))}d", *chain.from_iterable(lists)))
    except struct.error as exc:
        raise TypeError(str(exc)) from exc


def _counts(lists: list[Any]) -> list[int]:
    """Every row's histogram counts in one list, int() of each as a single event takes them.

    Counts of 0..255 (exact histograms of a batch's rows) are taken through ``bytes``: a C loop that
    refuses anything but an integer in that range, about half the cost of looking at each count's type,
    and the writer writes the column from those bytes (``SmallInts``; ``bench/bench_sender.py --kinds
    data_stats_skab``); any other column is looked at as before.
    """
    try:
        return SmallInts(bytes(chain.from_iterable(lists)))  # each an int, or a bool or other __index__ int, 0..255
    except (TypeError, ValueError):
        pass
    items = list(chain.from_iterable(lists))
    return items if _only(items, int) else list(map(int, items))


def _or_empty(values: list[Any], empty: Any) -> list[Any]:
    """``value or empty`` for each value, as a single event reads an absent map or list (read only: one shared)."""
    if all(values) or None not in values:  # (all(): a truth test per map, cheaper than comparing each to None)
        return values
    if values.count(None) == len(values):  # no feature has it: a C loop
        return [empty] * len(values)
    return [v or empty for v in values]


def _class_counts(counts: list[dict[Any, Any]]) -> dict[str, list[Any]]:
    """One column per class of the records' counts, as ``events.as_int(v) or 0``."""
    columns = _number_columns(counts, _INTS)
    if columns is None:
        columns = blocks.numeric_columns([{str(k): ev.as_int(v) or 0 for k, v in c.items()} for c in counts])
    return columns


def _quantiles(maps: list[Any]) -> dict[str, list[float | None]]:
    """One column per level; a level whose value is not a number raises (a single event fails the schema)."""
    columns = _number_columns(maps, _FLOATS)
    if columns is not None:
        return columns
    maps = [{str(k): ev.as_float(v) for k, v in m.items()} for m in maps]
    if any(None in m.values() for m in maps):
        raise ValueError("a quantile is not a number")
    return blocks.numeric_columns(maps)


def _number_columns(maps: list[Any], kinds: frozenset[type]) -> dict[str, list[Any]] | None:
    """:func:`blocks.numeric_columns` of dicts of text keys and values of ``kinds`` only; else None."""
    names = set().union(*maps)
    if not _only(names, str) or not _only(maps, dict):
        return None
    columns = {name: list(map(dict.get, maps, repeat(name))) for name in sorted(names)}  # C loops: maps are dicts
    types = set().union(*(set(map(type, column)) for column in columns.values()))
    if types - kinds:
        return None
    if type(None) not in types:  # every map has every name, none of them None
        if types == {float}:  # floats only (quantiles): the writer need not look again
            return {name: Doubles(column) for name, column in columns.items()}
        return columns
    present = sum(len(c) - c.count(None) for c in columns.values())
    return columns if present == sum(map(len, maps)) else None  # else a value None: not a number


def _categories(maps: list[Any]) -> dict[str, list[int]]:
    """Per category name, the (row, count) pairs of the rows that have it."""
    pairs: dict[str, list[int]] = {}
    if not any(maps):  # numeric features only: one C loop, not a Python one per row
        return pairs
    for row, categories in enumerate(maps):
        if categories:
            for name, count in categories.items():
                pairs.setdefault(name if type(name) is str else str(name), []).extend((row, int(count)))
    return pairs


def _get(fields: list[dict[str, Any]], name: str) -> list[Any]:
    """Each record's ``name`` (None where absent), by a C loop; a record that is not a dict raises TypeError."""
    return list(map(dict.get, fields, repeat(name)))


def _only(values: Any, kind: type) -> bool:
    return set(map(type, values)) <= {kind}


def _texts(values: list[Any], stats: Counter[str]) -> list[str]:
    """Each value as :func:`events.text_value` writes it (None included: ``"null"``)."""
    return values if _only(values, str) else [ev.text_value(v, stats) for v in values]


def _ints(values: list[Any]) -> list[int]:
    """Each value as ``events.as_int(v) or 0`` (an absent count, None, is 0: a column of them one C call)."""
    kinds = set(map(type, values))
    if kinds <= {int}:
        return values
    if kinds == {type(None)}:
        return [0] * len(values)
    if kinds == {int, type(None)}:
        return [0 if v is None else v for v in values]
    return [ev.as_int(v) or 0 for v in values]


def _floats(values: list[Any]) -> list[float | None]:
    """Each value as :func:`events.as_float` gives it."""
    return values if set(map(type, values)) <= _FLOATS else list(map(ev.as_float, values))


def _optional_floats(values: list[Any]) -> list[float | None]:
    """``blocks.optional_column(_floats(values))``, the None count read from the one look at the types."""
    kinds = set(map(type, values))
    if kinds == {type(None)}:
        return []
    if kinds <= {float}:
        return Doubles(values)  # floats only: the writer need not look again
    return blocks.optional_column(values if kinds <= _FLOATS else list(map(ev.as_float, values)))


# -- splitting


def halves(block: Block) -> list[Block]:
    """A data-stats block's records in two blocks (ids stay unique: the second is ``<block_id>.<first record>``)."""
    n = len(block["time"])
    half = n // 2
    first, second = _take(block, list(range(half))), _take(block, list(range(half, n)))
    second["block_id"] = f"{block['block_id']}.{half}"
    return [first, second]


def _take(block: Block, keep: list[int]) -> Block:
    out = blocks.take_rows(DATA_STATS_SHAPE, block, keep)
    features = block["features"]
    per_record = features["per_record"]
    starts = [end - n for n, end in zip(per_record, accumulate(per_record), strict=True)]
    rows = [row for i in keep for row in range(starts[i], starts[i] + per_record[i])]
    out["features"] = _take_features(features, [per_record[i] for i in keep], rows)
    return out


def _take_features(features: Block, per_record: list[int], rows: list[int]) -> Block:
    """The feature table holding only ``rows`` (in order); tables keep only what they use."""
    out: Block = {"per_record": per_record}
    for table in ("name", "dtype"):
        used, index = blocks.interned([features[f"{table}_index"][j] for j in rows])
        out[table], out[f"{table}_index"] = [features[table][u] for u in used], index
    for name in ("count", "missing"):
        out[name] = [features[name][j] for j in rows]
    for name in OPTIONAL_STATS:
        out[name] = blocks.optional_column([features[name][j] for j in rows]) if features[name] else []
    out["quantiles"] = {k: [v[j] for j in rows] for k, v in features["quantiles"].items()}
    out["quantiles"] = {k: v for k, v in out["quantiles"].items() if v.count(None) < len(v)}
    for values, lengths in LISTS:
        sizes = features[lengths]
        if not sizes:
            out[values], out[lengths] = [], []
            continue
        starts = [end - n for n, end in zip(sizes, accumulate(sizes), strict=True)]
        out[values] = [features[values][k] for j in rows for k in range(starts[j], starts[j] + sizes[j])]
        out[lengths] = [sizes[j] for j in rows] if out[values] else []
    new_row = {j: r for r, j in enumerate(rows)}
    out["categories"] = {}
    for name, pairs in features["categories"].items():
        kept = [(new_row[j], c) for j, c in zip(pairs[::2], pairs[1::2], strict=True) if j in new_row]
        if kept:
            out["categories"][name] = list(chain.from_iterable(kept))
    return out
