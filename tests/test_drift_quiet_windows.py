"""The batched drift windows let through exactly the windows detect_drift's own KS test keeps quiet."""

from __future__ import annotations

import numpy as np
import pytest
from aitrace.detect.batched import _quiet_windows, update_drift_windows
from aitrace.detect.drift_monitor import DriftConfig
from aitrace.detect.drift_tests import _is_categorical
from aitrace.detect.ks import ks_2samp, ks_2samp_batched, ks_2samp_sorted_reference
from aitrace.detect.service import DriftWindows


def _expected(windows: list) -> list[bool]:
    """One window at a time, as detect_drift decides whether to run its KS test on it."""
    cfg = DriftConfig()
    out = []
    for rule, (_, cur) in windows:
        ref = rule.ref
        tested = min(ref.size, cur.size) >= cfg.min_samples and not _is_categorical(ref, cfg.max_categories_numeric)
        out.append(tested and ks_2samp(ref, cur)[1] >= rule.alpha)
    return out


def _sample(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    if kind == 0:
        return rng.normal(size=n)
    if kind == 1:  # just below and at the categorical bound of distinct values
        return rng.integers(0, DriftConfig().max_categories_numeric + int(rng.integers(0, 2)), n).astype(float)
    if kind == 2:  # ties and signed zeros
        return np.where(rng.random(n) < 0.5, -0.0, np.round(rng.normal(size=n), 1))
    return rng.normal(0.4, 1.0, n)  # a shifted current: some windows drift


@pytest.mark.parametrize("seed", range(8))
def test_quiet_flags_match_detect_drift_per_window(seed: int) -> None:
    rng = np.random.default_rng(seed)
    windows = []
    for k in range(30):
        size = int(rng.choice([5, 50, 200, 201]))
        rule = DriftWindows(f"f{k}", window=max(size, 2), alpha=float(rng.choice([1e-3, 0.05, 0.5])))
        rule.ref = _sample(rng, int(rng.integers(0, 3)), size)
        windows.append((rule, (k, _sample(rng, int(rng.integers(0, 4)), size))))
    want = _expected(windows)
    assert _quiet_windows(windows) == want
    assert any(want) and not all(want)  # both verdicts were there to get wrong


@pytest.mark.parametrize("seed", range(4))
def test_ks_on_a_presorted_reference_matches_the_batched_ks(seed: int) -> None:
    """The quiet-window path sorts only the current windows: same statistics and p-values, to the bit."""
    rng = np.random.default_rng(seed)
    for width, cur_width in ((5, 5), (200, 200), (200, 37), (10_001, 300)):  # exact and asymptotic p-values
        rows = [_sample(rng, int(rng.integers(0, 4)), width) for _ in range(3)]
        refs = np.sort(np.stack(rows), axis=1)
        cur = np.stack([_sample(rng, int(rng.integers(0, 4)), cur_width) for _ in range(3)])
        got = ks_2samp_sorted_reference(refs, cur)
        want = ks_2samp_batched(np.stack(rows), cur)
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_a_rules_reference_counts_follow_its_reference() -> None:
    """The sorted reference and its distinct count, kept on the rule, are those of the reference it has now."""
    rule = DriftWindows("f", window=200)
    rule.cut(np.zeros(50))  # a partial reference of one value
    assert rule.reference_distinct() == 1
    rule.cut(np.arange(1000.0))  # filled with 0..149 (0 was there), windows cut from the rest
    assert rule.reference_distinct() == np.unique(rule.ref).size == 150
    assert np.array_equal(rule.sorted_reference(), np.sort(rule.ref))
    rules = [DriftWindows("a", window=200), DriftWindows("b", window=200)]
    for r in rules:
        r.cut(np.zeros(50))
        assert r.reference_distinct() == 1
    update_drift_windows(rules, np.arange(300), [np.arange(300.0), np.arange(300.0)])  # filled together
    assert [r.reference_distinct() for r in rules] == [150, 150]
