"""Public entry points of xlrepro's fused ops, each with a PyTorch fallback.

Every function here picks the fastest backend that supports its inputs (compiled CUDA, compiled
CPU, PyTorch reference) and accepts ``backend=`` to force one; a forced backend that cannot run
raises an error that lists every backend with its reasons. ``families()`` feeds ``xlrepro info``.
"""
from __future__ import annotations

from xlrepro.ops._dispatch import BackendUnavailable
from xlrepro.ops.pooling import masked_mean_pool, masked_mean_pool_reference
from xlrepro.ops import pooling as _pooling
from xlrepro.ops.similarity import knn, knn_both, margin_mine, KNN_BACKENDS, KNN_BOTH_BACKENDS, MARGIN_BACKENDS

# name -> backends (priority order). Each op family adds itself here.
_FAMILIES = {
    "masked_mean_pool": _pooling.BACKENDS,
    "knn": KNN_BACKENDS, "knn_both": KNN_BOTH_BACKENDS, "margin_scores": MARGIN_BACKENDS,
}


def families() -> dict:
    return dict(_FAMILIES)


__all__ = ["BackendUnavailable", "masked_mean_pool", "masked_mean_pool_reference", "families",
           "knn", "knn_both", "margin_mine"]
