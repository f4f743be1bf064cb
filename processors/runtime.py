"""What the Faust agents share and do per batch: :class:`Runtime`.

Its steps take a batch of input records (:meth:`Runtime.on_records`) or of series chunks
(:meth:`Runtime.on_chunks`) through the :class:`~aitrace.processors.pipeline.Pipeline`, send
the outputs (:mod:`aitrace.processors.outputs`), index the documents
(:mod:`aitrace.processors.indexing`) and write the tables; :meth:`Runtime.guarded`
(:mod:`aitrace.processors.guard`) keeps any exception of a record's making inside the agent.
:mod:`aitrace.processors.app` builds the Faust app around it and says how delivery and poison
records are handled.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import faust
from aitrace.processors import table_codec
from aitrace.processors.chunk_wire import SWEEP, split_chunks
from aitrace.processors.decode import RecordDecoder
from aitrace.processors.dlq import DeadLetter
from aitrace.processors.expiry import MARK
from aitrace.processors.faust_compat import restored_partition
from aitrace.processors.guard import Guard
from aitrace.processors.indexing import Indexing
from aitrace.processors.options import WorkerOptions
from aitrace.processors.outputs import Outputs, table_writer
from aitrace.processors.pipeline import Pipeline, RecordOutput, Staged
from aitrace.processors.topics import INPUT_TOPICS
from aitrace.producers.config import KafkaConfig, Settings
from aitrace.schemas.codec import AvroDeserializer
from aitrace.schemas.registry import registry_at
from aitrace.sinks.documents import Action
from faust.types import TableT

log = logging.getLogger("aitrace.processors")

# The worker asks the registry on its event loop, once per schema id: a short wait, then the
# record is dead-lettered and the id not asked again for a while (AvroDeserializer.RETRY_S).
REGISTRY_TIMEOUT_S = 3.0
Tombstones = tuple[str, list[int], int]  # an expired key, the other partitions its writes went to, its sweep's


def record_decoder(kafka: KafkaConfig) -> RecordDecoder:
    """The worker's decoder: single-object records always, registry-framed ones when the producers
    use a Schema Registry (``AITRACE_SCHEMA_REGISTRY_URL``, the same setting as theirs)."""
    return RecordDecoder(AvroDeserializer(registry_at(kafka.schema_registry_url, REGISTRY_TIMEOUT_S)))


# Table keys are str and values JSON-safe dicts; JSON keeps both as they were across a restore.
_JSON: faust.Schema = faust.Schema(key_serializer="json", value_serializer="json")


def _table(app: faust.App, name: str, partitions: int) -> TableT[Any, Any]:
    """A table whose changelog a record that is not JSON cannot halt: it reads as a value the pipeline drops
    (:mod:`table_codec`). Faust takes a table's changelog codecs from its key and value types, not its schema,
    and makes its changelog topic with the table: it is made again, as Faust makes it, with these codecs (before
    the app starts, which reads the topic a table has then)."""
    table = app.Table(name, partitions=partitions, schema=_JSON)
    made: Any = table  # Faust's Table: its codecs and its topic maker are not in TableT
    made.key_serializer, made.value_serializer = table_codec.KEY_NAME, table_codec.NAME
    made.changelog_topic = made._new_changelog_topic()
    return table


class Runtime:
    """What the agents share: the pipeline, the topics and tables, the indexing and the guard."""

    def __init__(self, app: faust.App, settings: Settings, options: WorkerOptions) -> None:
        self.app = app
        self.settings = settings
        self.options = options
        self.pipeline = Pipeline(options, decoder=record_decoder(settings.kafka))
        n = options.partitions
        self.outputs = Outputs(app, settings.kafka, options)
        self.input_names = tuple(settings.kafka.topic(t) for t in INPUT_TOPICS)
        self.ticks_name = self.outputs.ticks_name
        self.inputs = app.topic(*self.input_names, self.ticks_name, partitions=n, value_type=bytes)
        self.traces = _table(app, "traces", n)
        # key: entity (run/<id>, model/<name>, data/<ds>/<stage>); value: {series: state}
        self.series_state = _table(app, "series", n)
        self.indexing = Indexing(settings.search, options.index, self.pipeline.dlq, self.outputs)
        self.guarded = Guard(self._quarantine).guarded
        self._started = time.monotonic()
        self._ticked: dict[int, float] = {}  # input partition -> when its traces were last ticked (monotonic s)
        self._swept: dict[int, float] = {}  # series partition -> when a sweep was last asked of it (monotonic s)
        self._read: dict[tuple[str, int], int] = {}  # input (topic, partition) -> the last offset the agent read

    async def close(self) -> None:
        await self.indexing.close()

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
        ticked: set[int] = set()
        ran: list[tuple[int, float]] = []  # partitions whose traces this batch ticked, and when
        now = time.time()
        for message in messages:
            staged.partition = message.partition
            if message.topic == self.ticks_name:
                partition = message.partition
                if partition < self.options.partitions and partition not in ticked:
                    ticked.add(partition)
                    if self._tick_due(partition):
                        ran.append((partition, time.monotonic()))
                        _extend(actions, sources, self.pipeline.tick(partition, staged, now=now), message)
                continue
            self._read[(message.topic, message.partition)] = message.offset
            out = self._process(message, staged, now)
            await self.outputs.send_letters(out.dead_letters)
            chunks.extend(out.chunks)
            _extend(actions, sources, out.actions, message)
        await self.outputs.send_series(chunks)
        await self.outputs.send_sweeps([p for p in sorted(ticked) if self._sweep_due(p)])
        await self.indexing.index(actions, sources)
        staged.commit(table_writer(self.traces))
        # the time each tick ran, once committed: a batch dropped after its tick does not hold back the next one, and
        # a batch slower than half the interval does not skip the next (ticks measured from its commit ran every 2 s)
        self._ticked.update(ran)

    def _tick_due(self, partition: int) -> bool:
        """Whether the traces of ``partition`` are due a tick: half a tick interval after the last one (and
        :meth:`on_records` takes one tick record of a partition a batch, the others skipped). Any client can
        write to the ticks topic, and each tick scans every trace the partition holds: 100 empty records there
        cost ~2 s of CPU with 20,000 open traces. The worker's own timer sends one per partition per interval."""
        last = self._ticked.get(partition, -math.inf)
        return time.monotonic() - last >= self.options.tick_interval_s / 2

    def _sweep_due(self, partition: int) -> bool:
        """Whether series ``partition`` is due an idle sweep: at most every ``expiry_interval_s``, and only once
        the records agent has caught up with its input."""
        every = self.options.expiry_interval_s
        now = time.monotonic()
        if every <= 0 or not self.pipeline.expiry.policy.enabled or now - self._swept.get(partition, -math.inf) < every:
            return False
        if not self._caught_up():
            return False
        self._swept[partition] = now
        return True

    def _caught_up(self) -> bool:
        """Whether the records agent has read, on every input partition assigned here, each record the broker
        held at the last fetch. After a worker was down for days its backlog holds the entities' records (on any
        input partition: they are keyed by trace): swept before, they were idle for the outage and lost their
        baselines and drift references to records already waiting. Unknown (not fetched yet): not caught up."""
        consumer = self.app.consumer
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic in self.input_names]
            highs = [(tp, consumer.highwater(tp)) for tp in assigned]
        except Exception:  # aiokafka asserts a partition is assigned; a consumer not started has none
            return False
        return bool(highs) and all(
            high is not None and high <= self._read.get((tp.topic, tp.partition), -1) + 1 for tp, high in highs
        )

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
        await self.outputs.send_letters([letter])

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
                timestamp=_timestamp(message),
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
        """A batch of series chunks (and sweeps): alerts out, one bulk request, then the table writes."""
        staged = Staged(self.series_state)
        actions: list[Action] = []
        sources: dict[int, Any] = {}
        swept: set[int] = set()
        tombstones: list[Tombstones] = []  # the keys expired, for their tombstones on other partitions
        try:
            for message in messages:
                staged.partition = message.partition
                if message.value == SWEEP:
                    swept.add(message.partition)
                    tombstones += self._sweep(message.partition, staged)
                    continue
                try:
                    parts = split_chunks(message.value)
                except (TypeError, ValueError) as exc:  # TypeError: a null value
                    where = (message.topic, message.partition, message.offset)
                    log.exception("series record unreadable at %s[%d]@%d", *where)
                    await self.outputs.send_letters([self._letter(message, exc)])
                    continue
                outputs = self._group(message, parts, staged)
                if outputs is None:  # not a group, or one that raised: chunk by chunk, as always
                    for part in parts:
                        _extend(actions, sources, await self._chunk(message, part, staged), message)
                    continue
                for alerts, done in outputs:
                    await self.outputs.send_alerts(alerts)
                    _extend(actions, sources, done, message)
            await self.indexing.index(actions, sources)
        except BaseException:  # the staged deletes are dropped: the index must not think them done
            self.pipeline.expiry.forget(swept)
            raise
        staged.commit(table_writer(self.series_state))
        self._send_tombstones(tombstones)

    def _sweep(self, partition: int, staged: Staged) -> list[Tombstones]:
        """Expire the idle entities of series ``partition`` (staged deletes); returns each with the other
        partitions its writes went to and ``partition``, for :meth:`_send_tombstones`."""
        home = restored_partition(self.series_state)
        gone = self.pipeline.sweep(partition, staged, now=time.time(), home=home)
        return [(entity, others, partition) for entity, others in gone]

    def _send_tombstones(self, expired: list[Tombstones]) -> None:
        """A tombstone, to the changelog only, on each partition an expired key's writes went to and that does not
        hold its value now. A chunk after the sweep in the same batch may have written it afresh: that staged
        write replaced the staged delete, on the chunk's partition (maybe not the sweep's), and the store's new
        value must stay (a delete through the store took it out of memory while its changelog kept it)."""
        for key, others, swept in expired:
            value = self.series_state.data.get(key)
            if value is None:  # the staged delete went to the sweep's partition
                targets = others
            else:
                mark = self.pipeline.expiry.valid(value.get(MARK)) if isinstance(value, dict) else None
                if mark is None:  # where its value went is unknown: never delete what may be it
                    continue
                targets = [p for p in [*others, swept] if p not in mark["p"]]
            for partition in targets:
                self.series_state.send_changelog(partition, key, None, value_serializer="raw")

    def _group(self, message: Any, parts: list[bytes], staged: Staged) -> list[tuple[list[Any], list[Action]]] | None:
        """Each chunk's alerts and documents, the group applied at once (Pipeline.series_group); None: to apply
        chunk by chunk (a lone chunk, one the group path does not take, or a group that raised and left the
        table as it was: chunk by chunk each chunk that raises is dead-lettered alone, as it always was)."""
        if len(parts) < 2:
            return None
        try:
            return self.pipeline.series_group(parts, staged, now=time.time())
        except Exception as exc:
            log.info("series group at %s[%d]@%d applied chunk by chunk: %s: %s",
                     message.topic, message.partition, message.offset, type(exc).__name__, exc)  # fmt: skip
            return None

    async def _chunk(self, message: Any, part: bytes, staged: Staged) -> list[Action]:
        """One chunk of a series record: its alerts sent, its documents returned."""
        try:
            alerts, actions = self.pipeline.series(part, staged, now=time.time())
        except Exception as exc:  # keep the chunk (derived data; the input record is safe upstream)
            log.exception("series chunk failed at %s[%d]@%d", message.topic, message.partition, message.offset)
            await self.outputs.send_letters([self._letter(message, exc, part)])
            return []
        await self.outputs.send_alerts(alerts)
        return actions

    async def send_ticks(self) -> None:
        """One tick record per assigned partition, so idle traces close inside a stream event."""
        await self.outputs.send_ticks(self.app.consumer.assignment())

    def stats_line(self) -> str:
        extra = ""
        s = self.indexing.stats()
        if s is not None:
            extra = f" indexed={s.get('acknowledged', s.get('indexed', 0))} index_healthy={s.get('healthy')}"
        # cpu_s: the process's CPU time (all threads); on a shared machine it measures the worker's cost
        # far better than wall time (bench/bench_processors.py reads it)
        cpu = f" cpu_s={time.process_time():.3f}"
        return f"t={time.monotonic() - self._started:.3f} {self.pipeline.stats_line()}{extra}{cpu}"


def _timestamp(message: Any) -> float | None:
    """The Kafka record's timestamp (epoch s; Faust's message has it in seconds), None where it has none (-1 ms
    for a record of the old message format)."""
    stamp = getattr(message, "timestamp", None)
    return float(stamp) if isinstance(stamp, int | float) and stamp > 0 else None


def _extend(actions: list[Action], sources: dict[int, Any], new: list[Action], message: Any) -> None:
    """Add ``new`` to ``actions``, each remembered as coming from ``message`` (for rejections)."""
    actions.extend(new)
    for action in new:
        sources[id(action)] = message
