"""A series record's chunks of one entity applied as a group (Pipeline.series_group, each series' rules saved
once) give exactly what applying them one by one (Pipeline.series) gave: the same alerts and documents per
chunk, the same counters, the same table state to the byte and the same live rules objects, through
redeliveries, dropped batches and a chunk that raises (the group then leaves the table as it was and the
worker applies the chunks one by one, dead-lettering the one that raises)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aitrace.detect.service import ServiceSeries
from aitrace.processors import runtime as runtime_module
from aitrace.processors.chunk_wire import group_chunks, split_chunks
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline, Staged
from test_expiry import _chunk as lifecycle_chunk
from test_poison import Msg, _runtime
from test_series_copy_on_write import T0, _record

_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _chunks(n: int = 12) -> list[tuple[str, bytes]]:
    """Every record's chunks (a model, a training run and a data stage each), in record order."""
    rng = np.random.default_rng(11)
    pipe, traces, out = Pipeline(WorkerOptions(index=True)), {}, []
    for offset in range(n):
        rec = pipe.process_record(
            _record(offset, rng), key=None, topic="t", partition=0, offset=offset, traces=traces, now=0.0
        )
        out += rec.chunks
    return out


CHUNKS = _chunks()
# series batches of input records 0-3, 2-6 (2 and 3 again: redelivered), 7-11; the middle one dropped once
BATCHES = [CHUNKS[0:12], CHUNKS[6:21], CHUNKS[21:36]]


def _apply(
    pipe: Pipeline, batch: list[tuple[str, bytes]], table: dict[str, Any], group: bool, commit: bool, now: float | None
) -> list[Any]:
    view, out = Staged(table), []
    for _, value in group_chunks(batch):
        parts = split_chunks(value)
        done = pipe.series_group(parts, view, now=now) if group and len(parts) > 1 else None
        out += done if done is not None else [pipe.series(part, view, now=now) for part in parts]
    if commit:
        view.commit()
    return out


def _run(group: bool, now: float | None = None) -> tuple[bytes, bytes, dict[str, int], list[tuple[str, bytes]]]:
    pipe, table, out = Pipeline(WorkerOptions(index=True)), {}, []
    for i, batch in enumerate(BATCHES):
        clock = None if now is None else now + i
        if i == 1:  # failed after its updates: dropped, delivered again
            _apply(pipe, batch, table, group, commit=False, now=clock)
        out += _apply(pipe, batch, table, group, commit=True, now=clock)
    live = [(key, orjson.dumps(saved, option=_JSON)) for key, (saved, _) in pipe.live_rules._live.items()]
    return orjson.dumps(out, option=_JSON), orjson.dumps(table, option=_JSON), pipe.counters, live


@pytest.mark.parametrize("now", [None, 1000.0], ids=["no-clock", "idle-marks"])
def test_a_group_gives_what_its_chunks_one_by_one_gave(now: float | None) -> None:
    got, want = _run(group=True, now=now), _run(group=False, now=now)
    if now is not None:  # each entity's idle mark (processors/expiry.py) as chunk by chunk: last touched by batch 3
        marks = [value["@touch"] for value in orjson.loads(got[1]).values()]
        assert [m["t"] for m in marks] == [now + 2] * 3, marks
    alerts = [a for alerts, _ in orjson.loads(want[0]) for a in alerts]
    assert {a["kind"] for a in alerts} >= {"drift", "error_rate", "data_quality"}, {a["kind"] for a in alerts}
    assert want[2]["duplicates"] > 0  # the redelivered records' chunks were skipped
    assert got[0] == want[0]  # alerts and documents, chunk by chunk
    assert got[1] == want[1]  # the table, to the byte (keys in the same order)
    assert got[2] == want[2]
    assert got[3] == want[3]  # the same rules objects kept live, in the same order, beside the same states


def test_the_group_path_takes_model_and_run_groups() -> None:
    pipe, view = Pipeline(WorkerOptions(index=False)), Staged({})
    grouped = dict(group_chunks(BATCHES[0]))
    assert sorted(grouped) == ["data/ds/clean", "model/m", "run/r"]
    assert pipe.series_group(split_chunks(grouped["model/m"]), view) is not None
    assert pipe.series_group(split_chunks(grouped["run/r"]), view) is not None
    assert pipe.series_group(split_chunks(grouped["data/ds/clean"]), view) is None  # its budget: chunk by chunk
    assert view.pending["model/m"]["model/m/latency"]["rules"] is not None  # saved at the group's end


def test_a_group_with_a_runs_lifecycle_event_goes_chunk_by_chunk() -> None:
    # the event's status moves the run's idle mark (ended or not) only where it reaches a run with series
    pipe = Pipeline(WorkerOptions(index=False))
    metrics = [lifecycle_chunk(pipe, "r", 0), lifecycle_chunk(pipe, "r", 1)]
    ended = lifecycle_chunk(pipe, "r", 2, metrics=(), status="FINISHED")
    assert pipe.series_group(metrics, Staged({}), now=1000.0) is not None
    assert pipe.series_group([*metrics, ended], Staged({}), now=1000.0) is None


def _failing_update(monkeypatch: pytest.MonkeyPatch, record: int) -> None:
    """ServiceSeries' updates raise on the chunk of input record ``record``, as a bug on one chunk would (a
    group's update of several chunks at its first chunk; ``update`` of one chunk is ``update_chunks`` too)."""
    real, first = ServiceSeries.update_chunks, T0 + record * 60 * 1000  # _record's first request time

    def update_chunks(self: ServiceSeries, chunks: Any, **kw: Any) -> Any:
        if any(int(np.asarray(times)[0]) == first for times, _ in chunks):
            raise RuntimeError("bug on one chunk")
        return real(self, chunks, **kw)

    monkeypatch.setattr(ServiceSeries, "update_chunks", update_chunks)


def test_a_group_that_raises_leaves_the_staged_table_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe, table = Pipeline(WorkerOptions(index=False)), {}
    _apply(pipe, BATCHES[0], table, group=True, commit=True, now=1000.0)
    view = Staged(table)
    model = next(value for key, value in group_chunks(BATCHES[2]) if key == "model/m")
    pipe.series(split_chunks(model)[0], view, now=1001.0)  # the entity staged before its group: restored, not dropped
    staged_before = orjson.dumps(view.pending, option=_JSON)
    committed = orjson.dumps(table, option=_JSON)
    _failing_update(monkeypatch, record=9)
    with pytest.raises(RuntimeError, match="bug on one chunk"):
        pipe.series_group(split_chunks(model)[1:], view, now=1002.0)
    assert orjson.dumps(view.pending, option=_JSON) == staged_before  # its idle mark too
    assert orjson.dumps(table, option=_JSON) == committed


def _failing_label(monkeypatch: pytest.MonkeyPatch, record: int) -> None:
    """The documents of one label of input record ``record`` (one that never meets its prediction) raise, as a bug
    in a chunk's outputs would: after its group's state was applied."""
    real, event_id = Pipeline._label_actions, f"{record * 60 + 2 * 10**9 + 10**9:020x}"

    def label_actions(self: Pipeline, event: dict[str, Any], prediction: Any) -> Any:
        if event["event_id"] == event_id:
            raise RuntimeError("bug on one chunk")
        return real(self, event, prediction)

    monkeypatch.setattr(Pipeline, "_label_actions", label_actions)


def _worker_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group: bool, fail: Any = _failing_update
) -> tuple[Any, ...]:
    """The series agent's step on every batch, one chunk raising (``fail``); (dead letters, alerts sent, table)."""
    runtime, letters = _runtime(tmp_path, monkeypatch)
    table: dict[str, Any] = {}
    monkeypatch.setattr(runtime, "series_state", table)
    monkeypatch.setattr("aitrace.processors.runtime.table_writer", lambda t: lambda k, v, p: t.__setitem__(k, v))
    alerts: list[Any] = []

    async def send_alerts(new: list[Any]) -> None:
        alerts.extend(new)

    monkeypatch.setattr(runtime.outputs, "send_alerts", send_alerts)
    groups: list[str] = []  # what each series_group call did
    series_group = runtime.pipeline.series_group

    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            done = series_group(*args, **kwargs)
        except RuntimeError:
            groups.append("raised")
            raise
        groups.append("chunk by chunk" if done is None else "applied")
        return done

    monkeypatch.setattr(runtime.pipeline, "series_group", watched)
    if not group:
        monkeypatch.setattr(runtime, "_group", lambda *args: None)
    with monkeypatch.context() as m:
        fail(m, record=5)
        m.setattr(runtime_module.time, "time", lambda: 1000.0)  # the idle marks' clock: the same in both runs
        for b, batch in enumerate(BATCHES):
            msgs = [Msg(v, k.encode(), "app-series", 0, b * 100 + i) for i, (k, v) in enumerate(group_chunks(batch))]
            asyncio.run(runtime.on_chunks(msgs))
    assert sorted(set(groups)) == (["applied", "chunk by chunk", "raised"] if group else [])
    return [(lt.offset, lt.reason, lt.value) for lt in letters], orjson.dumps(alerts), orjson.dumps(table, option=_JSON)


def test_the_worker_dead_letters_the_chunk_that_raises_as_chunk_by_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = _worker_run(tmp_path / "group", monkeypatch, group=True)
    want = _worker_run(tmp_path / "one", monkeypatch, group=False)
    assert len(want[0]) == 1 and want[0][0][1] == "processing-error"  # that one chunk, not its whole group
    assert got == want


def test_a_chunk_whose_outputs_raise_is_dead_lettered_and_its_group_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised while its documents were built, after the group's state was written: the group fell back to chunk by
    chunk on a table that held every chunk as applied, so all were skipped as redeliveries: no dead letter, and
    the other chunks' alerts and documents were lost."""
    got = _worker_run(tmp_path / "group", monkeypatch, group=True, fail=_failing_label)
    want = _worker_run(tmp_path / "one", monkeypatch, group=False, fail=_failing_label)
    assert len(want[0]) == 1 and want[0][0][1] == "processing-error"
    assert got == want
