"""Soak: a fixed event rate through producer -> Tansu -> one worker -> osmem-server.

Checks that the worker's and the producer's memory (RSS) stay flat once warm (growth over the
second half against a generous bound), that the backlog (events the broker acknowledged that
are not searchable yet) stays bounded, and prints produce-to-searchable latency p50 / p99 /
p99.9 (``pytest -s``, ``-rA``; also written to ``$TMPDIR/aitrace-soak-report.json``).

Bounded by default (60 s at 40 events/s); ``AITRACE_FULL_TESTS=1`` soaks 5 minutes.
Latency is measured from the delivery report (the broker's acknowledgement) to the first poll
that finds the document, polls every 0.25 s: figures carry that much resolution.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_faults import SteadyProducer, Worker, indexed_ids, wait_indexed

FULL = os.environ.get("AITRACE_FULL_TESTS") == "1"
DURATION_S = 300.0 if FULL else 60.0
RATE = 40.0
POLL_S = 0.25
# second-half RSS growth allowed: generous (allocator noise, caches settling), far below a leak at this rate
RSS_GROWTH_MB = 40.0
MAX_BACKLOG_S = 20.0  # the backlog, in seconds of traffic, once warm


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(name: str, *args: str) -> Worker:
        made.append(Worker(name, *args[:3], tmp_path, *args[3:]))
        return made[-1]

    yield make
    for w in made:
        w.kill()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class Searchable:
    """Polls the index for acknowledged ids not seen yet; first-seen time per id."""

    def __init__(self, es_url: str, prefix: str, producer: SteadyProducer) -> None:
        self.es_url, self.prefix, self.producer = es_url, prefix, producer
        self.seen: dict[str, float] = {}
        self.backlog: list[tuple[float, int]] = []  # (monotonic, acked but not searchable)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="searchable-poller")

    def _run(self) -> None:
        while not self._stop.is_set():
            acked = self.producer.ack_times()
            pending = [i for i in acked if i not in self.seen]
            if pending:
                try:
                    found = indexed_ids(self.es_url, self.prefix, pending[:3000])
                except OSError:
                    found = {}
                now = time.monotonic()
                for i in found:
                    self.seen.setdefault(i, now)
                self.backlog.append((now, len(pending) - len(found)))
            self._stop.wait(POLL_S)

    def start(self) -> Searchable:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.mark.slow
@pytest.mark.timeout(DURATION_S + 600)  # the soak itself, then the wait for the index to catch up
def test_soak_memory_flat_backlog_bounded_latency_reported(
    kafka: Any,
    fresh_search: Any,
    unique_name: Callable[[str], str],
    workers: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    prefix = unique_name("soak")
    worker = workers("soak", kafka.bootstrap, fresh_search.url, prefix).start()
    # warm-up: the group join and the first documents, before the clock starts
    warm = SteadyProducer(kafka.bootstrap, f"{prefix}", tmp_path / "spool-warm", rate=RATE).start()
    time.sleep(2.0)
    warm.stop()
    first = warm.acked_ids()
    warm.close()
    found = wait_indexed(fresh_search.url, prefix, first, lambda: [worker], 240)
    assert first <= set(found), f"worker never caught up:\n{worker.tail()}"

    producer = SteadyProducer(kafka.bootstrap, prefix, tmp_path / "spool", rate=RATE).start()
    poller = Searchable(fresh_search.url, prefix, producer).start()
    me = os.getpid()
    samples: list[tuple[float, float, float]] = []  # (t, worker MB, producer MB)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < DURATION_S:
            assert worker.running(), worker.tail()
            assert worker.pid is not None
            samples.append((time.monotonic() - t0, rss_mb(worker.pid), rss_mb(me)))
            time.sleep(2.0)
        producer.stop()
        acked = producer.ack_times()
        deadline = time.monotonic() + 60
        while set(acked) - set(poller.seen) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        poller.stop()
        producer.close()
        worker.stop(20)

    lat = np.array([poller.seen[i] - t for i, t in acked.items() if i in poller.seen]) * 1000.0
    lost = len(set(acked) - set(poller.seen))
    half = [s for s in samples if s[0] >= DURATION_S / 2]
    w_growth = half[-1][1] - half[0][1]
    p_growth = half[-1][2] - half[0][2]
    warm_backlog = [n for t, n in poller.backlog if t - t0 >= DURATION_S / 4 and t - t0 <= DURATION_S]
    report = {
        "duration_s": DURATION_S,
        "rate": RATE,
        "sent": producer.sent,
        "acked": len(acked),
        "searchable": len(lat),
        "lost": lost,
        "latency_ms": {
            "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)),
            "p999": float(np.percentile(lat, 99.9)),
            "max": float(lat.max()),
        },
        "worker_rss_mb": {"start": samples[0][1], "mid": half[0][1], "end": half[-1][1], "growth_2nd_half": w_growth},
        "producer_rss_mb": {"start": samples[0][2], "mid": half[0][2], "end": half[-1][2], "growth_2nd_half": p_growth},
        "backlog_max_events_after_warm": max(warm_backlog, default=0),
    }
    out = Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "aitrace-soak-report.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"[soak] {json.dumps(report)} (also in {out})")
    assert lost == 0
    assert w_growth < RSS_GROWTH_MB, report
    assert p_growth < RSS_GROWTH_MB, report
    assert report["backlog_max_events_after_warm"] < MAX_BACKLOG_S * RATE, report
