"""The worker's series state is copied per series it changes, not per entity (Staged.private is shallow):
a batch that is not committed must leave every committed series state as it was, for every entity kind
and the label / prediction waiting rooms, and the same records give the same alerts and state as the
deep copy of the whole entity did."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import synth as S
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline, Staged

T0 = 1_700_000_000_000_000
_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _record(i: int, rng: np.random.Generator) -> bytes:
    """Every kind of entity: a model's requests (features, late labels, labels ahead of their request,
    labels of unknown requests),
    a training run's train and validation losses and per-layer gradient norms, a data stage's stats."""
    trace, per = f"{i + 1:032x}", 60
    events = []
    for j in range(per):
        n = i * per + j
        feats = {"a": float(rng.normal()), "b": float(rng.normal() + (2.0 if i >= 6 else 0.0))}
        lat = float(rng.gamma(4, 5)) * (40.0 if n % 151 == 100 else 1.0)
        status = "error" if i == 5 and j % 3 else "ok"
        payload = S.inference(f"q{n}", "m", lat, status=status, prediction=str(n % 3), features=feats)
        events.append(S.event(payload, trace=trace, time_us=T0 + n * 1000, event_id=f"{n:020x}"))
        if j % 4 == 0:  # labels of a request 40 earlier, of one of the next batch (they wait for it, then
            # leave the room joined), and of one that never comes
            for k, request in enumerate((f"q{n - 40}", f"q{n + per + 2}", f"lost{n}")):
                truth = S.ground_truth(request, "m", str(n % 2))
                events.append(
                    S.event(truth, trace=trace, time_us=T0 + n * 1000 + 1 + k, event_id=f"{n + (k + 1) * 10**9:020x}")
                )
    shift = 3.0 if i >= 6 else 0.0
    stats = S.data_stats(
        "ds",
        "clean",
        [
            S.feature("x", mean=shift, variance=1.0 + shift),
            S.feature("c", mean=0.0, categories={"u": 5, f"v{i % 3}": 5}),
        ],
        {"0": 500, "1": 500 if i < 6 else 20},
    )
    events.append(S.event(stats, trace=trace, time_us=T0 + i * per * 1000 + 999, event_id=f"{i + 5 * 10**9:020x}"))
    steps = 100
    train = {"loss": np.exp(-np.arange(i * steps, (i + 1) * steps) / 300.0) + rng.normal(0, 0.01, steps)}
    train.update({f"grad_norm/l{k}": rng.lognormal(-3.0 * k, 0.1, steps) for k in range(2)})
    val = {"loss": 1.0 + np.arange(i * steps, (i + 1) * steps) / 500.0}
    blocks = [
        S.metric_block(
            trace=trace, run_id="r", start_step=i * steps, series=train, start_us=T0 + i * 10**6, block_id=f"t{i}"
        ),
        S.metric_block(
            trace=trace,
            run_id="r",
            start_step=i * steps,
            series=val,
            start_us=T0 + i * 10**6,
            block_id=f"v{i}",
            split="val",
        ),
    ]
    return S.encode(S.batch(events, blocks, batch_id=f"b{i}"))


def _batches(n: int = 10) -> list[list[bytes]]:
    """Each record's series chunks: one batch of the series agent per record."""
    rng = np.random.default_rng(11)
    pipe = Pipeline(WorkerOptions(index=False))
    out = []
    for offset in range(n):
        rec = pipe.process_record(
            _record(offset, rng), key=None, topic="t", partition=0, offset=offset, traces={}, now=0.0
        )
        out.append([chunk for _, chunk in rec.chunks])
    return out


def _apply(
    pipe: Pipeline, batch: list[bytes], table: dict[str, Any], *, commit: bool = True, staged: type = Staged
) -> tuple[list[bytes], Staged]:
    view = staged(table)
    out = [orjson.dumps(pipe.series(chunk, view), option=_JSON) for chunk in batch]
    if commit:
        view.commit()
    return out, view


class _DeepStaged(Staged):
    """The copy the worker made before: the whole entity through JSON, once per entity and batch."""

    def private(self, key: str) -> Any:
        if key in self.pending:
            return self.get(key)
        value = self.table.get(key)
        return None if value is None else orjson.loads(orjson.dumps(value, option=_JSON))


BATCHES = _batches()


def _series_bytes(table: dict[str, Any]) -> dict[str, bytes]:
    """Each series state of the table as JSON, keyed by series."""
    return {series: orjson.dumps(state, option=_JSON) for value in table.values() for series, state in value.items()}


def test_an_uncommitted_batch_changes_no_committed_series_state() -> None:
    pipe, table = Pipeline(WorkerOptions(index=False)), {}
    for batch in BATCHES[:7]:  # rules objects now live beside the committed states they were saved as
        _apply(pipe, batch, table)
    before = _series_bytes(table)
    assert sorted({e.split("/")[0] for e in before}) == ["data", "model", "run"]
    _, dropped = _apply(pipe, BATCHES[7], table, commit=False)
    after = _series_bytes(table)
    assert [k for k, v in before.items() if after[k] != v] == [], "changed by a batch that was never committed"
    for entity, states in dropped.pending.items():  # the batch did change each entity, in its own copies
        changed = [
            k
            for k, v in states.items()
            if orjson.dumps(v, option=_JSON) != orjson.dumps(table[entity].get(k), option=_JSON)
        ]
        assert len(changed) >= 2, entity
    rooms, staged_rooms = table["model/m"]["model/m/labels"], dropped.pending["model/m"]["model/m/labels"]
    for room in ("pred", "wait"):  # entries came in and went out (joined) in the batch: both rooms changed
        assert set(rooms[room]) - set(staged_rooms[room]) and set(staged_rooms[room]) - set(rooms[room]), room


def test_a_dropped_batch_redelivered_gives_the_alerts_and_state_of_one_never_dropped() -> None:
    pipe, table = Pipeline(WorkerOptions(index=False)), {}
    ref, ref_table = Pipeline(WorkerOptions(index=False)), {}
    got, want = [], []
    for i, batch in enumerate(BATCHES):
        if i in (3, 7):
            _apply(pipe, batch, table, commit=False)  # failed after its updates: dropped, delivered again
        got += _apply(pipe, batch, table)[0]
        want += _apply(ref, batch, ref_table)[0]
    assert got == want
    assert orjson.dumps(table, option=_JSON) == orjson.dumps(ref_table, option=_JSON)


def test_the_same_alerts_and_state_as_a_deep_copy_of_the_entity() -> None:
    """Parity with the copy before: the whole entity through JSON, as a restart restores it too."""
    new, deep = Pipeline(WorkerOptions(index=False)), Pipeline(WorkerOptions(index=False))
    table_new: dict[str, Any] = {}
    table_deep: dict[str, Any] = {}
    got, want = [], []
    for batch in BATCHES:
        got += _apply(new, batch, table_new)[0]
        want += _apply(deep, batch, table_deep, staged=_DeepStaged)[0]
    alerts = [a for out in got for a in orjson.loads(out)[0]]
    assert {a["kind"] for a in alerts} >= {"drift", "error_rate", "data_quality"}, {a["kind"] for a in alerts}
    assert got == want
    assert orjson.dumps(table_new, option=_JSON) == orjson.dumps(table_deep, option=_JSON)
