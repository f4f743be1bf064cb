"""A series chunk is applied to its entity all or nothing (Pipeline.series on the worker's Staged table): a chunk
that raises part-way, in its detectors or in its documents, leaves the entity as it was, whether or not an earlier
chunk of the same batch staged it, so its dead letter is not skipped as a redelivery when it comes again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aitrace.processors.chunk_wire import group_chunks, pack_chunk
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline, Staged
from test_poison import Msg, _runtime

T0 = 1_790_000_000_000_000
_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _chunk(off: int, *, features: int = 10, spike: bool = False, times: Any = None) -> bytes:
    """A model chunk of 10 requests at source offset ``off``; ``features`` values of its feature (10: valid; fewer:
    the chunk raises in the feature's drift, after its latency and error rate were applied), its last latency a
    spike. Any client can write such a chunk to the series topic."""
    times = T0 + off * 10**8 + np.arange(10, dtype=np.int64) * 1_000_000 if times is None else times
    latency = np.full(len(times), 5.0) + np.random.default_rng(off).normal(0, 0.5, len(times))
    if spike:
        latency[-1] = 5000.0
    return pack_chunk(
        {"kind": "model", "model": "m", "service": "s", "entity": "model/m", "src": "t:0", "off": off,
         "bid": f"b{off}", "requests": [], "labels": [], "times": times, "latency": latency,
         "errors": np.zeros(len(times)), "confidence": np.full(len(times), np.nan),
         "features": {"x": np.arange(features, dtype=np.float64)}}
    )  # fmt: skip


def _history(pipe: Pipeline, table: dict[str, Any], n: int = 20) -> None:
    for off in range(1, n):
        view = Staged(table)
        pipe.series(_chunk(off), view)
        view.commit()


def _after_a_chunk(same_batch: bool) -> tuple[Pipeline, dict[str, Any], Staged, bytes]:
    """A model's history, then chunk 20 staged (``same_batch``) or committed; the entity's value as JSON then."""
    pipe, table = Pipeline(WorkerOptions(index=True)), {}
    _history(pipe, table)
    view = Staged(table)
    pipe.series(_chunk(20), view)
    if not same_batch:
        view.commit()
        view = Staged(table)
    return pipe, table, view, orjson.dumps(view.get("model/m"), option=_JSON)


def _applied(table: dict[str, Any]) -> dict[str, Any]:
    return {name: state["applied"] for name, state in table["model/m"].items() if not name.startswith("@")}


@pytest.mark.parametrize("same_batch", [False, True], ids=["alone", "after-a-chunk-of-its-entity"])
def test_a_chunk_that_raises_part_way_leaves_its_entity_as_it_was(same_batch: bool) -> None:
    pipe, table, view, good = _after_a_chunk(same_batch)
    with pytest.raises(ValueError, match="differ in length"):  # the worker dead-letters it
        pipe.series(_chunk(21, features=9, spike=True), view)
    view.commit()
    assert orjson.dumps(table["model/m"], option=_JSON) == good
    assert set(map(str, _applied(table).values())) == {"{'t:0': 20}"}, _applied(table)
    view = Staged(table)  # delivered again (a replay of the dead letter), made whole: applied, its spike alerted
    alerts, documents = pipe.series(_chunk(21, spike=True), view)
    view.commit()
    assert [a["detector"] for a in alerts] == ["spike"] and documents
    assert pipe.counters["duplicates"] == 0


def test_a_group_with_a_chunk_that_raises_dead_letters_it_and_commits_only_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the series agent: the group [good 20, bad 21] raises and falls back to chunk by chunk, where chunk 21
    came after 20 had staged the entity: its latency stayed applied (committed), its spike's alert never sent."""
    runtime, letters = _runtime(tmp_path, monkeypatch)
    table: dict[str, Any] = {}
    monkeypatch.setattr(runtime, "series_state", table)
    monkeypatch.setattr("aitrace.processors.runtime.table_writer", lambda t: lambda k, v, p: t.__setitem__(k, v))
    alerts: list[dict[str, Any]] = []

    async def send_alerts(new: list[dict[str, Any]]) -> None:
        alerts.extend(new)

    monkeypatch.setattr(runtime.outputs, "send_alerts", send_alerts)
    for off in range(1, 20):
        asyncio.run(runtime.on_chunks([Msg(_chunk(off), b"model/m", "app-series", 0, off)]))
    [(_, value)] = group_chunks([("model/m", _chunk(20)), ("model/m", _chunk(21, features=9, spike=True))])
    asyncio.run(runtime.on_chunks([Msg(value, b"model/m", "app-series", 0, 500)]))
    assert [letter.reason for letter in letters] == ["processing-error"]
    assert set(map(str, _applied(table).values())) == {"{'t:0': 20}"}, _applied(table)
    alerts.clear()
    asyncio.run(runtime.on_chunks([Msg(_chunk(21, spike=True), b"model/m", "app-series", 0, 501)]))
    assert [a["detector"] for a in alerts] == ["spike"]


@pytest.mark.parametrize("same_batch", [False, True], ids=["alone", "after-a-chunk-of-its-entity"])
def test_a_chunk_whose_documents_raise_is_not_applied(same_batch: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The documents are built before the table is written: an alert document that raised after the write left
    the dead-lettered chunk applied (its redelivery skipped, the alert never indexed)."""
    from aitrace.processors import pipeline as pipeline_module
    from aitrace.sinks.documents import DocumentError

    pipe, table, view, good = _after_a_chunk(same_batch)

    def refused(alert: dict[str, Any]) -> Any:
        raise DocumentError("refused")

    with monkeypatch.context() as m:
        m.setattr(pipeline_module, "alert_action", refused)
        with pytest.raises(DocumentError):
            pipe.series(_chunk(21, spike=True), view)
    view.commit()
    assert orjson.dumps(table["model/m"], option=_JSON) == good
    view = Staged(table)
    alerts, documents = pipe.series(_chunk(21, spike=True), view)
    view.commit()
    assert [a["detector"] for a in alerts] == ["spike"] and len(documents) == 1
    assert pipe.counters["duplicates"] == 0 and pipe.counters["alerts"] == 1


@pytest.mark.parametrize(
    "times",
    [[2**62], [T0, 2**62], [-(2**40)], [1_000_000], [float(T0)]],
    ids=["2**62", "one-of-two", "negative", "seconds", "float"],
)
def test_a_chunk_timed_out_of_the_documents_range_is_refused_before_any_state(times: list[Any]) -> None:
    """A client's chunk timed 2**62 us (with an inf latency) opened an incident whose alert document raised; with
    the incident kept, every later version of it raised too (the alert's day is its first_seen), so the series'
    legitimate chunks after it were dead-lettered as well."""
    pipe, table = Pipeline(WorkerOptions(index=True)), {}
    _history(pipe, table)
    before = orjson.dumps(table, option=_JSON)
    crafted = _chunk(20, times=np.array(times))
    for group in (False, True):
        view = Staged(table)
        with pytest.raises(ValueError, match="event times"):
            if group:
                pipe.series_group([_chunk(20), crafted], view)
            else:
                pipe.series(crafted, view)
        view.commit()
        assert orjson.dumps(table, option=_JSON) == before
    spikes = 0
    for off in range(21, 60):  # legitimate chunks, a spike now and then: applied, alerted
        view = Staged(table)
        alerts, _ = pipe.series(_chunk(off, spike=off % 10 == 0), view)
        view.commit()
        spikes += sum(a["detector"] == "spike" for a in alerts)
    assert spikes >= 1 and pipe.counters["duplicates"] == 0


def test_a_label_or_request_timed_out_of_range_is_refused() -> None:
    from aitrace.processors.chunk_wire import unpack_chunk

    pipe = Pipeline(WorkerOptions(index=True))
    for field, entry in (("requests", ["q", "1", 2**62, "e", "t"]), ("labels", {"time": 2**62})):
        chunk = unpack_chunk(_chunk(1))
        chunk[field] = [entry]
        with pytest.raises(ValueError, match="event times"):
            pipe.series(pack_chunk(chunk), {})
