"""``aitrace compare A B``: training runs side by side in the terminal (or as one JSON document).

For each training metric and split (loss, grad_norm, lr, accuracy, then the validation ones
when present): the first, last and best value of each run with their steps; each run's status
(from its lifecycle events) and alert count; the config keys whose values differ. It reads
what ``aitrace report --run A --run B`` draws, through the same queries and reductions
(:mod:`aitrace.infra.report_fetch`, :mod:`aitrace.infra.report_training`, :mod:`aitrace.infra.runs`).

"Best" follows the metric's role (:func:`aitrace.detect.training.metric_role`): the lowest
loss, the highest accuracy-like score. A gradient norm or a schedule has no better direction,
so it has no best.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from aitrace.detect.training import metric_role
from aitrace.infra.report import ReportError, add_source_arguments, read_index
from aitrace.infra.report_data import Series
from aitrace.infra.report_fetch import TRAINING_METRICS, Doc, Fetcher, alert_docs, run_docs, training_docs
from aitrace.infra.report_training import series_key, training_series
from aitrace.infra.runs import RunInfo, config_differences, config_value, run_infos
from aitrace.sinks.hit_rows import get

CELL = 60  # characters of a table cell
GOALS = {"loss": min, "score": max}  # metric role -> which value is best
TRAIN_SPLITS = ("train", "")  # named by the metric alone; other splits are "<split> <metric>"

Value = float | str  # a number, or "nan" / "inf" / "-inf" as the documents spell non-finite values


@dataclass
class Point:
    step: float
    value: Value


@dataclass
class MetricSummary:
    """One run's series of one metric: where it started, where it ended, its best point."""

    first: Point
    last: Point
    best: Point | None  # None for metrics without a better direction (grad_norm, lr)
    points: int


@dataclass
class RunSummary:
    run: str
    status: str
    alerts: int
    metrics: dict[str, MetricSummary] = field(default_factory=dict)  # label ("loss", "val loss") -> summary


@dataclass
class Comparison:
    runs: list[RunSummary]
    config: list[tuple[str, list[str | None]]]  # the keys that differ, the JSON text per run (None: no such key)
    notes: list[str] = field(default_factory=list)  # what the reads left out (document limits)


def summarize(name: str, series: Series) -> MetricSummary | None:
    """First, last and best point of one series; non-finite values count as first or last, never as best."""
    values = [Point(x, float(y)) for x, y in series.points if x is not None and y is not None]
    finite = list(values)
    values += [Point(x, str(kind)) for x, kind in series.nonfinite]
    if not values:
        return None
    values.sort(key=lambda p: p.step)
    goal = GOALS.get(metric_role(name))
    # a rolled-up window's point is its mean: its best is the band's low (a loss) or high (a score)
    ends = [(x, low if goal is min else high) for x, low, high in series.band] if goal is not None else []
    finite += [Point(x, float(end)) for x, end in ends if x is not None and end is not None]
    best = goal(finite, key=lambda p: p.value) if goal and finite else None
    return MetricSummary(values[0], values[-1], best, len(values))


def rollup_lasts(docs: Iterable[Doc]) -> dict[tuple[str, str, str], Point]:
    """(metric, run, split) -> the last finite value of its last rolled-up window (where the series is rolled up:
    its points are window means, and the last of them is not where the run ended)."""
    return _rollup_ends(docs, "last", "step", later=True)


def rollup_firsts(docs: Iterable[Doc]) -> dict[tuple[str, str, str], Point]:
    """(metric, run, split) -> the first finite value of its first rolled-up window, at the window's first step
    (a window's point is its mean at its last step: a run of 8 steps, all in one window, began "0.1 at step 7"
    where its loss was 2.0 at step 0). Windows indexed before they kept their first value have none."""
    return _rollup_ends(docs, "first", "first_step", later=False)


def _rollup_ends(docs: Iterable[Doc], value: str, step: str, *, later: bool) -> dict[tuple[str, str, str], Point]:
    out: dict[tuple[str, str, str], Point] = {}
    for doc in docs:
        metric = get(doc, "aitrace.metric", {})
        at, x = metric.get(step), metric.get(value)
        if not metric.get("rollup") or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (x, at)):
            continue
        run, split = series_key(doc)
        key = (str(metric.get("name")), run, split)
        if key not in out or (at >= out[key].step if later else at < out[key].step):
            out[key] = Point(at, float(x))
    return out


def _label(name: str, split: str) -> str:
    return name if split in TRAIN_SPLITS else f"{split} {name}"


def _label_order(label: str) -> tuple[bool, str, int]:
    """Training metrics first, in report order, then each other split's."""
    split, _, name = label.rpartition(" ")
    return bool(split), split, TRAINING_METRICS.index(name)


def compare_runs(fetcher: Fetcher, runs: list[str]) -> Comparison:
    """Read and reduce ``runs``; ReportError names the first run that has no events."""
    training = training_docs(fetcher, runs)
    lifecycle = run_docs(fetcher, runs)
    seen = {(d.get("aitrace") or {}).get("run_id") for d in [*training, *lifecycle]}
    for run in runs:
        if run not in seen:
            when = f" since {fetcher.since}" if fetcher.since else ""
            raise ReportError(f"no events for run {run!r}{when} under {fetcher.prefix}-events-* (is the id right?)")
    alerts = alert_docs(fetcher, runs)
    infos = run_infos(runs, lifecycle)
    summaries = {run: _run_summary(infos[run], alerts) for run in runs}
    lasts, firsts = rollup_lasts(training), rollup_firsts(training)
    for name, by_key in training_series(training).items():
        for (run, split), series in by_key.items():
            summary = summarize(name, series)
            if run in summaries and summary is not None:
                end, start = lasts.get((name, run, split)), firsts.get((name, run, split))
                if end is not None and end.step >= summary.last.step and not isinstance(summary.last.value, str):
                    summary.last = end
                if start is not None and start.step <= summary.first.step and not isinstance(summary.first.value, str):
                    summary.first = start
                summaries[run].metrics[_label(name, split)] = summary
    for run_summary in summaries.values():
        run_summary.metrics = dict(sorted(run_summary.metrics.items(), key=lambda item: _label_order(item[0])))
    return Comparison(list(summaries.values()), config_differences(list(infos.values())), fetcher.notes)


def _run_summary(info: RunInfo, alerts: list[dict[str, Any]]) -> RunSummary:
    count = sum(1 for a in alerts if (a.get("aitrace") or {}).get("run_id") == info.run)
    return RunSummary(info.run, info.status, count)


# --------------------------------------------------------------------------- output


def to_json(comparison: Comparison) -> dict[str, Any]:
    """The comparison as one JSON document; config values decoded (``"0.5"`` -> 0.5), a missing key left out."""
    runs = [r.run for r in comparison.runs]
    config = {
        key: {run: config_value(text) for run, text in zip(runs, values, strict=True) if text is not None}
        for key, values in comparison.config
    }
    return {"runs": [asdict(r) for r in comparison.runs], "config": config, "notes": comparison.notes}


def _fmt(value: Value) -> str:
    return value if isinstance(value, str) else f"{value:.4g}"


def _cell(point: Point | None) -> str:
    return "-" if point is None else f"{_fmt(point.value)} (step {point.step:g})"


def _metric_rows(comparison: Comparison) -> list[list[str]]:
    labels = sorted({label for r in comparison.runs for label in r.metrics}, key=_label_order)
    rows = []
    for label in labels:
        summaries = [r.metrics.get(label) for r in comparison.runs]
        for i, which in enumerate(("first", "last", "best")):
            cells = [_cell(getattr(s, which)) if s else "-" for s in summaries]
            rows.append([label if i == 0 else "", which, *cells])
    return rows


def to_text(comparison: Comparison) -> str:
    """Aligned columns, one per run: status and alerts, each metric's first/last/best, the config that differs."""
    runs = comparison.runs
    rows: list[list[str]] = [["", "", *(r.run for r in runs)]]
    rows.append(["status", "", *(r.status for r in runs)])
    rows.append(["alerts", "", *(str(r.alerts) for r in runs)])
    rows += [[""] * (len(runs) + 2), *_metric_rows(comparison), [""] * (len(runs) + 2)]
    if comparison.config:
        n = len(comparison.config)
        differ = "1 key differs" if n == 1 else f"{n} keys differ"
        rows.append([f"config: {differ}", "", *([""] * len(runs))])
        rows += [[key, "", *(v if v is not None else "-" for v in values)] for key, values in comparison.config]
    else:
        rows.append(["config: no key differs", "", *([""] * len(runs))])
    lines = _align(rows) + [f"note: {n}" for n in comparison.notes]
    return "\n".join(lines) + "\n"


def _align(rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell; a title row (its first cell alone) does not widen the first."""
    rows = [[_cut(c) for c in r] for r in rows]  # one 100 KB config value padded every cell to it (1.6 MB)
    first = max(len(r[0]) for r in rows if any(r[1:]))
    widths = [first] + [max(len(r[i]) for r in rows) for i in range(1, len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _cut(cell: str) -> str:
    """A cell of at most :data:`CELL` characters, its start and its end (two paths that differ in their last
    folder stay told apart; ``--json`` has the whole value)."""
    if len(cell) <= CELL:
        return cell
    head = (CELL - 1) * 2 // 3
    return cell[:head] + "…" + cell[len(cell) - (CELL - 1 - head) :]


# --------------------------------------------------------------------------- CLI


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", metavar="RUN", nargs="+", help="two or more training run ids")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    add_source_arguments(parser)


def run(name: str, args: argparse.Namespace) -> int:
    runs = list(dict.fromkeys(args.runs))  # a run named twice is one column
    if len(runs) < 2:
        print("aitrace compare: name two or more different runs", file=sys.stderr)
        return 2
    comparison = read_index(
        name, args, lambda es, prefix: compare_runs(Fetcher(es, prefix, args.limit, args.since), runs)
    )
    if comparison is None:
        return 1
    if args.json:
        print(json.dumps(to_json(comparison), allow_nan=False))
    else:
        sys.stdout.write(to_text(comparison))
    return 0
