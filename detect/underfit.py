"""Under-fitting of a classifier: a training loss that levels off far above zero, validation on it.

The idea
--------
A model that can fit its data drives a classifier's training loss far below where it started
(the loss of near-uniform predictions, about ln K for K classes), and pays for it with a
validation loss above the training loss (over-fitting, :mod:`aitrace.detect.overfit`, when
that gap grows). A model that cannot (too little capacity, too much regularisation, inputs
without the signal) stops early: its training loss levels off at a large share of its start
and the validation loss sits on it, no gap between them. :func:`under_fit` asks that at each
new evaluation:

* the validation loss has had no new best by ``UNDERFIT_MIN_GAIN`` (2 %) for
  ``UNDERFIT_SINCE`` (3) evaluations: it stopped improving;
* the training loss (median of its last 16 values up to that evaluation) is still between
  ``UNDERFIT_MIN_LEVEL`` (50 %) and ``UNDERFIT_MAX_LEVEL`` (95 %) of its start (its first value: the
  untrained model's); one still within 5 % of its start never learnt, which is a stall
  (:class:`~aitrace.detect.training.StallCheck`);
* the training loss has levelled off: its level not ``UNDERFIT_STILL_FALLING`` (10 %) below that of the 16
  values before it;
* it is near its chance level: no more than ``UNDERFIT_MAX_CUT`` (ln 4, in nats) below its start. With many
  classes (a language model's vocabulary) half the start is still far from chance: see the constant;
* the validation loss is 0.8 to 1.25 times that training loss (``UNDERFIT_GAP``), and its
  best is below 95 % of its first evaluation: a run whose validation loss has not left its
  start has not begun to learn (a CNN on 64 rows of digits sat at its chance level for 5
  evaluations, its training loss already down to 94 % of its start, then learnt and over-fit).

Where it can be told: on classification runs only, which the worker knows by an
accuracy-like series the run sends (:func:`~aitrace.detect.training.metric_role` ``score``).
The start is the first loss, not a median of the first few: Adagrad on wine took the loss from 1.11 to 0.56 in
its first step and to 0.35 by its first evaluation (step 8), and against the median of those 8 (0.46) the floor of
its label smoothing (0.29) read as levelling off at 63-82 % of its start on 9 of 9 healthy runs (/work/rev-ad); a
batch's loss at initialisation is about the chance level, give or take a tenth, which the 50-95 % band absorbs.
A regression loss does not start at a chance level: on scikit-learn's diabetes table a
healthy MLP (Adam, warm-up and cosine decay, 3 seeds, 64 or 8 hidden units) ended at 35-52 %
of its starting squared error with validation 1.1-1.3 times training: the noise of the
target, not a model that could do better. On a classifier the same signature also follows
labels with little signal in the inputs; the finding says so, and is ``info``: advice about
the run, not an incident to wake anyone for.

How the defaults were chosen
----------------------------
On real PyTorch runs on scikit-learn's digits (``bench/training_runs.py``, seeds 0-5): MLPs
with one hidden layer of 2 or 4 units and an MLP under AdamW with a weight decay of 30 (18
runs, 15 epochs of warm-up and cosine decay) ended at 64-91 % of their starting loss with
validation 0.98-1.07 times training (validation accuracy 15-63 %); all 18 are found, the
weight-decay runs at evaluation 7, the narrow ones at 9-14 of 15 (their loss keeps creeping
down while the learning rate decays). The 24 healthy runs of the four families end at 1-20 %
of their start, the 3 slow starters at 8-13 %; none of them is reported, nor any other
pathology of the bench (the stalled and vanishing runs end at 100 % of their start, the
others at 0-8 %). A 50 % floor leaves a wide margin on both sides: the closest healthy run
ends at 20 %, the closest under-fitting one at 64 %. MLPs of 3 hidden units at a constant
learning rate for 30 epochs end at 40-80 %: the 2 of 6 that end at 79-80 % are found; the
others still improve by more than 2 % every 3 evaluations. A breast-cancer MLP under a weight
decay of 300 never leaves its starting loss (predicting the majority class): a stall here.

Example
-------
>>> import numpy as np
>>> val = np.array([2.2, 1.9, 1.85, 1.84, 1.845, 1.84])   # stuck near 80 % of ln 10
>>> steps = [20.0 * (i + 1) for i in range(val.size)]
>>> t = np.arange(121.0)
>>> train = 2.3 - 0.45 * (1 - np.exp(-t / 15))           # 2.3 down to about 1.85
>>> round(under_fit(val, steps, t, train, start=2.3), 2)
0.8
>>> under_fit(val, steps, t, 0.1 * train, start=2.3) is None   # trained far down: no
True
"""

from __future__ import annotations

import math

import numpy as np

UNDERFIT_MIN_LEVEL = 0.5  # the training loss still at least half its start...
UNDERFIT_MAX_LEVEL = 0.95  # ...but below 95 % of it (else a stall)
UNDERFIT_GAP = (0.8, 1.25)  # validation / training loss: no gap between them
UNDERFIT_MIN_GAIN = 0.02  # a new best of the validation loss is 2 % below the old one...
UNDERFIT_SINCE = 3  # ...and none came in this many evaluations
UNDERFIT_RECENT = 16  # training losses in the level now, and kept of the start
# The training loss has levelled off too: its level (median of the last 16) not this share below the 16 before. A
# GRU evaluated every 4 steps on 64 rows had 3 evaluations without a 2 % gain (12 steps of its noise) while its
# training loss was still falling fast, and was called under-fitting (3 runs, /work/rev-ad).
UNDERFIT_STILL_FALLING = 0.1
# ...and it has cut no more than ln 4 off its start: a cross-entropy in nats whose effective number of choices (e to
# the loss) fell 4-fold or more has learnt. The share alone reads a many-class model mid-way as stuck: a character
# language model (65 symbols, start 4.45) at 55 % of its start has cut its choices 7-fold and was still learning
# (another 14 % over 800 steps), yet paged under-fitting on 6 of 6 seeds (/work/rev-ag). With 10 classes or fewer
# the 50 % floor binds first (ln 10 / 2 = 1.15): the bench's under-fitters cut 0.2 to 0.8.
UNDERFIT_MAX_CUT = math.log(4.0)


def under_fit(
    v: np.ndarray,
    v_at: list[float],
    t_at: np.ndarray,
    t_vals: np.ndarray,
    start: float,
    first_val: float | None = None,
) -> float | None:
    """The training loss's level as a share of ``start`` if the run under-fits at the last evaluation.

    ``v`` holds the validation losses so far (the last one new), ``v_at`` where each stands in the run's
    progress (steps, or ``windows._order``'s ranks); ``t_at`` / ``t_vals`` the training losses kept and
    where each stands, ``start`` the median of the first ones,
    ``first_val`` the run's first validation loss (None: ``v[0]``).
    None when any condition of the module's docstring fails.
    """
    if v.size <= UNDERFIT_SINCE or not (math.isfinite(start) and start > 0):
        return None
    if float(v.min()) > UNDERFIT_MAX_LEVEL * (v[0] if first_val is None else first_val):
        return None  # the validation loss never left its first evaluation: not learnt yet
    if float(v[-UNDERFIT_SINCE:].min()) < float(v[:-UNDERFIT_SINCE].min()) * (1.0 - UNDERFIT_MIN_GAIN):
        return None  # still improving
    known = t_vals[t_at <= v_at[-1]]
    seen = known[-UNDERFIT_RECENT:]
    if seen.size < UNDERFIT_RECENT:
        return None
    now = float(np.median(seen))
    before = known[-2 * UNDERFIT_RECENT : -UNDERFIT_RECENT]
    if before.size == UNDERFIT_RECENT and now < (1.0 - UNDERFIT_STILL_FALLING) * float(np.median(before)):
        return None  # the training loss still falls: the model is still learning
    level = now / start
    lo, hi = UNDERFIT_GAP
    near_chance = start - now <= UNDERFIT_MAX_CUT
    if UNDERFIT_MIN_LEVEL <= level <= UNDERFIT_MAX_LEVEL and near_chance and lo * now <= float(v[-1]) <= hi * now:
        return level
    return None
