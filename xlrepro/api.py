"""The Python API for notebooks: configs, one phase or a whole experiment, results as records or a DataFrame.

    import xlrepro
    cfg = xlrepro.load_config("smoke", {"target.tasks": ["xnli"], "pretrain.steps": 20})
    res = xlrepro.run_experiment(cfg, out="results/nb")     # every phase; finished runs are skipped
    res.frame()                                             # pandas DataFrame, one row per score
    xlrepro.run_phase(cfg, "target", task="xnli", out="results/nb").records
    xlrepro.load_results("results/nb").records              # read back later, no training

The functions are thin: the same run graph and orchestrator (``xlrepro.phases``) and the same run
folders as the command line, so a notebook and ``xlrepro reproduce`` share finished runs. Rows have
the columns of ``results.csv``
(``xlrepro.report.CSV_COLUMNS``). pandas is imported only by ``Results.frame``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from xlrepro.errors import ConfigError

PHASES = ("pretrain", "intermediate", "target", "control", "retrieval")


def load_config(name_or_path: str, overrides: dict | list | tuple | None = None):
    """An ``ExperimentConfig`` from a shipped name or a YAML file, with overrides given as
    ``{"target.train.lr": 2e-5, ...}`` (Python values) or ``["target.train.lr=2e-5", ...]`` (as on the command line)."""
    from xlrepro.config import load_config as _load

    if isinstance(overrides, dict):
        overrides = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]  # JSON is YAML: values keep their type
    return _load(name_or_path, list(overrides or ()))


@dataclass
class Results:
    """Scores of an experiment output folder (or of the runs one call produced)."""

    out: Path
    records: list = field(
        default_factory=list
    )  # results.json-style records (task, language, split, metric, value, ...)
    runs: dict = field(default_factory=dict)  # run hash -> {kind, task, dir, ...}
    experiment: str | None = None
    config_hash: str | None = None
    seed: int | None = None

    def rows(self) -> list[dict]:
        """One flat dict per score, with the columns of ``results.csv``."""
        from xlrepro.report import experiment_csv_rows

        return experiment_csv_rows(
            {
                "records": self.records,
                "runs": self.runs,
                "experiment": self.experiment,
                "config_hash": self.config_hash,
                "seed": self.seed,
            }
        )

    def frame(self):
        """The rows as a ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ConfigError(
                "Results.frame() needs pandas (pip install pandas); Results.rows() gives the same rows as plain dicts"
            ) from None
        from xlrepro.report import CSV_COLUMNS

        return pd.DataFrame(self.rows(), columns=CSV_COLUMNS)


def _results(got, out, cfg, only_kind: str | None = None, task: str | None = None) -> Results:
    from xlrepro import languages as langtab
    from xlrepro.config import config_hash

    records = []
    for r in got.records:
        if (only_kind is None or r["phase"] == only_kind) and (task is None or r["task"] == task):
            try:
                group = langtab.get(r["language"]).resource_group
            except KeyError:
                group = None
            records.append({**r, "resource_group": group})
    runs = {
        h: v
        for h, v in got.runs.items()
        if only_kind is None or (v.get("kind") == only_kind and (task is None or v.get("task") == task))
    }
    return Results(Path(out), records, runs, cfg.name, config_hash(cfg), cfg.seed)


def run_experiment(cfg, out: str | Path | None = None, device: str | None = None) -> Results:
    """Every phase of ``cfg`` (as ``xlrepro reproduce``): report.md, results.csv and results.json in ``out``."""
    from xlrepro.phases.orchestrator import run_experiment as run

    if isinstance(cfg, str):
        cfg = load_config(cfg)
    out = Path(out) if out is not None else Path("results") / cfg.name
    run(cfg, out, device=device)
    return load_results(out)


def run_phase(
    cfg, phase: str, task: str | None = None, out: str | Path | None = None, device: str | None = None
) -> Results:
    """One phase: ``pretrain``, ``intermediate``, or ``target``/``control``/``retrieval`` of one ``task``.
    The phases it starts from run first (or are skipped when finished); the result holds this phase's
    runs and records only. Nothing is written to the experiment's results.json or report."""
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    if phase not in PHASES:
        raise ConfigError(f"run_phase: phase {phase!r} is not one of {list(PHASES)}")
    if phase in ("target", "control", "retrieval") and not task:
        raise ConfigError(f"run_phase: phase {phase!r} needs task=...")
    from xlrepro.tasks import all_tasks

    if task is not None and task not in all_tasks():
        from xlrepro.errors import did_you_mean

        raise ConfigError(f"run_phase: unknown task {task!r}{did_you_mean(task, all_tasks())}")
    from xlrepro.phases.graph import RunGraph, encoder_nodes, retrieval_nodes, target_nodes
    from xlrepro.phases.orchestrator import run_graph, start

    out = out if out is not None else Path("results") / cfg.name
    ctx = start(cfg, out, device)
    graph = RunGraph(ctx)
    last = encoder_nodes(graph)  # the phases it starts from run first (skipped when finished)
    if phase == "retrieval":
        assert task is not None  # checked above
        last = retrieval_nodes(graph, task, last)
    elif phase in ("target", "control"):
        assert task is not None  # checked above
        last = target_nodes(graph, task, last, control=phase == "control")
    elif last is not None and last.kind != phase:  # pretrain asked for, the intermediate node is the last
        last = graph.upstream(last)
    got = run_graph(ctx, graph, graph.ancestors(last) if last is not None else [])
    return _results(got, out, cfg, phase, task if phase in ("target", "control", "retrieval") else None)


def load_results(out: str | Path) -> Results:
    """The results of a finished ``xlrepro reproduce``/``run_experiment`` folder (its results.json)."""
    path = Path(out) / "results.json"
    if not path.exists():
        raise ConfigError(f"{path}: missing (run the experiment first: xlrepro.run_experiment or xlrepro reproduce)")
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    return Results(
        Path(out), res["records"], res.get("runs", {}), res.get("experiment"), res.get("config_hash"), res.get("seed")
    )


def export_models(path: str | Path, out: str | Path, tasks: list[str] | None = None) -> list[Path]:
    """``xlrepro export``: fine-tuned models of an output folder (or one run) as transformers models."""
    from xlrepro.export import export_path

    return export_path(path, out, tasks)
