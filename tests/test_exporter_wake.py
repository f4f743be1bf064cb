"""How callers wake the exporter thread, and how soon a flush sees its acknowledgements (issue 11)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aitrace.producers import exporter as exporter_module
from aitrace.producers import tracecontext as tc
from aitrace.producers.client import Client
from aitrace.producers.config import Settings
from aitrace.producers.exporter import Exporter
from aitrace.producers.spans import Span
from aitrace.producers.transport import Encoded, MemoryTransport
from test_exporter import _ENVELOPE


class _AckedWhenPolled(MemoryTransport):
    """Each record is in flight until the second poll after its send, as librdkafka reports a delivery only
    when polled."""

    def __init__(self, stats: Counter[str]) -> None:
        super().__init__(stats)
        self.polls_left: list[int] = []

    def send(self, record: Encoded) -> None:
        super().send(record)
        self.polls_left.append(2)

    def poll(self) -> None:
        self.polls_left = [n - 1 for n in self.polls_left if n > 1]

    def busy(self) -> bool:
        return bool(self.polls_left)

    def settled(self) -> bool:
        return not self.polls_left


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.001)
    return predicate()


def test_a_flush_polls_for_acknowledgements_every_millisecond(tmp_path: Path) -> None:
    """While a flush waits on records in flight, the worker naps 1 ms between polls, not 20 (which held each
    flush() about 20 ms past its last acknowledgement)."""
    stats: Counter[str] = Counter()
    transport = _AckedWhenPolled(stats)
    queue: deque = deque()
    settings = Settings(service="unit", spool_dir=str(tmp_path / "spool"))
    exporter = Exporter(settings, queue, dict(_ENVELOPE), [], "t", stats, transport)
    naps: list[float] = []
    wait = exporter.wake.wait

    def recorded(timeout: float | None = None) -> bool:
        if transport.busy():  # a nap while records are in flight
            naps.append(timeout if timeout is not None else float("inf"))
        return wait(timeout)

    exporter.wake.wait = recorded  # type: ignore[method-assign]
    exporter.start()
    flushed: list[bool] = []
    try:
        with exporter.take_lock:  # nothing is taken before the flush waits
            queue.append((exporter_module.ev.METRIC, 1, tc.new_root(), ({"loss": 1.0}, 1, None, None), False))
            flusher = threading.Thread(target=lambda: flushed.append(exporter.force_flush(30.0)))
            flusher.start()
            assert _wait_for(lambda: getattr(exporter, "_flushing", 0) == 1)
        flusher.join(30.0)
    finally:
        exporter.stop(5.0)
    assert flushed == [True] and stats["sent"] == 1
    assert naps and max(naps) <= exporter_module._FLUSH_WAIT_S


def test_a_flush_waiting_long_after_the_last_send_naps_as_before(tmp_path: Path) -> None:
    """The 1 ms naps last only _FLUSH_FAST_S after the last send: a flush waiting on a broker that is down does not
    wake the worker 1,000 times a second until its timeout."""
    stats: Counter[str] = Counter()
    transport = _AckedWhenPolled(stats)
    transport.polls_left = [10**9]  # in flight for good
    settings = Settings(service="unit", spool_dir=str(tmp_path / "spool"))
    exporter = Exporter(settings, deque(), dict(_ENVELOPE), [], "t", stats, transport)  # not started: driven here
    naps: list[float | None] = []
    exporter.wake.wait = lambda timeout=None: naps.append(timeout) or False  # type: ignore[method-assign]
    exporter._flushing = 1
    exporter._last_send = time.monotonic()
    exporter._sleep()
    exporter._last_send = time.monotonic() - 2 * exporter_module._FLUSH_FAST_S
    exporter._sleep()
    exporter._flushing = 0
    exporter._last_send = time.monotonic()
    exporter._sleep()
    assert naps == [exporter_module._FLUSH_WAIT_S, exporter_module._BUSY_WAIT_S, exporter_module._BUSY_WAIT_S]


class _CountingWake(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


def _sleeping_client() -> tuple[Client, Any]:
    """A client whose exporter thread never runs: it sleeps, as far as the callers can tell."""
    exporter: Any = type("Sleeper", (), {})()
    exporter.sleeping, exporter.wake = True, _CountingWake()
    client = Client.__new__(Client)
    client.settings = Settings(service="unit")
    client._queue, client._qmax, client._run_id = deque(), 1000, "run"
    client._closed, client._auto_step, client._exporter = False, 0, exporter
    client._root = tc.SpanContext(tc.trace_id_for("run"), tc.new_span_id())
    return client, exporter


@pytest.mark.parametrize(
    "call",
    [
        lambda c, i: c.log("info", f"line {i}"),
        lambda c, i: c.metric({"loss": 0.5}, step=i),
        lambda c, i: c.inference(f"req-{i}", "m", 1.0),
        lambda c, i: c.ground_truth(f"req-{i}", "m", 1),
        lambda c, i: c.data_stats("ingest", "tx", [], row_count=1),
        lambda c, i: Span.__exit__(Span.__enter__(c.span("s")), None, None, None),
    ],
    ids=["log", "metric", "inference", "ground_truth", "data_stats", "span"],
)
def test_the_first_caller_wakes_a_sleeping_exporter_the_next_ones_need_not(call: Callable[[Client, int], None]) -> None:
    client, exporter = _sleeping_client()
    for i in range(5):
        call(client, i)
    assert len(client._queue) == 5
    assert exporter.wake.sets == 1 and not exporter.sleeping


def test_an_error_still_wakes_an_exporter_that_is_not_sleeping() -> None:
    client, exporter = _sleeping_client()
    client.log("info", "first")
    client.log("error", "failed")
    client.inference("r", "m", 1.0, status="error")
    assert exporter.wake.sets == 3
