"""`aitrace report`: data collected from a real osmem-server, page rendered in a real headless Chromium.

The documents are built by :mod:`aitrace.sinks.documents` (what the worker indexes) from
hand-made events with known shapes: a diverging and a healthy run, a data-stats drift, an
inference latency spike with errors and input drift, an incomplete trace. The test then reads
the page the way a person would open it: Chromium loads the file, runs its script, and the
dumped DOM says how many charts and series it drew.
"""

from __future__ import annotations

import argparse
import calendar
import html
import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import asdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aitrace.infra import report, report_axis, report_data, report_fetch, report_inference, report_page
from aitrace.infra.stack import OsmemProcess, free_port
from aitrace.producers.config import SearchConfig
from aitrace.sinks import documents as D
from aitrace.sinks.es import detect_capabilities, make_sync_client
from aitrace.sinks.templates import install_templates
from elasticsearch import helpers

T0 = 1_790_000_000_000_000  # a fixed time (2026-09-21): daily index names are predictable
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MODEL = "cancer-classifier"


# --------------------------------------------------------------------------- documents


def _event(
    i: int,
    time_us: int,
    payload: tuple[str, dict[str, Any]],
    *,
    run: str | None = None,
    service: str = "trainer",
    trace: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": f"ev-{payload[0].rsplit('.', 1)[-1]}-{run}-{i}",
        "time": time_us,
        "trace_id": trace or f"{i:032x}",
        "span_id": f"{i:016x}",
        "service": service,
        "run_id": run,
        "payload": payload,
    }


# Their configs as the producer sends them (values JSON text): diverge_at, seed and a key only
# run-healthy has differ; lr and batch_size do not.
CONFIGS = {
    "run-diverge": ({"lr": "0.5", "batch_size": "64", "diverge_at": "25"}, 1, "FAILED"),
    "run-healthy": ({"lr": "0.5", "batch_size": "64", "diverge_at": "null", "optim.momentum": "0.9"}, 2, "FINISHED"),
}


def _lifecycle(prefix: str, run: str) -> list[dict[str, Any]]:
    """The run's start (config, seed, code version) before step 0 and its end after step 39."""
    config, seed, end = CONFIGS[run]
    start = {"status": "STARTED", "config": config, "seed": seed, "code_version": "abc123"}
    actions = D.event_actions(_event(2000, T0 - 1_000, ("aitrace.RunLifecycle", start), run=run), prefix=prefix)
    finish = ("aitrace.RunLifecycle", {"status": end})
    return actions + D.event_actions(_event(2001, T0 + 4_000_000, finish, run=run), prefix=prefix)


def _diverging_loss(step: int) -> float:
    """run-diverge's train loss: 1/(step+1), then 10**(step-24) on top from step 25, NaN from step 38."""
    if step >= 38:
        return float("nan")
    return 1.0 / (step + 1) + (10.0 ** (step - 24) if step >= 25 else 0.0)


def _training(prefix: str) -> list[dict[str, Any]]:
    actions = []
    for run, diverge in (("run-diverge", True), ("run-healthy", False)):
        actions += _lifecycle(prefix, run)
        for step in range(40):
            loss = _diverging_loss(step) if diverge else 1.0 / (step + 1)
            grad = 0.5 + (10.0 ** (step - 22) if diverge and step >= 25 else 0.0)
            metrics = {"loss": loss, "grad_norm": grad, "lr": 0.5 if step < 25 or not diverge else 5.0}
            payload = ("aitrace.TrainingMetric", {"step": step, "split": "train", "metrics": metrics})
            actions += D.event_actions(_event(step, T0 + step * 100_000, payload, run=run), prefix=prefix)
            if step % 10 == 9:
                val = ("aitrace.TrainingMetric", {"step": step, "split": "val", "metrics": {"accuracy": 0.8}})
                actions += D.event_actions(_event(1000 + step, T0 + step * 100_000, val, run=run), prefix=prefix)
    # run-healthy's train accuracy arrives as per-window rollups (what the worker indexes for fast series)
    ctx = {"trace_id": "c" * 32, "span_id": "d" * 16, "service": "trainer", "run_id": "run-healthy"}
    for w in range(4):
        actions.append(
            D.rollup_action(
                ctx,
                name="accuracy",
                split="train",
                window_start_us=T0 + w * 1_000_000,
                window_us=1_000_000,
                count=10,
                minimum=0.5 + w / 10,
                maximum=0.7 + w / 10,
                mean=0.6 + w / 10,
                last=0.65 + w / 10,
                first_step=w * 10,
                last_step=w * 10 + 9,
                prefix=prefix,
            )
        )
    alert = _alert(
        "train-1",
        "training",
        "exploding_gradient",
        T0 + 26 * 100_000,
        run_id="run-diverge",
        step=26,
        series="run/run-diverge/train/grad_norm",
        title="grad_norm exploding on run-diverge",
        score=1.0,
    )
    return [*actions, D.alert_action(alert, prefix=prefix)]


def _alert(alert_id: str, kind: str, detector: str, first_seen: int, **extra: Any) -> dict[str, Any]:
    alert = {
        "alert_id": alert_id,
        "kind": kind,
        "detector": detector,
        "severity": "critical",
        "title": extra.pop("title", f"{kind} alert"),
        "series": extra.pop("series", alert_id),
        "first_seen": first_seen,
        "last_seen": first_seen + 1_000_000,
    }
    alert.update(extra)
    return alert


def _feature_stats(name: str, values: np.ndarray) -> dict[str, Any]:
    counts, edges = np.histogram(values, bins=12)
    return {
        "name": name,
        "dtype": "numeric",
        "count": len(values),
        "missing": 0,
        "mean": float(values.mean()),
        "variance": float(values.var()),
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {"0.5": float(np.median(values))},
        "histogram_edges": edges.tolist(),
        "histogram_counts": counts.tolist(),
    }


def _data(prefix: str) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    actions = []
    for b in range(4):
        alcohol = rng.normal(13.0 + (2.5 if b == 3 else 0.0), 0.8, 150)
        ash = rng.normal(2.4, 0.3, 150)
        payload = (
            "aitrace.DataStats",
            {
                "stage": "ingest",
                "dataset": "wine",
                "batch": f"b{b}",
                "row_count": 150,
                "features": [_feature_stats("alcohol", alcohol), _feature_stats("ash", ash)],
                "class_counts": {"0": 50, "1": 60, "2": 40},
            },
        )
        event = _event(b, T0 + 5_000_000 + b * 1_000_000, payload, service="pipeline", trace=f"{b + 900:032x}")
        actions += D.event_actions(event, prefix=prefix)
    alert = _alert(
        "drift-1",
        "drift",
        "ks",
        T0 + 8_100_000,
        feature="alcohol",
        statistic=0.93,
        pvalue=1e-40,
        details={"stage": "ingest", "dataset": "wine", "batch": "b3", "test": "ks"},
        title="alcohol drifted at wine/ingest",
    )
    return [*actions, D.alert_action(alert, prefix=prefix)]


def _inference(prefix: str) -> tuple[list[dict[str, Any]], list[float]]:
    rng = np.random.default_rng(2)
    actions, ok_latencies = [], []
    start = T0 + 20_000_000
    for i in range(200):
        slow = i >= 120
        latency = float(rng.normal(60 if slow else 5, 1))
        error = i in (130, 140, 150, 160, 170)
        radius = float(rng.normal(14 + (3 if i >= 100 else 0), 1))
        record = {
            "request_id": f"r{i}",
            "model_name": MODEL,
            "latency_ms": latency,
            "status": "error" if error else "ok",
            "features": {"mean_radius": radius},
            "prediction": "benign",
            "confidence": 0.9,
            "error": "bad input" if error else None,
        }
        if not error:
            ok_latencies.append(latency)
        event = _event(
            i,
            start + i * 500_000,
            ("aitrace.InferenceRecord", record),
            service="model-server",
            trace=f"{i + 5000:032x}",
        )
        actions += D.event_actions(event, prefix=prefix)
    spike = _alert(
        "lat-1",
        "anomaly",
        "latency",
        start + 121 * 500_000,
        model=MODEL,
        service="model-server",
        series=f"{MODEL}:latency_ms",
        title="latency spike on cancer-classifier",
        score=0.99,
    )
    drift = _alert(
        "drift-2",
        "drift",
        "ks",
        start + 110 * 500_000,
        model=MODEL,
        feature="mean_radius",
        statistic=0.8,
        pvalue=1e-12,
        title="mean_radius drifted on cancer-classifier",
    )
    return [*actions, D.alert_action(spike, prefix=prefix), D.alert_action(drift, prefix=prefix)], ok_latencies


def _traces(prefix: str) -> list[dict[str, Any]]:
    actions = []
    for i, complete in enumerate((True, True, False)):
        trace_id = f"{i + 5000:032x}"
        trace = {
            "trace_id": trace_id,
            "root_span_id": "a" * 16,
            "root_name": "POST /predict",
            "services": ["loadgen", "model-server", "feature-service"],
            "start_time": T0 + 20_000_000 + i,
            "end_time": T0 + 20_100_000,
            "duration_us": 100_000,
            "span_count": 4,
            "event_count": 6,
            "complete": complete,
            "first_error": None if complete else "feature-service never answered",
        }
        actions.append(D.trace_action(trace, prefix=prefix))
    return actions


@pytest.fixture
def indexed(search: OsmemProcess, unique_name: Callable[[str], str]) -> dict[str, Any]:
    """A fresh index prefix on the shared osmem-server, filled with every kind of document."""
    return index_everything(search, unique_name("rep"))


def index_everything(search: OsmemProcess, prefix: str) -> dict[str, Any]:
    """Index every kind of document under ``prefix`` (tests/test_compare.py reads the same runs)."""
    config = SearchConfig.from_env(es_url=search.url, index_prefix=prefix)
    caps = detect_capabilities(config)
    es = make_sync_client(config, caps)
    install_templates(es, caps, prefix=prefix)
    inference_actions, ok_latencies = _inference(prefix)
    actions = _training(prefix) + _data(prefix) + inference_actions + _traces(prefix)
    ok, errors = helpers.bulk(es, actions, refresh=True, raise_on_error=False)
    assert not errors and ok == len(actions)
    return {"es": es, "prefix": prefix, "url": search.url, "ok_latencies": ok_latencies}


# --------------------------------------------------------------------------- collect


def _charts(data: report_data.ReportData) -> dict[str, report_data.Chart]:
    return {c.id: c for s in data.sections for c in s.charts}


def test_collect_builds_every_picture_from_the_index(indexed: dict[str, Any]) -> None:
    data = report.collect(indexed["es"], prefix=indexed["prefix"])
    charts = _charts(data)
    assert {"training-loss", "training-grad_norm", "training-lr", "training-accuracy"} <= set(charts)
    loss = charts["training-loss"]
    assert [s.name for s in loss.series] == ["run-diverge train", "run-healthy train"]
    assert not loss.log_y  # the divergence left the axis: the rest spans 1/40 to 1, no log scale needed
    diverge = loss.series[0]
    assert [p[0] for p in diverge.nonfinite] == [38, 39]
    assert len(diverge.points) == 38
    # the flagged step is marked on grad_norm (the alert's metric) and not on lr
    assert [m.x for m in charts["training-grad_norm"].markers] == [26.0]
    assert charts["training-grad_norm"].markers[0].y == pytest.approx(0.5 + 10.0**4)  # ringed on its curve
    assert charts["training-lr"].markers == []
    accuracy = charts["training-accuracy"].series
    assert [s.name for s in accuracy] == ["run-diverge val", "run-healthy train", "run-healthy val"]
    rollups = np.asarray(accuracy[1].points)  # the window's mean, at its last step
    np.testing.assert_allclose(rollups, [[9, 0.6], [19, 0.7], [29, 0.8], [39, 0.9]])
    np.testing.assert_allclose(accuracy[1].band[0], [9, 0.5, 0.7])  # with the window's min..max band

    data_drift = charts["drift-data-alcohol-ingest"]
    assert [s.name for s in data_drift.series] == ["reference (batch b0)", "current (batch b3)"]
    assert "0.93" in data_drift.note and "p = 1e-40" in data_drift.note
    ref_mode = max(data_drift.series[0].points, key=lambda p: p[1] or 0)[0]
    cur_mode = max(data_drift.series[1].points, key=lambda p: p[1] or 0)[0]
    assert cur_mode > ref_mode + 1.0  # the shift is visible where it should be
    model_drift = charts[f"drift-model-{MODEL}-mean_radius"]
    assert len(model_drift.series) == 2 and "KS D" in model_drift.note

    latency = charts[f"latency-{MODEL}"]
    assert [s.name for s in latency.series] == ["p50", "p95", "p99"]
    assert [m.label for m in latency.markers] == ["latency spike on cancer-classifier"]
    p50 = [p[1] for p in latency.series[0].points]
    assert p50[0] < 10 and p50[-1] > 50
    errors = charts[f"errors-{MODEL}"].series[0].points
    assert errors[0][1] == 0 and max(p[1] for p in errors) > 0

    alerts = data.tables[0]
    assert len(alerts.rows) == 4
    traces = data.tables[1]
    assert [r[6] for r in traces.rows] == ["feature-service never answered"]
    assert data.summary["inference records"] == 200


def test_a_diverging_run_leaves_the_axis_instead_of_flattening_the_healthy_one(indexed: dict[str, Any]) -> None:
    charts = _charts(report.collect(indexed["es"], prefix=indexed["prefix"]))
    loss = charts["training-loss"]
    # Both runs' losses up to step 24 and run-healthy's to the end: 1/40 .. 1, not 1/40 .. 1e13
    assert loss.y_limits == [pytest.approx(1 / 40), 1.0]
    assert [asdict(c) for c in loss.clips] == [
        {"series": "run-diverge train", "first_x": 25.0, "count": 13, "peak": pytest.approx(_diverging_loss(37))}
    ]
    assert "run-diverge train leaves the axis at step 25: 13 points above it (up to 1e+13)" in loss.note
    grad = charts["training-grad_norm"]
    assert grad.y_limits == [0.5, 0.5]  # both runs hold 0.5 until run-diverge explodes (the page pads it)
    assert [(c.series, c.first_x, c.count) for c in grad.clips] == [("run-diverge train", 25.0, 15)]
    assert charts["training-grad_norm"].markers[0].y == pytest.approx(0.5 + 10.0**4)  # still the true value
    # a tenfold learning rate and the accuracies stay comparable: those axes fit every value
    assert charts["training-lr"].y_limits is None and charts["training-lr"].clips == []
    assert charts["training-accuracy"].y_limits is None


def test_off_axis_flags_a_departure_not_a_falling_loss_a_tenfold_step_or_a_first_step() -> None:
    rng = np.random.default_rng(3)
    steps = np.arange(500)
    falling = 2.3 * np.exp(-steps / 60) + 0.02 + rng.normal(0, 0.01, 500).clip(-0.015)  # 2.3 down to 0.02
    assert not any(report_axis.off_axis(falling.tolist()))
    tenfold = [0.5] * 100 + [5.0] * 100  # the demo's learning-rate jump
    assert not any(report_axis.off_axis(tenfold))
    warm_up = [1e-6 * (s + 1) for s in range(200)]  # a linear warm-up climbs 200x, twice its median at most
    assert not any(report_axis.off_axis(warm_up))
    assert not any(report_axis.off_axis([0.01] + [5.0] * 20))  # no verdict before MIN_REFERENCE points
    spike = [1.0] * 50 + [40.0] + [1.0] * 50  # leaves once and comes back: only the spike is off
    assert [i for i, off in enumerate(report_axis.off_axis(spike)) if off] == [50]
    diverging = [_diverging_loss(s) for s in range(38)]
    assert [i for i, off in enumerate(report_axis.off_axis(diverging)) if off] == list(range(25, 38))


def test_latency_percentiles_match_numpy(indexed: dict[str, Any]) -> None:
    data = report.collect(indexed["es"], prefix=indexed["prefix"], model=MODEL)
    chart = _charts(data)[f"latency-{MODEL}"]
    buckets = chart.series[0].points
    width_ms = buckets[1][0] - buckets[0][0]
    # Recompute the first bucket independently from the generated latencies (0.5 s apart).
    per_bucket = int(width_ms / 500)
    expected = np.percentile(indexed["ok_latencies"][:per_bucket], 50)
    assert buckets[0][1] == pytest.approx(expected)


def test_scopes_select_their_sections(indexed: dict[str, Any]) -> None:
    by_run = report.collect(indexed["es"], prefix=indexed["prefix"], runs=["run-healthy"])
    assert [s.id for s in by_run.sections] == ["training", "drift"]
    assert {s.name for c in by_run.sections[0].charts for s in c.series} == {"run-healthy train", "run-healthy val"}
    assert by_run.summary["training metric documents"] == 40 * 3 + 4 + 4
    assert by_run.tables[0].rows == []  # the divergence alert belongs to the other run
    by_model = report.collect(indexed["es"], prefix=indexed["prefix"], model=MODEL)
    assert [s.id for s in by_model.sections] == ["drift", "inference"]
    assert len(by_model.tables[0].rows) == 2


def test_unknown_scope_is_a_clear_error(indexed: dict[str, Any]) -> None:
    with pytest.raises(report.ReportError, match="nothing indexed for run 'no-such-run'"):
        report.collect(indexed["es"], prefix=indexed["prefix"], runs=["no-such-run"])


def test_two_runs_share_every_training_chart_and_list_their_config_differences(indexed: dict[str, Any]) -> None:
    data = report.collect(indexed["es"], prefix=indexed["prefix"], runs=["run-healthy", "run-diverge"])
    assert data.scope == "runs run-healthy, run-diverge"
    assert [s.id for s in data.sections] == ["training", "drift"]
    for chart in data.sections[0].charts:
        assert {s.name.split(" ")[0] for s in chart.series} == {"run-diverge", "run-healthy"}, chart.id
    config = {t.id: t for t in data.tables}["config"]
    assert config.columns == ["config key", "run-healthy", "run-diverge"]  # the order they were named in
    # lr and batch_size are the same; a key only one run has shows "-" for the other
    assert config.rows == [["diverge_at", "null", "25"], ["optim.momentum", "0.9", "-"], ["seed", "2", "1"]]
    assert [r[4] for r in data.tables[0].rows] == ["grad_norm exploding on run-diverge"]


def test_one_run_has_no_config_table_and_an_unknown_second_run_is_named(indexed: dict[str, Any]) -> None:
    one = report.collect(indexed["es"], prefix=indexed["prefix"], runs=["run-healthy"])
    assert [t.id for t in one.tables] == ["alerts", "incomplete-traces"]
    with pytest.raises(report.ReportError, match="nothing indexed for run 'run-typo'"):
        report.collect(indexed["es"], prefix=indexed["prefix"], runs=["run-healthy", "run-typo"])


def test_paging_reads_past_one_page_and_says_when_it_stops(
    indexed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_fetch, "PAGE_SIZE", 7)
    data = report.collect(indexed["es"], prefix=indexed["prefix"], model=MODEL)
    assert data.summary["inference records"] == 200  # 29 pages of 7, nothing lost at page edges
    capped = report.collect(indexed["es"], prefix=indexed["prefix"], model=MODEL, limit=50)
    assert capped.summary["inference records"] == 50
    assert any("only the first 50 inference" in n for n in capped.notes)


# --------------------------------------------------------------------------- CLI


def _args(**kw: Any) -> argparse.Namespace:
    """Flags as the command line gives them; a list value repeats its flag."""
    parser = argparse.ArgumentParser()
    report.add_arguments("report", parser)
    argv = []
    for key, value in kw.items():
        for one in value if isinstance(value, list) else [value]:
            argv += [f"--{key.replace('_', '-')}", str(one)]
    return parser.parse_args(argv)


def test_cli_writes_the_page(
    indexed: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AITRACE_INDEX_PREFIX", indexed["prefix"])
    out = tmp_path / "sub" / "report.html"
    assert report.run("report", _args(es_url=indexed["url"], output=out)) == 0
    text = out.read_text()
    assert "wrote" in capsys.readouterr().out
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # like any new file, not mkstemp's 0600
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temporary file left behind
    # self-contained: no element loads anything from elsewhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(" not in text


def test_cli_draws_several_runs_on_one_page(
    indexed: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AITRACE_INDEX_PREFIX", indexed["prefix"])
    out = tmp_path / "runs.html"
    assert report.run("report", _args(es_url=indexed["url"], output=out, run=["run-diverge", "run-healthy"])) == 0
    assert "(runs run-diverge, run-healthy: 4 charts, 1 alerts)" in capsys.readouterr().out
    assert "Config differences (3)" in out.read_text()
    with pytest.raises(SystemExit):  # several runs, but still not runs and a model
        _args(run=["run-diverge", "run-healthy"], model=MODEL)


def test_cli_unknown_run_exits_non_zero_and_writes_nothing(
    indexed: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AITRACE_INDEX_PREFIX", indexed["prefix"])
    out = tmp_path / "report.html"
    assert report.run("report", _args(es_url=indexed["url"], output=out, run="nope")) == 1
    assert "nothing indexed for run 'nope'" in capsys.readouterr().err
    assert not out.exists()


def test_cli_search_server_down_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "report.html"
    assert report.run("report", _args(es_url=url, output=out)) == 1
    err = capsys.readouterr().err
    assert url in err and "aitrace report:" in err
    assert not out.exists()


def test_cli_unwritable_output_is_a_clear_error(
    indexed: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AITRACE_INDEX_PREFIX", indexed["prefix"])
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert report.run("report", _args(es_url=indexed["url"], output=blocker / "report.html")) == 1
    assert "cannot write" in capsys.readouterr().err


def test_output_through_a_link_or_into_a_fifo_keeps_the_link_and_the_fifo(tmp_path: Path) -> None:
    """Run as root, `-o /dev/full` replaced the device node with the page; a rename replaces a link too."""
    target = tmp_path / "pages" / "real.html"
    target.parent.mkdir()
    target.write_text("old page")
    link = tmp_path / "report.html"
    link.symlink_to(target)
    report.write_atomic(link, "new page")
    assert link.is_symlink() and target.read_text() == "new page"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so that opening it to write does not block
    try:
        report.write_atomic(fifo, "piped page")
        assert stat.S_ISFIFO(fifo.lstat().st_mode)
        assert os.read(reader, 100) == b"piped page"
    finally:
        os.close(reader)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["pages", "pipe", "real.html", "report.html"]


# --------------------------------------------------------------------------- render


def test_data_island_survives_hostile_strings_and_nonfinite_numbers() -> None:
    chart = report_data.Chart(
        "c", "t", "step", "y", [report_data.Series("</script><b>x", [[0, float("nan")], [1, 2.0]])]
    )
    data = report_data.ReportData(
        "</script>",
        "now",
        "all",
        [report_data.Section("s", "S", "", [chart])],
        [report_data.Table("t", "T", ["a"], [["<img src=x onerror=alert(1)>"]], "")],
        {"n": 1},
    )
    page = report_page.render(data)
    island = page.split('id="report-data">', 1)[1].split("</script>", 1)[0]
    parsed = json.loads(island)
    assert parsed["sections"][0]["charts"][0]["series"][0]["points"][0] == [0, None]
    assert parsed["title"] == "</script>"
    assert "<img src=x" not in page


class _BodyAttrs(HTMLParser):
    """Collects <body> attributes and each chart's data-series from a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.charts: dict[str, int] = {}
        self.series_paths = 0
        self.flagged = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if a.get("class") == "chart" and a.get("id", "").startswith("chart-"):
            self.charts[a["id"][6:]] = int(a.get("data-series", "-1"))
        if tag == "path" and a.get("class") == "series":
            self.series_paths += 1
        if tag == "circle" and a.get("class") == "flagged":
            self.flagged += 1


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed (run.py installs it as root)")
def test_page_renders_in_headless_chromium(indexed: dict[str, Any], tmp_path: Path) -> None:
    data = report.collect(indexed["es"], prefix=indexed["prefix"])
    page = tmp_path / "report.html"
    page.write_text(report_page.render(data))
    done = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _BodyAttrs()
    dom.feed(done.stdout)
    assert dom.body.get("data-rendered") == "1", done.stdout[-2000:]
    assert dom.body.get("data-errors") == "0", dom.body.get("data-error-messages")
    expected = {c.id: len(c.series) for c in _charts(data).values()}
    assert dom.charts == expected
    assert int(dom.body["data-charts"]) == len(expected) == 8
    assert int(dom.body["data-series"]) == dom.series_paths == sum(expected.values())
    assert dom.flagged == 1  # the flagged grad_norm point is ringed


_PLOT_TOP, _PLOT_HEIGHT = 22, 270 - 22 - 34  # the page script's M.t and H - M.t - M.b
_CLIPPED = re.compile(r'<path [^>]*class="clipped" data-x="([^"]+)" data-value="([^"]+)"[^>]*><title>([^<]*)</title>')


def _chart_dom(dom: str, chart_id: str) -> str:
    """The dumped DOM of one chart's box (up to the next chart's)."""
    return dom.split(f'id="chart-{chart_id}"', 1)[1].split('class="chart"', 1)[0]


def _path_ys(chart_dom: str, name: str) -> list[float]:
    d = re.search(rf'd="([^"]*)"[^>]*class="series" data-name="{re.escape(name)}"', chart_dom)
    assert d is not None, name
    return [float(y) for y in re.findall(r"[ML][\d.]+,([\d.]+)", d.group(1))]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed (run.py installs it as root)")
def test_browser_draws_the_healthy_run_over_the_whole_axis_and_arrows_where_the_other_leaves(
    indexed: dict[str, Any], tmp_path: Path
) -> None:
    data = report.collect(indexed["es"], prefix=indexed["prefix"], runs=["run-diverge", "run-healthy"])
    page = tmp_path / "runs.html"
    page.write_text(report_page.render(data))
    done = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'data-errors="0"' in done.stdout
    loss = _chart_dom(done.stdout, "training-loss")
    assert 'data-clipped="13"' in loss
    healthy = _path_ys(loss, "run-healthy train")
    assert max(healthy) - min(healthy) > 0.8 * _PLOT_HEIGHT  # was 11% on the 1/40 .. 1e13 log axis
    assert min(_path_ys(loss, "run-diverge train")) >= _PLOT_TOP  # what is drawn stays inside the plot
    arrows = _CLIPPED.findall(loss)
    assert [int(x) for x, _, _ in arrows] == list(range(25, 38))
    for x, value, title in arrows:  # the true value, in the data and in the tooltip (4 digits)
        assert float(value) == pytest.approx(_diverging_loss(int(x)))
        shown = re.fullmatch(rf"run-diverge train: {x} -> (\S+) \(above the axis\)", html.unescape(title))
        assert shown is not None and float(shown.group(1)) == pytest.approx(float(value), rel=1e-3)
    assert "13 above the axis" in loss  # and the legend says so
    grad = _chart_dom(done.stdout, "training-grad_norm")
    assert len(_CLIPPED.findall(grad)) == 15 and 'class="flagged"' in grad  # the alert's ring is kept on the edge
    assert 'data-clipped="0"' in _chart_dom(done.stdout, "training-lr")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed (run.py installs it as root)")
def test_broken_page_script_is_reported_by_the_browser_check(tmp_path: Path) -> None:
    """The browser check can fail: a chart the script cannot draw is counted as an error."""
    chart = report_data.Chart("bad", "bad", "step", "y", [report_data.Series("s", [[0, 1.0]])])
    data = report_data.ReportData("t", "now", "all", [report_data.Section("s", "S", "", [chart])], [], {})
    page_text = report_page.render(data).replace('"series":[{', '"series":[null,{', 1)
    page = tmp_path / "broken.html"
    page.write_text(page_text)
    done = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    dom = _BodyAttrs()
    dom.feed(done.stdout)
    assert dom.body.get("data-rendered") == "1"
    assert dom.body.get("data-errors") == "1"
    assert "bad:" in dom.body.get("data-error-messages", "")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed (run.py installs it as root)")
def test_a_constant_metric_is_drawn(tmp_path: Path) -> None:
    """Accuracy 0.9 at every step (a rollup's mean 0.9000000000000002): a span of rounding made a tick step
    that never advanced ("RangeError: Invalid array length", no chart; /work/rev-w D4)."""
    points: list[list[float | None]] = [[0, 0.9], [10, 0.9000000000000002], [20, 0.9]]
    chart = report_data.Chart("flat", "flat", "step", "y", [report_data.Series("s", points)])
    data = report_data.ReportData("t", "now", "all", [report_data.Section("s", "S", "", [chart])], [], {})
    page = tmp_path / "flat.html"
    page.write_text(report_page.render(data))
    done = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    dom = _BodyAttrs()
    dom.feed(done.stdout)
    assert (dom.body.get("data-rendered"), dom.body.get("data-errors")) == ("1", "0"), dom.body
    assert 'class="series" data-name="s"' in _chart_dom(done.stdout, "flat")


def test_wall_time_helpers_are_stable() -> None:
    """Bucket choice and timestamp parsing the charts rely on."""
    assert report_inference._bucket_seconds(3_900) == 0.1
    assert report_inference._bucket_seconds(39_000) == 1
    assert report_inference._bucket_seconds(41_000) == 2
    assert report_fetch._ms("2026-09-21T00:00:00.000000Z") == calendar.timegm((2026, 9, 21, 0, 0, 0)) * 1000
    assert report_fetch._ms("not a time") is None


def test_since_keeps_only_later_documents(indexed: dict[str, Any]) -> None:
    since = D.iso_time(T0 + 20_000_000)  # when the inference traffic starts
    data = report.collect(indexed["es"], prefix=indexed["prefix"], since=since)
    assert data.summary["training metric documents"] == 0 and data.summary["data stats documents"] == 0
    assert data.summary["inference records"] == 200
    assert sorted(r[4] for r in data.tables[0].rows) == [
        "latency spike on cancer-classifier",
        "mean_radius drifted on cancer-classifier",
    ]
    with pytest.raises(report.ReportError, match=r"nothing indexed for run 'run-healthy' since"):
        report.collect(indexed["es"], prefix=indexed["prefix"], runs=["run-healthy"], since=since)


def test_since_flag_reads_iso_times_and_refuses_others() -> None:
    assert report._iso_time("2026-11-26T15:40:00Z") == "2026-11-26T15:40:00.000000Z"
    assert report._iso_time("2026-11-26T16:40:00+01:00") == "2026-11-26T15:40:00.000000Z"
    assert report._iso_time("2026-11-26 15:40") == "2026-11-26T15:40:00.000000Z"  # naive means UTC
    with pytest.raises(SystemExit):
        _args(since="yesterday")


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_limit_below_one_is_a_usage_error(limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    """-1 ended `aitrace report` and `aitrace compare` in an IndexError from the paged read; 0 read
    nothing and said nothing was indexed."""
    with pytest.raises(SystemExit) as exit_:
        _args(limit=limit)
    assert exit_.value.code == 2
    assert f"argument --limit: must be at least 1, got {limit}" in capsys.readouterr().err
