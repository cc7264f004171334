"""A phase: one kind of run, with its identity (spec), its work, and its compute count.

A ``Phase`` instance stands for one run of a cell (e.g. "the target run of xnli"); the graph
builder (``xlrepro.phases.graph``) asks it for ``spec(ctx, upstream)`` once, keys the ``Node`` by that
spec's hash, and the orchestrator later calls ``run(ctx, node, upstream)`` with the same node: the
spec a run is keyed by is the spec it runs with. ``upstream`` is the ``Node`` whose encoder the
run starts from (None: the configured base model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xlrepro.runs import Run, atomic_write_json


@dataclass
class Node:
    """One run of the graph. ``key``: the sha256 of its spec; ``upstream``: the key of the node whose
    encoder it starts from (None: the base model)."""

    phase: Phase
    spec: dict
    key: str
    upstream: str | None

    @property
    def kind(self) -> str:
        return self.phase.kind

    @property
    def task(self) -> str:
        return self.phase.task

    @property
    def run_dir(self) -> str:
        """Relative to the experiment's output folder (``xlrepro.runs.Run``'s naming)."""
        return f"runs/{self.kind}-{self.task}-{self.key[:12]}"

    def ref(self) -> dict:
        """How a downstream spec names this run."""
        return self.phase.ref(self.key)

    def encoder_dir(self, out: Path) -> Path:
        """The folder of the encoder this run hands on."""
        return Path(out) / self.run_dir / self.phase.handoff

    def tokens(self, cfg) -> float:
        """The run's training tokens (the phase's count; 0 for an evaluation-only run)."""
        return self.phase.tokens(cfg)

    def precision(self, cfg) -> str:
        return self.phase.precision(cfg)

    def state(self, out: Path) -> str:
        d = Path(out) / self.run_dir
        if (d / "done.json").exists():
            return "done"
        if (d / "checkpoint.pt").exists():
            return "resumable"
        return "pending"


@dataclass
class Outcome:
    """What a finished (or skipped) run gives the orchestrator: its ``Run``, and whether its
    results.json holds records of the experiment."""

    run: Run
    records: bool = False
    runs_entry: dict = field(default_factory=dict)


class Phase:
    kind: str = ""
    task: str = ""
    handoff: str = "encoder"  # the folder in the run that the next phase loads
    records = False  # whether the run scores anything (results.json records)

    def spec(self, ctx, upstream: Node | None) -> dict:
        raise NotImplementedError

    def run(self, ctx, node: Node, upstream: Node | None) -> Outcome:
        raise NotImplementedError

    def ref(self, key: str) -> dict:
        return {"kind": self.kind, "run": key}

    def tokens(self, cfg) -> float:
        """Training tokens (upper bound, ``xlrepro.estimate``'s counting); 0 for a run that only evaluates."""
        return 0.0

    def precision(self, cfg) -> str:
        return "fp32"

    def entry(self, run: Run) -> dict:
        """The run's line in results.json's ``runs``."""
        return {"kind": self.kind, "task": self.task, "dir": str(run.dir), **run.summary()}

    # ------------------------------------------------------------------ helpers
    def open_run(self, ctx, node: Node) -> Run:
        return Run(ctx.out, self.kind, self.task, node.spec, keep=ctx.cfg.run_keep())

    @staticmethod
    def upstream_encoder(ctx, upstream: Node | None) -> tuple[Path | None, dict]:
        """(encoder folder or None for the base model, its reference in a spec)."""
        if upstream is None:
            return None, ctx.base_encoder_spec()
        return upstream.encoder_dir(ctx.out), upstream.ref()

    @staticmethod
    def write_results(ctx, run: Run, body: dict) -> None:
        from xlrepro import distributed as dist

        if dist.is_main():
            atomic_write_json(run.dir / "results.json", {**body, "model_identity": ctx.model_identity()})


def train_tokens(cfg, train, data_tasks: list[str], length: int | None = None) -> float:
    """Training tokens of a run that trains ``train`` on ``data_tasks``: ``xlrepro.estimate``'s count
    (its steps x global batch x tokens per example); ``length`` replaces the tokens per example where
    the run's inputs are not the task's sequences (a dual encoder's query + candidate)."""
    from xlrepro.estimate import phase_tokens

    t = phase_tokens(cfg, train, data_tasks)
    return t["tokens"] if length is None else float(t["steps"] * t["global_batch"] * length)
