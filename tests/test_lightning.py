"""``aitrace.lightning.AitraceLogger`` in a real Lightning ``Trainer``, beside a CSVLogger, read back from Tansu."""

from __future__ import annotations

import csv
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
L = pytest.importorskip("lightning")
from aitrace.producers.lightning import AitraceLogger  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

STEPS_PER_EPOCH = 4


@pytest.fixture
def client(kafka: TansuProcess, tmp_path: Path, unique_name: Callable[[str], str]) -> Iterator[aitrace.Client]:
    made = open_client(kafka, tmp_path, unique_name)
    yield made
    made.close(timeout=5)


class Regressor(L.LightningModule):
    """A linear model; ``fail_at`` raises in that training step."""

    def __init__(self, lr: float = 0.05, hidden: int = 8, fail_at: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.hparams.fail_at is not None and self.global_step == self.hparams.fail_at:
            raise RuntimeError("diverged")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _loader() -> Any:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS_PER_EPOCH * 8, 4, generator=gen)
    data = torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True))
    return torch.utils.data.DataLoader(data, batch_size=8)


def _trainer(tmp_path: Path, loggers: list[Any]) -> Any:
    return L.Trainer(
        max_epochs=2,
        logger=loggers,
        log_every_n_steps=1,
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )


def test_fit_sends_steps_splits_hyperparameters_and_the_run_beside_a_csv_logger(
    client: aitrace.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "")  # so that the seed seed_everything leaves there goes after the test
    L.seed_everything(7)
    logger = AitraceLogger(client, config={"dataset": "synthetic"})
    assert (logger.name, logger.version) == ("trainer", client.settings.producer.run_id)
    assert logger.experiment is client
    csv_logger = CSVLogger(str(tmp_path), name="csv")
    _trainer(tmp_path, [logger, csv_logger]).fit(Regressor(), _loader(), _loader())

    sent = read_back(client)
    # The other logger got the same metrics at the same steps: AitraceLogger took nothing from it.
    with open(Path(csv_logger.log_dir) / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    csv_steps = {key: [int(r["step"]) for r in rows if r.get(key)] for key in ("train_loss", "val/loss")}

    # Every batch at Lightning's own step (optimizer steps taken before it), no "train_" prefix.
    loss = sent.series("loss")
    assert sorted(loss) == csv_steps["train_loss"] == list(range(2 * STEPS_PER_EPOCH))
    assert all(v > 0 for v in loss.values())
    assert sent.epochs[(None, 0)] == 0 and sent.epochs[(None, 2 * STEPS_PER_EPOCH - 1)] == 1
    # "val/loss": the validation split, once per epoch at the last training step, no sanity-check point.
    val = sent.series("loss", split="val")
    assert sorted(val) == csv_steps["val/loss"] == [STEPS_PER_EPOCH - 1, 2 * STEPS_PER_EPOCH - 1]
    assert not any("train_loss" in v or "val/loss" in v or "epoch" in v for v in sent.points.values())

    assert sent.statuses() == ["STARTED", "FINISHED"]
    config = sent.runs[0]["config"]
    assert config["dataset"] == "synthetic" and config["lr"] == "0.05" and config["hidden"] == "8"
    assert sent.runs[0]["seed"] == 7
    assert "lightning" in sent.runs[0]["library_versions"]


def test_an_exception_in_training_finishes_the_run_as_failed(client: aitrace.Client, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="diverged"):
        _trainer(tmp_path, [AitraceLogger(client)]).fit(Regressor(fail_at=2), _loader())
    sent = read_back(client)
    assert sorted(sent.series("loss")) == [0, 1]
    assert sent.statuses() == ["STARTED", "FAILED"]
    assert sent.runs[1]["message"] == "RuntimeError: diverged"
    (error,) = [r for r in sent.logs if r["level"] == "error"]
    assert error["error_type"] == "RuntimeError" and "training_step" in error["stack_trace"]


def test_by_hand_hyperparameters_after_the_start_and_without_lifecycle(client: aitrace.Client) -> None:
    logger = AitraceLogger(client, name="exp", version="v3", lifecycle=False)
    assert (logger.name, logger.version) == ("exp", "v3")
    logger.log_hyperparams({"optimizer": {"name": "adam", "lr": 1e-3}})
    logger.log_metrics({"val_acc": 0.5, "epoch": 0}, step=10)
    logger.finalize("success")
    sent = read_back(client)
    assert sent.runs == []  # client.run(...) owns the lifecycle
    assert sent.points == {("val", 10): {"acc": 0.5}} and sent.epochs[("val", 10)] == 0
    (hyper,) = sent.logs
    assert hyper["logger"] == "aitrace.lightning" and '"adam"' in hyper["attributes"]["values"]


def test_a_missing_lightning_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lightning.pytorch.loggers", None)
    monkeypatch.delitem(sys.modules, "aitrace.producers.lightning")
    with pytest.raises(ImportError, match=r"pip install 'aitrace\[lightning\]'"):
        importlib.import_module("aitrace.producers.lightning")


def test_split_prefixes_move_into_the_split_and_nothing_is_lost() -> None:
    from aitrace.producers._training import by_split

    values = {"val_loss": 1, "val/acc": 2, "val/loss": 3, "test_f1": 4, "train_loss": 5, "loss": 6, "validity": 7}
    assert by_split(values) == {
        "val": {"loss": 1, "acc": 2, "val/loss": 3},
        "test": {"f1": 4},
        None: {"train_loss": 5, "loss": 6, "validity": 7},
    }
    assert by_split({"loss": 6, "train_acc": 0.5, "training/f1": 0.4}) == {None: {"loss": 6, "acc": 0.5, "f1": 0.4}}
