"""The data part of a run's key: the content of every file the run reads, not where it lies.

A run's spec (each phase's ``spec``, ``xlrepro.phases``) names the data it reads by task; this module
turns that into content. For a local source, each (task, split, language) the run may read is
resolved to its files exactly as the readers resolve them (the configured or first existing layout,
globs expanded, composite tasks through their components), and each file's sha256 is taken
(``xlrepro.runs.file_sha256``: once per process per path, mtime and size). The key holds the files'
paths relative to the task's folder with their hashes, so ``data.root`` and ``data.task_dirs`` only
matter through what the files contain: edit one file and the run is a new one; move the data and
it is the same run. For the Hub, the key is the dataset repository, config, split and revision
(a pinned commit, or the unpinned marker). A file that does not exist is keyed as missing (the
read itself then fails with the reader's error); a dry run can still list the runs.
"""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path

from xlrepro.data.hub import hub_config
from xlrepro.runs import file_sha256
from xlrepro.tasks import get_task


def _expand(path: Path) -> list[Path]:
    if glob.has_magic(str(path)):
        return [Path(p) for p in sorted(glob.glob(str(path)))]
    return [path]


def read_files(spec, root, split: str, lang: str, layout: str | None = None) -> dict[str, Path | None]:
    """{name relative to ``root``: path (None when missing)} of what ``spec.read(root, split, lang,
    layout)`` reads."""
    out: dict[str, Path | None] = {}
    if spec.components:
        for comp in spec.components:
            sub = root[comp] if isinstance(root, dict) else Path(root) / comp
            for k, v in read_files(get_task(comp), sub, split, lang).items():
                out[f"{comp}/{k}"] = v
        return out
    root = Path(root)
    if layout is None:
        try:
            layout = spec.find_layout(root, split, lang)
        except FileNotFoundError:
            return {f"{split}/{lang}": None}
    out = {}
    try:
        templates = spec.files(root, split, lang, layout)
    except KeyError:  # the layout has no files for this split: the read fails with its own error
        return {f"{split}/{lang}": None}
    for tmpl_path in templates.values():
        matches = _expand(tmpl_path)
        if glob.has_magic(str(tmpl_path)) and not matches:
            out[str(tmpl_path.relative_to(root))] = None
        for p in matches:
            rel = p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name
            out[rel] = p if p.is_file() else None
    return out


def _reads(exp, task: str) -> list[tuple[str, str, str]]:
    """(task, split, language) of everything a run keyed by ``_data_spec(task)`` may read: the
    English train/dev of the task's training source and dev source (or of the task itself), and
    every evaluation language of its dev and test splits."""
    spec = get_task(task)
    reads = []
    train_src = get_task(spec.train_source) if spec.train_source else spec
    dev_src = get_task(spec.dev_source or train_src.name)
    if "en" in train_src.split_languages("train"):
        reads.append((train_src.name, "train", "en"))
    if "en" in dev_src.split_languages("dev"):
        reads.append((dev_src.name, "dev", "en"))
    for split in ("train", "dev", "test"):
        if split not in spec.splits:
            continue
        langs = exp.eval_languages(task, split) if split != "train" else ["en"]
        for lang in langs:
            if lang in spec.split_languages(split) and (task, split, lang) not in reads:
                reads.append((task, split, lang))
    return reads


def _digest(items) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def local_content(exp, reads: list[tuple[str, str, str]]) -> dict:
    """{"sha256": one digest over every (task, split, language, file, sha256), "n_files", "missing"}."""
    items, missing = [], []
    for task, split, lang in reads:
        spec = get_task(task)
        files = read_files(spec, exp.task_dir(task), split, lang, exp.cfg.data.layouts.get(task))
        for rel, path in sorted(files.items()):
            h = file_sha256(path) if path is not None else None
            if h is None:
                missing.append(f"{task}/{rel}")
            items.append([task, split, lang, rel, h])
    return {"sha256": _digest(items), "n_files": sum(1 for i in items if i[-1] is not None), "missing": missing}


def hub_content(reads: list[tuple[str, str, str]]) -> dict:
    items = []
    for task, split, lang in reads:
        spec = get_task(task)
        if spec.hub is None or split not in spec.hub.splits:
            items.append([task, split, lang, None])
            continue
        items.append(
            [
                task,
                split,
                lang,
                spec.hub.repo,
                hub_config(spec, lang),
                spec.hub.splits[split],
                spec.hub.revision or "UNPINNED",
            ]
        )
    return {"sha256": _digest(items), "revisions": sorted({i[-1] for i in items if len(i) > 4})}


def data_content(exp, task: str) -> dict:
    """The content key of the data a run keyed by ``task`` reads (module docstring)."""
    reads = _reads(exp, task)
    data = exp.cfg.data
    hub = [r for r in reads if data.sources.get(r[0], data.source) == "hub"]
    local = [r for r in reads if r not in hub]
    out = {}
    if hub:
        out["hub"] = hub_content(hub)
    if local or not hub:
        out["local"] = local_content(exp, local)
    return out


def folder_content(spec, folder, split: str, lang: str, layout: str | None = None) -> dict:
    """Content key of one (split, language) read from ``folder`` (translated copies of a training set)."""
    files = read_files(spec, folder, split, lang, layout)
    items = sorted([rel, file_sha256(p) if p is not None else None] for rel, p in files.items())
    return {"sha256": _digest(items), "missing": [rel for rel, h in items if h is None]}


def files_content(files: list[Path]) -> dict:
    """Content key of a list of plain files (an MLM corpus): names and hashes."""
    items = sorted([Path(f).name, file_sha256(f)] for f in files)
    return {"sha256": _digest(items), "n_files": len(items)}
