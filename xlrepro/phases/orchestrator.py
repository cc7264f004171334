"""The one orchestrator: run a graph's nodes, gather their records, finish the experiment folder.

``xlrepro reproduce <config>``, ``xlrepro.api`` and the sweep executors (``xlrepro.sweep``) all run
nodes through ``execute``. A finished run is skipped, an interrupted one resumes from its
checkpoint (``xlrepro.runs.Run``). Under a launcher (``torchrun``/``deepspeed``) every rank walks
the graph in lockstep; rank 0 alone writes files.
"""

from __future__ import annotations

import json
from pathlib import Path

from xlrepro import distributed as dist, languages as langtab
from xlrepro.config import ExperimentConfig, config_hash, to_dict
from xlrepro.phases.base import Node, Outcome
from xlrepro.phases.context import METRIC_MODE, Context
from xlrepro.phases.graph import RunGraph, build_graph
from xlrepro.runs import FolderLock, atomic_write_json, atomic_write_text, provenance


def execute(ctx: Context, graph_nodes: dict[str, Node], node: Node) -> Outcome:
    """Run (or skip, when finished) one node; its upstream must have finished."""
    up = graph_nodes[node.upstream] if node.upstream is not None else None
    if up is not None and up.state(ctx.out) != "done":
        raise RuntimeError(f"node {node.run_dir}: upstream {up.run_dir} has not finished")
    return node.phase.run(ctx, node, up)


class Collected:
    """Records, withheld splits and the run table of the nodes run so far (results.json's body)."""

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        self.records: list[dict] = []
        self.withheld: list[dict] = []  # splits exported but not scored (labels withheld), for the report
        self.runs: dict[str, dict] = {}

    def add(self, node: Node, outcome: Outcome) -> None:
        run = outcome.run
        if outcome.records:
            res = json.loads((run.dir / "results.json").read_text())
            self.withheld += res.get("withheld", [])
            inter = None if node.kind == "baseline" else "+".join(self.cfg.intermediate.tasks) or None
            for rec in res["records"]:
                self.records.append(
                    {
                        **rec,
                        "phase": node.kind,
                        "intermediate": inter,
                        "control": node.kind == "control",
                        "run": run.hash[:12],
                    }
                )
        self.runs[run.hash] = node.phase.entry(run)


def run_graph(ctx: Context, graph: RunGraph, nodes: list[Node] | None = None) -> Collected:
    """Run ``nodes`` (default: all) of ``graph`` in order; returns what they gave."""
    got = Collected(ctx.cfg)
    for node in graph if nodes is None else nodes:
        got.add(node, execute(ctx, graph.nodes, node))
    return got


def start(cfg: ExperimentConfig, out: str | Path, device: str | None = None) -> Context:
    """A prepared context (smoke world, tokenizer) with the fine-tuning seed set."""
    from xlrepro.train import set_seed

    ctx = Context(cfg, out, device=device)
    ctx.prepare()
    set_seed(cfg.seed)
    return ctx


def run_experiment(cfg: ExperimentConfig, out: str | Path, device: str | None = None) -> dict:
    """Every run of ``cfg``'s graph, then the finishing step; returns results.json's content."""
    from xlrepro.train import set_seed

    ctx = Context(cfg, out, device=device)
    ctx.prepare()
    if dist.is_main():
        atomic_write_text(ctx.out / "config.json", json.dumps(to_dict(cfg), indent=2) + "\n")
    set_seed(cfg.seed)
    got = run_graph(ctx, build_graph(ctx))
    # Two processes may finish one experiment folder at once (each trained nothing the other had
    # not): the submission, report and export are rebuilt by one of them at a time.
    if not dist.is_main():
        return finish(ctx, got)
    with FolderLock(ctx.out, what="experiment folder (finishing)", name=".finish.lock"):
        return finish(ctx, got)


def assemble_submission(ctx: Context, got: Collected) -> None:
    """``<out>/submission/<task>/test-<lang>.<ext>``: the test predictions of this experiment's
    runs (target, retrieval; not the controls), in the layout ``xlrepro score`` and the
    leaderboard read, and ``MANIFEST.json`` naming the run of each file and whether the split
    was scored here (False: labels withheld, exported only). Rebuilt each time: files the
    manifest does not list do not stay (``xlrepro.submission.assemble_submission``)."""
    from xlrepro.submission import assemble_submission as assemble

    if not dist.is_main():
        return
    scored = {(r["task"], r["language"]) for r in got.records if r["split"] == "test" and not r.get("control")}
    sources = [
        (info["task"], h[:12], Path(info["dir"]) / "predictions" / info["task"])
        for h, info in sorted(got.runs.items(), key=lambda kv: (kv[1].get("task", ""), kv[0]))
        if info["kind"] not in ("control", "baseline") and "task" in info
    ]  # all but controls and baselines
    assemble(ctx.out / "submission", sources, scored)


def finish(ctx: Context, got: Collected) -> dict:
    """Submission, results.json, report and (``export.at_end``) the exported models."""
    cfg = ctx.cfg
    assemble_submission(ctx, got)
    if dist.is_main():  # item scores of the control tasks' runs: the report pairs intermediate and baseline
        from xlrepro.items import write_items

        for info in got.runs.values():
            if info["kind"] in ("target", "baseline") and info.get("task") in cfg.controls:
                write_items(ctx, info["task"], Path(info["dir"]))
    results = {
        "experiment": cfg.name,
        "config_hash": config_hash(cfg),
        "config": to_dict(cfg),  # the resolved config (also in config.json; each run's spec in runs/*/spec.json)
        "seed": cfg.seed,
        "smoke_scale": cfg.smoke is not None,
        "metric_mode": METRIC_MODE,
        "model_identity": ctx.model_identity(),
        "provenance": provenance(cfg.seed),
        "records": [{**r, "resource_group": langtab.get(r["language"]).resource_group} for r in got.records],
        "runs": got.runs,
        "withheld": got.withheld,
    }
    if dist.is_main():
        atomic_write_json(ctx.out / "results.json", results)
        from xlrepro.report import write_report

        write_report(results, ctx.out)
        if cfg.export.at_end:  # the fine-tuned models as transformers models (xlrepro.export)
            from xlrepro.export import export_experiment

            export_experiment(ctx.out, Path(cfg.export.dir) if cfg.export.dir else ctx.out / "export", allow_empty=True)
    return results
