"""``aitrace.torch.watch`` on real PyTorch training, read back from a real Tansu."""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aitrace
import aitrace.producers.client
import numpy as np
import pytest
from aitrace.infra.stack import TansuProcess
from test_producer_support import all_ids, consume

torch = pytest.importorskip("torch")
import aitrace.producers.torch as at  # noqa: E402


@pytest.fixture
def client(kafka: TansuProcess, tmp_path: Path, unique_name: Callable[[str], str]) -> Iterator[aitrace.Client]:
    made = aitrace.init(
        service="trainer",
        run_id=unique_name("run"),
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=unique_name("p"),
        spool_dir=str(tmp_path / "spool"),
    )
    yield made
    made.close(timeout=5)


def _read(client: aitrace.Client, n: int) -> tuple[dict[int, dict[str, float]], list[dict[str, Any]]]:
    """Metric points by step (name -> value) and the log records, once ``n`` events arrived."""
    records = consume(
        client.settings.kafka.kafka_bootstrap, client.settings.kafka.topic_prefix, lambda r: len(all_ids(r)) >= n, 30.0
    )
    points: dict[int, dict[str, float]] = {}
    logs = []
    for _, batch in records:
        for block in batch["metric_blocks"]:
            for series in block["series"]:
                for step, value in zip(block["steps"], series["values"], strict=True):
                    points.setdefault(step, {})[series["name"]] = value
        logs += [e["payload"][1] for e in batch["events"] if e["payload"][0] == "aitrace.LogRecord"]
    return points, logs


def _mlp() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)
    )


def _train(model: Any, optimizer: Any, steps: int, x: Any = None) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 8, generator=gen) if x is None else x
    y = torch.randn(32, 1, generator=gen)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


def test_watch_reports_norms_lr_update_ratios_and_a_model_summary(client: aitrace.Client) -> None:
    model = _mlp()
    model[0].requires_grad_(False)  # a frozen layer
    head = [p for p in model[4].parameters()]
    body = [p for p in model[2].parameters()]
    optimizer = torch.optim.SGD([{"params": body, "lr": 0.1}, {"params": head, "lr": 0.01, "name": "head"}])
    handle = at.watch(model, optimizer, client=client, every=5)
    _train(model, optimizer, 10)
    expected = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in body + head))  # the grads of step 10
    handle.remove()
    _train(model, optimizer, 3)  # after remove(): not reported
    assert handle.step == 10
    assert client.flush(timeout=30)
    points, logs = _read(client, 11)
    assert sorted(points) == list(range(1, 11))
    for step, values in points.items():
        assert values["grad_norm"] > 0 and values["grad_nonfinite"] == 0
        assert values["lr"] == pytest.approx(0.1) and values["lr/head"] == pytest.approx(0.01)
        assert values["lr/0"] == pytest.approx(0.1)
        assert ("grad_norm/2" in values) == (step % 5 == 0)
    costly = points[5]
    assert points[10]["grad_norm"] == pytest.approx(expected, rel=1e-5)
    assert math.hypot(costly["grad_norm/2"], costly["grad_norm/4"]) == pytest.approx(costly["grad_norm"], rel=1e-5)
    assert "grad_norm/0" not in costly  # frozen: no gradient
    assert 0 < costly["update_ratio/2"] < 1 and 0 < costly["update_ratio/4"] < 1
    (summary,) = [r for r in logs if r["logger"] == "aitrace.torch"]
    attrs = summary["attributes"]
    assert attrs["event"] == "model_summary" and int(attrs["total_params"]) == 8 * 16 + 16 + 16 * 16 + 16 + 17
    assert int(attrs["frozen_params"]) == 8 * 16 + 16
    assert attrs["torch_version"] == torch.__version__ and int(attrs["seed"]) == torch.initial_seed()
    assert '"Linear"' in attrs["layers"] and "rng_state_sha256" in attrs


def test_a_nan_gradient_is_logged_naming_the_first_layer_and_counted(client: aitrace.Client) -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    handle = at.watch(model, optimizer, client=client, every=1, activations=True, sync_every=1, summary=False)
    _train(model, optimizer, 2)
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")  # layer 2 now makes NaN in forward, then in backward
    _train(model, optimizer, 2)
    handle.remove()
    assert client.flush(timeout=30)
    points, logs = _read(client, 6)
    assert points[2]["grad_nonfinite"] == 0 and points[2]["activation_nonfinite"] == 0
    assert math.isnan(points[3]["grad_norm"]) and points[3]["grad_nonfinite"] == 6
    assert points[3]["activation_nonfinite"] == 3  # layer 2, its ReLU, layer 4
    by_event = {r["attributes"]["event"]: r for r in logs}
    grad = by_event["nonfinite_gradient"]
    assert grad["level"] == "error" and grad["attributes"]["step"] == "3"
    assert grad["attributes"]["layer"] == "4"  # backward begins at the output layer, where the NaN arrives first
    act = by_event["nonfinite_activation"]
    assert act["attributes"]["layer"] == "2" and act["attributes"]["step"] == "3"  # forward: the layer that made it
    assert sum(1 for r in logs if r["attributes"]["event"] == "nonfinite_gradient") == 1  # once per bad run


def test_without_an_optimizer_the_end_of_backward_is_the_step(client: aitrace.Client) -> None:
    model = _mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # not given to watch
    handle = at.watch(model, client=client, every=2, sync_every=1, summary=False)
    _train(model, optimizer, 4)
    handle.remove()
    assert client.flush(timeout=30)
    points, _ = _read(client, 4)
    assert sorted(points) == [1, 2, 3, 4]
    assert "lr" not in points[1] and points[1]["grad_norm"] > 0
    assert points[4]["update_ratio/0"] > 0  # Adam's update between backward 3 and 4


class _Recorder:
    """A client that keeps what the watch sends, by step: for the arithmetic (the wire is tested above)."""

    def __init__(self) -> None:
        self.points: dict[int, dict[str, Any]] = {}
        self.logs: list[dict[str, Any]] = []

    def metric(self, values: Any, step: Any = None) -> None:
        self.points[step] = dict(values)

    def log(self, level: str, message: str, **attributes: Any) -> None:
        self.logs.append({"level": level, "message": message, **attributes})


def test_long_read_backs_and_steps_without_some_gradients_keep_every_value(caplog: pytest.LogCaptureFixture) -> None:
    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.left, self.right = torch.nn.Linear(8, 16), torch.nn.Linear(16, 1), torch.nn.Linear(16, 1)

        def forward(self, x: Any, use_right: bool) -> Any:
            h = torch.relu(self.body(x))
            return self.right(h) if use_right else self.left(h)

    torch.manual_seed(0)
    model = TwoHeads()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    client = _Recorder()
    # 600 steps in one read-back: past the 256-row chunks the buffer grows by.
    handle = at.watch(model, optimizer, client=client, every=50, sync_interval_s=1e9, summary=False)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 8, generator=gen), torch.randn(32, 1, generator=gen)
    expected = {}
    for step in range(1, 601):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x, use_right=step % 3 == 0), y).backward()
        optimizer.step()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        expected[step] = math.sqrt(sum(float(g.norm()) ** 2 for g in grads))
    assert client.points == {}  # nothing read back before sync_every steps
    handle.remove()
    assert sorted(client.points) == list(range(1, 601))
    for step, values in client.points.items():
        assert values["grad_norm"] == pytest.approx(expected[step], rel=1e-5)
        assert values["grad_nonfinite"] == 0 and values["lr"] == pytest.approx(1e-3)
    assert {"grad_norm/body", "grad_norm/right", "update_ratio/left", "update_ratio/right"} <= set(client.points[300])
    assert "grad_norm/left" not in client.points[300]  # step 300 used the right head only
    left = client.points[100]  # 100 % 3 != 0: the left head
    assert "grad_norm/right" not in left
    assert math.hypot(left["grad_norm/body"], left["grad_norm/left"]) == pytest.approx(left["grad_norm"], rel=1e-6)
    assert left["update_ratio/right"] == 0.0 and left["update_ratio/left"] > 0  # Adam skips a head without grad
    assert "grad_norm/body" not in client.points[99] and "update_ratio/body" not in client.points[101]
    assert "training goes on" not in caplog.text


@pytest.mark.parametrize("squares", [True, False])
def test_mixed_dtypes_and_missing_gradients(squares: bool) -> None:
    """A float64 head beside float32 layers, on the CPU's numpy path (square norms in a float64 row) and on
    the stacked ``_foreach_norm`` path the other devices and dtypes take; a head without a gradient on a
    step still holds its own column (a 0), not its neighbour's."""
    torch.manual_seed(0)
    model = torch.nn.ModuleDict(
        {"body": torch.nn.Linear(8, 16), "left": torch.nn.Linear(16, 1), "right": torch.nn.Linear(16, 1).double()}
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=2, sync_every=4, summary=False)
    assert handle._norms.squares  # float32 and float64 on the CPU: numpy
    handle._norms.squares = squares  # before any row is made
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    expected = {}
    for step in range(1, 7):
        optimizer.zero_grad()
        h = torch.relu(model["body"](x))
        (model["left"](h) if step % 2 else model["right"](h.double()).float()).sum().backward()
        optimizer.step()
        grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
        expected[step] = {k: float(g.norm()) for k, g in grads.items()}
    handle.remove()
    assert sorted(client.points) == list(range(1, 7))
    for step, values in client.points.items():
        assert values["grad_norm"] == pytest.approx(math.hypot(*expected[step].values()), rel=1e-6)
    costly = client.points[4]  # the right head's step: the left one, between body and right, has no gradient
    assert "grad_norm/left" not in costly
    norms = expected[4]
    assert costly["grad_norm/right"] == pytest.approx(math.hypot(norms["right.weight"], norms["right.bias"]), rel=1e-6)
    assert costly["grad_norm/body"] == pytest.approx(math.hypot(norms["body.weight"], norms["body.bias"]), rel=1e-6)


def test_the_post_step_hook_is_there_only_around_a_costly_step() -> None:
    """Plain steps are measured by the pre-step hook alone; the post-step hook (the update norms) is
    registered for the first step and a costly one, and removed at the next plain step."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=4, sync_every=1, summary=False)
    copies = []
    take = handle._take_snapshot
    handle._take_snapshot = lambda step: (copies.append(step), take(step))  # type: ignore[method-assign]
    armed = []
    for _ in range(8):
        _train(model, optimizer, 1)
        armed.append(len(optimizer._optimizer_step_post_hooks))
    assert copies == [4, 8] and armed == [1, 0, 0, 1, 0, 0, 0, 1]
    assert len(optimizer._optimizer_step_pre_hooks) == 1
    assert [s for s, v in client.points.items() if "update_ratio/0" in v] == [4, 8]
    handle.remove()
    assert len(optimizer._optimizer_step_pre_hooks) == 0 and len(optimizer._optimizer_step_post_hooks) == 0


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_gradients_made_with_create_graph_and_half_precision_norms(caplog: pytest.LogCaptureFixture) -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=1, sync_every=1, summary=False)
    x = torch.randn(4, 8)
    optimizer.zero_grad()
    model(x).sum().backward(create_graph=True)  # the gradients require grad themselves
    optimizer.step()
    expected = math.sqrt(sum(float(p.grad.detach().norm()) ** 2 for p in model.parameters()))
    handle.remove()
    handle = at.watch(model, optimizer, client=client, sync_every=1, summary=False)  # steps 2 to 4: plain
    for _ in range(4):
        optimizer.zero_grad()
        model(x).sum().backward(create_graph=True)
        optimizer.step()
        assert torch.is_grad_enabled()
    handle.remove()
    optimizer.zero_grad()  # breaks the parameter-gradient cycle create_graph made
    assert client.points[1]["grad_norm"] == pytest.approx(expected, rel=1e-5)
    assert client.points[3]["grad_norm"] == pytest.approx(expected, rel=1e-5) and handle._plain_until > 3
    assert "training goes on" not in caplog.text

    half = torch.nn.Linear(100, 1).half()
    optimizer = torch.optim.SGD(half.parameters(), lr=0.0)
    handle = at.watch(half, optimizer, client=client, sync_every=1, summary=False)
    for p in half.parameters():
        p.grad = torch.full_like(p, 60000.0)  # each finite in float16, their norm is not
    optimizer.step()
    handle.remove()
    assert client.points[1]["grad_nonfinite"] == 0
    assert client.points[1]["grad_norm"] == pytest.approx(60000.0 * math.sqrt(101), rel=1e-3)


def test_a_broken_client_never_raises_into_training(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def metric(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("pipeline down")

        def log(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("pipeline down")

    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    handle = at.watch(model, optimizer, client=Broken(), sync_every=1)
    _train(model, optimizer, 3)
    handle.remove()
    assert handle.step == 3
    assert sum("training goes on" in r.getMessage() for r in caplog.records) == 1


def test_a_failing_costly_part_still_reports_each_step_with_its_own_norms(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("no update norms today")

    monkeypatch.setattr(at.WatchHandle, "_update_norms", broken)  # every costly step fails after its row is written
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=2, sync_every=100, summary=False)
    x, y = torch.randn(8, 8, generator=torch.Generator().manual_seed(1)), torch.randn(8, 1)
    expected = {}
    for step in range(1, 7):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        expected[step] = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in model.parameters()))
    handle.remove()
    assert {step: v["grad_norm"] for step, v in client.points.items()} == pytest.approx(expected, rel=1e-5)
    assert "update_ratio/0" not in client.points[2] and "grad_norm/0" in client.points[2]
    assert sum("training goes on" in r.getMessage() for r in caplog.records) == 1


def test_watch_without_a_client_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aitrace.producers.client, "_default", None)
    with pytest.raises(RuntimeError, match=r"aitrace\.init"):
        at.watch(_mlp())


def test_a_missing_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "aitrace.producers.torch")
    with pytest.raises(ImportError, match=r"pip install 'aitrace\[torch\]'"):
        importlib.import_module("aitrace.producers.torch")
    monkeypatch.undo()
    assert importlib.import_module("aitrace.producers.torch") is at


def test_sparse_gradients_are_normed_by_their_values() -> None:
    """nn.EmbeddingBag(sparse=True) makes sparse gradients, which have no out= or fused norm."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.EmbeddingBag(50, 8, mode="sum", sparse=True), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=2, sync_every=3, summary=False)
    gen = torch.Generator().manual_seed(1)
    expected = {}
    for step in range(1, 7):
        optimizer.zero_grad()
        model(torch.randint(0, 50, (4, 3), generator=gen)).pow(2).mean().backward()
        optimizer.step()
        expected[step] = math.sqrt(sum(float(p.grad.to_dense().norm()) ** 2 for p in model.parameters()))
    handle.remove()
    assert sorted(client.points) == list(range(1, 7))
    for step, values in client.points.items():
        assert values["grad_norm"] == pytest.approx(expected[step], rel=1e-5) and values["grad_nonfinite"] == 0
    assert client.points[2]["update_ratio/0"] > 0 and client.points[2]["grad_norm/0"] > 0


def test_a_loss_handed_to_the_watch_is_sent_with_its_step() -> None:
    torch.manual_seed(0)
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=100, sync_every=4, summary=False)
    x, y = torch.randn(16, 8, generator=torch.Generator().manual_seed(1)), torch.randn(16, 1)
    sent = {}
    for step in range(1, 11):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        if step != 5:  # a step without a loss sends none (not a 0)
            handle.loss(loss if step % 2 else float(loss))
            sent[step] = loss.item()
        optimizer.step()
    handle.remove()
    assert {step: v["loss"] for step, v in client.points.items() if "loss" in v} == pytest.approx(sent)
    assert "loss" not in client.points[5]


@pytest.mark.parametrize("squares", [True, False])
def test_square_norms_match_torch_norms_and_find_an_inf(squares: bool) -> None:
    """The CPU's numpy dots (square norms, roots at read-back) give torch's norms, per layer and global,
    and an Inf in one gradient is counted and named as on the ``_foreach_norm`` path, on a plain step
    (step 2 of every=4: no costly part on it or the next)."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=4, sync_every=8, summary=False)
    handle._norms.squares = squares
    gen = torch.Generator().manual_seed(3)
    expected = []
    for step in range(1, 5):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen) * 10.0**step
        if step == 2:
            model[2].bias.grad[3] = math.inf
        expected.append({n: float(p.grad.norm()) for n, p in model.named_parameters()})
        optimizer.step()
    handle.remove()
    assert handle._plain_until == 7  # steps 5 to 7 would have been plain, as step 2 was
    for step, norms in enumerate(expected, 1):
        values = client.points[step]
        assert values["grad_norm"] == pytest.approx(math.hypot(*norms.values()), rel=1e-5)
        assert values["grad_nonfinite"] == (step == 2)
    layer = client.points[4]["grad_norm/2"]
    assert layer == pytest.approx(math.hypot(expected[3]["2.weight"], expected[3]["2.bias"]), rel=1e-5)
    assert "grad_norm/2" not in client.points[2]
    assert [log["parameter"] for log in client.logs] == ["2.bias"]


def test_the_costly_parts_also_run_every_tenth_step_before_the_first_every() -> None:
    """With every=100 the per-layer norms and update ratios come at 10, 20, ..., 90, then 100, 200:
    the worker's stall check needs three of them early in a run."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=100, sync_every=7, summary=False)
    _train(model, optimizer, 205)
    handle.remove()
    costly = sorted(step for step, values in client.points.items() if "update_ratio/0" in values)
    assert costly == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200]
    assert all(client.points[step]["update_ratio/0"] > 0 for step in costly)


def test_every_value_matches_its_definition_step_by_step_plain_costly_closure_and_inf_steps() -> None:
    """Parity of the hooks' placement: each step's values, recomputed here from the gradients the optimizer
    sees and the weights around its update, match what the watch sent, key for key. The run has two param
    groups (one named), a loss on some steps (tensor or float), steps with a closure (measured after the
    update), an Inf gradient on a plain step, costly steps (every=20, and 10 before it) and two read-backs.
    The watch before plain steps moved to the pre-step hook (commit 9d3f01e's) passes it too."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.05}, {"params": model[2].parameters(), "lr": 0.02, "name": "head"}]
    )
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=20, sync_every=25, summary=False)
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(16, 8, generator=gen), torch.randn(16, 4, generator=gen)
    layers = {"0": ["0.weight", "0.bias"], "2": ["2.weight", "2.bias"]}
    expected: dict[int, dict[str, Any]] = {}
    for step in range(1, 61):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        if step == 33:
            model[2].bias.grad[1] = math.inf  # a plain step
        values: dict[str, Any] = {"lr": 0.05, "lr/0": 0.05, "lr/head": 0.02}
        # A closure makes the gradients again inside the step, twice these: the watch must see those.
        scale = 2.0 if step % 7 == 0 else 1.0
        norms = {n: scale * float(p.grad.norm()) for n, p in model.named_parameters()}
        values["grad_norm"] = math.sqrt(sum(v * v for v in norms.values()))
        values["grad_nonfinite"] = sum(not math.isfinite(v) for v in norms.values())
        if step % 3:
            handle.loss(loss if step % 2 else float(loss.detach()))
            values["loss"] = loss.item()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        if step % 7 == 0:
            optimizer.step(lambda: (optimizer.zero_grad(), (2 * torch.nn.functional.mse_loss(model(x), y)).backward()))
        else:
            optimizer.step()
        if step == 10 or step % 20 == 0:
            params = dict(model.named_parameters())
            for layer, names in layers.items():
                values[f"grad_norm/{layer}"] = math.hypot(*(norms[n] for n in names))
                update = math.hypot(*(float((before[n] - params[n].detach()).norm()) for n in names))
                weight = math.hypot(*(float(params[n].detach().norm()) for n in names))
                values[f"update_ratio/{layer}"] = update / weight
        expected[step] = values
        if step == 33:
            with torch.no_grad():  # undo the Inf's update: the later steps stay finite
                for n, p in model.named_parameters():
                    p.copy_(before[n])
    handle.remove()
    assert sorted(client.points) == sorted(expected)
    for step, values in expected.items():
        sent = client.points[step]
        assert set(sent) == set(values), step
        for key, value in values.items():
            assert sent[key] == pytest.approx(value, rel=1e-5, nan_ok=True), (step, key)
    assert [(log["step"], log["parameter"]) for log in client.logs] == [(33, "2.bias")]


def test_activations_are_checked_on_each_costly_step_with_an_optimizer() -> None:
    """The step before a costly one arms the forward hooks' probe; it is not plain even though the pre-step
    hook copies the weights on the costly step itself."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=4, activations=True, sync_every=3, summary=False)
    _train(model, optimizer, 12)
    handle.remove()
    checked = [step for step, values in client.points.items() if "activation_nonfinite" in values]
    assert checked == [4, 8, 12] and all(client.points[s]["activation_nonfinite"] == 0 for s in checked)
    assert [step for step, values in client.points.items() if "update_ratio/0" in values] == [4, 8, 12]


class _Unscaling(torch.optim.Optimizer):
    """Like accelerate's AcceleratedOptimizer under a GradScaler: a wrapper whose step divides the (scaled)
    gradients in place, then steps the optimizer it wraps."""

    def __init__(self, inner: torch.optim.Optimizer) -> None:
        super().__init__(inner.param_groups, {})
        self.inner = inner

    def step(self, closure: Any = None) -> Any:
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.grad /= 1024.0
        return self.inner.step(closure)


def test_an_optimizer_not_torchs_own_is_measured_after_its_step() -> None:
    """Gradients a wrapper changes inside its step are reported as its inner step saw them (after the
    unscaling), as before plain steps moved to the pre-step hook; torch's own optimizers are measured before."""
    model = _mlp()
    optimizer = _Unscaling(torch.optim.SGD(model.parameters(), lr=0.01))
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=4, sync_every=3, summary=False)
    x, y = torch.randn(8, 8, generator=torch.Generator().manual_seed(1)), torch.randn(8, 1)
    expected = {}
    for step in range(1, 9):
        optimizer.zero_grad()
        (1024.0 * torch.nn.functional.mse_loss(model(x), y)).backward()
        optimizer.step()
        expected[step] = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in model.parameters()))  # unscaled
    handle.remove()
    assert {step: v["grad_norm"] for step, v in client.points.items()} == pytest.approx(expected, rel=1e-5)
    assert not handle._before and at.watch(model, torch.optim.SGD(model.parameters()), client=client)._before


@pytest.mark.parametrize("kind", ["fused under a GradScaler", "nesterov foreach", "Rprop foreach", "Adam"])
def test_optimizers_that_change_the_gradients_in_their_step_are_measured_after_it(kind: str) -> None:
    """Some of torch's optimizers write into the gradients inside their step: a fused one under a GradScaler
    (scaler.step leaves the unscaling to it) and nesterov SGD's foreach path; a differentiable group may
    (it needs parameters that are not leaves: only its flag is checked here). Their steps are measured
    after the update, as before plain steps moved to the pre-step hook: the values stay those the watch
    always sent. Adam and Rprop leave them alone and are measured before (the same values; Rprop's
    foreach path copies them first)."""
    model = _mlp()
    params = list(model.parameters())
    optimizer = {
        "fused under a GradScaler": lambda: torch.optim.SGD(params, lr=0.01, fused=True),
        "nesterov foreach": lambda: torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, foreach=True),
        "Rprop foreach": lambda: torch.optim.Rprop(params, lr=0.5, foreach=True),  # overshoots: signs flip
        "Adam": lambda: torch.optim.Adam(params, lr=0.01),
    }[kind]()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=kind.startswith("fused"))
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=4, sync_every=3, summary=False)
    assert handle._before is (kind in ("Adam", "Rprop foreach"))
    x, y = torch.randn(8, 8, generator=torch.Generator().manual_seed(1)), torch.randn(8, 1)
    expected = {}
    for step in range(1, 7):
        optimizer.zero_grad()
        scaler.scale(torch.nn.functional.mse_loss(model(x), y)).backward()
        scaler.step(optimizer)
        scaler.update()
        expected[step] = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in params))  # as the step left them
    handle.remove()
    assert {step: v["grad_norm"] for step, v in client.points.items()} == pytest.approx(expected, rel=1e-5)
    if kind == "Adam":
        assert not at._leaves_gradients_alone(torch.optim.SGD(params, lr=0.01, differentiable=True))


def _old_update_ratios(before: list[Any], params: list[Any], layer_of: list[int], layers: int) -> list[float]:
    """The update ratios as the watch computed them at b37389f (copied from its producers/torch.py
    ``_extra`` and ``_per_layer``): torch's foreach ops on the clones, per-layer roots of summed squares."""
    delta = [b.clone() for b in before]
    weights = [p.detach() for p in params]
    torch._foreach_sub_(delta, weights)
    dtype = torch.float32 if params[0].dtype == torch.bfloat16 else None
    norms = torch.stack([*torch._foreach_norm(delta, 2, dtype), *torch._foreach_norm(weights, 2, dtype)])
    host = norms.double().numpy()
    per_layer = [np.sqrt(np.bincount(layer_of, np.square(part), layers)) for part in np.split(host, 2)]
    return (per_layer[0] / per_layer[1]).tolist()


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])  # numpy's path for the first two
def test_update_ratios_match_the_old_torch_computation_on_an_adam_mlp(dtype: str) -> None:
    """Parity of the update norms (numpy on the CPU's float32/float64 path, torch's foreach ops elsewhere)
    with the old computation, copied above, at the same steps: an MLP on 64 features, Adam, 120 steps."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 96), torch.nn.ReLU(), torch.nn.Linear(96, 10)
    ).to(getattr(torch, dtype))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    client = _Recorder()
    handle = at.watch(model, optimizer, client=client, every=40, sync_every=50, summary=False)
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(32, 64, generator=gen).to(model[0].weight.dtype), torch.randint(0, 10, (32,), generator=gen)
    params = list(model.parameters())
    expected = {}
    for step in range(1, 121):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        before = [p.detach().clone() for p in params]
        optimizer.step()
        if step % 40 == 0 or step in (10, 20, 30):
            expected[step] = _old_update_ratios(before, params, [0, 0, 1, 1, 2, 2], 3)
    handle.remove()
    sent = {s: [v[f"update_ratio/{k}"] for k in (0, 2, 4)] for s, v in client.points.items() if "update_ratio/0" in v}
    assert sorted(sent) == sorted(expected)
    for step, ratios in expected.items():
        assert sent[step] == pytest.approx(ratios, rel=1e-5), step
