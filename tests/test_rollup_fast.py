"""Rollups after the fast path (sorted input, no documents without an index) equal main's."""

from __future__ import annotations

from typing import Any

import _main_rollup as main_rollup
import numpy as np
import orjson
import pytest
import synth as S
from aitrace.processors import rollup

T0 = 1_700_000_000_000_000
CTX = {"trace_id": "a" * 32, "span_id": "b" * 16, "service": "trainer", "run_id": "r"}


def _chunks(seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    n = 5000
    times = T0 + np.cumsum(rng.integers(0, 20_000, n)).astype(np.int64)
    if seed % 2:  # shuffled within chunks: the sort is still needed there
        times = times[np.argsort(times + rng.integers(-50_000, 50_000, n))]
    values = rng.normal(size=n)
    values[rng.integers(0, n, 40)] = rng.choice([np.nan, np.inf, -np.inf], 40)
    steps = np.arange(n, dtype=np.int64)
    cuts = np.unique(rng.integers(1, n, 12))
    return list(zip(*(np.split(a, cuts) for a in (steps, times, values)), strict=True))


def _feed(module: Any, chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]], **kw: Any) -> list[Any]:
    state: dict[str, Any] = {}
    out: list[Any] = []
    for steps, times, values in chunks:
        actions = module.update(state, CTX, "loss", None, steps, times, values, window_us=1_000_000, **kw)
        out.append([_without_first(a) for a in actions])
        out.append(orjson.dumps(_windows(state)))
        state = orjson.loads(orjson.dumps(state))  # the table's JSON round trip
    return out


def _windows(state: dict[str, Any]) -> dict[str, Any]:
    """The windows of a state, without what main did not keep: what :func:`rollup.flush` writes at a run's end,
    and a window's first value."""
    out = {k: v for k, v in state.items() if k != "win_of"}
    if isinstance(out.get("win"), dict):
        out["win"] = {k: v for k, v in out["win"].items() if k not in ("written_n", "first")}
    return out


def _without_first(action: dict[str, Any]) -> dict[str, Any]:
    """A rollup document without its window's first value (main's had none)."""
    metric = {k: v for k, v in action["_source"]["aitrace"]["metric"].items() if k != "first"}
    return {**action, "_source": {**action["_source"], "aitrace": {**action["_source"]["aitrace"], "metric": metric}}}


@pytest.mark.parametrize("seed", range(6))
def test_same_documents_and_state_as_main(seed: int) -> None:
    chunks = _chunks(seed)
    ours, main = _feed(rollup, chunks), _feed(main_rollup, chunks)
    assert sum(len(x) for x in main[::2]) > 10  # windows were written
    assert ours == main


@pytest.mark.parametrize("seed", range(4))
def test_without_documents_the_state_moves_the_same(seed: int) -> None:
    chunks = _chunks(seed)
    ours = _feed(rollup, chunks, documents=False)
    assert all(actions == [] for actions in ours[::2])
    assert ours[1::2] == _feed(main_rollup, chunks)[1::2]


def test_a_worker_without_index_builds_no_rollup_documents_and_keeps_the_same_state() -> None:
    from aitrace.processors.options import WorkerOptions
    from aitrace.processors.pipeline import Pipeline

    rng = np.random.default_rng(0)
    records = []
    for i in range(24):  # 500 steps a millisecond apart per record: a fast series, rolled up
        series = {"loss": rng.normal(1.0, 0.02, 500), "lr": np.full(500, 1e-3)}
        block = S.metric_block(trace="c" * 32, run_id="r", start_step=500 * i, series=series, step_us=1000)
        records.append(S.encode(S.batch([], [block])))
    tables, documents = [], []
    for index in (True, False):
        pipe, table, docs = Pipeline(WorkerOptions(index=index)), {}, []
        for offset, value in enumerate(records):
            out = pipe.process_record(value, key=None, topic="t", partition=0, offset=offset, traces={}, now=0.0)
            for _key, chunk in out.chunks:
                docs += [a["_id"] for a in pipe.series(chunk, table)[1]]
        tables.append(orjson.dumps(table))
        documents.append(docs)
    assert any(d.startswith("rollup:") for d in documents[0])
    assert not any(d.startswith("rollup:") for d in documents[1])
    assert tables[0] == tables[1]


def test_a_runs_last_window_is_indexed_near_its_end() -> None:
    """The open window was indexed when it opened and then once per window length of event time, which a window
    never lasts: a run's last window stayed as its first chunk left it (a 100,000-step run read as ending at step
    2,000; /work/rev-w D6). Now at most a tenth of its time behind, and written at most 10 times a window."""
    ctx = {"trace_id": "t", "span_id": "s", "run_id": "r", "service": "trainer"}
    state: dict = {}
    written = []
    for chunk in range(50):  # 50 chunks of 20 points, 0.1 s apart, inside one 10-second window
        steps = np.arange(chunk * 20, chunk * 20 + 20, dtype=np.int64)
        times = 10_000_000 + steps * 5_000  # 200 points a second
        written += rollup.update(state, ctx, "loss", "train", steps, times, np.ones(20), window_us=10_000_000)
    last = written[-1]["_source"]["aitrace"]["metric"]
    assert last["last_step"] >= 999 - 200 and last["count"] >= 500  # within 1 s (200 points) of the end
    assert len(written) <= rollup.REWRITES


def test_a_runs_tail_is_indexed_when_the_run_ends() -> None:
    """A run that ended within a tenth of a window of its window's last write left its tail out of the index
    for good (the README's Lightning example: 8 steps, 4-7 never indexed, compare said it ended at step 3): its
    end writes the window once more, in full, and only once; a state of a shape no worker wrote writes nothing."""
    ctx = {"trace_id": "t", "span_id": "s", "run_id": "r", "service": "trainer"}
    state: dict = {}
    for lo in (0, 3, 6):  # 8 steps in 0.8 ms: one window, written at its first chunk only
        steps = np.arange(lo, min(lo + 3, 8), dtype=np.int64)
        rollup.update(state, ctx, "loss", "train", steps, 10_000_000 + steps * 100, 2.0 - 0.1 * steps, window_us=10**7)
    state = orjson.loads(orjson.dumps(state))  # the table's JSON round trip
    [tail] = rollup.flush(state, T0)
    metric = tail["_source"]["aitrace"]["metric"]
    assert (metric["count"], metric["last_step"], metric["last"]) == (8, 7, pytest.approx(1.3))
    assert metric["first"] == 2.0  # the window's first value (compare's "first": the mean was all it had)
    old = {**state["win"], "written_n": 0}
    del old["first"]  # a window kept before it had its first value: unknown, not the next chunk's
    kept = {"win": old}
    rollup.update(kept, ctx, "loss", "train", np.array([8]), np.array([10_000_900]), np.array([1.2]), window_us=10**7)
    [more] = rollup.flush(kept, T0)
    assert more["_source"]["aitrace"]["metric"].get("first") is None
    assert more["_source"]["aitrace"]["metric"]["count"] == 9
    assert rollup.flush(state, T0) == []  # written in full
    unwritten = {**state["win"], "written_n": 0}
    labels = {**state["win_of"], "ctx": {**ctx, "labels": "a string"}}  # raised AttributeError: to the DLQ, again
    for broken in (
        {"win": unwritten, "win_of": {"ctx": 5}}, {"win": {"count": "x"}, "win_of": state["win_of"]},
        {"win": dict(unwritten), "win_of": labels},
    ):  # fmt: skip
        assert rollup.flush(broken, T0) == []


_END = {"status": "FINISHED", "config": {}, "seed": None, "code_version": None, "library_versions": {}, "message": None}


def _indexed(records: list[tuple[list[Any], list[Any]]]) -> list[dict[str, Any]]:
    """Each rolled-up window's last document, the worker fed ``(events, metric blocks)`` records in turn."""
    from aitrace.processors.options import WorkerOptions
    from aitrace.processors.pipeline import Pipeline

    pipe, table, last = Pipeline(WorkerOptions()), {}, {}
    for offset, (events, blocks) in enumerate(records):
        record = S.encode(S.batch(events, blocks))
        out = pipe.process_record(record, key=None, topic="t", partition=0, offset=offset, traces={}, now=0.0)
        for _key, chunk in out.chunks:
            for action in pipe.series(chunk, table)[1]:
                if action["_id"].startswith("rollup:"):
                    last[action["_id"]] = action["_source"]["aitrace"]["metric"]
    return list(last.values())


def _block(lo: int, hi: int, step_us: int = 100) -> Any:
    loss = 2.0 - 0.1 * np.arange(lo, hi)
    return S.metric_block(trace="a" * 32, run_id="r", start_step=lo, series={"loss": loss}, start_us=T0 + lo * step_us,
                          step_us=step_us)  # fmt: skip


def _end(time_us: int) -> Any:
    return S.event(("aitrace.RunLifecycle", _END), trace="a" * 32, run_id="r", time_us=time_us)


def test_the_worker_indexes_a_fast_runs_tail_at_its_end() -> None:
    [window] = _indexed([([], [_block(0, 4)]), ([_end(T0 + 10_000)], [_block(4, 8)])])  # 8 steps in 0.8 ms
    assert (window["count"], window["last_step"]) == (8, 7)


def test_the_points_that_come_after_the_runs_end_are_indexed() -> None:
    """The client sends a batch's events before its metric blocks (the run's end first, its last points in the
    records after it): the end's flush had nothing new to write, and the points after it stayed out of the index
    (steps 4-7 of 8: compare read the run as ending at step 3). Points dated at or before the end are written as
    they come; points after it (the run resumed under its id) are written as any run's, at most REWRITES a window."""
    records = [([], [_block(0, 4)]), ([_end(T0 + 10_000)], []), ([], [_block(4, 6)]), ([], [_block(6, 8)])]
    [window] = _indexed(records)
    assert (window["count"], window["last_step"]) == (8, 7)
    resumed = [*records, *(([], [_block(lo, lo + 2, step_us=10_000)]) for lo in range(8, 108, 2))]
    assert _indexed(resumed)[0]["count"] < 108  # one 10 s window of 1.08 s: the resumed points not each written


def test_a_series_first_seen_after_the_runs_end_is_indexed_in_full() -> None:
    """A series whose first points come after its run's end, in more than one record (a metric the loop logs only
    at the end, its blocks after the end's event): only its first record was written, the end was kept in its
    siblings' states only. The run's checks keep the end's time for the series that come after it."""

    def block(name: str, lo: int, hi: int) -> Any:
        return S.metric_block(trace="a" * 32, run_id="r", start_step=lo, series={name: 2.0 - 0.1 * np.arange(lo, hi)},
                              start_us=T0 + lo * 100, step_us=100)  # fmt: skip

    records = [([], [block("loss", 0, 4)]), ([_end(T0 + 10_000)], []), ([], [block("loss", 4, 8), block("acc", 0, 4)])]
    windows = _indexed([*records, ([], [block("acc", 4, 8)])])
    assert sorted((w["count"], w["last_step"]) for w in windows) == [(8, 7), (8, 7)]
    from aitrace.processors.detection import SeriesDetectors

    for forged in ("x", 10**30, -1, None):  # a client's changelog record: no end, nothing raised
        det = SeriesDetectors({"run/r/checks": {"applied": {}, "incident": None, "ended_at": forged}})
        assert det._run_end("r") is None


def test_an_end_dated_far_ahead_writes_the_window_no_more_than_its_rewrites() -> None:
    """Points dated at or before the run's end are written as they come; an end a day ahead of its points (a
    client's clock) made each of a resumed run's 600 chunks in one window write it again (/work/rev-ae D8)."""
    state: dict = {}
    ctx = {"trace_id": "t", "span_id": "s", "run_id": "r", "service": "trainer"}
    rollup.update(state, ctx, "loss", "train", np.array([0]), np.array([T0]), np.array([1.0]), window_us=10**7)
    rollup.flush(state, T0 + 86_400 * 10**6)
    written = 0
    for i in range(1, 601):  # 600 chunks of one point, 1 ms apart: one 10-second window
        step = np.array([i])
        written += len(rollup.update(state, ctx, "loss", "train", step, T0 + 1000 * step, np.ones(1), window_us=10**7))
    assert written <= 2 * rollup.REWRITES
