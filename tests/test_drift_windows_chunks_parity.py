"""update_drift_windows_chunks (the windows of several chunks in one call) against update_drift_windows on
each chunk in turn: the same findings per chunk, the same ``clean`` per chunk and the same state, on random
features (some drifting, NaN and infinite values, few distinct values), random chunks of 1 to 500 values
(empty ones too), times repeated and out of order (a lagging partition's records), rules started at
different chunks, and the state through JSON between batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aitrace.detect.batched import update_drift_windows, update_drift_windows_chunks
from aitrace.detect.finding import Finding
from aitrace.detect.service import DriftWindows


def _features(rng: np.random.Generator, n: int, k: int) -> list[np.ndarray]:
    out = []
    for f in range(k):
        x = rng.normal(0.0, 1.0, n)
        if f == 1:
            x[n // 2 :] += rng.choice([0.0, 0.5, 2.0])  # drifts half way (or not)
        if f == 2:
            x = np.round(x * 2)  # few distinct values
        if f == 3:
            x[rng.random(n) < 0.05] = rng.choice([np.nan, np.inf])
        out.append(x)
    return out


def _shown(found: list[Finding]) -> list[str]:
    return [repr(f) for f in found]


def _state(rules: list[DriftWindows]) -> str:
    return json.dumps([r.to_state() for r in rules], sort_keys=True)


def _restored(rules: list[DriftWindows]) -> list[DriftWindows]:
    return [DriftWindows.from_state(json.loads(json.dumps(r.to_state()))) for r in rules]


def _run(seed: int) -> int:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(800, 4000)), 4
    feats = _features(rng, n, k)
    times = 1_800_000_000_000_000 + np.cumsum(rng.choice([0, 1, 1000], n))
    times[rng.random(n) < 0.1] -= 5_000_000  # out of order
    window = int(rng.choice([20, 50, 200]))
    one = [DriftWindows(f"f{j}", window=window, alpha=0.01) for j in range(k)]
    many = [DriftWindows(f"f{j}", window=window, alpha=0.01) for j in range(k)]
    sizes = np.where(rng.random(n) < 0.4, rng.integers(0, 8, n), rng.integers(1, 501, n))  # a few empty
    cuts = np.r_[np.cumsum(sizes), n]
    cuts = [int(c) for c in cuts[cuts <= n]]
    bounds = list(zip([0, *cuts[:-1]], cuts, strict=True))
    found, at, live = 0, 0, 2  # rules 2 and 3 join after the first batch (their windows out of step)
    while at < len(bounds):
        batch = bounds[at : at + int(rng.integers(1, 30))]
        at += len(batch)
        rules_one, rules_many = one[:live], many[:live]
        expected = []
        for lo, hi in batch:
            hits = update_drift_windows(rules_one, times[lo:hi], [f[lo:hi] for f in feats[:live]])
            expected.append([(_shown(h), r.clean) for h, r in zip(hits, rules_one, strict=True)])
        chunks = [(times[lo:hi], [f[lo:hi] for f in feats[:live]]) for lo, hi in batch]
        got = update_drift_windows_chunks(rules_many, chunks)
        shown = [[(_shown(got[r][c]), rules_many[r].cleans[c]) for r in range(live)] for c in range(len(batch))]
        assert shown == expected, (seed, at)
        assert [r.clean for r in rules_many] == [r.clean for r in rules_one]
        assert _state(many) == _state(one), (seed, at)
        found += sum(1 for chunk in expected for hits, _ in chunk if hits)
        one, many, live = _restored(one), _restored(many), k
    return found


@pytest.mark.parametrize("seeds", [range(0, 15), range(15, 30)])
def test_update_drift_windows_chunks_matches_chunk_by_chunk(seeds: range) -> None:
    assert sum(_run(seed) for seed in seeds) > 10  # windows drifted in some chunks


def test_no_chunks() -> None:
    assert update_drift_windows_chunks([DriftWindows("a")], []) == [[]]


def test_a_chunk_whose_values_miss_its_times_raises_as_chunk_by_chunk() -> None:
    """One chunk a value short of its times and the next a value long: joined they line up, yet each chunk alone
    raises in update_drift_windows (a client writes the series topic): so must the call of both."""
    times = np.arange(10, dtype=np.int64)
    short, long = (times, [np.zeros(9)]), (times + 10, [np.zeros(11)])
    with pytest.raises(ValueError, match="differ in length"):
        update_drift_windows([DriftWindows("a")], *short)
    with pytest.raises(ValueError, match="differ in length"):
        update_drift_windows_chunks([DriftWindows("a")], [short, long])
    with pytest.raises(ValueError, match="1 rules but 2 value arrays"):  # a chunk with a value array too many
        update_drift_windows_chunks([DriftWindows("a")], [(times, [np.zeros(10)]), (times, [np.zeros(10)] * 2)])
