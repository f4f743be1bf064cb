"""Faust / aiokafka behaviours the worker must not rely on, and the overrides that replace them.

Each override names the Faust behaviour it works around (faust-streaming 0.15.x). They are
hooked up in :func:`aitrace.processors.app.create_app`, which builds a :class:`ShortPollApp`
(its consumer: :class:`SafeOffsetsConsumer` over aiokafka, fetching with a short wait) with
``Stream=SafeStream``; ``aitrace worker`` runs the app under :class:`BoundedShutdownWorker`.

The loss of issue 8 (events acknowledged by the broker, never indexed, right after a worker
left the group) is the first one: a worker stopping (SIGTERM, or a crash of the agent) while a
batch of ``take_events`` was being processed acknowledged that batch, and its final commit
moved the group's offset past records whose documents were never indexed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Mapping, MutableMapping, Sequence
from typing import Any, cast

import faust
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from faust.types import EventT
from faust.types.tuples import ack_lock
from mode.utils.futures import notify
from mode.utils.times import Seconds, want_seconds

log = logging.getLogger("aitrace.processors")


class SafeStream(faust.Stream):
    """A stream whose ``take_events`` acknowledges a batch only once the caller is done with it."""

    async def take_events(self, max_: int, within: Seconds) -> AsyncGenerator[Sequence[EventT], None]:
        """Buffer up to ``max_`` events (or what came ``within`` seconds) and yield them as a list.

        Works around: Faust's ``Stream.take_events`` acks the yielded events in a ``finally``
        around its ``yield``. The ``finally`` also runs when the agent's body raised or was
        cancelled (worker shutdown, agent crash: the generator is closed with GeneratorExit),
        so a batch whose processing never finished was acked, and the commit at shutdown
        (``Consumer.on_stop`` -> ``commit``) wrote an offset past it: loss. Here the events
        are acked only when the caller asks for the next batch, i.e. after its loop body
        returned normally. An abandoned batch stays unacknowledged and is redelivered to
        whoever owns the partition next (idempotent downstream: ``_id`` = event id).

        Otherwise the same algorithm as Faust's (buffer filled by a stream processor, passive
        consumption of the channel, ``buffer_consuming`` to hold the filler while yielding).
        """
        buffer: list[Any] = []
        events: list[EventT] = []
        buffer_full = asyncio.Event()
        buffer_consumed = asyncio.Event()
        timeout = want_seconds(within) if within else None
        buffer_consuming: asyncio.Future[Any] | None = None
        channel_it = self.channel.__aiter__()

        async def add_to_buffer(value: Any) -> Any:
            nonlocal buffer_consuming
            try:
                if buffer_consuming is not None:
                    try:
                        await buffer_consuming
                    finally:
                        buffer_consuming = None
                buffer.append(value)
                event = self.current_event
                if event is None:
                    raise RuntimeError("Take buffer found current_event is None")
                events.append(event)
                if len(buffer) >= max_:
                    buffer_full.set()
                    buffer_consumed.clear()
                    await self.wait(buffer_consumed)  # type: ignore[arg-type]
            except asyncio.CancelledError:  # pragma: no cover
                raise
            except Exception as exc:
                self.log.exception("Error adding to take buffer: %r", exc)
                await self.crash(exc)
            return value

        self.enable_acks = False  # this method acks, after the caller is done
        self.add_processor(add_to_buffer)
        self._enable_passive(cast(Any, channel_it))
        while not self.should_stop:
            await self.wait_for_stopped(buffer_full, timeout=timeout)  # type: ignore[arg-type]
            if not buffer:
                continue
            buffer_consuming = self.loop.create_future()
            done = False
            try:
                yield list(events)
                done = True  # resumed by the caller: its body returned normally
            finally:
                batch = list(events)
                buffer.clear()
                events.clear()
                if done:
                    for event in batch:
                        await self.ack(event)
                # (not done: GeneratorExit or an exception thrown in; nothing is acked)
                notify(buffer_consuming)
                buffer_full.clear()
                buffer_consumed.set()


class _Rest:
    """The rest of a coroutine stepped by hand up to its first wait (``waiting_on``: what it yielded).

    Awaited (by a task), it hands that wait to the task and then drives the coroutine as ``await``
    would: values sent and exceptions thrown in (a cancel) go through to it, its return value out.
    """

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.coro = coro
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        waiting_on = self.waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:  # closed, as ``yield from`` would close it
                self.coro.close()
                raise
            except BaseException as exc:  # thrown in by the task (its cancel): the coroutine decides
                try:
                    waiting_on = self.coro.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                waiting_on = self.coro.send(sent)
            except StopIteration as done:
                return done.value


class _NoReadOffsets(dict[Any, Any]):
    """Faust's per-partition read offsets, turned off: every lookup says "nothing read yet"."""

    def __getitem__(self, tp: Any) -> None:
        return None

    def __setitem__(self, tp: Any, offset: Any) -> None:
        pass


class SafeOffsetsConsumer:
    """Mixin for Faust's consumer (before the transport's class in the bases): safe commit offsets.

    Works around, together: Faust can leave a fetched record unprocessed and unacked with no
    seek that would read it again, and then count it as processed. Seen on Tansu in the
    rebalances of issue 8's scenario (kill, join, leave):

    - ``Consumer._drain_messages`` drops a fetched record whose offset is below the
      partition's read offset ("DROPPED MESSAGE"), and records the offsets between the read
      offset and a later record as a gap, which ``_new_offset`` counts as acknowledged. A
      seek (the rebalance's seek to the committed offsets, or a re-read of a hole) resets the
      read offset, but records fetched before the seek and still being delivered set it
      forward again: the records read again from the seek were dropped as already read, or
      jumped over as a gap, and committed past (209 dropped records in one run; 112 events
      lost in a full fault run after the last rebalance, with the worker alone in the group).
      Here the read offsets are turned off (:class:`_NoReadOffsets`): every fetched record is
      delivered, no gap is recorded, and the rare record delivered twice around a seek is
      processed twice (idempotent downstream: ``_id`` = event id).
    - ``getmany``'s generation check and ``Stream.__aiter__`` (events of an old generation,
      or taken while flow control is off) discard a record without processing it; see
      :meth:`ack` for the acknowledgement Faust then gives it.
    - :meth:`_new_offset`: a single unacknowledged record at the committed offset was jumped over.

    So the commit holds at a hole, and a hole still there after ``HOLE_RESEEK_S`` is read
    again by seeking the partition back to its committed offset (what follows it is
    processed twice: idempotent downstream).

    A hole is seen only once a record after it is acknowledged. A partition whose fetched
    records were all dropped (by any of the paths above, or one not known yet) and that gets
    no new ones shows no hole: nothing is acked, and the fetch position is past the records.
    Seen once in a CI fault run: after a restart, the worker alone in the group read every
    partition but one, whose 116 records from its committed offset were never delivered.
    :meth:`_reseek_stalled` catches that case; it reads how far a partition goes from the log
    itself and the fetch position (:func:`log_ends`), not from Tansu's end offset, which left
    it blind to a stall inside a log's last record batch (the kill test of CI on stop 17).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset: MutableMapping[Any, int | None] = _NoReadOffsets()

    HOLE_RESEEK_S = 5.0
    # A partition of a consumed topic with records past its committed offset, none delivered for
    # this long while the fetcher ran freely, and none in flight, is read again from that offset.
    STALL_RESEEK_S = 10.0
    # The fetcher finished a fetch this recently: it is not held up behind full stream buffers.
    FETCHER_FREE_S = 2.0
    # Re-reads of one hole before it is taken as a real gap in the log (a committed offset that
    # retention deleted: the fetcher resets past it, and seeking back would loop): Faust's way then.
    HOLE_MAX_RESEEKS = 3

    def ack(self, message: Any) -> bool:
        """Record ``message`` as processed, unless it was fetched before the current assignment.

        Works around: Faust's ``Stream.__aiter__`` *acks* the events it skips without
        processing them: every event of an older consumer generation, and every event taken
        from the channel while flow control is suspended (a rebalance, or the worker
        stopping: ``App._on_partitions_revoked`` and ``App.on_stop`` suspend the flow, then
        ``Consumer.wait_empty`` commits). Such an ack moved the committed offset past records
        that nobody indexed: a worker leaving the group committed, in its final commit, the
        records still buffered for its stream (the loss of issue 8's full fault run, after a
        kill and restart, when a second worker left). Here an ack of an event of another
        generation, or one that arrives while the flow is suspended, releases the message
        (``wait_empty`` does not wait on it) but records no offset: the record is read again
        from the committed offset by whoever owns its partition next, which costs a second
        pass over it (idempotent downstream) and loses nothing.
        """
        app = self.app  # type: ignore[attr-defined]
        if message.generation_id == app.consumer_generation_id and app.flow_control.is_active():
            return cast(bool, super().ack(message))  # type: ignore[misc]
        with ack_lock:
            if not message.acked:
                message.acked = True
                self._unacked_messages.discard(message)  # type: ignore[attr-defined]
                self.__dict__["_aitrace_unrecorded_acks"] = self.unrecorded_acks + 1
                notify(self._waiting_for_ack)  # type: ignore[attr-defined]
        return False

    @property
    def unrecorded_acks(self) -> int:
        """Acks of stale or skipped events that were not taken as processed (see :meth:`ack`)."""
        return int(self.__dict__.get("_aitrace_unrecorded_acks", 0))

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's loop that hands each fetched record to the conductor, without a ``wait_first`` per record.

        Works around: Faust delivers every record through ``Service.wait_first(callback(message),
        suspend_flow.wait())``: four tasks and an ``asyncio.wait`` per record, 25 us each (measured),
        a third of what a count-only agent costs a record. Here the delivery runs inline
        (:meth:`_deliver`); only one that has to wait (a full stream buffer, flow control, producer
        back-pressure) is raced against the flow's suspension, as Faust races them all. Read offsets
        are off in this consumer (see the class), so Faust's gap and dropped-record branches are gone.
        """
        callback = self.callback  # type: ignore[attr-defined]
        consumer_stopped = self._stopped.is_set  # type: ignore[attr-defined]
        fetcher_stopped = fetcher._stopped.is_set
        diag = self.diag  # type: ignore[attr-defined]
        since_yield = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await self.sleep(0)  # type: ignore[attr-defined]  # Faust's: a getmany loop may starve the loop
                if self.should_stop:  # type: ignore[attr-defined]
                    continue
                async for _tp, message in records:
                    since_yield += 1
                    if since_yield > 100:  # Faust's: give the agents a turn every 100 records
                        await asyncio.sleep(0)
                        since_yield = 0
                    faust_part = cast(Any, self)  # Faust's consumer's counters
                    if faust_part._commit_every is not None and faust_part._n_acked >= faust_part._commit_every:
                        faust_part._n_acked = 0
                        await self.commit()
                    await self._deliver(callback(message))
                diag.unset_flag(CONSUMER_FETCHING)
        except (*self.consumer_stopped_errors, asyncio.CancelledError):  # type: ignore[attr-defined]
            if self.transport.app.should_stop:  # type: ignore[attr-defined]
                log.info("Consumer stopped while shutting down")
                return
            raise
        except Exception as exc:
            log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, delivery: Coroutine[Any, Any, Any]) -> None:
        """Run ``delivery`` inline to its end; if it has to wait, race the rest against the flow's suspension."""
        try:
            waiting_on = delivery.send(None)
        except StopIteration:
            return  # the usual case: the record went into its stream's buffer without waiting
        await self.wait_first(_Rest(delivery, waiting_on), self.suspend_flow.wait())  # type: ignore[attr-defined]

    def _hole_seen(self, tp: Any, offset: int) -> None:
        holes = self.__dict__.setdefault("_aitrace_holes", {})
        if holes.get(tp, (None,))[0] != offset:
            holes[tp] = (offset, time.monotonic())

    async def getmany(self, timeout: float) -> AsyncGenerator[tuple[Any, Any], None]:
        """Faust's getmany, noting when each partition last delivered and when a fetch last ended."""
        delivered: dict[Any, float] = self.__dict__.setdefault("_aitrace_delivered", {})
        async for tp, message in super().getmany(timeout):  # type: ignore[misc]
            delivered[tp] = time.monotonic()
            yield tp, message
        self.__dict__["_aitrace_fetch_done"] = time.monotonic()

    async def commit(self, *args: Any, **kwargs: Any) -> bool:
        """Faust's commit, then a re-read of partitions whose committed record stayed unacknowledged."""
        did = await super().commit(*args, **kwargs)  # type: ignore[misc]
        await self._reseek_stalled()
        holes: dict[Any, tuple[int, float]] = self.__dict__.get("_aitrace_holes") or {}
        if holes and not getattr(self.app, "rebalancing", False):  # type: ignore[attr-defined]
            now = time.monotonic()
            assignment = self.assignment()  # type: ignore[attr-defined]
            for tp, (offset, since) in list(holes.items()):
                if tp not in assignment:
                    holes.pop(tp, None)
                elif now - since >= self.HOLE_RESEEK_S:
                    holes.pop(tp, None)
                    tries = self.__dict__.setdefault("_aitrace_reseeks", {})
                    n = tries[(tp, offset)] = tries.get((tp, offset), 0) + 1
                    if n > self.HOLE_MAX_RESEEKS:
                        log.error("%s[%d]@%d never arrives after %d re-reads: committing past it", *tp, offset, n - 1)
                        continue
                    log.warning("record %s[%d]@%d was never delivered; reading again from it", *tp, offset)
                    await self.seek(tp, offset)  # type: ignore[attr-defined]
        return did

    def _quiet_partitions(self, now: float) -> list[tuple[Any, int]]:
        """(partition, committed offset) of consumed partitions with nothing delivered, acked or
        in flight for ``STALL_RESEEK_S``, while the fetcher runs freely; [] when no verdict is possible."""
        if now - self.__dict__.get("_aitrace_fetch_done", float("-inf")) > self.FETCHER_FREE_S:
            return []
        app = self.app  # type: ignore[attr-defined]
        if app.rebalancing or self.should_stop or not app.flow_control.is_active():  # type: ignore[attr-defined]
            return []
        watched: dict[Any, float] = self.__dict__.setdefault("_aitrace_quiet_since", {})
        delivered: dict[Any, float] = self.__dict__.get("_aitrace_delivered", {})
        committed = self._committed_offset  # type: ignore[attr-defined]
        # a message below the committed offset is done, acked or not (a copy a re-read replaced): not in flight
        in_flight = {m.tp for m in list(self._unacked_messages) if m.offset >= (committed[m.tp] or 0)}  # type: ignore[attr-defined]
        buffered = self._buffered_partitions  # type: ignore[attr-defined]
        quiet = []
        for tp in self.assignment():  # type: ignore[attr-defined]
            if not app.topics.acks_enabled_for(tp.topic) or tp in in_flight or tp in buffered or self._acked[tp]:  # type: ignore[attr-defined]
                watched.pop(tp, None)
                continue
            since = max(delivered.get(tp, float("-inf")), watched.setdefault(tp, now))
            if now - since >= self.STALL_RESEEK_S:
                quiet.append((tp, committed[tp] or 0))
        for tp in set(watched) - set(self.assignment()):  # type: ignore[attr-defined]
            watched.pop(tp)
        return quiet

    async def _reseek_stalled(self) -> None:
        """Read a stalled partition again from its committed offset (see the class).

        A quiet partition costs a list-offsets and a Fetch request per ``STALL_RESEEK_S``; one whose log
        ends at its committed offset and whose fetch position is there too (the usual quiet one:
        nothing new) is left alone. One fetched past its committed offset with nothing delivered,
        acked or in flight is read again even where the broker's end offset says nothing is there
        (see ``end_offsets``).
        """
        now = time.monotonic()
        quiet = self._quiet_partitions(now)
        if not quiet:
            return
        ends = await self._thread.end_offsets([tp for tp, _ in quiet])  # type: ignore[attr-defined]
        watched: dict[Any, float] = self.__dict__["_aitrace_quiet_since"]
        tries = self.__dict__.setdefault("_aitrace_reseeks", {})
        for tp, head in quiet:
            watched[tp] = now
            end = ends.get(tp)
            if end is None or end <= head:
                continue
            n = tries[(tp, head, "stall")] = tries.get((tp, head, "stall"), 0) + 1
            if n > self.HOLE_MAX_RESEEKS:
                if n == self.HOLE_MAX_RESEEKS + 1:
                    log.error("%s[%d]: records %d..%d never delivered after %d re-reads", *tp, head, end - 1, n - 1)
                continue
            paused = tp in self._paused_partitions  # type: ignore[attr-defined]
            what = "%s[%d]: records %d..%d not delivered in %.0f s (paused: %s); reading them again"
            log.warning(what, tp.topic, tp.partition, head, end - 1, self.STALL_RESEEK_S, paused)
            if paused and not self.app.in_recovery:  # type: ignore[attr-defined]
                self.resume_partitions([tp])  # type: ignore[attr-defined]
            await self.seek(tp, head)  # type: ignore[attr-defined]

    def _new_offset(self, tp: Any) -> int | None:
        """The offset to commit for ``tp``: one past the acked run that starts at the committed offset.

        Works around: Faust's ``Consumer._new_offset`` refuses to commit over a hole at the
        head of the acked offsets only when ``min(acked) - committed > 1``. ``committed`` is
        the committed offset, i.e. the *next* offset to read, so a single record at exactly
        ``committed`` that was never acked (abandoned batch, cleared queue) was jumped over
        as soon as the record after it was acked: a one-record loss. (It also skipped the
        check when the committed offset is 0.) It also counts the gaps it recorded as
        acknowledged; none are recorded here (see the class). A hole at the head, however
        short, holds the commit back until the record is acked. An offset that holds no
        record (a transaction marker, a compacted or deleted record) is a hole that never
        fills: it is committed past after ``HOLE_MAX_RESEEKS`` re-reads.
        """
        acked: list[int] = self._acked[tp]  # type: ignore[attr-defined]
        if not acked:
            return None
        acked.sort()
        # Faust keeps no committed offset for a partition never committed (nor for a committed 0:
        # ``perform_seek`` maps 0 to None): the head is then offset 0, and a record lost there after
        # a restart was jumped over like any other. A log whose head retention deleted gives up
        # after HOLE_MAX_RESEEKS re-reads, as below.
        committed = self._committed_offset[tp]  # type: ignore[attr-defined]
        head = 0 if committed is None else committed
        reseeks = self.__dict__.get("_aitrace_reseeks", {})
        given_up = reseeks.get((tp, head), 0) > self.HOLE_MAX_RESEEKS
        if acked[0] > head and not given_up:
            self._hole_seen(tp, head)
            return None  # the record at `committed` is not acknowledged yet
        self.__dict__.get("_aitrace_holes", {}).pop(tp, None)
        run_end = 0
        while run_end + 1 < len(acked) and acked[run_end + 1] <= acked[run_end] + 1:
            run_end += 1
        batch = acked[: run_end + 1]
        del acked[: run_end + 1]
        self._acked_index[tp].difference_update(batch)  # type: ignore[attr-defined]
        return batch[-1] + 1


# aiokafka's fetch long-polls (Faust fixes the wait at 1.5 s). One fetch request carries every
# partition without buffered data; on Tansu a fetch whose partitions (the often empty series
# and tick ones) had nothing was seen to be held for the whole wait, records arriving meanwhile
# or not, and the worker sat idle between fetches (py-spy: most of its wall time on batch
# records, series chunks waiting ~1 s). A short wait costs an idle worker cheap empty fetches.
FETCH_MAX_WAIT_MS = 20
# A partition's fetch position is being reset (a seek, a rebalance): the stall watch waits no longer.
POSITION_WAIT_S = 1.0
# log_ends: the wait for its Fetch answer, and the bytes asked per partition (a larger last batch still
# comes whole: a broker always returns the first batch it has)
LOG_END_WAIT_S = 5.0
_LOG_END_FETCH_WAIT_MS = 100  # Tansu answers a Fetch that may not wait (0) with no data at all
_LAST_BATCH_BYTES = 1 << 20


class _AIOKafkaConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when start() builds the fetcher
        return consumer

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        """How far each partition is known to hold records (on the consumer's thread): its log's end
        (:func:`log_ends`) or the fetch position, whichever is further."""
        return cast(dict[Any, int], await self.call_thread(self._end_offsets, tps))

    async def _end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        consumer = self._ensure_consumer()
        ends = await log_ends(consumer, dict(await consumer.end_offsets(tps)))
        for tp in tps:
            try:
                position = await asyncio.wait_for(consumer.position(tp), POSITION_WAIT_S)
            except (TimeoutError, IllegalStateError):
                continue  # no position yet (being reset) or no longer assigned: the end alone
            ends[tp] = max(ends.get(tp, 0), position)
        return ends

    async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
        """Faust's end offsets, which its recovery reads a table's changelog up to, made true on
        Tansu (:func:`log_ends`): recovery stopped at the first record of each changelog's last
        record batch, and the state of the records after it came back stale or not at all."""
        ends = await super()._highwaters(partitions)
        if self.consumer.in_transaction:
            return ends
        return await log_ends(self._ensure_consumer(), dict(ends))


async def log_ends(consumer: Any, ends: dict[Any, int]) -> dict[Any, int]:
    """One past the last record of each partition, where the broker's end offsets ``ends`` fall short.

    Works around: Tansu's ListOffsets answers one past the *first* record of a log's last record
    batch (7 records produced in one request: end 1; DESIGN.md), so the stall watch took records
    fetched from the middle of that batch and never delivered for nothing at all (the stall of CI
    on stop 17), and Faust's recovery stopped reading a changelog early. Each partition's last
    batch is fetched from ``end - 1`` (one Fetch request per broker, through the consumer's own
    client: same connection and credentials) and the end is the batch's next offset. On Kafka the
    end is right already and the fetch confirms it. Where the fetch fails the ends stay as given.
    """
    client = consumer._client
    by_node: dict[int, dict[str, list[tuple[int, int, int]]]] = {}
    for tp, end in ends.items():
        node = client.cluster.leader_for_partition(tp) if end and end > 0 else None
        if node is not None and node >= 0:
            by_node.setdefault(node, {}).setdefault(tp.topic, []).append((tp.partition, end - 1, _LAST_BATCH_BYTES))
    out = dict(ends)
    keys = {(tp.topic, tp.partition): tp for tp in ends}
    for node, topics in by_node.items():
        request = FetchRequest(_LOG_END_FETCH_WAIT_MS, 1, _LAST_BATCH_BYTES * 4, 0, list(topics.items()))
        try:
            response = await asyncio.wait_for(client.send(node, request), LOG_END_WAIT_S)
        except (TimeoutError, KafkaError) as exc:
            log.debug("log ends from node %s unavailable (%r): the broker's end offsets stand", node, exc)
            continue
        for topic, partitions in response.topics:
            for partition, error_code, highwater, *data in partitions:
                if error_code:
                    continue
                key = keys[(topic, partition)]
                out[key] = max(out[key], highwater)  # a Fetch answer's high watermark is right on Tansu
                records = MemoryRecords(data[-1])
                while (batch := records.next_batch()) is not None:
                    out[key] = max(out[key], batch.next_offset)
    return out


class _Consumer(SafeOffsetsConsumer, AIOKafkaConsumer):
    """Faust's aiokafka consumer with safe commit offsets and a short fetch wait."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _AIOKafkaConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(AIOKafkaTransport):
    Consumer = _Consumer


class ShortPollApp(faust.App):
    """Faust's app with a consumer that does not long-poll (see ``FETCH_MAX_WAIT_MS``)."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


SHUTDOWN_DEADLINE_S = 30.0


class BoundedShutdownWorker(faust.Worker):
    """A Faust worker whose graceful stop cannot outlive ``SHUTDOWN_DEADLINE_S``.

    Works around: mode's ``Worker._schedule_shutdown`` (SIGTERM, SIGINT) starts a stop that
    waits on the broker (the final offset commit, the producer's flush). With the broker gone
    that wait was seen lasting minutes after SIGTERM ("Wait for streams..." and nothing more),
    so ``docker stop`` or a supervisor had to SIGKILL it. Exiting when the deadline passes
    loses nothing: offsets are committed only for what was indexed, and a restarted worker
    reads the rest again.
    """

    def _schedule_shutdown(self, signal: Any) -> None:
        timer = threading.Timer(SHUTDOWN_DEADLINE_S, _give_up)
        timer.daemon = True  # a stop that finishes in time exits without waiting for it
        timer.start()
        super()._schedule_shutdown(signal)


def _give_up() -> None:
    log.error("aitrace worker: shutdown still running after %.0f s; exiting without it", SHUTDOWN_DEADLINE_S)
    logging.shutdown()
    os._exit(1)


def restored_partition(table: Any) -> Callable[[str], int | None]:
    """Where each key of ``table`` was restored from: the changelog partition (None: not restored).

    Reads faust-streaming 0.15's in-memory store, which notes it per key on recovery (its
    ``_key_partition``) and offers no public way to it. The idle expiry (processors/expiry.py)
    needs it only for values written before entities carried their partitions: without it (another
    store, another Faust) those are not expired, never expired wrongly.
    """
    partitions: Mapping[str, int] = getattr(table.data, "_key_partition", None) or {}
    return partitions.get
