"""File modes for results on shared file systems: what this process writes gets the mode that
its umask gives an ordinary ``open()`` / ``mkdir()`` (0o666 / 0o777 minus the umask), also where
a library or ``tempfile`` would create it private (0o600 / 0o700). Group members of a shared
results folder can then read every result, checkpoint and encoder, as the umask intends.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_LOCK = threading.Lock()


def process_umask() -> int:
    """The process umask (read from /proc on Linux; elsewhere set and restored under a lock)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _LOCK:
        old = os.umask(0o022)
        os.umask(old)
    return old


def file_mode() -> int:
    return 0o666 & ~process_umask()


def dir_mode() -> int:
    return 0o777 & ~process_umask()


def apply_umask(path: str | Path) -> None:
    """Give ``path`` (a file or a folder, not followed if a link) the umask's default mode."""
    p = Path(path)
    if p.is_symlink():
        return
    os.chmod(p, dir_mode() if p.is_dir() else file_mode())


def apply_umask_tree(root: str | Path) -> None:
    """``apply_umask`` on ``root`` and everything below it."""
    root = Path(root)
    apply_umask(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            apply_umask(Path(dirpath) / name)
