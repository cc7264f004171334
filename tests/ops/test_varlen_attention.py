"""varlen_attention: kernels against the PyTorch reference (error rule), gradcheck, opcheck,
argument errors, dispatch, dropout, and the unpad/pad round trip against XLM-R-style masked
attention. CPU tests always run; CUDA tests skip without a GPU."""

from __future__ import annotations

import pytest
import torch

from xlrepro.ops import (
    BackendUnavailable,
    _lib,
    attention,
    families,
    pad_input,
    unpad_input,
    varlen_attention,
    varlen_attention_backend,
    varlen_attention_reference,
)

HAS_EXT = _lib.has_kernel("varlen_attention_fwd", "CPU")
requires_ext = pytest.mark.skipif(
    not HAS_EXT, reason=f"xlrepro._C has no CPU varlen kernel: {_lib.unavailable_reason()}"
)


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    """The shapes here are tiny: one intra-op thread is as fast, and immune to the OpenMP
    spin-wait slowdown of an oversubscribed CI box (gradcheck ran 25x slower with 2 threads on a
    loaded 2-core machine). test_result_does_not_depend_on_thread_count runs the kernel threaded."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# Odd lengths (1, 7, 97, 513: 513 spans three forward key blocks and five backward query tiles),
# single-token sequences, a batch of one, and empty sequences in the middle.
LENGTH_SETS = {
    "odd": [1, 7, 97, 513],
    "single_tokens": [1, 1, 1],
    "batch_of_one": [97],
    "with_empty": [5, 0, 3, 0],
}


def cu_from(lens, device="cpu"):
    return torch.tensor([0] + list(torch.tensor(lens, dtype=torch.int64).cumsum(0)), dtype=torch.int32, device=device)


def make_qkv(lens, heads, dim, dtype, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    total = sum(lens)
    return [
        torch.randn(total, heads, dim, generator=g, dtype=torch.float32).to(device, dtype).requires_grad_()
        for _ in range(3)
    ]


def out_and_grads(fn, q, k, v, grad):
    out = fn(q, k, v)
    gq, gk, gv = torch.autograd.grad(out, (q, k, v), grad)
    return [out, gq, gk, gv]


def assert_error_rule(lens, heads, dim, dtype, backend, device="cpu"):
    """max|backend - ref64| <= ratio * max|reference(dtype) - ref64| + atol for out, dq, dk, dv."""
    tol = attention.TOLERANCES[dtype]
    q, k, v = make_qkv(lens, heads, dim, dtype, device)
    cu = cu_from(lens, device)
    ms = max(lens)
    grad = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    ref64 = out_and_grads(
        lambda a, b, c: varlen_attention_reference(a, b, c, cu, ms),
        *[t.detach().double().requires_grad_() for t in (q, k, v)],
        grad.double(),
    )
    pt = out_and_grads(lambda a, b, c: varlen_attention(a, b, c, cu, ms, backend="reference"), q, k, v, grad)
    ker = out_and_grads(lambda a, b, c: varlen_attention(a, b, c, cu, ms, backend=backend), q, k, v, grad)
    for name, r, p, x in zip(("out", "dq", "dk", "dv"), ref64, pt, ker):
        assert x.dtype == dtype and x.shape == q.shape
        err_pt = (p.double() - r).abs().max().item()
        err = (x.double() - r).abs().max().item()
        assert err <= tol["ratio"] * err_pt + tol["atol"], (
            f"{name}: kernel error {err:.3g} > {tol['ratio']} x reference error {err_pt:.3g} + {tol['atol']}"
        )


# ---------------------------------------------------------------------------------------------
# Correctness of the CPU kernel
# ---------------------------------------------------------------------------------------------


@requires_ext
@pytest.mark.parametrize("lens", LENGTH_SETS.values(), ids=LENGTH_SETS.keys())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_cpu_error_rule(lens, dtype):
    assert_error_rule(lens, heads=2, dim=64, dtype=dtype, backend="cpp")


@requires_ext
@pytest.mark.parametrize("dim", [8, 40, 80])
def test_cpu_error_rule_other_head_dims(dim):
    # head_dim not a multiple of the vector width goes through the padded/packed path.
    assert_error_rule([3, 97, 20], heads=3, dim=dim, dtype=torch.float32, backend="cpp")


@requires_ext
@pytest.mark.parametrize("lens", LENGTH_SETS.values(), ids=LENGTH_SETS.keys())
def test_cpu_float64_matches_reference(lens):
    q, k, v = make_qkv(lens, 2, 64, torch.float64)
    cu = cu_from(lens)
    grad = torch.randn_like(q)
    a = out_and_grads(lambda x, y, z: varlen_attention(x, y, z, cu, max(lens), backend="cpp"), q, k, v, grad)
    b = out_and_grads(lambda x, y, z: varlen_attention_reference(x, y, z, cu, max(lens)), q, k, v, grad)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12)


@requires_ext
@pytest.mark.parametrize("lens,dim", [([1, 3, 5], 4), ([2, 6], 5), ([4], 8)])
def test_cpu_gradcheck_float64(lens, dim):
    q, k, v = make_qkv(lens, 2, dim, torch.float64)
    cu = cu_from(lens)
    assert torch.autograd.gradcheck(
        lambda a, b, c: varlen_attention(a, b, c, cu, max(lens), 0.7, backend="cpp"), (q, k, v)
    )


def test_reference_gradcheck_float64():
    q, k, v = make_qkv([1, 3, 4], 2, 4, torch.float64)
    cu = cu_from([1, 3, 4])
    assert torch.autograd.gradcheck(lambda a, b, c: varlen_attention_reference(a, b, c, cu, 4), (q, k, v))


@requires_ext
@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_opcheck(requires_grad, dtype):
    lens = [3, 1, 6]
    q, k, v = (t.detach().requires_grad_(requires_grad) for t in make_qkv(lens, 2, 16, dtype))
    cu = cu_from(lens)
    for p, seed in ((0.0, 0), (0.2, 7)):
        torch.library.opcheck(torch.ops.xlrepro.varlen_attention_fwd, (q, k, v, cu, 6, 0.25, p, seed))
        out, lse = torch.ops.xlrepro.varlen_attention_fwd(q.detach(), k.detach(), v.detach(), cu, 6, 0.25, p, seed)
        torch.library.opcheck(
            torch.ops.xlrepro.varlen_attention_bwd,
            (torch.randn_like(out), q.detach(), k.detach(), v.detach(), out, lse, cu, 6, 0.25, p, seed),
        )


@requires_ext
def test_lse_is_the_softmax_log_normaliser():
    lens = [4, 9]
    q, k, v = (t.detach() for t in make_qkv(lens, 2, 16, torch.float64))
    cu = cu_from(lens)
    _, lse = torch.ops.xlrepro.varlen_attention_fwd(q, k, v, cu, 9, 0.25)
    assert lse.shape == (2, 13) and lse.dtype == torch.float64
    for s, e in ((0, 4), (4, 13)):
        scores = torch.einsum("qhd,khd->hqk", q[s:e], k[s:e]) * 0.25
        torch.testing.assert_close(lse[:, s:e], torch.logsumexp(scores, -1))


@requires_ext
def test_strided_inputs_equal_contiguous():
    # q, k, v as views of a fused QKV projection: last dim contiguous, token stride 3 * heads * dim.
    lens = [5, 17]
    qkv = torch.randn(sum(lens), 3, 4, 32)
    q, k, v = qkv.unbind(1)
    assert not q.is_contiguous()
    cu = cu_from(lens)
    a = varlen_attention(q, k, v, cu, 17, backend="cpp")
    b = varlen_attention(q.contiguous(), k.contiguous(), v.contiguous(), cu, 17, backend="cpp")
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.is_contiguous()


@requires_ext
def test_result_does_not_depend_on_thread_count():
    lens = [33, 130, 7, 64]
    q, k, v = make_qkv(lens, 3, 64, torch.float32)
    cu = cu_from(lens)
    grad = torch.randn_like(q)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = out_and_grads(lambda x, y, z: varlen_attention(x, y, z, cu, 130), q, k, v, grad)
        torch.set_num_threads(2)
        b = out_and_grads(lambda x, y, z: varlen_attention(x, y, z, cu, 130), q, k, v, grad)
    finally:
        torch.set_num_threads(old)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@requires_ext
def test_zero_tokens():
    q = torch.empty(0, 2, 64, requires_grad=True)
    cu = torch.zeros(3, dtype=torch.int32)
    out = varlen_attention(q, q, q, cu, 0, backend="cpp")
    assert out.shape == (0, 2, 64)
    out.sum().backward()
    assert q.grad.shape == q.shape


def test_max_seqlen_larger_than_needed_is_fine():
    lens = [3, 5]
    q, k, v = make_qkv(lens, 2, 8, torch.float32)
    cu = cu_from(lens)
    a = varlen_attention(q, k, v, cu, 5)
    b = varlen_attention(q, k, v, cu, 512)
    torch.testing.assert_close(a, b)


def test_max_seqlen_far_above_the_data_is_clamped_to_the_longest_sequence():
    """2**26 for 10 tokens sized the kernels' work buffers by max_seqlen (minutes, tens of GB);
    the value is clamped to the longest sequence before any kernel runs."""
    lens = [3, 7]
    q, k, v = make_qkv(lens, 2, 8, torch.float32)
    cu = cu_from(lens)
    assert attention._check_args(q, k, v, cu, 2**26, None, 0.0)[0] == 7
    assert attention._check_args(q, k, v, cu, 2**26, None, 0.0, validate_values=False)[0] == 7  # CPU: read anyway
    meta = [t.to("meta") for t in (q, k, v, cu)]
    assert attention._check_args(*meta, 2**26, None, 0.0)[0] == 10  # values unknown: total tokens
    assert attention._check_args(q, k, v, cu, 8, None, 0.0)[0] == 7
    with pytest.raises(ValueError, match="max_seqlen = 6 is smaller than the longest sequence"):
        attention._check_args(q, k, v, cu, 6, None, 0.0)
    for backend in ["reference"] + (["cpp"] if HAS_EXT else []):
        a = varlen_attention(q, k, v, cu, 2**26, backend=backend)
        torch.testing.assert_close(a, varlen_attention(q, k, v, cu, 7, backend=backend), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# XLM-R semantics: unpad -> varlen attention -> pad equals masked padded attention
# ---------------------------------------------------------------------------------------------


def _masked_padded_attention(q, k, v, mask, scale):
    """XLM-R eager attention: (B, L, H, D) with an additive key mask from attention_mask."""
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    scores = qh @ kh.transpose(-1, -2) * scale
    scores = scores + (1.0 - mask[:, None, None, :].to(scores.dtype)) * torch.finfo(scores.dtype).min
    return (scores.softmax(-1) @ vh).transpose(1, 2)


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpp", marks=requires_ext)])
def test_unpad_attention_pad_matches_masked_padded_attention(backend):
    B, L, H, D = 4, 11, 2, 16
    mask = torch.zeros(B, L, dtype=torch.long)
    mask[0, :11] = 1  # full
    mask[1, :4] = 1  # right padding
    mask[2, 6:] = 1  # left padding
    mask[3, [0, 2, 3, 9]] = 1  # holes: a sequence is its row's unmasked tokens
    x = torch.randn(B, L, 3, H, D, dtype=torch.float64)
    packed, indices, cu, max_seqlen = unpad_input(x, mask)
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 11, 15, 20, 24] and max_seqlen == 11
    assert indices.dtype == torch.int64 and packed.shape == (24, 3, H, D)
    q, k, v = packed.unbind(1)
    out = varlen_attention(q, k, v, cu, max_seqlen, backend=backend)
    padded = pad_input(out, indices, B, L)
    ref = _masked_padded_attention(*x.unbind(2), mask, D**-0.5)
    m = mask.bool()
    torch.testing.assert_close(padded[m], ref[m])
    assert torch.all(padded[~m] == 0)


def test_pad_unpad_round_trip_and_gradient():
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    hidden = torch.randn(2, 3, 5, requires_grad=True)
    packed, indices, cu, ms = unpad_input(hidden, mask)
    back = pad_input(packed, indices, 2, 3)
    torch.testing.assert_close(back, hidden * mask[..., None])
    back.sum().backward()
    torch.testing.assert_close(hidden.grad, mask[..., None].float().expand(2, 3, 5))


def test_unpad_rejects_bad_mask():
    with pytest.raises(ValueError, match="attention_mask must be"):
        unpad_input(torch.randn(2, 3, 4), torch.ones(2, 4))


# ---------------------------------------------------------------------------------------------
# Argument checks: named errors (Python entry point) and TORCH_CHECKs (direct op calls)
# ---------------------------------------------------------------------------------------------


def _args(lens=(3, 4), dtype=torch.float32):
    q, k, v = (t.detach() for t in make_qkv(list(lens), 2, 8, dtype))
    return q, k, v, cu_from(list(lens)), max(lens)


BAD_CU = {
    "non-monotonic": ([0, 5, 3, 7], "non-decreasing"),
    "out-of-range": ([0, 3, 9], r"cu_seqlens\[2\] = 9 is out of range"),
    "negative": ([0, -1, 7], "out of range"),
    "nonzero-first": ([2, 7], r"cu_seqlens\[0\] must be 0"),
    "total-mismatch": ([0, 3, 6], "total_tokens mismatch"),
}


@pytest.mark.parametrize("cu,match", BAD_CU.values(), ids=BAD_CU.keys())
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_bad_cu_seqlens_values(cu, match, backend):
    q, k, v, _, _ = _args()
    with pytest.raises(ValueError, match=match):
        varlen_attention(q, k, v, torch.tensor(cu, dtype=torch.int32), 7, backend=backend)


@requires_ext
@pytest.mark.parametrize("cu,match", BAD_CU.values(), ids=BAD_CU.keys())
def test_bad_cu_seqlens_values_direct_op(cu, match):
    q, k, v, _, _ = _args()
    with pytest.raises(RuntimeError, match=match):
        torch.ops.xlrepro.varlen_attention_fwd(q, k, v, torch.tensor(cu, dtype=torch.int32), 7, 0.3)


def test_bad_arguments():
    q, k, v, cu, ms = _args()
    cases = [
        (dict(cu_seqlens=cu.long()), "cu_seqlens must be int32"),
        (dict(cu_seqlens=cu[:, None]), "cu_seqlens must be 1-D"),
        (dict(cu_seqlens=torch.tensor([0, 0, 3, 0, 7], dtype=torch.int32)[::2]), "cu_seqlens must be contiguous"),
        (dict(cu_seqlens=cu.to("meta")), "cu_seqlens is on meta but q is on cpu"),
        (dict(q=q.int()), "q dtype must be one of"),
        (dict(k=k.double()), "k dtype float64 must equal q dtype float32"),
        (dict(v=v[:5]), "v shape"),
        (dict(q=q[0]), r"q must be \(total_tokens, heads, head_dim\)"),
        (dict(k=k.transpose(1, 2).contiguous().transpose(1, 2)), "k must have a contiguous last dimension"),
        (dict(max_seqlen=3), "max_seqlen = 3 is smaller than the longest sequence"),
        (dict(max_seqlen=4.5), "max_seqlen must be an int"),
        (dict(dropout_p=1.5), "dropout_p must be in"),
        (dict(scale=float("nan")), "scale must be a finite float"),
    ]
    for override, match in cases:
        kw = dict(q=q, k=k, v=v, cu_seqlens=cu, max_seqlen=ms)
        kw.update(override)
        with pytest.raises(ValueError, match=match):
            varlen_attention(**kw)


@requires_ext
def test_direct_op_checks_structure():
    q, k, v, cu, ms = _args()
    with pytest.raises(RuntimeError, match="cu_seqlens must be int32"):
        torch.ops.xlrepro.varlen_attention_fwd(q, k, v, cu.long(), ms, 0.3)
    with pytest.raises(RuntimeError, match="k must have a contiguous last dimension"):
        torch.ops.xlrepro.varlen_attention_fwd(q, k.transpose(1, 2).contiguous().transpose(1, 2), v, cu, ms, 0.3)
    with pytest.raises(RuntimeError, match="max_seqlen"):
        torch.ops.xlrepro.varlen_attention_fwd(q, k, v, cu, 2, 0.3)


# ---------------------------------------------------------------------------------------------
# Dispatch and dropout
# ---------------------------------------------------------------------------------------------


def test_family_registered_and_described():
    assert [b.name for b in families()["varlen_attention"]] == ["cuda", "cpp", "reference"]
    q, *_ = _args()
    assert varlen_attention_backend(q) == ("cpp" if HAS_EXT else "reference")
    assert varlen_attention_backend(q, dropout_p=0.1) == ("cpp" if HAS_EXT else "reference")
    assert varlen_attention_backend(q, dropout_p=1.0) == "reference"


def test_forced_backend_explains_every_backend():
    q, k, v, cu, ms = _args()
    with pytest.raises(BackendUnavailable) as e:
        varlen_attention(q, k, v, cu, ms, backend="cuda")
    msg = str(e.value)
    assert "backend 'cuda' cannot run these inputs" in msg
    assert "cuda: device cpu not in ['cuda']" in msg and "reference: supported" in msg
    assert ("cpp: supported" in msg) == HAS_EXT


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpp", marks=requires_ext)])
def test_dropout_semantics(backend):
    lens = [6, 9]
    q, k, v = make_qkv(lens, 2, 8, torch.float64)
    cu = cu_from(lens)
    base = varlen_attention(q, k, v, cu, 9, backend=backend)
    torch.manual_seed(3)
    a = varlen_attention(q, k, v, cu, 9, dropout_p=0.3, backend=backend)
    torch.manual_seed(3)
    b = varlen_attention(q, k, v, cu, 9, dropout_p=0.3, backend=backend)
    assert torch.equal(a, b) and not torch.allclose(a, base)  # seeded by torch RNG: reproducible
    a.sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))
    # Inverted dropout keeps the expectation: mean over draws approaches the dropout-free output.
    with torch.no_grad():
        mean = torch.stack([varlen_attention(q, k, v, cu, 9, dropout_p=0.3, backend=backend) for _ in range(400)]).mean(
            0
        )
    assert (mean - base).abs().max() < 0.15 * base.abs().max()


def test_dropout_one_drops_everything():
    q, k, v, cu, ms = _args()
    assert torch.all(varlen_attention(q, k, v, cu, ms, dropout_p=1.0) == 0)


@requires_ext
def test_cpu_dropout_mask_is_scaled_bernoulli_per_head():
    # With v = one-hot of the key position, out[q, h, :L] is row q of the dropped probability matrix.
    L, H = 48, 2
    q, k = (t.detach() for t in make_qkv([L], H, 64, torch.float64)[:2])
    v = torch.zeros(L, H, 64, dtype=torch.float64)
    v[torch.arange(L), :, torch.arange(L)] = 1
    cu = cu_from([L])
    P = varlen_attention(q, k, v, cu, L, backend="cpp")[..., :L]
    torch.manual_seed(0)
    Pd = varlen_attention(q, k, v, cu, L, dropout_p=0.25, backend="cpp")[..., :L]
    kept = Pd != 0
    torch.testing.assert_close(Pd[kept], P[kept] / 0.75)
    frac = 1 - kept.double().mean().item()  # 4608 Bernoulli(0.25) draws: sd ~ 0.0064
    assert abs(frac - 0.25) < 0.03
    assert not torch.equal(kept[:, 0], kept[:, 1])  # heads draw different masks
    torch.manual_seed(1)
    assert not torch.equal(kept, varlen_attention(q, k, v, cu, L, dropout_p=0.25, backend="cpp")[..., :L] != 0)


@requires_ext
def test_cpu_dropout_gradcheck_fixed_seed():
    lens = [3, 5]
    q, k, v = make_qkv(lens, 2, 4, torch.float64)
    cu = cu_from(lens)
    fwd = torch.ops.xlrepro.varlen_attention_fwd
    assert torch.autograd.gradcheck(lambda a, b, c: fwd(a, b, c, cu, 5, 0.5, 0.4, 1234)[0], (q, k, v))


@requires_ext
def test_cpu_dropout_backward_regenerates_mask_across_blocks():
    # 300 tokens: several forward key blocks and backward tiles. Directional derivative check.
    lens = [300, 7]
    q, k, v = make_qkv(lens, 2, 16, torch.float64)
    cu = cu_from(lens)
    fwd = torch.ops.xlrepro.varlen_attention_fwd
    f = lambda a, b, c: fwd(a, b, c, cu, 300, 0.25, 0.2, 99)[0]
    w = torch.randn(q.shape, dtype=torch.float64)
    gq, gk, gv = torch.autograd.grad((f(q, k, v) * w).sum(), (q, k, v))
    dirs = [torch.randn_like(q) for _ in range(3)]
    eps = 1e-6
    with torch.no_grad():
        plus = (f(*(x + eps * u for x, u in zip((q, k, v), dirs))) * w).sum()
        minus = (f(*(x - eps * u for x, u in zip((q, k, v), dirs))) * w).sum()
    numeric = (plus - minus) / (2 * eps)
    analytic = sum((g * u).sum() for g, u in zip((gq, gk, gv), dirs))
    assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic))


@requires_ext
def test_cpu_dropout_does_not_depend_on_thread_count():
    lens = [130, 33]
    q, k, v = make_qkv(lens, 3, 64, torch.float32)
    cu = cu_from(lens)
    grad = torch.randn_like(q)
    res = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        torch.manual_seed(5)
        res.append(out_and_grads(lambda x, y, z: varlen_attention(x, y, z, cu, 130, dropout_p=0.1), q, k, v, grad))
    torch.set_num_threads(1)
    for x, y in zip(*res):
        assert torch.equal(x, y)


# ---------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("lens", LENGTH_SETS.values(), ids=LENGTH_SETS.keys())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_cuda_error_rule(lens, dtype):
    assert_error_rule(lens, heads=3, dim=64, dtype=dtype, backend="cuda", device="cuda")


@pytest.mark.gpu
def test_cuda_strided_and_opcheck():
    lens = [5, 70]
    qkv = torch.randn(sum(lens), 3, 2, 64, device="cuda")
    q, k, v = qkv.unbind(1)
    cu = cu_from(lens, "cuda")
    a = varlen_attention(q, k, v, cu, 70, backend="cuda")
    b = varlen_attention(q, k, v, cu, 70, backend="reference")
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.library.opcheck(
        torch.ops.xlrepro.varlen_attention_fwd, (q.contiguous(), k.contiguous(), v.contiguous(), cu, 70, 0.125)
    )


@pytest.mark.gpu
def test_cuda_auto_dispatch_is_opt_in(monkeypatch):
    q = torch.randn(4, 2, 64, device="cuda")
    monkeypatch.delenv("XLREPRO_VARLEN_CUDA", raising=False)
    assert varlen_attention_backend(q) == "reference"
    monkeypatch.setenv("XLREPRO_VARLEN_CUDA", "1")
    assert varlen_attention_backend(q) == "cuda"
    assert varlen_attention_backend(torch.randn(4, 2, 32, device="cuda")) == "reference"
