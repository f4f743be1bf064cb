"""Credentials in settings never reach output, and a URL with user-info still connects.

Every quick CLI command runs as a real subprocess (its own stdout, stderr and logging)
with ``AITRACE_ES_URL=http://elastic:<password>@127.0.0.1:<port>`` and a Kafka SASL
password; the password must not appear anywhere in what it prints.
osmem-server does not check credentials, which is fine: the point is that the
client sends them as basic auth instead of choking on the URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aitrace.infra.cli import known_secrets, scrub
from aitrace.infra.stack import OsmemProcess, free_port
from aitrace.producers.config import KafkaConfig, SearchConfig, Settings, mask_url, split_userinfo

PASSWORD = "Zq7-hunter2-Xv9"  # distinctive: any hit is a leak, not a coincidence
KAFKA_PASSWORD = "Kp4-sasl-secret-Wm2"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def _env(es_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRACE_")}
    env.update(
        AITRACE_ES_URL=es_url,
        AITRACE_STATE_DIR=str(tmp_path / "state"),
        AITRACE_INDEX_PREFIX="credtest",
        AITRACE_KAFKA_SASL_USERNAME="svc",
        AITRACE_KAFKA_SASL_PASSWORD=KAFKA_PASSWORD,
    )
    return env


def _aitrace(args: list[str], env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "aitrace.infra.cli", *args]
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:  # a tail that never ends: what it printed so far counts
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return subprocess.CompletedProcess(cmd, -9, out, err)


def _assert_no_secret(result: subprocess.CompletedProcess[str]) -> None:
    text = result.stdout + result.stderr
    for secret in (PASSWORD, KAFKA_PASSWORD):
        assert secret not in text, f"{result.args[3:]} printed a secret:\n{text}"


def test_every_command_hides_the_password_and_reaches_the_server(search: OsmemProcess, tmp_path: Path) -> None:
    env = _env(f"http://elastic:{PASSWORD}@127.0.0.1:{search.port}", tmp_path)
    setup = _aitrace(["setup"], env)
    _assert_no_secret(setup)
    assert setup.returncode == 0, setup.stderr

    status = _aitrace(["status", "--json"], env)
    _assert_no_secret(status)
    rows = {row["role"]: row for row in json.loads(status.stdout)}
    assert rows["elasticsearch"]["answers"], rows
    assert rows["elasticsearch"]["address"] == f"http://elastic:***@127.0.0.1:{search.port}"

    for args in (
        ["status"],
        ["search"],
        ["search", "--json"],
        ["trace", TRACE_ID],
        ["search", "--es-url", env["AITRACE_ES_URL"]],
    ):
        result = _aitrace(args, env)
        _assert_no_secret(result)
        assert "Traceback" not in result.stderr, result.stderr
    assert "answers" in _aitrace(["status"], env).stdout


def test_alerts_with_a_sasl_password_never_prints_it(tmp_path: Path) -> None:
    env = _env("http://127.0.0.1:9", tmp_path)
    env.update(AITRACE_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", AITRACE_KAFKA_SASL_MECHANISM="PLAIN")
    closed = f"127.0.0.1:{free_port()}"
    result = _aitrace(["alerts", "--json", "-v", "--bootstrap", closed], env, timeout=8.0)
    _assert_no_secret(result)


@pytest.mark.parametrize("command", [["status", "--json"], ["search"], ["setup"], ["trace", TRACE_ID]])
def test_a_closed_port_error_does_not_carry_the_password(command: list[str], tmp_path: Path) -> None:
    env = _env(f"http://elastic:{PASSWORD}@127.0.0.1:{free_port()}", tmp_path)
    result = _aitrace(command, env)
    _assert_no_secret(result)
    assert result.returncode != 0
    if command[0] != "status":
        assert "elastic:***@" in result.stderr or "127.0.0.1" in result.stderr, result.stderr


def test_settings_take_credentials_out_of_the_url_and_hide_them() -> None:
    settings = Settings(es_url=f"https://elastic:{PASSWORD}@es.example:9243", kafka_sasl_password=KAFKA_PASSWORD)
    assert settings.search.es_url == "https://es.example:9243"
    assert (settings.search.es_username, settings.search.es_password) == ("elastic", PASSWORD)
    assert PASSWORD not in repr(settings) and KAFKA_PASSWORD not in repr(settings)
    explicit = Settings(es_url="http://a:b@h:1", es_username="other", es_password="given")
    assert (explicit.search.es_username, explicit.search.es_password) == ("other", "given")  # explicit settings win
    alone = SearchConfig.from_env({"AITRACE_ES_URL": f"https://elastic:{PASSWORD}@es.example:9243"})
    assert (alone.es_url, alone.es_username, alone.es_password) == ("https://es.example:9243", "elastic", PASSWORD)
    assert alone == settings.search and PASSWORD not in repr(alone)
    kafka = KafkaConfig.from_env({"AITRACE_KAFKA_SASL_PASSWORD": KAFKA_PASSWORD})
    assert kafka.kafka_config()["sasl.password"] == KAFKA_PASSWORD and KAFKA_PASSWORD not in repr(kafka)


def test_mask_url_and_scrub() -> None:
    assert mask_url("see http://elastic:pw@h:9200/x") == "see http://elastic:***@h:9200/x"
    assert mask_url("http://h:9200") == "http://h:9200"
    assert split_userinfo("http://u:p%40ss@h:1/p") == ("http://h:1/p", "u", "p@ss")
    secrets = known_secrets([], {"AITRACE_KAFKA_SASL_PASSWORD": KAFKA_PASSWORD, "AITRACE_ES_URL": "http://u:abcd@h"})
    assert scrub(f"auth {KAFKA_PASSWORD} at abcd", secrets) == "auth *** at ***"
