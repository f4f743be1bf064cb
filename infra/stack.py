"""The embedded stack: Tansu + osmem-server on 127.0.0.1, for `aitrace up/down/status`, tests, the demo.

``up`` starts both binaries *detached* (own session, no parent-death signal), waits until
each answers a real client request, and records what it started in ``<state>/stack.json``:
pids, ports, binaries, log files, start times, and the ``endpoints`` that
:func:`aitrace.producers.config.embedded_endpoints` hands to the commands
(``Settings.from_env(dev_stack=True)``); library clients read only the environment.
``down`` stops exactly the recorded pids, after checking each pid still runs that binary on
that port (a pid reused by another program is left alone). ``status`` probes each service.

``AITRACE_KAFKA_BOOTSTRAP`` / ``AITRACE_ES_URL`` mark a service as external: ``up`` does not
start it and ``status`` reports it next to the embedded ones.

Process management lives in :mod:`aitrace.infra.services` and is re-exported here, so
``from aitrace.infra.stack import TansuProcess, OsmemProcess, free_port`` is the one import.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aitrace.infra.service_probes import HOST, free_port, http_info, kafka_metadata, port_is_free
from aitrace.infra.services import (
    LOG_DIR,
    STOP_GRACE,
    BinaryNotFound,
    OsmemProcess,
    PortInUse,
    ServiceFailed,
    ServiceProcess,
    StackError,
    TansuProcess,
    find_binary,
    prune_logs,
    start_service,
)
from aitrace.producers.config import STATE_FILE, embedded_endpoints, mask_url
from aitrace.sinks.terminal import StdoutClosed

__all__ = [
    "BinaryNotFound",
    "OsmemProcess",
    "PortInUse",
    "ServiceFailed",
    "ServiceProcess",
    "ServiceStatus",
    "StackError",
    "TansuProcess",
    "down",
    "find_binary",
    "free_port",
    "http_info",
    "kafka_metadata",
    "port_is_free",
    "start_service",
    "status",
    "up",
]

# role -> (process class, env var that makes the role external)
ROLES: dict[str, tuple[type[ServiceProcess], str]] = {
    "kafka": (TansuProcess, "AITRACE_KAFKA_BOOTSTRAP"),
    "elasticsearch": (OsmemProcess, "AITRACE_ES_URL"),
}
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServiceStatus:
    """One line of ``aitrace status``."""

    role: str
    address: str
    kind: str  # "embedded" or "external"
    pid: int | None
    alive: bool  # the process runs (always True for external: we cannot know)
    answers: bool
    detail: str = ""

    @property
    def healthy(self) -> bool:
        return self.alive and self.answers


# --------------------------------------------------------------------------- state file


def state_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``AITRACE_STATE_DIR``, else ``.aitrace`` in the working directory."""
    return Path(path if path is not None else os.environ.get("AITRACE_STATE_DIR") or ".aitrace")


def read_state(directory: Path) -> dict[str, Any]:
    """The recorded stack, or {} when none is recorded. A corrupt file is an error, not {}."""
    path = directory / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise StackError(f"{path} is not valid JSON ({exc}); remove it after stopping the processes") from None
    if not isinstance(state, dict):
        raise StackError(f"{path} does not hold a JSON object; remove it after stopping the processes")
    services = state.get("services", {})
    shaped = isinstance(services, dict) and all(isinstance(v, dict) for v in services.values())
    if not shaped or not isinstance(state.get("external", {}), dict):  # (status and down read them)
        raise StackError(f"{path} does not hold the stack's services; remove it after stopping the processes")
    return state


def _write_state(directory: Path, services: dict[str, dict[str, Any]], external: dict[str, str]) -> None:
    """Write atomically, so a reader (``Settings.from_env``) never sees half a file."""
    path = directory / STATE_FILE
    if not services and not external:
        path.unlink(missing_ok=True)
        return
    state = {
        "version": 1,
        "updated_at": _now(),
        "services": services,
        "endpoints": {role: rec["address"] for role, rec in services.items()},
        "external": {role: mask_url(address) for role, address in external.items()},
    }
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One `up` / `down` at a time per state directory."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "stack.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- recorded pids


def pid_runs(pid: int, binary: str, port: int) -> bool:
    """True when ``pid`` is alive, not a zombie, and is ``binary`` serving ``port``.

    The command-line check guards ``down`` against a pid the OS has since reused.
    Without /proc (not Linux) only liveness can be checked.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: not ours
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True
    try:
        stat = (proc / "stat").read_text()
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    args = [a.decode(errors="replace") for a in argv if a]
    return bool(args) and Path(args[0]).name == Path(binary).name and any(str(port) in a for a in args[1:])


def _terminate_pid(pid: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL (a detached pid is not our child)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _record_runs(record: dict[str, Any]) -> bool:
    try:
        return pid_runs(int(record["pid"]), str(record["binary"]), int(record["port"]))
    except (KeyError, TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- probes


def probe_kafka(bootstrap: str, timeout: float = 2.0) -> str:
    """'' when a Kafka Metadata request succeeds, else the reason.

    Plain-text clusters get the raw probe; a cluster with TLS/SASL settings is asked through
    librdkafka with the same settings the producers use.
    """
    from aitrace.producers.config import KafkaConfig

    kafka = KafkaConfig.from_env(kafka_bootstrap=bootstrap)
    protocol = (kafka.kafka_security_protocol or "plaintext").lower()
    if protocol == "plaintext":
        reason = "no bootstrap address"
        for address in filter(None, (a.strip() for a in bootstrap.split(","))):
            host, _, port = address.rpartition(":")
            try:
                kafka_metadata(host.strip("[]") or HOST, int(port), timeout)
            except (OSError, ValueError) as exc:
                reason = f"{address}: {exc or type(exc).__name__}"
                continue
            return ""
        return reason
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({**kafka.kafka_config(), "log_level": 0}).list_topics(timeout=timeout)
    except Exception as exc:  # KafkaException and config errors alike mean "does not answer"
        return str(exc)
    return ""


def probe_http(url: str, timeout: float = 2.0) -> str:
    """'' when ``GET url/`` gets any HTTP answer (401 from a secured cluster still answers).

    Goes through :func:`aitrace.sinks.es.detect_capabilities`, the path the worker uses, so a
    URL with user-info authenticates as basic auth (urllib would choke on it) and the
    reason never carries the password.
    """
    from aitrace.producers.config import SearchConfig
    from aitrace.sinks.es import SearchUnavailable, detect_capabilities

    try:
        detect_capabilities(SearchConfig.from_env(es_url=url), timeout=timeout)
    except SearchUnavailable as exc:
        return "" if "refused the credentials" in str(exc) else mask_url(str(exc))
    return ""


def _probe(role: str, address: str, timeout: float = 2.0) -> str:
    reason = probe_kafka(address, timeout) if role == "kafka" else probe_http(address, timeout)
    return mask_url(reason)


# --------------------------------------------------------------------------- up / down / status


def _external(env: dict[str, str] | None = None) -> dict[str, str]:
    source: Mapping[str, str] = os.environ if env is None else env
    return {role: source[var] for role, (_, var) in ROLES.items() if source.get(var)}


def up(
    state: str | os.PathLike[str] | None = None,
    *,
    kafka_port: int | None = None,
    es_port: int | None = None,
    timeout: float = READY_TIMEOUT,
) -> dict[str, Any]:
    """Start what is neither running (recorded and alive) nor external; return the state.

    Configured ports are used as given (taken -> :class:`PortInUse`); otherwise a service
    that ran before gets its old port back, and a new one gets a free port. If one service
    fails to start, the ones this call started are stopped again: no half-started stack.
    """
    directory = state_dir(state)
    ports = {"kafka": kafka_port, "elasticsearch": es_port}
    external = _external()
    with _locked(directory):
        recorded = read_state(directory).get("services", {})
        services: dict[str, dict[str, Any]] = {}
        started: list[ServiceProcess] = []
        try:
            for role, (cls, _) in ROLES.items():
                old = recorded.get(role)
                old_runs = bool(old) and _record_runs(old)
                if role in external:
                    if old_runs:
                        services[role] = old  # still ours to stop with `down`, though unused now
                    continue
                if old_runs:
                    services[role] = _keep_running(role, old, ports[role])
                    continue
                port = _port_for(ports[role], old)
                service = start_service(cls, directory / LOG_DIR, port=port, timeout=timeout, detached=True)
                started.append(service)
                services[role] = _record(service)
        except BaseException:
            for service in started:
                service.kill()
            raise
        _write_state(directory, services, external)
        for service in started:
            prune_logs(service.log_path)
        return read_state(directory) or {"services": {}, "endpoints": {}, "external": external}


def _keep_running(role: str, record: dict[str, Any], wanted_port: int | None) -> dict[str, Any]:
    """A recorded, running service stays as it is, unless another port is asked for."""
    if wanted_port not in (None, record.get("port")):
        raise StackError(
            f"{role} already runs on port {record['port']} (pid {record['pid']}); "
            f"run `aitrace down` before asking for port {wanted_port}"
        )
    return record


def _port_for(wanted: int | None, old: dict[str, Any] | None) -> int | None:
    """The configured port; else the port a dead service had, while it is free; else None (any)."""
    if wanted is not None:
        return wanted
    port = (old or {}).get("port")
    if isinstance(port, int) and port_is_free(port):
        return port
    return None


def _record(service: ServiceProcess) -> dict[str, Any]:
    return {
        "binary": service.binary,
        "pid": service.pid,
        "port": service.port,
        "address": service.address,
        "log": str(service.log_path.resolve()),
        "started_at": _now(),
    }


def down(state: str | os.PathLike[str] | None = None, *, grace: float = STOP_GRACE) -> list[str]:
    """Stop exactly the recorded processes and remove the record; return one line per service."""
    directory = state_dir(state)
    lines: list[str] = []
    with _locked(directory):
        recorded = read_state(directory).get("services", {})
        if not recorded:
            lines.append(f"no embedded stack recorded in {directory}; nothing to stop")
        for role, record in recorded.items():
            if _record_runs(record):
                _terminate_pid(int(record["pid"]), grace)
                lines.append(f"{role}: stopped pid {record['pid']} ({record.get('address', '?')})")
            else:
                lines.append(f"{role}: pid {record.get('pid')} was no longer running; nothing to stop")
        _write_state(directory, {}, {})
    return lines


def status(state: str | os.PathLike[str] | None = None, *, timeout: float = 2.0) -> list[ServiceStatus]:
    """Probe every recorded embedded service and every external endpoint."""
    directory = state_dir(state)
    result: list[ServiceStatus] = []
    for role, record in read_state(directory).get("services", {}).items():
        alive = _record_runs(record)
        reason = _probe(role, str(record.get("address", "")), timeout) if alive else "process is gone"
        result.append(
            ServiceStatus(
                role=role,
                address=str(record.get("address", "?")),
                kind="embedded",
                pid=record.get("pid"),
                alive=alive,
                answers=alive and not reason,
                detail=reason,
            )
        )
    for role, address in _external().items():
        reason = _probe(role, address, timeout)
        result.append(ServiceStatus(role, mask_url(address), "external", None, True, not reason, reason))
    return result


# --------------------------------------------------------------------------- CLI


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Flags of `aitrace up`, `aitrace down`, `aitrace status`."""
    parser.add_argument(
        "--state-dir",
        default=None,
        help="where the stack record lives (default: $AITRACE_STATE_DIR or ./.aitrace)",
    )
    if name == "up":
        parser.add_argument("--kafka-port", type=_port, default=None, help="Tansu port (default: a free one)")
        parser.add_argument("--es-port", type=_port, default=None, help="osmem-server port (default: a free one)")
        parser.add_argument("--timeout", type=float, default=READY_TIMEOUT, help="seconds to wait for each service")
    if name == "status":
        parser.add_argument("--json", action="store_true", help="print the status as JSON")


def _port(text: str) -> int:
    """A TCP port from the command line; out of range, bind() raised OverflowError (a traceback)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not in 1-65535")
    return port


def run(name: str, args: argparse.Namespace) -> int:
    """Exit codes: 0 fine; 1 a failure (or, for status, a recorded service dead or silent);
    3 for status when nothing is recorded and nothing is external."""
    try:
        if name == "up":
            return _run_up(args)
        if name == "down":
            for line in down(args.state_dir):
                print(line)
            return 0
        if name == "status":
            return _run_status(args)
    except StackError as exc:
        print(f"aitrace {name}: {exc}", file=sys.stderr)
        return 1
    except StdoutClosed:
        raise  # `aitrace status | head -1`: the reader has seen enough, main() ends quietly
    except OSError as exc:  # an unwritable state dir, a full disk: one line, not a traceback
        print(f"aitrace {name}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    raise ValueError(f"aitrace.infra.stack does not implement {name!r}")


def _run_up(args: argparse.Namespace) -> int:
    directory = state_dir(args.state_dir)
    before = read_state(directory).get("services", {})
    state = up(args.state_dir, kafka_port=args.kafka_port, es_port=args.es_port, timeout=args.timeout)
    services = state.get("services", {})
    for role, record in services.items():
        verb = "already up" if before.get(role, {}).get("pid") == record["pid"] else "started"
        print(f"{role:<14} {record['address']:<28} pid {record['pid']:<8} {verb}")
    for role, address in state.get("external", {}).items():
        reason = _probe(role, address)
        note = "answers" if not reason else f"does not answer: {reason}"
        shown = mask_url(address)
        print(f"{role:<14} {shown:<28} external     {note}")
        if reason:
            print(f"aitrace up: warning: external {role} at {shown} does not answer", file=sys.stderr)
    if services:
        print(f"recorded in {directory / STATE_FILE}; stop with `aitrace down`")
        endpoints = embedded_endpoints(directory)
        if {"kafka", "elasticsearch"} <= endpoints.keys():
            # commands find the stack by themselves; a training job or a service reads the environment
            kafka, search = endpoints["kafka"], endpoints["elasticsearch"]
            print(f"clients: export AITRACE_KAFKA_BOOTSTRAP={kafka} AITRACE_ES_URL={search}")
            # Nothing reaches the index without a worker: `aitrace demo --keep` leaves none running.
            print("index what clients send: run `aitrace worker` (in this folder, or anywhere with the export above)")
        if directory.resolve() != state_dir().resolve():
            # Settings.from_env(dev_stack=True) looks in $AITRACE_STATE_DIR (or ./.aitrace), not here.
            print(f"other commands find this stack after: export AITRACE_STATE_DIR={directory.resolve()}")
    return 0


def _run_status(args: argparse.Namespace) -> int:
    rows = status(args.state_dir)
    if args.json:
        print(json.dumps([asdict(r) | {"healthy": r.healthy} for r in rows], indent=2))
    elif not rows:
        print(f"no embedded stack recorded in {state_dir(args.state_dir)} (start one with `aitrace up`)")
    for row in [] if args.json else rows:
        pid = f"pid {row.pid}" if row.pid else row.kind
        health = "answers" if row.healthy else ("dead" if not row.alive else "not answering")
        detail = f" ({row.detail})" if row.detail and not row.healthy else ""
        print(f"{row.role:<14} {row.address:<28} {pid:<12} {health}{detail}")
    if not rows:
        return 3
    return 0 if all(r.healthy for r in rows) else 1
