"""Demo workload: a real PyTorch training run that logs through the producer API.

A small MLP learns scikit-learn's ``load_digits`` (1,797 8x8 images shipped inside the
package: nothing is downloaded). Every step logs loss, gradient norm (from the real backward
pass), learning rate and batch accuracy; every ``eval_every`` steps a validation pass logs
``split="val"``. With ``diverge_at`` set, the learning rate jumps there by ``diverge_factor``:
the gradients explode and the loss diverges, which is what the detectors must find.

The logging lives in :class:`TrainingTelemetry`, which only needs the model, the optimizer
and the numbers a training loop already has, so a one-line PyTorch integration (hooks on
``backward``/``optimizer.step``) can take it over without changing what is emitted.
"""

from __future__ import annotations

import math
import platform
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn


class TrainingClient(Protocol):
    """The part of the producer client a training job uses."""

    def run_started(self, config: dict[str, Any], seed: int | None = ..., code_version: str | None = ...) -> Any: ...

    def run_finished(self, status: str = ...) -> Any: ...

    def metric(self, metrics: dict[str, float], step: int, epoch: int | None = ..., split: str | None = ...) -> Any: ...

    def log(self, level: str, message: str, **attributes: Any) -> Any: ...

    def span(self, name: str, new_trace: bool | None = ..., **attributes: Any) -> AbstractContextManager[Any]: ...


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of one run; ``diverge_at=None`` keeps the learning rate healthy throughout."""

    run_id: str
    steps: int = 300
    lr: float = 0.5
    momentum: float = 0.0
    batch_size: int = 64
    hidden: int = 32
    seed: int = 1
    eval_every: int = 10
    diverge_at: int | None = None
    diverge_factor: float = 10.0
    #: Stop after this many consecutive non-finite losses, as a real job would crash.
    max_nonfinite_steps: int = 3


@dataclass
class TrainingResult:
    """What the run did, for the demo's summary and for tests."""

    run_id: str
    status: str
    steps_run: int
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    val_accuracy: list[tuple[int, float]] = field(default_factory=list)
    first_nonfinite_step: int | None = None


def load_data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits scaled to [0, 1], split 80/20 with a fixed permutation."""
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(x))
    train, val = order[:cut], order[cut:]
    return x[train], y[train], x[val], y[val]


def grad_norm(model: nn.Module) -> float:
    """Global L2 norm of all gradients (what ``clip_grad_norm_`` would report), inf/NaN kept."""
    norms = [p.grad.detach().norm(2) for p in model.parameters() if p.grad is not None]
    if not norms:
        return 0.0
    return float(torch.stack(norms).norm(2))


class TrainingTelemetry:
    """Turns what a training loop already computes into producer events."""

    def __init__(self, client: TrainingClient, config: TrainingConfig) -> None:
        self.client = client
        self.config = config

    def started(self) -> None:
        params = {k: v for k, v in asdict(self.config).items() if k != "run_id"}
        versions = f"torch {torch.__version__}, python {platform.python_version()}"
        self.client.run_started(config=params, seed=self.config.seed, code_version=versions)

    def on_step(self, step: int, epoch: int, loss: float, accuracy: float, model: nn.Module, lr: float) -> float:
        """Call after ``backward()`` and before ``optimizer.step()``; returns the gradient norm."""
        norm = grad_norm(model)
        metrics = {"loss": loss, "grad_norm": norm, "lr": lr, "accuracy": accuracy}
        self.client.metric(metrics, step=step, epoch=epoch, split="train")
        return norm

    def on_eval(self, step: int, epoch: int, loss: float, accuracy: float) -> None:
        self.client.metric({"loss": loss, "accuracy": accuracy}, step=step, epoch=epoch, split="val")

    def nonfinite(self, step: int, loss: float) -> None:
        self.client.log("error", f"loss is not finite ({loss}) at step {step}", step=step, run_id=self.config.run_id)

    def finished(self, status: str) -> None:
        self.client.run_finished(status=status)


def _build(config: TrainingConfig) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(config.seed)
    model = nn.Sequential(nn.Linear(64, config.hidden), nn.Tanh(), nn.Linear(config.hidden, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    return model, optimizer


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Squared error against one-hot targets: unlike cross-entropy its gradient is unbounded in
    the weights, so a learning rate past the stability limit makes gradients grow geometrically."""
    return nn.functional.mse_loss(logits, nn.functional.one_hot(labels, 10).float())


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(x)
        loss = float(_loss(logits, y))
        accuracy = float((logits.argmax(1) == y).float().mean())
    return loss, accuracy


def train(client: TrainingClient, config: TrainingConfig) -> TrainingResult:
    """Run ``config.steps`` SGD steps, logging every one; returns what happened."""
    torch.set_num_threads(1)  # a tiny model: threads only add contention on a shared machine
    x_train, y_train, x_val, y_val = load_data(config.seed)
    model, optimizer = _build(config)
    telemetry = TrainingTelemetry(client, config)
    result = TrainingResult(run_id=config.run_id, status="FINISHED", steps_run=0)
    # The whole run is one span and the root of its own trace, so the trace closes complete when
    # training ends (the client's implicit run trace has no root span that ever ends).
    with client.span("train", new_trace=True, run=config.run_id, steps=config.steps):
        telemetry.started()
        _loop(config, model, optimizer, telemetry, result, (x_train, y_train, x_val, y_val))
        telemetry.finished(result.status)
    return result


def _loop(
    config: TrainingConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    telemetry: TrainingTelemetry,
    result: TrainingResult,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    """The SGD steps; fills ``result`` and stops early after repeated non-finite losses."""
    x_train, y_train, x_val, y_val = data
    rng = np.random.default_rng(config.seed)
    batches_per_epoch = max(1, len(x_train) // config.batch_size)
    nonfinite = 0
    for step in range(config.steps):
        lr = config.lr * (config.diverge_factor if config.diverge_at is not None and step >= config.diverge_at else 1)
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = torch.from_numpy(rng.integers(0, len(x_train), config.batch_size))
        optimizer.zero_grad()
        logits = model(x_train[index])
        loss = _loss(logits, y_train[index])
        loss.backward()
        loss_value = float(loss.detach())
        accuracy = float((logits.argmax(1) == y_train[index]).float().mean())
        epoch = step // batches_per_epoch
        norm = telemetry.on_step(step, epoch, loss_value, accuracy, model, lr)
        optimizer.step()
        result.steps_run = step + 1
        result.losses.append(loss_value)
        result.grad_norms.append(norm)
        result.lrs.append(lr)
        if not math.isfinite(loss_value):
            result.first_nonfinite_step = step if result.first_nonfinite_step is None else result.first_nonfinite_step
            telemetry.nonfinite(step, loss_value)
            nonfinite += 1
            if nonfinite >= config.max_nonfinite_steps:
                result.status = "FAILED"
                break
        else:
            nonfinite = 0
        if (step + 1) % config.eval_every == 0:
            val_loss, val_accuracy = _evaluate(model, x_val, y_val)
            telemetry.on_eval(step, epoch, val_loss, val_accuracy)
            result.val_accuracy.append((step, val_accuracy))
