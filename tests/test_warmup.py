"""The worker's warm-up loads every compiled kernel that real records reach, and never stops a start."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from aitrace.processors import worker
from aitrace.processors.options import WorkerOptions

ROOT = Path(__file__).resolve().parent.parent

# In a fresh process (kernels other tests ran are not loaded yet): the Numba functions the
# warm-up called, then those that the benchmark's workloads call beyond it.
_PROBE = """
import json, sys
sys.path[:0] = [{bench!r}, {tests!r}]
from numba.core.registry import CPUDispatcher

def loaded():
    return {{f"{{m}}.{{k}}" for m, mod in list(sys.modules.items()) if m.startswith("aitrace")
             for k, v in vars(mod).items() if isinstance(v, CPUDispatcher) and v.signatures}}

from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline
from aitrace.processors.warmup import warm_up
warm_up(WorkerOptions())
warmed = loaded()
import bench_processors as B
records = B.client_mixed_records(30) + B.training_records(12) + B.mixed_records(12)
pipe, traces, series = Pipeline(WorkerOptions(index=False)), {{}}, {{}}
for i, (_, value, _, _) in enumerate(records):
    out = pipe.process_record(value, key=None, topic="t", partition=0, offset=i, traces=traces, now=0.0)
    for _, chunk in out.chunks:
        pipe.series(chunk, series)
print(json.dumps({{"warmed": sorted(warmed), "more": sorted(loaded() - warmed)}}))
"""


def test_the_warm_up_loads_every_kernel_the_workloads_reach() -> None:
    code = _PROBE.format(bench=str(ROOT / "bench"), tests=str(ROOT / "tests"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["more"] == []  # a kernel only real records reach would load inside the event loop
    # the drift windows' KS test runs _ks_batch_kernel inside _ks_sorted_reference_kernel (423643a)
    for kernel in (
        "_score_kernel",
        "_ks_sorted_reference_kernel",
        "fastcolumns._walk",
        "fastevents._walk",
        "fastblock._varints",
    ):
        assert any(name.endswith(kernel) for name in found["warmed"]), kernel


def test_a_failing_warm_up_is_logged_and_the_worker_starts_as_before(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import aitrace.processors.warmup as warmup

    def broken(options: WorkerOptions) -> float:
        raise OSError("no space left for the spool")

    monkeypatch.setattr(warmup, "warm_up", broken)
    with caplog.at_level(logging.WARNING, logger="aitrace.processors.worker"):
        worker._warm_up(WorkerOptions())  # returns: run() goes on to start the worker
    assert "warm-up failed (OSError('no space left for the spool'))" in caplog.text


def test_the_warm_up_can_be_turned_off() -> None:
    assert WorkerOptions.from_env(env={"AITRACE_WORKER_WARM_UP": "false"}).warm_up is False
    assert WorkerOptions().warm_up is True
