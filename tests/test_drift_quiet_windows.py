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


@pytest.mark.parametrize("seed", range(6))
def test_presorted_reference_ks_with_nan_and_inf_in_the_current_rows(seed: int) -> None:
    """The one-kernel path sorts and counts the current rows as _pack_rows does: NaN dropped (any number of
    them, a row all but one NaN), +-inf kept, ties and signed zeros; exact and asymptotic p-values."""
    rng = np.random.default_rng(50 + seed)
    for width, cur_width in ((200, 200), (7, 3), (1, 1), (10_001, 40)):
        refs = np.sort(np.stack([_sample(rng, int(rng.integers(0, 4)), width) for _ in range(4)]), axis=1)
        cur = np.stack([_sample(rng, int(rng.integers(0, 4)), cur_width) for _ in range(4)])
        cur[0, np.flatnonzero(rng.random(cur_width) < 0.3)[1:]] = np.nan  # never the whole row
        cur[1, : cur_width - 1] = np.nan  # one value left
        cur[2, rng.random(cur_width) < 0.1] = np.inf
        cur[3, rng.random(cur_width) < 0.1] = -np.inf
        got = ks_2samp_sorted_reference(refs, cur)
        want = ks_2samp_batched(refs, cur)
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_presorted_reference_ks_refuses_an_empty_row_as_before() -> None:
    refs = np.sort(np.random.default_rng(0).normal(size=(3, 20)), axis=1)
    cur = np.random.default_rng(1).normal(size=(3, 20))
    cur[1] = np.nan
    with pytest.raises(ValueError, match="current: row 1 is empty"):
        ks_2samp_sorted_reference(refs, cur)
    with pytest.raises(ValueError, match="current: row 0 is empty"):
        ks_2samp_sorted_reference(refs, np.zeros((3, 0)))
    with pytest.raises(ValueError, match="reference of shape"):
        ks_2samp_sorted_reference(refs, cur[:2])
    empty = ks_2samp_sorted_reference(np.zeros((0, 5)), np.zeros((0, 5)))
    assert [e.shape for e in empty] == [(0,), (0,)]
