"""One ``aitrace.LogBlock`` read back as the per-record events it stands for.

The producer sends a trace's log records as columns (``schemas/aitrace.LogBlock.avsc``); the
worker reads record ``i`` as the ``aitrace.Event`` carrying that ``aitrace.LogRecord``, with
the event id ``<block_id>:<i>``, so everything after decoding (validation, correlation,
detection, the index ``_id``) is the same as for logs sent one event at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat
from typing import Any

LOG_RECORD = "aitrace.LogRecord"
# Columns that are empty when no record has a value there (see the schema's doc).
OPTIONAL_COLUMNS = ("parent_span_id", "logger", "attributes", "error_type", "error_message", "stack_trace")
REQUIRED_COLUMNS = ("time", "span_id", "level", "message")


def rows(block: Mapping[str, Any]) -> int:
    """Records in the block; raises ValueError when its columns do not line up."""
    n = len(block["time"])
    for name in REQUIRED_COLUMNS:
        if len(block[name]) != n:
            raise ValueError(f"log block {block['block_id']!r}: {name} has {len(block[name])} entries, time has {n}")
    for name in OPTIONAL_COLUMNS:
        column = block.get(name) or ()
        if column and len(column) != n:
            raise ValueError(f"log block {block['block_id']!r}: {name} has {len(column)} entries, not 0 or {n}")
    return n


def log_events(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of a decoded block, shaped as fastavro decodes an ``aitrace.Event``; ValueError when malformed."""
    n = rows(block)
    block_id, trace_id = block["block_id"], block["trace_id"]
    envelope = (block["service"], block.get("service_version"), block.get("environment"), block.get("host"))
    service, service_version, environment, host = envelope
    pid, run_id, sampled = block.get("pid"), block.get("run_id"), block.get("sampled", True)
    labels = block.get("labels") or {}
    parents, loggers, attributes, error_types, error_messages, stacks = (
        block.get(name) or repeat(None, n) for name in OPTIONAL_COLUMNS
    )
    columns = zip(
        block["time"], block["span_id"], parents, block["level"], block["message"], loggers, attributes,
        error_types, error_messages, stacks, strict=False,
    )  # fmt: skip
    return [
        {
            "event_id": f"{block_id}:{i}",
            "time": time,
            "trace_id": trace_id,
            "span_id": span_id,
            "parent_span_id": parent,
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
                    "level": level,
                    "message": message,
                    "logger": logger,
                    "attributes": {} if attrs is None else attrs,
                    "error_type": error_type,
                    "error_message": error_message,
                    "stack_trace": stack,
                },
            ),
        }
        for i, (time, span_id, parent, level, message, logger, attrs, error_type, error_message, stack) in enumerate(
            columns
        )
    ]
