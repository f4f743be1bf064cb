"""A feature's drift windows are kept as base64 of float64, and a state written before (the windows as JSON
lists of floats, in a changelog a worker is upgraded over) restores to the same windows and findings."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import synth as S
from aitrace.detect.service import DriftWindows
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline, Staged

T0 = 1_700_000_000_000_000
_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _old_form(state: dict[str, Any]) -> dict[str, Any]:
    """What DriftWindows.to_state wrote before the windows were packed."""
    rules = DriftWindows.from_state(state)
    return {**state, "ref": rules.ref.tolist(), "cur": rules.cur.tolist()}


def _values(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[n // 2 :] += 1.0  # a drift to find
    x[::37] = np.nan  # not finite: never in a window
    return x


def test_packed_windows_are_smaller_and_restore_exactly() -> None:
    rules = DriftWindows("f", window=200)
    rules.update(T0 + np.arange(290), _values(290, 1))
    state = rules.to_state()
    assert isinstance(state["ref"], str) and isinstance(state["cur"], str)
    for saved in (state, orjson.loads(orjson.dumps(state)), _old_form(state)):
        back = DriftWindows.from_state(saved)
        assert back.ref.dtype == np.float64 and back.ref.tobytes() == rules.ref.tobytes()
        assert back.cur.dtype == np.float64 and back.cur.tobytes() == rules.cur.tobytes()
    assert rules.ref.size == 200 and rules.cur.size > 50
    assert len(orjson.dumps(state)) < 0.65 * len(orjson.dumps(_old_form(state)))


def test_a_state_in_the_old_form_gives_the_findings_of_the_new_one() -> None:
    values, times = _values(3000, 2), T0 + np.arange(3000)
    new, old = DriftWindows("f", window=200), DriftWindows("f", window=200)
    found_new, found_old = [], []
    for at in range(0, 3000, 130):  # each chunk restored from the state the last one saved
        part = slice(at, at + 130)
        found_new += new.update(times[part], values[part])
        found_old += old.update(times[part], values[part])
        new = DriftWindows.from_state(orjson.loads(orjson.dumps(new.to_state())))
        old = DriftWindows.from_state(orjson.loads(orjson.dumps(_old_form(old.to_state()))))
    assert found_new and [repr(f) for f in found_new] == [repr(f) for f in found_old]


def _record(i: int, rng: np.random.Generator) -> bytes:
    trace, events = f"{i + 1:032x}", []
    for j in range(50):
        n = i * 50 + j
        feats = {f"f{k}": float(rng.normal() + (1.5 if i >= 12 and k < 3 else 0.0)) for k in range(6)}
        payload = S.inference(f"q{n}", "m", 10.0, features=feats)
        events.append(S.event(payload, trace=trace, time_us=T0 + n * 1000, event_id=f"{n:020x}"))
    return S.encode(S.batch(events, batch_id=f"b{i}"))


def test_a_worker_restored_from_an_old_changelog_tells_the_same_drifts() -> None:
    """Every batch applied to a table restored from a changelog of old-form states (a fresh pipeline each
    time: no rules object kept alive) gives the alerts of a worker that ran on the new form throughout."""
    rng = np.random.default_rng(5)
    records = [_record(i, rng) for i in range(24)]
    pipe, table = Pipeline(WorkerOptions(index=False)), {}
    upgraded: dict[str, Any] = {}
    got, want = [], []
    for offset, value in enumerate(records):
        rec = pipe.process_record(value, key=None, topic="t", partition=0, offset=offset, traces={}, now=0.0)
        for into, runner, out in ((table, pipe, want), (upgraded, Pipeline(WorkerOptions(index=False)), got)):
            staged = Staged(into)
            out += [orjson.dumps(runner.series(chunk, staged)[0], option=_JSON) for _, chunk in rec.chunks]
            staged.commit()
        for series, state in upgraded["model/m"].items():  # the changelog of a worker before the upgrade
            if "/feature/" in series:
                upgraded["model/m"][series] = {**state, "rules": _old_form(state["rules"])}
        upgraded["model/m"] = orjson.loads(orjson.dumps(upgraded["model/m"], option=_JSON))
    alerts = [a for out in want for a in orjson.loads(out)]
    assert {a["feature"] for a in alerts if a["kind"] == "drift"} == {"f0", "f1", "f2"}
    assert got == want
    assert isinstance(table["model/m"]["model/m/feature/f0"]["rules"]["ref"], str)
