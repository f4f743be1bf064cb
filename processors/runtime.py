"""What the Faust agents share and do per batch: :class:`Runtime`.

Its steps take a batch of input records (:meth:`Runtime.on_records`) or of series chunks
(:meth:`Runtime.on_chunks`) through the :class:`~aitrace.processors.pipeline.Pipeline`, send
the outputs, index the documents and write the tables; :meth:`Runtime.guarded` keeps any
exception of a record's making inside the agent. :mod:`aitrace.processors.app` builds the
Faust app around it and says how delivery and poison records are handled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust
import orjson
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aitrace.processors.chunk_wire import group_chunks, split_chunks
from aitrace.processors.dlq import DeadLetter
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline, RecordOutput, Staged
from aitrace.processors.topics import INPUT_TOPICS
from aitrace.producers.config import Settings
from aitrace.schemas.codec import AvroSerializer
from aitrace.sinks.documents import Action
from aitrace.sinks.indexer import IndexerClosed, RetriesExhausted

log = logging.getLogger("aitrace.processors")

# Table keys are str and values JSON-safe dicts; JSON keeps both as they were across a restore.
_JSON: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")

# A failing batch waits before its records are retried one by one (doubling per failing batch in a row).
BACKOFF_S = 0.05
BACKOFF_MAX_S = 5.0


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


class Runtime:
    """What the agents share: the pipeline, the output topics, the (lazily opened) indexer."""

    def __init__(self, app: faust.App, settings: Settings, options: WorkerOptions) -> None:
        self.app = app
        self.settings = settings
        self.options = options
        self.pipeline = Pipeline(options)
        n = options.partitions
        self.input_names = tuple(settings.kafka.topic(t) for t in INPUT_TOPICS)
        self.ticks_name = f"{options.app_id}-ticks"
        self.inputs = app.topic(*self.input_names, self.ticks_name, partitions=n, value_type=bytes)
        self.ticks = app.topic(self.ticks_name, partitions=n, value_type=bytes, internal=True)
        self.series_topic = app.topic(f"{options.app_id}-series", partitions=n, value_type=bytes, internal=True)
        self.dlq = app.topic(settings.kafka.topic("dlq"), value_type=bytes)
        self.alerts = app.topic(settings.kafka.topic("alerts"), value_type=bytes)
        self.traces = app.Table("traces", partitions=n, schema=_JSON)
        # key: entity (run/<id>, model/<name>, data/<ds>/<stage>); value: {series: state}
        self.series_state = app.Table("series", partitions=n, schema=_JSON)
        self._alert_codec = AvroSerializer("aitrace.Alert")
        self._indexer: Any = None
        self._client: Any = None
        self._started = time.monotonic()
        # id(action) -> (source message, records dead-lettered in that index call); see index()
        self._sources: dict[int, tuple[Any, set[int]]] = {}
        self._failed_batches = 0  # consecutive failed batches: the back-off grows with it

    # ------------------------------------------------------------ indexing

    async def indexer(self) -> Any:
        """The bulk indexer, opened on first use; waits (backpressure) while the server is unreachable."""
        if self._indexer is not None:
            return self._indexer
        from aitrace.sinks.index_writer import open_indexer

        self._client, self._indexer = await open_indexer(self.settings.search, on_reject=self._on_reject)
        return self._indexer

    async def index(self, actions: list[Action], sources: dict[int, Any] | None = None) -> None:
        """Index ``actions``; ``sources`` maps ``id(action)`` to the message it came from.

        The map holds references (no copies) until the bulk answer, so a rejected document's
        dead letter is its source record: original bytes, topic, partition, offset.
        """
        if not (actions and self.options.index):
            return
        seen: set[int] = set()  # source records already dead-lettered in this call
        refs = {k: (m, seen) for k, m in (sources or {}).items()}
        self._sources.update(refs)
        try:
            await (await self.indexer()).index(actions)
        finally:
            for k in refs:
                self._sources.pop(k, None)

    async def _on_reject(self, rejection: Any) -> None:
        # The server refused this document for a reason of its own: keep its source record on the DLQ.
        action = rejection.action
        detail = (
            f"{rejection.status} {rejection.error_type}: {rejection.reason} "
            f"(document {rejection.index}/{action.get('_id', '')})"
        )
        self.pipeline.dlq.add("index-rejected")
        source = self._sources.get(id(action))
        if source is None:  # not from a record (should not happen): keep the document itself
            doc = orjson.dumps(action, default=str)
            letter = DeadLetter(doc, str(action.get("_id", "")).encode(), "", -1, -1, "index-rejected", detail)
        else:
            message, seen = source
            if id(message) in seen:
                return  # one dead letter per source record, however many of its documents failed
            seen.add(id(message))
            letter = DeadLetter(
                message.value, message.key, message.topic, message.partition, message.offset, "index-rejected", detail
            )
        await self._send_letters([letter])

    async def close(self) -> None:
        if self._indexer is not None:
            await self._indexer.close()
        if self._client is not None:
            await self._client.close()

    # ------------------------------------------------------------ agents' steps

    async def on_records(self, messages: list[Any]) -> None:
        """A batch of input records (and ticks): one bulk request, then the table writes.

        Faust's ``take_events`` acknowledges the events after this returns, so offsets are
        committed only for records whose documents were acknowledged and outputs sent.
        """
        staged = Staged(self.traces)
        actions: list[Action] = []
        sources: dict[int, Any] = {}
        chunks: list[tuple[str, bytes]] = []
        now = time.time()
        for message in messages:
            staged.partition = message.partition
            if message.topic == self.ticks_name:
                if message.partition < self.options.partitions:
                    _extend(actions, sources, self.pipeline.tick(message.partition, staged, now=now), message)
                continue
            out = self._process(message, staged, now)
            await self._send_letters(out.dead_letters)
            chunks.extend(out.chunks)
            _extend(actions, sources, out.actions, message)
        # one series record per entity and batch (chunks inside applied one by one, see group_chunks)
        for key, value in group_chunks(chunks):
            await self.series_topic.send(key=key.encode(), value=value, force=True)
        await self.index(actions, sources)
        staged.commit(self._writer(self.traces))

    async def guarded(self, step: Callable[[list[Any]], Awaitable[None]], messages: list[Any]) -> None:
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

    async def _isolate(self, step: Callable[[list[Any]], Awaitable[None]], messages: list[Any]) -> None:
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

    async def _quarantine(self, message: Any, exc: Exception) -> None:
        self.pipeline.dlq.add("quarantined")
        letter = DeadLetter(
            message.value,
            message.key,
            message.topic,
            message.partition,
            message.offset,
            "quarantined",
            f"failed twice: {type(exc).__name__}: {exc}",
        )
        await self._send_letters([letter])

    def _process(self, message: Any, staged: Staged, now: float) -> RecordOutput:
        try:
            return self.pipeline.process_record(
                message.value,
                key=message.key,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                traces=staged,
                now=now,
            )
        except Exception as exc:  # a bug on one record must not stop the worker: keep the record
            log.exception("processing failed at %s[%d]@%d", message.topic, message.partition, message.offset)
            return RecordOutput(None, [self._letter(message, exc)], [], [])

    def _letter(self, message: Any, exc: Exception, value: bytes | None = None) -> DeadLetter:
        """A dead letter for ``message`` (or for ``value``, the one chunk of it that failed)."""
        self.pipeline.dlq.add("processing-error")
        return DeadLetter(
            message.value if value is None else value,
            message.key,
            message.topic,
            message.partition,
            message.offset,
            "processing-error",
            f"{type(exc).__name__}: {exc}",
        )

    async def on_chunks(self, messages: list[Any]) -> None:
        """A batch of series chunks: alerts out, one bulk request, then the table writes."""
        staged = Staged(self.series_state)
        actions: list[Action] = []
        sources: dict[int, Any] = {}
        for message in messages:
            staged.partition = message.partition
            try:
                parts = split_chunks(message.value)
            except (TypeError, ValueError) as exc:  # TypeError: a null value
                log.exception("series record unreadable at %s[%d]@%d", message.topic, message.partition, message.offset)
                await self._send_letters([self._letter(message, exc)])
                continue
            for part in parts:
                _extend(actions, sources, await self._chunk(message, part, staged), message)
        await self.index(actions, sources)
        staged.commit(self._writer(self.series_state))

    async def _chunk(self, message: Any, part: bytes, staged: Staged) -> list[Action]:
        """One chunk of a series record: its alerts sent, its documents returned."""
        try:
            alerts, actions = self.pipeline.series(part, staged)
        except Exception as exc:  # keep the chunk (derived data; the input record is safe upstream)
            log.exception("series chunk failed at %s[%d]@%d", message.topic, message.partition, message.offset)
            await self._send_letters([self._letter(message, exc, part)])
            return []
        for alert in alerts:
            await self.alerts.send(key=alert["alert_id"].encode(), value=self._alert_codec(alert), force=True)
        return actions

    @staticmethod
    def _writer(table: Any) -> Any:
        """Write one staged key: the store, and the changelog partition of the record that changed it."""

        def write(key: str, value: Any, partition: int) -> None:
            if value is None:
                table.data.pop(key, None)
            else:
                table.data[key] = value
            table.send_changelog(partition, key, value)

        return write

    async def _send_letters(self, letters: Iterable[DeadLetter]) -> None:
        for letter in letters:
            await self.dlq.send(key=letter.key, value=letter.value, headers=letter.headers(), force=True)

    async def send_ticks(self) -> None:
        """One tick record per assigned partition, so idle traces close inside a stream event."""
        for tp in self.app.consumer.assignment():
            if tp.topic == self.ticks_name and tp.partition < self.options.partitions:
                await self.ticks.send(value=b"", partition=tp.partition)

    def stats_line(self) -> str:
        extra = ""
        if self._indexer is not None:
            s = self._indexer.stats()
            extra = f" indexed={s.get('acknowledged', s.get('indexed', 0))} index_healthy={s.get('healthy')}"
        return f"t={time.monotonic() - self._started:.3f} {self.pipeline.stats_line()}{extra}"


def _extend(actions: list[Action], sources: dict[int, Any], new: list[Action], message: Any) -> None:
    """Add ``new`` to ``actions``, each remembered as coming from ``message`` (for rejections)."""
    actions.extend(new)
    for action in new:
        sources[id(action)] = message
