"""The image's compiled-ops folder is read-only at run time; ops load from a private copy."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from xlrepro import extensions_dir as ed


@pytest.fixture
def readonly_ops(tmp_path, monkeypatch):
    """A prebuilt-ops folder this process may not write (os.access is patched: tests may run as root)."""
    src = tmp_path / "torch_extensions"
    (src / "cpu_adam").mkdir(parents=True)
    for name, text in (("cpu_adam.so", "binary"), ("build.ninja", "rule"), (".ninja_log", "log"), ("lock", "")):
        p = src / "cpu_adam" / name
        p.write_text(text)
        os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    real = ed.writable
    monkeypatch.setattr(ed, "writable", lambda p: False if Path(p) == src else real(p))
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    return src


def test_a_readonly_ops_folder_is_used_through_a_private_copy(tmp_path, readonly_ops):
    cache = tmp_path / "cache"
    cache.mkdir()
    dest = Path(ed.use_private_copy(readonly_ops, cache))
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(dest) and dest.parent == cache
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700 and dest.stat().st_uid == os.getuid()
    so = dest / "cpu_adam" / "cpu_adam.so"
    assert so.read_text() == "binary"
    # modification times kept: ninja sees the ops up to date and compiles nothing
    assert so.stat().st_mtime_ns == (readonly_ops / "cpu_adam" / "cpu_adam.so").stat().st_mtime_ns
    assert not (dest / "cpu_adam" / "lock").exists()
    assert os.access(dest / "cpu_adam", os.W_OK)
    # reused while the source is unchanged
    assert ed.use_private_copy(readonly_ops, cache) == str(dest)


def test_a_planted_copy_is_not_used(tmp_path, readonly_ops):
    cache = tmp_path / "cache"
    cache.mkdir()
    planted = cache / f"{ed.PREFIX}{ed._key(readonly_ops)}"
    (planted / "cpu_adam").mkdir(parents=True)
    (planted / "cpu_adam" / "cpu_adam.so").write_text("evil")
    (planted / ".complete").write_text("x")
    planted.chmod(0o777)  # writable by anyone: not ours to trust
    dest = Path(ed.use_private_copy(readonly_ops, cache))
    assert dest != planted and (dest / "cpu_adam" / "cpu_adam.so").read_text() == "binary"


def test_a_writable_or_missing_folder_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    assert ed.use_private_copy(tmp_path) is None  # writable (tmp_path is ours)
    assert ed.use_private_copy(tmp_path / "missing") is None
    assert "TORCH_EXTENSIONS_DIR" not in os.environ


def test_ensure_ops_dir_copies_the_images_readonly_folder(tmp_path, readonly_ops, monkeypatch):
    from xlrepro.ds_engine import ensure_ops_dir

    cpuinfo = "processor\t: 0\nflags\t\t: fpu sse avx avx2\n"
    rec = tmp_path / "image.json"
    rec.write_text(json.dumps({"deepspeed": {"ops_dir": str(readonly_ops), "build_cpu_flags": ["avx", "avx2"]}}))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(readonly_ops))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = ensure_ops_dir(str(rec), cpuinfo)
    assert folder and Path(folder).parent == tmp_path / "xdg" and Path(folder).name.startswith(ed.PREFIX)
    assert os.environ["TORCH_EXTENSIONS_DIR"] == folder
