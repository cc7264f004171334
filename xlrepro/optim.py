"""What both training engines (``xlrepro.train.TorchEngine``, ``xlrepro.ds_engine.DeepSpeedEngine``)
build the same way: AdamW parameter groups, the linear warm-up/decay schedule, and checkpoint
files (written atomically, loaded as tensors and plain values only)."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import torch

from xlrepro.errors import DataFormatError
from xlrepro.runs import tmp_path


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decoupled weight decay, none on biases and LayerNorm weights."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_schedule(warmup_proportion: float, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_proportion`` of the steps, then linear decay to 0."""
    warmup = int(warmup_proportion * total_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return schedule


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then an atomic rename."""
    tmp = tmp_path(path)  # unique to this process: two writers never share a temporary file
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def safe_load(path: Path, what: str = "checkpoint"):
    """``torch.load(path, weights_only=True)``: tensors and plain Python values only, never code.

    A file that needs more (a planted pickle, or a checkpoint of an older xlrepro that pickled
    NumPy objects) is refused with an error naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).split("\n")[0][:300]
        raise DataFormatError(
            path,
            f"refused to load this {what}: it holds more than tensors and plain values "
            f"(loaded with weights_only=True; {reason}). Remove it if you did not write it; "
            "the run then starts this phase again",
        ) from None
