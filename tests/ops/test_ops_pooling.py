import os
import subprocess
import sys

import pytest
import torch

from xlrepro.ops import BackendUnavailable, _lib, masked_mean_pool, masked_mean_pool_reference

built = _lib.has_kernel("masked_mean_pool", "CPU")


def _inputs(B=5, L=9, H=33, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, L, H, generator=g).to(dtype)
    lengths = torch.tensor([0, 1, L, 4, 7][:B])
    mask = (torch.arange(L)[None, :] < lengths[:, None]).long()
    return h, mask


def test_extension_is_built_on_this_machine():
    # CI builds the CPU extension; a silent fallback would hide a broken build.
    assert built, f"xlrepro._C not usable: {_lib.unavailable_reason()}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_kernel_matches_reference(dtype):
    h, mask = _inputs(dtype=dtype)
    got = masked_mean_pool(h, mask, backend="cpp")
    ref = masked_mean_pool_reference(h, mask)
    assert got.dtype == dtype and got.shape == (5, 33)
    tol = {torch.float32: 1e-6, torch.float64: 1e-12, torch.bfloat16: 1e-2, torch.float16: 1e-3}[dtype]
    torch.testing.assert_close(got.float(), ref.float(), atol=tol, rtol=tol)
    # exact definition on a hand-checked row: the mean of the first 4 positions
    torch.testing.assert_close(got[3].double(), h[3, :4].double().mean(0), atol=tol * 4, rtol=tol * 4)
    assert torch.all(got[0] == 0), "a row with no unmasked token pools to zeros"


def test_bool_mask_and_noncontiguous_input():
    h, mask = _inputs()
    ht = h.transpose(1, 2).contiguous().transpose(1, 2)  # same values, non-contiguous strides
    assert not ht.is_contiguous()
    torch.testing.assert_close(masked_mean_pool(ht, mask.bool(), backend="cpp"), masked_mean_pool_reference(h, mask))


def test_gradcheck_and_opcheck():
    h, mask = _inputs(B=3, L=4, H=5, dtype=torch.float64)
    h.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: masked_mean_pool(x, mask, backend="cpp"), (h,))
    torch.library.opcheck(torch.ops.xlrepro.masked_mean_pool.default, (h, mask))
    torch.library.opcheck(torch.ops.xlrepro.masked_mean_pool.default, (h.detach(), mask))
    g = torch.randn(3, 5, dtype=torch.float64)
    torch.library.opcheck(torch.ops.xlrepro.masked_mean_pool_backward.default, (g, mask, 4))


def test_gradient_matches_reference():
    h, mask = _inputs()
    a = h.clone().requires_grad_(True)
    b = h.clone().requires_grad_(True)
    masked_mean_pool(a, mask, backend="cpp").pow(2).sum().backward()
    masked_mean_pool_reference(b, mask).pow(2).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert torch.all(a.grad[mask == 0] == 0)


def test_bad_arguments_name_the_problem():
    h, mask = _inputs()
    with pytest.raises(ValueError, match="mask must be"):
        masked_mean_pool(h, mask[:, :3])
    with pytest.raises(ValueError, match="bool or integer"):
        masked_mean_pool(h, mask.float())
    with pytest.raises(ValueError, match="hidden must be"):
        masked_mean_pool(h[0], mask)


def test_explicit_backend_that_cannot_run_explains_every_backend():
    h, mask = _inputs()
    with pytest.raises(BackendUnavailable) as e:
        masked_mean_pool(h, mask, backend="cuda")
    msg = str(e.value)
    assert "cuda: device cpu not in ['cuda']" in msg and "cpp: supported" in msg and "reference: supported" in msg
    with pytest.raises(BackendUnavailable, match="unknown backend 'gpu'"):
        masked_mean_pool(h, mask, backend="gpu")


def test_everything_works_without_the_extension():
    code = (
        "import torch, xlrepro.ops as o, json; from xlrepro.info import info; "
        "h=torch.randn(2,3,4); m=torch.ones(2,3,dtype=torch.long); "
        "r=o.masked_mean_pool(h,m); assert torch.allclose(r,h.mean(1)); d=info(); "
        "print(json.dumps([d['extension_loaded'], d['reason'], d['ops']['masked_mean_pool']['cpu']['selected']]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "XLREPRO_DISABLE_EXT": "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == '[false, "disabled by XLREPRO_DISABLE_EXT=1", "reference"]'
