"""``masked_mean_pool``: mean of token vectors over the non-padding positions.

Used for retrieval embeddings (BUCC, Tatoeba: mean pooling of one hidden layer over the
non-padding tokens, special tokens included, as XTREME and jiant do).

Backends, in priority order: ``cuda`` (compiled CUDA kernel), ``cpp`` (compiled CPU kernel),
``reference`` (PyTorch). All accumulate in float32 (float64 for float64 inputs). A row whose
mask is all zero pools to zeros.
"""

from __future__ import annotations

import torch

from xlrepro.ops import _dispatch, _lib

FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def masked_mean_pool_reference(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, H), (B, L) -> (B, H); the plain PyTorch definition of the op."""
    _check(hidden, mask)
    acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    m = mask.ne(0)
    total = (hidden.to(acc) * m.unsqueeze(-1).to(acc)).sum(1)
    count = m.sum(1, keepdim=True).to(acc)
    out = torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))
    return out.to(hidden.dtype)


def _check(hidden: torch.Tensor, mask: torch.Tensor) -> None:
    if hidden.dim() != 3:
        raise ValueError(f"masked_mean_pool: hidden must be (batch, seq_len, hidden), got shape {tuple(hidden.shape)}")
    if mask.dim() != 2 or mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"masked_mean_pool: mask must be (batch, seq_len) = {tuple(hidden.shape[:2])}, got {tuple(mask.shape)}"
        )
    if mask.is_floating_point() or mask.is_complex():
        raise ValueError(f"masked_mean_pool: mask must be bool or integer, got {mask.dtype}")
    if mask.device != hidden.device:
        raise ValueError(f"masked_mean_pool: hidden on {hidden.device} but mask on {mask.device}")


def _compiled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    _check(hidden, mask)
    return torch.ops.xlrepro.masked_mean_pool(hidden, mask)


BACKENDS = (
    _dispatch.Backend("cuda", _compiled, ("cuda",), FLOAT_DTYPES, op="masked_mean_pool"),
    _dispatch.Backend("cpp", _compiled, ("cpu",), FLOAT_DTYPES, op="masked_mean_pool"),
    _dispatch.Backend("reference", masked_mean_pool_reference, ("cpu", "cuda", "meta"), FLOAT_DTYPES),
)


def masked_mean_pool(hidden: torch.Tensor, mask: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Mean of ``hidden[b, l]`` over positions with ``mask[b, l] != 0``.

    hidden: (B, L, H) float tensor; mask: (B, L) bool/integer (an HF ``attention_mask``).
    Returns (B, H) in hidden's dtype. Differentiable with respect to ``hidden``.
    ``backend``: "auto" (fastest that supports the inputs), "cuda", "cpp" or "reference".
    """
    b = _dispatch.select(BACKENDS, backend, hidden, mask=mask)
    return b.fn(hidden, mask)


def _register_python_parts() -> None:
    """Fake kernel and autograd for the compiled op (only when the library is loaded)."""
    if not _lib.has_schemas("masked_mean_pool", "masked_mean_pool_backward"):
        return

    @torch.library.register_fake("xlrepro::masked_mean_pool")
    def _fake(hidden, mask):
        torch._check(hidden.dim() == 3, lambda: "hidden must be 3-D")
        torch._check(mask.dim() == 2, lambda: "mask must be 2-D")
        return hidden.new_empty((hidden.shape[0], hidden.shape[2]))

    @torch.library.register_fake("xlrepro::masked_mean_pool_backward")
    def _fake_bwd(grad_out, mask, seq_len):
        return grad_out.new_empty((grad_out.shape[0], seq_len, grad_out.shape[1]))

    def _setup_context(ctx, inputs, output):
        hidden, mask = inputs
        ctx.save_for_backward(mask)
        ctx.seq_len = hidden.shape[1]

    def _backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        # The backward is itself a registered op, so it also runs compiled and under tracing.
        return torch.ops.xlrepro.masked_mean_pool_backward(grad.contiguous(), mask, ctx.seq_len), None

    torch.library.register_autograd("xlrepro::masked_mean_pool", _backward, setup_context=_setup_context)


_register_python_parts()
