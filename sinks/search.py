"""``aitrace search``'s query: a request -> an Elasticsearch ``bool`` query -> the hits.

``aitrace search QUERY`` runs a Lucene ``query_string`` (``*`` or nothing: everything) over one
index family, narrowed by field filters (``--service``, ``--level``, ``--trace``, ``--run``) and
a time range on ``@timestamp`` (``--since 1h``, ``--until 2026-11-26T12:00``). It prints the
newest ``-n`` hits in time order (rows: :mod:`aitrace.sinks.hit_rows`). Client errors become
:class:`QueryError` (the query or an option cannot be used) or :class:`SearchFailed` (the
server failed or is unreachable).

Field names are those :mod:`aitrace.sinks.documents` writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aitrace.sinks.documents import ALERTS, EVENTS, FAMILIES, TRACES
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TransportError
from elasticsearch import ApiError, Elasticsearch

Source = dict[str, Any]

# Levels from least to most severe, for "this level or worse"; synonyms share a rank.
LOG_LEVELS: dict[str, int] = {
    "trace": 0,
    "debug": 1,
    "info": 2,
    "notice": 2,
    "warn": 3,
    "warning": 3,
    "error": 4,
    "critical": 5,
    "fatal": 5,
}
ALERT_SEVERITIES: dict[str, int] = {"info": 2, "warning": 3, "critical": 5}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")


class QueryError(ValueError):
    """An option or a query that cannot be used; exit status 2."""


class SearchFailed(RuntimeError):
    """The search server failed or could not be reached; exit status 1."""


# -- building the query


def parse_time(text: str, now: datetime | None = None) -> str:
    """``1h`` / ``30m`` / ``2d`` / ``1w`` ago, ``now``, or an ISO date/time -> ISO 8601 UTC.

    Computed here rather than sent as date math, so the range means the same on every server.
    A time without a zone is UTC.
    """
    now = now or datetime.now(UTC)
    value = text.strip()
    if value == "now":
        return iso_utc(now)
    try:
        match = _RELATIVE.match(value)
        if match:
            return iso_utc(now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)]))
        return iso_utc(datetime.fromisoformat(value))
    except OverflowError:  # 99999999999d ago, 9999-12-31T23:59:59-01:00 (past year 9999 in UTC)
        raise QueryError(f"time {text!r} is out of range (years 1 to 9999 in UTC)") from None
    except ValueError:
        raise QueryError(f"cannot read time {text!r}: use 15m, 1h, 2d, 1w, now, or an ISO date/time") from None


def iso_utc(when: datetime) -> str:
    """``when`` (naive: UTC) as the index compares times: ``0001-01-01T00:00:00.000000Z`` (``%Y`` wrote year 1
    as ``1``, which the server refused); OverflowError past the years 1 to 9999 in UTC."""
    when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    return when.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _at_least(ranks: dict[str, int], level: str) -> list[str]:
    """Every spelling of ``level`` or worse (lower, UPPER, Title: keywords are case-sensitive)."""
    rank = ranks.get(level.lower())
    if rank is None:
        raise QueryError(f"unknown level {level!r}; use one of {', '.join(ranks)}")
    words = [w for w, r in ranks.items() if r >= rank]
    return sorted({v for w in words for v in (w, w.upper(), w.title())})


@dataclass(frozen=True)
class SearchRequest:
    """What ``aitrace search`` asks for; :meth:`body` turns it into a query."""

    family: str = EVENTS
    query: str | None = None
    since: str | None = None
    until: str | None = None
    service: str | None = None
    level: str | None = None
    trace_id: str | None = None
    run_id: str | None = None
    size: int = 20

    def query_body(self, now: datetime | None = None) -> dict[str, Any]:
        """A ``bool`` query: the query string as ``must``, every option as a ``filter``."""
        if self.family not in FAMILIES:
            raise QueryError(f"unknown index {self.family!r}; use one of {', '.join(FAMILIES)}")
        filters: list[dict[str, Any]] = []
        when: dict[str, str] = {}
        if self.since:
            when["gte"] = parse_time(self.since, now)
        if self.until:
            when["lte"] = parse_time(self.until, now)
        if when:
            filters.append({"range": {"@timestamp": when}})
        if self.service:
            field_ = "aitrace.trace.services" if self.family == TRACES else "service.name"
            filters.append({"term": {field_: self.service}})
        if self.trace_id:
            filters.append({"term": {"trace.id": self.trace_id.lower()}})
        if self.run_id:
            filters.append({"term": {"aitrace.run_id": self.run_id}})
        if self.level:
            filters.extend(self._level_filter(self.level))
        must: list[dict[str, Any]] = []
        if self.query and self.query.strip() not in ("", "*"):
            must.append({"query_string": {"query": self.query, "default_operator": "AND"}})
        return {"bool": {"must": must or [{"match_all": {}}], "filter": filters}}

    def _level_filter(self, level: str) -> list[dict[str, Any]]:
        if self.family == EVENTS:
            return [{"terms": {"log.level": _at_least(LOG_LEVELS, level)}}]
        if self.family == ALERTS:
            rank = LOG_LEVELS.get(level.lower())
            if rank is None:
                raise QueryError(f"unknown level {level!r}; use one of {', '.join(ALERT_SEVERITIES)}")
            wanted = [s for s, r in ALERT_SEVERITIES.items() if r >= rank]
            return [{"terms": {"aitrace.alert.severity": wanted or ["critical"]}}]
        # traces have no level; "error" or worse means the traces that failed
        if LOG_LEVELS.get(level.lower(), -1) >= LOG_LEVELS["error"]:
            return [{"term": {"aitrace.trace.has_error": True}}]
        if level.lower() not in LOG_LEVELS:
            raise QueryError(f"unknown level {level!r}; use one of {', '.join(LOG_LEVELS)}")
        return []


@dataclass
class SearchResult:
    total: int
    hits: list[tuple[str, str, Source]]  # (index, id, source), in time order


def pattern(prefix: str, family: str) -> str:
    return f"{prefix}-{family}-*"


def run_search(client: Elasticsearch, prefix: str, request: SearchRequest) -> SearchResult:
    """The newest ``request.size`` hits, returned oldest first (as a log reads)."""
    resp = call_client(
        client.search,
        index=pattern(prefix, request.family),
        query=request.query_body(),
        sort=[{"@timestamp": {"order": "desc"}}],
        size=request.size,
        track_total_hits=True,
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    hits = [(h["_index"], h["_id"], h.get("_source") or {}) for h in resp["hits"]["hits"]]
    # The index sorts @timestamp to the millisecond (type date), so the hits of one millisecond
    # came back in any order (a training run's steps read 159, 164, 163, 162); the source keeps
    # microseconds. A stable sort leaves the server's order wherever those do not decide.
    return SearchResult(total_hits(resp), sorted(reversed(hits), key=lambda hit: _micros(hit[2])))


def _micros(source: Source) -> datetime:
    """A hit's full-precision @timestamp; the earliest time when it has none it can read."""
    try:
        when = datetime.fromisoformat(str(source.get("@timestamp")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)  # naive and aware do not compare


def total_hits(resp: Any) -> int:
    total = resp["hits"].get("total", 0)
    return int(total["value"] if isinstance(total, dict) else total)


def call_client(method: Any, **kwargs: Any) -> Any:
    """Call the client; turn its errors into :class:`QueryError` / :class:`SearchFailed` lines."""
    try:
        return method(**kwargs)
    except (TransportConnectionError, ConnectionTimeout) as exc:
        raise SearchFailed(f"search server unreachable: {exc.message}") from exc
    except ApiError as exc:
        reason = _api_reason(exc)
        if exc.meta.status == 400:
            raise QueryError(f"the search server refused the query: {reason}") from exc
        raise SearchFailed(f"the search server answered HTTP {exc.meta.status}: {reason}") from exc
    except TransportError as exc:
        raise SearchFailed(f"search failed: {exc.message}") from exc


def _api_reason(exc: ApiError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    if isinstance(error, dict):
        causes = error.get("root_cause") or [error]
        reason = causes[0].get("reason") if isinstance(causes[0], dict) else None
        return str(reason or error.get("type") or exc.message)
    return str(error or exc.message)


__all__ = [
    "ALERT_SEVERITIES",
    "LOG_LEVELS",
    "QueryError",
    "SearchFailed",
    "SearchRequest",
    "SearchResult",
    "Source",
    "call_client",
    "parse_time",
    "pattern",
    "run_search",
    "total_hits",
]
