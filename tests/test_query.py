"""``aitrace search`` and ``aitrace trace`` against a real osmem-server.

Documents are built with :mod:`aitrace.sinks.documents` (the shape the indexer writes) and
indexed under a per-test index prefix, with the index templates installed, so keyword
filters behave as in production.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aitrace.infra.cli import main
from aitrace.producers.config import SearchConfig
from aitrace.sinks import documents
from aitrace.sinks.es import detect_capabilities, make_sync_client
from aitrace.sinks.hit_rows import show_duration
from aitrace.sinks.search import QueryError, SearchRequest, parse_time, run_search
from aitrace.sinks.templates import install_templates
from aitrace.sinks.trace_tree import Span, build_tree, critical_path

T1 = "4bf92f3577b34da6a3ce929d0e0e4736"  # assembled trace
T2 = "00f067aa0ba902b700f067aa0ba902b7"  # still open: only span events
T3 = "0af7651916cd43dd8448eb211c80319c"  # old, other service
ROOT, PRE, PRED, FWD = "a000000000000001", "a000000000000002", "a000000000000003", "a000000000000004"
MS = 1_000


class Corpus:
    """The indexed documents: times relative to ``now`` so --since has something to cut."""

    def __init__(self, now_us: int) -> None:
        self.now = now_us
        self.t0 = now_us - 10 * 60_000_000  # ten minutes ago
        self.old = now_us - 2 * 86_400_000_000  # two days ago

    def event(
        self, event_id: str, trace_id: str, span_id: str, service: str, at_us: int, payload: Any, **kw: Any
    ) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "time": at_us,
            "trace_id": trace_id,
            "span_id": span_id,
            "service": service,
            "payload": payload,
            **kw,
        }

    def span(
        self, span_id: str, parent: str | None, service: str, name: str, start_ms: int, dur_ms: int, status: str = "ok"
    ) -> dict[str, Any]:
        return {
            "span_id": span_id,
            "parent_span_id": parent,
            "service": service,
            "name": name,
            "start_time": self.t0 + start_ms * MS,
            "duration_us": dur_ms * MS,
            "status": status,
        }

    def actions(self, prefix: str) -> list[dict[str, Any]]:
        t0 = self.t0
        spans = [
            self.span(ROOT, None, "gateway", "POST /predict", 0, 100),
            self.span(PRE, ROOT, "pipeline", "preprocess", 2, 18),
            self.span(PRED, ROOT, "ranker", "predict", 22, 73, "error"),
            self.span(FWD, PRED, "ranker", "model.forward", 25, 65, "error"),
        ]
        trace = {
            "trace_id": T1,
            "root_span_id": ROOT,
            "root_name": "POST /predict",
            "services": ["gateway", "pipeline", "ranker"],
            "start_time": t0,
            "end_time": t0 + 100 * MS,
            "duration_us": 100 * MS,
            "span_count": 4,
            "event_count": 7,
            "complete": True,
            "has_error": True,
            "first_error": "CUDA OOM in batch 17",
            "critical_path": [ROOT, PRED, FWD],
            "spans": spans,
        }
        log = ("aitrace.LogRecord", {"level": "error", "message": "CUDA OOM in batch 17", "error_type": "OOMError"})
        info = ("aitrace.LogRecord", {"level": "info", "message": "batch 17 loaded", "logger": "loader"})
        crit = ("aitrace.LogRecord", {"level": "CRITICAL", "message": "worker lost", "logger": "supervisor"})
        inference = (
            "aitrace.InferenceRecord",
            {"request_id": "req-1", "model_name": "ranker-v2", "latency_ms": 73.0, "status": "error",
             "error": "CUDA OOM in batch 17", "prediction": None, "confidence": None},
        )  # fmt: skip
        metric = ("aitrace.TrainingMetric", {"step": 120, "metrics": {"loss": 0.31}})
        span_root = ("aitrace.Span", {"name": "consume", "start_time": t0 + 60_000_000, "duration_us": 40 * MS})
        span_child = ("aitrace.Span", {"name": "decode", "start_time": t0 + 60_005_000, "duration_us": 10 * MS})
        events = [
            self.event("e-info", T1, PRE, "pipeline", t0 + 3 * MS, info),
            self.event("e-oom", T1, FWD, "ranker", t0 + 80 * MS, log, run_id="run-7"),
            self.event("e-inf", T1, PRED, "ranker", t0 + 95 * MS, inference),
            self.event("e-crit", T1, ROOT, "gateway", t0 + 99 * MS, crit),
            self.event("e-metric", "11" * 16, "b" * 16, "trainer", t0 + 200 * MS, metric, run_id="run-7"),
            self.event("s-root", T2, "c000000000000001", "consumer", t0 + 60_040_000, span_root),
            self.event(
                "s-child",
                T2,
                "c000000000000002",
                "consumer",
                t0 + 60_015_000,
                span_child,
                parent_span_id="c000000000000001",
            ),
            self.event(
                "e-old",
                T3,
                "d" * 16,
                "batcher",
                self.old,
                ("aitrace.LogRecord", {"level": "error", "message": "old OOM from last week's job"}),
            ),
        ]
        alert = {
            "alert_id": "latency:ranker-v2",
            "version": 2,
            "kind": "anomaly",
            "detector": "robust_z",
            "severity": "critical",
            "state": "open",
            "title": "ranker-v2 latency spike",
            "series": "ranker-v2/latency_ms",
            "service": "ranker",
            "model": "ranker-v2",
            "trace_id": T1,
            "first_seen": t0 + 96 * MS,
            "last_seen": t0 + 99 * MS,
            "statistic": 7.5,
            "threshold": 4.0,
        }
        warning = {**alert, "alert_id": "drift:f1", "severity": "warning", "title": "feature f1 drifted",
                   "trace_id": None, "service": "pipeline"}  # fmt: skip
        actions = [documents.trace_action(trace, prefix=prefix), documents.alert_action(alert, prefix=prefix)]
        actions.append(documents.alert_action(warning, prefix=prefix))
        for event in events:
            actions.extend(documents.event_actions(event, prefix=prefix))
        return actions


@pytest.fixture
def indexed(search: Any, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Corpus]:
    """Templates and the corpus under a fresh prefix; the CLI reads it through AITRACE_* settings."""
    prefix = unique_name("q")
    config = SearchConfig.from_env(es_url=search.url, index_prefix=prefix)
    client = make_sync_client(config)
    install_templates(client, detect_capabilities(config), prefix=prefix)
    corpus = Corpus(int(time.time() * 1_000_000))
    for action in corpus.actions(prefix):
        client.index(index=action["_index"], id=action["_id"], document=action["_source"])
    client.indices.refresh(index=f"{prefix}-*")
    client.close()
    monkeypatch.setenv("AITRACE_ES_URL", search.url)
    monkeypatch.setenv("AITRACE_INDEX_PREFIX", prefix)
    yield corpus


def aitrace(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """Run the CLI in-process; (exit status, stdout lines, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


# -- unit


def test_parse_time_forms() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_time("90m", now) == "2026-11-26T10:30:00.000000Z"
    assert parse_time("2d", now) == "2026-11-24T12:00:00.000000Z"
    assert parse_time("1w", now) == "2026-11-19T12:00:00.000000Z"
    assert parse_time("now", now) == "2026-11-26T12:00:00.000000Z"
    assert parse_time("2026-11-25", now) == "2026-11-25T00:00:00.000000Z"
    assert parse_time("2026-11-25T10:00:00+02:00", now) == "2026-11-25T08:00:00.000000Z"
    with pytest.raises(QueryError, match="cannot read time 'yesterday'"):
        parse_time("yesterday", now)


def test_query_body_filters() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    body = SearchRequest(query="oom", since="1h", service="ranker", level="error", run_id="r").query_body(now)
    assert body["bool"]["must"] == [{"query_string": {"query": "oom", "default_operator": "AND"}}]
    filters = body["bool"]["filter"]
    assert {"range": {"@timestamp": {"gte": "2026-11-26T11:00:00.000000Z"}}} in filters
    levels = next(f["terms"]["log.level"] for f in filters if "terms" in f)
    assert {"error", "ERROR", "critical", "fatal"} <= set(levels) and "info" not in levels
    traces = SearchRequest(family="traces", service="ranker", level="error").query_body(now)["bool"]["filter"]
    assert {"term": {"aitrace.trace.services": "ranker"}} in traces
    assert {"term": {"aitrace.trace.has_error": True}} in traces
    with pytest.raises(QueryError, match="unknown level 'loud'"):
        SearchRequest(level="loud").query_body(now)


def test_tree_survives_orphans_and_cycles_and_finds_the_critical_path() -> None:
    spans = [
        Span("r", None, "s", "root", 0, 100, "ok"),
        Span("a", "r", "s", "a", 1, 10, "ok"),
        Span("b", "r", "s", "b", 12, 80, "ok"),
        Span("c", "b", "s", "c", 13, 70, "ok"),
        Span("o", "missing", "s", "orphan", 5, 1, "ok"),
    ]
    roots = build_tree(spans)
    assert [r.name for r in roots] == ["root", "orphan"]
    assert critical_path(roots) == ["r", "b", "c"]
    loop = build_tree([Span("x", "y", "s", "x", 0, 1, "ok"), Span("y", "x", "s", "y", 1, 1, "ok")])
    assert [r.span_id for r in loop] == ["x", "y"]
    assert (show_duration(850), show_duration(12_300), show_duration(1_230_000), show_duration(123_000_000)) == (
        "850µs",
        "12.3ms",
        "1.23s",
        "2m03s",
    )


# -- search


def test_search_finds_a_message_and_prints_a_row(indexed: Corpus, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = aitrace(capsys, "search", "OOM", "--since", "1h")
    assert code == 0, err
    by_text = {line for line in lines if "CUDA OOM in batch 17" in line}
    assert any("ranker" in line and " error " in line and line.endswith(T1) for line in by_text), lines
    assert all("old OOM" not in line for line in lines)  # two days old: outside --since 1h
    assert "hit(s) in" in err


def test_search_filters_by_level_service_run_and_trace(indexed: Corpus, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = aitrace(capsys, "search", "--level", "error", "--since", "1h")
    assert code == 0
    assert any("CUDA OOM" in line for line in lines) and any("worker lost" in line for line in lines)
    assert not any("batch 17 loaded" in line for line in lines)

    code, lines, _ = aitrace(capsys, "search", "--service", "pipeline")
    assert code == 0 and len(lines) == 1 and "batch 17 loaded" in lines[0]

    code, lines, _ = aitrace(capsys, "search", "--run", "run-7")
    assert code == 0 and len(lines) == 2
    assert "loss=0.31 step=120" in lines[1] and "CUDA OOM" in lines[0]  # oldest first

    code, lines, _ = aitrace(capsys, "search", "--trace", T3.upper())
    assert code == 0 and len(lines) == 1 and "old OOM" in lines[0]

    code, lines, _ = aitrace(capsys, "search", "--until", "1d")
    assert code == 0 and len(lines) == 1 and "old OOM" in lines[0]


def test_search_newest_n_in_time_order_and_json(indexed: Corpus, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = aitrace(capsys, "search", "-n", "2")
    assert code == 0
    assert "2 of 8 hit(s)" in err
    assert "consume" in lines[1] and "decode" in lines[0]  # the two latest, oldest first

    code, lines, _ = aitrace(capsys, "search", "service.name:ranker AND log.level:error", "--json")
    docs = [json.loads(line) for line in lines]
    assert code == 0 and [d["_id"] for d in docs] == ["e-oom"]
    assert docs[0]["trace"]["id"] == T1 and docs[0]["message"] == "CUDA OOM in batch 17"


def test_hits_of_one_millisecond_come_in_microsecond_order() -> None:
    """The index sorts to the millisecond; the README's grad_norm search listed steps 159, 164, 163, 162."""

    class Server:
        def search(self, **_: Any) -> dict[str, Any]:  # newest first, as sorted to the millisecond
            stamps = ["14:57:44.985152", "14:57:44.985629", "14:57:44.983939", "14:57:44.980412", "14:57:44.980888"]
            hits = [{"_index": "i", "_id": t, "_source": {"@timestamp": f"2026-12-06T{t}Z"}} for t in stamps]
            return {"hits": {"total": {"value": 5}, "hits": hits}}

    result = run_search(Server(), "aitrace", SearchRequest(family="events", size=5))  # type: ignore[arg-type]
    assert [hit_id for _, hit_id, _ in result.hits] == sorted(hit_id for _, hit_id, _ in result.hits)


def test_hits_with_a_naive_an_aware_and_no_readable_timestamp_sort_without_an_error() -> None:
    """A document written by another tool may carry a time without a zone: naive and aware times do not
    compare, and the sort raised TypeError."""

    class Server:
        def search(self, **_: Any) -> dict[str, Any]:
            stamps = ["2026-12-06T10:00:00.000002Z", "2026-12-06T10:00:00.000001", "not a time", None]
            hits = [{"_index": "i", "_id": str(k), "_source": {"@timestamp": t}} for k, t in enumerate(stamps)]
            return {"hits": {"total": {"value": 4}, "hits": hits}}

    result = run_search(Server(), "aitrace", SearchRequest(family="events", size=4))  # type: ignore[arg-type]
    assert [hit_id for _, hit_id, _ in result.hits] == ["3", "2", "1", "0"]  # unreadable first, in the server's order


def test_search_traces_and_alerts(indexed: Corpus, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = aitrace(capsys, "search", "--index", "traces", "--level", "error", "--service", "pipeline")
    assert code == 0 and len(lines) == 1
    assert "gateway" in lines[0] and " error " in lines[0] and "POST /predict 100ms spans=4" in lines[0]
    assert "CUDA OOM" in lines[0] and lines[0].endswith(T1)

    code, lines, _ = aitrace(capsys, "search", "--index", "alerts", "--level", "critical")
    assert code == 0 and len(lines) == 1
    assert "critical" in lines[0] and "ranker-v2 latency spike [open v2]" in lines[0] and "statistic=7.5" in lines[0]

    code, lines, _ = aitrace(capsys, "search", "--index", "alerts", "drifted")
    assert code == 0 and len(lines) == 1 and "feature f1 drifted" in lines[0] and "warning" in lines[0]


def test_search_reports_bad_queries_and_options(indexed: Corpus, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = aitrace(capsys, "search", "message:(OOM")
    assert code == 2 and not lines and "refused the query" in err and "OOM" in err
    code, _, err = aitrace(capsys, "search", "--since", "last tuesday")
    assert code == 2 and "cannot read time 'last tuesday'" in err
    code, _, err = aitrace(capsys, "search", "-n", "0")
    assert code == 2 and "-n must be at least 1" in err


def test_search_with_nothing_indexed_says_zero_hits(
    search: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], unique_name: Callable[[str], str]
) -> None:
    monkeypatch.setenv("AITRACE_ES_URL", search.url)
    monkeypatch.setenv("AITRACE_INDEX_PREFIX", unique_name("empty"))
    code, lines, err = aitrace(capsys, "search", "anything")
    assert code == 0 and not lines and "0 of 0 hit(s)" in err


# -- trace


def test_trace_prints_the_tree_events_and_alerts(indexed: Corpus, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = aitrace(capsys, "trace", T1)
    assert code == 0, err
    text = "\n".join(lines)
    assert lines[0].startswith(f"trace {T1}  POST /predict  100ms  4 spans  7 events sent  complete")
    assert "error: CUDA OOM in batch 17" in text
    tree = [line for line in lines if "POST /predict" in line or "─ " in line][1:]
    assert len(tree) == 4, tree
    root, pre, pred, fwd = tree
    assert root.startswith("* POST /predict") and "gateway" in root and "+0µs" in root and "100ms" in root
    assert pre.startswith("  ├─ preprocess") and "pipeline" in pre and "+2ms" in pre and pre.endswith("ok")
    assert pred.startswith("* └─ predict") and "ranker" in pred and "73ms" in pred and pred.endswith("error")
    assert fwd.startswith("*    └─ model.forward") and "+25ms" in fwd and "65ms" in fwd
    events = lines[lines.index(next(line for line in lines if line.startswith("events"))) + 1 :]
    assert any("batch 17 loaded" in line for line in events)
    assert any("ranker-v2 latency=73ms status=error" in line for line in events)
    assert any("worker lost" in line for line in events)
    alerts_at = next(i for i, line in enumerate(lines) if line.startswith("alerts (1)"))
    assert "ranker-v2 latency spike" in lines[alerts_at + 1]


def test_trace_not_assembled_yet_is_drawn_from_span_events(indexed: Corpus, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = aitrace(capsys, "trace", T2)
    assert code == 0, err
    assert "not assembled yet" in lines[0]
    consume = next(line for line in lines if "consume" in line and "consumer" in line)
    decode = next(line for line in lines if "└─ decode" in line)
    assert consume.startswith("* consume") and "40ms" in consume
    assert decode.startswith("* └─ decode") and "+5ms" in decode
    assert "events (0; 2 span event(s) drawn above):" in lines


def test_trace_json(indexed: Corpus, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = aitrace(capsys, "trace", T1, "--json", "--max-events", "2")
    view = json.loads("\n".join(lines))
    assert code == 0 and view["trace"]["trace"]["id"] == T1
    assert len(view["events"]) == 2 and view["events_total"] == 4 and len(view["alerts"]) == 1
    code, lines, _ = aitrace(capsys, "trace", T1, "--max-events", "2")
    assert code == 0 and "events (2; first 2 of 4 indexed; see --max-events):" in lines


def test_unknown_trace_is_an_error(indexed: Corpus, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = aitrace(capsys, "trace", "ff" * 16)
    assert code == 1 and not lines
    assert f"trace {'ff' * 16} not found" in err


# -- failures of the server


def test_unreachable_server_is_one_clear_line() -> None:
    from aitrace.infra.service_probes import free_port

    url = f"http://127.0.0.1:{free_port()}"
    for argv in (["search", "oom"], ["trace", T1]):
        result = subprocess.run(
            [sys.executable, "-m", "aitrace.infra.cli", *argv, "--es-url", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"search server at {url} unreachable" in lines[0], result.stderr


class _Broken(BaseHTTPRequestHandler):
    """Answers GET / like an OpenSearch server, then fails every search with 500 or drops it."""

    def do_GET(self) -> None:
        if self.path.startswith("/_") or "_search" in self.path:
            self._fail()
            return
        body = json.dumps({"version": {"number": "3.0.0", "distribution": "opensearch"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self._fail()

    def _fail(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        body = b'{"error":{"root_cause":[{"type":"x","reason":"disk on fire"}],"type":"x","reason":"disk on fire"}}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Dropping(_Broken):
    """Answers GET / like an OpenSearch server, then drops the connection on every search."""

    def _fail(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


def test_a_connection_dropped_during_a_search_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dropping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, lines, err = aitrace(capsys, "search", "oom", "--es-url", url)
        assert code == 1 and not lines
        assert "search server unreachable" in err and len(err.strip().splitlines()) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_server_errors_during_a_search_are_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, lines, err = aitrace(capsys, "search", "oom", "--es-url", url)
        assert code == 1 and not lines
        assert "answered HTTP 500: disk on fire" in err
        code, lines, err = aitrace(capsys, "trace", T1, "--es-url", url)
        assert code == 1 and "answered HTTP 500" in err
    finally:
        server.shutdown()
        server.server_close()
