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
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("aitrace.processors")

# The default largest age, in stats intervals: a beat or two missed to a long batch or a
# rebalance is not yet a dead worker.
FRESH_INTERVALS = 3


# A rebalance that lasts this long is a group that cannot form, not a slow one: the heartbeat
# stops so that the health check says so. Seen with Tansu (the dev broker) when a group's
# leader dies while the group is forming: its coordinator never picks another leader, and
# every member retries its join forever. A rebalance waiting on a batch that waits on an
# unreachable search server can also last this long; restarting that worker is safe.
REBALANCE_STUCK_S = 300.0


class RebalanceWatch:
    """How long the consumer group has been rebalancing, from the stats timer's samples.

    >>> watch = RebalanceWatch(limit_s=60.0, clock=iter([0.0, 30.0, 61.0, 62.0]).__next__)
    >>> watch.stuck_for(True), watch.stuck_for(True), watch.stuck_for(True), watch.stuck_for(False)
    (None, None, 61.0, None)
    """

    def __init__(self, limit_s: float = REBALANCE_STUCK_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s = limit_s
        self._clock = clock
        self._since: float | None = None

    def stuck_for(self, rebalancing: bool) -> float | None:
        """Seconds the rebalance has lasted when past ``limit_s``, else None."""
        now = self._clock()
        if not rebalancing:
            self._since = None
            return None
        if self._since is None:
            self._since = now
        age = now - self._since
        return age if age > self.limit_s else None


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
