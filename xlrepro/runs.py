"""Idempotent, traceable runs.

A run's directory is keyed by the hash of its resolved spec (config fragment + upstream run
hashes + the sha256 of every data file it reads + the model's identity):
``<out>/runs/<kind>-<task>-<hash12>/``. ``done.json`` means the run finished and is skipped; a
checkpoint (``checkpoint.pt``, or ``ds_checkpoint/latest.json`` from the DeepSpeed engine) means it
resumes; otherwise it starts fresh. Under a launcher only rank 0 writes (``xlrepro.distributed``);
the other ranks read. Every run writes ``spec.json`` (its resolved spec), ``log.jsonl`` (one JSON
event per line) and, when it evaluates, ``results.json``. Files are written to a temporary name
unique to the process and renamed.

One writer per run folder: the process that trains a run holds an advisory lock on
``<run>/.lock`` (``fcntl.flock``) from the moment it finds the run unfinished until ``done.json`` is
written; a second process waits for it (saying which process holds it) and then finds the run
done. ``done.json`` is the commit point of a run: training checkpoints (and, under the default
``keep`` policy, the full state dict ``best_model.pt``) are deleted only after it is written, so a
process killed at any moment resumes from a complete state (docs/runs.md).
"""

from __future__ import annotations

import errno
import getpass
import hashlib
import importlib.metadata
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from xlrepro import distributed as dist
from xlrepro.config import config_hash
from xlrepro.data import io as dataio
from xlrepro.errors import ConfigError
from xlrepro.info import ops_status


def tmp_path(path: Path) -> Path:
    """A temporary name beside ``path``, unique to this process and call (host, pid, random)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False, default=str) + "\n")


# ---------------------------------------------------------------------- one writer per folder


_HELD: dict[str, FolderLock] = {}  # lock file -> the lock this process holds on it


class FolderLock:
    """An exclusive advisory lock on ``<folder>/.lock`` (``fcntl.flock``; released when the process
    ends, however it ends). The holder's pid, host and start time are written into the lock file so
    a process that has to wait can say who it waits for. ``XLREPRO_LOCK_TIMEOUT`` (seconds): give up
    with an error naming the holder instead of waiting for ever."""

    def __init__(self, folder: Path, what: str = "run folder", name: str = ".lock"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / name
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another process"
        return f"pid {info.get('pid')} on {info.get('host')} (since {info.get('since')})"

    def acquire(self) -> FolderLock:
        import fcntl

        key = str(self.path.resolve())
        if key in _HELD:  # this process holds it already (a run that failed earlier in the same process)
            self._fd, _HELD[key]._fd = _HELD[key]._fd, None
            _HELD[key] = self
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        timeout = float(os.environ.get("XLREPRO_LOCK_TIMEOUT") or "inf")
        t0, said = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() - t0 > timeout:
                os.close(fd)
                raise ConfigError(
                    f"{self.folder}: this {self.what} is in use by {self.holder()}; gave up after "
                    f"{timeout:g} s (XLREPRO_LOCK_TIMEOUT). Wait for it, or use another --out"
                )
            if not said:
                print(
                    f"xlrepro: {self.folder}: this {self.what} is in use by {self.holder()}; waiting for it to finish",
                    file=sys.stderr,
                    flush=True,
                )
                said = True
            time.sleep(0.2)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        _HELD[key] = self
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        _HELD.pop(str(self.path.resolve()), None)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------------- content hashes

_SHA256: dict[tuple, str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's content, computed once per process for each (path, mtime, size)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _SHA256:
        _SHA256[key] = dataio.sha256_file(p)
    return _SHA256[key]


# ---------------------------------------------------------------------- runs

# what a finished run keeps (config ``keep``): "handoff" = encoder hand-offs, chain heads,
# predictions and results; "all" = also the full state dict of the best checkpoint (best_model.pt)
KEEP_POLICIES = ("handoff", "all")
# training state that only a resumption needs: removed once done.json is written
_RESUME_STATE = ("checkpoint.pt", "ds_checkpoint")
# events that the training loop logs per optimiser step (rewound on resume: each step is logged once)
_STEP_EVENTS = ("train", "eval", "early_stop", "checkpoint")


# config fields that say only how often to checkpoint: a run's results do not depend on them, so they
# are left out of its key (change them to make a run that is killed often progress, and it resumes)
RESUME_ONLY_FIELDS = ("checkpoint_every_steps", "checkpoint_every_seconds")


def key_config(d: dict) -> dict:
    """A config dict without the resume-only fields (``RESUME_ONLY_FIELDS``), at any depth."""
    if not isinstance(d, dict):
        return d
    return {k: key_config(v) for k, v in d.items() if k not in RESUME_ONLY_FIELDS}


def rewind_log(path: Path, step: int) -> int:
    """Drop the step events after ``step`` (and a torn last line) from a run's ``log.jsonl``: a
    resumed run replays those steps and logs them again. Returns the number of lines dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        if isinstance(e, dict) and e.get("event") in _STEP_EVENTS and int(e.get("step") or 0) > step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        atomic_write_text(path, "".join(l + "\n" for l in kept))
    return dropped


class Run:
    def __init__(self, out_dir: Path, kind: str, task: str, spec: dict, keep: str = "handoff"):
        if keep not in KEEP_POLICIES:
            raise ValueError(f"keep: {keep!r} is not one of {list(KEEP_POLICIES)}")
        self.spec = spec
        self.hash = config_hash(spec)
        self.kind, self.task, self.keep = kind, task, keep
        self.dir = Path(out_dir) / "runs" / f"{kind}-{task}-{self.hash[:12]}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock: FolderLock | None = None
        done = (self.dir / "done.json").exists()
        if dist.is_main():
            if not done:  # one writer: wait for a process that is training this run, then look again
                self._lock = FolderLock(self.dir).acquire()
                done = (self.dir / "done.json").exists()
                if done:
                    self._release()
            spec_path = self.dir / "spec.json"
            if not spec_path.exists():
                atomic_write_json(spec_path, spec)
            if done:
                self._cleanup(resume_only=True)  # a process killed after done.json, before its clean-up
        # every rank takes the same branch (skip, resume or start), whatever the others have written since
        self._done = bool(dist.broadcast_object(done))

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
            atomic_write_json(
                self.dir / "done.json", {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **summary}
            )
            self._cleanup()  # after the commit point: a kill before it resumes from the checkpoint
        self._done = True
        dist.barrier()  # done.json exists for every rank before any rank moves on
        self._release()

    def _cleanup(self, resume_only: bool = False) -> None:
        """Remove what only a resumption needs and, as the run finishes, what the ``keep`` policy
        does not keep (a run found done is not pruned again: it was kept under its own policy)."""
        names = list(_RESUME_STATE) + (["best_model.pt"] if self.keep == "handoff" and not resume_only else [])
        for name in names:
            p = self.dir / name
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

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
        name = d.name  # the metadata's Name (None for a broken install)
        if name:
            out[name.lower()] = d.version
    return dict(sorted(out.items()))


def provenance(seed: int | None = None) -> dict:
    """Code, environment, hardware and extension build of this process (for every results file)."""
    import torch  # imported when a run records its provenance: `import xlrepro.runs` stays light

    versions: dict[str, str | None] = {}
    for pkg in ("xlrepro", "torch", "transformers", "tokenizers", "datasets", "numpy", "safetensors", "deepspeed"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    status = _git(["status", "--porcelain", "--untracked-files=no"])
    gpu = None
    if torch.cuda.is_available():
        gpu = {
            "name": torch.cuda.get_device_name(0),
            "count": torch.cuda.device_count(),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
        }
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
        "image": {"digest": os.environ.get("XLREPRO_IMAGE_DIGEST"), "info": image}
        if image or os.environ.get("XLREPRO_IMAGE_DIGEST")
        else None,
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
        "determinism": {
            "torch_deterministic": torch.are_deterministic_algorithms_enabled(),
            "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED"),
            "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        },
        "hf_offline": {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")},
        "user": getpass.getuser() if hasattr(os, "getuid") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def files_digest(files: dict[str, str]) -> str:
    """One digest over {path: sha256} (paths reduced to their names so moving the data folder does not matter)."""
    items = sorted((Path(p).name, h) for p, h in files.items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()
