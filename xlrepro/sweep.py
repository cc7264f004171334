"""An experiment spec as a graph of runs, and the executors that walk it.

Nodes are the runs of each cell's run graph (``xlrepro.phases.graph``: pre-training, intermediate,
chain stages, target, control, the SQuAD and dual encoders of retrieval, retrieval), keyed by the
hash of their resolved spec, the same key a single experiment run gives them. A run that many
cells need (the pre-trained encoder, an intermediate checkpoint used by every target) is one node,
trained once; the nodes run through the orchestrator's ``execute`` (``xlrepro.phases.orchestrator``).
A node's state is its run folder's: ``done`` (skipped), ``resumable`` (a checkpoint), ``pending``.

Executors (no scheduler of our own beyond the dependency walk):

* ``local``: this process runs the nodes in dependency order; with ``gpus=N > 1`` it starts one
  ``python -m xlrepro.sweep`` subprocess per node, at most N at a time, each pinned to one GPU
  through ``CUDA_VISIBLE_DEVICES``.
* ``slurm`` (and ``submitit-local`` / ``submitit-debug`` for testing without a cluster): one
  submitit job per node, submitted when its upstream node has finished. submitit is an optional
  dependency, imported only here and only when chosen (``requirements/cluster.txt``).

Every start, finish, skip and re-seed is appended to ``<out>/sweep-log.jsonl``. A killed sweep
started again skips finished runs and resumes interrupted ones from their checkpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from xlrepro.config import config_hash
from xlrepro.runs import atomic_write_json
from xlrepro.study.spec import Cell, ExperimentSpec, expand, load_spec

EXECUTORS = ("local", "slurm", "submitit-local", "submitit-debug")
COLLAPSE_FORMATS = ("classification", "multiple_choice")


@dataclass
class Node:
    key: str  # full sha256 of the run's resolved spec
    kind: str  # pretrain | intermediate | chain | target | control | squad_mrc | dual_encoder | retrieval
    task: str
    run_dir: str  # relative to the sweep's output folder
    upstream: str | None  # key of the node whose encoder this run starts from
    cells: list = field(default_factory=list)  # indices of the cells that use this run
    phase_node: object = field(default=None, repr=False, compare=False)  # the xlrepro.phases Node (first cell's)

    def state(self, out: Path) -> str:
        d = out / self.run_dir
        if (d / "done.json").exists():
            return "done"
        if (d / "checkpoint.pt").exists():
            return "resumable"
        return "pending"


def run_dir_name(kind: str, task: str, spec: dict) -> str:
    return f"runs/{kind}-{task}-{config_hash(spec)[:12]}"


_WORLDS: dict[str, tuple] = {}


def cell_context(cell: Cell, out: Path, device: str | None = None):
    """A Context whose run specs can be computed: for the smoke world, the world must exist
    (its corpus digest is part of the pre-training run's spec); it is prepared once per world."""
    from xlrepro.config import to_dict
    from xlrepro.phases import Context

    ctx = Context(cell.cfg, out, device=device)
    if cell.cfg.smoke is not None:
        key = config_hash({"out": str(Path(out).resolve()), "smoke": to_dict(cell.cfg.smoke), "seed": ctx.base_seed})
        if key not in _WORLDS or not (Path(_WORLDS[key][0]) / "WORLD.json").exists():
            ctx.prepare()
            _WORLDS[key] = (ctx.data_root, ctx.tokenizer_path)
        ctx.data_root, ctx.tokenizer_path = _WORLDS[key]
    return ctx


def cell_nodes(ctx, reseed_task: str | None = None) -> list:
    """The ``xlrepro.phases`` nodes of one cell's run graph, upstream first (hidden trainings included).
    ``reseed_task``: only the encoder chain and that target (a re-seeded fine-tune)."""
    from xlrepro.phases.graph import build_graph as cell_graph

    if reseed_task is not None:
        return list(cell_graph(ctx, retrieval=[], targets=[reseed_task], controls=[]))
    return list(cell_graph(ctx, baselines=False))  # the spec's own baseline variant is the comparison


class Graph:
    def __init__(
        self,
        spec: ExperimentSpec,
        cells: list[Cell],
        out: Path,
        extra_overrides: list[str],
        spec_ref: str | None = None,
    ):
        self.spec_ref = spec_ref or spec.name  # what a job passes to load_spec: a shipped name or a path
        self.spec, self.cells, self.out, self.extra_overrides = spec, cells, Path(out), list(extra_overrides)
        self.nodes: dict[str, Node] = {}  # insertion order is a dependency order
        self.cell_runs: dict[int, list[str]] = {}
        for cell in cells:
            keys = self._add(cell.index, cell_nodes(cell_context(cell, self.out)))
            self.cell_runs[cell.index] = keys

    def _add(self, cell_index: int, items) -> list[str]:
        keys: list[str] = []
        for pn in items:
            if pn.key not in self.nodes:
                self.nodes[pn.key] = Node(pn.key, pn.kind, pn.task, pn.run_dir, pn.upstream, phase_node=pn)
            if cell_index not in self.nodes[pn.key].cells:
                self.nodes[pn.key].cells.append(cell_index)
            keys.append(pn.key)
        return keys

    def states(self) -> dict[str, str]:
        return {k: n.state(self.out) for k, n in self.nodes.items()}

    def describe(self) -> dict:
        return {
            "spec": self.spec.name,
            "spec_ref": self.spec_ref,
            "result": self.spec.result,
            "kind": self.spec.kind,
            "extra_overrides": self.extra_overrides,
            "smoke_scale": any(c.cfg.smoke is not None for c in self.cells),
            "cells": [
                {
                    "index": c.index,
                    **c.labels,
                    "overrides": c.overrides,
                    "runs": self.cell_runs[c.index],
                    "intermediate": "+".join(c.cfg.intermediate.tasks) or None,
                    **self._study_fields(c),
                }
                for c in self.cells
            ],
            "nodes": {
                k: {"kind": n.kind, "task": n.task, "run_dir": n.run_dir, "upstream": n.upstream, "cells": n.cells}
                for k, n in self.nodes.items()
            },
        }

    @staticmethod
    def _study_fields(c: Cell) -> dict:
        """The scaling study's record of a cell: arm, model selection, overlap/domain, recipe."""
        return {"selection": c.selection, "design": c.design, "recipes": c.recipes}

    def write(self) -> Path:
        path = self.out / f"sweep-{self.spec.name}.json"
        atomic_write_json(path, self.describe())
        return path


def build_graph(spec: ExperimentSpec | str, out: str | Path, extra_overrides: list[str] | tuple = ()) -> Graph:
    ref = spec if isinstance(spec, str) else spec.name
    if isinstance(spec, str):
        spec = load_spec(spec)
    Path(out).mkdir(parents=True, exist_ok=True)
    return Graph(spec, expand(spec, list(extra_overrides)), Path(out), list(extra_overrides), spec_ref=ref)


# ---------------------------------------------------------------------- execution


def log_event(out: Path, event: dict) -> None:
    line = json.dumps({"time": round(time.time(), 3), "pid": os.getpid(), **event}, default=str)
    with open(Path(out) / "sweep-log.jsonl", "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


class Runner:
    """Runs nodes of one graph in this process (one prepared Context per cell, built on first use)."""

    def __init__(self, graph: Graph, device: str | None = None):
        self.graph, self.device = graph, device
        self._ctxs: dict[int, object] = {}

    def context(self, cell: Cell):
        if cell.index not in self._ctxs:
            from xlrepro.phases import Context

            ctx = Context(cell.cfg, self.graph.out, device=self.device)
            ctx.prepare()
            self._ctxs[cell.index] = ctx
        return self._ctxs[cell.index]

    def run(self, key: str) -> str:
        g = self.graph
        node = g.nodes[key]
        if node.state(g.out) == "done":
            log_event(g.out, {"event": "skip", "node": key[:12], "kind": node.kind, "task": node.task})
            if _has_items(node.kind, node.task) and not (g.out / node.run_dir / "items.json").exists():
                # killed between the run's done.json and its derived item scores: derive them, train nothing
                from xlrepro.items import write_items

                write_items(self.context(g.cells[node.cells[0]]), node.task, g.out / node.run_dir)
            if node.kind == "target" and not self._decided(node.cells[0], node.task):
                # killed before the re-seed policy decided on this run: decide now (finished re-seeds are skipped)
                self._collapse_policy(g.cells[node.cells[0]], node, self.context(g.cells[node.cells[0]]))
            return "skipped"
        cell = g.cells[node.cells[0]]
        ctx = self.context(cell)
        self._execute(ctx, node.phase_node, {k: n.phase_node for k, n in g.nodes.items()})
        if node.kind == "target":
            self._collapse_policy(cell, node, ctx)
        return "ran"

    def _execute(self, ctx, pnode, nodes: dict) -> None:
        """Run one ``xlrepro.phases`` node through the orchestrator, with the sweep's provenance, events
        and item-level scores."""
        from xlrepro.phases.orchestrator import execute

        g = self.graph
        kind, task, key = pnode.kind, pnode.task, pnode.key
        if ctx.tokenizer is None:
            ctx.prepare()
        prov = g.out / pnode.run_dir / "provenance.json"  # who runs it: commit, image, hardware, versions (first start)
        if not prov.exists():
            from xlrepro.runs import provenance

            prov.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(prov, provenance(ctx.cfg.seed))
        log_event(g.out, {"event": "start", "node": key[:12], "kind": kind, "task": task, "state": pnode.state(g.out)})
        t0 = time.time()
        outcome = execute(ctx, nodes, pnode)
        if _has_items(kind, task):
            from xlrepro.items import write_items

            write_items(ctx, task, outcome.run.dir)
        log_event(
            g.out,
            {"event": "finish", "node": key[:12], "kind": kind, "task": task, "seconds": round(time.time() - t0, 2)},
        )

    # ------------------------------------------------------------------ re-seed policy
    def _decided(self, cell_index: int, task: str) -> bool:
        path = self.graph.out / "reseeds.jsonl"
        if _task_format(task) not in COLLAPSE_FORMATS or self.graph.spec.max_reseeds == 0:
            return True
        last = None
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                e = json.loads(line) if line.strip() else None
                if e and e["cell"] == cell_index and e["task"] == task:
                    last = e
        return last is not None and last["action"] in ("accept", "give-up")

    def _collapse_policy(self, cell: Cell, node: Node, ctx) -> None:
        """XLM-R Large fine-tunes sometimes collapse (huggingface/transformers #6210, #10588): a
        fine-tune collapsed to the majority class is re-run with seed + 1000*k (stats.reseed_policy),
        at most ``max_reseeds`` times; every decision is logged to
        ``<out>/reseeds.jsonl`` and the report uses the accepted run (or flags a give-up)."""
        from xlrepro import stats
        from xlrepro.items import collapse_check
        from xlrepro.study.spec import load_cell_config

        g = self.graph
        task_format = _task_format(node.task)
        if task_format not in COLLAPSE_FORMATS or g.spec.max_reseeds == 0:
            return
        seeds = [cell.seed]
        run_dir = g.out / node.run_dir
        while True:
            check = collapse_check(run_dir)
            if check is None:
                return
            decision = stats.reseed_decision(seeds, check, g.spec.max_reseeds)
            entry = {
                "cell": cell.index,
                "task": node.task,
                "seeds_tried": list(seeds),
                "run_dir": str(run_dir.relative_to(g.out)),
                "check": check,
                **decision,
            }
            _append_jsonl(g.out / "reseeds.jsonl", entry)
            log_event(
                g.out,
                {
                    "event": "reseed-decision",
                    "node": node.key[:12],
                    "action": decision["action"],
                    "seed": decision["seed"],
                    "next_seed": decision["next_seed"],
                },
            )
            if decision["action"] != "reseed":
                return
            seeds.append(decision["next_seed"])
            over = cell.overrides + [f"seed={decision['next_seed']}", f"base_seed={ctx.base_seed}"]
            cfg = load_cell_config(
                g.spec.config, over, f"{g.spec.name}: re-seed of cell {cell.index}", g.spec.recipe, g.extra_overrides
            )
            rctx = cell_context(
                Cell(-1, cell.variant, cell.volume, decision["next_seed"], over, cfg), g.out, self.device
            )
            items = cell_nodes(rctx, reseed_task=node.task)
            nodes = {pn.key: pn for pn in items}
            for pn in items:
                if pn.state(g.out) != "done":
                    self._execute(rctx, pn, nodes)
            run_dir = g.out / items[-1].run_dir


def _has_items(kind: str, task: str) -> bool:
    """Whether a finished run of this kind gets item-level scores (items.json) for CIs and paired tests."""
    from xlrepro.items import RETRIEVAL_ITEM_TASKS

    return kind in ("target", "control") or (kind == "retrieval" and task in RETRIEVAL_ITEM_TASKS)


def _task_format(task: str) -> str:
    from xlrepro.tasks import get_task

    return get_task(task).format.value


def _append_jsonl(path: Path, obj: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _ready(graph: Graph, key: str, finished: set[str]) -> bool:
    up = graph.nodes[key].upstream
    return up is None or up in finished


def run_local(graph: Graph, device: str | None = None, gpus: int = 1) -> dict:
    """Walk the graph in this process (gpus <= 1) or with one subprocess per node and GPU."""
    graph.write()
    log_event(
        graph.out,
        {"event": "sweep-start", "spec": graph.spec.name, "executor": "local", "gpus": gpus, "nodes": len(graph.nodes)},
    )
    counts = {"ran": 0, "skipped": 0}
    if gpus <= 1:
        runner = Runner(graph, device)
        for key in graph.nodes:
            counts[runner.run(key)] += 1
    else:
        counts = _run_subprocesses(graph, gpus)
    log_event(graph.out, {"event": "sweep-finish", "spec": graph.spec.name, **counts})
    return counts


def _node_command(graph: Graph, key: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "xlrepro.sweep",
        "run-node",
        "--spec",
        graph.spec_ref,
        "--out",
        str(graph.out),
        "--node",
        key,
        *graph.extra_overrides,
    ]


def _run_subprocesses(graph: Graph, gpus: int) -> dict:
    finished = {k for k, s in graph.states().items() if s == "done"}
    counts = {"ran": 0, "skipped": len(finished)}
    waiting = [k for k in graph.nodes if k not in finished]
    running: dict[int, tuple[str, subprocess.Popen]] = {}
    while waiting or running:
        for gpu in range(gpus):
            if gpu in running:
                continue
            ready = next((k for k in waiting if _ready(graph, k, finished)), None)
            if ready is None:
                break
            waiting.remove(ready)
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
            running[gpu] = (ready, subprocess.Popen(_node_command(graph, ready), env=env))
        time.sleep(0.5)
        for gpu, (key, proc) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[gpu]
            if proc.returncode != 0:
                for _, p in running.values():
                    p.wait()
                raise RuntimeError(
                    f"node {graph.nodes[key].run_dir} failed (exit {proc.returncode}); "
                    "finished runs are kept: start the sweep again to resume"
                )
            finished.add(key)
            counts["ran"] += 1
    return counts


def run_submitit(
    graph: Graph,
    executor: str = "slurm",
    folder: str | Path | None = None,
    max_parallel: int = 64,
    poll_s: float = 5.0,
    **params,
) -> dict:
    """One submitit job per node, submitted once its upstream node has finished.

    ``executor``: ``slurm`` (a SLURM cluster), ``submitit-local`` (submitit's LocalExecutor:
    subprocesses on this machine) or ``submitit-debug`` (submitit's DebugExecutor: in this
    process). ``params`` go to ``update_parameters`` (e.g. ``slurm_partition``, ``timeout_min``,
    ``gpus_per_node``). This process only walks the graph: keep it alive (tmux, or a small CPU
    job) until the sweep ends; started again, it skips finished runs.
    """
    try:
        import submitit
    except ImportError:
        raise RuntimeError("the slurm executor needs submitit: pip install -r requirements/cluster.txt") from None
    graph.write()
    folder = Path(folder or graph.out / "submitit")
    cluster = {"slurm": "slurm", "submitit-local": "local", "submitit-debug": "debug"}[executor]
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params = {"timeout_min": 24 * 60, **params}
    if cluster != "slurm":
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    ex.update_parameters(name=f"xlrepro-{graph.spec.name}", **params)
    log_event(
        graph.out, {"event": "sweep-start", "spec": graph.spec.name, "executor": executor, "nodes": len(graph.nodes)}
    )
    finished = {k for k, s in graph.states().items() if s == "done"}
    counts = {"ran": 0, "skipped": len(finished)}
    waiting = [k for k in graph.nodes if k not in finished]
    jobs: dict[str, object] = {}
    spec_ref = graph.spec_ref
    while waiting or jobs:
        for key in [k for k in waiting if _ready(graph, k, finished)]:
            if len(jobs) >= max_parallel:
                break
            waiting.remove(key)
            jobs[key] = ex.submit(run_node, spec_ref, str(graph.out), key, graph.extra_overrides)
        for key, job in list(jobs.items()):
            if job.done():  # type: ignore[attr-defined]
                del jobs[key]
                job.result()  # type: ignore[attr-defined]  # re-raises the node's error
                finished.add(key)
                counts["ran"] += 1
        if jobs:
            time.sleep(poll_s)
    log_event(graph.out, {"event": "sweep-finish", "spec": graph.spec.name, **counts})
    return counts


def run_node(
    spec_ref: str, out: str, key: str, extra_overrides: list[str] | tuple = (), device: str | None = None
) -> str:
    """Run one node of a spec's graph (the unit a cluster job or a GPU subprocess executes)."""
    graph = build_graph(spec_ref, out, extra_overrides)
    if key not in graph.nodes:
        matches = [k for k in graph.nodes if k.startswith(key)]
        if len(matches) != 1:
            raise KeyError(f"no node {key!r} in the graph of {spec_ref}")
        key = matches[0]
    return Runner(graph, device).run(key)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m xlrepro.sweep", description="run one node of a sweep (internal)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("run-node")
    s.add_argument("--spec", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--node", required=True)
    s.add_argument("--device", default=None)
    s.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    print(run_node(a.spec, a.out, a.node, a.overrides, a.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
