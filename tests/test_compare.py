"""`aitrace compare`: two training runs side by side, read from a real osmem-server.

The runs are tests/test_report.py's (indexed the way the worker does): run-diverge explodes from
step 25 and ends in NaN (FAILED, one alert); run-healthy falls smoothly (FINISHED, no alert);
their configs differ in diverge_at, seed and a key only run-healthy has.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from aitrace.infra import compare
from aitrace.infra.stack import OsmemProcess, free_port
from test_report import index_everything

RUNS = ["run-diverge", "run-healthy"]


@pytest.fixture
def indexed(search: OsmemProcess, unique_name: Callable[[str], str]) -> dict[str, Any]:
    return index_everything(search, unique_name("cmp"))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    compare.add_arguments("compare", parser)
    return parser.parse_args(list(argv))


def _source(indexed: dict[str, Any]) -> list[str]:
    return ["--es-url", indexed["url"], "--index-prefix", indexed["prefix"]]


def _run(indexed: dict[str, Any], *argv: str) -> int:
    return compare.run("compare", _args(*argv, *_source(indexed)))


def test_json_has_each_runs_metrics_status_alerts_and_the_config_that_differs(
    indexed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(indexed, *RUNS, "--json") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one document
    doc = json.loads(out)
    diverge, healthy = doc["runs"]
    assert (diverge["run"], diverge["status"], diverge["alerts"]) == ("run-diverge", "failed", 1)
    assert (healthy["run"], healthy["status"], healthy["alerts"]) == ("run-healthy", "finished", 0)
    # the metrics as the report orders them, validation ones after; run-diverge has no train accuracy
    assert list(diverge["metrics"]) == ["loss", "grad_norm", "lr", "val accuracy"]
    assert list(healthy["metrics"]) == ["loss", "grad_norm", "lr", "accuracy", "val accuracy"]
    assert diverge["metrics"]["loss"] == {
        "first": {"step": 0, "value": 1.0},
        "last": {"step": 39, "value": "nan"},  # it ended in NaN: said so, not skipped
        "best": {"step": 24, "value": pytest.approx(1 / 25)},  # the lowest finite loss, before the explosion
        "points": 40,
    }
    assert healthy["metrics"]["loss"]["best"] == {"step": 39, "value": pytest.approx(1 / 40)}
    assert diverge["metrics"]["grad_norm"]["last"]["value"] == pytest.approx(0.5 + 1e17)
    assert diverge["metrics"]["grad_norm"]["best"] is None  # no better direction for a norm or a schedule
    assert diverge["metrics"]["lr"]["last"] == {"step": 39, "value": 5.0}
    # rolled up: the highest is the last window's max, the last its last value (not the window means, 0.9)
    assert healthy["metrics"]["accuracy"]["best"] == {"step": 39, "value": pytest.approx(1.0)}
    assert healthy["metrics"]["accuracy"]["last"] == {"step": 39, "value": pytest.approx(0.95)}
    assert doc["config"] == {
        "diverge_at": {"run-diverge": 25, "run-healthy": None},
        "optim.momentum": {"run-healthy": 0.9},  # run-diverge has no such key
        "seed": {"run-diverge": 1, "run-healthy": 2},
    }


def test_table_puts_the_runs_side_by_side(indexed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(indexed, *RUNS) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == RUNS
    assert lines[1].split() == ["status", "failed", "finished"]
    assert lines[2].split() == ["alerts", "1", "0"]
    loss = lines.index(next(line for line in lines if line.startswith("loss ")))
    assert " ".join(lines[loss + 1].split()) == "last nan (step 39) 0.025 (step 39)"
    assert " ".join(lines[loss + 2].split()) == "best 0.04 (step 24) 0.025 (step 39)"
    grad = lines.index(next(line for line in lines if line.startswith("grad_norm ")))
    assert lines[grad + 2].split() == ["best", "-", "-"]
    assert lines[-4:] == [
        "config: 3 keys differ",
        "diverge_at             25               null",
        "optim.momentum         -                0.9",
        "seed                   1                2",
    ]
    column = lines[0].index("run-healthy")  # each run's cells start under its name
    assert [lines[i][column:] for i in (1, loss + 1, grad + 2)] == ["finished", "0.025 (step 39)", "-"]


def test_an_unknown_run_is_one_line_and_exit_status_1(indexed: dict[str, Any]) -> None:
    """Through the real entry point: no traceback, nothing on stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "aitrace.infra.cli", "compare", "run-diverge", "run-typo", *_source(indexed)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    where = f"{indexed['prefix']}-events-*"
    assert done.stderr == f"aitrace compare: no events for run 'run-typo' under {where} (is the id right?)\n"


def test_one_differing_key_is_said_in_the_singular() -> None:
    runs = [compare.RunSummary("a", "finished", 0), compare.RunSummary("b", "finished", 0)]
    text = compare.to_text(compare.Comparison(runs, [("seed", ["1", "2"])]))
    assert "config: 1 key differs" in text and "keys" not in text


def test_an_unreachable_search_server_is_one_line_and_exit_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert compare.run("compare", _args(*RUNS, "--es-url", url)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"aitrace compare: cannot read the search server at {url}: ")
    assert captured.err.count("\n") == 1


def test_fewer_than_two_runs_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert compare.run("compare", _args("run-a", "run-a")) == 2  # the same run twice is one run
    assert "two or more different runs" in capsys.readouterr().err


def _window(
    run: str, start: int, count: int, mean: float | None, low: float | None, last: float | None, nan: int = 0,
    first: float | None = None,
):  # fmt: skip
    """One rolled-up window of run's train loss, as the worker indexes it (sinks.metric_documents)."""
    from aitrace.sinks.metric_documents import rollup_action

    ctx = {"trace_id": f"t-{run}", "span_id": "s", "run_id": run, "service": "trainer", "time": 0}
    action = rollup_action(
        ctx, name="loss", split="train", window_start_us=start * 1000, window_us=10_000_000, count=count,
        minimum=low, maximum=None if mean is None else mean * 2, mean=mean, last=last,
        first_step=start, last_step=start + 99, nonfinite=nan, first=first,
    )  # fmt: skip
    return action["_source"]


def test_a_rolled_up_run_starts_at_its_first_windows_first_value() -> None:
    """A window's point is its mean at its last step: a run of 8 steps in one window began "0.1037 at step 100"
    where its loss was 2.0 at step 0 (/work/rev-ab). A window indexed before it kept its first value has none."""
    docs = [_window("a", 100, 100, 0.04, 0.006, 0.007, first=0.05), _window("a", 0, 100, 0.5, 0.2, 0.25, first=2.0)]
    docs += [_window("b", 0, 100, 0.5, 0.2, 0.25)]
    firsts = compare.rollup_firsts(docs)
    assert firsts[("loss", "a", "train")] == compare.Point(0, 2.0) and ("loss", "b", "train") not in firsts


def test_a_rolled_up_run_shows_its_last_and_best_values_and_its_nan_windows() -> None:
    """The worker rolls fast series up by default (a document per window: mean, min, max, last): compare printed
    the window mean as first, last and best (2.0 at step 1, 0.0067 at the end: 0.042 three times), and a run
    whose windows were all NaN had no points at all ('-'; the report: 'no data'). /work/rev-w D2, D3."""
    from aitrace.infra.report_training import training_series

    docs = [_window("a", 0, 100, 0.5, 0.2, 0.25), _window("a", 100, 100, 0.042, 0.0067, 0.0067)]
    docs += [_window("b", 0, 0, None, None, None, nan=100), _window("b", 100, 0, None, None, None, nan=100)]
    series = training_series(docs)["loss"]
    run_a = compare.summarize("loss", series[("a", "train")])
    assert run_a is not None and run_a.best is not None
    lasts = compare.rollup_lasts(docs)
    assert (run_a.best.value, lasts[("loss", "a", "train")].value) == (0.0067, 0.0067)
    run_b = compare.summarize("loss", series[("b", "train")])
    assert run_b is not None and (run_b.first.value, run_b.last.value, run_b.best) == ("nan/inf", "nan/inf", None)


def test_a_huge_config_value_does_not_pad_the_table() -> None:
    """Every column was padded to its widest cell: one 100 KB value made a 19-line table 1.6 MB (/work/rev-w D21)."""
    runs = [compare.RunSummary("a", "finished", 0), compare.RunSummary("b", "finished", 0)]
    text = compare.to_text(compare.Comparison(runs, [("prompt", ["x" * 100_000, "y"])]))
    assert max(map(len, text.splitlines())) < 3 * compare.CELL and "xxx…xxx" in text
    paths = [f"/mnt/shared/experiments/team-vision/resnet50/2026-12-01/sweep-17/{r}/checkpoints/x.ckpt" for r in "ab"]
    text = compare.to_text(compare.Comparison(runs, [("checkpoint", paths)]))  # told apart by their ends
    assert "a/checkpoints/x.ckpt" in text and "b/checkpoints/x.ckpt" in text


def test_an_alert_on_a_metric_the_report_does_not_draw_marks_no_chart() -> None:
    """A bleu_loss spike was marked on every chart of its run, a smooth loss's too (/work/rev-w D5)."""
    from aitrace.infra.report_training import _marks

    def alert(series: str, metric: str | None = None) -> dict[str, Any]:
        details = {"metric": metric} if metric else {}
        return {"aitrace": {"run_id": "r", "alert": {"step": 5, "series": series, "details": details}}}

    charts = ("loss", "accuracy", "grad_norm", "lr")
    assert [_marks(alert("run/r/train/bleu_loss", "bleu_loss"), {"r"}, c) for c in charts] == [False] * 4
    assert [_marks(alert("run/r/train/bleu_loss"), {"r"}, c) for c in charts] == [False] * 4
    assert [_marks(alert("run/r/train/loss", "loss"), {"r"}, c) for c in charts] == [True, False, False, False]
    assert [_marks(alert("run/r/checks"), {"r"}, c) for c in charts] == [True] * 4  # the run's own: every chart
    # a loop's own names for its splits' metrics (a review of the fix above, /work/rev-y D8): their chart
    assert [_marks(alert("run/r/val/val_loss", "val_loss"), {"r"}, c) for c in charts] == [True, False, False, False]
    assert [_marks(alert("run/r/val/val_accuracy"), {"r"}, c) for c in charts] == [False, True, False, False]
