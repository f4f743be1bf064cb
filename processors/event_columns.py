"""A batch of single events (inference records, logs, spans) kept as the token walk's columns.

Older clients send events one at a time inside ``aitrace.Batch`` records. The token walk
(:mod:`aitrace.processors.fastevents`) already knows where every field of every event is; building
one dict per event from that (about 7 µs each, most of the worker's trace-keyed time) is needed only
for documents. With ``--no-index`` correlation wants a trace's time bounds, services, spans and
first error, the series side a model's latency, status and feature columns: read here a column at
a time from the tokens (:func:`aitrace.processors.correlate.apply_record`,
:func:`aitrace.processors.chunks.event_column_chunks`). :meth:`EventColumns.events` builds the dicts
for the document path, exactly as the walk's builders always did.

A batch is taken only when every event passes every check of :mod:`aitrace.processors.decode`
(checked here a column at a time, the same or stricter), every string is ASCII and every event is an
inference record, a log or a span. Otherwise :func:`take` returns None and the batch goes event by
event as before, which finds and reports exactly what is wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aitrace.processors import decode as checks  # decode imports this module too: names read at call time
from aitrace.processors import event_checks
from aitrace.processors.fastevents import MAX_FIELDS, Walked, layout

INFERENCE, LOG, SPAN = "aitrace.InferenceRecord", "aitrace.LogRecord", "aitrace.Span"
_FEW = 32  # distinct values compared as bytes (a batch has a few services, traces, models)


class EventColumns:
    """The tokens of one event batch, read a column at a time; each column is asked for by field name
    (``"service"``, ``"aitrace.Span.name"``) and a set of rows (event indices, in batch order)."""

    def __init__(self, walked: Walked) -> None:
        lay = layout()
        self.walked = walked
        self.batch_id = walked.data[walked.batch_id[0] : walked.batch_id[1]].decode("latin-1")
        self.n = walked.n
        self.t = walked.tok.reshape(walked.n, 2 * MAX_FIELDS)
        self.d = walked.data.decode("latin-1")  # ASCII only (see take): a slice is the string
        self.buf = np.frombuffer(walked.data, dtype=np.uint8)
        self.slots = lay.slots
        self.branch = {name: b for b, name in enumerate(lay.names)}
        self.kinds = self.t[:, 2 * (len(lay.event_codes) - 1)]
        self.all = np.arange(self.n)
        self._events: list[dict[str, Any]] | None = None

    def events(self) -> list[dict[str, Any]]:
        """The events as fastavro decodes them (built once)."""
        if self._events is None:
            batch = self.walked.batch()
            assert batch is not None  # ASCII only: every slice decodes
            self._events = batch["events"]
        return self._events

    def rows(self, kind: str) -> np.ndarray:
        """The rows of the events of payload ``kind``."""
        return np.flatnonzero(self.kinds == self.branch[kind])

    def split(self, field: str, rows: np.ndarray) -> dict[str, np.ndarray]:
        """``rows`` by the value of a string field: value -> its rows (in order), values in order of first
        appearance."""
        names, group = self.groups(field, rows)
        if len(names) <= 1:
            return dict(zip(names, [rows], strict=False))
        order = np.argsort(group, kind="stable")
        cuts = np.flatnonzero(np.diff(group[order])) + 1
        return dict(zip(names, np.split(rows[order], cuts), strict=True))

    def text(self, field: str, rows: np.ndarray) -> list[str]:
        """A string field's values at ``rows``."""
        s, d = self.slots[field], self.d
        return [d[a:b] for a, b in zip(self.t[rows, s].tolist(), self.t[rows, s + 1].tolist(), strict=True)]

    def groups(self, field: str, rows: np.ndarray) -> tuple[list[str], np.ndarray]:
        """A string field's distinct values at ``rows`` in order of first appearance, and each row's
        value as an index into them; compared as bytes when they are few, else as strings."""
        s = self.slots[field]
        group, first, k = event_checks.distinct(self.buf, self.t[rows, s], self.t[rows, s + 1], _FEW)
        if k >= 0:
            return self.text(field, rows[first[:k]]), group
        index: dict[str, int] = {}
        numbers = [index.setdefault(value, len(index)) for value in self.text(field, rows)]
        return list(index), np.array(numbers, dtype=np.int64)

    def opt_text(self, field: str, rows: np.ndarray) -> list[str | None]:
        """A ``null|string`` field's values at ``rows`` (None: null)."""
        s, d = self.slots[field], self.d
        pairs = zip(self.t[rows, s].tolist(), self.t[rows, s + 1].tolist(), strict=True)
        return [None if a < 0 else d[a:b] for a, b in pairs]

    def equals(self, field: str, rows: np.ndarray, value: str) -> np.ndarray:
        """Where a string field at ``rows`` is ``value`` (bool), compared as bytes."""
        s, word = self.slots[field], np.frombuffer(value.encode(), dtype=np.uint8)
        return event_checks.equal_to(self.buf, self.t[rows, s], self.t[rows, s + 1], word)

    def present(self, field: str, rows: np.ndarray) -> np.ndarray:
        """Where a ``null|string`` field at ``rows`` is not null (bool)."""
        return self.t[rows, self.slots[field]] >= 0

    def long(self, field: str, rows: np.ndarray) -> np.ndarray:
        """A long field's values at ``rows`` (int64)."""
        return self.t[rows, self.slots[field]]

    def double(self, field: str, rows: np.ndarray) -> np.ndarray:
        """A double field's values at ``rows`` (float64)."""
        return self.walked.doubles[self.t[rows, self.slots[field]]]

    def opt_double(self, field: str, rows: np.ndarray) -> np.ndarray:
        """A ``null|double`` field's values at ``rows`` (float64), NaN where null."""
        s = self.slots[field]
        present = self.t[rows, s + 1] == 1
        values = np.full(len(rows), np.nan)
        values[present] = self.walked.doubles[self.t[rows[present], s]]
        return values

    def map_entries(self, field: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A map field at ``rows``: entry counts, and where each row's entries start in the walk's map slots."""
        s = self.slots[field]
        return self.t[rows, s], self.t[rows, s + 1]


def take(walked: Walked, max_time: int) -> EventColumns | None:
    """The batch as columns when it is of the kinds taken here and every event passes every check; else None."""
    if not walked.ascii:
        return None
    c = EventColumns(walked)
    kinds = (c.branch[INFERENCE], c.branch[LOG], c.branch[SPAN])
    buf = np.frombuffer(walked.data, dtype=np.uint8)
    if not event_checks.valid(
        buf, c.t, walked.doubles, c.slots, kinds, checks.STATUSES, (checks.MIN_TIME_US, max_time)
    ):
        return None
    levels = set(c.text(f"{LOG}.level", c.rows(LOG)))
    return c if all(level.lower() in checks.LOG_LEVELS for level in levels) else None
