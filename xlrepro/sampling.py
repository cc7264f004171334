"""Data volume and multi-task sampling.

``nested_subset``: the training examples used at a given data volume are a prefix of one
seeded permutation of the full set, so for a fixed seed the subset of N1 examples is contained
in the subset of N2 whenever N1 < N2 (prefix-stable), and the same seed gives the same subset
on every machine. The subset is returned in corpus order, and its sha256 is recorded with the
run (``subset_digest``).

``TaskSampler``: which task the next batch of a multi-task run comes from. Probabilities are
``p_i ∝ n_i ** (1 / T)`` (``proportional``: T = 1; ``temperature``: any T ≥ 1; ``uniform``:
T = ∞), drawn from a generator seeded by the run's seed, so the sequence of tasks is
reproducible and resumable (``state()``/``load_state()``).
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np


def nested_subset(n: int, volume: int | str, seed: int) -> list[int]:
    """Indices (sorted) of the ``volume`` examples used out of ``n``; ``"all"`` keeps every one."""
    if volume == "all":
        return list(range(n))
    if not isinstance(volume, int) or isinstance(volume, bool) or volume < 1:
        raise ValueError(f"volume must be a positive integer or 'all', got {volume!r}")
    if volume > n:
        raise ValueError(f"volume {volume} exceeds the {n} available training examples")
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n)
    return sorted(int(i) for i in perm[:volume])


def subset_digest(guids: list[str]) -> str:
    return hashlib.sha256(json.dumps(list(guids)).encode()).hexdigest()


class TaskSampler:
    METHODS = ("proportional", "temperature", "uniform")

    def __init__(self, sizes: dict[str, int], method: str = "proportional", temperature: float = 1.0, seed: int = 0):
        if method not in self.METHODS:
            raise ValueError(f"sampler method {method!r} is not one of {self.METHODS}")
        if not sizes or any(v <= 0 for v in sizes.values()):
            raise ValueError(f"every task needs at least one training example: {sizes}")
        if method == "temperature" and temperature < 1:
            raise ValueError(f"temperature must be >= 1, got {temperature}")
        self.tasks = list(sizes)
        t = 1.0 if method == "proportional" else (math.inf if method == "uniform" else temperature)
        w = np.array([1.0 if math.isinf(t) else sizes[k] ** (1.0 / t) for k in self.tasks])
        self.probs = w / w.sum()
        self.method, self.temperature = method, t
        self._rng = np.random.default_rng([seed, 0x7A5C])

    def probabilities(self) -> dict[str, float]:
        return {k: float(p) for k, p in zip(self.tasks, self.probs)}

    def next(self) -> str:
        return self.tasks[int(self._rng.choice(len(self.tasks), p=self.probs))]

    def state(self) -> dict:
        return dict(self._rng.bit_generator.state)  # numpy types the state as a Mapping; it is a new dict

    def load_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state


def split_volume(total: int, sizes: dict[str, int]) -> dict[str, int]:
    """A total volume split over tasks in proportion to their sizes (largest remainder, ≥ 1 each)."""
    n = sum(sizes.values())
    if total > n:
        raise ValueError(f"total volume {total} exceeds the {n} available training examples")
    if total < len(sizes):
        raise ValueError(f"total volume {total} is smaller than the number of tasks ({len(sizes)})")
    raw = {k: total * v / n for k, v in sizes.items()}
    out = {k: max(1, int(math.floor(r))) for k, r in raw.items()}
    rest = total - sum(out.values())
    for k in sorted(raw, key=lambda k: (out[k] - raw[k], k))[: max(0, rest)]:
        out[k] += 1
    return out


class MixSampler:
    """With probability ``ratio`` the next micro-batch is MLM; otherwise the task sampler decides."""

    def __init__(self, tasks: TaskSampler | None, ratio: float, seed: int, mlm_task: str = "mlm"):
        self.tasks, self.ratio, self.mlm_task = tasks, ratio, mlm_task
        self._rng = np.random.default_rng([seed, 0x313])
        self.method = f"mlm_mix({ratio})+" + (tasks.method if tasks else "single")

    def next(self) -> str:
        if self._rng.random() < self.ratio:
            return self.mlm_task
        assert self.tasks is not None, "MixSampler without a task sampler needs ratio 1"
        return self.tasks.next()

    def state(self) -> dict:
        return {"mix": self._rng.bit_generator.state, "tasks": self.tasks.state() if self.tasks else None}

    def load_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state["mix"]
        if self.tasks is not None:
            self.tasks.load_state(state["tasks"])
