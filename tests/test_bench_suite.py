"""The benchmark suite's plumbing (``python -m bench``): parts to figures, the JSON, the SVG, the table.

The parts that need a broker or a search server are not run here (a bench run is minutes); the
producer's library baselines are, on a few hundred calls, with the optional libraries blocked.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import bench_detect  # noqa: E402
import producer_baselines  # noqa: E402
import suite  # noqa: E402
import suite_parts  # noqa: E402
from suite import Figure, Skip  # noqa: E402

OPTIONAL = ("mlflow", "wandb", "torch.utils.tensorboard")


def _stub_parts() -> dict[str, suite.Part]:
    def fast(scale: str) -> list[suite.Result]:
        return [
            Figure("stub", "rate", 300.0, "events/s", "raw", 100.0),
            Figure("stub", "cost", 2.0, "µs/event", "raw", 1.0, higher_is_better=False),
            Figure("stub", "p99", 12.0, "ms", higher_is_better=False),
        ]

    def broken(scale: str) -> list[suite.Result]:
        raise RuntimeError("broker went away\nsecond line of detail")

    return {"fast": fast, "broken": broken}


def test_ratio_says_how_many_times_better_whichever_way_the_unit_points() -> None:
    assert Figure("p", "rate", 300.0, "events/s", "raw", 100.0).ratio == pytest.approx(3.0)
    assert Figure("p", "cost", 2.0, "µs", "raw", 1.0, higher_is_better=False).ratio == pytest.approx(0.5)
    assert Figure("p", "given", 2.0, "µs", "raw", 1.0, ratio=0.7).ratio == 0.7
    assert Figure("p", "alone", 2.0, "ms").ratio is None


def test_ratios_keep_the_digits_that_matter() -> None:
    assert [suite.times(r) for r in (2289.81, 3.271, 0.34, 0.00291)] == ["2,290x", "3.27x", "0.34x", "0.0029x"]


def test_a_run_writes_json_svg_and_table_and_a_failing_part_is_one_line(tmp_path: Path) -> None:
    lines: list[str] = []
    run = suite.run_parts(_stub_parts(), "quick", echo=lines.append)
    json_path, svg_path = suite.write(run, tmp_path)

    assert re.fullmatch(r"\d{4}-\d\d-\d\d-[A-Za-z0-9_.-]+\.json", json_path.name), json_path.name
    assert svg_path == json_path.with_suffix(".svg")
    data = json.loads(json_path.read_text())
    assert {"schema", "mode", "machine", "seconds", "figures", "skipped"} <= set(data)
    machine = data["machine"]
    for key in ("cpu_model", "cores", "ram_gib", "python", "libraries", "git", "load_average_start", "hostname"):
        assert machine[key] is not None, key
    assert machine["libraries"]["numpy"] and len(machine["git"]["commit"]) == 40
    assert [(f["name"], f["ratio"]) for f in data["figures"]] == [("rate", 3.0), ("cost", 0.5), ("p99", None)]
    assert set(data["figures"][0]) >= {"part", "value", "unit", "baseline", "baseline_value", "ratio"}
    [failed] = data["skipped"]
    assert failed["status"] == "failed" and failed["part"] == "broken"
    assert "RuntimeError: broker went away" in failed["reason"] and "second line" not in failed["reason"]
    assert any(line.startswith("failed: broken / *: RuntimeError") for line in lines)

    root = ET.fromstring(svg_path.read_text())  # well-formed
    bars = root.findall("{http://www.w3.org/2000/svg}rect")
    assert len(bars) == 2  # one per figure with a ratio
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "3.00x" in labels and "0.50x" in labels

    table = json_path.with_suffix(".md").read_text()
    assert table == suite.markdown(run)
    assert "| stub | rate | 300 events/s | raw: 100 events/s | 3.00x |  |" in table
    assert "| stub | p99 | 12 ms |  |  |  |" in table
    assert machine["cpu_model"] in table


def test_a_missing_optional_library_is_one_skipped_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in OPTIONAL:
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError, installed or not
    ours = {"log": (3.0, 30_000.0), "span": (3.0, 30_000.0), "metric": (1.0, 300_000.0)}
    results = suite_parts.library_figures(ours, 300)

    skips = [r for r in results if isinstance(r, Skip)]
    assert {s.name for s in skips} == {
        "MLflow log_metrics (file store)",
        "W&B offline run.log",
        "TensorBoard add_scalar x2",
    }
    mlflow = next(s for s in skips if s.name.startswith("MLflow"))
    line = mlflow.line()
    assert mlflow.status == "skipped" and "\n" not in line
    assert line.startswith("skipped: producer / MLflow log_metrics (file store): mlflow not installed ("), line
    figures = [r for r in results if isinstance(r, Figure)]
    baselines = {f.baseline for f in figures}
    assert "stdlib logging, JSON to a file" in baselines  # the stdlib is always there
    for f in figures:
        assert f.baseline_value and f.baseline_value > 0 and f.ratio and f.ratio > 0


def test_a_library_that_breaks_on_import_or_in_its_run_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "broken_on_import.py").write_text("raise TypeError('Descriptors cannot be created directly')\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def crashes(n: int, folder: Path) -> tuple[float, float]:
        raise OSError("offline run directory is read-only")

    baselines = (
        ("log", "broken on import", "broken_on_import", crashes, 1.0),
        ("metric", "crashes in its run", "logging", crashes, 1.0),
        ("log", "stdlib logging", "logging", producer_baselines.stdlib_logging, 1.0),
    )
    monkeypatch.setattr(producer_baselines, "BASELINES", baselines)
    results = suite_parts.library_figures({"log": (3.0, 30_000.0), "metric": (1.0, 300_000.0)}, 200)

    lines = [r.line() for r in results if isinstance(r, Skip)]
    assert lines[0].startswith("skipped: producer / broken on import: broken_on_import does not import: TypeError")
    assert lines[1].startswith("failed: producer / crashes in its run: OSError: offline run directory is read-only")
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert [f.baseline for f in results if isinstance(f, Figure)] == ["stdlib logging", "stdlib logging"]


def test_the_suite_leaves_no_scratch_folder_behind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each library's files and the services' work folder go when the suite is done with them (they were
    left in /tmp, one folder per library per run, on a disk the CI shares)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    baselines = (("log", "stdlib logging", "logging", producer_baselines.stdlib_logging, 1.0),)
    monkeypatch.setattr(producer_baselines, "BASELINES", baselines)
    assert [f.baseline for f in suite_parts.library_figures({"log": (3.0, 30_000.0)}, 200)] == ["stdlib logging"] * 2
    services = suite_parts.Services()
    assert services.workdir.parent == scratch
    services.stop()
    assert list(scratch.iterdir()) == []


def test_drift_rows_pair_each_figure_with_the_baseline_printed_after_it() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # the real row printer, so a format change shows up here
        bench_detect.row("KS exact, 500 vs 500: ks_2samp_batched", 100_000, "tests/s", 4000)
        bench_detect.row("KS exact, 500 vs 500: aitrace ks_2samp per feature", 8_000, "tests/s", 4000)
        bench_detect.row("KS exact, 500 vs 500: scipy.stats.ks_2samp per feature", 4_000, "tests/s")
    rows = suite_parts.drift_rows(out.getvalue())
    assert [(r.name, r.value, r.baseline_value, r.ratio) for r in rows] == [
        ("KS exact, 500 vs 500: ks_2samp_batched", 100_000, 4000, 25.0),
        ("KS exact, 500 vs 500: aitrace ks_2samp per feature", 8000, 4000, 2.0),
    ]
    assert rows[0].baseline == "KS exact, 500 vs 500: scipy.stats.ks_2samp per feature"
    with pytest.raises(ValueError, match="format changed"):
        suite_parts.drift_rows("no rows here\n")


def test_python_m_bench_runs_from_the_repository_root() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--parts", "nope"],
        cwd=BENCH.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "unknown parts ['nope']" in out.stderr, out.stderr


def test_a_telemetry_recording_stopped_early_keeps_readable_files(tmp_path: Path) -> None:
    """Stopped by SIGTERM (a background job ignores SIGINT), the recorder closes its gzip request log: it
    was cut off without its trailer and could not be read to its end."""
    import csv
    import gzip
    import signal
    import time

    out = tmp_path / "t.csv"
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "record_telemetry.py"), "--minutes", "2", "--rate", "20", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # (a pipe would block on the service child should the recorder die alone)
    )
    deadline = time.monotonic() + 60
    while (not out.exists() or len(out.read_text().splitlines()) < 3) and time.monotonic() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    rows = list(csv.reader(out.open()))
    with gzip.open(out.with_name("t.requests.csv.gz"), "rt") as fh:
        requests = list(csv.reader(fh))  # raised EOFError when the trailer was missing
    assert len(rows) >= 3 and requests[0] == ["time", "latency_ms", "ok"] and len(requests) > 1


def test_a_benchmarks_spool_and_broker_folders_go_when_its_process_ends(tmp_path: Path) -> None:
    """bench_producer, bench_processors and bench_torch_watch left an empty spool folder (and the first two
    their broker's) in /tmp per run."""
    code = (
        "import sys, tempfile; tempfile.tempdir = sys.argv[1]; sys.path.insert(0, sys.argv[2])\n"
        "from scratch import scratch_dir\n"
        "d = scratch_dir('aitrace-bench-spool-'); open(d + '/segment', 'w').write('x'); print(d)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(BENCH)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).parent == tmp_path and list(tmp_path.iterdir()) == []
    for name in ("bench_producer.py", "bench_processors.py", "bench_torch_watch.py"):
        assert "spool_dir=scratch_dir(" in (BENCH / name).read_text()
