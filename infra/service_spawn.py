"""How the embedded stack's *attached* children are spawned so that they die with their parent.

Linux's parent-death signal (``PR_SET_PDEATHSIG``) set between fork and exec, and every such
child forked from one long-lived thread (the signal follows the forking thread, not the process).
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_LIBC: Any = None


def _parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with SIGKILL when its parent goes away.

    Linux only (``PR_SET_PDEATHSIG``); elsewhere the atexit hook is the only guard. libc is
    loaded here, in the parent, so the child between fork and exec only makes two syscalls.
    """
    global _LIBC
    if not sys.platform.startswith("linux"):
        return None
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    libc, parent = _LIBC, os.getpid()

    def hook() -> None:
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)

    return hook


class _Spawner:
    """Forks every attached child from one thread that lives as long as the process.

    Linux sends the parent-death signal when the *thread* that forked the child exits, not
    the process. A fault test that restarts the broker from a short-lived thread would
    otherwise see the broker killed the moment that thread returns.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="aitrace-spawner", daemon=True)
                self._thread.start()
        done: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((argv, kwargs, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            argv, kwargs, done = self._requests.get()
            try:
                done.set_result(subprocess.Popen(argv, **kwargs))
            except BaseException as exc:  # handed to the caller, who raises it in its own thread
                done.set_exception(exc)


_spawner = _Spawner()
