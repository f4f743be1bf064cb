"""Tick records (the ticks topic is an input of the records agent, and any client can write an empty record to
it): each tick scans every trace its partition holds, so a partition's traces are ticked at most once a batch
and half a tick interval after the last tick, however many tick records come."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_poison import Msg, _log_record, _runtime


def _counting(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    ticked: list[int] = []
    tick = runtime.pipeline.tick

    def counted(partition: int, traces: Any, *, now: float) -> Any:
        ticked.append(partition)
        return tick(partition, traces, now=now)

    monkeypatch.setattr(runtime.pipeline, "tick", counted)
    return ticked


def test_a_batch_of_many_tick_records_ticks_each_partition_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, letters = _runtime(tmp_path, monkeypatch)
    ticked = _counting(runtime, monkeypatch)
    name, training = runtime.ticks_name, runtime.input_names[0]
    records = [Msg(_log_record(), None, training, 0, offset) for offset in range(3)]
    ticks = [Msg(b"", None, name, i % 2, i) for i in range(100)]
    asyncio.run(runtime.guarded(runtime.on_records, [*records, *ticks, Msg(b"", None, name, 99, 100)]))
    assert sorted(ticked) == [0, 1] and letters == []
    assert len(runtime.traces.data) == 3  # the records were applied and committed


def test_a_partition_is_ticked_at_most_every_half_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, _ = _runtime(tmp_path, monkeypatch)
    runtime.options = replace(runtime.options, tick_interval_s=3600.0)
    ticked = _counting(runtime, monkeypatch)
    for offset in range(5):  # five batches of one forged tick each, back to back
        asyncio.run(runtime.guarded(runtime.on_records, [Msg(b"", None, runtime.ticks_name, 0, offset)]))
    assert ticked == [0]
    clock = {"now": 1e6}
    monkeypatch.setattr("aitrace.processors.runtime.time.monotonic", lambda: clock["now"])
    runtime._ticked[0] = clock["now"] - 1799.0
    asyncio.run(runtime.guarded(runtime.on_records, [Msg(b"", None, runtime.ticks_name, 0, 5)]))
    assert ticked == [0]
    clock["now"] += 1.0  # half an interval since the last tick: due again
    asyncio.run(runtime.guarded(runtime.on_records, [Msg(b"", None, runtime.ticks_name, 0, 6)]))
    assert ticked == [0, 0]


def test_a_dropped_batch_does_not_hold_back_the_next_tick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, _ = _runtime(tmp_path, monkeypatch)
    runtime.options = replace(runtime.options, tick_interval_s=3600.0)
    ticked = _counting(runtime, monkeypatch)

    async def down(*_: Any) -> None:
        raise RuntimeError("index down")

    with monkeypatch.context() as m:
        m.setattr(runtime.indexing, "index", down)
        with pytest.raises(RuntimeError):
            asyncio.run(runtime.on_records([Msg(b"", None, runtime.ticks_name, 0, 0)]))
    asyncio.run(runtime.guarded(runtime.on_records, [Msg(b"", None, runtime.ticks_name, 0, 0)]))
    assert ticked == [0, 0]


def test_a_batch_slower_than_half_the_interval_does_not_skip_the_next_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shown by a review: the last tick's time was taken once the batch committed, so a batch taking more than
    half the interval before its commit (indexing) made the timer's next tick wait: ticks every 2 s, not 1 s."""
    runtime, _ = _runtime(tmp_path, monkeypatch)
    runtime.options = replace(runtime.options, tick_interval_s=1.0)
    clock = {"t": 1000.0}
    monkeypatch.setattr("aitrace.processors.runtime.time.monotonic", lambda: clock["t"])
    ticked = _counting(runtime, monkeypatch)
    real = runtime.indexing.index

    async def slow(actions: Any, sources: Any) -> Any:
        clock["t"] += 0.9  # the bulk request of this batch takes 0.9 s
        return await real(actions, sources)

    monkeypatch.setattr(runtime.indexing, "index", slow)
    name, training = runtime.ticks_name, runtime.input_names[0]
    for k in range(10):  # the timer's tick every second, in a batch of its own beside a record
        clock["t"] = max(clock["t"], 1000.0 + k)
        batch = [Msg(_log_record(), None, training, 0, k), Msg(b"", None, name, 0, k)]
        asyncio.run(runtime.guarded(runtime.on_records, batch))
    assert len(ticked) == 10
