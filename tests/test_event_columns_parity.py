"""Batches of single events: checked a field at a time (``block_columns.events_valid``) and cut into
model chunks a column at a time (``chunks._inference_into``), with the same outcome as event by event."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
import synth as S
from aitrace.processors import block_columns
from aitrace.processors.chunks import extract_chunks
from aitrace.processors.decode import RecordDecoder

NOW_US = S.now_us()


def _events(rng: random.Random, n: int, ragged: bool = True) -> list[dict[str, Any]]:
    """Inference records of 3 models (features alike, in another order, some absent if ``ragged``), labels,
    logs, spans."""
    trace, root = S.trace_id(), S.span_id()
    out = []
    names = ["a", "b", "c"]
    for i in range(n):
        t = NOW_US - 10_000 + i
        r = rng.random()
        if r < 0.8:
            feats = {k: rng.gauss(0, 1) for k in (names if rng.random() < 0.9 else names[::-1])}
            if ragged and rng.random() < 0.1:
                feats.pop(rng.choice(names))
            if ragged and rng.random() < 0.05:
                feats["d"] = math.nan
            payload = S.inference(
                f"q{i}",
                f"m{rng.randrange(3)}",
                rng.gammavariate(4, 5),
                status="error" if rng.random() < 0.1 else "ok",
                confidence=None if rng.random() < 0.3 else rng.random(),
                prediction=None if rng.random() < 0.5 else str(i % 2),
                features=feats,
            )
        elif r < 0.85:
            payload = S.ground_truth(f"q{i - 3}", f"m{rng.randrange(3)}", "1")
        elif r < 0.95:
            payload = S.log(rng.choice(["info", "error"]), f"m{i}")
        else:
            payload = S.span(f"s{i}", t, 10)
        out.append(S.event(payload, trace=trace, parent=root, service="svc", time_us=t))
    return out


def _per_event_chunks(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Model chunks as the worker cut them before, one event at a time (main's ``_inference_into``)."""
    chunks: dict[str, Any] = {}
    for event in events:
        kind, p = event["payload"]
        if kind not in ("aitrace.InferenceRecord", "aitrace.GroundTruth"):
            continue
        chunk = chunks.setdefault(
            f"model/{p['model_name']}",
            {"kind": "model", "model": p["model_name"], "service": event["service"], "rows": ([], [], [], []),
             "features": {}, "requests": [], "labels": []},
        )  # fmt: skip
        if kind == "aitrace.GroundTruth":
            chunk["labels"].append(event)
            continue
        times, latency, errors, confidence = chunk["rows"]
        times.append(event["time"])
        latency.append(p["latency_ms"])
        errors.append(p["status"] == "error")
        confidence.append(math.nan if p.get("confidence") is None else p["confidence"])
        for name, value in p["features"].items():  # a feature a record lacks: NaN there
            column = chunk["features"].setdefault(name, [])
            column.extend([math.nan] * (len(times) - 1 - len(column)))
            column.append(value)
        if p.get("prediction") is not None:
            chunk["requests"].append(
                [p["request_id"], p["prediction"], event["time"], event["event_id"], event["trace_id"]]
            )
    for chunk in chunks.values():
        times, latency, errors, confidence = chunk.pop("rows")
        chunk["times"] = np.array(times, dtype=np.int64)
        chunk["latency"], chunk["errors"] = np.array(latency), np.array(errors, dtype=np.float64)
        chunk["confidence"] = np.array(confidence)
        padded = {k: v + [math.nan] * (len(times) - len(v)) for k, v in chunk["features"].items()}
        chunk["features"] = {k: np.array(v, dtype=np.float64) for k, v in padded.items()}
    return chunks


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize(("seed", "ragged"), [(seed, seed % 2 == 0) for seed in range(8)])
def test_model_chunks_cut_by_column_equal_those_cut_by_event(seed: int, ragged: bool) -> None:
    events = _events(random.Random(seed), 300, ragged)
    assert _equal(extract_chunks(events, []), _per_event_chunks(events))


_BREAK = [
    ("trace_id", "Z" * 32),
    ("span_id", "0" * 16),
    ("parent_span_id", "xyz"),
    ("time", 5),
    ("time", NOW_US + 10**12),
    ("event_id", ""),
    ("service", ""),
    ("payload.latency_ms", -1.0),
    ("payload.latency_ms", math.nan),
    ("payload.status", "fine"),
    ("payload.request_id", ""),
    ("payload.level", "loud"),
    ("payload.duration_us", -5),
]


def _break(rng: random.Random, events: list[dict[str, Any]], field: str, bad: Any) -> None:
    """Set ``field`` to ``bad`` in one event that has it."""
    name = field.removeprefix("payload.")
    having = [e for e in events if name in (e["payload"][1] if field.startswith("payload.") else e)]
    event = rng.choice(having)
    (event["payload"][1] if field.startswith("payload.") else event)[name] = bad


@pytest.mark.parametrize("seed", range(3))
def test_a_batch_checked_by_field_keeps_and_rejects_what_the_event_checks_do(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    decoder = RecordDecoder()
    max_time = NOW_US + 24 * 3600 * 1_000_000
    for trial in range(2 * len(_BREAK) + 4):
        events = _events(rng, 60)
        if trial < 2 * len(_BREAK):  # each way to fail alone, then with a second one
            _break(rng, events, *_BREAK[trial % len(_BREAK)])
            if trial >= len(_BREAK):
                _break(rng, events, *rng.choice(_BREAK))
        data = S.encode(S.batch(events))
        fast = decoder.decode(data)
        with monkeypatch.context() as m:
            m.setattr(block_columns, "events_valid", lambda *_a: False)
            slow = decoder.decode(data)
        assert [e["event_id"] for e in fast.events] == [e["event_id"] for e in slow.events]
        assert fast.rejected == slow.rejected
        # every check passed event by event exactly when the batch passed them field by field
        assert block_columns.events_valid(S.batch(events)["events"], max_time) is (not slow.rejected)
