"""`aitrace demo`: the verdict logic on hand-made alerts, its failure paths, and the real thing end to end.

The end-to-end test runs ``aitrace demo`` as a user would (a child process, its own state
directory): it starts Tansu and osmem-server, a worker, the three workloads, and must exit 0
with every injected fault found, write the report, and leave nothing running. On this 2-core
machine it took about 50 s, so it is part of the default run; the ``--keep`` walk-through
(demo, then report / status / down against the kept stack) runs with AITRACE_FULL_TESTS=1.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import synth as S
from aitrace.infra import demo, demo_findings, demo_stack, services
from aitrace.infra.stack import free_port, read_state
from aitrace.infra.stack import status as stack_status
from aitrace.producers.config import SearchConfig, Settings

MODEL = "cancer-classifier"
DRIFT_SINCE, SLOW_SINCE = 1_000_000, 2_000_000


def _alert(**fields: Any) -> dict[str, Any]:
    base = {
        "alert_id": fields.get("title", "a"),
        "version": 1,
        "kind": "anomaly",
        "severity": "warning",
        "title": "t",
        "series": "s",
        "first_seen": 0,
        "last_seen": 0,
        "model": None,
        "run_id": None,
        "feature": None,
        "step": None,
    }
    base.update(fields)
    base["alert_id"] = f"{base['series']}:{base['title']}"
    return base


def _all_found() -> list[dict[str, Any]]:
    return [
        _alert(
            title="loss spike",
            run_id=demo_findings.RUN_DIVERGE,
            feature="loss",
            step=156,
            series="run/run-diverge/train/loss",
        ),
        _alert(title="alcohol", kind="drift", feature="alcohol", series="data/wine/ingest/alcohol"),
        _alert(title="missing", kind="data_quality", feature="magnesium", series="data/wine/ingest/magnesium"),
        _alert(
            title="label",
            kind="data_quality",
            detector="unseen_label",
            feature="target",
            series="data/wine/ingest/__label__/unseen",
        ),
        _alert(title="latency", model=MODEL, feature="latency", series="model/x/latency", last_seen=SLOW_SINCE + 5),
        _alert(title="radius", kind="drift", model=MODEL, feature="mean_radius", series="m/f", last_seen=DRIFT_SINCE),
    ]


def _expected() -> list[demo_findings.Expectation]:
    return demo_findings.expectations(
        "alcohol", "magnesium", MODEL, "mean_radius", drift_since_us=DRIFT_SINCE, slow_since_us=SLOW_SINCE
    )


def _judge(alerts: list[dict[str, Any]]) -> demo_findings.Verdict:
    return demo_findings.judge({a["alert_id"]: a for a in alerts}, _expected())


def test_verdict_ok_when_every_required_fault_is_found() -> None:
    verdict = _judge(_all_found())
    assert verdict.ok
    assert [e.name for e in verdict.missed] == [f"error rate of model {MODEL} (a few malformed requests)"]
    assert verdict.found[f"latency spike of model {MODEL}"]["title"] == "latency"


@pytest.mark.parametrize("drop", range(6))
def test_verdict_fails_when_any_required_fault_is_missed(drop: int) -> None:
    alerts = _all_found()
    missing = alerts.pop(drop)
    verdict = _judge(alerts)
    assert not verdict.ok, missing["title"]


def test_findings_before_the_fault_do_not_count() -> None:
    alerts = _all_found()
    alerts[0] = {**alerts[0], "step": demo_findings.DIVERGE_AT - 20}  # a blip during the healthy phase
    alerts[4] = {**alerts[4], "last_seen": SLOW_SINCE - 1}  # a latency blip before the slow phase
    verdict = _judge(alerts)
    assert {e.name for e in verdict.missed if e.required} == {
        f"divergence / exploding gradients on {demo_findings.RUN_DIVERGE} after step {demo_findings.DIVERGE_AT}",
        f"latency spike of model {MODEL}",
    }


def _inference_record(n: int, time_us: int, radius: float) -> bytes:
    """One request's inference record, alone in its batch and trace, as the demo's model server sends it."""
    payload = S.inference(f"q{n}", MODEL, 5.0, features={"mean_radius": radius})
    event = S.event(payload, trace=f"{n + 1:032x}", time_us=time_us, event_id=f"{n:020x}")
    return S.encode(S.batch([event], batch_id=f"b{n}"))


def test_drift_is_found_when_a_lagging_partition_completes_the_window() -> None:
    """The demo run that missed the input drift: the worker reads the model's records from four partitions,
    so not in event-time order. One partition's baseline records came after most of the drift phase's; the
    window of 200 that they completed held 150 drifted values (KS 0.70) and was dated by its last record to
    arrive, a baseline one, so the alert ended before the drift phase began and the judge rightly refused it.
    Dated by the latest event in the window, it reaches into the drift phase."""
    from aitrace.processors.options import WorkerOptions
    from aitrace.processors.pipeline import Pipeline, Staged

    rng = np.random.default_rng(3)
    t0, step = 1_790_000_000_000_000, 8_000  # 120 requests/s
    baseline = [(n, t0 + n * step, rng.normal(14.0, 3.5)) for n in range(300)]
    drift_since = t0 + 300 * step
    drift = [(300 + n, drift_since + n * step, rng.normal(24.5, 3.5)) for n in range(200)]
    lagging = [r for r in baseline if r[0] % 4 == 3]  # one partition of four
    arrivals = [r for r in baseline if r[0] % 4 != 3] + drift[:150] + lagging + drift[150:]
    pipe, table, alerts = Pipeline(WorkerOptions(index=False)), {}, {}
    for offset, (n, time_us, radius) in enumerate(arrivals):
        rec = pipe.process_record(
            _inference_record(n, time_us, radius), key=None, topic="t", partition=0, offset=offset, traces={}, now=0.0
        )
        for _, chunk in rec.chunks:
            staged = Staged(table)
            alerts.update({a["alert_id"]: a for a in pipe.series(chunk, staged)[0]})
            staged.commit()
    drifts = [a for a in alerts.values() if a["kind"] == "drift"]
    assert drifts and drifts[0]["statistic"] > 0.6  # the window the late records completed drifted
    expected = [e for e in _expected_since(drift_since) if e.name.startswith("input drift")]
    assert not demo_findings.judge(alerts, expected).missed, drifts


def _expected_since(drift_since: int) -> list[demo_findings.Expectation]:
    return demo_findings.expectations("alcohol", "magnesium", MODEL, "mean_radius", drift_since_us=drift_since)


def test_label_drift_alone_is_not_the_unseen_label() -> None:
    """A PSI on the label series is not the finding asked for: the alert must name the new value."""
    alerts = _all_found()
    alerts[3] = _alert(title="psi", kind="drift", detector="psi", feature="target", series="data/wine/ingest/__label__")
    verdict = _judge(alerts)
    assert [e.name for e in verdict.missed if e.required] == ["the label value never seen before"]


def test_any_alert_on_the_healthy_run_is_a_false_alarm() -> None:
    alerts = [
        *_all_found(),
        _alert(title="noise", run_id=demo_findings.RUN_HEALTHY, feature="loss", series="run/h/loss"),
    ]
    verdict = _judge(alerts)
    assert not verdict.ok and [a["title"] for a in verdict.false_alarms] == ["noise"]


def test_the_last_line_names_why_the_run_failed() -> None:
    """A second demo on a running stack found every fault and failed on alerts of run-healthy,
    yet its last line said "the pipeline did not find everything injected"."""
    noise = _alert(title="noise", run_id=demo_findings.RUN_HEALTHY, feature="loss", series="run/h/loss")
    assert _judge(_all_found()).headline() == "OK: every injected fault was found"
    assert _judge([*_all_found(), noise]).headline() == (
        f"FAILED: 1 alert(s) on {demo_findings.RUN_HEALTHY}, which should raise none"
    )
    assert _judge([*_all_found()[1:], noise]).headline() == (
        f"FAILED: the pipeline did not find divergence / exploding gradients on {demo_findings.RUN_DIVERGE} after "
        f"step {demo_findings.DIVERGE_AT}, and 1 alert(s) on {demo_findings.RUN_HEALTHY}, which should raise none"
    )


def test_describe_names_where_an_alert_points() -> None:
    text = demo_findings.describe(
        _alert(
            title="grad_norm: spike", severity="critical", run_id="r", feature="grad_norm", step=158, statistic=5.8e8
        )
    )
    assert text == "[critical] grad_norm: spike (run_id r, feature grad_norm, step 158, statistic 5.8e+08)"


# --------------------------------------------------------------------------- failure paths


def test_dead_worker_is_reported_with_its_log(tmp_path: Path) -> None:
    worker = demo_stack.Worker(tmp_path)
    worker.argv = [sys.executable, "-c", "import sys; print('worker: cannot reach the broker'); sys.exit(3)"]
    worker.start(dict(os.environ))
    assert worker.process is not None
    worker.process.wait(30)
    with pytest.raises(demo_stack.DemoError, match=r"exited with code 3:\n.*cannot reach the broker"):
        worker.check()


def test_a_stopped_worker_leaves_its_log_and_no_data_directory(tmp_path: Path) -> None:
    """Each demo's worker has an app id of its own; its data directory stayed behind, one per demo."""
    worker = demo_stack.Worker(tmp_path)
    worker.argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    (worker.data_dir / "tables").mkdir(parents=True)  # as Faust makes it
    worker.start(dict(os.environ))
    worker.stop()
    assert worker.process is not None and worker.process.returncode is not None
    assert not worker.data_dir.exists() and worker.log_path.exists()


def test_a_demo_worker_keeps_the_newest_worker_logs(tmp_path: Path) -> None:
    """Every demo left its worker's log behind: the folder grew by one file a run."""
    logs = tmp_path / "logs"
    logs.mkdir()
    old = [logs / f"demo-worker-{n:08x}.log" for n in range(7)]
    for age, path in enumerate(old):
        path.write_text("an earlier demo\n")
        os.utime(path, (1e9 + age, 1e9 + age))
    worker = demo_stack.Worker(tmp_path)
    worker.argv = [sys.executable, "-c", "pass"]
    worker.start(dict(os.environ))
    worker.stop()
    kept = set(logs.glob("demo-worker-*.log"))
    assert kept == {worker.log_path, *old[-(services.KEEP_LOGS - 1) :]}


def test_a_failed_demo_says_where_the_logs_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("AITRACE_STATE_DIR", str(state))  # restored afterwards: the demo sets it
    monkeypatch.setattr(demo, "start_stack", lambda _: demo_stack.StackHandle(Settings.from_env(), [], []))

    def fail(*_: Any) -> int:
        raise demo_stack.DemoError("the worker exited with code 3")

    monkeypatch.setattr(demo, "_run_with_stack", fail)
    args = argparse.Namespace(keep=False, timeout=30.0, state_dir=str(state), report="")
    assert demo.run("demo", args) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "aitrace demo: the worker exited with code 3"
    logs = state.resolve() / "logs"
    assert err[-1].startswith(f"aitrace demo: the broker's, search server's and worker's logs are in {logs} ")


def test_missing_broker_binary_is_a_one_line_error_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AITRACE_TANSU_BIN", str(tmp_path / "no-tansu"))
    monkeypatch.setenv("AITRACE_STATE_DIR", str(tmp_path / "state"))  # restored afterwards: the demo sets it
    args = argparse.Namespace(keep=False, timeout=30.0, state_dir=str(tmp_path / "state"), report="")
    assert demo.run("demo", args) == 1
    err = capsys.readouterr().err
    assert "aitrace demo: tansu binary not found" in err and "AITRACE_TANSU_BIN" in err
    assert read_state(tmp_path / "state").get("services", {}) == {}
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("timeout", ["0", "-5", "nan", "inf"])
def test_a_timeout_that_is_not_a_positive_number_is_a_usage_error(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """0 or less ran the workloads, then judged at once and failed on findings on their way; NaN never ended."""
    parser = argparse.ArgumentParser()
    demo.add_arguments("demo", parser)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--timeout", timeout])
    assert exit_.value.code == 2
    assert "argument --timeout: must be a positive number of seconds" in capsys.readouterr().err


def test_a_second_demo_on_the_same_state_dir_is_refused_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two demos in one directory shared a stack and run ids; the first stopped the stack under the second."""
    state = tmp_path / "state"
    monkeypatch.setenv("AITRACE_TANSU_BIN", str(tmp_path / "no-tansu"))  # past the lock, the demo stops here
    monkeypatch.setenv("AITRACE_STATE_DIR", str(state))  # restored afterwards: the demo sets it
    args = argparse.Namespace(keep=False, timeout=30.0, state_dir=str(state), report="")
    with demo_stack.demo_lock(state):  # the first demo
        assert demo.run("demo", args) == 1
    err = capsys.readouterr().err
    assert f"aitrace demo: another `aitrace demo` is running with the state directory {state}" in err
    assert "tansu" not in err and read_state(state).get("services", {}) == {}
    assert demo.run("demo", args) == 1  # the lock lasts only as long as the demo that holds it
    assert "tansu binary not found" in capsys.readouterr().err


def test_a_search_server_gone_before_the_report_is_one_line(tmp_path: Path) -> None:
    """Stopped under the demo (by another demo, or by hand), it ended the summary in a traceback."""
    out = io.StringIO()
    dead = SearchConfig.from_env(es_url=f"http://127.0.0.1:{free_port()}")
    assert demo._write_report(dead, tmp_path / "report.html", "2026-11-26T00:00:00Z", out) is None
    assert out.getvalue().startswith(f"could not write the report {tmp_path / 'report.html'}: ")
    assert not (tmp_path / "report.html").exists()


# --------------------------------------------------------------------------- end to end


def _demo(tmp_path: Path, *extra: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRACE_")}
    env["NUMBA_CACHE_DIR"] = os.environ.get("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    argv = [
        sys.executable,
        "-m",
        "aitrace.infra.cli",
        "demo",
        "--state-dir",
        str(tmp_path / "state"),
        "--report",
        str(tmp_path / "report.html"),
        *extra,
    ]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def _alive(pid: int) -> bool:
    """Running (a zombie that no init has reaped yet has exited: it does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.timeout(450)
def test_demo_end_to_end_finds_every_injected_fault_and_cleans_up(tmp_path: Path) -> None:
    # The demo's own deadline is generous here: the test checks what it finds, not how fast.
    done = _demo(tmp_path, "--timeout", "300")
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-3000:]
    assert "OK: every injected fault was found" in out
    assert f"clean   no alert on {demo_findings.RUN_HEALTHY}" in out
    assert "MISSED" not in out and "FALSE ALARM" not in out
    assert "> training run-diverge" in out and "> inference: slow phase" in out  # progress was shown
    assert "  ALERT " in out
    summary = out.split("aitrace demo: summary", 1)[1]
    assert "found   divergence / exploding gradients on run-diverge" in summary
    assert "aitrace report -o report.html" in summary
    assert f"the pictures: {tmp_path / 'report.html'}" in summary
    # 666 requests (each one trace over three services), two training runs, one pipeline run; all closed
    assert re.search(r"traces assembled +669 +\(0 incomplete\)", summary), summary
    assert "(0 dropped, 0 spilled to disk)" in summary
    page = (tmp_path / "report.html").read_text()
    data = json.loads(page.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    charts = {c["id"] for s in data["sections"] for c in s["charts"]}
    assert {"training-loss", "training-grad_norm", "training-lr", f"latency-{MODEL}"} <= charts
    assert "drift-data-alcohol-ingest" in charts
    # nothing left running: the demo stopped what it started
    logs = tmp_path / "state" / "logs"
    assert read_state(tmp_path / "state").get("services", {}) == {}
    assert any(logs.glob("demo-worker-*.log"))
    assert not any((tmp_path / "state").glob("demo-worker-*"))  # the worker's data directory went with it
    pids = [int(line.split("pid ")[1].split(" ")[0]) for line in out.splitlines() if ": stopped pid " in line]
    assert len(pids) == 2 and not any(_alive(pid) for pid in pids)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not os.environ.get("AITRACE_FULL_TESTS"), reason="full walk-through: AITRACE_FULL_TESTS=1")
def test_demo_keep_then_report_status_and_down(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--keep", "--timeout", "300")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRACE_")}
    env["AITRACE_STATE_DIR"] = str(state)
    try:
        assert all(s.answers for s in stack_status(state))
        # A second run on the kept stack counts and reports only its own data. Its verdict is not
        # asserted: the detectors carry the first run's series (an input drift still open from it
        # raised no new alert when this was written), which the demo says up front.
        again = _demo(tmp_path, "--keep", "--timeout", "120")
        assert "note: the stack was already running" in again.stdout
        assert re.search(r"traces assembled +669 +\(0 incomplete\)", again.stdout), again.stdout[-3000:]
        assert "found   divergence / exploding gradients on run-diverge" in again.stdout
        report = subprocess.run(
            [sys.executable, "-m", "aitrace.infra.cli", "report", "--run", demo_findings.RUN_DIVERGE, "-o", "run.html"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert report.returncode == 0, report.stderr
        assert "run run-diverge" in (tmp_path / "run.html").read_text()
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "aitrace.infra.cli", "down"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert down.returncode == 0 and read_state(state).get("services", {}) == {}


def test_missing_workload_library_is_named_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(demo.importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    monkeypatch.setenv("AITRACE_STATE_DIR", str(tmp_path / "state"))
    args = argparse.Namespace(keep=False, timeout=30.0, state_dir=str(tmp_path / "state"), report="")
    assert demo.run("demo", args) == 1
    err = capsys.readouterr().err
    assert "the workloads need torch" in err and "pip install 'aitrace[demo]'" in err
    assert not (tmp_path / "state").exists()


def test_external_stack_is_used_as_given_and_a_dead_search_server_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With both endpoints external the demo starts no service; an unreachable one fails setup, clearly."""
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AITRACE_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("AITRACE_ES_URL", dead)
    monkeypatch.setenv("AITRACE_STATE_DIR", str(tmp_path / "state"))
    args = argparse.Namespace(keep=False, timeout=30.0, state_dir=str(tmp_path / "state"), report="")
    assert demo.run("demo", args) == 1
    captured = capsys.readouterr()
    assert f"aitrace demo: cannot install the index templates at {dead}" in captured.err
    assert "elasticsearch: external" in captured.out and "kafka: external" in captured.out
    assert read_state(tmp_path / "state").get("services", {}) == {}


def test_indexed_alerts_read_back_as_alerts_and_merge_by_version() -> None:
    from aitrace.sinks.documents import alert_document

    alert = _alert(
        title="grad_norm: spike",
        severity="critical",
        run_id=demo_findings.RUN_DIVERGE,
        feature="grad_norm",
        step=158,
        series="run/run-diverge/train/grad_norm",
        first_seen=1_790_000_000_000_001,
        last_seen=1_790_000_000_500_002,
        statistic=5.8e8,
        detector="spike",
    )
    back = demo_findings.alert_from_document(alert_document(alert))
    assert back is not None
    for key in (
        "alert_id",
        "version",
        "kind",
        "detector",
        "severity",
        "title",
        "series",
        "run_id",
        "feature",
        "step",
        "first_seen",
        "last_seen",
        "statistic",
    ):
        assert back[key] == alert[key], key
    assert demo_findings.alert_from_document({"message": "not an alert"}) is None
    newer = {**alert, "version": 2, "title": "newer"}
    merged = demo_findings.merge_alerts({alert["alert_id"]: newer}, {alert["alert_id"]: alert})
    assert merged[alert["alert_id"]]["title"] == "newer"
    assert (
        demo_findings.judge(merged, _expected()).found[
            f"divergence / exploding gradients on {demo_findings.RUN_DIVERGE} after step {demo_findings.DIVERGE_AT}"
        ]["version"]
        == 2
    )


def test_the_demos_hints_name_an_aitrace_this_shell_can_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After ``python3.11 run.py demo`` no aitrace is on PATH: the hints it printed (``aitrace search ...``,
    ``aitrace down``) failed as written. They name the environment's script, relative to here when under it."""
    from aitrace.infra import demo

    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "aitrace").write_text("#!/bin/sh\n")
    (bin_dir / "aitrace").chmod(0o755)
    monkeypatch.setattr(demo.sys, "executable", str(bin_dir / "python"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert demo.aitrace_command() == ".venv/bin/aitrace"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert demo.aitrace_command() == "aitrace"
    monkeypatch.chdir("/")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert demo.aitrace_command() == str(bin_dir / "aitrace")
