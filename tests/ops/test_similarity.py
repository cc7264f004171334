"""Tests of the similarity family (knn, knn_both, margin_scores, margin_mine).

What they pin down (the contract in xlrepro/ops/similarity.py's docstring):
- compiled results are bit-identical to the reference with the same GEMM blocking, for every
  dtype and both similarities, on random and adversarial inputs (duplicates, ties, zero rows);
- with dot products that are exact in float32 (small integers), every blocking and backend gives
  the brute-force answer ordered by (score desc, index asc);
- margin scores are bit-identical to LASER's float32 arithmetic, and margin_mine follows
  LASER's mine_bitext modes (a numpy transcription and hand-worked cases);
- clear errors for bad inputs; torch.library.opcheck on every op; self-explaining dispatch.
Small shapes with small tiles (several tiles, ragged edges) keep this fast on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import xlrepro.ops as ops
from xlrepro.ops import _lib, similarity as sim
from xlrepro.ops._dispatch import BackendUnavailable

torch.set_num_threads(2)

HAVE_EXT = _lib.load() and _lib.has_kernel("knn", "CPU")
requires_ext = pytest.mark.skipif(not HAVE_EXT, reason=f"CPU extension not built: {_lib.unavailable_reason()}")

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
SMALL = dict(block_rows=37, block_cols=23)  # several tiles with ragged edges on small inputs


def _rand(n, d, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g).to(dtype)


def _adversarial(n, m, d, seed=0):
    """Small-integer embeddings: exact dot products, many ties, duplicate rows, zero rows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, (n, d), generator=g).float()
    y = torch.randint(-2, 3, (m, d), generator=g).float()
    x[3] = x[1]  # duplicates
    y[5] = y[2]
    y[7] = y[2]
    x[4] = 0  # zero rows
    y[0] = 0
    return x, y


def _oracle_topk(S: torch.Tensor, k: int):
    """Brute force: full sort by (score desc, index asc)."""
    o = torch.sort(S, dim=1, descending=True, stable=True)
    return o.values[:, :k], o.indices[:, :k]


# ---------------------------------------------------------------- reference semantics


def test_reference_matches_brute_force_on_exact_inputs():
    x, y = _adversarial(60, 50, 16)
    S = x @ y.T  # exact in float32
    rs, ri, cs, ci = sim.knn_both_reference(x, y, 5, 4, "dot", **SMALL)
    vs, vi = _oracle_topk(S, 5)
    assert torch.equal(rs, vs) and torch.equal(ri, vi)
    vs, vi = _oracle_topk(S.T.contiguous(), 4)
    assert torch.equal(cs, vs) and torch.equal(ci, vi)


def test_reference_blocking_does_not_matter_for_exact_inputs():
    x, y = _adversarial(40, 45, 8, seed=1)
    a = sim.knn_both_reference(x, y, 3, 3, "dot", block_rows=7, block_cols=5)
    b = sim.knn_both_reference(x, y, 3, 3, "dot")
    for u, v in zip(a, b):
        assert torch.equal(u, v)


def test_all_ties_give_lowest_indices():
    x = torch.zeros(9, 4)
    y = torch.zeros(11, 4)
    for backend in ["reference"] + (["cpp"] if HAVE_EXT else []):
        rs, ri, cs, ci = ops.knn_both(x, y, 3, similarity="cosine", backend=backend)
        assert torch.equal(ri, torch.arange(3).expand(9, 3))
        assert torch.equal(ci, torch.arange(3).expand(11, 3))
        assert torch.equal(rs, torch.zeros(9, 3)) and torch.equal(cs, torch.zeros(11, 3))


def test_cosine_normalises_and_zero_rows_score_zero():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    y = torch.tensor([[6.0, 8.0], [-4.0, 3.0], [1.0, 0.0]])
    for backend in ["reference"] + (["cpp"] if HAVE_EXT else []):
        s, i = ops.knn(x, y, 3, similarity="cosine", backend=backend)
        assert i[0].tolist() == [0, 2, 1]
        assert torch.allclose(s[0], torch.tensor([1.0, 0.6, 0.0]), atol=1e-6)
        assert i[1].tolist() == [0, 1, 2] and s[1].tolist() == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------- compiled == reference


@requires_ext
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_knn_bit_identical_to_reference(dtype, similarity):
    q, keys = _rand(70, 24, dtype, 1), _rand(90, 24, dtype, 2)
    cosine = similarity == "cosine"
    s, i = torch.ops.xlrepro.knn(q, keys, 6, cosine, 37, 23)
    rs, ri = sim.knn_reference(q, keys, 6, similarity, **SMALL)
    assert torch.equal(s, rs) and torch.equal(i, ri)
    assert s.dtype == torch.float32 and i.dtype == torch.int64
    # default blocking through the public entry point
    s, i = ops.knn(q, keys, 6, similarity=similarity, backend="cpp")
    rs, ri = ops.knn(q, keys, 6, similarity=similarity, backend="reference")
    assert torch.equal(s, rs) and torch.equal(i, ri)


@requires_ext
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_knn_both_bit_identical_to_reference(dtype, similarity):
    x, y = _rand(80, 32, dtype, 3), _rand(65, 32, dtype, 4)
    got = torch.ops.xlrepro.knn_both(x, y, 4, 5, similarity == "cosine", 37, 23)
    ref = sim.knn_both_reference(x, y, 4, 5, similarity, **SMALL)
    for u, v in zip(got, ref):
        assert torch.equal(u, v)


@requires_ext
@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
def test_low_precision_equals_float32_of_the_same_values(dtype):
    x, y = _rand(50, 16, dtype, 5), _rand(40, 16, dtype, 6)
    a = ops.knn_both(x, y, 4, backend="cpp")
    b = ops.knn_both(x.float(), y.float(), 4, backend="cpp")
    for u, v in zip(a, b):
        assert torch.equal(u, v)


@requires_ext
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_adversarial_bit_identical(similarity):
    x, y = _adversarial(64, 57, 12, seed=7)
    got = torch.ops.xlrepro.knn_both(x, y, 4, 4, similarity == "cosine", 37, 23)
    ref = sim.knn_both_reference(x, y, 4, 4, similarity, **SMALL)
    for u, v in zip(got, ref):
        assert torch.equal(u, v)


@requires_ext
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    m=st.integers(1, 40),
    d=st.integers(1, 9),
    k=st.integers(1, 6),
    br=st.integers(1, 50),
    bc=st.integers(1, 50),
    seed=st.integers(0, 10_000),
)
def test_exact_inputs_any_blocking_matches_brute_force(n, m, d, k, br, bc, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, (n, d), generator=g).float()
    y = torch.randint(-2, 3, (m, d), generator=g).float()
    kr, kc = min(k, m), min(k, n)
    rs, ri, cs, ci = torch.ops.xlrepro.knn_both(x, y, kr, kc, False, br, bc)
    S = x @ y.T
    vs, vi = _oracle_topk(S, kr)
    assert torch.equal(rs, vs) and torch.equal(ri, vi)
    vs, vi = _oracle_topk(S.T.contiguous(), kc)
    assert torch.equal(cs, vs) and torch.equal(ci, vi)
    s, i = torch.ops.xlrepro.knn(x, y, kr, False, br, bc)
    assert torch.equal(s, rs) and torch.equal(i, ri)


@requires_ext
def test_knn_both_rows_equal_knn_and_columns_equal_reverse_on_exact_inputs():
    x, y = _adversarial(50, 44, 10, seed=3)
    rs, ri, cs, ci = ops.knn_both(x, y, 4, backend="cpp")
    s, i = ops.knn(x, y, 4, backend="cpp")
    assert torch.equal(rs, s) and torch.equal(ri, i)
    s, i = ops.knn(y, x, 4, backend="cpp")
    assert torch.equal(cs, s) and torch.equal(ci, i)


# ---------------------------------------------------------------- errors

BAD = [
    (lambda: (_rand(5, 4), _rand(6, 3), 2), "embedding dims differ"),
    (lambda: (_rand(5, 4), _rand(3, 4), 4), "exceeds the number"),
    (lambda: (_rand(5, 4), _rand(6, 4), 0), "k must be >= 1"),
    (lambda: (_rand(0, 4), _rand(6, 4), 1), "empty input"),
    (lambda: (_rand(5, 4), _rand(0, 4), 1), "empty input"),
    (lambda: (_rand(5, 4).double(), _rand(6, 4), 1), "float32, bfloat16 or float16"),
    (lambda: (_rand(5, 4)[0], _rand(6, 4), 1), "must be 2-D"),
    (lambda: (_rand(5, 4).index_fill(0, torch.tensor([2]), float("nan")), _rand(6, 4), 1), "NaN or Inf"),
    (lambda: (_rand(5, 4), _rand(6, 4).index_fill(0, torch.tensor([1]), float("inf")), 1), "NaN or Inf"),
    (lambda: (_rand(5, 4) * 1e19, _rand(6, 4) * 1e19, 1), "overflow"),
]


@pytest.mark.parametrize("make,msg", BAD)
@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_clear_errors(make, msg, backend):
    if backend == "cpp" and not HAVE_EXT:
        pytest.skip("CPU extension not built")
    x, y, k = make()
    with pytest.raises(ValueError, match=msg):
        ops.knn(x, y, k, backend=backend)
    with pytest.raises(ValueError, match=msg):
        ops.knn_both(x, y, k, backend=backend)


@requires_ext
def test_ops_called_directly_raise():
    with pytest.raises(RuntimeError, match="exceeds the number of keys"):
        torch.ops.xlrepro.knn(_rand(5, 4), _rand(3, 4), 4)
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        torch.ops.xlrepro.knn_both(_rand(5, 4) / 0, _rand(3, 4), 1, 1)
    with pytest.raises(RuntimeError, match="margin must be"):
        torch.ops.xlrepro.margin_scores(
            torch.ones(2, 1),
            torch.zeros(2, 1, dtype=torch.long),
            torch.ones(2, 1),
            torch.zeros(2, 1, dtype=torch.long),
            "cosine",
        )
    with pytest.raises(RuntimeError, match="out of range"):
        torch.ops.xlrepro.margin_scores(
            torch.ones(2, 1), torch.full((2, 1), 5), torch.ones(2, 1), torch.zeros(2, 1, dtype=torch.long), "ratio"
        )


def test_bad_arguments():
    x, y = _rand(5, 4), _rand(6, 4)
    with pytest.raises(ValueError, match="similarity"):
        ops.knn(x, y, 1, similarity="l2")
    with pytest.raises(ValueError, match="margin"):
        ops.margin_mine(x, y, margin="cosine")
    with pytest.raises(ValueError, match="mode"):
        ops.margin_mine(x, y, mode="union")


# ---------------------------------------------------------------- opcheck


@requires_ext
def test_opcheck():
    x, y = _rand(30, 8, seed=8), _rand(25, 8, seed=9)
    torch.library.opcheck(torch.ops.xlrepro.knn.default, (x, y, 3, True, 16, 8))
    torch.library.opcheck(torch.ops.xlrepro.knn.default, (x.bfloat16(), y.bfloat16(), 3, False, 2048, 2048))
    torch.library.opcheck(torch.ops.xlrepro.knn_both.default, (x, y, 3, 2, True, 16, 8))
    torch.library.opcheck(torch.ops.xlrepro.knn_both.default, (x.half(), y.half(), 1, 4, False, 7, 2048))
    fs, fi, bs, bi = torch.ops.xlrepro.knn_both(x, y, 3, 2, True, 2048, 2048)
    for margin in sim.MARGINS:
        torch.library.opcheck(torch.ops.xlrepro.margin_scores.default, (fs, fi, bs, bi, margin))


# ---------------------------------------------------------------- margins


@requires_ext
@pytest.mark.parametrize("margin", sim.MARGINS)
def test_margin_scores_bit_identical(margin):
    x, y = _rand(40, 16, seed=10), _rand(33, 16, seed=11)
    fs, fi, bs, bi = ops.knn_both(x, y, 4, similarity="cosine")
    a = torch.ops.xlrepro.margin_scores(fs, fi, bs, bi, margin)
    b = sim.margin_scores_reference(fs, fi, bs, bi, margin)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _laser_mine(x2y_sim, x2y_ind, y2x_sim, y2x_ind, margin, retrieval, threshold=0.0):
    """LASER source/mine_bitext.py (mode 'mine'), transcribed with numpy, float32 as there.

    Deviation (documented in similarity.py): `score` takes the k-NN similarity instead of
    recomputing x[i].dot(y[k]); argsort is made stable for the comparison."""
    x2y_mean = x2y_sim.mean(axis=1)
    y2x_mean = y2x_sim.mean(axis=1)
    m = {"absolute": lambda a, b: a, "distance": lambda a, b: a - b, "ratio": lambda a, b: a / b}[margin]

    def score_candidates(sims, inds, fwd_mean, bwd_mean):
        scores = np.zeros(inds.shape)
        for i in range(scores.shape[0]):
            for j in range(scores.shape[1]):
                k = inds[i, j]
                scores[i, j] = m(sims[i, j], (fwd_mean[i] + bwd_mean[k]) / 2)
        return scores

    fwd_scores = score_candidates(x2y_sim, x2y_ind, x2y_mean, y2x_mean)
    bwd_scores = score_candidates(y2x_sim, y2x_ind, y2x_mean, x2y_mean)
    nx, ny = x2y_ind.shape[0], y2x_ind.shape[0]
    fwd_best = x2y_ind[np.arange(nx), fwd_scores.argmax(axis=1)]
    bwd_best = y2x_ind[np.arange(ny), bwd_scores.argmax(axis=1)]
    out = []
    if retrieval == "fwd":
        for i, j in enumerate(fwd_best):
            out.append((i, j, fwd_scores[i].max()))
    if retrieval == "bwd":
        for j, i in enumerate(bwd_best):
            out.append((i, j, bwd_scores[j].max()))
    if retrieval == "intersect":
        for i, j in enumerate(fwd_best):
            if bwd_best[j] == i:
                out.append((i, j, fwd_scores[i].max()))
    if retrieval == "max":
        indices = np.stack(
            (np.concatenate((np.arange(nx), bwd_best)), np.concatenate((fwd_best, np.arange(ny)))), axis=1
        )
        scores = np.concatenate((fwd_scores.max(axis=1), bwd_scores.max(axis=1)))
        seen_src, seen_trg = set(), set()
        for i in np.argsort(-scores, kind="stable"):
            src_ind, trg_ind = indices[i]
            if src_ind not in seen_src and trg_ind not in seen_trg:
                seen_src.add(src_ind)
                seen_trg.add(trg_ind)
                if scores[i] > threshold:
                    out.append((src_ind, trg_ind, scores[i]))
    return out


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("margin", sim.MARGINS)
@pytest.mark.parametrize("mode", sim.MODES)
def test_margin_mine_matches_laser(backend, margin, mode):
    if backend == "cpp" and not HAVE_EXT:
        pytest.skip("CPU extension not built")
    g = torch.Generator().manual_seed(12)
    base = torch.randn(30, 16, generator=g)
    x = base + 0.3 * torch.randn(30, 16, generator=g)
    y = torch.cat([base[:20] + 0.3 * torch.randn(20, 16, generator=g), torch.randn(8, 16, generator=g)])
    threshold = 1.0 if margin == "ratio" else 0.0
    src, tgt, sc = ops.margin_mine(x, y, k=4, margin=margin, mode=mode, threshold=threshold, backend=backend)
    fs, fi, bs, bi = ops.knn_both(x, y, 4, similarity="cosine", backend=backend)
    want = _laser_mine(fs.numpy(), fi.numpy(), bs.numpy(), bi.numpy(), margin, mode, threshold)
    got = list(zip(src.tolist(), tgt.tolist(), sc.double().tolist()))
    assert got == [(int(i), int(j), float(s)) for i, j, s in want]
    assert len(got) > 0


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_margin_mine_caps_k_at_pool(backend):
    if backend == "cpp" and not HAVE_EXT:
        pytest.skip("CPU extension not built")
    x, y = _rand(3, 5, seed=13), _rand(2, 5, seed=14)
    src, tgt, sc = ops.margin_mine(x, y, k=4, mode="fwd", backend=backend)
    fs, fi = ops.knn(x, y, 2, similarity="cosine", backend="reference")
    bs, bi = ops.knn(y, x, 3, similarity="cosine", backend="reference")
    assert src.tolist() == [0, 1, 2] and set(tgt.tolist()) <= {0, 1}
    # forward means use k_f = 2, backward means k_b = 3 (LASER's min(neighborhood, n)).
    fm, bm = fs.sum(1) / 2, bs.sum(1) / 3
    for i in range(3):
        j = int(tgt[i])
        c = float(x[i] @ y[j] / (x[i].norm() * y[j].norm()))
        assert abs(float(sc[i]) - c / ((float(fm[i]) + float(bm[j])) / 2)) < 1e-5


def test_max_mode_hand_worked():
    # 2 sources, 2 targets, k = 2. Candidate margins chosen by hand:
    #   fwd: src0 -> [t0: 1.5, t1: 1.1], src1 -> [t0: 1.4, t1: 0.9]   => best (0,0,1.5), (1,0,1.4)
    #   bwd: tgt0 -> [s1: 1.2, s0: 1.0], tgt1 -> [s0: 0.8, s1: 1.3]   => best (1,0,1.2), (1,1,1.3)
    # max: order 1.5 (0,0), 1.4 (1,0), 1.3 (1,1), 1.2 (1,0)
    #   (0,0) taken; (1,0) skipped (t0 used); (1,1) taken; (1,0) skipped.
    fi = torch.tensor([[0, 1], [0, 1]])
    fsc = torch.tensor([[1.5, 1.1], [1.4, 0.9]])
    bi = torch.tensor([[1, 0], [0, 1]])
    bsc = torch.tensor([[1.2, 1.0], [0.8, 1.3]])
    src, tgt, sc = sim.mine_from_scores(fi, fsc, bi, bsc, "max", threshold=0.0)
    assert src.tolist() == [0, 1] and tgt.tolist() == [0, 1] and sc.tolist() == pytest.approx([1.5, 1.3])
    # Threshold 1.4: (0,0,1.5) written; (1,1,1.3) is visited, marks s1 and t1 used, not written.
    src, tgt, sc = sim.mine_from_scores(fi, fsc, bi, bsc, "max", threshold=1.4)
    assert src.tolist() == [0] and tgt.tolist() == [0]
    # score > threshold is strict: threshold 1.5 writes nothing.
    assert sim.mine_from_scores(fi, fsc, bi, bsc, "max", threshold=1.5)[0].numel() == 0
    # intersect: fwd_best = [0, 0]; bwd_best = [1, 1] -> src0's best t0 has best source 1: no;
    # src1's best t0 has best source 1: yes -> [(1, 0, 1.4)].
    src, tgt, sc = sim.mine_from_scores(fi, fsc, bi, bsc, "intersect")
    assert src.tolist() == [1] and tgt.tolist() == [0] and sc.tolist() == pytest.approx([1.4])
    # fwd / bwd: one per source / target in order.
    assert sim.mine_from_scores(fi, fsc, bi, bsc, "fwd")[1].tolist() == [0, 0]
    assert sim.mine_from_scores(fi, fsc, bi, bsc, "bwd")[0].tolist() == [1, 1]


def test_max_mode_used_even_when_not_written_blocks_later_pairs():
    # The greedy visits (0,0,0.5) first; with threshold 0.6 it is not written but blocks s0, t0,
    # so (0,1,0.45) and (1,0,0.4) are skipped and only (1,1,...) could remain.
    fi = torch.tensor([[0], [0]])
    fsc = torch.tensor([[0.5], [0.4]])
    bi = torch.tensor([[0], [1]])
    bsc = torch.tensor([[0.3], [0.7]])
    src, tgt, sc = sim.mine_from_scores(fi, fsc, bi, bsc, "max", threshold=0.6)
    assert list(zip(src.tolist(), tgt.tolist())) == [(1, 1)]


def test_max_mode_ties_are_stable_and_nan_last():
    fi = torch.tensor([[1], [0]])
    fsc = torch.tensor([[2.0], [float("nan")]])
    bi = torch.tensor([[1], [0]])
    bsc = torch.tensor([[2.0], [1.0]])
    # order: fwd s0 (2.0), bwd t0 (2.0, pair (1,0)), bwd t1 (1.0, pair (0,1): used), fwd s1 (NaN)
    src, tgt, sc = sim.mine_from_scores(fi, fsc, bi, bsc, "max")
    assert list(zip(src.tolist(), tgt.tolist())) == [(0, 1), (1, 0)]


# ---------------------------------------------------------------- dispatch


def test_families_and_dispatch_explain():
    fam = ops.families()
    for name in ("knn", "knn_both", "margin_scores"):
        assert [b.name for b in fam[name]] == ["cuda", "cpp", "reference"]
    with pytest.raises(BackendUnavailable, match="cuda:.*device cpu"):
        ops.knn(_rand(4, 3), _rand(5, 3), 2, backend="cuda")
    b = ops.families()["knn"]
    chosen = [x.name for x in b if not x.not_supported_reasons(_rand(4, 3), k=2)][0]
    assert chosen == ("cpp" if HAVE_EXT else "reference")
    # the public name of that choice (what retrieval records with its results)
    assert ops.knn_backend(_rand(4, 3), k=2) == chosen
    assert ops.knn_backend(_rand(4, 3), k=2, backend="reference") == "reference"
    with pytest.raises(BackendUnavailable, match="unknown backend 'nope'"):
        ops.knn_backend(_rand(4, 3), backend="nope")


# ---------------------------------------------------------------- CUDA (gpu: skipped without a GPU)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_cuda_matches_reference(dtype, similarity):
    x, y = _rand(300, 64, dtype, 20).cuda(), _rand(260, 64, dtype, 21).cuda()
    got = torch.ops.xlrepro.knn_both(x, y, 5, 3, similarity == "cosine", 128, 96)
    ref = sim.knn_both_reference(x, y, 5, 3, similarity, block_rows=128, block_cols=96)
    for u, v in zip(got, ref):
        assert torch.equal(u, v)
    s, i = torch.ops.xlrepro.knn(x, y, 5, similarity == "cosine", 128, 96)
    assert torch.equal(s, ref[0]) and torch.equal(i, ref[1])


@pytest.mark.gpu
def test_cuda_adversarial_and_margins():
    x, y = _adversarial(90, 70, 12, seed=22)
    got = torch.ops.xlrepro.knn_both(x.cuda(), y.cuda(), 4, 4, False, 37, 23)
    S = x @ y.T
    vs, vi = _oracle_topk(S, 4)
    assert torch.equal(got[0].cpu(), vs) and torch.equal(got[1].cpu(), vi)
    vs, vi = _oracle_topk(S.T.contiguous(), 4)
    assert torch.equal(got[2].cpu(), vs) and torch.equal(got[3].cpu(), vi)
    for margin in sim.MARGINS:
        a = torch.ops.xlrepro.margin_scores(*got, margin)
        b = sim.margin_scores_reference(*[t.cpu() for t in got], margin)
        assert torch.equal(a[0].cpu(), b[0]) and torch.equal(a[1].cpu(), b[1])
    torch.library.opcheck(torch.ops.xlrepro.knn_both.default, (x.cuda(), y.cuda(), 3, 2, True, 16, 8))


@pytest.mark.gpu
def test_cuda_every_list_size_and_tile_shape():
    """Every compile-time list size of csrc/cuda/topk.cuh, tiles narrower than k (running lists
    with empty slots), several column chunks per tile, and the default tiles; random and tied."""
    x, y = _rand(500, 32, seed=30).cuda(), _rand(450, 32, seed=31).cuda()
    for k in (1, 2, 3, 4, 8, 9, 16, 17, 32):
        kc = max(1, 33 - k)
        xa, ya = _adversarial(300, 280, 6, seed=k)
        S = xa @ ya.T
        oracle = (_oracle_topk(S, k), _oracle_topk(S.T.contiguous(), k))
        for blocks in ((200, 7), (64, 300), (2048, 2048)):
            case = f"k={k} k_cols={kc} blocks={blocks}"
            got = torch.ops.xlrepro.knn_both(x, y, k, kc, True, *blocks)
            ref = sim.knn_both_reference(x, y, k, kc, "cosine", block_rows=blocks[0], block_cols=blocks[1])
            assert all(torch.equal(u, v) for u, v in zip(got, ref)), case
            got = torch.ops.xlrepro.knn_both(xa.cuda(), ya.cuda(), k, k, False, *blocks)
            for (s, i), (vs, vi) in zip((got[:2], got[2:]), oracle):
                assert torch.equal(s.cpu(), vs) and torch.equal(i.cpu(), vi), "tied inputs, " + case


# ----------------------------------------------------------------------------- tiny vectors (cosine)

BACKENDS = ["reference"] + (["cpp"] if HAVE_EXT else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_cosine_of_tiny_vectors_ranks_like_the_same_vectors_at_norm_one(backend):
    """Norms near 1e-30 used to underflow the squared norm to 0: the rows scored 0 against
    everything and got index-order neighbours. Scaling by 2**-100 is exact, so the answer must be
    bit-identical to the unscaled one, on both sides and through knn_both and margin_mine."""
    x, y = _rand(40, 16, seed=1), _rand(30, 16, seed=2)
    tiny_x, tiny_y = x * 2.0**-100, y * 2.0**-100
    assert float(tiny_x.norm(dim=1).max()) < 1e-28 and bool(((tiny_x * tiny_x).sum(1) == 0).all())
    want = ops.knn(x, y, 3, "cosine", backend=backend)
    for a, b in ((tiny_x, y), (x, tiny_y), (tiny_x, tiny_y)):
        got = ops.knn(a, b, 3, "cosine", backend=backend)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    both = ops.knn_both(tiny_x, tiny_y, 2, "cosine", backend=backend)
    ref = ops.knn_both(x, y, 2, "cosine", backend=backend)
    assert all(torch.equal(p, q) for p, q in zip(both, ref))
    mined = ops.margin_mine(tiny_x, tiny_y, k=3, backend=backend)
    assert all(torch.equal(p, q) for p, q in zip(mined, ops.margin_mine(x, y, k=3, backend=backend)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_subnormal_rows_are_rescaled_and_zero_rows_keep_the_zero_rule(backend):
    x, y = _rand(6, 8, seed=3), _rand(9, 8, seed=4)
    x[1] = x[1] * 2.0**-140  # subnormal entries (some precision lost in x itself, none after)
    x[2] = 0.0
    s, i = ops.knn(x, y, 9, "cosine", backend=backend)
    s_ref, i_ref = sim.knn_reference(sim.rescale_tiny_rows(x), y, 9, "cosine")
    assert torch.equal(s, s_ref) and torch.equal(i, i_ref)
    assert float(s[1, 0]) > 0.5 and i[1].tolist() != list(range(9))  # a real ranking, not index order
    assert s[2].tolist() == [0.0] * 9 and i[2].tolist() == list(range(9))  # all-zero row: documented zero rule
    # the rule leaves ordinary rows alone: same object back when nothing is tiny
    assert sim.rescale_tiny_rows(y) is y
    # bf16 tiny rows: the float32 of the same values, rescaled exactly
    xb = (x[:1] * 2.0**-120).to(torch.bfloat16)
    sb, ib = ops.knn(xb, y, 4, "cosine", backend=backend)
    sf, i_f = ops.knn(xb.float() * 2.0**120, y, 4, "cosine", backend=backend)
    assert torch.equal(sb, sf) and torch.equal(ib, i_f)
