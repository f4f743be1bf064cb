"""A run's pace (its step time or throughput): sustained slowdowns and NaN page, the machine's slow steps do not."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from aitrace.detect.series import TrainingSeries
from aitrace.detect.service import ServiceSeries
from aitrace.detect.training import pace_direction

T0 = 1_800_000_000_000_000
RECORDED = Path(__file__).resolve().parent.parent / "bench" / "data" / "steptimes-vm-20261206.csv.gz"


def test_a_pace_is_read_from_words_of_training_units_only() -> None:
    slower_up = ["step_time_ms", "dt", "iter_time", "data_time", "batch_time", "seconds_per_step", "sec/it"]
    slower_down = ["throughput", "samples_per_second", "train_samples_per_second", "tokens/s", "it/s", "mfu"]
    slower_down += ["step_per_sec", "batch_per_sec", "batch/sec", "iteration_per_sec", "batches_per_sec"]
    neither = ["ctxt_per_s", "latency_p50_ms", "requests_per_s", "disk_read_bps", "cpu_pct", "gpu_mem", "loss"]
    neither += ["time", "elapsed", "elapsed_time", "time/time_elapsed", "duration", "seconds"]  # a run's whole time
    assert [pace_direction(n) for n in slower_up] == [1] * len(slower_up)
    assert [pace_direction(n) for n in slower_down] == [-1] * len(slower_down)
    assert [pace_direction(n) for n in neither] == [0] * len(neither)


def _feed(rules: TrainingSeries, values: np.ndarray, times: np.ndarray, chunk: int = 50) -> list:
    found = []
    for lo in range(0, values.size, chunk):
        steps = np.arange(lo, min(lo + chunk, values.size))
        found += rules.update(steps, values[steps], times=times[steps])
    return found


def test_real_step_times_of_healthy_runs_page_nothing() -> None:
    """The step times and samples/s of 30 real healthy PyTorch runs on this 2-core machine (its jitter made a
    0.5 ms step take up to 2.5 ms): the generic scores paged 13 of them, a run's pace rules none."""
    runs: dict[str, list[tuple[int, int, float, float]]] = {}
    with gzip.open(RECORDED, "rt", newline="") as fh:
        for r in csv.DictReader(fh):
            runs.setdefault(r["run"], []).append(
                (int(r["step"]), int(r["time_us"]), float(r["step_time_ms"]), float(r["samples_per_sec"]))
            )
    assert len(runs) == 30
    paged, generic = [], 0
    for run, rows in runs.items():
        rows.sort()
        times = np.asarray([r[1] for r in rows], dtype=np.int64)
        for k, metric in ((2, "step_time_ms"), (3, "samples_per_sec")):
            values = np.asarray([r[k] for r in rows])
            paged += [(run, metric, f.step) for f in _feed(TrainingSeries(metric), values, times)]
            generic += len(_feed(TrainingSeries(f"series_{k}"), values, times))
    assert paged == [] and generic > 0


def _step_times(seed: int, slower_from: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """0.2 s steps with 5 % jitter, one in a hundred 2-8x slower (a collection, a loader's refill), 2x slower
    for good from ``slower_from``: (seconds per step, event times)."""
    rng = np.random.default_rng(seed)
    step_s = 0.2 * rng.lognormal(0, 0.05, 3000)
    slow = rng.random(step_s.size) < 0.01
    step_s[slow] *= rng.uniform(2, 8, int(slow.sum()))
    step_s[slower_from:] *= 2.0
    return step_s, T0 + (np.cumsum(step_s) * 1e6).astype(np.int64)


@pytest.mark.parametrize("metric", ["step_time", "samples_per_sec"])
def test_a_sustained_slowdown_and_nan_page_single_slow_steps_do_not(metric: str) -> None:
    for seed in range(3):
        step_s, times = _step_times(seed)
        values = step_s * 1000 if metric == "step_time" else 64 / step_s
        values[2500] = np.nan
        found = _feed(TrainingSeries(metric), values, times)
        assert [f.reason for f in found] == ["level_shift", "nan"], found
        assert 2000 <= found[0].step < 2100 and found[1].step == 2500 and found[1].severity == "critical"
        assert ("rose" if metric == "step_time" else "fell") in found[0].message and metric in found[0].message
        assert 0.4 < found[0].score < 0.6 and found[0].details["factor"].startswith(("1.9", "2"))  # 2x slower


def test_a_pace_saved_before_it_was_told_pages_its_slow_steps_no_more() -> None:
    step_s, times = _step_times(0)
    values = step_s * 1000
    first = TrainingSeries("step_time")
    _feed(first, values[:1000], times[:1000])
    state = first.to_state()
    del state["service"]["pace"]  # as a release before wrote it: the generic rules, no slowdown monitor
    state["service"]["shift"] = None
    rules = TrainingSeries.from_state(state)
    assert rules.service is not None and rules.service.pace == 1
    found = []
    for lo in range(1000, 3000, 50):
        steps = np.arange(lo, lo + 50)
        found += rules.update(steps, values[steps], times=times[steps])
    assert [f.reason for f in found] == ["level_shift"] and 2000 <= found[0].step < 2100


def test_a_saved_pace_out_of_range_is_refused() -> None:
    state = ServiceSeries("step_time", pace=1).to_state()
    for bad in (2, True, "1"):
        with pytest.raises(ValueError, match="pace"):
            ServiceSeries.from_state(state | {"pace": bad})


def test_a_throughput_that_stalls_at_zero_pages() -> None:
    """Shown by a review: the slowdown monitor read only positive values, so a throughput that fell to 0 for
    good (a run that makes no progress) never paged."""
    times = T0 + np.arange(1500, dtype=np.int64) * 200_000
    sps = 64 / (0.2 * np.random.default_rng(0).lognormal(0, 0.05, 1500))
    sps[1000:] = 0.0
    found = _feed(TrainingSeries("samples_per_sec"), sps, times)
    assert {f.reason for f in found} == {"level_shift"} and 1000 <= found[0].step < 1040
    assert found[0].severity == "critical" and "fell to 0x" in found[0].message and "-> 0 " in found[0].message


def test_a_slow_warm_up_is_not_the_baseline_a_later_slowdown_is_judged_by() -> None:
    """Shown by a review: 300 steps of a 3x slower warm-up (compilation, caches) stayed in the baseline, and a
    later 2x slowdown of ten minutes never paged. A change either way is the new normal; a speed-up never pages."""
    rng = np.random.default_rng(1)
    step_s = np.r_[np.full(300, 0.6), np.full(300, 0.2), np.full(1500, 0.4)] * rng.lognormal(0, 0.05, 2100)
    times = T0 + (np.cumsum(step_s) * 1e6).astype(np.int64)
    for metric, values in (("step_time", step_s * 1000), ("samples_per_sec", 64 / step_s)):
        found = _feed(TrainingSeries(metric), values, times)
        assert {f.reason for f in found} == {"level_shift"} and 600 <= found[0].step < 700, (metric, found)


def test_a_pace_state_is_read_by_the_release_before_as_a_latency_monitor() -> None:
    """Shown by a review: the monitor's state nested under a key of its own, and the release before (which
    restores any saved monitor as a latency's) raised KeyError on every pace series: a rollback crashed."""
    from aitrace.detect.level import LatencyShiftMonitor

    step_s, times = _step_times(0)
    rules = TrainingSeries("step_time")
    _feed(rules, step_s[:500] * 1000, times[:500])
    saved = rules.to_state()["service"]["shift"]
    assert LatencyShiftMonitor.from_state(saved).n_seen == 500  # what that release's from_state calls


def test_a_pace_saved_with_a_learnt_cycle_restores_without_it() -> None:
    """Shown by a reread: a step time saved by a release that scored it as any series (six days of a daily
    rhythm: a cycle learnt) kept that cycle when restored as a pace, which learns none; the rules come from
    the name, and only where the series stands (points seen) from the state."""
    hours = np.arange(6 * 24 * 12) / 12  # six days every 5 minutes
    times = T0 + (hours * 3_600e6).astype(np.int64)
    values = 200 * (1 + 0.3 * np.sin(2 * np.pi * hours / 24)) * np.random.default_rng(0).lognormal(0, 0.02, hours.size)
    old = ServiceSeries("step_time")  # as a release before paces ran it: the generic rules, a cycle
    for lo in range(0, hours.size, 12):
        old.update(times[lo : lo + 12], values[lo : lo + 12])
    assert old.cycle is not None and old.cycle.period == 24
    rules = TrainingSeries("step_time")
    state = rules.to_state() | {"n_seen": hours.size}
    state["service"] = {k: v for k, v in old.to_state().items() if k != "pace"}
    restored = TrainingSeries.from_state(state)
    assert restored.service is not None and restored.service.pace == 1 and restored.service.cycle is None
    assert restored.service.n_seen == hours.size and restored.service.shift_base == hours.size
    assert restored.to_state()["service"]["cycle"] is None


def test_a_chunks_incident_is_named_for_its_level_shift_before_a_higher_scored_spike() -> None:
    # A sustained shift's score became 1 - 1/factor (0.5 for 2x); as its factor it always named the incident
    # beside a spike: a run's served series still names it first, a loss still by the highest score.
    from aitrace.detect.finding import Finding

    spike = Finding(3, 3.0, 9.0, 0.97, "spike", "one slow step", 0.9, "step_time")
    shift = Finding(5, 5.0, 2.0, 0.5, "level_shift", "median step_time rose 2x", 1.5, "step_time")
    nan = Finding(7, 7.0, float("nan"), 1.0, "nan", "step_time is nan", 0.9, "step_time", "critical")
    served = TrainingSeries("step_time")
    assert served.headline([spike, shift]) is shift and served.headline([shift, spike, nan]) is nan
    assert TrainingSeries("loss").headline([spike, shift]) is spike
