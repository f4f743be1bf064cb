"""Metric blocks: queued ``client.metric`` points of one (trace, span, split, metric names) as
the columns of one ``aitrace.MetricBlock``, built on the exporter thread.

Bad values never raise here: a value that is not a number is left out of its point and
counted (``rejected_*``), as in :mod:`aitrace.producers.events`. Whatever a caller passes, a
block this module builds fits ``aitrace.MetricBlock``: steps in 64 bits, epochs in 32, names
and split as text. So the encoder never refuses one of its points, and one bad point never
costs the points beside it (a step past 64 bits once took its whole block: 2 such steps in a
block of 200 lost all 200).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from enum import Enum
from typing import Any

from aitrace.producers.events import MetricPoint, Queued, as_float, as_int, text_value

_LONG = (-(2**63), 2**63 - 1)  # Avro's long: a step
_INT = (-(2**31), 2**31 - 1)  # Avro's int: an epoch


class MetricBlockBuilder:
    """The columns of one metric block: points of one (trace, span, split, metric names).

    A new set of metric names starts a new block, so NaN in a block is always a value the
    caller sent (data), never a filler for an absent metric.
    """

    __slots__ = ("columns", "epochs", "names", "parent_span_id", "span_id", "split", "steps", "times", "trace_id")

    def __init__(self, ctx: Any, split: str | None, names: tuple) -> None:
        self.trace_id = ctx.trace_id
        self.span_id = ctx.span_id
        self.parent_span_id = ctx.parent_span_id
        self.split = split
        self.names = names
        self.steps: list[int] = []
        self.times: list[int] = []
        self.epochs: list[int] = []
        self.columns: list[list[float]] = [[] for _ in names]

    def __len__(self) -> int:
        return len(self.steps)

    def build(self, block_id: str, envelope: dict[str, Any], lo: int = 0, hi: int | None = None) -> dict[str, Any]:
        """The ``aitrace.MetricBlock`` of rows ``lo:hi``."""
        hi = len(self.steps) if hi is None else hi
        epochs = self.epochs[lo:hi]
        return {
            "block_id": block_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "service": envelope["service"],
            "service_version": envelope["service_version"],
            "environment": envelope["environment"],
            "host": envelope["host"],
            "pid": envelope["pid"],
            "run_id": envelope["run_id"],
            "split": self.split,
            "steps": self.steps[lo:hi],
            "times": self.times[lo:hi],
            "epochs": [] if all(e == -1 for e in epochs) else epochs,
            "series": [{"name": n, "values": c[lo:hi]} for n, c in zip(self.names, self.columns, strict=True)],
        }


def metric_blocks(items: list[Queued], stats: Counter[str]) -> list[MetricBlockBuilder]:
    """Columnar blocks from queued metric points (fields ``(values, step, epoch, split)``).

    The common case (int steps, numeric values) is a few list comprehensions per block: the
    transposition into columns runs in C (``zip``), which keeps the exporter's share of the GIL
    small. A block with anything unusual is rebuilt row by row, where bad values are left out
    and counted.
    """
    rows_by_key: dict[tuple, list[Queued]] = {}
    for item in items:
        _, _, ctx, (values, _, _, split), _ = item
        key = (ctx.span_id, split, *values)  # span, split, metric names
        try:
            rows = rows_by_key.get(key)
        except Exception:  # an unhashable split (a list), a hash that raises: grouped by its text
            key = (ctx.span_id, _split_text(split, stats), *values)
            rows = rows_by_key.get(key)
        if rows is None:
            rows_by_key[key] = [item]
        else:
            rows.append(item)
    out: list[MetricBlockBuilder] = []
    for key, rows in rows_by_key.items():
        names = key[2:]
        if not names:
            stats["rejected_empty_metric"] += len(rows)
            continue
        split = key[1] if key[1] is None or isinstance(key[1], str) else _split_text(key[1], stats)
        counts: Counter[str] = Counter()  # kept only if the fast path holds (the slow one counts afresh)
        try:
            out.append(_fast_block(rows, split, names, counts))
        except Exception:  # anything unusual (a value whose float() raises ZeroDivisionError): row by row
            out.extend(_slow_blocks(rows, split, stats))
        else:
            stats.update(counts)
    return out


_INTS = {int}
_EPOCH_TYPES = {int, type(None)}
_FLOAT = {float}


def _fast_block(rows: list[Queued], split: str | None, names: tuple, stats: Counter[str]) -> MetricBlockBuilder:
    points: list[MetricPoint] = [fields for _, _, _, fields, _ in rows]
    steps = [step for _, step, _, _ in points]
    if set(map(type, steps)) != _INTS or min(steps) < _LONG[0] or max(steps) > _LONG[1]:
        raise TypeError("steps that are not int, or past 64 bits")
    if not all(isinstance(name, str) for name in names):
        raise TypeError("a metric name that is not text")
    epochs = [epoch for _, _, epoch, _ in points]
    block = MetricBlockBuilder(rows[0][2], split, names)
    block.steps = steps
    block.times = [time_us for _, time_us, _, _, _ in rows]
    block.epochs = [-1] * len(rows) if epochs.count(None) == len(rows) else _epochs(epochs, stats)
    columns = [[values[name] for values, _, _, _ in points] for name in names]
    for i, column in enumerate(columns):
        if set(map(type, column)) != _FLOAT:
            columns[i] = [float(v) for v in column]  # ints, numpy scalars; anything else raises
    block.columns = columns
    return block


def _slow_blocks(rows: list[Queued], split: str | None, stats: Counter[str]) -> list[MetricBlockBuilder]:
    """Row by row: values that are not numbers are left out (counted); a bad step (a bool, a fraction, not a
    number, past 64 bits) drops the row; a bad epoch (the same, past 32 bits) is left out of it (counted)."""
    blocks: dict[tuple, MetricBlockBuilder] = {}
    for _, time_us, ctx, (values, step, epoch, _), _ in rows:
        names, floats = metric_point(values, stats)
        step_i = _whole(step, _LONG)
        if step_i is None:
            stats["rejected_bad_step"] += 1
            continue
        if not names:
            stats["rejected_empty_metric"] += 1
            continue
        block = blocks.get(names)
        if block is None:
            block = blocks[names] = MetricBlockBuilder(ctx, split, names)
        epoch_i = None if epoch is None else _whole(epoch, _INT)
        if epoch is not None and epoch_i is None:
            stats["rejected_bad_epoch"] += 1
        block.steps.append(step_i)
        block.times.append(time_us)
        block.epochs.append(-1 if epoch_i is None else epoch_i)
        for column, value in zip(block.columns, floats, strict=True):
            column.append(value)
    return list(blocks.values())


def metric_point(values: Mapping[Any, Any], stats: Counter[str]) -> tuple[tuple, list[float]]:
    """``(names, floats)`` of one ``client.metric`` call; values that are not numbers are left out and counted.

    NaN and Inf are numbers: they are kept (a diverging loss is the point of logging it). A name
    that is not text is written as text (``{5: 0.5}`` is metric ``"5"``), as ``text_map`` writes
    keys; one that then repeats a name of the point is left out (counted).
    """
    kept_names: list[str] = []
    seen: set[str] = set()  # (a list's `in` made a point of 8,000 names cost 306 ms)
    floats = []
    for k, v in values.items():
        number = as_float(v)
        if number is None:
            stats["rejected_non_numeric_metric"] += 1
            continue
        name = k if isinstance(k, str) else _text(k)
        if name is None:
            stats["rejected_bad_metric_name"] += 1
            continue
        if name in seen:
            stats["rejected_duplicate_metric"] += 1
            continue
        seen.add(name)
        kept_names.append(name)
        floats.append(number)
    return tuple(kept_names), floats


def halves(block: dict[str, Any]) -> list[dict[str, Any]]:
    """Split a metric block's rows in two halves (ids stay derivable: ``<block_id>.<first row>``)."""
    n = len(block["steps"])
    half = n // 2
    out = []
    for lo, hi in ((0, half), (half, n)):
        part = rows(block, lo, hi)
        part["block_id"] = f"{block['block_id']}.{lo}" if lo else block["block_id"]
        out.append(part)
    return out


def rows(block: dict[str, Any], lo: int, hi: int | None) -> dict[str, Any]:
    """A metric block of its rows ``lo:hi`` (its id unchanged)."""
    part = dict(block)
    for column in ("steps", "times"):
        part[column] = block[column][lo:hi]
    part["epochs"] = block["epochs"][lo:hi] if block["epochs"] else []
    part["series"] = [{"name": s["name"], "values": s["values"][lo:hi]} for s in block["series"]]
    return part


def _epochs(epochs: list[Any], stats: Counter[str]) -> list[int]:
    """The schema's epochs (-1: none): plain ints in 32 bits as they are, any other one through :func:`_whole`
    (np.int64 and 2.0 are epochs; 1.5, True and 2**40 are left out, counted)."""
    if set(map(type, epochs)) <= _EPOCH_TYPES:
        plain = [-1 if e is None else e for e in epochs]
        if _INT[0] <= min(plain) and max(plain) <= _INT[1]:
            return plain
    out = [-1 if e is None else _whole(e, _INT) for e in epochs]
    stats["rejected_bad_epoch"] += out.count(None)
    return [-1 if e is None else e for e in out]


def _whole(value: Any, bounds: tuple[int, int]) -> int | None:
    """A step or an epoch as an integer within ``bounds``; None for a bool, a fraction (1.5, ``np.float32(0.5)``,
    ``Decimal("1.5")``), a value past the bounds or anything that is not a number."""
    number = as_int(value)
    if number is None or isinstance(value, bool) or not bounds[0] <= number <= bounds[1]:
        return None
    try:  # text that int() reads ("5", " 7 ") is that number, as it was before the bounds
        return number if type(value) is int or isinstance(value, str) or bool(value == number) else None
    except Exception:  # a comparison that raises (an array) or cannot be a bool
        return None


def _split_text(split: Any, stats: Counter[str]) -> str:
    """A split that is not a string (``split=5``, an ``Enum`` member, a list), as :func:`_text` writes it; one with
    no text of its own as ``text_value`` writes it (its repr, or ``<unrepresentable X>``)."""
    text = _text(split)
    return text_value(split, stats) if text is None else text


def _text(value: Any) -> str | None:
    """A split or a metric name that is not a string, as text: an ``Enum`` member by its value (``Split.VAL`` is
    "val"), anything else by ``str()``; None when that raises."""
    value = value.value if isinstance(value, Enum) else value
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:
        return None
