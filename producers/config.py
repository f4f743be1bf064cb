"""Settings shared by producers, processors and sinks.

Every setting comes from an ``AITRACE_*`` environment variable (CLI flags override
them). When neither Kafka nor Elasticsearch is configured, the addresses of the
embedded stack that ``aitrace up`` recorded under ``.aitrace/`` are used.
Secrets (passwords, API keys) are kept out of ``repr`` so they never reach a log.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

STATE_FILE = "stack.json"


def _state_dir() -> Path:
    return Path(os.environ.get("AITRACE_STATE_DIR", ".aitrace"))


def embedded_endpoints(state_dir: Path | None = None) -> dict[str, str]:
    """The endpoints `aitrace up` recorded, or {} when no embedded stack is recorded."""
    path = (state_dir or _state_dir()) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in state.get("endpoints", {}).items() if isinstance(v, str)}


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Build with :meth:`from_env`; override with keyword arguments."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    es_url: str = "http://127.0.0.1:9200"
    es_username: str | None = None
    es_password: str | None = field(default=None, repr=False)
    es_api_key: str | None = field(default=None, repr=False)
    es_ca_certs: str | None = None
    es_verify_certs: bool = True
    kibana_url: str | None = None
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ssl_ca_location: str | None = None
    schema_registry_url: str | None = None
    service: str = "unknown-service"
    service_version: str | None = None
    environment: str = "dev"
    run_id: str | None = None
    sample_rate: float = 1.0
    queue_size: int = 100_000
    batch_linger_ms: float = 5.0
    batch_max_events: int = 2_000
    max_record_bytes: int = 900_000
    full_policy: str = "drop_newest"
    spool_dir: str = ".aitrace/spool"
    spool_max_bytes: int = 256 * 1024 * 1024
    delivery_timeout_ms: int = 30_000
    full_block_timeout_s: float = 5.0
    close_timeout_s: float = 10.0
    topic_prefix: str = "aitrace"
    index_prefix: str = "aitrace"
    state_dir: str = ".aitrace"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``AITRACE_<FIELD>`` for every field, then apply ``overrides`` (None means unset)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"AITRACE_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _cast(f.name, raw, f.type)
        state_dir = Path(values.get("state_dir", cls.state_dir))
        recorded = embedded_endpoints(state_dir)
        values.setdefault("kafka_bootstrap", recorded.get("kafka", cls.kafka_bootstrap))
        values.setdefault("es_url", recorded.get("elasticsearch", cls.es_url))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def kafka_config(self) -> dict[str, str]:
        """librdkafka settings for bootstrap, TLS and SASL (passed through unchanged)."""
        conf = {"bootstrap.servers": self.kafka_bootstrap}
        optional = {
            "security.protocol": self.kafka_security_protocol,
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "sasl.password": self.kafka_sasl_password,
            "ssl.ca.location": self.kafka_ssl_ca_location,
        }
        conf.update({k: v for k, v in optional.items() if v})
        return conf

    def topic(self, name: str) -> str:
        """Full topic name: ``topic("events.training")`` -> ``aitrace.events.training``."""
        return f"{self.topic_prefix}.{name}"


def _cast(name: str, raw: str, annotation: Any) -> Any:
    text = str(annotation)
    try:
        if "bool" in text:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if "int" in text:
            return int(raw)
        if "float" in text:
            return float(raw)
    except ValueError:
        raise ValueError(f"AITRACE_{name.upper()}={raw!r} is not a valid {text}") from None
    return raw
