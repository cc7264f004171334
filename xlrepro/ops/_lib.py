"""Loading the compiled operator library ``xlrepro._C`` and saying why it is not there.

The library is optional: every op has a pure-PyTorch reference. Import never fails; a load
failure is logged once (set ``XLREPRO_VERBOSE=1`` for the traceback) and its reason is kept
for ``xlrepro info`` and for the dispatcher's error messages.
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
import logging
import os
import traceback

import torch

log = logging.getLogger("xlrepro.ops")

_state: dict = {"loaded": None, "reason": None, "build_info": None}


def build_info() -> dict:
    """What ``setup.py`` recorded at build time (``{}`` if the package was never built)."""
    if _state["build_info"] is None:
        try:
            text = importlib.resources.files("xlrepro").joinpath("_build_info.json").read_text()
            _state["build_info"] = json.loads(text)
        except (FileNotFoundError, OSError, json.JSONDecodeError):
            _state["build_info"] = {}
    return _state["build_info"]


def load() -> bool:
    """Import ``xlrepro._C`` once; True when its ops are registered."""
    if _state["loaded"] is not None:
        return _state["loaded"]
    info = build_info()
    if os.environ.get("XLREPRO_DISABLE_EXT") == "1":
        _state.update(loaded=False, reason="disabled by XLREPRO_DISABLE_EXT=1")
        return False
    built_for = info.get("torch_version")
    if built_for and built_for != torch.__version__:
        _state.update(
            loaded=False,
            reason=f"built for torch {built_for}, running torch {torch.__version__}; "
            "rebuild with `pip install --no-build-isolation -e .`",
        )
        log.warning("xlrepro: compiled ops not used: %s", _state["reason"])
        return False
    try:
        # Static initialisers register torch.ops.xlrepro.*. Imported by its full name: the compiled
        # library, not the xlrepro package (which `from xlrepro import _C` would read as, to the linter).
        importlib.import_module("xlrepro._C")
    except ImportError as e:
        reason = info.get("reason") or f"xlrepro._C could not be imported ({e})"
        if not info:
            reason = "the extension was never built (install with `pip install --no-build-isolation -e .`)"
        _state.update(loaded=False, reason=reason)
        if info.get("extension"):  # it was built but does not load: worth a warning
            log.warning("xlrepro: compiled ops not used: %s", e)
        if os.environ.get("XLREPRO_VERBOSE") == "1":
            log.warning("%s", traceback.format_exc())
        return False
    _state.update(loaded=True, reason=None)
    return True


def unavailable_reason() -> str | None:
    load()
    return _state["reason"]


def has_kernel(op: str, dispatch_key: str) -> bool:
    """True when ``xlrepro::<op>`` has a compiled kernel for ``dispatch_key`` ("CPU", "CUDA")."""
    if not load():
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"xlrepro::{op}", dispatch_key)
    except RuntimeError:
        return False


def has_schemas(*ops: str) -> bool:
    """True when the loaded library declares every ``xlrepro::<op>``. A stale build (older
    sources) lacks newer ops: their Python parts are then not registered and their compiled
    backends report "no compiled kernel", so the PyTorch references run."""
    if not load():
        return False
    missing = [op for op in ops if not hasattr(torch.ops.xlrepro, op)]
    if missing and not _state.get("warned_stale"):
        _state["warned_stale"] = True
        log.warning(
            "xlrepro: the compiled library lacks %s (stale build?); using the PyTorch references. "
            "Rebuild with `pip install --no-build-isolation -e .`",
            ", ".join(missing),
        )
    return not missing
