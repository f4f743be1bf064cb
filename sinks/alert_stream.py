"""Stream alert consumers: a small embeddable API (``aitrace alerts`` is :mod:`aitrace.sinks.alerts_cli`).

The processors publish each finding as an ``aitrace.Alert`` record on ``aitrace.alerts``,
keyed by ``alert_id`` (the dedup key: one incident is one alert). While the incident lasts
the processors publish it again with a higher ``version`` (new evidence, a severity change,
``state`` going from ``open`` to ``resolved``). A consumer wants *each new or changed alert
once*, that is each ``(alert_id, version)`` once; redelivery (a processor restart, a consumer
restart before its commit) must not show it twice.

Embedding::

    from aitrace.producers.config import KafkaConfig
    from aitrace.sinks.alert_stream import AlertFilter, AlertStream

    with AlertStream(KafkaConfig.from_env(), group_id="pager",
                     filters=AlertFilter(min_severity="warning", service="ranker")) as stream:
        stream.run(lambda alert: page_someone(alert["title"]))     # or: for alert in stream: ...

How it holds together:

- One confluent-kafka consumer. With a ``group_id`` it joins that group and commits offsets,
  *after* the handler returned (at-least-once): a crash re-reads what was not handled yet.
  Without one it is a plain tail: it assigns every partition itself (no group join, which
  takes seconds on Tansu) and commits nothing; partitions added to the topic later are not
  followed until the next start. A group that never committed pins its start offset at
  once, so alerts published while it is down are not skipped by a second "start at the end".
- Records that cannot be decoded (corrupt bytes, an unknown schema, something that is not an
  alert) are skipped, counted by reason in :attr:`AlertStream.stats` and logged with their
  topic/partition/offset; they never stop the stream.
- A :class:`~aitrace.sinks.alert_ledger.VersionLedger` remembers the last version handled per
  ``alert_id`` and skips versions that are not newer. In memory for a tail; in a small append-only file for the
  webhook forwarder (see :mod:`aitrace.sinks.webhook`), so that a restart does not resend
  what the receiver already acknowledged.
- :meth:`AlertStream.stop` (or SIGINT/SIGTERM in the CLI) ends the loop after the current
  alert; pending offsets are committed on the way out.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from aitrace.producers.config import KafkaConfig
from aitrace.schemas.codec import AvroDeserializer, DecodeError
from aitrace.schemas.registry import registry_at
from aitrace.sinks.alert_ledger import VersionLedger
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

log = logging.getLogger("aitrace.alerts")

ALERT_SCHEMA = "aitrace.Alert"
Alert = dict[str, Any]
Handler = Callable[[Alert], object]

# Order of severities for --severity (a minimum). Synonyms map onto the schema's three levels;
# an unknown word ranks as "info" so that it still shows without a filter and is never promoted.
SEVERITY_RANK: dict[str, int] = {"debug": 0, "info": 1, "warning": 2, "warn": 2, "error": 3, "critical": 3}
SEVERITIES = ("info", "warning", "critical")


def severity_rank(severity: str | None) -> int:
    """Rank of a severity word (case-insensitive); unknown words rank as ``info``."""
    return SEVERITY_RANK.get((severity or "").lower(), SEVERITY_RANK["info"])


class StopStream(Exception):
    """Raise from a handler to end :meth:`AlertStream.run` *without* marking the current alert handled."""


@dataclass(frozen=True)
class AlertFilter:
    """Which alerts to deliver. Every set criterion must match (``None`` = any)."""

    min_severity: str | None = None
    service: str | None = None
    run_id: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if self.min_severity is not None and self.min_severity.lower() not in SEVERITY_RANK:
            known = ", ".join(SEVERITIES)
            raise ValueError(f"unknown severity {self.min_severity!r} (use one of {known})")

    def matches(self, alert: Alert) -> bool:
        if self.min_severity is not None and severity_rank(alert.get("severity")) < severity_rank(self.min_severity):
            return False
        wanted = {"service": self.service, "run_id": self.run_id, "model": self.model}
        return all(value is None or alert.get(key) == value for key, value in wanted.items())


@dataclass
class StreamStats:
    """What a stream has seen. ``skipped`` counts undecodable records by reason."""

    records: int = 0
    delivered: int = 0
    filtered: int = 0
    duplicates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        parts = [f"{self.delivered} alert version(s) handled", f"{self.records} record(s) read"]
        if self.duplicates:
            parts.append(f"{self.duplicates} already-seen version(s) skipped")
        if self.filtered:
            parts.append(f"{self.filtered} filtered out")
        if self.skipped:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.skipped.items()))
            parts.append(f"{sum(self.skipped.values())} undecodable record(s) skipped ({reasons})")
        return ", ".join(parts)


@dataclass
class _Position:
    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, msg: Message) -> _Position:
        """Where a record sits (confluent_kafka types these Optional: an error event has none)."""
        return cls(cast(str, msg.topic()), cast(int, msg.partition()), cast(int, msg.offset()))


class AlertStream:
    """Decoded, filtered, deduplicated alerts from the alerts topic.

    ``group_id``: join this consumer group and commit offsets after handling; ``None`` tails
    without a group and commits nothing. ``from_beginning``: start at the oldest record when
    there is no committed offset (always, without a group); otherwise only new alerts.
    ``ledger``: where handled versions are remembered (a fresh in-memory one by default).
    ``consumer_config`` overrides librdkafka settings.
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        *,
        group_id: str | None = None,
        filters: AlertFilter | None = None,
        topic: str | None = None,
        from_beginning: bool = False,
        ledger: VersionLedger | None = None,
        consumer_config: dict[str, Any] | None = None,
        poll_timeout: float = 0.5,
    ) -> None:
        self.kafka = kafka
        self.topic = topic or kafka.topic("alerts")
        self.group_id = group_id
        self.filters = filters or AlertFilter()
        self.from_beginning = from_beginning
        self.ledger = ledger if ledger is not None else VersionLedger()
        self.poll_timeout = poll_timeout
        self.stats = StreamStats()
        self._stop = threading.Event()
        self._decoder = AvroDeserializer(registry_at(kafka.schema_registry_url))
        self._pending: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset to commit
        self._dirty = False
        self._current: tuple[_Position, Alert] | None = None
        self._assigned = False
        self._next_assign_try = 0.0
        self._reported_errors: set[int] = set()
        self._consumer = Consumer(self._config(consumer_config or {}))
        if group_id is not None:
            self._consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            self._assigned = True

    # -- public API

    @property
    def stopping(self) -> threading.Event:
        """Set when :meth:`stop` was called; handlers that wait (retry back-off) watch it."""
        return self._stop

    def stop(self) -> None:
        """Ask the loop to end after the alert in hand (safe from signal handlers and threads)."""
        self._stop.set()

    def poll(self, timeout: float | None = None) -> Alert | None:
        """The next alert to handle, or ``None`` when none arrived within ``timeout`` seconds.

        Call :meth:`mark_handled` once it is handled; until then it is neither committed
        nor remembered as seen.
        """
        self._ensure_assigned()
        msg = self._consumer.poll(self.poll_timeout if timeout is None else timeout)
        if msg is None:
            self._commit_if_dirty()
            return None
        alert = self._accept(msg)
        if alert is None:
            return None
        position = _Position.of(msg)
        key = (position.topic, position.partition)
        if key not in self._pending:
            # Pin where this run started (the alert in hand is re-read if it is never handled):
            # otherwise a group with no commit yet would start at the end again next time.
            self._pending[key] = position.offset
            self._dirty = True
        self._current = (position, alert)
        return alert

    def mark_handled(self) -> None:
        """The alert last returned by :meth:`poll` is handled: remember its version, commit."""
        if self._current is None:
            return
        position, alert = self._current
        self._current = None
        self.ledger.record(alert["alert_id"], alert["version"])
        self.stats.delivered += 1
        self._advance(position)
        self.commit()

    def __iter__(self) -> Iterator[Alert]:
        """Alerts until :meth:`stop`; each one counts as handled when the loop asks for the next."""
        while not self._stop.is_set():
            alert = self.poll()
            if alert is not None:
                yield alert
                self.mark_handled()

    def run(
        self, handler: Handler, *, limit: int | None = None, idle: Callable[[], object] | None = None
    ) -> StreamStats:
        """Call ``handler(alert)`` for each alert until :meth:`stop` (or ``limit`` alerts handled).

        An exception from the handler ends the loop and propagates; that alert is not
        committed, so it comes again on the next start. :class:`StopStream` ends it quietly.
        ``idle()`` is called after each poll that brought nothing to handle (at least every
        ``poll_timeout`` seconds while the topic is quiet); an exception from it ends the loop too.
        """
        while not self._stop.is_set() and (limit is None or self.stats.delivered < limit):
            alert = self.poll()
            if alert is None:
                if idle is not None:
                    idle()
                continue
            try:
                handler(alert)
            except StopStream:
                self._current = None
                break
            self.mark_handled()
        return self.stats

    def commit(self) -> None:
        """Commit every position handled so far (only with a group); failures retry later."""
        if self.group_id is None or not self._pending:
            self._dirty = False
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._pending.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed (will retry): %s", exc.args[0] if exc.args else exc)
            return
        self._dirty = False

    def close(self) -> None:
        """Commit what was handled, leave the group, close the ledger."""
        try:
            self.commit()
        finally:
            self._consumer.close()
            self.ledger.close()

    def __enter__(self) -> AlertStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inside

    def _config(self, overrides: dict[str, Any]) -> dict[str, Any]:
        conf: dict[str, Any] = dict(self.kafka.kafka_config())
        conf.update(
            {
                # Without a group nothing is committed; librdkafka still wants a group id.
                "group.id": self.group_id or f"aitrace-alerts-tail-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest" if self.from_beginning else "latest",
                "fetch.queue.backoff.ms": 1,  # librdkafka's default (1 s) delays every alert
                "session.timeout.ms": 6_000,  # a group join on Tansu takes ~20 s with the defaults
                "heartbeat.interval.ms": 1_000,
                "error_cb": self._on_error,
                # librdkafka's own log lines go through logging (served by poll), not raw to stderr
                "logger": logging.getLogger("aitrace.alerts.librdkafka"),
            }
        )
        conf.update(overrides)
        return conf

    def _ensure_assigned(self) -> None:
        """Tail mode: assign every partition of the topic, once it exists."""
        if self._assigned or time.monotonic() < self._next_assign_try:
            return
        self._next_assign_try = time.monotonic() + 1.0
        try:
            meta = self._consumer.list_topics(self.topic, timeout=5.0)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            code = error.code() if isinstance(error, KafkaError) else -1
            if code not in self._reported_errors:  # once per kind; librdkafka keeps retrying
                self._reported_errors.add(code)
                log.warning("cannot read metadata of %s yet: %s%s", self.topic, error or exc, _hint(code))
            return
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            if KafkaError.UNKNOWN_TOPIC_OR_PART not in self._reported_errors:
                self._reported_errors.add(KafkaError.UNKNOWN_TOPIC_OR_PART)
                log.info("waiting for topic %s to exist", self.topic)
            return
        start = -2 if self.from_beginning else -1  # OFFSET_BEGINNING / OFFSET_END
        self._consumer.assign([TopicPartition(self.topic, p, start) for p in sorted(topic.partitions)])
        self._assigned = True
        where = "the oldest record" if self.from_beginning else "the end"
        log.info("tailing %s from %s (%d partition(s))", self.topic, where, len(topic.partitions))

    def _accept(self, msg: Message) -> Alert | None:
        """Decode, filter and dedupe one record; ``None`` when it is not to be handled."""
        error = msg.error()
        if error is not None:
            self._on_message_error(error)
            return None
        self.stats.records += 1
        position = _Position.of(msg)
        try:
            name, alert = self._decoder.decode(msg.value())
            if name != ALERT_SCHEMA:
                raise DecodeError("not-an-alert", f"record is {name}, expected {ALERT_SCHEMA}")
        except DecodeError as exc:
            self.stats.skipped[exc.reason] += 1
            log.warning("skipped record %s[%d]@%d: %s", position.topic, position.partition, position.offset, exc)
            self._advance(position)
            return None
        if not self.filters.matches(alert):
            self.stats.filtered += 1
        elif not self.ledger.is_new(alert["alert_id"], alert["version"]):
            self.stats.duplicates += 1
        else:
            return alert
        self._advance(position)
        return None

    def _advance(self, position: _Position) -> None:
        self._pending[(position.topic, position.partition)] = position.offset + 1
        self._dirty = True

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Group mode: start partitions the group never committed at an explicit offset, and pin it.

        Committing that start at once means alerts published while this consumer is down are
        read on its next start instead of being skipped by a second "start at the end". The
        end is the high watermark; on Tansu it can read low (see DESIGN.md), which re-reads a
        few old alerts on a group's very first start, never loses one.
        """
        try:
            committed = consumer.committed(partitions, timeout=10)
            fresh = [tp for tp in committed if tp.offset < 0]
            for tp in fresh:
                low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
                tp.offset = low if self.from_beginning else high
                self._pending[(tp.topic, tp.partition)] = tp.offset
                self._dirty = True
        except KafkaException as exc:
            # Fall back on auto.offset.reset; only the pinning is lost.
            log.warning("cannot resolve start offsets (%s); starting per auto.offset.reset", exc)
            return
        if fresh:
            consumer.assign(committed)

    def _commit_if_dirty(self) -> None:
        if self._dirty:
            self.commit()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Commit what was handled on these partitions before another member takes them.
        self.commit()
        for tp in partitions:
            self._pending.pop((tp.topic, tp.partition), None)

    def _on_message_error(self, error: KafkaError) -> None:
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise KafkaException(error)
        if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
            if code not in self._reported_errors:
                log.info("waiting for topic %s to exist", self.topic)
        elif code not in self._reported_errors:
            log.warning("consumer: %s", error.str())
        self._reported_errors.add(code)

    def _on_error(self, error: KafkaError) -> None:
        # librdkafka reconnects by itself; say so once per kind of error, not on every retry.
        if error.fatal():
            log.error("kafka: fatal: %s", error.str())
        elif error.code() not in self._reported_errors:
            self._reported_errors.add(error.code())
            log.warning("kafka: %s (retrying)%s", error.str(), _hint(error.code()))


# what a tail started where no broker answers is told (search's unreachable server says the same of itself)
_NO_BROKER = (
    ": is a broker running? `aitrace up` starts the embedded one (run it where its .aitrace/ is); "
    "AITRACE_KAFKA_BOOTSTRAP or --bootstrap names another"
)


def _hint(code: int) -> str:
    # Which of the two librdkafka reports first (a metadata request's transport failure or its
    # all-brokers-down event) is a race; either one means nothing answered.
    return _NO_BROKER if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT) else ""


__all__ = [
    "Alert",
    "AlertFilter",
    "AlertStream",
    "StopStream",
    "StreamStats",
    "severity_rank",
]
