"""``client.run(...)`` and ``client.checkpoint(...)`` against a real Tansu: lifecycle events, failure, hashes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aitrace
import pytest
from test_producer_support import all_ids, consume


def _events(client: aitrace.Client, n: int) -> list[dict[str, Any]]:
    records = consume(
        client.settings.kafka.kafka_bootstrap, client.settings.kafka.topic_prefix, lambda r: len(all_ids(r)) >= n, 30.0
    )
    return [e for _, batch in records for e in batch["events"]]


def test_run_marks_start_and_finish(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(run_id="run-ok")
    with client.run("baseline", config={"lr": 0.1, "optim": {"name": "adam"}}, seed=3) as run:
        assert run is client
    assert client.flush(timeout=30)
    runs = [e["payload"][1] for e in _events(client, 2) if e["payload"][0] == "aitrace.RunLifecycle"]
    assert [r["status"] for r in runs] == ["STARTED", "FINISHED"]
    assert runs[0]["config"]["optim.name"] == "adam" and runs[0]["config"]["lr"] == "0.1"
    assert runs[0]["seed"] == 3 and runs[0]["message"] == "baseline"


def test_an_exception_inside_a_run_is_recorded_with_its_traceback_and_reraised(
    make_client: Callable[..., aitrace.Client],
) -> None:
    client = make_client(run_id="run-bad")
    with pytest.raises(ZeroDivisionError), client.run("crashy"):
        _ = 1 / 0
    with pytest.raises(KeyboardInterrupt), client.run():
        raise KeyboardInterrupt
    assert client.flush(timeout=30)
    events = _events(client, 6)
    runs = [e["payload"][1] for e in events if e["payload"][0] == "aitrace.RunLifecycle"]
    assert [r["status"] for r in runs] == ["STARTED", "FAILED", "STARTED", "KILLED"]
    assert runs[1]["message"].startswith("ZeroDivisionError")
    logs = [e["payload"][1] for e in events if e["payload"][0] == "aitrace.LogRecord"]
    failed = next(r for r in logs if r["error_type"] == "ZeroDivisionError")
    assert failed["level"] == "error" and "1 / 0" in failed["stack_trace"] and "Traceback" in failed["stack_trace"]


def test_checkpoint_records_path_size_sha256_and_metrics(
    make_client: Callable[..., aitrace.Client], tmp_path: Path
) -> None:
    client = make_client(run_id="run-ckpt")
    path = tmp_path / "model.pt"
    data = bytes(range(256)) * 20_000  # 5 MB: several read chunks
    path.write_bytes(data)
    info = client.checkpoint(path, step=120, metrics={"val_loss": 0.25})
    assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["size_bytes"] == len(data)
    with pytest.raises(FileNotFoundError):
        client.checkpoint(tmp_path / "missing.pt", step=1)
    assert client.flush(timeout=30)
    (event,) = _events(client, 1)
    record = event["payload"][1]
    assert record["logger"] == "aitrace.checkpoint" and record["level"] == "info"
    attrs = record["attributes"]
    assert attrs["sha256"] == info["sha256"]
    assert int(attrs["size_bytes"]) == len(data) and int(attrs["step"]) == 120
    assert float(attrs["metrics.val_loss"]) == 0.25 and attrs["path"] == str(path.resolve())
