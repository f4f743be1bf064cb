"""Log blocks: a trace's queued ``client.log`` records as the columns of one ``aitrace.LogBlock``.

Built on the exporter thread. Sent one event at a time, a log record cost the exporter about
17 µs (``bench/bench_sender.py --profile log``: the redactor walking four dicts per event, the
generated writer framing a whole ``aitrace.Event``, the envelope copied into each). A block pays
the envelope, the id and the framing once per trace and batch; the columns are a few list
comprehensions; the redactor walks the column lists with its per-string caches; one encode.

The processor chain sees the block only when every processor in it reads blocks
(:func:`block_chain`): the redactor (it walks any mapping; a column is named like the field it
holds, so each string is scrubbed with the same plan as in a single event), head sampling
(:func:`sample_block`: an unsampled trace keeps only its error and anomaly records, with
``sampled = false``) and a processor that declares ``accepts_log_blocks = True``. With any other
processor in the chain logs travel as single ``aitrace.Event`` s as before, so a user's filter
written for events still sees every log.

Bad values never raise here: a record that cannot be built is left out and counted
(``rejected_bad_event``), as in :mod:`aitrace.producers.events`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from aitrace.producers import events as ev
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler, must_keep
from aitrace.schemas.log_block import LOG_RECORD, OPTIONAL_COLUMNS

Block = dict[str, Any]
_ENVELOPE = ("service", "service_version", "environment", "host", "pid", "run_id", "sampled", "labels")
_COLUMNS = ("time", "span_id", "level", "message", *OPTIONAL_COLUMNS)


def block_chain(processors: list[Callable[[Block], Any]]) -> list[Callable[[Block], Any]] | None:
    """The chain to run on log blocks, or None when a processor in ``processors`` reads single events only."""
    chain: list[Callable[[Block], Any]] = []
    for processor in processors:
        if isinstance(processor, TraceSampler):
            chain.append(_Sampling(processor))
        elif isinstance(processor, Redactor) or getattr(processor, "accepts_log_blocks", False) is True:
            chain.append(processor)
        else:
            return None
    return chain


class _Sampling:
    """:class:`TraceSampler` for a log block (its own rule reads one event at a time)."""

    def __init__(self, sampler: TraceSampler) -> None:
        self.sampler = sampler
        self.drop_reason = sampler.drop_reason

    def __call__(self, block: Block) -> Block:
        return sample_block(self.sampler, block)


def sample_block(sampler: TraceSampler, block: Block) -> Block:
    """The block when its trace is sampled; else its records that sampling must keep, marked unsampled."""
    if sampler.rate >= 1.0 or sampler.sampled(block["trace_id"]):
        return block
    attributes = block["attributes"] or [{}] * len(block["time"])
    labels = block["labels"]
    keep = [
        i
        for i, (level, attrs) in enumerate(zip(block["level"], attributes, strict=True))
        if must_keep({"labels": labels, "payload": (LOG_RECORD, {"level": level, "attributes": attrs})})
    ]
    if not keep:
        raise ev.DropEvent
    out = take_rows(block, keep)
    out["sampled"] = False
    return out


def new_block(block_id: str, trace_id: str, envelope: dict[str, Any], columns: Block) -> Block:
    """The ``aitrace.LogBlock`` of ``columns`` (from :func:`log_columns`) with the client's envelope."""
    block = {"block_id": block_id, "trace_id": trace_id}
    for name in _ENVELOPE:
        block[name] = envelope[name]
    block.update(columns)
    return block


def log_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    """The columns of queued log records (fields as :meth:`ClientEvents.log` builds them).

    The common case (text messages and levels, no exception) is a few list comprehensions; a
    batch with anything unusual is built record by record through :func:`events.log_payload`,
    which turns odd values into text and leaves out (counted) what cannot be built.
    """
    fields = [f for _, _, _, f, _ in rows]
    try:
        levels = [f["level"] for f in fields]
        messages = [f["message"] for f in fields]
        loggers = [f["logger"] for f in fields]
        excs = [f["exc"] for f in fields]
        attributes = [f["attributes"] for f in fields]
    except (KeyError, TypeError):
        return _slow_columns(rows, stats)
    if set(map(type, levels)) != {str} or set(map(type, messages)) != {str} or excs.count(None) != len(excs):
        return _slow_columns(rows, stats)
    if loggers.count(None) == len(loggers):
        loggers = []
    elif set(map(type, loggers)) - {str, type(None)}:
        return _slow_columns(rows, stats)
    attributes = [ev.text_map(a, stats) if a else {} for a in attributes] if any(attributes) else []
    ctxs = [ctx for _, _, ctx, _, _ in rows]
    parents = [c.parent_span_id for c in ctxs]
    return {
        "time": [t for _, t, _, _, _ in rows],
        "span_id": [c.span_id for c in ctxs],
        "parent_span_id": [] if parents.count(None) == len(parents) else parents,
        "level": levels,
        "message": messages,
        "logger": loggers,
        "attributes": attributes,
        "error_type": [],
        "error_message": [],
        "stack_trace": [],
    }


def _slow_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    out: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    for _, time_us, ctx, fields, _ in rows:
        try:
            payload = ev.log_payload(fields, stats)
        except (KeyError, TypeError, ValueError):
            stats["rejected_bad_event"] += 1
            continue
        out["time"].append(time_us)
        out["span_id"].append(ctx.span_id)
        out["parent_span_id"].append(ctx.parent_span_id)
        for name, value in payload.items():
            out[name].append(value)
    for name in OPTIONAL_COLUMNS:  # empty when no record has a value: the schema's short form
        if all(v is None or v == {} for v in out[name]):
            out[name] = []
    return out


def take_rows(block: Block, keep: list[int]) -> Block:
    """A copy of ``block`` holding only the records at ``keep`` (in order)."""
    out = dict(block)
    for name in _COLUMNS:
        column = block[name]
        if column:
            out[name] = [column[i] for i in keep]
    return out


def halves(block: Block) -> list[Block]:
    """The block's records in two blocks (ids stay unique: the second is ``<block_id>.<first record>``)."""
    n = len(block["time"])
    half = n // 2
    first, second = take_rows(block, list(range(half))), take_rows(block, list(range(half, n)))
    second["block_id"] = f"{block['block_id']}.{half}"
    return [first, second]
