"""``aitrace trace``'s data: one trace as a span tree with its events and alerts.

:func:`fetch_trace` reads the assembled trace document (``<prefix>-traces-*``, ``_id`` =
trace id), the events that carry its ``trace.id`` and the alerts that name it;
:func:`render_trace` draws the span tree (indentation, service, start offset, duration,
status; ``*`` marks the critical path), then the events and the alerts. A trace that the
processors have not assembled yet (still open) is drawn from its span events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aitrace.sinks.documents import ALERTS, EVENTS, TRACES
from aitrace.sinks.hit_rows import alert_row, event_row, format_rows, get, iso_to_micros, show_duration, show_time
from aitrace.sinks.search import Source, call_client, pattern, total_hits
from aitrace.sinks.terminal import BOLD, RED, RESET
from elasticsearch import Elasticsearch


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
    traces = call_client(client.search, index=pattern(prefix, TRACES), query=by_trace, size=1, **common)
    hits = traces["hits"]["hits"]
    trace = hits[0].get("_source") if hits else None
    events_resp = call_client(
        client.search,
        index=pattern(prefix, EVENTS),
        query=by_trace,
        sort=[{"@timestamp": {"order": "asc"}}],
        size=max_events,
        track_total_hits=True,
        **common,
    )
    events = [h.get("_source") or {} for h in events_resp["hits"]["hits"]]
    alerts_resp = call_client(
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
    return TraceView(trace_id, trace, roots, path or critical_path(roots), events, total_hits(events_resp), alerts)


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
        notes.append(f"first {len(view.events)} of {view.events_total} indexed; see --max-events")
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
        f"{t.get('event_count', '?')} events sent",  # a run's metric points each: indexed in rollups (fewer)
        state,
    ]
    lines = ["  ".join(str(p) for p in parts)]
    lines.append(
        f"started {show_time(get(doc, 'event.start') or get(doc, '@timestamp'))}"
        f"  services: {', '.join(t.get('services') or []) or '-'}"
    )
    if t.get("has_error"):
        error = f"error: {t.get('first_error') or 'yes'}"
        lines.append(f"{RED}{error}{RESET}" if colour else error)
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
            line = line[: -len(status)] + f"{RED}{status}{RESET}"
        if colour and mark == "*":
            line = f"{BOLD}{line}{RESET}"
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


__all__ = [
    "Span",
    "TraceView",
    "build_tree",
    "critical_path",
    "fetch_trace",
    "render_trace",
    "spans_from_events",
    "spans_from_trace",
]
