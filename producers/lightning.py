"""A Lightning logger: ``Trainer(logger=aitrace.lightning.AitraceLogger())``.

It sits beside any other logger (``logger=[AitraceLogger(), CSVLogger("logs")]``) and sends
through the one aitrace client:

- ``log_metrics``: one ``client.metric`` per split at Lightning's step (the optimizer steps taken
  before the batch, as in its CSV and TensorBoard logs; validation at the epoch's last training
  step), with Lightning's ``epoch`` as the point's epoch. A split prefix moves into ``split``:
  ``val_loss`` and ``val/loss`` become ``loss`` with ``split="val"``, ``test_acc`` ``acc`` with
  ``split="test"``, ``train_loss`` plain ``loss`` (see :mod:`aitrace.producers._training`), so the
  over-fitting check sees the training and validation losses side by side. Lightning's
  ``_step`` / ``_epoch`` suffixes (``on_step=True, on_epoch=True``) stay in the name.
- ``log_hyperparams``: gathered into the run's config (the LightningModule's and DataModule's
  ``save_hyperparameters()``, LightningCLI's config), sent with the run's STARTED event, which
  leaves when Lightning starts a ``fit`` / ``validate`` / ``test`` (its ``log_graph`` call) or at
  the first metrics. Hyper-parameters logged after that (or with ``lifecycle=False``) go out as an
  info log of logger ``aitrace.lightning`` (``event="hyperparams"``).
- ``finalize(status)``: the run's end: ``"success"`` -> FINISHED, ``"failed"`` -> FAILED (KILLED
  for Ctrl-C) after an error log with the traceback. Each ``fit`` / ``validate`` / ``test`` call is
  one STARTED ... end pair.

Only global rank 0 sends, as with Lightning's own loggers. ``experiment`` is the client.
"""

from __future__ import annotations

import math
import os
import sys
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

try:
    from lightning.pytorch.loggers import Logger
    from lightning.pytorch.loggers.logger import rank_zero_experiment
    from lightning.pytorch.utilities import rank_zero_only
except ImportError as exc:
    raise ImportError("aitrace.lightning needs Lightning 2.x: pip install 'aitrace[lightning]'") from exc

from aitrace.producers._training import by_split, resolve_client
from aitrace.producers.events import plain_text

__all__ = ["AitraceLogger"]


class AitraceLogger(Logger):
    """Lightning ``Logger`` that sends metrics, hyper-parameters and the run's lifecycle through aitrace.

    ``client`` defaults to the one :func:`aitrace.init` made last. ``name`` and ``version``
    (default: the client's service and run id) name the checkpoint folder when this is the
    Trainer's first logger. ``config`` starts the run's config, hyper-parameters add to it.
    ``lifecycle=False`` sends no STARTED / end events: for training inside ``client.run(...)``.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        name: str | None = None,
        version: str | None = None,
        config: Mapping[str, Any] | None = None,
        lifecycle: bool = True,
    ) -> None:
        super().__init__()
        self._client = resolve_client(client, "aitrace.lightning.AitraceLogger")
        producer = self._client.settings.producer
        self._name = name or producer.service
        self._version = version or producer.run_id or self._client.trace_id
        self._config: dict[str, Any] = dict(config or {})
        self._lifecycle = lifecycle
        self._started = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The aitrace client (``self.logger.experiment.log(...)`` in a LightningModule)."""
        return self._client

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        params = dict(vars(params) if isinstance(params, Namespace) else params)
        self._config.update(params)
        if self._started or not self._lifecycle:  # too late for the STARTED event: not lost all the same
            self._client.log("info", "hyper-parameters", logger="aitrace.lightning", event="hyperparams", values=params)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        # Lightning calls this (after log_hyperparams) as each fit / validate / test begins: the run's start.
        self._start()

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._start()
        values = dict(metrics)
        epoch = values.pop("epoch", None)  # Lightning adds the current epoch to step-less calls
        for split, group in by_split(values).items():
            self._client.metric(group, step=step, epoch=_epoch(epoch), split=split)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if not self._started:
            return
        self._started = False
        if status == "success":
            self._client.run_finished("FINISHED")
            return
        # Lightning calls finalize("failed") inside its except block: the exception is still in flight.
        exc = sys.exc_info()[1]
        if status == "failed" and exc is not None:
            what = f"{type(exc).__qualname__}: {plain_text(exc)}"  # (a __str__ that raises must not replace it)
            self._client.log("error", f"run failed: {what}", exc_info=exc, logger="aitrace.run")
            killed = isinstance(exc, KeyboardInterrupt | SystemExit)
            self._client.run_finished("KILLED" if killed else "FAILED", message=what)
        else:
            # "failed" without an exception, or another word (a SLURM requeue says "finished"): it did not complete.
            self._client.run_finished("FAILED" if status == "failed" else "KILLED", message=f"lightning: {status}")

    def _start(self) -> None:
        if self._lifecycle and not self._started:
            self._started = True
            seed = os.environ.get("PL_GLOBAL_SEED")  # set by lightning.seed_everything
            self._client.run_started(self._config, seed=int(seed) if seed else None)


def _epoch(value: Any) -> int | None:
    """Lightning's epoch (or one a user logged: 3.5 is epoch 3, as int() reads it); None for none, NaN or inf."""
    try:
        number = float(value)
    except Exception:
        return None
    return int(number) if math.isfinite(number) else None
