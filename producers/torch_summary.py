"""What ``aitrace.torch.watch`` reports once at start: the model's layer table and parameter
counts (like Keras' ``model.summary()``), seed and RNG state, devices, library versions, git commit."""

from __future__ import annotations

import hashlib
import os
import subprocess
from typing import Any

import torch

MAX_SUMMARY_LAYERS = 200


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


def summary_text(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['model']}: {summary['total_params']:,} parameters "
        f"({summary['trainable_params']:,} trainable, {summary['frozen_params']:,} frozen)"
    ]
    for layer in summary["layers"][:20]:
        lines.append(f"  {layer['name']:<32} {layer['type']:<16} {layer['params']:>12,}")
    if summary["layer_count"] > 20:
        lines.append(f"  ... {summary['layer_count'] - 20} more layers")
    return "\n".join(lines)
