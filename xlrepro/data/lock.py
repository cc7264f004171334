"""``data.lock``: what `xlrepro data prepare` put under a data root, pinned by sha256.

One JSON object at ``<root>/data.lock``::

  {"version": 1,
   "files": {"<path relative to root>": {"source": URL | "hf://datasets/<repo>@<commit>/<file>" | ...,
                                         "sha256": ..., "size": ..., "examples": {"<split>/<lang>": n}}}}

Trust on first use: a file's first hash is recorded; from then on the file (on disk, or fetched
again) must have that hash, and a different one is an error naming the file. The size and
modification time are kept too, so an unchanged file is not hashed again on every run.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from xlrepro.data.fetch import sha256_of
from xlrepro.errors import DataFormatError

NAME = "data.lock"
VERSION = 1


def load(root: Path) -> dict:
    path = Path(root) / NAME
    if not path.exists():
        return {"version": VERSION, "files": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(
            path, f"not valid JSON ({e}); delete it to re-pin every file on the next prepare"
        ) from None
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("files"), dict):
        raise DataFormatError(path, f"expected {{'version': {VERSION}, 'files': {{...}}}}", field="version")
    return data


def save(root: Path, lock: dict) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{NAME}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(
                {"version": VERSION, "files": dict(sorted(lock["files"].items()))}, f, indent=1, ensure_ascii=False
            )
            f.write("\n")
        os.replace(tmp, root / NAME)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def rel(root: Path, path) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(p)


def current_hash(root: Path, relpath: str, entry: dict | None) -> str:
    """The file's sha256, reusing the recorded one when size and mtime are unchanged."""
    path = Path(root) / relpath
    st = path.stat()
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns and entry.get("sha256"):
        return entry["sha256"]
    return sha256_of(path)


def status(root: Path, lock: dict, relpath: str) -> str:
    """'ok', 'unpinned' (not in the lock) or 'CHANGED' for a file on disk."""
    entry = lock["files"].get(relpath)
    if entry is None:
        return "unpinned"
    return "ok" if current_hash(root, relpath, entry) == entry["sha256"] else "CHANGED"


def check(root: Path, lock: dict, relpath: str) -> None:
    """Raise if a present file differs from its pin."""
    entry = lock["files"].get(relpath)
    if entry is None:
        return
    got = current_hash(root, relpath, entry)
    if got != entry["sha256"]:
        raise DataFormatError(
            Path(root) / relpath,
            f"changed since it was pinned in {Path(root) / NAME}: sha256 "
            f"{got}, pinned {entry['sha256']} (source {entry.get('source')}); "
            "restore the file, or delete its entry to accept the new one",
            field="sha256",
        )


def record(root: Path, lock: dict, relpath: str, source: str, sha256: str) -> None:
    st = (Path(root) / relpath).stat()
    old = lock["files"].get(relpath, {})
    lock["files"][relpath] = {
        "source": source,
        "sha256": sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "examples": old.get("examples", {}),
    }
