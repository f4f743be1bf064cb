"""A stdlib :class:`logging.Handler` that sends log records through an aitrace client.

``logging.getLogger().addHandler(AitraceHandler(client))`` and every record becomes an
``aitrace.LogRecord`` in the current trace; ``extra={...}`` fields become attributes.
"""

from __future__ import annotations

import logging
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
# ``client.log``'s own parameters (``self`` included): an attribute of that name would clash with them (TypeError:
# the record was lost), so it travels as ``extra.<name>``.
LOG_PARAMETERS = frozenset({"self", "level", "message", "exc_info", "logger"})


def attribute_name(key: str) -> str:
    """An attribute's name as ``client.log`` can take it (its own parameters' names get ``extra.``)."""
    return f"extra.{key}" if key in LOG_PARAMETERS else key


class AitraceHandler(logging.Handler):
    """Forward stdlib log records to ``client.log`` (never raises into the logging call)."""

    def __init__(self, client: Any = None, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._client = client

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "aitrace" or record.name.startswith("aitrace."):
            return  # the client's own warnings must not loop back into it (a user's "aitracer" is not ours)
        client = self._client
        if client is None:
            from aitrace.producers.client import get_client

            client = get_client()
            if client is None:
                return
        try:
            # (extra={1: "x"} puts an int key in the record: as text, or the record was lost)
            attributes = {attribute_name(str(k)): v for k, v in vars(record).items() if k not in _STANDARD}
            attributes.setdefault("module", record.module)
            attributes.setdefault("lineno", record.lineno)
            client.log(record.levelno, record.getMessage(), exc_info=record.exc_info, logger=record.name, **attributes)
        except Exception:
            self.handleError(record)
