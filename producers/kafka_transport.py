"""The Kafka transport: confluent-kafka's producer, its delivery reports, the spool and producer renewal.

The exporter (:mod:`aitrace.producers.exporter`) hands it encoded records (see the
:class:`~aitrace.producers.transport.Transport` interface); it runs on the exporter's thread.

- **Produce** with confluent-kafka (idempotent, ``acks=all``). When the broker is down or a
  delivery fails, records go to the on-disk :class:`~aitrace.producers.spool.Spool` instead, and new
  records follow them there (so the order holds); one probe record from the spool is kept in
  flight, and when it is acknowledged the spool drains in order, a window of records at a time.
  After all brokers went down, the producer is replaced by a fresh one: an idempotent producer
  keeps its producer id and sequence numbers, which a restarted broker no longer knows, and
  would retry until its messages time out.
- **Spool full.** ``full_policy="drop_newest"`` drops the record (its events counted in
  ``dropped_spool_full``); ``"block"`` keeps it and reports the transport :attr:`blocked`, so the
  exporter stops taking from the queue and callers block when the queue fills (up to
  ``full_block_timeout_s``, then their event is counted in ``dropped_queue_full``). A kept record
  goes to the spool when room frees up, or straight to the broker once it is back and the spool
  is drained.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aitrace.producers.config import Settings
from aitrace.producers.spool import Spool, SpoolRecord
from aitrace.producers.transport import Encoded
from confluent_kafka import KafkaError, KafkaException, Producer

log = logging.getLogger("aitrace.exporter")
# librdkafka's own lines. It repeats "Connect to ... failed" on every reconnect while the broker is
# down: with logging not configured, Python's last-resort handler printed each to stderr (82 lines
# in the 20 s that the README's first example waited in flush and close with no broker), beside
# this module's one "brokers are down" warning. A handler of the application's still gets them.
_librdkafka_log = logging.getLogger("aitrace.kafka")
_librdkafka_log.addHandler(logging.NullHandler())

DeliveryListener = Callable[[str, bytes, "KafkaError | None"], None]

_PROBE_INTERVAL_S = 0.25
_DRAIN_WINDOW = 256
# Producers inherited through fork(): never destroyed in the child (see KafkaTransport.abandon).
_ORPHANED_PRODUCERS: list[Producer] = []
_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})


class KafkaTransport:
    """Delivers the exporter's records through confluent-kafka, spilling to the spool (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        stats: Counter[str],
        client_id: str,
        delivery_listener: DeliveryListener | None = None,
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.delivery_listener = delivery_listener
        self._client_id = client_id
        self._producer_config = producer_config or {}
        self._producer: Producer | None = None
        self._producer_ok = False  # delivered at least once since created
        self._producer_born = 0.0
        self._timeout_s = settings.producer.delivery_timeout_ms / 1000.0
        self._replace_producer = False
        self._broker_down = False
        self.spool = Spool(settings.producer.spool_dir, settings.producer.spool_max_bytes)
        self._spooling = self.spool.pending()  # adopted segments drain before anything new
        self._spool_dirty = False
        self._spool_out = 0
        self._probe_at = 0.0
        self._held: list[Encoded] = []  # block policy: records waiting for spool space
        # Records handed to librdkafka and not yet reported, by token: what a replaced producer
        # never reported is settled from here, so no record depends on a report arriving.
        self._outstanding: dict[int, tuple[Encoded, SpoolRecord | None]] = {}
        self._token = 0
        self._warned: set[str] = set()

    # -- the Transport interface, called by the exporter's thread

    def start(self) -> None:
        self._new_producer()

    def poll(self) -> None:
        """Serve delivery reports, replace a producer that needs it, retry the records held for room."""
        if self._producer is not None:
            self._producer.poll(0)
        if self._replace_producer:
            self._renew_producer()
        if self._held:
            self._retry_held()

    @property
    def blocked(self) -> bool:
        """Records wait for spool space (``full_policy="block"``): take nothing new."""
        return bool(self._held)

    def send(self, record: Encoded) -> None:
        if self._spooling or self._broker_down:
            self._spill(record)
            return
        if not self._produce(record, None):
            self._spill(record)

    def maintain(self, now: float) -> None:
        """Drain the spool (or probe the broker with its oldest record), then fsync what was spilled."""
        if self._spooling:
            self._drain_spool(now)
        if self._spool_dirty:
            self.spool.sync()
            self._spool_dirty = False

    def busy(self) -> bool:
        """Records in flight, spooled or held: the exporter's thread should come back soon."""
        return bool(self._inflight or self._spooling or self._held)

    def settled(self) -> bool:
        """Everything sent was delivered: nothing held, in flight or in the spool."""
        return not self._held and self._inflight == 0 and not self.spool.pending()

    @property
    def spool_bytes(self) -> int:
        return self.spool.bytes_used

    def close(self) -> None:
        """After stop: whatever librdkafka still holds goes to the spool (on disk), then close."""
        self._retire_producer()
        for record in self._held:
            self.stats["dropped_spool_full"] += record.events
        self._held.clear()
        self.spool.close()

    def abandon(self) -> None:
        """In a forked child: forget the parent's producer, records and spool (its threads do not exist here).

        The parent's producer must never be destroyed in the child: destroying it would wait for
        librdkafka threads that only exist in the parent. It is kept referenced for the life of
        the child instead (a few kilobytes).
        """
        if self._producer is not None:
            _ORPHANED_PRODUCERS.append(self._producer)
        self._producer = None
        self._outstanding = {}  # the parent's records: the parent reports and spools them
        self.spool.abandon()

    # -- producing and spooling

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
        if self.settings.producer.full_policy == "block":
            self._held.append(record)
            return
        self.stats["dropped_spool_full"] += record.events
        self._warn_once(
            "spool-full", f"aitrace: spool {self.spool.dir} is full ({self.settings.producer.spool_max_bytes} B)"
        )

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

    # -- the producer

    def _new_producer(self) -> None:
        conf: dict[str, Any] = {
            **self.settings.kafka.kafka_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "message.timeout.ms": self.settings.producer.delivery_timeout_ms,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 1000,
            "queue.buffering.max.kbytes": 64 * 1024,
            "error_cb": self._on_error,
            "client.id": self._client_id,
            "logger": _librdkafka_log,  # librdkafka's lines go to logging, not stderr
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

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)
