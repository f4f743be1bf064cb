"""Index templates on a real osmem-server: installed, applied, explicit, bounded, idempotent ids."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aitrace.infra.stack import OsmemProcess
from aitrace.producers.config import SearchConfig
from aitrace.sinks import documents as d
from aitrace.sinks import es, templates
from aitrace.sinks.indexer import BulkIndexer
from elasticsearch import Elasticsearch
from test_documents import ALERT_RECORD, PAYLOADS, TRACE_RECORD, envelope


@pytest.fixture
def client(search: OsmemProcess) -> Iterator[Elasticsearch]:
    c = es.make_sync_client(SearchConfig(es_url=search.url))
    yield c
    c.close()


@pytest.fixture
def prefix(client: Elasticsearch, unique_name: Callable[[str], str]) -> Iterator[str]:
    """A private index prefix with templates installed; its templates and indices go afterwards."""
    p = unique_name("tpl")
    templates.install_templates(client, es.capabilities_of(client), prefix=p)
    yield p
    for family in d.FAMILIES:
        client.options(ignore_status=404).indices.delete_index_template(name=templates.template_name(p, family))
    client.options(ignore_status=404).indices.delete(index=f"{p}-*")


def all_actions(prefix: str) -> list[dict[str, Any]]:
    actions = []
    for i, (name, payload) in enumerate(sorted(PAYLOADS.items())):
        actions += d.event_actions(envelope(f"e{i}", payload=(name, payload)), prefix=prefix)
    actions.append(d.trace_action(TRACE_RECORD, prefix=prefix))
    actions.append(d.alert_action(ALERT_RECORD, prefix=prefix))
    return actions


def index_all(url: str, actions: list[dict[str, Any]]) -> Any:
    async def main() -> Any:
        client = await es.connect(SearchConfig(es_url=url))
        try:
            return await BulkIndexer(client).index(actions)
        finally:
            await client.close()

    return asyncio.run(main())


def test_templates_are_installed_for_each_family(client: Elasticsearch, prefix: str) -> None:
    for family in d.FAMILIES:
        got = client.indices.get_index_template(name=templates.template_name(prefix, family))
        [entry] = got["index_templates"]
        assert entry["index_template"]["index_patterns"] == [f"{prefix}-{family}-*"]


def test_every_document_kind_indexes_under_the_template_mapping(
    client: Elasticsearch, prefix: str, search: OsmemProcess
) -> None:
    actions = all_actions(prefix)
    result = index_all(search.url, actions)
    assert result.rejected == [] and result.indexed == len(actions)
    client.indices.refresh(index=f"{prefix}-*")
    mapping = client.indices.get_mapping(index=f"{prefix}-events-*")
    [body] = mapping.body.values()
    assert body["mappings"]["dynamic"] in (False, "false")
    props = body["mappings"]["properties"]
    assert props["aitrace"]["properties"]["metric"]["properties"]["value"]["type"] == "double"
    assert props["trace"]["properties"]["id"]["type"] == "keyword"
    # a source-only map (run config) did not become mapped fields
    assert "properties" not in props["aitrace"]["properties"]["run"]["properties"]["config"]
    # labels are keywords and searchable
    hits = client.search(index=f"{prefix}-events-*", query={"term": {"labels.team": "nlp"}}, size=0)
    assert hits["hits"]["total"]["value"] == len(actions) - 2
    metric = client.search(
        index=f"{prefix}-events-*",
        query={
            "bool": {
                "filter": [{"term": {"aitrace.metric.name": "loss"}}, {"range": {"aitrace.metric.value": {"lt": 1}}}]
            }
        },
    )
    assert [h["_id"] for h in metric["hits"]["hits"]] == [next(a["_id"] for a in actions if a["_id"].endswith(":loss"))]
    drift = client.search(index=f"{prefix}-alerts-*", query={"term": {"aitrace.alert.feature": "age"}})
    assert drift["hits"]["hits"][0]["_id"] == ALERT_RECORD["alert_id"]
    incomplete = client.search(index=f"{prefix}-traces-*", query={"term": {"aitrace.trace.complete": False}})
    assert incomplete["hits"]["total"]["value"] == 1


def test_unknown_fields_do_not_grow_the_mapping(client: Elasticsearch, prefix: str, search: OsmemProcess) -> None:
    action = d.event_actions(envelope(payload=("aitrace.LogRecord", PAYLOADS["aitrace.LogRecord"])), prefix=prefix)[0]
    action["_source"]["surprise"] = {"nested": {"deep": 1}}
    assert index_all(search.url, [action]).indexed == 1
    [body] = client.indices.get_mapping(index=action["_index"]).body.values()
    assert "surprise" not in body["mappings"]["properties"]


def test_redelivery_overwrites_instead_of_duplicating(client: Elasticsearch, prefix: str, search: OsmemProcess) -> None:
    actions = all_actions(prefix)
    index_all(search.url, actions)
    index_all(search.url, actions)  # the same records delivered again
    newer_alert = d.alert_action({**ALERT_RECORD, "version": 4, "state": "resolved"}, prefix=prefix)
    index_all(search.url, [newer_alert])
    client.indices.refresh(index=f"{prefix}-*")
    assert client.count(index=f"{prefix}-*")["count"] == len(actions)
    alert = client.get(index=newer_alert["_index"], id=newer_alert["_id"])
    assert alert["_source"]["aitrace"]["alert"]["state"] == "resolved"


def test_field_count_is_bounded_under_the_limit() -> None:
    for family in d.FAMILIES:
        assert len(templates.field_types(family)) < templates.TOTAL_FIELDS_LIMIT // 4


def test_ilm_policy_is_only_requested_where_the_server_has_ilm() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        """Records the API calls install_templates makes (unit-level: no ES with ILM here)."""

        def __init__(self) -> None:
            self.ilm = self
            self.indices = self

        def put_lifecycle(self, **kw: Any) -> None:
            calls.append(("ilm", kw))

        def put_index_template(self, **kw: Any) -> None:
            calls.append(("template", kw))

    es_caps = es.Capabilities("elasticsearch", "8.15.0", True)
    templates.install_templates(Recorder(), es_caps, prefix="ml", retention_days=7)
    assert calls[0] == ("ilm", {"name": "ml-retention", "policy": templates.ilm_policy_body(7)["policy"]})
    assert {kw["template"]["settings"]["index.lifecycle.name"] for kind, kw in calls[1:]} == {"ml-retention"}
    calls.clear()
    templates.install_templates(Recorder(), es.Capabilities("opensearch", "3.8.0", False))
    assert [kind for kind, _ in calls] == ["template"] * 3
    assert all("index.lifecycle.name" not in kw["template"]["settings"] for _, kw in calls)


def test_unknown_family_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown index family"):
        templates.mappings("metrics")


def test_async_install_matches_sync(
    search: OsmemProcess, client: Elasticsearch, unique_name: Callable[[str], str]
) -> None:
    """The worker installs templates with the async client before its first document."""
    prefix = unique_name("async-tpl")

    async def main() -> list[str]:
        aclient = await es.connect(SearchConfig(es_url=search.url))
        try:
            return await templates.install_templates_async(aclient, es.capabilities_of(aclient), prefix=prefix)
        finally:
            await aclient.close()

    try:
        assert asyncio.run(main()) == [f"index template {prefix}-{f}" for f in d.FAMILIES]
        got = client.indices.get_index_template(name=f"{prefix}-events")["index_templates"][0]["index_template"]
        assert (
            got["template"]["mappings"]["properties"]["aitrace"]
            == templates.mappings("events")["properties"]["aitrace"]
        )
    finally:
        for family in d.FAMILIES:
            client.options(ignore_status=404).indices.delete_index_template(
                name=templates.template_name(prefix, family)
            )


ES8 = es.Capabilities("elasticsearch", "8.15.0", True)
ES_OLD = es.Capabilities("elasticsearch", "7.8.1", True)
OPENSEARCH_OLD = es.Capabilities("opensearch", "2.11.0", False)
OPENSEARCH_NEW = es.Capabilities("opensearch", "2.17.1", False)
LONG_TRACE = (
    "Traceback (most recent call last):\n"
    + "".join(f'  File "/srv/app/module_{i}.py", line {i}, in step_{i}\n    call_{i}()\n' for i in range(120))
    + "ZeroDivisionError: division by zero in Qzxv_marker"
)


def _stack_trace(caps: es.Capabilities | None) -> dict[str, Any]:
    return templates.mappings("events", caps)["properties"]["error"]["properties"]["stack_trace"]


def test_stack_trace_is_mapped_as_ecs_where_the_server_has_wildcard() -> None:
    ecs = {"type": "wildcard", "fields": {"text": {"type": "match_only_text"}}}
    assert _stack_trace(ES8) == ecs
    assert _stack_trace(None) == ecs  # no server known: the ECS mapping itself
    assert templates.field_types("events", ES8)["error.stack_trace.text"] == "match_only_text"
    # OpenSearch has wildcard from 2.15 but no match_only_text
    assert _stack_trace(OPENSEARCH_NEW) == {"type": "wildcard", "fields": {"text": {"type": "text"}}}


@pytest.mark.parametrize("caps", [ES_OLD, OPENSEARCH_OLD], ids=["es-7.8", "opensearch-2.11"])
def test_stack_trace_falls_back_to_keyword_with_a_text_subfield(caps: es.Capabilities) -> None:
    spec = _stack_trace(caps)
    assert spec["type"] == "keyword" and spec["ignore_above"] == 1024
    assert spec["fields"]["text"]["type"] in {"text", "match_only_text"}


@pytest.mark.parametrize("forced", [None, OPENSEARCH_OLD], ids=["detected", "fallback"])
def test_a_long_stack_trace_is_indexed_and_found(
    client: Elasticsearch, unique_name: Callable[[str], str], forced: es.Capabilities | None
) -> None:
    """End to end on osmem: the detected branch (osmem says OpenSearch 3.x: wildcard) and the fallback."""
    prefix = unique_name("st")
    caps = forced or es.capabilities_of(client)
    templates.install_templates(client, caps, prefix=prefix)
    index = f"{prefix}-events-2026.01.01"
    try:
        doc = {"@timestamp": "2026-01-01T00:00:00Z", "error": {"type": "ZeroDivisionError", "stack_trace": LONG_TRACE}}
        client.index(index=index, id="1", document=doc, refresh=True)
        mapped = client.indices.get_mapping(index=index)[index]["mappings"]["properties"]["error"]["properties"]
        assert mapped["stack_trace"]["type"] == _stack_trace(caps)["type"]
        found = client.search(index=index, query={"match": {"error.stack_trace.text": "Qzxv_marker"}})
        assert found["hits"]["total"]["value"] == 1
        assert client.get(index=index, id="1")["_source"]["error"]["stack_trace"] == LONG_TRACE
    finally:
        for family in d.FAMILIES:
            client.options(ignore_status=404).indices.delete_index_template(
                name=templates.template_name(prefix, family)
            )
        client.options(ignore_status=404).indices.delete(index=f"{prefix}-*")
