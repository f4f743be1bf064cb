"""``aitrace search`` and ``aitrace trace``: answer from the index, in the terminal.

The query is built in :mod:`aitrace.sinks.search`, hits become rows in
:mod:`aitrace.sinks.hit_rows`, a trace is fetched and drawn by :mod:`aitrace.sinks.trace_tree`;
this module reads the options and prints. ``--json`` prints each hit's ``_source`` as a JSON
line (search) or the trace, its events and alerts as one JSON object (trace).

Failures are one line on stderr and a non-zero exit: 1 when the server is unreachable or the
trace is unknown, 2 for a query the server cannot parse or an option that makes no sense.
"""

from __future__ import annotations

import argparse
import sys

import orjson
from aitrace.producers.config import SearchConfig, Settings
from aitrace.sinks.documents import ALERTS, EVENTS, FAMILIES, TRACES
from aitrace.sinks.es import SearchUnavailable, es_url_argument, make_sync_client
from aitrace.sinks.hit_rows import ROWS, format_rows
from aitrace.sinks.search import QueryError, SearchFailed, SearchRequest, pattern, run_search
from aitrace.sinks.terminal import use_colour
from aitrace.sinks.trace_tree import fetch_trace, render_trace
from elasticsearch import Elasticsearch


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
    parser.add_argument(
        "--es-url", type=es_url_argument, help="search server URL (default: AITRACE_ES_URL or the embedded stack)"
    )


def run(name: str, args: argparse.Namespace) -> int:
    """``aitrace search`` / ``aitrace trace``."""
    search = Settings.from_env(dev_stack=True, es_url=args.es_url).search
    colour = use_colour(args.color, sys.stdout)
    try:
        client = make_sync_client(search)
    except SearchUnavailable as exc:
        print(f"aitrace {name}: {exc}", file=sys.stderr)
        return 1
    try:
        if name == "trace":
            return _trace(client, search, args, colour)
        return _search(client, search, args, colour)
    except QueryError as exc:
        print(f"aitrace {name}: {exc}", file=sys.stderr)
        return 2
    except SearchFailed as exc:
        print(f"aitrace {name}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


def _search(client: Elasticsearch, search: SearchConfig, args: argparse.Namespace, colour: bool) -> int:
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
    result = run_search(client, search.index_prefix, request)
    if args.json:
        for index, doc_id, source in result.hits:
            print(orjson.dumps({"_index": index, "_id": doc_id, **source}).decode())
    else:
        for line in format_rows((ROWS[request.family](src) for _, _, src in result.hits), colour):
            print(line)
    where = pattern(search.index_prefix, request.family)
    print(f"aitrace search: {len(result.hits)} of {result.total} hit(s) in {where}", file=sys.stderr)
    return 0


def _trace(client: Elasticsearch, search: SearchConfig, args: argparse.Namespace, colour: bool) -> int:
    if args.max_events < 1:
        raise QueryError("--max-events must be at least 1")
    view = fetch_trace(client, search.index_prefix, args.trace_id, max_events=args.max_events)
    if view.trace is None and not view.events and not view.alerts:
        prefix = search.index_prefix
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


__all__ = ["add_arguments", "run"]
