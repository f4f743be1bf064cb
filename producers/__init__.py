"""aitrace: logging and debugging for AI systems.

``client = aitrace.init(service="trainer", run_id="run-7")`` returns the producer client;
events hang off it (``client.metric``, ``client.log``, ``client.span``, ...). See
:mod:`aitrace.client`.
"""

__version__ = "0.1.0"

from aitrace.client import Client, Span, default_processors, get_client, init
from aitrace.events import summarize
from aitrace.logging_handler import AitraceHandler
from aitrace.redact import Redactor
from aitrace.sampling import TraceSampler

# Integrations load on first use (``aitrace.torch`` imports torch): ``aitrace.otel``, ``aitrace.torch``, ...
_LAZY_MODULES = frozenset({"torch", "otel", "logging_bridges"})


def __getattr__(name: str) -> object:
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"aitrace.{name}")
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
