"""Stream alert consumers: a small embeddable API and the ``aitrace alerts`` command.

The processors publish each finding as an ``aitrace.Alert`` record on ``aitrace.alerts``,
keyed by ``alert_id`` (the dedup key: one incident is one alert). While the incident lasts
the processors publish it again with a higher ``version`` (new evidence, a severity change,
``state`` going from ``open`` to ``resolved``). A consumer wants *each new or changed alert
once*, that is each ``(alert_id, version)`` once; redelivery (a processor restart, a consumer
restart before its commit) must not show it twice.

Embedding::

    from aitrace.producers.config import Settings
    from aitrace.sinks.alerts import AlertFilter, AlertStream

    with AlertStream(Settings.from_env(), group_id="pager",
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
- A :class:`VersionLedger` remembers the last version handled per ``alert_id`` and skips
  versions that are not newer. In memory for a tail; in a small append-only file for the
  webhook forwarder (see :mod:`aitrace.sinks.webhook`), so that a restart does not resend
  what the receiver already acknowledged.
- :meth:`AlertStream.stop` (or SIGINT/SIGTERM in the CLI) ends the loop after the current
  alert; pending offsets are committed on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, cast

import orjson
from aitrace.producers.config import Settings
from aitrace.schemas.codec import AvroDeserializer, DecodeError
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


class LedgerError(OSError):
    """The ledger file cannot be read or written; the message names the file and the cause."""


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


class VersionLedger:
    """Last handled version per ``alert_id``; optionally persisted in an append-only file.

    Each :meth:`record` appends one JSON line ``{"id": ..., "v": ...}`` and flushes it to the
    operating system (unbuffered), so a killed process loses nothing it recorded (a power cut may lose the
    last lines; the receiver's idempotency key covers that window). On open the file is
    replayed; a torn last line from a crash is ignored (and counted in ``bad_lines``). The file
    is rewritten compactly when it holds many superseded lines. At most ``max_entries`` ids are
    kept, the least recently updated ones are forgotten first (an alert quiet for that long is
    over; a very late redelivery of it would be shown again, never lost).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, max_entries: int = 100_000) -> None:
        self.path = Path(path) if path is not None else None
        self.max_entries = max_entries
        self.bad_lines = 0
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._file: Any = None
        if self.path is not None:
            lines, torn = self._load(self.path)
            # Rewrite when mostly superseded, or to drop a torn last line that appends would extend.
            if torn or lines > 2 * len(self._versions) + 1_000:
                self._compact(self.path)
            self._file = self._open_append(self.path)

    def __len__(self) -> int:
        return len(self._versions)

    def last(self, alert_id: str) -> int | None:
        return self._versions.get(alert_id)

    def is_new(self, alert_id: str, version: int) -> bool:
        """True when ``version`` is newer than the last one handled for ``alert_id``."""
        last = self._versions.get(alert_id)
        return last is None or version > last

    def record(self, alert_id: str, version: int) -> None:
        """Remember ``version`` as handled, persisted before it counts (LedgerError if it cannot be)."""
        if not self.is_new(alert_id, version):
            return
        if self._file is not None:
            line = orjson.dumps({"id": alert_id, "v": version}) + b"\n"
            try:
                self._file.write(line)  # unbuffered: one write() per line, nothing left behind on failure
            except OSError as exc:
                raise LedgerError(f"cannot write alert ledger {self.path}: {exc}") from exc
        self._versions[alert_id] = version
        self._versions.move_to_end(alert_id)
        while len(self._versions) > self.max_entries:
            self._versions.popitem(last=False)

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def _load(self, path: Path) -> tuple[int, bool]:
        """Replay the file; returns (line count, whether the last line is incomplete)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0, False
        except OSError as exc:
            raise LedgerError(f"cannot read alert ledger {path}: {exc}") from exc
        lines = data.splitlines()
        for line in lines:
            try:
                entry = orjson.loads(line)
                alert_id, version = str(entry["id"]), int(entry["v"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                self.bad_lines += 1
                continue
            if self.is_new(alert_id, version):
                self._versions[alert_id] = version
                self._versions.move_to_end(alert_id)
        while len(self._versions) > self.max_entries:
            self._versions.popitem(last=False)
        if self.bad_lines:
            log.warning("alert ledger %s: ignored %d unreadable line(s) (torn write?)", path, self.bad_lines)
        return len(lines), bool(data) and not data.endswith(b"\n")

    def _compact(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        body = b"".join(orjson.dumps({"id": k, "v": v}) + b"\n" for k, v in self._versions.items())
        try:
            with open(tmp, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise LedgerError(f"cannot compact alert ledger {path}: {exc}") from exc

    @staticmethod
    def _open_append(path: Path) -> Any:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return open(path, "ab")
        except OSError as exc:
            raise LedgerError(f"cannot open alert ledger {path}: {exc}") from exc


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
        settings: Settings,
        *,
        group_id: str | None = None,
        filters: AlertFilter | None = None,
        topic: str | None = None,
        from_beginning: bool = False,
        ledger: VersionLedger | None = None,
        consumer_config: dict[str, Any] | None = None,
        poll_timeout: float = 0.5,
    ) -> None:
        self.settings = settings
        self.topic = topic or settings.topic("alerts")
        self.group_id = group_id
        self.filters = filters or AlertFilter()
        self.from_beginning = from_beginning
        self.ledger = ledger if ledger is not None else VersionLedger()
        self.poll_timeout = poll_timeout
        self.stats = StreamStats()
        self._stop = threading.Event()
        self._decoder = AvroDeserializer(_registry(settings))
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

    def run(self, handler: Handler, *, limit: int | None = None) -> StreamStats:
        """Call ``handler(alert)`` for each alert until :meth:`stop` (or ``limit`` alerts handled).

        An exception from the handler ends the loop and propagates; that alert is not
        committed, so it comes again on the next start. :class:`StopStream` ends it quietly.
        """
        while not self._stop.is_set() and (limit is None or self.stats.delivered < limit):
            alert = self.poll()
            if alert is None:
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
        conf: dict[str, Any] = dict(self.settings.kafka_config())
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
                log.warning("cannot read metadata of %s yet: %s", self.topic, error or exc)
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
            log.warning("kafka: %s (retrying)", error.str())


def _registry(settings: Settings) -> Any:
    if not settings.schema_registry_url:
        return None
    from aitrace.schemas.registry import SchemaRegistryClient

    return SchemaRegistryClient(settings.schema_registry_url)


# -- presentation


_COLOURS = {"critical": "\033[1;31m", "error": "\033[1;31m", "warning": "\033[33m", "info": "\033[36m"}
_GREEN, _DIM, _RESET = "\033[32m", "\033[2m", "\033[0m"


def format_time(micros: int | None) -> str:
    """``2026-11-26 15:30:12Z`` from epoch microseconds (UTC)."""
    if micros is None:
        return "-"
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _number(value: float) -> str:
    return f"{value:.4g}"


def where_of(alert: Alert) -> str:
    """``service=a run=b model=c feature=d step=e trace=f`` (set fields only)."""
    names = (("service", "service"), ("run", "run_id"), ("model", "model"), ("feature", "feature"))
    parts = [f"{label}={alert[key]}" for label, key in names if alert.get(key)]
    if alert.get("step") is not None:
        parts.append(f"step={alert['step']}")
    if alert.get("trace_id"):
        parts.append(f"trace={alert['trace_id']}")
    return " ".join(parts) or f"series={alert.get('series', '?')}"


def evidence_of(alert: Alert) -> str:
    """``statistic=0.41 threshold=0.2 p=0.001 score=0.97`` (set fields only)."""
    names = (("statistic", "statistic"), ("threshold", "threshold"), ("p", "pvalue"), ("score", "score"))
    return " ".join(f"{label}={_number(alert[key])}" for label, key in names if alert.get(key) is not None)


def format_alert(alert: Alert, *, colour: bool = False) -> str:
    """One readable line per alert version: when, how bad, what, where, the evidence, which one."""
    severity = str(alert.get("severity", "?"))
    state = str(alert.get("state", "open"))
    sev_text = f"{severity.upper():<8}"
    state_text = f"{state:<8}"
    ident = f"({alert.get('alert_id')} v{alert.get('version')})"
    if colour:
        sev_text = f"{_COLOURS.get(severity.lower(), '')}{sev_text}{_RESET}"
        if state == "resolved":
            state_text = f"{_GREEN}{state_text}{_RESET}"
        ident = f"{_DIM}{ident}{_RESET}"
    evidence = evidence_of(alert)
    parts = [
        format_time(alert.get("last_seen")),
        sev_text,
        state_text,
        str(alert.get("title", "")),
        f"[{where_of(alert)}]",
    ]
    if evidence:
        parts.append(evidence)
    parts.append(ident)
    return "  ".join(parts)


def use_colour(choice: str, stream: TextIO) -> bool:
    """``auto``: colour only on a terminal, and never when NO_COLOR is set."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return stream.isatty() and not os.environ.get("NO_COLOR")


# -- CLI


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Options of ``aitrace alerts``."""
    parser.add_argument(
        "--severity", choices=list(SEVERITIES), help="show alerts of this severity or worse (default: all)"
    )
    parser.add_argument("--service", help="only alerts of this service")
    parser.add_argument("--run", dest="run_id", help="only alerts of this run id")
    parser.add_argument("--model", help="only alerts of this model")
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest alert (without a committed offset)"
    )
    parser.add_argument(
        "--group",
        help="consumer group: resume where it left off and commit (default: none when tailing; "
        "aitrace-webhook-<hash of URL> with --webhook)",
    )
    parser.add_argument("--topic", help="alerts topic (default: <topic_prefix>.alerts)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: AITRACE_KAFKA_BOOTSTRAP)")
    parser.add_argument("--limit", type=int, help="stop after this many alert versions")
    parser.add_argument("--json", action="store_true", help="print one JSON object per alert version")
    parser.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="colour the output")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more on stderr")
    hook = parser.add_argument_group("webhook forwarding")
    hook.add_argument("--webhook", metavar="URL", help="POST each new or changed alert version to URL as JSON")
    hook.add_argument(
        "--header", action="append", default=[], metavar="'NAME: VALUE'", help="extra request header (repeatable)"
    )
    hook.add_argument("--state-file", help="where delivered versions are remembered (default: under state_dir)")
    hook.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    hook.add_argument(
        "--max-attempts", type=int, default=0, help="give up (exit 1, nothing committed) after N tries; 0 = never"
    )
    hook.add_argument("--backoff", type=float, default=0.5, help="first retry delay in seconds (default 0.5)")
    hook.add_argument("--backoff-max", type=float, default=60.0, help="longest retry delay in seconds (default 60)")


def run(name: str, args: argparse.Namespace) -> int:
    """``aitrace alerts``: tail the alerts topic, or forward it to a webhook."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="aitrace alerts: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        # error_cb already says once what is wrong; librdkafka would repeat it on every reconnect.
        logging.getLogger("aitrace.alerts.librdkafka").setLevel(logging.CRITICAL)
    if args.limit is not None and args.limit < 1:
        print("aitrace alerts: --limit must be at least 1", file=sys.stderr)
        return 2
    settings = Settings.from_env(kafka_bootstrap=args.bootstrap)
    filters = AlertFilter(min_severity=args.severity, service=args.service, run_id=args.run_id, model=args.model)
    if args.webhook:
        from aitrace.sinks.webhook import run_forwarder

        return run_forwarder(settings, args, filters)
    return _tail(settings, args, filters)


def _tail(settings: Settings, args: argparse.Namespace, filters: AlertFilter) -> int:
    colour = use_colour(args.color, sys.stdout)

    def show(alert: Alert) -> None:
        line = orjson.dumps(alert).decode() if args.json else format_alert(alert, colour=colour)
        print(line, flush=True)

    stream = AlertStream(
        settings, group_id=args.group, filters=filters, topic=args.topic, from_beginning=args.from_beginning
    )
    try:
        with stream, stop_on_signals(stream):
            # `aitrace alerts | head`: a closed stdout ends the tail quietly in aitrace.infra.cli.main
            stream.run(show, limit=args.limit)
    except KafkaException as exc:
        print(f"aitrace alerts: kafka error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    print(f"aitrace alerts: {stream.stats.summary()}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def stop_on_signals(stream: AlertStream) -> Iterator[None]:
    """SIGINT/SIGTERM ask ``stream`` to stop gracefully (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        stream.stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


__all__ = [
    "Alert",
    "AlertFilter",
    "AlertStream",
    "LedgerError",
    "StopStream",
    "StreamStats",
    "VersionLedger",
    "add_arguments",
    "format_alert",
    "run",
    "severity_rank",
]
