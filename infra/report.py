"""``aitrace report``: one self-contained HTML page with the pictures of a run or a model.

The page is built in two halves:

- :func:`collect` reads the search index (events, rollups, traces, alerts documents as
  :mod:`aitrace.sinks.documents` writes them) and reduces them to plain series: training
  curves per run and split, reference vs current distributions of drifted features,
  latency percentiles and error rate per time bucket, tables of alerts and incomplete traces.
- :func:`render` embeds that data as JSON in the page, and a small inline script
  (:mod:`aitrace.infra.report_page`) draws the charts as SVG. Nothing is fetched: no CDN,
  no network, the file opens anywhere. The script records what it drew (``data-series`` on
  each chart, ``data-charts`` / ``data-errors`` on ``<body>``) so a headless browser can
  check the page rendered.
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import math
import os
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from aitrace.infra.report_axis import Clip, training_axis
from aitrace.infra.report_page import CSS, SCRIPT, TEMPLATE
from aitrace.infra.runs import config_differences, run_infos
from aitrace.producers.config import Settings

TRAINING_METRICS = ("loss", "grad_norm", "lr", "accuracy")
PERCENTILES = (50, 95, 99)
DEFAULT_LIMIT = 50_000  # documents per family; the page says when it was cut
PAGE_SIZE = 2_000
BUCKET_CHOICES_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
MAX_BUCKETS = 40

Doc = dict[str, Any]
T = TypeVar("T")


class ReportError(RuntimeError):
    """A report that cannot be built, worded for the person who asked for it."""


# =========================================================================== data model


@dataclass
class Series:
    """One line: ``points`` are ``[x, y]``; ``band`` (optional) ``[x, low, high]`` for rollups."""

    name: str
    points: list[list[float | None]]
    band: list[list[float | None]] = field(default_factory=list)
    nonfinite: list[list[Any]] = field(default_factory=list)  # [x, "nan" | "inf" | "-inf"]


@dataclass
class Marker:
    """A vertical mark at ``x`` (a flagged step or an alert's time) with a label."""

    x: float
    label: str
    severity: str = "warning"
    y: float | None = None  # the flagged value, ringed on its curve when known


@dataclass
class Chart:
    """One chart; ``x_kind`` is ``step``, ``time`` (epoch ms) or ``value`` (a histogram axis)."""

    id: str
    title: str
    x_kind: str
    y_label: str
    series: list[Series]
    markers: list[Marker] = field(default_factory=list)
    log_y: bool = False
    steps: bool = False  # draw as a step function (histograms)
    note: str = ""
    y_limits: list[float] | None = None  # [low, high] when some points lie above the axis (see report_axis)
    clips: list[Clip] = field(default_factory=list)  # the series that leave the axis


@dataclass
class Section:
    id: str
    title: str
    intro: str
    charts: list[Chart] = field(default_factory=list)
    empty: str = ""


@dataclass
class Table:
    id: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    empty: str


@dataclass
class ReportData:
    title: str
    generated_at: str
    scope: str
    sections: list[Section]
    tables: list[Table]
    summary: dict[str, int]
    notes: list[str] = field(default_factory=list)


# =========================================================================== search


def _get(doc: Doc, dotted: str, default: Any = None) -> Any:
    """``_get(doc, "aitrace.metric.value")``; documents nest ECS paths as objects."""
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    return value


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


# =========================================================================== training


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


SeriesKey = tuple[str, str]  # (run, split); the split is "" when the producer sent none


def _series_key(doc: Doc) -> SeriesKey:
    run = _get(doc, "aitrace.run_id") or _get(doc, "service.name") or "run"
    return str(run), str(_get(doc, "aitrace.metric.split") or "")


def _alert_metric(alert: Doc) -> str | None:
    """Which training metric an alert is about: details first, then the series name."""
    details = _get(alert, "aitrace.alert.details", {}) or {}
    if details.get("metric") in TRAINING_METRICS:
        return str(details["metric"])
    series = str(_get(alert, "aitrace.alert.series", "") or "")
    for name in sorted(TRAINING_METRICS, key=len, reverse=True):  # grad_norm before a bare "norm"
        if name in series.replace("-", "_").split(":") or series.endswith(name) or f"/{name}" in series:
            return name
    return None


def training_series(docs: Iterable[Doc]) -> dict[str, dict[SeriesKey, Series]]:
    """metric -> (run, split) -> its series (named ``"<run> <split>"``), points and bands in step order."""
    by_metric: dict[str, dict[SeriesKey, Series]] = defaultdict(dict)
    for doc in docs:
        metric = _get(doc, "aitrace.metric", {})
        name, step = metric.get("name"), metric.get("step")
        if name not in TRAINING_METRICS or step is None:
            continue
        key = _series_key(doc)
        series = by_metric[name].setdefault(key, Series(" ".join(k for k in key if k), []))
        if metric.get("nonfinite"):
            series.nonfinite.append([step, metric["nonfinite"]])
            continue
        series.points.append([step, metric.get("value")])
        if metric.get("rollup") and metric.get("min") is not None and metric.get("max") is not None:
            series.band.append([step, metric["min"], metric["max"]])
    for by_key in by_metric.values():
        for s in by_key.values():
            s.points.sort(key=lambda p: p[0] or 0)
            s.band.sort(key=lambda p: p[0] or 0)
    return by_metric


def training_charts(docs: Iterable[Doc], alerts: Sequence[Doc]) -> list[Chart]:
    """One chart per training metric; one series per run and split; flagged steps marked.

    The y axis keeps to where the runs are comparable: a run that explodes leaves it (see
    :mod:`aitrace.infra.report_axis`) instead of flattening the others.
    """
    by_metric = training_series(docs)
    charts = []
    for name in TRAINING_METRICS:
        if name not in by_metric:
            continue
        keys = sorted(by_metric[name], key=lambda k: by_metric[name][k].name)
        series_list = [by_metric[name][k] for k in keys]
        runs = {run for run, _ in keys}
        by_name = {s.name: s for s in series_list}
        markers = [
            Marker(
                float(a["aitrace"]["alert"]["step"]),
                _marker_label(a),
                _get(a, "aitrace.alert.severity", "warning"),
                _value_at(by_name.get(_alert_series_name(a) or ""), a["aitrace"]["alert"]["step"]),
            )
            for a in alerts
            if _marks(a, runs, name)
        ]
        axis = training_axis(series_list)
        charts.append(
            Chart(
                id=f"training-{name}",
                title=name,
                x_kind="step",
                y_label=name,
                series=series_list,
                markers=markers,
                log_y=axis.log,
                note=axis.note(),
                y_limits=axis.limits,
                clips=axis.clips,
            )
        )
    return charts


def _marks(alert: Doc, runs: set[str], metric: str) -> bool:
    return (
        _get(alert, "aitrace.alert.step") is not None
        and _get(alert, "aitrace.run_id") in runs
        and _alert_metric(alert) in (metric, None)
    )


def _alert_series_name(alert: Doc) -> str | None:
    """The chart series an alert is about: ``run/<run>/<split>/<metric>`` -> ``"<run> <split>"``."""
    parts = str(_get(alert, "aitrace.alert.series", "") or "").split("/")
    if len(parts) == 4 and parts[0] == "run":
        return f"{parts[1]} {parts[2]}"
    run = _get(alert, "aitrace.run_id")
    return f"{run} train" if run else None


def _value_at(series: Series | None, x: float) -> float | None:
    if series is None:
        return None
    return next((p[1] for p in series.points if p[0] == x), None)


def _marker_label(alert: Doc) -> str:
    step = _get(alert, "aitrace.alert.step")
    title = _get(alert, "aitrace.alert.title") or _get(alert, "message") or "alert"
    return f"{title} (step {step})" if step is not None else str(title)


# =========================================================================== drift


@dataclass
class Distribution:
    """A density as a step function: ``edges`` (n+1) and ``density`` (n)."""

    edges: list[float]
    density: list[float]
    label: str


def histogram_density(edges: Sequence[float | None], counts: Sequence[int]) -> Distribution | None:
    """Counts over bins -> density (area 1); None when the histogram is unusable."""
    if len(edges) != len(counts) + 1 or not counts or any(e is None for e in edges):
        return None
    e = np.asarray(edges, dtype=float)
    c = np.asarray(counts, dtype=float)
    widths = np.diff(e)
    total = c.sum()
    if total <= 0 or np.any(widths < 0):
        return None
    density = np.where(widths > 0, c / (total * np.where(widths > 0, widths, 1)), 0.0)
    return Distribution(e.tolist(), density.tolist(), "")


def quantile_density(quantiles: dict[str, float | None]) -> Distribution | None:
    """A density from quantiles: the mass between two levels spread over their value range."""
    pairs = sorted((float(k), v) for k, v in quantiles.items() if v is not None and _is_level(k))
    if len(pairs) < 2:
        return None
    edges, density = [pairs[0][1]], []
    for (l0, v0), (l1, v1) in itertools.pairwise(pairs):
        if v1 <= v0:
            continue
        density.append((l1 - l0) / (v1 - v0))
        edges.append(v1)
    if not density:
        return None
    return Distribution([float(e) for e in edges], density, "")


def _is_level(key: str) -> bool:
    try:
        return 0.0 <= float(key) <= 1.0
    except ValueError:
        return False


def sample_density(values: Sequence[float], edges: np.ndarray) -> Distribution:
    counts, _ = np.histogram(values, bins=edges)
    dist = histogram_density(edges.tolist(), counts.tolist())
    return dist or Distribution(edges.tolist(), [0.0] * (len(edges) - 1), "")


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov D of the drawn samples (largest gap between the ECDFs)."""
    x, y = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    if not len(x) or not len(y):
        return float("nan")
    grid = np.concatenate([x, y])
    fx = np.searchsorted(x, grid, side="right") / len(x)
    fy = np.searchsorted(y, grid, side="right") / len(y)
    return float(np.max(np.abs(fx - fy)))


def _feature_stats(doc: Doc, feature: str) -> Doc | None:
    for f in _get(doc, "aitrace.data.features", []) or []:
        if f.get("name") == feature:
            return f
    return None


def _stats_density(stats: Doc) -> Distribution | None:
    detail = stats.get("detail") or {}
    dist = histogram_density(detail.get("histogram_edges") or [], detail.get("histogram_counts") or [])
    return dist or quantile_density(detail.get("quantiles") or {})


def _statistic_note(alert: Doc) -> str:
    a = _get(alert, "aitrace.alert", {})
    parts = [f"detector {a.get('detector')}"]
    details = a.get("details") or {}
    test = details.get("test") or details.get("statistic_name")
    if a.get("statistic") is not None:
        parts.append(f"{test or 'statistic'} = {a['statistic']:.4g}")
    if a.get("pvalue") is not None:
        parts.append(f"p = {a['pvalue']:.3g}")
    if a.get("threshold") is not None:
        parts.append(f"threshold {a['threshold']:.4g}")
    if a.get("score") is not None and a.get("statistic") is None:
        parts.append(f"score {a['score']:.3g}")
    return ", ".join(parts)


def data_drift_chart(alert: Doc, data_docs: Sequence[Doc]) -> Chart | None:
    """Reference (first batch seen) vs current (the flagged batch) for one data-stats drift alert."""
    feature = _get(alert, "aitrace.alert.feature")
    details = _get(alert, "aitrace.alert.details", {}) or {}
    candidates = [d for d in data_docs if _feature_stats(d, feature) is not None]
    stage = details.get("stage") or next(
        (s for s in ("ingest", "clean", "features") if any(_get(d, "aitrace.data.stage") == s for d in candidates)),
        None,
    )
    if stage is not None:
        candidates = [d for d in candidates if _get(d, "aitrace.data.stage") == stage] or candidates
    if dataset := details.get("dataset"):
        candidates = [d for d in candidates if _get(d, "aitrace.data.dataset") == dataset] or candidates
    if len(candidates) < 2:
        return None
    reference_doc = candidates[0]
    batch = details.get("batch")
    flagged_at = _ms(_get(alert, "aitrace.alert.last_seen")) or _ms(_get(alert, "@timestamp")) or math.inf
    current_doc = next((d for d in candidates if batch and _get(d, "aitrace.data.batch") == batch), None) or next(
        (d for d in reversed(candidates) if (_ms(_get(d, "@timestamp")) or 0) <= flagged_at + 60_000), candidates[-1]
    )
    series = []
    for doc, role in ((reference_doc, "reference"), (current_doc, "current")):
        dist = _stats_density(_feature_stats(doc, feature) or {})
        if dist is None:
            return None
        series.append(_dist_series(dist, f"{role} (batch {_get(doc, 'aitrace.data.batch') or '?'})"))
    where = f"{_get(current_doc, 'aitrace.data.dataset')} / {_get(current_doc, 'aitrace.data.stage')}"
    return Chart(
        id=f"drift-data-{feature}-{stage}",
        title=f"{feature} ({where})",
        x_kind="value",
        y_label="density",
        series=series,
        steps=True,
        note=_statistic_note(alert),
    )


def _dist_series(dist: Distribution, name: str) -> Series:
    """A step function as points: (edge_i, density_i) ... closed at the last edge."""
    points: list[list[float | None]] = [[dist.edges[0], 0.0]]  # rise from the baseline...
    points += [[e, d] for e, d in zip(dist.edges, dist.density, strict=False)]
    points.append([dist.edges[-1], 0.0])  # ...and fall back to it after the last bin
    return Series(name, points)


def inference_drift_chart(alert: Doc, inference_docs: Sequence[Doc]) -> Chart | None:
    """Reference vs current inputs of one model feature, from the inference records themselves."""
    feature = _get(alert, "aitrace.alert.feature")
    model = _get(alert, "aitrace.alert.model")
    timed = [
        (t, float(v))
        for d in inference_docs
        if (model is None or _get(d, "aitrace.inference.model") == model)
        and (v := (_get(d, "aitrace.inference.features", {}) or {}).get(feature)) is not None
        and (t := _ms(_get(d, "@timestamp"))) is not None
    ]
    if len(timed) < 10:
        return None
    timed.sort()
    first_seen = _ms(_get(alert, "@timestamp")) or timed[-1][0]
    before = [v for t, v in timed if t < first_seen]
    after = [v for t, v in timed if t >= first_seen]
    # The reference is the early part of the traffic: the window just before detection is already drifted.
    reference = before[: max(1, len(before) * 2 // 5)] if before else [v for _, v in timed[: len(timed) // 3]]
    current = after if len(after) >= 10 else [v for _, v in timed[-max(10, len(timed) // 5) :]]
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins=30)
    series = [
        _dist_series(sample_density(reference, edges), f"reference ({len(reference)} requests)"),
        _dist_series(sample_density(current, edges), f"current ({len(current)} requests)"),
    ]
    note = f"{_statistic_note(alert)}; KS D of the drawn samples = {ks_statistic(reference, current):.3f}"
    return Chart(
        id=f"drift-model-{model}-{feature}",
        title=f"{feature} (model {model})",
        x_kind="value",
        y_label="density",
        series=series,
        steps=True,
        note=note,
    )


# =========================================================================== inference


def _bucket_seconds(span_ms: float) -> float:
    for choice in BUCKET_CHOICES_S:
        if span_ms / (choice * 1000) <= MAX_BUCKETS:
            return choice
    return BUCKET_CHOICES_S[-1]


@dataclass
class Buckets:
    starts_ms: list[float]
    percentiles: dict[int, list[float | None]]
    error_rate: list[float | None]
    requests: list[int]


def latency_buckets(docs: Sequence[Doc]) -> Buckets:
    """Per time bucket: latency percentiles of the answered requests, error rate of all requests."""
    rows = [
        (t, _get(d, "aitrace.inference.latency_ms"), _get(d, "aitrace.inference.status") == "error")
        for d in docs
        if (t := _ms(_get(d, "@timestamp"))) is not None
    ]
    if not rows:
        return Buckets([], {p: [] for p in PERCENTILES}, [], [])
    start = min(r[0] for r in rows)
    width = _bucket_seconds(max(r[0] for r in rows) - start) * 1000
    groups: dict[int, list[tuple[float | None, bool]]] = defaultdict(list)
    for t, latency, error in rows:
        groups[int((t - start) // width)].append((latency, error))
    out = Buckets([], {p: [] for p in PERCENTILES}, [], [])
    for index in range(max(groups) + 1):
        members = groups.get(index, [])
        out.starts_ms.append(start + index * width)
        ok = [lat for lat, error in members if not error and lat is not None]
        for p in PERCENTILES:
            out.percentiles[p].append(float(np.percentile(ok, p)) if ok else None)
        out.requests.append(len(members))
        out.error_rate.append(sum(error for _, error in members) / len(members) if members else None)
    return out


def inference_charts(docs: Sequence[Doc], alerts: Sequence[Doc]) -> list[Chart]:
    """Latency percentiles and error rate over time for each model, alerts marked at first_seen."""
    charts = []
    models = sorted({m for d in docs if (m := _get(d, "aitrace.inference.model"))})
    for model in models:
        buckets = latency_buckets([d for d in docs if _get(d, "aitrace.inference.model") == model])
        markers = [
            Marker(t, str(_get(a, "aitrace.alert.title")), _get(a, "aitrace.alert.severity", "warning"))
            for a in alerts
            if _get(a, "aitrace.alert.model") == model
            and _get(a, "aitrace.alert.kind") != "drift"
            and (t := _ms(_get(a, "@timestamp"))) is not None
        ]
        latency = [
            Series(f"p{p}", [[t, v] for t, v in zip(buckets.starts_ms, buckets.percentiles[p], strict=True)])
            for p in PERCENTILES
        ]
        errors = [Series("error rate", [[t, v] for t, v in zip(buckets.starts_ms, buckets.error_rate, strict=True)])]
        charts.append(Chart(f"latency-{model}", f"{model}: latency", "time", "ms", latency, markers))
        charts.append(Chart(f"errors-{model}", f"{model}: error rate", "time", "fraction of requests", errors, markers))
    return charts


# =========================================================================== tables


def _fmt_time(iso: str | None) -> str:
    ms = _ms(iso)
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms is not None else ""


def _fmt_num(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def alert_table(alerts: Sequence[Doc]) -> Table:
    rows = []
    for doc in sorted(alerts, key=lambda d: _get(d, "@timestamp") or ""):
        a = _get(doc, "aitrace.alert", {})
        where = ", ".join(
            f"{label} {value}"
            for label, value in (
                ("run", _get(doc, "aitrace.run_id")),
                ("model", a.get("model")),
                ("feature", a.get("feature")),
                ("service", _get(doc, "service.name")),
            )
            if value
        )
        measure = a.get("statistic") if a.get("statistic") is not None else a.get("score")
        rows.append(
            [
                _fmt_time(_get(doc, "@timestamp")),
                str(a.get("severity", "")),
                str(a.get("kind", "")),
                str(a.get("detector", "")),
                str(a.get("title", "")),
                where,
                _fmt_num(a.get("step")),
                _fmt_num(measure),
                f"{a.get('state', '')} v{a.get('version', 1)}",
            ]
        )
    columns = ["first seen (UTC)", "severity", "kind", "detector", "title", "where", "step", "statistic", "state"]
    return Table("alerts", "Alerts", columns, rows, "No alerts in this scope.")


def trace_table(traces: Sequence[Doc]) -> Table:
    rows = []
    for doc in traces:
        t = _get(doc, "aitrace.trace", {})
        rows.append(
            [
                _fmt_time(_get(doc, "@timestamp")),
                str(_get(doc, "trace.id", "")),
                str(t.get("root_name") or ""),
                ", ".join(t.get("services") or []),
                _fmt_num(t.get("span_count")),
                _fmt_num((t.get("duration_us") or 0) / 1000),
                str(t.get("first_error") or ""),
            ]
        )
    columns = ["start (UTC)", "trace id", "root", "services", "spans", "duration ms", "first error"]
    return Table("incomplete-traces", "Incomplete traces", columns, rows, "Every trace in this scope completed.")


def config_table(runs: Sequence[str], lifecycle: Sequence[Doc]) -> Table:
    """The config keys whose values differ between ``runs``, one column per run (``-``: the run lacks the key)."""
    infos = run_infos(runs, lifecycle)
    rows = [
        [key, *(v if v is not None else "-" for v in values)]
        for key, values in config_differences(list(infos.values()))
    ]
    unsent = [run for run, info in infos.items() if not info.config]
    empty = "The runs' configs are the same." if not unsent else f"No config was sent by {', '.join(unsent)}."
    return Table("config", "Config differences", ["config key", *runs], rows, empty)


# =========================================================================== collect


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
        return sorted({str(r) for d in [*self.training, *self.runs] if (r := _get(d, "aitrace.run_id"))})


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
    named = {str(_get(d, "aitrace.run_id")) for d in every}
    missing = [run for run in runs if run not in named]
    if not missing and not docs.empty():
        return
    scope = f"run {missing[0]!r}" if missing else f"model {model!r}" if model else "any run or model"
    when = f" since {since}" if since else ""
    raise ReportError(f"nothing indexed for {scope}{when} under {prefix}-*-* (has the worker indexed anything yet?)")


def alert_docs(fetcher: Fetcher, runs: Sequence[str], model: str | None = None) -> list[Doc]:
    filters = _run_filters(runs) + ([_term("aitrace.alert.model", model)] if model else [])
    return fetcher.fetch("alerts", filters, ("@timestamp", "event.id"), "alert")


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
        model_traces = {_get(d, "trace.id") for d in docs.inference}
        docs.traces = [t for t in docs.traces if _get(t, "trace.id") in model_traces]
    return docs


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
        if _get(alert, "aitrace.alert.kind") != "drift" or not _get(alert, "aitrace.alert.feature"):
            continue
        if _get(alert, "aitrace.alert.model"):
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


# =========================================================================== render


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/Inf become null (JSON has neither), numpy scalars become numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def page_data(data: ReportData) -> str:
    """The data island: JSON with ``<``, ``>`` and ``&`` as escapes, so no string can end the element."""
    text = json.dumps(_clean(asdict(data)), allow_nan=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    if not table.rows:
        body = f'<tr><td colspan="{len(table.columns)}" class="empty">{html.escape(table.empty)}</td></tr>'
    else:
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    return (
        f'<section id="{html.escape(table.id)}"><h2>{html.escape(table.title)} ({len(table.rows)})</h2>'
        f'<table data-rows="{len(table.rows)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>'
    )


def render(data: ReportData) -> str:
    """The whole page as one string: CSS, data island, drawing script; no external reference."""
    summary = "".join(
        f"<div class='card'><b>{value}</b><span>{html.escape(name)}</span></div>"
        for name, value in data.summary.items()
    )
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in data.notes)
    tables = "".join(_table_html(t) for t in data.tables)
    return (
        TEMPLATE.replace("@@TITLE@@", html.escape(data.title))
        .replace("@@GENERATED@@", html.escape(data.generated_at))
        .replace("@@SUMMARY@@", summary)
        .replace("@@NOTES@@", notes)
        .replace("@@TABLES@@", tables)
        .replace("@@CSS@@", CSS)
        .replace("@@SCRIPT@@", SCRIPT)
        .replace("@@DATA@@", page_data(data))
    )


def write_atomic(path: Path, text: str) -> None:
    """Write next to the target and rename: a reader never sees half a page.

    The temporary file is opened normally (not with ``mkstemp``, which makes it 0600), so the
    page gets the permissions the user's umask gives any new file.
    """
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
    parser.add_argument("--es-url", help="search server (default: AITRACE_ES_URL or the embedded stack)")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="documents read per kind at most")
    parser.add_argument("--since", metavar="TIME", type=_iso_time, help="only data from TIME on (ISO 8601, UTC)")
    parser.add_argument("--index-prefix", help="index name prefix (AITRACE_INDEX_PREFIX)")


def _iso_time(text: str) -> str:
    """``--since``: an ISO 8601 time (naive means UTC), normalized to what the index compares."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-11-26T15:40:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_index(command: str, args: argparse.Namespace, read: Callable[[Any, str], T]) -> T | None:
    """``read(es, prefix)`` on the server the flags of :func:`add_source_arguments` name.

    A failure (nothing indexed, the server unreachable or refusing) is one line on stderr
    naming ``aitrace <command>``, and None; never a traceback.
    """
    from aitrace.sinks.es import SearchUnavailable, make_sync_client
    from elastic_transport import ApiError, TransportError

    settings = Settings.from_env(es_url=args.es_url, index_prefix=args.index_prefix)
    try:
        return read(make_sync_client(settings), settings.index_prefix)
    except ReportError as exc:
        print(f"aitrace {command}: {exc}", file=sys.stderr)
    except (SearchUnavailable, TransportError, OSError) as exc:
        print(f"aitrace {command}: cannot read the search server at {settings.es_url}: {exc}", file=sys.stderr)
    except ApiError as exc:
        print(f"aitrace {command}: the search server refused the query at {settings.es_url}: {exc}", file=sys.stderr)
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
