"""The Faust application: ``faust -A aitrace.processors.app worker -l info`` or ``aitrace worker``.

Topology (all topics have ``partitions`` partitions, so Faust co-partitions them)::

    aitrace.events.{training,data,inference,system}  (keyed by trace id)
      + <app_id>-ticks  (one empty record per partition per tick interval)
        └─ agent "records": decode/validate (bad -> aitrace.dlq), index events,
           correlate into table <app_id>-traces (key trace id), close idle traces on ticks,
           cut the batch into per-entity chunks
             └─ <app_id>-series  (keyed by entity: run/<id>, model/<name>, data/<ds>/<stage>)
                  └─ agent "series": detector state in table <app_id>-series (key entity),
                     alerts -> aitrace.alerts (+ index), labels joined, rollups indexed;
                     on a sweep record (the records agent sends one per partition on ticks,
                     at most every expiry_interval_s) entities idle past their time are deleted

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

import logging
import os
from typing import Any, cast

import faust
from aitrace.processors.faust_compat import SafeStream, ShortPollApp
from aitrace.processors.heartbeat import RebalanceWatch, heartbeat_path, remove_heartbeat, write_heartbeat
from aitrace.processors.kafka_auth import broker_credentials
from aitrace.processors.options import MAX_RECORD_BYTES, WorkerOptions
from aitrace.processors.runtime import Runtime
from aitrace.producers.config import Settings

log = logging.getLogger("aitrace.processors")


def create_app(settings: Settings | None = None, options: WorkerOptions | None = None) -> faust.App:
    """A configured Faust app with the two agents, the tick timer and the stats logger."""
    settings = settings or Settings.from_env()
    options = options or WorkerOptions.from_env()
    app = ShortPollApp(
        options.app_id,
        broker=f"kafka://{settings.kafka.kafka_bootstrap}",
        broker_credentials=broker_credentials(settings.kafka),  # the TLS/SASL settings kafka_config() gives librdkafka
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
        producer_max_request_size=MAX_RECORD_BYTES,
        # Faust's 1 MB per partition is ~24 training batch records (or less than one big state)
        # per fetch round trip; the consumer must read what the producer may write
        consumer_max_fetch_size=MAX_RECORD_BYTES,
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

    @app.agent(runtime.outputs.series_topic, name="aitrace-series")
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
        runtime.pipeline.expiry.forget({tp.partition for tp in revoked if tp.topic == runtime.outputs.series_name})

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
