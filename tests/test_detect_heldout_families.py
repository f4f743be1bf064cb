"""Healthy real runs of families outside the bench's recipes (``/work/rev-ad``: PyTorch on scikit-learn's tables) stay
quiet through the worker's rules, and the pathologies they hid are still found.

Each excerpt is a real run's series as ``aitrace.torch.watch`` and its loop sent them, rounded; they reach the
worker's detectors in chunks of 20 steps, as ``bench/bench_training.py`` feeds them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aitrace.detect import windows
from aitrace.detect.run_checks import RunChecks
from aitrace.processors.detection import SeriesDetectors

T0 = 1_800_000_000_000_000


def _incidents(series: dict[str, tuple[int, list[float]]]) -> list[tuple[int, str]]:
    """(step, detector) of each incident the worker opens; ``series``: name -> (steps between points, values), the
    first point at that many steps (an evaluation every 8 steps is at steps 8, 16, ...)."""
    det = SeriesDetectors({})
    steps = {k: every * np.arange(1, len(v) + 1) for k, (every, v) in series.items()}
    values = {k: np.asarray(v, dtype=np.float64) for k, (_, v) in series.items()}
    out = []
    for offset, lo in enumerate(range(0, max(int(s[-1]) for s in steps.values()) + 1, 20)):
        chunk: dict[str, Any] = {}
        for key, st in steps.items():
            m = (st >= lo) & (st < lo + 20)
            if m.any():
                chunk[key] = {"steps": st[m], "times": T0 + st[m] * 100_000, "values": values[key][m]}
        run = {"kind": "run", "run_id": "r", "service": "s", "trace_id": "0" * 32, "ctx": None, "series": chunk}
        out += [
            (a["step"], a["detector"]) for a in det.apply(run, source="s:0", offset=offset).alerts if a["version"] == 1
        ]
    return out


def test_a_gradient_norm_clipped_by_clip_grad_norm_is_not_paged_for_dipping_below_its_clip() -> None:
    """A GRU under Adam with ``clip_grad_norm_(1.0)``: the norm the optimizer sees sits at 1.0 on 60-75 % of its
    steps, its robust spread near 0, and its ordinary dips paged "noisier than its recent history", critical, on 6
    of 9 seeds (here at step 103). An explosion is a rise, and a rise is still paged."""
    assert _incidents({"|grad_norm": (1, _GRU_GRAD_NORM), "|loss": (1, _GRU_LOSS)}) == []
    exploding = [*_GRU_GRAD_NORM, *(1e3 * np.ones(20))]
    found = _incidents({"|grad_norm": (1, exploding), "|loss": (1, [*_GRU_LOSS, *[1.0] * 20])})
    assert found and found[0][0] > 110 and found[0][1] == "exploding"


def test_a_gradient_norm_that_grows_while_a_squared_error_falls_slowly_is_learning() -> None:
    """An autoencoder on the digits (Adam, MSE): its norm rose 0.026 -> 0.044 over steps 15-32 while its loss fell
    about 8 % per 16 steps, and paged a critical ``level_shift`` at step 32 (2 of 9 seeds): the hold for a norm that
    rises while the model learns asked a 10 % fall, a cross-entropy's pace at its start, not a squared error's."""
    assert _incidents({"|grad_norm": (1, _AE_GRAD_NORM), "|loss": (1, _AE_LOSS)}) == []


def test_a_full_batch_fit_at_its_optimum_is_neither_flat_nor_a_plateau() -> None:
    """Logistic regression on wine by LBFGS: its loss falls to its optimum and repeats it to the last bit, its
    update ratio falls to 0. It paged a critical ``flat`` (step 79) and a ``plateau`` (step 70) on 3 of 3 seeds."""
    run = {"|loss": (1, _LBFGS_LOSS), "|lr": (1, [0.3] * 99), "|update_ratio/Linear": (10, _LBFGS_UPDATE_RATIO)}
    assert _incidents(run) == []
    # a batch's loss that froze (a loop logging a stale value), even at its lowest, is still flat
    rng = np.random.default_rng(0)
    frozen = [*(0.5 + 0.05 * rng.random(60)), *[0.45] * 40]
    assert [d for _, d in _incidents({"|loss": (1, frozen)})] == ["flat"]
    # a full-batch descent an lr schedule stopped mid-way (to 0), its last falls 0.2 % a step: flat too (/work/rev-af)
    stopped = [*(0.6 * 0.998 ** np.arange(40)), *[0.6 * 0.998**39] * 60]
    assert [d for _, d in _incidents({"|loss": (1, stopped)})] == ["flat"]


def test_a_validation_loss_a_few_percent_above_its_best_is_not_diverging() -> None:
    """A regression MLP under SGD with warm restarts: its smooth validation loss rose 7 % past its best as a
    restart's lr came back, many times its noise: paged critical ``diverging`` (step 352). A rise near the best
    is the over-fitting rule's question; a loss that runs away is still diverging."""
    assert _incidents({"|val_loss": (11, _REG_VAL_LOSS)}) == []
    away = [*_REG_VAL_LOSS, *(0.6 * 1.1 ** np.arange(1, 12))]
    assert [d for _, d in _incidents({"|val_loss": (11, away)})] == ["spike"]


def test_a_loss_at_the_floor_of_its_label_smoothing_is_not_under_fitting() -> None:
    """Adagrad on wine with label smoothing 0.1 (validation accuracy 1.0): its loss fell from 1.11 to 0.56 in one
    step and to its smoothing's floor (~0.3) by the first evaluation. Against the median of the losses before that
    evaluation (0.46) it read as levelling off at 61 % of its start: ``underfitting`` on 9 of 9 seeds."""
    run = {"|loss": (1, _ADAGRAD_LOSS), "|val_loss": (8, _ADAGRAD_VAL_LOSS), "|val_accuracy": (8, [1.0] * 18)}
    assert _incidents(run) == []


def test_a_validation_loss_that_pauses_while_the_training_loss_falls_fast_is_not_under_fitting() -> None:
    """A GRU on 64 rows evaluated every 4 steps: three evaluations without a 2 % gain (12 steps of its noise) while
    its training loss fell by a third every 16 steps, paged ``underfitting`` at step 64 (it went on to 0.002)."""
    run = {"|loss": (1, _OGRU_LOSS), "|val_loss": (4, _OGRU_VAL_LOSS), "|val_accuracy": (4, _OGRU_VAL_ACCURACY)}
    assert _incidents(run) == []


def test_a_slow_climb_past_the_evaluations_the_worker_keeps_is_over_fitting() -> None:
    """The worker keeps 64 evaluations. A run evaluated every 4 steps whose validation loss climbed 0.05 % an
    evaluation from its best at evaluation 25, 5 % (the steady rise's) after 98 (a wine MLP on 64 rows rose 13 %
    over 120 evaluations), read its rise from the lowest it still kept, and was never found."""
    state: dict = {}
    val = np.r_[np.linspace(1.0, 0.5, 25), 0.5 * 1.0005 ** np.arange(1, 176)]
    found = []
    for e, v in enumerate(val):
        steps = np.arange(4 * e, 4 * e + 4)
        train = {"steps": steps, "values": 2.0 * np.exp(-steps / 100.0), "times": steps}
        evaluation = {"steps": steps[-1:], "values": np.array([v]), "times": steps[-1:]}
        outcome = windows.overfitting_update(state, train, evaluation)
        if outcome is not None and outcome[0] is not None:
            found.append(e)
    assert found and 25 + 64 < found[0] < 25 + 120 and len(state["val"]) == 64


def test_a_best_on_a_branch_the_run_went_back_from_is_not_kept() -> None:
    """A run resumed from an earlier checkpoint (its steps go back) on a branch whose validation loss falls all
    along, above the abandoned branch's best: that best, kept past the 64 evaluations, paged over-fitting on the
    healthy branch 123 times (/work/rev-af D3). It goes as any evaluation does."""
    rng = np.random.default_rng(0)
    state: dict = {}
    found = []
    clock = 0

    def feed(first: int, last: int, val: Any, train: Any) -> None:
        nonlocal clock
        for s in range(first, last, 4):
            steps = np.arange(s, s + 4)
            times = clock + np.arange(4)
            clock += 4
            t = {"steps": steps, "values": train(steps), "times": times}
            v = {"steps": steps[-1:], "values": np.array([val(steps[-1]) + 0.002 * rng.normal()]), "times": times[-1:]}
            outcome = windows.overfitting_update(state, t, v)
            if outcome is not None and outcome[0] is not None:
                found.append(s)

    feed(0, 480, lambda s: 0.30 + 0.7 * np.exp(-s / 100), lambda s: 0.2 + 1.8 * np.exp(-s / 100))  # then it crashed
    feed(
        200, 1400, lambda s: 0.335 + 0.7 * np.exp(-s / 100) + 2e-5 * (1400 - s), lambda s: 0.22 + 1.8 * np.exp(-s / 100)
    )
    assert found == []


def test_a_stall_under_a_warm_up_is_judged_on_the_reports_after_it() -> None:
    """lr 1e-7 mistyped under a 40-step linear warm-up: the weights move ~1e-8 of their size per step and the loss
    sits at its start. The warm-up's rising lr set the rule aside for good, and only the loss's own check found the
    stall, at step 150; a run that learns after its warm-up is still no stall."""
    steps = np.arange(200)
    lr = (steps, 1e-7 * np.minimum((steps + 1) / 40, 1.0))
    flat = (steps, 2.3 + 0.01 * np.random.default_rng(0).normal(size=200))
    reports = steps[::10]
    tiny = {"update_ratio/fc": (reports, 1e-8 * np.minimum((reports + 1) / 40, 1.0))}
    found = []
    checks = RunChecks()
    for lo in range(0, 200, 20):
        part = {k: (s[(s >= lo) & (s < lo + 20)], v[(s >= lo) & (s < lo + 20)]) for k, (s, v) in
                {"loss": flat, "lr": lr, **tiny}.items()}  # fmt: skip
        found += [(f.step, f.reason) for f in checks.update(part)]
    assert len(found) == 1 and found[0][1] == "stalled" and 40 < found[0][0] < 100
    learning = (steps, 2.3 * np.exp(-steps / 30) + 0.1)
    moving = {"update_ratio/fc": (reports, np.where(reports < 40, 1e-8, 1e-3))}
    checks = RunChecks()
    assert [f for lo in range(0, 200, 20) for f in checks.update(
        {k: (s[(s >= lo) & (s < lo + 20)], v[(s >= lo) & (s < lo + 20)]) for k, (s, v) in
         {"loss": learning, "lr": lr, **moving}.items()}
    )] == []  # fmt: skip


def test_a_character_language_model_mid_way_is_not_under_fitting() -> None:
    """A 2-layer causal transformer on the characters of an essay (AdamW, warm-up and cosine; /work/rev-ag char_gpt,
    seed 4, steps 1-140): its loss at 55 % of its start (4.34) after 3 evaluations without a 2 % gain paged
    under-fitting on 6 of 6 seeds; it had cut its effective choices 7-fold, and trained longer its validation loss
    fell another 14 %. A model near its chance level (cut less than ln 4) is still told (the bench's narrow MLPs)."""
    run = {"|loss": (1, _GPT_LOSS), "|val_loss": (20, _GPT_VAL_LOSS), "|val_accuracy": (20, _GPT_VAL_ACCURACY)}
    assert _incidents(run) == []
    near_chance = {k: (every, [v * 0.5 + 1.2 for v in values]) for k, (every, values) in run.items() if "loss" in k}
    assert "underfitting" in {d for _, d in _incidents({**near_chance, "|val_accuracy": run["|val_accuracy"]})}


def test_under_fitting_names_a_learning_rate_too_small_among_its_causes() -> None:
    """Fine-tunes at lr 1e-6 to 2e-6 were told "too little capacity" (/work/rev-aj): a model that cannot go further
    may also be one whose steps are too small to."""
    from aitrace.processors.detection_runs import _fit_finding

    finding = _fit_finding("underfitting", "r", 0.8, 100, 0, [1.9, 1.85])
    assert "a learning rate too small to go further" in finding.message and finding.severity == "info"


# Real runs (/work/rev-ad/heldout_runs.py), rounded: gru-s0 (steps 1-110; its norm to 8 digits: clipping leaves it at
# 0.9999991 and the like, which fewer digits make one value), lbfgs_wine-s1 (its loss as float32 sent
# it), reg-s4 (validation every 11 steps), adagrad_wine-s0 (steps 1-149), overfit-gru-s2 (steps 1-79), ae-s0 (steps
# 1-45).
# fmt: off
_GRU_GRAD_NORM = [
    0.2270002, 0.14158009, 0.20179526, 0.30653361, 0.22317513, 0.23279415, 0.27078436, 0.21558035, 0.22421178,
    0.24059423, 0.26311289, 0.25818902, 0.21632005, 0.27513491, 0.28881425, 0.2965049, 0.27406358, 0.23402327,
    0.24673773, 0.35316117, 0.22447187, 0.35310966, 0.34759622, 0.35957201, 0.37067999, 0.50592449, 0.49052842,
    0.46723604, 0.48358936, 0.46309585, 0.65121731, 0.50631902, 0.99999912, 0.42432988, 0.99999902, 0.85362324,
    0.99999918, 0.99999949, 0.99999974, 0.99999957, 0.99999948, 0.76628672, 0.99999918, 0.99999964, 0.99999945,
    0.99999956, 0.81089531, 0.60329115, 0.99999932, 0.99999923, 0.99999925, 0.99999937, 0.93894521, 0.96052803,
    0.99999908, 0.99999953, 0.99999941, 0.67285935, 0.99999956, 0.80949266, 0.99999929, 0.90572672, 0.9999996,
    0.99999916, 0.99999961, 0.99999915, 0.99999934, 0.99999945, 0.99999925, 0.99999934, 0.99999933, 0.77334334,
    0.76573518, 0.88344137, 0.99999901, 0.99999944, 0.99999952, 0.99999939, 0.9999993, 0.99999962, 0.99999946,
    0.99999932, 0.99999915, 0.81674087, 0.92706254, 0.85962801, 0.78182213, 0.99999919, 0.99999934, 0.99999909,
    0.85392644, 0.91888086, 0.99999941, 0.87506522, 0.9999995, 0.69482936, 0.99999945, 0.99999926, 0.99999927,
    0.99999926, 0.99999962, 0.99999944, 0.99999903, 0.99999953, 0.99999934, 0.99999946, 0.99999959, 0.99999911,
    0.86765303, 0.67871661,
]

_GRU_LOSS = [
    2.3, 2.31, 2.28, 2.28, 2.3, 2.29, 2.28, 2.27, 2.27, 2.26, 2.26, 2.24, 2.24, 2.22, 2.23, 2.18, 2.17, 2.17, 2.16,
    2.17, 2.14, 2.13, 2.07, 2.04, 2.03, 1.92, 1.93, 1.89, 1.86, 1.84, 1.81, 1.68, 1.74, 1.69, 1.68, 1.66, 1.62, 1.76,
    1.51, 1.59, 1.64, 1.31, 1.38, 1.48, 1.46, 1.35, 1.28, 1.3, 1.23, 1.12, 1.47, 1.34, 1.52, 1.26, 1.2, 1.04, 1.18,
    1.2, 1.06, 1.16, 1.06, 1.14, 0.974, 0.951, 1.18, 1.16, 1.13, 0.927, 1.11, 0.877, 1.18, 1.02, 0.878, 0.937, 0.924,
    0.875, 0.958, 0.731, 1.04, 0.843, 0.978, 0.764, 0.883, 0.76, 0.705, 0.864, 0.752, 0.737, 0.957, 0.613, 0.677,
    0.866, 0.783, 0.71, 0.821, 0.77, 0.782, 0.723, 0.694, 0.675, 0.751, 0.619, 0.598, 0.678, 0.786, 0.679, 0.538,
    0.554, 0.713, 0.619,
]

_LBFGS_LOSS = [
    1.2681739330291748, 1.1893646717071533, 0.7016904950141907, 0.4967593550682068, 0.3810003101825714,
    0.29894137382507324, 0.23795659840106964, 0.19132614135742188, 0.15513528883457184, 0.12686219811439514,
    0.10472932457923889, 0.08740518242120743, 0.07386880367994308, 0.06334371864795685, 0.05522580072283745,
    0.04901657998561859, 0.044059451669454575, 0.03996674716472626, 0.03796382248401642, 0.0365307554602623,
    0.03551894426345825, 0.034770071506500244, 0.034423526376485825, 0.03419870883226395, 0.03403177484869957,
    0.03390469402074814, 0.03384223207831383, 0.03379096835851669, 0.033750686794519424, 0.03372517600655556,
    0.03371267020702362, 0.03370228037238121, 0.03369306027889252, 0.033686790615320206, 0.033684488385915756,
    0.0336831696331501, 0.033682748675346375, 0.03368254005908966, 0.03368239104747772, 0.033682357519865036,
    0.03368231654167175, 0.03368228301405907, 0.03368227928876877, 0.033682260662317276, 0.033682264387607574,
    0.033682264387607574, 0.03368225693702698, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276,
    0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276,
    0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276,
    0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276,
    0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276,
    0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276,
    0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276,
    0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276,
    0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276,
    0.03368225693702698, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276,
    0.033682260662317276, 0.033682260662317276, 0.033682260662317276, 0.033682260662317276,
]

_LBFGS_UPDATE_RATIO = [
    0.1001, 0.04265, 0.01151, 0.0004518, 0, 0, 0, 0, 0,
]

_REG_VAL_LOSS = [
    0.71526, 0.64684, 0.59901, 0.59394, 0.59426, 0.58701, 0.59032, 0.5864, 0.58779, 0.59937, 0.58652, 0.58848, 0.58813,
    0.58554, 0.58778, 0.58865, 0.59209, 0.59344, 0.60482, 0.6192, 0.61338, 0.61603, 0.61779, 0.61078, 0.62692, 0.61892,
    0.62498, 0.62729, 0.6229, 0.62923, 0.62789, 0.62868, 0.62984, 0.63193, 0.63145, 0.63226, 0.63206, 0.63195, 0.6592,
    0.63731,
]

_ADAGRAD_LOSS = [
    1.11, 0.557, 0.542, 0.442, 0.474, 0.395, 0.348, 0.381, 0.351, 0.379, 0.332, 0.343, 0.336, 0.396, 0.315, 0.34,
    0.312, 0.329, 0.355, 0.369, 0.325, 0.318, 0.312, 0.365, 0.318, 0.328, 0.398, 0.365, 0.328, 0.32, 0.321, 0.369,
    0.326, 0.317, 0.365, 0.362, 0.326, 0.381, 0.327, 0.306, 0.321, 0.337, 0.323, 0.331, 0.37, 0.344, 0.311, 0.361,
    0.337, 0.319, 0.351, 0.337, 0.35, 0.328, 0.338, 0.307, 0.315, 0.352, 0.327, 0.321, 0.339, 0.32, 0.344, 0.311,
    0.374, 0.316, 0.329, 0.324, 0.315, 0.333, 0.326, 0.324, 0.314, 0.316, 0.319, 0.348, 0.337, 0.336, 0.329, 0.325,
    0.362, 0.329, 0.311, 0.345, 0.322, 0.312, 0.324, 0.314, 0.307, 0.343, 0.326, 0.321, 0.32, 0.32, 0.306, 0.354, 0.34,
    0.332, 0.323, 0.321, 0.312, 0.335, 0.309, 0.327, 0.351, 0.308, 0.32, 0.336, 0.304, 0.329, 0.315, 0.326, 0.348,
    0.342, 0.313, 0.321, 0.315, 0.316, 0.307, 0.317, 0.321, 0.308, 0.342, 0.321, 0.306, 0.342, 0.314, 0.32, 0.33,
    0.311, 0.308, 0.31, 0.321, 0.327, 0.308, 0.336, 0.314, 0.312, 0.308, 0.302, 0.325, 0.328, 0.315, 0.328, 0.316,
    0.308, 0.312, 0.321, 0.331,
]

_ADAGRAD_VAL_LOSS = [
    0.355, 0.353, 0.336, 0.327, 0.333, 0.332, 0.324, 0.325, 0.323, 0.323, 0.321, 0.323, 0.319, 0.322, 0.322, 0.322,
    0.319, 0.32,
]

_OGRU_LOSS = [
    2.27, 2.306, 2.313, 2.322, 2.262, 2.28, 2.329, 2.208, 2.287, 2.206, 2.253, 2.231, 2.195, 2.304, 2.187, 2.176,
    2.272, 2.162, 2.09, 2.197, 2.149, 2.218, 2.152, 1.983, 2.042, 2.171, 1.98, 1.978, 2.059, 2.04, 1.755, 1.818, 1.885,
    1.627, 1.927, 1.747, 1.777, 1.645, 1.605, 1.489, 1.57, 1.523, 1.529, 1.349, 1.382, 1.631, 1.391, 1.104, 1.362,
    1.135, 1.562, 1.075, 1.126, 1.269, 1.34, 1.267, 0.9832, 1.128, 1.151, 1.315, 1.086, 0.7966, 1.231, 1.328, 0.8404,
    1.244, 0.8448, 1.14, 0.9795, 0.9077, 1.207, 0.726, 0.9609, 0.807, 0.9704, 0.7821, 0.7689, 0.7978, 0.8195,
]

_OGRU_VAL_LOSS = [
    2.294, 2.276, 2.254, 2.227, 2.193, 2.137, 2.058, 1.955, 1.868, 1.747, 1.644, 1.544, 1.48, 1.495, 1.492, 1.486,
    1.439, 1.25, 1.211,
]

_OGRU_VAL_ACCURACY = [
    0.1028, 0.1139, 0.1444, 0.175, 0.2306, 0.2611, 0.2778, 0.3694, 0.3722, 0.4639, 0.4611, 0.4972, 0.5083, 0.5, 0.5222,
    0.5361, 0.5278, 0.5972, 0.6167,
]
_AE_GRAD_NORM = [
    0.02762, 0.02707, 0.02739, 0.02646, 0.02614, 0.02635, 0.02575, 0.02587, 0.02611, 0.02555, 0.02581, 0.02606,
    0.02585, 0.0257, 0.02737, 0.02672, 0.02749, 0.02816, 0.02812, 0.02971, 0.03066, 0.03035, 0.03191, 0.03236,
    0.0341, 0.0337, 0.03667, 0.03775, 0.03903, 0.04139, 0.04132, 0.04372, 0.04702, 0.04817, 0.05076, 0.05377,
    0.05774, 0.05681, 0.05838, 0.06118, 0.06109, 0.06315, 0.06597, 0.06402, 0.06709,
]
_AE_LOSS = [
    0.182, 0.1827, 0.1835, 0.1803, 0.1803, 0.1808, 0.178, 0.1794, 0.1815, 0.1799, 0.1764, 0.1804, 0.1789, 0.1748,
    0.1784, 0.1729, 0.1748, 0.1766, 0.1761, 0.1752, 0.1695, 0.1729, 0.1716, 0.1711, 0.1671, 0.1663, 0.1668, 0.167,
    0.1652, 0.1623, 0.1618, 0.1596, 0.1564, 0.1563, 0.1548, 0.1515, 0.1476, 0.1488, 0.1436, 0.1449, 0.1416, 0.1411,
    0.1362, 0.1334, 0.1289,
]
# /work/rev-ag char_gpt-s4 (steps 1-140; validation every 20 steps)
_GPT_LOSS = [
    4.342, 4.326, 4.302, 4.278, 4.242, 4.204, 4.172, 4.103, 4.02, 3.966, 3.912, 3.795, 3.737, 3.645, 3.524, 3.468,
    3.394, 3.374, 3.29, 3.232, 3.174, 3.165, 3.141, 3.079, 3.13, 3.113, 3.066, 3.027, 3.066, 2.959, 3.008, 2.988,
    2.91, 2.933, 2.858, 2.865, 2.905, 2.888, 2.868, 2.863, 2.854, 2.797, 2.738, 2.758, 2.721, 2.732, 2.739, 2.703,
    2.7, 2.674, 2.69, 2.658, 2.699, 2.644, 2.682, 2.651, 2.705, 2.625, 2.682, 2.683, 2.614, 2.587, 2.652, 2.591,
    2.605, 2.575, 2.586, 2.635, 2.612, 2.546, 2.577, 2.609, 2.557, 2.554, 2.558, 2.631, 2.557, 2.546, 2.544, 2.524,
    2.588, 2.531, 2.551, 2.499, 2.536, 2.546, 2.52, 2.552, 2.526, 2.503, 2.476, 2.48, 2.479, 2.479, 2.518, 2.453,
    2.484, 2.524, 2.477, 2.48, 2.54, 2.47, 2.491, 2.477, 2.497, 2.521, 2.505, 2.459, 2.482, 2.446, 2.456, 2.469,
    2.511, 2.483, 2.464, 2.432, 2.412, 2.486, 2.454, 2.468, 2.444, 2.461, 2.373, 2.439, 2.432, 2.458, 2.403, 2.44,
    2.449, 2.427, 2.45, 2.459, 2.402, 2.474, 2.387, 2.417, 2.429, 2.459, 2.414, 2.441,
]
_GPT_VAL_LOSS = [
    3.136, 2.772, 2.618, 2.541, 2.523, 2.499, 2.496,
]
_GPT_VAL_ACCURACY = [
    0.135, 0.216, 0.242, 0.243, 0.252, 0.255, 0.262,
]
# fmt: on
