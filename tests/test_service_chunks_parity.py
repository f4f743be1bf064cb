"""ServiceSeries.update_chunks (several chunks of a series in one call) against update on each
chunk in turn: the same findings per chunk, the same ``clean`` per chunk and the same state, bit
for bit, on random series (days of points, so that the cycle turns on and off at hour
boundaries; NaNs, infinities, repeated times, spikes, level shifts, flat runs), random chunks of
1 to 500 points (some cut where an hour begins), and the state through JSON between batches."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from aitrace.detect.cycle import HOUR_US, CycleModel
from aitrace.detect.finding import Finding
from aitrace.detect.service import ServiceSeries

MINUTE_US = 60_000_000


def _series(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """About ten days of a latency with a daily swing, every few minutes (some times repeated)."""
    gaps = rng.choice([0, 1, 2, 5, 9], size=n, p=[0.1, 0.2, 0.3, 0.3, 0.1]) * MINUTE_US
    gaps += rng.integers(0, MINUTE_US, n) * (gaps > 0)
    times = int(rng.integers(1.7e15, 1.8e15)) + np.cumsum(gaps)
    day = np.sin(2 * np.pi * (times % (24 * HOUR_US)) / (24 * HOUR_US))
    vals = 20.0 * (1.0 + 0.5 * day) * rng.lognormal(0.0, 0.1, n)
    for _ in range(int(rng.integers(0, 4))):  # a level shift for a few hours
        at = int(rng.integers(0, n))
        vals[at : at + int(rng.integers(20, 200))] *= rng.choice([0.3, 3.0, 8.0])
    vals[rng.random(n) < 0.01] *= 10.0  # spikes
    for _ in range(int(rng.integers(0, 3))):  # a flat run
        at = int(rng.integers(1, n))
        vals[at : at + int(rng.integers(5, 60))] = vals[at - 1]
    vals[rng.random(n) < 0.01] = np.nan
    vals[rng.random(n) < 0.002] = rng.choice([np.inf, -np.inf])
    return times, vals


def _cuts(rng: np.random.Generator, times: np.ndarray, vals: np.ndarray) -> list[int]:
    """Chunk ends: random sizes of 1 to 500 points, a third of them moved to where the next hour begins,
    and half of those that pass a point where the cycle switches (in one call) moved to that point."""
    starts = np.flatnonzero(np.diff(times // HOUR_US)) + 1
    switches = np.asarray(CycleModel().observe(times, vals).switches, dtype=np.int64)
    cuts, at = [], 0
    while at < times.size:
        end = min(times.size, at + int(rng.choice([rng.integers(1, 8), rng.integers(1, 200), rng.integers(1, 501)])))
        later, passed = starts[starts >= end], switches[(switches > at) & (switches < end)]
        if passed.size and rng.random() < 0.5:
            end = int(passed[0])
        elif rng.random() < 0.33 and later.size:
            end = int(later[0])
        cuts.append(at := end)
    return cuts


def _shown(found: list[Finding]) -> list[str]:
    return [repr(f) for f in found]  # repr: NaN fields compare as text, every float to its last bit


def _state(s: ServiceSeries) -> str:
    return json.dumps(s.to_state(), sort_keys=True)


def _restored(s: ServiceSeries) -> ServiceSeries:
    return ServiceSeries.from_state(json.loads(json.dumps(s.to_state())))


def _run(metric: str, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    times, vals = _series(rng, int(rng.integers(1500, 3500)))
    cuts = _cuts(rng, times, vals)
    chunks = [(times[lo:hi], vals[lo:hi]) for lo, hi in zip([0, *cuts[:-1]], cuts, strict=True)]
    one, many = ServiceSeries(metric), ServiceSeries(metric)
    at, found, n_found = 0, 0, 0
    while at < len(chunks):
        batch = chunks[at : at + int(rng.integers(1, 40))]  # a batch of the worker: up to ~66 chunks an entity
        at += len(batch)
        expected = [(_shown(one.update(t, v)), one.clean) for t, v in batch]
        got = many.update_chunks(batch)
        assert [(_shown(f), c) for f, c in zip(got, many.cleans, strict=True)] == expected, (seed, at)
        assert many.clean == one.clean
        assert _state(many) == _state(one), (seed, at)
        found += sum(1 for f, _ in expected if f)
        n_found += sum(len(f) for f, _ in expected)
        one, many = _restored(one), _restored(many)
    return {"chunks": len(chunks), "with_findings": found, "findings": n_found, "period": one.cycle.period}


def _switches_at_chunk_starts(seed: int) -> int:
    """How often this seed's chunks, observed one by one, switched the cycle at their first point."""
    rng = np.random.default_rng(seed)
    times, vals = _series(rng, int(rng.integers(1500, 3500)))
    cycle, lo, n = CycleModel(), 0, 0
    for hi in _cuts(rng, times, vals):
        n += 0 in cycle.observe(times[lo:hi], vals[lo:hi]).switches
        lo = hi
    return n


@pytest.mark.parametrize("metric", ["latency", "confidence"])
def test_update_chunks_matches_update_chunk_by_chunk(metric: str) -> None:
    runs = [_run(metric, seed) for seed in range(24)]
    # the series exercise what they should: findings in many chunks, a cycle learnt in some
    assert sum(r["with_findings"] for r in runs) > 100
    assert sum(1 for r in runs if r["period"]) >= 3


def test_cycle_switches_fall_on_chunk_starts() -> None:
    """The random chunks above do cut where the cycle switches (a case update_chunks must keep)."""
    assert sum(_switches_at_chunk_starts(seed) for seed in range(24)) >= 3


def test_update_chunks_of_empty_and_single_chunks() -> None:
    rng = np.random.default_rng(5)
    times, vals = _series(rng, 600)
    one, many = ServiceSeries("latency"), ServiceSeries("latency")
    batch = [(times[:0], vals[:0]), (times[:1], vals[:1]), (times[1:1], vals[1:1]), (times[1:600], vals[1:600])]
    expected = [(_shown(one.update(t, v)), one.clean) for t, v in batch]
    got = many.update_chunks(batch)
    assert [(_shown(f), c) for f, c in zip(got, many.cleans, strict=True)] == expected
    assert _state(many) == _state(one)
