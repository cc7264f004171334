"""A read-only folder of prebuilt torch extensions (the image's DeepSpeed ops) used through a
private copy.

The image compiles DeepSpeed's ops at build time into ``/opt/xlrepro/torch_extensions`` and
leaves that folder read-only (owned by root, not writable by the run-time user), so that no
process can plant a ``.so`` there for another to load. torch's JIT loader, though, takes a lock
file and rewrites ``build.ninja`` in the folder it loads from, even when nothing needs building.
``use_private_copy`` therefore copies the read-only folder (modification times kept, so ninja
sees every op up to date and compiles nothing) into a folder of this user's own, mode 0700, and
points ``TORCH_EXTENSIONS_DIR`` at it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

PREFIX = "xlrepro-ops-image-"


def writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _key(src: Path) -> str:
    h = hashlib.sha256(str(src.resolve()).encode())
    for p in sorted(src.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(src)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def _private(folder: Path) -> bool:
    """Ours and writable by nobody else (a folder another user planted must not be used)."""
    try:
        st = folder.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def _cache_root() -> Path:
    for cand in (os.environ.get("XDG_CACHE_HOME"), os.path.join(os.environ.get("HOME") or "/nonexistent", ".cache")):
        if cand:
            try:
                Path(cand).mkdir(parents=True, exist_ok=True)
            except OSError:
                continue
            if writable(Path(cand)):
                return Path(cand)
    return Path(tempfile.gettempdir())


def use_private_copy(folder: str | Path, cache_root: str | Path | None = None) -> str | None:
    """When ``folder`` exists and this process cannot write it: copy it into a private folder
    (reused while the source is unchanged), set ``TORCH_EXTENSIONS_DIR`` to the copy and return
    its path. None (nothing changed) when ``folder`` is missing or writable."""
    src = Path(folder)
    if not src.is_dir() or writable(src):
        return None
    root = Path(cache_root) if cache_root is not None else _cache_root()
    dest = root / f"{PREFIX}{_key(src)}"
    if not (_private(dest) and (dest / ".complete").is_file()):
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{PREFIX}"))  # 0700, ours
        try:
            shutil.copytree(
                src, tmp, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns("lock")
            )  # copy2: modification times kept
            for p in [tmp, *tmp.rglob("*")]:
                if p.is_dir() and not p.is_symlink():
                    p.chmod(0o700)  # the copy of a read-only tree must be writable for the JIT loader
            (tmp / ".complete").write_text(str(src) + "\n")
            if dest.exists() or dest.is_symlink():
                # someone else's or unfinished: ours goes under a name of its own
                dest = Path(tempfile.mkdtemp(dir=root, prefix=PREFIX))
                dest.rmdir()
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    os.environ["TORCH_EXTENSIONS_DIR"] = str(dest)
    logging.getLogger("xlrepro").info("prebuilt ops of the read-only %s are loaded from a private copy, %s", src, dest)
    return str(dest)
