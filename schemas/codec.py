"""Avro codecs for Kafka records, shaped like confluent-kafka's serializers.

A :class:`AvroSerializer` turns one object into bytes and an :class:`AvroDeserializer`
turns bytes back, each called as ``codec(obj_or_bytes, ctx)`` with a
:class:`SerializationContext`. Two wire formats:

- Avro single-object encoding (default): ``C3 01`` + 8-byte little-endian CRC-64-AVRO
  fingerprint of the schema's Parsing Canonical Form + the Avro body. Readers resolve the
  fingerprint against ``schemas/``; no registry needed.
- Confluent wire format, when a Schema Registry URL is configured: ``00`` + 4-byte
  big-endian schema id + the Avro body.

The deserializer accepts both, whatever it was built with. Union branches are written and
read as ``(record_name, dict)`` tuples, and ``timestamp-micros`` fields stay ``int``
microseconds (no datetime objects on the hot path).
"""

from __future__ import annotations

import io
import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import fastavro
from aitrace import schemas
from aitrace.schemas import avro_writer
from aitrace.schemas.data_stats_block import data_stats_events
from aitrace.schemas.ground_truth_block import ground_truth_events
from aitrace.schemas.inference_block import inference_events
from aitrace.schemas.log_block import log_events
from aitrace.schemas.registry import RegistryUnreachable, SchemaRegistryClient
from aitrace.schemas.span_block import span_events
from fastavro.schema import fingerprint, to_parsing_canonical_form

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
_SCHEMA_ID = struct.Struct(">I")


class DecodeError(ValueError):
    """A record that cannot be decoded; ``reason`` is short and stable (used as a DLQ counter key)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EncodeError(ValueError):
    """An object that does not fit its schema; the message names the schema and the cause."""


@dataclass(frozen=True)
class SerializationContext:
    """Where the bytes go to or come from (as in confluent-kafka)."""

    topic: str
    field: str = "value"


@dataclass(frozen=True)
class CompiledSchema:
    """One schema ready for fastavro: parsed (logical types removed), JSON text, fingerprint.

    ``fingerprint`` is the 8 header bytes: CRC-64-AVRO of the Parsing Canonical Form,
    little-endian as the spec's single-object encoding writes it (fastavro's hex is already in that order).
    """

    name: str
    parsed: Any
    text: str
    fingerprint: bytes


@cache
def compiled(name: str) -> CompiledSchema:
    """The compiled form of a shipped schema, cached per process."""
    expanded = schemas.expanded(name)
    return compile_schema(expanded)


def compile_schema(expanded: dict[str, Any]) -> CompiledSchema:
    """Compile an expanded schema (all named types inlined)."""
    parsed = fastavro.parse_schema(schemas.without_logical_types(expanded))
    canonical = to_parsing_canonical_form(fastavro.parse_schema(expanded))
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    name = expanded["name"] if "." in expanded["name"] else f"{expanded.get('namespace')}.{expanded['name']}"
    return CompiledSchema(name=name, parsed=parsed, text=json.dumps(expanded), fingerprint=fp)


@cache
def _by_fingerprint() -> dict[bytes, tuple[CompiledSchema, CompiledSchema]]:
    """Fingerprint -> (writer, reader): current schemas read as themselves; schemas of earlier
    releases (``schemas/released/``) are resolved to the current schema of the same name."""
    from aitrace.schemas.compat import released_compiled

    table = {c.fingerprint: (c, c) for c in (compiled(n) for n in schemas.names())}
    for fp, writer in released_compiled().items():
        if fp not in table and writer.name in schemas.names():
            table[fp] = (writer, compiled(writer.name))
    return table


class AvroSerializer:
    """Encode objects of one schema.

    >>> ser = AvroSerializer("aitrace.GroundTruth")
    >>> data = ser({"request_id": "r1", "model_name": "m", "label": "1"})
    >>> data[:2] == SINGLE_OBJECT_MAGIC
    True
    """

    def __init__(
        self, schema_name: str, registry: SchemaRegistryClient | None = None, *, record_subject: bool = False
    ) -> None:
        """``record_subject``: register under ``<topic>-<record name>`` (Confluent's TopicRecordNameStrategy),
        for a record type that shares its topic with another (``aitrace.LogBlock`` beside ``aitrace.Batch``)."""
        self.schema = compiled(schema_name)
        self._registry = registry
        self._record_subject = record_subject
        self._fp_header = SINGLE_OBJECT_MAGIC + self.schema.fingerprint
        self._write = _generated_writer(schema_name)

    def header(self, ctx: SerializationContext | None = None) -> bytes:
        """The bytes that precede the Avro body for this context."""
        if self._registry is None:
            return self._fp_header
        if self._record_subject:
            subject = f"{ctx.topic}-{self.schema.name}" if ctx else self.schema.name
        else:
            subject = f"{ctx.topic if ctx else self.schema.name}-{ctx.field if ctx else 'value'}"
        schema_id = self._registry.register(subject, self.schema.text)
        return CONFLUENT_MAGIC + _SCHEMA_ID.pack(schema_id)

    def __call__(self, obj: Any, ctx: SerializationContext | None = None) -> bytes:
        header = self.header(ctx)
        try:
            return header + self._write(obj)
        except Exception:  # anything the generated writer is not sure of: fastavro writes it, or says why not
            pass
        buf = io.BytesIO()
        buf.write(header)
        try:
            fastavro.schemaless_writer(buf, self.schema.parsed, avro_writer.plain_lists(obj), strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:  # (an int past 64 bits)
            raise EncodeError(f"object does not fit {self.schema.name}: {exc}") from exc
        return buf.getvalue()


@cache
def _generated_writer(name: str) -> Callable[[Any], bytes]:
    """The generated writer of a shipped schema (:mod:`aitrace.schemas.avro_writer`), cached per process."""
    return avro_writer.writer(schemas.without_logical_types(schemas.expanded(name)))


class AvroDeserializer:
    """Decode records written in either wire format with any shipped schema.

    Returns the decoded object; :meth:`decode` also returns the writer schema's name.
    Registry-framed records need ``registry``; single-object records never do.
    """

    # A schema id the registry did not give is not asked again for this long, and while the registry
    # is unreachable no id is: a reader on an event loop (the worker) would otherwise block on one
    # HTTP request per record for a stream of unknown ids, which any Kafka client can write.
    RETRY_S = 30.0
    _MAX_FAILED = 10_000

    def __init__(self, registry: SchemaRegistryClient | None = None) -> None:
        self._registry = registry
        self._by_id: dict[int, CompiledSchema] = {}
        self._failed: dict[int, tuple[float, str]] = {}  # schema id -> (when, why)
        self._unreachable: tuple[float, str] | None = None

    def __call__(self, data: bytes | None, ctx: SerializationContext | None = None) -> Any:
        return self.decode(data)[1]

    def decode(self, data: bytes | None) -> tuple[str, Any]:
        """``(schema_name, object)`` of one record; raises :class:`DecodeError` with a reason."""
        data = _present(data)
        writer, reader, offset = self._writer(data)
        return writer.name, self.decode_body(data, writer, reader, offset)

    def resolve(self, data: bytes | None) -> tuple[CompiledSchema, CompiledSchema, int]:
        """``(writer, reader, body_offset)`` of one record, from its header (either wire format).

        ``reader is writer`` when the data is read as written (the current schema, or a
        registry schema with the current one's fingerprint); raises :class:`DecodeError`.
        """
        return self._writer(_present(data))

    @staticmethod
    def decode_body(data: bytes, writer: CompiledSchema, reader: CompiledSchema, offset: int) -> Any:
        """The object in ``data[offset:]``, written with ``writer``, read as ``reader``."""
        try:
            obj = fastavro.schemaless_reader(
                io.BytesIO(data[offset:]),
                writer.parsed,
                None if reader is writer else reader.parsed,
                return_record_name=True,
            )
        except (
            EOFError,
            ValueError,
            TypeError,
            IndexError,
            KeyError,
            UnicodeDecodeError,
            OverflowError,
        ) as exc:
            raise DecodeError("corrupt-body", f"{writer.name}: {type(exc).__name__}: {exc}") from exc
        return obj

    def _writer(self, data: bytes) -> tuple[CompiledSchema, CompiledSchema, int]:
        if data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < 10:
                raise DecodeError("truncated", f"{len(data)} bytes, single-object header needs 10")
            fp = bytes(data[2:10])
            pair = _by_fingerprint().get(fp)
            if pair is None:
                raise DecodeError("unknown-schema", f"fingerprint {fp.hex()} matches no schema in schemas/")
            return pair[0], pair[1], 10
        if data[:1] == CONFLUENT_MAGIC:
            if len(data) < 5:
                raise DecodeError("truncated", f"{len(data)} bytes, Confluent header needs 5")
            (schema_id,) = _SCHEMA_ID.unpack_from(data, 1)
            writer = self._registered(schema_id)
            return writer, self._current(writer), 5
        raise DecodeError("bad-magic", f"first bytes {data[:2].hex()} are neither C301 nor 00")

    @staticmethod
    def _current(writer: CompiledSchema) -> CompiledSchema:
        """The schema to read a registry writer's data as: ours of the same name, else its own."""
        if writer.name not in schemas.names():
            return writer
        current = compiled(writer.name)
        return writer if current.fingerprint == writer.fingerprint else current

    def _registered(self, schema_id: int) -> CompiledSchema:
        if schema_id not in self._by_id:
            if self._registry is None:
                raise DecodeError("no-registry", f"schema id {schema_id} but no schema registry is configured")
            now = time.monotonic()
            for failed in (self._failed.get(schema_id), self._unreachable):
                if failed is not None and now - failed[0] < self.RETRY_S:
                    raise DecodeError(
                        "unknown-schema", f"registry schema id {schema_id}: {failed[1]} (asked again later)"
                    )
            try:
                text = self._registry.schema(schema_id)
                self._by_id[schema_id] = compile_schema(json.loads(text))
            except (OSError, ValueError, KeyError) as exc:
                self._remember_failure(schema_id, now, exc)
                raise DecodeError("unknown-schema", f"registry schema id {schema_id}: {exc}") from exc
        return self._by_id[schema_id]

    def _remember_failure(self, schema_id: int, now: float, exc: Exception) -> None:
        if isinstance(exc, RegistryUnreachable):
            self._unreachable = (now, str(exc))
            return
        if len(self._failed) >= self._MAX_FAILED:
            self._failed.clear()
        self._failed[schema_id] = (now, str(exc))


def _present(data: bytes | None) -> bytes:
    if not data:
        raise DecodeError("empty", "record has no value")
    return data


_BLOCKS: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "aitrace.LogBlock": log_events,
    "aitrace.InferenceBlock": inference_events,
    "aitrace.SpanBlock": span_events,
    "aitrace.GroundTruthBlock": ground_truth_events,
    "aitrace.DataStatsBlock": data_stats_events,
}


def as_batch(schema_name: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Normalise a decoded record to the shape of ``aitrace.Batch``.

    Producers send batches and blocks of logs, inference records, spans and labels (whose records become events, see
    :mod:`aitrace.schemas.block_shape`); a lone ``aitrace.Event`` (from another client) becomes a
    batch of one. A block whose columns do not line up raises ``bad-shape``.
    """
    if schema_name == "aitrace.Batch":
        return obj
    expand = _BLOCKS.get(schema_name)
    if expand is not None:
        try:
            events = expand(obj)
        except (ValueError, TypeError, KeyError) as exc:
            raise DecodeError("bad-shape", str(exc)) from exc
        return {"batch_id": obj["block_id"], "events": events, "metric_blocks": []}
    if schema_name == "aitrace.Event":
        return {"batch_id": obj["event_id"], "events": [obj], "metric_blocks": []}
    raise DecodeError("unexpected-schema", f"{schema_name} is not an event or a batch of events")
