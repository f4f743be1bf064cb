"""A Python Avro writer generated from one schema, for the producer's hot path.

fastavro's writer walks the schema for every datum; the producer writes the same few record
shapes hundreds of thousands of times. :func:`writer` turns a schema into Python source, one
function per named record with every field's write inlined (a string field looks its text up
among the field's recent ones, whose encoded bytes it keeps), and compiles it once. On batches
of aitrace events it takes well under half of fastavro's CPU time (``bench/bench_sender.py``
shows the exporter's whole cost per event).

It writes only what it is sure of: exact Python types (``str``, ``int`` in range, ``float``,
``bool``, ``dict``, ``list``, unions given as ``None``, a value of one branch's type or a
``(record name, dict)`` tuple) and records holding exactly their fields. Anything else (a
missing field that has a default, an extra field, a ``bool`` for a ``long``, a numpy scalar)
raises :class:`Unfit`, and the caller encodes that datum with fastavro instead
(:class:`~aitrace.schemas.codec.AvroSerializer` does), so the bytes and the errors are always
fastavro's. ``tests/test_avro_writer.py`` checks the bytes against fastavro on fuzzed events.
"""

from __future__ import annotations

import functools
import io
import struct
import sys
from array import array
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

import fastavro

_INT_RANGE = {"int": (-(1 << 31), (1 << 31) - 1), "long": (-(1 << 63), (1 << 63) - 1)}


class Unfit(ValueError):
    """A datum the generated writer does not write itself (fastavro decides)."""


_HEAD = 64  # items of a column counted before the whole of it (see every)


def every(values: list[Any], value: Any) -> bool:
    """Whether every item of ``values`` is ``value`` (as ``list.count`` compares: ==), its first items counted first.

    Blocks ask this of most columns (one value throughout? all None?), and most columns that are not are so
    from their first items on (times, ids, histogram counts, a column of texts asked for None): a full count
    compares each unequal item, 7-16 ns (an int, a text, a double), where 64 of them settle it
    (``bench/bench_sender.py --kinds data_stats_skab``: 13 µs of an event's ~100 for its histogram counts).
    """
    n = len(values)
    return values[:_HEAD].count(value) == min(n, _HEAD) and values.count(value) == n


def _varint(buf: bytearray, z: int) -> None:
    """A zig-zagged value of 128 or more as an Avro varint (smaller ones are appended inline)."""
    while z >= 0x80:
        buf.append((z & 0x7F) | 0x80)
        z >>= 7
    buf.append(z)


def _fail() -> None:
    raise Unfit


_TEXTS_MAX = 1024


def _text(memo: dict[str, bytes], value: Any) -> bytes:
    """A string field's bytes (length prefix and UTF-8), remembered in the field's ``memo``."""
    if type(value) is not str:
        raise Unfit
    body = value.encode()
    head = bytearray()
    _varint(head, len(body) << 1)
    out = bytes(head) + body
    if len(memo) >= _TEXTS_MAX:  # a field of unique texts (event ids) keeps starting over, and costs little
        memo.clear()
    memo[value] = out
    return out


_INTEGER_ARRAYS = {kind: fastavro.parse_schema({"type": "array", "items": kind}) for kind in _INT_RANGE}


# zig-zag varints of 0..63: one byte each, 2 * value (the rest of the table is never looked up)
_SMALL_VARINTS = bytes(range(0, 128, 2)).ljust(256, b"\0")
_BELOW_64 = bytes(range(64))


# zig-zag varints of 0..255 as (first byte, second byte or 0xFF): 64 and above take two bytes; 0xFF is never
# one of their bytes (a first byte's value bits are even, a second byte is at most 3), so it marks "no byte"
_FIRST_BYTES = bytes(2 * v if v < 64 else (2 * v & 0x7F) | 0x80 for v in range(256))
_SECOND_BYTES = bytes(0xFF if v < 64 else 2 * v >> 7 for v in range(256))


# a value's one-byte varint below 64 (2 * value, never 0xFF), 0xFF for one of two bytes; the two bytes of 64..255
_SMALL_OR_WIDE = bytes(2 * v if v < 64 else 0xFF for v in range(256))
_TWO_BYTES = tuple(bytes([(2 * v & 0x7F) | 0x80, 2 * v >> 7]) for v in range(256))  # (read from 64 on)
_SPARSE = 16  # at most one value in this many of 64 and above: runs of one-byte varints between them


def _byte_varints(small: bytes, wide: bytes) -> bytes | bytearray:
    """The varints of values 0..255 (histogram counts, feature counts), ``wide`` those of them of 64 and above
    in order (two bytes each): in C loops.

    Mostly small values (exact histograms of a batch: a few counts reach 64) are runs of one-byte varints
    split at the few wide ones; a pair of bytes for every value and the deletion of each missing second
    byte cost ~13 ns a value there (``bench/bench_sender.py --kinds data_stats_skab``).
    """
    if len(wide) * _SPARSE <= len(small):
        runs = small.translate(_SMALL_OR_WIDE).split(b"\xff")  # one more run than wide values
        parts = [b""] * (2 * len(runs) - 1)
        parts[0::2] = runs
        parts[1::2] = map(_TWO_BYTES.__getitem__, wide)
        return b"".join(parts)
    pairs = bytearray(2 * len(small))
    pairs[0::2] = small.translate(_FIRST_BYTES)
    pairs[1::2] = small.translate(_SECOND_BYTES)
    return pairs.replace(b"\xff", b"")


class SmallInts(list[int]):
    """A column of ints of 0..255 with ``raw``, their bytes, as the block builder that made it found them by one
    ``bytes`` call (histogram counts): :func:`_integers` writes it from those bytes without a second look at
    its items (~5 ns each). Made from any ints of 0..255; whoever changes one in place makes a list of it first."""

    __slots__ = ("raw",)

    def __init__(self, values: Iterable[int]) -> None:
        raw = bytes(values)  # (bytes as they are; the items again where a copy is made as type(x)(items))
        super().__init__(raw)
        self.raw = raw


def plain_lists(value: Any) -> Any:
    """``value`` with each :class:`Doubles` and :class:`SmallInts` in it made a list: fastavro refuses a list's
    subclass, and it writes what the generated writer was not sure of (the codec's fallback, rare)."""
    kind = type(value)
    if kind is dict:
        return {k: plain_lists(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return kind(map(plain_lists, value))
    return list(value) if kind is Doubles or kind is SmallInts else value


def _small_ints(small: bytes) -> bytes:
    """An array of ints or longs of 0..255, given as their bytes: one byte each below 64, one or two from 64."""
    head = bytearray()
    _varint(head, len(small) << 1)
    wide = small.translate(None, _BELOW_64)  # the values of 64 and above (one C pass; max() makes an int per byte)
    if not wide:
        return bytes(head) + small.translate(_SMALL_VARINTS) + b"\0"
    return bytes(head) + _byte_varints(small, wide) + b"\0"


def _integers(kind: str, values: list[Any]) -> bytes:
    """A non-empty array of ints or longs as fastavro writes it: its C loop beats a Python varint per item
    (metric times are 8-byte varints), and fastavro is the reference anyway.

    Index and length columns of blocks hold small non-negative ints: one byte each, written by
    ``bytes`` and ``translate`` (C loops) in about half of fastavro's time; values up to 255 (histogram
    counts) by :func:`_byte_varints`; a column of one value (row counts, feature counts) as its varint
    repeated. Long columns go through :func:`_long_varints` (numpy) first.
    """
    if type(values) is SmallInts:  # the builder's bytes of 0..255 (any varint path writes the same bytes)
        return _small_ints(values.raw)
    first, (lo, hi) = values[0], _INT_RANGE[kind]
    # one value throughout (row counts, feature counts, a column of zeros): its varint repeated, found by one
    # count (its items are mostly the very same int object: a pointer comparison each). count() compares by ==,
    # so a 1000.0 or Decimal(1000) counts too: fastavro writes each of those as 1000 as well
    if type(first) is int and lo <= first <= hi and every(values, first):
        one = bytearray()
        _varint(one, (first << 1) ^ (first >> 63))
        head = bytearray()
        _varint(head, len(values) << 1)
        return bytes(head) + bytes(one) * len(values) + b"\0"
    last = values[-1]  # 0..n-1 (a span block's index): both ends looked at first, then the whole column
    if type(first) is int and type(last) is int and first == 0 and last == len(values) - 1 <= _POSITIONS - 1:
        positions, varints = _positions()
        if values == positions[: len(values)]:
            head = bytearray()
            _varint(head, len(values) << 1)
            return bytes(head) + varints[: _position_bytes(len(values))] + b"\0"
    try:
        small = bytes(values)  # each an int in 0..255 (a bool is 0 or 1, as fastavro writes it), else it raises
    except (TypeError, ValueError):
        small = None
    if small is not None:
        return _small_ints(small)
    if len(values) >= _NUMPY_FROM:
        raw = _long_varints(values)
        if raw is not None:
            return raw
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _INTEGER_ARRAYS[kind], values)
    return out.getvalue()


_NUMPY_FROM = 256  # shorter columns: numpy's per-call costs outweigh fastavro's per-item loop
_POSITIONS = 8192  # 0..8191: one zig-zag varint byte each below 64, two from 64


@functools.cache
def _positions() -> tuple[list[int], bytes]:
    """0, 1, 2 ... as a list, and their varints in a row: a span block's index when each record is a span of its
    own (``span_index``), which took numpy's path (~0.08 µs an event); now one comparison and a slice."""
    positions = list(range(_POSITIONS))
    varints = bytearray()
    for value in positions:
        _varint(varints, value << 1)
    return positions, bytes(varints)


def _position_bytes(n: int) -> int:
    """The bytes of the varints of 0..n-1 (see :func:`_positions`)."""
    return n if n <= 64 else 64 + 2 * (n - 64)


@functools.cache
def varint_tables() -> tuple[Any, Any, Any, Any, list[Any]]:
    """numpy and the tables
    :func:`_long_varints` reads: the shifts of the ten 7-bit groups of a 64-bit varint, the smallest value
    needing each further group, group numbers, the continuation bits of an ``n``-group varint.

    The exporter thread calls it when it starts (numpy's import takes ~0.1 s, holding the GIL in bursts:
    at start, not mid-stream at the first long column); ``import aitrace`` still does not load numpy."""
    import numpy as np

    shifts = np.arange(0, 70, 7, dtype=np.uint64)
    limits = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)
    more = [np.array([0x80] * (n - 1) + [0], dtype=np.uint8) for n in range(1, 11)]
    return np, shifts, limits, np.arange(10), more


def _long_varints(values: list[Any]) -> bytes | None:
    """A long column as zig-zag varints in a few numpy calls, or None: a value that is not an int in the
    64-bit range (fastavro then writes it, or says why not).

    Block times are 8-byte varints: fastavro's item loop costs about 170 ns each, this about 60
    (``bench/bench_sender.py``: the time and start columns of every span and inference block). The
    bytes of each value, low group first, are the rows of one uint8 matrix; when the values differ in
    width, each row keeps only its own groups.
    """
    np, shifts, limits, group_numbers, more = varint_tables()
    try:
        longs = np.frombuffer(array("q", values), dtype=np.int64)  # array("q") takes ints and bools only
    except (TypeError, OverflowError):
        return None
    zigzag = ((longs << 1) ^ (longs >> 63)).view(np.uint64)
    narrow, wide = np.searchsorted(limits, (zigzag.min(), zigzag.max()), side="right") + 1
    groups = (zigzag[:, None] >> shifts[:wide]).astype(np.uint8)
    groups &= 0x7F
    if narrow == wide:
        groups |= more[wide - 1]
        body = groups.tobytes()
    else:
        widths = np.searchsorted(limits, zigzag, side="right")[:, None] + 1
        groups[group_numbers[:wide] < widths - 1] |= 0x80
        body = groups[group_numbers[:wide] < widths].tobytes()
    head = bytearray()
    _varint(head, len(values) << 1)
    return bytes(head) + body + b"\0"


_SHORT = 64  # strings below this many bytes have a one-byte length prefix
_HEADS = (
    tuple(bytes([n << 1]) for n in range(_SHORT)),  # array<string>
    tuple(bytes([2, n << 1]) for n in range(_SHORT)),  # array<null|string>: branch 1, then the length
)


_REPEATED = 4  # a column with at most a quarter of its values distinct: a table of their bytes
_SAMPLE = 64  # values looked at first to guess that (a column of unique ids is not made a table)
_TEXT_HEADS = tuple(  # the ASCII prefixes of short ASCII texts, as str: one encode for the whole column
    tuple(head.decode("ascii") for head in heads) for heads in _HEADS
)


def _item(text: str, nullable: bool) -> tuple[bytes, bytes, bytes]:
    """One item of an array of strings: the union branch (when nullable), the length, the UTF-8 bytes."""
    body = text.encode()
    head = bytearray()
    _varint(head, len(body) << 1)
    return b"\x02" if nullable else b"", bytes(head), body


def _strings(values: list[Any], nullable: bool) -> bytes | None:
    """A non-empty array of ``str`` s (no None) in a few C loops, or None: the caller writes it item by item.

    Blocks carry long columns of texts: attribute values (a few distinct ones, repeated), span and
    request ids (unique, ASCII, often of one length). Each shape has its own few C loops; the item
    loop with its memo costs more (``bench/bench_sender.py``).
    """
    if not values or set(map(type, values)) != {str}:  # (a None among them: its type is in the set)
        return None
    head = bytearray()
    _varint(head, len(values) << 1)
    first = values[0]
    try:
        if every(values, first):  # one text throughout (an attribute, a parent span)
            return bytes(head) + b"".join(_item(first, nullable)) * len(values) + b"\x00"
        if len(set(values[:_SAMPLE])) * _REPEATED <= min(len(values), _SAMPLE):  # a few texts, repeated
            distinct = dict.fromkeys(values)
            if len(distinct) * _REPEATED <= len(values):
                items = {text: b"".join(_item(text, nullable)) for text in distinct}
                return bytes(head) + b"".join(map(items.__getitem__, values)) + b"\x00"
    except UnicodeEncodeError:  # a lone surrogate: the item loop fails and fastavro says why
        return None
    lengths = list(map(len, values))
    if max(lengths) < _SHORT:  # ASCII (checked below): a text's length is its length in bytes
        heads = _TEXT_HEADS[nullable]
        if lengths.count(lengths[0]) == len(lengths):  # ids of one length: the length prefix joins them
            text = heads[lengths[0]] + heads[lengths[0]].join(values)
        else:
            parts: list[str] = [""] * (2 * len(values))
            parts[0::2] = itemgetter(*lengths)(heads)  # (two or more lengths here) one C call, not one per item
            parts[1::2] = values
            text = "".join(parts)
        if text.isascii():
            return bytes(head) + text.encode() + b"\x00"
    try:
        bodies = list(map(str.encode, values))
    except UnicodeEncodeError:
        return None
    lengths = list(map(len, bodies))
    if max(lengths) >= _SHORT:
        return None
    parts_b: list[bytes] = [b""] * (2 * len(bodies) + 2)
    parts_b[0] = bytes(head)
    parts_b[1:-1:2] = map(_HEADS[nullable].__getitem__, lengths)  # each item's length prefix, then its bytes
    parts_b[2:-1:2] = bodies
    parts_b[-1] = b"\x00"
    return b"".join(parts_b)


class Doubles(list[Any]):  # (of floats; Any: it stands where columns of optional doubles are typed)
    """A column of ``float`` s only, as the block builder that made it found by its own look at their types:
    :func:`_doubles` packs it without a second look (about half of a column's writing time).

    Whoever changes one in place keeps it floats: a None or a text in it is still written item by item
    (null, or the schema's error), but a bool or a numpy scalar would be packed as a double where a
    plain list holding one fails the schema."""

    __slots__ = ()


def _doubles(values: list[Any] | array[float], nullable: bool = True) -> bytes | None:
    """A non-empty array of ``null|double`` (or ``double``) holding only numbers, as one struct call; else None
    (item by item).

    Inference blocks carry a column of these per numeric feature, data-stats blocks their moments and
    quantiles; their histogram edges come as an ``array("d")``, whose bytes are those of an Avro
    ``array<double>``'s items on a little-endian machine.
    """
    if type(values) is array:
        if values.typecode != "d" or nullable or sys.byteorder != "little":
            return None
        if not values:
            return b"\x00"
        head = bytearray()
        _varint(head, len(values) << 1)
        return bytes(head) + values.tobytes() + b"\x00"
    if type(values) is Doubles:
        if not values:
            return b"\x00"
    elif not values or not set(map(type, values)) <= {float, int}:
        return None
    head = bytearray()
    _varint(head, len(values) << 1)
    body: bytes | bytearray
    try:
        if nullable:  # each item: branch 1 (zigzag 2), then its 8 bytes; written as a pad byte, then set to 2
            body = bytearray(struct.pack("<" + "xd" * len(values), *values))
            body[0::9] = b"\x02" * len(values)
        else:
            body = struct.pack(f"<{len(values)}d", *values)
    except (struct.error, OverflowError):  # an int beyond a double: the item loop fails and says why
        return None
    return bytes(head) + body + b"\x00"


class _Gen:
    """Python source for one schema: a function per named record, fields written inline."""

    def __init__(self) -> None:
        self.functions: dict[str, list[str]] = {}
        self.constants: dict[str, Any] = {}
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def record(self, node: dict[str, Any], namespace: str) -> str:
        """Define the writer of a record (once); returns its function's name."""
        full = node["name"] if "." in node["name"] else f"{node.get('namespace', namespace)}.{node['name']}"
        func = "w_" + full.replace(".", "_")
        if func in self.functions:
            return func
        self.functions[func] = []  # claimed before the fields: a field may name this record again
        inner = full.rsplit(".", 1)[0]
        body = [f"    if type(d) is not dict or len(d) != {len(node['fields'])}:", "        fail()"]
        for field in node["fields"]:
            var = self.name("v")
            body.append(f"    {var} = d[{field['name']!r}]")
            body.extend(self.value(field["type"], var, inner, "    "))
        self.functions[func] = [f"def {func}(buf, d):", *body]
        return func

    def value(self, schema: Any, var: str, namespace: str, pad: str) -> list[str]:
        """Lines that write ``var`` as ``schema``, or call fail()."""
        if isinstance(schema, list):
            return self.union(schema, var, namespace, pad)
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            full = schema if "." in schema else f"{namespace}.{schema}"
            return [f"{pad}w_{full.replace('.', '_')}(buf, {var})"]
        kind = schema if isinstance(schema, str) else schema["type"]
        if kind in ("record", "error"):
            return [f"{pad}{self.record(schema, namespace)}(buf, {var})"]
        if kind in ("array", "map"):
            return self.container(schema, var, namespace, pad)
        if kind == "enum":
            symbols = self.name("SYMBOLS")
            self.constants[symbols] = {s: i for i, s in enumerate(schema["symbols"])}
            return [f"{pad}buf.append({symbols}[{var}] << 1)"]  # fewer than 64 symbols: checked at build
        if kind == "fixed":
            return [f"{pad}if type({var}) is not bytes or len({var}) != {schema['size']}:", f"{pad}    fail()",
                    f"{pad}buf += {var}"]  # fmt: skip
        if isinstance(schema, dict) and kind in _PRIMITIVES:
            return self.value(kind, var, namespace, pad)
        return self.primitive(kind, var, pad)

    def primitive(self, kind: str, var: str, pad: str) -> list[str]:
        if kind == "null":
            return [f"{pad}if {var} is not None:", f"{pad}    fail()"]
        if kind == "boolean":
            return [f"{pad}if {var} is True:", f"{pad}    buf.append(1)", f"{pad}elif {var} is False:",
                    f"{pad}    buf.append(0)", f"{pad}else:", f"{pad}    fail()"]  # fmt: skip
        if kind in _INT_RANGE:
            lo, hi = _INT_RANGE[kind]
            z = self.name("z")
            return [f"{pad}if type({var}) is not int or not {lo} <= {var} <= {hi}:", f"{pad}    fail()",
                    f"{pad}{z} = ({var} << 1) ^ ({var} >> 63)",
                    f"{pad}if {z} < 128:", f"{pad}    buf.append({z})",
                    f"{pad}else:", f"{pad}    varint(buf, {z})"]  # fmt: skip
        if kind in ("float", "double"):
            pack = "pack_f" if kind == "float" else "pack_d"
            return [f"{pad}if type({var}) is not float and type({var}) is not int:", f"{pad}    fail()",
                    f"{pad}buf += {pack}({var})"]  # fmt: skip
        if kind == "string":  # a field's recent texts, length prefix included: most repeat (service, host, level)
            raw, memo = self.name("b"), self.name("TEXTS")
            self.constants[memo] = {}
            return [f"{pad}{raw} = {memo}.get({var}) if type({var}) is str else None",
                    f"{pad}if {raw} is None:", f"{pad}    {raw} = text({memo}, {var})",
                    f"{pad}buf += {raw}"]  # fmt: skip
        if kind == "bytes":
            return [f"{pad}if type({var}) is not bytes:", f"{pad}    fail()", f"{pad}z = len({var}) << 1",
                    f"{pad}if z < 128:", f"{pad}    buf.append(z)", f"{pad}else:", f"{pad}    varint(buf, z)",
                    f"{pad}buf += {var}"]  # fmt: skip
        raise Unfit(f"no generated writer for Avro type {kind!r}")

    def container(self, schema: dict[str, Any], var: str, namespace: str, pad: str) -> list[str]:
        """An array or a map: one block of ``len`` items, then the empty block (as fastavro writes)."""
        is_map = schema["type"] == "map"
        items = schema["values"] if is_map else schema["items"]
        if not is_map and items in ("long", "int"):  # steps, times: long columns, in fastavro's C loop
            return [f"{pad}if type({var}) not in (list, SmallInts):", f"{pad}    fail()",
                    f"{pad}if {var}:", f"{pad}    buf += integers({items!r}, {var})",
                    f"{pad}else:", f"{pad}    buf.append(0)"]  # fmt: skip
        if not is_map and items in ("string", ["null", "string"]):  # a column of texts: C loops when short
            raw = self.name("s")
            nullable = items != "string"
            return [f"{pad}{raw} = strings({var}, {nullable}) if type({var}) is list else None",
                    f"{pad}if {raw} is not None:", f"{pad}    buf += {raw}", f"{pad}else:",
                    *self.items(schema, var, namespace, pad + "    ")]  # fmt: skip
        if not is_map and items in (["null", "double"], "double"):  # a numeric column: one struct call
            raw = self.name("s")
            call = f"doubles({var}, {items != 'double'})"
            return [f"{pad}{raw} = {call} if type({var}) in (list, array, Doubles) else None",
                    f"{pad}if {raw} is not None:", f"{pad}    buf += {raw}", f"{pad}else:",
                    *self.items(schema, var, namespace, pad + "    ")]  # fmt: skip
        return self.items(schema, var, namespace, pad)

    def items(self, schema: dict[str, Any], var: str, namespace: str, pad: str) -> list[str]:
        """An array or a map item by item."""
        is_map = schema["type"] == "map"
        items = schema["values"] if is_map else schema["items"]
        z = self.name("z")
        test = f"type({var}) is not {'dict' if is_map else 'list'}"
        if not is_map and items in (["null", "double"], "double"):  # a builder's Doubles too, item by item
            test = f"type({var}) not in (list, Doubles)"
        lines = [f"{pad}if {test}:", f"{pad}    fail()", f"{pad}if {var}:",
                 f"{pad}    {z} = len({var}) << 1", f"{pad}    if {z} < 128:", f"{pad}        buf.append({z})",
                 f"{pad}    else:", f"{pad}        varint(buf, {z})"]  # fmt: skip
        if not is_map and items in ("double", "float"):  # a numeric column: one struct call
            code = "d" if items == "double" else "f"
            lines.append(f"{pad}    buf += pack('<%d{code}' % len({var}), *{var})")
        else:
            item = self.name("x")
            if is_map:
                key = self.name("k")
                lines.append(f"{pad}    for {key}, {item} in {var}.items():")
                lines.extend(self.primitive("string", key, pad + "        "))
            else:
                lines.append(f"{pad}    for {item} in {var}:")
            lines.extend(self.value(items, item, namespace, pad + "        "))
        lines.append(f"{pad}buf.append(0)")
        return lines

    def union(self, branches: list[Any], var: str, namespace: str, pad: str) -> list[str]:
        """The first branch whose Python type fits (fastavro takes the first branch that validates)."""
        lines: list[str] = []
        for index, branch in enumerate(branches):
            test, target = self.fits(branch, var, namespace)
            lines.append(f"{pad}{'if' if not lines else 'elif'} {test}:")
            lines.append(f"{pad}    buf.append({index << 1})")
            lines.extend(self.value(branch, target, namespace, pad + "    "))
        return [*lines, f"{pad}else:", f"{pad}    fail()"]

    @staticmethod
    def fits(branch: Any, var: str, namespace: str) -> tuple[str, str]:
        """A test of ``var``'s Python type for one union branch, and what that branch writes."""
        kind = branch if isinstance(branch, str) else branch["type"]
        tests = {"null": f"{var} is None", "boolean": f"type({var}) is bool", "int": f"type({var}) is int",
                 "long": f"type({var}) is int", "float": f"type({var}) in (float, int)",
                 "double": f"type({var}) in (float, int)", "string": f"type({var}) is str",
                 "bytes": f"type({var}) is bytes", "map": f"type({var}) is dict",
                 "array": f"type({var}) is list"}  # fmt: skip
        if kind in tests:
            return tests[kind], var
        name = branch if isinstance(branch, str) else branch["name"]
        if "." not in name:
            name = f"{branch.get('namespace', namespace) if isinstance(branch, dict) else namespace}.{name}"
        return f"type({var}) is tuple and len({var}) == 2 and {var}[0] == {name!r}", f"{var}[1]"


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def writer(schema: dict[str, Any]) -> Callable[[Any], bytes]:
    """The body bytes of a datum of ``schema`` (an expanded schema without logical types); raises :class:`Unfit`."""
    gen = _Gen()
    top = gen.record(schema, schema.get("namespace", ""))
    for symbols in (v for k, v in gen.constants.items() if k.startswith("SYMBOLS")):
        if len(symbols) >= 64:
            raise Unfit("an enum of 64 symbols or more")
    source = "\n\n".join("\n".join(lines) for lines in gen.functions.values())
    namespace: dict[str, Any] = {
        "fail": _fail,
        "varint": _varint,
        "integers": _integers,
        "text": _text,
        "strings": _strings,
        "doubles": _doubles,
        "array": array,
        "Doubles": Doubles,
        "SmallInts": SmallInts,
        "pack": struct.pack,
        "pack_d": struct.Struct("<d").pack,
        "pack_f": struct.Struct("<f").pack,
        **gen.constants,
    }
    exec(compile(source, f"<avro writer {schema.get('name')}>", "exec"), namespace)  # source generated from the schema
    write_top = namespace[top]

    def write(datum: Any) -> bytes:
        buf = bytearray()
        write_top(buf, datum)
        return bytes(buf)

    return write
