"""Settings shared by producers, processors and sinks, one frozen config per concern.

:class:`KafkaConfig` (the broker and topics), :class:`SearchConfig` (the search server, Kibana
and indices) and :class:`ProducerConfig` (the producer library) each load alone
(``KafkaConfig.from_env()``); :class:`Settings` composes them for the commands. Every setting
comes from an ``AITRACE_*`` environment variable (CLI flags override them), read by the one
loader :func:`fields_from_env`. Commands that use the dev stack
(``Settings.from_env(dev_stack=True)``) fall back to the addresses that ``aitrace up``
recorded under ``.aitrace/``.
Secrets (passwords, API keys) are kept out of ``repr`` so they never reach a log.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Self

STATE_FILE = "stack.json"
# scheme://user:password@host -> groups: prefix up to the user, the password
_USERINFO_RE = re.compile(r"(?P<head>[a-zA-Z][\w+.-]{0,31}://[^/@:\s]*)(?::(?P<pw>[^/@\s]*))?@")


def mask_url(url: str) -> str:
    """``http://elastic:pw@host:9200`` -> ``http://elastic:***@host:9200``; any text with URLs works."""
    return _USERINFO_RE.sub(lambda m: f"{m['head']}:***@" if m["pw"] is not None else m[0], url)


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``(url without user-info, user, password)``; user and password are None when absent.

    The elasticsearch client and urllib want credentials apart from the URL, and a URL
    without them can be printed anywhere.
    """
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urlunsplit(parts._replace(netloc=hostport))
    return clean, unquote(user), unquote(password) if sep else None


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


_SECRET_FIELDS = ("es_password", "es_api_key", "kafka_sasl_password")


@dataclass(frozen=True, repr=False)
class EnvConfig:
    """What every config class shares: :meth:`from_env` through the one loader, a repr without secrets."""

    env_prefix: ClassVar[str] = "AITRACE_"  # a field ``name`` reads ``<env_prefix><NAME>``

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Read ``<env_prefix><FIELD>`` for each field, then apply ``overrides`` (None means unset)."""
        values = fields_from_env(cls, cls.env_prefix, os.environ if env is None else env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __repr__(self) -> str:
        # Secret fields are left out; URLs that may carry user-info are masked.
        shown = (
            f"{f.name}={_shown(getattr(self, f.name))!r}"
            for f in fields(self)
            if f.repr and f.name not in _SECRET_FIELDS
        )
        return f"{type(self).__name__}({', '.join(shown)})"


@dataclass(frozen=True, repr=False)
class KafkaConfig(EnvConfig):
    """The broker: bootstrap, TLS and SASL, the schema registry, and the topics' prefix."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ssl_ca_location: str | None = None
    schema_registry_url: str | None = None
    topic_prefix: str = "aitrace"

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


@dataclass(frozen=True, repr=False)
class SearchConfig(EnvConfig):
    """The search server (URL, credentials, TLS), Kibana, and the indices' prefix."""

    es_url: str = "http://127.0.0.1:9200"
    es_username: str | None = None
    es_password: str | None = field(default=None, repr=False)
    es_api_key: str | None = field(default=None, repr=False)
    es_ca_certs: str | None = None
    es_verify_certs: bool = True
    kibana_url: str | None = None
    index_prefix: str = "aitrace"

    def __post_init__(self) -> None:
        # Credentials in AITRACE_ES_URL become basic auth, so es_url is safe to print and
        # every client (urllib3 probe, elasticsearch client) authenticates the same way.
        clean, user, password = split_userinfo(self.es_url)
        if clean == self.es_url:
            return
        object.__setattr__(self, "es_url", clean)
        if self.es_username is None and user:
            object.__setattr__(self, "es_username", user)
        if self.es_password is None and password is not None:
            object.__setattr__(self, "es_password", password)


@dataclass(frozen=True, repr=False)
class ProducerConfig(EnvConfig):
    """The producer library: who sends (service, run), sampling, the queue, batches, spool and timeouts."""

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
    resource_interval_s: float = 10.0  # resource samples inside client.run(...); 0 turns them off
    state_dir: str = ".aitrace"

    def __post_init__(self) -> None:
        # names given as numbers (run_id=12345) are names: the schema's strings refused every event of the client
        for name in ("service", "service_version", "environment", "run_id"):
            value = getattr(self, name)
            if isinstance(value, bytes):
                object.__setattr__(self, name, value.decode("utf-8", "replace"))
            elif value is not None and not isinstance(value, str):
                object.__setattr__(self, name, str(value))
        # counts given as whole floats (queue_size=1e5) are those counts: a float count of events a batch lost them all
        for name in COUNT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, float) and value.is_integer():
                object.__setattr__(self, name, int(value))


# settings that count (events, bytes, milliseconds): positive whole numbers
COUNT_FIELDS = ("queue_size", "batch_max_events", "max_record_bytes", "spool_max_bytes", "delivery_timeout_ms")


CONCERNS: dict[str, type[EnvConfig]] = {"kafka": KafkaConfig, "search": SearchConfig, "producer": ProducerConfig}
_CONCERN_OF_FIELD = {f.name: name for name, cls in CONCERNS.items() for f in fields(cls)}


def setting_fields() -> list[Field[Any]]:
    """Every field of every concern: ``AITRACE_<FIELD>`` for each is what :class:`Settings` reads."""
    return [f for cls in CONCERNS.values() for f in fields(cls)]


def _by_concern(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat ``{field: value}`` routed to the concern that owns each field; an unknown name is a TypeError."""
    parts: dict[str, dict[str, Any]] = {name: {} for name in CONCERNS}
    for key, value in flat.items():
        if key not in _CONCERN_OF_FIELD:
            raise TypeError(f"Settings has no field {key!r}")
        parts[_CONCERN_OF_FIELD[key]][key] = value
    return parts


@dataclass(frozen=True, init=False)
class Settings:
    """The whole configuration, one config per concern. Build with :meth:`from_env`.

    Modules take the concern they need (``settings.kafka``, ``settings.search``,
    ``settings.producer``) and read its fields there (``settings.search.es_url``).
    ``Settings(es_url=...)`` and :meth:`from_env` take flat field names, as the command
    line's flags give them, and route each to its concern.
    """

    kafka: KafkaConfig
    search: SearchConfig
    producer: ProducerConfig

    def __init__(
        self,
        kafka: KafkaConfig | None = None,
        search: SearchConfig | None = None,
        producer: ProducerConfig | None = None,
        **flat: Any,
    ) -> None:
        parts = _by_concern(flat)
        given = {
            "kafka": kafka or KafkaConfig(),
            "search": search or SearchConfig(),
            "producer": producer or ProducerConfig(),
        }
        for name, config in given.items():
            object.__setattr__(self, name, replace(config, **parts[name]))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, dev_stack: bool = False, **overrides: Any) -> Settings:
        """Read ``AITRACE_<FIELD>`` for every field, then apply ``overrides`` (None means unset).

        ``dev_stack``: where neither the environment nor ``overrides`` name the broker or the
        search server, use the embedded stack that ``aitrace up`` recorded in ``state_dir``.
        Only the command line asks for it: a library client (``aitrace.init`` in a training
        job) must not follow a dev stack that happens to be recorded in its working directory.
        """
        env = os.environ if env is None else env
        values = {name: fields_from_env(concern, concern.env_prefix, env) for name, concern in CONCERNS.items()}
        if dev_stack:
            recorded = embedded_endpoints(Path(values["producer"].get("state_dir", ProducerConfig.state_dir)))
            values["kafka"].setdefault("kafka_bootstrap", recorded.get("kafka", KafkaConfig.kafka_bootstrap))
            values["search"].setdefault("es_url", recorded.get("elasticsearch", SearchConfig.es_url))
        for name, part in _by_concern({k: v for k, v in overrides.items() if v is not None}).items():
            values[name].update(part)
        return cls(
            KafkaConfig(**values["kafka"]), SearchConfig(**values["search"]), ProducerConfig(**values["producer"])
        )


def _shown(value: Any) -> Any:
    return mask_url(value) if isinstance(value, str) else value


def fields_from_env(cls: type, prefix: str, env: Mapping[str, str]) -> dict[str, Any]:
    """``{field: value}`` for each field of the dataclass ``cls`` whose ``<prefix><FIELD>`` is set.

    The one set of cast rules for every settings class (:class:`KafkaConfig`,
    :class:`SearchConfig`, :class:`ProducerConfig`, the worker's options): by the field's
    annotation; a bool is true for 1/true/yes/on (any case); an empty
    variable counts as unset; a value that does not parse is an error naming the variable.
    """
    values: dict[str, Any] = {}
    for f in fields(cls):
        var = f"{prefix}{f.name.upper()}"
        raw = env.get(var)
        if raw:
            values[f.name] = _cast(var, raw, f.type)
    return values


def _cast(var: str, raw: str, annotation: Any) -> Any:
    text = str(annotation)
    try:
        if "bool" in text:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if "int" in text:
            return int(raw)
        if "float" in text:
            return float(raw)
    except ValueError:
        raise ValueError(f"{var}={raw!r} is not a valid {text}") from None
    return raw
