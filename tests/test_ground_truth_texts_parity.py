"""Ground-truth columns made text by the faster code are those the code before it made.

:func:`ground_truth_blocks._texts` writes a column of numbers (labels) with one JSON call and
returns a column of texts as it is, where the code before called :func:`events.text_value` per
record (about half of a label's cost on the sender thread, issue 11). ``_old_texts`` is that code,
kept as the reference: the same texts, the same ``stringified`` count.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from aitrace.producers import events as ev
from aitrace.producers import ground_truth_blocks as gt


def _old_texts(values: list[Any], stats: Counter[str]) -> list[Any]:
    return [v if type(v) is str else ev.text_value(v, stats) for v in values]


class _Text(str):
    pass


_COLUMNS: dict[str, list[Any]] = {
    "texts": ["fraud", "ok", "é", ""],
    "ints": [0, 1, -5, 2**63 - 1],
    "an int beyond 64 bits": [1, 2**70],
    "floats": [0.5, -0.0, math.nan, math.inf, 1e16, 1e-7, 0.1],
    "bools and ints": [True, False, 1, 0],
    "None among ints": [1, None, 0],
    "None only": [None, None],
    "texts and numbers": ["a", 1, 2.5],
    "a text subclass": [_Text("a"), "b"],
    "lists and dicts": [[1, 2], {"a": 1}, (1,)],
    "an object JSON cannot write": [object(), 1],
    "no records": [],
}


@pytest.mark.parametrize("shape", _COLUMNS)
def test_label_texts_are_the_old_ones(shape: str) -> None:
    column = _COLUMNS[shape]
    old_stats: Counter[str] = Counter()
    new_stats: Counter[str] = Counter()
    old = _old_texts(list(column), old_stats)
    new = gt._texts(list(column), new_stats)
    assert new == old
    assert [type(v) for v in new] == [type(v) for v in old]
    assert new_stats == old_stats
