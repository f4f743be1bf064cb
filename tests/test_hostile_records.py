"""Records valid under the schema but hostile in content, through the pipeline in process.

Each test is a record some Kafka client could write to an input topic; the worker must
process it, or dead-letter it with a reason, without losing the valid part of it, without
an exception on the series side and without work that grows faster than the record.
Work is bounded by counts, never by wall-clock time.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import time
import tracemalloc
from typing import Any

import numpy as np
import orjson
import pytest
import synth as S
import test_inference_blocks as inference_blocks
from aitrace.detect.welch import welch_t
from aitrace.processors import correlate, pipeline
from aitrace.processors.chunk_wire import pack_chunk, unpack_chunk
from aitrace.processors.chunks import restore_axes
from aitrace.processors.options import MAX_RECORD_BYTES, WorkerOptions
from aitrace.processors.pipeline import Pipeline, RecordOutput, Staged
from aitrace.schemas.codec import AvroSerializer


def _process(pipe: Pipeline, value: bytes, traces: dict[str, Any], offset: int = 0) -> RecordOutput:
    return pipe.process_record(value, key=b"k", topic="t", partition=0, offset=offset, traces=traces, now=time.time())


def test_an_empty_metric_block_is_dead_lettered_and_the_valid_block_beside_it_detected() -> None:
    # A block of no points decoded and made a chunk whose empty series raised IndexError in the
    # run checks on the series side: the chunk was dead-lettered whole, the valid series with it.
    tr = S.trace_id()
    valid = S.metric_block(trace=tr, run_id="r", start_step=0, series={"loss": np.full(5, np.nan)})
    empty = S.metric_block(trace=tr, run_id="r", start_step=0, series={"acc": []})
    pipe = Pipeline(WorkerOptions(index=False))
    out = _process(pipe, S.encode(S.batch([], [valid, empty])), {})
    [letter] = out.dead_letters
    assert (letter.reason, letter.rejected) == ("bad-shape", ("block:1",)) and "no points" in letter.detail
    table: dict[str, Any] = {}
    alerts = [a for _, chunk in out.chunks for a in pipe.series(chunk, table)[0]]
    assert [a["detector"] for a in alerts] == ["nan"]  # the valid block's diverged loss is still told


@pytest.mark.parametrize("message", ["ascii", "n\u00e4in"])  # kept as columns / built as dicts
def test_a_trace_lists_a_bounded_number_of_services(message: str) -> None:
    # Every record of a trace scanned the trace's whole list of services for each new one: 8
    # records of 15,000 new names each took 1 s for the first, 21 s of CPU for the eighth.
    tr, span = S.trace_id(), S.span_id()
    pipe = Pipeline(WorkerOptions(index=False))
    limit = pipe.correlation.max_services
    traces: dict[str, Any] = {}
    for offset in range(3):
        names = [f"svc-{offset}-{i}" for i in range(limit)]
        events = [S.event(S.log("info", message), trace=tr, span=span, service=name) for name in names]
        _process(pipe, S.encode(S.batch(events)), traces, offset)
    state = traces[tr]
    assert state["services"] == [f"svc-0-{i}" for i in range(limit)]  # the first ones, in order
    assert state["events"] == 3 * limit  # every event still counted in the trace


def test_a_trace_spread_over_partitions_is_assembled_whole() -> None:
    # A client that keys a trace's records otherwise (or not at all) spreads them over partitions.
    # Their offsets were compared per topic: offset 7 of partition 1 after offset 100 of
    # partition 0 was taken for a redelivery, so the root span and the error never reached the trace.
    tr, root = S.trace_id(), S.span_id()
    child = S.event(S.span("child", S.now_us(), 5), trace=tr, parent=root)
    rest = [S.event(S.log("error", "boom"), trace=tr), S.event(S.span("root", S.now_us(), 50), trace=tr, span=root)]
    pipe = Pipeline(WorkerOptions(index=False))
    traces: dict[str, Any] = {}
    for partition, offset, events in ((0, 100, [child]), (1, 7, rest)):
        record = S.encode(S.batch(events))
        pipe.process_record(record, key=None, topic="t", partition=partition, offset=offset, traces=traces, now=0.0)
    state = traces[tr]
    assert (state["events"], state["root"], state["complete"]) == (3, root, True)
    assert state["error"] is not None and pipe.counters["duplicates"] == 0
    # and a redelivery from either partition is still recognised
    pipe.process_record(S.encode(S.batch(rest)), key=None, topic="t", partition=1, offset=7, traces=traces, now=0.0)
    assert pipe.counters["duplicates"] == 1 and traces[tr]["events"] == 3


def test_a_reused_batch_id_does_not_drop_the_later_batches() -> None:
    # Duplicates were told by batch id alone: a client whose id generator repeats (or one
    # that sends a constant) lost every later batch of a trace and of a run's series.
    tr = S.trace_id()
    pipe = Pipeline(WorkerOptions(index=False))
    traces: dict[str, Any] = {}
    table: dict[str, Any] = {}

    def send(record: bytes, offset: int) -> None:
        for _, chunk in _process(pipe, record, traces, offset).chunks:
            pipe.series(chunk, table)

    for offset in range(3):
        block = S.metric_block(trace=tr, run_id="r", start_step=4 * offset, series={"loss": np.full(4, 1.0 + offset)})
        send(S.encode(S.batch([S.event(S.log("info", "line"), trace=tr)], [block], batch_id="same")), offset)
    assert traces[tr]["events"] == 3 + 12 and pipe.counters["duplicates"] == 0
    assert table["run/r"]["run/r/train/loss"]["applied"] == {"t:0": 2}  # the series side applied them all
    # the same bytes again at a later offset are a producer's retry, on both sides
    block = S.metric_block(trace=tr, run_id="r", start_step=12, series={"loss": np.full(4, 1.0)})
    retry = S.encode(S.batch([], [block], batch_id="same"))
    send(retry, 10)
    send(retry, 11)
    assert traces[tr]["events"] == 19  # 4 new events, not 8
    assert table["run/r"]["run/r/train/loss"]["applied"] == {"t:0": 10}


def _series_record(header: dict[str, Any], buffer: bytes) -> bytes:
    """A series topic record as any Kafka client can write it (chunk_wire's layout)."""
    raw = orjson.dumps(header)
    return b"AC1" + struct.pack("<I", len(raw)) + raw + buffer


def _run_chunk(series: dict[str, Any], **extra: Any) -> dict[str, Any]:
    head = {"kind": "run", "run_id": "r", "service": "s", "trace_id": "t", "ctx": None, "entity": "run/r"}
    return {**head, "src": "t:0", "off": 1, "bid": "b", "series": series, **extra}


N_POINTS, N_SERIES = 10_000, 500  # a 100 KB record


@pytest.mark.parametrize("shape", ["same-bytes", "short-values-long-axes"])
def test_a_crafted_series_record_cannot_make_the_worker_copy_more_than_it_carries(shape: str) -> None:
    # Arrays were copied as the header named them: every series naming the same bytes, or
    # one-point series on shared axes of 10,000 steps, made a 100 KB record 120-240 MB of copies.
    if shape == "same-bytes":
        longs = {"__nd": ["<i8", 0, N_POINTS]}
        one = {"values": {"__nd": ["<f8", 0, N_POINTS]}, "steps": longs, "times": longs, "rollup": False}
        record = _series_record(_run_chunk({f"|m{i}": one for i in range(N_SERIES)}), bytes(8 * N_POINTS))
    else:  # every array in its own bytes, in order, as pack_chunk lays them out
        series = {f"|m{i}": {"values": {"__nd": ["<f8", 8 * i, 1]}, "rollup": False} for i in range(N_SERIES)}
        at = 8 * N_SERIES
        axes = {"steps": {"__nd": ["<i8", at, N_POINTS]}, "times": {"__nd": ["<i8", at + 8 * N_POINTS, N_POINTS]}}
        record = _series_record(_run_chunk(series, axes=axes), bytes(at + 16 * N_POINTS))
    pipe = Pipeline(WorkerOptions(index=False))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="series"):  # the runtime dead-letters the chunk
            pipe.series(record, {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * len(record), f"a {len(record)} byte record peaked at {peak} bytes"


def _span_block(tr: str, durations: list[int]) -> bytes:
    n, now = len(durations), S.now_us()
    block = {
        "block_id": "sb", "trace_id": tr, "service": "s", "service_version": None, "environment": None,
        "host": None, "pid": None, "run_id": None, "sampled": True, "labels": {}, "time": [now] * n,
        "span_id": [S.span_id() for _ in range(n)], "parent_span_id": [], "span_index": list(range(n)),
        "start_time": [now] * n, "duration_us": durations, "name": ["a"], "name_index": [0] * n,
        "kind": ["internal"], "kind_index": [0] * n, "status": ["ok"], "status_index": [0] * n,
        "error_type": [], "error_message": [], "attributes": {},
    }  # fmt: skip
    return AvroSerializer("aitrace.SpanBlock")(block)


@pytest.mark.parametrize("path", ["event columns", "event dicts", "span block"])
def test_a_span_ending_past_any_date_is_dead_lettered_and_its_trace_still_indexed(path: str) -> None:
    # start + duration_us (2**62 - 1: 146,000 years) was taken as the trace's end: its document could
    # not be built (DocumentError: date value out of range), so that record and every later record
    # of the trace failed whole and were dead-lettered, their events never indexed. (No more than
    # that: the token walks read 9-byte varints only, and each path's own check is tested.)
    tr, huge = S.trace_id(), 2**62 - 1
    if path == "span block":
        first = _span_block(tr, [5, huge])
    else:
        message = "ascii" if path == "event columns" else "n\u00e4in"  # the column walk takes ASCII only
        events = [S.event(S.log("info", message), trace=tr), S.event(S.span("root", S.now_us(), huge), trace=tr)]
        first = S.encode(S.batch(events))
    pipe = Pipeline(WorkerOptions(index=True))
    traces: dict[str, Any] = {}
    out = _process(pipe, first, traces)
    [letter] = out.dead_letters
    assert (letter.reason, letter.rejected) == ("bad-time", ("event:1",))
    later = _process(pipe, S.encode(S.batch([S.event(S.log("error", "later"), trace=tr)])), traces, 1)
    assert later.dead_letters == [] and sum("-events-" in a["_index"] for a in later.actions) == 1
    assert traces[tr]["end"] <= S.now_us()


def test_an_event_too_large_to_index_is_dead_lettered_and_the_rest_of_its_batch_indexed() -> None:
    # A latency of 1e308 ms is a finite double that passes decoding; its document's event.duration
    # (int(latency * 1e6)) raised OverflowError out of process_record: the whole batch failed.
    tr = S.trace_id()
    events = [S.event(S.log("info", "kept"), trace=tr), S.event(S.inference("r", "m", 1e308), trace=tr)]
    pipe = Pipeline(WorkerOptions(index=True))
    out = _process(pipe, S.encode(S.batch(events)), {})
    [letter] = out.dead_letters
    assert letter.reason == "unindexable" and "malformed aitrace.InferenceRecord" in letter.detail
    assert [a["_source"]["message"] for a in out.actions if "-events-" in a["_index"]] == ["kept"]
    [(key, chunk)] = out.chunks  # the model's series still get the record: its latency is data
    assert key == "model/m" and pipe.series(chunk, {}) is not None


@pytest.mark.parametrize("kind", ["aitrace.Trace", "aitrace.Alert"])
def test_an_event_carrying_the_workers_own_output_is_dead_lettered(kind: str) -> None:
    # Indexed as it came: a Trace payload replaced the document of any trace id it named (here one
    # the worker assembled), an Alert forged any alert id; each in the daily index of its own time.
    tr, victim = S.trace_id(), S.trace_id()
    far = 253_000_000_000_000_000  # year 9987
    trace = {"trace_id": victim, "root_span_id": None, "root_name": "forged", "services": [], "start_time": far,
             "end_time": far, "duration_us": 0, "span_count": 0, "event_count": 0, "complete": True,
             "has_error": False, "first_error": None, "critical_path": [], "spans": []}  # fmt: skip
    alert = {"alert_id": "a1", "version": 9, "kind": "anomaly", "detector": "nan", "severity": "critical",
             "state": "resolved", "title": "forged", "series": "s", "service": None, "run_id": None, "model": None,
             "feature": None, "trace_id": None, "step": None, "first_seen": far, "last_seen": far, "score": 1.0,
             "statistic": None, "threshold": 0.9, "pvalue": None, "evidence": [], "details": {}}  # fmt: skip
    forged = S.event((kind, trace if kind == "aitrace.Trace" else alert), trace=tr)
    out = _process(
        Pipeline(WorkerOptions(index=True)), S.encode(S.batch([S.event(S.log("info", "x"), trace=tr), forged])), {}
    )
    [letter] = out.dead_letters
    assert (letter.reason, letter.rejected) == ("unexpected-payload", ("event:1",))
    assert [a["_index"].split("-")[1] for a in out.actions] == ["events"]  # the log only


def test_a_rolled_up_series_whose_sum_overflows_keeps_working() -> None:
    # Two points of 1e308 in one rollup window: the window's sum was Inf, the table's JSON made it
    # null, and every later chunk of the run raised TypeError (None + float) on the series side.
    tr, t0 = S.trace_id(), S.now_us() - 60_000_000
    pipe = Pipeline(WorkerOptions(index=True))
    table: dict[str, Any] = {}
    docs = []
    for k, values in enumerate([[1e308, 1e308, 1.0], [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]):
        block = S.metric_block(trace=tr, run_id="r", start_step=3 * k, series={"loss": values}, start_us=t0 + 3000 * k)
        out = _process(pipe, S.encode(S.batch([], [block])), {}, k)
        staged = Staged(table)  # as in the worker: state read back from JSON
        staged.partition = 0
        for _, chunk in out.chunks:
            docs += pipe.series(chunk, staged)[1]
        staged.commit()
    win = table["run/r"]["run/r/train/loss"]["win"]
    assert (win["count"], win["sum"], win["last"]) == (9, None, 6.0)  # every point counted
    assert docs and docs[0]["_source"]["aitrace"]["metric"]["count"] == 3  # the first window, as it was


@pytest.mark.parametrize(
    "histogram",
    [([0.0, 1.0], [5, 5]), ([2.0, 1.0, 0.0], [5, 5]), ([0.0, float("nan"), 2.0], [5, 5]), ([0.0, 1.0, 2.0], [-5, 5])],
)
def test_a_data_batch_with_a_malformed_histogram_is_dead_lettered_and_later_batches_checked(
    histogram: tuple[list[float], list[int]],
) -> None:
    # The drift test raised ValueError on it for the whole chunk; as a dataset's first batch (its
    # reference) it failed every later batch of the dataset and stage, for good.
    tr = S.trace_id()
    pipe = Pipeline(WorkerOptions(index=False))
    table: dict[str, Any] = {}
    good = {"histogram_edges": [0.0, 1.0, 2.0], "histogram_counts": [5, 5]}
    bad = {"histogram_edges": histogram[0], "histogram_counts": histogram[1]}
    letters = []
    for offset, extra in enumerate([bad, good, good, {**good, "histogram_counts": [10, 0]}]):
        stats = S.data_stats("ds", "st", [{**S.feature("x", mean=1.0), **extra}], {})
        out = _process(pipe, S.encode(S.batch([S.event(stats, trace=tr)])), {}, offset)
        letters += [letter.reason for letter in out.dead_letters]
        staged = Staged(table)
        staged.partition = 0
        for _, chunk in out.chunks:
            pipe.series(chunk, staged)
        staged.commit()
    assert letters == ["bad-value"]
    assert table["data/ds/st"]["data/ds/st/x"]["applied"] == {"t:0": 3}  # the later batches were checked


def test_a_model_whose_hourly_latency_sum_overflows_keeps_working() -> None:
    # Latencies of 1e308 ms (finite, so accepted) made the daily-cycle model's open hour sum Inf;
    # the table's JSON made it null and CycleModel.from_state raised TypeError on every later chunk
    # of the model: its latency, error-rate, drift and label checks were dead-lettered for good.
    pipe = Pipeline(WorkerOptions(index=False))
    table: dict[str, Any] = {}
    applied = []
    for offset, latency in enumerate([1e308, 1e308, 5.0, 6.0]):
        tr = S.trace_id()
        out = _process(pipe, S.encode(S.batch([S.event(S.inference("r", "m", latency), trace=tr)])), {}, offset)
        staged = Staged(table)  # as in the worker: state read back from JSON
        staged.partition = 0
        for _, chunk in out.chunks:
            pipe.series(chunk, staged)
        staged.commit()
        applied.append(table["model/m"]["model/m/latency"]["applied"]["t:0"])
    assert applied == [0, 1, 2, 3]


@pytest.mark.parametrize("variance", [1e308, 1e-170])
def test_welch_t_on_variances_near_the_float_limits(variance: float) -> None:
    # (a + b) ** 2 overflowed (df NaN: t_pvalue raised ValueError) or a * a underflowed
    # (ZeroDivisionError); a data batch of such a variance as reference failed every later batch.
    t, df, p = welch_t(10, 0.0, variance, 20, 1.0, variance)
    assert math.isfinite(t) and df == pytest.approx(welch_t(10, 0.0, 1.0, 20, 1.0, 1.0)[1]) and 0.0 <= p <= 1.0
    pipe = Pipeline(WorkerOptions(index=False))
    table: dict[str, Any] = {}
    tr = S.trace_id()
    for offset in range(3):
        stats = S.data_stats("ds", "st", [S.feature("x", mean=1.0, variance=variance)], {})
        out = _process(pipe, S.encode(S.batch([S.event(stats, trace=tr)])), {}, offset)
        staged = Staged(table)
        staged.partition = 0
        for _, chunk in out.chunks:
            pipe.series(chunk, staged)
        staged.commit()
    assert table["data/ds/st"]["data/ds/st/x"]["applied"] == {"t:0": 2}


@pytest.mark.parametrize("other", ["train", "training", ""])
def test_one_metric_under_the_default_split_and_train_in_one_record_is_not_lost_silently(other: str) -> None:
    # Both were keyed run/<run>/train/<metric> on the series side (and "training" merged with them in
    # the run checks): the second series of the chunk was skipped as a redelivery of the first, its
    # NaN never told and nothing dead-lettered. Now the clash is dead-lettered, the rest detected.
    tr = S.trace_id()
    default = S.metric_block(trace=tr, run_id="r", start_step=0, series={"loss": [1.0, 0.9, 0.8]})
    clash = S.metric_block(
        trace=tr, run_id="r", start_step=0, split=other, series={"loss": [1.0, np.nan, 0.8], "acc": [np.nan] * 3}
    )
    pipe = Pipeline(WorkerOptions(index=False))
    out = _process(pipe, S.encode(S.batch([], [default, clash])), {})
    if other == "":  # the same split as None: one series, no clash
        assert out.dead_letters == []
        return
    [letter] = out.dead_letters
    assert letter.reason == "series-clash" and f"'loss' of split {other!r}" in letter.detail
    assert pipe.dlq.snapshot() == {"series-clash": 1}
    table: dict[str, Any] = {}
    alerts = [a for _, chunk in out.chunks for a in pipe.series(chunk, table)[0]]
    assert [(a["detector"], a["series"]) for a in alerts] == [("nan", f"run/r/{other}/acc")]  # the rest: detected
    assert pipe.counters["duplicates"] == 0  # nothing taken for a redelivery


def _series_of(pipe: Pipeline, out: RecordOutput, table: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for _, chunk in out.chunks for a in pipe.series(chunk, table)[0]]


@pytest.mark.parametrize("kind", ["run", "model", "data"])
def test_an_entity_tracks_a_bounded_number_of_series_and_counts_the_rest(
    kind: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run's or a model's series state had no bound: one 0.9 MB block of 50,000 metric names
    # cost 4.2 s and 28 MB of state. Past the cap new names are refused (counted, logged with the
    # entity), while the series already tracked go on being checked.
    pipe = Pipeline(WorkerOptions(index=False))
    cap, tr = pipe.detection.series_cap(f"{kind}/x"), S.trace_id()
    monkeypatch.setattr(pipeline.time, "monotonic", lambda: 1000.0)  # the log's clock stands still

    def record(names: list[str], value: float) -> bytes:
        if kind == "run":
            blocks = [S.metric_block(trace=tr, run_id="r", start_step=0, series={n: [value] for n in names})]
            return S.encode(S.batch([], blocks))
        if kind == "model":
            features = {n: value for n in names}
            return S.encode(S.batch([S.event(S.inference("q", "m", 5.0, features=features), trace=tr)]))
        stats = S.data_stats("ds", "st", [S.feature(n, mean=value) for n in names], {})
        return S.encode(S.batch([S.event(stats, trace=tr)]))

    entity, prefix = {"run": ("run/r", "run/r/train/"), "model": ("model/m", "model/m/feature/"),
                      "data": ("data/ds/st", "data/ds/st/")}[kind]  # fmt: skip
    table: dict[str, Any] = {}
    first = [f"a{i}" for i in range(cap + 100)]
    _series_of(pipe, _process(pipe, record(first, 1.0), {}, 0), table)
    tracked = [k for k in table[entity] if k.startswith(prefix)]
    assert len(table[entity]) <= cap + 8 and len(tracked) <= cap  # a few of the entity's own, at most
    assert tracked == [prefix + n for n in first[: len(tracked)]]  # the first ones met
    refused = pipe.counters["series_refused"]
    assert refused == len(first) - len(tracked) and f"series_refused={refused}" in pipe.stats_line()
    assert [r.getMessage().split(" ")[:3] for r in caplog.records] == [[entity, "tracks", "the"]]
    # later: a new name is refused, the tracked ones are still checked
    _series_of(pipe, _process(pipe, record(["a0", "b0"], 2.0), {}, 1), table)
    assert table[entity][prefix + "a0"]["applied"] == {"t:0": 1} and prefix + "b0" not in table[entity]
    assert pipe.counters["series_refused"] == refused + 1
    assert len(caplog.records) == 1  # counted, but logged once a minute per entity at most


def test_an_entity_at_its_caps_fits_the_largest_record_the_worker_writes() -> None:
    # An entity's state is one table value, rewritten per chunk: past the producer's limit every
    # changelog write of it fails. Measured here per series at full drift windows, then scaled to
    # the caps: a model of max_model_series features and two full waiting rooms, a run of max_series.
    pipe = Pipeline(WorkerOptions(index=False))
    n, tr = 16, S.trace_id()
    assert pipe.detection.drift_window == 200
    table: dict[str, Any] = {}
    rng = np.random.default_rng(0)  # values of full precision: the longest JSON numbers
    longest = pipe.detection.max_key_chars  # names as long as a series key may be: keys are kept too
    names = [f"f{k}".ljust(longest - len("model/m/feature/"), "x") for k in range(n)]
    for r in range(7):  # 7 x 57 = 2 x 200 - 1 requests: a full reference and a current window one short
        features = [dict(zip(names, rng.normal(size=n), strict=True)) for _ in range(57)]
        requests = [S.inference(f"q{r}-{j}", "m", rng.gamma(4, 5), features=f) for j, f in enumerate(features)]
        events = [S.event(req, trace=tr, time_us=S.now_us() + j) for j, req in enumerate(requests)]
        _series_of(pipe, _process(pipe, S.encode(S.batch(events)), {}, r), table)
    per_feature = max(len(k) + len(orjson.dumps(v)) for k, v in table["model/m"].items() if "/feature/" in k)
    cfg = pipe.detection
    assert per_feature * cfg.max_model_series + 2 * cfg.pending_bytes < 0.9 * MAX_RECORD_BYTES, per_feature
    names = [f"m{k}".ljust(longest - len("run/r/train/"), "x") for k in range(n)]
    block = S.metric_block(trace=tr, run_id="r", start_step=0, series={name: rng.normal(size=600) for name in names})
    _series_of(pipe, _process(pipe, S.encode(S.batch([], [block])), {}, 99), table)
    per_series = max(len(k) + len(orjson.dumps(v)) for k, v in table["run/r"].items() if "/train/" in k)
    assert per_series * cfg.max_series < 0.9 * MAX_RECORD_BYTES, per_series


def test_late_records_to_a_closed_trace_rebuild_it_once_per_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every late record to a closed trace rebuilt its whole document (build_trace: 2,000 spans
    # sorted, the critical path walked, a dict per span): a stream of one-line late records cost
    # the trace's size each. Now a late record only marks the trace, and the tick rebuilds it once.
    tr, root = S.trace_id(), S.span_id()
    pipe = Pipeline(WorkerOptions(index=True))
    n = pipe.correlation.max_spans
    spans = [S.event(S.span(f"s{i}", S.now_us(), 5), trace=tr, parent=root) for i in range(n - 1)]
    spans.append(S.event(S.span("root", S.now_us(), 50), trace=tr, span=root))
    traces: dict[str, Any] = {}
    out = pipe.process_record(S.encode(S.batch(spans)), key=None, topic="t", partition=0, offset=0, traces=traces,
                              now=100.0)  # fmt: skip
    assert sum("-traces-" in a["_index"] for a in out.actions) == 1  # closed by its root's end
    builds = []
    real = correlate.build_trace
    monkeypatch.setattr(correlate, "build_trace", lambda state: builds.append(1) or real(state))
    lines = [S.log("error" if i == 0 else "info", f"late {i}") for i in range(50)]
    late = [S.encode(S.batch([S.event(line, trace=tr)])) for line in lines]
    for offset, record in enumerate(late, 1):
        out = pipe.process_record(record, key=None, topic="t", partition=0, offset=offset, traces=traces, now=101.0)
        assert not any("-traces-" in a["_index"] for a in out.actions)
    assert builds == []
    [doc] = pipe.tick(0, traces, now=102.0)
    trace = doc["_source"]["aitrace"]["trace"]
    assert builds == [1] and doc["_id"] == tr
    assert (trace["event_count"], trace["span_count"], trace["complete"]) == (n + 50, n, True)
    assert trace["has_error"] and "late 0" in trace["first_error"]  # the late records are in it
    assert pipe.tick(0, traces, now=103.0) == [] and builds == [1]  # nothing new: nothing rebuilt


@pytest.mark.parametrize(
    ("room", "huge"), [("wait", "label"), ("wait", "request_id"), ("pred", "prediction"), ("pred", "request_id")]
)
def test_the_label_and_prediction_waiting_rooms_are_capped_by_bytes(room: str, huge: str) -> None:
    # Both rooms kept their newest 5,000 entries whatever their size: labels (or predictions, or
    # request ids) of 64 KB that never meet their partner made a model's state 320 MB, rewritten on
    # every chunk. Now the oldest go first past pending_bytes, counted; the newest still join.
    pipe = Pipeline(WorkerOptions(index=False))
    cap, big = pipe.detection.pending_bytes, "x" * 65_536
    kept_pred = S.event(S.inference("kept", "m", 5.0, prediction="1"), trace=S.trace_id())
    table: dict[str, Any] = {}
    n = 2 * cap // len(big) // 10  # per record, 10 records: twice what the room holds
    ids = [f"r{offset}-{i}" + (big if huge == "request_id" else "") for offset in range(10) for i in range(n)]
    value = big if huge != "request_id" else "1"

    def partner(request_id: str, which: str) -> dict[str, Any]:
        if which == "wait":
            return S.event(S.ground_truth(request_id, "m", value), trace=S.trace_id())
        return S.event(S.inference(request_id, "m", 5.0, prediction=value), trace=S.trace_id())

    for offset in range(10):
        events = [kept_pred] * (offset == 0) + [partner(r, room) for r in ids[offset * n : (offset + 1) * n]]
        _series_of(pipe, _process(pipe, S.encode(S.batch(events)), {}, offset), table)
        state = table["model/m"]["model/m/labels"]
        assert len(orjson.dumps(state[room])) <= cap  # after every record
    sent = len(ids) + (room == "pred")  # and the kept prediction, the oldest of its room
    assert pipe.counters["pending_evicted"] == sent - len(state[room]) > 0
    assert ids[-1] in state[room] and ids[0] not in state[room]  # the oldest went first
    # the newest still join their partner
    out = _process(pipe, S.encode(S.batch([partner(ids[-1], "pred" if room == "wait" else "wait")])), {}, 10)
    labels = [a for _, chunk in out.chunks for a in pipe.series(chunk, table)[1]]
    [doc] = [a["_source"]["aitrace"]["ground_truth"] for a in labels if a["_source"]["aitrace"].get("ground_truth")]
    assert doc["correct"] is True and doc["prediction"] == value
    if room == "wait":
        assert "kept" in table["model/m"]["model/m/labels"]["pred"]  # the other room is left alone


@pytest.mark.parametrize("first, second", [(("x", "a/b"), ("x/a", "b")), (("x|a", "b"), ("x", "a|b"))])
def test_series_whose_names_meet_in_their_detector_key_are_dead_lettered_not_merged(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    # run/<run>/<split>/<name> is one key for both; "x|a" + "b" and "x" + "a|b" were even one series
    # of the chunk (<split>|<name>), their points concatenated.
    tr = S.trace_id()
    blocks = [
        S.metric_block(trace=tr, run_id="r", start_step=0, split=split, series={name: [1.0, 0.9, value]})
        for (split, name), value in ((first, 0.8), (second, np.nan))
    ]
    pipe = Pipeline(WorkerOptions(index=False))
    out = _process(pipe, S.encode(S.batch([], blocks)), {})
    [letter] = out.dead_letters
    assert letter.reason == "series-clash" and f"{second[1]!r} of split {second[0]!r}" in letter.detail
    table: dict[str, Any] = {}
    assert _series_of(pipe, out, table) == []  # the NaN is the refused series'
    [values] = [s["values"] for _, c in out.chunks for s in restore_axes(unpack_chunk(c))["series"].values()]
    assert len(values) == 3  # the first series alone


@pytest.mark.parametrize("names", [["__label__", "x"], ["x", "y", "x"]])
def test_a_data_batch_whose_features_meet_in_one_series_is_dead_lettered(names: list[str]) -> None:
    # A feature named __label__ had the key of the stage's label series, a feature named twice its
    # own key twice: the second series of the chunk was skipped as a redelivery of the first, so
    # here every batch's unseen label went untold, silently. The next batch is still checked.
    tr = S.trace_id()
    pipe = Pipeline(WorkerOptions(index=False))
    table: dict[str, Any] = {}
    letters, alerts = [], []
    for offset, (features, counts) in enumerate([(names, {"a": 10}), (["x"], {"a": 10}), (["x"], {"zzz": 50})]):
        stats = S.data_stats("ds", "st", [S.feature(n, mean=1.0) for n in features], counts)
        log = S.event(S.log("info", "kept"), trace=tr)
        out = _process(pipe, S.encode(S.batch([log, S.event(stats, trace=tr)])), {}, offset)
        letters += [(letter.reason, letter.rejected) for letter in out.dead_letters]
        alerts += _series_of(pipe, out, table)
    assert letters == [("series-clash", ("event:1",))]
    assert "unseen_label" in [a["detector"] for a in alerts] and pipe.counters["duplicates"] == 0


LONG = 100_000  # characters: a name no client means, that any client can send


def _state_bytes(value: Any) -> int:
    return len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY))


def test_series_named_past_the_key_limit_are_refused_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    # A series' key is kept in its entity's value, rewritten per chunk: 10 metric names of 100 KB
    # made a 2 MB value, so at the caps no changelog record could hold one.
    pipe = Pipeline(WorkerOptions(index=False))
    tr, table = S.trace_id(), {}
    names = [f"long{i}" + "x" * LONG for i in range(10)]
    block = S.metric_block(trace=tr, run_id="r", start_step=0, series={n: [1.0, 2.0] for n in [*names, "loss"]})
    _series_of(pipe, _process(pipe, S.encode(S.batch([], [block])), {}, 0), table)
    assert [k for k in table["run/r"] if "/train/" in k] == ["run/r/train/loss"] and _state_bytes(table) < 20_000
    assert pipe.counters["series_refused"] == 10
    [line] = [r.getMessage() for r in caplog.records]
    assert "refused 10 series named past 1024 characters" in line and len(line) < 400, line[:400]
    features = [S.feature(n, mean=1.0) for n in [names[0], "age"]]
    _series_of(
        pipe,
        _process(pipe, S.encode(S.batch([S.event(S.data_stats("ds", "st", features, {}), trace=tr)])), {}, 1),
        table,
    )
    assert list(table["data/ds/st"]) == ["data/ds/st/age"] and pipe.counters["series_refused"] == 11


@pytest.mark.parametrize("kind", ["model", "run"])
def test_an_entity_named_past_the_limit_is_refused_whole(kind: str) -> None:
    # A model's fixed series (latency, error rate...) are not admitted one by one: a 1 MB model
    # name put 1 MB in each of their keys, twice over.
    pipe = Pipeline(WorkerOptions(index=False))
    tr, table, name = S.trace_id(), {}, "m" * LONG
    if kind == "model":
        requests = [S.event(S.inference(f"q{i}", name, 5.0, features={"a": 1.0}), trace=tr) for i in range(5)]
        record = S.encode(S.batch(requests))
    else:
        record = S.encode(S.batch([], [S.metric_block(trace=tr, run_id=name, start_step=0, series={"loss": [1.0]})]))
    out = _process(pipe, record, {}, 0)
    assert out.chunks and not out.dead_letters  # its events are indexed as they came
    _series_of(pipe, out, table)
    assert table == {} and pipe.counters["series_refused"] == 1


def test_a_long_batch_id_is_kept_as_a_digest_and_still_tells_a_retry() -> None:
    # The retry key is kept in every state a record changes (32 recent per series and trace):
    # a 1 MB batch id took 1 MB in each, and 32 MB after 32 records.
    pipe = Pipeline(WorkerOptions(index=False))
    tr, traces, table = S.trace_id(), {}, {}
    long_id = "b" * 1_000_000

    def record(offset: int) -> bytes:
        block = S.metric_block(trace=tr, run_id="r", start_step=offset, series={"loss": [1.0]})
        return S.encode(S.batch([S.event(S.log("info", "x"), trace=tr)], [block], batch_id=long_id + str(offset)))

    records = [record(offset) for offset in range(3)]
    for offset, value in enumerate(records):
        _series_of(pipe, _process(pipe, value, traces, offset), table)
    assert _state_bytes(traces) < 20_000 and _state_bytes(table) < 20_000
    # the same bytes at a later offset: a producer's retry, on both sides
    _series_of(pipe, _process(pipe, records[2], traces, 7), table)
    assert traces[tr]["events"] == 6 and table["run/r"]["run/r/train/loss"]["applied"] == {"t:0": 2}
    assert pipe.counters["duplicates"] >= 2


def test_a_trace_keeps_its_names_and_first_error_clipped() -> None:
    # 2,000 spans are kept per trace, each with its name and service: names of 100 KB made a
    # trace state of hundreds of MB. The events' own documents keep the names whole.
    pipe = Pipeline(WorkerOptions(index=False))
    tr, traces, t0 = S.trace_id(), {}, S.now_us()
    spans = [S.event(S.span(f"{i}" + "n" * LONG, t0, 10), trace=tr, service="s" * LONG, time_us=t0) for i in range(20)]
    spans.append(S.event(S.span("root", t0, 50, status="error", error="e" * 1_000_000), trace=tr, time_us=t0))
    _process(pipe, S.encode(S.batch(spans)), traces, 0)
    state = traces[tr]
    assert _state_bytes(state) < 20 * 2 * 1_100 + 10_000
    assert len(state["error"][1]) == 4_096 and state["services"] == ["s" * 1_024, "svc"]
    assert {len(s[2]) for s in state["spans"].values()} == {1_024, 4}


@pytest.mark.parametrize(
    "extra",
    [
        {"categories": {"c" * 2_000: 3, "a": 1}},
        {"histogram_edges": list(range(5_002)), "histogram_counts": [1] * 5_001},
        {"class_counts": {"k" * 2_000: 3}},
    ],
    ids=["long-category", "many-bins", "long-class"],
)
def test_a_data_batch_past_what_a_reference_keeps_is_dead_lettered(extra: dict[str, Any]) -> None:
    # A stage's first batch is its reference, kept in its state: a few categories of 1 MB (or a
    # histogram of millions of bins) made a value no changelog record could hold.
    pipe = Pipeline(WorkerOptions(index=False))
    tr, table = S.trace_id(), {}
    counts = extra.get("class_counts", {})
    feature = {**S.feature("x", mean=1.0), **{k: v for k, v in extra.items() if k != "class_counts"}}
    bad = S.event(S.data_stats("ds", "st", [feature], counts), trace=tr)
    good = S.event(S.data_stats("ds", "st", [S.feature("y", mean=1.0)], {}), trace=tr)
    out = _process(pipe, S.encode(S.batch([bad, good])), {}, 0)
    [letter] = out.dead_letters
    assert letter.reason == "bad-value" and ("characters" in letter.detail or "bins" in letter.detail), letter.detail
    _series_of(pipe, out, table)
    assert list(table["data/ds/st"]) == ["data/ds/st/y"]  # the rest of the record is checked


def test_a_data_stage_past_its_state_budget_leaves_the_batch_out_and_stays_as_it_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each feature keeps its reference's categories (1,000 names of up to 1,024 characters): within
    # the per-name bounds, 2,048 such features are still GBs. A batch that would take the stage past
    # its budget is left out (counted, logged) and the stage's state is the one before it.
    pipe = Pipeline(WorkerOptions(index=False))
    pipe.detection = dataclasses.replace(pipe.detection, max_data_state_bytes=200_000)
    tr, table = S.trace_id(), {}

    def send(name: str, offset: int) -> None:
        categories = {f"{name}-{k}".ljust(500, "c"): 1 for k in range(100)}  # a 50 KB reference
        stats = S.data_stats("ds", "st", [S.feature(name, mean=1.0, categories=categories)], {})
        staged = Staged(table)
        _series_of(pipe, _process(pipe, S.encode(S.batch([S.event(stats, trace=tr)])), {}, offset), staged)
        staged.commit()

    for offset in range(6):
        send(f"f{offset}", offset)
    kept = [k.rsplit("/", 1)[1] for k in table["data/ds/st"]]
    assert kept == ["f0", "f1", "f2"] and _state_bytes(table["data/ds/st"]) <= 200_000, kept
    assert pipe.counters["series_refused"] == 3 and "would keep more than 200000 bytes" in caplog.text
    send("f0", 6)  # a tracked feature goes on being checked
    assert table["data/ds/st"]["data/ds/st/f0"]["applied"] == {"t:0": 6}


@pytest.mark.parametrize("name", ["__nd", "__dict", "x"])
def test_a_model_whose_one_feature_is_named_as_the_chunk_format_s_markers_is_still_detected(name: str) -> None:
    # A dict of a chunk whose only key was "__nd" read back as an array reference: a block whose one feature
    # was named so made a model chunk that raised ValueError on the series side (quarantined, the block's
    # latencies and errors lost with it).
    n = 40
    rows = {"span_index": [0] * n, "model_name_index": [0] * n, "status_index": [0] * n, "prediction_index": [0] * n}
    block = inference_blocks._block(
        time=[S.now_us() + i for i in range(n)],
        request_id=[f"r{i}" for i in range(n)],
        latency_ms=[1.0] * n,
        features={name: [float(i) for i in range(n)]},
        **rows,
    )
    pipe = Pipeline(WorkerOptions(index=False))
    out = _process(pipe, inference_blocks._encoded(block), {})
    [(key, value)] = out.chunks
    assert not out.dead_letters and key == "model/m"
    assert unpack_chunk(value)["features"][name].tolist() == [float(i) for i in range(n)]
    pipe.series(value, {})


@pytest.mark.parametrize("inner", [{"__nd": [1, 2, 3]}, {"__nd": {"__nd": 5}}, {"__dict": {"a": 1}}, {"__dict": 2}])
def test_a_chunk_s_dicts_read_back_as_written_whatever_their_keys(inner: dict[str, Any]) -> None:
    chunk = {"kind": "model", "a": inner, "b": {"c": inner, "d": np.arange(3.0)}, "e": {"__nd": np.arange(2)}}
    back = unpack_chunk(pack_chunk(chunk))
    assert (back["a"], back["b"]["c"], back["b"]["d"].tolist(), back["e"]["__nd"].tolist()) == (
        inner,
        inner,
        [0.0, 1.0, 2.0],
        [0, 1],
    )
