"""The worker's drain loop (:meth:`aitrace.processors.faust_compat.SafeOffsetsConsumer._drain_messages`):
each fetched record is handed to the conductor inline, and only a delivery that has to wait is
raced against the flow's suspension, as Faust races every one (``Service.wait_first``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from aitrace.processors.faust_compat import SafeOffsetsConsumer
from mode import Service
from mode.utils.locks import Event


class _Diag:
    def set_flag(self, flag: str) -> None:
        pass

    def unset_flag(self, flag: str) -> None:
        pass


class _Consumer(SafeOffsetsConsumer, Service):
    """The parts of Faust's consumer the drain loop reads: its callback, flags, counters and fetches."""

    consumer_stopped_errors = ()

    def __init__(self, batches: list[list[Any]], callback: Any) -> None:
        super().__init__()
        self.batches, self.callback = batches, callback
        self.suspend_flow = Event()
        self.diag = _Diag()
        self._commit_every, self._n_acked = None, 0
        self.waits = 0  # deliveries that went through wait_first

    async def getmany(self, timeout: float) -> AsyncGenerator[tuple[Any, Any], None]:  # type: ignore[override]
        if not self.batches:
            self._stopped.set()  # the loop ends after this fetch
            return
        for message in self.batches.pop(0):
            yield "tp", message

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        self.waits += 1
        return await super().wait_first(*coros, timeout=timeout)


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


def _drain(consumer: _Consumer) -> None:
    asyncio.run(asyncio.wait_for(consumer._drain_messages(_Fetcher()), 10))


def test_records_that_need_no_wait_are_delivered_in_order_without_wait_first() -> None:
    seen: list[int] = []

    async def callback(message: int) -> None:
        seen.append(message)

    consumer = _Consumer([[1, 2, 3], [], [4, 5]], callback)
    _drain(consumer)
    assert seen == [1, 2, 3, 4, 5] and consumer.waits == 0


def test_a_delivery_that_waits_finishes_before_the_next_record() -> None:
    # a full stream buffer: the conductor's callback waits until the stream takes the record
    seen: list[Any] = []

    async def callback(message: int) -> str:
        seen.append(("in", message))
        if message == 2:
            await asyncio.sleep(0.01)  # a real wait on a timer's future
            await asyncio.sleep(0)  # and a bare yield
            seen.append(("taken", message))
        seen.append(("out", message))
        return "done"

    consumer = _Consumer([[1, 2, 3]], callback)
    _drain(consumer)
    assert seen == [("in", 1), ("out", 1), ("in", 2), ("taken", 2), ("out", 2), ("in", 3), ("out", 3)]
    assert consumer.waits == 1


def test_a_waiting_delivery_is_abandoned_when_the_flow_is_suspended() -> None:
    # Faust's behaviour, kept: a rebalance suspends the flow, and a record still waiting for room is
    # given up (cancelled inside the callback, which may clean up); the next fetch goes on
    seen: list[Any] = []

    async def callback(message: int) -> None:
        seen.append(("in", message))
        if message == 2:
            try:
                await asyncio.Event().wait()  # never set: only the suspension ends this wait
            except asyncio.CancelledError:
                seen.append(("cancelled", message))
                raise
        seen.append(("out", message))

    consumer = _Consumer([[1, 2], [3]], callback)

    async def run() -> None:
        drain = asyncio.ensure_future(consumer._drain_messages(_Fetcher()))
        while ("in", 2) not in seen:
            await asyncio.sleep(0.001)
        consumer.suspend_flow.set()
        await asyncio.wait_for(drain, 10)

    asyncio.run(run())
    assert seen == [("in", 1), ("out", 1), ("in", 2), ("cancelled", 2), ("in", 3), ("out", 3)]


def test_a_failing_delivery_stops_the_loop_with_its_error() -> None:
    async def callback(message: int) -> None:
        if message == 2:
            raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        _drain(_Consumer([[1, 2, 3]], callback))
