"""What the training-framework integrations (Lightning, Transformers, Keras) share.

Each framework names its evaluation metrics by a prefix (``val_loss``, ``val/loss``,
``eval_loss``); the worker's detectors and ``aitrace compare`` read the split from the event's
``split`` field instead (the over-fitting check pairs ``loss`` of the training split with
``loss`` of the validation split). :func:`by_split` moves the prefix there, so every framework
sends the same shape as ``aitrace.torch`` and a hand-written loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The first word of a key -> the split it belongs to (None: training, sent without a split).
SPLIT_WORDS: dict[str, str | None] = {
    "train": None,
    "training": None,
    "val": "val",
    "valid": "val",
    "validation": "val",
    "eval": "val",
    "dev": "val",  # as the worker reads it (aitrace.detect.training.SPLIT_WORDS)
    "test": "test",
}


def split_key(key: str) -> tuple[str | None, str]:
    """``"val_loss"`` / ``"val/loss"`` -> ``("val", "loss")``; ``"train_loss"`` -> ``(None, "loss")``; else as is."""
    for i, char in enumerate(key):
        if char in "_/":
            word, rest = key[:i].lower(), key[i + 1 :]
            if word in SPLIT_WORDS and rest:
                return SPLIT_WORDS[word], rest
            break
    return None, key


def by_split(values: Mapping[str, Any]) -> dict[str | None, dict[str, Any]]:
    """Metric values grouped by split, each named without its split prefix (one ``client.metric`` per group)."""
    groups: dict[str | None, dict[str, Any]] = {}
    for key, value in values.items():
        split, name = split_key(key)
        group = groups.setdefault(split, {})
        # A stripped name must not overwrite another value (``train_loss`` beside a plain ``loss``,
        # ``val_loss`` beside ``val/loss``): then it keeps its own key.
        if name != key and (name in group or (split is None and name in values)):
            name = key
        group[name] = value
    return groups


def resolve_client(client: Any, who: str) -> Any:
    """``client`` or the one :func:`aitrace.init` made last; a clear error when there is none."""
    if client is not None:
        return client
    from aitrace.producers.client import get_client

    found = get_client()
    if found is None:
        raise RuntimeError(f"{who}: no client; call aitrace.init(...) first or pass client=")
    return found
