"""aitrace: logging and debugging for AI systems.

``client = aitrace.init(service="trainer", run_id="run-7")`` returns the producer client;
events hang off it (``client.metric``, ``client.log``, ``client.span``, ...). See
:mod:`aitrace.producers.client`.

This root package only re-exports, lazily: the code lives in the subpackages, one per
folder of the repository (``aitrace.producers`` is ``producers/``, ``aitrace.detect`` is
``detect/``, ...). ``aitrace.torch``, ``aitrace.asgi`` and the other integrations are
``aitrace.producers.torch``, ``aitrace.producers.asgi``, ..., loaded on first use.
"""

__version__ = "0.1.0"

import importlib
import pkgutil
from typing import TYPE_CHECKING

# Run from a checkout's root, Python finds this folder (aitrace/) before the installed package,
# and the subpackages are not in it: extend the search to every ``aitrace`` folder on sys.path,
# the installed one included (an editable install's link tree, site-packages). A no-op elsewhere.
__path__ = pkgutil.extend_path(__path__, __name__)

if TYPE_CHECKING:  # static tools see the names; at run time they load on first use
    from aitrace.producers import asgi as asgi
    from aitrace.producers import inference as inference
    from aitrace.producers import keras as keras
    from aitrace.producers import lightning as lightning
    from aitrace.producers import logging_bridges as logging_bridges
    from aitrace.producers import otel as otel
    from aitrace.producers import torch as torch
    from aitrace.producers import transformers as transformers
    from aitrace.producers import wsgi as wsgi
    from aitrace.producers.client import Client, default_processors, get_client, init
    from aitrace.producers.events import DropEvent
    from aitrace.producers.logging_handler import AitraceHandler
    from aitrace.producers.redact import Redactor
    from aitrace.producers.sampling import TraceSampler
    from aitrace.producers.spans import Span
    from aitrace.producers.summaries import summarize

# Lazy, so that ``import aitrace.detect`` (a notebook, a backtest) loads no Kafka client.
_EXPORTS = {
    "Client": "aitrace.producers.client",
    "default_processors": "aitrace.producers.client",
    "get_client": "aitrace.producers.client",
    "init": "aitrace.producers.client",
    "DropEvent": "aitrace.producers.events",
    "summarize": "aitrace.producers.summaries",
    "AitraceHandler": "aitrace.producers.logging_handler",
    "Redactor": "aitrace.producers.redact",
    "TraceSampler": "aitrace.producers.sampling",
    "Span": "aitrace.producers.spans",
}

# ``aitrace.<name>`` -> ``aitrace.producers.<name>``: the integrations, reached as attributes of the
# root (``aitrace.torch.watch(...)``, ``@aitrace.inference.traced(...)``); each imports its library
# only when it is first used.
_INTEGRATIONS = frozenset(
    {"asgi", "inference", "keras", "lightning", "logging_bridges", "otel", "torch", "transformers", "wsgi"}
)


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _INTEGRATIONS:
        return importlib.import_module(f"aitrace.producers.{name}")
    if not name.startswith("_"):  # a subpackage (``aitrace.detect``, ``aitrace.producers``, ...)
        try:
            return importlib.import_module(f"aitrace.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"aitrace.{name}":
                raise
    raise AttributeError(f"module 'aitrace' has no attribute {name!r}")


__all__ = [
    "AitraceHandler",
    "Client",
    "DropEvent",
    "Redactor",
    "Span",
    "TraceSampler",
    "__version__",
    "default_processors",
    "get_client",
    "init",
    "summarize",
]
