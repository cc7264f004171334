"""``varlen_attention``: bidirectional softmax attention over packed (unpadded) sequences.

Layout (FlashAttention's varlen contract): the sequences of a batch are concatenated along the
token axis, ``q, k, v: (total_tokens, heads, head_dim)``, and ``cu_seqlens`` (int32, length
batch + 1) holds the offsets: sequence ``b`` is tokens ``cu_seqlens[b]:cu_seqlens[b+1]``. Each
token attends to every token of its own sequence and to nothing else, which is exactly XLM-R's
attention with an ``attention_mask`` (no causal mask). ``unpad_input`` / ``pad_input`` convert an
XLM-R padded batch to this layout and back.

Backends, in priority order (``xlrepro info`` and ``varlen_attention_backend`` say which runs):

``cuda``       compiled kernel (csrc/cuda/varlen_attention.cu): float32/bfloat16/float16,
               head_dim 64 only, no dropout. Compiled in CI but **not yet run on a GPU**, so
               auto-dispatch uses it only when ``XLREPRO_VARLEN_CUDA=1`` (explicit
               ``backend="cuda"`` too).
``cpp``        compiled CPU kernel (csrc/cpu/varlen_attention.cpp): float32/float64/bfloat16/
               float16, any head_dim, dropout; online softmax, backward recomputed from the
               saved log-sum-exp; parallel over (sequence, head) tasks.
``reference``  plain PyTorch, one sequence at a time, computing in the input dtype (the "plain
               PyTorch path" of the error rule); supports everything, including dropout.

Dropout (2026-11-25, attn): ``dropout_p > 0`` drops attention probabilities and rescales the
kept ones by ``1 / (1 - dropout_p)``, as ``nn.Dropout`` in XLM-R's self-attention; callers pass
``dropout_p=0`` at evaluation. The reference draws the mask with torch's RNG. The CPU kernel
hashes (seed, head, query token, key token) into the mask, the FlashAttention way: the backward
regenerates it from the seed instead of storing an L x L mask. The seed is drawn from torch's
default generator per call, so ``torch.manual_seed`` makes runs reproducible (for a given
backend: the two backends draw different, equally valid masks). ``dropout_p == 1`` and the
CUDA kernel (no dropout yet) go to the reference.

Accumulation is float32 (float64 for float64 inputs) in every backend except the reference,
which computes in the input dtype like the eager model.
"""

from __future__ import annotations

import operator
import os

import torch
import torch.nn.functional as F

from xlrepro.ops import _dispatch, _lib

FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)

# The error rule (FlashAttention's test habit): with ``ref`` the reference in float64 and ``pt``
# the reference in the tested dtype, a backend passes when, for the output and each gradient,
#   max|backend - ref| <= ratio * max|pt - ref| + atol.
# ``atol`` is a floor for inputs where the plain path happens to be (nearly) exact.
TOLERANCES = {
    torch.float64: {"ratio": 2.0, "atol": 1e-12},
    torch.float32: {"ratio": 2.0, "atol": 1e-6},
    torch.bfloat16: {"ratio": 2.0, "atol": 1e-3},
    torch.float16: {"ratio": 2.0, "atol": 1e-4},
}

CUDA_HEAD_DIMS = (64,)
_CUDA_OPT_IN = "XLREPRO_VARLEN_CUDA"


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _dtype_name(d: torch.dtype) -> str:
    return str(d).replace("torch.", "")


def _check_args(q, k, v, cu_seqlens, max_seqlen, scale, dropout_p, validate_values: bool = True):
    """Raises ValueError naming the offending argument; returns (max_seqlen as int, scale as float
    with None -> head_dim ** -0.5)."""
    fn = "varlen_attention"
    for name, t in (("q", q), ("k", k), ("v", v), ("cu_seqlens", cu_seqlens)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got {type(t).__name__}")
    if q.dim() != 3:
        raise ValueError(f"{fn}: q must be (total_tokens, heads, head_dim), got shape {tuple(q.shape)}")
    for name, t in (("k", k), ("v", v)):
        if t.shape != q.shape:
            raise ValueError(f"{fn}: {name} shape {tuple(t.shape)} must equal q shape {tuple(q.shape)}")
    if q.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{fn}: q dtype must be one of {[_dtype_name(d) for d in FLOAT_DTYPES]}, got {_dtype_name(q.dtype)}"
        )
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise ValueError(f"{fn}: {name} dtype {_dtype_name(t.dtype)} must equal q dtype {_dtype_name(q.dtype)}")
    for name, t in (("k", k), ("v", v), ("cu_seqlens", cu_seqlens)):
        if t.device != q.device:
            raise ValueError(f"{fn}: {name} is on {t.device} but q is on {q.device}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.numel() and t.size(-1) > 1 and t.stride(-1) != 1:
            raise ValueError(
                f"{fn}: {name} must have a contiguous last dimension (stride(-1) == 1), got strides {t.stride()}"
            )
    if cu_seqlens.dtype != torch.int32:
        raise ValueError(f"{fn}: cu_seqlens must be int32, got {_dtype_name(cu_seqlens.dtype)}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
        raise ValueError(f"{fn}: cu_seqlens must be 1-D of length batch + 1, got shape {tuple(cu_seqlens.shape)}")
    if not cu_seqlens.is_contiguous():
        raise ValueError(f"{fn}: cu_seqlens must be contiguous")
    try:
        max_seqlen = operator.index(max_seqlen)
    except TypeError:
        raise ValueError(f"{fn}: max_seqlen must be an int, got {type(max_seqlen).__name__}") from None
    if max_seqlen < 0:
        raise ValueError(f"{fn}: max_seqlen must be >= 0, got {max_seqlen}")
    if scale is None:
        scale = q.shape[-1] ** -0.5 if q.shape[-1] > 0 else 1.0
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not abs(scale) < float("inf"):
        raise ValueError(f"{fn}: scale must be a finite float or None, got {scale!r}")
    if not 0.0 <= float(dropout_p) <= 1.0:
        raise ValueError(f"{fn}: dropout_p must be in [0, 1], got {dropout_p}")
    if validate_values and cu_seqlens.device.type != "meta" and not torch.compiler.is_compiling():
        max_seqlen = min(max_seqlen, _check_cu_seqlens_values(cu_seqlens, q.shape[0], max_seqlen))
    elif cu_seqlens.device.type == "cpu" and not torch.compiler.is_compiling() and cu_seqlens.numel() > 1:
        # reading CPU values costs no device sync; the kernel validates them
        max_seqlen = min(max_seqlen, max(0, int((cu_seqlens[1:] - cu_seqlens[:-1]).max())))
    elif isinstance(q.shape[0], int):
        max_seqlen = min(max_seqlen, q.shape[0])  # no sequence is longer than all tokens together
    return max_seqlen, float(scale)


def _check_cu_seqlens_values(cu_seqlens: torch.Tensor, total: int, max_seqlen: int) -> int:
    """Raises ValueError on bad values; returns the longest sequence."""
    fn = "varlen_attention"
    cu = cu_seqlens.detach().to("cpu", torch.int64)  # one device sync on CUDA
    bad = ((cu < 0) | (cu > total)).nonzero()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(f"{fn}: cu_seqlens[{i}] = {int(cu[i])} is out of range [0, total_tokens = {total}]")
    if int(cu[0]) != 0:
        raise ValueError(f"{fn}: cu_seqlens[0] must be 0, got {int(cu[0])}")
    lens = cu[1:] - cu[:-1]
    dec = (lens < 0).nonzero()
    if dec.numel():
        i = int(dec[0]) + 1
        raise ValueError(
            f"{fn}: cu_seqlens must be non-decreasing, but cu_seqlens[{i}] = {int(cu[i])} < "
            f"cu_seqlens[{i - 1}] = {int(cu[i - 1])}"
        )
    if int(cu[-1]) != total:
        raise ValueError(f"{fn}: total_tokens mismatch: cu_seqlens[-1] = {int(cu[-1])} but q has {total} tokens")
    longest = int(lens.max()) if lens.numel() else 0
    if longest > max_seqlen:
        raise ValueError(f"{fn}: max_seqlen = {max_seqlen} is smaller than the longest sequence ({longest})")
    return longest


# ---------------------------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------------------------


def varlen_attention_reference(
    q, k, v, cu_seqlens, max_seqlen, scale=None, dropout_p: float = 0.0, *, validate: bool = True
) -> torch.Tensor:
    """Plain PyTorch: per sequence, ``softmax(q k^T * scale) v`` in the input dtype (as XLM-R's
    eager attention), dropout on the probabilities with torch's RNG. Differentiable by autograd."""
    _, scale = _check_args(q, k, v, cu_seqlens, max_seqlen, scale, dropout_p, validate_values=validate)
    bounds = cu_seqlens.tolist()
    outs = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        if e == s:
            continue
        qs, ks, vs = (t[s:e].transpose(0, 1) for t in (q, k, v))  # (heads, L, head_dim)
        probs = torch.softmax(torch.matmul(qs, ks.transpose(-1, -2)) * scale, dim=-1)
        if dropout_p > 0:
            probs = F.dropout(probs, p=dropout_p, training=True)
        outs.append(torch.matmul(probs, vs).transpose(0, 1))
    if not outs:
        return q.new_zeros(q.shape)
    return torch.cat(outs, 0).contiguous()


# ---------------------------------------------------------------------------------------------
# Compiled backends and dispatch
# ---------------------------------------------------------------------------------------------


def _compiled(q, k, v, cu_seqlens, max_seqlen, scale, dropout_p):
    seed = 0
    if dropout_p > 0:  # from torch's default generator, so torch.manual_seed governs the mask
        seed = int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64))
    out, _ = torch.ops.xlrepro.varlen_attention_fwd(
        q, k, v, cu_seqlens, max_seqlen, float(scale), float(dropout_p), seed
    )
    return out


def _reference_fn(q, k, v, cu_seqlens, max_seqlen, scale, dropout_p):
    return varlen_attention_reference(q, k, v, cu_seqlens, max_seqlen, scale, dropout_p, validate=False)


def _cpp_extra(main, dropout_p=0.0, **_):
    if dropout_p >= 1:
        return [f"dropout_p = {dropout_p}: everything is dropped (the reference returns zeros)"]
    return []


def _cuda_extra(main, dropout_p=0.0, **kw):
    reasons = []
    if dropout_p > 0:
        reasons.append(f"dropout_p = {dropout_p} > 0 is not implemented in the CUDA kernel")
    if main.dim() == 3 and main.shape[-1] not in CUDA_HEAD_DIMS:
        reasons.append(f"head_dim {main.shape[-1]} not in {list(CUDA_HEAD_DIMS)}")
    if not kw.get("explicit") and os.environ.get(_CUDA_OPT_IN) != "1":
        reasons.append(
            f"the CUDA kernel has not been validated on a GPU yet; set {_CUDA_OPT_IN}=1 "
            "(or pass backend='cuda') to use it"
        )
    return reasons


BACKENDS = (
    _dispatch.Backend(
        "cuda",
        _compiled,
        ("cuda",),
        (torch.float32, torch.bfloat16, torch.float16),
        op="varlen_attention_fwd",
        extra=_cuda_extra,
    ),
    _dispatch.Backend("cpp", _compiled, ("cpu",), FLOAT_DTYPES, op="varlen_attention_fwd", extra=_cpp_extra),
    _dispatch.Backend("reference", _reference_fn, ("cpu", "cuda", "meta"), FLOAT_DTYPES),
)


def varlen_attention_backend(q: torch.Tensor, dropout_p: float = 0.0, backend: str = "auto") -> str:
    """Name of the backend ``varlen_attention`` would run for ``q`` (for logs and manifests)."""
    explicit = backend not in (None, "auto")
    return _dispatch.select(BACKENDS, backend, q, dropout_p=dropout_p, explicit=explicit).name


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    scale: float | None = None,
    dropout_p: float = 0.0,
    *,
    backend: str = "auto",
    validate: bool = True,
) -> torch.Tensor:
    """Softmax attention within each packed sequence.

    q, k, v: (total_tokens, heads, head_dim), one dtype (float32, float64, bfloat16, float16),
        one device, last dimension contiguous (other strides free: views of a fused QKV work).
    cu_seqlens: (batch + 1,) int32, contiguous, on q's device; 0 first, non-decreasing,
        total_tokens last. Zero-length sequences are allowed.
    max_seqlen: int >= the longest sequence (from ``unpad_input``). It only sizes work buffers
        and the CUDA grid, so a larger value is clamped before any kernel runs: to the longest
        sequence of ``cu_seqlens`` (whenever its values are read: ``validate=True``, or any CPU
        call), else to ``total_tokens`` (CUDA with ``validate=False``: no host sync). A value
        far above the data (2**26 for 10 tokens) costs nothing then.
    scale: softmax scale, default ``head_dim ** -0.5``.
    dropout_p: attention-probability dropout; pass 0 at evaluation (the op does not look at
        ``module.training``). The mask comes from torch's default generator (see module doc).
    backend: "auto" (first that supports the inputs), "cuda", "cpp" or "reference"; a forced
        backend that cannot run raises ``BackendUnavailable`` listing every backend's reasons.
    validate: check the values of cu_seqlens (one host sync on CUDA). Structural checks always run.

    Returns (total_tokens, heads, head_dim), contiguous, q's dtype; differentiable w.r.t. q, k, v.
    Bad arguments raise ValueError naming the argument.
    """
    max_seqlen, scale = _check_args(q, k, v, cu_seqlens, max_seqlen, scale, dropout_p, validate_values=validate)
    explicit = backend not in (None, "auto")
    b = _dispatch.select(BACKENDS, backend, q, dropout_p=dropout_p, explicit=explicit)
    return b.fn(q, k, v, cu_seqlens, max_seqlen, scale, dropout_p)


# ---------------------------------------------------------------------------------------------
# Padding helpers (integer indices, as flash_attn.bert_padding)
# ---------------------------------------------------------------------------------------------


def unpad_input(hidden: torch.Tensor, attention_mask: torch.Tensor):
    """Padded batch -> packed tokens.

    hidden: (batch, seqlen, ...); attention_mask: (batch, seqlen) bool/int, nonzero = real token
    (any padding side, holes allowed: a sequence is its row's unmasked tokens in order).
    Returns ``packed`` (total_tokens, ...), ``indices`` (total_tokens,) int64 into the flattened
    (batch * seqlen) axis, ``cu_seqlens`` (batch + 1,) int32 and ``max_seqlen`` (int; one host sync).
    """
    if attention_mask.dim() != 2 or tuple(attention_mask.shape) != tuple(hidden.shape[:2]):
        raise ValueError(
            f"unpad_input: attention_mask must be (batch, seqlen) = {tuple(hidden.shape[:2])}, "
            f"got {tuple(attention_mask.shape)}"
        )
    keep = attention_mask.ne(0)
    seqlens = keep.sum(dim=1, dtype=torch.int32)
    indices = torch.nonzero(keep.flatten(), as_tuple=False).flatten()
    max_seqlen = int(seqlens.max()) if seqlens.numel() else 0
    cu_seqlens = F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    packed = hidden.reshape(hidden.shape[0] * hidden.shape[1], *hidden.shape[2:]).index_select(0, indices)
    return packed, indices, cu_seqlens, max_seqlen


def pad_input(packed: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """Inverse of ``unpad_input``: (total_tokens, ...) -> (batch, seqlen, ...), zeros at padding."""
    out = packed.new_zeros((batch * seqlen, *packed.shape[1:]))
    out = out.index_copy(0, indices, packed)
    return out.reshape(batch, seqlen, *packed.shape[1:])


# ---------------------------------------------------------------------------------------------
# Fake kernels and autograd of the compiled op
# ---------------------------------------------------------------------------------------------


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _register_python_parts() -> None:
    if not _lib.has_schemas("varlen_attention_fwd", "varlen_attention_bwd"):
        return

    @torch.library.register_fake("xlrepro::varlen_attention_fwd")
    def _fake_fwd(q, k, v, cu_seqlens, max_seqlen, scale, dropout_p=0.0, seed=0):
        torch._check(q.dim() == 3, lambda: "varlen_attention: q must be (total_tokens, heads, head_dim)")
        torch._check(k.shape == q.shape and v.shape == q.shape, lambda: "varlen_attention: k, v must match q")
        torch._check(cu_seqlens.dim() == 1, lambda: "varlen_attention: cu_seqlens must be 1-D")
        out = q.new_empty(q.shape)
        lse = q.new_empty((q.shape[1], q.shape[0]), dtype=_lse_dtype(q.dtype))
        return out, lse

    @torch.library.register_fake("xlrepro::varlen_attention_bwd")
    def _fake_bwd(grad_out, q, k, v, out, softmax_lse, cu_seqlens, max_seqlen, scale, dropout_p=0.0, seed=0):
        return q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty(q.shape)

    def _setup_context(ctx, inputs, output):
        q, k, v, cu_seqlens, max_seqlen, scale, dropout_p, seed = inputs
        out, lse = output
        ctx.save_for_backward(q, k, v, out, lse, cu_seqlens)
        ctx.max_seqlen = max_seqlen
        ctx.scale = scale
        ctx.dropout = (dropout_p, seed)  # the backward regenerates the same mask
        ctx.mark_non_differentiable(lse)

    def _backward(ctx, grad_out, _grad_lse):
        q, k, v, out, lse, cu_seqlens = ctx.saved_tensors
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        if grad_out.numel() and grad_out.size(-1) > 1 and grad_out.stride(-1) != 1:
            grad_out = grad_out.contiguous()
        # The backward is itself a registered op, so it runs compiled and under tracing.
        dq, dk, dv = torch.ops.xlrepro.varlen_attention_bwd(
            grad_out, q, k, v, out, lse, cu_seqlens, ctx.max_seqlen, ctx.scale, *ctx.dropout
        )
        return dq, dk, dv, None, None, None, None, None

    torch.library.register_autograd("xlrepro::varlen_attention_fwd", _backward, setup_context=_setup_context)


_register_python_parts()
