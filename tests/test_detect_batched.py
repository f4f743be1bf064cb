"""Batched drift statistics equal the per-feature functions row by row (and scipy through them)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from aitrace.detect import (
    chi2_drift,
    chi2_drift_batched,
    jensen_shannon,
    jensen_shannon_batched,
    psi,
    psi_batched,
    wasserstein_1d,
    wasserstein_1d_batched,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

element = st.one_of(st.integers(-3, 3).map(float), st.floats(-1e6, 1e6, allow_nan=False))
rows = st.lists(hnp.arrays(np.float64, st.integers(2, 40), elements=element), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(ref=rows, cur=rows, bins=st.integers(2, 12))
def test_batched_equal_per_feature_on_ragged_rows(ref, cur, bins) -> None:
    k = min(len(ref), len(cur))
    ref, cur = ref[:k], cur[:k]
    w = wasserstein_1d_batched(ref, cur)
    p = psi_batched(ref, cur, bins=bins)
    j = jensen_shannon_batched(ref, cur, bins=bins)
    for i in range(k):
        assert math.isclose(w[i], wasserstein_1d(ref[i], cur[i]), rel_tol=1e-12, abs_tol=1e-300)
        assert math.isclose(w[i], scipy.stats.wasserstein_distance(ref[i], cur[i]), rel_tol=1e-9, abs_tol=1e-300)
        assert math.isclose(p[i], psi(ref[i], cur[i], bins=bins), rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(j[i], jensen_shannon(ref[i], cur[i], bins=bins), rel_tol=1e-12, abs_tol=1e-12)


def test_batched_dense_arrays_with_nan_padding_and_infinities() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(20, 300))
    cur = rng.normal(0.3, 1.0, size=(20, 200))
    ref[4, 250:] = np.nan
    cur[7, :3] = [np.inf, -np.inf, np.inf]  # infinite values are outside every bin, as in psi()
    p = psi_batched(ref, cur)
    j = jensen_shannon_batched(ref, cur)
    for i in (0, 4, 7):
        r, c = ref[i][~np.isnan(ref[i])], cur[i]
        assert p[i] == pytest.approx(psi(r, c), rel=1e-12)
        assert j[i] == pytest.approx(jensen_shannon(r, c), rel=1e-12)
    with pytest.raises(ValueError, match="finite"):
        wasserstein_1d_batched(ref, cur)
    with pytest.raises(ValueError, match="features"):
        psi_batched(ref, cur[:3])


@settings(max_examples=150, deadline=None)
@given(
    counts=hnp.arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(2, 8)), elements=st.integers(0, 10**5)),
    other=st.integers(0, 2**31),
    correction=st.booleans(),
)
def test_chi2_batched_equals_per_feature(counts, other, correction) -> None:
    cur = np.random.default_rng(other).integers(0, 10**5, size=counts.shape)
    counts = counts.copy()
    counts[:, 0] += 1
    cur[:, 0] += 1
    stat, p, dof = chi2_drift_batched(counts, cur, correction=correction)
    for i in range(counts.shape[0]):
        s1, p1, d1 = chi2_drift(counts[i], cur[i], correction=correction)
        assert dof[i] == d1
        assert math.isclose(stat[i], s1, rel_tol=1e-10, abs_tol=1e-12)
        assert math.isclose(p[i], p1, rel_tol=1e-9, abs_tol=1e-300)


def test_chi2_batched_bad_input() -> None:
    with pytest.raises(ValueError, match="aligned"):
        chi2_drift_batched([[1, 2]], [[1, 2, 3]])
    with pytest.raises(ValueError, match="positive total"):
        chi2_drift_batched([[0, 0]], [[1, 2]])
    with pytest.raises(ValueError, match="non-negative"):
        chi2_drift_batched([[1, -2]], [[1, 2]])
