"""RateSeries.update_chunks (the outcomes of several chunks in one call) against the update it replaced
(kept here) on each chunk in turn: the same findings per chunk, the same ``clean`` per chunk and the same
state, on random outcomes (bursts of errors, windows of 1 to 80), random chunks of 0 to 500 outcomes, the
state through JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from aitrace.detect.finding import Finding
from aitrace.detect.service import RateSeries, _arrays, _running_counts


class OldRate(RateSeries):
    """RateSeries.update as it was before update_chunks (ecb0387), the reference."""

    def update(self, times_us: Any, flags: Any) -> list[Finding]:
        times, bad = _arrays(times_us, flags)
        w, found, self.clean = self.window, [], 0
        counts = [0, *_running_counts(bad)]
        taken = 0
        for end in range(max(1, w - self.pending_n), bad.size + 1, w):
            i = end - 1
            count = self.pending_bad + counts[end] - counts[taken]
            rate = count / w
            self.pending_n = self.pending_bad = 0
            taken = end
            if self.base is None:
                self.base, self.clean = rate, self.clean + w
                continue
            limit = self.base + 4.0 * math.sqrt(max(self.base, 1.0 / w) * (1.0 - min(self.base, 0.99)) / w) + 0.02
            if count >= self.min_events and rate > limit:
                found.append(self._finding(self.n_seen + i, int(times[i]), rate, self.base, limit, count))
                self.clean = 0
            else:
                self.base = 0.9 * self.base + 0.1 * rate
                self.clean += w
        self.pending_n += bad.size - taken
        self.pending_bad += counts[-1] - counts[taken]
        self.n_seen += int(bad.size)
        return found


def _run(seed: int) -> int:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(500, 5000))
    bad = (rng.random(n) < rng.choice([0.0, 0.01, 0.05])).astype(np.float64)
    for _ in range(int(rng.integers(0, 6))):  # bursts
        at = int(rng.integers(0, n))
        bad[at : at + int(rng.integers(5, 300))] = rng.random() < 0.8
    times = 1_800_000_000_000_000 + np.cumsum(rng.integers(0, 1000, n))
    window, min_events = int(rng.choice([1, 7, 50, 80])), int(rng.choice([0, 1, 5]))
    one, many = OldRate(window=window, min_events=min_events), RateSeries(window=window, min_events=min_events)
    sizes = np.where(rng.random(n) < 0.4, rng.integers(0, 8, n), rng.integers(1, 501, n))
    cuts = [int(c) for c in np.r_[np.cumsum(sizes), n] if c <= n]
    bounds = list(zip([0, *cuts[:-1]], cuts, strict=True))
    at, found = 0, 0
    while at < len(bounds):
        batch = bounds[at : at + int(rng.integers(1, 30))]
        at += len(batch)
        expected = [([repr(f) for f in one.update(times[lo:hi], bad[lo:hi])], one.clean) for lo, hi in batch]
        got = many.update_chunks([(times[lo:hi], bad[lo:hi]) for lo, hi in batch])
        assert [([repr(f) for f in g], c) for g, c in zip(got, many.cleans, strict=True)] == expected, (seed, at)
        assert many.clean == one.clean
        assert json.dumps(many.to_state()) == json.dumps(one.to_state()), (seed, at)
        found += sum(1 for hits, _ in expected if hits)
        one, many = (
            kind.from_state(json.loads(json.dumps(r.to_state()))) for kind, r in ((OldRate, one), (RateSeries, many))
        )
    return found


@pytest.mark.parametrize("seeds", [range(0, 20), range(20, 40)])
def test_rate_update_chunks_matches_chunk_by_chunk(seeds: range) -> None:
    assert sum(_run(seed) for seed in seeds) > 20  # windows alerted in some chunks
