"""The generated Avro writer writes fastavro's bytes, and leaves to fastavro whatever it is not sure of."""

from __future__ import annotations

import io
import math
import random
import struct
import zlib
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from aitrace import schemas
from aitrace.schemas import avro_writer
from aitrace.schemas.codec import AvroSerializer, EncodeError, compiled

_TEXT = ["", "a", "checkout", "é", "ünïcødé ñame", "日本語のテキスト", "emoji 🚀", "x" * 63, "y" * 64, "z" * 300]
_LONGS = [0, 1, -1, 63, 64, -64, -65, 127, 128, 8191, 8192, -(1 << 31), (1 << 31) - 1, -(1 << 63), (1 << 63) - 1]
_DOUBLES = [0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, math.inf, -math.inf, math.nan, 7]


class _Random:
    """Random data of any shipped schema: every union branch, empty and long containers, edge values."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.named: dict[str, Any] = {}

    def datum(self, schema: Any, namespace: str = "aitrace") -> Any:
        rng = self.rng
        if isinstance(schema, list):
            return self.datum(rng.choice(schema), namespace)
        if isinstance(schema, str) and schema in self.named:
            full = self.named[schema]
            return (full["fullname"], self.record(full))
        kind = schema if isinstance(schema, str) else schema["type"]
        if kind == "record":
            fullname = (
                schema["name"] if "." in schema["name"] else f"{schema.get('namespace', namespace)}.{schema['name']}"
            )
            self.named[fullname] = {**schema, "fullname": fullname}
            return (fullname, self.record(schema))
        simple = {
            "null": lambda: None,
            "boolean": lambda: rng.random() < 0.5,
            "int": lambda: rng.choice([v for v in _LONGS if -(1 << 31) <= v < 1 << 31] + [rng.randint(-999, 999)]),
            "long": lambda: rng.choice([*_LONGS, rng.randint(-(1 << 40), 1 << 40)]),
            "float": lambda: rng.choice([0.0, 1.5, -2.25]),
            "double": lambda: rng.choice([*_DOUBLES, rng.uniform(-1e6, 1e6)]),
            "string": lambda: rng.choice([*_TEXT, f"id-{rng.randint(0, 1 << 30):x}"]),
        }
        if kind in simple:
            return simple[kind]()
        if kind == "enum":
            return rng.choice(schema["symbols"])
        size = rng.choice([0, 1, 3, 70])
        if kind == "array":
            return [self.unwrapped(schema["items"], namespace) for _ in range(size)]
        if kind == "map":
            return {f"k{i}-{rng.choice(_TEXT)}": self.unwrapped(schema["values"], namespace) for i in range(size)}
        raise AssertionError(f"no generator for {kind}")

    def unwrapped(self, schema: Any, namespace: str) -> Any:
        """A value outside a union: a record as a plain dict."""
        value = self.datum(schema, namespace)
        is_record = isinstance(schema, dict) and schema.get("type") == "record"
        return value[1] if is_record or (isinstance(schema, str) and schema in self.named) else value

    def record(self, schema: dict[str, Any]) -> dict[str, Any]:
        namespace = schema.get("namespace", "aitrace")
        return {f["name"]: self.unwrapped(f["type"], namespace) for f in schema["fields"]}


def _fastavro(name: str, obj: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, compiled(name).parsed, obj, strict_allow_default=True)
    return buf.getvalue()


@pytest.mark.parametrize("name", [n for n in schemas.names() if schemas.raw(n)["type"] == "record"])
def test_generated_writer_writes_fastavros_bytes_for_every_schema(name: str) -> None:
    schema = schemas.without_logical_types(schemas.expanded(name))
    write = avro_writer.writer(schema)
    gen = _Random(zlib.crc32(name.encode()))
    for _ in range(150):
        obj = gen.record(schema)
        assert write(obj) == _fastavro(name, obj)


def test_every_event_kind_in_a_batch_is_written_as_fastavro_writes_it() -> None:
    schema = schemas.without_logical_types(schemas.expanded("aitrace.Batch"))
    gen = _Random(7)
    batch = gen.record(schema)
    events = []
    for payload in schemas.raw("aitrace.Event")["fields"][-1]["type"]:
        event = gen.record(schemas.without_logical_types(schemas.expanded("aitrace.Event")))
        event["payload"] = (payload, gen.record(schemas.without_logical_types(schemas.expanded(payload))))
        events.append(event)
    batch["events"] = events
    assert avro_writer.writer(schema)(batch) == _fastavro("aitrace.Batch", batch)


GROUND_TRUTH = {"request_id": "r1", "model_name": "m", "label": "1"}


@pytest.mark.parametrize(
    "obj",
    [
        {"request_id": "r1", "model_name": "m"},  # a missing field (no default here: fastavro refuses)
        {**GROUND_TRUTH, "extra": "x"},  # an extra field
        {**GROUND_TRUTH, "label": 1},  # a number for a string
        {**GROUND_TRUTH, "label": "\ud800"},  # a lone surrogate
    ],
)
def test_what_the_generated_writer_is_unsure_of_fastavro_decides(obj: dict[str, Any]) -> None:
    write = avro_writer.writer(schemas.without_logical_types(schemas.expanded("aitrace.GroundTruth")))
    with pytest.raises(Exception):  # noqa: B017 - any error: the serializer then asks fastavro
        write(obj)
    serializer = AvroSerializer("aitrace.GroundTruth")
    try:
        expected: bytes | type[Exception] = serializer.header() + _fastavro("aitrace.GroundTruth", obj)
    except Exception:  # whatever fastavro raises, the serializer raises EncodeError
        expected = EncodeError
    if expected is EncodeError:
        with pytest.raises(EncodeError):
            serializer(obj)
    else:
        assert serializer(obj) == expected


def test_values_fastavro_coerces_fall_back_to_fastavro() -> None:
    span = {"name": "s", "kind": "internal", "start_time": True, "duration_us": 3, "status": "ok",
            "error_type": None, "error_message": None, "attributes": {}}  # fmt: skip
    write = avro_writer.writer(schemas.without_logical_types(schemas.expanded("aitrace.Span")))
    with pytest.raises(avro_writer.Unfit):
        write(span)  # a bool for a long: fastavro writes 1, this writer leaves it to fastavro
    assert AvroSerializer("aitrace.Span")(span)[10:] == _fastavro("aitrace.Span", span)


@pytest.mark.parametrize("items", [["null", "double"], "double"])
@pytest.mark.parametrize(
    "column",
    [[1.5, 2, -0.0, 1e300, 2**70], [None, 1.0, 2.5], [7], [], [1.0, True], _DOUBLES * 40, [0.5] * 4000,
     [2.5, None] * 100],
)  # fmt: skip
def test_a_column_of_numbers_is_written_as_fastavro_writes_it(column: list[Any], items: Any) -> None:
    """Block number columns: one struct call when they hold only numbers, item by item otherwise (fastavro's
    errors included)."""
    schema = {"type": "record", "name": "Cols", "namespace": "t",
              "fields": [{"name": "c", "type": {"type": "array", "items": items}}]}  # fmt: skip
    write = avro_writer.writer(schema)
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"c": column})
    except (TypeError, ValueError):  # None in a double column: the generated writer fails too (fastavro then says why)
        with pytest.raises((avro_writer.Unfit, struct.error)):
            write({"c": column})
        return
    assert write({"c": column}) == buf.getvalue()


_RANDOM = random.Random(5)


@pytest.mark.parametrize("items", ["long", "int"])
@pytest.mark.parametrize(
    "column",
    [[0, 1, 63], [3] * 70, [0, 64], [5, -1], [True, 2], [1, 2**40], [0] * 200, list(range(64)) * 3,
     [1_700_000_000_000_000 + i for i in range(300)], _LONGS * 20, [True, *range(-400, 400)],
     [_RANDOM.randint(-(1 << 63), (1 << 63) - 1) >> _RANDOM.randrange(64) for _ in range(500)], [1.5] * 300,
     [2**64] * 300, list(range(256)) * 2, [255, 0, 64, 127, 128], [_RANDOM.randrange(256) for _ in range(500)],
     [_RANDOM.randrange(64, 128) for _ in range(300)], [255, 256], [1000] * 4000, [-5] * 3, [2**62] * 300,
     [2**31] * 5, [-(2**63)] * 2, [2**63] * 300, [1000] * 299 + [1000.0], [300] * 3 + [Decimal(300)],
     [True] * 70, [0, False] * 40, [1, True] * 3, [64] * 10, [255] * 9, [-1] * 4, [0] * 4000, [0, 1, 2, 3] * 1000,
     [0] * 99 + [1], [(1 << 63) - 1] * 3, [0, 0.0], [False, 0],
     # 0..n-1 (a span block's index, each record a span of its own): one comparison and a slice
     *(list(range(n)) for n in (2, 63, 64, 65, 66, 300, 2000, 8191, 8192, 8193)), [0, 1.0, 2, 3] * 1,
     [0, True, 2, Decimal(3)], [False, 1, 2], [0, 2, 1, 3], list(range(1, 301)), [*range(299), 300, 299],
     [0, *range(2, 300), 299], list(range(300))[::-1], [0, 1.5, 1], [0, "1", 2]],
)  # fmt: skip
def test_a_column_of_integers_is_written_as_fastavro_writes_it(column: list[Any], items: str) -> None:
    """Block index and length columns: one byte each through ``bytes.translate`` when 0..63, one or two when
    0..255 (histogram counts), one varint repeated for one value throughout; fastavro otherwise, and fastavro's
    errors where it has them."""
    schema = {"type": "record", "name": "Ints", "namespace": "t",
              "fields": [{"name": "c", "type": {"type": "array", "items": items}}]}  # fmt: skip
    write = avro_writer.writer(schema)
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"c": column})
    except (TypeError, ValueError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            write({"c": column})
        return
    assert write({"c": column}) == buf.getvalue()


def test_an_array_of_doubles_is_written_as_fastavro_writes_it() -> None:
    """Data-stats histogram edges come as an ``array("d")``: its bytes, as fastavro writes the same numbers."""
    from array import array

    schema = {"type": "record", "name": "Edges", "namespace": "t",
              "fields": [{"name": "c", "type": {"type": "array", "items": "double"}}]}  # fmt: skip
    write = avro_writer.writer(schema)
    for column in (array("d", _DOUBLES * 3), array("d"), array("d", [0.5])):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"c": list(column)})
        assert write({"c": column}) == buf.getvalue()


@pytest.mark.parametrize("items", ["string", ["null", "string"]])
@pytest.mark.parametrize(
    "column",
    [["/v1/predict"] * 300, ["a", "b"] * 40, ["é" * 70] * 8, ["x" * 200, "y"] * 5, [f"req-{i}" for i in range(300)],
     ["ok", None] * 10, ["\ud800"] * 8, ["", ""] * 4, ["ü", "ü", "ü", "ß" * 63], [f"{i:016x}" for i in range(300)],
     [f"{i:016x}" for i in range(299)] + ["é" * 16], ["a"] * 64 + [f"id-{i}" for i in range(300)],
     [f"r{i}" for i in range(200)] + ["ü"], [f"r{i}" for i in range(20)] + ["x" * 64], ["\x7f" * 63, "a"] * 3,
     ["a", "bb"], ["a", "bb", None], [str(i) for i in range(1000)], [None, "a", "bb"]],
)  # fmt: skip
def test_a_column_of_texts_is_written_as_fastavro_writes_it(column: list[Any], items: Any) -> None:
    """Attribute and id columns: repeated texts through a table of their bytes, short unique ones in C loops,
    the rest item by item; fastavro's bytes, and its errors where it has them."""
    schema = {"type": "record", "name": "Texts", "namespace": "t",
              "fields": [{"name": "c", "type": {"type": "array", "items": items}}]}  # fmt: skip
    write = avro_writer.writer(schema)
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"c": column})
    except (TypeError, ValueError) as exc:
        with pytest.raises((type(exc), avro_writer.Unfit)):
            write({"c": column})
        return
    assert write({"c": column}) == buf.getvalue()
