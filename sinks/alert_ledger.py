"""The version ledger of an alert consumer: the last handled version per ``alert_id``.

:class:`~aitrace.sinks.alert_stream.AlertStream` keeps one in memory to skip versions it
already handled; the webhook forwarder keeps one in a small append-only file, so that a
restart does not resend what the receiver already acknowledged.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("aitrace.alerts")


class LedgerError(OSError):
    """The ledger file cannot be read or written; the message names the file and the cause."""


class VersionLedger:
    """Last handled version per ``alert_id``; optionally persisted in an append-only file.

    Each :meth:`record` appends one JSON line ``{"id": ..., "v": ...}`` and flushes it to the
    operating system (unbuffered), so a killed process loses nothing it recorded (a power cut may lose the
    last lines; the receiver's idempotency key covers that window). On open the file is
    replayed; a torn last line from a crash is ignored (and counted in ``bad_lines``). The file
    is rewritten compactly when it holds many superseded lines. At most ``max_entries`` ids are
    kept, the least recently updated ones are forgotten first (an alert quiet for that long is
    over; a very late redelivery of it would be shown again, never lost).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, max_entries: int = 100_000) -> None:
        self.path = Path(path) if path is not None else None
        self.max_entries = max_entries
        self.bad_lines = 0
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._file: Any = None
        if self.path is not None:
            lines, torn = self._load(self.path)
            # Rewrite when mostly superseded, or to drop a torn last line that appends would extend.
            if torn or lines > 2 * len(self._versions) + 1_000:
                self._compact(self.path)
            self._file = self._open_append(self.path)

    def __len__(self) -> int:
        return len(self._versions)

    def last(self, alert_id: str) -> int | None:
        return self._versions.get(alert_id)

    def is_new(self, alert_id: str, version: int) -> bool:
        """True when ``version`` is newer than the last one handled for ``alert_id``."""
        last = self._versions.get(alert_id)
        return last is None or version > last

    def record(self, alert_id: str, version: int) -> None:
        """Remember ``version`` as handled, persisted before it counts (LedgerError if it cannot be)."""
        if not self.is_new(alert_id, version):
            return
        if self._file is not None:
            line = orjson.dumps({"id": alert_id, "v": version}) + b"\n"
            try:
                self._file.write(line)  # unbuffered: one write() per line, nothing left behind on failure
            except OSError as exc:
                raise LedgerError(f"cannot write alert ledger {self.path}: {exc}") from exc
        self._versions[alert_id] = version
        self._versions.move_to_end(alert_id)
        while len(self._versions) > self.max_entries:
            self._versions.popitem(last=False)

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def _load(self, path: Path) -> tuple[int, bool]:
        """Replay the file; returns (line count, whether the last line is incomplete)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0, False
        except OSError as exc:
            raise LedgerError(f"cannot read alert ledger {path}: {exc}") from exc
        lines = data.splitlines()
        for line in lines:
            try:
                entry = orjson.loads(line)
                alert_id, version = str(entry["id"]), int(entry["v"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                self.bad_lines += 1
                continue
            if self.is_new(alert_id, version):
                self._versions[alert_id] = version
                self._versions.move_to_end(alert_id)
        while len(self._versions) > self.max_entries:
            self._versions.popitem(last=False)
        if self.bad_lines:
            log.warning("alert ledger %s: ignored %d unreadable line(s) (torn write?)", path, self.bad_lines)
        return len(lines), bool(data) and not data.endswith(b"\n")

    def _compact(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        body = b"".join(orjson.dumps({"id": k, "v": v}) + b"\n" for k, v in self._versions.items())
        try:
            with open(tmp, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise LedgerError(f"cannot compact alert ledger {path}: {exc}") from exc

    @staticmethod
    def _open_append(path: Path) -> Any:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return open(path, "ab")
        except OSError as exc:
            raise LedgerError(f"cannot open alert ledger {path}: {exc}") from exc


__all__ = ["LedgerError", "VersionLedger"]
