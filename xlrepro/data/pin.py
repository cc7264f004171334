"""Pinning every task's Hugging Face Hub source to a commit.

The registry (``xlrepro/tasks/<task>.yaml``) names a Hub repo per task with ``hub.revision``;
loading refuses an unpinned source (``xlrepro.data.hub.read_hub``). This module resolves the
commit to pin, once, on a machine that reaches the Hub, and writes it into the task files:

  xlrepro data status [--json] [--strict]   which tasks are pinned, and to what
  xlrepro data pin [--task T ...] [--write] resolve each unpinned repo's commit; --write records it

Resolution, per repository (each repository is resolved once, even when several tasks share it):
  - the commit that ``main`` points to now (``HfApi.dataset_info(repo).sha``);
  - if that commit only carries a loading script (``datasets`` >= 4 refuses scripts, pitfall H4)
    and no data files, the commit of the Hub's parquet conversion (``refs/convert/parquet``);
  - a repository with neither is an error naming the repository and what was found.

Writing edits only the ``revision:`` line of each task's ``hub:`` block (comments and layout are
kept), re-parses the file to check that the registry now reads the pinned commit, and replaces
the file atomically.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from xlrepro.errors import ConfigError

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json", ".csv", ".tsv", ".txt", ".conllu", ".zip", ".gz")
PARQUET_REF = "refs/convert/parquet"


@dataclass
class Pin:
    task: str
    repo: str
    current: str | None  # the revision the task file has now
    revision: str | None = None  # resolved commit
    ref: str | None = None  # "main" or refs/convert/parquet
    note: str = ""


def task_file(task: str) -> Path:
    return Path(__file__).resolve().parent.parent / "tasks" / f"{task}.yaml"


def status(tasks: dict) -> list[dict]:
    """One row per task: repo, revision (None if unpinned) and whether it has a Hub source at all."""
    rows = []
    for name, spec in sorted(tasks.items()):
        if spec.hub is None:
            rows.append(
                {
                    "task": name,
                    "repo": None,
                    "revision": None,
                    "pinned": None,
                    "why": "no Hub source (composite or locally supplied data)",
                }
            )
        else:
            rows.append(
                {
                    "task": name,
                    "repo": spec.hub.repo,
                    "revision": spec.hub.revision,
                    "pinned": spec.hub.revision is not None,
                }
            )
    return rows


def _is_data_file(path: str) -> bool:
    base = path.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower() != "readme.md" and path.lower().endswith(DATA_SUFFIXES)


def resolve_repo(api, repo: str) -> tuple[str, str, str]:
    """(commit, ref, note) to pin for a dataset repo, through an ``HfApi``-like object."""
    info = api.dataset_info(repo)
    sha = getattr(info, "sha", None)
    if not sha or not SHA_RE.match(sha):
        raise ConfigError(f"hf://datasets/{repo}: the Hub returned no commit for main (got {sha!r})")
    files = list(api.list_repo_files(repo, repo_type="dataset", revision=sha))
    data = [f for f in files if _is_data_file(f)]
    scripts = [f for f in files if f.endswith(".py") and "/" not in f]
    if data:
        return sha, "main", f"main has {len(data)} data files"
    refs = api.list_repo_refs(repo, repo_type="dataset")
    for conv in getattr(refs, "converts", None) or []:
        if getattr(conv, "ref", "") == PARQUET_REF or getattr(conv, "name", "") == "parquet":
            commit = conv.target_commit
            if not SHA_RE.match(commit or ""):
                raise ConfigError(f"hf://datasets/{repo}: {PARQUET_REF} has no commit (got {commit!r})")
            why = f"main has only a loading script ({', '.join(scripts)})" if scripts else "main has no data files"
            return commit, PARQUET_REF, f"{why}; pinned the parquet conversion"
    raise ConfigError(
        f"hf://datasets/{repo}@{sha}: no data files (found {len(files)} files: "
        f"{', '.join(files[:8])}{' ...' if len(files) > 8 else ''}) and no {PARQUET_REF} branch; "
        "mirror the original files and read them with a local layout instead"
    )


def plan(tasks: dict, api, only: list[str] | None = None, repin: bool = False) -> list[Pin]:
    """The pins to write: unpinned tasks (or every task with a Hub source, with ``repin``)."""
    if only:
        unknown = [t for t in only if t not in tasks]
        if unknown:
            raise ConfigError(f"unknown task(s) {unknown}; see `xlrepro tasks`")
    cache: dict[str, tuple[str, str, str]] = {}
    out = []
    for name, spec in sorted(tasks.items()):
        if spec.hub is None or (only and name not in only):
            continue
        if spec.hub.revision is not None and not repin:
            continue
        if spec.hub.repo not in cache:
            cache[spec.hub.repo] = resolve_repo(api, spec.hub.repo)
        rev, ref, note = cache[spec.hub.repo]
        out.append(Pin(name, spec.hub.repo, spec.hub.revision, rev, ref, note))
    return out


def _rewrite(text: str, where: str, revision: str, comment: str) -> str:
    lines = text.splitlines(keepends=True)
    in_hub, hit = False, None
    for i, line in enumerate(lines):
        if re.match(r"^hub:\s*(#.*)?$", line):
            in_hub = True
            continue
        if in_hub:
            if line.strip() and not line[0].isspace():
                break  # the next top-level key: the hub block ended
            m = re.match(r"^(\s+)revision:", line)
            if m:
                hit = i
                nl = "\r\n" if line.endswith("\r\n") else "\n"
                lines[i] = f'{m.group(1)}revision: "{revision}"  # {comment}{nl}'
                break
    if hit is None:
        raise ConfigError(f"{where}: no 'revision:' line inside a top-level 'hub:' block to pin")
    return "".join(lines)


def write_pin(path: Path, pin: Pin, today: str | None = None) -> None:
    """Record ``pin.revision`` in the task file ``path`` (atomically; nothing else changes)."""
    today = today or _dt.date.today().isoformat()
    text = path.read_text(encoding="utf-8")
    assert pin.revision is not None, "write_pin needs a resolved pin"
    new = _rewrite(text, str(path), pin.revision, f"{pin.ref} on {today}")
    parsed = yaml.safe_load(new)
    got = (parsed.get("hub") or {}).get("revision")
    if got != pin.revision:
        raise ConfigError(f"{path}: after the edit the hub revision reads {got!r}, expected {pin.revision}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(new)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
