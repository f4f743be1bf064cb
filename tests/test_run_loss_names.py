"""A run's loss by another name (``mse``, ``cross_entropy``, ``total_loss``): read as a loss, standing for the
run's loss where none is named ``loss``, decided once per run; and the states of a worker that read such names
as a server's series, restored by one that reads them as losses (a worker upgraded mid-run, /work/rev-aa)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aitrace.detect.lr_cut import LrCut
from aitrace.detect.series import TrainingSeries
from aitrace.detect.training import metric_role, run_loss_name
from aitrace.processors.detection import SeriesDetectors

T0 = 1_800_000_000_000_000


def _chunk(run: str, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """A run's chunk: ``{"split|metric": (steps, values)}``, a point every 100 ms of event time."""
    body = {k: {"steps": st, "times": T0 + st * 100_000, "values": v} for k, (st, v) in series.items()}
    return {"kind": "run", "run_id": run, "service": "s", "trace_id": "0" * 32, "ctx": None, "series": body}


def _feed(det: SeriesDetectors, run: str, series: dict, lo: int, hi: int, chunk: int = 20) -> list[dict]:
    """Steps ``lo:hi`` of every series, ``chunk`` steps at a time; the incidents opened."""
    opened = []
    for at in range(lo, hi, chunk):
        part = {}
        for key, (st, v) in series.items():
            m = (st >= at) & (st < at + chunk)
            if m.any():
                part[key] = (st[m], v[m])
        out = det.apply(_chunk(run, part), source="t:0", offset=at // chunk)
        opened += [a for a in out.alerts if a["version"] == 1]
    return opened


def _run(n: int = 400, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A classifier that learns: its loss 2.3 -> 0.2 with batch noise, accuracy, lr and global norm; an
    evaluation every 40 steps."""
    rng = np.random.default_rng(seed)
    st = np.arange(n)
    loss = (0.2 + 2.1 * np.exp(-st / 80)) * rng.lognormal(0, 0.05, n)
    ev = st[39::40]
    val = 0.25 + 2.1 * np.exp(-ev / 80)
    return {
        "train|loss": (st, loss),
        "train|accuracy": (st, np.clip(1 - loss / 2.5, 0, 1)),
        "train|lr": (st, np.full(n, 1e-3)),
        "train|grad_norm": (st, 1.0 + 0.1 * rng.random(n)),
        "val|loss": (ev, val),
        "val|accuracy": (ev, np.clip(1 - val / 2.5, 0, 1)),
    }


def _renamed(series: dict, name: str) -> dict:
    return {k.replace("|loss", f"|{name}"): v for k, v in series.items()}


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("error_count", "other"),  # a tally of errors, not the error (a flat incident on every run)
        ("mse_weight", "other"),  # a setting
        ("huber_delta", "other"),
        ("ce_weight", "other"),
        ("mae_vit/acc", "score"),  # a masked autoencoder's accuracy: the name's own part decides
        ("ce/accuracy", "score"),
        ("val_top1_err", "loss"),
        ("entropy_loss", "loss"),
        ("neg_elbo", "loss"),  # a VAE's: what it trains on (/work/rev-ag: its stall and plateau were lost)
        ("val_nelbo", "loss"),
        ("elbo", "other"),  # maximised
    ],
)
def test_a_setting_or_a_tally_of_an_error_is_no_loss_and_the_names_own_part_decides(name: str, role: str) -> None:
    assert metric_role(name) == role


def test_the_runs_loss_by_another_name_is_what_the_model_trains_on_never_a_part_or_a_long_name() -> None:
    assert run_loss_name(["mae", "mse"]) == "mse"  # a regression trains on mse and reports mae
    assert run_loss_name(["top1_err", "cross_entropy"]) == "cross_entropy"
    assert run_loss_name(["loss_cls", "loss_bbox", "total_loss"]) == "total_loss"
    assert run_loss_name(["entropy_loss", "value_loss", "policy_loss"]) is None  # an actor-critic's parts
    assert run_loss_name(["kl_loss", "recon_loss"]) is None
    assert run_loss_name(["error_count", "mse"]) == "mse"
    assert run_loss_name(["x" * 300 + "_mse"]) is None
    assert run_loss_name(["ctc_loss", "lr"]) == "ctc_loss"  # a loss by a name of its own, alone
    assert run_loss_name(["neg_elbo", "lr"]) == "neg_elbo"
    assert run_loss_name(["kl_loss", "recon_loss", "nelbo"]) == "nelbo"  # the total a VAE trains on, beside its parts


def test_only_a_classifiers_score_makes_a_run_a_classifier() -> None:
    from aitrace.detect.training import classifier_score

    assert classifier_score("val_accuracy") and classifier_score("f1")
    assert metric_role("r2") == "score" and not classifier_score("r2")  # a regression: no under-fitting verdict
    assert not classifier_score("psnr") and not classifier_score("dice")


def test_a_series_restored_with_another_role_indexes_its_findings_from_where_it_stands() -> None:
    """A state saved while ``mse`` read as a server's series (no loss monitor), restored as a loss: its monitor
    counted from 0 where the series stood at 160, a NaN's finding indexed the chunk at -142, and every later
    chunk of the run raised IndexError (to the dead-letter topic, the run's series stopped)."""
    before = TrainingSeries("throughput")  # read "other", as 392e5d2 read mse
    assert before.role == "other"
    before.update(np.arange(160), np.linspace(2.0, 0.5, 160), times=T0 + np.arange(160) * 100_000)
    state = json.loads(json.dumps(before.to_state()))
    state["metric"] = "mse"
    after = TrainingSeries.from_state(state)
    assert after.role == "loss" and after.n_seen == 160
    vals = np.full(20, 0.5)
    vals[5] = np.nan
    [nan] = [f for f in after.update(np.arange(160, 180), vals) if f.reason in ("nan", "diverging")]
    assert nan.index == 165 and nan.step == 165


def test_an_lr_cut_marked_before_the_first_loss_survives_a_json_state() -> None:
    """Its loss level is NaN, null in the worker's JSON table: the verdict's words raised TypeError at every
    later chunk of the run."""
    cut = LrCut()
    steps = np.arange(40.0)
    cut.update((steps, np.r_[np.full(20, 1e-2), np.full(20, 1e-8)]), None, lambda step: float("nan"))
    state = json.loads(json.dumps(cut.to_state()).replace("NaN", "null"))
    assert state["cut"]["loss"] is None
    restored = LrCut.from_state(state)
    [plateau] = restored.update(None, (np.arange(40.0, 80.0), np.full(40, 0.7)), lambda step: 0.7)
    assert plateau.reason == "plateau" and "stopped falling (0.7 over the 16 steps" in plateau.message


def test_a_run_logging_its_loss_as_mse_and_mae_reads_one_of_them_in_every_chunk() -> None:
    """The name that stands for the run's loss is decided at its first chunk and kept: mae every 25 steps beside
    mse read mae as the loss in the chunks that carried it (a stall found 60 steps late)."""
    series = _renamed(_run(), "mse")
    st, v = series["train|mse"]
    every = st % 25 == 0
    series["train|mae"] = (st[every], 0.8 * np.sqrt(v[every]))
    det = SeriesDetectors({})
    assert _feed(det, "r", series, 0, 400) == []
    assert det.table["run/r/checks"]["loss_name"] == "mse"


def test_a_loss_logged_twice_pages_its_stall_once() -> None:
    """Keras' compile(loss="mse", metrics=["mse"]) sends loss and mse with the same values: each had a stall
    check of its own and a stalled run paged twice."""
    st = np.arange(200)
    flat = 2.3 + 0.01 * np.random.default_rng(1).standard_normal(200)
    series = {"train|loss": (st, flat), "train|mse": (st, flat.copy())}
    opened = _feed(SeriesDetectors({}), "r", series, 0, 200)
    assert [a["detector"] for a in opened] == ["stalled"], [(a["detector"], a["series"]) for a in opened]


def test_a_run_whose_mse_the_worker_kept_before_it_read_it_as_a_loss_goes_on_as_it_was() -> None:
    """A worker upgraded mid-run: the run's checks and fitting would begin at the upgrade, their start the
    converged loss (under-fitting "at 94 % of its start" on 10 of 120 healthy real runs): the run goes on
    without them, as before; a run that begins after the upgrade gets them."""
    series = _renamed(_run(), "mse")
    det = SeriesDetectors({})
    _feed(det, "r", series, 0, 200)
    # the table as the worker before left it: no decision, no fitting state
    del det.table["run/r/checks"]["loss_name"]
    del det.table["run/r/overfitting"]
    assert _feed(det, "r", series, 200, 400) == []
    assert det.table["run/r/checks"]["loss_name"] == "" and "run/r/overfitting" not in det.table


def test_a_training_mse_beside_a_validation_loss_is_the_runs_training_loss() -> None:
    """A loop logging its training loss as mse and Keras' val_loss: the validation loss left the training one
    unread (no stall check at all) wherever a chunk carried it."""
    st = np.arange(200)
    flat = 2.3 + 0.01 * np.random.default_rng(1).standard_normal(200)
    ev = st[::20]  # an evaluation in every chunk
    series = {"train|mse": (st, flat), "val|loss": (ev, np.full(ev.size, 2.3))}
    opened = _feed(SeriesDetectors({}), "r", series, 0, 200)
    assert "stalled" in [a["detector"] for a in opened], [(a["detector"], a["series"]) for a in opened]


def test_a_run_of_several_losses_and_none_named_loss_keeps_a_stall_check_on_each() -> None:
    """An actor-critic logs value_loss, policy_loss and entropy_loss and no loss: none stands for the run's, and
    each kept its own stall check as before (a loss beside the run's gets none: the stall of a stalled A2C's value
    loss went unpaged, /work/rev-ac)."""
    st = np.arange(200)
    rng = np.random.default_rng(2)
    series = {
        "train|value_loss": (st, 0.9 + 0.01 * rng.standard_normal(200)),
        "train|policy_loss": (st, 0.01 * rng.standard_normal(200)),
        "train|entropy_loss": (st, -1.38 + 0.001 * rng.standard_normal(200)),
    }
    opened = _feed(SeriesDetectors({}), "r", series, 0, 200)
    assert ("stalled", "run/r/train/value_loss") in [(a["detector"], a["series"]) for a in opened], opened
