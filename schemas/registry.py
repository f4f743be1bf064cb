"""A minimal client for a Confluent-compatible Schema Registry (register, fetch by id).

Only what the codecs need, over the standard library, with results cached: a schema id
never changes meaning, so each is fetched once per process.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from typing import Any

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryError(OSError):
    """The registry refused a request or could not be reached."""


class RegistryUnreachable(SchemaRegistryError):
    """The registry could not be reached (no answer, or none in time): no schema id can be asked now."""


class SchemaRegistryClient:
    """Talks to ``url`` (e.g. ``http://registry:8081``), optionally with basic auth ``user:password``."""

    def __init__(self, url: str, basic_auth: str | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._auth = "Basic " + base64.b64encode(basic_auth.encode()).decode() if basic_auth else None
        self._timeout = timeout
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}
        self._lock = threading.Lock()

    def register(self, subject: str, schema_text: str) -> int:
        """Register (or look up) ``schema_text`` under ``subject``; returns its id."""
        key = (subject, schema_text)
        with self._lock:
            if key not in self._ids:
                reply = self._request("POST", f"/subjects/{subject}/versions", {"schema": schema_text})
                self._ids[key] = int(reply["id"])
                self._schemas[self._ids[key]] = schema_text
            return self._ids[key]

    def schema(self, schema_id: int) -> str:
        """The schema text registered under ``schema_id``."""
        with self._lock:
            if schema_id not in self._schemas:
                self._schemas[schema_id] = self._request("GET", f"/schemas/ids/{schema_id}")["schema"]
            return self._schemas[schema_id]

    def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
        if self._auth:
            headers["Authorization"] = self._auth
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise SchemaRegistryError(f"schema registry {method} {path}: HTTP {exc.code} {exc.read()[:200]!r}") from exc
        except (urllib.error.URLError, TimeoutError) as exc:
            raise RegistryUnreachable(f"schema registry {self.url} unreachable: {exc}") from exc


def registry_at(url: str | None, timeout: float = 10.0) -> SchemaRegistryClient | None:
    """The client of the registry at ``url`` (``AITRACE_SCHEMA_REGISTRY_URL``), None where none is set."""
    return SchemaRegistryClient(url, timeout=timeout) if url else None
