"""Client factory: distribution detection, plain-JSON node class, errors that say what failed.

Integration tests talk to a real osmem-server (``search`` fixture); the failure
paths that a real server cannot produce on demand (401, non-JSON) use a tiny
local HTTP server.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from aitrace.infra.stack import OsmemProcess, free_port
from aitrace.producers.config import SearchConfig
from aitrace.sinks import es
from elastic_transport import HttpHeaders


def test_plain_headers_rewrite_only_the_compat_media_types() -> None:
    headers = HttpHeaders(
        {
            "accept": "application/vnd.elasticsearch+json; compatible-with=8",
            "content-type": "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
            "x-opaque-id": "keep-me",
        }
    )
    out = es._plain_headers(headers)
    assert out["accept"] == "application/json"
    assert out["content-type"] == "application/x-ndjson"
    assert out["x-opaque-id"] == "keep-me"
    assert headers["accept"].startswith("application/vnd.")  # the caller's headers are not mutated


@pytest.mark.parametrize(
    ("root", "distribution", "has_ilm"),
    [
        ({"version": {"number": "8.15.0", "build_flavor": "default"}}, "elasticsearch", True),
        ({"version": {"number": "8.15.0", "build_flavor": "serverless"}}, "elasticsearch", False),
        ({"version": {"number": "3.8.0", "distribution": "opensearch"}}, "opensearch", False),
    ],
)
def test_capabilities_from_root(root: dict, distribution: str, has_ilm: bool) -> None:
    caps = es.Capabilities.from_root(root)
    assert (caps.distribution, caps.has_ilm) == (distribution, has_ilm)
    assert caps.major == int(root["version"]["number"].split(".")[0])


def test_capabilities_need_a_version() -> None:
    with pytest.raises(es.SearchUnavailable, match="version"):
        es.Capabilities.from_root({"tagline": "You Know, for Search"})


def test_sync_client_talks_to_osmem(search: OsmemProcess, unique_name: Callable[[str], str]) -> None:
    client = es.make_sync_client(SearchConfig(es_url=search.url))
    try:
        caps = es.capabilities_of(client)
        assert caps.is_opensearch and not caps.has_ilm
        assert es.capabilities_of(client.options(request_timeout=5)) is caps
        index = unique_name("client")
        client.indices.create(index=index, mappings={"properties": {"a": {"type": "keyword"}}})
        client.bulk(operations=[{"index": {"_index": index, "_id": "1"}}, {"a": "x"}], refresh=True)
        assert client.count(index=index)["count"] == 1
    finally:
        client.close()


def test_stock_node_is_refused_by_opensearch_api(search: OsmemProcess, unique_name: Callable[[str], str]) -> None:
    """Why the node class exists: the official client's compat Content-Type gets a 406."""
    from elasticsearch import ApiError, Elasticsearch

    stock = Elasticsearch(search.url)
    try:
        with pytest.raises(ApiError) as info:
            stock.indices.create(index=unique_name("stock"), mappings={"properties": {}})
        assert info.value.status_code == 406
    finally:
        stock.close()


def test_async_connect_and_index(search: OsmemProcess, unique_name: Callable[[str], str]) -> None:
    async def main() -> int:
        client = await es.connect(SearchConfig(es_url=search.url))
        try:
            index = unique_name("async")
            await client.index(index=index, id="1", document={"v": float("nan"), "w": 1}, refresh=True)
            got = await client.get(index=index, id="1")
            assert got["_source"] == {"v": None, "w": 1}  # NaN became null, not invalid JSON
            return (await client.count(index=index))["count"]
        finally:
            await client.close()

    assert asyncio.run(main()) == 1


def test_unreachable_server_error_names_it_without_the_password() -> None:
    port = free_port()
    with pytest.raises(es.SearchUnavailable, match="unreachable") as info:
        es.detect_capabilities(SearchConfig(es_url=f"http://elastic:s3cret@127.0.0.1:{port}"))
    assert "s3cret" not in str(info.value) and str(port) in str(info.value)
    assert "aitrace up" in str(info.value) and "object at 0x" not in str(info.value)  # what to do, not a repr
    with pytest.raises(es.SearchUnavailable):
        es.make_client(SearchConfig(es_url=f"http://127.0.0.1:{port}"))


@pytest.mark.parametrize(
    "url", ["elastic:s3cret@127.0.0.1:9200", "http:/elastic:s3cret@127.0.0.1:9200", "http:elastic:s3cret@127.0.0.1"]
)
def test_a_url_without_its_scheme_is_refused_without_its_password(url: str) -> None:
    """The mask looked for scheme://: a URL without one printed its password, and read as 'unreachable'."""
    with pytest.raises(es.SearchUnavailable, match="is not an http") as info:
        es.detect_capabilities(SearchConfig(es_url=url))
    assert "s3cret" not in str(info.value) and ":***@127.0.0.1" in str(info.value)


def test_connect_waits_for_a_server_that_starts_late(tmp_path) -> None:
    server = OsmemProcess(log_dir=tmp_path)

    async def main() -> es.Capabilities:
        async def start_later() -> None:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(lambda: server.start().wait_ready(60))

        starter = asyncio.create_task(start_later())
        client = await es.connect(SearchConfig(es_url=server.url), wait_s=60, initial_backoff=0.1)
        await starter
        await client.close()
        return es.capabilities_of(client)

    try:
        assert asyncio.run(main()).is_opensearch
    finally:
        server.kill()


def test_connect_gives_up_after_wait() -> None:
    settings = SearchConfig(es_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(es.SearchUnavailable):
        asyncio.run(es.connect(settings, wait_s=0.3, initial_backoff=0.1))


@pytest.fixture
def fake_root() -> Iterator[Callable[[int, bytes], str]]:
    """A local HTTP server answering GET / with a canned status and body; records the headers."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def make(status: int, body: bytes) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            seen: ClassVar[list[Any]] = []

            def do_GET(self) -> None:
                Handler.seen.append(self.headers)  # case-insensitive lookups
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        make.seen = Handler.seen  # type: ignore[attr-defined]
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def test_refused_credentials_are_reported(fake_root: Callable[[int, bytes], str]) -> None:
    url = fake_root(401, b'{"error": "unauthorized"}')
    with pytest.raises(es.SearchUnavailable, match="refused the credentials"):
        es.detect_capabilities(SearchConfig(es_url=url, es_api_key="abc"))
    assert fake_root.seen[-1]["Authorization"] == "ApiKey abc"  # type: ignore[attr-defined]


def test_basic_auth_is_sent_and_non_json_is_an_error(fake_root: Callable[[int, bytes], str]) -> None:
    url = fake_root(200, b"<html>proxy login</html>")
    with pytest.raises(es.SearchUnavailable, match="did not return JSON"):
        es.detect_capabilities(SearchConfig(es_url=url, es_username="elastic", es_password="pw"))
    assert fake_root.seen[-1]["Authorization"].startswith("Basic ")  # type: ignore[attr-defined]


def test_elasticsearch_gets_the_stock_node(fake_root: Callable[[int, bytes], str]) -> None:
    url = fake_root(200, json.dumps({"version": {"number": "8.15.0", "build_flavor": "default"}}).encode())
    client = es.make_sync_client(SearchConfig(es_url=url))
    try:
        assert es.capabilities_of(client).has_ilm
        node = next(iter(client.transport.node_pool.all()))
        assert not isinstance(node, es.PlainJsonUrllib3Node)
    finally:
        client.close()


def test_tls_and_credentials_reach_the_client_options() -> None:
    settings = SearchConfig(
        es_url="https://es.example:9200",
        es_api_key="key",
        es_ca_certs="/etc/ca.pem",
        es_verify_certs=False,
    )
    kwargs = es._client_kwargs(settings, es.Capabilities("elasticsearch", "8.15.0", True), es.PlainJsonUrllib3Node)
    assert kwargs["api_key"] == "key" and "basic_auth" not in kwargs
    assert (kwargs["ca_certs"], kwargs["verify_certs"]) == ("/etc/ca.pem", False)
    assert "node_class" not in kwargs  # Elasticsearch keeps the stock node
    basic = es._client_kwargs(
        SearchConfig(es_url="http://x:9200", es_username="elastic", es_password="pw"),
        es.Capabilities("opensearch", "2.0.0", False),
        es.PlainJsonUrllib3Node,
    )
    assert basic["basic_auth"] == ("elastic", "pw") and basic["node_class"] is es.PlainJsonUrllib3Node
    assert "pw" not in repr(settings) + repr(SearchConfig(es_password="pw"))
