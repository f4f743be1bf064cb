"""Load the worker's compiled kernels before it reads its first record.

A Numba kernel loads from its cache (or compiles, after an install or an upgrade) on its first
call. In a worker that first call comes inside the event loop, on the first batch that reaches
it: the helper who profiled the bench's worker saw the loop stop for 0.5-1.1 s there with a warm
cache and 3.4-5.7 s after the sources changed, long enough to stall commits and heartbeats (the
consumer's session timeout is 10 s here). :func:`warm_up` takes that cost at start instead, by
running a private :class:`~aitrace.processors.pipeline.Pipeline` over a small batch of every kind
the client sends (a training run's metric blocks with a validation split, a model's inference
block with features, logs, spans and ground truth), encoded by the client's own exporter, so
the decoders and the detectors run the code paths real records take. Its state and outputs are
dropped; nothing reaches Kafka or the index.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter, deque
from dataclasses import replace
from typing import Any

from aitrace.processors.options import WorkerOptions
from aitrace.processors.pipeline import Pipeline
from aitrace.producers import events as ev
from aitrace.producers import tracecontext as tc
from aitrace.producers.client import default_processors
from aitrace.producers.config import Settings
from aitrace.producers.exporter import Exporter
from aitrace.producers.transport import MemoryTransport

log = logging.getLogger(__name__)

STEPS = 320  # training steps: past the run checks' first windows
REQUESTS = 480  # inference records of one model: past two drift windows of the default 200
_FLUSH_S = 60.0  # the in-memory export of the warm-up batches: seconds, even on a loaded box


def warm_up(options: WorkerOptions) -> float:
    """Run the records of :func:`records` through a private pipeline; the seconds it took."""
    t0 = time.perf_counter()
    pipe = Pipeline(replace(options, index=False), live_rules=0)
    traces: dict[str, Any] = {}
    series: dict[str, Any] = {}
    for offset, value in enumerate(records() + records(per_event=True)):
        out = pipe.process_record(value, key=None, topic="warm-up", partition=0, offset=offset, traces=traces, now=0.0)
        for _key, chunk in out.chunks:
            pipe.series(chunk, series)
    return time.perf_counter() - t0


def records(per_event: bool = False) -> list[bytes]:
    """The warm-up batch as the client's exporter encodes it: with the default processor chain
    (columnar blocks), or ``per_event`` with a processor that reads single events only added to
    it, so every event travels alone, as older clients send them."""
    with tempfile.TemporaryDirectory(None, "aitrace-warm-up-") as spool:  # (suffix, prefix)
        settings = Settings(service="warm-up", spool_dir=spool)
        stats: Counter[str] = Counter()
        queue: deque[ev.Queued] = deque(_queued())
        envelope: dict[str, Any] = {"service": "warm-up", "service_version": None, "environment": "warm-up",
                                    "host": "warm-up", "pid": 0, "run_id": "warm-up", "sampled": True,
                                    "labels": {}}  # fmt: skip
        transport = MemoryTransport(stats)
        chain = default_processors(settings)[0] + ([_single_events] if per_event else [])
        exporter = Exporter(settings, queue, envelope, chain, "warm-up", stats, transport)
        exporter.start()
        exporter.force_flush(_FLUSH_S)
        exporter.stop(5.0)
    return [r.value for r in transport.records]


def _single_events(item: Any) -> Any:
    """A processor without ``accepts_<kind>_blocks``: the exporter hands it one event at a time."""
    return item


def _queued() -> list[ev.Queued]:
    """Queue items of each kind, as the client's methods build them."""
    t0 = time.time_ns() // 1000
    run = tc.new_root()
    items: list[ev.Queued] = []
    for step in range(1, STEPS + 1):
        values = {"loss": 2.0 / step**0.5, "grad_norm": 1.0 + (step % 7) / 10, "lr": 1e-3, "accuracy": 0.5}
        items.append((ev.METRIC, t0 + step * 1000, run, (values, step, step // 40, None), False))
        if step % 20 == 0:  # an evaluation: the over-fitting check's path
            val = ({"loss": 2.5 / step**0.5}, step, step // 40, "val")
            items.append((ev.METRIC, t0 + step * 1000, run, val, False))
    request, labels = tc.new_root(), tc.new_root()  # labels arrive later, on a trace of their own
    for i in range(REQUESTS):
        fields = {"request_id": f"r{i}", "model_name": "warm-up", "model_version": "1", "latency_ms": 5.0 + i % 9,
                  "status": "ok", "features": {"x": float(i % 13), "y": float(i % 5) / 5}, "prediction": i % 2,
                  "confidence": 0.5 + (i % 10) / 20, "error": None, "inputs_summary": None,
                  "feature_version": None}  # fmt: skip
        items.append((ev.INFERENCE, t0 + i * 1000, request, fields, False))
        if i % 4 == 0:
            truth = {"request_id": f"r{i}", "model_name": "warm-up", "label": i % 2}
            items.append((ev.GROUND_TRUTH, t0 + i * 1000 + 500, labels, truth, False))
    log_fields: dict[str, Any] = {"level": "info", "message": "served", "logger": None, "attributes": {}, "exc": None}
    span = {"name": "request", "kind": "server", "start_time": t0, "duration_us": 900, "status": "ok",
            "error_type": None, "error_message": None, "attributes": {}}  # fmt: skip
    items += [(ev.LOG, t0, request, log_fields, False), (ev.SPAN, t0 + 900, request, span, False)]
    return items
