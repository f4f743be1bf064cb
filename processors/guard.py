"""Keeping a record's failure inside the agent: :class:`Guard` (see :meth:`Guard.guarded`).

Moved out of :class:`aitrace.processors.runtime.Runtime`, which guards its steps with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError, KafkaTimeoutError
from aitrace.sinks.indexer import IndexerClosed, RetriesExhausted

log = logging.getLogger("aitrace.processors")

# A failing batch waits before its records are retried one by one (doubling per failing batch in a row).
BACKOFF_S = 0.05
BACKOFF_MAX_S = 5.0

Step = Callable[[list[Any]], Awaitable[None]]


def _transient(exc: BaseException) -> bool:
    """A broker or network failure that may pass: redo the batch later (never quarantine for it)."""
    if isinstance(exc, KafkaTimeoutError):  # a send that outlasted an outage (aiokafka: not "retriable")
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    return isinstance(exc, ConnectionError | TimeoutError)


def _not_the_records(exc: BaseException) -> bool:
    """Failures that are the infrastructure's or the worker's (shutdown), not a record's."""
    return isinstance(exc, IndexerClosed | RetriesExhausted) or _transient(exc)


class Guard:
    """Runs a step on a batch so that nothing a record does escapes into Faust; ``quarantine(message, exc)``
    sets aside a record that failed twice."""

    def __init__(self, quarantine: Callable[[Any, Exception], Awaitable[None]]) -> None:
        self._quarantine = quarantine
        self._failed_batches = 0  # consecutive failed batches: the back-off grows with it

    async def guarded(self, step: Step, messages: list[Any]) -> None:
        """``step(messages)`` such that nothing a record does escapes into Faust.

        Faust restarts a crashed agent a few times, then leaves it dead (a tombstone stream
        was seen to stop the worker for good). So a failing batch is retried record by
        record after a growing back-off, and a record that fails again on its own is
        quarantined to the DLQ (:meth:`_isolate`). A transient broker failure is nobody's
        record's fault: the whole batch is redone after a back-off, for as long as it lasts
        (outputs are idempotent downstream). Shutdown and an exhausted indexer propagate.
        """
        while True:
            try:
                await self._isolate(step, messages)
                self._failed_batches = 0
                return
            except Exception as exc:
                if not _transient(exc):
                    raise
                log.warning("batch of %d record(s) hit %s: %s; redoing it", len(messages), type(exc).__name__, exc)
                await self._back_off()

    async def _isolate(self, step: Step, messages: list[Any]) -> None:
        """The batch, or else each record alone, quarantining the records that fail alone too."""
        try:
            await step(messages)
            return
        except Exception as exc:
            if _not_the_records(exc):
                raise
            log.exception("batch of %d record(s) failed; retrying them one by one", len(messages))
        await self._back_off()
        for message in messages:
            try:
                await step([message])
            except Exception as exc:  # second failure of this record: set it aside
                if _not_the_records(exc):
                    raise
                log.exception("quarantined %s[%d]@%d", message.topic, message.partition, message.offset)
                await self._quarantine(message, exc)

    async def _back_off(self) -> None:
        self._failed_batches += 1
        await asyncio.sleep(min(BACKOFF_MAX_S, BACKOFF_S * 2 ** min(self._failed_batches - 1, 20)))
