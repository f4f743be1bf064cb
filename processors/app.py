"""The Faust application: ``faust -A aitrace.processors.app worker -l info`` or ``aitrace worker``.

Topology (all topics have ``partitions`` partitions, so Faust co-partitions them)::

    aitrace.events.{training,data,inference,system}  (keyed by trace id)
      + <app_id>-ticks  (one empty record per partition per tick interval)
        └─ agent "records": decode/validate (bad -> aitrace.dlq), index events,
           correlate into table <app_id>-traces (key trace id), close idle traces on ticks,
           cut the batch into per-entity chunks
             └─ <app_id>-series  (keyed by entity: run/<id>, model/<name>, data/<ds>/<stage>)
                  └─ agent "series": detector state in table <app_id>-series (key entity),
                     alerts -> aitrace.alerts (+ index), labels joined, rollups indexed

Why a repartition topic: a model's requests arrive under many trace ids, so on every
partition; its latency, error-rate and feature-drift windows must see all of them. The
records agent sends each entity's chunk keyed by entity (what ``group_by`` does, but one
input batch yields several keys, so it is an explicit send). Training runs and data
pipelines take the same path, so every series has exactly one owner. The chunks of one
entity from one batch of input records go as one record (a group), applied chunk by chunk.

Delivery: outputs (DLQ, chunks, alerts) are sent at once (``force=True``: not held back
until the next commit, so the series agent works while the records agent goes on) and
Faust's commit flushes the producer before it commits offsets; documents are indexed
(``await`` on the bulk indexer) before the event is acknowledged. So an offset is committed
only after everything it produced is delivered. Table writes are
staged and written after that, so a changelog record never claims output that was lost.
Redelivery after a crash is detected from the source offsets kept in the table state.

Poison: no exception of a record's making leaves an agent (:meth:`Runtime.guarded`): a
failing batch is retried record by record after a back-off, and a record that fails on
its own too is quarantined to the DLQ (reason ``quarantined``). A rejected document's dead
letter is its source record (original bytes, topic, partition, offset), not the document.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, cast

import faust
import orjson
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aitrace.processors.chunk_wire import group_chunks, split_chunks
from aitrace.processors.dlq import DeadLetter
from aitrace.processors.faust_compat import SafeOffsetsConsumer, SafeStream
from aitrace.processors.heartbeat import RebalanceWatch, heartbeat_path, remove_heartbeat, write_heartbeat
from aitrace.processors.kafka_auth import broker_credentials
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline, RecordOutput, Staged
from aitrace.producers.config import Settings
from aitrace.schemas.codec import AvroSerializer
from aitrace.sinks.documents import Action
from aitrace.sinks.indexer import IndexerClosed, RetriesExhausted
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport

log = logging.getLogger("aitrace.processors")

# Table keys are str and values JSON-safe dicts; JSON keeps both as they were across a restore.
_JSON: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")

INPUT_TOPICS = ("events.training", "events.data", "events.inference", "events.system")


# aiokafka's fetch long-polls (Faust fixes the wait at 1.5 s). One fetch request carries every
# partition without buffered data; on Tansu a fetch whose partitions (the often empty series
# and tick ones) had nothing was seen to be held for the whole wait, records arriving meanwhile
# or not, and the worker sat idle between fetches (py-spy: most of its wall time on batch
# records, series chunks waiting ~1 s). A short wait costs an idle worker cheap empty fetches.
FETCH_MAX_WAIT_MS = 20

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


class _AIOKafkaConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when start() builds the fetcher
        return consumer


class _Consumer(SafeOffsetsConsumer, AIOKafkaConsumer):  # faust_compat: no commit over an unacked head
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _AIOKafkaConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(AIOKafkaTransport):
    Consumer = _Consumer


class _App(faust.App):
    """Faust's app with a consumer that does not long-poll (see ``FETCH_MAX_WAIT_MS``)."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


class Runtime:
    """What the agents share: the pipeline, the output topics, the (lazily opened) indexer."""

    def __init__(self, app: faust.App, settings: Settings, options: WorkerOptions) -> None:
        self.app = app
        self.settings = settings
        self.options = options
        self.pipeline = Pipeline(options, index_prefix=settings.index_prefix)
        n = options.partitions
        self.input_names = tuple(settings.topic(t) for t in INPUT_TOPICS)
        self.ticks_name = f"{options.app_id}-ticks"
        self.inputs = app.topic(*self.input_names, self.ticks_name, partitions=n, value_type=bytes)
        self.ticks = app.topic(self.ticks_name, partitions=n, value_type=bytes, internal=True)
        self.series_topic = app.topic(f"{options.app_id}-series", partitions=n, value_type=bytes, internal=True)
        self.dlq = app.topic(settings.topic("dlq"), value_type=bytes)
        self.alerts = app.topic(settings.topic("alerts"), value_type=bytes)
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
        from aitrace.sinks.es import capabilities_of, connect
        from aitrace.sinks.indexer import BulkIndexer
        from aitrace.sinks.templates import install_templates_async

        # Waits (backing off) while the search server is unreachable: consumption pauses, nothing is dropped.
        self._client = await connect(self.settings, wait_s=float("inf"))
        # Templates before the first document: a daily index created without them would get dynamic mappings.
        installed = await install_templates_async(
            self._client, capabilities_of(self._client), prefix=self.settings.index_prefix
        )
        log.info("index templates: %s", ", ".join(installed))
        self._indexer = BulkIndexer(self._client, on_reject=self._on_reject)
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
            f"(document {action.get('_index', '')}/{action.get('_id', '')})"
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


class TopicLayoutError(RuntimeError):
    """The input topics exist with partition counts that cannot be co-partitioned."""


def prepare_topics(settings: Settings, options: WorkerOptions, timeout: float = 30.0) -> WorkerOptions:
    """Create missing input (and DLQ / alert) topics with ``options.partitions``; adopt the count of existing inputs.

    Faust's tables need every source topic and changelog to have one partition count. Topics
    that a producer created first (a broker's auto-create default) win over the flag, with
    a warning, so the worker still starts; input topics that disagree among themselves are
    an error that names them.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**settings.kafka_config(), "socket.timeout.ms": 10_000})
    names = [settings.topic(t) for t in INPUT_TOPICS]
    meta = admin.list_topics(timeout=timeout)
    existing = {n: len(meta.topics[n].partitions) for n in names if n in meta.topics and not meta.topics[n].error}
    counts = set(existing.values())
    if len(counts) > 1:
        raise TopicLayoutError(
            "input topics differ in partition count ("
            + ", ".join(f"{n}: {c}" for n, c in sorted(existing.items()))
            + "); recreate them with one count"
        )
    partitions = counts.pop() if counts else options.partitions
    if partitions != options.partitions:
        log.warning(
            "input topics already have %d partitions; using %d, not %d", partitions, partitions, options.partitions
        )
        options = replace(options, partitions=partitions)
    missing = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing]
    # Output topics too: a first send to a topic the broker must auto-create was seen to stall
    # aiokafka's flush on Tansu, and an operator's broker may not auto-create at all.
    # and the internal ticks / series topics: they must match the tables' partition count, and a
    # broker that auto-creates them first (Tansu: 4 partitions) would break co-partitioning
    outputs = [settings.topic("dlq"), settings.topic("alerts"), f"{options.app_id}-ticks", f"{options.app_id}-series"]
    missing += [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in outputs if n not in meta.topics]
    internal = {f"{options.app_id}-ticks", f"{options.app_id}-series"}
    wrong = {n: len(meta.topics[n].partitions) for n in internal if n in meta.topics}
    wrong = {n: c for n, c in wrong.items() if c != partitions}
    if wrong:
        raise TopicLayoutError(
            f"internal topics {sorted(wrong)} have {sorted(set(wrong.values()))} partitions, the inputs {partitions}: "
            "delete them (they hold no data worth keeping) or use another --app-id"
        )
    if missing:
        for name, fut in admin.create_topics(missing, operation_timeout=timeout).items():
            try:
                fut.result(timeout)
            except Exception as exc:  # created meanwhile by a producer or another worker is fine
                if "exist" not in str(exc).lower():
                    raise TopicLayoutError(f"cannot create topic {name}: {exc}") from exc
    return options


def create_app(settings: Settings | None = None, options: WorkerOptions | None = None) -> faust.App:
    """A configured Faust app with the two agents, the tick timer and the stats logger."""
    settings = settings or Settings.from_env()
    options = options or WorkerOptions.from_env()
    app = _App(
        options.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=broker_credentials(settings),  # the TLS/SASL settings kafka_config() gives librdkafka
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=options.partitions,
        # Tansu: ~31 s to join a group with Faust's defaults, ~6 s with a 10 s session timeout.
        broker_session_timeout=options.session_timeout_s,
        broker_heartbeat_interval=min(3.0, options.session_timeout_s / 3),
        broker_commit_interval=options.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        # an entity's state (feature windows, pending predictions) can pass aiokafka's 1 MB default
        producer_max_request_size=8_000_000,
        # Faust's 1 MB per partition is ~24 training batch records (or less than one big state)
        # per fetch round trip; the consumer must read what the producer may write
        consumer_max_fetch_size=8_000_000,
        # aiokafka keeps one produce request in flight per partition; with Faust's 16 KB batches
        # every series chunk (~100 KB for a training batch record) was a round trip of its own
        producer_max_batch_size=1_000_000,
        store="memory://",
        datadir=f"{options.data_dir}/{options.app_id}",
        web_enabled=bool(options.web_port),
        web_port=options.web_port or 6066,
        web_bind="127.0.0.1",
        autodiscover=False,
        Stream=SafeStream,  # faust_compat: take_events acks a batch only after it was processed
    )
    runtime = Runtime(app, settings, options)
    app.aitrace = runtime  # type: ignore[attr-defined]  # tests and the worker CLI reach it here

    # Batches of records: one bulk request per batch instead of one per record (osmem-server
    # answers a small bulk in tens of ms); events are acknowledged after the batch is done.
    @app.agent(runtime.inputs, name="aitrace-records")
    async def records(stream: faust.StreamT) -> None:
        async for events in cast(SafeStream, stream).take_events(options.batch_records, within=options.batch_wait_s):
            await runtime.guarded(runtime.on_records, [e.message for e in events])

    @app.agent(runtime.series_topic, name="aitrace-series")
    async def series(stream: faust.StreamT) -> None:
        async for events in cast(SafeStream, stream).take_events(options.batch_records, within=options.batch_wait_s):
            await runtime.guarded(runtime.on_chunks, [e.message for e in events])

    @app.timer(interval=options.tick_interval_s)
    async def ticks() -> None:
        await runtime.send_ticks()

    beat = heartbeat_path(options.data_dir, options.app_id)
    rebalance = RebalanceWatch()

    @app.timer(interval=options.stats_interval_s)
    async def stats() -> None:
        line = runtime.stats_line()
        log.info("aitrace stats %s", line)
        stuck = rebalance.stuck_for(bool(app.rebalancing))
        if stuck is None:
            write_heartbeat(beat, line)  # read by `aitrace worker --health`
        else:  # the beat ages, and the health check reports this worker
            log.error("aitrace worker: the consumer group has been rebalancing for %.0f s; it cannot form", stuck)

    # Faust's signal types want receivers that take (sender, *args, signal=, **kwargs); these take what
    # the signals send (sender, the revoked set, keyword arguments) and are connected as Faust documents.
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        runtime.pipeline.forget_partitions({tp.partition for tp in revoked if tp.topic in runtime.input_names})

    @app.on_worker_init.connect  # type: ignore[arg-type]
    def worker_init(sender: Any, **kwargs: Any) -> None:
        # Faust makes <data_dir>/<app_id> but not its parents (`faust -A ... worker` path)
        os.makedirs(options.data_dir, exist_ok=True)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    def before_shutdown(sender: Any, **kwargs: Any) -> None:
        log.info("aitrace stats %s (final)", runtime.stats_line())
        remove_heartbeat(beat)

    return app


_app: faust.App | None = None


def __getattr__(name: str) -> Any:
    """``app``, built on first use (``faust -A aitrace.processors.app``) rather than at import.

    ``aitrace worker`` and the tests import this module to build their own app from flags:
    an app built from the environment at import was a second app nobody ran.
    """
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = create_app()
    return _app
