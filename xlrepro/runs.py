"""Idempotent, traceable runs.

A run's directory is keyed by the hash of its resolved spec (config fragment + upstream run
hashes + data file hashes): ``<out>/runs/<kind>-<task>-<hash12>/``. ``done.json`` means the run
finished and is skipped; a checkpoint (``checkpoint.pt``, or ``ds_checkpoint/latest.json`` from the
DeepSpeed engine) means it resumes; otherwise it starts fresh. Under a launcher only rank 0 writes
(``xlrepro.distributed``); the other ranks read. Every run writes ``spec.json`` (its resolved spec), ``log.jsonl`` (one JSON event per line) and, when
it evaluates, ``results.json``. Files are written to a temporary name and renamed.
"""
from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from xlrepro import distributed as dist
from xlrepro.config import config_hash


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False, default=str) + "\n")


class Run:
    def __init__(self, out_dir: Path, kind: str, task: str, spec: dict):
        self.spec = spec
        self.hash = config_hash(spec)
        self.kind, self.task = kind, task
        self.dir = Path(out_dir) / "runs" / f"{kind}-{task}-{self.hash[:12]}"
        self.dir.mkdir(parents=True, exist_ok=True)
        spec_path = self.dir / "spec.json"
        if dist.is_main() and not spec_path.exists():
            atomic_write_json(spec_path, spec)
        # every rank takes the same branch (skip, resume or start), whatever the others have written since
        self._done = bool(dist.broadcast_object((self.dir / "done.json").exists()))

    @property
    def done(self) -> bool:
        return self._done

    @property
    def state(self) -> str:
        if self.done:
            return "done"
        if (self.dir / "checkpoint.pt").exists() or (self.dir / "ds_checkpoint" / "latest.json").exists():
            return "resumable"
        return "new"

    def log(self, event: dict) -> None:
        if not dist.is_main():
            return
        event = {"time": round(time.time(), 3), **event}
        with open(self.dir / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(event, default=str) + "\n")

    def finish(self, summary: dict) -> None:
        if dist.is_main():
            atomic_write_json(self.dir / "done.json", {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                                       **summary})
        self._done = True
        dist.barrier()  # done.json exists for every rank before any rank moves on

    def summary(self) -> dict:
        return json.loads((self.dir / "done.json").read_text())


def _git(args: list[str]) -> str | None:
    try:
        root = Path(__file__).resolve().parents[1]
        return subprocess.check_output(["git", *args], cwd=root, stderr=subprocess.DEVNULL, text=True).strip()
    except Exception:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def lock_hashes() -> dict[str, str]:
    """sha256 of every lock/requirements file of the source tree (host runs and the image alike)."""
    root = Path(__file__).resolve().parents[1]
    out = {}
    for pattern in ("requirements/*.txt", "docker/*.lock", "docker/*.in"):
        for f in sorted(root.glob(pattern)):
            out[f.relative_to(root).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def installed_distributions() -> dict[str, str]:
    """name -> version of every installed distribution (what `pip freeze` lists)."""
    out = {}
    for d in importlib.metadata.distributions():
        name = d.metadata.get("Name")
        if name:
            out[name.lower()] = d.version
    return dict(sorted(out.items()))


def provenance(seed: int | None = None) -> dict:
    """Code, environment, hardware and extension build of this process (for every results file)."""
    import torch

    from xlrepro.info import ops_status

    versions = {}
    for pkg in ("xlrepro", "torch", "transformers", "tokenizers", "datasets", "numpy", "safetensors", "deepspeed"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    status = _git(["status", "--porcelain", "--untracked-files=no"])
    gpu = None
    if torch.cuda.is_available():
        gpu = {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
               "capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}
    image = None
    if os.environ.get("XLREPRO_IMAGE_INFO"):  # inside the pinned image (docker/image_info.py writes it)
        try:
            image = json.loads(Path(os.environ["XLREPRO_IMAGE_INFO"]).read_text())
        except (OSError, json.JSONDecodeError) as e:
            image = {"error": f"cannot read {os.environ['XLREPRO_IMAGE_INFO']}: {e}"}
    return {
        # inside the image there is no .git: the build passes the commit in XLREPRO_GIT_COMMIT
        "git_commit": _git(["rev-parse", "HEAD"]) or os.environ.get("XLREPRO_GIT_COMMIT"),
        "git_dirty": bool(status) if status is not None else None,
        "image": {"digest": os.environ.get("XLREPRO_IMAGE_DIGEST"), "info": image} if image or
                 os.environ.get("XLREPRO_IMAGE_DIGEST") else None,
        "versions": versions,
        "locks": lock_hashes(),
        "installed": installed_distributions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "gpu": gpu,
        "extension": ops_status(),
        "seed": seed,
        "determinism": {"torch_deterministic": torch.are_deterministic_algorithms_enabled(),
                        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED"),
                        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG")},
        "hf_offline": {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")},
        "user": getpass.getuser() if hasattr(os, "getuid") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def files_digest(files: dict[str, str]) -> str:
    """One digest over {path: sha256} (paths reduced to their names so moving the data folder does not matter)."""
    items = sorted((Path(p).name, h) for p, h in files.items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()
