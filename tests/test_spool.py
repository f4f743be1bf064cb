"""The on-disk spool: order, acknowledgement, bounds, corrupted tails, adoption after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aitrace.producers.spool import Spool, SpoolRecord


def _fill(spool: Spool, n: int, size: int = 100) -> None:
    for i in range(n):
        assert spool.append("topic-a", f"k{i}".encode(), f"{i:06d}".encode() * (size // 6), events=i % 3 + 1)


def _drain(spool: Spool) -> list[SpoolRecord]:
    out = []
    while (rec := spool.next_record()) is not None:
        out.append(rec)
    return out


def test_records_come_back_in_order_with_topic_key_and_event_count(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=4096)
    _fill(spool, 200)
    assert len(list(spool.dir.glob("*.seg"))) > 1  # several segments
    records = _drain(spool)
    assert [r.key for r in records] == [f"k{i}".encode() for i in range(200)]
    assert all(r.topic == "topic-a" for r in records)
    assert [r.events for r in records] == [i % 3 + 1 for i in range(200)]
    assert records[7].value.startswith(b"000007")
    for r in records:
        spool.ack(r)
    assert not spool.pending()
    assert spool.bytes_used == 0
    assert not list(spool.dir.glob("*.seg"))  # acknowledged segments are deleted


def test_nack_hands_records_out_again_from_the_first_unacknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=4096)
    _fill(spool, 60)
    first = _drain(spool)
    for r in first[:20]:
        spool.ack(r)
    for r in first[20:]:
        spool.nack(r)
    again = _drain(spool)
    assert [r.key for r in again] == [f"k{i}".encode() for i in range(20, 60)]
    for r in again:
        spool.ack(r)
    assert not spool.pending()


def test_writes_after_draining_start_a_new_segment_and_are_read(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000)
    _fill(spool, 3)
    for r in _drain(spool):
        spool.ack(r)
    assert not spool.pending()
    assert spool.append("t", b"k", b"later", 1)
    assert [r.value for r in _drain(spool)] == [b"later"]


def test_append_refuses_beyond_max_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=5000, segment_bytes=4096)
    accepted = 0
    while spool.append("t", b"k", b"x" * 100, 1):
        accepted += 1
        assert accepted < 100
    assert spool.bytes_used <= 5000
    assert 40 <= accepted <= 50
    records = _drain(spool)
    assert len(records) == accepted
    spool.ack(records[0])


def test_a_truncated_tail_is_counted_and_the_whole_frames_are_kept(tmp_path: Path) -> None:
    writer = Spool(tmp_path / "a", max_bytes=1_000_000)
    _fill(writer, 10)
    writer.close(remove_if_empty=False)
    seg = next((tmp_path / "a").glob("*/*.seg"))
    data = seg.read_bytes()
    seg.write_bytes(data[:-30])  # a crash in the middle of the last frame
    reader = Spool(tmp_path / "a", max_bytes=1_000_000)  # adopts the dead directory
    assert reader.adopted_segments == 1
    records = _drain(reader)
    assert [r.key for r in records] == [f"k{i}".encode() for i in range(9)]
    assert reader.corrupt == 1


def test_a_flipped_byte_fails_the_crc_and_is_counted(tmp_path: Path) -> None:
    writer = Spool(tmp_path, max_bytes=1_000_000)
    _fill(writer, 5)
    writer.close(remove_if_empty=False)
    seg = next(tmp_path.glob("*/*.seg"))
    data = bytearray(seg.read_bytes())
    frame = len(data) // 5
    data[2 * frame + 20] ^= 0xFF  # inside the third frame's payload
    seg.write_bytes(bytes(data))
    reader = Spool(tmp_path, max_bytes=1_000_000)
    records = _drain(reader)
    assert [r.key for r in records] == [b"k0", b"k1"]
    assert reader.corrupt == 1
    for r in records:
        reader.ack(r)
    assert not reader.pending()


def test_a_live_spool_is_not_adopted_but_a_dead_one_is(tmp_path: Path) -> None:
    live = Spool(tmp_path, max_bytes=1_000_000)
    _fill(live, 3)
    other = Spool(tmp_path, max_bytes=1_000_000)
    assert other.adopted_segments == 0  # its lock is held
    assert _drain(other) == []
    code = (
        "import sys; from aitrace.producers.spool import Spool\n"
        f"s = Spool({str(tmp_path)!r}, 1_000_000)\n"
        "s.append('t', b'orphan', b'v', 4)\n"
        "import os; os._exit(0)  # dies without closing: the lock goes with the process\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    third = Spool(tmp_path, max_bytes=1_000_000)
    assert third.adopted_segments == 1
    records = _drain(third)
    assert [(r.key, r.events) for r in records] == [(b"orphan", 4)]


def test_an_unwritable_spool_dir_fails_clearly(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/aitrace-spool-test")  # not creatable even for root
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
        target = target / "spool"
    with pytest.raises(OSError):
        Spool(target, max_bytes=1000)
