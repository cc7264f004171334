"""The ``xlrepro`` command line.

  xlrepro info [--json]                      build metadata and op availability (and why not)
  xlrepro tasks [--json]                     the task registry
  xlrepro reproduce <config> [--out DIR] [key.path=value ...]
                                             run an experiment (e.g. ``reproduce smoke``)
  xlrepro train <config> [--out DIR] [overrides]
                                             the same, for any config file
  xlrepro config show|validate <config> [overrides]
  xlrepro plan <config> [--gpus-per-node N] [--nodes N] [--card h100] [--mfu 0.35]
                                             per-GPU memory under each ZeRO stage, GPU-hours
  xlrepro score --predictions DIR --labels DIR [--version xtreme|xtreme-r] [--mode official|corrected]
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

    rows = []
    for t in all_tasks().values():
        rows.append({"name": t.name, "version": t.version, "format": t.format.value, "benchmarks": list(t.benchmarks),
                     "languages": {s: t.split_languages(s) for s in t.splits}, "metric": t.metric,
                     "english_training_source": t.train_source or (t.name if "train" in t.splits else None),
                     "hub": {"repo": t.hub.repo, "revision": t.hub.revision} if t.hub else None})
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            n = {s: len(v) for s, v in r["languages"].items()}
            print(f"{r['name']:<12} v{r['version']}  {r['format']:<16} {','.join(r['benchmarks']):<22} "
                  f"metric={r['metric']:<18} train={r['english_training_source'] or '-':<10} languages/split={n}")
    return 0


def cmd_reproduce(a) -> int:
    from xlrepro.config import load_config
    from xlrepro.pipeline import Experiment

    cfg = load_config(a.config, a.overrides)
    out = a.out or os.path.join("results", cfg.name)
    results = Experiment(cfg, out, device=a.device).run()
    n = len(results["records"])
    from xlrepro import distributed as dist

    if dist.is_main():
        print(f"{cfg.name}: {n} result records -> {os.path.join(out, 'results.json')}, report -> {os.path.join(out, 'report.md')}")
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
    p = plan(load_config(a.config, a.overrides), a.gpus_per_node, a.nodes, a.card, a.mfu, examples)
    print(json.dumps(p, indent=2) if a.json else render(p))
    return 0


def cmd_config(a) -> int:
    import yaml

    from xlrepro.config import load_config, to_dict

    cfg = load_config(a.config, a.overrides)
    if a.action == "show":
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    else:
        print(f"{a.config}: valid")
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


def _xtreme_folder(task: str) -> str:
    return {"pawsx": "pawsx", "panx": "panx", "bucc2018": "bucc2018", "mewslix": "mewslix"}.get(task, task)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xlrepro", description="Reproduce Phang et al. 2020 and the volume-scaling study.")
    p.add_argument("-v", "--verbose", action="store_true")
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

    s = sub.add_parser("plan", help="per-GPU memory under each ZeRO stage and expected GPU-hours of a config")
    s.add_argument("config")
    s.add_argument("overrides", nargs="*")
    s.add_argument("--gpus-per-node", type=int, default=8)
    s.add_argument("--nodes", type=int, default=1)
    s.add_argument("--card", default="h100", help="h100, h200, a100, v100 or l40s (peak dense bf16 TFLOP/s)")
    s.add_argument("--mfu", type=float, default=0.35, help="model FLOPs utilisation assumed (default 0.35)")
    s.add_argument("--examples", action="append", metavar="TASK=N", help="English training examples of a task")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_plan)

    s = sub.add_parser("config", help="show or validate a config")
    s.add_argument("action", choices=["show", "validate"])
    s.add_argument("config")
    s.add_argument("overrides", nargs="*")
    s.set_defaults(fn=cmd_config)

    s = sub.add_parser("score", help="score predictions in the XTREME submission layout, as evaluate.py does")
    s.add_argument("--predictions", required=True)
    s.add_argument("--labels", required=True)
    s.add_argument("--version", choices=["xtreme", "xtreme-r"], default="xtreme")
    s.add_argument("--mode", choices=["official", "corrected"], default="official")
    s.set_defaults(fn=cmd_score)
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
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from xlrepro import distributed as dist
    from xlrepro.errors import XlreproError

    # under a launcher every message names its rank; the launcher stops the other ranks
    who = f" ({dist.describe()})" if dist.launched() and dist.world_size() > 1 else ""
    ok = False
    try:
        code = a.fn(a)
        ok = True
        return code
    except (XlreproError, FileNotFoundError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"xlrepro: error{who}: {msg}", file=sys.stderr)
        return 2
    except BaseException as e:
        if who:
            print(f"xlrepro: {dist.describe()} failed: {type(e).__name__}: {e}", file=sys.stderr)
        raise
    finally:
        dist.shutdown(wait=ok)  # explicit teardown (ZeRO-3 can abort if the group outlives the interpreter)


if __name__ == "__main__":
    sys.exit(main())
