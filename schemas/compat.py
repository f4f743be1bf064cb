"""Schema compatibility checks: can data written with one version of a schema be read with another?

The rules are Avro's schema-resolution rules (what a reader does with a writer's data), as
Confluent's Schema Registry applies them:

- ``BACKWARD``: the new schema reads data written with the old one (a new field needs a default;
  a removed field is fine);
- ``FORWARD``: the old schema reads data written with the new one (a removed field needs a
  default in the old schema);
- ``FULL``: both.

Problems found: a reader field the writer lacks with no default ("new field without default"
or, read the other way, "removed field without default"), a type change that Avro cannot
promote (int -> long/float/double, long -> float/double, float -> double, string <-> bytes are
fine), an enum symbol the reader lacks with no enum default, a union branch the reader cannot
take, a renamed record or a resized fixed.

``released(version)`` loads the schemas kept under ``schemas/released/<version>/`` (the previous
release), and :func:`check_release` compares every current schema with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from aitrace import schemas

RELEASED_DIR = schemas.SCHEMA_DIR / "released"
MODES = ("BACKWARD", "FORWARD", "FULL")

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "double": {"double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
    "boolean": {"boolean"},
    "null": {"null"},
}


def releases() -> list[str]:
    """Released versions kept under ``schemas/released/`` (oldest first)."""
    if not RELEASED_DIR.exists():
        return []
    return sorted((d.name for d in RELEASED_DIR.iterdir() if d.is_dir()), key=_version_key)


def _version_key(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in text.split("."))


def loader_for(directory: Path) -> Callable[[str], dict[str, Any]]:
    """A loader (``name -> dict``) for :func:`aitrace.schemas.expanded` that reads another folder."""

    @cache
    def load(name: str) -> dict[str, Any]:
        path = Path(directory) / f"{name}.avsc"
        if not path.exists():
            raise schemas.SchemaNotFoundError(f"no schema {name!r} in {directory}")
        return json.loads(path.read_text())

    return load


def released(version: str) -> dict[str, dict[str, Any]]:
    """Every schema of a released version, expanded: ``{"aitrace.Event": {...}, ...}``."""
    directory = RELEASED_DIR / version
    load = loader_for(directory)
    names = sorted(p.name[: -len(".avsc")] for p in directory.glob("aitrace.*.avsc"))
    return {name: schemas.expanded(name, load) for name in names}


def check(new: Any, old: Any, mode: str = "BACKWARD") -> list[str]:
    """Problems that break ``mode`` compatibility between ``new`` and ``old`` (expanded schemas)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    problems: list[str] = []
    if mode in ("BACKWARD", "FULL"):
        problems += [f"BACKWARD: {p}" for p in _Resolver("new field").check(new, old)]
    if mode in ("FORWARD", "FULL"):
        problems += [f"FORWARD: {p}" for p in _Resolver("removed field").check(old, new)]
    return problems


def check_release(
    version: str | None = None, mode: str = "FULL", current: dict[str, dict[str, Any]] | None = None
) -> dict[str, list[str]]:
    """Compare each current schema with the released one of the same name; ``{name: problems}`` for failures.

    A schema the release had and the current tree lacks is reported too (its data could no
    longer be read). ``current`` overrides the current schemas (tests use it for a broken variant).
    """
    if not version:
        known = releases()
        version = known[-1] if known else None
    if version is None:
        return {}
    old_all = released(version)
    new_all = current if current is not None else {n: schemas.expanded(n) for n in schemas.names()}
    report: dict[str, list[str]] = {}
    for name, old in old_all.items():
        if name not in new_all:
            report[name] = [f"schema {name} removed"]
            continue
        problems = check(new_all[name], old, mode)
        if problems:
            report[name] = problems
    return report


class _Resolver:
    """Avro's resolution rules, collecting every problem (not only the first)."""

    def __init__(self, missing_word: str) -> None:
        self.missing_word = missing_word
        self.tables: tuple[dict[str, Any], dict[str, Any]] = ({}, {})  # named types of reader, writer
        self.seen: set[tuple[str, str]] = set()

    def check(self, reader: Any, writer: Any) -> list[str]:
        """Problems reading ``writer``'s data with ``reader`` (both expanded schemas)."""
        _collect(reader, self.tables[0])
        _collect(writer, self.tables[1])
        return self.can_read(reader, writer)

    def can_read(self, reader: Any, writer: Any, path: str = "") -> list[str]:
        reader = _resolve(reader, self.tables[0])
        writer = _resolve(writer, self.tables[1])
        if isinstance(writer, list):  # every branch the writer may have written must be readable
            problems = []
            for branch in writer:
                problems += self.can_read(reader, branch, path)
            return problems
        if isinstance(reader, list):
            for branch in reader:
                if not self.can_read(branch, writer, path):
                    return []
            return [f"{path or '<root>'}: reader union {self._label(reader)} has no branch for {self._label(writer)}"]
        r_type, w_type = _type(reader), _type(writer)
        if r_type in _PROMOTIONS or w_type in _PROMOTIONS:
            if w_type in _PROMOTIONS and r_type in _PROMOTIONS[w_type]:
                return []
            return [f"{path or '<root>'}: type {w_type} cannot be read as {r_type}"]
        if r_type != w_type:
            return [f"{path or '<root>'}: type {w_type} cannot be read as {r_type}"]
        if r_type == "array":
            return self.can_read(reader["items"], writer["items"], f"{path}[]")
        if r_type == "map":
            return self.can_read(reader["values"], writer["values"], f"{path}{{}}")
        if r_type == "enum":
            return self._enum(reader, writer, path)
        if r_type == "fixed":
            if reader["size"] != writer["size"] or _short(reader) != _short(writer):
                return [f"{path}: fixed {_short(writer)}[{writer['size']}] cannot be read as {_short(reader)}"]
            return []
        if r_type == "record":
            return self._record(reader, writer, path)
        return [f"{path}: unknown type {r_type}"]

    def _record(self, reader: dict, writer: dict, path: str) -> list[str]:
        if _short(reader) != _short(writer) and _short(writer) not in reader.get("aliases", ()):
            return [f"{path or '<root>'}: record {_short(writer)} cannot be read as {_short(reader)}"]
        key = (_full(reader), _full(writer))
        if key in self.seen:
            return []  # recursive type: already being checked
        self.seen.add(key)
        where = path or _full(reader)
        writer_fields = {f["name"]: f for f in writer["fields"]}
        for f in writer["fields"]:
            for alias in f.get("aliases", ()):
                writer_fields.setdefault(alias, f)
        problems = []
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", ())]
            match = next((writer_fields[n] for n in names if n in writer_fields), None)
            if match is None:
                if "default" not in field:
                    problems.append(f"{where}.{field['name']}: {self.missing_word} without default")
                continue
            problems += self.can_read(field["type"], match["type"], f"{where}.{field['name']}")
        return problems

    def _enum(self, reader: dict, writer: dict, path: str) -> list[str]:
        if _short(reader) != _short(writer):
            return [f"{path}: enum {_short(writer)} cannot be read as {_short(reader)}"]
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            return [f"{path}: enum symbols {missing} removed without an enum default"]
        return []

    @staticmethod
    def _label(node: Any) -> str:
        if isinstance(node, list):
            return "[" + ", ".join(_Resolver._label(b) for b in node) + "]"
        if isinstance(node, dict):
            return _short(node) if "name" in node else str(node.get("type"))
        return str(node)


def _collect(node: Any, table: dict[str, Any]) -> None:
    """Index every named type (record, enum, fixed) of a schema by full and short name."""
    if isinstance(node, list):
        for branch in node:
            _collect(branch, table)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("record", "enum", "fixed"):
            table.setdefault(_full(node), node)
            table.setdefault(_short(node), node)
        for field in node.get("fields", ()):
            _collect(field["type"], table)
        for key in ("items", "values"):
            if key in node:
                _collect(node[key], table)
        if isinstance(kind, dict | list):
            _collect(kind, table)


def _resolve(node: Any, table: dict[str, Any]) -> Any:
    """A reference by name becomes its definition; a ``{"type": {...}}`` wrapper its content."""
    if isinstance(node, dict) and isinstance(node.get("type"), dict | list):
        return _resolve(node["type"], table)
    if isinstance(node, str) and node not in _PROMOTIONS:
        return table.get(node) or table.get(node.rsplit(".", 1)[-1]) or node
    return node


def _type(node: Any) -> str:
    if isinstance(node, dict):
        kind = node.get("type")
        return kind if isinstance(kind, str) else "?"
    return str(node)


def _short(node: dict) -> str:
    return str(node["name"]).rsplit(".", 1)[-1]


def _full(node: dict) -> str:
    name = str(node["name"])
    return name if "." in name else f"{node.get('namespace', schemas.NAMESPACE)}.{name}"


def released_compiled() -> dict[bytes, Any]:
    """Single-object fingerprint -> compiled schema, for every schema of every release.

    A decoder that must read what older producers wrote looks writers up here (after the
    current schemas) and reads with the writer's schema resolved to the current one.
    """
    from aitrace.schemas.codec import compile_schema

    out: dict[bytes, Any] = {}
    for version in releases():
        for expanded in released(version).values():
            compiled = compile_schema(expanded)
            out.setdefault(compiled.fingerprint, compiled)
    return out
