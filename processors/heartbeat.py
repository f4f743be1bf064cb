"""The worker's heartbeat file, which ``aitrace worker --health`` (docker-compose's health check) reads.

The stats timer rewrites ``<data_dir>/<app_id>.heartbeat`` every ``stats_interval_s``. The
timer runs on the worker's event loop, so a worker that died, or whose loop is stuck, leaves
the file to age; a clean stop removes it. Only the file's modification time counts; its one
line (pid and stats) is for a person looking into the data dir.

Kept apart from the app so that the health check, run every few seconds, does not import Faust.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("aitrace.processors")

# The default largest age, in stats intervals: a beat or two missed to a long batch or a
# rebalance is not yet a dead worker.
FRESH_INTERVALS = 3


def heartbeat_path(data_dir: str, app_id: str) -> Path:
    """Beside Faust's own ``<data_dir>/<app_id>`` directory, one file per app id."""
    return Path(data_dir) / f"{app_id}.heartbeat"


def write_heartbeat(path: Path, stats: str) -> None:
    """Replace the file at once (a reader never sees half of it); a failure is logged, not raised.

    The health check then reports the file stale, which is the truth: the worker cannot write.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(f"pid {os.getpid()}: {stats}\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write heartbeat %s: %s", path, exc)


def remove_heartbeat(path: Path) -> None:
    """A cleanly stopped worker is not healthy: the check must not read its last beat as fresh."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove heartbeat %s: %s", path, exc)


def heartbeat_problem(path: Path, max_age_s: float, now: float | None = None) -> str | None:
    """None when the heartbeat is at most ``max_age_s`` old, else one line that says what is wrong."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return f"no heartbeat at {path}: the worker is not running, or has not finished starting"
    except OSError as exc:
        return f"cannot read heartbeat {path}: {exc.strerror or exc}"
    if age > max_age_s:
        return f"heartbeat {path} is {age:.0f} s old (more than {max_age_s:g} s): the worker is stuck or gone"
    return None
