"""No loss against the real broker: a producer that starts before Tansu, and Tansu killed under load.

Loss is counted by event id (and by metric step, which the test makes unique), reading the
topics back from the first offset after the broker returns. Tansu keeps its log in memory: a
record it acknowledged before SIGKILL is gone after the restart. That is the broker's loss, not
the producer's; the delivery reports tell the two apart: a record acknowledged before the
restart began came from the old broker. Every other event must be read back.

Bounded by default; ``AITRACE_FULL_TESTS=1`` runs longer with several kills.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import aitrace
import pytest
from aitrace.infra.stack import TansuProcess, free_port
from test_producer_support import all_ids, all_steps, consume, decode, event_ids, metric_steps

FULL = os.environ.get("AITRACE_FULL_TESTS") == "1"


class DeliveryLog:
    """Delivery reports as (monotonic time, event ids, steps, error)."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, list[str], list[int], Any]] = []
        self._lock = threading.Lock()

    def __call__(self, topic: str, value: bytes, err: Any) -> None:
        batch = decode(value)
        with self._lock:
            self.reports.append((time.monotonic(), event_ids(batch), metric_steps(batch), err))

    def acked(self, before: float = float("inf")) -> tuple[set[str], set[int]]:
        with self._lock:
            ok = [r for r in self.reports if r[3] is None and r[0] < before]
        return {i for r in ok for i in r[1]}, {s for r in ok for s in r[2]}


def _client(bootstrap: str, prefix: str, spool: Path, listener: DeliveryLog) -> aitrace.Client:
    return aitrace.init(
        service="noloss",
        run_id=f"run-{prefix}",
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        spool_dir=str(spool),
        delivery_listener=listener,
        delivery_timeout_ms=8000,
        batch_linger_ms=5.0,
    )


def test_producer_started_before_the_broker_delivers_everything(tmp_path: Path, unique_name: Any) -> None:
    port = free_port()
    prefix = unique_name("nl-early")
    listener = DeliveryLog()
    client = _client(f"127.0.0.1:{port}", prefix, tmp_path / "spool", listener)
    n = 3000 if FULL else 600
    broker = TansuProcess(port, tmp_path / "logs")
    try:
        for step in range(n // 2):
            client.metric({"loss": 1.0 / (step + 1), "lr": 0.01}, step=step)
            if step % 50 == 0:
                client.log("info", f"step {step}", step=step)
        time.sleep(1.5)  # nobody listens: the client notices and spools
        for step in range(n // 2, n):
            client.metric({"loss": 1.0 / (step + 1), "lr": 0.01}, step=step)
        assert client.flush(timeout=2) is False  # still no broker: nothing can be acknowledged
        before = client.stats()
        assert before["spilled"] > 0 and before["sent"] == 0
        broker.start().wait_ready(60)
        assert client.flush(timeout=90), client.stats()
        stats = client.stats()
        acked_ids, acked_steps = listener.acked()
        records = consume(broker.bootstrap, prefix, lambda recs: acked_ids <= all_ids(recs), timeout=60)
        assert all_steps(records) == set(range(n)) == acked_steps
        assert acked_ids <= all_ids(records)
        assert stats["dropped"] == 0
        assert stats["drained"] > 0 and stats["sent"] >= n + n // 100
    finally:
        client.close(timeout=5)
        broker.kill()


def _steady_producer(client: aitrace.Client, stop: threading.Event, emitted: list[tuple[float, int]]) -> None:
    step = 0
    while not stop.is_set():
        for _ in range(20):
            client.metric({"loss": 1.0 / (step + 1), "grad_norm": float(step % 7)}, step=step)
            if step % 100 == 0:
                client.log("warning", f"checkpoint at {step}", step=step)
            emitted.append((time.monotonic(), step))
            step += 1
        time.sleep(0.01)  # about 2,000 metric events/s


@pytest.mark.slow
def test_broker_killed_and_restarted_under_load_loses_nothing_unacknowledged(
    fresh_kafka: TansuProcess, tmp_path: Path, unique_name: Any
) -> None:
    prefix = unique_name("nl-kill")
    listener = DeliveryLog()
    client = _client(fresh_kafka.bootstrap, prefix, tmp_path / "spool", listener)
    stop = threading.Event()
    emitted: list[tuple[float, int]] = []
    producer = threading.Thread(target=_steady_producer, args=(client, stop, emitted), daemon=True)
    kills = 3 if FULL else 1
    restarts: list[float] = []
    downtime: list[tuple[float, float]] = []
    try:
        producer.start()
        for _ in range(kills):
            time.sleep(2.0)
            killed_at = time.monotonic()
            fresh_kafka.kill()
            time.sleep(1.5)  # the producer keeps going while no broker listens
            restarts.append(time.monotonic())
            fresh_kafka.start().wait_ready(60)
            downtime.append((killed_at, time.monotonic()))
        time.sleep(2.0)
        stop.set()
        producer.join(10)
        assert client.flush(timeout=120), client.stats()
        stats = client.stats()
    finally:
        stop.set()
        client.close(timeout=5)

    steps = {s for _, s in emitted}
    during_outage = {s for t, s in emitted if any(a <= t <= b for a, b in downtime)}
    assert during_outage, "the producer emitted nothing while the broker was down"
    # Whatever the last incarnation of the broker acknowledged must be readable from it.
    acked_by_old_ids, acked_by_old_steps = listener.acked(before=restarts[-1])
    all_acked_ids, all_acked_steps = listener.acked()
    must_ids = all_acked_ids - acked_by_old_ids
    records = consume(fresh_kafka.bootstrap, prefix, lambda recs: must_ids <= all_ids(recs), timeout=60)
    read_ids, read_steps = all_ids(records), all_steps(records)

    lost_by_producer = steps - read_steps - acked_by_old_steps
    lost_by_broker = acked_by_old_steps - read_steps
    print(
        f"emitted {len(steps)} steps, {len(during_outage)} during outages; read back {len(read_steps)}; "
        f"acknowledged then lost by the restarted broker {len(lost_by_broker)}; lost by the producer "
        f"{len(lost_by_producer)}; stats {stats}"
    )
    assert all_acked_steps >= steps  # every event was acknowledged at some point
    assert not lost_by_producer
    assert must_ids <= read_ids
    assert during_outage - acked_by_old_steps <= read_steps  # events of the outage arrived afterwards
    assert stats["dropped"] == 0
