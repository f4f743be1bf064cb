"""docker-compose.yml and Dockerfile, checked statically (Docker does not run on these machines).

The checks are the mistakes that only show up at `docker compose up` on a production host:
a missing service or health check, a worker that starts before Kafka answers, an env name
Settings does not read, a Kafka advertised listener clients cannot reach, a COPY of a path
that is not in the repo (or is excluded by .dockerignore).
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import re
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from aitrace.infra.cli import COMMANDS
from aitrace.processors import worker as worker_cli
from aitrace.processors.heartbeat import FRESH_INTERVALS, heartbeat_path
from aitrace.processors.options import MAX_RECORD_BYTES, WorkerOptions
from aitrace.producers.config import Settings, setting_fields

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {"kafka", "elasticsearch", "kibana", "setup", "worker"}
SETTINGS_ENV = {f"AITRACE_{f.name.upper()}" for f in setting_fields()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two compose spellings it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def test_every_expected_service_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= EXPECTED


@pytest.mark.parametrize("name", ["kafka", "elasticsearch", "kibana"])
def test_infrastructure_has_health_checks(services: dict[str, dict[str, Any]], name: str) -> None:
    check = services[name].get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert check["test"][0] in {"CMD", "CMD-SHELL"} and len(check["test"]) > 1
    assert check.get("retries", 0) >= 3 and check.get("start_period")


def test_worker_waits_for_healthy_kafka_elasticsearch_and_setup(services: dict[str, dict[str, Any]]) -> None:
    deps = depends_on(services["worker"])
    assert deps["kafka"] == "service_healthy"
    assert deps["elasticsearch"] == "service_healthy"
    assert deps["setup"] == "service_completed_successfully"
    assert depends_on(services["setup"]) == {
        "kafka": "service_healthy",
        "elasticsearch": "service_healthy",
        "kibana": "service_healthy",
    }
    assert depends_on(services["kibana"]) == {"elasticsearch": "service_healthy"}
    assert services["setup"].get("restart") == "no", "setup is one-shot: a restart loop would mask failures"


def test_every_healthy_condition_names_a_service_with_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dep, condition in depends_on(service).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; it has no check"


@pytest.mark.parametrize("name", ["setup", "worker"])
def test_project_services_run_aitrace_commands_with_settings_env(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    assert service["build"] in [".", {"context": "."}]
    assert service["command"][0] in COMMANDS
    env = env_of(service)
    assert {"AITRACE_KAFKA_BOOTSTRAP", "AITRACE_ES_URL"} <= set(env)
    unknown = {k for k in env if k.startswith("AITRACE_")} - SETTINGS_ENV
    assert not unknown, f"{name} sets {unknown}, which Settings does not read"
    # The values parse: a bad bool/int/float would raise here as it would in the container.
    settings = Settings.from_env(env=env)
    assert settings.kafka.kafka_bootstrap == env["AITRACE_KAFKA_BOOTSTRAP"]
    assert settings.search.es_url == env["AITRACE_ES_URL"]


def worker_options(args: list[str], env: dict[str, str]) -> tuple[argparse.Namespace, WorkerOptions]:
    """``aitrace worker ARGS`` parsed by its own parser, and the options it runs with under ``env``."""
    parser = argparse.ArgumentParser()
    worker_cli.add_arguments("worker", parser)
    parsed = parser.parse_args(args)
    overrides = {f.name: getattr(parsed, f.name) for f in fields(WorkerOptions)}
    return parsed, WorkerOptions.from_env(env, **overrides)


def test_worker_health_check_reads_the_workers_heartbeat(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    check = worker.get("healthcheck")
    assert check, "worker has no healthcheck"
    # CMD form: the image's ENTRYPOINT does not apply to a health check, so it names `aitrace` itself.
    assert check["test"][:3] == ["CMD", "aitrace", "worker"]
    assert check.get("retries", 0) >= 3 and check.get("start_period")
    env = env_of(worker)
    health, options = worker_options(check["test"][3:], env)
    assert health.health, "the check would start a second worker instead of checking the first"
    _, running = worker_options(worker["command"][1:], env)
    # Same environment, same flags for the heartbeat's place: it looks where the worker writes.
    assert heartbeat_path(options.data_dir, options.app_id) == heartbeat_path(running.data_dir, running.app_id)
    max_age = health.health_max_age or FRESH_INTERVALS * options.stats_interval_s
    assert max_age > running.stats_interval_s, "a healthy worker's heartbeat would already count as stale"


def test_aitrace_endpoints_point_at_the_compose_services(services: dict[str, dict[str, Any]]) -> None:
    for name in ("setup", "worker"):
        env = env_of(services[name])
        assert env["AITRACE_ES_URL"] == "http://elasticsearch:9200"
        assert kafka_address_is_served(services["kafka"], env["AITRACE_KAFKA_BOOTSTRAP"], "kafka")
        if "AITRACE_KIBANA_URL" in env:
            assert env["AITRACE_KIBANA_URL"] == "http://kibana:5601"
    assert "http://elasticsearch:9200" in env_of(services["kibana"])["ELASTICSEARCH_HOSTS"]


def test_published_ports_stay_on_localhost(services: dict[str, dict[str, Any]]) -> None:
    # Security is off in this single-host file: nothing may listen beyond 127.0.0.1.
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


# --------------------------------------------------------------------------- Kafka listeners


def parse_listeners(text: str) -> dict[str, tuple[str, int]]:
    """``"A://h:1,B://:2"`` -> ``{"A": ("h", 1), "B": ("", 2)}``."""
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"([A-Za-z0-9_]+)://([^:]*):(\d+)", item)
        assert match, f"malformed listener {item!r}"
        out[match[1]] = (match[2], int(match[3]))
    return out


def listener_problems(env: dict[str, str], service_names: set[str]) -> list[str]:
    """Everything that keeps a KRaft single node from starting or clients from reaching it."""
    problems = []
    listeners = parse_listeners(env.get("KAFKA_LISTENERS", ""))
    advertised = parse_listeners(env.get("KAFKA_ADVERTISED_LISTENERS", ""))
    protocol_map = dict(p.split(":") for p in env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "").split(",") if p)
    controllers = set(filter(None, env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "").split(",")))
    for name in listeners:
        if name not in protocol_map:
            problems.append(f"listener {name} has no security protocol")
    for name, (_, port) in advertised.items():
        if name not in listeners:
            problems.append(f"advertised listener {name} is not a listener")
        elif listeners[name][1] != port:
            problems.append(f"advertised {name} port {port} differs from its listener port {listeners[name][1]}")
    if not controllers or not controllers <= set(listeners):
        problems.append(f"controller listeners {controllers} are not all listeners")
    if controllers & set(advertised):
        problems.append("a controller listener is advertised to clients")
    if env.get("KAFKA_INTER_BROKER_LISTENER_NAME") not in set(listeners) - controllers:
        problems.append("inter-broker listener is not a broker listener")
    voters = env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
    match = re.fullmatch(r"(\d+)@([^:]+):(\d+)", voters)
    if not match:
        problems.append(f"quorum voters {voters!r} are not NODE@HOST:PORT")
    else:
        controller_ports = {listeners[c][1] for c in controllers if c in listeners}
        if match[1] != str(env.get("KAFKA_NODE_ID")):
            problems.append("the quorum voter is not this node")
        if match[2] not in service_names or int(match[3]) not in controller_ports:
            problems.append(f"quorum voter {voters} is not this node's controller listener")
    if set(env.get("KAFKA_PROCESS_ROLES", "").split(",")) != {"broker", "controller"}:
        problems.append("a single KRaft node must be both broker and controller")
    return problems


def kafka_address_is_served(kafka: dict[str, Any], address: str, service_name: str) -> bool:
    """True when ``address`` is an advertised listener on the compose network (host = the service)."""
    advertised = parse_listeners(env_of(kafka)["KAFKA_ADVERTISED_LISTENERS"])
    host, _, port = address.rpartition(":")
    names = {service_name, kafka.get("hostname", service_name)}
    return any(h == host and p == int(port) and h in names for h, p in advertised.values())


def test_kafka_listeners_are_consistent(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    env = env_of(kafka)
    assert listener_problems(env, {"kafka", kafka.get("hostname", "kafka")}) == []
    # `kafka-storage format` refuses a cluster id that is not a base64url 16-byte UUID.
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "true"
    assert int(env["KAFKA_NUM_PARTITIONS"]) > 1, "one partition would cap the workers at one"
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 1, "one node cannot hold more replicas"
    # Each published port is a listener advertised as 127.0.0.1 on that same port, so host clients
    # are handed an address they can reach.
    advertised = parse_listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    for mapping in kafka["ports"]:
        _, host_port, container_port = str(mapping).split(":")
        assert ("127.0.0.1", int(host_port)) in advertised.values()
        assert int(host_port) == int(container_port)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"KAFKA_ADVERTISED_LISTENERS": "INTERNAL://kafka:9092,OTHER://x:1"}, "OTHER is not a listener"),
        ({"KAFKA_ADVERTISED_LISTENERS": "INTERNAL://kafka:9999"}, "differs from its listener port"),
        ({"KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9092"}, "not this node's controller listener"),
        ({"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "INTERNAL:PLAINTEXT"}, "has no security protocol"),
        ({"KAFKA_ADVERTISED_LISTENERS": "CONTROLLER://kafka:9093"}, "controller listener is advertised"),
        ({"KAFKA_PROCESS_ROLES": "broker"}, "both broker and controller"),
    ],
)
def test_the_listener_check_catches_broken_configs(
    services: dict[str, dict[str, Any]], change: dict[str, str], complaint: str
) -> None:
    env = {**env_of(services["kafka"]), **change}
    assert any(complaint in p for p in listener_problems(env, {"kafka"}))


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def test_dockerfile_bases_on_python_311_slim() -> None:
    bases = [args.split()[0] for word, args in dockerfile_instructions() if word == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)


def test_dockerfile_copies_paths_that_exist_and_are_not_ignored() -> None:
    ignored = dockerignore_patterns()
    copies = [args.split() for word, args in dockerfile_instructions() if word == "COPY"]
    sources = [src for parts in copies if not parts[0].startswith("--from") for src in parts[:-1]]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repo"
        hit = [p for p in ignored if fnmatch.fnmatch(src.rstrip("/"), p.rstrip("/"))]
        assert not hit, f"Dockerfile copies {src}, which .dockerignore excludes ({hit})"


def test_dockerfile_copies_every_mapped_package_folder() -> None:
    # pyproject maps folders into `aitrace`; a folder left out builds a wheel missing a subpackage.
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    copied = {
        src.rstrip("/")
        for word, args in dockerfile_instructions()
        if word == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    }
    assert set(package_dirs.values()) <= copied
    assert "pyproject.toml" in copied


def test_dockerfile_runs_the_installed_wheel_as_a_non_root_user() -> None:
    steps = dockerfile_instructions()
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1] not in {"root", "0"}
    workdirs = [args for word, args in final if word == "WORKDIR"]
    package_dirs = {"/src", "/app", "/producers", "/schemas", "/processors", "/infra"}
    assert workdirs and workdirs[-1] not in package_dirs
    runs = " ".join(args for word, args in final if word == "RUN")
    assert "pip install" in runs and "embedded" not in runs
    entry = next(args for word, args in final if word == "ENTRYPOINT")
    assert "aitrace" in entry


def test_the_broker_accepts_the_largest_record_the_worker_writes(services: dict[str, dict[str, Any]]) -> None:
    """The worker writes table values up to MAX_RECORD_BYTES (an entity's detector state); a
    broker that refuses them fails every changelog write of that entity. At 2 MiB, as before,
    a model of about 300 features at full drift windows was already past it."""
    env = env_of(services["kafka"])
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= MAX_RECORD_BYTES
    assert int(env["KAFKA_REPLICA_FETCH_MAX_BYTES"]) >= MAX_RECORD_BYTES
