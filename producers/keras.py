"""A Keras 3 callback: ``model.fit(..., callbacks=[aitrace.keras.AitraceCallback()])``.

Any backend (set ``KERAS_BACKEND`` before Keras is imported, as usual). Through the one aitrace client:

- ``on_train_begin``: the run's STARTED event; its config holds the backend, epochs, steps per
  epoch, the model's name and parameter count and the optimizer's config (``optimizer.*``);
- ``on_train_batch_end``: every ``every`` batches one ``client.metric`` with Keras's batch logs
  (``loss`` and the compiled metrics; Keras 3 reports each as its running mean over the epoch so
  far) and the optimizer's current learning rate as ``lr``. The step counts batches from the
  start of training (1 after the first), across epochs; the point's epoch is Keras's epoch index;
- ``on_epoch_end``: the validation logs as ``split="val"`` without the prefix (``val_loss`` ->
  ``loss``), at the epoch's last step, so the over-fitting check pairs the two losses; the
  training logs too when that step's batch was not sent already (the epoch's values are the last
  batch's running means);
- ``on_train_end``: FINISHED. Keras has no hook for an exception: to record FAILED, fit inside
  ``client.run(...)`` and pass ``lifecycle=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    import keras
except ImportError as exc:
    raise ImportError("aitrace.keras needs Keras 3: pip install 'aitrace[keras]'") from exc

from aitrace.producers._training import by_split, resolve_client

__all__ = ["AitraceCallback"]


class AitraceCallback(keras.callbacks.Callback):
    """Keras callback that sends the run's lifecycle, batch and epoch metrics through aitrace.

    ``client`` defaults to the one :func:`aitrace.init` made last. ``every`` spaces the batch
    reports (each one reads the metrics off the device). ``config`` adds to the run's config.
    ``lifecycle=False`` sends no STARTED / FINISHED.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        every: int = 10,
        config: Mapping[str, Any] | None = None,
        lifecycle: bool = True,
    ) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every!r}")
        self.client = resolve_client(client, "aitrace.keras.AitraceCallback")
        self.every = every
        self._config = dict(config or {})
        self._lifecycle = lifecycle
        self.step = 0  # batches trained since this callback's first fit
        self._epoch = 0
        self._epoch_base = 0
        self._sent_step = 0

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._lifecycle:
            return
        model = self.model
        config: dict[str, Any] = {
            "backend": keras.backend.backend(),
            "epochs": self.params.get("epochs"),
            "steps_per_epoch": self.params.get("steps"),
            "model": model.name,
            "parameters": model.count_params(),
        }
        if model.optimizer is not None:
            config["optimizer"] = model.optimizer.get_config()
        self.client.run_started({**config, **self._config}, libraries=("keras",))

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._epoch_base = self.step

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        # ``batch`` is the index in the epoch of the last batch run (several with steps_per_execution).
        self.step = self._epoch_base + batch + 1
        if logs and self.step - self._sent_step >= self.every:
            self._send_training(by_split(logs).get(None, {}))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        groups = by_split(logs or {})
        train = groups.pop(None, None)
        if train and self._sent_step != self.step:
            self._send_training(train)
        for split, values in groups.items():
            self.client.metric(values, step=self.step, epoch=epoch, split=split)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._lifecycle:
            self.client.run_finished("FINISHED")

    def _send_training(self, logs: Mapping[str, Any]) -> None:
        values = dict(logs)
        optimizer = self.model.optimizer
        if optimizer is not None:
            values["lr"] = float(optimizer.learning_rate)  # a variable, or a schedule's value at this step
        self.client.metric(values, step=self.step, epoch=self._epoch)
        self._sent_step = self.step
