"""What the worker writes to Kafka besides its commits: :class:`Outputs` (dead letters, alerts,
series records, ticks) and :func:`table_writer` (a table's store and changelog). Moved out of
:class:`aitrace.processors.runtime.Runtime`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import faust
from aitrace.processors.chunk_wire import SWEEP, group_chunks
from aitrace.processors.dlq import DeadLetter, fitted
from aitrace.processors.options import MAX_RECORD_BYTES, WorkerOptions
from aitrace.producers.config import KafkaConfig
from aitrace.schemas.codec import AvroSerializer


class Outputs:
    """The worker's output topics (the ticks and series ones are also inputs of its agents)."""

    def __init__(self, app: faust.App, kafka: KafkaConfig, options: WorkerOptions) -> None:
        n = options.partitions
        self.partitions = n
        self.ticks_name = f"{options.app_id}-ticks"
        self.ticks = app.topic(self.ticks_name, partitions=n, value_type=bytes, internal=True)
        self.series_name = f"{options.app_id}-series"
        self.series_topic = app.topic(self.series_name, partitions=n, value_type=bytes, internal=True)
        self.dlq = app.topic(kafka.topic("dlq"), value_type=bytes)
        self.alerts = app.topic(kafka.topic("alerts"), value_type=bytes)
        self._alert_codec = AvroSerializer("aitrace.Alert")

    async def send_letters(self, letters: Iterable[DeadLetter]) -> None:
        for letter in letters:
            letter = fitted(letter, MAX_RECORD_BYTES)  # the producer's max_request_size (app.py)
            await self.dlq.send(key=letter.key, value=letter.value, headers=letter.headers(), force=True)

    async def send_alerts(self, alerts: Iterable[dict[str, Any]]) -> None:
        for alert in alerts:
            await self.alerts.send(key=alert["alert_id"].encode(), value=self._alert_codec(alert), force=True)

    async def send_series(self, chunks: list[tuple[str, bytes]]) -> None:
        """One series record per entity and batch (chunks inside applied one by one, see group_chunks)."""
        for key, value in group_chunks(chunks):
            await self.series_topic.send(key=key.encode(), value=value, force=True)

    async def send_sweeps(self, partitions: Iterable[int]) -> None:
        """A sweep record to each of these series partitions: the series agent expires their idle entities."""
        for partition in partitions:
            await self.series_topic.send(value=SWEEP, partition=partition, force=True)

    async def send_ticks(self, assignment: Iterable[Any]) -> None:
        """One tick record per assigned partition, so idle traces close inside a stream event."""
        for tp in assignment:
            if tp.topic == self.ticks_name and tp.partition < self.partitions:
                await self.ticks.send(value=b"", partition=tp.partition)


def table_writer(table: Any) -> Callable[[str, Any, int], None]:
    """Write one staged key: the store, and the changelog partition of the record that changed it."""

    def write(key: str, value: Any, partition: int) -> None:
        if value is None:
            table.data.pop(key, None)
            # a Kafka null, as Faust's own delete sends it: through the table's JSON it was the bytes
            # b"null", which compaction keeps and a restore read back as the key holding None
            table.send_changelog(partition, key, None, value_serializer="raw")
        else:
            table.data[key] = value
            table.send_changelog(partition, key, value)

    return write
