"""Conventions every ``aitrace`` command keeps: ``--version``, and a closed pipe ends output quietly.

The pipe tests run the CLI as a subprocess against the real fixtures, read one line of its
stdout and close the pipe while it still has output to write, as ``| head -1`` does.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from aitrace.infra.cli import main
from aitrace.producers.config import SearchConfig
from aitrace.sinks import documents
from aitrace.sinks.es import make_sync_client
from aitrace.sinks.terminal import reader_gone
from test_alerts import CLI_TIMEOUT, create_topic, make_alert, produce

# Far more than a pipe (64 KiB) and stdout's buffer hold: the writer is still writing when the reader leaves.
SEARCH_HITS = 300
MESSAGE = "x" * 1_000
TRACE_ID = "ab" * 16


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_installed_version(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([flag]) == 0
    assert capsys.readouterr().out == f"aitrace {importlib.metadata.version('aitrace')}\n"


def _cli_without(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``aitrace ARGV`` in a fresh interpreter where importing ``module`` fails (as when it is not installed)."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        f"from aitrace.infra.cli import main\nsys.exit(main({list(argv)!r}))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        # imported when the worker starts
        ("faust", ["worker"], "aitrace worker needs the worker extra: pip install 'aitrace[worker]'"),
        # imported with the command's module
        ("elasticsearch", ["search", "loss"], "aitrace search needs the worker extra: pip install 'aitrace[worker]'"),
        # a command that needs three
        (
            "elastic_transport",
            ["demo"],
            "aitrace demo needs the worker, embedded and demo extras: pip install 'aitrace[worker,embedded,demo]'",
        ),
    ],
)
def test_a_command_without_its_extra_names_it(module: str, argv: list[str], message: str) -> None:
    out = _cli_without(module, *argv)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines() == [message], out.stderr


def test_a_missing_module_that_no_extra_brings_is_not_blamed_on_one() -> None:
    from aitrace.infra.cli import missing_extra

    assert missing_extra(ModuleNotFoundError("No module named 'nosuch'", name="nosuch")) is None
    # a name missing from an installed module is a bug or a wrong version, not a missing extra
    assert missing_extra(ImportError("cannot import name 'x' from 'faust'", name="faust")) is None
    assert missing_extra(ModuleNotFoundError("No module named 'scipy.stats'", name="scipy.stats")) == "worker"


def test_help_lists_the_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "-V, --version" in capsys.readouterr().out


def read_one_line_then_close(
    argv: list[str], env: dict[str, str], then: Callable[[], None] = lambda: None, *, first_is_json: bool = True
) -> str:
    """Run ``aitrace argv``, read its first stdout line, close the pipe, call ``then``; its stderr.

    Asserts the exit is quiet: status 0 and no traceback or "Exception ignored" on stderr.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "aitrace.infra.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        then()
        _, err = proc.communicate(timeout=CLI_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert json.loads(first) if first_is_json else first.strip(), (first, err)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err
    return err


def _index_log_lines(search: Any, prefix: str) -> None:
    """SEARCH_HITS long log lines of one trace, indexed under ``prefix``."""
    client = make_sync_client(SearchConfig.from_env(es_url=search.url, index_prefix=prefix))
    now = int(time.time() * 1_000_000)
    operations: list[dict[str, Any]] = []
    for i in range(SEARCH_HITS):
        payload = ("aitrace.LogRecord", {"level": "info", "message": f"{i} {MESSAGE}"})
        event = {
            "event_id": f"e{i}",
            "time": now - i,
            "trace_id": TRACE_ID,
            "span_id": "cd" * 8,
            "service": "s",
            "payload": payload,
        }
        for action in documents.event_actions(event, prefix=prefix):
            operations += [{"index": {"_index": action["_index"], "_id": action["_id"]}}, action["_source"]]
    client.bulk(operations=operations, refresh=True)
    client.close()


def test_search_json_into_a_closed_pipe_exits_quietly(search: Any, unique_name: Callable[[str], str]) -> None:
    prefix = unique_name("pipe")
    _index_log_lines(search, prefix)
    env = {**os.environ, "AITRACE_ES_URL": search.url, "AITRACE_INDEX_PREFIX": prefix}
    err = read_one_line_then_close(["search", "--json", "-n", str(SEARCH_HITS)], env)
    assert "hit(s) in" not in err  # the summary comes last: the pipe did close mid-output


def test_trace_into_a_closed_pipe_exits_quietly(search: Any, unique_name: Callable[[str], str]) -> None:
    """`aitrace trace ID | head -1`: the tree of 200 long events is more than the pipe holds."""
    prefix = unique_name("pipe")
    _index_log_lines(search, prefix)
    env = {**os.environ, "AITRACE_ES_URL": search.url, "AITRACE_INDEX_PREFIX": prefix}
    read_one_line_then_close(["trace", TRACE_ID, "--color", "never"], env, first_is_json=False)


def test_alerts_json_into_a_closed_pipe_exits_quietly(kafka: Any, unique_topic: Callable[[str], str]) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(kafka.bootstrap, topic, [make_alert("first")])
    argv = ["alerts", "--json", "--topic", topic, "--bootstrap", kafka.bootstrap, "--from-beginning"]
    # The tail writes the next alert into the closed pipe.
    err = read_one_line_then_close(
        argv, dict(os.environ), lambda: produce(kafka.bootstrap, topic, [make_alert("next")])
    )
    assert "alert version(s) handled" not in err


def test_alerts_tail_ends_when_the_reader_leaves_while_no_alert_comes(
    kafka: Any, unique_topic: Callable[[str], str]
) -> None:
    """`aitrace alerts --json | head -1` waited on after head had left, until the next alert
    (maybe never) made it write into the closed pipe. Nothing more is produced here: without
    the check between waits the tail runs on and the test fails at CLI_TIMEOUT."""
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(kafka.bootstrap, topic, [make_alert("only")])
    argv = ["alerts", "--json", "--topic", topic, "--bootstrap", kafka.bootstrap, "--from-beginning"]
    err = read_one_line_then_close(argv, dict(os.environ))
    assert "alert version(s) handled" not in err


def test_reader_gone_sees_a_closed_pipe_and_nothing_else(tmp_path: Any) -> None:
    """Only a pipe whose read end is closed reads as gone: a false alarm would end a healthy tail."""
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as writer:
        assert not reader_gone(writer)  # the reader is still there
        os.close(read_end)
        assert reader_gone(writer)
    with (tmp_path / "out.txt").open("w") as file, open(os.devnull, "w") as devnull:
        assert not reader_gone(file)
        assert not reader_gone(devnull)
    assert not reader_gone(io.StringIO())  # no descriptor: cannot tell, so not gone


def test_backtest_json_into_a_closed_pipe_exits_quietly(tmp_path: Any) -> None:
    """The listing commands without a server: `aitrace backtest --json FILE | head -1`."""
    rows = [f"{math.sin(i / 3) + (40 if i % 500 == 0 else 0)}" for i in range(20_000)]
    (tmp_path / "series.csv").write_text("value\n" + "\n".join(rows) + "\n")
    # every point flagged: some MB of rows, far more than the pipe holds when the reader leaves
    argv = ["backtest", "--column", "value", "--raw", "--threshold", "1e-9", "--json", str(tmp_path / "series.csv")]
    err = read_one_line_then_close(argv, dict(os.environ))
    assert "points in column 'value'" in err  # its summary goes to stderr, before the rows


@pytest.mark.parametrize("command", ["status", "down"])
def test_stack_commands_into_a_closed_pipe_exit_quietly(command: str, tmp_path: Any) -> None:
    """`aitrace status | head -1` printed "aitrace status: Broken pipe" and exited 1: the
    command's own OSError handler (meant for an unwritable state dir) took the closed stdout."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has left before the first line
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "aitrace.infra.cli", command, "--state-dir", str(tmp_path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=CLI_TIMEOUT,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize("flag, value", [("--kafka-port", "99999"), ("--es-port", "-1"), ("--es-port", "abc")])
def test_up_with_a_port_out_of_range_is_a_usage_error(
    flag: str, value: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Out of range, socket.bind() raised OverflowError: a traceback, after the state dir was made."""
    with pytest.raises(SystemExit) as exit_:
        main(["up", "--state-dir", str(tmp_path / "state"), flag, value])
    assert exit_.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--es-url", "http://[::1"],
        ["compare", "a", "b", "--es-url", "http://u:pw@[::1"],
        ["report", "--since", "9999-12-31T23:59:59-01:00"],
        ["compare", "a", "b", "--since", "0001-01-01T00:00:00+01:00"],
    ],
)
def test_arguments_out_of_range_are_usage_errors_not_tracebacks(argv: list[str], capsys) -> None:
    """From /work/rev-w D13: each ended in a traceback (ValueError: Invalid IPv6 URL, OverflowError)."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err and "pw" not in err


def test_times_out_of_range_and_year_one_read_as_the_index_compares_them() -> None:
    from aitrace.sinks.search import QueryError, parse_time

    assert parse_time("0001-01-01") == "0001-01-01T00:00:00.000000Z"  # %Y wrote "1-01-01": the server refused it
    for text in ("99999999999d", "3000000d", "9999-12-31T23:59:59-01:00"):
        with pytest.raises(QueryError, match="out of range"):
            parse_time(text)


def test_a_window_no_memory_holds_and_a_stack_file_of_the_wrong_shape_are_one_line(tmp_path, capsys) -> None:
    """backtest --window 2e9 asked numpy for 37 GiB; a stack.json whose services are a list or hold text ended
    status and down in an AttributeError (/work/rev-w D13)."""
    src = tmp_path / "s.csv"
    src.write_text("step,loss\n1,0.5\n2,0.4\n")
    assert main(["backtest", str(src), "--column", "loss", "--raw", "--window", "2000000000"]) == 2
    assert "--window must be 8 to 1,000,000" in capsys.readouterr().err
    for i, services in enumerate(([], {"kafka": "x"})):
        state = tmp_path / f"state{i}"
        state.mkdir()
        (state / "stack.json").write_text(json.dumps({"services": services}))
        for command in ("status", "down"):
            assert main([command, "--state-dir", str(state)]) == 1
            assert "does not hold the stack's services" in capsys.readouterr().err
