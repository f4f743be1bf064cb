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
``aitrace.dlq.truncated``  only for a value too large to go with its headers in one record (one just
                           under the broker's limit): the original value's size in bytes; the value
                           then holds its first bytes only (the whole record stays on its source topic)
``aitrace.dlq.sha256``     beside ``truncated``: the whole original value's SHA-256, hex
=========================  ====================================================

:class:`DlqCounter` counts dead letters by reason for the worker's periodic stats line.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

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
    truncated: int = 0  # the original value's size, where the value holds its first bytes only (see fitted)
    sha256: str = ""

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
        if self.truncated:
            pairs += [("truncated", str(self.truncated)), ("sha256", self.sha256)]
        return [(HEADER_PREFIX + k, v.encode()) for k, v in pairs]


# Room a dead letter keeps for Kafka's framing of its record and batch (~100 bytes) beside its key and headers
_FRAMING = 4096


def fitted(letter: DeadLetter, limit: int) -> DeadLetter:
    """The letter as one record of at most ``limit`` bytes (the producer's ``max_request_size``): a value that
    does not fit beside its key and headers keeps its first bytes, with headers ``truncated`` (its size) and
    ``sha256`` (of the whole value). A record just under the broker's limit went to the dead letters as the
    same bytes plus headers: the send was refused, the guard retried it, and the agent died on that record
    at every restart."""
    if letter.value is None:
        return letter
    marks = len(HEADER_PREFIX) * 2 + len("truncated") + 20 + len("sha256") + 64
    room = limit - _FRAMING - len(letter.key or b"") - sum(len(k) + len(v) for k, v in letter.headers()) - marks
    if len(letter.value) <= room:
        return letter
    digest = hashlib.sha256(letter.value).hexdigest()
    return replace(letter, value=letter.value[: max(room, 0)], truncated=len(letter.value), sha256=digest)


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
