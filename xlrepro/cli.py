"""The ``xlrepro`` command line.

xlrepro info [--json]                      build metadata and op availability (and why not)
xlrepro tasks [--json]                     the task registry
xlrepro reproduce <config> [--out DIR] [key.path=value ...]
                                           run an experiment (e.g. ``reproduce smoke``)
xlrepro reproduce <result> [--dry-run] [--executor local|slurm|...] [--out DIR] [key.path=value ...]
                                           run an experiment spec's graph of runs (xlrepro/experiments/)
xlrepro report <dir>                       the reproduction report of the finished runs in <dir>
xlrepro export <dir|run> --out DIR [--task T ...]
                                           fine-tuned models as transformers models, with model cards
xlrepro train <config> [--out DIR] [overrides]
                                           the same, for any config file
xlrepro config list                        the shipped configs and experiment specs
xlrepro config show|validate <config> [overrides]
xlrepro check <config> [--out DIR] [overrides]
                                           preflight (also run first by train/reproduce): every file read,
                                           labels, model, engines, disk; all problems listed, exit 2
xlrepro plan <config> [--gpus-per-node N] [--nodes N] [--card h100] [--mfu 0.25]
                                           per-GPU memory under each ZeRO stage, GPU-hours
xlrepro score --predictions DIR --labels DIR [--version xtreme|xtreme-r] [--mode official|corrected]
xlrepro data status [--json] [--strict]   which task Hub sources are pinned to a commit
xlrepro data pin [--task T ...] [--write] [--repin]
                                           resolve (and record) the commit of each Hub source
xlrepro data prepare [TASK ...|--config NAME] --root DIR [--xtreme DIR] [--mirror FROM=TO]
                                           fetch, verify and lay out every task's files (data.lock)
xlrepro data verify [TASK ...|--config NAME] --root DIR
                                           expected vs found examples, hash status, what is missing
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def _offline_env() -> None:
    # Hugging Face reads these at import time: set them before anything imports transformers.
    if os.environ.get("XLREPRO_OFFLINE", "0") == "1":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def cmd_info(a) -> int:
    from xlrepro.info import main

    print(main(as_json=a.json))
    return 0


def cmd_tasks(a) -> int:
    from xlrepro.tasks import all_tasks

    rows = [task_row(t) for t in all_tasks().values()]
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            n = {s: len(v) for s, v in r["languages"].items()}
            print(
                f"{r['name']:<12} v{r['version']}  {r['format']:<16} {','.join(r['benchmarks']):<22} "
                f"metric={r['metric']:<18} train={'>'.join(r['english_training_chain']) or '-':<16} "
                f"languages/split={n}"
            )
    return 0


def task_row(t) -> dict:
    """One task of ``xlrepro tasks --json``.

    ``languages``: split -> languages over all the task's benchmarks; ``languages_by_benchmark``:
    benchmark -> split -> languages (e.g. PAN-X test: 40 in XTREME, 48 in XTREME-R);
    ``labelled``: split -> whether the official files carry labels (False: XTREME withholds them;
    such a split is exported for the leaderboard, never scored); ``english_training_source``: the
    task whose English train split trains it last; ``english_training_chain``: every English
    training stage in order (XCOPA: socialiqa, copa); ``english_dev_source``: the English dev split
    that early-stops the last stage (None for tasks with no training).
    """
    chain = t.training_chain()
    dev = t.dev_source or (chain[-1] if chain else None)
    return {
        "name": t.name,
        "version": t.version,
        "description": t.description,
        "format": t.format.value,
        "benchmarks": list(t.benchmarks),
        "languages": {s: t.split_languages(s) for s in t.splits},
        "languages_by_benchmark": {b: {s: t.split_languages(s, b) for s in t.splits} for b in t.benchmarks},
        "labelled": {s: t.has_labels(s) for s in t.splits},
        "metric": t.metric,
        "english_training_source": chain[-1] if chain else None,
        "english_training_chain": chain,
        "english_dev_source": dev,
        "hub": {"repo": t.hub.repo, "revision": t.hub.revision, "config": t.hub.config} if t.hub else None,
    }


def cmd_reproduce(a) -> int:
    from xlrepro.config import load_config
    from xlrepro.phases.orchestrator import run_experiment
    from xlrepro.study.spec import is_spec

    if is_spec(a.config):
        return cmd_sweep(a)
    if getattr(a, "executor", None) not in (None, "local"):
        raise _usage(f"--executor applies to experiment specs (xlrepro/experiments/), not to the config {a.config!r}")

    cfg = load_config(a.config, a.overrides)
    out = a.out or os.path.join("results", cfg.name)
    if getattr(a, "dry_run", False):  # every run of the graph, hidden trainings included, with its estimate
        from xlrepro.plan import graph_listing

        print(graph_listing(cfg, out, a.card, a.mfu))
        return 0
    _preflight([cfg], out, a.config)
    results = run_experiment(cfg, out, device=a.device)
    n = len(results["records"])
    from xlrepro import distributed as dist

    if dist.is_main():
        print(
            f"{cfg.name}: {n} result records -> {os.path.join(out, 'results.json')}, "
            f"report -> {os.path.join(out, 'report.md')}"
        )
    return 0


def _preflight(cfgs: list, out: str, where: str):
    """``xlrepro check`` before a run: every problem listed, nothing started (under a launcher every rank checks)."""
    from xlrepro.check import run_preflight

    return run_preflight(cfgs, out, where)


def cmd_check(a) -> int:
    from xlrepro.config import load_config
    from xlrepro.study.spec import is_spec

    if is_spec(a.config):
        from xlrepro import sweep
        from xlrepro.study.spec import load_spec

        out = a.out or os.path.join("results", load_spec(a.config).name)
        cfgs = [c.cfg for c in sweep.build_graph(a.config, out, a.overrides).cells]
    else:
        cfgs = [load_config(a.config, a.overrides, check=False)]  # config problems listed with the data's
        out = a.out or os.path.join("results", cfgs[0].name)
    from xlrepro.check import run_preflight

    pf = run_preflight(cfgs, out, a.config)
    for line in pf.checked:
        print(f"  {line}")
    print(f"{a.config}: ready ({len(cfgs)} config{'s' if len(cfgs) > 1 else ''}, {len(pf.warnings)} warning(s))")
    return 0


def cmd_plan(a) -> int:
    from xlrepro.config import load_config
    from xlrepro.errors import ConfigError
    from xlrepro.plan import plan, render

    examples = {}
    for item in a.examples or []:
        task, _, n = item.partition("=")
        if not n.isdigit():
            raise ConfigError(f"--examples {item!r}: expected TASK=N (English training examples)")
        examples[task] = int(n)
    from xlrepro.estimate import MFU

    p = plan(
        load_config(a.config, a.overrides), a.gpus_per_node, a.nodes, a.card, MFU if a.mfu is None else a.mfu, examples
    )
    print(json.dumps(p, indent=2) if a.json else render(p))
    return 0


def _usage(msg: str):
    from xlrepro.errors import ConfigError

    return ConfigError(msg)


def cmd_sweep(a) -> int:
    from xlrepro import sweep
    from xlrepro.study.spec import load_spec

    spec = load_spec(a.config)
    out = a.out or os.path.join("results", spec.name)
    graph = sweep.build_graph(a.config, out, a.overrides)
    if not a.dry_run:
        _preflight([c.cfg for c in graph.cells], out, a.config)
    if a.dry_run:
        print(dry_run_table(graph, a.card, a.mfu))
        return 0
    if a.executor == "local":
        counts = sweep.run_local(graph, device=a.device, gpus=a.gpus)
    else:
        params = {"timeout_min": a.timeout_min, "gpus_per_node": a.gpus_per_job, "cpus_per_task": a.cpus_per_job}
        if a.slurm_partition:
            params["slurm_partition"] = a.slurm_partition
        counts = sweep.run_submitit(graph, a.executor, max_parallel=a.max_parallel, **params)
    from xlrepro.study.report import build_report

    paths = build_report(out)
    print(
        f"{spec.name}: {counts['ran']} runs executed, {counts['skipped']} already finished; "
        f"report -> {', '.join(str(p) for p in paths)}"
    )
    return 0


def dry_run_table(graph, card: str, mfu: float) -> str:
    from xlrepro.study.design import dry_run_table as table  # cells, arms, and the trainings inside each run

    return table(graph, card, mfu)


def cmd_report(a) -> int:
    from pathlib import Path

    from xlrepro.study.report import build_report

    if not list(Path(a.dir).glob("sweep-*.json")) and (Path(a.dir) / "results.json").exists():
        from xlrepro.report import rebuild_report  # one experiment's folder (reproduce <config>)

        paths = rebuild_report(a.dir)
    else:
        paths = build_report(a.dir)
    for p in paths:
        print(p)
    return 0


def cmd_export(a) -> int:
    from xlrepro.export import export_path

    for p in export_path(a.path, a.out, a.task):
        print(p)
    return 0


def cmd_config(a) -> int:
    import yaml

    from xlrepro.config import load_config, to_dict
    from xlrepro.errors import ConfigError

    if a.action == "list":
        return _config_list()
    if a.config is None:
        raise ConfigError(
            f"`xlrepro config {a.action}` needs a config: a shipped name (`xlrepro config list`) or a YAML file"
        )
    cfg = load_config(a.config, a.overrides)
    if a.action == "show":
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    else:
        print(f"{a.config}: valid")
    return 0


def _config_list() -> int:
    """The shipped configs and experiment specs, one line each: kind, name, description."""
    from xlrepro.config import shipped_configs, shipped_description
    from xlrepro.study.spec import shipped_specs

    rows = [("config", n, p) for n, p in sorted(shipped_configs().items())]
    rows += [("spec", n, p) for n, p in sorted(shipped_specs().items())]
    width = max(len(n) for _, n, _ in rows)
    for kind, name, path in rows:
        print(f"{kind:<6} {name:<{width}}  {shipped_description(path)}")
    return 0


def cmd_score(a) -> int:
    from xlrepro.metrics.evaluate import score_folder
    from xlrepro.tasks import all_tasks

    bench = "xtreme" if a.version == "xtreme" else "xtreme_r"
    task2langs = {}
    for t in all_tasks().values():
        if bench in t.benchmarks:
            task2langs[_xtreme_folder(t.name)] = t.languages(bench)
    print(json.dumps(score_folder(a.predictions, a.labels, a.version, task2langs, mode=a.mode), indent=2))
    return 0


def cmd_data(a) -> int:
    from xlrepro.data import pin as pinmod
    from xlrepro.tasks import all_tasks

    if a.action in ("prepare", "verify"):
        from xlrepro.cli_data import run

        return run(a)
    if a.names:
        raise _usage(f"data {a.action} takes no task names (got {a.names})")
    tasks = all_tasks()
    if a.action == "status":
        rows = pinmod.status(tasks)
        if a.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                state = "-" if r["pinned"] is None else (r["revision"] if r["pinned"] else "UNPINNED")
                print(f"{r['task']:<12} {r['repo'] or '(no Hub source)':<40} {state}")
        unpinned = [r["task"] for r in rows if r["pinned"] is False]
        print(
            f"{len(unpinned)} of {sum(r['pinned'] is not None for r in rows)} Hub sources unpinned"
            + (f": {', '.join(unpinned)}" if unpinned else ""),
            file=sys.stderr,
        )
        return 1 if (a.strict and unpinned) else 0
    if os.environ.get("HF_HUB_OFFLINE", "0") == "1":
        print("xlrepro: error: `data pin` needs the Hub (HF_HUB_OFFLINE=1 is set)", file=sys.stderr)
        return 2
    from huggingface_hub import HfApi

    from xlrepro.errors import XlreproError

    try:
        pins = pinmod.plan(tasks, HfApi(), only=a.task, repin=a.repin)
    except XlreproError:
        raise
    except Exception as e:  # the Hub client's transport errors (httpx / requests) share no base class
        print(
            f"xlrepro: error: the Hub did not answer a revision query ({type(e).__name__}: {e}); "
            "run `xlrepro data pin` where huggingface.co is reachable",
            file=sys.stderr,
        )
        return 2
    for p in pins:
        print(f"{p.task:<12} {p.repo:<40} {p.current or 'UNPINNED'} -> {p.revision} ({p.ref}; {p.note})")
        if a.write:
            pinmod.write_pin(pinmod.task_file(p.task), p)
    if not pins:
        print("nothing to pin (every Hub source has a revision; --repin resolves them again)")
    elif not a.write:
        print("dry run: pass --write to record these revisions in xlrepro/tasks/*.yaml")
    return 0


def _xtreme_folder(task: str) -> str:
    return {"pawsx": "pawsx", "panx": "panx", "bucc2018": "bucc2018", "mewslix": "mewslix"}.get(task, task)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xlrepro", description="Reproduce Phang et al. 2020 and the volume-scaling study.")
    p.add_argument("-v", "--verbose", action="store_true")
    # the `deepspeed` launcher passes --local_rank=N before the command (unless --no_local_rank);
    # LOCAL_RANK in the environment is what xlrepro uses, and the two must agree
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="build metadata and which backend each op runs on")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("tasks", help="list the task registry")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_tasks)

    for name, help_ in (("reproduce", "run a shipped experiment, e.g. 'smoke'"), ("train", "run an experiment config")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("config", help="a shipped config name (see `xlrepro config list`) or a YAML file")
        s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. target.train.lr=2e-5")
        s.add_argument("--out", help="output folder (default: results/<name>)")
        s.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
        s.set_defaults(fn=cmd_reproduce)
        if name == "reproduce":
            from xlrepro.estimate import CARDS, DEFAULT_MFU

            g = s.add_argument_group("experiment specs (xlrepro/experiments/*.yaml)")
            g.add_argument(
                "--dry-run",
                action="store_true",
                help="list the runs (a config's too), their state and a GPU-hour estimate",
            )
            g.add_argument(
                "--executor",
                default="local",
                choices=["local", "slurm", "submitit-local", "submitit-debug"],
                help="local: this machine; slurm: one submitit job per run (pip install -r requirements/cluster.txt)",
            )
            g.add_argument("--gpus", type=int, default=1, help="local: run this many runs at once, one GPU each")
            g.add_argument("--card", default="h100", choices=sorted(CARDS), help="card for the GPU-hour estimate")
            g.add_argument(
                "--mfu", type=float, default=DEFAULT_MFU, help="assumed model-FLOP utilisation for the estimate"
            )
            g.add_argument("--slurm-partition", default=None)
            g.add_argument("--timeout-min", type=int, default=24 * 60, help="slurm: time limit per run (minutes)")
            g.add_argument("--gpus-per-job", type=int, default=1)
            g.add_argument("--cpus-per-job", type=int, default=8)
            g.add_argument("--max-parallel", type=int, default=64, help="slurm: most jobs queued at once")

    s = sub.add_parser("check", help="preflight: data, labels, model, engines and disk, before any training")
    s.add_argument("config", help="a config (name or YAML) or an experiment spec")
    s.add_argument("overrides", nargs="*")
    s.add_argument("--out", help="output folder whose disk is checked (default: results/<name>)")
    s.set_defaults(fn=cmd_check)

    s = sub.add_parser(
        "report", help="build the reproduction report (Markdown + HTML + CSV) from the finished runs in a folder"
    )
    s.add_argument(
        "dir", help="a sweep's output folder (holds sweep-<name>.json) or an experiment's (holds results.json)"
    )
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("export", help="export fine-tuned target models (and retrieval encoders) as transformers models")
    s.add_argument("path", help="an experiment's output folder (every finished target/retrieval run) or one runs/<run>")
    s.add_argument("--out", required=True, help="destination folder (one subfolder per run)")
    s.add_argument("--task", action="append", help="only this task (repeatable)")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("plan", help="per-GPU memory under each ZeRO stage and expected GPU-hours of a config")
    s.add_argument("config")
    s.add_argument("overrides", nargs="*")
    s.add_argument("--gpus-per-node", type=int, default=8)
    s.add_argument("--nodes", type=int, default=1)
    s.add_argument("--card", default="h100", help="h100, h200 or a100 (dense datasheet peak in each phase's precision)")
    s.add_argument("--mfu", type=float, default=None, help="model FLOPs utilisation assumed (default: estimate.MFU)")
    s.add_argument("--examples", action="append", metavar="TASK=N", help="English training examples of a task")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_plan)

    s = sub.add_parser("config", help="list the shipped configs and specs, or show or validate a config")
    s.add_argument("action", choices=["list", "show", "validate"])
    s.add_argument("config", nargs="?", help="show/validate: a shipped config name or a YAML file")
    s.add_argument("overrides", nargs="*")
    s.set_defaults(fn=cmd_config)

    s = sub.add_parser("score", help="score predictions in the XTREME submission layout, as evaluate.py does")
    s.add_argument("--predictions", required=True)
    s.add_argument("--labels", required=True)
    s.add_argument("--version", choices=["xtreme", "xtreme-r"], default="xtreme")
    s.add_argument("--mode", choices=["official", "corrected"], default="official")
    s.set_defaults(fn=cmd_score)

    s = sub.add_parser("data", help="get and check the data: prepare, verify; Hub pinning: status, pin")
    s.add_argument("action", choices=["status", "pin", "prepare", "verify"])
    s.add_argument("names", nargs="*", metavar="TASK", help="prepare/verify: these tasks (default: --config's)")
    from xlrepro.cli_data import add_arguments

    add_arguments(s)
    s.add_argument("--json", action="store_true", help="status: machine-readable")
    s.add_argument("--strict", action="store_true", help="status: exit 1 if any Hub source is unpinned")
    s.add_argument("--task", action="append", help="pin: only this task (repeatable)")
    s.add_argument("--write", action="store_true", help="pin: record the revisions in xlrepro/tasks/*.yaml")
    s.add_argument("--repin", action="store_true", help="pin: resolve pinned sources again too")
    s.set_defaults(fn=cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    _offline_env()
    parser = build_parser()
    a, extra = parser.parse_known_args(argv)
    # overrides may come after options (`reproduce smoke --out D a.b=1`)
    bad = [x for x in extra if "=" not in x or x.startswith("-") or not hasattr(a, "overrides")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    if extra:
        a.overrides = list(a.overrides) + extra
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from xlrepro import distributed as dist
    from xlrepro.errors import XlreproError

    if a.local_rank is not None and a.local_rank != int(os.environ.get("LOCAL_RANK", a.local_rank)):
        parser.error(
            f"--local_rank={a.local_rank} disagrees with LOCAL_RANK={os.environ['LOCAL_RANK']} of the launcher"
        )

    # under a launcher every message names its rank; the launcher stops the other ranks
    who = f" ({dist.describe()})" if dist.launched() and dist.world_size() > 1 else ""
    ok = False
    try:
        code = a.fn(a)
        ok = True
        return code
    except (XlreproError, FileNotFoundError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        for line in getattr(e, "problems", None) or [msg]:  # a config check lists every problem
            print(f"xlrepro: error{who}: {line}", file=sys.stderr)
        return 2
    except BaseException as e:
        if who:
            print(f"xlrepro: {dist.describe()} failed: {type(e).__name__}: {e}", file=sys.stderr)
        raise
    finally:
        dist.shutdown(wait=ok)  # explicit teardown (ZeRO-3 can abort if the group outlives the interpreter)


if __name__ == "__main__":
    sys.exit(main())
