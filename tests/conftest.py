"""Shared fixtures: a real Tansu broker and a real osmem-server on free ports of 127.0.0.1.

Fixtures
--------
``kafka``          session-wide Tansu (:class:`aitrace.infra.stack.TansuProcess`): ``.bootstrap``,
                   ``.port``, ``.stop()``, ``.kill()``, ``.start()``, ``.wait_ready()``, ``.restart()``.
                   A test may stop or kill it: after that test the fixture brings it back on the
                   same port (memory storage, so it comes back empty). Use unique topic names.
``fresh_kafka``    a private Tansu for one test, gone afterwards: for destructive tests that
                   should not disturb others, or that need an empty broker.
``search``         session-wide osmem-server (:class:`aitrace.infra.stack.OsmemProcess`): ``.url``.
                   Healed after a test that stops it, like ``kafka``. Use unique index names.
``fresh_search``   a private osmem-server for one test.
``unique_topic``   a callable: ``unique_topic("events")`` -> ``"t-events-<test>-<hex>"``.
``unique_name``    the same for index names, group ids, run ids (lower case, index-safe).
``stack_log_dir``  where the services of this session write their logs (printed on failure).

Isolation: the session runs with ``AITRACE_STATE_DIR`` pointing at a temporary directory and
without a developer's ``AITRACE_*`` settings, so ``Settings.from_env()`` never reads a local
``.aitrace/`` or an external cluster. Every service dies with the session, even on a crash:
the atexit hook, Tansu's parent-death signal, osmem-server's ``-parent-pid``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aitrace
import pytest
from aitrace.infra.stack import OsmemProcess, ServiceProcess, TansuProcess, start_service
from aitrace.producers.config import setting_fields

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0  # generous: ~7 engineers share 2 cores

_saved_env: dict[str, str | None] = {}
_session_tmp: Path | None = None


def _set_env(name: str, value: str | None) -> None:
    _saved_env.setdefault(name, os.environ.get(name))
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def pytest_configure(config: pytest.Config) -> None:
    """Isolate the environment before any test module is imported.

    This is a hook rather than a fixture because Numba reads NUMBA_CACHE_DIR when it is
    first imported, which happens at collection, before any fixture runs.
    """
    global _session_tmp
    _session_tmp = Path(tempfile.mkdtemp(prefix="aitrace-tests-"))
    for f in setting_fields():
        _set_env(f"AITRACE_{f.name.upper()}", None)
    _set_env("AITRACE_STATE_DIR", str(_session_tmp / "state"))
    _set_env("AITRACE_SPOOL_DIR", str(_session_tmp / "spool"))
    if not os.environ.get("NUMBA_CACHE_DIR") and not os.environ.get("AITRACE_NUMBA_CACHE_DIR"):
        # Kept between sessions (git-ignored): a cached kernel loads in about half the time. Not
        # NUMBA_CACHE_DIR, which would skip the folder per source version (detect/_cache.py):
        # after an edit to a kernel's helper module alone, the tests ran the old compiled kernel.
        _set_env("AITRACE_NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))


def pytest_unconfigure(config: pytest.Config) -> None:
    ServiceProcess.stop_all()
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _saved_env.clear()
    if _session_tmp is not None:
        shutil.rmtree(_session_tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs of the services this session starts (pytest keeps the last few tmp dirs)."""
    return tmp_path_factory.mktemp("stack-logs")


@pytest.fixture(scope="session")
def kafka(stack_log_dir: Path) -> Iterator[TansuProcess]:
    """Session-wide Tansu; healed after any test that stopped it (see ``_heal_shared``)."""
    broker = start_service(TansuProcess, stack_log_dir, timeout=READY_TIMEOUT)
    assert isinstance(broker, TansuProcess)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def search(stack_log_dir: Path) -> Iterator[OsmemProcess]:
    """Session-wide osmem-server; healed after any test that stopped it."""
    server = start_service(OsmemProcess, stack_log_dir, timeout=READY_TIMEOUT)
    assert isinstance(server, OsmemProcess)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _heal_shared(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used ``kafka`` or ``search``, make sure it runs and answers again.

    Only looks at fixtures the test requested, so tests that need no service start none.
    """
    yield
    for name in ("kafka", "search"):
        if name not in request.fixturenames:
            continue
        service: ServiceProcess = request.getfixturevalue(name)
        if not service.running():
            service.start()
        service.wait_ready(READY_TIMEOUT)


@pytest.fixture
def fresh_kafka(tmp_path: Path) -> Iterator[TansuProcess]:
    """A private Tansu for one test; killed afterwards whatever state the test left it in."""
    broker = start_service(TansuProcess, tmp_path / "fresh-kafka", timeout=READY_TIMEOUT)
    assert isinstance(broker, TansuProcess)
    yield broker
    broker.kill()


@pytest.fixture
def fresh_search(tmp_path: Path) -> Iterator[OsmemProcess]:
    """A private osmem-server for one test; killed afterwards."""
    server = start_service(OsmemProcess, tmp_path / "fresh-search", timeout=READY_TIMEOUT)
    assert isinstance(server, OsmemProcess)
    yield server
    server.kill()


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("idx")`` -> ``"idx-<test-name>-<8 hex>"``: lower case, valid as an index name."""

    def make(prefix: str = "n") -> str:
        return f"{_slug(prefix, 20) or 'n'}-{_slug(request.node.name)}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def unique_topic(unique_name: Callable[[str], str]) -> Callable[[str], str]:
    """``unique_topic("events")`` -> ``"t-events-<test-name>-<8 hex>"``, a fresh Kafka topic name."""

    def make(prefix: str = "topic") -> str:
        return "t-" + unique_name(prefix)

    return make


@pytest.fixture
def make_client(
    kafka: TansuProcess, tmp_path: Path, unique_name: Callable[[str], str]
) -> Iterator[Callable[..., aitrace.Client]]:
    """``make_client(**settings)`` -> a client on the shared Tansu with a fresh topic prefix; closed after the test."""
    made: list[aitrace.Client] = []

    def make(**overrides: Any) -> aitrace.Client:
        settings: dict[str, Any] = {
            "kafka_bootstrap": kafka.bootstrap,
            "topic_prefix": unique_name("p"),
            "spool_dir": str(tmp_path / f"spool{len(made)}"),
        }
        settings.update(overrides)
        client = aitrace.init(service=settings.pop("service", "svc"), **settings)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(timeout=5)
