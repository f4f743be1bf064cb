"""A group's model series updated in one call (SeriesDetectors.apply_group: the latency, confidence and input
features' drift windows and error rate of every chunk of the group that applies, ServiceSeries.update_chunks,
update_drift_windows_chunks and RateSeries.update_chunks at the first) give what the chunks one by
one gave: the same alerts and documents per chunk, the same counters and the table to the byte, on
seven days of a model's requests (its daily cycle learnt and named in alerts), through a dropped batch, a batch
delivered twice and groups whose chunks are partly redeliveries. Every group goes as a group (none raised)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest
import synth as S
from aitrace.detect.service import RateSeries, ServiceSeries
from aitrace.processors import detection_models
from aitrace.processors.chunk_wire import group_chunks, pack_chunk, split_chunks
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline, Staged

_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
HOUR_US = 3_600_000_000
T0 = 1_790_000_000_000_000


def _records(n: int = 1100) -> list[bytes]:
    """A trace every 10 minutes (seven and a half days), its requests to one of two models: a latency with a daily
    swing, spikes, an hour three times slower, some errors and NaN latencies, confidences for one model."""
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        trace, base = S.trace_id(), T0 + i * 600_000_000
        events = []
        for j in range(int(rng.integers(4, 45))):  # chunks of several sizes: each its own clean count
            t = base + j * 1_000_000 * int(rng.integers(0, 3))  # some times repeated
            swing = 1.0 + 0.5 * np.sin(2 * np.pi * (t % (24 * HOUR_US)) / (24 * HOUR_US))
            lat = (
                float(rng.gamma(4, 5)) * swing * (3.0 if 900 <= i < 906 else 1.0) * (30 if rng.random() < 0.004 else 1)
            )
            lat = float("nan") if rng.random() < 0.002 else lat
            payload = S.inference(
                f"r{i}-{j}",
                f"m{i % 2}",
                lat,
                status="error" if rng.random() < (0.5 if i % 300 < 12 else 0.02) else "ok",
                confidence=float(rng.beta(8, 2)) if i % 2 else None,
                features={"x": float(rng.normal(1.5 if i >= 700 and (i // 40) % 2 else 0.0))},
            )
            events.append(S.event(payload, trace=trace, time_us=t, event_id=f"{i:06d}{j:04d}"))
        out.append(S.encode(S.batch(events, batch_id=f"b{i}")))
    return out


RECORDS = _records()


def _apply(pipe: Pipeline, table: dict[str, Any], chunks: list[tuple[str, bytes]], group: bool, commit: bool) -> Any:
    view, out = Staged(table), []
    for _, value in group_chunks(chunks):
        parts = split_chunks(value)
        done = pipe.series_group(parts, view, now=None) if group and len(parts) > 1 else None
        out += done if done is not None else [pipe.series(part, view) for part in parts]
    if commit:
        view.commit()
    return out


def _run(group: bool) -> tuple[bytes, bytes, dict[str, int]]:
    pipe, traces, table, out = Pipeline(WorkerOptions(index=True)), {}, {}, []
    batches = [range(b, b + 40) for b in range(0, 1080, 40)]
    plan: list[tuple[Any, bool]] = [
        (b, k % 5 != 2) for k, b in enumerate(batches)
    ]  # every fifth batch dropped once ...
    plan = [step for b, once in plan for step in ([(b, True)] if once else [(b, False), (b, True)])]
    plan += [(range(95, 125), True), (range(700, 730), True)]  # ... and records delivered again, in later groups
    plan.sort(key=lambda step: int(step[0][0]))
    plan += [([*range(1080, 1100), 1085, 1082, 1099], True)]  # records again in their own batch: skipped there
    for b, commit in plan:
        chunks = []
        for i in b:
            rec = pipe.process_record(RECORDS[i], key=None, topic="t", partition=0, offset=i, traces=traces, now=0.0)
            chunks += rec.chunks
        out += _apply(pipe, table, chunks, group, commit)
    return orjson.dumps(out, option=_JSON), orjson.dumps(table, option=_JSON), dict(pipe.counters)


def test_a_groups_model_series_in_one_call_give_what_chunk_by_chunk_gave(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: Counter[tuple[str, int]] = Counter()
    real, drift, rate = (
        ServiceSeries.update_chunks,
        detection_models.update_drift_windows_chunks,
        RateSeries.update_chunks,
    )

    def counted(self: ServiceSeries, chunks: Any, **kw: Any) -> Any:
        calls["numeric", len(chunks)] += 1
        return real(self, chunks, **kw)

    def counted_drift(rules: Any, chunks: Any) -> Any:
        calls["drift", len(chunks)] += 1
        return drift(rules, chunks)

    def counted_rate(self: RateSeries, chunks: Any) -> Any:
        calls["rate", len(chunks)] += 1
        return rate(self, chunks)

    monkeypatch.setattr(ServiceSeries, "update_chunks", counted)
    monkeypatch.setattr(detection_models, "update_drift_windows_chunks", counted_drift)
    monkeypatch.setattr(RateSeries, "update_chunks", counted_rate)
    want = _run(group=False)
    assert {size for _, size in calls} == {1}, calls
    calls.clear()
    got = _run(group=True)
    for kind in ("numeric", "drift", "rate"):  # groups' series went in one call
        assert sum(n for (k, size), n in calls.items() if k == kind and size > 1) > 30, calls
    alerts = [a for alerts, _ in orjson.loads(want[0]) for a in alerts]
    assert sum("daily cycle" in orjson.dumps(a).decode() for a in alerts) >= 3  # the cycle learnt, and named
    assert {a["kind"] for a in alerts} >= {"anomaly", "drift", "error_rate"}, {a["kind"] for a in alerts}
    assert want[2]["duplicates"] > 0
    assert got[0] == want[0]  # alerts and documents, chunk by chunk
    assert got[1] == want[1]  # the table, to the byte
    assert got[2] == want[2]


def test_a_group_whose_feature_columns_miss_their_times_raises_as_each_chunk_does() -> None:
    """Chunks of the series topic (any client writes it): a feature column a value short of its chunk's times, the
    next chunk's a value long. Each chunk raises alone; the group must raise too, so that the worker applies it
    chunk by chunk and dead-letters each (one call for both had lined the columns up and applied them)."""

    def chunk(off: int, values: int) -> bytes:
        times = T0 + off * 10**8 + np.arange(10, dtype=np.int64) * 1_000_000
        return pack_chunk(
            {
                **{"kind": "model", "model": "m", "service": "s", "entity": "model/m", "src": "t:0", "off": off},
                **{"bid": f"b{off}", "requests": [], "labels": [], "times": times, "latency": np.full(10, 5.0)},
                **{"errors": np.zeros(10), "confidence": np.full(10, np.nan)},
                "features": {"x": np.arange(values, dtype=np.float64)},
            }
        )

    pipe, table = Pipeline(WorkerOptions(index=True)), {}
    for part in (chunk(1, 9), chunk(2, 11)):
        with pytest.raises(ValueError, match="differ in length"):
            pipe.series(part, Staged(table))
    with pytest.raises(ValueError, match="differ in length"):
        pipe.series_group([chunk(1, 9), chunk(2, 11)], Staged(table))
    assert table == {}
