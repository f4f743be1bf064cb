"""The data-stats feature table built by the faster code is the one the code before it built.

``_feature_columns`` skips the statistics no feature has, finds a batch shape's name table by one
comparison, and ``_number_columns`` skips its count of present values when no value is missing
(issue 11, the sender's cost per data-stats event). ``_old_feature_columns`` and
``_old_number_columns`` below are the code before that change, kept here as the reference: every
shape of features gives the same columns, the same counters and the same exception.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Callable
from itertools import chain, repeat
from typing import Any

import pytest
from aitrace.producers import blocks
from aitrace.producers import data_stats_blocks as ds
from aitrace.producers import events as ev
from aitrace.schemas.data_stats_block import LISTS, OPTIONAL_STATS


def _old_transposed(flat: list[Any]) -> Callable[..., list[Any]]:
    if not ds._only(flat, dict):
        raise TypeError("a feature is not a dict")
    keys = set().union(*flat)

    def column(name: str, default: Any = None) -> list[Any]:
        if name not in keys:
            return [default] * len(flat)
        return list(map(dict.get, flat, repeat(name), repeat(default)))

    return column


def _old_or_empty(values: list[Any], empty: Any) -> list[Any]:
    if None not in values:
        return values
    if values.count(None) == len(values):
        return [empty] * len(values)
    return [v or empty for v in values]


def _old_number_columns(maps: list[Any], kinds: frozenset[type]) -> dict[str, list[Any]] | None:
    names = set().union(*maps)
    if not ds._only(names, str) or not ds._only(maps, dict):
        return None
    columns = {name: list(map(dict.get, maps, repeat(name))) for name in sorted(names)}
    if any(set(map(type, column)) - kinds for column in columns.values()):
        return None
    present = sum(len(c) - c.count(None) for c in columns.values())
    return columns if present == sum(map(len, maps)) else None


def _old_quantiles(maps: list[Any]) -> dict[str, list[float | None]]:
    columns = _old_number_columns(maps, ds._FLOATS)
    if columns is not None:
        return columns
    maps = [{str(k): ev.as_float(v) for k, v in m.items()} for m in maps]
    if any(None in m.values() for m in maps):
        raise ValueError("a quantile is not a number")
    return blocks.numeric_columns(maps)


def _old_feature_columns(per_record: list[int], flat: list[Any], stats: Counter[str]) -> dict[str, Any]:
    column = _old_transposed(flat)
    out: dict[str, Any] = {"per_record": per_record}
    names = column("name", ds._ABSENT)
    if ds._ABSENT in names:
        raise KeyError("name")
    out["name"], out["name_index"] = blocks.interned(ds._texts(names, stats))
    dtypes = column("dtype", "numeric")
    out["dtype"], out["dtype_index"] = blocks.interned(dtypes if ds._only(dtypes, str) else list(map(str, dtypes)))
    out["count"], out["missing"] = (ds._ints(column(name)) for name in ("count", "missing"))
    for name in OPTIONAL_STATS:
        out[name] = ds._optional_floats(column(name))
    out["quantiles"] = _old_quantiles(_old_or_empty(column("quantiles"), {}))
    for (values, lengths), convert in zip(LISTS, (ds._edges, ds._counts), strict=True):
        lists = _old_or_empty(column(values), ())
        out[values] = convert(lists)
        out[lengths] = list(map(len, lists)) if out[values] else []
    out["categories"] = ds._categories(column("categories"))
    return out


def _f(name: Any, **stats: Any) -> dict[str, Any]:
    return {"name": name, **stats}


_BASIC = [_f(f"f{j}", count=1000, mean=0.5, variance=0.1, quantiles={"0.5": 0.5}) for j in range(4)]
_FULL = [_f("a", dtype="numeric", count=9, missing=1, mean=1.5, variance=2.0, min=0.0, max=3.0,
            quantiles={"0.1": 0.1, "0.5": 1, "0.9": 2.5}, histogram_edges=[0, 1.5, 3], histogram_counts=[4, 5]),
         _f("b", dtype="categorical", count=9, missing=0, categories={"x": 4, "y": 5, 3: 1})]  # fmt: skip
_RECORDS: dict[str, list[list[dict[str, Any]]]] = {
    "one batch shape": [_BASIC] * 30,
    "summaries": [_FULL] * 20,
    "one feature a record": [[_f("only", count=i)] for i in range(20)],
    "shapes differ in length": [_BASIC[: 1 + i % 4] for i in range(20)],
    "same length, names in another order": [_BASIC if i % 2 else _BASIC[::-1] for i in range(20)],
    "a record naming a feature twice": [[_f("a", count=1), _f("a", count=2)]] * 10,
    "a record without features": [[], *[_BASIC] * 9],
    "first record without features": [[], []],
    "no records": [],
    "names not text": [[_f(1), _f(None), _f(2.5)]] * 5,
    "text and a text subclass": [[_f("a"), _f(type("S", (str,), {})("a"))]] * 3,
    "a feature without a name": [[{"count": 3}, _f("a")]],
    "dtypes not text": [[_f("a", dtype=3), _f("b", dtype=None)]] * 4,
    "counts absent, None, floats": [[_f("a", count=None, missing=2.0), _f("b", missing=True)]] * 4,
    "ints for doubles": [[_f("a", mean=1, variance=None, min=2, max=math.inf)]] * 4,
    "quantiles: levels absent, None, numbers as keys": [
        [_f("a", quantiles={"0.5": 1.0}), _f("b", quantiles={"0.5": None, 0.9: 2}), _f("c", quantiles={})]
    ]
    * 4,
    "quantiles: not a number": [[_f("a", quantiles={"0.5": "x"})]] * 2,
    "quantiles and histograms falsy, not None": [[_f("a", quantiles=0, histogram_edges=(), histogram_counts=[])]] * 3,
    "quantiles: one level on some": [[_f("a", quantiles={"0.5": 1.0}), _f("b")]] * 5,
    "histograms of texts": [[_f("a", histogram_edges=[0.0, "1.0"], histogram_counts=[3])]],
    "categories on some": [[_f("a", categories={"k": 2}), _f("b", categories=None), _f("c")]] * 3,
    "a feature not a dict": [[_f("a"), ["name", "b"]]],
}


def _comparable(columns: dict[str, Any]) -> dict[str, Any]:
    """Arrays as their bytes (an array's == compares NaN unequal to itself; a list's takes the same object as equal)."""
    return {k: v.tobytes() if type(v) is array else v for k, v in columns.items()}


def _result(build: Callable[..., dict[str, Any]], records: list[list[dict[str, Any]]]) -> tuple[Any, Counter[str]]:
    stats: Counter[str] = Counter()
    try:
        out: Any = _comparable(build([len(r) for r in records], list(chain.from_iterable(records)), stats))
    except Exception as exc:  # the same exception (the caller then builds the records one by one)
        out = (type(exc), str(exc))
    return out, stats


@pytest.mark.parametrize("shape", _RECORDS)
def test_the_feature_table_is_the_one_the_old_code_built(shape: str) -> None:
    records = _RECORDS[shape]
    assert _result(ds._feature_columns, records) == _result(_old_feature_columns, records)


@pytest.mark.parametrize(
    "maps",
    [[{"fraud": 3, "ok": 7}] * 5, [{"fraud": 3}, {"ok": 7}], [{"a": None}, {"a": 1}], [{"a": 1.5}], [{}, {}], [],
     [{1: 2}], [{"a": 1}, None], [{"a": True}], [{"a": 1, "b": None}] * 3],
)  # fmt: skip
@pytest.mark.parametrize("kinds", [ds._INTS, ds._FLOATS])
def test_number_columns_are_the_ones_the_old_code_built(maps: list[Any], kinds: frozenset[type]) -> None:
    """Class counts and quantile levels: with every value present the count of present values is skipped."""
    try:
        old: Any = _old_number_columns(maps, kinds)
    except Exception as exc:
        old = type(exc)
    try:
        new: Any = ds._number_columns(maps, kinds)
    except Exception as exc:
        new = type(exc)
    assert new == old
