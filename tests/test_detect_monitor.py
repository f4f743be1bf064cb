"""SeriesMonitor on the failures ML teams hunt, overfitting, and state/idempotency for the processors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from aitrace.detect import KINDS, Finding, SeriesMonitor, overfitting
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

T = np.arange(2000)


def run(kind: str, values: np.ndarray, steps: np.ndarray | None = None, chunk: int = 97) -> list[Finding]:
    """Feed the series in batches, round-tripping the state through JSON between batches."""
    steps = T[: len(values)] if steps is None else steps
    state = SeriesMonitor(kind).to_state()
    found: list[Finding] = []
    for i in range(0, len(values), chunk):
        mon = SeriesMonitor.from_state(json.loads(json.dumps(state)))
        found += mon.update(steps[i : i + chunk], values[i : i + chunk])
        state = mon.to_state()
    return found


def reasons(found: list[Finding]) -> Counter:
    return Counter(f.reason for f in found)


def first(found: list[Finding], reason: str) -> int:
    return int(min(f.step for f in found if f.reason == reason))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def loss(rng) -> np.ndarray:
    return 2 * np.exp(-T / 400) + 0.3 + 0.03 * rng.normal(size=T.size)


@pytest.fixture
def grad(rng) -> np.ndarray:
    return np.exp(rng.normal(0, 0.3, T.size))


def test_healthy_series_of_every_kind_stay_quiet(rng, loss, grad) -> None:
    healthy = {
        "loss": loss,
        "grad_norm": grad,
        "lr": np.where(T < 100, 1e-3 * (T + 1) / 100, 1e-3 * 0.5 * (1 + np.cos(np.pi * T / 2000))) + 1e-6,
        "accuracy": np.clip(0.9 + 0.01 * rng.normal(size=T.size), 0, 1),
        "confidence": np.clip(0.8 + 0.05 * rng.normal(size=T.size), 0, 1),
        "latency": np.exp(rng.normal(np.log(20), 0.2, T.size)),
        "error_rate": rng.binomial(100, 0.01, T.size) / 100,
        "throughput": rng.normal(1000, 30, T.size),
        "generic": rng.normal(size=T.size),
    }
    assert set(healthy) == set(KINDS)
    for kind, values in healthy.items():
        assert len(run(kind, values)) <= 2, (kind, reasons(run(kind, values)))


def test_diverging_loss(loss) -> None:
    rising = loss.copy()
    rising[1500:] += 0.02 * np.exp((T[1500:] - 1500) / 40)
    found = run("loss", rising)
    assert set(reasons(found)) == {"diverging"}
    assert 1500 <= first(found, "diverging") <= 1620
    nan = loss.copy()
    nan[1500] = np.nan
    (f,) = run("loss", nan)
    assert (f.step, f.reason, f.severity, f.score) == (1500, "diverging", "critical", 1.0)


def test_loss_spike_and_stalled_loss(loss) -> None:
    spiky = loss.copy()
    spiky[1500] += 1.0
    assert [(f.step, f.reason) for f in run("loss", spiky)] == [(1500, "spike")]
    stalled = loss.copy()
    stalled[1500:1700] = stalled[1499]
    found = run("loss", stalled)
    assert first(found, "flat") <= 1503
    assert reasons(found)["flat"] >= 190


def test_exploding_and_vanishing_gradients(grad) -> None:
    exploding = grad.copy()
    exploding[1500:] *= np.exp((T[1500:] - 1500) / 20)
    found = run("grad_norm", exploding)
    counts = reasons(found)
    # the first 5x rise reads as a level shift; from one decade above baseline on it is an explosion
    assert set(counts) <= {"exploding", "level_shift"} and counts["exploding"] >= 0.95 * len(found)
    assert min(f.step for f in found) >= 1500
    assert first(found, "exploding") <= 1575
    collapsed = grad.copy()
    collapsed[1500:] *= 1e-4
    found = run("grad_norm", collapsed)
    assert first(found, "vanishing") == 1500
    zero = grad.copy()
    zero[1500:] = 0.0
    assert set(reasons(run("grad_norm", zero))) == {"vanishing"}


def test_learning_rate_far_off_and_jumps() -> None:
    steps = np.full(2000, 0.1)
    steps[700:] = 0.01
    steps[1400:] = 0.001  # step decay is normal
    assert run("lr", steps) == []
    for bad in (50.0, 1e-12, 0.0, -1e-3):
        lr = steps.copy()
        lr[1800] = bad
        assert [(f.step, f.reason) for f in run("lr", lr)] == [(1800, "lr_out_of_range")]
    jump = steps.copy()
    jump[1800:] = 1.0
    assert first(run("lr", jump), "lr_jump") == 1800


def test_inference_latency_spikes_and_error_bursts(rng) -> None:
    latency = np.exp(rng.normal(np.log(20), 0.2, T.size))
    latency[[500, 900, 1500]] *= 20
    # a third spike of the same size in 1,500 requests is this service's usual (ScoreCalibrator) ...
    assert [(f.step, f.reason) for f in run("latency", latency)] == [(500, "latency_spike"), (900, "latency_spike")]
    latency[1500] *= 50  # ... a far bigger one is not
    assert [(f.step, f.reason) for f in run("latency", latency)][2:] == [(1500, "latency_spike")]
    errors = rng.binomial(100, 0.01, T.size) / 100
    errors[1500:1520] = rng.binomial(100, 0.2, 20) / 100
    found = run("error_rate", errors)
    assert first(found, "error_burst") == 1500
    assert all(1500 <= f.step < 1600 for f in found)


def test_accuracy_drop_and_out_of_range(rng) -> None:
    acc = np.clip(0.9 + 0.01 * rng.normal(size=T.size), 0, 1)
    drop = acc.copy()
    drop[1500:] -= 0.1
    found = run("accuracy", drop)
    # at the worker's 0.9 a 10-sd drop pages once its level has moved (its first points score 0.82-0.85)
    assert 1500 <= min(f.step for f in found) <= 1520 and {f.reason for f in found} <= {"dip", "level_shift"}
    bad = acc.copy()
    bad[1000] = 1.5
    assert [(f.step, f.reason) for f in run("accuracy", bad)] == [(1000, "out_of_range")]


def test_a_generic_series_pages_on_what_is_rare_for_it_and_never_on_a_constant(rng) -> None:
    """The monitor's generic, service and score kinds are judged as the worker judges any other series:
    raw, ``generic`` flagged 17.9 % of this machine's real telemetry and every point of an all-zero
    error count as ``flat``."""
    assert run("generic", np.zeros(T.size)) == [] and run("error_rate", np.zeros(T.size)) == []
    bursty = rng.normal(0, 1, T.size)
    bursty[50::100] += 20  # a burst every 100 points: this series' normal
    assert int(np.count_nonzero(SeriesMonitor("generic", threshold=0.9).detector.score(bursty) >= 0.9)) >= 15
    bursty[1733] += 200  # once far more than it ever did
    late = [f.step for f in run("generic", bursty) if f.step > 1000]
    assert 1733 in late and len(late) <= 2
    stuck = np.r_[rng.normal(5, 1, 1000), np.full(1000, 5.0)]  # a series that varied, then froze
    assert "flat" in reasons(run("generic", stuck))


def test_an_older_monitor_state_loads_with_a_fresh_calibration(rng) -> None:
    x = rng.normal(0, 1, 600)
    mon = SeriesMonitor("generic")
    mon.update(np.arange(600), x)
    state = {k: v for k, v in mon.to_state().items() if k not in ("calibrator", "first", "varied")}
    old = SeriesMonitor.from_state(json.loads(json.dumps(state)))
    assert old.calibrator is not None and old.calibrator.total == 0 and old.first is None
    again = SeriesMonitor.from_state(json.loads(json.dumps(mon.to_state())))
    assert again.to_state() == mon.to_state() and again.varied and again.first == x[0]
    assert SeriesMonitor("loss").calibrator is None
    for bad in ({"cells": [[9, 0, 1]]}, {"cells": [[-1, 0, 7]]}, {"run": 1, "pending": [[1, 999, 2]]}, {"run": 10**30}):
        broken = json.loads(json.dumps(mon.to_state()))
        broken["calibrator"] |= {"pending": [], **bad}
        with pytest.raises(ValueError):
            SeriesMonitor.from_state(broken)


def test_the_directions_a_kind_ignores_do_not_make_its_real_events_usual(rng) -> None:
    """Spikes and dips are one family of the calibration: a throughput's usual bursts up made its first
    drop of the same size "usual", a latency's usual dips its first spike."""
    thr = np.exp(rng.normal(np.log(1000), 0.03, T.size))
    thr[25::50] *= 3  # bursts up: no news for a throughput
    thr[1500] /= 3
    assert [(f.step, f.reason) for f in run("throughput", thr)] == [(1500, "throughput_drop")]
    lat = np.exp(rng.normal(np.log(20), 0.03, T.size))
    lat[25::50] /= 3  # faster requests: no news for a latency
    lat[1500] *= 3
    assert [(f.step, f.reason) for f in run("latency", lat)] == [(1500, "latency_spike")]


def test_throughput_drops_and_ingestion_delays(rng) -> None:
    thr = rng.normal(1000, 30, T.size)
    drop = thr.copy()
    drop[1500:] *= 0.3
    assert first(run("throughput", drop), "throughput_drop") == 1500
    stall = thr.copy()
    stall[1500] = 0.0
    assert [(f.step, f.reason) for f in run("throughput", stall)] == [(1500, "throughput_drop")]
    times = np.cumsum(rng.uniform(0.9, 1.1, T.size))
    delayed = times.copy()
    delayed[1500:] += 60.0  # one batch arrived a minute late
    found = run("throughput", thr, steps=delayed)
    assert [f.reason for f in found] == ["ingestion_delay"]
    assert found[0].step == delayed[1500]


def test_replayed_batches_change_nothing(loss) -> None:
    mon = SeriesMonitor("loss")
    spiky = loss.copy()
    spiky[300] += 2.0
    first_pass = mon.update(T[:400], spiky[:400])
    before = json.dumps(mon.to_state())
    assert mon.update(T[200:400], spiky[200:400]) == []  # Kafka redelivery
    assert json.dumps(mon.to_state()) == before
    assert [f.step for f in first_pass] == [300]
    assert SeriesMonitor("loss", skip_seen=False).update(T[:10], loss[:10]) == []


def test_findings_are_plain_and_described(loss) -> None:
    spiky = loss.copy()
    spiky[1500] += 1.0
    (f,) = run("loss", spiky)
    d = f.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["kind"] == "loss" and d["threshold"] == 0.5 and 0.5 <= d["score"] < 1.0
    assert "loss" in d["message"] and d["index"] == 1500


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown series kind"):
        SeriesMonitor("temperature")
    with pytest.raises(ValueError, match="threshold"):
        SeriesMonitor("loss", threshold=1.5)
    with pytest.raises(ValueError, match="differ in length"):
        SeriesMonitor("loss").update([1, 2], [1.0])
    with pytest.raises(ValueError, match="finite"):
        SeriesMonitor("loss").update([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="malformed"):
        SeriesMonitor.from_state({"version": 1})


# ---------------------------------------------------------------- overfitting
def test_overfitting_detected_and_best_checkpoint_found() -> None:
    t = np.arange(80.0)
    rng = np.random.default_rng(1)
    train = 2.0 * np.exp(-t / 15) + 0.01 * rng.normal(size=t.size)
    val = 2.0 * np.exp(-t / 15) + 0.1 + 0.003 * np.maximum(t - 40, 0) ** 1.5 + 0.01 * rng.normal(size=t.size)
    r = overfitting(train, val, window=30)
    assert r.overfitting and r.score > 0.99 and r.val_trend > 0.5 and r.train_trend < 0
    assert 30 <= r.best_index <= 50


def test_no_overfitting_when_both_fall_or_both_rise() -> None:
    t = np.arange(80.0)
    rng = np.random.default_rng(2)
    falling = 2.0 * np.exp(-t / 30)
    assert not overfitting(falling + 0.01 * rng.normal(size=80), falling + 0.1).overfitting
    rising = 1.0 + t / 50  # both diverge: that is divergence, not overfitting
    assert not overfitting(rising, rising + 0.1).overfitting
    short = overfitting([1.0, 0.9], [1.0, 1.1])
    assert not short.overfitting and "need" in short.message
    with pytest.raises(ValueError):
        overfitting([1.0], [1.0, 2.0])


@settings(max_examples=200, deadline=None)
@given(
    values=hnp.arrays(np.float64, st.integers(0, 120), elements=st.floats(allow_nan=True, allow_infinity=True)),
    kind=st.sampled_from(KINDS),
)
def test_any_values_give_well_formed_findings(values, kind) -> None:
    mon = SeriesMonitor(kind)
    for f in mon.update(np.arange(values.size), values):
        assert 0.0 <= f.score <= 1.0 and f.reason and f.message and f.severity in ("warning", "critical")
    assert json.loads(json.dumps(mon.to_state())) == mon.to_state()


def test_settling_and_slowly_declining_gradients_are_not_vanishing() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(5000)
    settling = (1 + 9 * np.exp(-t / 60)) * np.exp(rng.normal(0, 0.25, t.size))  # 10x high at init
    declining = np.exp(rng.normal(0, 0.25, t.size) - t / 2000)  # 10x lower over 4600 steps
    for series in (settling, declining):
        mon = SeriesMonitor("grad_norm")
        found = [f for i in range(0, t.size, 100) for f in mon.update(t[i : i + 100], series[i : i + 100])]
        assert not [f for f in found if f.reason in ("vanishing", "exploding")]
        assert len(found) <= 3


def test_exploding_scores_keep_rising_with_the_explosion(grad) -> None:
    exploding = grad.copy()
    exploding[1500:] *= np.exp((T[1500:] - 1500) / 25)
    scores = [f.score for f in run("grad_norm", exploding) if f.reason == "exploding"]
    assert max(scores) > 0.95  # many decades above the baseline, not a lag-bounded ratio
