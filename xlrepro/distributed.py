"""The process group: one process with no launcher, or many under ``torchrun`` / ``deepspeed``.

Every rank runs the whole pipeline in lockstep (same data order, same evaluation); only the
optimiser steps of the DeepSpeed engine are data-parallel. Rank 0 alone writes run files and
results; the others wait at ``barrier()`` where they read what rank 0 wrote.

``ensure_initialized()`` starts the process group when the DeepSpeed engine first needs it. With
a launcher (``RANK``/``WORLD_SIZE`` in the environment) it joins the launcher's group; without
one it sets up a group of one itself (loopback address, a free port), so a plain
``xlrepro train ...`` never falls back to DeepSpeed's MPI discovery (``mpi4py``).
``shutdown()`` destroys the group explicitly: leaving it to interpreter exit can abort a ZeRO-3
run ("terminate called without an active exception").
"""

from __future__ import annotations

import contextlib
import os
import socket
from datetime import timedelta

LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """True under a launcher (torchrun, deepspeed): its variables say who we are."""
    return all(v in os.environ for v in LAUNCHER_VARS)


def rank() -> int:
    return int(os.environ.get("RANK", "0")) if launched() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1")) if launched() else 1


def is_main() -> bool:
    return rank() == 0


def describe() -> str:
    """'rank 1 of 2' (for error messages and logs)."""
    return f"rank {rank()} of {world_size()}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def ensure_initialized(timeout_s: float | None = None) -> None:
    """Start (or join) the process group once per process; DeepSpeed's comm layer adopts it.

    gloo on CPU, nccl when CUDA is available. ``timeout_s`` (default: $XLREPRO_DIST_TIMEOUT or
    1800 s) bounds every collective, so a rank that dies stops the others instead of hanging them.
    """
    import torch
    import torch.distributed as dist

    if initialized():
        return
    if not launched():
        if any(v in os.environ for v in LAUNCHER_VARS):
            missing = [v for v in LAUNCHER_VARS if v not in os.environ]
            raise RuntimeError(
                f"incomplete launcher environment: {', '.join(missing)} not set (set all of "
                f"{', '.join(LAUNCHER_VARS)} or none, for a single process)"
            )
        os.environ.update(
            {
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(_free_port()),
                "RANK": "0",
                "WORLD_SIZE": "1",
                "LOCAL_RANK": "0",
                "LOCAL_WORLD_SIZE": "1",
            }
        )
    os.environ.setdefault("LOCAL_RANK", "0")
    timeout = timedelta(seconds=timeout_s or float(os.environ.get("XLREPRO_DIST_TIMEOUT", "1800")))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=timeout)


def barrier() -> None:
    """Wait for every rank (no-op in a single process or before the group exists)."""
    if initialized() and world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def shutdown(wait: bool = True) -> None:
    """Destroy the process group (idempotent): the explicit teardown ZeRO-3 needs. ``wait``: meet
    the other ranks first (not after a failure, when they may be gone)."""
    if initialized():
        import torch.distributed as dist

        if wait and world_size() > 1:
            with contextlib.suppress(Exception):
                dist.barrier()
        dist.destroy_process_group()
    import sys

    dscomm = sys.modules.get("deepspeed.comm.comm")  # never import DeepSpeed just to tear down
    if dscomm is not None:  # it keeps its own handle on the group: drop it so a later group starts clean
        setattr(dscomm, "cdb", None)


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (identity in a single process)."""
    if not initialized() or world_size() == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum over ranks of a list of floats (identity in a single process)."""
    if not initialized() or world_size() == 1:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()
