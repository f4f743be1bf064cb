"""Kibana saved objects agree with the index templates.

Every field an object references (Lens columns, saved-search columns and sort,
KQL queries, data view time fields) exists in the template of the index family
its data view points at, with a type that suits its use: numbers for metric
aggregations, keywords for terms splits, dates for time axes. References between
objects resolve, and the dashboard covers what the issue asks for.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aitrace.sinks import templates
from aitrace.sinks.setup import KIBANA_DIR, load_saved_objects

NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}
KEYWORD = {"keyword"}
DATE = {"date", "date_nanos"}
SEARCHABLE = NUMERIC | KEYWORD | DATE | {"text", "boolean", "ip"}
METRIC_OPS = {"average", "sum", "min", "max", "median", "percentile", "standard_deviation", "last_value"}

OBJECTS = load_saved_objects(KIBANA_DIR)
BY_ID = {(o["type"], o["id"]): o for o in OBJECTS}
# data view id -> family, from its title "aitrace-<family>-*"
FAMILY = {o["id"]: o["attributes"]["title"].split("-")[1] for o in OBJECTS if o["type"] == "index-pattern"}
KQL_FIELD = re.compile(r"([A-Za-z@][\w.@]*)\s*:")


def field_type(family: str, field: str) -> str | None:
    """Mapped type, also for fields that only exist under a source-only object (None then)."""
    types = templates.field_types(family)
    if field in types:
        spec = _spec(family, field)
        return "source_only" if spec.get("enabled") is False or spec.get("index") is False else types[field]
    return None


def _spec(family: str, field: str) -> dict[str, Any]:
    node: dict[str, Any] = {"properties": templates.mappings(family)["properties"]}
    parts = field.split(".")
    for i, part in enumerate(parts):
        if "properties" in node and part in node["properties"]:
            node = node["properties"][part]
        elif "fields" in node and ".".join(parts[i:]) in node["fields"]:
            return node["fields"][".".join(parts[i:])]
    return node


def lens_uses() -> list[tuple[str, str, str, str]]:
    """(object id, family, field, use) for every Lens column and query field."""
    uses = []
    for obj in OBJECTS:
        if obj["type"] != "lens":
            continue
        refs = {r["name"]: r["id"] for r in obj["references"]}
        state = obj["attributes"]["state"]
        for layer_id, layer in state["datasourceStates"]["formBased"]["layers"].items():
            family = FAMILY[refs[f"indexpattern-datasource-layer-{layer_id}"]]
            for column in layer["columns"].values():
                op, field = column["operationType"], column.get("sourceField")
                if field in (None, "___records___"):
                    continue
                use = "metric" if op in METRIC_OPS else {"terms": "terms", "date_histogram": "date"}.get(op, op)
                uses.append((obj["id"], family, field, use))
                if column.get("filter"):
                    uses += [(obj["id"], family, f, "query") for f in KQL_FIELD.findall(column["filter"]["query"])]
            uses += [(obj["id"], family, f, "query") for f in KQL_FIELD.findall(state["query"]["query"])]
    return uses


def search_uses() -> list[tuple[str, str, str, str]]:
    uses = []
    for obj in OBJECTS:
        if obj["type"] != "search":
            continue
        source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        ref = next(r for r in obj["references"] if r["name"] == source["indexRefName"])
        family = FAMILY[ref["id"]]
        uses += [(obj["id"], family, f, "column") for f in obj["attributes"]["columns"]]
        uses += [(obj["id"], family, f, "date") for f, _ in obj["attributes"]["sort"]]
        uses += [(obj["id"], family, f, "query") for f in KQL_FIELD.findall(source["query"]["query"])]
    return uses


ALL_USES = lens_uses() + search_uses()


def test_every_object_type_is_present() -> None:
    types = {o["type"] for o in OBJECTS}
    assert {"index-pattern", "search", "lens", "dashboard"} <= types
    assert set(FAMILY.values()) == {"events", "traces", "alerts"}


def test_data_views_match_the_template_patterns_and_time_field() -> None:
    for obj in OBJECTS:
        if obj["type"] != "index-pattern":
            continue
        family = FAMILY[obj["id"]]
        pattern = templates.index_template(family)["index_patterns"][0]
        assert obj["attributes"]["title"] == pattern
        assert field_type(family, obj["attributes"]["timeFieldName"]) in DATE


@pytest.mark.parametrize(("obj_id", "family", "field", "use"), ALL_USES, ids=[f"{u[0]}:{u[2]}" for u in ALL_USES])
def test_referenced_field_exists_with_a_suitable_type(obj_id: str, family: str, field: str, use: str) -> None:
    kind = field_type(family, field)
    assert kind is not None, f"{obj_id}: {field} is not in the {family} template"
    allowed = {"metric": NUMERIC, "terms": KEYWORD, "date": DATE, "query": SEARCHABLE, "column": SEARCHABLE}[use]
    assert kind in allowed, f"{obj_id}: {field} is {kind}, unsuitable for {use}"


def test_the_field_check_catches_a_wrong_field() -> None:
    """The checker itself must fail on a misspelt field and on a text field used for a terms split."""
    assert field_type("events", "aitrace.metric.valeu") is None
    assert field_type("events", "message") not in KEYWORD
    assert field_type("events", "aitrace.run.config") == "source_only"
    assert field_type("alerts", "aitrace.alert.title.text") == "text"


def test_references_resolve() -> None:
    for obj in OBJECTS:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in BY_ID, f"{obj['id']} references missing {ref}"


def test_dashboard_panels_reference_existing_objects() -> None:
    [dashboard] = [o for o in OBJECTS if o["type"] == "dashboard"]
    refs = {r["name"]: r for r in dashboard["references"]}
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    assert panels and all(p["panelRefName"] in refs for p in panels)
    assert {p["panelIndex"] for p in panels} == {p["gridData"]["i"] for p in panels}
    shown = {refs[p["panelRefName"]]["id"] for p in panels}
    # training per run, inference per model, drift by feature, alerts over time, the four searches
    for wanted in (
        "aitrace-lens-loss-by-run",
        "aitrace-lens-latency-by-model",
        "aitrace-lens-errors-by-model",
        "aitrace-lens-confidence-by-model",
        "aitrace-lens-drift-by-feature",
        "aitrace-lens-alerts-over-time",
        "aitrace-search-errors",
        "aitrace-search-anomalies",
        "aitrace-search-drift",
        "aitrace-search-incomplete-traces",
    ):
        assert wanted in shown


def test_lens_layers_are_consistent() -> None:
    """Accessors named by the visualization exist as columns of its layer."""
    for obj in OBJECTS:
        if obj["type"] != "lens":
            continue
        state = obj["attributes"]["state"]
        layers = state["datasourceStates"]["formBased"]["layers"]
        for vis_layer in state["visualization"]["layers"]:
            columns = layers[vis_layer["layerId"]]["columns"]
            named = [vis_layer["xAccessor"], *vis_layer["accessors"], vis_layer.get("splitAccessor")]
            assert all(c in columns for c in named if c), obj["id"]
            assert set(layers[vis_layer["layerId"]]["columnOrder"]) == set(columns), obj["id"]


def test_every_ndjson_line_is_one_object_with_migration_versions() -> None:
    for path in Path(KIBANA_DIR).glob("*.ndjson"):
        for line in path.read_text().splitlines():
            obj = json.loads(line)
            assert {"id", "type", "attributes", "references", "coreMigrationVersion"} <= set(obj)
