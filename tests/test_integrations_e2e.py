"""Every integration end to end: the real library -> the producer -> Tansu -> `aitrace worker`
-> the search index. One worker serves them all; each integration sends as its own service
and the test waits until that service's events are searchable."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aitrace
import numpy as np
import pytest
import torch
from test_e2e_processors import Worker, _count, _wait

pytestmark = pytest.mark.timeout(600)


def _asgi(client: aitrace.Client) -> None:
    from aitrace.producers.asgi import AitraceMiddleware, annotate
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    app.add_middleware(AitraceMiddleware, client=client, model="churn", version="3")

    @app.post("/predict")
    def predict(features: dict) -> dict:
        annotate(prediction=1, confidence=0.8, features=features)
        return {"churn": True}

    assert TestClient(app).post("/predict", json={"tenure_months": 3}).status_code == 200


def _wsgi(client: aitrace.Client) -> None:
    from aitrace.producers.wsgi import AitraceWSGIMiddleware
    from flask import Flask

    app = Flask("scorer")
    app.wsgi_app = AitraceWSGIMiddleware(app.wsgi_app, client=client, model="scorer")  # type: ignore[method-assign]
    app.add_url_rule("/score", "score", lambda: {"score": 0.3}, methods=["POST"])
    assert app.test_client().post("/score", json={"x": 1}).status_code == 200


def _lightning(client: aitrace.Client) -> None:
    import lightning as L
    from aitrace.producers.lightning import AitraceLogger

    class Regressor(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(8, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    data = torch.utils.data.TensorDataset(torch.randn(32, 8), torch.randn(32, 1))
    trainer = L.Trainer(
        max_epochs=1,
        logger=AitraceLogger(client=client),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Regressor(), torch.utils.data.DataLoader(data, batch_size=8))


def _transformers(client: aitrace.Client, tmp_path: Path) -> None:
    from aitrace.producers.transformers import AitraceCallback
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    tokens = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 50, (8, 8))]
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"), num_train_epochs=1, per_device_train_batch_size=4, logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True,
    )  # fmt: skip
    Trainer(model=model, args=args, train_dataset=tokens, callbacks=[AitraceCallback(client=client)]).train()


def _keras(client: aitrace.Client) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported
    import keras
    from aitrace.producers.keras import AitraceCallback

    x = np.random.default_rng(0).normal(size=(64, 4))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, x.sum(axis=1), epochs=1, verbose=0, callbacks=[AitraceCallback(client=client, every=1)])


def _torch_watch(client: aitrace.Client) -> None:
    import aitrace.producers.torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    handle = aitrace.producers.torch.watch(model, optimizer, client=client, every=2)
    for _ in range(4):
        optimizer.zero_grad()
        model(torch.randn(16, 4)).pow(2).mean().backward()
        optimizer.step()
    handle.remove()


def _otel(client: aitrace.Client) -> None:
    from aitrace.producers.otel import AitraceSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(AitraceSpanExporter(client)))
    with provider.get_tracer("rag").start_as_current_span("answer"):
        pass
    provider.shutdown()


def _loguru_and_structlog(client: aitrace.Client) -> None:
    import structlog
    from aitrace.producers.logging_bridges import loguru_sink, structlog_processor
    from loguru import logger

    sink_id = logger.add(loguru_sink(client), level="INFO")
    logger.warning("dropped {} rows", 12)
    logger.remove(sink_id)
    structlog.wrap_logger(structlog.ReturnLogger(), processors=[structlog_processor(client)]).info("loaded")


def test_every_integration_reaches_the_index_through_a_real_worker(
    kafka: Any, search: Any, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("integ")
    worker = Worker(kafka.bootstrap, search.url, prefix, tmp_path)
    worker.start()
    try:
        _send_and_find(kafka, search, prefix, worker, tmp_path)
    finally:
        worker.kill()


def _send_and_find(kafka: Any, search: Any, prefix: str, worker: Worker, tmp_path: Path) -> None:
    runs: dict[str, Callable[[aitrace.Client], None]] = {
        "asgi": _asgi,
        "wsgi": _wsgi,
        "lightning": _lightning,
        "transformers": lambda c: _transformers(c, tmp_path),
        "keras": _keras,
        "torch-watch": _torch_watch,
        "otel": _otel,
        "log-bridges": _loguru_and_structlog,
    }
    for name, run in runs.items():
        client = aitrace.Client(
            aitrace.producers.config.Settings.from_env(
                service=f"it-{name}",
                run_id=f"run-{name}",
                kafka_bootstrap=kafka.bootstrap,
                topic_prefix=prefix,
                spool_dir=str(tmp_path / f"spool-{name}"),
            )
        )
        try:
            run(client)
            assert client.flush(timeout=30), (name, client.stats())
        finally:
            client.close(timeout=10)
    events = f"{prefix}-events-*"
    for name in runs:
        query = {"term": {"service.name": f"it-{name}"}}
        _wait(f"events of {name} in the index", lambda q=query: _count(search.url, events, q) > 0, worker)
