"""Inference blocks: a trace's queued ``client.inference`` records as the columns of one ``aitrace.InferenceBlock``.

Request ids and latencies are columns; model names, versions, statuses, predictions and feature
versions tables of distinct values; numeric features one number column per name (a missing
input is NaN, as in a single event), text features one text column per name. The shared
machinery (processor chain, sampling, redaction, splitting) is :mod:`aitrace.producers.blocks`;
head sampling keeps an unsampled trace's error records.

The values are those :func:`events.inference_payload` gives a single event. Bad values never
raise here: a record that cannot be built is left out and counted (``rejected_bad_event``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from itertools import repeat
from typing import Any

from aitrace.producers import blocks
from aitrace.producers import events as ev
from aitrace.producers.blocks import Block
from aitrace.schemas.avro_writer import Doubles
from aitrace.schemas.inference_block import INFERENCE_SHAPE

_ABSENT = object()
_NUMBERS = frozenset({float, int, bool})  # float() of each is what events.as_float gives
_OPTIONAL_TEXTS = ("model_version", "error", "inputs_summary", "prediction", "feature_version")
_REQUIRED = frozenset(("request_id", "model_name", "error", "status", "latency_ms", "features"))  # of a dict


def block_chain(processors: list[Callable[[Block], Any]]) -> list[Callable[[Block], Any]] | None:
    """The chain to run on inference blocks, or None when a processor reads single events only."""
    return blocks.block_chain(processors, INFERENCE_SHAPE, blocks.status_fields)


def halves(block: Block) -> list[Block]:
    """An inference block's records in two blocks."""
    return blocks.halves(INFERENCE_SHAPE, block)


def inference_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    """The columns of queued inference records (fields as :meth:`ClientEvents.inference` queues them: a tuple in the
    order of :data:`events.INFERENCE_FIELDS`; or a dict of those names).

    The common case (text ids, numeric latency, no error) is one transposition and a few C loops; a batch
    with anything else is built record by record through :func:`events.inference_payload`.
    """
    values = blocks.flat_columns(rows, ev.INFERENCE_FIELDS)
    if values is None:
        values = _by_name(blocks.row_fields(blocks.unflattened(rows)))
    if values is None:
        return _slow_columns(rows, stats)
    ids, models, errors, latencies = (values[name] for name in ("request_id", "model_name", "error", "latency_ms"))
    if set(map(type, ids)) != {str} or set(map(type, models)) != {str} or errors.count(None) != len(errors):
        return _slow_columns(rows, stats)
    latency_kinds = set(map(type, latencies))
    if not latency_kinds <= {float, int}:
        return _slow_columns(rows, stats)
    try:
        statuses = _statuses(values["status"])
    except TypeError:
        return _slow_columns(rows, stats)
    try:
        latency = Doubles(latencies if int not in latency_kinds else map(float, latencies))
    except OverflowError:  # an int past a double's range (10**400): record by record, it alone NaN
        return _slow_columns(rows, stats)
    columns = _columns(rows, values, statuses, stats)
    columns["latency_ms"] = latency
    columns["features"], columns["categorical_features"] = _feature_columns(values["features"], stats)
    return columns


def _statuses(given: list[Any]) -> list[str]:
    """Each record's status as a single event has it (``"error"``, else ``"ok"``): a column of ``"ok"`` by one count."""
    if given.count("ok") == len(given) and set(map(type, given)) <= {str}:  # (a text equal to "ok" is not "error")
        return ["ok"] * len(given)
    return ["error" if status == "error" else "ok" for status in given]


def _by_name(fields: list[Any]) -> dict[str, list[Any]] | None:
    """Each field's column: the client's tuples taken apart by one ``zip`` (C loops, no look-up per field and
    record); dicts (records queued by hand) by name, an optional field None where absent. None: a record of
    neither shape, or a dict without a field the common case reads."""
    if set(map(type, fields)) == {tuple} and set(map(len, fields)) == {len(ev.INFERENCE_FIELDS)}:
        return dict(zip(ev.INFERENCE_FIELDS, map(list, zip(*fields, strict=True)), strict=True))
    try:
        return {name: [f[name] for f in fields] if name in _REQUIRED else list(map(dict.get, fields, repeat(name)))
                for name in ev.INFERENCE_FIELDS}  # fmt: skip
    except (KeyError, TypeError):
        return None


def _slow_columns(rows: list[ev.Queued], stats: Counter[str]) -> Block:
    rows = [(k, t, c, ev.fields_dict(k, f), u) for k, t, c, f, u in blocks.unflattened(rows)]
    kept, payloads = blocks.built(rows, ev.inference_payload, stats)
    values = {name: [p[name] for p in payloads] for name in ("request_id", "model_name", "status")}
    values.update((name, list(map(dict.get, payloads, repeat(name)))) for name in (*_OPTIONAL_TEXTS, "confidence"))
    columns = _columns(kept, values, values["status"], stats)
    columns["latency_ms"] = [p["latency_ms"] for p in payloads]
    columns["features"] = blocks.numeric_columns([p["features"] for p in payloads])
    columns["categorical_features"] = blocks.text_columns([p["categorical_features"] for p in payloads], stats)
    return columns


def _columns(rows: list[ev.Queued], values: dict[str, list[Any]], statuses: list[str], stats: Counter[str]) -> Block:
    columns = {"time": blocks.row_times(rows), **blocks.span_columns(blocks.row_contexts(rows))}
    columns["request_id"] = values["request_id"]
    columns["model_name"], columns["model_name_index"] = blocks.interned(ev.model_names(values["model_name"], stats))
    columns["status"], columns["status_index"] = blocks.interned(statuses)
    for name in ("model_version", "prediction", "feature_version"):
        columns[name], columns[f"{name}_index"] = blocks.interned_texts(values[name], stats)
    for name in ("error", "inputs_summary"):
        columns[name] = blocks.optional_column(blocks.texts(values[name], stats))
    confidence = values["confidence"]
    kinds = set(map(type, confidence))
    if kinds == {float}:  # floats only: the writer need not look again
        confidence = Doubles(confidence)
    elif not kinds <= {float, type(None)}:
        confidence = [ev.as_float(c) for c in confidence]
    columns["confidence"] = blocks.optional_column(confidence)
    return columns


def _feature_columns(maps: list[Any], stats: Counter[str]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """(numeric, text) feature columns of the caller's feature dicts, split per value as a single event splits them."""
    names: set[Any] = set().union(*maps)
    if set(map(type, names)) - {str}:  # keys made text, as events.inference_payload does
        maps = [{str(k): v for k, v in m.items()} for m in maps]
        names = set().union(*maps)
    numeric: dict[str, list[Any]] = {}
    text: dict[str, list[Any]] = {}
    for name in sorted(names):
        column = list(map(dict.get, maps, repeat(name), repeat(_ABSENT)))  # C loops: maps are dicts
        kinds = set(map(type, column))
        if kinds == {float}:  # floats only: the writer need not look again
            numeric[name] = Doubles(column)
        elif kinds <= _NUMBERS and (doubles := _doubles(column)) is not None:
            numeric[name] = doubles
        elif kinds == {str}:
            text[name] = column
        else:  # (an int past a double's range, 10**400, is text, as in a single event)
            numbers, texts = zip(*(_split(v, stats) for v in column), strict=True)
            if numbers.count(None) != len(numbers):
                numeric[name] = list(numbers)
            if texts.count(None) != len(texts):
                text[name] = list(texts)
    return numeric, text


def _doubles(column: list[Any]) -> Doubles | None:
    """A column of numbers as doubles; None where an int in it is past a double's range (10**400)."""
    try:
        return Doubles(map(float, column))
    except OverflowError:
        return None


def _split(value: Any, stats: Counter[str]) -> tuple[float | None, str | None]:
    """One feature value as (number, text), one of them None; a missing input (None) is NaN."""
    if value is _ABSENT:
        return None, None
    if value is None:
        return math.nan, None
    if isinstance(value, str):  # numpy.str_ too: text, as a single event has it
        return None, ev.text_value(value, stats)
    number = ev.as_float(value)
    return (None, ev.text_value(value, stats)) if number is None else (number, None)
