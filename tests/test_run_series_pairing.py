"""A run chunk's series read beside each other: a loss with the lr sent with it."""

from __future__ import annotations

import numpy as np
from aitrace.processors.detection_runs import _named_at

EPOCH = 22  # batches an epoch: the bench's digits runs at batches of 64


def test_a_loss_reads_the_lr_sent_with_it_where_a_chunk_holds_a_batch_index_twice() -> None:
    """A chunk spanning an epoch's end holds each batch index twice; where the lr's steps were not the loss's
    point for point (the chunk cut between a loss and its lr), each loss read the first epoch's lr at its
    index, and the bench's plateau under a cosine schedule (the lr 3 decades down) was never paged."""
    steps = np.r_[np.arange(EPOCH), np.arange(6)]
    times = np.arange(steps.size) * 1000
    rates = np.r_[np.full(EPOCH, 1e-3), np.full(6, 1e-7)]
    cut = {("train", "lr"): {"steps": steps[:-1], "times": times[:-1], "values": rates[:-1]}}
    assert _named_at(cut, "train", "lr", steps, times)[:-1].tolist() == rates[:-1].tolist()
    twice = {("train", "lr"): {"steps": np.repeat(steps, 2), "times": np.repeat(times, 2) + np.tile([1, 2], steps.size),
                               "values": np.repeat(rates, 2)}}  # fmt: skip
    assert _named_at(twice, "train", "lr", steps, times).tolist() == rates.tolist()  # logged twice a step, apart
    whole = {("train", "lr"): {"steps": steps, "times": times, "values": rates}}
    assert _named_at(whole, "train", "lr", steps, times).tolist() == rates.tolist()
