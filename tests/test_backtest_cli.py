"""`aitrace backtest FILE.csv --column NAME [--timestamp NAME] [--threshold X] [-o flagged.csv]`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aitrace.infra.cli import main


def write_csv(path: Path, n: int = 600) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(0)
    loss = 2 * np.exp(-np.arange(n) / 150) + 0.3 + 0.02 * rng.normal(size=n)
    loss[400] += 1.0
    rows = [{"step": 10 * i, "loss": f"{v:.6f}", "note": "x"} for i, v in enumerate(loss)]
    rows[450]["loss"] = ""  # a missing value counts as NaN
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "loss", "note"])
        writer.writeheader()
        writer.writerows(rows)
    return loss, [400, 450]


def test_backtest_prints_and_writes_flagged_points(tmp_path, capsys) -> None:
    src = tmp_path / "history.csv"
    _, expected_rows = write_csv(src)
    out = tmp_path / "flagged.csv"
    args = ["--column", "loss", "--timestamp", "step", "--raw", "--threshold", "0.5", "-o", str(out)]
    rc = main(["backtest", str(src), *args])
    assert rc == 0
    text = capsys.readouterr().out
    assert "600 points" in text and "2 flagged" in text
    sweep = dict(item.split(": ") for item in text.split("flagged per threshold: ")[1].splitlines()[0].split(", "))
    counts = [int(sweep[t]) for t in ("0.3", "0.5", "0.7", "0.9", "0.99")]
    assert counts == sorted(counts, reverse=True) and counts[1] == 2
    with out.open() as fh:
        flagged = list(csv.DictReader(fh))
    assert [int(r["row"]) for r in flagged] == expected_rows
    assert [float(r["timestamp"]) for r in flagged] == [4000.0, 4500.0]
    assert flagged[0]["reason"] == "spike" and float(flagged[0]["score"]) > 0.9
    assert flagged[1]["reason"] == "nan" and float(flagged[1]["score"]) == 1.0


def test_backtest_threshold_trades_recall_for_precision(tmp_path, capsys) -> None:
    src = tmp_path / "h.csv"
    write_csv(src)
    counts = []
    for threshold in ("0.05", "0.3", "0.99"):
        assert main(["backtest", str(src), "--column", "loss", "--raw", "--threshold", threshold]) == 0
        line = capsys.readouterr().out.splitlines()[0]
        counts.append(int(line.split(", ")[1].split()[0]))
    assert counts[0] > counts[1] > counts[2] >= 1


def test_backtest_with_series_kind(tmp_path, capsys) -> None:
    src = tmp_path / "h.csv"
    write_csv(src)
    out = tmp_path / "f.csv"
    assert main(["backtest", str(src), "--column", "loss", "--kind", "loss", "-o", str(out)]) == 0
    with out.open() as fh:
        reasons = [r["reason"] for r in csv.DictReader(fh)]
    assert reasons == ["spike", "diverging"]  # a NaN loss reads as a diverged run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--column", "nope"], "column 'nope' not in"),
        (["--column", "loss", "--timestamp", "when"], "column 'when' not in"),
        (["--column", "loss", "--threshold", "0"], "--threshold"),
        (["--column", "loss", "--raw", "--window", "3"], "--window"),
        (["--column", "loss", "--window", "32"], "--window applies to --raw and --kind"),
        (["--column", "loss", "--service", "latency", "--time", "step"], "--time goes with --metric"),
        (["--column", "loss", "--raw", "--time", "step"], "--time goes with --metric"),
        (["--column", "loss", "--time", "when"], "column 'when' not in"),
        (["--column", "loss", "--time", "note"], "row 0: time 'x' is neither"),
    ],
)
def test_backtest_bad_arguments_exit_2(tmp_path, capsys, args, message) -> None:
    src = tmp_path / "h.csv"
    write_csv(src)
    assert main(["backtest", str(src), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_column_named_twice_in_the_header_is_refused(tmp_path, capsys) -> None:
    """csv.DictReader keeps the last of two columns of one name: the backtest read it without a word."""
    src = tmp_path / "twice.csv"
    src.write_text("step,loss,loss\n0,1.0,9.0\n1,1.1,9.1\n")
    assert main(["backtest", str(src), "--column", "loss"]) == 2
    assert "column 'loss' appears 2 times" in capsys.readouterr().err


ISO_TIMES = "".join(f"2026-11-26T10:00:{i:02d},{1 + i % 3}\n" for i in range(3))


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        (f"t,v\n{ISO_TIMES}garbage,2\n", ["--service", "latency"], "row 3: time 'garbage' is neither"),
        (f"t,v\n{ISO_TIMES}7,2\n", ["--service", "latency"], "row 3: time 7 is a number where other rows"),
        ("t,v\n5,1\n,2\n7,1\n", ["--service", "latency"], "row 1: time '' is no number where the rows before"),
        ("t,v\n5,1\n,2\n7,1\n", ["--metric", "cpu", "--time", "t"], "row 1: time '' is no number"),
        ("t,v\n1,0\n2,1\n3,\n", ["--service", "error_rate"], "row 2: --service error_rate reads outcomes"),
        ("t,v\n1,0\n2,0.5\n", ["--service", "wrong_predictions"], "got 0.5"),
        ("t,v\n1,0\n", ["--limit", "-1"], "--limit must be >= 0"),
    ],
)
def test_values_or_times_the_rules_cannot_read_are_one_line_and_exit_2(tmp_path, capsys, text, args, message) -> None:
    """An unparsable time or a NaN outcome ended in a traceback (exit 1); a mix of numbers and
    ISO times fell back to row numbers without a word; --limit -1 printed "... 2 more" for 1 row."""
    src = tmp_path / "h.csv"
    src.write_text(text)
    assert main(["backtest", str(src), "--column", "v", "--timestamp", "t", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and len(captured.err.splitlines()) == 1, captured.err
    assert captured.out == ""


def test_backtest_missing_file_exits_2(tmp_path, capsys) -> None:
    assert main(["backtest", str(tmp_path / "missing.csv"), "--column", "x"]) == 2
    assert "missing.csv" in capsys.readouterr().err


def test_backtest_as_a_command(tmp_path) -> None:
    src = tmp_path / "h.csv"
    write_csv(src)
    proc = subprocess.run(
        [sys.executable, "-m", "aitrace.infra.cli", "backtest", str(src), "--column", "loss", "--raw"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 flagged" in proc.stdout


def test_backtest_json_prints_one_object_per_flagged_point_and_the_summary_on_stderr(tmp_path, capsys) -> None:
    src = tmp_path / "history.csv"
    write_csv(src)
    rc = main(
        ["backtest", str(src), "--column", "loss", "--timestamp", "step", "--raw", "--threshold", "0.5", "--json"]
    )
    assert rc == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [(r["row"], r["reason"]) for r in rows] == [(400, "spike"), (450, "nan")]
    assert rows[1]["value"] is None  # NaN is not JSON
    assert "2 flagged" in captured.err and "flagged" not in captured.out


@pytest.mark.parametrize(
    ("mode", "threshold"),
    [
        (["--raw"], "0.5"),
        (["--kind", "loss"], "0.5"),
        (["--kind", "generic"], "0.9"),
        (["--metric", "loss"], "0.9"),
        ([], "0.9"),
    ],
)
def test_without_a_threshold_each_rule_pages_at_its_own(tmp_path, capsys, mode: list[str], threshold: str) -> None:
    """The worker's rules (the default, or --metric) at the worker's 0.9; --kind at the kind's; --raw at 0.5."""
    src = tmp_path / "history.csv"
    write_csv(src)
    assert main(["backtest", str(src), "--column", "loss", "--timestamp", "step", *mode]) == 0
    assert f"flagged at threshold {threshold} (" in capsys.readouterr().out


def test_by_default_the_worker_s_rules_for_a_metric_named_like_the_column_decide(tmp_path, capsys) -> None:
    """Raw, the anomaly score of a real series pages on its normal bursts (8.5 % of this machine's
    telemetry at 0.9): what the worker would page on is what a backtest should show first."""
    src = tmp_path / "history.csv"
    write_csv(src)
    outs = []
    for mode in ([], ["--metric", "loss"], ["--raw"]):
        assert main(["backtest", str(src), "--column", "loss", "--timestamp", "step", "--json", *mode]) == 0
        outs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    assert outs[0] == outs[1] != outs[2] and outs[0]


def test_a_csv_saved_with_a_byte_order_mark_is_read_by_its_column_names(tmp_path, capsys) -> None:
    """Excel's "CSV UTF-8" starts with U+FEFF: the first column's name was "\\ufeffstep" and not found."""
    src = tmp_path / "excel.csv"
    src.write_bytes(b"\xef\xbb\xbfstep,loss\n" + "".join(f"{i},{1 + (i % 3) / 10}\n" for i in range(50)).encode())
    assert main(["backtest", str(src), "--column", "loss", "--timestamp", "step"]) == 0
    assert "50 points" in capsys.readouterr().out


@pytest.mark.parametrize("stamp", ["inf", "1e300"])
def test_a_time_beyond_any_date_is_refused_by_its_row(tmp_path, capsys, stamp: str) -> None:
    """Made an int64 of garbage and went on, exit 0."""
    src = tmp_path / "far.csv"
    src.write_text("t,loss\n" + "".join(f"{i if i != 7 else stamp},{1 + (i % 3) / 10}\n" for i in range(20)))
    assert main(["backtest", str(src), "--column", "loss", "--metric", "loss", "--time", "t", "--time-unit", "s"]) == 2
    assert f"row 7: time {float(stamp)!r} s is beyond any date" in capsys.readouterr().err
    if stamp == "inf":  # as a step: the detectors refused it with a traceback
        assert main(["backtest", str(src), "--column", "loss", "--timestamp", "t"]) == 2
        assert "row 7: timestamp inf is no finite number" in capsys.readouterr().err


def test_iso_times_without_a_zone_are_utc_whatever_the_operators_zone(tmp_path, monkeypatch) -> None:
    """They were read in the local zone (TZ), unlike search, report and compare."""
    import time as time_module

    from aitrace.detect.backtest import _iso_us

    monkeypatch.setenv("TZ", "America/New_York")
    time_module.tzset()
    try:
        assert _iso_us(0, "2026-11-26T10:00:00") == _iso_us(0, "2026-11-26T10:00:00+00:00")
    finally:
        monkeypatch.delenv("TZ")
        time_module.tzset()


def test_terminal_controls_in_what_a_command_prints_reach_the_terminal_as_escapes(tmp_path, capsys) -> None:
    """A CSV header (or a service name, a log message, an alert title read back from the index) could set the
    terminal's title, clear the screen or reorder text: every command's output now shows such characters as
    JSON escapes, its own colour codes kept."""
    title = "\x1b]0;pwned\x07"
    src = tmp_path / "hostile.csv"
    src.write_text(f"step,{title}loss\u202e\x9b2J\n" + "".join(f"{i},{1 + (i % 3) / 10}\n" for i in range(5)))
    assert main(["backtest", str(src), "--column", "nope"]) == 2
    err = capsys.readouterr().err
    assert "\\u001b]0;pwned\\u0007loss\\u202e\\u009b2J" in err
    assert not {"\x1b", "\x07", "\u202e", "\x9b"} & set(err)


def test_inert_keeps_json_valid_and_equal_and_the_commands_own_colours() -> None:
    from aitrace.sinks.terminal import CLEAR_LINE, RED, RESET, inert

    raw = json.dumps({"title": "a\x9bb\u2066c\r\n"}, ensure_ascii=False)
    assert json.loads(inert(raw)) == json.loads(raw) and "\x9b" not in inert(raw)
    assert inert(f"{CLEAR_LINE}{RED}error{RESET}\tx\n") == f"{CLEAR_LINE}{RED}error{RESET}\tx\n"
    assert inert("\rfake") == "\\u000dfake" and inert("\x1b[8mhidden") == "\\u001b[8mhidden"
    # a Windows line's end and Hebrew's right-to-left mark stay as they are (a review, /work/rev-y D6)
    assert inert("line\r\nשלום\u200f!") == "line\r\nשלום\u200f!"


def test_whole_number_timestamps_are_kept_whole(tmp_path, capsys) -> None:
    """Parsed as floats, a time in nanoseconds lost its last digits in the table and the -o file, and steps printed
    as 100.0 (/work/rev-w D19)."""
    src, out = tmp_path / "ns.csv", tmp_path / "flagged.csv"
    t0 = 1_733_580_000_123_456_789
    rows = "".join(f"{t0 + i * 1_000_000_000},{1.0 if i != 300 else 50.0}\n" for i in range(400))
    src.write_text("t,latency\n" + rows)
    args = ["--column", "latency", "--timestamp", "t", "--raw", "--threshold", "0.5", "-o", str(out)]
    assert main(["backtest", str(src), *args]) == 0
    with out.open() as fh:
        flagged = list(csv.DictReader(fh))
    assert str(t0 + 300 * 1_000_000_000) in [r["timestamp"] for r in flagged]


def test_rows_out_of_time_order_are_said_to_be(tmp_path, capsys) -> None:
    """Scored in file order without a word: the same data flagged 2 points sorted and 10 shuffled (/work/rev-w
    D17). File order is what the worker does with points that arrive out of order; now it says so."""
    src = tmp_path / "shuffled.csv"
    src.write_text("step,loss\n" + "".join(f"{i},{1.0 + (i % 3) / 10}\n" for i in (0, 2, 1, 3, 5, 4, 6)))
    assert main(["backtest", str(src), "--column", "loss", "--timestamp", "step"]) == 0
    assert "2 row(s) earlier than the row before: scored in file order" in capsys.readouterr().err
