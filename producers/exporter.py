"""Background export: batch, process, encode, hand to a transport. Modelled on OpenTelemetry's BatchSpanProcessor.

The client's threads only append small tuples (:data:`~aitrace.producers.events.Queued`) to a
bounded :class:`collections.deque`. One worker thread (this module) does everything else:

1. **Batch.** It drains the queue into groups keyed by (topic, trace id); training metrics go
   into columnar metric blocks keyed by (trace, span, split, metric names). A group leaves as one
   Kafka record (``aitrace.Batch``), its logs, inference records, spans, labels and data statistics as
   one more each (a columnar ``aitrace.LogBlock``, ``InferenceBlock``, ``SpanBlock``, ``GroundTruthBlock``,
   ``DataStatsBlock``, see :mod:`aitrace.producers.blocks`; the kinds: :mod:`~aitrace.producers.block_kinds`),
   unless a processor of the chain reads single events only.
   Sending is due when ``batch_linger_ms`` has passed since the previous send (a lone event after a quiet
   spell leaves at once, a steady stream in batches at most every ``batch_linger_ms``), or at once on an
   error (error logs, spans and inferences, failed runs), ``batch_max_events`` pending events, a flush, a close.
2. **Process.** Each event and metric block passes the processor chain (sampling, redaction, or the user's
   own: small functions ``item -> item`` as in structlog). A processor drops an item by raising
   :class:`~aitrace.producers.events.DropEvent` (counted under its ``drop_reason``, else ``dropped_by_processor``;
   a metric block that comes back with fewer rows counts the rows left out), or by returning None.
3. **Encode** with the Avro codec; a record above ``max_record_bytes`` is split in halves until
   it fits; one event that alone exceeds the limit is rejected, counted and logged.
4. **Deliver** through a :class:`~aitrace.producers.transport.Transport`: the client's is
   :class:`~aitrace.producers.kafka_transport.KafkaTransport` (confluent-kafka, with the on-disk
   spool when the broker is down or the spool is full: see that module). While the transport is
   :attr:`~aitrace.producers.transport.Transport.blocked`, nothing more is taken from the queue.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

from aitrace.producers import events as ev
from aitrace.producers.block_kinds import BlockKind, Processor, block_kinds
from aitrace.producers.blocks import new_block
from aitrace.producers.config import Settings
from aitrace.producers.metric_blocks import MetricBlockBuilder, metric_blocks
from aitrace.producers.metric_blocks import halves as metric_halves
from aitrace.producers.spans import Span, Stage
from aitrace.producers.transport import Encoded, Transport
from aitrace.schemas.avro_writer import varint_tables
from aitrace.schemas.codec import AvroSerializer, EncodeError, SerializationContext
from aitrace.schemas.registry import SchemaRegistryError, registry_at

log = logging.getLogger("aitrace.exporter")

_IDLE_WAIT_S = 0.5
_BUSY_WAIT_S = 0.02
# While a flush waits for acknowledgements: librdkafka reports a delivery only when polled, so a 20 ms nap
# after the last send held every flush() about 20 ms past its last ack (bench_producer: 10% of a run).
_FLUSH_WAIT_S = 0.001
# ... for this long after the last send: acks come within milliseconds; a flush that waits on a broker that is
# down would otherwise wake the worker 1,000 times a second until its timeout.
_FLUSH_FAST_S = 0.1
_TAKE_CHUNK = 20_000
_TAKE_SLICE = 256  # items filed between two chances for the callers to run (see _share)
_KIND, _CONTEXT, _URGENT = itemgetter(0), itemgetter(2), itemgetter(4)
_TRACE_ID, _STATUS = attrgetter("trace_id"), attrgetter("status")
_SPAN_TYPES = frozenset((Span, Stage))  # what Span.__exit__ queues: the span itself, its own row (events.Queued)
_ERROR = "error"
_POPLEFT = deque.popleft
# The worker holds the GIL for at most about this long before it lets the callers run (see _share).
_SLICE_S = 0.001


class _Group:
    """The pending events and metric blocks of one (topic, trace)."""

    __slots__ = ("blocks", "events", "metrics")

    def __init__(self, block_kinds: Iterable[int]) -> None:
        self.events: list[dict[str, Any]] = []
        self.metrics: list[ev.Queued] = []  # queued metric points, made columnar when sent
        # queued logs, inferences, spans by kind, made columnar when sent; a list ready per kind: one lookup per item
        self.blocks: dict[int, list[ev.Queued]] = {kind: [] for kind in block_kinds}

    def __len__(self) -> int:
        return len(self.events) + len(self.metrics) + sum(map(len, self.blocks.values()))


class Exporter:
    """The worker that turns queued events into records for its transport (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        queue: deque,
        envelope: dict[str, Any],
        processors: list[Processor],
        id_prefix: str,
        stats: Counter[str],
        transport: Transport,
    ) -> None:
        self.producer = settings.producer  # the batching knobs; settings.kafka names the topics below
        self.queue = queue
        self.envelope = envelope
        self.processors = processors
        self.stats = stats
        self.transport = transport
        self._id_prefix = id_prefix
        self._next_id = 0
        self._handed = 0  # events handed to the transport (a group that fails counts only the rest as dropped)
        registry = registry_at(settings.kafka.schema_registry_url)
        self._serializer = AvroSerializer("aitrace.Batch", registry=registry)
        self._plain_serializer = AvroSerializer("aitrace.Batch")
        self._block_kinds = block_kinds(processors, registry)
        self._contexts: dict[str, SerializationContext] = {}
        self._topics = {kind: settings.kafka.topic(name) for kind, name in ev.TOPIC_OF_KIND.items()}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._pending_events = 0
        self._urgent = False
        # "Never sent", not 0.0: time.monotonic() counts from boot, so on a machine up for less
        # than batch_linger_ms (a fresh CI runner) 0.0 would hold the first lone event back.
        self._last_send = float("-inf")
        self._slice_end = 0.0
        self.wake = threading.Event()
        self.sleeping = False
        self._stop = False
        self._stop_deadline = 0.0
        self._flush_seq = 0
        self._done_seq = 0
        self._flushing = 0  # callers waiting in force_flush (under ``changed``)
        self.changed = threading.Condition()
        self.take_lock = threading.Lock()
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="aitrace-exporter", daemon=True)

    # -- lifecycle

    def start(self) -> None:
        self.transport.start()
        self._thread.start()

    def request_flush(self) -> int:
        """Ask the worker to send everything pending now; returns the ticket :meth:`idle` checks."""
        with self.changed:
            self._flush_seq += 1
            ticket = self._flush_seq
        self.wake.set()
        return ticket

    def idle(self, ticket: int) -> bool:
        """True when everything queued before ``ticket`` was delivered (nothing queued, out or spooled)."""
        return self._done_seq >= ticket and not self.queue and not self._groups and self.transport.settled()

    def force_flush(self, timeout: float) -> bool:
        """Send everything queued so far and wait for it; True when all of it was delivered within ``timeout``
        (False: still on its way, or in the spool, or the worker is not running)."""
        ticket = self.request_flush()
        deadline = time.monotonic() + timeout
        with self.changed:
            self._flushing += 1
            try:
                while not self.idle(ticket):
                    left = deadline - time.monotonic()
                    if left <= 0 or not self.alive():
                        return self.idle(ticket)
                    self.changed.wait(min(left, 0.05))
            finally:
                self._flushing -= 1
        return True

    def stop(self, timeout: float) -> None:
        """Stop the worker; what is still undelivered after ``timeout`` is left in the spool on disk."""
        self._stop_deadline = time.monotonic() + max(0.0, timeout)
        self._stop = True
        self.wake.set()
        self._thread.join(timeout + 5.0)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def abandon(self) -> None:
        """In a forked child: forget the parent's worker state (its thread does not exist here)."""
        self.transport.abandon()

    def _shutdown(self) -> None:
        """After stop: the transport keeps or counts what it still holds and closes; pending groups are counted."""
        self.transport.close()
        for group in self._groups.values():
            self.stats["dropped_shutdown"] += len(group)
        self._notify()

    # -- the loop

    def _run(self) -> None:
        varint_tables()  # numpy, for the writer's long columns: imported now, not mid-stream
        while True:
            try:
                finished = self._cycle()
            except Exception:
                self.stats["exporter_errors"] += 1
                log.exception("aitrace exporter: unexpected error; continuing")
                time.sleep(0.05)
                finished = False
            if finished:
                break
        self._shutdown()

    def _cycle(self) -> bool:
        ticket = self._flush_seq
        transport = self.transport
        transport.poll()
        if not transport.blocked:
            self._take()
        now = time.monotonic()
        due = self._urgent or ticket > self._done_seq or self._stop
        due = due or self._pending_events >= self.producer.batch_max_events
        due = due or now - self._last_send >= self.producer.batch_linger_ms / 1000.0
        if self._groups and due:
            self._send_pending()
            self._last_send = now
        transport.maintain(now)
        if not self._groups and not self.queue and not transport.blocked and ticket > self._done_seq:
            self._done_seq = ticket
        self._notify()
        if self._stop and self._stopping_done():
            return True
        self._sleep()
        return False

    def _stopping_done(self) -> bool:
        if time.monotonic() >= self._stop_deadline:
            return True
        if self.queue or self._groups:
            return False
        return self.transport.settled()

    def _sleep(self) -> None:
        held = self.transport.blocked
        if self._groups and not held:
            timeout = self._last_send + self.producer.batch_linger_ms / 1000.0 - time.monotonic()
            if timeout > 0 and len(self.queue) < self.producer.batch_max_events:
                # Events wait out the linger: no spinning on every new event (that would take the
                # GIL from the callers), and callers need not wake us (errors still do).
                self.wake.wait(min(timeout, _BUSY_WAIT_S))
                self.wake.clear()
            return
        if self.queue and not held:
            return
        busy = self.transport.busy() or self._stop
        # A caller that finds us sleeping clears the flag, then sets wake: the callers after it skip the
        # Event.set (about 1 µs each) for the up to 5 ms this thread may wait for the GIL once woken.
        self.sleeping = True
        if not self.queue:
            self.wake.wait(self._busy_wait() if busy else _IDLE_WAIT_S)
        self.sleeping = False
        self.wake.clear()

    def _busy_wait(self) -> float:
        """The nap while records are in flight: short while a flush waits on what was just sent (see _FLUSH_WAIT_S)."""
        if self._flushing and time.monotonic() - self._last_send < _FLUSH_FAST_S:
            return _FLUSH_WAIT_S
        return _BUSY_WAIT_S

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    # -- batching

    def _take(self) -> None:
        queue = self.queue
        taken = 0
        while queue and taken < _TAKE_CHUNK:
            with self.take_lock:  # counted as they leave the queue: stats() never misses them in between
                items = list(map(_POPLEFT, repeat(queue, min(len(queue), _TAKE_SLICE))))  # a C loop of pops
                self.stats["enqueued"] += len(items)
            taken += len(items)
            self._file(items)
            self._share()
        self._pending_events += taken

    def _file(self, items: list[ev.Queued]) -> None:
        """Put taken items in their groups: a slice of one kind and trace (a training loop, a batch job, a
        pipeline stage) at once, in a few C loops instead of a dozen bytecodes per item; any other one by one."""
        if self._file_together(items):
            return
        groups, topics, metric = self._groups, self._topics, ev.METRIC
        for item in items:
            kind, ctx = (item[0], item[2]) if type(item) is tuple else (ev.SPAN, item)  # (an ended span as itself)
            key = (topics[kind], ctx.trace_id)
            group = groups.get(key) or self._group(*key)  # (an empty one is falsy: _group finds it)
            if kind == metric:
                group.metrics.append(item)  # the exporter's hot path: nothing else per point
                continue
            rows = group.blocks.get(kind)
            if rows is None:
                self._add_event(group, item, self.stats)
            else:
                rows.append(item)
                if item[4] if type(item) is tuple else item.status == _ERROR:
                    self._urgent = True

    def _file_together(self, items: list[ev.Queued]) -> bool:
        """File a slice of one kind and trace at once (True), else leave it to the loop of :meth:`_file` (False)."""
        try:
            kinds = set(map(_KIND, items))
        except TypeError:  # ended spans, queued as themselves (spans.py): their own kind if the slice is only them
            if not set(map(type, items)) <= _SPAN_TYPES:
                return False
            kind, contexts, urgent = ev.SPAN, iter(items), _ERROR in map(_STATUS, items)
        else:
            if len(kinds) != 1:
                return False
            kind, contexts, urgent = kinds.pop(), map(_CONTEXT, items), any(map(_URGENT, items))
        traces = set(map(_TRACE_ID, contexts))
        if len(traces) != 1:
            return False
        group = self._group(self._topics[kind], traces.pop())
        rows = group.metrics if kind == ev.METRIC else group.blocks.get(kind)
        if rows is None:
            return False
        rows.extend(items)
        if urgent:
            self._urgent = True
        return True

    def _group(self, topic: str, trace_id: str) -> _Group:
        group = self._groups.get((topic, trace_id))
        if group is None:
            group = self._groups[(topic, trace_id)] = _Group(self._block_kinds)
        return group

    def _add_event(self, group: _Group, item: ev.Queued, stats: Counter[str]) -> None:
        if type(item) is not tuple:  # an ended span, queued as itself
            item = (ev.SPAN, item.end_us, item, item, item.status == _ERROR)
        kind, time_us, ctx, fields, urgent = item if len(item) == 5 else (*item[:3], item[5:], item[4])
        # a span object as the caller enqueued it (spans.py), or a tuple (inference, data statistics): as a dict
        fields = fields.fields() if isinstance(fields, Span) else ev.fields_dict(kind, fields)
        try:
            payload = ev.PAYLOAD_BUILDERS[kind](fields, stats)
        except Exception as exc:  # whatever a caller's value raises (a tensor's int(): RuntimeError) costs only it
            stats["rejected_bad_event"] += 1
            self._warn_once("bad-event", f"aitrace: event dropped, it cannot be built: {type(exc).__name__}: {exc}")
            return
        event = dict(self.envelope)
        event["event_id"] = self._new_id()
        event["time"] = time_us
        event["trace_id"] = ctx.trace_id
        event["span_id"] = fields.get("span_id") or ctx.span_id
        event["parent_span_id"] = fields.get("parent_span_id", ctx.parent_span_id)
        event["payload"] = (ev.RECORD_OF_KIND[kind], payload)
        group.events.append(event)
        if urgent:
            self._urgent = True

    def _new_id(self) -> str:
        self._next_id += 1
        return f"{self._id_prefix}-{self._next_id:x}"

    def _send_pending(self) -> None:
        groups, self._groups = self._groups, {}
        self._pending_events = 0
        self._urgent = False
        for (topic, trace_id), group in groups.items():
            handed = self._handed
            try:
                events = self._process(group.events)
                blocks = [(self._new_id(), b) for b in metric_blocks(group.metrics, self.stats) if len(b)]
                self._send_group(topic, trace_id.encode(), events, blocks)
                for kind, rows in group.blocks.items():
                    self._send_blocks(topic, trace_id, self._block_kinds[kind], rows)
            except Exception:
                # the events of the group not handed to the transport before it failed (those were sent)
                self.stats["dropped_exporter_error"] += max(0, len(group) - (self._handed - handed))
                log.exception("aitrace: a batch for %s could not be sent; its events are counted as dropped", topic)

    def _process(self, items: list[dict[str, Any]], chain: list[Processor] | None = None) -> list[dict[str, Any]]:
        processors = self.processors if chain is None else chain
        if not processors:
            return items
        out = []
        for n, item in enumerate(items):
            if not n & 63:
                self._share()
            result = item
            for processor in processors:
                applied = self._apply(processor, result)
                if applied is None:
                    break
                result = applied
            else:
                out.append(result)
        return out

    def _apply(self, processor: Processor, item: dict[str, Any]) -> dict[str, Any] | None:
        try:
            result = processor(item)
        except ev.DropEvent:
            result = None
        except Exception as exc:
            self.stats["dropped_processor_error"] += self._count(item)
            self._warn_once(f"proc-{id(processor)}", f"aitrace: processor {processor!r} failed: {exc!r}")
            return None
        if result is None:
            self.stats[getattr(processor, "drop_reason", "dropped_by_processor")] += self._count(item)
        elif "payload" not in item:  # a metric or log block may come back with only some of its rows
            left_out = self._count(item) - self._count(result)
            if left_out > 0:
                self.stats[getattr(processor, "drop_reason", "dropped_by_processor")] += left_out
        return result

    @staticmethod
    def _count(item: dict[str, Any]) -> int:
        """Events an item stands for: 1 for an event, its rows for a metric or log block."""
        if "payload" in item:
            return 1
        rows = item.get("steps", item.get("time"))
        return len(rows) if isinstance(rows, list) else 1

    # -- encoding

    def _send_group(
        self, topic: str, key: bytes, events: list[dict[str, Any]], blocks: list[tuple[str, MetricBlockBuilder]]
    ) -> None:
        """Encode the group as records of at most ``batch_max_events`` events and ``max_record_bytes``."""
        limit = self.producer.batch_max_events
        for start in range(0, len(events), limit):
            self._emit(topic, key, events[start : start + limit], [])
        for block_id, builder in blocks:
            for lo in range(0, len(builder), limit):
                hi = min(len(builder), lo + limit)
                block = builder.build(block_id if lo == 0 else f"{block_id}.{lo}", self.envelope, lo, hi)
                processed = self._process([block])
                if processed:
                    self._emit(topic, key, [], processed)

    def _send_blocks(self, topic: str, trace_id: str, kind: BlockKind, rows: list[ev.Queued]) -> None:
        """The group's rows of one kind as blocks (of :meth:`BlockKind.rows_per_block` records) through its chain."""
        limit = kind.rows_per_block(rows, self.producer.batch_max_events, self.producer.max_record_bytes)
        for lo in range(0, len(rows), limit):
            for columns in self._columns(kind, rows[lo : lo + limit]):
                if not columns["time"]:
                    continue
                block = new_block(self._new_id(), trace_id, self.envelope, columns)
                for processed in self._process([block], kind.chain):
                    self._emit_block(topic, trace_id.encode(), kind, processed)

    def _columns(self, kind: BlockKind, rows: list[ev.Queued]) -> list[dict[str, Any]]:
        """The rows' columns, as one block. Where a row's value raises (an unhashable span name, an array as an
        inference's error: it lost the trace's whole group), the rows in halves, down to the row that raises alone,
        counted as ``rejected_bad_event``. Counts a failed build made are not kept (its rows are built again)."""
        counts: Counter[str] = Counter()
        try:
            columns = kind.columns(rows, counts)
        except Exception as exc:  # (blocks.SparseColumns too: records whose attribute names differ, in halves)
            if len(rows) > 1:
                half = len(rows) // 2
                return self._columns(kind, rows[:half]) + self._columns(kind, rows[half:])
            self.stats["rejected_bad_event"] += 1
            self._warn_once("bad-event", f"aitrace: event dropped, it cannot be built: {type(exc).__name__}: {exc}")
            return []
        self.stats.update(counts)
        return [columns]

    def _emit_block(self, topic: str, key: bytes, kind: BlockKind, block: dict[str, Any]) -> None:
        """One block as one record; split in halves when it is too large or holds a record that does not fit."""
        self._share()
        n = len(block["time"])
        if n == 0:
            return
        try:
            value = self._encode(block, topic, kind)
        except EncodeError as exc:
            if n > 1:
                for part in kind.halves(block):
                    self._emit_block(topic, key, kind, part)
                return
            repaired = without_surrogates(block)
            if repaired is not None:  # text with lone surrogates (an undecodable file name): kept, marked
                self.stats["repaired_text"] += 1
                self._emit_block(topic, key, kind, repaired)
                return
            self.stats["rejected_schema"] += 1
            self._warn_once("schema", f"aitrace: event dropped, it does not fit the schema: {exc}")
            return
        if len(value) <= self.producer.max_record_bytes:
            self.transport.send(Encoded(topic, key, value, n))
            self._handed += n
        elif n > 1:
            for part in kind.halves(block):
                self._emit_block(topic, key, kind, part)
        else:
            self.stats["dropped_oversized"] += 1
            log.error(
                "aitrace: record %s:0 dropped: %d bytes encoded, above max_record_bytes=%d",
                block["block_id"],
                len(value),
                self.producer.max_record_bytes,
            )

    def _share(self) -> None:
        """Give the GIL away once per slice of work, so that callers busy logging are not held up.

        Python hands the GIL over only every ``sys.getswitchinterval()`` (5 ms) to a thread that asks
        for it: a busy worker would take half of a busy caller's wall time. Yielding after each
        millisecond lets a caller run its 5 ms; a caller that is not running costs nothing (the
        sleep returns at once), so the worker's own throughput stays.
        """
        now = time.perf_counter()
        if now >= self._slice_end:
            time.sleep(0)
            self._slice_end = time.perf_counter() + _SLICE_S

    def _emit(self, topic: str, key: bytes, events: list[dict], blocks: list[dict]) -> None:
        self._share()
        n_events = len(events) + sum(len(b["steps"]) for b in blocks)
        if n_events == 0:
            return
        batch = {"batch_id": self._new_id(), "events": events, "metric_blocks": blocks}
        try:
            value = self._encode(batch, topic)
        except EncodeError as exc:
            self._encode_failed(topic, key, events, blocks, exc)
            return
        if len(value) <= self.producer.max_record_bytes:
            self.transport.send(Encoded(topic, key, value, n_events))
            self._handed += n_events
            return
        if len(events) > 1:
            half = len(events) // 2
            self._emit(topic, key, events[:half], [])
            self._emit(topic, key, events[half:], [])
        elif blocks and len(blocks[0]["steps"]) > 1:
            for part in metric_halves(blocks[0]):
                self._emit(topic, key, [], [part])
        else:
            self.stats["dropped_oversized"] += n_events
            what = events[0]["event_id"] if events else blocks[0]["block_id"]
            log.error(
                "aitrace: event %s dropped: %d bytes encoded, above max_record_bytes=%d",
                what,
                len(value),
                self.producer.max_record_bytes,
            )

    def _encode(self, batch: dict[str, Any], topic: str, block: BlockKind | None = None) -> bytes:
        """Encode with the configured wire format; when the schema registry cannot be reached,
        fall back to single-object encoding (every aitrace decoder reads both) rather than lose the batch."""
        serializer = self._serializer if block is None else block.serializer
        try:
            return serializer(batch, self._context(topic))
        except SchemaRegistryError as exc:
            self.stats["registry_fallback"] += 1
            self._warn_once("registry", f"aitrace: schema registry unavailable, using single-object encoding: {exc}")
            plain = self._plain_serializer if block is None else block.plain
            return plain(batch, self._context(topic))

    def _encode_failed(self, topic: str, key: bytes, events: list[dict], blocks: list[dict], exc: Exception) -> None:
        """Find the events that do not fit the schema (by halves); drop only those, counted."""
        if len(events) > 1:
            half = len(events) // 2
            self._emit(topic, key, events[:half], [])
            self._emit(topic, key, events[half:], [])
            return
        repaired = without_surrogates([events, blocks])
        if repaired is not None:  # text with lone surrogates (an undecodable file name): kept, marked
            self.stats["repaired_text"] += 1
            self._emit(topic, key, *repaired)
            return
        # events and blocks apart, and each block alone: one that fails costs only itself. A block's points cannot
        # fail one by one (metric_blocks bounds steps and epochs and writes names and split as text): what fails
        # is a field all its points share
        if events and blocks:
            self._emit(topic, key, events, [])
            self._emit(topic, key, [], blocks)
            return
        if len(blocks) > 1:
            for block in blocks:
                self._emit(topic, key, [], [block])
            return
        self.stats["rejected_schema"] += len(events) + sum(len(b["steps"]) for b in blocks)
        self._warn_once("schema", f"aitrace: event dropped, it does not fit the schema: {exc}")

    def _context(self, topic: str) -> SerializationContext:
        ctx = self._contexts.get(topic)
        if ctx is None:
            ctx = self._contexts[topic] = SerializationContext(topic)
        return ctx

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)


_SURROGATES = re.compile("[\ud800-\udfff]")


def without_surrogates(value: Any) -> Any:
    """A copy of ``value`` (dicts, lists and tuples of texts and other leaves) with every lone surrogate
    replaced by U+FFFD, or None when it has none. A string from ``os.fsdecode`` of bytes that are not
    UTF-8 carries them; UTF-8, and so Avro, cannot encode them, and the event was dropped whole."""
    found = False

    def walk(x: Any) -> Any:
        nonlocal found
        if isinstance(x, str):
            fixed = _SURROGATES.sub("\ufffd", x)
            found = found or fixed != x
            return fixed
        if isinstance(x, dict):
            return {walk(k): walk(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return type(x)(walk(v) for v in x)
        return x

    out = walk(value)
    return out if found else None
