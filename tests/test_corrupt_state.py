"""Table values restored in a shape the worker never writes (the series and traces tables are restored from their
changelog topics, which any client can write): each is dropped where it is read, counted (``corrupt_state``) and
logged, and its entity or trace starts afresh, where it made every later record of its key raise (dead-lettered,
for a trace the whole record with the other traces' events). States the worker wrote, read back through JSON as
after a restart, are never taken for corrupt."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
import pytest
import synth as S
from aitrace.processors import correlate
from aitrace.processors.chunk_wire import pack_chunk
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline, Staged

T0 = 1_790_000_000_000_000
_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _chunk(off: int, *, spike: bool = False) -> bytes:
    times = T0 + off * 10**8 + np.arange(20, dtype=np.int64) * 1_000_000
    latency = np.random.default_rng(off).gamma(4, 5, 20)
    if spike:
        latency[-1] = 5000.0
    return pack_chunk(
        {"kind": "model", "model": "m", "service": "s", "entity": "model/m", "src": "t:0", "off": off,
         "bid": f"b{off}", "requests": [], "labels": [], "times": times, "latency": latency,
         "errors": np.zeros(20), "confidence": np.full(20, np.nan), "features": {"x": np.zeros(20)}}
    )  # fmt: skip


def _good() -> dict[str, Any]:
    table: dict[str, Any] = {}
    pipe = Pipeline(WorkerOptions(index=True))
    for off in range(1, 5):
        pipe.series(_chunk(off), table)
    return orjson.loads(orjson.dumps(table["model/m"], option=_JSON))


GOOD = _good()
LATENCY = GOOD["model/m/latency"]
INCIDENT = {
    "alert_id": "a", "version": 1, "state": "open", "series": "model/m/latency", "service": "s", "run_id": None,
    "model": "m", "feature": None, "trace_id": None, "first_seen": T0, "last_seen": T0, "published_at": T0,
    "findings": 1, "quiet": 0, "kind": "latency", "detector": "spike", "severity": "warning", "title": "t",
    "step": None, "score": 1.0, "statistic": None, "threshold": None, "pvalue": None, "evidence": [], "details": {},
}  # fmt: skip
CASES = {
    "entity a string": "garbage",
    "entity a list": [1, 2],
    "entity a number": 5,
    "series a string": {"model/m/latency": "x"},
    "series a list": {"model/m/latency": [1]},
    "applied a string": {"model/m/latency": {**LATENCY, "applied": {"t:0": "x"}}},
    "applied null": {"model/m/latency": {**LATENCY, "applied": None}},
    "applied a list": {"model/m/latency": {**LATENCY, "applied": [1]}},
    "rules a bogus dict": {"model/m/latency": {**LATENCY, "rules": {"bogus": 1}}},
    "rules a list": {"model/m/latency": {**LATENCY, "rules": [1]}},
    "incident a string": {"model/m/latency": {**LATENCY, "incident": "open"}},
    "incident a bogus dict": {"model/m/latency": {**LATENCY, "incident": {"state": "open"}}},
    "incident version a string": {"model/m/latency": {**LATENCY, "incident": {**INCIDENT, "version": "1"}}},
    "incident severity unknown": {"model/m/latency": {**LATENCY, "incident": {**INCIDENT, "severity": "x"}}},
    "bids a number": {"model/m/latency": {**LATENCY, "bids": 5}},
    "feature rules bogus": {**GOOD, "model/m/feature/x": {"applied": {}, "incident": None, "rules": {"w": 1}}},
    "waiting room a list": {**GOOD, "model/m/latency": {**LATENCY, "pred": [1]}},
}


@pytest.mark.parametrize("value", list(CASES.values()), ids=list(CASES))
def test_a_corrupt_series_value_is_dropped_and_the_entity_goes_on(value: Any, caplog: pytest.LogCaptureFixture) -> None:
    pipe, table = Pipeline(WorkerOptions(index=True)), {"model/m": value}
    alerts = []
    for off in range(10, 40):
        view = Staged(table)
        alerts += pipe.series(_chunk(off, spike=off == 39), view)[0]
        view.commit()
    assert pipe.counters["corrupt_state"] == 1
    assert "restored in a shape the worker never writes" in caplog.text
    assert [a["detector"] for a in alerts][-1:] == ["spike"]  # detecting afresh
    state = table["model/m"]["model/m/latency"]
    assert state["applied"] == {"t:0": 39} and isinstance(state["rules"], dict)
    assert isinstance(state.get("bids", []), list) and state["incident"]["severity"] in ("warning", "critical")


def test_a_corrupt_entity_through_a_group_is_dropped_too() -> None:
    pipe, table = Pipeline(WorkerOptions(index=True)), {"model/m": "garbage"}
    view = Staged(table)
    out = pipe.series_group([_chunk(10), _chunk(11)], view)
    view.commit()
    assert out is not None and pipe.counters["corrupt_state"] == 1
    assert table["model/m"]["model/m/latency"]["applied"] == {"t:0": 11}


def test_a_corrupt_entity_is_counted_once_when_its_group_goes_chunk_by_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group that raises leaves the table as it was and the worker applies its chunks one by one
    (Runtime._group): the corrupt entity read by the group, then by the first chunk, was counted twice."""
    from aitrace.processors.detection import SeriesDetectors

    def bug(self: Any, chunks: Any) -> Any:
        raise RuntimeError("bug on one group")

    pipe, table = Pipeline(WorkerOptions(index=True)), {"model/m": "garbage"}
    view = Staged(table)
    with monkeypatch.context() as m:
        m.setattr(SeriesDetectors, "apply_group", bug)
        with pytest.raises(RuntimeError, match="bug on one group"):
            pipe.series_group([_chunk(10), _chunk(11)], view)
    for off in (10, 11):
        pipe.series(_chunk(off), view)
    view.commit()
    assert pipe.counters["corrupt_state"] == 1
    assert table["model/m"]["model/m/latency"]["applied"] == {"t:0": 11}


def test_a_corrupt_entity_is_counted_once_when_a_chunk_raises_before_the_next_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunk by chunk, the entity is dropped by the chunk that applies: one that raised first counted it too."""

    def bug(*args: Any) -> Any:
        raise RuntimeError("bug on one chunk")

    pipe, table = Pipeline(WorkerOptions(index=True)), {"model/m": "garbage"}
    view = Staged(table)
    with monkeypatch.context() as m:
        m.setattr(Pipeline, "_detect", bug)
        with pytest.raises(RuntimeError, match="bug on one chunk"):
            pipe.series(_chunk(9), view)
    pipe.series(_chunk(10), view)
    view.commit()
    assert pipe.counters["corrupt_state"] == 1
    assert table["model/m"]["model/m/latency"]["applied"] == {"t:0": 10}


@pytest.mark.parametrize(
    "bad",
    ["garbage", [1], 5, {"partition": 0}, {"events": "x"}, {**correlate.new_state("0" * 32, 0), "spans": []}],
    ids=["string", "list", "number", "partition-only", "events-string", "spans-list"],
)
def test_a_corrupt_trace_value_is_dropped_and_the_record_kept_whole(bad: Any) -> None:
    pipe = Pipeline(WorkerOptions(index=True))
    t_bad, t_ok = S.trace_id(), S.trace_id()
    traces: dict[str, Any] = {t_bad: bad}
    record = S.encode(S.batch([S.event(S.log("info", "a"), trace=t_bad), S.event(S.log("error", "b"), trace=t_ok)]))
    out = pipe.process_record(record, key=None, topic="t", partition=0, offset=1, traces=traces, now=time.time())
    assert out.dead_letters == [] and len(out.actions) == 2
    assert pipe.counters["corrupt_state"] == 1
    assert correlate.sound_state(traces[t_bad]) and traces[t_bad]["events"] == 1 and t_ok in traces


def test_a_tick_drops_a_corrupt_trace_of_its_partition_and_ticks_the_others() -> None:
    pipe = Pipeline(WorkerOptions(index=True))
    now = time.time()
    t_ok = S.trace_id()
    traces: dict[str, Any] = {}
    record = S.encode(S.batch([S.event(S.log("error", "b"), trace=t_ok)]))
    pipe.process_record(record, key=None, topic="t", partition=0, offset=1, traces=traces, now=now)
    traces["bad"] = {"partition": 0, "closed": False, "touched": "x"}  # restored after a restart
    [closed] = pipe.tick(0, traces, now=now + 3600)
    assert closed["_id"] == t_ok and "bad" not in traces and pipe.counters["corrupt_state"] == 1
    assert pipe.tick(0, traces, now=now + 3601) == []


def test_states_the_worker_wrote_read_back_through_json_are_sound() -> None:
    """A restart reads every value back from its JSON changelog record: none of them is dropped."""
    import test_series_copy_on_write as cow

    rng = np.random.default_rng(3)
    pipe, traces, table = Pipeline(WorkerOptions(index=True)), {}, {}
    alerts = 0
    for offset, record in enumerate(cow._record(i, rng) for i in range(10)):
        out = pipe.process_record(record, key=None, topic="t", partition=0, offset=offset, traces=traces, now=1e9)
        for _, chunk in out.chunks:
            view = Staged(table)
            alerts += len(pipe.series(chunk, view)[0])
            view.commit()
        traces = orjson.loads(orjson.dumps(traces, option=_JSON))
        table = orjson.loads(orjson.dumps(table, option=_JSON))
        pipe.tick(0, traces, now=1e9 + offset)
    assert alerts and any(s.get("incident") for v in table.values() for s in v.values() if isinstance(s, dict))
    assert pipe.counters["corrupt_state"] == 0


def test_a_changelog_record_that_is_not_json_reads_as_a_value_the_pipeline_drops() -> None:
    """The tables' changelog codec (processors/table_codec.py) reads JSON as Faust's does and anything else as a
    marker, where Faust's raised and halted the worker's recovery: a value is then dropped and counted."""
    from aitrace.processors.table_codec import UNDECODABLE, TolerantJSON

    codec = TolerantJSON()
    assert codec.loads(codec.dumps({"run/r": {"a": [1, 2.5, None]}})) == {"run/r": {"a": [1, 2.5, None]}}
    assert [codec.loads(raw) for raw in (b"\xff", b"not json", b"{")] == [UNDECODABLE] * 3
    pipe = Pipeline(WorkerOptions(index=True))
    table = {"model/m": codec.loads(b"\xff")}
    pipe.series(_chunk(1), table)
    assert pipe.counters["corrupt_state"] == 1 and isinstance(table["model/m"], dict)


def _run_chunk(off: int, name: str) -> bytes:
    """20 steps of a run's training ``name`` in 2 ms of event time: rolled up (its state keeps an open window)."""
    st = np.arange(off * 20, off * 20 + 20)
    series = {f"train|{name}": {"steps": st, "times": T0 + st * 100, "values": 1.0 / (1 + st), "rollup": True}}
    return pack_chunk(
        {"kind": "run", "entity": "run/r", "run_id": "r", "service": "s", "trace_id": "0" * 32, "src": "t:0",
         "off": off, "bid": f"b{off}", "series": series,
         "ctx": {"trace_id": "0" * 32, "span_id": "1" * 16, "service": "s", "run_id": "r"}}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("run/r/checks", "x"), ("run/r/checks", [1]), ("run/r/checks", 7),
        ("run/r/train/mse", "win a string"), ("run/r/train/mse", {"id": "a"}), ("run/r/train/mse", "no count"),
    ],
)  # fmt: skip
def test_a_runs_checks_or_open_window_of_another_shape_is_dropped_and_the_run_goes_on(key: str, value: Any) -> None:
    """A run whose loss goes by another name (``mse``) read its checks' state before it was checked, and a rolled-up
    series its open window: a state of another shape made every later chunk of the run raise, to the dead-letter
    topic, its detection and rollups with it (/work/rev-ae D2)."""
    pipe = Pipeline(WorkerOptions(index=True))
    table: dict[str, Any] = {}
    pipe.series(_run_chunk(0, "mse"), table)
    states = orjson.loads(orjson.dumps(table, option=_JSON))  # as a restart reads them
    assert pipe.counters["corrupt_state"] == 0 and "win" in states["run/r"]["run/r/train/mse"]
    if key == "run/r/checks":
        states["run/r"][key] = value
    else:
        win = states["run/r"][key]["win"]
        win = value if value == "win a string" else {**win, "id": "a"} if value == {"id": "a"} else {
            k: v for k, v in win.items() if k != "count"}  # fmt: skip
        states["run/r"][key]["win"] = win
    pipe = Pipeline(WorkerOptions(index=True))
    for off in range(1, 4):
        pipe.series(_run_chunk(off, "mse"), states)
    assert pipe.counters["corrupt_state"] == 1


def test_a_changelog_key_of_another_json_type_reads_as_the_marker() -> None:
    """The worker's keys are texts; a key of another JSON type may not be hashable (``{"a": 1}``, ``[[[1]]]``), and
    Faust's store raised on it during recovery, halting it as a record that is not JSON did (/work/rev-af D1)."""
    from aitrace.processors.table_codec import UNDECODABLE, TolerantJSONKey

    codec = TolerantJSONKey()
    assert codec.loads(codec.dumps("run/r")) == "run/r"
    assert {codec.loads(raw) for raw in (b'{"a":1}', b"[[[1]]]", b"[1,2]", b"5", b"null", b"\xff")} == {UNDECODABLE}


@pytest.mark.parametrize("falls", [10**30, -1, 1.5, "3"])
def test_a_loss_state_whose_count_of_falls_is_forged_is_dropped(falls: Any) -> None:
    """A count of 10**30 (a big JSON integer, any client's changelog record) overflowed a C long at every later
    chunk of the run: each raised, to the dead-letter topic (/work/rev-af D2)."""
    pipe, table = Pipeline(WorkerOptions(index=True)), {}
    for off in range(3):
        pipe.series(_run_chunk(off, "loss"), table)
    states = orjson.loads(orjson.dumps(table, option=_JSON))
    states["run/r"]["run/r/train/loss"]["rules"]["falls"] = falls
    pipe = Pipeline(WorkerOptions(index=True))
    for off in range(3, 6):
        pipe.series(_run_chunk(off, "loss"), states)
    assert pipe.counters["corrupt_state"] == 1
