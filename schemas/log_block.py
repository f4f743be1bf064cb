"""One ``aitrace.LogBlock`` read back as the per-record events it stands for.

The producer sends a trace's log records as columns (``schemas/aitrace.LogBlock.avsc``): times
one per record, spans, levels, messages and loggers as tables of distinct values with an index
per record, attributes as one column per name. The worker reads record ``i`` as the
``aitrace.Event`` carrying that ``aitrace.LogRecord``, with the event id ``<block_id>:<i>``, so
everything after decoding (validation, correlation, detection, the index ``_id``) is the same as
for logs sent one event at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

LOG_RECORD = "aitrace.LogRecord"
ERROR_COLUMNS = ("error_type", "error_message", "stack_trace")
# (index column, table it points into, may the index column be empty)
INDEXED = (("span_index", "span_id", False), ("level_index", "level", False),
           ("message_index", "message", False), ("logger_index", "logger", True))  # fmt: skip


def rows(block: Mapping[str, Any]) -> int:
    """Records in the block; raises ValueError when its columns do not line up or an index points nowhere."""
    n = len(block["time"])
    name = block["block_id"]
    for index, table, optional in INDEXED:
        column = block.get(index) or []
        if optional and not column:
            continue
        if len(column) != n:
            raise ValueError(f"log block {name!r}: {index} has {len(column)} entries, time has {n}")
        lowest = -1 if optional else 0
        if n and (min(column) < lowest or max(column) >= len(block[table])):
            raise ValueError(f"log block {name!r}: {index} points outside {table} ({len(block[table])} entries)")
    parents = block.get("parent_span_id") or []
    if parents and len(parents) != len(block["span_id"]):
        raise ValueError(
            f"log block {name!r}: parent_span_id has {len(parents)} entries, span_id has {len(block['span_id'])}"
        )
    for column_name in ERROR_COLUMNS:
        column = block.get(column_name) or []
        if column and len(column) != n:
            raise ValueError(f"log block {name!r}: {column_name} has {len(column)} entries, not 0 or {n}")
    for key, values in (block.get("attributes") or {}).items():
        if len(values) != n:
            raise ValueError(f"log block {name!r}: attribute {key!r} has {len(values)} values, not {n}")
    return n


def _attributes(columns: Mapping[str, Sequence[str | None]], n: int) -> list[dict[str, str]]:
    out: list[dict[str, str]] = [{} for _ in range(n)]
    for key, values in columns.items():
        for attrs, value in zip(out, values, strict=True):
            if value is not None:
                attrs[key] = value
    return out


def log_events(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of a decoded block, shaped as fastavro decodes an ``aitrace.Event``; ValueError when malformed."""
    n = rows(block)
    block_id, trace_id = block["block_id"], block["trace_id"]
    service, service_version = block["service"], block.get("service_version")
    environment, host, pid, run_id = block.get("environment"), block.get("host"), block.get("pid"), block.get("run_id")
    sampled, labels = block.get("sampled", True), block.get("labels") or {}
    span_ids = block["span_id"]
    parents = block.get("parent_span_id") or [None] * len(span_ids)
    spans = [(span_ids[i], parents[i]) for i in block["span_index"]]
    levels, messages = block["level"], block["message"]
    loggers = [None, *block.get("logger", ())]  # index -1 (none) reads slot 0
    logger_of = [loggers[i + 1] for i in block.get("logger_index") or ()] or repeat(None, n)
    errors = [block.get(c) or repeat(None, n) for c in ERROR_COLUMNS]
    attributes = _attributes(block.get("attributes") or {}, n)
    columns = zip(block["time"], spans, block["level_index"], block["message_index"], logger_of, attributes,
                  *errors, strict=False)  # fmt: skip
    return [
        {
            "event_id": f"{block_id}:{i}",
            "time": time,
            "trace_id": trace_id,
            "span_id": span[0],
            "parent_span_id": span[1],
            "service": service,
            "service_version": service_version,
            "environment": environment,
            "host": host,
            "pid": pid,
            "run_id": run_id,
            "sampled": sampled,
            "labels": dict(labels),
            "payload": (
                LOG_RECORD,
                {
                    "level": levels[level],
                    "message": messages[message],
                    "logger": logger,
                    "attributes": attrs,
                    "error_type": error_type,
                    "error_message": error_message,
                    "stack_trace": stack,
                },
            ),
        }
        for i, (time, span, level, message, logger, attrs, error_type, error_message, stack) in enumerate(columns)
    ]
