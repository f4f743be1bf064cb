"""``aitrace report``: one self-contained HTML page with the pictures of a run or a model.

The page is built in three steps, each in its own module:

- fetch (:mod:`aitrace.infra.report_fetch`): page through the search index (events, rollups,
  traces, alerts documents as :mod:`aitrace.sinks.documents` writes them) for one scope;
- reduce: :func:`collect` turns the documents into plain series (:mod:`aitrace.infra.report_data`):
  training curves per run and split (:mod:`~aitrace.infra.report_training`), reference vs current
  distributions of drifted features (:mod:`~aitrace.infra.report_drift`), latency percentiles and
  error rate per time bucket (:mod:`~aitrace.infra.report_inference`), tables of alerts, incomplete
  traces and config differences (:mod:`~aitrace.infra.report_tables`);
- render (:mod:`aitrace.infra.report_page`): embed that data as JSON in the page, where a small
  inline script (``report.js``) draws the charts as SVG. Nothing is fetched: no CDN, no network,
  the file opens anywhere. The script records what it drew (``data-series`` on each chart,
  ``data-charts`` / ``data-errors`` on ``<body>``) so a headless browser can check the page rendered.

This module holds :func:`collect` and the command line.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aitrace.infra.report_data import Chart, ReportData, Section
from aitrace.infra.report_drift import data_drift_chart, inference_drift_chart
from aitrace.infra.report_fetch import DEFAULT_LIMIT, Doc, Fetcher, _fetch_scope, _Scope
from aitrace.infra.report_inference import inference_charts
from aitrace.infra.report_page import render
from aitrace.infra.report_tables import alert_table, config_table, trace_table
from aitrace.infra.report_training import training_charts
from aitrace.producers.config import Settings
from aitrace.sinks.es import es_url_argument
from aitrace.sinks.hit_rows import get
from aitrace.sinks.search import iso_utc

T = TypeVar("T")


class ReportError(RuntimeError):
    """A report that cannot be built, worded for the person who asked for it."""


# =========================================================================== collect


def collect(
    es: Any,
    *,
    prefix: str = "aitrace",
    runs: Sequence[str] = (),
    model: str | None = None,
    limit: int = DEFAULT_LIMIT,
    since: str | None = None,
) -> ReportData:
    """Read the index and build the report's data; raises ReportError when the scope (or one run) is empty.

    ``runs`` (one or more) draws those runs together; ``since`` (ISO 8601) keeps only documents
    from then on, e.g. one demo run on a kept stack.
    """
    fetcher = Fetcher(es, prefix, limit, since)
    docs = _fetch_scope(fetcher, runs, model)
    _check_scope(docs, runs, model, since, prefix)
    summary = {
        "alerts": len(docs.alerts),
        "training metric documents": len(docs.training),
        "data stats documents": len(docs.data),
        "inference records": len(docs.inference),
        "incomplete traces": len(docs.traces),
    }
    scope = _scope_name(runs, model)
    tables = [alert_table(docs.alerts), trace_table(docs.traces)]
    compared = list(runs) or docs.run_ids()
    if not model and len(compared) > 1:
        tables.append(config_table(compared, docs.runs))
    return ReportData(
        title=f"aitrace report: {scope}",
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        scope=scope,
        sections=_sections(docs, bool(runs), model),
        tables=tables,
        summary=summary,
        notes=fetcher.notes,
    )


def _scope_name(runs: Sequence[str], model: str | None) -> str:
    if runs:
        return f"run{'s' if len(runs) > 1 else ''} {', '.join(runs)}"
    return f"model {model}" if model else "all runs and models"


def _check_scope(docs: _Scope, runs: Sequence[str], model: str | None, since: str | None, prefix: str) -> None:
    """A run asked for by name must have documents of its own: two runs where one is a typo is no comparison."""
    every = [*docs.alerts, *docs.training, *docs.data, *docs.traces, *docs.runs]
    named = {str(get(d, "aitrace.run_id")) for d in every}
    missing = [run for run in runs if run not in named]
    if not missing and not docs.empty():
        return
    scope = f"run {missing[0]!r}" if missing else f"model {model!r}" if model else "any run or model"
    when = f" since {since}" if since else ""
    raise ReportError(f"nothing indexed for {scope}{when} under {prefix}-*-* (has the worker indexed anything yet?)")


def _sections(docs: _Scope, by_run: bool, model: str | None) -> list[Section]:
    sections: list[Section] = []
    if not model:
        sections.append(
            Section(
                "training",
                "Training curves",
                "Loss, gradient norm, learning rate and accuracy per step; vertical marks are the steps "
                "the detectors flagged, triangles on the top edge are NaN/Inf values, arrows on the top "
                "edge are values of a run that left the range where the runs compare (the note says which).",
                training_charts(docs.training, docs.alerts),
                "No training metrics in this scope.",
            )
        )
    sections.append(_drift_section(docs.alerts, docs.data, docs.inference))
    if not by_run:
        sections.append(
            Section(
                "inference",
                "Inference",
                "Latency percentiles of answered requests and the error rate, per time bucket; "
                "vertical marks are alerts on the model.",
                inference_charts(docs.inference, docs.alerts),
                "No inference records in this scope.",
            )
        )
    return sections


def _drift_section(alerts: Sequence[Doc], data_docs: Sequence[Doc], inference_docs: Sequence[Doc]) -> Section:
    charts: list[Chart] = []
    seen: set[str] = set()
    for alert in alerts:
        if get(alert, "aitrace.alert.kind") != "drift" or not get(alert, "aitrace.alert.feature"):
            continue
        if get(alert, "aitrace.alert.model"):
            chart = inference_drift_chart(alert, inference_docs)
        else:
            chart = data_drift_chart(alert, data_docs)
        if chart is not None and chart.id not in seen:
            seen.add(chart.id)
            charts.append(chart)
    return Section(
        "drift",
        "Drift",
        "For each feature a drift alert names: the reference distribution against the current one, "
        "with the detector's statistic.",
        charts,
        "No drift alert with a feature in this scope.",
    )


def write_atomic(path: Path, text: str) -> None:
    """Write next to the target and rename: a reader never sees half a page.

    The temporary file is opened normally (not with ``mkstemp``, which makes it 0600), so the
    page gets the permissions the user's umask gives any new file. A symbolic link is written
    through, and anything that is not a regular file (``/dev/stdout``, a FIFO, a device) is
    written into, as a shell's ``>`` does: a rename would replace the link or the node itself
    (run as root, ``-o /dev/full`` replaced the device node with a regular file holding the page).
    """
    try:
        regular = stat.S_ISREG(path.stat().st_mode)  # follows links: what a write would reach
    except FileNotFoundError:
        regular = True  # a new file (or a dangling link's target)
    if not regular:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# =========================================================================== CLI


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--run",
        metavar="ID",
        action="append",
        help="only this training run (its curves, alerts, traces); repeat it to draw several runs together",
    )
    scope.add_argument("--model", metavar="NAME", help="only this model (latency, errors, input drift)")
    parser.add_argument("-o", "--output", default="report.html", help="where to write the page (default report.html)")
    add_source_arguments(parser)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how much to read; ``aitrace compare`` reads the same way."""
    parser.add_argument(
        "--es-url", type=es_url_argument, help="search server (default: AITRACE_ES_URL or the embedded stack)"
    )
    parser.add_argument("--limit", type=_positive, default=DEFAULT_LIMIT, help="documents read per kind at most")
    parser.add_argument("--since", metavar="TIME", type=_iso_time, help="only data from TIME on (ISO 8601, UTC)")
    parser.add_argument("--index-prefix", help="index name prefix (AITRACE_INDEX_PREFIX)")


def _positive(text: str) -> int:
    """``--limit``: below 1, the paged read indexed an empty page (IndexError, a traceback), and 0
    read nothing and blamed the index ("nothing indexed")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _iso_time(text: str) -> str:
    """``--since``: an ISO 8601 time (naive means UTC), normalized to what the index compares."""
    try:
        return iso_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-11-26T15:40:00Z)") from None
    except OverflowError:
        raise argparse.ArgumentTypeError(f"time {text!r} is out of range (years 1 to 9999 in UTC)") from None


def read_index(command: str, args: argparse.Namespace, read: Callable[[Any, str], T]) -> T | None:
    """``read(es, prefix)`` on the server the flags of :func:`add_source_arguments` name.

    A failure (nothing indexed, the server unreachable or refusing) is one line on stderr
    naming ``aitrace <command>``, and None; never a traceback.
    """
    from aitrace.sinks.es import SearchUnavailable, make_sync_client
    from elastic_transport import ApiError, TransportError

    search = Settings.from_env(dev_stack=True, es_url=args.es_url, index_prefix=args.index_prefix).search
    try:
        return read(make_sync_client(search), search.index_prefix)
    except ReportError as exc:
        print(f"aitrace {command}: {exc}", file=sys.stderr)
    except (SearchUnavailable, TransportError, OSError) as exc:
        print(f"aitrace {command}: cannot read the search server at {search.es_url}: {exc}", file=sys.stderr)
    except ApiError as exc:
        print(f"aitrace {command}: the search server refused the query at {search.es_url}: {exc}", file=sys.stderr)
    return None


def run(name: str, args: argparse.Namespace) -> int:
    data = read_index(
        name,
        args,
        lambda es, prefix: collect(
            es, prefix=prefix, runs=args.run or (), model=args.model, limit=args.limit, since=args.since
        ),
    )
    if data is None:
        return 1
    output = Path(args.output)
    try:
        write_atomic(output, render(data))
    except OSError as exc:
        print(f"aitrace report: cannot write {output}: {exc}", file=sys.stderr)
        return 1
    charts = sum(len(s.charts) for s in data.sections)
    print(f"wrote {output} ({data.scope}: {charts} charts, {len(data.tables[0].rows)} alerts)")
    return 0
