"""Log blocks: a trace's queued ``client.log`` records as the columns of one ``aitrace.LogBlock``.

Built on the exporter thread. Sent one event at a time, a log record cost the exporter about
17 µs (``bench/bench_sender.py --profile log``: the redactor walking four dicts per event, the
generated writer framing a whole ``aitrace.Event``, the envelope copied into each). A block pays
the envelope, the id and the framing once per trace and batch; the columns are a few list
comprehensions; spans, levels, messages and loggers are tables of distinct values (a repeated
message is redacted and encoded once), attributes one column per name; the redactor walks the
tables and columns with its per-string caches; one encode.

The processor chain sees the block only when every processor in it reads blocks
(:func:`block_chain`): the redactor (it walks any mapping; a column is named like the field it
holds, so each string is scrubbed with the same plan as in a single event; a secret-named
attribute is blanked in every record that has it, status words kept as in an event), head sampling
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

import orjson
from aitrace.producers import events as ev
from aitrace.producers.redact import REDACTED, Redactor
from aitrace.producers.sampling import TraceSampler, must_keep
from aitrace.producers.secret_patterns import STATUS_WORDS
from aitrace.schemas.log_block import ERROR_COLUMNS, LOG_RECORD

Block = dict[str, Any]
_ENVELOPE = ("service", "service_version", "environment", "host", "pid", "run_id", "sampled", "labels")
_NUMBERS = frozenset({int, float, bool})


def block_chain(processors: list[Callable[[Block], Any]]) -> list[Callable[[Block], Any]] | None:
    """The chain to run on log blocks, or None when a processor in ``processors`` reads single events only."""
    chain: list[Callable[[Block], Any]] = []
    for processor in processors:
        if isinstance(processor, TraceSampler):
            chain.append(_Sampling(processor))
        elif isinstance(processor, Redactor):
            chain.append(_Redacting(processor))
        elif getattr(processor, "accepts_log_blocks", False) is True:
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


class _Redacting:
    """:class:`Redactor` for a log block, with the per-event rules for secret-named attributes.

    The redactor blanks a secret-named field whole, so its column comes back ``[REDACTED]`` in
    every record. Records that never had that attribute get their null back, and a status word
    (``auth: healthy``) stays, as it does in a single event; neither counts as a replacement.
    """

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def __call__(self, block: Block) -> Block:
        out = self.redactor(block)
        before, after = list(block["attributes"].values()), out["attributes"]
        if len(before) == len(after):
            for column, (name, redacted) in zip(before, list(after.items()), strict=True):
                if len(redacted) == len(column) and all(r == REDACTED for r in redacted):
                    after[name] = [_kept(b, r) for b, r in zip(column, redacted, strict=True)]
                    self.redactor.counts["field"] -= sum(1 for r in after[name] if r != REDACTED)
        return out


def _kept(value: str | None, redacted: str) -> str | None:
    """What a blanked column keeps of one record's value: its absence, or a status word."""
    if value is None or not value or value.strip().lower() in STATUS_WORDS:
        return value
    return redacted


def sample_block(sampler: TraceSampler, block: Block) -> Block:
    """The block when its trace is sampled; else its records that sampling must keep, marked unsampled."""
    if sampler.rate >= 1.0 or sampler.sampled(block["trace_id"]):
        return block
    n = len(block["time"])
    anomaly = block["attributes"].get("anomaly") or [None] * n
    levels, labels = block["level"], block["labels"]
    keep = [
        i
        for i, (level, flag) in enumerate(zip(block["level_index"], anomaly, strict=True))
        if must_keep(
            {"labels": labels, "payload": (LOG_RECORD, {"level": levels[level], "attributes": {"anomaly": flag}})}
        )
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
    if set(map(type, loggers)) - {str, type(None)}:
        return _slow_columns(rows, stats)
    columns = _columns([t for _, t, _, _, _ in rows], [c for _, _, c, _, _ in rows], levels, messages, loggers)
    columns["attributes"] = _attribute_columns(attributes, stats)
    for name in ERROR_COLUMNS:
        columns[name] = []
    return columns


def _slow_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    kept: list[ev.Queued] = []
    payloads: list[dict[str, Any]] = []
    for row in rows:
        try:
            payloads.append(ev.log_payload(row[3], stats))
        except (KeyError, TypeError, ValueError):
            stats["rejected_bad_event"] += 1
            continue
        kept.append(row)
    levels, messages, loggers = ([p[name] for p in payloads] for name in ("level", "message", "logger"))
    columns = _columns([t for _, t, _, _, _ in kept], [c for _, _, c, _, _ in kept], levels, messages, loggers)
    columns["attributes"] = _attribute_columns([p["attributes"] for p in payloads], stats)
    for name in ERROR_COLUMNS:
        column = [p[name] for p in payloads]
        columns[name] = [] if column.count(None) == len(column) else column
    return columns


def _interned(values: list[Any]) -> tuple[list[Any], list[int]]:
    """(distinct values in order of first use, the index of each value among them)."""
    table = list(dict.fromkeys(values))  # C loops: about half the time of a setdefault per value
    position = {v: i for i, v in enumerate(table)}
    return table, list(map(position.__getitem__, values))


def _columns(times: list[int], ctxs: list[Any], levels: list[str], messages: list[str], loggers: list[Any]) -> Block:
    span_ids, span_index = _interned([c.span_id for c in ctxs])
    parent_of = {c.span_id: c.parent_span_id for c in dict.fromkeys(ctxs)}  # few contexts: one per span
    parents = list(map(parent_of.__getitem__, span_ids))
    level_table, level_index = _interned(levels)
    message_table, message_index = _interned(messages)
    logger_table: list[str | None] = []
    logger_index: list[int] = []
    if loggers.count(None) != len(loggers):
        logger_table, logger_index = _interned(loggers)
        if None in logger_table:  # -1: no logger; the table holds names only
            none = logger_table.index(None)
            logger_table.pop(none)
            logger_index = [-1 if i == none else i - (i > none) for i in logger_index]
    return {
        "time": times,
        "span_id": span_ids,
        "parent_span_id": [] if parents.count(None) == len(parents) else parents,
        "span_index": span_index,
        "level": level_table,
        "level_index": level_index,
        "message": message_table,
        "message_index": message_index,
        "logger": logger_table,
        "logger_index": logger_index,
    }


def _attribute_columns(attributes: list[Any], stats: Counter[str]) -> dict[str, list[str | None]]:
    """One column per attribute name, a value per record (None where a record has no such attribute)."""
    names: set[Any] = set().union(*attributes)
    if not names:
        return {}
    if set(map(type, names)) != {str}:  # keys made text, as events.text_map does
        attributes = [{str(k): v for k, v in a.items()} if a else a for a in attributes]
        names = set().union(*attributes)
    columns: dict[str, list[str | None]] = {}
    for name in sorted(names):
        column = [a.get(name) if a else None for a in attributes]
        if None in column:  # absent (None), or present with the value None (text_value writes "null")
            pairs = zip(column, attributes, strict=True)
            column = [v if v is not None else "null" if a and name in a else None for v, a in pairs]
        columns[name] = _texts(column, stats)
    return columns


def _texts(column: list[Any], stats: Counter[str]) -> list[str | None]:
    """A column's values as :func:`events.text_value` writes them; numbers through one JSON call."""
    kinds = set(map(type, column))
    kinds.discard(type(None))
    if kinds <= {str}:
        return column
    if kinds <= _NUMBERS:
        try:
            tokens: list[str | None] = [*orjson.dumps(column).decode()[1:-1].split(",")]  # numbers hold no comma
        except TypeError:  # an int beyond 64 bits: text_value writes its repr
            pass
        else:
            if None not in column:
                return tokens
            return [None if v is None else t for v, t in zip(column, tokens, strict=True)]
    return [None if v is None else ev.text_value(v, stats) for v in column]


def take_rows(block: Block, keep: list[int]) -> Block:
    """A copy of ``block`` holding only the records at ``keep`` (in order); tables keep only what they use."""
    out = dict(block)
    out["time"] = [block["time"][i] for i in keep]
    span_table, out["span_index"] = _interned([block["span_index"][i] for i in keep])
    out["span_id"] = [block["span_id"][s] for s in span_table]
    if block["parent_span_id"]:
        out["parent_span_id"] = [block["parent_span_id"][s] for s in span_table]
    for table in ("level", "message"):
        used, out[f"{table}_index"] = _interned([block[f"{table}_index"][i] for i in keep])
        out[table] = [block[table][u] for u in used]
    if block["logger_index"]:
        old = [block["logger_index"][i] for i in keep]
        used, _ = _interned([i for i in old if i >= 0])
        new_of = {u: j for j, u in enumerate(used)}
        out["logger"] = [block["logger"][u] for u in used]
        out["logger_index"] = [new_of.get(i, -1) for i in old]
    for name in ERROR_COLUMNS:
        if block[name]:
            out[name] = [block[name][i] for i in keep]
    out["attributes"] = {k: [v[i] for i in keep] for k, v in block["attributes"].items()}
    return out


def halves(block: Block) -> list[Block]:
    """The block's records in two blocks (ids stay unique: the second is ``<block_id>.<first record>``)."""
    n = len(block["time"])
    half = n // 2
    first, second = take_rows(block, list(range(half))), take_rows(block, list(range(half, n)))
    second["block_id"] = f"{block['block_id']}.{half}"
    return [first, second]
