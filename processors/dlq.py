"""Dead letters: records the worker could not use, kept byte for byte on ``aitrace.dlq``.

Format (headers, not an envelope): the DLQ record's **value is the original value bytes,
unchanged**, and its key the original key (a tombstone, null key and null value, gets
the key ``tombstone:<topic>/<partition>/<offset>``: Kafka needs one of the two), so
replaying a dead letter is producing its value back to ``aitrace.dlq.topic``. Kafka headers say why and where from:

=========================  ====================================================
``aitrace.dlq.reason``     short stable reason (``corrupt-body``, ``bad-magic``, ``invalid-trace-id``,
                           ``tombstone``, ``quarantined``: failed a step twice, ``index-rejected``...)
``aitrace.dlq.detail``     one line a person can read
``aitrace.dlq.topic``      source topic
``aitrace.dlq.partition``  source partition (decimal)
``aitrace.dlq.offset``     source offset (decimal)
``aitrace.dlq.rejected``   only for partly valid batches: JSON list like ``["event:3", "block:0"]``;
                           the other events of that batch were processed
``aitrace.dlq.time``       when it was dead-lettered, epoch milliseconds
=========================  ====================================================

:class:`DlqCounter` counts dead letters by reason for the worker's periodic stats line.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

HEADER_PREFIX = "aitrace.dlq."


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter: the original record and why it was set aside."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    rejected: tuple[str, ...] = ()
    time_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def __post_init__(self) -> None:
        # Kafka (aiokafka asserts it) refuses a record with neither key nor value: a
        # tombstone's dead letter is keyed by where it came from, so it still lands.
        if self.key is None and self.value is None:
            object.__setattr__(self, "key", tombstone_key(self.topic, self.partition, self.offset))

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers carrying reason and origin (values UTF-8)."""
        pairs = [
            ("reason", self.reason),
            ("detail", self.detail[:2000]),
            ("topic", self.topic),
            ("partition", str(self.partition)),
            ("offset", str(self.offset)),
            ("time", str(self.time_ms)),
        ]
        if self.rejected:
            pairs.append(("rejected", json.dumps(list(self.rejected))))
        return [(HEADER_PREFIX + k, v.encode()) for k, v in pairs]


def tombstone_key(topic: str, partition: int, offset: int) -> bytes:
    """``b"tombstone:<topic>/<partition>/<offset>"``: the key of a null-key, null-value record's dead letter."""
    return f"tombstone:{topic}/{partition}/{offset}".encode()


def parse_headers(headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None) -> dict[str, str]:
    """The ``aitrace.dlq.*`` headers of a consumed dead letter, prefix removed, decoded."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    out: dict[str, str] = {}
    for key, value in items:
        if key.startswith(HEADER_PREFIX):
            out[key[len(HEADER_PREFIX) :]] = (value or b"").decode("utf-8", "replace")
    return out


class DlqCounter:
    """Dead letters by reason since the worker started."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def add(self, reason: str, n: int = 1) -> None:
        self._counts[reason] += n

    def snapshot(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def __str__(self) -> str:
        if not self._counts:
            return "dlq=0"
        parts = ",".join(f"{k}:{v}" for k, v in sorted(self._counts.items()))
        return f"dlq={self.total} ({parts})"


def rejected_labels(rejected: Sequence[object]) -> tuple[str, ...]:
    """``("event:3", "block:0")`` for :class:`aitrace.processors.decode.Rejected` items."""
    return tuple(f"{r.where}:{r.index}" for r in rejected)  # type: ignore[attr-defined]
