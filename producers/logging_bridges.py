"""loguru and structlog beside the stdlib :class:`~aitrace.AitraceHandler`: the same records, the same rules.

- loguru: ``logger.add(aitrace.logging_bridges.loguru_sink(client))``; ``logger.bind(k=v)`` and
  ``extra`` become attributes, ``logger.exception(...)`` carries the exception.
- structlog: put ``aitrace.logging_bridges.structlog_processor(client)`` in the processor chain
  (before the renderer): the event dict goes on unchanged (with ``trace_id``/``span_id`` added
  when ``add_ids=True``) and a copy is sent; its keys become attributes.

Records belong to the current aitrace span (else the current OTel span, else the run's trace),
as with ``client.log``. A loguru sink added with ``enqueue=True`` runs on loguru's own thread:
add :func:`loguru_patcher` (``logger.configure(patcher=loguru_patcher)``) so each record keeps
the context it was logged in. A bridge never raises into the logging call (a failure is
counted in ``.errors``) and never loops: records of aitrace's own loggers, and anything logged
while a bridge is sending, are skipped.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any

from aitrace.producers import tracecontext as tc
from aitrace.producers.events import plain_text
from aitrace.producers.logging_handler import attribute_name

__all__ = ["LoguruSink", "StructlogProcessor", "loguru_patcher", "loguru_sink", "structlog_processor"]

_SENDING: ContextVar[bool] = ContextVar("aitrace_bridge_sending", default=False)
_TRACE_KEY, _SPAN_KEY, _PARENT_KEY = "aitrace_trace_id", "aitrace_span_id", "aitrace_parent_span_id"
# structlog keys that are the record itself, not attributes.
_STRUCTLOG_OWN = frozenset({"event", "level", "logger", "exc_info", "timestamp", "_record", "_from_structlog"})


def _require(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        raise ImportError(f"aitrace's {module} bridge needs {module}: pip install 'aitrace[{extra}]'") from exc


def _own(name: Any) -> bool:
    return isinstance(name, str) and (name == "aitrace" or name.startswith("aitrace."))


class _Bridge:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.errors = 0

    def _target(self) -> Any:
        if self._client is not None:
            return self._client
        from aitrace.producers.client import get_client

        return get_client()

    def _send(self, level: Any, message: str, exc: Any, logger: Any, attributes: dict[str, Any], ctx: Any) -> None:
        if _SENDING.get() or _own(logger):
            return  # aitrace's own records, or a record logged while sending one: never loop
        token = _SENDING.set(True)
        try:
            client = self._target()
            if client is None:
                return
            pushed = tc.push(ctx) if ctx is not None else None
            try:
                client.log(level, message, exc_info=exc, logger=logger, **attributes)
            finally:
                if pushed is not None:
                    tc.pop(pushed)
        except Exception:
            self.errors += 1
        finally:
            _SENDING.reset(token)


class LoguruSink(_Bridge):
    """A loguru sink (a callable taking loguru's message) sending each record through ``client.log``."""

    def __call__(self, message: Any) -> None:
        try:
            record = message.record
            extra = dict(record["extra"])
            ctx = None
            if _TRACE_KEY in extra and _SPAN_KEY in extra:  # (a user's own half of it stays an attribute)
                ctx = tc.SpanContext(extra.pop(_TRACE_KEY), extra.pop(_SPAN_KEY), extra.pop(_PARENT_KEY, None))
            attributes = {attribute_name(str(k)): v for k, v in extra.items()}
            attributes.setdefault("module", record["module"])
            attributes.setdefault("function", record["function"])
            attributes.setdefault("lineno", record["line"])
            exc = record["exception"]
            error = exc.value if exc is not None and exc.value is not None else None
            level = record["level"].no
            name = record["name"]
        except Exception:
            self.errors += 1
            return
        self._send(level, str(record["message"]), error, name, attributes, ctx)


def loguru_patcher(record: dict[str, Any]) -> None:
    """A loguru patcher stamping the current trace context on each record (for ``enqueue=True`` sinks)."""
    ctx = tc.current()
    if ctx is not None:
        record["extra"].update({_TRACE_KEY: ctx.trace_id, _SPAN_KEY: ctx.span_id, _PARENT_KEY: ctx.parent_span_id})


def loguru_sink(client: Any = None) -> LoguruSink:
    """A sink for ``loguru.logger.add(...)``; ``client`` defaults to the one :func:`aitrace.init` made last."""
    _require("loguru", "loguru")
    return LoguruSink(client)


class StructlogProcessor(_Bridge):
    """A structlog processor: sends the event, returns the event dict for the rest of the chain."""

    def __init__(self, client: Any = None, add_ids: bool = False) -> None:
        super().__init__(client)
        self.add_ids = add_ids

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        try:
            level = event_dict.get("level") or method_name
            if level == "exception":
                level = "error"
            name = event_dict.get("logger") or getattr(logger, "name", None)
            exc: Any = event_dict.get("exc_info")
            wants_current = exc is True or (exc and not isinstance(exc, BaseException | tuple))
            if wants_current or (exc is None and method_name == "exception"):
                exc = sys.exc_info()[1]
            own = _STRUCTLOG_OWN
            # (an event whose str() raised was lost here: plain_text)
            if "event" in event_dict or "message" not in event_dict:
                message = plain_text(event_dict.get("event", ""))
            else:  # EventRenamer("message") ran before: the event is under "message"
                message, own = plain_text(event_dict["message"]), _STRUCTLOG_OWN | {"message"}
            attributes = {attribute_name(str(k)): v for k, v in event_dict.items() if k not in own}
        except Exception:
            self.errors += 1
            return event_dict
        self._send(level, message, exc, name, attributes, None)
        if self.add_ids:
            ctx = tc.current()
            if ctx is not None:
                event_dict.setdefault("trace_id", ctx.trace_id)
                event_dict.setdefault("span_id", ctx.span_id)
        return event_dict


def structlog_processor(client: Any = None, *, add_ids: bool = False) -> StructlogProcessor:
    """A processor for ``structlog.configure(processors=[..., this, renderer])``."""
    _require("structlog", "structlog")
    return StructlogProcessor(client, add_ids)
