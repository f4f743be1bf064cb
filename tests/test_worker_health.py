"""``aitrace worker --health``: the heartbeat file the stats timer writes, fresh, stale or missing.

Unit tests age the file with ``os.utime``; one test follows a real ``aitrace worker`` subprocess
from start to a clean stop, checking it the way docker-compose.yml's healthcheck does.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aitrace.infra.cli import main
from aitrace.processors.heartbeat import RebalanceWatch, heartbeat_path, heartbeat_problem, write_heartbeat
from test_e2e_processors import WAIT_S, Worker


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_fresh_stale_and_missing(tmp_path: Path) -> None:
    path = heartbeat_path(str(tmp_path), "app")
    assert (
        heartbeat_problem(path, 30.0)
        == f"no heartbeat at {path}: the worker is not running, or has not finished starting"
    )
    write_heartbeat(path, "t=1.000 records=5")
    assert heartbeat_problem(path, 30.0) is None
    assert path.read_text() == f"pid {os.getpid()}: t=1.000 records=5\n"
    _age(path, 45)
    problem = heartbeat_problem(path, 30.0)
    assert problem is not None and "is 45 s old (more than 30 s): the worker is stuck or gone" in problem
    write_heartbeat(path, "t=2.000 records=9")  # the next beat makes it fresh again
    assert heartbeat_problem(path, 30.0) is None
    assert [p.name for p in tmp_path.iterdir()] == ["app.heartbeat"]  # no temporary file left


def test_a_rebalance_counts_as_stuck_only_past_the_limit_and_only_while_it_lasts() -> None:
    now = [0.0]
    watch = RebalanceWatch(limit_s=300.0, clock=lambda: now[0])
    seen = []
    for t, rebalancing in [(0, False), (5, True), (300, True), (306, True), (310, False), (320, True), (600, True)]:
        now[0] = float(t)
        seen.append(watch.stuck_for(rebalancing))
    # the clock restarts with each rebalance: 306 - 5 > 300, but 600 - 320 is not
    assert seen == [None, None, None, 301.0, None, None, None]


def test_a_heartbeat_that_cannot_be_written_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = heartbeat_path(str(tmp_path / "missing-dir"), "app")
    with caplog.at_level(logging.WARNING, logger="aitrace.processors"):
        write_heartbeat(path, "stats")
    assert "cannot write heartbeat" in caplog.text
    assert heartbeat_problem(path, 30.0) is not None


def _health(capsys: pytest.CaptureFixture[str], data_dir: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["worker", "--health", "--workers-dir", str(data_dir), "--app-id", "app", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_health_command_exit_status_and_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _health(capsys, tmp_path)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("aitrace worker: unhealthy: no heartbeat at ")

    path = heartbeat_path(str(tmp_path), "app")
    write_heartbeat(path, "stats")
    code, out, err = _health(capsys, tmp_path)
    assert (code, err) == (0, "") and "healthy" in out

    _age(path, 31)  # the default largest age is 3 stats intervals of 10 s
    code, _, err = _health(capsys, tmp_path)
    assert code == 1 and "31 s old (more than 30 s)" in err
    assert _health(capsys, tmp_path, "--stats-interval-s", "20")[0] == 0
    assert _health(capsys, tmp_path, "--health-max-age", "60")[0] == 0
    assert _health(capsys, tmp_path, "--stats-interval-s", "20", "--health-max-age", "5")[0] == 1


@pytest.mark.parametrize(
    "extra", [("--health-max-age", "nan"), ("--health-max-age", "-3"), ("--stats-interval-s", "nan")]
)
def test_a_largest_age_that_is_not_a_positive_number_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, str]
) -> None:
    """NaN compares False, so any heartbeat, however old, read as fresh (exit 0); -3 read every one as stale."""
    path = heartbeat_path(str(tmp_path), "app")
    write_heartbeat(path, "stats")
    _age(path, 3600)
    code, out, err = _health(capsys, tmp_path, *extra)
    assert (code, out) == (2, "")
    stats_interval = "aitrace worker: --stats-interval-s (or AITRACE_WORKER_STATS_INTERVAL_S) must be a positive"
    assert err.startswith(("aitrace worker: the heartbeat's largest age must be a positive number", stats_interval))


def test_a_bad_option_is_reported_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It went to stdout, where a script reading the worker's output took it for output."""
    assert main(["worker", "--workers-dir", str(tmp_path), "--partitions", "0"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        "aitrace worker: --partitions (or AITRACE_WORKER_PARTITIONS) must be a positive number, got 0\n",
    )


def test_health_follows_a_real_worker(
    kafka: Any, search: Any, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("health")
    worker = Worker(kafka.bootstrap, search.url, prefix, tmp_path)  # stats (and beats) every 2 s
    check = [sys.executable, "-m", "aitrace.infra.cli", "worker", "--health", "--app-id", f"{prefix}-app"]
    check += ["--workers-dir", str(tmp_path / "faust"), "--stats-interval-s", "2"]

    def health() -> subprocess.CompletedProcess[str]:
        return subprocess.run(check, capture_output=True, text=True, timeout=60)

    assert "no heartbeat" in health().stderr
    worker.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while (result := health()).returncode != 0:
            assert worker.running(), f"worker exited before its first heartbeat:\n{worker.tail()}"
            assert time.monotonic() < deadline, f"no fresh heartbeat: {result.stderr}\n{worker.tail()}"
            time.sleep(1.0)
        assert "healthy" in result.stdout
        worker.stop()
        assert not worker.running(), worker.tail()
        result = health()
        assert result.returncode == 1 and "no heartbeat" in result.stderr  # a clean stop removes it
    finally:
        worker.kill()


def test_a_worker_whose_broker_is_gone_still_stops_on_sigterm(
    search: Any, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """Faust's graceful stop waits on the broker; with the broker gone it was seen hanging for
    minutes. The worker bounds it (SHUTDOWN_DEADLINE_S) and exits: nothing unindexed was committed."""
    from aitrace.infra.stack import TansuProcess, free_port
    from aitrace.processors.faust_compat import SHUTDOWN_DEADLINE_S

    broker = TansuProcess(free_port(), tmp_path / "logs").start().wait_ready(60)
    prefix = unique_name("gone")
    worker = Worker(broker.bootstrap, search.url, prefix, tmp_path)
    worker.start()
    try:
        beat = heartbeat_path(str(tmp_path / "faust"), f"{prefix}-app")
        deadline = time.monotonic() + WAIT_S
        while heartbeat_problem(beat, 60.0) is not None:  # joined its group and running
            assert worker.running() and time.monotonic() < deadline, worker.tail()
            time.sleep(1.0)
        broker.stop()
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGTERM)
        # generous: the deadline plus a loaded machine's start-up of the exit; a hang never returns
        worker.proc.wait(SHUTDOWN_DEADLINE_S + 90)
    finally:
        worker.kill()
        broker.stop()
