"""``aitrace backtest``: run the detectors over a CSV of past values and list what they flag.

Use it to tune a threshold on your own history before turning alerts on:

    aitrace backtest history.csv --column loss --timestamp step --kind loss --threshold 0.6 -o flagged.csv

It also prints how many points each of a few thresholds (0.3 ... 0.99) would
flag. By default the worker's own rules for a training metric named like the column decide
(as ``--metric COLUMN``): what the worker would page on. With ``--raw`` the raw anomaly score
is thresholded (every reason, both directions, no calibration against the series' own
history; 0.5 by default). With ``--kind`` the :class:`~aitrace.detect.SeriesMonitor` for that
series type decides (directions, hard limits, reasons such as ``exploding``; the kind's
threshold by default, and for kinds other than loss, grad_norm and lr only points rare for the
series page, as in the worker). With
``--metric NAME`` the worker's own rules for a training metric of that name decide
(:class:`~aitrace.detect.series.TrainingSeries`: the alerts the worker would raise on it,
stalls and plateaus included), at the worker's default threshold (0.9) unless ``--threshold``
says otherwise; ``--time`` names a column of the points' event times, which the worker has:
a metric that is no loss, score or schedule is then judged against its daily or weekly cycle (and
its last day's level until it has one), a latency also by its sustained rises, and a run's pace
(``step_time``, ``samples_per_sec``) by its slowdowns held 32 seconds (without times, only 3x ones). With
``--service KIND`` (latency, confidence, error_rate, wrong_predictions, feature) the worker's
rules for that series of a model in service decide (:mod:`aitrace.detect.service`: calibrated
anomaly scores against the series' own cycle, latency level shifts, rate windows of 0/1
outcomes, drift windows), at the worker's defaults; ``--timestamp`` then names a column of
event times, in ``--time-unit`` (microseconds by default) or ISO 8601 text.
Empty cells and unparsable numbers count as NaN (and are flagged as such).
Exit status: 0 on success (flagged or not), 2 on bad arguments, an unreadable file, a time that is
neither a number nor ISO 8601, or (error_rate, wrong_predictions) an outcome other than 0 or 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

OUTPUT_FIELDS = ("row", "timestamp", "value", "score", "reason", "message")


class BadInput(ValueError):
    """The file's values do not fit the rules asked for: one line and exit status 2."""


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="CSV file with a header row")
    parser.add_argument("--column", required=True, help="name of the numeric column to score")
    parser.add_argument("--timestamp", help="column used as step/time (default: the row number)")
    parser.add_argument(
        "--threshold",
        type=float,
        help="score at or above which a point is flagged (0-1]; default: the rule's own (the worker's 0.9, the "
        "kind's for --kind, 0.5 for --raw)",
    )
    rules = parser.add_mutually_exclusive_group()
    rules.add_argument(
        "--raw",
        action="store_true",
        help="threshold the raw anomaly score (default: the worker's rules, --metric COLUMN)",
    )
    rules.add_argument("--kind", choices=_kinds(), help="series kind for the SeriesMonitor rules")
    rules.add_argument(
        "--metric", help="a training metric's name: the worker's rules for it (TrainingSeries), at --threshold"
    )
    rules.add_argument("--service", choices=_service_kinds(), help="a model in service's series: the worker's rules")
    parser.add_argument("--split", default="train", help="with --metric: the split the series belongs to")
    parser.add_argument(
        "--time",
        help="with --metric (or none of --raw, --kind, --service): a column of the points' event times, in "
        "--time-unit or ISO 8601, which the worker has: a metric that is no loss, score or schedule is then judged "
        "against its daily or weekly cycle (until it has one, from its second day against its last day's level), "
        "a latency also by its sustained rises, and a run's pace (step_time, samples_per_sec) by its 1.5x "
        "slowdowns held 32 seconds (without times, only its 3x ones)",
    )
    parser.add_argument(
        "--time-unit", choices=("us", "ms", "s"), default="us", help="with --service or --time: numeric times' unit"
    )
    parser.add_argument(
        "--window", type=int, help="with --raw or --kind: detector window in points (default 64; the worker's own else)"
    )
    parser.add_argument("-o", "--output", type=Path, help="also write the flagged points to this CSV")
    parser.add_argument("--limit", type=int, default=50, help="print at most this many flagged points (default 50)")
    parser.add_argument(
        "--json", action="store_true", help="every flagged point as one JSON object per line (summary on stderr)"
    )


_MAX_WINDOW = 1_000_000  # points: the detectors keep a few arrays of the window (about 20 MB)


def _kinds() -> tuple[str, ...]:
    from aitrace.detect.series_kinds import KINDS

    return KINDS


def _service_kinds() -> tuple[str, ...]:
    from aitrace.detect.service import SERVICE_KINDS

    return SERVICE_KINDS


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _parse_time(text: str) -> int | float | str:
    try:  # a whole number stays one: a float kept 16 digits of a time in ns, and printed a step as 100.0
        return int(text)
    except (TypeError, ValueError):
        pass
    value = _parse_float(text)
    return text if math.isnan(value) else value


def read_series(
    path: Path, column: str, timestamp: str | None, time: str | None = None
) -> tuple[np.ndarray, list[Any], list[Any] | None]:
    """Values of ``column`` as float64 (NaN where empty/unparsable), the timestamps (or row numbers), and
    the event times of column ``time`` (None without it), in one pass over the file."""
    with path.open(newline="", encoding="utf-8-sig") as fh:  # (Excel's "CSV UTF-8" starts with a byte-order mark)
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        for wanted in (column, timestamp, time):
            if wanted is not None and fields.count(wanted) > 1:  # DictReader would keep the last silently
                raise ValueError(f"column {wanted!r} appears {fields.count(wanted)} times in {path}'s header")
            if wanted is not None and wanted not in fields:
                raise ValueError(f"column {wanted!r} not in {path} (columns: {', '.join(fields) or 'none'})")
        values: list[float] = []
        stamps: list[Any] = []
        clock: list[Any] = []
        for i, row in enumerate(reader):
            values.append(_parse_float(row[column]))
            stamps.append(_parse_time(row[timestamp]) if timestamp else i)
            if time is not None:
                clock.append(_parse_time(row[time]))
    return np.asarray(values, dtype=np.float64), stamps, None if time is None else clock


def _backwards(stamps: list[Any]) -> int:
    """How many numeric timestamps are below the one before them (0 where they are not all numbers)."""
    if not all(isinstance(s, int | float) for s in stamps):
        return 0
    return int(np.count_nonzero(np.diff(np.asarray(stamps, dtype=np.float64)) < 0))


def _steps(values: np.ndarray, stamps: list[Any]) -> np.ndarray:
    """The timestamps when every one is a number, else the row numbers."""
    numeric = [s for s in stamps if isinstance(s, float | int)]
    if len(numeric) == len(stamps):
        steps = np.asarray(stamps, dtype=np.float64)
        beyond = np.flatnonzero(~np.isfinite(steps))  # (the detectors refuse them: it was a traceback)
        if beyond.size:
            raise BadInput(f"row {int(beyond[0])}: timestamp {stamps[int(beyond[0])]!r} is no finite number")
        return steps
    return np.arange(values.size, dtype=np.float64)


def _rows(findings: list[Any], stamps: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "row": f.index,
            "timestamp": stamps[f.index],
            "value": f.value,
            "score": f.score,
            "reason": f.reason,
            "message": f.message,
        }
        for f in findings
    ]


def worker_points(
    values: np.ndarray, stamps: list[Any], *, metric: str, split: str, threshold: float, times: np.ndarray | None = None
) -> list[dict]:
    """What the worker's rules for a training metric of this name flag (see ``TrainingSeries``); ``times``:
    the points' event times in microseconds, where known."""
    from aitrace.detect.series import TrainingSeries

    series = TrainingSeries(metric, split=split, threshold=threshold)
    return _rows(series.update(_steps(values, stamps), values, times=times), stamps)


def flag_points(
    values: np.ndarray, stamps: list[Any], *, threshold: float, kind: str | None, window: int
) -> list[dict[str, Any]]:
    """The flagged points as dicts with OUTPUT_FIELDS keys, in file order."""
    from aitrace.detect.anomaly import anomaly_details
    from aitrace.detect.anomaly_kernel import CODE_NAMES
    from aitrace.detect.monitor import SeriesMonitor

    if kind is None:
        scores, codes, _ = anomaly_details(values, window=window)
        hits = np.flatnonzero(scores >= threshold)
        return [
            {
                "row": int(i),
                "timestamp": stamps[i],
                "value": float(values[i]),
                "score": float(scores[i]),
                "reason": CODE_NAMES[int(codes[i])],
                "message": "",
            }
            for i in hits
        ]
    monitor = SeriesMonitor(kind, threshold=threshold, window=window, skip_seen=False)
    return _rows(monitor.update(_steps(values, stamps), values), stamps)


def _times_us(values: np.ndarray, stamps: list[Any], unit: str | None) -> np.ndarray:
    """Event times in microseconds: numbers in ``unit``, ISO 8601 text, or (no unit: the stamps
    are row numbers) one a second from 0."""
    if unit is None:
        return np.arange(values.size, dtype=np.int64) * 1_000_000
    numbers = [isinstance(s, float | int) for s in stamps]
    if all(numbers):
        scale = {"us": 1, "ms": 1_000, "s": 1_000_000}[unit]
        times = np.asarray(stamps, dtype=np.float64) * scale
        beyond = np.flatnonzero(~(np.abs(times) < 2.0**62))  # inf, 1e300: no time (int64 made them garbage)
        if beyond.size:
            row = int(beyond[0])
            raise BadInput(f"row {row}: time {stamps[row]!r} {unit} is beyond any date")
        return times.astype(np.int64)
    if numbers[0]:  # numbers first: the odd one out is the first text (an empty cell blamed row 0)
        row = numbers.index(False)
        raise BadInput(f"row {row}: time {stamps[row]!r} is no number where the rows before hold numbers")
    return np.asarray([_iso_us(row, stamp) for row, stamp in enumerate(stamps)], dtype=np.int64)


def _iso_us(row: int, stamp: Any) -> int:
    """One ISO 8601 time in microseconds; anything else names its row (a mix of numbers and
    text, or text that is no time, used to end in a traceback or in row numbers taken silently)."""
    from datetime import UTC, datetime

    if isinstance(stamp, float | int):
        raise BadInput(f"row {row}: time {stamp:g} is a number where other rows hold text: use one form")
    try:
        when = datetime.fromisoformat(stamp)
        # a time without a zone is UTC, as search, report and compare read it (not the operator's TZ)
        return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1e6)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"row {row}: time {stamp!r} is neither a number (in --time-unit) nor ISO 8601 text") from None


def service_points(
    values: np.ndarray, stamps: list[Any], *, kind: str, threshold: float, unit: str | None = "us"
) -> list[dict[str, Any]]:
    """What the worker's rules for a model in service's series flag (see ``aitrace.detect.service``)."""
    from aitrace.detect.service import DriftWindows, RateSeries, ServiceSeries

    rules: ServiceSeries | RateSeries | DriftWindows
    if kind in ("error_rate", "wrong_predictions"):
        odd = np.flatnonzero((values != 0) & (values != 1))
        if odd.size:
            row = int(odd[0])
            raise BadInput(f"row {row}: --service {kind} reads outcomes, 1 bad and 0 good; got {values[row]:g}")
        rules = RateSeries(kind)
    elif kind == "feature":
        rules = DriftWindows("feature")
    else:
        rules = ServiceSeries(kind, threshold=threshold)
    return _rows(rules.update(_times_us(values, stamps, unit), values), stamps)


SWEEP = (0.3, 0.5, 0.7, 0.9, 0.99)


def _flag(
    values: np.ndarray, stamps: list[Any], args: argparse.Namespace, threshold: float, times: np.ndarray | None = None
) -> list[dict[str, Any]]:
    if args.service:
        return service_points(
            values, stamps, kind=args.service, threshold=threshold, unit=args.time_unit if args.timestamp else None
        )
    if args.raw or args.kind:
        return flag_points(values, stamps, threshold=threshold, kind=args.kind, window=args.window)
    metric = args.metric or args.column
    return worker_points(values, stamps, metric=metric, split=args.split, threshold=threshold, times=times)


def threshold_sweep(
    values: np.ndarray, stamps: list[Any], args: argparse.Namespace, times: np.ndarray | None = None
) -> dict[float, int]:
    """How many points each threshold in SWEEP would flag: the table to pick a threshold from."""
    return {t: len(_flag(values, stamps, args, t, times)) for t in SWEEP}


def _print_table(rows: list[dict[str, Any]], out: TextIO, limit: int) -> None:
    print(f"{'row':>8}  {'timestamp':>20}  {'value':>14}  {'score':>8}  reason", file=out)
    for r in rows[: max(limit, 0)]:
        print(
            f"{r['row']:>8}  {r['timestamp']!s:>20}  {r['value']:>14.6g}  {r['score']:>8.4f}  {r['reason']}", file=out
        )
    if len(rows) > limit:
        print(f"... {len(rows) - limit} more (use -o to write them all)", file=out)


def _json_safe(value: Any) -> Any:
    """NaN and infinities are not JSON: null, as the search API writes them."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _rules(args: argparse.Namespace) -> str:
    """Which rules ran, in the summary's words."""
    if args.service:
        return f"the worker's rules for a model's {args.service}"
    if args.raw:
        return "the raw anomaly score"
    if args.kind:
        return f"SeriesMonitor {args.kind!r}"
    return f"the worker's rules for a training metric named {args.metric or args.column!r}"


def _default_threshold(args: argparse.Namespace) -> float:
    """The rule's own threshold: what the worker pages at, or the kind's."""
    from aitrace.detect.series_kinds import PROFILES

    if args.kind:
        return PROFILES[args.kind].threshold
    return 0.5 if args.raw else 0.9


def run(name: str, args: argparse.Namespace) -> int:
    args.threshold = _default_threshold(args) if args.threshold is None else args.threshold
    if not 0.0 < args.threshold <= 1.0:
        print(f"aitrace {name}: --threshold must be in (0, 1], got {args.threshold}", file=sys.stderr)
        return 2
    if args.window is not None and not (args.raw or args.kind):
        print(
            f"aitrace {name}: --window applies to --raw and --kind (the worker's rules keep their own)", file=sys.stderr
        )
        return 2
    args.window = 64 if args.window is None else args.window
    if not 8 <= args.window <= _MAX_WINDOW:  # (2e9 asked numpy for 37 GiB: a traceback)
        print(f"aitrace {name}: --window must be 8 to {_MAX_WINDOW:,}, got {args.window}", file=sys.stderr)
        return 2
    if args.limit < 0:
        print(f"aitrace {name}: --limit must be >= 0, got {args.limit}", file=sys.stderr)
        return 2
    if args.time is not None and (args.raw or args.kind or args.service):
        print(f"aitrace {name}: --time goes with --metric (--service reads times from --timestamp)", file=sys.stderr)
        return 2
    try:
        values, stamps, clock = read_series(args.file, args.column, args.timestamp, args.time)
    except (OSError, ValueError, csv.Error) as exc:
        print(f"aitrace {name}: {exc}", file=sys.stderr)
        return 2
    try:
        times = None if clock is None else _times_us(values, clock, args.time_unit)
        rows = _flag(values, stamps, args, args.threshold, times)
    except BadInput as exc:
        print(f"aitrace {name}: {exc}", file=sys.stderr)
        return 2
    summary = sys.stderr if args.json else sys.stdout  # --json: stdout is the rows alone
    backwards = _backwards(stamps) if args.timestamp else 0
    if backwards:  # (the same data sorted flagged 2 points, shuffled 10, without a word)
        print(
            f"aitrace {name}: {backwards} row(s) earlier than the row before: scored in file order, as the worker "
            "scores points in the order they arrive (sort the file by time to score them in time order)",
            file=sys.stderr,
        )
    print(
        f"{args.file}: {values.size} points in column {args.column!r}, "
        f"{len(rows)} flagged at threshold {args.threshold} ({_rules(args)})",
        file=summary,
    )
    sweep = threshold_sweep(values, stamps, args, times)
    print("flagged per threshold: " + ", ".join(f"{t:g}: {n}" for t, n in sweep.items()), file=summary)
    if args.json:
        for r in rows:
            print(json.dumps({k: _json_safe(v) for k, v in r.items()}))
    elif rows:
        _print_table(rows, sys.stdout, args.limit)
    if args.output is not None:
        try:
            with args.output.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=OUTPUT_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
        except OSError as exc:
            print(f"aitrace {name}: cannot write {args.output}: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {len(rows)} flagged points to {args.output}", file=summary)
    return 0
