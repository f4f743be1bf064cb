"""PyTorch training telemetry: ``handle = aitrace.torch.watch(model, optimizer, client=client)``.

Per optimizer step (or, without an optimizer, per backward pass) one ``client.metric`` call carries:

- ``grad_norm``: the global L2 norm of all gradients (as the optimizer sees them: after any clipping);
- ``lr`` (the first param group) and ``lr/<group>`` for every group when there are several;
- ``grad_nonfinite``: how many parameters have a NaN or Inf gradient (0 on a healthy step).

Every ``every`` steps the same call also carries ``grad_norm/<layer>`` and ``update_ratio/<layer>``
(norm of the parameter update over the norm of the weights; needs one copy of the parameters on
that step), and with ``activations=True`` ``activation_nonfinite`` (NaN/Inf module outputs,
checked by forward hooks on that step only). A non-finite gradient or activation also sends an
error log naming the first offending layer, once per run of bad steps: for gradients the first
in backward order (the last in module order, where a NaN born inside backward begins), for
activations the first in forward order.

Norms cost one ``torch._foreach_norm`` over the gradients per step, kept on the device; every
``sync_every`` steps (default 100) or ``sync_interval_s`` (default 1 s), whichever comes first,
they are read back in one sync and sent, one ``client.metric`` call per step with its own step
number, so the exporter wakes (and a Kafka record leaves) once for the lot: a record costs the
client about a millisecond of CPU, a step of a small model less than that. The costly parts
only run every ``every`` steps. The hooks never raise into training: a failure is
logged once on the ``aitrace.torch`` logger and the step goes on.

At start a model summary (layer table, parameter counts, trainable vs frozen) with the seed,
RNG state digest, devices, torch version and git commit is sent as an info log of logger
``aitrace.torch`` (``event="model_summary"``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised by a test that hides torch
    raise ImportError("aitrace.torch needs PyTorch: pip install 'aitrace[torch]'") from exc

log = logging.getLogger("aitrace.torch")

__all__ = ["WatchHandle", "model_summary", "watch"]

MAX_SUMMARY_LAYERS = 200


def _layer_of(param_name: str, root: str = "") -> str:
    """The module owning a parameter (``encoder.0.weight`` -> ``encoder.0``); the model's own are ``root``."""
    return param_name.rpartition(".")[0] or root


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2, cwd=os.getcwd(), check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def model_summary(model: torch.nn.Module) -> dict[str, Any]:
    """Layer table (leaf modules with parameters), parameter counts, devices, seed and versions."""
    layers = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        count = sum(p.numel() for p in own)
        trainable = sum(p.numel() for p in own if p.requires_grad)
        layers.append(
            {
                "name": name or type(model).__name__,
                "type": type(module).__name__,
                "params": count,
                "trainable": trainable,
            }
        )
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    devices = sorted({str(p.device) for p in params})
    rng = torch.random.get_rng_state().numpy().tobytes()
    summary: dict[str, Any] = {
        "event": "model_summary",
        "model": type(model).__name__,
        "total_params": total,
        "trainable_params": trainable,
        "frozen_params": total - trainable,
        "layer_count": len(layers),
        "layers": layers[:MAX_SUMMARY_LAYERS],
        "layers_truncated": len(layers) > MAX_SUMMARY_LAYERS,
        "seed": torch.initial_seed(),
        "rng_state_sha256": hashlib.sha256(rng).hexdigest(),
        "devices": devices,
        "dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in params}),
        "torch_version": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "git_commit": _git_commit(),
    }
    if torch.cuda.is_available():
        summary["cuda_device"] = torch.cuda.get_device_name(0)
    return summary


def _summary_text(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['model']}: {summary['total_params']:,} parameters "
        f"({summary['trainable_params']:,} trainable, {summary['frozen_params']:,} frozen)"
    ]
    for layer in summary["layers"][:20]:
        lines.append(f"  {layer['name']:<32} {layer['type']:<16} {layer['params']:>12,}")
    if summary["layer_count"] > 20:
        lines.append(f"  ... {summary['layer_count'] - 20} more layers")
    return "\n".join(lines)


class WatchHandle:
    """What :func:`watch` returns: ``.step`` (steps seen so far) and ``.remove()`` (detach every hook)."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        client: Any,
        every: int,
        activations: bool,
        update_ratios: bool,
        sync_every: int = 1,
        sync_interval_s: float = 0.0,
    ) -> None:
        self.sync_every = sync_every
        self.sync_interval_s = sync_interval_s
        self._last_sync = time.monotonic()
        self.model = model
        self.optimizer = optimizer
        self.client = client
        self.every = every
        self.step = 0
        self._update_ratios = update_ratios
        self._activations = activations
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._all = list(range(len(self._params)))
        self._one_device = len({p.device for p in self._params}) <= 1
        layers: dict[str, int] = {}
        self._root = type(model).__name__
        self._layer_index = [layers.setdefault(_layer_of(n, self._root), len(layers)) for n in self._names]
        self._layers = list(layers)
        self._snapshot: list[torch.Tensor] | None = None
        self._snapshot_step = -1
        self._bad_grads = False
        self._bad_acts = False
        self._failed = False
        self._probe = False
        self._acts: list[tuple[str, torch.Tensor]] = []
        self._hooks: list[Any] = []
        self._queued = False
        self._pending: list[tuple[Any, ...]] = []
        if optimizer is not None:
            self._hooks.append(optimizer.register_step_pre_hook(self._pre_step))
            self._hooks.append(optimizer.register_step_post_hook(self._post_step))
        else:
            for p in self._params:
                self._hooks.append(p.register_post_accumulate_grad_hook(self._on_grad))
        if activations:
            for name, module in model.named_modules():
                if not any(True for _ in module.children()):  # leaf modules only
                    self._hooks.append(module.register_forward_hook(self._forward_hook(name or type(model).__name__)))
            self._probe = self._costly(1)

    # -- hooks

    def _costly(self, step: int) -> bool:
        return step % self.every == 0

    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._update_ratios and self._costly(self.step + 1):
            self._take_snapshot(self.step + 1)

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._end_of_step()

    def _on_grad(self, param: torch.Tensor) -> None:
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._end_of_backward)

    def _end_of_backward(self) -> None:
        self._queued = False
        self._end_of_step()
        # Without an optimizer the update happens between two backward passes: copy the weights
        # now to compare them at the next costly step.
        if self._update_ratios and self.optimizer is None and self._costly(self.step + 1):
            self._take_snapshot(self.step + 1)

    def _forward_hook(self, name: str) -> Callable[..., None]:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            if self._probe and isinstance(output, torch.Tensor) and output.is_floating_point():
                self._acts.append((name, torch.isfinite(output).all()))

        return hook

    def _take_snapshot(self, for_step: int) -> None:
        try:
            with torch.no_grad():
                self._snapshot = [p.detach().clone() for p in self._params]
            self._snapshot_step = for_step
        except Exception:
            self._fail("snapshot")

    def _end_of_step(self) -> None:
        self.step += 1
        try:
            self._report(self.step)
        except Exception:
            self._fail("report")
        finally:
            self._acts = []
            self._probe = self._activations and bool(self._hooks) and self._costly(self.step + 1)

    def _fail(self, where: str) -> None:
        if not self._failed:
            self._failed = True
            log.exception("aitrace.torch: %s failed; training goes on (further failures are not logged)", where)

    # -- the measurement

    def _report(self, step: int) -> None:
        """Queue this step's measurement as device tensors (no sync); publish every ``sync_every`` steps."""
        grads = [p.grad for p in self._params]
        if any(g is None for g in grads):  # unused parameters this step (not `None in`: Tensor.__eq__)
            present = [i for i, g in enumerate(grads) if g is not None]
            grads = [grads[i] for i in present]
        else:
            present = self._all
        pieces: list[torch.Tensor] = []
        if grads:
            norms = torch._foreach_norm(grads)
            pieces.append(torch.stack(norms) if self._one_device else _stack(norms))
        ratios = False
        if self._costly(step) and self._snapshot is not None and self._snapshot_step == step:
            with torch.no_grad():
                weights = [p.detach() for p in self._params]
                pieces.append(_stack(torch._foreach_norm(torch._foreach_sub(weights, self._snapshot))))
                pieces.append(_stack(torch._foreach_norm(weights)))
            self._snapshot = None
            ratios = True
        acts = [name for name, _ in self._acts]
        if acts:
            pieces.append(torch.stack([ok for _, ok in self._acts]))
        flat = None
        if len(pieces) == 1:
            flat = pieces[0]
        elif pieces:
            device = pieces[0].device
            flat = torch.cat([x.detach().to(device, torch.float32) for x in pieces])
        lrs = [float(g.get("lr", math.nan)) for g in self.optimizer.param_groups] if self.optimizer is not None else []
        self._pending.append((step, present, ratios, acts, lrs, flat))
        if len(self._pending) >= self.sync_every or time.monotonic() - self._last_sync >= self.sync_interval_s:
            self.flush()

    def flush(self) -> None:
        """Read the queued steps off the device (one sync) and send one ``client.metric`` per step."""
        pending, self._pending = self._pending, []
        self._last_sync = time.monotonic()
        if not pending:
            return
        tensors = [p[-1] for p in pending if p[-1] is not None]
        if tensors:
            device = tensors[0].device
            flat = torch.cat([t.to(device, torch.float32) for t in tensors]).tolist()  # the one sync
        offset = 0
        for step, present, ratios, acts, lrs, tensor in pending:
            n = 0 if tensor is None else tensor.numel()
            self._publish(step, present, ratios, acts, lrs, flat[offset : offset + n] if n else [])
            offset += n

    def _publish(
        self, step: int, present: list[int], ratios: bool, acts: list[str], lrs: list[float], flat: list[float]
    ) -> None:
        costly = self._costly(step)
        norms = flat[: len(present)]
        values: dict[str, Any] = {"grad_norm": math.sqrt(sum(v * v for v in norms))}
        if lrs:
            values["lr"] = lrs[0]
            if len(lrs) > 1:
                for i, (group, lr) in enumerate(zip(self.optimizer.param_groups, lrs, strict=False)):
                    values[f"lr/{group.get('name', i)}"] = lr
        bad = [self._names[present[j]] for j, v in enumerate(norms) if not math.isfinite(v)]
        values["grad_nonfinite"] = len(bad)
        if costly and present:
            sq = [0.0] * len(self._layers)
            for j, v in enumerate(norms):
                sq[self._layer_index[present[j]]] += v * v
            for k in sorted({self._layer_index[i] for i in present}):
                values[f"grad_norm/{self._layers[k]}"] = math.sqrt(sq[k])
        if ratios:
            n = len(self._params)
            at = len(present)
            upd, wts = [0.0] * len(self._layers), [0.0] * len(self._layers)
            for i in range(n):
                upd[self._layer_index[i]] += flat[at + i] ** 2
                wts[self._layer_index[i]] += flat[at + n + i] ** 2
            for k, layer in enumerate(self._layers):
                values[f"update_ratio/{layer}"] = math.sqrt(upd[k]) / math.sqrt(wts[k]) if wts[k] > 0 else math.nan
        bad_acts: list[str] = []
        if acts:
            ok = flat[len(flat) - len(acts) :]
            bad_acts = [name for name, v in zip(acts, ok, strict=True) if v < 0.5]
            values["activation_nonfinite"] = len(bad_acts)
        self.client.metric(values, step=step)
        self._alert(step, bad, bad_acts)

    def _alert(self, step: int, bad: list[str], bad_acts: list[str]) -> None:
        if bad and not self._bad_grads:
            # Backward runs from the output: the last bad parameter in module order is where it began.
            order = {n: i for i, n in enumerate(self._names)}
            first = max(bad, key=order.__getitem__)
            layer = _layer_of(first, self._root)
            self.client.log(
                "error",
                f"non-finite gradient at step {step}: first (in backward order) in layer {layer} ({first})",
                logger="aitrace.torch",
                event="nonfinite_gradient",
                step=step,
                layer=layer,
                parameter=first,
                parameters=bad[:50],
                count=len(bad),
            )
        self._bad_grads = bool(bad)
        if bad_acts and not self._bad_acts:
            self.client.log(
                "error",
                f"non-finite activation at step {step}: first in layer {bad_acts[0]}",
                logger="aitrace.torch",
                event="nonfinite_activation",
                step=step,
                layer=bad_acts[0],
                layers=bad_acts[:50],
                count=len(bad_acts),
            )
        self._bad_acts = bool(bad_acts)

    def remove(self) -> None:
        """Send the queued steps, then detach every hook; later steps are not reported. Idempotent."""
        try:
            self.flush()
        except Exception:
            self._fail("flush")
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._probe = False
        self._snapshot = None


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    device = tensors[0].device
    if any(t.device != device for t in tensors):
        tensors = [t.to(device) for t in tensors]
    return torch.stack(tensors)


def watch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    client: Any = None,
    every: int = 100,
    activations: bool = False,
    update_ratios: bool = True,
    summary: bool = True,
    sync_every: int = 100,
    sync_interval_s: float = 1.0,
) -> WatchHandle:
    """Report gradients, learning rates, update ratios and NaN/Inf of ``model`` through ``client``.

    ``client`` defaults to the one :func:`aitrace.init` made last. With ``optimizer`` the hooks
    sit on its ``step`` (one report per step); without, on the end of each backward pass.
    ``every`` spaces the costly parts (per-layer norms, update ratios, activation checks).
    Up to ``sync_every`` steps, and at most ``sync_interval_s`` seconds, are measured on the device,
    then read back in one sync and sent as one ``client.metric`` call per step (their own step
    numbers): a NaN is reported at most that late; ``handle.flush()`` (or ``remove()``) sends what
    is queued. ``sync_every=1`` reads back every step.
    """
    if every < 1 or sync_every < 1:
        raise ValueError(f"every and sync_every must be at least 1, got {every!r}, {sync_every!r}")
    if client is None:
        from aitrace.producers.client import get_client

        client = get_client()
        if client is None:
            raise RuntimeError("aitrace.torch.watch: no client; call aitrace.init(...) first or pass client=")
    handle = WatchHandle(model, optimizer, client, every, activations, update_ratios, sync_every, sync_interval_s)
    if summary:
        try:
            info = model_summary(model)
            client.log("info", _summary_text(info), logger="aitrace.torch", **info)
        except Exception:
            log.exception("aitrace.torch: model summary failed")
    return handle
