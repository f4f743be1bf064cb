"""Event blocks: a trace's queued records of one kind as the columns of one Kafka record.

Built on the exporter thread (:mod:`~aitrace.producers.log_blocks`,
:mod:`~aitrace.producers.inference_blocks`, :mod:`~aitrace.producers.span_blocks`,
:mod:`~aitrace.producers.ground_truth_blocks`; the layout: :mod:`aitrace.schemas.block_shape`).
Sent one event at a time, a record cost the exporter 15-30 µs (``bench/bench_sender.py --profile``:
the redactor walking nested dicts per event, the generated writer framing a whole
``aitrace.Event``, the envelope copied into each). A block pays the envelope, the id and the
framing once per trace and batch; the columns are a few list comprehensions; repeated texts are
tables of distinct values (redacted and encoded once); attributes and features one column per
name; the redactor walks the tables and columns with its per-string caches; one encode.

The processor chain sees a block only when every processor in it reads blocks
(:func:`block_chain`): the redactor (it walks any mapping; a column is named like the field it
holds, so each string is scrubbed with the same plan as in a single event; a secret-named text
column is blanked in every record that has it, status words kept; numeric columns keep their
numbers, as a number in a single event does), head sampling (an unsampled trace keeps only the
records sampling must keep, with ``sampled = false``) and a processor that declares
``accepts_<kind>_blocks = True``. With any other processor in the chain the kind travels as single
``aitrace.Event`` s as before, so a user's filter written for events still sees every record.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Any

import orjson
from aitrace import schemas
from aitrace.producers import events as ev
from aitrace.producers.redact import REDACTED, Redactor
from aitrace.producers.sampling import TraceSampler, must_keep
from aitrace.producers.secret_patterns import kept_whole, triggers
from aitrace.producers.text_reading import has_escapes, hides_in_controls, plain_variant, terminal_reading
from aitrace.schemas.avro_writer import every
from aitrace.schemas.block_shape import BlockShape
from aitrace.schemas.data_stats_block import LISTS as HISTOGRAM_LISTS

Block = dict[str, Any]
# The per-record payload fields sampling looks at (status, level, attributes), one dict per record.
KeepFields = Callable[[Block], Iterable[dict[str, Any]]]
_ENVELOPE = ("service", "service_version", "environment", "host", "pid", "run_id", "sampled", "labels")
_NUMBERS = frozenset({int, float, bool})
_SPAN_TABLE = ("span_id", "parent_span_id")
_ID_CHARS = b"0123456789abcdef\n"  # W3C span ids as the client makes them (16 of these), one a line
_TEXT = frozenset({str, type(None)})
_LONG_COLUMN = 16  # shorter columns: the redactor's per-text caches do as well
_SCANNED = 6  # the redactor's shortest text to scan (Redactor.scrub)
_DISTINCT_SAMPLE = 64  # a text column's first texts, looked at to guess whether most of its texts are distinct
_TIME, _CONTEXT, _FIELDS = itemgetter(1), itemgetter(2), itemgetter(3)  # of a queued row (events.Queued)
_SPAN_ID = attrgetter("span_id")
# A column map holds a value or a null for every record under every name: records whose names differ (a key per
# request id, per user) cost names x records cells (1,000 logs with a name each: 1M cells, 0.3 ms a log to send).
# Past this many cells and _SPARSE times the values present, the rows go in smaller blocks (SparseColumns). Not
# sooner: a few call sites, each with names of its own (5 of 6 names: 5x), cut in blocks of 34 cost twice as much.
_SPARSE_CELLS = 1024
_SPARSE = 16


class SparseColumns(Exception):
    """A column map whose names x records is far beyond the values present: build the rows in smaller blocks."""


def _dense_enough(names: int, maps: list[Any]) -> None:
    """Raise :class:`SparseColumns` when ``names`` columns over ``maps`` (one per record: attributes, never a
    record's list of features, which smaller blocks would not split) would be mostly nulls (see _SPARSE)."""
    cells = names * len(maps)
    if cells <= _SPARSE_CELLS or len(maps) < 2:
        return
    try:
        present = sum(map(len, maps))  # one C loop
    except TypeError:  # a record without the map (None)
        present = sum(len(m) for m in maps if m)
    if cells > _SPARSE * present:
        raise SparseColumns(f"{names} names over {len(maps)} records, {present} values")


def block_chain(
    processors: list[Callable[[Block], Any]], shape: BlockShape, keep_fields: KeepFields
) -> list[Callable[[Block], Any]] | None:
    """The chain to run on blocks of ``shape``, or None when a processor in ``processors`` reads single events only."""
    chain: list[Callable[[Block], Any]] = []
    for processor in processors:
        if isinstance(processor, TraceSampler):
            chain.append(_Sampling(processor, shape, keep_fields))
        elif isinstance(processor, Redactor):
            chain.append(_Redacting(processor, shape))
        elif getattr(processor, f"accepts_{shape.kind}_blocks", False) is True:
            chain.append(processor)
        else:
            return None
    return chain


class _Sampling:
    """:class:`TraceSampler` for a block (its own rule reads one event at a time)."""

    def __init__(self, sampler: TraceSampler, shape: BlockShape, keep_fields: KeepFields) -> None:
        self.sampler = sampler
        self.shape = shape
        self.keep_fields = keep_fields
        self.drop_reason = sampler.drop_reason

    def __call__(self, block: Block) -> Block:
        return sample_block(self.sampler, self.shape, self.keep_fields, block)


_NUMBER_TYPES = frozenset({"int", "long", "float", "double"})


def _number_array(avro_type: Any) -> bool:
    """An Avro array of numbers (nullable or not): a typed number column."""
    if not isinstance(avro_type, dict) or avro_type.get("type") != "array":
        return False
    items = avro_type["items"]
    branches = items if isinstance(items, list) else [items]
    return any(b in _NUMBER_TYPES for b in branches) and all(b in _NUMBER_TYPES or b == "null" for b in branches)


def number_columns(schema: str) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """A block schema's typed number columns: its fields that are arrays of numbers, and for each field that is a
    record of columns (a data-stats block's ``features``: ``aitrace.FeatureColumns``), that record's."""
    top: set[str] = set()
    nested: dict[str, frozenset[str]] = {}
    for field in schemas.raw(schema)["fields"]:
        kind = field["type"]
        if _number_array(kind):
            top.add(field["name"])
        elif isinstance(kind, str) and kind.startswith(f"{schemas.NAMESPACE}."):
            inner = schemas.raw(kind)["fields"]
            nested[field["name"]] = frozenset(f["name"] for f in inner if _number_array(f["type"]))
    return frozenset(top), nested


def _either(earlier: list[Any], later: list[Any]) -> list[Any]:
    """Two columns of one map that became one name: each record's later value, its earlier one where the later
    is missing (None or NaN): a record that had only the other key keeps its value."""
    return [a if b is None or b != b else b for a, b in zip(earlier, later, strict=True)]


class _Redacting:
    """:class:`Redactor` for a block, with the per-event rules for secret-named columns.

    The redactor blanks a secret-named field whole, so a text column comes back ``[REDACTED]`` in
    every record. Records that never had that attribute get their null back, and a status word
    (``auth: healthy``) stays, as it does in a single event; neither counts as a replacement.
    Numeric columns (``features``) and columns with nothing to find (:meth:`_clean`) skip the walk,
    only their names are scrubbed: a number in a single event is left as it is.

    The schema's typed number columns (arrays of longs or doubles: ``confidence``, ``row_count``, a data-stats
    block's ``features.count``, the index columns) skip the walk too, and under a secret's name
    (``init(deny=["confidence"])``, ``deny=["count"]``) get the rule of a number in a single event: doubles NaN,
    ints kept. Walked, such a column was blanked to ``[REDACTED]`` texts, which no number array takes, and every
    block of its kind was rejected by the schema. Lists of numbers anywhere else (a body's or an attribute's
    ``"pin": [4, 3, 2, 1]``) are free values, walked and blanked as before.
    """

    def __init__(self, redactor: Redactor, shape: BlockShape) -> None:
        self.redactor = redactor
        self.shape = shape
        self.number_columns, self.nested_number_columns = number_columns(shape.schema)

    def __call__(self, block: Block) -> Block:
        scan_all = self.redactor.runs_on_every_text
        aside = {} if scan_all else {name: block[name] for name in _SPAN_TABLE if _generated_ids(block[name])}
        aside.update(self._clean(block, scan_all, skip=aside))
        maps = self.shape.column_maps
        numbers = {name: block[name] for name in self.number_columns if name in block and name not in aside}
        walked = {k: v for k, v in block.items() if k not in aside and k not in maps and k not in numbers}
        nested_numbers: dict[str, dict[str, Any]] = {}
        for name, inner in self.nested_number_columns.items():
            record = walked.get(name)
            if type(record) is dict:
                nested_numbers[name] = {k: v for k, v in record.items() if k in inner}
                walked[name] = {k: v for k, v in record.items() if k not in inner}
        maps_aside: dict[str, dict[str, list[Any]]] = {}
        for name in maps:
            columns = block[name]
            kept = columns if name in self.shape.numeric_maps else self._clean(columns, scan_all)
            walked[name] = {k: v for k, v in columns.items() if k not in kept}
            maps_aside[name] = kept
        out = self.redactor(walked)
        out.update(aside)
        for name, column in numbers.items():
            out[name] = self._numbers(name, column)
        for name, columns in nested_numbers.items():
            record = out.get(name)
            if type(record) is dict:
                record.update({k: self._numbers(k, v) for k, v in columns.items()})
                self._without_denied_histograms(record)
        for name, kept in maps_aside.items():
            self._unblank(walked[name], out[name])
            # each name scrubbed as a map key is: two that scrub to one (bob@example.com, bob%40example.com) are one
            # column, a record's later value where it has one (as a single event's map keeps the later value)
            names = [self.redactor.scrub(k, True) if isinstance(k, str) else k for k in kept]
            merged = out[name]
            for key, column in zip(names, map(self._numbers, kept, kept.values()), strict=True):
                merged[key] = column if key not in merged else _either(merged[key], column)
        return out

    def _without_denied_histograms(self, record: dict[str, Any]) -> None:
        """Histograms under a secret's name (``deny=["edges"]``) are left out whole, edges and counts of every row:
        NaN edges are no histogram, and the worker refused the whole record for them (its counts kept would
        say what the edges hid). No histogram is valid: the drift test then reads the other statistics."""
        if not any(values in record and self.redactor.key_action(values) == 1 for values, _ in HISTOGRAM_LISTS):
            return
        for values, lengths in HISTOGRAM_LISTS:
            if values in record:  # counted once: the doubles a secret's name made NaN were counted then
                self.redactor.counts["field"] += sum(1 for v in record[values] if v == v)
                record[values], record[lengths] = [], []

    def _numbers(self, name: str, column: list[Any]) -> list[Any]:
        """A number column as it is; under a secret's name (``ssn``) its doubles NaN, as in a single event."""
        if self.redactor.key_action(name) != 1 or not any(type(v) is float for v in column):
            return column
        self.redactor.counts["field"] += sum(1 for v in column if type(v) is float)
        return [math.nan if type(v) is float else v for v in column]

    def _clean(self, columns: Block, scan_all: bool, skip: Block | None = None) -> Block:
        """The long text columns the redactor would leave as they are, found in one look at all their texts.

        Every pattern of the redactor runs only where its trigger fires (:func:`secret_patterns.triggers`:
        substring tests and small regexes, none reaching across a newline), so when no trigger fires
        on a column's distinct texts joined by newlines, none fires on any one of them and scrubbing
        each would change nothing. A column of request ids costs one scan instead of a scrub per id. A redactor with
        a pattern of its own (``scan_all``: no trigger, it runs on every text) scans each value as before.
        Numeric columns and span ids the client generated are set aside by the caller: the redactor
        leaves numbers, and ids in an event's envelope, as they are.
        """
        if scan_all:
            return {}
        clean = {}
        for name, column in columns.items():
            if type(column) is not list or len(column) < _LONG_COLUMN or (skip and name in skip):
                continue
            if type(column[0]) not in _TEXT or set(map(type, column)) - _TEXT:
                continue
            if self.redactor.key_action(name) != 0:
                continue
            scanned = _scanned(column)
            joined = "\n".join(scanned)
            # what the redactor scans: the texts as they are and, where they hold a terminal's codes, as it shows them
            if not scanned or (_quiet(joined) and (not has_escapes(joined) or _quiet(terminal_reading(joined)))):
                clean[name] = column
        return clean

    def _unblank(self, before_map: dict[str, list[Any]], after: dict[str, list[Any]]) -> None:
        before = list(before_map.values())
        if len(before) != len(after):
            return
        for column, (name, redacted) in zip(before, list(after.items()), strict=True):
            if len(redacted) == len(column) and all(r == REDACTED for r in redacted):
                after[name] = [_kept(b, r) for b, r in zip(column, redacted, strict=True)]
                self.redactor.counts["field"] -= sum(1 for r in after[name] if r != REDACTED)


def _quiet(joined: str) -> bool:
    """Whether no pattern's trigger fires on ``joined`` or its plain variant (full-width, zero-width, %-escapes), and no
    control hides a key word in it ("pass\\x00word=...")."""
    variant = plain_variant(joined)
    return not (triggers(joined) or (variant is not None and triggers(variant)) or hides_in_controls(joined))


def _scanned(column: list[str | None]) -> list[str]:
    """The texts of a column the redactor scans (not None, :data:`_SCANNED` characters or more), to be joined.

    A column whose first texts are mostly distinct (request ids) is filtered as it is, not put through a set first:
    hashing each fresh id cost as much as the filter (``bench/bench_sender.py``), and a text that is in the join
    twice fires no trigger that it does not fire once (they look within a line). A column of repeated texts
    (attribute values) gives each text once.
    """
    sample = column[:_DISTINCT_SAMPLE]
    texts = column if 2 * len(set(sample)) > len(sample) else set(column)
    return [t for t in texts if t is not None and len(t) >= _SCANNED]  # shorter: the redactor skips them


def _generated_ids(column: list[str | None]) -> bool:
    """Every id in the column is one the client generates (16 hex digits), or absent (None or empty).

    What the regex ``(?:[0-9a-f]{16}(?:\n[0-9a-f]{16})*)?`` finds in the ids joined by newlines, in C
    loops (about a quarter of its time, ~100 ns an id): a length of 17 per line less one, a newline
    exactly at every 17th place and nowhere else, and nothing but lowercase hex digits besides. A column of
    one id throughout (a parent span) is looked at once: the test holds for each id on its own.
    """
    texts = list(filter(None, column))
    if texts and texts.count(texts[0]) == len(texts):
        texts = texts[:1]
    joined = "\n".join(texts)
    lines = (len(joined) + 1) // 17
    return not joined or (
        len(joined) == 17 * lines - 1
        and joined.count("\n") == lines - 1
        and joined[16::17] == "\n" * (lines - 1)
        and joined.isascii()
        and not joined.encode().translate(None, _ID_CHARS)
    )


def _kept(value: str | None, redacted: str) -> str | None:
    """What a blanked column keeps of one record's value: its absence, or a status word."""
    if value is None or kept_whole(value):
        return value
    return redacted


def sample_block(sampler: TraceSampler, shape: BlockShape, keep_fields: KeepFields, block: Block) -> Block:
    """The block when its trace is sampled; else its records that sampling must keep, marked unsampled."""
    if sampler.rate >= 1.0 or sampler.sampled(block["trace_id"]):
        return block
    labels, record = block["labels"], shape.record
    rows = enumerate(keep_fields(block))
    keep = [i for i, fields in rows if must_keep({"labels": labels, "payload": (record, fields)})]
    if not keep:
        raise ev.DropEvent
    out = take_rows(shape, block, keep)
    out["sampled"] = False
    return out


def status_fields(block: Block) -> Iterator[dict[str, Any]]:
    """What sampling reads of each record of a block with a status table (inferences, spans): its status."""
    statuses = block["status"]
    for status in block["status_index"]:
        yield {"status": statuses[status]}


def built(
    rows: list[ev.Queued], build: Callable[[dict[str, Any], Counter[str]], dict[str, Any]], stats: Counter[str]
) -> tuple[list[ev.Queued], list[dict[str, Any]]]:
    """(the rows whose payload ``build`` could make, those payloads); the others counted as ``rejected_bad_event``."""
    kept: list[ev.Queued] = []
    payloads: list[dict[str, Any]] = []
    for row in rows:
        try:
            payloads.append(build(row[3], stats))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            stats["rejected_bad_event"] += 1
            continue
        kept.append(row)
    return kept, payloads


def new_block(block_id: str, trace_id: str, envelope: dict[str, Any], columns: Block) -> Block:
    """The block of ``columns`` with the client's envelope."""
    block = {"block_id": block_id, "trace_id": trace_id}
    for name in _ENVELOPE:
        block[name] = envelope[name]
    block.update(columns)
    return block


def interned(values: list[Any]) -> tuple[list[Any], list[int]]:
    """(distinct values in order of first use, the index of each value among them)."""
    if values and every(values, values[0]):  # one value (a span name, a status): one C loop
        return [values[0]], [0] * len(values)
    table = list(dict.fromkeys(values))  # C loops: about half the time of a setdefault per value
    position = {v: i for i, v in enumerate(table)}
    return table, list(map(position.__getitem__, values))


def optional_interned(values: list[Any]) -> tuple[list[Any], list[int]]:
    """As :func:`interned`, None read as index -1 (not in the table); both empty when every value is None."""
    if every(values, None):
        return [], []
    table, index = interned(values)
    if None in table:
        none = table.index(None)
        table.pop(none)
        index = [-1 if i == none else i - (i > none) for i in index]
    return table, index


def interned_texts(values: list[Any], stats: Counter[str]) -> tuple[list[Any], list[int]]:
    """``optional_interned(texts(values, stats))``: the table of the values as text, and each value's index.

    A column of ints only (predicted class labels) is interned first and only its distinct values written
    as text: distinct ints are distinct texts, and 2,000 texts made, hashed and compared cost ~0.05 µs an
    event. Where a value cannot be JSON (an int past 64 bits, counted as ``stringified`` once a value), the
    column is written value by value as before, so that the count stays.
    """
    kinds = set(map(type, values))
    if kinds == {int}:
        table, index = interned(values)
        written: Counter[str] = Counter()
        table_texts = texts(table, written)
        if not written:
            return table_texts, index
    return optional_interned(_texts(values, kinds, stats))


def optional_column(values: list[Any]) -> list[Any]:
    """Empty when every value is None, else the values."""
    return [] if every(values, None) else values  # (a column of texts or doubles: settled by its first items)


def row_times(rows: list[ev.Queued]) -> list[int]:
    """Each queued row's time (a C loop: no tuple unpacked per row in bytecode)."""
    return list(map(_TIME, rows))


def row_contexts(rows: list[ev.Queued]) -> list[Any]:
    """Each queued row's span context."""
    return list(map(_CONTEXT, rows))


def row_fields(rows: list[ev.Queued]) -> list[Any]:
    """Each queued row's fields, as the caller enqueued them (rows of the five-item shape: see :func:`unflattened`)."""
    return list(map(_FIELDS, rows))


def flat_columns(rows: list[ev.Queued], names: tuple[str, ...]) -> dict[str, list[Any]] | None:
    """The fields of flat rows (:data:`events.Queued`: the client's, fields after the first five items) as one
    column per name: every row's items in one list, then a slice per field (C loops); None unless every row is
    flat with ``len(names)`` fields.

    Not ``zip(*rows)``, as fast: it holds an iterator per row at once, 2,000 objects a block counted towards the
    next garbage collection (about two young collections a block, and the older ones they bring on, which walk
    the whole queue); ``chain`` frees each row's iterator before it makes the next.
    """
    width = 5 + len(names)
    if set(map(len, rows)) != {width}:
        return None
    items = list(chain.from_iterable(rows))
    return {name: items[i::width] for i, name in enumerate(names, 5)}


def unflattened(rows: list[ev.Queued]) -> list[ev.Queued]:
    """The rows in the five-item shape ``(kind, time, ctx, fields, urgent)``: a flat row's fields as one tuple."""
    if set(map(len, rows)) == {5}:
        return rows
    return [row if len(row) == 5 else (row[0], row[1], row[2], row[5:], row[4]) for row in rows]


def span_columns(ctxs: list[Any]) -> Block:
    """The span table of the records' contexts (one entry per distinct span).

    Records of one context (a request's, a job's root: the common case) are found by one count, which
    compares the very same object by identity: no hash of a context per record.
    """
    if ctxs and ctxs.count(ctxs[0]) == len(ctxs):
        first = ctxs[0]
        parents = optional_column([first.parent_span_id])
        return {"span_id": [first.span_id], "parent_span_id": parents, "span_index": [0] * len(ctxs)}
    span_ids, span_index = interned(list(map(_SPAN_ID, ctxs)))
    parent_of = {c.span_id: c.parent_span_id for c in dict.fromkeys(ctxs)}  # few contexts: one per span
    parents = list(map(parent_of.__getitem__, span_ids))
    return {"span_id": span_ids, "parent_span_id": optional_column(parents), "span_index": span_index}


def text_columns(maps: list[Any], stats: Counter[str]) -> dict[str, list[str | None]]:
    """One column per key, a value per record as :func:`events.text_map` writes it (None: no such key)."""
    names: set[Any] = set().union(*maps)
    if not names:
        return {}
    _dense_enough(len(names), maps)
    if set(map(type, names)) != {str}:  # keys made text, as events.text_map does
        maps = [{str(k): v for k, v in a.items()} if a else a for a in maps]
        names = set().union(*maps)
    columns: dict[str, list[str | None]] = {}
    for name in sorted(names):
        try:
            column = list(map(dict.get, maps, repeat(name)))  # every record's attributes a dict: one C loop
        except TypeError:
            column = [a.get(name) if a else None for a in maps]
        if None in column:  # absent (None), or present with the value None (text_value writes "null")
            pairs = zip(column, maps, strict=True)
            column = [v if v is not None else "null" if a and name in a else None for v, a in pairs]
        columns[name] = texts(column, stats)
    return columns


def texts(column: list[Any], stats: Counter[str]) -> list[str | None]:
    """A column's values as :func:`events.text_value` writes them (None stays); numbers through one JSON call."""
    return _texts(column, set(map(type, column)), stats)


def _texts(column: list[Any], kinds: set[type], stats: Counter[str]) -> list[str | None]:
    """:func:`texts` of a column whose values' types are ``kinds`` (changed here)."""
    kinds.discard(type(None))
    if kinds <= {str}:
        return column
    if kinds <= _NUMBERS:
        try:
            tokens: list[str | None] = [*orjson.dumps(column).decode()[1:-1].split(",")]  # numbers hold no comma
        except TypeError:  # an int beyond 64 bits: text_value writes its repr
            pass
        else:
            if None not in column:
                return tokens
            return [None if v is None else t for v, t in zip(column, tokens, strict=True)]
    return [None if v is None else ev.text_value(v, stats) for v in column]


def take_rows(shape: BlockShape, block: Block, keep: list[int]) -> Block:
    """A copy of ``block`` holding only the records at ``keep`` (in order); tables keep only what they use."""
    out = dict(block)
    for name in ("time", *shape.rows):
        out[name] = [block[name][i] for i in keep]
    for name in shape.optional_rows:
        if block[name]:
            out[name] = [block[name][i] for i in keep]
    for index, table in (("span_index", "span_id"), *((f"{t}_index", t) for t, _ in shape.tables)):
        if not block[index]:
            continue
        old = [block[index][i] for i in keep]
        used, _ = interned([i for i in old if i >= 0])
        new_of = {u: j for j, u in enumerate(used)}
        out[table] = [block[table][u] for u in used]
        out[index] = [new_of.get(i, -1) for i in old]
        if table == "span_id" and block["parent_span_id"]:
            out["parent_span_id"] = [block["parent_span_id"][u] for u in used]
    for name in shape.column_maps:  # a key none of the kept records has is left out (None: no such key)
        columns = ((k, [v[i] for i in keep]) for k, v in block[name].items())
        out[name] = {k: column for k, column in columns if column.count(None) < len(column)}
    return out


def halves(shape: BlockShape, block: Block) -> list[Block]:
    """The block's records in two blocks (ids stay unique: the second is ``<block_id>.<first record>``)."""
    n = len(block["time"])
    half = n // 2
    first, second = take_rows(shape, block, list(range(half))), take_rows(shape, block, list(range(half, n)))
    second["block_id"] = f"{block['block_id']}.{half}"
    return [first, second]


def numeric_columns(maps: list[dict[str, float]]) -> dict[str, list[float | None]]:
    """One number column per key of ``maps`` (None: the record has no such key)."""
    return {name: [m.get(name) for m in maps] for name in sorted(set().union(*maps))}
