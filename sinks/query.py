"""``aitrace search`` and ``aitrace trace``: answer from the index, in the terminal.

``aitrace search QUERY`` runs a Lucene ``query_string`` (``*`` or nothing: everything) over one
index family, narrowed by field filters (``--service``, ``--level``, ``--trace``, ``--run``) and
a time range on ``@timestamp`` (``--since 1h``, ``--until 2026-11-26T12:00``). It prints the
newest ``-n`` hits in time order, one readable row each (time, service, level or kind,
message or title, trace id), or their ``_source`` as JSON lines with ``--json``.

``aitrace trace TRACE_ID`` reads the assembled trace document (``<prefix>-traces-*``, ``_id`` =
trace id), the events that carry its ``trace.id`` and the alerts that name it, and prints the
span tree (indentation, service, start offset, duration, status; ``*`` marks the critical
path), then the events and the alerts. A trace that the processors have not assembled yet
(still open) is drawn from its span events.

Field names are those :mod:`aitrace.sinks.documents` writes. Failures are one line on stderr
and a non-zero exit: 1 when the server is unreachable or the trace is unknown, 2 for a query
the server cannot parse or an option that makes no sense.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aitrace.producers.config import Settings
from aitrace.sinks.documents import ALERTS, EVENTS, FAMILIES, TRACES
from aitrace.sinks.es import SearchUnavailable, make_sync_client
from aitrace.sinks.terminal import use_colour
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

_RED, _YELLOW, _BOLD, _DIM, _RESET = "\033[31m", "\033[33m", "\033[1m", "\033[2m", "\033[0m"


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
        return _iso(now)
    match = _RELATIVE.match(value)
    if match:
        return _iso(now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)]))
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(f"cannot read time {text!r}: use 15m, 1h, 2d, 1w, now, or an ISO date/time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return _iso(when)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    resp = _call(
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
    return SearchResult(_total(resp), list(reversed(hits)))


def _total(resp: Any) -> int:
    total = resp["hits"].get("total", 0)
    return int(total["value"] if isinstance(total, dict) else total)


def _call(method: Any, **kwargs: Any) -> Any:
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


# -- presentation helpers


def get(source: Source, dotted: str, default: Any = None) -> Any:
    """``get(doc, "service.name")``; also reads flat keys with dots, as some writers send them."""
    if dotted in source:
        return source[dotted]
    node: Any = source
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def iso_to_micros(text: str | None) -> int | None:
    when = parse_iso(text)
    return None if when is None else int(when.timestamp() * 1_000_000)


def show_time(text: str | None) -> str:
    """``2026-11-26 15:30:12.123Z`` (milliseconds), or the raw text when it is not a date."""
    when = parse_iso(text)
    if when is None:
        return text or "-"
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def show_duration(micros: float | None) -> str:
    """``850µs``, ``12.3ms``, ``1.23s``, ``2m03s``."""
    if micros is None:
        return "-"
    if micros < 1_000:
        return f"{micros:.0f}µs"
    if micros < 1_000_000:
        return f"{micros / 1_000:.3g}ms"
    if micros < 60_000_000:
        return f"{micros / 1_000_000:.3g}s"
    minutes, seconds = divmod(micros / 1_000_000, 60)
    return f"{minutes:.0f}m{seconds:02.0f}s"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _event_text(doc: Source) -> str:
    """What an event says, for the kinds that carry no ``message``."""
    kind = get(doc, "aitrace.kind")
    if kind == "metric":
        m = get(doc, "aitrace.metric", {})
        value = m.get("value") if m.get("value") is not None else m.get("nonfinite")
        text = f"{m.get('name')}={_number(value)} step={m.get('step')}"
        return text + (f" (rollup of {m.get('count')})" if m.get("rollup") else "")
    if kind == "inference":
        i = get(doc, "aitrace.inference", {})
        parts = [f"{i.get('model') or '?'}", f"latency={_number(i.get('latency_ms'))}ms", f"status={i.get('status')}"]
        if i.get("prediction") is not None:
            parts.append(f"prediction={i['prediction']}")
        if i.get("confidence") is not None:
            parts.append(f"confidence={_number(i['confidence'])}")
        return " ".join(parts)
    if kind == "span":
        s = get(doc, "aitrace.span", {})
        duration_ns = get(doc, "event.duration")
        duration = show_duration(duration_ns / 1000 if duration_ns is not None else None)
        return f"span {s.get('name')} {duration} {s.get('status')}"
    if kind == "data":
        d = get(doc, "aitrace.data", {})
        return f"data {d.get('stage')} {d.get('dataset')} rows={d.get('row_count')}"
    if kind == "resource":
        r = get(doc, "aitrace.resources", {})
        return f"cpu={_number(r.get('cpu_percent'))}% rss={r.get('memory_rss_bytes')}"
    if kind == "run":
        return f"run {get(doc, 'aitrace.run.status')}"
    if kind == "ground_truth":
        return f"label={get(doc, 'aitrace.ground_truth.label')} for {get(doc, 'aitrace.inference.request_id')}"
    return ""


def event_row(doc: Source) -> tuple[str, str, str, str, str]:
    """(time, service, level-or-kind, text, trace id) of an event document."""
    level = get(doc, "log.level") or get(doc, "aitrace.kind") or get(doc, "event.dataset") or "-"
    text = get(doc, "message") or _event_text(doc)
    error = get(doc, "error.message")
    if error and error not in text:
        text = f"{text}  error: {error}" if text else f"error: {error}"
    return (show_time(get(doc, "@timestamp")), get(doc, "service.name") or "-", level, text, get(doc, "trace.id") or "")


def trace_row(doc: Source) -> tuple[str, str, str, str, str]:
    t = get(doc, "aitrace.trace", {})
    state = "error" if t.get("has_error") else ("trace" if t.get("complete", True) else "incomplete")
    text = f"{t.get('root_name') or '?'} {show_duration(t.get('duration_us'))} spans={t.get('span_count')}"
    text += f" services={','.join(t.get('services') or [])}"
    if t.get("first_error"):
        text += f"  error: {t['first_error']}"
    return (show_time(get(doc, "@timestamp")), get(doc, "service.name") or "-", state, text, get(doc, "trace.id") or "")


def alert_row(doc: Source) -> tuple[str, str, str, str, str]:
    a = get(doc, "aitrace.alert", {})
    text = f"{a.get('title') or get(doc, 'message')} [{a.get('state', 'open')} v{a.get('version', 1)}]"
    evidence = " ".join(
        f"{name}={_number(a[name])}" for name in ("statistic", "threshold", "score") if a.get(name) is not None
    )
    if evidence:
        text += f"  {evidence}"
    return (
        show_time(get(doc, "@timestamp")),
        get(doc, "service.name") or "-",
        a.get("severity") or "-",
        text,
        get(doc, "trace.id") or "",
    )


_ROWS = {EVENTS: event_row, TRACES: trace_row, ALERTS: alert_row}


def format_rows(rows: Iterable[tuple[str, str, str, str, str]], colour: bool = False) -> list[str]:
    """Aligned rows: service and level padded to the widest (bounded) value."""
    rows = list(rows)
    width_service = min(24, max((len(r[1]) for r in rows), default=0))
    width_level = min(12, max((len(r[2]) for r in rows), default=0))
    out = []
    for when, service, level, text, trace_id in rows:
        level_text = f"{level:<{width_level}}"
        if colour:
            level_text = _paint_level(level, level_text)
        trace = f"  {_DIM}{trace_id}{_RESET}" if colour and trace_id else (f"  {trace_id}" if trace_id else "")
        out.append(f"{when}  {service:<{width_service}}  {level_text}  {text}{trace}")
    return out


def _paint_level(level: str, text: str) -> str:
    rank = LOG_LEVELS.get(level.lower(), -1)
    if rank >= LOG_LEVELS["error"] or level in ("incomplete",):
        return f"{_RED}{text}{_RESET}"
    if rank == LOG_LEVELS["warning"]:
        return f"{_YELLOW}{text}{_RESET}"
    return text


# -- traces


@dataclass
class Span:
    span_id: str
    parent_id: str | None
    service: str
    name: str
    start_us: int | None
    duration_us: int | None
    status: str
    children: list[Span] = field(default_factory=list)

    @property
    def end_us(self) -> int | None:
        if self.start_us is None:
            return None
        return self.start_us + (self.duration_us or 0)


@dataclass
class TraceView:
    """Everything ``aitrace trace`` shows about one trace."""

    trace_id: str
    trace: Source | None
    spans: list[Span]
    critical_path: list[str]
    events: list[Source]
    events_total: int
    alerts: list[Source]

    def as_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "trace": self.trace,
            "events": self.events,
            "events_total": self.events_total,
            "alerts": self.alerts,
        }


def spans_from_trace(doc: Source) -> list[Span]:
    """Spans of an assembled trace document (``aitrace.trace.spans``)."""
    spans = []
    for s in get(doc, "aitrace.trace.spans") or []:
        start = s.get("start_time")
        spans.append(
            Span(
                span_id=str(s.get("span_id")),
                parent_id=s.get("parent_span_id"),
                service=s.get("service") or "-",
                name=s.get("name") or "?",
                start_us=int(start) if start is not None else iso_to_micros(s.get("start")),
                duration_us=s.get("duration_us"),
                status=s.get("status") or "ok",
            )
        )
    return spans


def spans_from_events(events: Iterable[Source]) -> list[Span]:
    """Spans rebuilt from span events, for a trace the processors have not assembled yet."""
    spans = []
    for doc in events:
        if get(doc, "aitrace.kind") != "span":
            continue
        duration_ns = get(doc, "event.duration")
        spans.append(
            Span(
                span_id=str(get(doc, "span.id")),
                parent_id=get(doc, "parent.id"),
                service=get(doc, "service.name") or "-",
                name=get(doc, "aitrace.span.name") or "?",
                start_us=iso_to_micros(get(doc, "aitrace.span.start") or get(doc, "@timestamp")),
                duration_us=duration_ns // 1000 if duration_ns is not None else None,
                status=get(doc, "aitrace.span.status") or "ok",
            )
        )
    return spans


def build_tree(spans: list[Span]) -> list[Span]:
    """Link children to parents (by start time); spans whose parent is unknown become roots."""
    by_id = {s.span_id: s for s in spans}
    for s in spans:
        s.children = []
    roots = []
    for s in spans:
        parent = by_id.get(s.parent_id) if s.parent_id else None
        if parent is None or parent is s:
            roots.append(s)
        else:
            parent.children.append(s)

    def order(s: Span) -> tuple[int, str]:
        return (s.start_us if s.start_us is not None else 0, s.name)

    for s in spans:
        s.children.sort(key=order)
    roots.sort(key=order)
    if spans and not roots:  # every span in a parent cycle: show them flat rather than nothing
        roots = sorted(spans, key=order)
        for s in spans:
            s.children = []
    return roots


def critical_path(roots: list[Span]) -> list[str]:
    """From the longest root, repeatedly follow the child that ends last (what the trace waited on)."""
    if not roots:
        return []
    node = max(roots, key=lambda s: s.duration_us or 0)
    path, seen = [node.span_id], {node.span_id}
    while node.children:
        node = max(node.children, key=lambda s: s.end_us or 0)
        if node.span_id in seen:
            break
        path.append(node.span_id)
        seen.add(node.span_id)
    return path


def fetch_trace(client: Elasticsearch, prefix: str, trace_id: str, *, max_events: int = 200) -> TraceView:
    """The trace document, its events (span events count but are drawn as the tree) and alerts."""
    trace_id = trace_id.strip().lower()
    by_trace = {"term": {"trace.id": trace_id}}
    common = {"ignore_unavailable": True, "allow_no_indices": True}
    traces = _call(client.search, index=pattern(prefix, TRACES), query=by_trace, size=1, **common)
    hits = traces["hits"]["hits"]
    trace = hits[0].get("_source") if hits else None
    events_resp = _call(
        client.search,
        index=pattern(prefix, EVENTS),
        query=by_trace,
        sort=[{"@timestamp": {"order": "asc"}}],
        size=max_events,
        track_total_hits=True,
        **common,
    )
    events = [h.get("_source") or {} for h in events_resp["hits"]["hits"]]
    alerts_resp = _call(
        client.search,
        index=pattern(prefix, ALERTS),
        query=by_trace,
        sort=[{"@timestamp": {"order": "asc"}}],
        size=100,
        **common,
    )
    alerts = [h.get("_source") or {} for h in alerts_resp["hits"]["hits"]]
    spans = spans_from_trace(trace) if trace else spans_from_events(events)
    roots = build_tree(spans)
    path = list(get(trace, "aitrace.trace.critical_path") or []) if trace else []
    return TraceView(trace_id, trace, roots, path or critical_path(roots), events, _total(events_resp), alerts)


def render_trace(view: TraceView, colour: bool = False) -> list[str]:
    """Header, span tree, events and alerts of one trace, as lines."""
    lines = _trace_header(view, colour)
    if view.spans:
        lines.append("")
        lines.extend(_span_lines(view, colour))
    others = [e for e in view.events if get(e, "aitrace.kind") != "span"]
    notes = []
    if len(others) < len(view.events):
        notes.append(f"{len(view.events) - len(others)} span event(s) drawn above")
    if view.events_total > len(view.events):
        notes.append(f"first {len(view.events)} of {view.events_total} events; see --max-events")
    lines.append("")
    lines.append(f"events ({len(others)}" + "".join(f"; {n}" for n in notes) + "):")
    lines.extend(format_rows((event_row(e) for e in others), colour) or ["  (none)"])
    lines.append("")
    lines.append(f"alerts ({len(view.alerts)}):")
    lines.extend(format_rows((alert_row(a) for a in view.alerts), colour) or ["  (none)"])
    return lines


def _trace_header(view: TraceView, colour: bool) -> list[str]:
    doc = view.trace
    if doc is None:
        return [f"trace {view.trace_id}  (not assembled yet: drawn from {len(view.events)} event(s))"]
    t = get(doc, "aitrace.trace", {})
    state = "complete" if t.get("complete") else "INCOMPLETE (closed by idle timeout)"
    parts = [
        f"trace {view.trace_id}",
        t.get("root_name") or "?",
        show_duration(t.get("duration_us")),
        f"{t.get('span_count', len(t.get('spans') or []))} spans",
        f"{t.get('event_count', '?')} events",
        state,
    ]
    lines = ["  ".join(str(p) for p in parts)]
    lines.append(
        f"started {show_time(get(doc, 'event.start') or get(doc, '@timestamp'))}"
        f"  services: {', '.join(t.get('services') or []) or '-'}"
    )
    if t.get("has_error"):
        error = f"error: {t.get('first_error') or 'yes'}"
        lines.append(f"{_RED}{error}{_RESET}" if colour else error)
    return lines


def _span_lines(view: TraceView, colour: bool) -> list[str]:
    on_path = set(view.critical_path)
    origin = min((s.start_us for s in _walk(view.spans) if s.start_us is not None), default=None)
    rows: list[tuple[str, Span]] = []

    def visit(span: Span, prefix: str, is_last: bool, depth: int, seen: set[str]) -> None:
        branch = "" if depth == 0 else ("└─ " if is_last else "├─ ")
        rows.append((prefix + branch + span.name, span))
        seen.add(span.span_id)
        child_prefix = prefix + ("" if depth == 0 else ("   " if is_last else "│  "))
        kids = [c for c in span.children if c.span_id not in seen]
        for i, child in enumerate(kids):
            visit(child, child_prefix, i == len(kids) - 1, depth + 1, seen)

    seen: set[str] = set()
    for root in view.spans:
        visit(root, "", True, 0, seen)
    width = min(60, max(len(label) for label, _ in rows))
    service_width = min(24, max(len(s.service) for _, s in rows))
    lines = [f"  {'span':<{width}}  {'service':<{service_width}}  {'start':>9}  {'duration':>9}  status"]
    for label, span in rows:
        offset = "-" if origin is None or span.start_us is None else "+" + show_duration(span.start_us - origin)
        mark = "*" if span.span_id in on_path else " "
        status = span.status
        line = (
            f"{mark} {label[:width]:<{width}}  {span.service:<{service_width}}  {offset:>9}"
            f"  {show_duration(span.duration_us):>9}  {status}"
        )
        if colour and status != "ok":
            line = line[: -len(status)] + f"{_RED}{status}{_RESET}"
        if colour and mark == "*":
            line = f"{_BOLD}{line}{_RESET}"
        lines.append(line)
    lines.append("  (* = critical path)")
    return lines


def _walk(spans: list[Span]) -> Iterable[Span]:
    stack, seen = list(spans), set()
    while stack:
        span = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        yield span
        stack.extend(span.children)


# -- CLI


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Options of ``aitrace search`` and ``aitrace trace``."""
    if name == "trace":
        parser.add_argument("trace_id", metavar="TRACE_ID", help="32 hex digits (W3C trace id)")
        parser.add_argument("--max-events", type=int, default=200, help="events to list at most (default 200)")
    else:
        parser.add_argument("query", metavar="QUERY", nargs="?", help="Lucene query string (default: everything)")
        parser.add_argument("--index", choices=list(FAMILIES), default=EVENTS, help="index family (default events)")
        parser.add_argument("--since", help="from this time: 15m, 1h, 2d, 1w, or an ISO date/time")
        parser.add_argument("--until", help="up to this time (same forms as --since)")
        parser.add_argument("--service", help="only this service (traces: any service the trace touched)")
        parser.add_argument(
            "--level", help="this level or worse (events: log.level; alerts: severity; traces: error = failed)"
        )
        parser.add_argument("--trace", dest="trace_id", help="only this trace id")
        parser.add_argument("--run", dest="run_id", help="only this run id")
        parser.add_argument("-n", "--size", type=int, default=20, help="how many hits (newest; default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of rows")
    parser.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="colour the output")
    parser.add_argument("--es-url", help="search server URL (default: AITRACE_ES_URL or the embedded stack)")


def run(name: str, args: argparse.Namespace) -> int:
    """``aitrace search`` / ``aitrace trace``."""
    settings = Settings.from_env(es_url=args.es_url)
    colour = use_colour(args.color, sys.stdout)
    try:
        client = make_sync_client(settings)
    except SearchUnavailable as exc:
        print(f"aitrace {name}: {exc}", file=sys.stderr)
        return 1
    try:
        if name == "trace":
            return _trace(client, settings, args, colour)
        return _search(client, settings, args, colour)
    except QueryError as exc:
        print(f"aitrace {name}: {exc}", file=sys.stderr)
        return 2
    except SearchFailed as exc:
        print(f"aitrace {name}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


def _search(client: Elasticsearch, settings: Settings, args: argparse.Namespace, colour: bool) -> int:
    if args.size < 1:
        raise QueryError("-n must be at least 1")
    request = SearchRequest(
        family=args.index,
        query=args.query,
        since=args.since,
        until=args.until,
        service=args.service,
        level=args.level,
        trace_id=args.trace_id,
        run_id=args.run_id,
        size=args.size,
    )
    result = run_search(client, settings.index_prefix, request)
    if args.json:
        for index, doc_id, source in result.hits:
            print(orjson.dumps({"_index": index, "_id": doc_id, **source}).decode())
    else:
        for line in format_rows((_ROWS[request.family](src) for _, _, src in result.hits), colour):
            print(line)
    where = pattern(settings.index_prefix, request.family)
    print(f"aitrace search: {len(result.hits)} of {result.total} hit(s) in {where}", file=sys.stderr)
    return 0


def _trace(client: Elasticsearch, settings: Settings, args: argparse.Namespace, colour: bool) -> int:
    if args.max_events < 1:
        raise QueryError("--max-events must be at least 1")
    view = fetch_trace(client, settings.index_prefix, args.trace_id, max_events=args.max_events)
    if view.trace is None and not view.events and not view.alerts:
        prefix = settings.index_prefix
        print(
            f"aitrace trace: trace {view.trace_id} not found in {pattern(prefix, TRACES)}, "
            f"{pattern(prefix, EVENTS)} or {pattern(prefix, ALERTS)}",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(orjson.dumps(view.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print("\n".join(render_trace(view, colour)))
    return 0


__all__ = [
    "SearchRequest",
    "SearchResult",
    "TraceView",
    "add_arguments",
    "build_tree",
    "critical_path",
    "fetch_trace",
    "parse_time",
    "render_trace",
    "run",
    "run_search",
]
