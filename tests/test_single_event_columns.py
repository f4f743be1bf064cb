"""Batches of single events kept as the token walk's columns (:mod:`aitrace.processors.event_columns`)
give the worker exactly what their events give it one dict at a time: the same dead letters, documents,
trace states and documents, series chunks (byte for byte), alerts and series states."""

from __future__ import annotations

import math
import random
from typing import Any

import orjson
import pytest
import synth as S
from aitrace.processors import event_columns
from aitrace.processors.decode import RecordDecoder
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline
from test_event_columns_parity import _BREAK, _break

NOW = S.now_us() / 1e6


def _dump(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _inference(rng: random.Random, i: int) -> dict[str, Any]:
    names = ["a", "b", "c"]
    shape = rng.random()
    feats = {k: rng.gauss(0, 1) for k in (names if shape < 0.9 else names[::-1])}
    if shape > 0.95:
        feats.pop("b")
    if rng.random() < 0.03:
        feats["d"] = math.nan
    return S.inference(
        f"q{i}",
        f"m{rng.randrange(3)}",
        rng.gammavariate(4, 5),
        status="error" if rng.random() < 0.1 else "ok",
        confidence=None if rng.random() < 0.3 else rng.random(),
        prediction=None if rng.random() < 0.5 else str(i % 2),
        features=feats,
    )


def _events(rng: random.Random, n: int, same_features: bool = False) -> list[dict[str, Any]]:
    """Inference records of 3 models, logs (some errors, some upper case), spans (some failed, roots),
    in 1 to 3 traces and 2 services, times not in order (equally early errors too)."""
    traces = [S.trace_id() for _ in range(rng.randint(1, 3))]
    roots = {t: S.span_id() for t in traces}
    out = []
    for i in range(n):
        trace = rng.choice(traces)
        t = int(NOW * 1e6) - 10_000 + rng.randrange(0, 50)
        r = rng.random()
        if r < 0.8:
            payload = _inference(rng, i)
            if same_features:
                second = "y" if rng.random() < 0.95 else "yz"  # the same count, a longer name
                payload[1]["features"] = {"x": rng.random(), second: rng.random()}
        elif r < 0.9:
            level = rng.choice(["info", "ERROR", "critical", "debug", "Warning"])
            payload = S.log(level, f"m{i}")
            if rng.random() < 0.5:
                payload[1].update(error_type="ValueError", error_message=None if rng.random() < 0.5 else "bad")
        else:
            failed = rng.random() < 0.3
            error = "boom" if failed and rng.random() < 0.5 else None
            payload = S.span(f"s{i}", t, rng.randrange(0, 50), status="error" if failed else "ok", error=error)
        root = r >= 0.9 and rng.random() < 0.2
        parent = None if root else roots[trace]
        event = S.event(payload, trace=trace, parent=parent, service=rng.choice(["api", "model"]), time_us=t)
        if rng.random() < 0.3:
            event["environment"], event["host"] = "prod", f"h{i % 2}"
        out.append(event)
    return out


def _run(records: list[bytes], index: bool) -> tuple[list[Any], dict[str, Any], dict[str, Any], int]:
    """Everything the worker makes of the records, in order; and how many decoded as event columns."""
    pipe = Pipeline(WorkerOptions(index=index), decoder=RecordDecoder(now_us=lambda: int(NOW * 1e6)))
    traces: dict[str, Any] = {}
    table: dict[str, Any] = {}
    out: list[Any] = []
    as_columns = 0
    for offset, value in enumerate(records):
        result = pipe.process_record(value, key=None, topic="t", partition=0, offset=offset, traces=traces, now=NOW)
        as_columns += bool(result.decoded and result.decoded.event_columns is not None)
        letters = [(letter.reason, letter.detail, letter.rejected) for letter in result.dead_letters]
        out.append((result.events, letters, _dump(result.actions)))
        out.append([(key, chunk) for key, chunk in result.chunks])  # bytes: every array, key and order alike
        for _key, chunk in result.chunks:
            alerts, actions = pipe.series(chunk, table)
            out.append((_dump(alerts), _dump(actions)))
    out.extend(_dump(pipe.tick(0, traces, now=NOW + 3600)))  # close every trace: its document
    return out, traces, table, as_columns


def _compare(records: list[bytes], monkeypatch: pytest.MonkeyPatch, index: bool) -> int:
    """Both paths agree; how many records took the column path."""
    new, new_traces, new_table, as_columns = _run(records, index)
    with monkeypatch.context() as m:
        m.setattr(event_columns, "take", lambda *_a: None)  # the event-by-event path
        old, old_traces, old_table, none = _run(records, index)
    assert none == 0
    assert len(new) == len(old)
    for a, b in zip(new, old, strict=True):
        assert a == b
    assert _dump(new_traces) == _dump(old_traces)
    assert _dump(new_table) == _dump(old_table)
    return as_columns


@pytest.mark.parametrize(("seed", "index"), [(seed, seed % 2 == 1) for seed in range(6)])
def test_valid_batches_as_columns_equal_their_events(seed: int, index: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    records = [S.encode(S.batch(_events(rng, rng.randint(1, 120), same_features=k % 3 == 0))) for k in range(12)]
    assert _compare(records, monkeypatch, index) == len(records)


@pytest.mark.parametrize("seed", range(2))
def test_batches_with_a_bad_event_go_event_by_event_and_reject_the_same(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    records = []
    for field, bad in [
        *_BREAK,
        ("payload.status", "errox"),
        ("span_id", "0123456789abcdeF"),
        ("payload.start_time", 5),
    ]:
        events = _events(rng, 40)
        _break(rng, events, field, bad)
        records.append(S.encode(S.batch(events)))
    assert _compare(records, monkeypatch, index=False) == 0


def test_other_kinds_and_non_ascii_text_go_event_by_event(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    labelled = [*_events(rng, 30), S.event(S.ground_truth("q1", "m1", "1"), trace=S.trace_id(), service="api")]
    accented = _events(rng, 30)
    accented[3]["service"] = "modèle"
    records = [S.encode(S.batch(labelled)), S.encode(S.batch(accented))]
    assert _compare(records, monkeypatch, index=True) == 0


def test_batches_of_one_kind_and_of_many_traces_as_columns_equal_their_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(11)
    start, failed = int(NOW * 1e6) - 5000, S.span("s", int(NOW * 1e6) - 5000, 9, status="error")
    logs = [S.event(S.log("ERROR", f"m{i}"), trace=S.trace_id(), service="api", time_us=start) for i in range(5)]
    spans = [S.event(failed, trace=S.trace_id(), parent=S.span_id(), service="api") for _ in range(3)]
    many = [event for _ in range(40) for event in _events(rng, 2)]  # 40 traces or more: compared as strings
    records = [S.encode(S.batch(events)) for events in (logs, spans, many, _events(rng, 50)[:1])]
    assert _compare(records, monkeypatch, index=False) == len(records)
