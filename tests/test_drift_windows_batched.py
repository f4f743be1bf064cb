"""update_drift_windows (every feature's windows in one KS call) gives what each DriftWindows.update gives."""

from __future__ import annotations

import itertools

import numpy as np
import orjson
import pytest
from aitrace.detect.batched import update_drift_windows
from aitrace.detect.service import DriftWindows


def _features(seed: int, n: int) -> list[np.ndarray]:
    """Quiet, drifting, categorical-looking, constant and NaN-holed features of one stream."""
    rng = np.random.default_rng(seed)
    quiet = rng.normal(0.0, 1.0, n)
    drifting = rng.normal(0.0, 1.0, n)
    drifting[n // 2 :] += 0.8
    small = rng.integers(0, 4, n).astype(np.float64)  # <= 5 distinct values: detect_drift's chi-square
    small[n // 3 :] = rng.integers(0, 2, n - n // 3)
    holes = rng.lognormal(0.0, 1.0, n)
    holes[rng.integers(0, n, n // 20)] = np.nan
    holes[rng.integers(0, n, 5)] = np.inf
    wide = rng.standard_t(2, n) * 1e3
    wide[2 * n // 3 :] *= 3.0
    return [quiet, drifting, small, np.full(n, 1.5), holes, wide]


def _bounds(n: int, seed: int, how: str) -> list[tuple[int, int]]:
    if how == "random":
        cuts = sorted(set(np.random.default_rng(seed).integers(1, n, 40).tolist()))
        return list(itertools.pairwise([0, *cuts, n]))
    step = int(how)
    return list(itertools.pairwise([*range(0, n, step), n]))


@pytest.mark.parametrize("how", ["1", "37", "200", "650", "random"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_update_matches_each_rule_update(seed: int, how: str) -> None:
    n = 3000
    feats = _features(seed, n)
    times = 1_800_000_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    alpha = 0.001 / len(feats)
    one = [DriftWindows(f"f{k}", window=200, alpha=alpha) for k in range(len(feats))]
    many = [DriftWindows(f"f{k}", window=200, alpha=alpha) for k in range(len(feats))]
    got: list[str] = []
    want: list[str] = []
    for lo, hi in _bounds(n, seed, how):
        found = update_drift_windows(many, times[lo:hi], [f[lo:hi] for f in feats])
        for rule, values, batch in zip(one, feats, found, strict=True):
            expected = rule.update(times[lo:hi], values[lo:hi])
            want += [repr(f) for f in expected]
            got += [repr(f) for f in batch]
        assert [r.clean for r in many] == [r.clean for r in one]
    assert got == want
    assert any("f1" in f for f in want) and any("f5" in f for f in want)  # drifts were there to find
    assert [r.to_state() for r in many] == [r.to_state() for r in one]


def test_rules_and_values_must_pair_up() -> None:
    with pytest.raises(ValueError, match="2 rules but 1"):
        update_drift_windows([DriftWindows("a"), DriftWindows("b")], np.arange(3), [np.zeros(3)])


def test_rules_out_of_step_and_of_other_windows_cut_as_their_own_update() -> None:
    """Features cut together (finite, in step) and alone (other windows, a late start, NaN) in one call."""
    rng = np.random.default_rng(7)
    n = 2400
    feats = [rng.normal(size=n) for _ in range(6)]
    feats[5][n // 2 :] += 1.0
    feats[4][rng.integers(0, n, 30)] = np.nan
    times = 1_800_000_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    windows = [200, 200, 50, 50, 200, 200]

    def rules() -> list[DriftWindows]:
        return [DriftWindows(f"f{k}", window=w, alpha=0.01) for k, w in enumerate(windows)]

    many, one = rules(), rules()
    late = 333  # the last feature's rules start later: out of step with the others of their window
    for lo, hi in _bounds(n, 7, "random"):
        sub = [k for k in range(6) if k < 5 or lo >= late]
        found = update_drift_windows([many[k] for k in sub], times[lo:hi], [feats[k][lo:hi] for k in sub])
        for k, batch in zip(sub, found, strict=True):
            assert [repr(f) for f in batch] == [repr(f) for f in one[k].update(times[lo:hi], feats[k][lo:hi])]
            assert many[k].clean == one[k].clean
    assert [r.to_state() for r in many] == [r.to_state() for r in one]
    assert one[5].n_seen and any(r.n_seen for r in one)


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("size", [1, 37, 451])
def test_a_window_is_dated_by_its_latest_value_not_its_last_to_arrive(size: int, batched: bool) -> None:
    """A worker reads a model's records from several partitions, in no time order. A window of drifted
    values completed by a lagging partition's old records is dated by the latest value in it (carried
    from chunk to chunk through the saved state), not by the old record that arrived last; a value
    that is not finite is in no window, so its time dates none."""
    rng = np.random.default_rng(4)
    t0 = 1_800_000_000_000_000
    ms = np.concatenate([np.arange(250), 1000 + np.arange(150), 250 + np.arange(51)])
    times = t0 + ms * 1000  # 250 old values, 150 drifted ones from 1 s on, then 51 old late ones
    values = np.concatenate([rng.normal(size=250), rng.normal(3.0, 1.0, 150), rng.normal(size=51)])
    values[260], times[260] = np.nan, t0 + 9_000_000
    rule = DriftWindows("f", window=200, alpha=0.001)
    found = []
    for lo in range(0, values.size, size):
        part = slice(lo, lo + size)
        if batched:
            found += update_drift_windows([rule], times[part], [values[part]])[0]
        else:
            found += rule.update(times[part], values[part])
        rule = DriftWindows.from_state(orjson.loads(orjson.dumps(rule.to_state())))
    assert [(f.index, f.time_us) for f in found] == [(400, t0 + 1_149_000)]
