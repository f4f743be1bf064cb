"""Decode event-only ``aitrace.Batch`` records (logs, inference records, spans, ...) without fastavro.

fastavro reads an event field by field through its generic, schema-driven reader: about 30
fields per inference record, most of the worker's time on logs, inference records and spans.
Here one Numba loop walks the whole batch and writes, per field, a pair of integers (a
string's byte range, a long, a union branch, a map's entry count and where its entries went)
into a token array; Python then builds each event with code generated once per record type
from the schema (no per-field dispatch). The result equals fastavro's, ``(record name, dict)``
payload tuples included (the tests compare them).

Only what the walk knows is taken: fields of types string, long/int, boolean, double,
``null|string``, ``null|long``, ``null|double``, ``map<string>``, ``map<double>``, and the
payload union of records made of those. A payload of another shape (a record with arrays or
nested records), a batch that carries metric blocks, anything malformed, or anything the walk
would read differently from fastavro (a boolean byte other than 0/1, an out-of-range union
branch, invalid UTF-8): None, and the caller decodes the record with fastavro, which reports
the error if there is one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from aitrace.detect import _cache  # noqa: F401  (Numba cache dir, set before any @njit)
from aitrace.schemas.codec import compiled
from numba import njit

# field codes: the walk's instruction per field
STR, LONG, BOOL, DOUBLE, OPT_STR, OPT_LONG, OPT_DOUBLE, MAP_STR, MAP_DOUBLE, PAYLOAD = range(10)
_PRIMITIVE = {"string": STR, "long": LONG, "int": LONG, "boolean": BOOL, "double": DOUBLE}
_OPTIONAL = {"string": OPT_STR, "long": OPT_LONG, "int": OPT_LONG, "double": OPT_DOUBLE}
_MAPS = {"string": MAP_STR, "double": MAP_DOUBLE}
MAX_FIELDS = 32  # token pairs per event: the envelope's fields, the payload branch, its fields
MIN_EVENT_BYTES = 48  # a trace id and a span id: an event with less is invalid anyway
MIN_ENTRY_BYTES = 4


def _code(t: Any) -> int | None:
    """The field code of an Avro type (fastavro's parsed form), or None if the walk cannot read it."""
    if isinstance(t, dict):
        if t.get("type") == "map" and isinstance(t.get("values"), str):
            return _MAPS.get(t["values"])
        return _PRIMITIVE.get(t["type"]) if isinstance(t.get("type"), str) and len(t) == 1 else None
    if isinstance(t, list):
        if len(t) == 2 and t[0] == "null" and isinstance(t[1], str):
            return _OPTIONAL.get(t[1])
        return None
    return _PRIMITIVE.get(t)


class Layout:
    """The Event record and its payload branches as field codes, and an event builder per branch."""

    def __init__(self, event: dict[str, Any]) -> None:
        """``event``: the Event record in fastavro's parsed form (its payload union last)."""
        *envelope, payload = event["fields"]
        found = [_code(f["type"]) for f in envelope]
        codes = [c for c in found if c is not None]
        # an envelope the walk cannot read: every batch goes to fastavro
        self.readable = payload["name"] == "payload" and len(codes) == len(found) and isinstance(payload["type"], list)
        if not self.readable:
            envelope, codes, payload = [], [], {"type": []}
        self.event_codes = np.array([*codes, PAYLOAD], dtype=np.int64)
        branches = payload["type"]
        # branch codes: row b holds the codes of branch b (-1: not readable here), row length = fields
        self.branch_codes = np.full((len(branches), MAX_FIELDS), -1, dtype=np.int64)
        self.branch_len = np.full(len(branches), -1, dtype=np.int64)
        self.builders: list[tuple[Builder, Builder] | None] = []
        head = [(f["name"], c) for f, c in zip(envelope, codes, strict=True)]
        for b, record in enumerate(branches):
            found = [_code(f["type"]) for f in record["fields"]]
            sub = [c for c in found if c is not None]
            if len(sub) < len(found) or not sub or len(sub) + len(codes) + 1 > MAX_FIELDS:
                self.builders.append(None)
                continue
            self.branch_codes[b, : len(sub)] = sub
            self.branch_len[b] = len(sub)
            body = [(f["name"], c) for f, c in zip(record["fields"], sub, strict=True)]
            self.builders.append(_builder(head, record["name"], body))
        self.names = [r["name"] for r in branches]
        # token slot of each field: the envelope's by name, a payload's by (branch name, field name)
        self.slots = {name: 2 * k for k, (name, _) in enumerate(head)} | {"payload": 2 * len(head)}
        for record in branches if self.readable else ():
            for k, f in enumerate(record["fields"]):
                self.slots[f"{record['name']}.{f['name']}"] = 2 * (len(head) + 1 + k)


def _expr(code: int, i: int, text: bool) -> str:
    """Python expression of one field from its token slots ``a{i}``, ``b{i}``.

    ``d`` is the record as bytes, or, when every string in it is ASCII, the record read as
    latin-1 (one byte, one character): a slice is then the string already, one decode per
    record instead of one per field.
    """
    a, b = f"a{i}", f"b{i}"
    s = "" if text else ".decode()"
    return {
        STR: f"d[{a}:{b}]{s}",
        LONG: a,
        BOOL: f"{a} == 1",
        DOUBLE: f"f[{a}]",
        OPT_STR: f"(None if {a} < 0 else d[{a}:{b}]{s})",
        OPT_LONG: f"({a} if {b} else None)",
        OPT_DOUBLE: f"(f[{a}] if {b} else None)",
        MAP_STR: f"({{d[x[j]:x[j+1]]{s}: d[x[j+2]:x[j+3]]{s} for j in range({b}, {b} + 4 * {a}, 4)}} if {a} else {{}})",
        MAP_DOUBLE: f"({{d[x[j]:x[j+1]]{s}: f[x[j+2]] for j in range({b}, {b} + 4 * {a}, 4)}} if {a} else {{}})",
    }[code]


Builder = Callable[[list[int], int, Any, list[float], list[int]], dict[str, Any]]


def _builder(head: list[tuple[str, int]], kind: str, body: list[tuple[str, int]]) -> tuple[Builder, Builder]:
    """``build(t, o, d, f, x)`` -> one event of payload ``kind``, fields in schema order as fastavro
    gives them, the payload as ``(kind, dict)``; one for ``d`` as bytes, one for ``d`` as str."""
    first = len(head) + 1  # the payload's fields follow its branch slot
    slots = [f"a{k}, b{k}" for k in range(len(head))] + [f"a{first + k}, b{first + k}" for k in range(len(body))]
    out = []
    for text in (False, True):
        fields = ", ".join(f"{n!r}: {_expr(c, k, text)}" for k, (n, c) in enumerate(head))
        payload = ", ".join(f"{n!r}: {_expr(c, first + k, text)}" for k, (n, c) in enumerate(body))
        source = (
            f"def build(t, o, d, f, x):  # {kind}\n"
            f"    {', '.join(slots[: len(head)])}, = t[o:o + {2 * len(head)}]\n"
            f"    {', '.join(slots[len(head) :])}, = t[o + {2 * first}:o + {2 * (first + len(body))}]\n"
            f"    return {{{fields}, 'payload': ({kind!r}, {{{payload}}})}}\n"
        )
        scope: dict[str, Any] = {}
        exec(compile(source, f"<fastevents {kind}>", "exec"), scope)  # code from our own schema, built once
        out.append(scope["build"])
    return out[0], out[1]


@njit(cache=True)
def _varint(buf: np.ndarray, pos: int) -> tuple[int, int]:  # pragma: no cover - jitted
    """One zigzag varint at buf[pos:]: (value, new position); position -1 if malformed or over 63 bits."""
    result: Any = 0  # then an np.int64 (the annotation is for mypy; Numba does not read it)
    shift = 0
    while True:
        if pos >= buf.shape[0] or shift > 56:
            return 0, -1
        b = np.int64(buf[pos])
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


@njit(cache=True)
def _block_count(buf: np.ndarray, pos: int) -> tuple[int, int]:  # pragma: no cover - jitted
    """An Avro array or map block's item count at buf[pos:] (a negative count is followed by the
    block's size in bytes, not needed): (count, new position); position -1 if malformed."""
    count, pos = _varint(buf, pos)
    if pos >= 0 and count < 0:
        count = -count
        _, pos = _varint(buf, pos)
    return count, pos


@njit(cache=True)
def _string(buf: np.ndarray, pos: int, ascii: np.ndarray) -> tuple[int, int]:  # pragma: no cover - jitted
    """A string's byte range: (start, end); end -1 if malformed. ``ascii[0]`` drops to 0 at a non-ASCII byte."""
    n, pos = _varint(buf, pos)
    if pos < 0 or n < 0 or pos + n > buf.shape[0]:
        return 0, -1
    if ascii[0]:
        for k in range(pos, pos + n):
            if buf[k] >= 0x80:
                ascii[0] = 0
                break
    return pos, pos + n


@njit(cache=True)
def _field(
    buf: np.ndarray,
    pos: int,
    code: int,
    tok: np.ndarray,
    slot: int,
    fpos: np.ndarray,
    nf: int,
    x: np.ndarray,
    nx: int,
    ascii: np.ndarray,
) -> tuple[int, int, int]:  # pragma: no cover - jitted
    """Read one field into tok[slot], tok[slot + 1]: (position, doubles used, map slots used); position -1: not here."""
    if code >= OPT_STR and code <= OPT_DOUBLE:
        branch, pos = _varint(buf, pos)
        if pos < 0 or branch < 0 or branch > 1:
            return -1, nf, nx
        if branch == 0:
            tok[slot] = -1 if code == OPT_STR else 0
            tok[slot + 1] = -1 if code == OPT_STR else 0
            return pos, nf, nx
        code = STR if code == OPT_STR else (LONG if code == OPT_LONG else DOUBLE)
        flag = 1
    else:
        flag = 0
    if code == STR:
        start, end = _string(buf, pos, ascii)
        tok[slot], tok[slot + 1] = start, end
        return end, nf, nx
    if code == LONG:
        v, pos = _varint(buf, pos)
        tok[slot], tok[slot + 1] = v, flag
        return pos, nf, nx
    if code == BOOL:
        if pos >= buf.shape[0] or buf[pos] > 1:
            return -1, nf, nx
        tok[slot], tok[slot + 1] = buf[pos], 0
        return pos + 1, nf, nx
    if code == DOUBLE:
        if pos + 8 > buf.shape[0]:
            return -1, nf, nx
        fpos[nf] = pos
        tok[slot], tok[slot + 1] = nf, flag
        return pos + 8, nf + 1, nx
    # a map: entries' key and value ranges (or double index) go to x, four slots each
    tok[slot], tok[slot + 1] = 0, nx
    while True:
        count, pos = _block_count(buf, pos)
        if pos < 0:
            return -1, nf, nx
        if count == 0:
            return pos, nf, nx
        if 2 * count > buf.shape[0] - pos or nx + 4 * count > x.shape[0]:
            return -1, nf, nx  # an entry takes at least two bytes: a larger count is corrupt
        for _ in range(count):
            x[nx], x[nx + 1] = _string(buf, pos, ascii)
            if x[nx + 1] < 0:
                return -1, nf, nx
            pos = x[nx + 1]
            if code == MAP_STR:
                x[nx + 2], x[nx + 3] = _string(buf, pos, ascii)
                pos = x[nx + 3]
                if pos < 0:
                    return -1, nf, nx
            else:
                if pos + 8 > buf.shape[0]:
                    return -1, nf, nx
                fpos[nf] = pos
                x[nx + 2] = nf
                nf += 1
                pos += 8
            nx += 4
        tok[slot] += count


@njit(cache=True)
def _walk(
    buf: np.ndarray,
    pos: int,
    codes: np.ndarray,
    branch_codes: np.ndarray,
    branch_len: np.ndarray,
    tok: np.ndarray,
    fpos: np.ndarray,
    x: np.ndarray,
    ascii: np.ndarray,
) -> tuple[int, int, int, int]:  # pragma: no cover - jitted
    """The events array at buf[pos:] into tokens: (position, events, doubles, map slots); position -1: not here."""
    n = nf = nx = 0
    stride = 2 * MAX_FIELDS
    while True:
        count, pos = _block_count(buf, pos)
        if pos < 0:
            return -1, 0, 0, 0
        if count == 0:
            return pos, n, nf, nx
        if (n + count) * stride > tok.shape[0]:
            return -1, 0, 0, 0
        for _ in range(count):
            o = n * stride
            for i in range(codes.shape[0]):
                code = codes[i]
                if code != PAYLOAD:
                    pos, nf, nx = _field(buf, pos, code, tok, o + 2 * i, fpos, nf, x, nx, ascii)
                    if pos < 0:
                        return -1, 0, 0, 0
                    continue
                br, pos = _varint(buf, pos)
                if pos < 0 or br < 0 or br >= branch_len.shape[0] or branch_len[br] < 0:
                    return -1, 0, 0, 0
                tok[o + 2 * i], tok[o + 2 * i + 1] = br, 0
                for j in range(branch_len[br]):
                    pos, nf, nx = _field(
                        buf, pos, branch_codes[br, j], tok, o + 2 * (i + 1 + j), fpos, nf, x, nx, ascii
                    )
                    if pos < 0:
                        return -1, 0, 0, 0
            n += 1


@cache
def layout() -> Layout:
    """The layout of the current Batch schema's events."""
    return Layout(compiled("aitrace.Batch").parsed["fields"][1]["type"]["items"])


@dataclass
class Walked:
    """One event-only batch as the walk left it: per event ``2 * MAX_FIELDS`` token slots (``tok``),
    the doubles it read (``doubles``, in token order), map entries (``x``, four slots each)."""

    data: bytes
    batch_id: tuple[int, int]  # its byte range
    n: int
    tok: np.ndarray
    doubles: np.ndarray  # float64
    x: np.ndarray
    ascii: bool  # every string in the record is ASCII: then ``data`` read as latin-1 slices into strings

    def text(self) -> bytes | str:
        """The record as slices of it read the strings: str when ASCII, else bytes (each slice decoded)."""
        return self.data.decode("latin-1") if self.ascii else self.data

    def batch(self) -> dict[str, Any] | None:
        """The Batch as fastavro decodes it; None on invalid UTF-8 (fastavro says what is wrong)."""
        try:
            events = _build(layout(), self.text(), self.n, self.tok, self.doubles.tolist(), self.x.tolist())
            batch_id = self.data[self.batch_id[0] : self.batch_id[1]].decode()
        except UnicodeDecodeError:
            return None
        return {"batch_id": batch_id, "events": events, "metric_blocks": []}


def walk_event_batch(data: bytes, body_offset: int) -> Walked | None:
    """The tokens of the Batch at ``data[body_offset:]`` if it holds events only, of payloads the walk
    reads; else None."""
    lay = layout()
    if not lay.readable:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    ascii = np.ones(1, dtype=np.int64)  # every string ASCII so far
    start, end = _string(buf, body_offset, ascii)
    if end < 0:
        return None
    room = len(data) - end
    # Room for what real records hold: a valid event has 48 bytes of ids, a map entry 4 bytes or
    # more; the walk checks both and leaves a record that holds more to fastavro. Doubles take
    # 8 bytes each, so the bytes left bound them exactly (the walk does not check that one).
    tok = np.empty((room // MIN_EVENT_BYTES + 1) * 2 * MAX_FIELDS, dtype=np.int64)
    x = np.empty((room // MIN_ENTRY_BYTES + 1) * 4, dtype=np.int64)
    fpos = np.empty(room // 8 + 1, dtype=np.int64)
    pos, n, nf, nx = _walk(buf, end, lay.event_codes, lay.branch_codes, lay.branch_len, tok, fpos, x, ascii)
    # then the metric_blocks array: empty (one zero byte) and the last thing in the record
    if pos < 0 or n == 0 or pos + 1 != len(data) or data[pos] != 0:
        return None
    doubles = buf[fpos[:nf, None] + np.arange(8)].view("<f8").ravel() if nf else np.empty(0)
    return Walked(data, (start, end), n, tok[: n * 2 * MAX_FIELDS], doubles, x[:nx], bool(ascii[0]))


def decode_event_batch(data: bytes, body_offset: int) -> dict[str, Any] | None:
    """The Batch at ``data[body_offset:]`` if it holds events only, of payloads the walk reads; else None.

    None: decode it with fastavro (which also says what is wrong with a malformed record).
    """
    walked = walk_event_batch(data, body_offset)
    return None if walked is None else walked.batch()


def _build(lay: Layout, d: bytes | str, n: int, tok: np.ndarray, f: list[float], xs: list[int]) -> list[dict[str, Any]]:
    """The events from their tokens; ``d``: the record as bytes, or as str when every string in it is ASCII."""
    t = tok[: n * 2 * MAX_FIELDS].tolist()
    text = isinstance(d, str)
    at = 2 * (len(lay.event_codes) - 1)  # the payload's branch slot
    # the walk took readable branches only: their builders are there
    builders = [b[text] if b is not None else None for b in lay.builders]
    return [builders[t[o + at]](t, o, d, f, xs) for o in range(0, n * 2 * MAX_FIELDS, 2 * MAX_FIELDS)]
