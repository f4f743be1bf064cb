"""The client queues a log record's fields as a tuple (events.LOG_FIELDS), no longer as a dict: the records it
sends are byte for byte those of the code before (b37389f), as blocks (a copy of the old column builder below, fed
the dicts the client queued then) and as single events (the per-event chain).

Where the time went (bench/bench_sender.py, 20,000 logs): the caller built a 5-key dict per call (about 0.15 µs
of its ~1 µs with the collector's share), the exporter looked each field up by name per record; a tuple is
cheaper to build, to traverse for the collector and to take apart (one zip)."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, deque
from types import SimpleNamespace
from typing import Any

import pytest
from aitrace.producers import blocks, log_blocks
from aitrace.producers import events as ev
from aitrace.producers import tracecontext as tc
from aitrace.producers.blocks import Block, block_chain, new_block
from aitrace.producers.client import Client
from aitrace.producers.config import Settings
from aitrace.producers.exporter import Exporter
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler
from aitrace.producers.transport import MemoryTransport
from aitrace.schemas.codec import AvroSerializer
from aitrace.schemas.log_block import ERROR_COLUMNS, LOG_SHAPE
from test_exporter import _ENVELOPE
from test_log_blocks import _CHILD, _TRACE

_ENCODE = AvroSerializer("aitrace.LogBlock")


# -- the column builder before the change (b37389f), verbatim but for names: it read dicts


def _old_log_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    fields = blocks.row_fields(rows)
    try:
        levels = [f["level"] for f in fields]
        messages = [f["message"] for f in fields]
        loggers = [f["logger"] for f in fields]
        excs = [f["exc"] for f in fields]
        attributes = [f["attributes"] for f in fields]
    except (KeyError, TypeError):
        return _old_slow_columns(rows, stats)
    if set(map(type, levels)) != {str} or set(map(type, messages)) != {str} or excs.count(None) != len(excs):
        return _old_slow_columns(rows, stats)
    if set(map(type, loggers)) - {str, type(None)}:
        return _old_slow_columns(rows, stats)
    columns = log_blocks._columns(rows, levels, messages, loggers)
    columns["attributes"] = blocks.text_columns(attributes, stats)
    for name in ERROR_COLUMNS:
        columns[name] = []
    return columns


def _old_slow_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    kept, payloads = blocks.built(rows, ev.log_payload, stats)
    levels, messages, loggers = ([p[name] for p in payloads] for name in ("level", "message", "logger"))
    columns = log_blocks._columns(kept, levels, messages, loggers)
    columns["attributes"] = blocks.text_columns([p["attributes"] for p in payloads], stats)
    for name in ERROR_COLUMNS:
        columns[name] = blocks.optional_column([p[name] for p in payloads])
    return columns


def _old_queued_fields(fields: tuple[Any, ...]) -> dict[str, Any]:
    """What ClientEvents.log queued before, from what it queues now (the same objects): a dict."""
    level, message, logger, attributes, exc = fields
    return {"level": level, "message": message, "logger": logger, "attributes": attributes, "exc": exc}


# -- calls of every shape: unicode, secrets the redactor must remove, None, huge texts, odd values, exceptions


def _error() -> BaseException:
    try:
        raise ValueError("token=sk-live-0123456789abcdef0123 failed for ünïcødé")
    except ValueError as exc:
        return exc


_MESSAGES = (
    "batch done",
    "naïve café ✓ 日本語 🚀",
    "login password=hunter2hunter2 for alice@example.com",
    "api key AKIAIOSFODNN7EXAMPLE and ghp_0123456789abcdefghijABCDEFGHIJ012345",
    "card 4111 1111 1111 1111 / phone +1 415 555 2671",
    "x" * 200_000,
    "ｐａｓｓｗｏｒｄ＝ｓｅｃｒｅｔｓｅｃｒｅｔ",  # full-width: the redactor's plain variant
    "short",
)


def _call(i: int, *, odd: bool) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(positional, keyword) arguments of one client.log call."""
    level = ("info", "WARN", "error", "Debug", "critical")[i % 5]
    message: Any = _MESSAGES[i % len(_MESSAGES)]
    kwargs: dict[str, Any] = {"batch": i, "user": f"user-{i % 7}", "note": None if i % 3 else "ok"}
    if i % 4 == 1:
        kwargs["password"] = f"pw-{i}-correct-horse"  # secret-named: blanked
        kwargs["email"] = f"someone{i}@example.org"
    if i % 6 == 2:
        kwargs["logger"] = "svc.ünï"
    if odd:
        if i % 5 == 0:
            level = 30  # a numeric level
        if i % 7 == 3:
            message = {"nested": ["secret=abcdefabcdefabcdef", i]}  # not text: made text, by the slow path
        if i % 9 == 4:
            kwargs["exc_info"] = _error()
        kwargs["ratio"] = float("nan") if i % 2 else 1e300
        kwargs["blob"] = b"\x00\xff bytes"
        kwargs["big"] = 2**70
    return (level, message), kwargs


def _queued_by_client(calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[ev.Queued]:
    exporter: Any = SimpleNamespace(sleeping=False, wake=threading.Event())
    client = Client.__new__(Client)
    client.settings = Settings(service="unit")
    client._queue, client._qmax, client._run_id, client._closed, client._exporter = deque(), 10**6, "r", False, exporter
    client._root = _TRACE
    for i, (args, kwargs) in enumerate(calls):
        token = tc.push(_CHILD if i % 2 else _TRACE)
        try:
            client.log(*args, **kwargs)
        finally:
            tc.pop(token)
    return list(client._queue)


def _as_before(queued: list[ev.Queued]) -> list[ev.Queued]:
    return [(k, t, c, _old_queued_fields(f), u) for k, t, c, f, u in blocks.unflattened(queued)]


def _block_digests(rows: list[ev.Queued], build: Any, redactor: Redactor, rate: float) -> tuple[list[str], Counter]:
    stats: Counter[str] = Counter()
    chain = block_chain([TraceSampler(rate), redactor], LOG_SHAPE, log_blocks.keep_fields)
    assert chain is not None
    digests = []
    for lo in range(0, len(rows), 16):  # blocks of 16 records: a mix of fast and slow ones
        block = new_block(f"b{lo}", _TRACE.trace_id, dict(_ENVELOPE), build(rows[lo : lo + 16], stats))
        try:
            for processor in chain:
                block = processor(block)
        except ev.DropEvent:
            digests.append("dropped")
            continue
        digests.append(hashlib.sha256(_ENCODE(block)).hexdigest())
    return digests, stats


@pytest.mark.parametrize("odd", [False, True])
@pytest.mark.parametrize("rate", [1.0, 0.0])
def test_the_clients_tuples_make_the_log_blocks_the_old_dicts_made(odd: bool, rate: float) -> None:
    calls = [_call(i, odd=odd) for i in range(96)]
    queued = _queued_by_client(calls)
    assert {len(item) for item in queued} == {5 + len(ev.LOG_FIELDS)}  # queued flat (events.Queued)
    new_redactor, old_redactor = Redactor(hash_key="k"), Redactor(hash_key="k")
    new, new_stats = _block_digests(queued, log_blocks.log_columns, new_redactor, rate)
    old, old_stats = _block_digests(_as_before(queued), _old_log_columns, old_redactor, rate)
    assert new == old and new_stats == old_stats
    assert new_redactor.counts == old_redactor.counts
    assert new_redactor.counts["field"] > 0  # the secrets were there, and taken out alike


class _PerEvent:
    """A processor without ``accepts_log_blocks``: logs leave one ``aitrace.Event`` at a time."""

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        return item


def _sent_one_at_a_time(rows: list[ev.Queued]) -> tuple[list[str], Counter[str]]:
    settings = Settings(service="unit")
    stats: Counter[str] = Counter()
    transport = MemoryTransport(stats)
    chain = [TraceSampler(1.0), Redactor(hash_key="k"), _PerEvent()]
    exporter = Exporter(settings, deque(rows), dict(_ENVELOPE), chain, "p", stats, transport)
    exporter._take()
    exporter._send_pending()
    return [hashlib.sha256(r.value).hexdigest() for r in transport.records], stats


def test_single_log_events_are_those_the_old_dicts_made() -> None:
    queued = _queued_by_client([_call(i, odd=True) for i in range(48)])
    new, new_stats = _sent_one_at_a_time(queued)
    old, old_stats = _sent_one_at_a_time(_as_before(queued))
    assert new == old and new_stats == old_stats and new_stats["sent"] == 48


def test_a_log_tuple_reads_back_as_the_dict_the_client_queued_before() -> None:
    ((queued),) = _queued_by_client([(("warn", "m"), {"logger": "l", "a": 1})])
    assert ev.fields_dict(ev.LOG, queued[5:]) == {
        "level": "warning", "message": "m", "logger": "l", "attributes": {"a": 1}, "exc": None,
    }  # fmt: skip


def test_hand_queued_log_dicts_and_bad_tuples_still_build_or_are_counted() -> None:
    good = {"level": "info", "message": "by hand", "logger": None, "attributes": {"k": "v"}, "exc": None}
    rows = [(ev.LOG, 1, _TRACE, good, False), (ev.LOG, 2, _TRACE, ("info", "too short"), False)]
    stats: Counter[str] = Counter()
    columns = log_blocks.log_columns(rows, stats)
    assert columns["message"] == ["by hand"] and stats["rejected_bad_event"] == 1
