"""A run's logged steps as its progress: a batch index that restarts each epoch, a run resumed from its checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
from aitrace.detect.progress import StepClock
from aitrace.detect.run_checks import RunChecks
from aitrace.detect.series import TrainingSeries

EPOCH = 22  # batches an epoch: the bench's digits runs at batches of 64


def _progress(*chunks: np.ndarray) -> list[float]:
    clock = StepClock()
    out: list[float] = []
    for chunk in chunks:
        clock = StepClock.from_state(clock.to_state())
        out += clock.progress(chunk).tolist()
    return out


def test_a_batch_index_counts_on_across_epochs_whatever_the_chunks() -> None:
    """Known for a batch index once two epochs ended at one step: from the third epoch on, the global step."""
    steps = np.tile(np.arange(EPOCH), 5)
    expected = [*range(EPOCH), *range(EPOCH), *range(2 * EPOCH, 5 * EPOCH)]
    assert _progress(steps) == expected
    assert _progress(*np.array_split(steps, 7)) == expected
    every_ten = np.r_[np.arange(0, 105, 10), np.arange(5, 105, 10)]  # every 10 global steps of 105 an epoch
    known = np.asarray(_progress(np.tile(every_ten, 3))[2 * every_ten.size :])  # the 5th and 6th epochs
    assert (np.diff(known) == 10).all()


def test_steps_that_go_back_for_other_reasons_stay_the_run_s_own() -> None:
    """Shown by a review: any step back to the run's first step restarted the count, so one loss logged at step
    0 mid-run (or an epoch's mean at step = epoch, a job restarted from scratch) moved every later step past
    the whole run so far, and healthy slow starters were called stalled."""
    cases = {
        "resumed": np.r_[np.arange(0, 600), np.arange(450, 700)],  # died at 599, resumed from its checkpoint
        "far back": np.r_[np.arange(0, 600), np.arange(100, 700)],
        "twice": np.r_[np.arange(0, 600), np.arange(450, 520), np.arange(450, 700)],
        "stray": np.r_[np.arange(0, 40), 0, np.arange(40, 300)],
        "epoch means": np.concatenate([np.r_[np.arange(e * EPOCH, (e + 1) * EPOCH), e + 1] for e in range(8)]),
        "from scratch": np.r_[np.arange(0, 300), np.arange(0, 300)],
    }
    for name, steps in cases.items():
        assert _progress(steps) == steps.tolist(), name
    in_epoch = np.r_[np.tile(np.arange(EPOCH), 3), np.arange(15), np.arange(10, EPOCH)]  # a batch index, resumed
    assert _progress(in_epoch)[-12:] == list(range(3 * EPOCH + 10, 4 * EPOCH))


def test_a_clock_restores_exactly_and_refuses_a_state_it_never_wrote() -> None:
    clock = StepClock()
    clock.progress(np.r_[np.tile(np.arange(EPOCH), 3), np.arange(5)])
    again = StepClock.from_state(clock.to_state())
    assert again.to_state() == clock.to_state()
    assert again.progress(np.arange(5, 8)).tolist() == clock.progress(np.arange(5, 8)).tolist()
    assert StepClock().progress(np.array([math.nan, 3.0, math.nan])).tolist()[1] == 3.0
    bad_states = ({"offset": "x"}, {"offset": None}, {"ends": [math.inf]}, {"ends": {}}, {"first": True},
                  {"stride": 0}, {"stride": -5}, {"peak": [1]}, {"offset": 1e308})  # fmt: skip
    for bad in bad_states:
        with pytest.raises((ValueError, TypeError)):
            StepClock.from_state(clock.to_state() | bad)


def _feed(rules: TrainingSeries, steps: np.ndarray, loss: np.ndarray, chunk: int = 30) -> list[tuple[str, float, int]]:
    """(reason, logged step, position in the run) of each finding, fed ``chunk`` points at a time."""
    out = []
    for lo in range(0, steps.size, chunk):
        rules = TrainingSeries.from_state(rules.to_state())
        out += [(f.reason, f.step, lo + f.index - rules.n_seen + steps[lo : lo + chunk].size)
                for f in rules.update(steps[lo : lo + chunk], loss[lo : lo + chunk])]  # fmt: skip
    return out


def test_a_loss_logged_by_batch_index_stalls_and_plateaus_where_it_would_by_global_step() -> None:
    """Found checking the bench's runs with the batch index as their step: a stall or a plateau waits 100-150
    steps, which a step restarting every 22 batches never reached; the loss's own rules never paged."""
    n = 30 * EPOCH
    rng = np.random.default_rng(0)
    flat = 2.3 * np.exp(rng.normal(0, 0.05, n))
    stops = np.maximum(2.3 * np.exp(-np.arange(n) / 30), 2.3 * np.exp(-100 / 30)) * np.exp(rng.normal(0, 0.05, n))
    for loss, reason in ((flat, "stalled"), (stops, "plateau")):
        by_step = _feed(TrainingSeries("loss"), np.arange(n), loss)
        by_batch = _feed(TrainingSeries("loss"), np.arange(n) % EPOCH, loss)
        assert [r for r, _, _ in by_step] == [reason] and [(r, k) for r, _, k in by_batch] == [
            (r, k) for r, _, k in by_step
        ]
        assert by_batch[0][1] == by_step[0][1] % EPOCH  # named at the step the run logged


def test_the_run_checks_read_a_batch_index_as_progress() -> None:
    """The run's checks (loss, update ratios) found the bench's plateau 43 steps later with the batch index as
    the step; read as progress, and paged once, the loss's own rule not paging it again."""
    n = 15 * EPOCH
    rng = np.random.default_rng(1)
    loss = np.maximum(2.3 * np.exp(-np.arange(n) / 30), 2.3 * np.exp(-100 / 30)) * np.exp(rng.normal(0, 0.05, n))
    ratios = np.where(np.arange(n) < 100, 5e-3, 5e-9)  # the weights all but stop at 100
    found = {}
    for name, steps in (("global", np.arange(n)), ("batch", np.arange(n) % EPOCH)):
        check, out = RunChecks(), []
        for lo in range(0, n, 20):
            check = RunChecks.from_state(check.to_state())
            part = slice(lo, lo + 20)
            series = {"loss": (steps[part], loss[part])}
            series |= {f"update_ratio/fc{i}": (steps[part], ratios[part] * (1 + 0.2 * i)) for i in range(3)}
            out += [
                (f.reason, f.step, lo + int(np.flatnonzero(steps[part] == f.step)[-1])) for f in check.update(series)
            ]
        found[name] = out
    assert [r for r, _, _ in found["global"]] == ["plateau"]
    assert [(r, k) for r, _, k in found["batch"]] == [(r, k) for r, _, k in found["global"]]
    assert found["batch"][0][1] == found["global"][0][1] % EPOCH


def test_a_loss_reads_the_lr_sent_with_it_where_a_chunk_holds_a_batch_index_twice() -> None:
    """A chunk spanning an epoch's end holds each batch index twice; where the lr's steps were not the loss's
    point for point (the chunk cut between a loss and its lr), each loss read the first epoch's lr at its
    index, and the bench's plateau under a cosine schedule (the lr 3 decades down) was never paged."""
    from aitrace.processors.detection_runs import _named_at

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
