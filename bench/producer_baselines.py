"""What a training job or a service uses instead of aitrace, timed the way bench_producer.py times the client.

Each function sends ``n`` of the same calls as ``bench_producer.caller`` does (a training step of
two scalars, a log line with one field, an empty span) and returns (caller CPU µs per call, calls
per second until everything is written or exported). Each library is imported inside its function:
one that is not installed is a ``Skip`` line in the suite (see :data:`BASELINES`), not an error.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Measure = tuple[float, float]


def _timed(loop: Callable[[], object], finish: Callable[[], object], n: int) -> Measure:
    start = time.perf_counter()
    cpu = time.thread_time()
    loop()
    cpu_s = time.thread_time() - cpu
    finish()
    return cpu_s / n * 1e6, n / (time.perf_counter() - start)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {"time": record.created, "level": record.levelname, "logger": record.name, "message": record.getMessage(),
             "batch": getattr(record, "batch", None)}
        )  # fmt: skip


def stdlib_logging(n: int, folder: Path) -> Measure:
    """``logger.info`` through a JSON formatter into a file (what many services do today)."""
    logger = logging.getLogger(f"bench-suite-{os.getpid()}-{time.monotonic_ns()}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(folder / "stdlib.log")
    handler.setFormatter(_JsonFormatter())
    logger.addHandler(handler)
    info = logger.info

    def loop() -> None:
        for i in range(n):
            info("batch done", extra={"batch": i})

    try:
        return _timed(loop, handler.flush, n)
    finally:
        logger.removeHandler(handler)
        handler.close()


def structlog_json(n: int, folder: Path) -> Measure:
    """structlog's JSON renderer with a level and a timestamp, into a file."""
    import structlog

    with open(folder / "structlog.log", "w") as fh:
        log = structlog.wrap_logger(
            structlog.WriteLogger(fh),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(),
                structlog.processors.JSONRenderer(),
            ],
        )

        def loop() -> None:
            for i in range(n):
                log.info("batch done", batch=i)

        return _timed(loop, fh.flush, n)


def otel_spans(n: int, folder: Path) -> Measure:
    """OpenTelemetry SDK spans through a BatchSpanProcessor into an exporter that drops them."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=n + 1000))
    tracer = provider.get_tracer("bench")

    def loop() -> None:
        for _ in range(n):
            with tracer.start_as_current_span("predict", attributes={"route": "/v1/predict"}):
                pass

    try:
        return _timed(loop, lambda: provider.force_flush(300_000), n)
    finally:
        provider.shutdown()


def tensorboard_scalars(n: int, folder: Path) -> Measure:
    """``SummaryWriter.add_scalar`` once per scalar of the step."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder / "tb"))

    def loop() -> None:
        for i in range(n):
            writer.add_scalar("loss", 0.5, i)
            writer.add_scalar("grad_norm", 1.5, i)

    try:
        return _timed(loop, writer.flush, n)
    finally:
        writer.close()


def mlflow_metrics(n: int, folder: Path) -> Measure:
    """``mlflow.log_metrics`` per step into a local file store."""
    import mlflow

    mlflow.set_tracking_uri((folder / "mlruns").as_uri())
    with mlflow.start_run():
        return _timed(
            lambda: [mlflow.log_metrics({"loss": 0.5, "grad_norm": 1.5}, step=i) for i in range(n)], lambda: None, n
        )


def wandb_offline(n: int, folder: Path) -> Measure:
    """``run.log`` per step in W&B's offline mode (written locally; its sync process runs beside it)."""
    import wandb

    run = wandb.init(mode="offline", dir=str(folder), project="bench")

    def loop() -> None:
        for i in range(n):
            run.log({"loss": 0.5, "grad_norm": 1.5}, step=i)

    return _timed(loop, run.finish, n)


# (aitrace kind it stands beside, label, module that must import, function, share of n it runs)
BASELINES: tuple[tuple[str, str, str, Callable[[int, Path], Measure], float], ...] = (
    ("log", "stdlib logging, JSON to a file", "logging", stdlib_logging, 1.0),
    ("log", "structlog, JSON to a file", "structlog", structlog_json, 1.0),
    ("span", "OpenTelemetry SDK span, no-op exporter", "opentelemetry.sdk.trace", otel_spans, 1.0),
    ("metric", "TensorBoard add_scalar x2", "torch.utils.tensorboard", tensorboard_scalars, 1.0),
    ("metric", "MLflow log_metrics (file store)", "mlflow", mlflow_metrics, 0.05),  # ~0.4 ms a call
    ("metric", "W&B offline run.log", "wandb", wandb_offline, 0.25),
)
