"""Elasticsearch / OpenSearch-API client factory.

One factory serves every part of aitrace that talks to the search server
(indexer, ``aitrace setup``, ``aitrace search``/``trace``), so TLS, credentials
and the distribution check live in one place.

The official ``elasticsearch`` 8.x client sends
``application/vnd.elasticsearch+json; compatible-with=8`` as Content-Type and
Accept. OpenSearch-API servers (osmem-server in the embedded stack) answer 406 to
that. The client supports passing a ``node_class``; when ``GET /`` reports
``version.distribution == "opensearch"`` we pass a subclass of the transport's
own node that rewrites those two headers back to plain ``application/json``
(``application/x-ndjson`` for ``_bulk``). Against Elasticsearch the stock node
is used and nothing changes.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from aitrace.producers.config import SearchConfig, mask_url
from elastic_transport import (
    AiohttpHttpNode,
    HttpHeaders,
    TransportError,
    Urllib3HttpNode,
)
from elastic_transport._node import NodeApiResponse
from elasticsearch import AsyncElasticsearch, Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

_COMPAT_RE = re.compile(r"application/vnd\.elasticsearch\+([\w-]+)(\s*;\s*compatible-with=\d+)?")
_DETECT_TIMEOUT_S = 5.0


class SearchUnavailable(ConnectionError):
    """The search server could not be reached or did not answer ``GET /`` sensibly."""


@dataclass(frozen=True)
class Capabilities:
    """What the server is, as far as aitrace needs to know.

    ``has_ilm`` is true only for Elasticsearch (not OpenSearch, not serverless);
    elsewhere daily indices plus templates do the lifecycle work.
    """

    distribution: str
    version: str
    has_ilm: bool

    @property
    def is_opensearch(self) -> bool:
        return self.distribution == "opensearch"

    @property
    def major(self) -> int:
        return self.version_tuple[0]

    @property
    def version_tuple(self) -> tuple[int, int]:
        """``"8.15.2"`` -> ``(8, 15)``; unreadable parts count as 0."""
        parts = [p if p.isdigit() else "0" for p in [*self.version.split("."), "0", "0"][:2]]
        return int(parts[0]), int(parts[1])

    @property
    def has_wildcard(self) -> bool:
        """The ``wildcard`` field type: Elasticsearch 7.9+, OpenSearch 2.15+."""
        return self.version_tuple >= ((2, 15) if self.is_opensearch else (7, 9))

    @property
    def has_match_only_text(self) -> bool:
        """``match_only_text``: Elasticsearch 7.14+ only (OpenSearch has no such type)."""
        return not self.is_opensearch and self.version_tuple >= (7, 14)

    @classmethod
    def from_root(cls, body: dict[str, Any]) -> Capabilities:
        """Read the answer of ``GET /``."""
        version = body.get("version")
        if not isinstance(version, dict) or "number" not in version:
            raise SearchUnavailable(f"GET / did not return a version object: {str(body)[:200]}")
        distribution = str(version.get("distribution") or "elasticsearch")
        has_ilm = distribution == "elasticsearch" and version.get("build_flavor") != "serverless"
        return cls(distribution, str(version["number"]), has_ilm)


# urllib3 leads a connection error with the connection object: "<...HTTPConnection object at 0x..>: " or
# "HTTPConnection(host='127.0.0.1', port=9200): "
_CONNECTION_REPR = re.compile(r"^(<[^>]*>|\w+\([^)]*\)): ")
_BARE_USERINFO = re.compile(r":[^/@\s]*@")  # user:password@, wherever it stands


def _plain_mimetype(value: str) -> str:
    """``application/vnd.elasticsearch+json; compatible-with=8`` -> ``application/json``."""
    return _COMPAT_RE.sub(r"application/\1", value)


def _plain_headers(headers: HttpHeaders | None) -> HttpHeaders | None:
    if not headers:
        return headers
    out = headers.copy()
    for name in ("accept", "content-type"):
        value = out.get(name)
        if value:
            out[name] = _plain_mimetype(value)
    return out


class PlainJsonUrllib3Node(Urllib3HttpNode):
    """urllib3 node that sends plain JSON media types (for OpenSearch-API servers)."""

    def perform_request(  # type: ignore[override]  # request_timeout passes through **kw, as below
        self, method: str, target: str, body: bytes | None = None, headers: HttpHeaders | None = None, **kw: Any
    ) -> NodeApiResponse:
        return super().perform_request(method, target, body=body, headers=_plain_headers(headers), **kw)


class PlainJsonAiohttpNode(AiohttpHttpNode):
    """aiohttp node that sends plain JSON media types (for OpenSearch-API servers)."""

    async def perform_request(  # type: ignore[override]
        self, method: str, target: str, body: bytes | None = None, headers: HttpHeaders | None = None, **kw: Any
    ) -> NodeApiResponse:
        return await super().perform_request(method, target, body=body, headers=_plain_headers(headers), **kw)


# Capabilities per transport: client.options() copies share the transport, so a
# client derived with .options() still finds what was detected for its parent.
_CAPABILITIES: weakref.WeakKeyDictionary[Any, Capabilities] = weakref.WeakKeyDictionary()


def capabilities_of(client: AsyncElasticsearch | Elasticsearch) -> Capabilities:
    """The capabilities detected when ``client`` was made by this module."""
    try:
        return _CAPABILITIES[client.transport]
    except KeyError:
        raise LookupError("client was not created by aitrace.sinks.es.make_client") from None


def auth_headers(search: SearchConfig) -> dict[str, str]:
    """The Authorization header for the configured API key or basic credentials (Kibana uses the same)."""
    if search.es_api_key:
        return {"authorization": f"ApiKey {search.es_api_key}"}
    if search.es_username is not None:
        raw = f"{search.es_username}:{search.es_password or ''}".encode()
        return {"authorization": "Basic " + base64.b64encode(raw).decode()}
    return {}


def detect_capabilities(search: SearchConfig, timeout: float = _DETECT_TIMEOUT_S) -> Capabilities:
    """``GET /`` with the configured credentials and TLS; raise :class:`SearchUnavailable` on failure.

    Uses urllib3 directly (not the client) because the node class depends on the
    answer, and because the client's product check would refuse a real OpenSearch
    before we could read its version.
    """
    kwargs: dict[str, Any] = {"timeout": urllib3.Timeout(total=timeout), "retries": False}
    if search.es_url.startswith("https"):
        kwargs["cert_reqs"] = "CERT_REQUIRED" if search.es_verify_certs else "CERT_NONE"
        if search.es_ca_certs:
            kwargs["ca_certs"] = search.es_ca_certs
    parts = urlsplit(search.es_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SearchUnavailable(f"search server URL {safe_url(search.es_url)} is not an http(s) URL with a host")
    pool = urllib3.PoolManager(**kwargs)
    url = search.es_url.rstrip("/") + "/"
    try:
        resp = pool.request("GET", url, headers={"accept": "application/json", **auth_headers(search)})
    except urllib3.exceptions.HTTPError as exc:
        reason = _CONNECTION_REPR.sub("", str(getattr(exc, "reason", None) or exc))  # the cause, not the object
        raise SearchUnavailable(
            f"search server at {safe_url(search.es_url)} unreachable ({reason}): is it running? "
            "`aitrace up` starts the embedded one; AITRACE_ES_URL or --es-url names another"
        ) from exc
    finally:
        pool.clear()
    if resp.status in (401, 403):
        raise SearchUnavailable(
            f"search server at {safe_url(search.es_url)} refused the credentials (HTTP {resp.status})"
        )
    if resp.status != 200:
        raise SearchUnavailable(f"GET / on {safe_url(search.es_url)} answered HTTP {resp.status}")
    try:
        body = resp.json()
    except ValueError as exc:
        raise SearchUnavailable(f"GET / on {safe_url(search.es_url)} did not return JSON") from exc
    return Capabilities.from_root(body)


def safe_url(url: str) -> str:
    """The URL with its password masked (``http://elastic:***@host``), so errors never print secrets; a
    password before an ``@`` is masked in a URL without its scheme too (``elastic:pw@host``)."""
    return _BARE_USERINFO.sub(":***@", mask_url(url))


def _client_kwargs(search: SearchConfig, caps: Capabilities, node_class: type) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "hosts": [search.es_url],
        "serializer": OrjsonSerializer(),  # NaN/Inf become null instead of invalid JSON
        "request_timeout": 30.0,
    }
    if caps.is_opensearch:
        kwargs["node_class"] = node_class
    if search.es_api_key:
        kwargs["api_key"] = search.es_api_key
    elif search.es_username is not None:
        kwargs["basic_auth"] = (search.es_username, search.es_password or "")
    if search.es_ca_certs:
        kwargs["ca_certs"] = search.es_ca_certs
    if search.es_url.startswith("https"):
        kwargs["verify_certs"] = search.es_verify_certs
    return kwargs


def make_client(search: SearchConfig, capabilities: Capabilities | None = None) -> AsyncElasticsearch:
    """An ``AsyncElasticsearch`` that works with the configured server, whatever its distribution.

    Detects the distribution with a blocking ``GET /`` unless ``capabilities`` is
    given (use :func:`connect` from async code that must wait for the server).
    Raises :class:`SearchUnavailable` when the server cannot be reached.
    """
    caps = capabilities or detect_capabilities(search)
    client = AsyncElasticsearch(**_client_kwargs(search, caps, PlainJsonAiohttpNode))
    _CAPABILITIES[client.transport] = caps
    return client


def es_url_argument(text: str) -> str:
    """``--es-url``: an http(s) URL with a host (and a port that is a number), or a usage error; a malformed one
    (``http://[::1``) ended the commands in a traceback."""
    import argparse
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError as exc:  # an unclosed [, a port that is no number or past 65535
        raise argparse.ArgumentTypeError(f"not a URL: {safe_url(text)!r} ({exc})") from None
    if not ok:
        raise argparse.ArgumentTypeError(f"not an http(s) URL with a host: {safe_url(text)!r}")
    return text


def make_sync_client(search: SearchConfig, capabilities: Capabilities | None = None) -> Elasticsearch:
    """Synchronous twin of :func:`make_client` (CLI commands, setup, tests)."""
    caps = capabilities or detect_capabilities(search)
    client = Elasticsearch(**_client_kwargs(search, caps, PlainJsonUrllib3Node))
    _CAPABILITIES[client.transport] = caps
    return client


async def connect(
    search: SearchConfig, *, wait_s: float = 0.0, initial_backoff: float = 0.2, max_backoff: float = 5.0
) -> AsyncElasticsearch:
    """Async :func:`make_client` that keeps trying for up to ``wait_s`` seconds.

    A worker that starts before the search server is up waits here (backing off)
    instead of crashing; after ``wait_s`` the last :class:`SearchUnavailable` is raised.
    """
    deadline = time.monotonic() + wait_s
    delay = initial_backoff
    while True:
        try:
            caps = await asyncio.to_thread(detect_capabilities, search)
            return make_client(search, caps)
        except SearchUnavailable:
            if time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(max_backoff, delay * 2)


__all__ = [
    "Capabilities",
    "PlainJsonAiohttpNode",
    "PlainJsonUrllib3Node",
    "SearchUnavailable",
    "TransportError",
    "auth_headers",
    "capabilities_of",
    "connect",
    "detect_capabilities",
    "make_client",
    "make_sync_client",
    "safe_url",
]
