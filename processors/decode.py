"""Decode and validate one Kafka record into an ``aitrace.Batch``.

The codec (``aitrace.schemas.codec``) proves the bytes fit a schema; this module checks
what Avro cannot: W3C ids, sane event times, payload fields that must not be empty, and
columnar metric blocks whose arrays line up. A record whose bytes cannot be decoded is
rejected whole (:class:`InvalidRecord`); a decodable batch keeps its valid events and
reports the invalid ones (:class:`Decoded.rejected`), so one bad event never holds back
the rest while the dead-letter copy of the original bytes still loses nothing.

Metric blocks are validated as arrays (NumPy min/max over steps and times), never point
by point: they carry most of the volume.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from aitrace.processors import block_columns as columnar  # it reads this module's checks: no names taken
from aitrace.processors import event_columns as single  # it reads this module's checks: no names taken
from aitrace.processors.fastblock import decode_metric_batch
from aitrace.processors.fastevents import walk_event_batch
from aitrace.schemas.codec import AvroDeserializer, DecodeError, as_batch, compiled
from aitrace.schemas.data_stats_block import MAX_CATEGORY_CHARS, MAX_HISTOGRAM_BINS
from aitrace.schemas.metric_block import MetricBlock

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

# 2000-01-01T00:00:00Z in microseconds: anything earlier is a unit mistake (seconds, millis).
MIN_TIME_US = 946_684_800_000_000
DEFAULT_MAX_FUTURE_US = 24 * 3600 * 1_000_000

LOG_LEVELS = frozenset({"debug", "info", "warning", "warn", "error", "critical", "fatal", "trace"})
STATUSES = frozenset({"ok", "error"})


class InvalidRecord(DecodeError):
    """A record that decoded but carries nothing usable (every event invalid, or a bad block)."""


@dataclass(frozen=True)
class Rejected:
    """One event (``events[index]``) or metric block (``metric_blocks[index]``) that failed validation."""

    where: str  # "event" or "block"
    index: int
    reason: str
    detail: str


@dataclass
class Decoded:
    """The valid part of one record, and what was dropped from it (to be dead-lettered)."""

    schema: str
    batch_id: str
    _events: list[dict[str, Any]]
    metric_blocks: list[MetricBlock]
    rejected: list[Rejected] = field(default_factory=list)
    columns: list[columnar.BlockColumns] = field(default_factory=list)  # valid event blocks kept as columns
    event_columns: single.EventColumns | None = None  # a batch of valid single events kept as columns

    @property
    def events(self) -> list[dict[str, Any]]:
        """The batch's events; those of its column blocks or event columns built on first use."""
        if self.event_columns is not None and not self._events:
            self._events = self.event_columns.events()
        if self.columns and not self._events:
            self._events = [e for c in self.columns for e in c.events()]
        return self._events

    @property
    def event_count(self) -> int:
        """Events in the batch: plain events plus one per metric point (step) of each block."""
        if self.event_columns is not None:
            return self.event_columns.n
        if self.columns and not self._events:
            return sum(c.n for c in self.columns) + sum(len(b.steps) for b in self.metric_blocks)
        return len(self._events) + sum(len(b.steps) for b in self.metric_blocks)


def valid_trace_id(value: Any) -> bool:
    """32 lowercase hex digits, not all zero (W3C trace-context)."""
    return isinstance(value, str) and len(value) == 32 and value != _ZERO_TRACE and bool(_HEX32.fullmatch(value))


def valid_span_id(value: Any) -> bool:
    """16 lowercase hex digits, not all zero (W3C trace-context)."""
    return isinstance(value, str) and len(value) == 16 and value != _ZERO_SPAN and bool(_HEX16.fullmatch(value))


class RecordDecoder:
    """Bytes -> :class:`Decoded`; raises :class:`DecodeError` (or :class:`InvalidRecord`) with a reason.

    ``max_future_us`` bounds how far ahead of this machine's clock an event time may be
    (clock skew between hosts); ``now_us`` is injectable for tests.
    """

    def __init__(
        self,
        deserializer: AvroDeserializer | None = None,
        *,
        max_future_us: int = DEFAULT_MAX_FUTURE_US,
        now_us: Any = None,
    ) -> None:
        self._deserializer = deserializer or AvroDeserializer()
        self._max_future_us = max_future_us
        self._now_us = now_us or (lambda: int(time.time() * 1_000_000))
        # fingerprint of the Batch schema this module's fast path reads
        self._batch_fingerprint = compiled("aitrace.Batch").fingerprint

    def decode(self, data: bytes | None) -> Decoded:
        """Decode and validate one record value.

        Metric-only batches written in the current Batch schema take the array fast path
        (:mod:`aitrace.processors.fastblock`), event-only ones the token walk
        (:mod:`aitrace.processors.fastevents`; kept as columns when every event is valid,
        :mod:`aitrace.processors.event_columns`), in either wire format: single-object with the
        Batch fingerprint, or Confluent framing whose registry schema id resolves to a schema
        with that fingerprint (the same binary layout). Everything else goes through fastavro.
        """
        writer, reader, offset = self._deserializer.resolve(data)
        assert data is not None  # resolve raised DecodeError("empty") otherwise
        fast: dict[str, Any] | None = None
        max_time = self._now_us() + self._max_future_us
        if writer.fingerprint == self._batch_fingerprint and reader.fingerprint == self._batch_fingerprint:
            fast = decode_metric_batch(data, offset)
            if fast is None and (walked := walk_event_batch(data, offset)) is not None:
                if (kept := single.take(walked, max_time)) is not None:
                    return Decoded("aitrace.Batch", kept.batch_id, [], [], event_columns=kept)
                fast = walked.batch()
        if fast is not None:
            name, batch = "aitrace.Batch", fast
        else:
            name = writer.name
            read = columnar.read_block(data, writer, reader, offset)
            body, arrays = (
                read if read is not None else (self._deserializer.decode_body(data, writer, reader, offset), {})
            )
            if (columns := columnar.block_columns(name, body, max_time, arrays)) is not None:
                return Decoded(name, body["block_id"], [], [], columns=[columns])
            batch = as_batch(name, body)
        rejected: list[Rejected] = []
        events: list[dict[str, Any]] = []
        # ids already found valid in this batch: a batch's events share a few trace and span ids
        good_traces: set[str] = set()
        good_spans: set[str] = set()
        valid = columnar.events_valid(batch["events"], max_time)  # the usual batch: every check passes
        for i, event in enumerate(() if valid else batch["events"]):
            problem = _check_event(event, max_time, good_traces, good_spans)
            if problem is None:
                events.append(event)
            else:
                rejected.append(Rejected("event", i, *problem))
        events = batch["events"] if valid else events
        blocks: list[MetricBlock] = []
        typed = batch["metric_blocks"] if fast is not None else _typed(batch["metric_blocks"])
        for i, block in enumerate(typed):
            if isinstance(block, tuple):  # not even a MetricBlock (two series of one name)
                rejected.append(Rejected("block", i, *block))
            elif (problem := _check_block(block, max_time)) is None:
                blocks.append(block)
            else:
                rejected.append(Rejected("block", i, *problem))
        if rejected and not events and not blocks:
            first = rejected[0]
            raise InvalidRecord(first.reason, f"nothing valid in {batch['batch_id']!r}: {first.detail}")
        return Decoded(name, batch["batch_id"], events, blocks, rejected)


def _check_ids(trace_id: Any, span_id: Any, parent: Any) -> tuple[str, str] | None:
    if not valid_trace_id(trace_id):
        return "invalid-trace-id", f"trace_id {trace_id!r} is not 32 lowercase hex digits (non-zero)"
    if not valid_span_id(span_id):
        return "invalid-span-id", f"span_id {span_id!r} is not 16 lowercase hex digits (non-zero)"
    if parent is not None and not valid_span_id(parent):
        return "invalid-span-id", f"parent_span_id {parent!r} is not 16 lowercase hex digits (non-zero)"
    return None


def _check_event(
    event: dict[str, Any], max_time: int, good_traces: set[str], good_spans: set[str]
) -> tuple[str, str] | None:
    trace_id, span_id, parent = event["trace_id"], event["span_id"], event.get("parent_span_id")
    if trace_id not in good_traces:
        if not valid_trace_id(trace_id):
            return "invalid-trace-id", f"trace_id {trace_id!r} is not 32 lowercase hex digits (non-zero)"
        good_traces.add(trace_id)
    if span_id not in good_spans:
        if not valid_span_id(span_id):
            return "invalid-span-id", f"span_id {span_id!r} is not 16 lowercase hex digits (non-zero)"
        good_spans.add(span_id)
    if parent is not None and parent not in good_spans:
        if not valid_span_id(parent):
            return "invalid-span-id", f"parent_span_id {parent!r} is not 16 lowercase hex digits (non-zero)"
        good_spans.add(parent)
    t = event["time"]
    if not MIN_TIME_US <= t <= max_time:
        return "bad-time", f"event {event['event_id']!r}: time {t} us is before 2000 or too far in the future"
    if not event["event_id"]:
        return "missing-field", "event_id is empty"
    if not event["service"]:
        return "missing-field", f"event {event['event_id']!r}: service is empty"
    kind, payload = event["payload"]
    return check_payload(event["event_id"], kind, payload, max_time)


def _require(event_id: str, kind: str, payload: dict[str, Any], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        if not payload.get(name):
            return "missing-field", f"event {event_id!r}: {kind}.{name} is empty"
    return None


# The worker's own outputs: from an input topic they were indexed as they came, a Trace over the
# document of any trace id (its _id), an Alert under any alert id, each in the daily index of
# whatever time it named (no ingest window: year 9987 made an index).
OUTPUT_KINDS = frozenset({"Trace", "Alert"})


def _feature_names_problem(event_id: str, features: list[dict[str, Any]]) -> tuple[str, str] | None:
    """A data batch's features each have a series of the stage (``data/<ds>/<stage>/<name>``), its label
    counts ``__label__`` (detection_data): a name twice, or that one, met an earlier series of the batch,
    and the later one was skipped on the series side as a redelivery of it, silently."""
    seen = {"__label__"}
    for feature in features:
        if feature["name"] in seen:
            return "series-clash", f"event {event_id!r}: feature {feature['name']!r} has another series' key"
        seen.add(feature["name"])
    return None


def check_payload(event_id: str, kind: str, payload: dict[str, Any], max_time: int) -> tuple[str, str] | None:
    short = kind.rsplit(".", 1)[-1]
    if short in OUTPUT_KINDS:
        return "unexpected-payload", f"event {event_id!r}: {kind} is the worker's output, not an input event"
    if short == "InferenceRecord":
        problem = _require(event_id, short, payload, ("request_id", "model_name"))
        if problem:
            return problem
        if payload["status"] not in STATUSES:
            return "bad-value", f"event {event_id!r}: status {payload['status']!r} is not ok/error"
        if not payload["latency_ms"] >= 0:  # also rejects NaN
            return "bad-value", f"event {event_id!r}: latency_ms {payload['latency_ms']!r} is negative or NaN"
        return None
    if short == "GroundTruth":
        return _require(event_id, short, payload, ("request_id", "model_name"))
    if short == "DataStats":
        problem = _require(event_id, short, payload, ("stage", "dataset"))
        if problem is None and payload["row_count"] < 0:
            return "bad-value", f"event {event_id!r}: row_count {payload['row_count']} < 0"
        for feature in payload["features"] if problem is None else ():
            if (bad := _histogram_problem(feature) or _size_problem(feature.get("categories"), "category")) is not None:
                return "bad-value", f"event {event_id!r}: feature {feature['name']!r}: {bad}"
        if problem is None and (bad := _size_problem(payload.get("class_counts"), "class")) is not None:
            return "bad-value", f"event {event_id!r}: {bad}"
        return problem or _feature_names_problem(event_id, payload["features"])
    if short == "Span":
        problem = _require(event_id, short, payload, ("name",))
        if problem is None and payload["duration_us"] < 0:
            return "bad-value", f"event {event_id!r}: span duration {payload['duration_us']} < 0"
        # a span's start bounds its trace (and picks the trace's daily index): same range as event times
        if problem is None and not MIN_TIME_US <= payload["start_time"] <= max_time:
            return "bad-time", f"event {event_id!r}: span start {payload['start_time']} us is out of range"
        # and so does its end: one past any date made every later document of its trace fail to build
        if problem is None and payload["start_time"] + payload["duration_us"] > max_time:
            return "bad-time", f"event {event_id!r}: span ends after now + skew ({payload['duration_us']} us long)"
        return problem
    if short == "LogRecord":
        if payload["level"].lower() not in LOG_LEVELS:
            return "bad-value", f"event {event_id!r}: log level {payload['level']!r} is unknown"
        return None
    if short == "TrainingMetric":
        if not payload["metrics"]:
            return "missing-field", f"event {event_id!r}: TrainingMetric.metrics is empty"
        return None
    return None


def _size_problem(counts: dict[str, int] | None, what: str) -> str | None:
    """A category or class name too long for the reference that keeps it (one record of a few 1 MB
    names made a stage's state larger than a changelog record)."""
    longest = max(map(len, counts), default=0) if counts else 0
    return f"a {what} of {longest} characters (at most {MAX_CATEGORY_CHARS})" if longest > MAX_CATEGORY_CHARS else None


def _histogram_problem(feature: dict[str, Any]) -> str | None:
    """What is wrong with a feature's histogram (none is fine), as the drift test would find it.

    The series side raised ValueError on it for the whole chunk; and a dataset's first batch is
    its reference, so one bad histogram there failed every later batch of the dataset and stage.
    """
    edges, counts = feature.get("histogram_edges") or [], feature.get("histogram_counts") or []
    if not edges and not counts:
        return None
    if not counts or len(edges) != len(counts) + 1:
        return f"histogram of {len(counts)} counts needs {len(counts) + 1} edges, has {len(edges)}"
    if len(counts) > MAX_HISTOGRAM_BINS:
        return f"histogram of {len(counts)} bins (at most {MAX_HISTOGRAM_BINS})"
    if not all(map(math.isfinite, edges)) or any(b <= a for a, b in pairwise(edges)):
        return "histogram edges must be finite and rising"
    if min(counts) < 0:
        return "histogram counts must not be negative"
    return None


def _typed(records: list[dict[str, Any]]) -> list[MetricBlock | tuple[str, str]]:
    """fastavro's blocks as :class:`MetricBlock` s; a block with two series of one name, a problem."""
    out: list[MetricBlock | tuple[str, str]] = []
    for record in records:
        try:
            out.append(MetricBlock.from_record(record))
        except ValueError as exc:
            out.append(("bad-shape", f"metric block {record['block_id']!r}: {exc}"))
    return out


def _check_block(block: MetricBlock, max_time: int) -> tuple[str, str] | None:
    problem = _check_ids(block.trace_id, block.span_id, block.parent_span_id)
    if problem:
        return problem
    if not block.block_id or not block.service:
        return "missing-field", f"metric block {block.block_id!r}: block_id or service is empty"
    n = len(block.steps)
    if len(block.times) != n or (block.epochs.size and len(block.epochs) != n):
        return "bad-shape", f"metric block {block.block_id!r}: steps, times and epochs differ in length"
    for name, values in block.series.items():
        if len(values) != n:
            return "bad-shape", f"metric block {block.block_id!r}: series {name!r} has a wrong length"
        if not name:
            return "missing-field", f"metric block {block.block_id!r}: a series has no name"
    if n == 0:  # nothing to index or detect on; its empty series broke the run checks' last-point reads
        return "bad-shape", f"metric block {block.block_id!r}: no points"
    if n and (block.times.min() < MIN_TIME_US or block.times.max() > max_time):
        return "bad-time", f"metric block {block.block_id!r}: times outside [2000, now + skew]"
    return None
