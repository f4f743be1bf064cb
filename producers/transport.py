"""Where the exporter's encoded records go: the :class:`Transport` interface, and an in-memory one.

The exporter (:mod:`aitrace.producers.exporter`) batches, processes and encodes, as
OpenTelemetry's ``BatchSpanProcessor`` does; a transport delivers what it encoded, as a
``SpanExporter`` does. Every method is called on the exporter's one thread. The transport of a
client is :class:`~aitrace.producers.kafka_transport.KafkaTransport` (Kafka, with the on-disk
spool); :class:`MemoryTransport` keeps the records in a list, for unit tests that need no broker.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class Encoded:
    """One encoded Kafka record on its way."""

    topic: str
    key: bytes
    value: bytes
    events: int


class Transport(Protocol):
    """What the exporter's loop calls, in this order each cycle: :meth:`poll`, :meth:`send` for each
    record, :meth:`maintain`; :meth:`close` once after stop."""

    def start(self) -> None:
        """Before the exporter's thread starts."""

    def poll(self) -> None:
        """Serve what came back (delivery reports) and retry what waits, before the exporter takes more."""

    @property
    def blocked(self) -> bool:
        """True while the transport cannot take records: the exporter leaves the queue alone."""

    def send(self, record: Encoded) -> None:
        """Take one record; it is settled later (delivered, kept for later, or dropped and counted)."""

    def maintain(self, now: float) -> None:
        """After the cycle's sends: work that is due (retries, a drain, a sync)."""

    def busy(self) -> bool:
        """Work is under way that the exporter's thread should come back for soon."""

    def settled(self) -> bool:
        """Every record sent so far was delivered."""

    @property
    def spool_bytes(self) -> int:
        """Bytes kept on disk for later delivery."""

    def close(self) -> None:
        """After stop: keep or count what is still undelivered, release what is held."""

    def abandon(self) -> None:
        """In a forked child: forget the parent's state without touching it."""


class MemoryTransport:
    """A :class:`Transport` that delivers every record at once into :attr:`records` (for tests)."""

    def __init__(self, stats: Counter[str] | None = None) -> None:
        self.records: list[Encoded] = []
        self.stats: Counter[str] = Counter() if stats is None else stats
        self.closed = False

    def start(self) -> None:
        pass

    def poll(self) -> None:
        pass

    @property
    def blocked(self) -> bool:
        return False

    def send(self, record: Encoded) -> None:
        self.records.append(record)
        self.stats["sent"] += record.events
        self.stats["records_sent"] += 1

    def maintain(self, now: float) -> None:
        pass

    def busy(self) -> bool:
        return False

    def settled(self) -> bool:
        return True

    @property
    def spool_bytes(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    def abandon(self) -> None:
        self.records = []
