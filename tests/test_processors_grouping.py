"""Series chunks coalesced per entity into one record (``group_chunks``) and split back."""

from __future__ import annotations

import pytest
from aitrace.processors.chunk_wire import GROUP_MAX_BYTES, group_chunks, split_chunks
from aitrace.processors.options import MAX_RECORD_BYTES


def test_chunks_of_one_key_travel_as_one_record_in_order() -> None:
    chunks = [("run/a", b"AC1one"), ("model/m", b"AC1solo"), ("run/a", b"AC1two"), ("run/a", b"AC1three")]
    grouped = group_chunks(chunks)
    assert [k for k, _ in grouped] == ["run/a", "model/m"]
    assert split_chunks(grouped[0][1]) == [b"AC1one", b"AC1two", b"AC1three"]
    assert grouped[1][1] == b"AC1solo"  # a lone chunk goes as it is
    assert split_chunks(b"AC1solo") == [b"AC1solo"]


def test_a_key_over_the_size_limit_gets_several_groups() -> None:
    chunks = [("run/a", bytes([i]) * 40) for i in range(5)]
    grouped = group_chunks(chunks, max_bytes=100)
    assert [len(split_chunks(v)) for _, v in grouped] == [2, 2, 1]
    assert [c for _, v in grouped for c in split_chunks(v)] == [c for _, c in chunks]
    assert GROUP_MAX_BYTES < MAX_RECORD_BYTES  # the worker's producer_max_request_size


@pytest.mark.parametrize("cut", [2, 5, 12, -1])
def test_a_truncated_group_is_a_clear_error(cut: int) -> None:
    (_, value), *_ = group_chunks([("k", b"AC1x"), ("k", b"AC1yy")])
    with pytest.raises(ValueError, match="chunk group"):
        split_chunks(value[:cut] if cut != 2 else value[:3] + b"\x01")


def test_an_overlong_group_is_a_clear_error() -> None:
    (_, value), *_ = group_chunks([("k", b"AC1x"), ("k", b"AC1yy")])
    with pytest.raises(ValueError, match="announces"):
        split_chunks(value + b"extra")
