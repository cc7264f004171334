"""Tests of the bf16 screen with exact fp32 re-scoring (xlrepro/ops/screen.py).

What they pin down:
- the screened knn / knn_both / margin_mine return exactly what the unscreened calls return
  (scores and indices, ties by lowest index) on random inputs, near-ties closer than the bf16
  error, exact duplicates, zero vectors, k + extra beyond the pool, both similarities;
- the certificate is sound: the per-row bound covers the real |screened - fp32| error, also on
  inputs built so that the bf16 rounding errors add up coherently;
- rows that cannot be certified are counted and recomputed (fallback > 0 on planted near-ties,
  == 0 on well-separated data), and a re-scoring that disagrees with the reference tiles makes
  the whole call exact and says so;
- bad arguments give clear errors; opcheck and compiled == torch screen lists.
Small-integer inputs have dot products that are exact in fp32 (and in bf16), so every summation
order agrees and the screen path itself runs on any BLAS; random float inputs may take the
all-exact path when the BLAS computes small re-scoring GEMMs differently (the check catches it).
"""

from __future__ import annotations

import pytest
import torch

import xlrepro.ops as ops
from xlrepro.ops import _lib, screen, similarity as sim

torch.set_num_threads(2)

HAVE_EXT = _lib.load() and _lib.has_kernel("knn_screen_bf16", "CPU") and _lib.has_kernel("bf16_split", "CPU")
requires_ext = pytest.mark.skipif(not HAVE_EXT, reason=f"CPU extension not built: {_lib.unavailable_reason()}")
SMALL = dict(block_rows=37, block_cols=23, group=16, min_other=24)  # several tiles, ragged edges


def _rand(n, d, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _ints(n, d, lo=-3, hi=4, seed=0):
    return torch.randint(lo, hi, (n, d), generator=torch.Generator().manual_seed(seed)).float()


def _screened_both(x, y, k, similarity, extra=None, blocks=SMALL):
    """The screen with small tiles and its reference with the same blocking."""
    rep = {}
    br, bc = blocks["block_rows"], blocks["block_cols"]
    ref = sim.knn_both_reference(x, y, k, k, similarity, br, bc)
    got = sim.screened("knn_both", x, y, k, k, similarity, "bf16", extra, rep, lambda: ref, **blocks)
    return got, ref, rep


def _equal(a, b):
    return all(torch.equal(u, v) for u, v in zip(a, b))


# ---------------------------------------------------------------- identical answers


@pytest.mark.parametrize("similarity", sim.SIMILARITIES)
@pytest.mark.parametrize("k", [1, 4])
def test_integer_inputs_identical_and_screened(similarity, k):
    x, y = _ints(90, 24, seed=1), _ints(110, 24, seed=2)
    got, ref, rep = _screened_both(x, y, k, similarity)
    assert _equal(got, ref)
    assert rep["reason"] is None and not rep["exact_fallback_all"]  # the screen path itself ran
    assert rep["rows"] == 90 and rep["cols"] == 110
    assert rep["rows_fallback"] == rep["fallback_rows"].numel() < 90


@pytest.mark.parametrize("similarity", sim.SIMILARITIES)
def test_random_inputs_identical(similarity):
    x, y = _rand(70, 40, seed=3), _rand(85, 40, seed=4)
    got, ref, rep = _screened_both(x, y, 3, similarity)
    assert _equal(got, ref)
    assert rep["reason"] is None or "differs from the reference tile" in rep["reason"]


@pytest.mark.parametrize("similarity", sim.SIMILARITIES)
def test_public_entry_points_identical(similarity):
    x, y = _rand(300, 48, seed=5), _rand(260, 48, seed=6)
    rep = {}
    assert _equal(
        ops.knn(x, y, 4, similarity=similarity, screen="bf16", report=rep), ops.knn(x, y, 4, similarity=similarity)
    )
    assert rep["cols"] == 0 and "cols_fallback" not in rep or rep["exact_fallback_all"]
    assert _equal(
        ops.knn_both(x, y, 2, similarity=similarity, screen="bf16", screen_extra=3),
        ops.knn_both(x, y, 2, similarity=similarity),
    )
    xb, yb = x.bfloat16(), y.half()  # low-precision inputs: the fp32 answer on their values
    assert _equal(
        ops.knn_both(xb, yb, 2, similarity=similarity, screen="bf16"), ops.knn_both(xb, yb, 2, similarity=similarity)
    )


@pytest.mark.parametrize("mode", sim.MODES)
def test_margin_mine_identical(mode):
    x, y = _rand(120, 32, seed=7), _rand(140, 32, seed=8)
    rep = {}
    a = ops.margin_mine(x, y, k=4, mode=mode, screen="bf16", report=rep)
    b = ops.margin_mine(x, y, k=4, mode=mode)
    assert _equal(a, b)
    assert rep["rows"] == 120 and rep["cols"] == 140


def test_near_ties_below_bf16_resolution_fall_back():
    """40 keys whose scores differ by 2^-20 (all equal in bf16) for query 0: the screen cannot
    rank them, the certificate fails, and the row is recomputed to the exact order."""
    d = 8
    x = _ints(30, d, seed=9)
    x[0] = 0
    x[0, 0] = 1
    y = _ints(60, d, seed=10)
    y[10:50] = 0
    y[:, 0] = -1  # every other key scores -1 with query 0
    # exact fp32 scores 0.5 + j 2^-20 with query 0, all 0.5 in bf16: the screen keeps the lowest
    # indices of the group, the exact top k are the highest
    y[10:50, 0] = 0.5 + torch.arange(40) * 2.0**-20
    for k in (1, 4):
        got, ref, rep = _screened_both(x, y, k, "dot", extra=2)
        assert _equal(got, ref)
        assert rep["reason"] is None
        assert 0 in rep["fallback_rows"].tolist() and rep["rows_fallback"] >= 1
        assert got[1][0].tolist() == list(range(49, 49 - k, -1))  # the exact order, not the screen's


def test_duplicates_and_zero_vectors():
    x, y = _ints(50, 16, seed=11), _ints(70, 16, seed=12)
    y[20:30] = y[3]  # 11 identical keys: ties across the candidate boundary
    x[5:9] = x[2]
    x[0] = 0
    y[1] = 0
    for similarity in sim.SIMILARITIES:
        got, ref, rep = _screened_both(x, y, 4, similarity, extra=2)
        assert _equal(got, ref)
        assert 0 in rep["fallback_rows"].tolist()  # a zero query: every key ties at 0


@pytest.mark.parametrize("k,extra", [(5, 30), (12, 0), (12, 8)])
def test_k_plus_extra_beyond_the_pool(k, extra):
    x, y = _rand(25, 16, seed=13), _rand(12, 16, seed=14)
    got, ref, rep = _screened_both(x, y, k, "cosine", extra=extra)
    assert _equal(got, ref)


def test_well_separated_needs_no_fallback():
    """Distinct integer scores with unit gaps: every row and column is certified."""
    g = torch.Generator().manual_seed(15)
    d = 16
    x = torch.randint(-3, 4, (64, d), generator=g).float()
    y = torch.randint(-3, 4, (96, d), generator=g).float()
    x[:, 0] = 8
    y[:, 0] = torch.randperm(96, generator=g).float() * 2  # key j's score: 16 * rank + small noise
    got, ref, rep = _screened_both(x, y, 4, "dot")
    assert _equal(got, ref)
    assert rep["rows_fallback"] == 0 and rep["fallback_rows"].numel() == 0


# ---------------------------------------------------------------- soundness of the bound


@pytest.mark.parametrize("case", ["random", "coherent", "scaled", "positive_long"])
def test_bound_covers_the_real_error(case):
    """|bf16 GEMM result - reference fp32 score| <= B_i for every pair (full matrices).

    ``positive_long``: d = 4096 positive values, so a bf16 GEMM that rounded partial sums to bf16
    (between blocks of its reduction) would exceed the bound."""
    d = 4096 if case == "positive_long" else 64
    if case == "positive_long":
        X, Y = _rand(8, d, seed=28).abs(), _rand(16, d, seed=29).abs()
    elif case == "random":
        X, Y = _rand(40, d, seed=16), _rand(50, d, seed=17)
    elif case == "coherent":
        # every element just below a bf16 rounding boundary (1 + 2^-8 - tiny rounds to 1): the
        # rounding errors all have the same sign, Cauchy-Schwarz is nearly attained
        X = torch.full((40, d), 1 + 2.0**-8 - 2.0**-20)
        Y = torch.full((50, d), 1 + 2.0**-8 - 2.0**-20) * torch.linspace(0.5, 1, 50)[:, None]
    else:
        X, Y = _rand(40, d, seed=18) * 1e15, _rand(50, d, seed=19) * 1e-12
    nx, nxb, ex, amx, Xb = screen._norms(X, d)
    ny, nyb, ey, amy, Yb = screen._norms(Y, d)
    B = screen._bounds(nx, nxb, ex, ny, nyb, ey, d, amx + amy)
    o = (Xb @ Yb.T).float().double()
    s = (X @ Y.T).double()
    up = screen._upper(o, B[:, None])  # the certificate's upper bound for each pair
    assert bool((s <= up).all())
    err = (o - s).abs()
    assert bool((err <= B[:, None] + screen.BF16_OUT * o.abs()).all())
    if case == "coherent":
        assert float(err.max()) > 0.3 * float(B.max())  # the bound is not vacuous there


# ---------------------------------------------------------------- the re-scoring check


def test_rescoring_mismatch_makes_the_call_exact(monkeypatch):
    x, y = _ints(60, 16, seed=20), _ints(80, 16, seed=21)
    real = screen.rescore_rows

    def off_by_one_ulp(*a, **kw):
        out = real(*a, **kw)
        return torch.nextafter(out, torch.full_like(out, float("inf")))

    monkeypatch.setattr(screen, "rescore_rows", off_by_one_ulp)
    got, ref, rep = _screened_both(x, y, 3, "dot")
    assert _equal(got, ref)
    assert rep["exact_fallback_all"] and "row re-scoring" in rep["reason"]
    assert rep["rows_fallback"] == 60 and rep["cols_fallback"] == 80


def test_overflow_risk_skips_the_screen():
    x, y = _rand(20, 8, seed=22), _rand(30, 8, seed=23)
    x, y = x / x.abs().max() * 5.5e18, y / y.abs().max() * 5.5e18  # d max|x| max|y| ~ 2.4e38: fp32 ok
    rep = {}
    a = ops.knn_both(x, y, 2, screen="bf16", report=rep)
    assert _equal(a, ops.knn_both(x, y, 2))
    assert rep["exact_fallback_all"] and "overflow" in rep["reason"]
    rep = {}  # cosine normalises first: the same inputs are screened
    assert _equal(
        ops.knn_both(x, y, 2, similarity="cosine", screen="bf16", report=rep),
        ops.knn_both(x, y, 2, similarity="cosine"),
    )
    assert rep["reason"] is None


def test_screen_helpers():
    U = screen._pad_index(torch.tensor([2, 5]), 4, 10)
    assert U.tolist() == [0, 1, 2, 5]
    assert screen._pad_index(torch.tensor([0, 2]), 4, 3).tolist() == [0, 1, 2]  # at most n entries
    groups = list(screen._groups(torch.arange(10), 10, 4))
    assert [(a, b, r.tolist(), o) for a, b, r, o in groups] == [
        (0, 4, [0, 1, 2, 3], 0),
        (4, 8, [4, 5, 6, 7], 0),
        (8, 10, [6, 7, 8, 9], 2),
    ]
    ((a, b, r, o),) = screen._groups(torch.tensor([7, 3]), 10, 4)
    assert r[:2].tolist() == [7, 3] and sorted(r[2:].tolist()) == [0, 1] and o == 0
    assert screen._tile_starts(10, 4) == [0, 8] and screen._tile_starts(8, 4) == [0]
    av = screen.availability()
    assert av["available"] is True and isinstance(av["fast"], bool)


# ---------------------------------------------------------------- errors


def test_bad_arguments():
    x, y = _rand(10, 4), _rand(12, 4)
    with pytest.raises(ValueError, match="screen must be None or one of"):
        ops.knn(x, y, 2, screen="fp16")
    with pytest.raises(ValueError, match="screen_extra must be an int >= 0"):
        ops.knn_both(x, y, 2, screen="bf16", screen_extra=-1)
    with pytest.raises(ValueError, match="screen_extra must be an int >= 0"):
        ops.knn(x, y, 2, screen="bf16", screen_extra=1.5)
    with pytest.raises(ValueError, match="report must be a dict"):
        ops.knn(x, y, 2, screen="bf16", report=[])
    with pytest.raises(ValueError, match="screen must be None"):
        ops.margin_mine(x, y, screen="int8")
    with pytest.raises(ValueError, match="exceeds the number"):
        ops.knn(x, y, 13, screen="bf16")
    with pytest.raises(ValueError, match="NaN or Inf"):
        ops.knn_both(x / 0, y, 2, screen="bf16")


@pytest.mark.gpu
def test_the_screen_refuses_cuda_tensors():
    x, y = _rand(10, 4), _rand(12, 4)
    with pytest.raises(ValueError, match="CPU only"):
        ops.knn(x.cuda(), y.cuda(), 2, screen="bf16")


# ---------------------------------------------------------------- compiled screen


@requires_ext
def test_opcheck_screen_op():
    xb, yb = _rand(30, 8, seed=24).bfloat16(), _rand(25, 8, seed=25).bfloat16()
    torch.library.opcheck(torch.ops.xlrepro.knn_screen_bf16.default, (xb, yb, 3, 2, 16, 8))
    torch.library.opcheck(torch.ops.xlrepro.knn_screen_bf16.default, (xb, yb, 4, 0, 2048, 2048))
    with pytest.raises(RuntimeError, match="must be bfloat16"):
        torch.ops.xlrepro.knn_screen_bf16(xb.float(), yb, 2, 2)
    with pytest.raises(RuntimeError, match="exceeds the number"):
        torch.ops.xlrepro.knn_screen_bf16(xb, yb, 26, 0)


@requires_ext
def test_bf16_split_op(monkeypatch):
    x = _rand(40, 24, seed=30)
    x[3] = 0
    x[5, :4] = 1e-40  # subnormals
    torch.library.opcheck(torch.ops.xlrepro.bf16_split.default, (x,))
    xb, st = torch.ops.xlrepro.bf16_split(x)
    assert torch.equal(xb, x.bfloat16())  # the same rounding as torch's conversion
    b = xb.double()
    ref = torch.stack([x.double().norm(dim=1), b.norm(dim=1), (x.double() - b).norm(dim=1), b.abs().amax(1)], 1)
    assert torch.allclose(st, ref, rtol=1e-12, atol=0)
    compiled = screen._norms(x, 24)
    monkeypatch.setattr(screen, "compiled_split", lambda: False)
    fallback = screen._norms(x, 24)
    assert torch.equal(compiled[4], fallback[4]) and compiled[3] == fallback[3]
    for a, b in zip(compiled[:3], fallback[:3]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-15)
    with pytest.raises(RuntimeError, match="must be float32"):
        torch.ops.xlrepro.bf16_split(x.double())


@requires_ext
def test_compiled_screen_lists_equal_torch_screen_lists():
    """Same screened values per row and column (indices may differ only among equal values)."""
    x, y = _rand(70, 24, seed=26), _rand(90, 24, seed=27)
    xb, yb = x.bfloat16(), y.bfloat16()
    (rv, ri), (cv, ci) = screen._screen_lists(xb, yb, 6, 5, 37, 23, compiled=True)
    (rv2, ri2), (cv2, ci2) = screen._screen_lists(xb, yb, 6, 5, 37, 23, compiled=False)
    assert torch.equal(rv, rv2) and torch.equal(cv, cv2)
    S = (xb @ yb.T).float()
    assert torch.equal(S.gather(1, ri), rv) and torch.equal(S.T.gather(1, ci), cv)


def test_info_reports_the_screen():
    from xlrepro import info

    d = info.ops_status()["screens"]["bf16"]
    assert d["available"] is True and d["screen_kernel"] == ("cpp" if HAVE_EXT else "torch")
    assert d["fast"] == (bool(d["native_bf16"]) and not d["reasons"])
    text = info.format_info(info.info())
    assert "screen='bf16'" in text and f"screen kernel: {d['screen_kernel']}" in text
