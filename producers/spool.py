"""A bounded on-disk spool of encoded Kafka records, for when the broker cannot take them.

Layout: ``<spool_dir>/<pid>-<random>/`` holds append-only segment files ``000000000001.seg``
(rolled at ``segment_bytes``) and a ``lock`` file held with ``flock`` while the owning client
lives. A client that starts finds sibling directories whose lock is free (their process died)
and adopts their segments, ahead of its own, so a crash loses nothing that reached the disk.

Frame: ``>II`` (payload length, CRC-32 of the payload), then the payload
``>IHH`` (events in the record, topic length, key length) + topic + key + value. A frame that
runs past the end of its file or fails its CRC is a corrupted tail (a crash mid-write, a bad
disk): reading counts it in ``corrupt`` and moves on to the next segment.

fsync policy: every frame is written with one ``os.write`` (so a process crash keeps whole
frames); :meth:`sync` fsyncs the active segment, and the exporter calls it once per spilling
cycle and on close. A machine crash can therefore lose at most the frames of the last cycle
(a few milliseconds). Segments are fsynced when rolled.

Reading is for draining: :meth:`next_record` hands out frames in order; each is settled by
:meth:`ack` (delivered) or :meth:`nack` (send again: the read cursor moves back to it). A
segment is deleted when it is fully read and every frame in it is acknowledged.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

_FRAME = struct.Struct(">II")
_META = struct.Struct(">IHH")
_SUFFIX = ".seg"


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One spooled Kafka record and where it lies in the spool."""

    segment: int
    offset: int
    topic: str
    key: bytes
    value: bytes
    events: int


class Spool:
    """Append-only segment files with length + CRC framing, bounded by ``max_bytes`` in all."""

    def __init__(self, root: str | os.PathLike[str], max_bytes: int, segment_bytes: int = 8 * 1024 * 1024) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes))
        self.corrupt = 0
        self.adopted_segments = 0
        self.root.mkdir(parents=True, exist_ok=True)
        self.dir = self.root / f"{os.getpid()}-{os.urandom(4).hex()}"
        self.dir.mkdir()
        self._lock_fd = os.open(self.dir / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._segments: dict[int, int] = {}  # segment number -> size in bytes
        self._next_segment = 1
        self._adopt_orphans()
        self._write_fd: int | None = None
        self._write_seg = 0
        self._dirty = False
        # Reading state.
        self._read_seg = min(self._segments, default=self._next_segment)
        self._read_off = 0
        self._read_fd: tuple[int, int] | None = None  # (segment, fd): one open per segment while replaying
        self._frames: dict[int, set[int]] = {}  # offsets seen per segment
        self._acked: dict[int, set[int]] = {}
        self._outstanding: set[tuple[int, int]] = set()
        self._scanned: set[int] = set()  # segments read to their end (and no longer written)

    # -- housekeeping

    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:012d}{_SUFFIX}"

    def _adopt_orphans(self) -> None:
        """Move the segments of dead clients' spools into ours, oldest directory first."""
        siblings = [d for d in self.root.iterdir() if d.is_dir() and d != self.dir]
        for sibling in sorted(siblings, key=lambda d: d.stat().st_mtime):
            lock_path = sibling / "lock"
            try:
                fd = os.open(lock_path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # its client is alive
            try:
                for seg_file in sorted(sibling.glob(f"*{_SUFFIX}")):
                    target = self._path(self._next_segment)
                    seg_file.rename(target)
                    self._segments[self._next_segment] = target.stat().st_size
                    self._next_segment += 1
                    self.adopted_segments += 1
                with contextlib.suppress(OSError):
                    lock_path.unlink()
                    sibling.rmdir()
            finally:
                os.close(fd)

    @property
    def bytes_used(self) -> int:
        """Bytes on disk in all segments not yet deleted."""
        return sum(self._segments.values())

    def pending(self) -> bool:
        """True while any frame is not yet acknowledged."""
        return bool(self._segments)

    def _at_end(self) -> bool:
        return self._read_off >= self._segments.get(self._read_seg, 0)

    # -- writing

    def append(self, topic: str, key: bytes, value: bytes, events: int) -> bool:
        """Write one record; False (nothing written) when it would exceed ``max_bytes``."""
        topic_b = topic.encode()
        payload = _META.pack(events, len(topic_b), len(key)) + topic_b + key + value
        frame = _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        if self.bytes_used + len(frame) > self.max_bytes:
            return False
        if self._write_fd is None or self._segments[self._write_seg] + len(frame) > self.segment_bytes:
            self._roll()
        assert self._write_fd is not None
        os.write(self._write_fd, frame)
        self._segments[self._write_seg] += len(frame)
        self._dirty = True
        return True

    def _roll(self) -> None:
        if self._write_fd is not None:
            os.fsync(self._write_fd)
            os.close(self._write_fd)
        self._write_seg = self._next_segment
        self._next_segment += 1
        self._write_fd = os.open(self._path(self._write_seg), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self._segments[self._write_seg] = 0
        self._dirty = False

    def sync(self) -> None:
        """fsync the active segment if anything was written since the last sync."""
        if self._write_fd is not None and self._dirty:
            os.fsync(self._write_fd)
            self._dirty = False

    # -- reading

    def next_record(self) -> SpoolRecord | None:
        """The next frame that is neither acknowledged nor handed out; None when there is none now."""
        while self._read_seg in self._segments or self._read_seg < self._next_segment:
            if self._read_seg not in self._segments:
                self._read_seg += 1
                self._read_off = 0
                continue
            if self._at_end():
                if self._read_seg == self._write_seg:
                    return None  # caught up with the writer
                self._scanned.add(self._read_seg)
                self._maybe_delete(self._read_seg)
                self._read_seg += 1
                self._read_off = 0
                continue
            record = self._read_frame(self._read_seg, self._read_off)
            if record is None:  # corrupted tail: skip the rest of this segment
                self.corrupt += 1
                self._segments[self._read_seg] = self._read_off
                continue
            seg, off = self._read_seg, self._read_off
            self._read_off = off + _FRAME.size + _META.size + len(record.topic.encode()) + len(record.key)
            self._read_off += len(record.value)
            self._frames.setdefault(seg, set()).add(off)
            if off in self._acked.get(seg, ()) or (seg, off) in self._outstanding:
                continue
            self._outstanding.add((seg, off))
            return record
        return None

    def _read_frame(self, seg: int, off: int) -> SpoolRecord | None:
        size = self._segments[seg]
        fd = self._reader(seg)
        head = os.pread(fd, _FRAME.size, off)
        if len(head) < _FRAME.size:
            return None
        length, crc = _FRAME.unpack(head)
        if off + _FRAME.size + length > size or length < _META.size:
            return None
        payload = os.pread(fd, length, off + _FRAME.size)
        if len(payload) < length or zlib.crc32(payload) != crc:
            return None
        events, topic_len, key_len = _META.unpack_from(payload)
        start = _META.size
        topic = payload[start : start + topic_len].decode()
        key = payload[start + topic_len : start + topic_len + key_len]
        value = payload[start + topic_len + key_len :]
        return SpoolRecord(seg, off, topic, key, value, events)

    def _reader(self, seg: int) -> int:
        """A read descriptor for ``seg``, kept open while the replay stays in that segment."""
        if self._read_fd is None or self._read_fd[0] != seg:
            self._close_reader()
            self._read_fd = (seg, os.open(self._path(seg), os.O_RDONLY))
        return self._read_fd[1]

    def _close_reader(self, seg: int | None = None) -> None:
        if self._read_fd is not None and seg in (None, self._read_fd[0]):
            os.close(self._read_fd[1])
            self._read_fd = None

    def ack(self, record: SpoolRecord) -> None:
        """The record was delivered: never hand it out again; delete its segment once all are."""
        self._outstanding.discard((record.segment, record.offset))
        self._acked.setdefault(record.segment, set()).add(record.offset)
        self._maybe_delete(record.segment)

    def nack(self, record: SpoolRecord) -> None:
        """The record was not delivered: hand it out again, in order, from its position."""
        self._outstanding.discard((record.segment, record.offset))
        if (record.segment, record.offset) < (self._read_seg, self._read_off):
            self._read_seg, self._read_off = record.segment, record.offset

    def _maybe_delete(self, seg: int) -> None:
        active = seg == self._write_seg
        fully_read = seg in self._scanned or (active and seg == self._read_seg and self._at_end())
        if not fully_read or len(self._acked.get(seg, ())) < len(self._frames.get(seg, ())):
            return
        if active and self._write_fd is not None:  # drained up to the writer: start a new segment next time
            os.close(self._write_fd)
            self._write_fd = None
            self._write_seg = 0
        self._close_reader(seg)
        with contextlib.suppress(FileNotFoundError):
            self._path(seg).unlink()
        self._segments.pop(seg, None)
        self._frames.pop(seg, None)
        self._acked.pop(seg, None)
        self._scanned.discard(seg)

    def close(self, remove_if_empty: bool = True) -> None:
        """Sync and close; the directory goes away when nothing is left in it."""
        self._close_reader()
        if self._write_fd is not None:
            os.fsync(self._write_fd)
            os.close(self._write_fd)
            self._write_fd = None
            if self._segments.get(self._write_seg) == 0:
                self._path(self._write_seg).unlink(missing_ok=True)
                self._segments.pop(self._write_seg, None)
            self._write_seg = 0
        if remove_if_empty and not self._segments:
            with contextlib.suppress(OSError):
                (self.dir / "lock").unlink()
                self.dir.rmdir()
        os.close(self._lock_fd)

    def abandon(self) -> None:
        """In a forked child: drop the parent's descriptors without touching its files or its lock."""
        self._close_reader()
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        os.close(self._lock_fd)
