"""The series repartition's wire format: a chunk as bytes, and chunks of one entity grouped into one record.

:func:`pack_chunk` / :func:`unpack_chunk`: one chunk (a dict holding NumPy arrays) <-> bytes.
:func:`group_chunks` / :func:`split_chunks`: packed chunks of one entity key <-> one record of
the series topic. :class:`aitrace.processors.pipeline.Pipeline` packs and unpacks;
:mod:`aitrace.processors.app` groups and splits. :data:`SWEEP` asks for an idle sweep.
"""

from __future__ import annotations

import re
import struct
from typing import Any

import numpy as np
import orjson
from aitrace.processors.options import MAX_RECORD_BYTES

_CHUNK_MAGIC = b"AC1"
# The most bytes a chunk and its key (the entity) take in one series record: the producer's limit, less room for
# Kafka's framing of the record and its batch. A larger chunk is cut in pieces (Pipeline.chunks): it is JSON where
# its input was Avro, so a record under the limit could make a chunk far past it (a control character, 1 byte in
# Avro, is 6 in JSON; a label's or a data stage's field names are not in Avro at all).
CHUNK_MAX_BYTES = MAX_RECORD_BYTES - 65_536
# A series record of exactly these bytes is no chunk: the series agent sweeps its partition for idle
# entities (processors/expiry.py). Any client may write one: a sweep only drops what is idle anyway.
SWEEP = b"AS1"
_HEADER_LEN = struct.Struct("<I")
# A dict of the chunk whose only key is one of these (a model's one feature named "__nd") would read back as an
# array reference: it is written inside a dict whose only key is _PLAIN, read back as the dict it holds.
_REF, _PLAIN = "__nd", "__dict"


# A chunk whose texts JSON would escape travel as their UTF-8 bytes (pack_chunk(raw_texts=True)): a JSON header
# of text references, the texts, then the arrays as in a chunk of _CHUNK_MAGIC.
_RAW_MAGIC = b"AC2"
# in such a header: a text, a dict as its [key, value] pairs (a key JSON would escape), a dict as it is (its
# only key one of these three)
_TEXT, _PAIRS, _ASIS = "__s", "__kv", "__d"
_ESCAPED = re.compile(r'[\x00-\x1f"\\]')  # what JSON writes as two or six bytes


def pack_chunk(chunk: dict[str, Any], *, raw_texts: bool = False) -> bytes:
    """Series chunk -> bytes: a JSON header, then the raw bytes of every NumPy array in it.

    Arrays travel as machine bytes (8 bytes per float instead of ~19 characters of JSON,
    no float formatting or parsing), which is what the repartition hop mostly carries.
    Arrays may sit at any depth of nested dicts; lists are written as JSON.

    ``raw_texts``: every text JSON would escape (a control character is six bytes there, a quote two) travels
    as its UTF-8 bytes, after the header, as one event's worth too large for a series record otherwise
    (Pipeline.chunks); it costs a walk over the header, so chunks that fit go without.
    """
    buffers: list[bytes] = []
    tree = _plain(_refs(chunk, buffers, [0]))
    if raw_texts:
        texts: list[bytes] = []
        header = orjson.dumps(_texts(tree, texts, [0]), option=orjson.OPT_SERIALIZE_NUMPY)
        raw = b"".join(texts)
        head = _RAW_MAGIC + _HEADER_LEN.pack(len(header)) + header + _HEADER_LEN.pack(len(raw))
        return head + raw + b"".join(buffers)
    header = orjson.dumps(tree, option=orjson.OPT_SERIALIZE_NUMPY)
    return _CHUNK_MAGIC + _HEADER_LEN.pack(len(header)) + header + b"".join(buffers)


def _texts(node: Any, texts: list[bytes], offset: list[int]) -> Any:
    """``node`` (a header as :func:`pack_chunk` writes it) with each text JSON would escape replaced by its
    reference, its UTF-8 bytes put in ``texts``."""
    if isinstance(node, str):
        if _ESCAPED.search(node) is None:
            return node
        raw = node.encode("utf-8")  # strict: a lone surrogate never came from Avro, as orjson refuses one
        texts.append(raw)
        offset[0] += len(raw)
        return {_TEXT: [offset[0] - len(raw), len(raw)]}
    if isinstance(node, dict):
        if any(_ESCAPED.search(key) for key in node):
            return {_PAIRS: [[_texts(k, texts, offset), _texts(v, texts, offset)] for k, v in node.items()]}
        out = {k: _texts(v, texts, offset) for k, v in node.items()}
        return {_ASIS: out} if len(out) == 1 and next(iter(out)) in (_TEXT, _PAIRS, _ASIS) else out
    if isinstance(node, list | tuple):
        return [_texts(v, texts, offset) for v in node]
    return node


def _refs(node: dict[str, Any], buffers: list[bytes], offset: list[int]) -> dict[str, Any]:
    """``node`` with each array in it (at any depth) replaced by its reference, its bytes put in ``buffers``.

    One loop per dict rather than a call per value: a model chunk's 20 values took two calls each.
    ``tobytes`` writes C order whatever the array's layout, as the contiguous copy it used to take did.
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, np.ndarray):
            raw = value.tobytes()
            buffers.append(raw)
            out[key] = {_REF: [value.dtype.str, offset[0], int(value.size)]}
            offset[0] += len(raw)
        elif isinstance(value, dict):
            inner = _refs(value, buffers, offset)  # then as _plain writes it, inline (a call per dict)
            out[key] = {_PLAIN: inner} if len(inner) == 1 and (_REF in inner or _PLAIN in inner) else inner
        else:
            out[key] = value
    return out


def _plain(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` (a dict of the chunk, its arrays replaced) as written: inside a _PLAIN dict where its only key
    would read back as something else."""
    return {_PLAIN: node} if len(node) == 1 and (_REF in node or _PLAIN in node) else node


def unpack_chunk(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`pack_chunk` (arrays come back as writable copies).

    The arrays must lie back to back in header order and fill the bytes after the header, as
    :func:`pack_chunk` writes them: any client can write to the series topic, and a header
    naming the same bytes many times made a 199 KB record unpack into 480 MB of copies.
    """
    if data[:3] != _CHUNK_MAGIC:
        if data[:3] == _RAW_MAGIC:
            return _unpack_raw(data)
        raise ValueError(f"not a series chunk (first bytes {data[:3]!r})")
    (n,) = _HEADER_LEN.unpack_from(data, 3)
    base = 7 + n
    header = orjson.loads(data[7:base])
    return _with_arrays(header, data, base)


def _with_arrays(header: Any, data: bytes, base: int) -> Any:
    """The chunk of a header whose arrays lie in ``data`` from ``base`` on, back to back, up to its end."""
    end = [0]  # where the next array must start
    chunk = _arrays_of(header, data, base, end) if isinstance(header, dict) else header
    if base + end[0] != len(data):
        raise ValueError(f"series chunk of {len(data)} bytes: its arrays end at {base + end[0]}")
    return chunk


def _unpack_raw(data: bytes) -> dict[str, Any]:
    """A chunk of :data:`_RAW_MAGIC`: its texts read back into the header, as in a chunk of ``_CHUNK_MAGIC``, then
    its arrays. The texts must lie back to back in header order and fill their part, as the arrays do."""
    (n,) = _HEADER_LEN.unpack_from(data, 3)
    header = orjson.loads(data[7 : 7 + n])
    (size,) = _HEADER_LEN.unpack_from(data, 7 + n)
    start = 11 + n
    texts = data[start : start + size]
    if len(texts) != size:
        raise ValueError(f"series chunk of {len(data)} bytes: its texts end at {start + size}")
    end = [0]
    header = _texts_of(header, texts, end)
    if end[0] != size:
        raise ValueError(f"series chunk texts of {size} bytes: the header's end at {end[0]}")
    return _with_arrays(header, data, start + size)


def _texts_of(node: Any, texts: bytes, end: list[int]) -> Any:
    """Inverse of :func:`_texts`; ``end``: where the next text must start."""
    if isinstance(node, list):
        return [_texts_of(v, texts, end) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        if (ref := node.get(_TEXT)) is not None:
            off, length = ref
            if off != end[0] or length < 0 or off + length > len(texts):
                raise ValueError(f"series chunk text at {off} ({length} bytes): the next starts at {end[0]}")
            end[0] += length
            return texts[off : off + length].decode("utf-8")  # strict: a forged lone surrogate poisons the table
        if (pairs := node.get(_PAIRS)) is not None:
            out = {}
            for key, value in pairs:
                key = _texts_of(key, texts, end)
                if not isinstance(key, str):
                    raise ValueError(f"series chunk: a key of {type(key).__name__}")
                out[key] = _texts_of(value, texts, end)
            return out
        if isinstance(inner := node.get(_ASIS), dict):
            node = inner
    return {k: _texts_of(v, texts, end) for k, v in node.items()}


def _arrays_of(node: dict[str, Any], data: bytes, base: int, end: list[int]) -> Any:
    """The header dict ``node`` with each array reference in it (at any depth) read from ``data``; ``end``:
    where the next array must start. A dict that is a reference itself is the array. One loop per dict."""
    if len(node) == 1:
        ref = node.get(_REF)
        if ref is not None:
            dtype, off, count = ref
            if off != end[0] or count < 0:
                raise ValueError(f"series chunk array at {off} (count {count}): the next starts at {end[0]}")
            array = np.frombuffer(data, dtype=dtype, count=count, offset=base + off).copy()
            end[0] += array.nbytes
            return array
        if isinstance(plain := node.get(_PLAIN), dict):
            node = plain  # a dict of the chunk, written inside this one (_plain)
    out = {}
    for key, value in node.items():
        out[key] = _arrays_of(value, data, base, end) if isinstance(value, dict) else value
    return out


_GROUP_MAGIC = b"AG1"
_GROUP_COUNT = struct.Struct("<I")
GROUP_MAX_BYTES = 4_000_000  # half of the producer's max request size: a group always fits one request


def group_chunks(chunks: list[tuple[str, bytes]], max_bytes: int = GROUP_MAX_BYTES) -> list[tuple[str, bytes]]:
    """Coalesce packed chunks per entity key into few series records, order kept within each key.

    A batch of input records makes one chunk per record and entity; sending each as its own
    record cost a send, a fetch, a stream event and an ack apiece on both agents. A group
    travels as one record and the series side still applies its chunks one by one, each with
    its own source offset and batch id, so idempotence on redelivery is exactly per chunk.
    A key whose chunks pass ``max_bytes`` gets several groups; a lone chunk goes as it is.
    """
    by_key: dict[str, list[list[bytes]]] = {}
    for key, data in chunks:
        groups = by_key.setdefault(key, [[]])
        last = groups[-1]
        if last and sum(len(c) for c in last) + len(data) > max_bytes:
            groups.append(last := [])
        last.append(data)
    return [(key, _pack_group(group)) for key, groups in by_key.items() for group in groups]


def _pack_group(group: list[bytes]) -> bytes:
    if len(group) == 1:
        return group[0]
    lengths = b"".join(_GROUP_COUNT.pack(len(c)) for c in group)
    return _GROUP_MAGIC + _GROUP_COUNT.pack(len(group)) + lengths + b"".join(group)


def split_chunks(data: bytes) -> list[bytes]:
    """The packed chunks of a series record: those of a group, or the record itself."""
    if data[:3] != _GROUP_MAGIC:
        return [data]
    size = _GROUP_COUNT.size
    if len(data) < 3 + size:
        raise ValueError(f"truncated chunk group ({len(data)} bytes)")
    (n,) = _GROUP_COUNT.unpack_from(data, 3)
    pos = 3 + size + n * size
    if len(data) < pos:
        raise ValueError(f"truncated chunk group: {n} chunks announced, {len(data)} bytes")
    lengths = [_GROUP_COUNT.unpack_from(data, 3 + size + i * size)[0] for i in range(n)]
    if pos + sum(lengths) != len(data):
        raise ValueError(f"chunk group of {len(data)} bytes announces {pos + sum(lengths)}")
    out = []
    for length in lengths:
        out.append(data[pos : pos + length])
        pos += length
    return out
