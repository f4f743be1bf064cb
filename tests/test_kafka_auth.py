"""Kafka TLS/SASL settings reach the Faust worker app (construction only: no SASL broker needed)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import certifi
import pytest
from aitrace.processors.app import create_app
from aitrace.processors.kafka_auth import broker_credentials
from aitrace.processors.options import WorkerOptions
from aitrace.producers.config import Settings
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth


def _settings(**kw: Any) -> Settings:
    return Settings.from_env(kafka_bootstrap="127.0.0.1:9", **kw)


def _app_auth(tmp_path: Path, settings: Settings) -> dict[str, Any]:
    """What the app's aiokafka consumers and producers are given."""
    app = create_app(settings, WorkerOptions(data_dir=str(tmp_path)))
    return credentials_to_aiokafka_auth(app.conf.broker_credentials)


def test_sasl_ssl_settings_reach_the_app(tmp_path: Path) -> None:
    settings = _settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="worker",
        kafka_sasl_password="s3cret",
        kafka_ssl_ca_location=certifi.where(),
    )
    auth = _app_auth(tmp_path, settings)
    assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("worker", "s3cret")
    context = auth["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] > 0  # the CA file was loaded


def test_sasl_plaintext_has_no_tls_context(tmp_path: Path) -> None:
    settings = _settings(
        kafka_security_protocol="sasl_plaintext",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    auth = _app_auth(tmp_path, settings)
    assert (auth["security_protocol"], auth["sasl_mechanism"], auth["ssl_context"]) == ("SASL_PLAINTEXT", "PLAIN", None)


def test_ssl_only_gives_tls_credentials(tmp_path: Path) -> None:
    auth = _app_auth(tmp_path, _settings(kafka_security_protocol="SSL", kafka_ssl_ca_location=certifi.where()))
    assert auth["security_protocol"] == "SSL" and isinstance(auth["ssl_context"], ssl.SSLContext)


def test_plaintext_broker_gets_no_credentials(tmp_path: Path) -> None:
    assert broker_credentials(_settings().kafka) is None
    assert broker_credentials(_settings(kafka_security_protocol="PLAINTEXT").kafka) is None
    assert _app_auth(tmp_path, _settings()) == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kafka_security_protocol": "TLS"}, "AITRACE_KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "AITRACE_KAFKA_SASL_MECHANISM"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "OAUTHBEARER"}, "OAUTHBEARER"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_ca_location": "/nonexistent/ca.pem"}, "CA file"),
    ],
)
def test_settings_the_worker_cannot_use_fail_at_app_construction(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        create_app(_settings(**overrides), WorkerOptions(data_dir=str(tmp_path)))


def test_a_file_that_is_not_a_certificate_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="CA file"):
        broker_credentials(_settings(kafka_security_protocol="SSL", kafka_ssl_ca_location=str(bad)).kafka)
