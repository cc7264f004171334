"""Public entry points of xlrepro's fused ops, each with a PyTorch fallback.

Every function here picks the fastest backend that supports its inputs (compiled CUDA, compiled
CPU, PyTorch reference) and accepts ``backend=`` to force one; a forced backend that cannot run
raises an error that lists every backend with its reasons. ``families()`` feeds ``xlrepro info``.
"""

from __future__ import annotations

from xlrepro.ops import _dispatch, _lib, attention as _attention, pooling as _pooling, screen as _screen
from xlrepro.ops._dispatch import BackendUnavailable
from xlrepro.ops.attention import (
    pad_input,
    unpad_input,
    varlen_attention,
    varlen_attention_backend,
    varlen_attention_reference,
)
from xlrepro.ops.pooling import masked_mean_pool, masked_mean_pool_reference
from xlrepro.ops.similarity import (
    KNN_BACKENDS,
    KNN_BOTH_BACKENDS,
    MARGIN_BACKENDS,
    knn,
    knn_backend,
    knn_both,
    margin_mine,
)

# name -> backends (priority order). Each op family adds itself here.
_FAMILIES = {
    "masked_mean_pool": _pooling.BACKENDS,
    "knn": KNN_BACKENDS,
    "knn_both": KNN_BOTH_BACKENDS,
    "margin_scores": MARGIN_BACKENDS,
    "varlen_attention": _attention.BACKENDS,
}


def families() -> dict:
    return dict(_FAMILIES)


def status() -> dict:
    """Which backend each op family selects on every visible device, with each backend's reasons,
    the compiled extension's state and build record, and the screens' availability (``xlrepro info``)."""
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    ops = {}
    for name, backends in families().items():
        per_device = {}
        for d in devices:
            desc = _dispatch.describe(backends, d)
            chosen = next((b for b, v in desc.items() if v["available"]), None)
            per_device[d] = {"selected": chosen, "backends": desc}
        ops[name] = per_device
    return {
        "extension_loaded": _lib.load(),
        "reason": _lib.unavailable_reason(),
        "build": _lib.build_info(),
        "ops": ops,
        "screens": {"bf16": _screen.availability()},
    }


__all__ = [
    "BackendUnavailable",
    "masked_mean_pool",
    "masked_mean_pool_reference",
    "families",
    "knn",
    "knn_backend",
    "knn_both",
    "margin_mine",
    "status",
    "varlen_attention",
    "varlen_attention_reference",
    "varlen_attention_backend",
    "unpad_input",
    "pad_input",
]
