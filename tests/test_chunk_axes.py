"""A run chunk's shared steps and times travel once and come back to every series."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import synth as S
from aitrace.processors.chunk_wire import pack_chunk, unpack_chunk
from aitrace.processors.chunks import extract_chunks, restore_axes, share_axes
from aitrace.schemas.metric_block import MetricBlock

T0 = 1_700_000_000_000_000


def _blocks() -> list[MetricBlock]:
    rng = np.random.default_rng(2)
    train = S.metric_block(
        trace="a" * 32, run_id="r", start_step=0, series={m: rng.normal(size=300) for m in ("loss", "acc", "lr")}
    )
    val = S.metric_block(trace="a" * 32, run_id="r", start_step=0, series={"loss": rng.normal(size=30)}, split="val")
    later = S.metric_block(trace="a" * 32, run_id="r", start_step=300, series={"loss": rng.normal(size=300)})
    return [MetricBlock.from_record(b) for b in (train, val, later)]


def _plain(chunk: dict[str, Any]) -> bytes:
    return orjson.dumps(chunk, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS)


def test_round_trip_gives_every_series_its_own_axes_back() -> None:
    for blocks in (_blocks(), _blocks()[:1], _blocks()[:2]):
        for chunk in extract_chunks([], blocks).values():
            before = _plain(unpack_chunk(pack_chunk(chunk)))
            shared = pack_chunk(share_axes(chunk))
            back = restore_axes(unpack_chunk(shared))
            assert _plain(back) == before
            assert _plain(unpack_chunk(pack_chunk(chunk))) == before  # the chunk itself is untouched
            ids = [id(a) for s in back["series"].values() for a in (s["steps"], s["times"])]
            assert len(set(ids)) == len(ids)  # copies: one series' arrays are not another's


def test_one_block_of_metrics_sends_its_steps_and_times_once() -> None:
    [chunk] = extract_chunks([], _blocks()[:1]).values()
    plain, shared = len(pack_chunk(chunk)), len(pack_chunk(share_axes(chunk)))
    arrays = 300 * 8
    assert plain - shared >= 4 * arrays  # 3 series: steps and times sent once instead of 3 times
    assert "axes" not in unpack_chunk(pack_chunk(chunk))


def test_a_chunk_packed_before_axes_existed_reads_as_it_is() -> None:
    [chunk] = extract_chunks([], _blocks()).values()
    old = unpack_chunk(pack_chunk(chunk))
    assert _plain(restore_axes(unpack_chunk(pack_chunk(chunk)))) == _plain(old)
