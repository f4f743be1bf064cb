"""Trace assembly: span tree, critical path, close on root end or idle timeout, late events, eviction."""

from __future__ import annotations

import synth as S
from aitrace.processors import correlate as C
from aitrace.schemas.metric_block import MetricBlock

CFG = C.CorrelationConfig(idle_timeout_s=30, grace_s=60)


def _apply(state: dict, events: list, offset: int, now: float = 0.0, blocks: list = ()) -> dict | None:
    return C.apply_record(
        state, events, [MetricBlock.from_record(b) for b in blocks], source="t:0", offset=offset, now=now, config=CFG
    )


def _three_service_trace() -> tuple[str, list[dict], dict[str, str]]:
    tr = S.trace_id()
    ids = {n: S.span_id() for n in ("root", "prep", "model", "post")}
    t = 1_800_000_000_000_000
    events = [
        S.event(S.span("prep", t + 10, 100), trace=tr, span=ids["prep"], parent=ids["root"], service="pipeline"),
        S.event(
            S.span("model", t + 120, 500, "error", "CUDA OOM"),
            trace=tr,
            span=ids["model"],
            parent=ids["root"],
            service="model-server",
        ),
        S.event(S.span("post", t + 130, 50), trace=tr, span=ids["post"], parent=ids["model"], service="post"),
    ]
    root = S.event(S.span("request", t, 700), trace=tr, span=ids["root"], service="api")
    return tr, [*events, root], ids


def test_root_end_closes_a_complete_trace_with_tree_and_critical_path() -> None:
    tr, events, ids = _three_service_trace()
    state = C.new_state(tr, 0)
    assert _apply(state, events[:3], 0) is None  # open until the root ends
    trace = _apply(state, events[3:], 1)
    assert trace is not None and trace["complete"] is True
    assert trace["services"] == ["pipeline", "model-server", "post", "api"]
    assert trace["root_span_id"] == ids["root"] and trace["root_name"] == "request"
    assert trace["duration_us"] == 700 and trace["span_count"] == 4 and trace["event_count"] == 4
    # the model span ends last among the root's children; post is its only child
    assert trace["critical_path"] == [ids["root"], ids["model"], ids["post"]]
    assert trace["has_error"] and trace["first_error"] == "model-server: model: CUDA OOM"
    assert trace["spans"][0]["span_id"] == ids["root"]  # spans ordered by start


def test_idle_trace_closes_incomplete_and_a_late_root_completes_the_same_trace() -> None:
    tr, events, ids = _three_service_trace()
    state = C.new_state(tr, 0)
    _apply(state, events[:3], 0, now=100.0)
    assert C.on_tick(state, now=120.0, config=CFG) == ("keep", None)
    verdict, trace = C.on_tick(state, now=131.0, config=CFG)
    assert verdict == "close" and trace["complete"] is False and trace["root_span_id"] is None
    assert trace["critical_path"] == [ids["prep"]]  # no root known: starts at the earliest orphan span
    late = _apply(state, events[3:], 1, now=140.0)
    assert late is not None and late["trace_id"] == tr and late["complete"] is True


def test_closed_trace_is_evicted_after_the_grace_period() -> None:
    tr, events, _ = _three_service_trace()
    state = C.new_state(tr, 0)
    _apply(state, events, 0, now=0.0)
    assert C.on_tick(state, now=59.0, config=CFG) == ("keep", None)
    assert C.on_tick(state, now=61.0, config=CFG) == ("evict", None)


def test_redelivery_is_recognised_by_offset_and_by_batch_id() -> None:
    state = C.new_state(S.trace_id(), 0)
    C.apply_record(state, [], [], source="a:0", offset=4, now=0, config=CFG, batch_id="b1")
    assert C.already_applied(state, "a:0", 4)
    assert C.already_applied(state, "a:0", 3)
    assert not C.already_applied(state, "a:0", 5)
    assert not C.already_applied(state, "b:0", 0)  # offsets are per topic
    assert not C.already_applied(state, "a:1", 0)  # and per partition
    assert C.already_applied(state, "a:0", 9, "b1")


def test_errors_from_logs_inference_and_failed_runs_pick_the_earliest() -> None:
    tr = S.trace_id()
    state = C.new_state(tr, 0)
    t = 1_800_000_000_000_000
    _apply(
        state,
        [
            S.event(S.inference("r", "m", 3.0, status="error"), trace=tr, time_us=t + 5),
            S.event(S.log("error", "disk full"), trace=tr, time_us=t + 1, service="io"),
        ],
        0,
    )
    assert C.build_trace(state)["first_error"] == "io: ERROR: disk full"


def test_metric_blocks_count_their_points_and_widen_the_trace() -> None:
    tr = S.trace_id()
    state = C.new_state(tr, 0)
    import numpy as np

    block = S.metric_block(
        trace=tr, run_id="r", start_step=0, series={"loss": np.ones(50)}, start_us=1_800_000_000_000_000
    )
    _apply(state, [], 0, blocks=[block])
    trace = C.build_trace(state)
    assert trace["event_count"] == 50 and trace["duration_us"] == 49 * 1000 and trace["services"] == ["trainer"]


def test_spans_beyond_the_bound_are_counted_not_kept() -> None:
    tr = S.trace_id()
    cfg = C.CorrelationConfig(max_spans=3)
    state = C.new_state(tr, 0)
    root = S.span_id()
    events = [S.event(S.span(f"s{i}", 1_800_000_000_000_000 + i, 1), trace=tr, parent=root) for i in range(5)]
    C.apply_record(state, events, [], source="t:0", offset=0, now=0, config=cfg)
    trace = C.build_trace(state)
    assert len(trace["spans"]) == 3 and trace["span_count"] == 5
