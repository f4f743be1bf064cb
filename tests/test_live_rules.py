"""Series rule objects kept alive between chunks (LiveRules): the same alerts and state as restoring them."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import orjson
import pytest
import synth as S
from aitrace.detect.service import RateSeries, ServiceSeries
from aitrace.processors.detection_state import LiveRules
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline, Staged

T0 = 1_700_000_000_000_000


def _model_record(i: int, rng: np.random.Generator, per: int = 60) -> bytes:
    """Requests of two models: latency spikes, an error burst, a drifting feature, late labels."""
    trace = f"{i + 1:032x}"
    events = []
    for j in range(per):
        n = i * per + j
        model = f"m{j % 2}"
        lat = float(rng.gamma(4, 5)) * (30.0 if n % 997 == 500 else 1.0)
        feats = {"a": float(rng.normal()), "b": float(rng.normal() + (1.5 if n > 1800 else 0.0))}
        status = "error" if 1200 <= n < 1300 and rng.random() < 0.6 else "ok"
        payload = S.inference(f"q{n}", model, lat, status=status, prediction=str(n % 3), features=feats)
        events.append(S.event(payload, trace=trace, time_us=T0 + n * 1000, event_id=f"{n:020x}"))
        if n >= 40 and n % 4 == 0:
            truth = S.ground_truth(f"q{n - 40}", f"m{(j - 40) % 2}", str((n - 40) % 3 if n < 2000 else 0))
            events.append(S.event(truth, trace=trace, time_us=T0 + n * 1000 + 1, event_id=f"{n + 10**9:020x}"))
    return S.encode(S.batch(events, batch_id=f"b{i}"))


def _run_record(i: int, rng: np.random.Generator, steps: int = 120) -> bytes:
    loss = rng.normal(1.0, 0.02, steps)
    if i == 7:
        loss[30] = 40.0
    block = S.metric_block(
        trace=f"{1000 + i % 2:032x}",
        run_id=f"r{i % 2}",
        start_step=(i // 2) * steps,
        series={"loss": loss, "grad_norm": rng.lognormal(0.0, 0.1, steps)},
        start_us=T0 + i * steps * 1000,
        block_id=f"blk{i}",
    )
    return S.encode(S.batch([], [block], batch_id=f"t{i}"))


def _records(n: int = 50) -> list[bytes]:
    rng = np.random.default_rng(3)
    return [_model_record(i, rng) if i % 3 else _run_record(i, rng) for i in range(n)]


def _chunks(records: list[bytes]) -> list[bytes]:
    pipe = Pipeline(WorkerOptions(index=False))
    out = []
    for offset, value in enumerate(records):
        rec = pipe.process_record(value, key=None, topic="t", partition=0, offset=offset, traces={}, now=0.0)
        out += [chunk for _, chunk in rec.chunks]
    return out


def _apply(pipe: Pipeline, chunks: list[bytes], table: Any) -> list[bytes]:
    return [orjson.dumps(pipe.series(chunk, table), option=orjson.OPT_SERIALIZE_NUMPY) for chunk in chunks]


@pytest.fixture(scope="module")
def chunks() -> list[bytes]:
    return _chunks(_records())


def test_live_objects_give_the_alerts_and_state_of_restored_ones(chunks: list[bytes]) -> None:
    live, restored = Pipeline(WorkerOptions(index=False)), Pipeline(WorkerOptions(index=False), live_rules=0)
    table_live: dict[str, Any] = {}
    table_restored: dict[str, Any] = {}
    got = _apply(live, chunks, table_live)
    want = _apply(restored, chunks, table_restored)
    assert got == want
    assert sum(len(orjson.loads(g)[0]) for g in got) >= 4  # spikes, a burst, a drift: alerts to compare
    assert orjson.dumps(table_live) == orjson.dumps(table_restored)
    assert len(live.live_rules) > 0 and len(restored.live_rules) == 0


def test_a_dropped_batch_does_not_leave_its_updates_in_live_objects(chunks: list[bytes]) -> None:
    """The worker drops a failed batch's staged writes; its chunks come again and must apply as if new."""
    half = len(chunks) // 2
    pipe, ref = Pipeline(WorkerOptions(index=False)), Pipeline(WorkerOptions(index=False), live_rules=0)
    table: dict[str, Any] = {}
    first = Staged(table)
    _apply(pipe, chunks[:half], first)
    first.commit()
    dropped = Staged(table)
    _apply(pipe, chunks[half:], dropped)  # live objects advance, the table does not
    again = Staged(table)
    got = _apply(pipe, chunks[half:], again)
    again.commit()
    ref_table: dict[str, Any] = {}
    want = _apply(ref, chunks, ref_table)[half:]
    assert got == want
    assert orjson.dumps(table) == orjson.dumps(ref_table)


def test_a_saved_state_does_not_change_when_its_object_goes_on(chunks: list[bytes]) -> None:
    pipe = Pipeline(WorkerOptions(index=False))
    table: dict[str, Any] = {}
    _apply(pipe, chunks[: len(chunks) // 2], table)
    saved = [
        st[name] for series in table.values() for st in series.values() for name in ("rules", "checks") if name in st
    ]
    before = copy.deepcopy(saved)
    _apply(pipe, chunks[len(chunks) // 2 :], table)
    assert len(saved) >= 8 and saved == before


def test_an_object_is_reused_only_for_the_dict_it_was_saved_as() -> None:
    live = LiveRules(2)
    rules = ServiceSeries("latency")
    saved = live.save("k", rules)
    assert live.restore("k", saved, ServiceSeries) is rules
    assert live.restore("k", saved, ServiceSeries) is not rules  # taken out while in use
    saved = live.save("k", rules)
    assert live.restore("k", dict(saved), ServiceSeries) is not rules  # an equal dict is not the one
    saved = live.save("k", rules)
    with pytest.raises(KeyError):  # another kind of rules: restored from the dict (not a RateSeries state)
        live.restore("k", saved, RateSeries)


def test_the_least_recently_used_objects_go_first() -> None:
    live = LiveRules(2)
    saved = {k: live.save(k, RateSeries()) for k in "abc"}
    assert len(live) == 2
    assert live.restore("a", saved["a"], RateSeries) is not None
    assert "a" not in live._live and "b" in live._live and "c" in live._live
