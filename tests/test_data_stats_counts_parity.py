"""client.data_stats queues None for no class counts, no longer an empty dict (one object less per queued batch for
the garbage collector to count and walk): the records are byte for byte those of the code before (b37389f), which
queued ``dict(class_counts or {})``, as blocks and as single events; the counts are still the caller's at the call."""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from typing import Any

import pytest
from aitrace.producers import blocks
from aitrace.producers import events as ev
from aitrace.producers.config import Settings
from aitrace.producers.exporter import Exporter
from aitrace.producers.redact import Redactor
from aitrace.producers.sampling import TraceSampler
from aitrace.producers.transport import MemoryTransport
from test_data_stats_blocks import _features
from test_exporter import _ENVELOPE
from test_log_tuple_parity import _PerEvent
from test_queued_tuple_parity import _queued_by_client

_COUNTS: tuple[Any, ...] = (None, {}, Counter(), {"fraud": 3, "ok": 997}, {1: 2.0, "pässwörd": 1}, Counter(a=0))


def _calls(n: int) -> list[dict[str, Any]]:
    return [
        {"stage": "ingest", "dataset": "tx", "features": _features(i, i % 3 == 0), "row_count": 1000 + i,
         "class_counts": _COUNTS[i % len(_COUNTS)], "label": "is_fraud" if i % 2 else None, "batch": f"b-{i}"}
        for i in range(n)
    ]  # fmt: skip


def _as_before(queued: list[ev.Queued], calls: list[dict[str, Any]]) -> list[ev.Queued]:
    """The items the client queued before: the same tuple but ``dict(class_counts or {})``."""
    out = []
    for (kind, t, ctx, fields, urgent), call in zip(blocks.unflattened(queued), calls, strict=True):
        old = list(fields)
        old[ev.DATA_FIELDS.index("class_counts")] = dict(call["class_counts"] or {})
        out.append((kind, t, ctx, tuple(old), urgent))
    return out


def _sent(rows: list[ev.Queued], per_event: bool) -> tuple[list[str], Counter[str]]:
    settings = Settings(service="unit", batch_max_events=7)  # several blocks, a count of each shape in most
    stats: Counter[str] = Counter()
    transport = MemoryTransport(stats)
    processors: list[Any] = [TraceSampler(1.0), Redactor(hash_key="k")]  # the default chain, its hash key fixed
    exporter = Exporter(
        settings, deque(rows), dict(_ENVELOPE), [*processors, _PerEvent()] if per_event else processors, "p", stats,
        transport,
    )  # fmt: skip
    exporter._take()
    exporter._send_pending()
    return [hashlib.sha256(r.value).hexdigest() for r in transport.records], stats


@pytest.mark.parametrize("per_event", [False, True], ids=["blocks", "single events"])
def test_no_counts_queued_as_none_sends_the_records_an_empty_dict_sent(per_event: bool) -> None:
    calls = _calls(36)
    queued = _queued_by_client(calls, "data_stats")
    counts = [item[5 + ev.DATA_FIELDS.index("class_counts")] for item in queued]
    assert counts.count(None) == 18  # None, {} and an empty Counter: nothing is allocated for them
    new, new_stats = _sent(queued, per_event)
    old, old_stats = _sent(_as_before(queued, calls), per_event)
    assert new == old and new_stats == old_stats and new_stats["sent"] == 36


def test_the_counts_are_the_callers_at_the_call() -> None:
    counts = {"fraud": 3}
    (queued,) = _queued_by_client([{"stage": "s", "dataset": "d", "class_counts": counts}], "data_stats")
    counts["fraud"] = 99
    counts["late"] = 1
    assert queued[5 + ev.DATA_FIELDS.index("class_counts")] == {"fraud": 3}
