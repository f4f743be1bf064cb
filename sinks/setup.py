"""``aitrace setup``: index templates (+ ILM where the server has it) and Kibana saved objects.

Idempotent: templates are overwritten with the same bodies and saved objects are
imported with ``overwrite=true``, so running it again after an upgrade is the
way to update them. Existing daily indices keep their mapping; the next day's
index picks up a changed template.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import sys
import time
from pathlib import Path
from typing import Any

import urllib3
from aitrace.producers.config import SearchConfig, Settings
from aitrace.sinks import templates
from aitrace.sinks.es import (
    Capabilities,
    SearchUnavailable,
    auth_headers,
    detect_capabilities,
    es_url_argument,
    make_sync_client,
    safe_url,
)
from elastic_transport import ApiError, TransportError

# package data of aitrace.infra (infra/kibana in a checkout, aitrace/infra/kibana in a wheel)
KIBANA_DIR = Path(str(importlib.resources.files("aitrace.infra") / "kibana"))
# Import order: what others reference first (one request resolves them anyway; this keeps errors readable).
_TYPE_ORDER = {"index-pattern": 0, "search": 1, "lens": 2, "visualization": 2, "dashboard": 3}


class KibanaError(RuntimeError):
    """Kibana could not be reached or refused (part of) the import."""


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--es-url", default=None, type=es_url_argument, help="Elasticsearch / OpenSearch URL (AITRACE_ES_URL)"
    )
    parser.add_argument("--kibana-url", default=None, help="Kibana URL; saved objects are imported when set")
    parser.add_argument("--index-prefix", default=None, help="index name prefix (AITRACE_INDEX_PREFIX)")
    parser.add_argument(
        "--retention-days",
        type=int,
        default=templates.DEFAULT_RETENTION_DAYS,
        help="ILM delete phase age, where the server has ILM (default: %(default)s)",
    )
    parser.add_argument("--skip-templates", action="store_true", help="only import Kibana saved objects")
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep retrying an unreachable or starting (503) Kibana this long (default: %(default)s)",
    )
    parser.add_argument("--kibana-dir", type=Path, default=KIBANA_DIR, help=argparse.SUPPRESS)


def run(name: str, args: argparse.Namespace) -> int:
    if not 0 <= args.wait < float("inf"):  # NaN fails this too
        print(f"aitrace setup: --wait must be a number of seconds, 0 or more, got {args.wait}", file=sys.stderr)
        return 2
    search = Settings.from_env(
        dev_stack=True, es_url=args.es_url, kibana_url=args.kibana_url, index_prefix=args.index_prefix
    ).search
    try:
        if not args.skip_templates:
            installed, caps = install(search, retention_days=args.retention_days)
            for line in installed:
                print(f"installed {line}")
            if not caps.has_ilm:
                print(f"no ILM on {caps.distribution} {caps.version}: daily indices without a retention policy")
        if search.kibana_url:
            summary = import_saved_objects(search, args.kibana_dir, wait_s=args.wait)
            print(f"imported {summary['successCount']} Kibana saved object(s) into {safe_url(search.kibana_url)}")
        elif args.skip_templates:
            print("aitrace setup: --skip-templates without --kibana-url does nothing", file=sys.stderr)
            return 2
    except (SearchUnavailable, KibanaError) as exc:
        print(f"aitrace setup: {exc}", file=sys.stderr)
        return 1
    except (ApiError, TransportError) as exc:
        print(f"aitrace setup: the search server refused the templates: {exc}", file=sys.stderr)
        return 1
    return 0


def install(
    search: SearchConfig, *, retention_days: int = templates.DEFAULT_RETENTION_DAYS
) -> tuple[list[str], Capabilities]:
    """Detect the server, then install the ILM policy (where available) and the three templates."""
    caps = detect_capabilities(search)
    client = make_sync_client(search, caps)
    try:
        installed = templates.install_templates(client, caps, prefix=search.index_prefix, retention_days=retention_days)
    finally:
        client.close()
    return installed, caps


def load_saved_objects(directory: Path, *, prefix: str = "aitrace") -> list[dict[str, Any]]:
    """Every saved object of ``directory/*.ndjson``, data view titles adjusted to ``prefix``."""
    files = sorted(directory.glob("*.ndjson"))
    if not files:
        raise KibanaError(f"no saved objects (*.ndjson) in {directory}")
    objects = []
    for path in files:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise KibanaError(f"{path.name}:{lineno}: not JSON: {exc}") from exc
            if obj.get("type") == "index-pattern" and prefix != "aitrace":
                title = obj["attributes"]["title"]
                obj["attributes"]["title"] = prefix + title.removeprefix("aitrace")
            objects.append(obj)
    objects.sort(key=lambda o: _TYPE_ORDER.get(o.get("type", ""), 9))
    return objects


def import_saved_objects(
    search: SearchConfig, directory: Path = KIBANA_DIR, *, timeout: float = 30.0, wait_s: float = 0.0
) -> dict[str, Any]:
    """``POST /api/saved_objects/_import?overwrite=true`` with all objects in one multipart file.

    While Kibana is unreachable or answers 503 (still starting), retry with backoff for up to ``wait_s``.
    """
    if not search.kibana_url:
        raise KibanaError("no Kibana URL (set AITRACE_KIBANA_URL or pass --kibana-url)")
    objects = load_saved_objects(directory, prefix=search.index_prefix)
    body = "".join(json.dumps(o) + "\n" for o in objects).encode()
    deadline = time.monotonic() + wait_s
    delay = 0.5
    while True:
        try:
            return _post_import(search, body, timeout)
        except _KibanaNotReady as exc:
            if time.monotonic() + delay > deadline:
                raise KibanaError(str(exc)) from exc
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


class _KibanaNotReady(Exception):
    """Unreachable, or 503 while Kibana starts: worth another try within --wait."""


def _post_import(search: SearchConfig, body: bytes, timeout: float) -> dict[str, Any]:
    assert search.kibana_url is not None
    url = search.kibana_url.rstrip("/") + "/api/saved_objects/_import?overwrite=true"
    kwargs: dict[str, Any] = {"timeout": urllib3.Timeout(total=timeout), "retries": False}
    if url.startswith("https"):
        kwargs["cert_reqs"] = "CERT_REQUIRED" if search.es_verify_certs else "CERT_NONE"
        if search.es_ca_certs:
            kwargs["ca_certs"] = search.es_ca_certs
    pool = urllib3.PoolManager(**kwargs)
    try:
        resp = pool.request(
            "POST",
            url,
            fields={"file": ("aitrace.ndjson", body, "application/ndjson")},
            headers={"kbn-xsrf": "true", **auth_headers(search)},
        )
    except urllib3.exceptions.HTTPError as exc:
        raise _KibanaNotReady(f"Kibana at {safe_url(search.kibana_url)} unreachable: {exc}") from exc
    finally:
        pool.clear()
    if resp.status == 503:
        raise _KibanaNotReady(f"Kibana at {safe_url(search.kibana_url)} is not ready (HTTP 503)")
    return _check_import(resp, search.kibana_url)


def _check_import(resp: Any, kibana_url: str) -> dict[str, Any]:
    where = safe_url(kibana_url)
    try:
        summary = resp.json()
    except ValueError:
        summary = None
    if resp.status != 200 or not isinstance(summary, dict):
        detail = summary.get("message") if isinstance(summary, dict) else resp.data[:200].decode(errors="replace")
        raise KibanaError(f"Kibana at {where} answered HTTP {resp.status} to the import: {detail}")
    if not summary.get("success", False):
        errors = "; ".join(
            f"{e.get('type')}/{e.get('id')}: {e.get('error', {}).get('type')}" for e in summary.get("errors", [])
        )
        raise KibanaError(f"Kibana at {where} refused part of the import: {errors}")
    return summary
