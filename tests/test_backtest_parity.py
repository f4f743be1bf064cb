"""`aitrace backtest --metric NAME` replays the worker: same findings, at the same steps.

For every role a training metric's name can have, one series goes (a) through the CLI as a
CSV and (b) through the worker's ``SeriesDetectors`` in chunks of 20 steps, as metric blocks
reach it. The worker opens its incident in the chunk of the backtest's first finding, and every alert
version it publishes is one of the backtest's findings; fed in the worker's chunks, the rules
give exactly the findings of one pass over the whole CSV.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aitrace.detect.series import TrainingSeries
from aitrace.processors.detection import SeriesDetectors

T0 = 1_800_000_000_000_000
CHUNK = 20


def _series(metric: str) -> np.ndarray:
    rng = np.random.default_rng(11)
    steps = np.arange(400)
    if metric in ("loss", "val/loss"):  # a validation loss sent under its W&B name: no run checks, the same spikes
        x = 2.0 * np.exp(-steps / 80) + 0.1 + rng.normal(0, 0.01, 400)
        x[200] = 30.0  # an exploding batch
        x[350:] = np.nan  # and the run diverges
    elif metric == "grad_norm":
        x = np.exp(rng.normal(0, 0.2, 400))
        x[250:] *= 1e4  # gradients explode
    elif metric == "train_loss":  # flat for 150 steps: stalled, read as the training loss it names
        x = np.r_[np.full(150, 2.3), 2.3 * np.exp(-np.arange(250) / 30)] + rng.normal(0, 0.01, 400)
    elif metric == "accuracy":
        x = np.clip(0.5 + steps / 1000 + rng.normal(0, 0.01, 400), 0, 1)
        x[300:320] -= 0.3  # a collapse
    elif metric == "lr":
        x = np.where(steps < 200, 1e-3, 1e-5)
    elif metric.startswith("update_ratio/"):  # follows the lr: x0.01 at step 200
        x = np.where(steps < 200, 1e-3, 1e-5) * np.exp(rng.normal(0, 0.1, 400))
    elif metric.startswith("grad_norm/"):  # one layer's norm explodes: the global norm pages, not this
        x = np.exp(rng.normal(0, 0.2, 400)) * np.where(steps < 250, 1.0, 1e4)
    elif metric == "throughput":  # a run's pace: it falls to a quarter for good (its slowdowns only)
        x = rng.normal(1000, 20, 400)
        x[300:] /= 4
    else:  # "gpu_memory": no role, the generic scores
        x = rng.normal(1000, 20, 400)
        x[300:] += 400
    return x


def _backtest(tmp_path: Path, metric: str, values: np.ndarray) -> list[tuple[int, str]]:
    stem = metric.replace("/", "-")
    src, out = tmp_path / f"{stem}.csv", tmp_path / f"{stem}-flagged.csv"
    with src.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "value"])
        w.writerows([i, "" if math.isnan(v) else repr(float(v))] for i, v in enumerate(values))
    cmd = [sys.executable, "-m", "aitrace.infra.cli", "backtest", str(src), "--column", "value"]
    cmd += ["--timestamp", "step", "--metric", metric, "--threshold", "0.9", "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with out.open() as fh:
        return [(int(float(r["timestamp"])), r["reason"]) for r in csv.DictReader(fh)]


def _worker(metric: str, values: np.ndarray) -> list[tuple[int, str, int]]:
    det = SeriesDetectors({})
    out = []
    for k, lo in enumerate(range(0, values.size, CHUNK)):
        steps = np.arange(lo, min(lo + CHUNK, values.size))
        series = {f"train|{metric}": {"steps": steps, "times": T0 + steps * 1000, "values": values[steps]}}
        chunk = {"kind": "run", "run_id": "r", "service": "s", "trace_id": "0" * 32, "ctx": None, "series": series}
        for a in det.apply(chunk, source="t:0", offset=k).alerts:
            if a["state"] == "open":
                out.append((int(a["step"]), a["detector"], int(a["version"])))
    return out


def _same(worker_detector: str, reason: str, value: float) -> bool:
    """The worker names a non-finite point nan/inf whatever the rule called it (e.g. diverging)."""
    if not math.isfinite(value):
        return worker_detector == ("nan" if math.isnan(value) else "inf")
    return worker_detector == reason


_QUIET = ("lr", "update_ratio/fc1", "grad_norm/fc1")  # a schedule, and per-layer series: never page alone


@pytest.mark.parametrize(
    "metric", ["loss", "grad_norm", "train_loss", "val/loss", "accuracy", "throughput", "gpu_memory", *_QUIET]
)
def test_backtest_replays_the_workers_findings(tmp_path: Path, metric: str) -> None:
    values = _series(metric)
    offline = _backtest(tmp_path, metric, values)
    alerts = _worker(metric, values)
    if metric in _QUIET:
        assert offline == [] and alerts == []
        return
    assert offline, "each series carries something to find"
    by_step = dict(offline)
    # the incident opens on the worst finding of the first chunk that has one
    first_step, _, version = alerts[0]
    assert version == 1 and first_step // CHUNK == offline[0][0] // CHUNK
    for step, detector, _ in alerts:
        assert step in by_step and _same(detector, by_step[step], values[step]), (step, detector, offline)


@pytest.mark.parametrize("metric", ["loss", "val_loss", "accuracy", "throughput", "gpu_memory"])
def test_chunked_rules_give_the_findings_of_one_pass(metric: str) -> None:
    values = _series(metric)
    whole = TrainingSeries(metric).update(np.arange(values.size), values)
    rules, pieces = TrainingSeries(metric), []
    for lo in range(0, values.size, 13):
        rules = TrainingSeries.from_state(rules.to_state())
        steps = np.arange(lo, min(lo + 13, values.size))
        pieces += rules.update(steps, values[steps])
    assert [(f.index, f.reason, f.severity) for f in pieces] == [(f.index, f.reason, f.severity) for f in whole]


def _service_series(kind: str) -> np.ndarray:
    rng = np.random.default_rng(5)
    n = 1200
    if kind == "latency":
        x = rng.lognormal(np.log(20.0), 0.15, n)
        x[500] = 900.0  # one stuck request
        x[900:] *= 6.0  # the backing store slows down and stays slow
    elif kind == "confidence":
        x = np.clip(rng.normal(0.9, 0.02, n), 0, 1)
        x[700:720] = 0.3  # the model stops being sure
    elif kind == "error_rate":
        x = (rng.random(n) < 0.01).astype(float)
        x[800:870] = 1.0  # a burst of failures
    else:  # an input feature that drifts
        x = rng.normal(0.0, 1.0, n)
        x[800:] += 1.5
    return x


def _service_backtest(tmp_path: Path, kind: str, times: np.ndarray, values: np.ndarray) -> list[tuple[int, str]]:
    src, out = tmp_path / f"{kind}.csv", tmp_path / f"{kind}-flagged.csv"
    with src.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time_us", "value"])
        w.writerows([int(t), repr(float(v))] for t, v in zip(times, values, strict=True))
    cmd = [sys.executable, "-m", "aitrace.infra.cli", "backtest", str(src), "--column", "value"]
    cmd += ["--timestamp", "time_us", "--service", kind, "--threshold", "0.9", "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with out.open() as fh:
        return [(int(float(r["timestamp"])), r["reason"]) for r in csv.DictReader(fh)]


def _service_worker(kind: str, times: np.ndarray, values: np.ndarray) -> list[tuple[int, str]]:
    """(first_seen, detector) of every incident the worker opens, fed inference chunks of CHUNK requests."""
    det = SeriesDetectors({})
    out = []
    for k, lo in enumerate(range(0, values.size, CHUNK)):
        part = slice(lo, lo + CHUNK)
        n = values[part].size
        chunk = {
            "kind": "model",
            "model": "m",
            "service": "s",
            "times": times[part],
            "latency": values[part] if kind == "latency" else np.full(n, 20.0),
            "confidence": values[part] if kind == "confidence" else np.full(n, np.nan),
            "errors": values[part] if kind == "error_rate" else np.zeros(n),
            "features": {"x": values[part]} if kind == "feature" else {},
            "requests": [],
            "labels": [],
        }
        for a in det.apply(chunk, source="t:0", offset=k).alerts:
            if a["state"] == "open" and a["version"] == 1 and a["feature"] == ("x" if kind == "feature" else kind):
                out.append((int(a["first_seen"]), a["detector"]))
    return out


@pytest.mark.parametrize("kind", ["latency", "confidence", "error_rate", "feature"])
def test_backtest_replays_the_workers_service_findings(tmp_path: Path, kind: str) -> None:
    """`aitrace backtest --service KIND` runs the worker's rules for a model's series: every
    incident the worker opens starts at one of the backtest's findings, with its reason."""
    values = _service_series(kind)
    times = T0 + np.arange(values.size, dtype=np.int64) * 50_000  # 20 requests a second
    offline = _service_backtest(tmp_path, kind, times, values)
    opened = _service_worker(kind, times, values)
    assert offline and opened, (offline, opened)
    found = set(offline)
    assert all(o in found for o in opened), (opened, offline)
    # the first incident opens in the chunk of the backtest's first finding
    first = offline[0][0]
    assert (opened[0][0] - T0) // (CHUNK * 50_000) == (first - T0) // (CHUNK * 50_000)


def _day_without_its_peak() -> tuple[np.ndarray, np.ndarray]:
    """Every 5 minutes for 9 days with a daily cycle; on day 8 the daytime peak never comes: against the
    recent level a calm day, against the cycle a deep dip."""
    t = T0 + np.arange(9 * 288, dtype=np.int64) * 300_000_000
    x = 100 + 10 * np.sin(2 * np.pi * (t - T0) / 86_400_000_000) + np.random.default_rng(3).normal(0, 0.5, t.size)
    x[8 * 288 : 8 * 288 + 144] = 100 + np.random.default_rng(4).normal(0, 0.5, 144)
    return t, x


def test_a_run_metric_with_event_times_is_judged_against_its_cycle_offline_as_in_the_worker(tmp_path: Path) -> None:
    """A server's metric logged as a run's (no loss, score or schedule) gets the rules of a model's series:
    with the worker's event times, its daily cycle; `backtest --metric --time` replays the same."""
    t, x = _day_without_its_peak()
    day8 = range(8 * 288, 8 * 288 + 144)
    src, out = tmp_path / "queue.csv", tmp_path / "queue-flagged.csv"
    with src.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "time_us", "value"])
        w.writerows([i, int(ti), repr(float(v))] for i, (ti, v) in enumerate(zip(t, x, strict=True)))
    cmd = [sys.executable, "-m", "aitrace.infra.cli", "backtest", str(src), "--column", "value", "--timestamp", "step"]
    cmd += ["--time", "time_us", "--metric", "queue_depth", "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with out.open() as fh:
        offline = [(int(float(r["timestamp"])), r["reason"]) for r in csv.DictReader(fh)]
    det, opened = SeriesDetectors({}), []
    for k, lo in enumerate(range(0, x.size, CHUNK)):
        steps = np.arange(lo, min(lo + CHUNK, x.size))
        series = {"train|queue_depth": {"steps": steps, "times": t[steps], "values": x[steps]}}
        chunk = {"kind": "run", "run_id": "r", "service": "s", "trace_id": "0" * 32, "ctx": None, "series": series}
        opened += [(int(a["step"]), a["detector"]) for a in det.apply(chunk, source="t:0", offset=k).alerts]
    assert any(step in day8 for step, _ in offline), offline
    assert opened and all(o in offline for o in opened), (opened, offline)
    assert any(step in day8 for step, _ in opened)
    # without event times the same rules have no cycle: the calm day is nothing
    steps_only = TrainingSeries("queue_depth").update(np.arange(x.size), x)
    assert not any(f.index in day8 for f in steps_only)


def _old_format(state: dict) -> dict:
    """A TrainingSeries state as releases before the service rules wrote it for an ``other`` series."""
    service = state.pop("service")
    return state | {"detector": service["detector"], "calibrator": service["calibrator"], "varied": service["varied"]}


def test_a_run_metric_state_from_before_the_service_rules_goes_on_with_its_history() -> None:
    """A state saved when an ``other`` series had its own detector and calibrator restores into the service
    rules with the same windows and history: the same findings as if it had never been saved."""
    values = _series("gpu_memory")
    whole = TrainingSeries("gpu_memory").update(np.arange(values.size), values)
    first = TrainingSeries("gpu_memory")
    first.update(np.arange(250), values[:250])
    rest = TrainingSeries.from_state(_old_format(first.to_state())).update(np.arange(250, values.size), values[250:])
    assert rest and [(f.index, f.reason) for f in rest] == [(f.index, f.reason) for f in whole if f.index >= 250]


def test_a_latency_logged_by_a_run_restored_from_before_finds_its_sustained_rise() -> None:
    """A latency's sustained-rise check counted from 0 after such a restore: its first shift indexed outside the
    chunk and every later chunk of the run raised, in the worker as here."""
    steps = np.arange(3000)
    x = np.random.default_rng(2).lognormal(np.log(20.0), 0.1, steps.size) * np.where(steps < 2000, 1.0, 4.0)
    times = T0 + steps * 1_000_000
    first = TrainingSeries("latency")
    first.update(steps[:1500], x[:1500], times=times[:1500])
    rules, found = TrainingSeries.from_state(_old_format(first.to_state())), []
    for lo in range(1500, steps.size, 100):
        part = slice(lo, lo + 100)
        found += rules.update(steps[part], x[part], times=times[part])
    assert any(f.reason == "level_shift" and 2000 <= f.step < 2200 for f in found), found
