"""``aitrace.keras.AitraceCallback`` in a real Keras 3 ``fit`` on the torch backend, read back from Tansu.

Keras picks its backend when first imported: the fixture sets ``KERAS_BACKEND=torch`` (restored
after the test) before importing it, so no other test sees a changed environment.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import aitrace
import pytest
from aitrace.infra.stack import TansuProcess
from training_events import open_client, read_back

pytest.importorskip("torch")

STEPS_PER_EPOCH = 4


@pytest.fixture
def keras(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    module = pytest.importorskip("keras")
    assert module.backend.backend() == "torch", "keras was imported earlier with another backend"
    return module


@pytest.fixture
def client(kafka: TansuProcess, tmp_path: Path, unique_name: Callable[[str], str]) -> Iterator[aitrace.Client]:
    made = open_client(kafka, tmp_path, unique_name)
    yield made
    made.close(timeout=5)


def test_fit_sends_batches_every_n_validation_as_val_and_the_run(keras: ModuleType, client: aitrace.Client) -> None:
    import numpy as np
    from aitrace.producers.keras import AitraceCallback

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, xv = rng.normal(size=(8 * STEPS_PER_EPOCH, 4)), rng.normal(size=(16, 4))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse", metrics=["mae"])
    callback = AitraceCallback(client, every=3, config={"dataset": "synthetic"})
    model.fit(
        x, x.sum(axis=1), batch_size=8, epochs=2, validation_data=(xv, xv.sum(axis=1)), verbose=0, callbacks=[callback]
    )
    assert callback.step == 2 * STEPS_PER_EPOCH

    sent = read_back(client)
    # Every 3rd batch counted from the last one sent, plus each epoch's last step when it was not sent.
    loss = sent.series("loss")
    assert sorted(loss) == [3, 4, 7, 8] and all(v > 0 for v in loss.values())
    assert sorted(sent.series("mae")) == sorted(loss)
    lr = sent.series("lr")
    assert sorted(lr) == sorted(loss) and all(v == pytest.approx(0.05) for v in lr.values())
    assert sent.epochs[(None, 3)] == 0 and sent.epochs[(None, 7)] == 1
    val = sent.series("loss", split="val")  # val_loss: the validation split at the epoch's last step
    assert sorted(val) == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH] and sorted(sent.series("mae", split="val")) == sorted(
        val
    )
    assert sent.epochs[("val", STEPS_PER_EPOCH)] == 0 and sent.epochs[("val", 2 * STEPS_PER_EPOCH)] == 1
    assert not any(k.startswith("val_") for v in sent.points.values() for k in v)

    assert sent.statuses() == ["STARTED", "FINISHED"]
    config = sent.runs[0]["config"]
    assert config["backend"] == "torch" and config["epochs"] == "2" and config["steps_per_epoch"] == "4"
    assert config["parameters"] == str(4 * 8 + 8 + 8 + 1) and config["dataset"] == "synthetic"
    assert config["optimizer.name"] == "sgd" and float(config["optimizer.learning_rate"]) == pytest.approx(0.05)
    assert "keras" in sent.runs[0]["library_versions"]


def test_every_must_be_positive(keras: ModuleType, client: aitrace.Client) -> None:
    from aitrace.producers.keras import AitraceCallback

    with pytest.raises(ValueError, match="every"):
        AitraceCallback(client, every=0)


def test_a_missing_keras_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keras", None)
    monkeypatch.delitem(sys.modules, "aitrace.producers.keras", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'aitrace\[keras\]'"):
        importlib.import_module("aitrace.producers.keras")
