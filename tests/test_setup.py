"""``aitrace setup``: templates into a real osmem-server, saved objects into Kibana.

There is no Kibana on these machines, so the import is checked against a local
HTTP server that records the request and answers like Kibana's
``_import`` API (success, partial failure, or an error status).
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aitrace.infra.cli import main as cli_main
from aitrace.infra.stack import OsmemProcess, free_port
from aitrace.producers.config import SearchConfig
from aitrace.sinks import es, setup


class FakeKibana:
    """Records ``POST /api/saved_objects/_import`` requests and answers with ``reply``."""

    def __init__(self, reply: Callable[[list[dict[str, Any]]], tuple[int, dict[str, Any]]]) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                objects = _multipart_ndjson(self.headers["content-type"], raw)
                outer.requests.append({"path": self.path, "headers": self.headers, "objects": objects})
                status, body = reply(objects)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _multipart_ndjson(content_type: str, raw: bytes) -> list[dict[str, Any]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"content-type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    [part] = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "file"]
    assert part.get_filename().endswith(".ndjson")
    return [json.loads(line) for line in part.get_payload(decode=True).decode().splitlines() if line.strip()]


def ok(objects: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    return 200, {"success": True, "successCount": len(objects), "errors": []}


@pytest.fixture
def kibana() -> Iterator[Callable[..., FakeKibana]]:
    made: list[FakeKibana] = []

    def make(reply: Callable[[list[dict[str, Any]]], tuple[int, dict[str, Any]]] = ok) -> FakeKibana:
        made.append(FakeKibana(reply))
        return made[-1]

    yield make
    for k in made:
        k.close()


def test_setup_installs_templates_and_imports_saved_objects(
    search: OsmemProcess, kibana: Callable[..., FakeKibana], unique_name: Callable[[str], str], capsys: Any
) -> None:
    prefix = unique_name("setup")
    fake = kibana()
    rc = cli_main(["setup", "--es-url", search.url, "--kibana-url", fake.url, "--index-prefix", prefix])
    out = capsys.readouterr().out
    assert rc == 0, out
    client = es.make_sync_client(SearchConfig(es_url=search.url))
    try:
        names = {t["name"] for t in client.indices.get_index_template(name=f"{prefix}-*")["index_templates"]}
        assert names == {f"{prefix}-events", f"{prefix}-traces", f"{prefix}-alerts"}
        for name in names:
            client.indices.delete_index_template(name=name)
    finally:
        client.close()
    assert "no ILM on opensearch" in out
    [request] = fake.requests
    assert request["path"] == "/api/saved_objects/_import?overwrite=true"
    assert request["headers"]["kbn-xsrf"] == "true"
    objects = request["objects"]
    assert len(objects) == len(setup.load_saved_objects(setup.KIBANA_DIR))
    order = [o["type"] for o in objects]
    rank = {"index-pattern": 0, "search": 1, "lens": 2, "dashboard": 3}
    assert [rank[t] for t in order] == sorted(rank[t] for t in order)  # referenced objects come first
    titles = {o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    assert titles == {f"{prefix}-events-*", f"{prefix}-traces-*", f"{prefix}-alerts-*"}
    assert f"imported {len(objects)} Kibana saved object(s)" in out


def test_kibana_credentials_are_sent(kibana: Callable[..., FakeKibana]) -> None:
    fake = kibana()
    settings = SearchConfig(kibana_url=fake.url, es_username="elastic", es_password="pw")
    summary = setup.import_saved_objects(settings)
    assert summary["success"] is True
    assert fake.requests[0]["headers"]["authorization"].startswith("Basic ")


def test_partial_import_failure_is_an_error(kibana: Callable[..., FakeKibana], capsys: Any) -> None:
    def partial(objects: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        error = {"type": "lens", "id": "aitrace-lens-loss-by-run", "error": {"type": "missing_references"}}
        return 200, {"success": False, "successCount": len(objects) - 1, "errors": [error]}

    fake = kibana(partial)
    rc = cli_main(["setup", "--skip-templates", "--kibana-url", fake.url])
    err = capsys.readouterr().err
    assert rc == 1
    assert "lens/aitrace-lens-loss-by-run: missing_references" in err


def test_kibana_error_status_is_reported(kibana: Callable[..., FakeKibana]) -> None:
    fake = kibana(lambda objects: (403, {"statusCode": 403, "message": "not allowed to import"}))
    with pytest.raises(setup.KibanaError, match=r"HTTP 403.*not allowed"):
        setup.import_saved_objects(SearchConfig(kibana_url=fake.url))


def test_starting_kibana_is_waited_for(kibana: Callable[..., FakeKibana]) -> None:
    answers = iter([(503, {"message": "Kibana server is not ready yet"}), (503, {})])
    fake = kibana(lambda objects: next(answers, None) or ok(objects))
    summary = setup.import_saved_objects(SearchConfig(kibana_url=fake.url), wait_s=30)
    assert summary["success"] is True and len(fake.requests) == 3


def test_starting_kibana_past_the_wait_is_an_error(kibana: Callable[..., FakeKibana]) -> None:
    fake = kibana(lambda objects: (503, {"message": "Kibana server is not ready yet"}))
    with pytest.raises(setup.KibanaError, match="not ready"):
        setup.import_saved_objects(SearchConfig(kibana_url=fake.url), wait_s=0)
    assert len(fake.requests) == 1


def test_unreachable_kibana_is_a_clear_error(capsys: Any) -> None:
    rc = cli_main(["setup", "--skip-templates", "--kibana-url", f"http://kibana:pw@127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert rc == 1 and "Kibana at http://kibana:***@127.0.0.1" in err and "unreachable" in err
    assert "pw@" not in err


def test_unreachable_search_server_is_a_clear_error(capsys: Any) -> None:
    rc = cli_main(["setup", "--es-url", f"http://127.0.0.1:{free_port()}"])
    assert rc == 1 and "search server at" in capsys.readouterr().err


def test_skip_templates_without_kibana_does_nothing(capsys: Any) -> None:
    assert cli_main(["setup", "--skip-templates"]) == 2


@pytest.mark.parametrize("wait", ["-1", "nan", "inf"])
def test_a_wait_that_is_not_a_number_of_seconds_is_a_usage_error(wait: str, capsys: Any) -> None:
    """-1 was taken as no wait and NaN as a deadline never reached: neither is what was asked."""
    assert cli_main(["setup", "--skip-templates", "--kibana-url", "http://127.0.0.1:1", "--wait", wait]) == 2
    assert "--wait must be a number of seconds" in capsys.readouterr().err


def test_broken_ndjson_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.ndjson").write_text('{"type": "search"}\n{not json\n')
    with pytest.raises(setup.KibanaError, match=r"bad\.ndjson:2"):
        setup.load_saved_objects(tmp_path)
    with pytest.raises(setup.KibanaError, match="no saved objects"):
        setup.load_saved_objects(tmp_path / "empty")


def test_add_arguments_reads_settings_flags() -> None:
    parser = argparse.ArgumentParser()
    setup.add_arguments("setup", parser)
    args = parser.parse_args(["--es-url", "http://x:9200", "--kibana-url", "http://k:5601", "--retention-days", "7"])
    assert (args.es_url, args.kibana_url, args.retention_days) == ("http://x:9200", "http://k:5601", 7)
