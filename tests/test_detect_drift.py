"""Drift statistics against scipy on random and adversarial inputs, and the drift verdicts."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import scipy.stats
from aitrace.detect import (
    DriftMonitor,
    adjust_pvalues,
    chi2_drift,
    chi2_sf,
    detect_drift,
    jensen_shannon,
    jensen_shannon_from_counts,
    ks_2samp,
    ks_2samp_batched,
    ks_from_summaries,
    psi,
    psi_from_counts,
    rebin_counts,
    wasserstein_1d,
    welch_t,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import jensenshannon


def _close(ours: float, ref: float, rel: float) -> bool:
    if ref == 0.0:
        return abs(ours) <= 1e-300
    return abs(ours - ref) <= rel * abs(ref)


def _scipy_ks(a, b, method="auto"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = scipy.stats.ks_2samp(a, b, method=method)
    return float(r.statistic), float(r.pvalue)


def assert_matches_scipy_ks(a, b, method="auto") -> None:
    d_ref, p_ref = _scipy_ks(a, b, method)
    d, p = ks_2samp(a, b, method=method)
    assert abs(d - d_ref) <= 1e-12, (d, d_ref)
    assert _close(p, p_ref, 1e-9), (p, p_ref, len(a), len(b))


# ---------------------------------------------------------------- strategies
magnitudes = st.sampled_from([1e-300, 1e-12, 1.0, 1e12, 1e300])
# Values from a small pool produce heavy ties; wide floats produce none.
tied = st.integers(-3, 3).map(float)
wide = st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False)
extreme = st.sampled_from([np.inf, -np.inf, 0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308])
element = st.one_of(tied, wide, extreme)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=hnp.arrays(np.float64, st.integers(1, 60), elements=element),
    b=hnp.arrays(np.float64, st.integers(1, 60), elements=element),
    scale=magnitudes,
)
def test_ks_matches_scipy_on_adversarial_small_samples(a, b, scale) -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        a, b = a * scale, b * scale
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return
    assert_matches_scipy_ks(a, b)


@settings(max_examples=60, deadline=None)
@given(
    n1=st.integers(1, 2500),
    n2=st.integers(1, 2500),
    shift=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
    ties=st.booleans(),
)
def test_ks_matches_scipy_exact_regime(n1, n2, shift, seed, ties) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n1), rng.normal(shift, 1.0, size=n2)
    if ties:
        a, b = np.round(a * 2), np.round(b * 2)
    assert_matches_scipy_ks(a, b)


@pytest.mark.parametrize(("n1", "n2"), [(10001, 10001), (12000, 9000), (30000, 50), (10001, 1), (20000, 20011)])
@pytest.mark.parametrize("shift", [0.0, 0.03, 0.5])
def test_ks_matches_scipy_asymptotic_regime(n1, n2, shift) -> None:
    rng = np.random.default_rng(n1 + n2)
    assert_matches_scipy_ks(rng.normal(size=n1), rng.normal(shift, 1.0, size=n2))


@pytest.mark.parametrize("method", ["exact", "asymp"])
def test_ks_forced_methods_match_scipy(method) -> None:
    rng = np.random.default_rng(3)
    for n1, n2 in [(5, 7), (40, 40), (300, 170), (1000, 999)]:
        assert_matches_scipy_ks(rng.normal(size=n1), rng.normal(0.2, 1, size=n2), method)


def test_ks_edge_cases() -> None:
    assert ks_2samp([1.0], [1.0]) == (0.0, 1.0)
    assert_matches_scipy_ks([1.0], [2.0])
    assert_matches_scipy_ks(np.zeros(50), np.zeros(70))
    assert_matches_scipy_ks(np.zeros(50), np.ones(70))
    assert_matches_scipy_ks([-np.inf, 0.0, np.inf], [np.inf, np.inf])


def test_ks_drops_nan_like_scipy_omit() -> None:
    a = np.array([0.1, np.nan, 0.5, 0.9, 0.3])
    b = np.array([0.2, 0.8, np.nan, 1.5])
    ref = scipy.stats.ks_2samp(a, b, nan_policy="omit")
    d, p = ks_2samp(a, b)
    assert abs(d - ref.statistic) <= 1e-12 and _close(p, ref.pvalue, 1e-9)


@pytest.mark.parametrize("bad", [[], [np.nan, np.nan]])
def test_ks_empty_raises(bad) -> None:
    with pytest.raises(ValueError, match="empty"):
        ks_2samp(bad, [1.0, 2.0])
    with pytest.raises(ValueError, match="method"):
        ks_2samp([1.0], [2.0], method="fast")


def test_ks_batched_equals_per_feature_for_ragged_and_2d_inputs() -> None:
    rng = np.random.default_rng(7)
    refs = [rng.normal(size=n) for n in (5, 80, 300, 12000)]
    curs = [rng.normal(0.1 * i, 1, size=n) for i, n in enumerate((9, 80, 40, 11000))]
    d, p = ks_2samp_batched(refs, curs)
    for i in range(4):
        d_ref, p_ref = _scipy_ks(refs[i], curs[i])
        assert abs(d[i] - d_ref) <= 1e-12 and _close(p[i], p_ref, 1e-9)
    a, b = rng.normal(size=(50, 200)), rng.normal(size=(50, 150))
    a[3, 10:] = np.nan  # NaN-padded ragged row
    d2, p2 = ks_2samp_batched(a, b)
    d_ref, p_ref = _scipy_ks(a[3, :10], b[3])
    assert abs(d2[3] - d_ref) <= 1e-12 and _close(p2[3], p_ref, 1e-9)
    with pytest.raises(ValueError, match="features"):
        ks_2samp_batched(a, b[:3])


# ---------------------------------------------------------------- other statistics
samples = hnp.arrays(np.float64, st.integers(1, 80), elements=st.one_of(tied, st.floats(-1e6, 1e6, allow_nan=False)))


@settings(max_examples=200, deadline=None)
@given(u=samples, v=samples, scale=st.sampled_from([1e-200, 1e-9, 1.0, 1e9, 1e200]))
def test_wasserstein_matches_scipy(u, v, scale) -> None:
    u, v = u * scale, v * scale
    ref = scipy.stats.wasserstein_distance(u, v)
    assert math.isclose(wasserstein_1d(u, v), ref, rel_tol=1e-9, abs_tol=1e-300)


def test_wasserstein_rejects_inf_and_empty() -> None:
    with pytest.raises(ValueError, match="finite"):
        wasserstein_1d([np.inf, 1.0], [1.0])
    with pytest.raises(ValueError, match="empty"):
        wasserstein_1d([], [1.0])


counts = hnp.arrays(np.int64, st.integers(2, 12), elements=st.integers(0, 10**6))


@settings(max_examples=200, deadline=None)
@given(p=counts, q=counts, correction=st.booleans())
def test_chi2_drift_matches_scipy_contingency(p, q, correction) -> None:
    n = min(p.size, q.size)
    p, q = p[:n], q[:n]
    if p.sum() == 0 or q.sum() == 0:
        with pytest.raises(ValueError):
            chi2_drift(p, q)
        return
    stat, pval, dof = chi2_drift(p, q, correction=correction)
    keep = (p + q) > 0
    if keep.sum() < 2:
        assert (stat, pval, dof) == (0.0, 1.0, 0)
        return
    ref = scipy.stats.chi2_contingency(np.vstack([p[keep], q[keep]]), correction=correction)
    assert dof == ref.dof
    assert math.isclose(stat, ref.statistic, rel_tol=1e-10, abs_tol=1e-12)
    assert _close(pval, ref.pvalue, 1e-9) or (ref.pvalue < 1e-290 and pval < 1e-280)


@settings(max_examples=200, deadline=None)
@given(x=st.floats(0, 5000), dof=st.integers(1, 400))
def test_chi2_sf_matches_scipy(x, dof) -> None:
    ref = scipy.stats.chi2.sf(x, dof)
    ours = chi2_sf(x, dof)
    assert _close(ours, ref, 1e-9) or (ref < 1e-290 and ours < 1e-280)


def test_chi2_drift_accepts_category_dicts_and_aligns_them() -> None:
    stat, p, dof = chi2_drift({"a": 10, "b": 20}, {"b": 20, "a": 10, "c": 0})
    assert (stat, p, dof) == (0.0, 1.0, 1)
    with pytest.raises(TypeError):
        chi2_drift({"a": 1}, [1])
    with pytest.raises(ValueError):
        chi2_drift([1, -1], [1, 1])


@settings(max_examples=200, deadline=None)
@given(p=counts, q=counts)
def test_jensen_shannon_matches_scipy(p, q) -> None:
    n = min(p.size, q.size)
    p, q = p[:n], q[:n]
    if p.sum() == 0 or q.sum() == 0:
        with pytest.raises(ValueError):
            jensen_shannon_from_counts(p, q)
        return
    ours = jensen_shannon_from_counts(p, q)
    assert math.isclose(ours, jensenshannon(p, q, base=2), rel_tol=1e-9, abs_tol=1e-7)
    assert 0.0 <= ours <= 1.0


def test_psi_and_js_on_raw_samples() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=10000)
    assert psi(ref, rng.normal(size=10000)) < 0.02
    assert psi(ref, rng.normal(0.5, 1, 10000)) > 0.2
    assert jensen_shannon(ref, ref) == 0.0
    assert jensen_shannon(ref, ref + 3) > 0.5
    assert psi_from_counts([10, 0], [0, 10]) > 10  # empty bins are floored, not infinite
    with pytest.raises(ValueError):
        psi([np.nan], [1.0])
    with pytest.raises(ValueError):
        psi(ref, ref, bins=1)


def test_adjust_pvalues_matches_scipy_bh_and_textbook_holm() -> None:
    p = np.random.default_rng(0).uniform(size=40) ** 3
    np.testing.assert_allclose(adjust_pvalues(p, "fdr_bh"), scipy.stats.false_discovery_control(p), rtol=1e-12)
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), np.minimum(p * 40, 1))
    holm = adjust_pvalues(p, "holm")
    assert np.all(holm >= p) and np.all(holm <= 1)
    order = np.argsort(p)
    assert np.all(np.diff(holm[order]) >= 0)
    with pytest.raises(ValueError):
        adjust_pvalues([0.5, 1.5])


# ---------------------------------------------------------------- verdicts
def test_detect_drift_picks_tests_by_type_and_controls_false_alarms() -> None:
    rng = np.random.default_rng(11)
    n_features = 60
    ref = {f"f{i}": rng.normal(size=400) for i in range(n_features)}
    cur = {f"f{i}": rng.normal(size=300) for i in range(n_features)}
    cur["f0"] = rng.normal(1.0, 1.0, size=300)
    ref["cat"] = rng.choice(["a", "b", "c"], size=400)
    cur["cat"] = rng.choice(["a", "b", "c"], size=300, p=[0.6, 0.3, 0.1])
    ref["flag"] = rng.integers(0, 2, size=400)  # few distinct values: categorical
    cur["flag"] = rng.integers(0, 2, size=300)
    results = {r.feature: r for r in detect_drift(ref, cur)}
    assert results["f0"].test == "ks" and results["f0"].drifted
    assert results["f0"].effect_name == "wasserstein_norm" and results["f0"].effect_size > 0.5
    assert results["cat"].test == "chi2" and results["cat"].drifted
    assert results["flag"].test == "chi2"
    false_alarms = [k for k, r in results.items() if r.drifted and k not in ("f0", "cat")]
    assert len(false_alarms) <= 1
    assert all(r.pvalue_adjusted >= r.pvalue for r in results.values())


def test_large_samples_need_a_real_effect() -> None:
    rng = np.random.default_rng(2)
    ref = {"x": rng.normal(size=200_000)}
    cur = {"x": rng.normal(0.02, 1.0, size=200_000)}  # "significant" but negligible
    (r,) = detect_drift(ref, cur)
    assert r.pvalue < 1e-6 and not r.drifted


def test_drift_from_histogram_summaries() -> None:
    rng = np.random.default_rng(4)
    edges = np.linspace(-4, 4, 21)
    ref_counts, _ = np.histogram(rng.normal(size=5000), edges)
    same, _ = np.histogram(rng.normal(size=5000), edges)
    moved, _ = np.histogram(rng.normal(0.7, 1, size=5000), edges)
    coarse_edges = np.linspace(-4, 4, 9)
    moved_coarse, _ = np.histogram(rng.normal(0.7, 1, size=5000), coarse_edges)
    ref = {"h": {"count": 5000, "histogram_edges": edges.tolist(), "histogram_counts": ref_counts.tolist()}}

    def summary(e, c):
        return {"h": {"count": 5000, "histogram_edges": e.tolist(), "histogram_counts": c.tolist()}}

    cases = (("same", edges, same), ("moved", edges, moved), ("coarse", coarse_edges, moved_coarse))
    res = {name: detect_drift(ref, summary(e, c))[0] for name, e, c in cases}
    assert res["same"].test == "hist_ks" and not res["same"].drifted
    assert res["moved"].drifted and res["moved"].psi > 0.2
    assert res["coarse"].drifted  # different edges: the CDF gap is bounded at the edges of either


def test_drift_from_quantile_category_and_moment_summaries() -> None:
    rng = np.random.default_rng(5)
    levels = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]

    def qsum(x):
        return {"count": x.size, "quantiles": {str(q): float(np.quantile(x, q)) for q in levels}}

    ref_q = qsum(rng.normal(size=3000))
    same_q = qsum(rng.normal(size=3000))
    moved_q = qsum(rng.normal(0.5, 1.0, size=3000))
    assert not detect_drift({"q": ref_q}, {"q": same_q})[0].drifted
    moved = detect_drift({"q": ref_q}, {"q": moved_q})[0]
    assert moved.test == "quantile_ks" and moved.drifted
    # the interpolated-CDF KS distance is close to the raw-sample one (0.5 sd shift: ~0.2)
    assert 0.12 < moved.statistic < 0.28

    cats = detect_drift(
        {"c": {"count": 1000, "categories": {"a": 500, "b": 500}}},
        {"c": {"count": 1000, "categories": {"a": 800, "b": 150, "z": 50}}},
    )[0]
    assert cats.test == "chi2" and cats.drifted and cats.effect_name == "js_distance"

    moments = detect_drift(
        {"m": {"count": 2000, "mean": 10.0, "variance": 4.0}}, {"m": {"count": 2000, "mean": 11.0, "variance": 4.0}}
    )[0]
    assert moments.test == "welch_t" and moments.drifted and moments.effect_size == pytest.approx(0.5)
    empty = detect_drift({"m": {"count": 0}}, {"m": {"count": 0}})[0]
    assert empty.test == "none" and not empty.drifted


def test_rebin_counts_conserves_mass() -> None:
    out = rebin_counts([0, 1, 2, 3], [5, 10, 5], [-1, 0.5, 2.5, 10])
    assert out.sum() == pytest.approx(20)
    np.testing.assert_allclose(out, [2.5, 15, 2.5])


def test_summary_and_raw_mixed_is_an_error() -> None:
    with pytest.raises(TypeError, match="summary"):
        detect_drift({"x": {"count": 3}}, {"x": [1.0, 2.0]})


def test_drift_monitor_streams_and_round_trips_its_state() -> None:
    rng = np.random.default_rng(8)
    mon = DriftMonitor(reference_size=500, window=400, check_every=200)
    assert mon.update({"x": rng.normal(size=500), "y": rng.normal(size=500)}) == []
    quiet = mon.update({"x": rng.normal(size=200), "y": rng.normal(size=200)})
    assert [r.drifted for r in quiet] == [False, False]
    mon = DriftMonitor.from_state(json.loads(json.dumps(mon.to_state())))
    results = mon.update({"x": rng.normal(size=200), "y": rng.normal(3.0, 1.0, size=200)})
    assert {r.feature: r.drifted for r in results} == {"x": False, "y": True}
    assert len(mon.current["x"]) == 400 and len(mon.reference["x"]) == 500


def test_drift_monitor_handles_categorical_streams() -> None:
    rng = np.random.default_rng(9)
    mon = DriftMonitor(reference_size=600, window=600, check_every=600)
    mon.update({"country": rng.choice(["de", "fr", "it"], 600), "ok": rng.random(600) < 0.9})
    assert mon.update({"country": rng.choice(["de", "fr", "it"], 600), "ok": rng.random(600) < 0.9}) != []
    mon = DriftMonitor.from_state(json.loads(json.dumps(mon.to_state())))
    moved = mon.update({"country": rng.choice(["de", "fr", "it"], 600, p=[0.7, 0.2, 0.1]), "ok": rng.random(600) < 0.5})
    assert {r.feature: (r.test, r.drifted) for r in moved} == {"country": ("chi2", True), "ok": ("chi2", True)}
    with pytest.raises(TypeError):
        mon.update({"when": np.array(["2024-01-01"], dtype="datetime64[D]")})


nasty = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3).map(float))


@settings(max_examples=300, deadline=None)
@given(
    a=hnp.arrays(np.float64, st.integers(0, 60), elements=nasty),
    b=hnp.arrays(np.float64, st.integers(0, 60), elements=nasty),
)
def test_detect_drift_never_returns_nan_on_nasty_input(a, b) -> None:
    for r in detect_drift({"x": a}, {"x": b}):
        fields = (r.statistic, r.pvalue, r.pvalue_adjusted, r.effect_size)
        assert not any(math.isnan(f) for f in fields), r
        assert 0.0 <= r.pvalue <= r.pvalue_adjusted <= 1.0
        assert isinstance(r.drifted, bool)


def test_wasserstein_near_the_float_limit() -> None:
    big = 1.5e308
    assert wasserstein_1d([-big], [big]) == math.inf
    assert wasserstein_1d([big / 2], [big]) == pytest.approx(big / 2)


def test_summaries_of_small_discrete_batches_give_the_rows_ks_statistic() -> None:
    """summarize keeps a small or discrete batch's CDF exactly: the summary KS equals scipy's on rows."""
    import aitrace

    rng = np.random.default_rng(11)
    for _ in range(20):
        a = rng.poisson(0.7, size=60).astype(float)  # zero-inflated, many ties
        b = rng.poisson(0.7, size=45).astype(float)
        (sa,) = aitrace.summarize({"x": a})
        (sb,) = aitrace.summarize({"x": b})
        d, p, na, nb = ks_from_summaries(
            sa["histogram_edges"], sa["histogram_counts"], sb["histogram_edges"], sb["histogram_counts"]
        )
        ref = scipy.stats.ks_2samp(a, b)
        assert (na, nb) == (60, 45)
        assert d == pytest.approx(ref.statistic, abs=1e-12) and p == pytest.approx(ref.pvalue, rel=1e-6)


def test_summary_ks_never_exceeds_the_rows_ks_whatever_the_edges() -> None:
    import aitrace

    rng = np.random.default_rng(12)
    for _ in range(20):
        a = rng.lognormal(size=900)
        b = rng.lognormal(0.1, 1.0, size=700)
        (sa,) = aitrace.summarize({"x": a})
        for sb in (aitrace.summarize({"x": b})[0], aitrace.summarize({"x": b}, reference=[sa])[0]):
            d, p, _, _ = ks_from_summaries(
                sa["histogram_edges"], sa["histogram_counts"], sb["histogram_edges"], sb["histogram_counts"]
            )
            ref = scipy.stats.ks_2samp(a, b)
            assert d <= ref.statistic + 1e-12 and p >= ref.pvalue * (1 - 1e-9)
            assert d >= ref.statistic - 2.5 / 64  # bins at the batch's quantiles lose at most about a bin


def test_welch_t_matches_scipy() -> None:
    t, _df, p = welch_t(12, 1.0, 2.0, 30, 1.8, 0.5)
    ref = scipy.stats.ttest_ind_from_stats(1.0, np.sqrt(2.0), 12, 1.8, np.sqrt(0.5), 30, equal_var=False)
    assert t == pytest.approx(ref.statistic, rel=1e-12) and p == pytest.approx(ref.pvalue, rel=1e-9)
