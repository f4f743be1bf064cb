"""Background export: batch, process, encode, produce, spool. Modelled on OpenTelemetry's BatchSpanProcessor.

The client's threads only append small tuples to a bounded :class:`collections.deque`. One
worker thread (this module) does everything else:

1. **Batch.** It drains the queue into groups keyed by (topic, trace id); training metrics go
   into columnar metric blocks keyed by (trace, span, split, metric names). A group leaves as one
   Kafka record (``aitrace.Batch``). Sending is due when ``batch_linger_ms`` has passed since the
   previous send, so a lone event after a quiet spell leaves at once, while a steady stream
   leaves in batches at most every ``batch_linger_ms``. Errors (error logs, error spans and
   inferences, failed runs), ``batch_max_events`` pending events, a flush or close make it due
   at once.
2. **Process.** Each event and metric block passes the processor chain (sampling, redaction,
   or the user's own: small functions ``item -> item | None`` as in structlog).
3. **Encode** with the Avro codec; a record above ``max_record_bytes`` is split in halves until
   it fits; one event that alone exceeds the limit is rejected, counted and logged.
4. **Produce** with confluent-kafka (idempotent, ``acks=all``). When the broker is down or a
   delivery fails, records go to the on-disk :class:`~aitrace.producers.spool.Spool` instead, and new
   records follow them there (so the order holds); one probe record from the spool is kept in
   flight, and when it is acknowledged the spool drains in order, a window of records at a time.
   After all brokers went down, the producer is replaced by a fresh one: an idempotent producer
   keeps its producer id and sequence numbers, which a restarted broker no longer knows, and
   would retry until its messages time out.
5. **Spool full.** ``full_policy="drop_newest"`` drops the record (its events counted in
   ``dropped_spool_full``); ``"block"`` keeps it and stops taking from the queue, so callers
   block when the queue fills (up to ``full_block_timeout_s``, then their event is counted in
   ``dropped_queue_full``). A kept record goes to the spool when room frees up, or straight to
   the broker once it is back and the spool is drained.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aitrace.producers import events as ev
from aitrace.producers.config import Settings
from aitrace.producers.spool import Spool, SpoolRecord
from aitrace.schemas.codec import AvroSerializer, EncodeError, SerializationContext
from aitrace.schemas.registry import SchemaRegistryClient, SchemaRegistryError
from confluent_kafka import KafkaError, KafkaException, Producer

log = logging.getLogger("aitrace.exporter")

Processor = Callable[[dict[str, Any]], "dict[str, Any] | None"]
DeliveryListener = Callable[[str, bytes, "KafkaError | None"], None]

_IDLE_WAIT_S = 0.5
_BUSY_WAIT_S = 0.02
_PROBE_INTERVAL_S = 0.25
_DRAIN_WINDOW = 256
_TAKE_CHUNK = 20_000
# Producers inherited through fork(): never destroyed in the child (see Exporter.abandon).
_ORPHANED_PRODUCERS: list[Producer] = []
_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})


@dataclass(slots=True)
class Encoded:
    """One encoded Kafka record on its way."""

    topic: str
    key: bytes
    value: bytes
    events: int


class _Group:
    """The pending events and metric blocks of one (topic, trace)."""

    __slots__ = ("events", "metrics")

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.metrics: list[tuple] = []  # queued metric tuples, made columnar when sent


class Exporter:
    """The worker that turns queued tuples into delivered Kafka records (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        queue: deque,
        envelope: dict[str, Any],
        processors: list[Processor],
        id_prefix: str,
        stats: Counter[str],
        delivery_listener: DeliveryListener | None = None,
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.envelope = envelope
        self.processors = processors
        self.stats = stats
        self.delivery_listener = delivery_listener
        self._id_prefix = id_prefix
        self._next_id = 0
        self._serializer = AvroSerializer("aitrace.Batch", registry=_registry(settings))
        self._plain_serializer = AvroSerializer("aitrace.Batch")
        self._contexts: dict[str, SerializationContext] = {}
        self._topics = {kind: settings.topic(name) for kind, name in ev.TOPIC_OF_KIND.items()}
        self._producer_config = producer_config or {}
        self._producer: Producer | None = None
        self._producer_ok = False  # delivered at least once since created
        self._producer_born = 0.0
        self._timeout_s = settings.delivery_timeout_ms / 1000.0
        self._replace_producer = False
        self._broker_down = False
        self.spool = Spool(settings.spool_dir, settings.spool_max_bytes)
        self._spooling = self.spool.pending()  # adopted segments drain before anything new
        self._spool_dirty = False
        self._spool_out = 0
        self._probe_at = 0.0
        self._held: list[Encoded] = []  # block policy: records waiting for spool space
        self._groups: dict[tuple[str, str], _Group] = {}
        self._pending_events = 0
        self._urgent = False
        # "Never sent", not 0.0: time.monotonic() counts from boot, so on a machine up for less
        # than batch_linger_ms (a fresh CI runner) 0.0 would hold the first lone event back.
        self._last_send = float("-inf")
        # Records handed to librdkafka and not yet reported, by token: what a replaced producer
        # never reported is settled from here, so no record depends on a report arriving.
        self._outstanding: dict[int, tuple[Encoded, SpoolRecord | None]] = {}
        self._token = 0
        self.wake = threading.Event()
        self.sleeping = False
        self._stop = False
        self._stop_deadline = 0.0
        self._flush_seq = 0
        self._done_seq = 0
        self.changed = threading.Condition()
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="aitrace-exporter", daemon=True)

    # -- lifecycle

    def start(self) -> None:
        self._new_producer()
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
        return (
            self._done_seq >= ticket
            and not self.queue
            and not self._groups
            and not self._held
            and self._inflight == 0
            and not self.spool.pending()
        )

    def stop(self, timeout: float) -> None:
        """Stop the worker; what is still undelivered after ``timeout`` is left in the spool on disk."""
        self._stop_deadline = time.monotonic() + max(0.0, timeout)
        self._stop = True
        self.wake.set()
        self._thread.join(timeout + 5.0)

    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the loop

    def _run(self) -> None:
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
        self._poll()
        if self._replace_producer:
            self._renew_producer()
        if self._held:
            self._retry_held()
        if not self._held:
            self._take()
        now = time.monotonic()
        due = self._urgent or ticket > self._done_seq or self._stop
        due = due or self._pending_events >= self.settings.batch_max_events
        due = due or now - self._last_send >= self.settings.batch_linger_ms / 1000.0
        if self._groups and due:
            self._send_pending()
            self._last_send = now
        if self._spooling:
            self._drain_spool(now)
        if self._spool_dirty:
            self.spool.sync()
            self._spool_dirty = False
        if not self._groups and not self.queue and not self._held and ticket > self._done_seq:
            self._done_seq = ticket
        self._notify()
        if self._stop and self._stopping_done():
            return True
        self._sleep()
        return False

    def _stopping_done(self) -> bool:
        if time.monotonic() >= self._stop_deadline:
            return True
        if self.queue or self._groups or self._held:
            return False
        return self._inflight == 0 and not self.spool.pending()

    def _sleep(self) -> None:
        if self._groups and not self._held:
            timeout = self._last_send + self.settings.batch_linger_ms / 1000.0 - time.monotonic()
            if timeout > 0 and len(self.queue) < self.settings.batch_max_events:
                # Events wait out the linger: no spinning on every new event (that would take the
                # GIL from the callers), and callers need not wake us (errors still do).
                self.wake.wait(min(timeout, _BUSY_WAIT_S))
                self.wake.clear()
            return
        if self.queue and not self._held:
            return
        busy = self._inflight or self._spooling or self._held or self._stop
        self.sleeping = True
        if not self.queue:
            self.wake.wait(_BUSY_WAIT_S if busy else _IDLE_WAIT_S)
        self.sleeping = False
        self.wake.clear()

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    # -- batching

    def _take(self) -> None:
        queue = self.queue
        groups = self._groups
        topics = self._topics
        popleft = queue.popleft
        metric = ev.METRIC
        taken = 0
        while queue and taken < _TAKE_CHUNK:
            item = popleft()
            taken += 1
            ctx = item[2]
            key = (topics[item[0]], ctx.trace_id)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group()
            if item[0] == metric:
                group.metrics.append(item)  # the exporter's hot path: nothing else per point
            else:
                self._add_event(group, item, ctx, self.stats)
        self._pending_events += taken
        self.stats["enqueued"] += taken

    def _add_event(self, group: _Group, item: tuple, ctx: Any, stats: Counter[str]) -> None:
        kind, time_us, _, fields, urgent = item
        try:
            payload = ev.PAYLOAD_BUILDERS[kind](fields, stats)
        except (KeyError, TypeError, ValueError) as exc:
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
            try:
                events = self._process(group.events)
                blocks = [(self._new_id(), b) for b in ev.metric_blocks(group.metrics, self.stats) if len(b)]
                self._send_group(topic, trace_id.encode(), events, blocks)
            except Exception:
                self.stats["dropped_exporter_error"] += len(group.events) + len(group.metrics)
                log.exception("aitrace: a batch for %s could not be sent; its events are counted as dropped", topic)

    def _process(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.processors:
            return items
        out = []
        for item in items:
            result = item
            for processor in self.processors:
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
        except Exception as exc:
            self.stats["dropped_processor_error"] += self._count(item)
            self._warn_once(f"proc-{id(processor)}", f"aitrace: processor {processor!r} failed: {exc!r}")
            return None
        if result is None:
            self.stats[getattr(processor, "drop_reason", "dropped_by_processor")] += self._count(item)
        elif "dropped_rows" in result:  # a processor that kept only some rows of a metric block
            self.stats[getattr(processor, "drop_reason", "dropped_by_processor")] += result.pop("dropped_rows")
        return result

    @staticmethod
    def _count(item: dict[str, Any]) -> int:
        return len(item["steps"]) if "steps" in item else 1

    # -- encoding

    def _send_group(
        self, topic: str, key: bytes, events: list[dict[str, Any]], blocks: list[tuple[str, ev.MetricBlockBuilder]]
    ) -> None:
        """Encode the group as records of at most ``batch_max_events`` events and ``max_record_bytes``."""
        limit = self.settings.batch_max_events
        for start in range(0, len(events), limit):
            self._emit(topic, key, events[start : start + limit], [])
        for block_id, builder in blocks:
            for lo in range(0, len(builder), limit):
                hi = min(len(builder), lo + limit)
                block = builder.build(block_id if lo == 0 else f"{block_id}.{lo}", self.envelope, lo, hi)
                processed = self._process([block])
                if processed:
                    self._emit(topic, key, [], processed)

    def _emit(self, topic: str, key: bytes, events: list[dict], blocks: list[dict]) -> None:
        n_events = len(events) + sum(len(b["steps"]) for b in blocks)
        if n_events == 0:
            return
        batch = {"batch_id": self._new_id(), "events": events, "metric_blocks": blocks}
        try:
            value = self._encode(batch, topic)
        except EncodeError as exc:
            self._encode_failed(topic, key, events, blocks, exc)
            return
        if len(value) <= self.settings.max_record_bytes:
            self._deliver(Encoded(topic, key, value, n_events))
            return
        if len(events) > 1:
            half = len(events) // 2
            self._emit(topic, key, events[:half], [])
            self._emit(topic, key, events[half:], [])
        elif blocks and len(blocks[0]["steps"]) > 1:
            for part in _halves(blocks[0]):
                self._emit(topic, key, [], [part])
        else:
            self.stats["dropped_oversized"] += n_events
            what = events[0]["event_id"] if events else blocks[0]["block_id"]
            log.error(
                "aitrace: event %s dropped: %d bytes encoded, above max_record_bytes=%d",
                what,
                len(value),
                self.settings.max_record_bytes,
            )

    def _encode(self, batch: dict[str, Any], topic: str) -> bytes:
        """Encode with the configured wire format; when the schema registry cannot be reached,
        fall back to single-object encoding (every aitrace decoder reads both) rather than lose the batch."""
        try:
            return self._serializer(batch, self._context(topic))
        except SchemaRegistryError as exc:
            self.stats["registry_fallback"] += 1
            self._warn_once("registry", f"aitrace: schema registry unavailable, using single-object encoding: {exc}")
            return self._plain_serializer(batch, self._context(topic))

    def _encode_failed(self, topic: str, key: bytes, events: list[dict], blocks: list[dict], exc: Exception) -> None:
        """Find the events that do not fit the schema (by halves); drop only those, counted."""
        if len(events) > 1:
            half = len(events) // 2
            self._emit(topic, key, events[:half], [])
            self._emit(topic, key, events[half:], [])
            return
        self.stats["rejected_schema"] += len(events) + sum(len(b["steps"]) for b in blocks)
        self._warn_once("schema", f"aitrace: event dropped, it does not fit the schema: {exc}")

    def _context(self, topic: str) -> SerializationContext:
        ctx = self._contexts.get(topic)
        if ctx is None:
            ctx = self._contexts[topic] = SerializationContext(topic)
        return ctx

    # -- producing and spooling

    def _deliver(self, record: Encoded) -> None:
        if self._spooling or self._broker_down:
            self._spill(record)
            return
        if not self._produce(record, None):
            self._spill(record)

    def _produce(self, record: Encoded, spooled: SpoolRecord | None) -> bool:
        """Hand one record to librdkafka; its delivery report settles it (see :meth:`_report`)."""
        producer = self._producer
        if producer is None:
            return False
        self._token += 1
        token = self._token

        def report(err: KafkaError | None, msg: Any) -> None:
            self._report(token, err)

        for _ in range(3):
            try:
                producer.produce(record.topic, record.value, record.key, on_delivery=report)
                self._outstanding[token] = (record, spooled)
                return True
            except BufferError:
                producer.poll(0.05)  # librdkafka's own queue is full: let deliveries drain it
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() in _TOO_LARGE:
                    self._too_large(record, spooled, err)
                    return True  # settled: retrying can never succeed
                self._producer_error(err)
                return False
        return False

    def _too_large(self, record: Encoded, spooled: SpoolRecord | None, err: KafkaError) -> None:
        """A record the broker or librdkafka refuses for its size: dropped and counted, never retried."""
        self.stats["dropped_oversized"] += record.events
        if spooled is not None:
            self._spool_out -= 1
            self.spool.ack(spooled)
        log.error(
            "aitrace: a record of %d events (%d bytes) was refused for its size (%s); lower max_record_bytes",
            record.events,
            len(record.value),
            err.name(),
        )

    @property
    def _inflight(self) -> int:
        return len(self._outstanding)

    def _report(self, token: int, err: KafkaError | None) -> None:
        entry = self._outstanding.pop(token, None)
        if entry is None:
            return  # already settled when its producer was replaced
        record, spooled = entry
        self._notify_listener(record, err)
        if err is None:
            self._producer_ok = True
            self.stats["sent"] += record.events
            self.stats["records_sent"] += 1
            if spooled is not None:
                self._broker_down = False
                self._spool_out -= 1
                self.spool.ack(spooled)
                self.stats["drained"] += record.events
            return
        if err.code() in _TOO_LARGE:
            self._too_large(record, spooled, err)
            return
        self.stats["delivery_failures"] += 1
        self._failed(err)
        self._unsent(record, spooled)

    def _unsent(self, record: Encoded, spooled: SpoolRecord | None) -> None:
        """A record that was not delivered: back to the spool (in place when it came from there)."""
        if spooled is None:
            self._spill(record)
        else:
            self._spool_out -= 1
            self.spool.nack(spooled)

    def _notify_listener(self, record: Encoded, err: KafkaError | None) -> None:
        if self.delivery_listener is not None:
            try:
                self.delivery_listener(record.topic, record.value, err)
            except Exception:
                log.exception("aitrace: delivery listener failed")

    def _failed(self, err: KafkaError) -> None:
        self._spooling = True
        self._broker_down = True  # probe with one record before draining again
        self._probe_at = time.monotonic() + _PROBE_INTERVAL_S
        code = err.code()
        if code in (KafkaError._MSG_TIMED_OUT, KafkaError._PURGE_INFLIGHT) and self._producer_ok:
            self._replace_producer = True
        elif code == KafkaError._MSG_TIMED_OUT and time.monotonic() - self._producer_born > self._timeout_s:
            # A producer that never delivered for a whole delivery timeout may be wedged (e.g. an
            # idempotence state the broker rejects forever): a fresh one costs a reconnect at most.
            self._replace_producer = True
        if err.fatal():
            self._replace_producer = True

    def _spill(self, record: Encoded) -> None:
        self._spooling = True
        try:
            written = self.spool.append(record.topic, record.key, record.value, record.events)
        except OSError as exc:  # disk full, spool directory removed, I/O error
            self.stats["dropped_spool_error"] += record.events
            self._warn_once("spool-error", f"aitrace: cannot write the spool {self.spool.dir}: {exc}")
            return
        if written:
            self.stats["spilled"] += record.events
            self._spool_dirty = True
            return
        if self.settings.full_policy == "block":
            self._held.append(record)
            return
        self.stats["dropped_spool_full"] += record.events
        self._warn_once("spool-full", f"aitrace: spool {self.spool.dir} is full ({self.settings.spool_max_bytes} B)")

    def _retry_held(self) -> None:
        while self._held:
            record = self._held[0]
            healthy = self._producer_ok and not self._broker_down and self._spool_out == 0
            if healthy and not self.spool.pending() and self._produce(record, None):
                self._held.pop(0)  # the broker is back and the spool is drained: straight out, in order
                continue
            try:
                if not self.spool.append(record.topic, record.key, record.value, record.events):
                    return
            except OSError as exc:
                self._held.pop(0)
                self.stats["dropped_spool_error"] += record.events
                self._warn_once("spool-error", f"aitrace: cannot write the spool {self.spool.dir}: {exc}")
                continue
            self._held.pop(0)
            self.stats["spilled"] += record.events
            self._spool_dirty = True

    def _drain_spool(self, now: float) -> None:
        """Probe with the oldest record while the broker is in doubt; drain a window once it answers."""
        if self._producer is None:
            return
        window = _DRAIN_WINDOW if not self._broker_down and self._producer_ok else 1
        if self._spool_out == 0 and window == 1 and now < self._probe_at:
            return
        while self._spool_out < window:
            rec = self.spool.next_record()
            if rec is None:
                break
            if not self._produce(Encoded(rec.topic, rec.key, rec.value, rec.events), rec):
                self.spool.nack(rec)
                break
            self._spool_out += 1
            self._probe_at = now + _PROBE_INTERVAL_S
        if self._spool_out == 0 and not self.spool.pending() and not self._held:
            self._spooling = False  # drained: back to producing directly
        self.stats["spool_corrupt"] = self.spool.corrupt

    def _poll(self) -> None:
        if self._producer is not None:
            self._producer.poll(0)

    # -- the producer

    def _new_producer(self) -> None:
        conf: dict[str, Any] = {
            **self.settings.kafka_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "message.timeout.ms": self.settings.delivery_timeout_ms,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 1000,
            "queue.buffering.max.kbytes": 64 * 1024,
            "error_cb": self._on_error,
            "client.id": f"aitrace-{self.envelope['service']}",
            "logger": logging.getLogger("aitrace.kafka"),  # librdkafka's lines go to logging, not stderr
        }
        conf.update(self._producer_config)
        self._producer = Producer(conf)
        self._producer_born = time.monotonic()
        self._producer_ok = False
        self._replace_producer = False

    def _on_error(self, err: KafkaError) -> None:
        """librdkafka's error callback (runs inside poll, on this thread)."""
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._broker_down = True
            self._spooling = True
            if self._producer_ok:
                self._replace_producer = True
        elif err.fatal():
            self._replace_producer = True
        self._warn_once(f"kafka-{err.code()}", f"aitrace: Kafka: {err.str()}")

    def _producer_error(self, err: Any) -> None:
        if isinstance(err, KafkaError) and err.fatal():
            self._replace_producer = True
        self.stats["produce_errors"] += 1

    def _renew_producer(self) -> None:
        """Replace the producer; what it had not acknowledged goes back to the spool."""
        self._retire_producer()
        self.stats["producer_restarts"] += 1
        self._new_producer()
        self._broker_down = True  # probe before draining
        self._spooling = True

    def _retire_producer(self) -> None:
        """Purge the producer, serve the purge reports, and settle whatever still went unreported."""
        old = self._producer
        self._producer = None
        if old is not None:
            with contextlib.suppress(KafkaException, RuntimeError):
                old.purge(in_queue=True, in_flight=True)
            with contextlib.suppress(KafkaException, RuntimeError):
                old.flush(1.0)  # serves the purged records' reports: they spill
        leftovers, self._outstanding = self._outstanding, {}
        for record, spooled in leftovers.values():
            self._unsent(record, spooled)

    def _shutdown(self) -> None:
        """After stop: whatever librdkafka still holds goes to the spool (on disk), then close."""
        self._retire_producer()
        for record in self._held:
            self.stats["dropped_spool_full"] += record.events
        self._held.clear()
        for group in self._groups.values():
            self.stats["dropped_shutdown"] += len(group.events) + len(group.metrics)
        self.spool.close()
        self._notify()

    def abandon(self) -> None:
        """In a forked child: forget the parent's worker state (its thread does not exist here).

        The parent's producer must never be destroyed in the child: destroying it would wait for
        librdkafka threads that only exist in the parent. It is kept referenced for the life of
        the child instead (a few kilobytes).
        """
        if self._producer is not None:
            _ORPHANED_PRODUCERS.append(self._producer)
        self._producer = None
        self._outstanding = {}  # the parent's records: the parent reports and spools them
        self.spool.abandon()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)


def _halves(block: dict[str, Any]) -> list[dict[str, Any]]:
    """Split a metric block's rows in two halves (ids stay derivable: ``<block_id>.<first row>``)."""
    n = len(block["steps"])
    half = n // 2
    out = []
    for lo, hi in ((0, half), (half, n)):
        part = dict(block)
        part["block_id"] = f"{block['block_id']}.{lo}" if lo else block["block_id"]
        for column in ("steps", "times"):
            part[column] = block[column][lo:hi]
        part["epochs"] = block["epochs"][lo:hi] if block["epochs"] else []
        part["series"] = [{"name": s["name"], "values": s["values"][lo:hi]} for s in block["series"]]
        out.append(part)
    return out


def _registry(settings: Settings) -> Any:
    if not settings.schema_registry_url:
        return None
    return SchemaRegistryClient(settings.schema_registry_url)
