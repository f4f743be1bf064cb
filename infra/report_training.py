"""The training curves of ``aitrace report``: one chart per metric, a series per run and split, flagged steps marked."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from aitrace.infra.report_axis import training_axis
from aitrace.infra.report_data import Chart, Marker, Series
from aitrace.infra.report_fetch import TRAINING_METRICS, Doc
from aitrace.sinks.hit_rows import get

_SPLITS = frozenset({"train", "training", "val", "valid", "validation", "eval", "test"})  # a metric's name prefix
SeriesKey = tuple[str, str]  # (run, split); the split is "" when the producer sent none


def series_key(doc: Doc) -> SeriesKey:
    run = get(doc, "aitrace.run_id") or get(doc, "service.name") or "run"
    return str(run), str(get(doc, "aitrace.metric.split") or "")


def _alert_metric(alert: Doc) -> str | None:
    """Which training metric an alert is about: details first, then the series name."""
    details = get(alert, "aitrace.alert.details", {}) or {}
    if details.get("metric") in TRAINING_METRICS:
        return str(details["metric"])
    series = str(get(alert, "aitrace.alert.series", "") or "")
    parts = series.split("/")
    if details.get("metric") or (len(parts) == 4 and parts[0] == "run"):  # a metric's own alert
        # one the report does not draw (bleu_loss) marks no chart: it marked every chart of its run
        name = str(details.get("metric") or parts[-1])
        split, _, base = name.partition("_")  # val_loss, train_accuracy as a loop sends them: their chart
        return name if name in TRAINING_METRICS else base if split in _SPLITS and base in TRAINING_METRICS else ""
    for name in sorted(TRAINING_METRICS, key=len, reverse=True):  # grad_norm before a bare "norm"
        if name in series.replace("-", "_").split(":") or series.endswith(name) or f"/{name}" in series:
            return name
    return None


def training_series(docs: Iterable[Doc]) -> dict[str, dict[SeriesKey, Series]]:
    """metric -> (run, split) -> its series (named ``"<run> <split>"``), points and bands in step order."""
    by_metric: dict[str, dict[SeriesKey, Series]] = defaultdict(dict)
    for doc in docs:
        metric = get(doc, "aitrace.metric", {})
        name, step = metric.get("name"), metric.get("step")
        if name not in TRAINING_METRICS or step is None:
            continue
        key = series_key(doc)
        series = by_metric[name].setdefault(key, Series(" ".join(k for k in key if k), []))
        if metric.get("nonfinite"):
            series.nonfinite.append([step, metric["nonfinite"]])
            continue
        if metric.get("rollup") and metric.get("nonfinite_count"):  # a window of the worker's default rollup
            series.nonfinite.append([step, "nan/inf"])  # (its NaN/Inf points are counted, not which or where)
            if not metric.get("count"):
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
                get(a, "aitrace.alert.severity", "warning"),
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
        get(alert, "aitrace.alert.step") is not None
        and get(alert, "aitrace.run_id") in runs
        and _alert_metric(alert) in (metric, None)
    )


def _alert_series_name(alert: Doc) -> str | None:
    """The chart series an alert is about: ``run/<run>/<split>/<metric>`` -> ``"<run> <split>"``."""
    parts = str(get(alert, "aitrace.alert.series", "") or "").split("/")
    if len(parts) == 4 and parts[0] == "run":
        return f"{parts[1]} {parts[2]}"
    run = get(alert, "aitrace.run_id")
    return f"{run} train" if run else None


def _value_at(series: Series | None, x: float) -> float | None:
    if series is None:
        return None
    return next((p[1] for p in series.points if p[0] == x), None)


def _marker_label(alert: Doc) -> str:
    step = get(alert, "aitrace.alert.step")
    title = get(alert, "aitrace.alert.title") or get(alert, "message") or "alert"
    return f"{title} (step {step})" if step is not None else str(title)
