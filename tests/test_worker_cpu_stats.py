"""The worker's stats line ends with its CPU time (``cpu_s``), and the processor bench reads its cost
from it: CPU seconds over the same steady-state window as its wall-time rate."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from aitrace.processors.app import create_app
from aitrace.processors.options import WorkerOptions
from aitrace.producers.config import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_processors as bp


def _cpu_s(line: str) -> float:
    return float(line.rsplit(" cpu_s=", 1)[1])


def test_the_stats_line_ends_with_the_process_cpu_time(tmp_path: Path) -> None:
    app = create_app(Settings.from_env(kafka_bootstrap="127.0.0.1:9"), WorkerOptions(data_dir=str(tmp_path)))
    before = _cpu_s(app.aitrace.stats_line())  # type: ignore[attr-defined]
    spin = time.process_time() + 0.05
    while time.process_time() < spin:
        pass
    after = app.aitrace.stats_line()  # type: ignore[attr-defined]
    assert bp._STATS.search(f"aitrace stats {after}")  # as the app logs it: the bench still parses it
    # both printed to 3 decimals: their difference may read 0.04999... (CI: 114.045 - 113.995)
    assert after.endswith(f" cpu_s={_cpu_s(after):.3f}") and _cpu_s(after) - before >= 0.05 - 0.0011


def _line(t: float, records: int, series: int, cpu: float | None) -> str:
    tail = "" if cpu is None else f" cpu_s={cpu:.3f}"
    return f"[INFO] aitrace stats t={t} records={records} events={records * 10} chunks=4 series={series}{tail}"


def test_the_bench_reads_worker_cpu_over_its_steady_state_window() -> None:
    log = "\n".join([_line(1.0, 5, 0, 2.0), _line(1.1, 20, 1, 2.5), _line(1.2, 60, 2, 3.0), _line(1.3, 100, 4, 4.1)])
    # the window starts at the first line at or past 10 % of the 100 records (20), ends when all is done;
    # its 1.6 CPU-s went on the last 80 records, so all 100 cost 2.0
    assert abs(bp.worker_cpu(log, 100, 4) - 2.0) < 1e-9  # type: ignore[operator]
    assert bp.worker_cpu(log, 100, 5) is None  # never done
    old = "\n".join(_line(t, r, s, None) for t, r, s in [(1.0, 20, 0), (1.3, 100, 4)])
    assert bp.worker_cpu(old, 100, 4) is None  # a worker from before cpu_s: no figure, no error
