"""A Hugging Face ``Trainer`` callback: ``Trainer(..., callbacks=[aitrace.transformers.AitraceCallback()])``.

Through the one aitrace client:

- ``on_train_begin``: the run's STARTED event, with ``TrainingArguments.to_dict()`` (tokens
  masked by Transformers) as its config and ``args.seed`` as its seed;
- ``on_log``: one ``client.metric`` per split at the Trainer's ``global_step``, every
  ``logging_steps``: the training ``loss``, ``grad_norm`` when the Trainer has one, and
  ``learning_rate`` as ``lr`` (the name ``aitrace.torch`` uses); an evaluation's ``eval_*`` as
  ``split="val"`` without the prefix (``eval_loss`` -> ``loss``), so the over-fitting check pairs
  the two losses. The point's epoch is the epoch index (the Trainer's fractional ``epoch`` 1.5 is
  index 1). The end-of-training totals (runtime, throughput, FLOs, mean loss) are one info log of
  logger ``aitrace.transformers`` (``event="train_summary"``), not points of the loss curve;
- ``on_train_end``: FINISHED. Trainer has no hook for an exception: to record FAILED, train inside
  ``client.run(...)`` and pass ``lifecycle=False``.

Only the world's process zero sends, as with Transformers' own reporters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as exc:
    raise ImportError("aitrace.transformers needs transformers: pip install 'aitrace[transformers]'") from exc

from aitrace.producers._training import by_split, resolve_client
from aitrace.producers.logging_handler import attribute_name

__all__ = ["AitraceCallback"]

# Transformers' names -> the ones aitrace.torch and hand-written loops send.
_RENAMES = {"learning_rate": "lr"}


class AitraceCallback(TrainerCallback):
    """Trainer callback that sends the run's lifecycle and the logged metrics through aitrace.

    ``client`` defaults to the one :func:`aitrace.init` made last; ``config`` adds to the
    TrainingArguments in the run's config. ``lifecycle=False`` sends no STARTED / FINISHED.
    """

    def __init__(self, client: Any = None, *, config: Mapping[str, Any] | None = None, lifecycle: bool = True) -> None:
        self.client = resolve_client(client, "aitrace.transformers.AitraceCallback")
        self._config = dict(config or {})
        self._lifecycle = lifecycle

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._lifecycle and state.is_world_process_zero:
            config = {**args.to_dict(), **self._config}
            self.client.run_started(config, seed=args.seed, libraries=("accelerate",))

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        values = dict(logs)
        epoch = values.pop("epoch", None)
        # a user's trainer.log(epoch=nan) raised into the Trainer: an epoch that is no finite number is none
        finite = isinstance(epoch, int | float) and math.isfinite(epoch)
        index = max(math.ceil(epoch) - 1, 0) if finite else None
        # Only the totals Trainer logs when training ends carry total_flos; their train_loss is the run's mean.
        if "total_flos" in values:
            # a key named as log()'s parameters or this call's (message, event) raised TypeError into the Trainer
            fields = {f"extra.{k}" if k == "event" else attribute_name(str(k)): v for k, v in values.items()}
            self.client.log(
                "info", "training summary", logger="aitrace.transformers", event="train_summary", epoch=epoch, **fields
            )
            return
        for split, group in by_split(values).items():
            named = {_RENAMES.get(k, k): v for k, v in group.items()} if split is None else group
            self.client.metric(named, step=state.global_step, epoch=index, split=split)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._lifecycle and state.is_world_process_zero:
            self.client.run_finished("FINISHED")
