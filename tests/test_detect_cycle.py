"""CycleModel: a series' own daily or weekly cycle, found from its history and taken out before scoring."""

from __future__ import annotations

import json

import numpy as np
from aitrace.detect.cycle import HOUR_US, CycleModel
from aitrace.detect.service import ServiceSeries

T0 = 1_800_000_000_000_000 - 1_800_000_000_000_000 % (168 * HOUR_US)  # a Monday-like origin of the week


def _hourly(days: int, per_hour: int = 1) -> np.ndarray:
    return T0 + (np.arange(days * 24 * per_hour) * (HOUR_US // per_hour)).astype(np.int64)


def _daily(t: np.ndarray, amplitude: float = 5.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * ((t - T0) / HOUR_US) / 24)


def test_a_daily_cycle_is_found_after_four_days_and_taken_out() -> None:
    t = _hourly(6)
    x = 100 + _daily(t) + np.random.default_rng(0).normal(0, 0.3, t.size)
    m = CycleModel()
    view = m.observe(t, x)
    assert m.period_hours == 24 and view.switches == [96]
    assert np.std(view.resid[96:]) < 0.6 < 3.0 < np.std(x[96:])


def test_a_weekly_cycle_wins_when_weekdays_and_weekends_differ() -> None:
    t = _hourly(35)
    day_of_week = ((t - T0) // (24 * HOUR_US)) % 7
    x = 100 + _daily(t) + np.where(day_of_week >= 5, -20.0, 0.0) + np.random.default_rng(1).normal(0, 0.3, t.size)
    m = CycleModel()
    switches = m.observe(t, x).switches
    assert m.period_hours == 168 and len(switches) == 2  # daily from day 4, weekly from week 4


def test_noise_and_random_walks_rarely_turn_a_cycle_on() -> None:
    t = _hourly(42)
    turned_on = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        walks = (rng.normal(0, 1, t.size), np.cumsum(rng.normal(0, 1, t.size)), np.cumsum(rng.standard_t(2, t.size)))
        for x in walks:
            view = CycleModel().observe(t, x)
            turned_on += bool(view.switches)
            assert view.switches or np.array_equal(view.resid, x)  # no cycle: a flat profile
    assert turned_on <= 4  # of 120 (3 on this seed set)


def test_chunked_input_and_a_json_round_trip_give_the_same_residuals() -> None:
    t = _hourly(8, per_hour=6)
    x = 100 + _daily(t) + np.random.default_rng(2).normal(0, 0.3, t.size)
    whole = CycleModel().observe(t, x)
    m, parts, scores, seen = CycleModel(), [], [], []
    for lo in range(0, t.size, 37):
        m = CycleModel.from_state(json.loads(json.dumps(m.to_state())))
        view = m.observe(t[lo : lo + 37], x[lo : lo + 37])
        parts.append(view.resid)
        scores.append(view.score)
        seen += [lo + k for k in view.switches]
    assert np.allclose(np.concatenate(parts), whole.resid) and np.allclose(np.concatenate(scores), whole.score)
    assert seen == whole.switches and whole.switches and whole.score.any()


def test_a_day_whose_peak_does_not_come_is_found_only_against_the_cycle() -> None:
    """Every 5 minutes for 9 days; on day 8 the daytime peak never comes (the series stays at its
    daily mean): against the recent level that is a calm day, against the cycle a deep dip."""
    t = T0 + np.arange(9 * 288, dtype=np.int64) * 300_000_000
    x = 100 + _daily(t, 10.0) + np.random.default_rng(3).normal(0, 0.5, t.size)
    day8 = slice(8 * 288, 8 * 288 + 144)  # the first half of day 8: the peak
    x[day8] = 100 + np.random.default_rng(4).normal(0, 0.5, 144)

    def found(cycle: bool) -> list[int]:
        s = ServiceSeries("queue_depth", cycle=cycle)
        return [f.index for f in s.update(t, x)]

    with_cycle, without = found(True), found(False)
    assert any(day8.start <= i < day8.stop for i in with_cycle)
    assert not any(day8.start <= i < day8.stop for i in without)
    assert len([i for i in with_cycle if i >= 4 * 288 and not day8.start <= i < day8.stop]) <= 2


def test_without_a_cycle_a_sustained_move_from_the_last_days_level_scores_and_one_point_does_not() -> None:
    """Hourly flow about 100 that wanders, no cycle: from its second day it is judged against the
    level of the last day (a flat profile). A 12-hour fall to 25 on day 3 scores from its third
    hour (three points in a row off, the usual spread capped so that the fall does not hide
    itself) and pages in words; one hour at 10x on day 6 is no sustained move and scores nothing."""
    t = _hourly(8)
    rng = np.random.default_rng(5)
    x = 100 + np.cumsum(rng.normal(0, 0.3, t.size)) + rng.normal(0, 0.5, t.size)
    outage = slice(3 * 24 + 8, 3 * 24 + 20)
    x[outage] = 25 + rng.normal(0, 0.2, 12)
    x[6 * 24 + 3] *= 10.0
    view = CycleModel().observe(t, x)
    assert view.switches == [] and not view.score[:24].any()  # no day of history yet: nothing to judge
    assert (view.score[outage][2:6] >= 0.9).all() and view.z[outage][2] < 0
    assert view.score[6 * 24 : 6 * 24 + 8].max() < 0.5
    found = ServiceSeries("flow").update(t, x)
    words = [f.message for f in found if f.index in range(outage.start, outage.stop)]
    assert any("against its level of the last day" in w and "below" in w for w in words), words


def test_a_state_saved_before_the_flat_profile_and_the_run_still_loads() -> None:
    """Worker tables hold states saved by the older code: a four-cell phase and no ``watch``."""
    t = _hourly(6)
    x = 100 + _daily(t) + np.random.default_rng(0).normal(0, 0.3, t.size)
    m = CycleModel()
    m.observe(t[:120], x[:120])
    old = json.loads(json.dumps(m.to_state()))
    old["phase"] = old["phase"][:4]
    del old["watch"]
    restored = CycleModel.from_state(old)
    assert restored.watch and restored.phase.size == 5 and restored.phase[4] == 0.0
    assert np.allclose(restored.observe(t[120:], x[120:]).resid, m.observe(t[120:], x[120:]).resid)


def test_an_exactly_repeating_cycle_is_no_incident_and_a_bump_on_it_is() -> None:
    # the profile is linear between hourly means: a noiseless daily sine every 5 minutes sits up to 0.9 % of its
    # swing off it, against a usual spread of ~1e-16: 2,472 level shifts in 5,000 points, "1e13 spreads" off
    from aitrace.detect.service import ServiceSeries

    n = 5000
    t = 1_800_000_000_000_000 + np.arange(n, dtype=np.int64) * 300_000_000
    x = np.sin(2 * np.pi * np.arange(n) / 288)
    bumped = x.copy()
    bumped[4000:4036] += 1.0  # three hours a whole swing above the cycle
    for series, want in ((x, []), (bumped, [4000])):
        rules, found = ServiceSeries("confidence"), []
        for lo in range(0, n, 50):
            found += [f.index for f in rules.update(t[lo : lo + 50], series[lo : lo + 50])]
        assert found[:1] == want
