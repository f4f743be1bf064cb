"""What ``aitrace report`` reads: the index families paged with ``search_after``, and the queries per scope.

The documents are read as :mod:`aitrace.sinks.documents` writes them; :func:`aitrace.sinks.hit_rows.get` walks their
nested ECS paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aitrace.sinks.hit_rows import get

TRAINING_METRICS = ("loss", "grad_norm", "lr", "accuracy")
DEFAULT_LIMIT = 50_000  # documents per family; the page says when it was cut
PAGE_SIZE = 2_000

Doc = dict[str, Any]


def _ms(iso: str | None) -> float | None:
    """ISO 8601 (as the documents write ``@timestamp``) -> epoch milliseconds."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


class Fetcher:
    """Pages through one index family with ``search_after`` on a unique sort key."""

    def __init__(self, es: Any, prefix: str, limit: int = DEFAULT_LIMIT, since: str | None = None) -> None:
        self.es = es
        self.prefix = prefix
        self.limit = limit
        self.since = since  # ISO 8601: only documents at or after it
        self.notes: list[str] = []

    def fetch(self, family: str, filters: list[Doc], sort_keys: Sequence[str], what: str) -> list[Doc]:
        """Up to ``limit`` documents matching every filter, oldest first."""
        index = f"{self.prefix}-{family}-*"
        if self.since:
            filters = [*filters, {"range": {"@timestamp": {"gte": self.since}}}]
        query = {"bool": {"filter": filters}} if filters else {"match_all": {}}
        sort = [{key: "asc"} for key in sort_keys]
        docs: list[Doc] = []
        after: list[Any] | None = None
        while True:
            size = min(PAGE_SIZE, self.limit - len(docs))
            hits = self._page(index, query, sort, max(size, 1), after)
            if size == 0:  # at the limit: one probe says whether anything was left unread
                if hits:
                    self.notes.append(f"only the first {self.limit} {what} documents were read")
                return docs
            docs.extend(h["_source"] for h in hits)
            if len(hits) < size or not hits[-1].get("sort"):
                return docs
            after = hits[-1]["sort"]

    def _page(self, index: str, query: Doc, sort: list[Doc], size: int, after: list[Any] | None) -> list[Doc]:
        kwargs: dict[str, Any] = {"search_after": after} if after is not None else {}
        answer = self.es.search(
            index=index,
            query=query,
            sort=sort,
            size=size,
            ignore_unavailable=True,
            allow_no_indices=True,
            **kwargs,
        )
        return list(answer["hits"]["hits"])


def _term(name: str, value: Any) -> Doc:
    return {"term": {name: value}}


def training_docs(fetcher: Fetcher, runs: Sequence[str]) -> list[Doc]:
    filters = [_term("aitrace.kind", "metric"), {"terms": {"aitrace.metric.name": list(TRAINING_METRICS)}}]
    filters += _run_filters(runs)
    keys = ("@timestamp", "event.id", "aitrace.metric.name")
    return fetcher.fetch("events", filters, keys, "training metric")


def run_docs(fetcher: Fetcher, runs: Sequence[str]) -> list[Doc]:
    """The runs' lifecycle events (start with config, end with status), oldest first."""
    filters = [_term("aitrace.kind", "run"), *_run_filters(runs)]
    return fetcher.fetch("events", filters, ("@timestamp", "event.id"), "run lifecycle")


def _run_filters(runs: Sequence[str]) -> list[Doc]:
    return [{"terms": {"aitrace.run_id": list(runs)}}] if runs else []


def alert_docs(fetcher: Fetcher, runs: Sequence[str], model: str | None = None) -> list[Doc]:
    filters = _run_filters(runs) + ([_term("aitrace.alert.model", model)] if model else [])
    return fetcher.fetch("alerts", filters, ("@timestamp", "event.id"), "alert")


@dataclass
class _Scope:
    """The documents one report reads: alerts, training metrics, data stats, inference, open traces, runs."""

    alerts: list[Doc]
    training: list[Doc] = field(default_factory=list)
    data: list[Doc] = field(default_factory=list)
    inference: list[Doc] = field(default_factory=list)
    traces: list[Doc] = field(default_factory=list)
    runs: list[Doc] = field(default_factory=list)  # run lifecycle events

    def empty(self) -> bool:
        return not (self.alerts or self.training or self.data or self.inference or self.traces or self.runs)

    def run_ids(self) -> list[str]:
        """Every training run a training metric or lifecycle event names, sorted."""
        return sorted({str(r) for d in [*self.training, *self.runs] if (r := get(d, "aitrace.run_id"))})


def _fetch_scope(fetcher: Fetcher, runs: Sequence[str], model: str | None) -> _Scope:
    """A run has no inference records and a model no training, data or run documents: neither is fetched."""
    docs = _Scope(alert_docs(fetcher, runs, model))
    if not model:
        docs.training = training_docs(fetcher, runs)
        docs.runs = run_docs(fetcher, runs)
        data_filters = [_term("aitrace.kind", "data"), *_run_filters(runs)]
        docs.data = fetcher.fetch("events", data_filters, ("@timestamp", "event.id"), "data stats")
    if not runs:
        inference_filters = [_term("aitrace.kind", "inference")] + (
            [_term("aitrace.inference.model", model)] if model else []
        )
        docs.inference = fetcher.fetch("events", inference_filters, ("@timestamp", "event.id"), "inference")

    trace_filters = [_term("aitrace.trace.complete", False), *_run_filters(runs)]
    docs.traces = fetcher.fetch("traces", trace_filters, ("@timestamp", "trace.id"), "trace")
    if model:
        model_traces = {get(d, "trace.id") for d in docs.inference}
        docs.traces = [t for t in docs.traces if get(t, "trace.id") in model_traces]
    return docs
