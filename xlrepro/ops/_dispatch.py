"""Dispatch that explains itself.

Each op family lists its backends in priority order. A backend answers
``not_supported_reasons(**inputs)`` with a list of reasons it cannot run those inputs (empty =
it can). ``dispatch`` runs the first backend with no reasons; when the caller explicitly names a
backend that cannot run, the error lists every backend with its reasons. The pure-PyTorch
``reference`` backend supports everything and is always last, so an unspecified request never
fails for lack of a build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from xlrepro.ops import _lib


class BackendUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Backend:
    """One implementation of an op.

    ``name``: "cuda" | "cpp" | "reference" (or a family-specific name).
    ``device_types``: the tensor device types it accepts.
    ``dtypes``: accepted dtypes of the ``main`` input.
    ``op``: the dispatcher op name it needs compiled (None for pure PyTorch).
    ``fn``: the callable.
    ``extra``: an optional function returning more reasons for given inputs.
    """

    name: str
    fn: Callable
    device_types: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...]
    op: str | None = None
    extra: Callable[..., list[str]] | None = None

    def not_supported_reasons(self, main: torch.Tensor, **inputs) -> list[str]:
        reasons = []
        if main.device.type not in self.device_types:
            reasons.append(f"device {main.device.type} not in {list(self.device_types)}")
        if main.dtype not in self.dtypes:
            reasons.append(f"dtype {main.dtype} not in {[str(d).replace('torch.', '') for d in self.dtypes]}")
        if self.op is not None:
            key = main.device.type.upper()
            if not _lib.load():
                reasons.append(f"extension not loaded: {_lib.unavailable_reason()}")
            elif not _lib.has_kernel(self.op, key):
                reasons.append(f"xlrepro::{self.op} has no compiled {key} kernel in this build")
            if torch.compiler.is_compiling():
                reasons.append("inside torch.compile tracing")
        if self.extra is not None:
            reasons.extend(self.extra(main=main, **inputs))
        return reasons


def select(backends: Sequence[Backend], requested: str | None, main: torch.Tensor, **inputs) -> Backend:
    """The backend to run: the requested one, or the first that supports the inputs."""
    names = [b.name for b in backends]
    if requested not in (None, "auto") and requested not in names:
        raise BackendUnavailable(f"unknown backend {requested!r}; choose one of {names} or 'auto'")
    all_reasons = []
    for b in backends:
        if requested not in (None, "auto") and b.name != requested:
            continue
        reasons = b.not_supported_reasons(main, **inputs)
        if not reasons:
            return b
        all_reasons.append((b.name, reasons))
    if requested not in (None, "auto"):
        # Explain every backend, not only the requested one, so the user sees what would work.
        lines = [f"backend {requested!r} cannot run these inputs:"]
        for b in backends:
            r = b.not_supported_reasons(main, **inputs)
            lines.append(f"  {b.name}: " + ("; ".join(r) if r else "supported"))
        raise BackendUnavailable("\n".join(lines))
    lines = ["no backend supports these inputs:"] + [f"  {n}: {'; '.join(r)}" for n, r in all_reasons]
    raise BackendUnavailable("\n".join(lines))


def describe(backends: Sequence[Backend], device_type: str) -> dict:
    """For ``xlrepro info``: which backend an input on ``device_type`` would use, and why not the others."""
    out = {}
    for b in backends:
        reasons = []
        if device_type not in b.device_types:
            reasons.append(f"device {device_type} not supported")
        if b.op is not None:
            if not _lib.load():
                reasons.append(f"extension not loaded: {_lib.unavailable_reason()}")
            elif not _lib.has_kernel(b.op, device_type.upper()):
                reasons.append(f"no compiled {device_type.upper()} kernel in this build")
        out[b.name] = {"available": not reasons, "reasons": reasons}
    return out
