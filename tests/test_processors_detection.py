"""Per-series detectors as the worker wires them: findings -> incidents -> alert versions; rollups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aitrace
import numpy as np
import orjson
import pytest
import synth as S
from aitrace.detect.finding import Finding
from aitrace.processors import rollup
from aitrace.processors.chunk_wire import pack_chunk, unpack_chunk
from aitrace.processors.chunks import extract_chunks, fast_series
from aitrace.processors.detection import SeriesDetectors
from aitrace.processors.detection_state import DetectionConfig
from aitrace.processors.incidents import IncidentPolicy, IncidentTracker, SeriesContext, alert_id
from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline
from aitrace.producers.config import Settings
from aitrace.schemas.codec import AvroSerializer
from aitrace.schemas.metric_block import MetricBlock

T0 = 1_800_000_000_000_000


def _through_json(chunks: dict) -> dict:
    """What the series agent sees: the chunk after the repartition topic's encoding."""
    return {k: unpack_chunk(pack_chunk(v)) for k, v in chunks.items()}


def _apply(det: SeriesDetectors, events: list = (), blocks: list = (), offset: int = 0, source: str = "t:0") -> list:
    alerts = []
    for chunk in _through_json(extract_chunks(list(events), [MetricBlock.from_record(b) for b in blocks])).values():
        alerts.extend(det.apply(chunk, source=source, offset=offset).alerts)
    return alerts


def _loss_block(values: np.ndarray, start: int, run: str = "r1") -> dict:
    return S.metric_block(
        trace="a" * 32, run_id=run, start_step=start, series={"loss": values}, start_us=T0 + start * 1000
    )


# ---------------------------------------------------------------- incidents


def _finding(reason: str, severity: str, t: int, **more: object) -> Finding:
    return Finding(0, float("nan"), 1.0, 0.95, reason, reason, 0.9, "generic", severity, time_us=t, **more)  # type: ignore[arg-type]


def test_one_incident_is_one_alert_with_growing_versions_then_resolved() -> None:
    tracker = IncidentTracker(IncidentPolicy(update_every_us=10, resolve_after=5))
    ctx = SeriesContext("s", service="svc")
    state: dict = {}

    def see(detector: str, severity: str, t: int, clean: int = 0) -> list[dict]:
        return tracker.observe(state, ctx, _finding(detector, severity, t), clean=clean, last_time_us=t)

    [first] = see("spike", "warning", 100)
    assert first["version"] == 1 and first["state"] == "open" and first["alert_id"] == alert_id("s", 100)
    assert see("spike", "warning", 105) == []  # same incident, not due for an update yet
    [escalated] = see("nan", "critical", 106)
    assert (
        escalated["version"] == 2 and escalated["severity"] == "critical" and escalated["alert_id"] == first["alert_id"]
    )
    [updated] = see("spike", "warning", 120)  # due (update_every_us = 10): severity stays critical
    assert updated["version"] == 3 and updated["severity"] == "critical"
    assert tracker.observe(state, ctx, None, clean=4, last_time_us=200) == []
    [resolved] = tracker.observe(state, ctx, None, clean=1, last_time_us=210)
    assert resolved["state"] == "resolved" and resolved["version"] == 4 and resolved["last_seen"] == 210
    [again] = see("spike", "warning", 300)
    assert again["alert_id"] != first["alert_id"] and again["version"] == 1


def test_a_series_gone_nan_in_an_open_critical_incident_is_published_at_once() -> None:
    """The demo's diverging run: its loss spike opened a critical incident at step 152 and the loss went NaN
    at 166 inside it, told nowhere (the severity did not rise, no update was due)."""
    tracker = IncidentTracker()
    state: dict = {}
    [opened] = tracker.observe(state, SeriesContext("s"), _finding("spike", "critical", 100), clean=0, last_time_us=100)
    [gone] = tracker.observe(state, SeriesContext("s"), _finding("nan", "critical", 110), clean=0, last_time_us=110)
    assert (gone["version"], gone["detector"], gone["alert_id"]) == (2, "nan", opened["alert_id"])
    assert tracker.observe(state, SeriesContext("s"), _finding("inf", "critical", 120), clean=0, last_time_us=120) == []


def test_a_finding_followed_by_enough_clean_points_opens_and_resolves_at_once() -> None:
    tracker = IncidentTracker(IncidentPolicy(resolve_after=5))
    state: dict = {}
    f = _finding("spike", "warning", 1)
    opened, resolved = tracker.observe(state, SeriesContext("s"), f, clean=9, last_time_us=50)
    assert (opened["version"], opened["state"]) == (1, "open")
    assert (resolved["version"], resolved["state"], resolved["alert_id"]) == (2, "resolved", opened["alert_id"])
    assert state["incident"] is None


def test_incident_state_survives_json_including_nan_evidence() -> None:
    tracker = IncidentTracker()
    state: dict = {}
    f = _finding("nan", "critical", 1, category="training", evidence=(1.0, float("nan")))
    tracker.observe(state, SeriesContext("s"), f, clean=0, last_time_us=1)
    state = orjson.loads(orjson.dumps(state))
    record = tracker._record(state["incident"])
    assert record["evidence"][0] == 1.0 and np.isnan(record["evidence"][1])


# ---------------------------------------------------------------- training


def test_loss_spike_and_nan_loss_raise_alerts_for_the_run() -> None:
    det = SeriesDetectors({})
    rng = np.random.default_rng(3)
    values = rng.normal(1.0, 0.01, 300)
    values[200] = 30.0
    alert, resolved = _apply(det, blocks=[_loss_block(values, 0)])  # 99 clean points follow: resolved too
    assert resolved["state"] == "resolved" and resolved["alert_id"] == alert["alert_id"]
    assert (alert["detector"], alert["run_id"], alert["step"], alert["series"]) == (
        "spike",
        "r1",
        200,
        "run/r1/train/loss",
    )
    assert alert["severity"] == "critical" and alert["evidence"][-1] == 30.0
    nan_event = S.event(
        ("aitrace.TrainingMetric", {"step": 301, "epoch": None, "split": None, "metrics": {"loss": float("nan")}}),
        trace="a" * 32,
        run_id="r1",
        time_us=T0 + 301_000,
    )
    [nan_alert] = _apply(det, events=[nan_event], offset=1)
    assert nan_alert["alert_id"] != alert["alert_id"]
    assert nan_alert["detector"] == "nan" and nan_alert["severity"] == "critical"


def test_nan_loss_inside_a_block_raises_a_critical_nan_alert() -> None:
    det = SeriesDetectors({})
    values = np.r_[np.random.default_rng(6).normal(1.0, 0.01, 100), np.nan, np.inf]
    block = MetricBlock.from_record(_loss_block(values, 0))
    chunk = _through_json(extract_chunks([], [block], [fast_series(block, 2.0, raw=False)]))["run/r1"]
    assert chunk["series"]["|loss"]["values"].size == 102  # NaN/Inf reach the detectors
    result = det.apply(chunk, source="t:0", offset=0)
    [nan_alert] = [a for a in result.alerts if a["detector"] == "nan"]
    assert (nan_alert["severity"], nan_alert["kind"], nan_alert["step"]) == ("critical", "training", 100)
    [window] = [a["_source"]["aitrace"]["metric"] for a in result.actions]  # 102 points in 0.1 s: one rollup
    assert (window["count"], window["nonfinite_count"], window["last_step"]) == (100, 2, 101)
    assert window["last"] == values[99] and window["max"] == values[:100].max()


def test_nan_loss_sent_by_the_client_reaches_the_detectors_through_a_block(tmp_path: Path) -> None:
    """The real producer path: Client.metric -> exporter -> MetricBlock -> Avro -> worker pipeline."""
    captured: list[dict] = []

    def capture(item: dict) -> None:  # a client processor sees each built block; keep it, send nothing
        if "series" in item:
            captured.append(item)

    settings = Settings.from_env(
        service="trainer", run_id="diverged", kafka_bootstrap="127.0.0.1:9", spool_dir=str(tmp_path / "spool")
    )
    client = aitrace.Client(settings, processors=[capture])
    try:
        for step in range(50):
            client.metric({"loss": 1.0 / (step + 1)}, step=step)
        client.metric({"loss": float("nan")}, step=50)
        assert client.flush(timeout=10)
    finally:
        client.close(timeout=5)
    [block] = captured  # same metric names: one block, the NaN a cell of it
    assert np.isnan(block["series"][0]["values"][-1]) and block["steps"][-1] == 50
    record = AvroSerializer("aitrace.Batch")({"batch_id": "b1", "events": [], "metric_blocks": [block]})
    pipe = Pipeline(WorkerOptions())
    out = pipe.process_record(record, key=None, topic="t", partition=0, offset=0, traces={}, now=0.0)
    [(key, chunk)] = out.chunks
    alerts, _ = pipe.series(chunk, {})
    assert key == "run/diverged"
    [nan_alert] = [a for a in alerts if a["detector"] == "nan"]
    assert (nan_alert["severity"], nan_alert["step"], nan_alert["series"]) == (
        "critical",
        50,
        "run/diverged/train/loss",
    )


def test_constant_learning_rate_is_not_a_stall_but_a_frozen_loss_is() -> None:
    det = SeriesDetectors({})
    rng = np.random.default_rng(4)
    loss = np.r_[rng.normal(1.0, 0.05, 200), np.full(200, 0.5)]
    block = S.metric_block(
        trace="a" * 32, run_id="r2", start_step=0, series={"loss": loss, "lr": np.full(400, 1e-3)}, start_us=T0
    )
    alerts = _apply(det, blocks=[block])
    assert {a["series"] for a in alerts if a["detector"] == "flat"} == {"run/r2/train/loss"}


def test_overfitting_validation_rising_while_training_falls() -> None:
    det = SeriesDetectors({})
    train = _loss_block(np.linspace(2.0, 0.1, 100), 0, run="r3")
    alerts = []
    for i, v in enumerate([1.0, 0.8, 0.7, 0.75, 0.85, 0.95, 1.05]):  # above its best 3 times in a row
        val = S.metric_block(
            trace="a" * 32, run_id="r3", start_step=i * 20, series={"loss": [v]}, start_us=T0 + i, split="val"
        )
        alerts += _apply(det, blocks=[train, val] if i == 0 else [val], offset=i)
    [over] = [a for a in alerts if a["detector"] == "overfitting"]
    assert over["kind"] == "training" and over["run_id"] == "r3" and over["statistic"] > 0.05


@pytest.mark.parametrize("name", ["loss", "mse", "cross_entropy", "total_loss"])
def test_a_loss_by_another_name_is_the_runs_loss(name: str) -> None:
    """A regression loop logging ``mse`` and ``val_mse``: its falling training curve went through a server
    series' rules (level shifts and dips: 49 incidents on 120 healthy real runs where as ``loss`` 12), and
    over-fitting was never asked. Now it is the run's loss, with every rule a loss has."""
    det = SeriesDetectors({})
    fall = np.geomspace(2.0, 0.05, 200) * np.random.default_rng(0).lognormal(0, 0.05, 200)
    alerts = _apply(det, blocks=[S.metric_block(trace="a" * 32, run_id="r3", start_step=0, series={name: fall[:100]},
                                                start_us=T0)])  # fmt: skip
    for i, v in enumerate([1.0, 0.8, 0.7, 0.75, 0.85, 0.95, 1.05]):  # above its best 3 times in a row
        val = S.metric_block(
            trace="a" * 32, run_id="r3", start_step=100 + i * 10, series={name: [v]}, start_us=T0 + 10**6 + i,
            split="val",
        )  # fmt: skip
        steps = S.metric_block(trace="a" * 32, run_id="r3", start_step=100 + i * 10, series={name: fall[100 + i * 10 :
                               110 + i * 10]}, start_us=T0 + 10**6 + i)  # fmt: skip
        alerts += _apply(det, blocks=[steps, val], offset=i + 1)
    assert [a["detector"] for a in alerts] == ["overfitting"], [(a["detector"], a["title"]) for a in alerts]


def _epoch_alerts(restart: bool) -> list[dict]:
    """A real over-fitting MLP's validation losses (test_detect_training._OVERFIT_S0), epoch by epoch through
    the worker, 4 training steps an epoch; ``restart``: the step is the batch index, 0-3 every epoch."""
    from test_detect_training import _OVERFIT_S0

    det, alerts, per = SeriesDetectors({}), [], 4
    train = np.geomspace(2.3, 0.01, per * len(_OVERFIT_S0))
    for e, v in enumerate(_OVERFIT_S0):
        first = 0 if restart else e * per
        t0 = T0 + e * (per + 1) * 1000  # the evaluation comes after the epoch's steps
        steps = S.metric_block(
            trace="a" * 32, run_id="r9", start_step=first, series={"loss": train[e * per : (e + 1) * per]}, start_us=t0
        )
        val = S.metric_block(
            trace="a" * 32, run_id="r9", start_step=first + per - 1, series={"loss": [v]}, start_us=t0 + per * 1000,
            split="val",
        )  # fmt: skip
        alerts += _apply(det, blocks=[steps, val], offset=e)
    return [a for a in alerts if a["detector"] == "overfitting"]


def test_overfitting_is_found_when_the_step_restarts_each_epoch() -> None:
    """A loop that logs the batch index sends every evaluation at step 3: by steps no training loss came
    after the best one, and over-fitting was never found. By the event times it is, at the same evaluation."""
    by_step, restarting = _epoch_alerts(False), _epoch_alerts(True)
    assert by_step and restarting
    assert restarting[0]["first_seen"] == by_step[0]["first_seen"] and restarting[0]["step"] == 3


def test_a_one_epoch_bump_of_the_validation_loss_is_not_overfitting() -> None:
    """A real CNN on digits (seed 1): val loss bumped 9 % for one epoch while still improving."""
    det = SeriesDetectors({})
    train = _loss_block(np.geomspace(2.3, 0.03, 330), 0, run="r4")
    val_losses = [1.883, 0.338, 0.209, 0.137, 0.149, 0.118, 0.116, 0.118, 0.104, 0.086, 0.083, 0.087, 0.083, 0.081]
    alerts = []
    for i, v in enumerate(val_losses):
        val = S.metric_block(
            trace="a" * 32, run_id="r4", start_step=22 * i + 21, series={"loss": [v]}, start_us=T0 + i, split="val"
        )
        alerts += _apply(det, blocks=[train, val] if i == 0 else [val], offset=i)
    assert not [a for a in alerts if a["detector"] == "overfitting"]


def _underfitting_alerts(with_accuracy: bool) -> list[dict]:
    """A real MLP of 4 hidden units on the digits (seed 0), epoch by epoch through the worker's rules:
    the training loss at the level recorded at each evaluation, the validation loss, the accuracies."""
    from test_detect_training import _UNDERFIT_W4, _underfit_run

    train, val = _underfit_run(_UNDERFIT_W4, 2.341)
    det = SeriesDetectors({})
    alerts = []
    for i, v in enumerate(val["values"]):
        losses = {"loss": train["values"][22 * i : 22 * i + 22]}
        scores = {"accuracy": np.full(22, 0.3)} if with_accuracy else {}
        blocks = [
            S.metric_block(trace="a" * 32, run_id="r5", start_step=22 * i, series=losses | scores, start_us=T0 + i),
            S.metric_block(trace="a" * 32, run_id="r5", start_step=22 * i + 21, series={"loss": [v]},
                           start_us=T0 + i, split="val"),
        ]  # fmt: skip
        alerts += _apply(det, blocks=blocks, offset=i)
    return [a for a in alerts if a["detector"] == "underfitting"]


def test_a_classifier_that_under_fits_gets_one_info_alert_that_says_why() -> None:
    first = _underfitting_alerts(with_accuracy=True)[0]
    assert first["severity"] == "info" and first["kind"] == "training" and first["run_id"] == "r5"
    assert first["step"] == 12 * 22 + 21 and "76% of its start" in first["title"]
    assert not _underfitting_alerts(with_accuracy=False)  # no accuracy-like series: maybe a regression


def test_schedules_never_page_and_a_rising_accuracy_or_falling_loss_is_good_news() -> None:
    det = SeriesDetectors({})
    steps = np.arange(400)
    lr = np.where(steps < 150, 1e-2, 1e-3)  # a step decay: the user's schedule
    lr[300:] = 0.0  # and a schedule that ends at zero
    loss = 2.3 * np.exp(-steps / 150) + np.random.default_rng(8).normal(0, 0.01, 400)  # falls, fast at first
    acc = np.r_[np.full(100, 0.1), np.full(300, 0.9)]
    block = S.metric_block(
        trace="a" * 32, run_id="r5", start_step=0, series={"lr": lr, "loss": loss, "accuracy": acc}, start_us=T0
    )
    assert _apply(det, blocks=[block]) == []


def test_a_loss_that_never_leaves_its_starting_level_is_a_stalled_run() -> None:
    det = SeriesDetectors({})
    loss = 2.30 + np.random.default_rng(9).normal(0, 0.05, 300)  # lr 1e-7: flat, and normal point by point
    alerts = [a for i in range(0, 300, 20) for a in _apply(det, blocks=[_loss_block(loss[i : i + 20], i)], offset=i)]
    stall, *later = [a for a in alerts if a["detector"] == "stalled"]  # reported once (later: its resolution)
    assert {a["alert_id"] for a in later} <= {stall["alert_id"]} and stall["state"] == "open"
    assert stall["step"] == 150 and stall["kind"] == "training" and "starting level" in stall["title"]
    healthy = SeriesDetectors({})
    falling = 2.3 * np.exp(-np.arange(300) / 100) + np.random.default_rng(9).normal(0, 0.05, 300)
    assert not [a for a in _apply(healthy, blocks=[_loss_block(falling, 0)]) if a["detector"] == "stalled"]


def _run_block(run: str, start: int, loss: np.ndarray, ratio: float) -> dict:
    """A chunk of a run as aitrace.torch.watch sends it: the loss and per-layer update ratios."""
    series = {
        "loss": loss,
        "update_ratio/fc1": np.full(loss.size, ratio),
        "update_ratio/fc2": np.full(loss.size, ratio),
    }
    return S.metric_block(trace="a" * 32, run_id=run, start_step=start, series=series, start_us=T0 + start * 1000)


def test_a_stalled_run_is_told_by_its_update_ratios_within_a_few_reports() -> None:
    loss = 2.30 + np.random.default_rng(9).normal(0, 0.05, 300)
    det = SeriesDetectors({})
    alerts = [
        a
        for i in range(0, 300, 10)
        for a in _apply(det, blocks=[_run_block("r1", i, loss[i : i + 10], 1e-6)], offset=i)
    ]
    [stall] = [a for a in alerts if a["series"] == "run/r1/checks" and a["state"] == "open"]
    assert stall["detector"] == "stalled" and stall["kind"] == "training" and stall["step"] <= 30
    assert "weights move" in stall["title"]
    slow_start = SeriesDetectors({})  # the same flat loss, but weights moving 1e-4 of their size: a slow starter
    alerts = [
        a for i in range(0, 300, 10) for a in _apply(slow_start, blocks=[_run_block("r2", i, loss[i : i + 10], 1e-4)])
    ]
    assert not [a for a in alerts if a["series"] == "run/r2/checks"]


def test_per_layer_gradient_norms_decades_apart_are_vanishing_gradients() -> None:
    det = SeriesDetectors({})
    layers = {f"grad_norm/linear{i}": np.full(20, 10.0 ** (i - 11)) for i in range(12)}  # 1e-11 .. 1
    block = S.metric_block(trace="a" * 32, run_id="r6", start_step=0, series=layers, start_us=T0)
    [alert] = [a for a in _apply(det, blocks=[block]) if a["detector"] == "vanishing_gradients"]
    assert alert["series"] == "run/r6/layers" and "linear0" in alert["title"] and alert["statistic"] == 11
    healthy = {f"grad_norm/linear{i}": np.full(20, 0.1 * (i + 1)) for i in range(6)}
    block = S.metric_block(trace="a" * 32, run_id="r7", start_step=0, series=healthy, start_us=T0)
    assert _apply(SeriesDetectors({}), blocks=[block]) == []


def test_a_loss_that_stops_improving_midway_is_a_plateau() -> None:
    det = SeriesDetectors({})
    steps = np.arange(400)
    level = np.where(steps < 100, 2.3 * np.exp(-steps / 30), 2.3 * np.exp(-100 / 30))
    loss = level * np.exp(np.random.default_rng(10).normal(0, 0.05, 400))
    alerts = [a for i in range(0, 400, 20) for a in _apply(det, blocks=[_loss_block(loss[i : i + 20], i)], offset=i)]
    plateau = [a for a in alerts if a["detector"] == "plateau"]
    assert plateau and plateau[0]["state"] == "open" and "not improved by 2% since step" in plateau[0]["title"]


def test_a_loss_plateau_pages_only_where_the_runs_lr_collapsed() -> None:
    """The worker hands a run's lr to its loss's plateau check: the same flat loss is convergence at the lr
    it learnt at, and a stop after an lr cut x1e-6 (each run's loss and lr arrive in the same metric block)."""
    steps = np.arange(400)
    level = np.where(steps < 100, 2.3 * np.exp(-steps / 30), 2.3 * np.exp(-100 / 30))
    loss = level * np.exp(np.random.default_rng(10).normal(0, 0.05, 400))
    found = {}
    for run, lr in (("kept", np.full(400, 1e-3)), ("cut", np.where(steps < 100, 1e-3, 1e-9))):
        det, alerts = SeriesDetectors({}), []
        for i in range(0, 400, 20):
            series = {"loss": loss[i : i + 20], "lr": lr[i : i + 20]}
            block = S.metric_block(trace="a" * 32, run_id=run, start_step=i, series=series, start_us=T0 + i * 1000)
            alerts += _apply(det, blocks=[block], offset=i)
        found[run] = [a["series"] for a in alerts if a["detector"] == "plateau" and a["version"] == 1]
    # the cut, 16 losses after it (detect.lr_cut); the loss's own plateau check, 100 steps later, pages no more
    assert found == {"kept": [], "cut": ["run/cut/checks"]}


def test_a_stall_the_run_checks_paged_is_not_paged_again_by_the_loss() -> None:
    """A run at lr 1e-7 that logs its loss, lr and grad norm: stalled from its step sizes at step 15, and
    again from the loss alone at step 150, two incidents for one stall."""
    rng = np.random.default_rng(3)
    series_of = {"loss": 2.3 + 0.02 * rng.normal(size=400), "lr": np.full(400, 1e-7), "grad_norm": np.full(400, 0.3)}
    found = {}
    for run, names in (("loop", ("loss", "lr", "grad_norm")), ("bare", ("loss",))):
        det, alerts = SeriesDetectors({}), []
        for i in range(0, 400, 20):
            series = {n: series_of[n][i : i + 20] for n in names}
            block = S.metric_block(trace="a" * 32, run_id=run, start_step=i, series=series, start_us=T0 + i * 1000)
            alerts += _apply(det, blocks=[block], offset=i)
        found[run] = [(a["series"], a["step"]) for a in alerts if a["detector"] == "stalled" and a["version"] == 1]
    assert found == {"loop": [("run/loop/checks", 15)], "bare": [("run/bare/train/loss", 150)]}


# (train loss, lr, global grad norm, validation loss sent without a split) as each tracker names them
_NAMINGS = {
    "readme": ("loss", "lr", "grad_norm", None),
    "wandb": ("train/loss", "train/lr", "train/grad_norm", "val/loss"),
    "lightning": ("train_loss_step", "lr-Adam", "grad_norm", "val_loss"),
    "tensorboard": ("Loss/train", "learning_rate", "gnorm", "Loss/test"),
}


def _named_run(naming: str, loss: np.ndarray, lr: np.ndarray, val: list[float]) -> list[tuple[str, int]]:
    """(detector, step) of each incident the worker opens on a run sent under a tracker's names, the
    validation loss once every 20 steps (the README's way: ``loss`` of split ``val``)."""
    names = _NAMINGS[naming]
    det, alerts = SeriesDetectors({}), []
    norm = 0.3 * np.exp(np.random.default_rng(6).normal(0, 0.05, loss.size))
    for k, i in enumerate(range(0, loss.size, 20)):
        train = {names[0]: loss[i : i + 20], names[1]: lr[i : i + 20], names[2]: norm[i : i + 20]}
        blocks = [S.metric_block(trace="a" * 32, run_id=naming, start_step=i, series=train, start_us=T0 + i * 1000)]
        if k < len(val):
            split, name = ("val", "loss") if names[3] is None else (None, names[3])
            blocks.append(S.metric_block(trace="a" * 32, run_id=naming, start_step=i + 19, series={name: [val[k]]},
                                         start_us=T0 + (i + 19) * 1000, split=split))  # fmt: skip
        alerts += _apply(det, blocks=blocks, offset=k)
    return [(a["detector"], int(a["step"])) for a in alerts if a["version"] == 1]


@pytest.mark.parametrize("naming", sorted(_NAMINGS))
def test_a_runs_series_are_read_by_what_their_names_mean_in_each_trackers_naming(naming: str) -> None:
    """W&B's ``val/loss``, Lightning's ``lr-Adam`` and ``train_loss_step``, TensorBoard's ``Loss/test``
    and fairseq's ``gnorm`` are the series the run's rules read: a stall told from the step sizes, over-
    fitting from the validation loss, and a x0.1 lr decay that pages nothing. Read by their words alone,
    the stall waited for the loss (step 150), over-fitting was never seen and the decay paged a dip."""
    rng = np.random.default_rng(5)
    stalled = _named_run(naming, 2.3 + 0.02 * rng.normal(size=200), np.full(200, 1e-7), [])
    falling = np.linspace(2.0, 0.1, 160) * np.exp(rng.normal(0, 0.01, 160))
    val = [1.0, 0.8, 0.7, 0.75, 0.85, 0.95, 1.05, 1.15]
    over = _named_run(naming, falling, np.full(160, 1e-3), val)
    learning = (2.0 * np.exp(-np.arange(300) / 40) + 0.3) * np.exp(rng.normal(0, 0.02, 300))
    decayed = _named_run(naming, learning, np.where(np.arange(300) < 150, 1e-3, 1e-4), [])
    assert (stalled, over, decayed) == ([("stalled", 15)], [("overfitting", 119)], [])


def test_a_later_plateau_of_the_loss_is_news_after_the_checks_paged_one() -> None:
    """The verdicts the run's checks paged muted the loss's own plateau for the rest of the run: an lr cut
    at 100 (checks: 116), a warm restart at 300 that learned, then a gradual decay to ~0 from 500 that only
    the loss's rule sees (a review's script), the loss learning in step with the lr. The repeat of the first
    is dropped, the second pages."""
    rng = np.random.default_rng(0)
    steps = np.arange(1200)
    slowing = 0.5 - 0.2 * (1 - np.exp(-np.arange(700) / 20.0))  # learns as the lr lets it, then stops
    loss = np.r_[2.3 - 1.3 * steps[:100] / 100, np.full(200, 1.0), 1.0 - 0.5 * np.arange(200) / 200, slowing]
    loss += 0.005 * rng.normal(size=1200)
    lr = np.r_[np.full(100, 0.1), np.full(200, 1e-7), np.full(200, 0.1), 0.1 * np.exp(-np.arange(700) / 20.0)]
    det, alerts = SeriesDetectors({}), []
    for i in range(0, 1200, 20):
        series = {"loss": loss[i : i + 20], "lr": np.maximum(lr[i : i + 20], 1e-12)}
        block = S.metric_block(trace="a" * 32, run_id="r", start_step=i, series=series, start_us=T0 + i * 1000)
        alerts += _apply(det, blocks=[block], offset=i)
    plateaus = [(a["series"], a["step"]) for a in alerts if a["detector"] == "plateau" and a["version"] == 1]
    # (812: at 800 its level still crept down, under the best by 1 %)
    assert plateaus == [("run/r/checks", 116), ("run/r/train/loss", 812)]


def test_a_run_s_series_take_its_places_before_its_checks() -> None:
    """The run's checks key was written before the series' keys were admitted, and took one of the
    entity's max_series places: a run's fourth series was refused on its first chunk."""
    table: dict[str, Any] = {}
    det = SeriesDetectors(table, DetectionConfig(max_series=4))
    series = {n: np.linspace(1, 2, 20) for n in ("acc", "grad_norm", "loss", "lr")}
    block = S.metric_block(trace="a" * 32, run_id="r", start_step=0, series=series, start_us=T0)
    for chunk in _through_json(extract_chunks([], [MetricBlock.from_record(block)])).values():
        assert det.apply(chunk, source="t:0", offset=0).refused == []
    assert {f"run/r/train/{n}" for n in series} <= set(table)


def test_a_generic_alert_says_what_moved_against_what() -> None:
    det = SeriesDetectors({})
    depth = np.random.default_rng(12).normal(100, 5, 300)
    depth[250] = 400.0
    block = S.metric_block(trace="a" * 32, run_id="r8", start_step=0, series={"queue_depth": depth}, start_us=T0)
    [alert, *_] = _apply(det, blocks=[block])
    assert alert["detector"] == "spike" and alert["step"] == 250
    assert "queue_depth 400 against a recent level of" in alert["details"]["why"] and "usual spread" in alert["title"]


# ---------------------------------------------------------------- inference


def _requests(n: int, start: int, *, error_every: int = 0, feature_mean: float = 0.0, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        status = "error" if error_every and i % error_every == 0 else "ok"
        payload = S.inference(
            f"q{start + i}",
            "m1",
            float(rng.normal(20, 1)),
            status=status,
            features={"x": float(rng.normal(feature_mean, 1))},
        )
        out.append(S.event(payload, trace=S.trace_id(), time_us=T0 + (start + i) * 1000))
    return out


def test_error_rate_burst_raises_an_error_rate_alert() -> None:
    det = SeriesDetectors({})
    assert _apply(det, events=_requests(500, 0, error_every=100), offset=0) == []
    alerts = _apply(det, events=_requests(100, 500, error_every=2), offset=1)
    [burst] = [a for a in alerts if a["detector"] == "error_rate_burst"]
    assert burst["kind"] == "error_rate" and burst["model"] == "m1" and burst["statistic"] >= 0.4


def test_input_feature_drift_is_found_and_stable_inputs_are_not() -> None:
    det = SeriesDetectors({}, DetectionConfig(drift_window=200))
    quiet = _apply(det, events=_requests(600, 0, seed=1), offset=0)
    assert not [a for a in quiet if a["kind"] == "drift"]
    shifted = _apply(det, events=_requests(200, 600, feature_mean=1.5, seed=2), offset=1)
    [drift] = [a for a in shifted if a["kind"] == "drift"]
    assert drift["feature"] == "x" and drift["pvalue"] < 1e-6 and drift["detector"] == "ks"


def test_a_feature_some_records_lack_is_still_checked_and_the_rest_of_the_model_too() -> None:
    # an optional feature: its column was shorter than the chunk's times, the drift update raised
    # and the whole model chunk (latency, errors, every feature) went to the dead letters
    det = SeriesDetectors({}, DetectionConfig(drift_window=200))
    quiet = _requests(600, 0, seed=1)
    shifted = _requests(400, 600, feature_mean=1.5, seed=2)
    for i, event in enumerate(quiet + shifted):
        if i % 3 == 0:
            event["payload"][1]["features"]["coupon"] = float(i % 7)  # only every third request has it
    alerts = _apply(det, events=quiet, offset=0) + _apply(det, events=shifted, offset=1)
    [drift] = [a for a in alerts if a["kind"] == "drift" and a["feature"] == "x"]
    assert drift["pvalue"] < 1e-6
    assert not [a for a in alerts if a["kind"] == "drift" and a["feature"] == "coupon"]  # same values all along
    state = det.table["model/m1/feature/coupon"]
    assert state  # the optional feature has its own windows, fed with the requests that had it


def _timed_requests(latencies: np.ndarray, start: int) -> list[dict]:
    return [
        S.event(S.inference(f"q{start + i}", "m1", float(ms)), trace=S.trace_id(), time_us=T0 + (start + i) * 1000)
        for i, ms in enumerate(latencies)
    ]


def test_a_sustained_latency_rise_opens_one_level_shift_alert_that_says_why() -> None:
    rng = np.random.default_rng(7)
    det = SeriesDetectors({})
    calm = np.exp(rng.normal(np.log(3.0), 0.8, 400))  # heavy-tailed: bursts of 10x are normal here
    alerts = [a for i in range(0, 400, 50) for a in _apply(det, events=_timed_requests(calm[i : i + 50], i), offset=i)]
    assert not [a for a in alerts if a["feature"] == "latency"]
    slow = np.exp(rng.normal(np.log(60.0), 0.8, 100))  # the backing store degrades: median x20
    alerts = [
        a
        for i in range(0, 100, 25)
        for a in _apply(det, events=_timed_requests(slow[i : i + 25], 400 + i), offset=400 + i)
    ]
    # Reported once; the new level then becomes the normal, so the incident resolves.
    shift, *later = [a for a in alerts if a["feature"] == "latency"]
    assert [a["state"] for a in later] in ([], ["resolved"]) and {a["alert_id"] for a in later} <= {shift["alert_id"]}
    assert shift["detector"] == "level_shift" and shift["kind"] == "anomaly" and shift["severity"] == "critical"
    assert "median latency (ms) rose" in shift["title"] and shift["first_seen"] >= T0 + 400 * 1000


def test_a_latency_spike_alert_says_in_its_title_what_moved_against_what() -> None:
    # The title is what a webhook or a pager shows; it read "latency: spike in model m1".
    det = SeriesDetectors({})
    lat = np.random.default_rng(3).lognormal(np.log(4.0), 0.1, 300)
    lat[250] = 900.0  # one request stuck
    alerts = [a for i in range(0, 300, 50) for a in _apply(det, events=_timed_requests(lat[i : i + 50], i), offset=i)]
    [spike] = [a for a in alerts if a["feature"] == "latency"]
    assert spike["title"].startswith("latency spike in model m1: latency 900 against a recent level of 3.9"), spike
    assert "usual spread" in spike["title"] and spike["details"]["why"] in spike["title"]


def test_a_models_latency_with_a_daily_cycle_is_judged_against_its_hour_of_the_day() -> None:
    """Six days of requests every 5 minutes, slow by day and fast by night: the worker learns the
    day (the cycle lives in the series state, from day 4) and then pages on a night as slow as a
    day, and no more on the daily rise (which it took for a level shift before it knew the day)."""
    hour = 3_600_000_000
    start = T0 - T0 % (24 * hour)
    t = start + np.arange(6 * 288, dtype=np.int64) * 300_000_000
    daily = 1.0 + 0.5 * np.sin(2 * np.pi * ((t - start) / hour) / 24)
    lat = 20.0 * daily * np.exp(np.random.default_rng(8).normal(0, 0.05, t.size))
    night = (t >= start + 5 * 24 * hour + 15 * hour) & (t < start + 5 * 24 * hour + 21 * hour)
    lat[night] = 30.0 * np.exp(np.random.default_rng(9).normal(0, 0.05, int(night.sum())))  # a day's latency at night
    det, table_key, opened = SeriesDetectors({}), "model/m/latency", []
    for k, lo in enumerate(range(0, t.size, 48)):
        part = slice(lo, lo + 48)
        n = t[part].size
        chunk = {
            "kind": "model",
            "model": "m",
            "service": "s",
            "times": t[part],
            "latency": lat[part],
            "errors": np.zeros(n),
            "confidence": np.full(n, np.nan),
            "features": {},
            "requests": [],
            "labels": [],
        }
        opened += [a for a in det.apply(chunk, source="s:0", offset=k).alerts if a["state"] == "open"]
    assert det.table[table_key]["rules"]["cycle"]["period"] == 24
    firsts = [a["first_seen"] for a in opened if a["version"] == 1 and a["first_seen"] >= start + 96 * hour]
    assert firsts and all(t[night][0] <= f <= t[night][-1] for f in firsts), [(f - start) / hour for f in firsts]


# ---------------------------------------------------------------- data stats


def _stats(features: list[dict], classes: dict[str, int]) -> dict:
    return S.event(S.data_stats("ds", "clean", features, classes), trace=S.trace_id(), time_us=T0)


def test_data_stats_drift_missing_jump_unseen_category_and_label() -> None:
    det = SeriesDetectors({})
    ref = _stats(
        [S.feature("age", mean=40, variance=100), S.feature("city", mean=0, categories={"a": 600, "b": 400})],
        {"0": 500, "1": 500},
    )
    assert _apply(det, events=[ref], offset=0) == []
    same = _stats(
        [S.feature("age", mean=40.5, variance=100), S.feature("city", mean=0, categories={"a": 590, "b": 410})],
        {"0": 510, "1": 490},
    )
    assert _apply(det, events=[same], offset=1) == []
    bad = _stats(
        [
            S.feature("age", mean=60, variance=100, missing=300),
            S.feature("city", mean=0, categories={"a": 500, "b": 300, "zz": 200}),
        ],
        {"0": 400, "1": 400, "2": 200},
    )
    alerts = {a["series"]: a for a in _apply(det, events=[bad], offset=2)}
    assert set(alerts) == {
        "data/ds/clean/age",
        "data/ds/clean/city",
        "data/ds/clean/city/unseen",
        "data/ds/clean/__label__",
        "data/ds/clean/__label__/unseen",
    }
    assert "missing_rate" in alerts["data/ds/clean/age"]["details"]["checks"]
    assert "mean_shift" in alerts["data/ds/clean/age"]["details"]["checks"]
    city = alerts["data/ds/clean/city/unseen"]
    assert city["detector"] == "unseen_category" and city["kind"] == "data_quality"
    assert city["title"] == "value 'zz' of 'city' never seen before in ds/clean (200 rows)"
    assert alerts["data/ds/clean/__label__/unseen"]["detector"] == "unseen_label"
    assert alerts["data/ds/clean/__label__"]["detector"] == "psi"


def test_stages_whose_names_join_alike_stay_apart() -> None:
    """Dataset ``a/b`` stage ``c`` and dataset ``a`` stage ``b/c`` are two stages: joined unescaped
    they shared one entity, so each batch of one was compared with the other's and moved."""

    def stats(dataset: str, stage: str, mean: float) -> dict:
        features = [S.feature("x", mean=mean, variance=1)]
        return S.event(S.data_stats(dataset, stage, features, {}), trace=S.trace_id(), time_us=T0)

    def batch() -> list[dict]:
        return [stats("a/b", "c", 0.0), stats("a", "b/c", 100.0)]

    assert sorted(extract_chunks(batch(), [])) == ["data/a%2Fb/c", "data/a/b%2Fc"]
    assert sorted(extract_chunks([stats("plain", "clean", 0.0)], [])) == ["data/plain/clean"]
    det = SeriesDetectors({})
    for offset in range(4):
        assert _apply(det, events=batch(), offset=offset) == []
    moved = _apply(det, events=[stats("a", "b/c", 0.0)], offset=4)
    assert [a["series"] for a in moved] == ["data/a/b%2Fc/x"], moved


def test_an_unseen_label_is_named_even_when_the_psi_it_drives_is_critical() -> None:
    """A few rows of a new class push the label PSI to critical; the alert must still say which
    value is new and how many rows carry it, once per incident, and resolve on a clean batch."""
    det = SeriesDetectors({})
    reference = {"0": 60, "1": 70, "2": 50}
    assert _apply(det, events=[_stats([], reference)], offset=0) == []
    late = {"0": 60, "1": 70, "2": 50, "3": 12}
    alerts = _apply(det, events=[_stats([], late)], offset=1)
    [unseen] = [a for a in alerts if a["detector"] == "unseen_label"]
    assert unseen["kind"] == "data_quality" and unseen["series"] == "data/ds/clean/__label__/unseen"
    assert unseen["title"] == "label value '3' never seen before in ds/clean (12 rows)"
    assert unseen["details"]["values"] == "3" and unseen["details"]["rows"] == "12"
    [psi] = [a for a in alerts if a["series"] == "data/ds/clean/__label__"]
    assert psi["detector"] == "psi" and psi["alert_id"] != unseen["alert_id"]
    # The same new class in the next batch is the same incident: no second alert, no new version.
    again = _apply(det, events=[_stats([], late)], offset=2)
    assert not [a for a in again if a["detector"] == "unseen_label"]
    resolved = [a for a in _apply(det, events=[_stats([], reference)], offset=3) if a["state"] == "resolved"]
    assert {a["alert_id"] for a in resolved} == {unseen["alert_id"], psi["alert_id"]}


# ---------------------------------------------------------------- idempotence


def test_chunks_not_newer_than_the_last_applied_are_skipped() -> None:
    table: dict = {}
    det = SeriesDetectors(table)
    block = MetricBlock.from_record(_loss_block(np.ones(10), 0))
    chunk = _through_json(extract_chunks([], [block]))["run/r1"]
    assert det.apply(chunk, source="t:0", offset=7).skipped == 0
    before = orjson.dumps(table)
    assert det.apply(chunk, source="t:0", offset=7).skipped == 3  # loss, fitting and run-checks state
    assert det.apply(chunk, source="t:0", offset=3).skipped == 3
    assert orjson.dumps(table) == before
    assert det.apply(chunk, source="t:1", offset=0, batch_id=None).skipped == 0  # other partition: new data


# ---------------------------------------------------------------- rollups


def test_rollup_windows_match_numpy_and_reemit_the_same_ids() -> None:
    rng = np.random.default_rng(5)
    times = T0 + np.arange(2500, dtype=np.int64) * 10_000  # 25 s at 100 points/s
    values = rng.normal(size=2500)
    steps = np.arange(2500)
    state: dict = {}
    ctx = {"trace_id": "a" * 32, "span_id": "b" * 16, "service": "trainer", "run_id": "r"}
    actions = []
    for lo in range(0, 2500, 700):
        actions += rollup.update(
            state,
            ctx,
            "loss",
            None,
            steps[lo : lo + 700],
            times[lo : lo + 700],
            values[lo : lo + 700],
            window_us=10_000_000,
        )
    final = {a["_id"]: a["_source"]["aitrace"]["metric"] for a in actions}  # later writes of a window win
    wid = times // 10_000_000
    for w in np.unique(wid)[:-1]:  # complete windows
        sel = wid == w
        m = final[f"rollup:{'a' * 32}:r::loss:10000000:{w * 10_000_000}"]
        assert (
            m["count"] == sel.sum()
            and m["min"] == pytest.approx(values[sel].min())
            and m["value"] == pytest.approx(values[sel].mean())
        )
        assert m["last"] == pytest.approx(values[sel][-1]) and m["last_step"] == steps[sel][-1]
    late = rollup.update(state, ctx, "loss", None, steps[:5], times[:5], values[:5], window_us=10_000_000)
    assert late == [] and state["late"] == 5


def test_rate_decides_raw_or_rollup() -> None:
    assert not rollup.is_fast(np.array([T0]), 2.0)
    assert not rollup.is_fast(np.array([T0, T0 + 10_000_000]), 2.0)
    assert rollup.is_fast(T0 + np.arange(100) * 1000, 2.0)


def test_rollup_counts_nonfinite_points_across_chunks_and_summarises_the_finite_ones() -> None:
    ctx = {"trace_id": "a" * 32, "span_id": "b" * 16, "service": "trainer", "run_id": "r"}
    state: dict = {}
    times = T0 + np.r_[np.arange(6) * 1000, 10_000_000].astype(np.int64)  # six points in one window, one in the next
    values = np.array([np.nan, np.inf, 2.0, -np.inf, 1.0, np.nan, 3.0])
    steps = np.arange(7)

    def feed(lo: int, hi: int) -> list[dict]:
        actions = rollup.update(
            state, ctx, "loss", None, steps[lo:hi], times[lo:hi], values[lo:hi], window_us=10_000_000
        )
        return [a["_source"]["aitrace"]["metric"] for a in actions]

    [first] = feed(0, 2)  # no finite point yet: counted, no value
    assert (first["count"], first["nonfinite_count"]) == (0, 2) and not {"value", "min", "max", "last"} & first.keys()
    state = orjson.loads(orjson.dumps(state))  # the table's JSON round trip
    closed, opened = feed(2, 7)  # the next window starts: the first is complete
    assert (closed["count"], closed["nonfinite_count"], closed["min"], closed["max"]) == (2, 4, 1.0, 2.0)
    assert (closed["value"], closed["last"], closed["first_step"], closed["last_step"]) == (1.5, 1.0, 0, 5)
    assert (opened["count"], opened["nonfinite_count"], opened["value"]) == (1, 0, 3.0)


def test_benign_small_batches_raise_no_drift_and_a_real_shift_says_why() -> None:
    """Batches of 50 rows from one population: sampling noise is not drift (the mean may
    wander by its standard error, not by a fixed 0.5 sd); a 3 sd shift is found and named."""
    from aitrace.detect import windows as K

    rng = np.random.default_rng(3)
    cfg = DetectionConfig()
    state: dict = {}
    population = rng.gamma(0.5, 2.0, size=2000).round(1)  # heavy-tailed, quantized
    found = []
    for _ in range(8):
        (feature,) = aitrace.summarize({"x": rng.choice(population, 50)})
        found.extend(K.feature_checks(state, feature, cfg, n_features=4))
    assert found == []
    (moved,) = aitrace.summarize({"x": rng.choice(population, 50) + 3 * population.std()})
    [(kind, detector, _sev, _stat, _thr, text)] = K.feature_checks(state, moved, cfg, n_features=4)
    assert kind == "drift" and detector in ("ks", "mean_shift")
    assert "'x' moved against the reference batch" in text and "50 values against 50" in text


def test_the_worker_reads_a_global_norm_beside_the_runs_loss() -> None:
    # a real slow starter logged every 5 steps (tests/test_detect_training.py): its norm rose 0.16 -> 4.5 while
    # its loss fell 2.3 -> 1.5; sent alone the norm pages exploding, sent beside the loss (W&B's names) it does not
    from test_detect_training import _SLOW_LOSS, _SLOW_NORM

    def opened(names: tuple[str, ...]) -> list[str]:
        det, out = SeriesDetectors({}), []
        steps = np.arange(4, 200, 5)
        values = {"train/grad_norm": np.array(_SLOW_NORM), "train/loss": np.array(_SLOW_LOSS)}
        for k, lo in enumerate(range(0, steps.size, 10)):
            at = steps[lo : lo + 10]
            series = {
                f"|{n}": {"steps": at, "times": 10**15 + at * 1000, "values": values[n][lo : lo + 10]} for n in names
            }
            chunk = {"kind": "run", "run_id": "r", "service": "s", "trace_id": "0" * 32, "ctx": None, "series": series}
            out += [a["detector"] for a in det.apply(chunk, source="t:0", offset=k).alerts if a["state"] == "open"]
        return out

    assert "exploding" in opened(("train/grad_norm",))
    assert opened(("train/grad_norm", "train/loss")) == []


def test_a_loss_logged_as_nan_ends_the_norms_hold_in_the_worker() -> None:
    # the worker reads a NaN loss as gone (inf), not as a step the loss was not logged at
    steps = np.arange(300)
    norm = np.r_[np.full(230, 1.0), np.full(70, 100.0)] * (1 + 0.01 * np.sin(steps))
    loss = np.r_[np.full(200, 2.3), np.linspace(2.3, 1.0, 30), np.full(3, 1.0), np.full(67, np.nan)]
    det, opened = SeriesDetectors({}), []
    for k, lo in enumerate(range(0, 300, 10)):
        at = steps[lo : lo + 10]
        series = {
            "train|grad_norm": {"steps": at, "times": 10**15 + at * 1000, "values": norm[lo : lo + 10]},
            "train|loss": {"steps": at, "times": 10**15 + at * 1000, "values": loss[lo : lo + 10]},
        }
        chunk = {"kind": "run", "run_id": "r", "service": "s", "trace_id": "0" * 32, "ctx": None, "series": series}
        opened += [
            (a["detector"], a["step"]) for a in det.apply(chunk, source="t:0", offset=k).alerts if a["state"] == "open"
        ]
    assert any(d == "exploding" and 233 <= s < 250 for d, s in opened), opened


def _history_then_evaluations(dup: int | None) -> list[tuple[int, str, int]]:
    """A finished run's history sent afterwards: every training loss first (4 steps an epoch, global steps), then
    the evaluations (a real over-fitting curve, best at evaluation 15), the one at ``dup`` sent twice."""
    from test_detect_training import _OVERFIT_S0

    val = _OVERFIT_S0 + [0.716 + 0.004 * i for i in range(1, 75)]
    det, out, per = SeriesDetectors({}), [], 4
    steps = np.arange(per * len(val))
    for k, lo in enumerate(range(0, steps.size, 200)):
        s = steps[lo : lo + 200]
        series = {"train|loss": {"steps": s, "times": T0 + s, "values": np.geomspace(2.3, 1e-4, steps.size)[s]}}
        det.apply({"kind": "run", "run_id": "r", "service": "s", "trace_id": "0" * 32, "ctx": None, "series": series},
                  source="t:0", offset=k)  # fmt: skip
    evals = [(e, per * (e + 1) - 1, v) for e, v in enumerate(val)]
    if dup is not None:
        evals.insert(dup + 1, evals[dup])
    for i, (e, step, v) in enumerate(evals):
        series = {"val|loss": {"steps": np.array([step]), "times": np.array([T0 + 10**7 + i]), "values": np.array([v])}}
        chunk = {"kind": "run", "run_id": "r", "service": "s", "trace_id": "0" * 32, "ctx": None, "series": series}
        out += [(a["version"], a["state"], e) for a in det.apply(chunk, source="t:0", offset=1000 + i).alerts]
    return out


def test_a_history_sent_afterwards_finds_overfitting_once_with_an_evaluation_sent_twice() -> None:
    """Shown by a review: when one repeated evaluation switched the whole window from steps to the times of the
    sending, over-fitting was found 50 evaluations late, or resolved and paged again."""
    assert _history_then_evaluations(None) == _history_then_evaluations(5) == _history_then_evaluations(30)
    assert _history_then_evaluations(30) == [(1, "open", 18)]
