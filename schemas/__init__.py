"""Avro schemas of aitrace events, loaded from the ``*.avsc`` files beside this module.

Each file holds one named type (``aitrace.Event.avsc`` holds ``aitrace.Event``) and refers
to the others by name. :func:`expanded` inlines those references, the form that Avro
libraries and schema registries take. Nothing here re-declares a schema.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent
NAMESPACE = "aitrace"


class SchemaNotFoundError(LookupError):
    """Raised for a schema name that has no ``.avsc`` file."""


@cache
def names() -> tuple[str, ...]:
    """Full names of every schema shipped, e.g. ``("aitrace.Alert", ...)``."""
    return tuple(sorted(p.name[: -len(".avsc")] for p in SCHEMA_DIR.glob(f"{NAMESPACE}.*.avsc")))


@cache
def raw(name: str) -> dict[str, Any]:
    """The JSON of one ``.avsc`` file, references left as names."""
    full = name if "." in name else f"{NAMESPACE}.{name}"
    path = SCHEMA_DIR / f"{full}.avsc"
    if not path.exists():
        raise SchemaNotFoundError(f"no schema {full!r} in {SCHEMA_DIR} (have: {', '.join(names())})")
    return json.loads(path.read_text())


def expanded(name: str, loader: Any = None) -> dict[str, Any]:
    """The schema with every referenced named type inlined once (later uses stay names).

    ``loader(name) -> dict`` reads one named type; the default reads ``schemas/``. Tests pass
    another to expand an older or a deliberately broken version of the files.
    """
    load = loader or raw
    seen: set[str] = set()

    def walk(node: Any, namespace: str) -> Any:
        if isinstance(node, str):
            full = node if "." in node else f"{namespace}.{node}"
            if full.startswith(f"{NAMESPACE}.") and not _is_primitive(node):
                if full in seen:
                    return full
                return walk(copy.deepcopy(load(full)), namespace)
            return node
        if isinstance(node, list):
            return [walk(branch, namespace) for branch in node]
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        if kind in ("record", "enum", "fixed"):
            ns = node.get("namespace", namespace)
            seen.add(f"{ns}.{node['name']}" if "." not in node["name"] else node["name"])
            if kind == "record":
                node["fields"] = [{**f, "type": walk(f["type"], ns)} for f in node["fields"]]
            return node
        if kind == "array":
            return {**node, "items": walk(node["items"], namespace)}
        if kind == "map":
            return {**node, "values": walk(node["values"], namespace)}
        if isinstance(kind, dict | list):
            return {**node, "type": walk(kind, namespace)}
        return node

    return walk(name if "." in name else f"{NAMESPACE}.{name}", NAMESPACE)


def without_logical_types(schema: Any) -> Any:
    """A copy with ``logicalType`` removed: timestamps stay int microseconds on the hot path.

    The Parsing Canonical Form ignores logical types, so the fingerprint is unchanged.
    """
    if isinstance(schema, dict):
        return {k: without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [without_logical_types(v) for v in schema]
    return schema


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _is_primitive(name: str) -> bool:
    return name in _PRIMITIVES
