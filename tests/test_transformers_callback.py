"""``aitrace.transformers.AitraceCallback`` in a real ``Trainer`` on CPU, read back from Tansu.

The model is a one-layer GPT-2 built from a config (hidden 32, vocabulary 100): nothing is
downloaded; the inputs are random token ids.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aitrace
import pytest
from aitrace.infra.stack import TansuProcess
from training_events import open_client, read_back

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from aitrace.producers.transformers import AitraceCallback  # noqa: E402

STEPS_PER_EPOCH = 4


@pytest.fixture
def client(kafka: TansuProcess, tmp_path: Path, unique_name: Callable[[str], str]) -> Iterator[aitrace.Client]:
    made = open_client(kafka, tmp_path, unique_name)
    yield made
    made.close(timeout=5)


def _tokens(n: int, seed: int) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 100, (n, 16), generator=gen)
    return [{"input_ids": row, "labels": row} for row in ids]


def _trainer(tmp_path: Path, callback: AitraceCallback) -> Any:
    config = transformers.GPT2Config(vocab_size=100, n_positions=16, n_embd=32, n_layer=1, n_head=2)
    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=2,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        eval_strategy="epoch",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=11,
    )
    return transformers.Trainer(
        model=transformers.GPT2LMHeadModel(config),
        args=args,
        train_dataset=_tokens(4 * STEPS_PER_EPOCH, 1),
        eval_dataset=_tokens(8, 2),
        callbacks=[callback],
    )


def test_two_epochs_send_the_loss_per_step_the_eval_loss_as_val_and_the_run(
    client: aitrace.Client, tmp_path: Path
) -> None:
    _trainer(tmp_path, AitraceCallback(client, config={"model": "gpt2-tiny"})).train()

    sent = read_back(client)
    steps = list(range(1, 2 * STEPS_PER_EPOCH + 1))
    loss = sent.series("loss")
    assert sorted(loss) == steps and all(v > 0 for v in loss.values())
    assert sorted(sent.series("lr")) == steps and sorted(sent.series("grad_norm")) == steps
    assert sent.epochs[(None, 1)] == 0 and sent.epochs[(None, STEPS_PER_EPOCH)] == 0
    assert sent.epochs[(None, STEPS_PER_EPOCH + 1)] == 1
    val = sent.series("loss", split="val")  # eval_loss after each epoch
    assert sorted(val) == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert sent.epochs[("val", STEPS_PER_EPOCH)] == 0 and sent.epochs[("val", 2 * STEPS_PER_EPOCH)] == 1
    assert "runtime" in sent.points[("val", STEPS_PER_EPOCH)]
    assert not any(
        k.startswith(("eval_", "train_")) or k in ("epoch", "learning_rate") for v in sent.points.values() for k in v
    )

    assert sent.statuses() == ["STARTED", "FINISHED"]
    started = sent.runs[0]
    assert started["seed"] == 11 and started["config"]["learning_rate"] == "0.001"
    assert started["config"]["num_train_epochs"] == "2" and started["config"]["model"] == "gpt2-tiny"
    assert {"transformers", "accelerate", "torch"} <= set(started["library_versions"])
    (summary,) = [r for r in sent.logs if r["attributes"].get("event") == "train_summary"]
    assert summary["logger"] == "aitrace.transformers" and float(summary["attributes"]["train_loss"]) > 0


def test_inside_client_run_a_failing_training_is_recorded_as_failed(client: aitrace.Client, tmp_path: Path) -> None:
    class Diverge(transformers.TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 2:
                raise FloatingPointError("loss is NaN")

    trainer = _trainer(tmp_path, AitraceCallback(client, lifecycle=False))
    trainer.add_callback(Diverge())
    with pytest.raises(FloatingPointError), client.run("gpt2-tiny", config={"lr": 1e-3}):
        trainer.train()
    sent = read_back(client)
    assert sent.statuses() == ["STARTED", "FAILED"]  # client.run's, none from the callback
    assert sent.runs[0]["config"] == {"lr": "0.001"}
    assert sorted(sent.series("loss")) == [1]  # step 2 raised before the Trainer logged it


def test_a_missing_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "aitrace.producers.transformers")
    with pytest.raises(ImportError, match=r"pip install 'aitrace\[transformers\]'"):
        importlib.import_module("aitrace.producers.transformers")
