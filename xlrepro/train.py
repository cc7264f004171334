"""The training loop and the engine it drives.

The loop owns data order, accumulation, evaluation, early stopping and checkpoints; the engine
owns the optimiser step. ``TorchEngine`` is plain PyTorch (AdamW, linear warm-up and decay,
gradient clipping); ``xlrepro.ds_engine.DeepSpeedEngine`` implements the same interface on
DeepSpeed (ZeRO 0-3, offload, bf16): ``forward_module``, ``backward``, ``step``, ``lr``,
``has_checkpoint``/``save_checkpoint``/``load_checkpoint``/``remove_checkpoint``,
``full_state_dict`` and ``finish``. ``train.engine`` in the run config picks one.

Determinism and resumption: the order of batches in epoch ``e`` is a permutation drawn from
``(seed, e)`` alone, so a run resumed from a checkpoint (model, optimiser, scheduler, RNG
states, position in the data) continues with exactly the batches an uninterrupted run would
have seen. Losses are means over each micro-batch; each of a step's ``grad_accum`` micro-batches
weighs ``1 / grad_accum`` in the gradient, and the logged loss is the mean over them.

Several ranks (DeepSpeed engine under a launcher): every rank draws the same micro-batches (the
same collation, masking and task sampling); rank ``r`` of ``W`` runs micro-batches ``r, r+W, ...``
of each step, so the global batch is that of the config whatever the world size. The logged loss
is the mean over all ranks' micro-batches (summed across ranks, not averaged per rank), and
only rank 0 writes checkpoints' shared files, the best model and the log.
"""

from __future__ import annotations

import math
import os
import random
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from xlrepro import distributed as dist, tracking
from xlrepro.config import TrainConfig
from xlrepro.ds_engine import DeepSpeedEngine
from xlrepro.errors import XlreproError
from xlrepro.optim import atomic_torch_save, linear_schedule, param_groups, safe_load
from xlrepro.packing import plan_packed_batches
from xlrepro.runs import rewind_log


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TorchEngine:
    """AdamW with decoupled weight decay (none on biases and LayerNorm), linear warm-up then decay.
    One process; checkpoints in ``<run>/checkpoint.pt`` (written atomically)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
        self.model = model
        self.forward_module = model
        self.cfg = cfg
        self.optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, eps=cfg.adam_eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_schedule(cfg.warmup_proportion, total_steps)
        )

    def backward(self, loss: torch.Tensor) -> None:
        """``loss``: the mean over one micro-batch; it weighs ``1 / grad_accum`` in the step."""
        (loss / self.cfg.grad_accum).backward()

    def step(self) -> float:
        """Clip, step, schedule, zero; returns the gradient norm before clipping."""
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def has_checkpoint(self, run_dir: Path) -> bool:
        return (Path(run_dir) / "checkpoint.pt").exists()

    def save_checkpoint(self, run_dir: Path, client_state: dict, rng: dict) -> None:
        atomic_torch_save(
            {"model": self.model.state_dict(), "engine": self.state_dict(), "loop": client_state, "rng": rng},
            Path(run_dir) / "checkpoint.pt",
        )

    def load_checkpoint(self, run_dir: Path) -> tuple[dict, dict] | None:
        if not self.has_checkpoint(run_dir):
            return None
        ckpt = safe_load(Path(run_dir) / "checkpoint.pt")
        self.model.load_state_dict(ckpt["model"])
        self.load_state_dict(ckpt["engine"])
        return ckpt["loop"], ckpt["rng"]

    def remove_checkpoint(self, run_dir: Path) -> None:
        path = Path(run_dir) / "checkpoint.pt"
        if path.exists():
            path.unlink()

    def full_state_dict(self) -> dict:
        return self.model.state_dict()

    def finish(self, state: dict | None = None) -> None:
        if state is not None:
            self.model.load_state_dict(state)


def make_engine(model, cfg: TrainConfig, total_steps: int):
    if cfg.engine == "torch":
        if dist.world_size() > 1:
            raise RuntimeError(
                f"{dist.describe()}: train.engine 'torch' runs in one process; under a launcher "
                "with several ranks use train.engine=deepspeed"
            )
        return TorchEngine(model, cfg, total_steps)
    if cfg.engine == "deepspeed":
        return DeepSpeedEngine(model, cfg, total_steps)
    raise ValueError(f"unknown engine {cfg.engine!r}")


@dataclass
class Stream:
    """Batches of one task: ``step_fn(batch) -> loss`` and the features in a fixed order."""

    task: str
    feats: list
    collate: Callable
    loss_fn: Callable  # (model, Batch) -> loss tensor

    def lengths(self) -> list[int]:
        """Tokens per feature (all choices of a multiple-choice feature together)."""
        out = []
        for f in self.feats:
            ids = f["input_ids"]
            out.append(sum(len(c) for c in ids) if ids and isinstance(ids[0], list) else len(ids))
        return out


@dataclass
class LoopState:
    step: int = 0  # optimiser steps done
    micro: dict = field(default_factory=dict)  # task -> micro-batches consumed from its stream
    sampler: dict | None = None  # the task sampler's RNG state (multi-task)
    best_score: float | None = None
    best_step: int = -1
    evals_since_best: int = 0
    stopped_early: bool = False
    history: list = field(default_factory=list)


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batches_per_epoch(n_feats: int, batch_size: int) -> int:
    return math.ceil(n_feats / batch_size)


def total_steps(cfg: TrainConfig, n_feats: int | list[int], n_batches: int | None = None) -> int:
    """Optimiser steps: ``max_steps``, or ``epochs`` passes over every stream's batches
    (``n_batches``: batches per epoch when they are planned by a token budget)."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    sizes = n_feats if isinstance(n_feats, list) else [n_feats]
    if n_batches is None:
        n_batches = sum(batches_per_epoch(n, cfg.batch_size) for n in sizes)
    return max(1, math.ceil(n_batches * cfg.epochs / cfg.grad_accum))


def _epoch_batches(stream: Stream, cfg: TrainConfig, seed: int, epoch: int) -> list:
    """The batches (lists of feature indices) of one epoch: fixed-size batches of a seeded
    permutation, or, with ``cfg.token_budget``, token-budget batches (first-fit decreasing inside
    shuffled windows, so batch composition stays random; ``xlrepro.packing.plan_packed_batches``)."""
    if cfg.token_budget:
        return plan_packed_batches(stream.lengths(), cfg.token_budget, cfg.packing_window, seed, epoch)
    order = _epoch_order(len(stream.feats), seed, epoch)
    return [order[k : k + cfg.batch_size] for k in range(0, len(order), cfg.batch_size)]


def _micro_batches(stream: Stream, cfg: TrainConfig, seed: int, start_micro: int) -> Iterator:
    # find (epoch, k) of micro-batch number start_micro; every epoch's plan depends on (seed, epoch) only
    epoch, k = 0, start_micro
    plan = _epoch_batches(stream, cfg, seed, epoch)
    if not plan:  # an empty stream has no batch to give: never spin looking for one
        raise XlreproError(f"task {stream.task}: no training examples (an empty training set); nothing to train on")
    while k >= len(plan):
        k -= len(plan)
        epoch += 1
        plan = _epoch_batches(stream, cfg, seed, epoch)
    while True:
        yield stream.collate([stream.feats[i] for i in plan[k]])
        k += 1
        if k == len(plan):
            epoch, k = epoch + 1, 0
            plan = _epoch_batches(stream, cfg, seed, epoch)


def _rng_state() -> dict:
    """torch, Python and NumPy RNG states as tensors and plain values (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = typing.cast(tuple, np.random.get_state())  # the legacy tuple form
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    n = rng["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )


def train(
    model: torch.nn.Module,
    streams: Stream | list[Stream],
    cfg: TrainConfig,
    seed: int,
    run_dir: Path,
    evaluate: Callable[[], float] | None,
    log: Callable[[dict], None],
    desc: str = "train",
    sampler=None,
    keep_checkpoint: bool = False,
) -> LoopState:
    """Train ``model`` on one stream, or on several with ``sampler`` choosing each micro-batch's
    task (multi-task); early-stop on ``evaluate()`` (higher is better) and reload the best.

    Checkpoints go through the engine (``checkpoint.pt``, or ``ds_checkpoint/`` for DeepSpeed) every
    ``cfg.checkpoint_every_steps`` steps and, with ``cfg.checkpoint_every_seconds``, whenever that
    much time has passed since the last one; a present checkpoint is resumed, and the step events
    logged after it in ``<run_dir>/log.jsonl`` are dropped first (each step is logged once).
    ``keep_checkpoint``: also checkpoint the final state and leave it for the caller, who removes it
    once the phase's outputs are committed (``Run.finish``): a process killed in between resumes at
    the end instead of training again. Otherwise the checkpoint is removed on return.
    Each logged step has the mean loss and, per task, the mean loss of that task's micro-batches
    (over all ranks). Only rank 0 calls ``log`` and writes files.
    """
    run_dir = Path(run_dir)
    streams = [streams] if isinstance(streams, Stream) else list(streams)
    by_task = {s.task: s for s in streams}
    if len(streams) > 1 and sampler is None:
        raise ValueError("several streams need a TaskSampler")
    empty = [s.task for s in streams if not s.feats]
    if empty:  # before any engine or loop: an empty stream would never yield a batch
        raise XlreproError(
            f"no training examples for {', '.join(empty)}: the training data is empty "
            "(an empty file, or a header without rows?)"
        )
    n_steps = total_steps(
        cfg,
        [len(s.feats) for s in streams],
        sum(len(_epoch_batches(s, cfg, seed, 0)) for s in streams) if cfg.token_budget else None,
    )
    set_seed(seed)  # before the engine: the same on every rank and in a resumed run
    engine = make_engine(model, cfg, n_steps)
    world, rank, main = dist.world_size(), dist.rank(), dist.is_main()
    log_main = log if main else (lambda event: None)
    log_main = tracking.hook(run_dir, log_main) if main else log_main  # TensorBoard, when asked for
    state = LoopState()
    best_path = run_dir / "best_model.pt"
    resumed = engine.load_checkpoint(run_dir)
    if resumed is not None:
        loop, rng = resumed
        state = LoopState(**loop)
        if sampler is not None and state.sampler is not None:
            sampler.load_state(state.sampler)
        _set_rng_state(rng)
        if main:
            rewind_log(run_dir / "log.jsonl", state.step)  # the replayed steps are logged once, again
        log_main({"event": "resume", "step": state.step, "micro": state.micro})
    saved: dict[str, Any] = {"step": state.step if resumed is not None else None, "time": time.time()}

    def save_checkpoint():
        state.sampler = sampler.state() if sampler is not None else None
        engine.save_checkpoint(run_dir, dict(state.__dict__), _rng_state())
        saved.update(step=state.step, time=time.time())

    def checkpoint_due() -> bool:
        due = state.step % cfg.checkpoint_every_steps == 0
        if not due and cfg.checkpoint_every_seconds is not None:
            due = time.time() - saved["time"] >= cfg.checkpoint_every_seconds
            if world > 1:
                due = bool(dist.broadcast_object(due))  # rank 0's clock decides for every rank
        return due

    def run_eval():
        if evaluate is None:
            return
        model.eval()
        with torch.no_grad():
            score = float(evaluate())  # every rank evaluates (ZeRO-3 gathers are collective)
        model.train()
        score = dist.broadcast_object(score)  # one decision for all ranks
        improved = state.best_score is None or score > state.best_score
        state.history.append({"step": state.step, "score": score})
        log_main({"event": "eval", "step": state.step, "score": score, "best": improved})
        if improved:
            state.best_score, state.best_step, state.evals_since_best = score, state.step, 0
            weights = engine.full_state_dict()
            if main:
                atomic_torch_save(weights, best_path)
            dist.barrier()
        else:
            state.evals_since_best += 1

    model.train()
    # each stream's batch order depends on (seed, task index, epoch) only
    its = {s.task: _micro_batches(s, cfg, seed + 1000 * i, state.micro.get(s.task, 0)) for i, s in enumerate(streams)}
    bar = tqdm(
        total=n_steps,
        initial=state.step,
        desc=desc,
        leave=False,
        mininterval=2.0,
        disable=os.environ.get("XLREPRO_PROGRESS", "1") == "0" or not main,
    )
    t0 = time.time()
    while state.step < n_steps and not state.stopped_early:
        tasks, losses = [], [0.0] * cfg.grad_accum
        t_step, tokens = tracking.step_timer(), 0
        for k in range(cfg.grad_accum):
            task = sampler.next() if sampler is not None else streams[0].task
            batch = next(its[task])  # every rank draws (and collates) every micro-batch: same RNG use
            tokens += tracking.count_tokens(batch)  # all ranks' micro-batches: the global batch's tokens
            tasks.append(task)
            state.micro[task] = state.micro.get(task, 0) + 1
            if k % world != rank:
                continue
            loss = by_task[task].loss_fn(engine.forward_module, batch)
            engine.backward(loss)
            losses[k] = float(loss.detach())
        gnorm = engine.step()
        losses = dist.all_reduce_sum(losses)  # each slot was filled by exactly one rank
        state.step += 1
        bar.update(1)
        event = {
            "event": "train",
            "step": state.step,
            "loss": sum(losses) / len(losses),
            "lr": engine.lr(),
            "grad_norm": gnorm,
            "elapsed_s": round(time.time() - t0, 3),
        }
        event.update(tokens=tokens, step_s=round(tracking.step_timer() - t_step, 4))
        if len(streams) > 1:
            per_task: dict[str, list[float]] = {}
            for t, l in zip(tasks, losses):
                per_task.setdefault(t, []).append(l)
            event["task_loss"] = {k: sum(v) / len(v) for k, v in per_task.items()}
        log_main(event)
        if state.step % cfg.eval_every_steps == 0 or state.step == n_steps:
            run_eval()
            if state.evals_since_best >= cfg.patience:
                state.stopped_early = True
                log_main({"event": "early_stop", "step": state.step, "best_step": state.best_step})
                break
        if state.step < n_steps and checkpoint_due():
            save_checkpoint()
    bar.close()
    if keep_checkpoint and saved["step"] != state.step:
        save_checkpoint()  # the final state: a restart before the caller commits resumes here
    best = None
    if evaluate is not None:
        dist.barrier()
        if best_path.exists():
            best = safe_load(best_path, "best checkpoint")
    engine.finish(best)
    if best is not None:
        log_main({"event": "reload_best", "best_step": state.best_step, "best_score": state.best_score})
    if not keep_checkpoint:
        engine.remove_checkpoint(run_dir)
    tracking.close(log_main)
    return state
