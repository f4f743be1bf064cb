"""aitrace: logging and debugging for AI systems.

``client = aitrace.init(service="trainer", run_id="run-7")`` returns the producer client;
events hang off it (``client.metric``, ``client.log``, ``client.span``, ...). See
:mod:`aitrace.client`.
"""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # static tools see the names; at run time they load on first use
    from aitrace.client import Client, Span, default_processors, get_client, init
    from aitrace.events import summarize
    from aitrace.logging_handler import AitraceHandler
    from aitrace.redact import Redactor
    from aitrace.sampling import TraceSampler

# Lazy, so that ``import aitrace.detect`` (a notebook, a backtest) loads no Kafka client.
_EXPORTS = {
    "Client": "aitrace.client",
    "Span": "aitrace.client",
    "default_processors": "aitrace.client",
    "get_client": "aitrace.client",
    "init": "aitrace.client",
    "summarize": "aitrace.events",
    "AitraceHandler": "aitrace.logging_handler",
    "Redactor": "aitrace.redact",
    "TraceSampler": "aitrace.sampling",
}


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):  # a submodule (``aitrace.torch`` imports torch only here)
        try:
            return importlib.import_module(f"aitrace.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"aitrace.{name}":
                raise
    raise AttributeError(f"module 'aitrace' has no attribute {name!r}")


__all__ = [
    "AitraceHandler",
    "Client",
    "Redactor",
    "Span",
    "TraceSampler",
    "__version__",
    "default_processors",
    "get_client",
    "init",
    "summarize",
]
