"""Decode inference, log and span blocks without fastavro: one Numba walk over the record.

fastavro reads a block's columns item by item through its generic reader (about 0.8 ms for an
inference block of 200 records with 4 features, 4 microseconds an event: more than all the
worker's other trace-keyed work on such a block). The walk here records where each item is
(an integer, a string's byte range, a double's position) in a few flat arrays; Python then
builds each column with one slice or one list comprehension. The result equals fastavro's dict
(the tests compare them); the worker keeps it as columns (:mod:`aitrace.processors.block_columns`).

Only the types the block schemas use are read: string, boolean, ``null|string``, ``null|int``,
``map<string>``, arrays of long, int, double, string, ``null|string`` and ``null|double``, and
maps of the last two. A schema with another field type, anything malformed, a record with bytes
after its end, or invalid UTF-8: None, and the caller decodes with fastavro (which says what
is wrong, if anything).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, cast

import numpy as np
from aitrace.detect import _cache  # noqa: F401  (Numba cache dir, set before any @njit)
from aitrace.processors.fastevents import _block_count, _string, _varint
from aitrace.schemas.codec import compiled
from numba import njit

# field codes
STR, OPT_STR, OPT_LONG, BOOL, MAP_STR, ARR_LONG, ARR_DOUBLE, ARR_STR, ARR_OPT_STR, ARR_OPT_DOUBLE = range(10)
MAP_ARR_OPT_DOUBLE, MAP_ARR_OPT_STR = 10, 11
# counters: ints, doubles, strings, map entries taken so far
_I, _F, _S, _E = range(4)


def _code(t: Any) -> int | None:
    """The field code of an Avro type (fastavro's parsed form), or None if the walk cannot read it."""
    if t == "string":
        return STR
    if t == "boolean":
        return BOOL
    if t == ["null", "string"]:
        return OPT_STR
    if t in (["null", "int"], ["null", "long"]):
        return OPT_LONG
    if not isinstance(t, dict):
        return None
    items = _ITEMS.get(str(t.get("items"))) if t.get("type") == "array" else None
    if t.get("type") == "map":
        values = t.get("values")
        if values == "string":
            return MAP_STR
        inner = _code(values)
        return {ARR_OPT_DOUBLE: MAP_ARR_OPT_DOUBLE, ARR_OPT_STR: MAP_ARR_OPT_STR}.get(inner or -1)
    return items


_ITEMS = {
    "long": ARR_LONG,
    "int": ARR_LONG,
    "double": ARR_DOUBLE,
    "string": ARR_STR,
    str(["null", "string"]): ARR_OPT_STR,
    str(["null", "double"]): ARR_OPT_DOUBLE,
}


@cache
def layout(schema: str) -> tuple[tuple[str, ...], np.ndarray] | None:
    """Field names and codes of a block schema; None if the walk cannot read every field."""
    fields = compiled(schema).parsed["fields"]
    codes = [_code(f["type"]) for f in fields]
    if any(c is None for c in codes):
        return None
    return tuple(f["name"] for f in fields), np.array(codes, dtype=np.int64)


@njit(cache=True)
def _array(
    buf: np.ndarray,
    pos: int,
    item: int,
    iv: np.ndarray,
    fp: np.ndarray,
    sv: np.ndarray,
    cnt: np.ndarray,
    ascii: np.ndarray,
) -> tuple[int, int, int]:  # pragma: no cover - jitted
    """The array at buf[pos:] of ``item`` (an ARR_ code): (position, first slot, items); position -1: not here."""
    size = buf.shape[0]
    which = _I if item == ARR_LONG else (_F if item in (ARR_DOUBLE, ARR_OPT_DOUBLE) else _S)
    start, total = cnt[which], 0
    while True:
        count, pos = _block_count(buf, pos)
        if pos < 0:
            return -1, 0, 0
        if count == 0:
            return pos, start, total
        if count > size - pos:  # every item takes a byte or more: a larger count is corrupt
            return -1, 0, 0
        for _ in range(count):
            branch = 1
            if item in (ARR_OPT_DOUBLE, ARR_OPT_STR):
                branch, pos = _varint(buf, pos)
                if pos < 0 or branch < 0 or branch > 1:
                    return -1, 0, 0
            if item == ARR_LONG:
                v, pos = _varint(buf, pos)
                if pos < 0:
                    return -1, 0, 0
                iv[cnt[_I]] = v
            elif which == _F:
                if branch == 1 and pos + 8 > size:
                    return -1, 0, 0
                fp[cnt[_F]] = pos if branch == 1 else -1
                pos += 8 * branch
            elif branch == 0:
                sv[2 * cnt[_S]], sv[2 * cnt[_S] + 1] = -1, -1
            else:
                s, e = _string(buf, pos, ascii)
                if e < 0:
                    return -1, 0, 0
                sv[2 * cnt[_S]], sv[2 * cnt[_S] + 1] = s, e
                pos = e
            cnt[which] += 1
        total += count


@njit(cache=True)
def _map(
    buf: np.ndarray,
    pos: int,
    code: int,
    iv: np.ndarray,
    fp: np.ndarray,
    sv: np.ndarray,
    ent: np.ndarray,
    cnt: np.ndarray,
    ascii: np.ndarray,
) -> tuple[int, int, int]:  # pragma: no cover - jitted
    """The map at buf[pos:]: (position, first entry, entries); an entry is (key slot, first value slot, values)."""
    size = buf.shape[0]
    start, total = cnt[_E], 0
    while True:
        count, pos = _block_count(buf, pos)
        if pos < 0:
            return -1, 0, 0
        if count == 0:
            return pos, start, total
        if 2 * count > size - pos:
            return -1, 0, 0
        for _ in range(count):
            s, e = _string(buf, pos, ascii)
            if e < 0:
                return -1, 0, 0
            k = cnt[_E]
            ent[3 * k] = cnt[_S]
            sv[2 * cnt[_S]], sv[2 * cnt[_S] + 1] = s, e
            cnt[_S] += 1
            if code == MAP_STR:
                pos, first, n = _array_one_string(buf, e, sv, cnt, ascii)
            else:
                pos, first, n = _array(
                    buf, e, ARR_OPT_DOUBLE if code == MAP_ARR_OPT_DOUBLE else ARR_OPT_STR, iv, fp, sv, cnt, ascii
                )
            if pos < 0:
                return -1, 0, 0
            ent[3 * k + 1], ent[3 * k + 2] = first, n
            cnt[_E] += 1
        total += count


@njit(cache=True)
def _array_one_string(
    buf: np.ndarray, pos: int, sv: np.ndarray, cnt: np.ndarray, ascii: np.ndarray
) -> tuple[int, int, int]:  # pragma: no cover - jitted
    """One string into the next string slot: (position, its slot, 1)."""
    s, e = _string(buf, pos, ascii)
    if e < 0:
        return -1, 0, 0
    sv[2 * cnt[_S]], sv[2 * cnt[_S] + 1] = s, e
    cnt[_S] += 1
    return e, cnt[_S] - 1, 1


@njit(cache=True)
def _walk(
    buf: np.ndarray,
    pos: int,
    codes: np.ndarray,
    tok: np.ndarray,
    iv: np.ndarray,
    fp: np.ndarray,
    sv: np.ndarray,
    ent: np.ndarray,
    cnt: np.ndarray,
    ascii: np.ndarray,
) -> int:  # pragma: no cover - jitted
    """Every field of the record at buf[pos:] into tok (two slots a field); the end position, -1: not here."""
    for i in range(codes.shape[0]):
        code = codes[i]
        if code in (STR, OPT_STR):
            branch = 1
            if code == OPT_STR:
                branch, pos = _varint(buf, pos)
                if pos < 0 or branch < 0 or branch > 1:
                    return -1
            tok[2 * i] = -1
            if branch == 1:
                pos, slot, _ = _array_one_string(buf, pos, sv, cnt, ascii)
                tok[2 * i] = slot
        elif code == OPT_LONG:
            branch, pos = _varint(buf, pos)
            if pos < 0 or branch < 0 or branch > 1:
                return -1
            tok[2 * i] = -1
            if branch == 1:
                v, pos = _varint(buf, pos)
                if pos < 0:
                    return -1
                iv[cnt[_I]] = v
                tok[2 * i] = cnt[_I]
                cnt[_I] += 1
        elif code == BOOL:
            if pos >= buf.shape[0] or buf[pos] > 1:
                return -1
            tok[2 * i] = buf[pos]
            pos += 1
        elif code == MAP_STR or code >= MAP_ARR_OPT_DOUBLE:
            pos, first, n = _map(buf, pos, code, iv, fp, sv, ent, cnt, ascii)
            tok[2 * i], tok[2 * i + 1] = first, n
        else:
            pos, first, n = _array(buf, pos, code, iv, fp, sv, cnt, ascii)
            tok[2 * i], tok[2 * i + 1] = first, n
        if pos < 0:
            return -1
    return pos


def decode_block(schema: str, data: bytes, offset: int) -> dict[str, Any] | None:
    """The block record at ``data[offset:]`` as fastavro decodes it, or None (see the module doc)."""
    found = decode_columns(schema, data, offset)
    return None if found is None else found[0]


def decode_columns(schema: str, data: bytes, offset: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """:func:`decode_block`'s dict, and its double and long columns as the float64 and int64 arrays they were
    read from (a column's name, or a map column's name and key; read-only views, NaN for a null): the worker's
    checks and series side want arrays, and converting the lists back cost about 4 us a column of 200 values,
    eight columns an inference block (:func:`double_column`, :func:`long_column`). None: as :func:`decode_block`."""
    found = layout(schema)
    if found is None:
        return None
    names, codes = found
    buf = np.frombuffer(data, dtype=np.uint8)
    room = len(data) - offset + 1  # every item, key and entry takes a byte or more
    tok = np.zeros(2 * len(codes), dtype=np.int64)
    iv, fp = np.empty(room, dtype=np.int64), np.empty(room, dtype=np.int64)
    sv, ent = np.empty(2 * room, dtype=np.int64), np.empty(3 * room, dtype=np.int64)
    cnt, ascii = np.zeros(4, dtype=np.int64), np.ones(1, dtype=np.int64)
    if _walk(buf, offset, codes, tok, iv, fp, sv, ent, cnt, ascii) != len(data):
        return None
    try:
        strs = _strings(data, sv[: 2 * cnt[_S]].tolist(), bool(ascii[0]))
    except UnicodeDecodeError:
        return None
    longs = iv[: cnt[_I]]
    longs.flags.writeable = False
    ints = longs.tolist()
    doubles, read = _doubles(buf, fp[: cnt[_F]])
    code_list, tokens, entries = codes.tolist(), tok.tolist(), ent[: 3 * cnt[_E]].tolist()
    return _fields(names, code_list, tokens, (ints, doubles, strs), (longs, read), entries)


def double_column(block: Mapping[str, Any], arrays: Mapping[str, Any], name: str, key: str | None = None) -> np.ndarray:
    """``np.asarray(column, dtype=np.float64)`` of the double column ``block[name]`` (``block[name][key]`` for a
    map of columns): the array :func:`decode_columns` read it from (in ``arrays``), or the list converted."""
    held = arrays.get(name)
    if key is not None:
        held = None if held is None else held.get(key)
        return held if held is not None else np.asarray(block[name][key], dtype=np.float64)
    return held if held is not None else np.asarray(block[name], dtype=np.float64)


def long_column(block: Mapping[str, Any], arrays: Mapping[str, Any], name: str) -> np.ndarray:
    """``np.asarray(block[name], dtype=np.int64)`` of a long column: the array :func:`decode_columns` read it
    from (in ``arrays``), or the list converted."""
    held = arrays.get(name)
    return held if held is not None else np.asarray(block[name], dtype=np.int64)


def _strings(data: bytes, ranges: list[int], ascii: bool) -> list[str | None]:
    if ascii:  # one decode for the record: then a slice is the string
        d = data.decode("latin-1")
        return [d[ranges[k] : ranges[k + 1]] if ranges[k] >= 0 else None for k in range(0, len(ranges), 2)]
    return [data[ranges[k] : ranges[k + 1]].decode() if ranges[k] >= 0 else None for k in range(0, len(ranges), 2)]


def _doubles(buf: np.ndarray, positions: np.ndarray) -> tuple[list[float | None], np.ndarray]:
    """The doubles at ``positions`` (negative: a null) as a list (None for a null) and as a read-only float64
    array (NaN for a null, as ``np.asarray`` reads a None)."""
    # the bytes copied are little-endian: read as such on any machine
    read = _gather_doubles(buf, positions).view("<f8").astype(np.float64, copy=False)
    out = cast("list[float | None]", read.tolist())  # None goes in below
    nulls = np.flatnonzero(positions < 0)
    for k in nulls.tolist():
        out[k] = None
    read[nulls] = np.nan
    read.flags.writeable = False
    return out, read


@njit(cache=True)
def _gather_doubles(buf: np.ndarray, positions: np.ndarray) -> np.ndarray:  # pragma: no cover - jitted
    """The little-endian double at each position of ``buf`` (a negative position: any value), byte for
    byte: numpy's gather of 8 bytes a value through an index array of 8 per value took ~9 % of a record."""
    out = np.empty(positions.size, dtype=np.float64)
    raw = out.view(np.uint8)
    for i in range(positions.size):
        p = positions[i]
        if p >= 0:
            for k in range(8):
                raw[8 * i + k] = buf[p + k]
    return out


def _fields(
    names: tuple[str, ...],
    codes: list[int],
    tok: list[int],
    values: tuple[list[int], list[float | None], list[str | None]],
    read: tuple[np.ndarray, np.ndarray],
    ent: list[int],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The block's dict from the walk's tokens and what it read (``values``: every long, double and string as
    lists; ``read``: every long and double as arrays), and its long and double columns (and maps of the
    latter) as slices of ``read``. One pass over the fields for both: a second one took ~10 us a block."""
    ints, doubles, strs = values
    longs, double_array = read
    out: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    for i, (name, code) in enumerate(zip(names, codes, strict=True)):
        a, b = tok[2 * i], tok[2 * i + 1]
        if code in (STR, OPT_STR):
            out[name] = None if a < 0 else strs[a]
        elif code == OPT_LONG:
            out[name] = None if a < 0 else ints[a]
        elif code == BOOL:
            out[name] = a == 1
        elif code == ARR_LONG:
            out[name] = ints[a : a + b]
            arrays[name] = longs[a : a + b]
        elif code in (ARR_DOUBLE, ARR_OPT_DOUBLE):
            out[name] = doubles[a : a + b]
            arrays[name] = double_array[a : a + b]
        elif code in (ARR_STR, ARR_OPT_STR):
            out[name] = strs[a : a + b]
        else:
            entries = range(3 * a, 3 * (a + b), 3)
            if code == MAP_STR:
                out[name] = {strs[ent[j]]: strs[ent[j + 1]] for j in entries}
            elif code == MAP_ARR_OPT_DOUBLE:
                out[name] = {strs[ent[j]]: doubles[ent[j + 1] : ent[j + 1] + ent[j + 2]] for j in entries}
                arrays[name] = {strs[ent[j]]: double_array[ent[j + 1] : ent[j + 1] + ent[j + 2]] for j in entries}
            else:
                out[name] = {strs[ent[j]]: strs[ent[j + 1] : ent[j + 1] + ent[j + 2]] for j in entries}
    return out, arrays
