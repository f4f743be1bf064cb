"""What ``aitrace demo`` starts and stops: the embedded stack (only the services it started) and the worker."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from aitrace.infra.services import LOG_DIR, prune_logs
from aitrace.producers.config import Settings

WORKER_STOP_GRACE_S = 15.0
DEMO_LOCK = "demo.lock"


class DemoError(RuntimeError):
    """The demo could not run (stack, setup, worker); the message says what to do."""


@dataclass
class StackHandle:
    """What the demo started, so that it stops exactly that."""

    settings: Settings
    started_roles: list[str]
    external_roles: list[str]


@contextlib.contextmanager
def demo_lock(state_dir: Path) -> Iterator[None]:
    """One demo at a time per state directory.

    Without it a second demo reused the first one's stack, fed the same run ids' series (each
    demo then judged the other's healthy run a false alarm), and lost its broker and search
    server mid-run when the first demo stopped them: a page of broker errors and a traceback.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        handle = (state_dir / DEMO_LOCK).open("ab")
    except OSError as exc:
        raise DemoError(f"cannot use the state directory {state_dir}: {exc.strerror or exc}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DemoError(
                f"another `aitrace demo` is running with the state directory {state_dir}: wait for it to end, "
                "or give this one its own with --state-dir"
            ) from None
        yield


def start_stack(state_dir: Path) -> StackHandle:
    """Start the embedded services that are neither running nor external; return the settings."""
    from aitrace.infra import stack

    # Everything reads the stack record from here: this process (producers, search client) and the worker.
    os.environ["AITRACE_STATE_DIR"] = str(state_dir)
    running_before = {s.role for s in stack.status(state_dir) if s.kind == "embedded" and s.alive}
    state = stack.up(state_dir)
    recorded = set(state.get("services", {}))
    external = sorted(state.get("external", {}) or {})
    settings = Settings.from_env(dev_stack=True)
    return StackHandle(settings, sorted(recorded - running_before), external)


def stop_stack(handle: StackHandle, state_dir: Path, out: TextIO) -> None:
    """Stop the services the demo started; a stack that was already up stays up."""
    from aitrace.infra import stack

    if not handle.started_roles:
        return
    recorded = set(stack.read_state(state_dir).get("services", {}))
    if recorded - set(handle.started_roles):
        out.write("the embedded stack was partly running before the demo: leaving it up (`aitrace down` stops it)\n")
        return
    for line in stack.down(state_dir):
        out.write(f"  {line}\n")


class Worker:
    """``aitrace worker`` as a child process, logging to a file under the state directory."""

    def __init__(self, state_dir: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.log_path = state_dir / LOG_DIR / f"demo-worker-{tag}.log"
        self.data_dir = state_dir / f"demo-worker-{tag}"
        self.argv = [
            sys.executable,
            "-m",
            "aitrace.infra.cli",
            "worker",
            "--app-id",
            f"aitrace-demo-{tag}",
            "--workers-dir",
            str(self.data_dir),
            "--raw-metrics",  # a training run of seconds: every point, not one rollup window
            "--idle-timeout-s",
            "5",
            "--stats-interval-s",
            "10",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> Worker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        prune_logs(self.log_path)
        return self

    def check(self) -> None:
        """Raise DemoError when the worker died (with the end of its log)."""
        if self.process is not None and self.process.poll() is not None:
            raise DemoError(f"the worker exited with code {self.process.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the worker and remove its data directory: its app id is this run's alone, so the
        directory would never be read again (one was left behind per demo); the log stays."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WORKER_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)
