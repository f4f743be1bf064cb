"""The sender's block building after issue 11's cuts gives what the code before them gave (1deae9c).

Copies of the code before, kept here as the reference:

- ``flat_columns`` took flat rows apart by ``zip(*rows)``; now ``chain`` and a slice per field (``zip`` held an
  iterator per row at once: 2,000 objects a block counted towards the next garbage collection);
- the block redaction's look for clean text columns (``_Redacting._clean``) put every column through a set and
  a Python filter; now a column of mostly distinct texts (request ids) is joined as it is;
- an inference block's statuses were a list comprehension; now a column of ``"ok"`` is found by one count;
- a data-stats block's features per record were a list comprehension; now ``all()`` finds that none is empty.

Each gives the same columns, the same set-aside columns, the same exception.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from itertools import chain, islice
from typing import Any

import numpy as np
import pytest
from aitrace.producers import blocks, inference_blocks
from aitrace.producers import data_stats_blocks as ds
from aitrace.producers import events as ev
from aitrace.producers import tracecontext as tc
from aitrace.producers.redact import Redactor
from aitrace.producers.secret_patterns import triggers
from aitrace.producers.text_reading import plain_variant
from aitrace.schemas.inference_block import INFERENCE_SHAPE
from corpus.secrets import benign, secrets


def _old_flat_columns(rows: list[ev.Queued], names: tuple[str, ...]) -> dict[str, list[Any]] | None:
    if set(map(len, rows)) != {5 + len(names)}:
        return None
    return dict(zip(names, map(list, islice(zip(*rows, strict=True), 5, None)), strict=True))


def _old_clean(redactor: Redactor, columns: dict[str, Any]) -> dict[str, Any]:
    clean = {}
    for name, column in columns.items():
        if type(column) is not list or len(column) < blocks._LONG_COLUMN:
            continue
        if type(column[0]) not in blocks._TEXT or set(map(type, column)) - blocks._TEXT:
            continue
        if redactor.key_action(name) != 0:
            continue
        scanned = [t for t in set(column) if t is not None and len(t) >= blocks._SCANNED]
        joined = "\n".join(scanned)
        variant = plain_variant(joined)
        if not scanned or not (triggers(joined) or (variant is not None and triggers(variant))):
            clean[name] = column
    return clean


def _old_statuses(given: list[Any]) -> list[str]:
    return ["error" if status == "error" else "ok" for status in given]


def _old_per_record(features: list[Any]) -> tuple[list[int], list[Any]]:
    per_record = [f or () for f in features]
    return [len(f) for f in per_record], list(chain.from_iterable(per_record))


def _outcome(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except Exception as exc:  # the same exception (the caller then builds the records one by one)
        return type(exc)


# -- flat rows


def _flat(n: int, width: int) -> list[tuple[Any, ...]]:
    ctx = tc.SpanContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    return [(ev.INFERENCE, i, ctx, None, False, *(f"v{i}.{j}" if j % 2 else {"k": i} for j in range(width))) for i in
            range(n)]  # fmt: skip


_ROWS = {
    "inference rows": (_flat(50, len(ev.INFERENCE_FIELDS)), ev.INFERENCE_FIELDS),
    "data-stats rows": (_flat(3, len(ev.DATA_FIELDS)), ev.DATA_FIELDS),
    "one row": (_flat(1, len(ev.LOG_FIELDS)), ev.LOG_FIELDS),
    "no rows": ([], ev.LOG_FIELDS),
    "a row one field short": (_flat(4, 5) + _flat(1, 4), ev.LOG_FIELDS),
    "a row one field more": (_flat(4, 5) + _flat(1, 6), ev.LOG_FIELDS),
    "five-item rows": (_flat(4, 0), ev.LOG_FIELDS),
    "rows wider than the names": (_flat(4, 6), ev.LOG_FIELDS),
}


@pytest.mark.parametrize("shape", _ROWS)
def test_flat_columns_are_the_ones_zip_made(shape: str) -> None:
    rows, names = _ROWS[shape]
    assert blocks.flat_columns(rows, names) == _old_flat_columns(rows, names)


# -- text columns the redaction sets aside


def _columns(rng: random.Random) -> dict[str, list[str | None]]:
    """Long text columns of every shape the redaction meets: ids, repeated values, Nones, secrets, short texts."""
    lines = [text for _, _, text in secrets()]
    plain = benign()
    ids = [f"req-{i}" for i in range(200)]
    uuids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(100)]
    out: dict[str, list[str | None]] = {
        "request ids": ids,
        "uuids": uuids,
        "uuid hex": [u.replace("-", "") for u in uuids],
        "repeated": ["DE", "FR", "country-DE"] * 20,
        "ids and Nones": [None if i % 7 == 0 else t for i, t in enumerate(ids)],
        "all None": [None] * 20,
        "an email after the sample": [*ids, "alice@example.com"],
        "an email in the sample": ["alice@example.com", *ids],
        "a secret deep in ids": [*ids[:150], rng.choice(lines), *ids[150:]],
        "short texts only": [f"x{i}" for i in range(40)],
        "a short email among short texts": ["@x.io", *(f"x{i}" for i in range(40))],
        "a short email among ids": [*ids, "@x.io"],
        "empty texts and ids": ["", *ids, ""],
        "percent-encoded": [*ids, "next=%2Flogin%3Fpassword%3Dhunter2hunter2"],
        "full-width": [*ids, "ｐａｓｓｗｏｒｄ＝ｈｕｎｔｅｒ２ｈｕｎｔｅｒ２"],
        "escaped": [*ids, "p\\u0430ssword=hunter2hunter2"],
        "benign lines": plain,
        "benign lines twice": plain + plain,
        "secrets": lines,
        "a repeated id, then distinct ones": ["req-0"] * 40 + ids,
        "distinct ids, then one repeated": ids[:64] + ["req-0"] * 400,
        "password": ids,  # a secret's name: blanked, never set aside
        "short column": ids[:5],
    }
    for n in range(40):  # ids with a few texts of the corpus among them, at random places
        column: list[str | None] = list(rng.choice([ids, uuids, plain]))
        for _ in range(rng.randint(1, 3)):
            column.insert(rng.randrange(len(column) + 1), rng.choice([*lines, *plain, None, "", "@x.io"]))
        out[f"random {n}"] = column
    return out


def test_the_columns_set_aside_are_the_ones_the_old_look_set_aside() -> None:
    columns = _columns(random.Random(5))
    redactor = Redactor(hash_key="k")
    new = blocks._Redacting(redactor, INFERENCE_SHAPE)._clean(columns, False)
    old = _old_clean(redactor, columns)
    assert sorted(new) == sorted(old)
    assert {"request ids", "uuids", "repeated", "all None", "short texts only"} <= set(new)  # (the test sees both)
    assert not {"an email after the sample", "a secret deep in ids", "percent-encoded", "password"} & set(new)


# -- inference statuses


class _EqualToAll:
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


class _NoEquality:
    def __eq__(self, other: object) -> bool:
        raise TypeError("not comparable")

    __hash__ = object.__hash__


_STATUSES = {
    "all ok": ["ok"] * 30,
    "one error": ["ok"] * 29 + ["error"],
    "other words": ["ok", "OK", "failed", "", "error"],
    "None and numbers": [None, 0, 1.5, "ok"],
    "a text subclass": [type("S", (str,), {})("ok")] * 3,
    "equal to everything": [_EqualToAll()] * 3,
    "ok, then equal to everything": ["ok", _EqualToAll()],
    "not comparable": ["ok", _NoEquality()],
    "none": [],
}


@pytest.mark.parametrize("shape", _STATUSES)
def test_statuses_are_the_ones_the_comprehension_made(shape: str) -> None:
    given = _STATUSES[shape]
    new, old = _outcome(inference_blocks._statuses, given), _outcome(_old_statuses, given)
    assert new == old
    if type(new) is list:
        assert list(map(type, new)) == list(map(type, old))


# -- data statistics: each record's features


_FEATURE = {"name": "f0", "count": 10, "mean": 0.5}
_FEATURES = {
    "lists": [[_FEATURE, _FEATURE]] * 5,
    "an empty list": [[_FEATURE], [], [_FEATURE]],
    "None": [None, [_FEATURE]],
    "all None": [None, None],
    "a tuple and a falsy number": [(_FEATURE,), 0, [_FEATURE]],
    "a number": [[_FEATURE], 3],
    "an array": [np.array([1.0, 2.0]), [_FEATURE]],
    "no records": [],
}


def _per_record(features: list[Any]) -> tuple[list[int], list[Any]]:
    """What ``data_stats_blocks._columns`` hands ``_feature_columns`` for one column of features (its features
    built as they are: the last argument is read back as given)."""
    seen: list[Any] = []

    def record(per_record: list[int], flat: list[Any], stats: Counter[str]) -> dict[str, Any]:
        seen.extend((per_record, flat))
        return {}

    ctx = tc.SpanContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    rows = [(ev.DATA, i, ctx, None, False, "ingest", "tx", f, 10, None, None, None, 0, None) for i, f in
            enumerate(features)]  # fmt: skip
    values = blocks.flat_columns(rows, ev.DATA_FIELDS) or {name: [] for name in ev.DATA_FIELDS}
    original, ds._feature_columns = ds._feature_columns, record
    try:
        ds._columns(rows, values, Counter())
    finally:
        ds._feature_columns = original
    return seen[0], seen[1]


@pytest.mark.parametrize("shape", _FEATURES)
def test_features_per_record_are_the_ones_the_comprehension_made(shape: str) -> None:
    features = _FEATURES[shape]
    assert _outcome(_per_record, features) == _outcome(_old_per_record, features)


# -- tables of texts (predictions, model versions, labels)


_TABLE_COLUMNS = {
    "one class": [1] * 40,
    "classes": [i % 3 for i in range(40)],
    "negative and large ints": [-1, 2**40, -(2**63), 2**64 - 1, 7] * 4,
    "an int past 64 bits": [1, 2**70, 1, 2**70],
    "ints and a bool": [1, True, 0, False],
    "ints and a float equal to one": [1, 1.0, 2],
    "zeros": [0, -0, 0],
    "texts": ["v7", "v8", "v7"],
    "texts and None": [None, "v7", None],
    "all None": [None, None],
    "ints and None": [1, None, 2],
    "floats": [0.5, -0.0, 0.0, 1e300],
    "objects": [b"\xff", object.__new__(type("Odd", (), {"__repr__": lambda self: "odd"}))],
    "none": [],
}


@pytest.mark.parametrize("shape", _TABLE_COLUMNS)
def test_interned_texts_are_the_texts_interned(shape: str) -> None:
    """Predictions, model and feature versions, data-stats labels: a column of ints is interned before it is written
    as text; the table, the indexes and the counters are those of writing every value first."""
    column = _TABLE_COLUMNS[shape]
    new_stats: Counter[str] = Counter()
    old_stats: Counter[str] = Counter()
    new = blocks.interned_texts(list(column), new_stats)
    old = blocks.optional_interned(blocks.texts(list(column), old_stats))
    assert new == old
    assert new_stats == old_stats


def test_a_column_whose_texts_a_terminal_shows_with_a_key_word_is_not_set_aside() -> None:
    """The one look at a long column reads its texts as a terminal shows them, as the redactor does: a column of
    "pa\\x1b[0mss\\x1b[0mword=..." holds no key word until its colour codes are taken out."""
    n = blocks._LONG_COLUMN
    columns = {
        "glued": [f"pa\x1b[0mss\x1b[0mword=swordfish{chr(97 + i)}" for i in range(n)],
        # (a review of a170d12: read alone, a reading that dropped text set these aside)
        "osc": [f"row {i} \x1b]8;id=ghp_{'A' * 36};https://x\x1b\\link\x1b]8;;\x1b\\" for i in range(n)],
        "latin-1": [f"שלום password=Hunter2Secret{i} שלום".encode().decode("latin-1") for i in range(n)],
        "plain": [f"\x1b[1mrequest {i} done\x1b[0m" for i in range(n)],
    }
    clean = blocks._Redacting(Redactor(hash_key="k"), INFERENCE_SHAPE)._clean(columns, False)
    assert sorted(clean) == ["plain"]
