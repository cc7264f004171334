"""The ``prepare`` and ``verify`` actions of ``xlrepro data`` (hooked into xlrepro/cli.py; beside it, as it
reads configs, above the data package it drives)."""

from __future__ import annotations

import sys
from pathlib import Path

from xlrepro.config import load_config
from xlrepro.data import lock as lockmod, prepare, verify
from xlrepro.data.prepare import Preparer, config_tasks, mirrors_from, task_source
from xlrepro.data.verify import verify_task
from xlrepro.errors import ConfigError
from xlrepro.tasks import get_task


def add_arguments(s) -> None:
    s.set_defaults(overrides=[])  # key.path=value overrides of --config, anywhere on the line
    s.add_argument(
        "--config",
        help="prepare/verify: every task this config reads (with key.path=value overrides among the arguments)",
    )
    s.add_argument("--root", help="prepare/verify: the data root (default: the config's data.root)")
    s.add_argument("--xtreme", metavar="DIR", help="prepare: import an existing XTREME download/ folder first")
    s.add_argument(
        "--mirror",
        action="append",
        metavar="FROM=TO",
        help="prepare: fetch URLs starting with FROM from TO instead (repeatable; also XLREPRO_MIRRORS)",
    )
    s.add_argument(
        "--source",
        choices=["local", "hub"],
        default=None,
        help="prepare: release files (local) or Hub parquet for every task (default: the config's "
        "data.source / data.sources, else each task's canonical source)",
    )
    s.add_argument(
        "--languages",
        help="prepare/verify: only these languages, comma-separated (default: the config's data.languages, else all)",
    )
    s.add_argument(
        "--allow-unpinned-hub",
        action="store_true",
        help="prepare: take an unpinned Hub repo's current commit (recorded in data.lock)",
    )


def _targets(a):
    """(task names, config or None, data root, languages)."""
    names = [n for n in a.names if "=" not in n]
    overrides = [n for n in a.names if "=" in n] + list(getattr(a, "overrides", []) or [])
    cfg = None
    if a.config:
        cfg = load_config(a.config, overrides)
        if not names:
            names = config_tasks(cfg)
    elif overrides:
        raise ConfigError(f"overrides {overrides} need --config")
    if not names:
        raise ConfigError(
            f"data {a.action}: name the tasks (e.g. `xlrepro data {a.action} squad xquad --root DIR`) "
            "or pass --config NAME"
        )
    for n in names:
        get_task(n)  # unknown names fail here, with a did-you-mean
    root = a.root or (cfg.data.root if cfg is not None else None)
    if not root:
        raise ConfigError(f"data {a.action}: --root DIR is required without --config")
    langs = cfg.data.languages if cfg is not None else None
    if a.languages:
        langs = [l.strip() for l in a.languages.split(",") if l.strip()]
    return names, cfg, Path(root), langs


def _task_dir(cfg, root: Path, task: str) -> Path:
    if cfg is not None and cfg.data.task_dirs.get(task):
        return Path(cfg.data.task_dirs[task])
    return root / task


def run(a) -> int:
    names, cfg, root, langs = _targets(a)
    if a.action == "prepare":
        xtreme = Path(a.xtreme) if a.xtreme else None
        if xtreme is not None and not xtreme.is_dir():
            raise ConfigError(f"--xtreme {xtreme}: not a folder (expected XTREME's download/ folder)")
        prep = Preparer(
            root,
            mirrors_from(a.mirror),
            langs,
            allow_unpinned_hub=a.allow_unpinned_hub or bool(cfg and cfg.data.allow_unpinned_hub),
        )
        reports = []
        for name in names:
            src = a.source or task_source(cfg, name)
            reports += prep.prepare(get_task(name), _task_dir(cfg, root, name), src, xtreme)
        print(prepare.render(reports, root))
        manual = [r for r in reports if r.manual]
        for r in manual:
            print(f"xlrepro: error: task {r.task} needs a manual step: {r.manual}", file=sys.stderr)
        return 2 if manual else 0
    if not root.is_dir():
        raise ConfigError(f"data verify: the data root {root} does not exist; run `xlrepro data prepare` first")
    lock = lockmod.load(root)
    rows, sources, checks = [], {}, {}
    for name in names:
        spec = get_task(name)
        src = cfg.data.sources.get(name, cfg.data.source) if cfg is not None else "local"
        rows += verify_task(spec, _task_dir(cfg, root, name), root, lock, langs, src)
        for c in spec.components or (name,):
            sources[c] = (get_task(c).sizes or {}).get("source")
            checks[c] = verify.facts_status(get_task(c))
    print(verify.render(rows, sources, checks))
    return 1 if any(r.problem for r in rows) else 0
