"""The block redaction's test for client-made span ids, in C loops, finds what the regex before it found.

:func:`blocks._generated_ids` sets a span-id column aside from redaction when every id in it is one
the client generates. It was a regex over the ids joined by newlines (about 100 ns an id: a sixth of
a span's cost on the sender thread, issue 11); ``_old_generated_ids`` below is that code, kept as
the reference for crafted and random columns.
"""

from __future__ import annotations

import random
import re

import pytest
from aitrace.producers import blocks
from aitrace.producers import tracecontext as tc

_OLD = re.compile(r"(?:[0-9a-f]{16}(?:\n[0-9a-f]{16})*)?")


def _old_generated_ids(column: list[str | None]) -> bool:
    return _OLD.fullmatch("\n".join(filter(None, column))) is not None


_ID = "00f067aa0ba902b7"
_CRAFTED: dict[str, list[str | None]] = {
    "no ids": [],
    "all None": [None, None],
    "empty texts": ["", None, ""],
    "client ids": [tc.new_span_id() for _ in range(40)],
    "one id throughout": [_ID] * 30,
    "one id and None": [None, _ID, None, _ID],
    "upper case": [_ID.upper()],
    "15 digits": [_ID[:15]],
    "17 digits": [_ID + "0"],
    "not hex": ["00f067aa0ba902bg"],
    "two ids in one text": [f"{_ID}\n{_ID}"],
    "an id and a newline": [f"{_ID}\n", _ID],
    "a newline first": [f"\n{_ID}"],
    "full-width digits": ["０" * 16],
    "a lone surrogate": ["\ud800" * 16],
    "an id, then a bad one throughout": [_ID] + ["x"] * 5,
    "a bad one, then ids": ["x"] + [_ID] * 5,
    "33 hex digits and a newline at 16": [_ID + "\n" + _ID[:15] + "ab"],
    "tab instead of newline": [_ID + "\t" + _ID],
    "a newline among 16 characters": [_ID[:7] + "\n" + _ID[8:]],
    "a newline among the digits of the second id": [_ID, _ID[:3] + "\n" + _ID[4:]],
}


@pytest.mark.parametrize("shape", _CRAFTED)
def test_crafted_columns(shape: str) -> None:
    column = _CRAFTED[shape]
    assert blocks._generated_ids(column) is _old_generated_ids(column)


def test_random_columns() -> None:
    rng = random.Random(11)
    pieces = [_ID, "0123456789abcdef", "\n", "a", "F", "é", "", "g" * 16, _ID[:8]]
    for _ in range(5000):
        column: list[str | None] = []
        for _ in range(rng.randint(0, 5)):
            if rng.random() < 0.15:
                column.append(None)
            else:
                column.append("".join(rng.choice(pieces) for _ in range(rng.randint(0, 3))))
        if column and rng.random() < 0.3:
            column = [column[0]] * rng.randint(1, 4)
        assert blocks._generated_ids(column) is _old_generated_ids(column), column
