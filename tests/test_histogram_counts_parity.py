"""A data-stats block's histograms cost a third less to build and write, and a block's columns that are not one value
throughout are no longer counted whole (issue 11): byte for byte as before (ecb0387).

Copies of the code before, kept here as the reference:

- ``data_stats_blocks._counts`` looked at every count's type; now counts of 0..255 go through one ``bytes`` call;
- ``data_stats_blocks._edges`` made a list of every edge before packing them; now they are packed from the rows' lists;
- ``avro_writer._integers`` and ``_strings`` counted the first value through the whole column before anything else,
  ``blocks.optional_column``, ``optional_interned`` and ``interned`` counted None or the first value through it: now
  ``avro_writer.every`` counts the first 64 items first (a column that is not one value costs no full pass);
- ``avro_writer._byte_varints`` wrote two bytes for every value of 0..255 and deleted the missing second bytes; now a
  column with few values of 64 and above is runs of one-byte varints split at those;
- the counts column is an ``avro_writer.SmallInts`` (a list holding its bytes), written from those bytes.

Each gives the same values (or the same exception), and the exporter sends the same records: the sha256 of every
record for two thousand events of each kind, as blocks and as single events, through the code before and now.
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
from array import array
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from itertools import chain
from typing import Any

import fastavro
import numpy as np
import pytest
from aitrace.producers import blocks
from aitrace.producers import data_stats_blocks as ds
from aitrace.producers import events as ev
from aitrace.producers.config import Settings
from aitrace.producers.exporter import Exporter
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler
from aitrace.producers.summaries import summarize
from aitrace.producers.transport import MemoryTransport
from aitrace.schemas import avro_writer, codec
from test_exporter import _ENVELOPE
from test_flat_queue_parity import _ended_spans, _queued
from test_log_tuple_parity import _PerEvent
from test_queued_tuple_parity import _queued_by_client

# -- the code before (ecb0387)


def _old_counts(lists: list[Any]) -> list[int]:
    items = list(chain.from_iterable(lists))
    return items if ds._only(items, int) else list(map(int, items))


def _old_edges(lists: list[Any]) -> array[float]:
    items = list(chain.from_iterable(lists))
    out = array("d")
    try:
        out.frombytes(struct.pack(f"{len(items)}d", *items))
    except struct.error as exc:
        raise TypeError(str(exc)) from exc
    return out


def _old_byte_varints(small: bytes) -> bytearray:
    pairs = bytearray(2 * len(small))
    pairs[0::2] = small.translate(avro_writer._FIRST_BYTES)
    pairs[1::2] = small.translate(avro_writer._SECOND_BYTES)
    return pairs.replace(b"\xff", b"")


def _old_every(values: list[Any], value: Any) -> bool:
    """The test each of those places made: the whole column counted."""
    return values.count(value) == len(values)


def _old_integers(kind: str, values: list[Any]) -> bytes:
    aw = avro_writer
    first, (lo, hi) = values[0], aw._INT_RANGE[kind]
    if type(first) is int and lo <= first <= hi and values.count(first) == len(values):
        one = bytearray()
        aw._varint(one, (first << 1) ^ (first >> 63))
        head = bytearray()
        aw._varint(head, len(values) << 1)
        return bytes(head) + bytes(one) * len(values) + b"\0"
    last = values[-1]
    if type(first) is int and type(last) is int and first == 0 and last == len(values) - 1 <= aw._POSITIONS - 1:
        positions, varints = aw._positions()
        if values == positions[: len(values)]:
            head = bytearray()
            aw._varint(head, len(values) << 1)
            return bytes(head) + varints[: aw._position_bytes(len(values))] + b"\0"
    try:
        small = bytes(values)
    except (TypeError, ValueError):
        small = None
    if small is not None:
        head = bytearray()
        aw._varint(head, len(values) << 1)
        if not small.translate(None, aw._BELOW_64):
            return bytes(head) + small.translate(aw._SMALL_VARINTS) + b"\0"
        return bytes(head) + _old_byte_varints(small) + b"\0"
    if len(values) >= aw._NUMPY_FROM:
        raw = aw._long_varints(values)
        if raw is not None:
            return raw
    out = io.BytesIO()
    fastavro.schemaless_writer(out, aw._INTEGER_ARRAYS[kind], values)
    return out.getvalue()


@contextmanager
def _the_code_before() -> Iterator[None]:
    """The functions above in place of today's; the generated writers made again around it (they hold ``_integers``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(avro_writer, "_integers", _old_integers)
        patch.setattr(avro_writer, "every", _old_every)  # _strings' test
        patch.setattr(blocks, "every", _old_every)  # optional_column's, optional_interned's and interned's
        patch.setattr(ds, "_counts", _old_counts)
        patch.setattr(ds, "_edges", _old_edges)
        codec._generated_writer.cache_clear()
        try:
            yield
        finally:
            codec._generated_writer.cache_clear()


# -- columns

_RNG = random.Random(11)


def _small_column(n: int, wide_share: float) -> list[int]:
    """Counts of 0..255, about ``wide_share`` of them 64 or above."""
    return [_RNG.randrange(64, 256) if _RNG.random() < wide_share else _RNG.randrange(64) for _ in range(n)]


_SHARES = (0.0, 0.0005, 0.01, 0.05, 1 / 16, 0.07, 0.2, 0.5, 1.0)


@pytest.mark.parametrize("items", ["long", "int"])
@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 63, 64, 65, 300, 5000])
@pytest.mark.parametrize("share", _SHARES)
def test_a_column_of_counts_is_written_as_before(n: int, share: float, items: str) -> None:
    for _ in range(4):
        column = _small_column(n, share)
        assert avro_writer._integers(items, column) == _old_integers(items, column)


@pytest.mark.parametrize(
    "column",
    [[0] * 64 + [1], [5] * 63 + [6], [7] * 64, [7] * 65, [1000] * 64 + [999], [0] * 200 + [300], [True] * 64 + [2],
     [1000] * 299 + [1000.0], [300] * 70 + [Decimal(300)], [0, 1.5, 1] * 30, list(range(300)), [2**63] * 70,
     [1, "1"] * 40, [64, 65, 255, 0, 1] * 20, [255] * 16 + [0] * 240, [-1] * 3 + list(range(100))],
)  # fmt: skip
def test_a_column_of_one_value_or_nearly_is_written_as_before(column: list[Any]) -> None:
    """The first 64 items counted before the whole column: a column that differs only after them is counted whole."""
    for items in ("long", "int"):
        try:
            expected = _old_integers(items, column)
        except (TypeError, ValueError, OverflowError) as exc:
            with pytest.raises(type(exc)):
                avro_writer._integers(items, column)
            continue
        assert avro_writer._integers(items, column) == expected


@pytest.mark.parametrize("n", [0, 1, 2, 63, 64, 65, 128, 2000])
def test_every_is_the_whole_count(n: int) -> None:
    """``every(values, v)`` is ``values.count(v) == len(values)`` for columns of one value but for one item anywhere
    (before, at and after the 64th), of None, texts, doubles and ints, and == that is not identity (1 and 1.0)."""
    for value, other in ((None, "x"), ("v7", None), (0.5, None), (0, 1), (1, 1.0), (1.0, True), (None, 0.0)):
        column = [value] * n
        assert avro_writer.every(column, value) == _old_every(column, value)
        for at in {0, 1, 62, 63, 64, 65, n - 1} & set(range(n)):
            odd = [*column[:at], other, *column[at + 1 :]]
            assert avro_writer.every(odd, value) == _old_every(odd, value)
            assert avro_writer.every(odd, other) == _old_every(odd, other)


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 300, 5000])
@pytest.mark.parametrize("share", _SHARES)
def test_a_column_of_small_ints_is_written_as_its_list_was(n: int, share: float) -> None:
    column = _small_column(n, share)
    small = avro_writer.SmallInts(bytes(column))
    assert small == column and small.raw == bytes(column)
    for items in ("long", "int"):
        assert avro_writer._integers(items, small) == _old_integers(items, column)


def test_small_ints_copied_item_by_item_keep_their_bytes() -> None:
    """A copy made as ``type(x)(items)`` (``exporter.without_surrogates`` rebuilds a block so) has its own bytes;
    the generated writer, and fastavro after ``plain_lists`` (the codec's fallback), write it as the list it holds."""
    from aitrace.producers.exporter import without_surrogates

    counts = avro_writer.SmallInts(bytes([3, 0, 200, 1]))
    block = {"name": ["x\ud800"], "counts": counts}
    copy = without_surrogates(block)["counts"]
    assert type(copy) is avro_writer.SmallInts and copy == [3, 0, 200, 1] and copy.raw == bytes([3, 0, 200, 1])
    schema = {"type": "record", "name": "C", "namespace": "t",
              "fields": [{"name": "c", "type": {"type": "array", "items": "long"}}]}  # fmt: skip
    plain = io.BytesIO()
    fastavro.schemaless_writer(plain, fastavro.parse_schema(schema), {"c": [3, 0, 200, 1]})
    assert avro_writer.writer(schema)({"c": copy}) == plain.getvalue()
    fallback = io.BytesIO()
    fastavro.schemaless_writer(fallback, fastavro.parse_schema(schema), avro_writer.plain_lists({"c": copy}))
    assert fallback.getvalue() == plain.getvalue()


def test_a_block_the_generated_writer_leaves_to_fastavro_is_written_with_its_marked_columns() -> None:
    """A data-stats block holding ``Doubles`` and ``SmallInts`` and a value only fastavro takes (1 for the boolean
    ``sampled``): the codec's fallback writes it as the same block of plain lists and ``sampled`` true (fastavro
    refused the lists' subclasses: such a block with ``Doubles`` was lost there before)."""
    from aitrace.producers.exporter import new_block

    rows = _queued_by_client(_histogram_calls(300)[250:], "data_stats")
    columns = ds.data_stats_columns(rows, Counter())
    features = columns["features"]
    assert type(features["histogram_counts"]) is avro_writer.SmallInts and type(features["mean"]) is avro_writer.Doubles
    block = new_block("b", "4bf92f3577b34da6a3ce929d0e0e4736", dict(_ENVELOPE), columns)
    serializer = codec.AvroSerializer("aitrace.DataStatsBlock")
    expected = serializer(avro_writer.plain_lists({**block, "sampled": True}))
    with pytest.raises(avro_writer.Unfit):
        codec._generated_writer("aitrace.DataStatsBlock")({**block, "sampled": 1})
    assert serializer({**block, "sampled": 1}) == expected == serializer({**block, "sampled": True})


_COUNT_LISTS: list[list[Any]] = [
    [[0, 1, 2], [3, 64, 255]], [[]], [], [[0] * 100, [1]], [[True, False, 2]], [list(np.arange(5))],
    [[np.int64(7), 8]], [[256, 1]], [[-1, 2]], [[1.0, 2]], [[3.7]], [["3", 1]], [[None]], [[2**70]],
    [[np.uint8(200), 0]], [[Decimal(3)]], [(1, 2), range(3)], [[0, 1], 5], [["a"]], [[b"\x01"]],
]  # fmt: skip


@pytest.mark.parametrize("lists", _COUNT_LISTS)
def test_counts_are_the_ints_they_were(lists: list[Any]) -> None:
    """Every count as ``int()`` makes it (exact ints in the same order), or the same exception as before."""
    try:
        expected = _old_counts(lists)
    except Exception as exc:  # whatever the code before raised, now too
        with pytest.raises(type(exc)):
            ds._counts(lists)
        return
    got = ds._counts(lists)
    assert got == expected and [type(v) for v in got] == [type(v) for v in expected]


_EDGE_LISTS: list[list[Any]] = [
    [[0.0, 0.5, 1.0], [2.0, 3.5]], [[]], [], [[1, 2.5]], [[np.float64(1.5), np.float32(0.25)]], [[Decimal("1.5")]],
    [[True, 2.0]], [["1.0"]], [[None]], [[1.0], 3.0], [(0.5, 1.5), range(2)], [[float("nan"), float("inf")]],
    [[2**1100]], [[1.0, [2.0]]],
]  # fmt: skip


@pytest.mark.parametrize("lists", _EDGE_LISTS)
def test_edges_are_the_doubles_they_were(lists: list[Any]) -> None:
    try:
        expected = _old_edges(lists)
    except Exception as exc:  # whatever the code before raised, now too
        with pytest.raises(type(exc)):
            ds._edges(lists)
        return
    got = ds._edges(lists)
    assert type(got) is array and got.typecode == "d" and got.tobytes() == expected.tobytes()


# -- records


def _histogram_calls(n: int) -> list[dict[str, Any]]:
    """Batches summarized as aitrace.summarize does (exact histograms: counts of 0..255, a few of 64 and more),
    and in the first 200 batches hand-written histograms of counts above 255, of bools, numpy ints and floats (a
    block holding a count above 255 is written through numpy: the later blocks have none)."""
    tables = []
    for t in range(12):
        rows = 40 + 30 * t
        tables.append(summarize({
            "amount": [round(_RNG.gauss(10, 3), 1) for _ in range(rows)],
            "clicks": [_RNG.choice((0, 0, 0, 1, 2, 5)) for _ in range(rows)],  # a few values: counts of 64 and more
            "ratio": [_RNG.random() for _ in range(rows)],
        }))  # fmt: skip
    odd = [
        {"name": "big", "count": 900, "histogram_edges": [0, 1, 2], "histogram_counts": [300, 600]},
        {"name": "flags", "count": 2, "histogram_edges": [0.0, 0.5, 1.0], "histogram_counts": [True, 1]},
        {"name": "np", "count": 9, "histogram_edges": [np.float64(0), 1], "histogram_counts": [np.int64(9)]},
        {"name": "floats", "count": 3, "histogram_edges": [0.0, 1.0], "histogram_counts": [3.0]},
    ]
    return [
        {"stage": ("ingest", "train")[i % 2], "dataset": "tx", "row_count": 100 + i, "batch": f"b-{i}",
         "features": [*tables[i % len(tables)], *([odd[i % len(odd)]] if i % 5 == 4 and i < 200 else [])]}
        for i in range(n)
    ]  # fmt: skip


_KINDS = {"log": ev.LOG, "inference": ev.INFERENCE, "data_stats": ev.DATA, "ground_truth": ev.GROUND_TRUTH}


def _rows(kind: str, n: int) -> list[Any]:
    if kind == "span":
        return _ended_spans(n)
    if kind == "histograms":
        return _queued_by_client(_histogram_calls(n), "data_stats")
    return _queued(
        {"log": ev.LOG, "inference": ev.INFERENCE, "data_stats": ev.DATA, "ground_truth": ev.GROUND_TRUTH}[kind], n
    )


def _sent(rows: list[Any], per_event: bool) -> tuple[list[str], Counter[str]]:
    settings = Settings(service="unit", batch_max_events=700)  # several blocks of each kind
    stats: Counter[str] = Counter()
    transport = MemoryTransport(stats)
    processors: list[Any] = [TraceSampler(1.0), Redactor(hash_key="k")]  # the default chain, its hash key fixed
    chain_ = [*processors, _PerEvent()] if per_event else processors
    exporter = Exporter(settings, deque(rows), dict(_ENVELOPE), chain_, "p", stats, transport)
    exporter._take()
    exporter._send_pending()
    return [hashlib.sha256(r.value).hexdigest() for r in transport.records], stats


@pytest.mark.parametrize("per_event", [False, True], ids=["blocks", "single events"])
@pytest.mark.parametrize("kind", ["log", "inference", "span", "ground_truth", "data_stats", "histograms"])
def test_every_record_is_the_one_the_code_before_sent(kind: str, per_event: bool) -> None:
    rows = _rows(kind, 2000)
    new, new_stats = _sent(rows, per_event)
    with _the_code_before():
        old, old_stats = _sent(rows, per_event)
    assert new_stats["sent"] == 2000 and new == old and new_stats == old_stats


def test_the_code_before_is_in_place_inside_and_gone_after() -> None:
    """The reference is really the code before while the records above are made, and today's code after."""
    wide = [0] * 20 + [64]
    with _the_code_before():
        assert codec._generated_writer("aitrace.DataStatsBlock") is not None
        assert ds._counts is _old_counts and avro_writer._integers is _old_integers and blocks.every is _old_every
    assert ds._counts is not _old_counts and avro_writer._integers is not _old_integers
    assert blocks.every is avro_writer.every is not _old_every
    assert avro_writer._integers("long", wide) == _old_integers("long", wide)
