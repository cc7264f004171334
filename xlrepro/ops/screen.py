"""bf16 screen with exact fp32 re-scoring for ``knn`` / ``knn_both`` / ``margin_mine``
(measurements: benchmarks/RESULTS.md).

Opt-in: ``knn(..., screen="bf16")``, ``knn_both(..., screen="bf16")``, ``margin_mine(..., screen=...)``.
The answer is always the fp32 answer of the same call without a screen (bit-identical scores and
indices, ties by lowest index); the screen only decides how much of the fp32 work is skipped, and
``report=`` (a dict the call fills) says, per row and per column, whether the answer was certified
from the screen or recomputed exactly.

How (rows; columns are the same with the roles of x and y swapped):

1. **Screen.** ``X``/``Y`` are the fp32 inputs after the reference's own preparation (cosine: the
   same fp32 normalisation). They are rounded to bf16 (``X~``, ``Y~``, nearest even; compiled
   ``xlrepro::bf16_split`` also returns the norms of step 3 in one pass) and ``X~ . Y~^T`` is
   computed in tiles by torch's bf16 GEMM (fp32 accumulation, result rounded to bf16), merged into
   per-row and per-column lists by the compiled ``xlrepro::knn_screen_bf16`` (the same one-pass
   merge as ``knn_both``; ``torch.topk`` per tile without the extension). Each row keeps its
   ``c = k + extra`` best screened candidates and ``v``, the (c+1)-th best screened value, which is
   the best screened value of every non-candidate (``-inf`` when all M columns are candidates).
2. **Exact re-scoring.** The candidates are re-scored in fp32 with the reference's formulation:
   one fp32 GEMM ``X[rows] @ Y[U].T`` per group of ``group`` rows, ``U`` the sorted union of the
   group's candidates (with the first ``MIN_OTHER`` indices added when it is smaller); ``group``
   is the smallest of ``GROUPS`` whose re-scoring reproduces the first reference tile
   (``choose_group``). The reference's tiles are ``X[r0:r1] @ Y[c0:c1].T``; the BLAS computes an
   entry the same way for both only while both GEMMs take the same code path, which the BLAS
   chooses from the shape (measured on MKL: below
   about 192 rows or 256 columns at d = 1024 it takes another path and the last bits differ).
   That is not a documented guarantee, so every call **checks it**: for one tile of every distinct
   tile shape of the reference blocking, it computes the reference tile and compares it with the
   re-scoring of a probe group and of every real candidate that falls in that tile. Any mismatch:
   the call computes everything exactly (the unscreened op) and the report says why.
3. **Certificate.** For a pair (i, j) let ``s`` be the reference's fp32 score, ``a`` the bf16
   GEMM's fp32 accumulator and ``o`` its bf16 output. With ``e = x - x~`` (the actual rounding
   errors, whose norms are computed), ``u = 2^-24``, ``g(u) = (d+1)u / (1-(d+1)u)`` (any summation
   order, FMA or not) and the bf16 GEMM's own arithmetic allowed twice the fp32 unit roundoff
   (in case the hardware truncates):

       |o - a| <= 2^-7 |o|                                   (bf16 output, nearest or truncated)
       |a - x~.y~| <= g(2u) ||x~|| ||y~||                    (fp32 accumulation; Cauchy-Schwarz)
       |x~.y~ - x.y| <= ||x~|| ||e_y|| + ||e_x|| ||y~|| + ||e_x|| ||e_y||
       |x.y - s| <= g(u) ||x|| ||y||                         (the reference's fp32 GEMM)

   plus ``A = 2 (d+2) 2^-126 (1 + max|x~| + max|y~|)`` for flushed subnormals. Taking the maxima
   of the j-side norms over all j gives a per-row bound ``B_i``; since ``o -> o + 2^-7|o|`` is
   increasing, every non-candidate has ``s <= U_i = v + 2^-7|v| + B_i`` (evaluated in
   float64 and inflated by 1e-9 relative). Row i is **certified** when the k-th best exact score
   among its candidates is strictly greater than ``U_i``: then no non-candidate can reach the top
   k, not even by a tie (ties go to the lowest index, so a strict margin is needed), and the top k
   of the exactly re-scored candidates ordered by (score desc, index asc) is the reference's answer.
4. **Fallback.** Every uncertified row is recomputed exactly over all columns with the same
   formulation as step 2 (``X[rows] @ Y[tile].T`` for each column tile, rows in groups of
   ``group``; checked in step 2 as well) and gets the reference's top-k. The report counts and
   lists these rows. Inputs whose magnitudes could overflow the bf16 GEMM
   (``1.01 d max|x~| max|y~| >= 2^127``) skip the screen and are computed exactly.

Cost: the bf16 GEMM (the machine's bf16 GEMM runs at ~3.6x its fp32 rate), plus re-scoring of
about ``group * (k + extra) * d`` multiply-adds per row and direction (the GEMM of a group covers
the union of its candidates), plus the fallbacks, plus at most four reference tiles for the check.
It pays off when M is large against ``group * (k + extra)`` (BUCC scale); at M ~ 10k it is
close to the exact fused op.

CPU only (the check in step 2 is about the CPU BLAS that the reference and the fused kernels use).
"""

from __future__ import annotations

import math

import torch

from xlrepro.ops import _lib

SCREENS = ("bf16",)
GROUPS = (32, 64, 128, 192, 256)  # rows (columns) per re-scoring GEMM to try, smallest first
GROUP = GROUPS[-1]
MIN_OTHER = 512  # the re-scoring GEMM's other side is padded to at least this many rows
U32 = 2.0**-24
BF16_OUT = 2.0**-7  # |o - a| <= 2^-7 |o| for round-to-nearest and for truncation
INFLATE = 1 + 1e-9


def default_extra(k: int, pool: int = 0) -> int:
    """Screened candidates kept beyond k (k + extra are re-scored); ``pool``: the number of
    candidates the lists choose from (the larger of N and M). Measured on random cosine data
    (d = 1024) with this bound: k = 4 and 8 extra leave 1.4% (M = 10k-20k) to 3.4% (M = 100k)
    of the rows uncertified, 12 extra 0-0.2%; k = 1 and 8 extra none. Re-scoring costs grow with
    k + extra, fallbacks with the uncertified share times M."""
    return max(8, 2 * k) if pool <= 32768 else max(12, 3 * k)


def check_screen(op: str, screen, extra) -> None:
    if screen not in SCREENS:
        raise ValueError(f"{op}: screen must be None or one of {SCREENS}, got {screen!r}")
    if extra is not None and (isinstance(extra, bool) or not isinstance(extra, int) or extra < 0):
        raise ValueError(f"{op}: screen_extra must be an int >= 0, got {extra!r}")


def availability() -> dict:
    """For ``xlrepro info``: whether this CPU has native bf16 dot products (AMX-BF16 / AVX512-BF16).

    The screen is always correct (torch emulates bf16 GEMMs where the CPU lacks them); without
    native support it is only slower than the exact fp32 path."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    native = sorted(flags & {"amx_bf16", "avx512_bf16"})
    try:
        mkldnn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        mkldnn_bf16 = False
    fast = bool(native) and mkldnn_bf16
    reasons = []
    if not native:
        reasons.append("no amx_bf16/avx512_bf16 in /proc/cpuinfo flags" if flags else "CPU flags unknown")
    if not mkldnn_bf16:
        reasons.append("torch's oneDNN reports no bf16 support")
    return {
        "available": True,
        "fast": fast,
        "native_bf16": native,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "screen_kernel": "cpp" if compiled_screen() else "torch",
        "reasons": reasons,
    }


# ----------------------------------------------------------------------------- screen


def compiled_screen() -> bool:
    """True when the compiled CPU screen (xlrepro::knn_screen_bf16) is available."""
    return _lib.load() and _lib.has_kernel("knn_screen_bf16", "CPU")


def compiled_split() -> bool:
    return _lib.load() and _lib.has_kernel("bf16_split", "CPU")


def _screen_lists(Xb, Yb, k_rows: int, k_cols: int | None, br: int, bc: int, compiled: bool):
    """Top-k_rows screened values/indices of every row and top-k_cols of every column of Xb . Yb^T
    (bf16 GEMM tiles), sorted by value descending (order of equal values unspecified): the compiled
    kernel (one pass, the lists merged from each tile) or torch.topk per tile."""
    if compiled:
        rv, ri, cv, ci = torch.ops.xlrepro.knn_screen_bf16(Xb, Yb, k_rows, k_cols or 0, br, bc)
        return (rv, ri), ((cv, ci) if k_cols else None)
    N, M = Xb.shape[0], Yb.shape[0]
    rv, ri = [], []
    cv = ci = None
    if k_cols:
        cv = torch.full((k_cols, M), float("-inf"), dtype=torch.bfloat16)
        ci = torch.zeros((k_cols, M), dtype=torch.long)
    for r0 in range(0, N, br):
        r1 = min(r0 + br, N)
        tv, ti = [], []
        for c0 in range(0, M, bc):
            c1 = min(c0 + bc, M)
            S = Xb[r0:r1] @ Yb[c0:c1].T
            if k_rows:
                v, i = S.topk(min(k_rows, c1 - c0), dim=1)
                tv.append(v)
                ti.append(i + c0)
            if k_cols:
                v, i = S.topk(min(k_cols, r1 - r0), dim=0)
                v2 = torch.cat([cv[:, c0:c1], v])
                i2 = torch.cat([ci[:, c0:c1], i + r0])
                v3, p = v2.topk(k_cols, dim=0)
                cv[:, c0:c1] = v3
                ci[:, c0:c1] = i2.gather(0, p)
        if k_rows:
            V, I = torch.cat(tv, 1), torch.cat(ti, 1)
            v, p = V.topk(k_rows, dim=1)
            rv.append(v)
            ri.append(I.gather(1, p))
    rows = (torch.cat(rv).float(), torch.cat(ri)) if k_rows else None
    cols = (cv.T.float().contiguous(), ci.T.contiguous()) if k_cols else None
    return rows, cols


# ----------------------------------------------------------------------------- exact re-scoring


def _pad_index(U: torch.Tensor, size: int, n: int) -> torch.Tensor:
    """``U`` (sorted, unique) plus the lowest indices < n not in it, up to ``min(size, n)`` entries."""
    need = min(size, n) - U.numel()
    if need <= 0:
        return U
    free = torch.ones(n, dtype=torch.bool)
    free[U] = False
    return torch.sort(torch.cat([U, free.nonzero()[:need, 0]])).values


def _groups(idx: torch.Tensor, n: int, group: int):
    """Consecutive chunks of ``group`` entries of ``idx`` (indices < n), each with the index set
    its GEMM uses: the chunk itself, or for a short chunk the chunk plus the entries just before
    it (or, when there are none, the lowest other indices), so every GEMM has min(group, n) rows."""
    L = idx.numel()
    for g0 in range(0, L, group):
        g1 = min(g0 + group, L)
        if g1 - g0 == min(group, n):
            yield g0, g1, idx[g0:g1], 0
        elif L >= min(group, n):
            lo = g1 - min(group, n)
            yield g0, g1, idx[lo:g1], g0 - lo
        else:
            rows = idx[g0:g1]
            pad = _pad_index(torch.unique(rows), min(group, n), n)
            keep = torch.ones(n, dtype=torch.bool)
            keep[rows] = False
            extra = pad[keep[pad]][: min(group, n) - rows.numel()]
            yield g0, g1, torch.cat([rows, extra]), 0


def _unions(cand: torch.Tensor, bounds: list[tuple[int, int]], n_other: int, min_other: int):
    """Per group (rows g0:g1 of ``cand``): the sorted union U of its candidates, plus the indices
    ``[0, min(min_other, n_other))`` when that union is smaller, and each candidate's position in
    its group's U. Vectorised over the groups (one sort for all)."""
    G = len(bounds)
    gid = torch.repeat_interleave(torch.arange(G), torch.tensor([g1 - g0 for g0, g1 in bounds]))
    keys = gid[:, None] * n_other + cand
    uk = torch.unique(keys)
    counts = torch.bincount(uk // n_other, minlength=G)
    P = min(min_other, n_other)
    short = (counts < P).nonzero(as_tuple=True)[0]
    if short.numel():
        uk = torch.unique(torch.cat([uk, (short[:, None] * n_other + torch.arange(P)[None, :]).reshape(-1)]))
        counts = torch.bincount(uk // n_other, minlength=G)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.searchsorted(uk, keys) - starts[gid][:, None]
    return uk % n_other, counts.tolist(), starts.tolist(), pos


def _positions(U: torch.Tensor, cand: torch.Tensor, n: int) -> torch.Tensor:
    inv = torch.empty(n, dtype=torch.long)
    inv[U] = torch.arange(U.numel())
    return inv[cand]


def rescore_rows(X, Y, rows: torch.Tensor, cand: torch.Tensor, group: int = GROUP, min_other: int = MIN_OTHER):
    """fp32 S[rows[r], cand[r, c]], computed as ``X[R] @ Y[U].T`` per group of rows (R: the group,
    padded to min(group, N) rows; U: the sorted union of its candidates, with the first
    min(min_other, M) indices added when it is smaller)."""
    N, M = X.shape[0], Y.shape[0]
    out = torch.empty(cand.shape, dtype=torch.float32)
    groups = list(_groups(rows, N, group))
    U, counts, starts, pos = _unions(cand, [(g0, g1) for g0, g1, _, _ in groups], M, min_other)
    for (g0, g1, R, off), n, s in zip(groups, counts, starts):
        S = X.index_select(0, R) @ Y.index_select(0, U[s : s + n]).T
        out[g0:g1] = S[off : off + g1 - g0].gather(1, pos[g0:g1])
    return out


def rescore_cols(X, Y, cols: torch.Tensor, cand: torch.Tensor, group: int = GROUP, min_other: int = MIN_OTHER):
    """fp32 S[cand[r, c], cols[r]], computed as ``X[U] @ Y[C].T`` (x stays the left operand, as in
    the reference's tiles)."""
    N, M = X.shape[0], Y.shape[0]
    out = torch.empty(cand.shape, dtype=torch.float32)
    groups = list(_groups(cols, M, group))
    U, counts, starts, pos = _unions(cand, [(g0, g1) for g0, g1, _, _ in groups], N, min_other)
    for (g0, g1, C, off), n, s in zip(groups, counts, starts):
        S = X.index_select(0, U[s : s + n]) @ Y.index_select(0, C).T
        out[g0:g1] = S.T[off : off + g1 - g0].gather(1, pos[g0:g1])
    return out


def _order(scores, idx):
    """Sort each row by (score desc, index asc)."""
    o = torch.argsort(idx, dim=1, stable=True)
    idx, scores = idx.gather(1, o), scores.gather(1, o)
    o = torch.argsort(scores, dim=1, descending=True, stable=True)
    return scores.gather(1, o), idx.gather(1, o)


def _tile_starts(n: int, b: int) -> list[int]:
    """One start per distinct tile size of a blocking of n by b (full tiles, the ragged last)."""
    starts = [0]
    last = (n - 1) // b * b
    if last != 0 and n - last != b:
        starts.append(last)
    return starts


def full_rows(X, Y, rows: torch.Tensor, c0: int, c1: int, group: int = GROUP, min_other: int = MIN_OTHER):
    """fp32 S[rows, c0:c1] with the re-scoring formulation (the fallback of uncertified rows)."""
    M = Y.shape[0]
    cand = torch.arange(c0, c1).expand(rows.numel(), c1 - c0)
    out = torch.empty(cand.shape, dtype=torch.float32)
    U = _pad_index(torch.arange(c0, c1), min_other, M)
    Yu = Y.index_select(0, U)
    pos = _positions(U, torch.arange(c0, c1), M)
    for g0, g1, R, off in _groups(rows, X.shape[0], group):
        out[g0:g1] = (X.index_select(0, R) @ Yu.T)[off : off + g1 - g0][:, pos]
    return out


def full_cols(X, Y, cols: torch.Tensor, r0: int, r1: int, group: int = GROUP, min_other: int = MIN_OTHER):
    """fp32 S[r0:r1, cols]^T with the re-scoring formulation (the fallback of uncertified columns)."""
    N = X.shape[0]
    out = torch.empty((cols.numel(), r1 - r0), dtype=torch.float32)
    U = _pad_index(torch.arange(r0, r1), min_other, N)
    Xu = X.index_select(0, U)
    pos = _positions(U, torch.arange(r0, r1), N)
    for g0, g1, C, off in _groups(cols, Y.shape[0], group):
        out[g0:g1] = (Xu @ Y.index_select(0, C).T).T[off : off + g1 - g0][:, pos]
    return out


def _probe_rows(X, Y, T, r0, r1, c0, c1, c, group, min_other) -> bool:
    """Re-score a group of rows at scattered candidates of tile T (= S[r0:r1, c0:c1]) == T?"""
    n, c = min(group, r1 - r0), min(c, c1 - c0)
    probe = c0 + (torch.arange(n)[:, None] * 7 + torch.arange(c)[None, :] * 13) % (c1 - c0)
    probe = torch.sort(probe, dim=1).values
    got = rescore_rows(X, Y, torch.arange(r0, r0 + n), probe, group, min_other)
    return torch.equal(got, T[:n].gather(1, probe - c0))


def _probe_cols(X, Y, T, r0, r1, c0, c1, c, group, min_other) -> bool:
    n, c = min(group, c1 - c0), min(c, r1 - r0)
    probe = r0 + (torch.arange(n)[:, None] * 7 + torch.arange(c)[None, :] * 13) % (r1 - r0)
    probe = torch.sort(probe, dim=1).values
    got = rescore_cols(X, Y, torch.arange(c0, c0 + n), probe, group, min_other)
    return torch.equal(got, T.T[:n].gather(1, probe - r0))


def choose_group(X, Y, T, br, bc, c, rows: bool, cols: bool, min_other: int = MIN_OTHER) -> int:
    """The smallest group in GROUPS whose re-scoring reproduces the first reference tile ``T``
    (the BLAS's shape-dependent paths: at d = 1024 MKL needs ~192 rows, at d = 768 far fewer).
    The re-scoring cost per row is proportional to the group; check_rescoring still verifies it."""
    for g in GROUPS:
        if rows and not _probe_rows(X, Y, T, 0, br, 0, bc, c, g, min_other):
            continue
        if cols and not _probe_cols(X, Y, T, 0, br, 0, bc, c, g, min_other):
            continue
        return g
    return GROUPS[-1]


def check_rescoring(
    X,
    Y,
    row_cand,
    col_cand,
    br,
    bc,
    group=GROUP,
    min_other=MIN_OTHER,
    row_scores=None,
    col_scores=None,
    tiles: dict | None = None,
) -> str | None:
    """Compare the re-scoring with the reference's own tiles (step 2 of the module docstring).

    For one tile per distinct tile shape of the reference blocking: a probe group of rows (and of
    columns) re-scored at scattered candidates of the tile, a scattered group recomputed in full
    over the tile (the fallback's formulation), and every real candidate inside the tile.
    ``tiles``: reference tiles already computed, by origin. Returns None when all are
    bit-identical, else what differed."""
    N, M = X.shape[0], Y.shape[0]
    br, bc = min(br, N), min(bc, M)
    tiles = {} if tiles is None else tiles
    for r0 in _tile_starts(N, br):
        r1 = min(r0 + br, N)
        for c0 in _tile_starts(M, bc):
            c1 = min(c0 + bc, M)
            if (r0, c0) not in tiles:
                tiles[(r0, c0)] = X[r0:r1] @ Y[c0:c1].T  # exactly the reference's tile
            T = tiles[(r0, c0)]
            where = f"the reference tile at rows {r0}:{r1}, columns {c0}:{c1}"
            if row_cand is not None:
                if not _probe_rows(X, Y, T, r0, r1, c0, c1, row_cand.shape[1], group, min_other):
                    return f"row re-scoring differs from {where}"
                sub = torch.arange(r0, r1, 3)[:group]
                if not torch.equal(full_rows(X, Y, sub, c0, c1, group, min_other), T[sub - r0]):
                    return f"row recomputation differs from {where}"
                rc, rs = row_cand[r0:r1], row_scores[r0:r1]
                m = (rc >= c0) & (rc < c1)
                ii = m.nonzero(as_tuple=True)[0]
                if ii.numel() and not torch.equal(rs[m], T[ii, rc[m] - c0]):
                    return f"row re-scoring of candidates differs from {where}"
            if col_cand is not None:
                if not _probe_cols(X, Y, T, r0, r1, c0, c1, col_cand.shape[1], group, min_other):
                    return f"column re-scoring differs from {where}"
                sub = torch.arange(c0, c1, 3)[:group]
                if not torch.equal(full_cols(X, Y, sub, r0, r1, group, min_other), T.T[sub - c0]):
                    return f"column recomputation differs from {where}"
                cc, cs = col_cand[c0:c1], col_scores[c0:c1]
                m = (cc >= r0) & (cc < r1)
                jj = m.nonzero(as_tuple=True)[0]
                if jj.numel() and not torch.equal(cs[m], T[cc[m] - r0, jj]):
                    return f"column re-scoring of candidates differs from {where}"
    return None


# ----------------------------------------------------------------------------- bound


def _norms(t: torch.Tensor, d: int):
    """Upper bounds of (||t_i||, ||t~_i||, ||t_i - t~_i||) (float64) and max|t~|, and t~ = bf16(t).

    Compiled (xlrepro::bf16_split): one pass, squares summed in float64 (relative error below
    (d+2) 2^-52, inflated by that). Otherwise in fp32 (relative error <= (d+2) 2^-24; squares
    below 2^-126 may be lost, at most sqrt(d) 2^-63 of a norm), inflated by (1 + (d+4) 2^-23)
    and sqrt(d) 2^-60; e = t - t~ is exact in fp32 (t~ keeps t's leading bits)."""
    if compiled_split():
        tb, st = torch.ops.xlrepro.bf16_split(t)
        up = 1 + (d + 4) * 2.0**-52
        return st[:, 0] * up, st[:, 1] * up, st[:, 2] * up, float(st[:, 3].max()), tb
    tb = t.bfloat16()
    b = tb.float()
    up = 1 + (d + 4) * 2.0**-23
    ab = math.sqrt(d) * 2.0**-60

    def nrm(v):
        return torch.linalg.vector_norm(v, dim=1).double() * up + ab

    return nrm(t), nrm(b), nrm(t - b), float(b.abs().max()), tb


def _bounds(nx, nxb, ex, ny, nyb, ey, d: int, amax: float):
    """Per-row bound B_i on |a_ij - s_ij| over all j (module docstring, step 3), float64."""
    nn = d + 1
    g = nn * U32 / (1 - nn * U32)
    g2 = nn * 2 * U32 / (1 - nn * 2 * U32)
    A = 2 * (d + 2) * 2.0**-126 * (1 + amax)
    b = g2 * nxb * nyb.max() + g * nx * ny.max() + nxb * ey.max() + ex * nyb.max() + ex * ey.max() + A
    return b * INFLATE


def _upper(v: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    v = v.double()
    return v + BF16_OUT * v.abs() + B + (v.abs() + B) * 1e-9


def topk_lowest_index(S: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of every row of ``S`` by score descending, equal scores by lowest column index.

    ``torch.topk`` does not specify the order of ties, so: take the k-th largest value, keep every
    entry >= it (k or more per row), and order those by (row, -score, column) with stable sorts."""
    n = S.shape[0]
    kth = S.topk(k, dim=1).values[:, -1:]
    cand = S >= kth
    r, c = cand.nonzero(as_tuple=True)  # row-major: columns ascending within a row
    s = S[r, c]
    o = torch.sort(s, descending=True, stable=True).indices
    r, c, s = r[o], c[o], s[o]
    o = torch.sort(r, stable=True).indices
    c, s = c[o], s[o]
    counts = cand.sum(1)
    starts = torch.cumsum(counts, 0) - counts
    pos = (starts[:, None] + torch.arange(k, device=S.device)[None, :]).reshape(-1)
    return s[pos].reshape(n, k), c[pos].reshape(n, k)


# ----------------------------------------------------------------------------- driver


def _exact_rows(X, Y, rows: torch.Tensor, k: int, br: int, bc: int, group: int, min_other: int):
    """Reference top-k of the given rows, recomputed in chunks of rows over the column tiles."""
    M = Y.shape[0]
    vs, is_ = torch.empty((rows.numel(), k)), torch.empty((rows.numel(), k), dtype=torch.long)
    for a in range(0, rows.numel(), br):
        sel = rows[a : a + br]
        S = torch.cat([full_rows(X, Y, sel, c0, min(c0 + bc, M), group, min_other) for c0 in range(0, M, bc)], 1)
        vs[a : a + br], is_[a : a + br] = topk_lowest_index(S, k)
    return vs, is_


def _exact_cols(X, Y, cols: torch.Tensor, k: int, br: int, bc: int, group: int, min_other: int):
    N = X.shape[0]
    vs, is_ = torch.empty((cols.numel(), k)), torch.empty((cols.numel(), k), dtype=torch.long)
    for a in range(0, cols.numel(), bc):
        sel = cols[a : a + bc]
        S = torch.cat([full_cols(X, Y, sel, r0, min(r0 + br, N), group, min_other) for r0 in range(0, N, br)], 1)
        vs[a : a + bc], is_[a : a + bc] = topk_lowest_index(S, k)
    return vs, is_


def _side(X, Y, k, extra, screened, bounds, rescore, group, min_other):
    """Re-score and certify one direction: (scores, idx, uncertified, cand, cand scores)."""
    n, n_other = (X.shape[0], Y.shape[0]) if rescore is rescore_rows else (Y.shape[0], X.shape[0])
    c = min(k + extra, n_other)
    sv, si = screened
    cand = torch.sort(si[:, :c], dim=1).values
    v_next = sv[:, c] if sv.shape[1] > c else torch.full((sv.shape[0],), float("-inf"))
    cs = rescore(X, Y, torch.arange(n), cand, group, min_other)
    scores, idx = _order(cs, cand)
    scores, idx = scores[:, :k].contiguous(), idx[:, :k].contiguous()
    cert = scores[:, k - 1].double() > _upper(v_next, bounds)
    return scores, idx, (~cert).nonzero(as_tuple=True)[0], cand, cs


def screened_knn_both(
    op: str,
    X,
    Y,
    k_rows: int,
    k_cols: int | None,
    extra: int | None,
    br: int,
    bc: int,
    exact_all,
    report: dict | None,
    group: int | None = None,
    min_other: int = MIN_OTHER,
):
    """The screen on prepared fp32 ``X`` (N, d), ``Y`` (M, d) (see the module docstring).

    ``exact_all()`` computes the unscreened answer (used when the screen cannot run or its
    re-scoring check fails). Returns the rows' (scores, idx) and, when ``k_cols``, the columns'."""
    N, M, d = X.shape[0], Y.shape[0], X.shape[1]
    br, bc = min(br, N), min(bc, M)
    k_main = max(k for k in (k_rows, k_cols) if k)
    extra = default_extra(k_main, max(N, M)) if extra is None else extra
    info = {"screen": "bf16", "extra": extra, "rows": N if k_rows else 0, "cols": M if k_cols else 0}

    def _all_exact(reason):
        out = exact_all()
        info.update(
            reason=reason,
            exact_fallback_all=True,
            rows_fallback=info["rows"],
            cols_fallback=info["cols"],
            fallback_rows=torch.arange(info["rows"]),
            fallback_cols=torch.arange(info["cols"]),
        )
        if report is not None:
            report.update(info)
        return out

    nx, nxb, ex, amx, Xb = _norms(X, d)
    ny, nyb, ey, amy, Yb = _norms(Y, d)
    if 1.01 * d * amx * amy >= 2.0**127:
        return _all_exact("magnitudes too large for the bf16 screen (possible overflow)")
    kr = min(k_rows + extra + 1, M)
    kc = min(k_cols + extra + 1, N) if k_cols else None
    compiled = compiled_screen()
    info["screen_backend"] = "cpp" if compiled else "torch"
    rows_s, cols_s = _screen_lists(Xb, Yb, kr, kc, br, bc, compiled)
    tiles = {(0, 0): X[:br] @ Y[:bc].T}  # the first reference tile (checked again below)
    if group is None:
        c = min(k_main + extra, min(N, M))
        group = choose_group(X, Y, tiles[(0, 0)], br, bc, c, bool(k_rows), bool(k_cols), min_other)
    info["group"] = group
    rows = cols = None
    if k_rows:
        B = _bounds(nx, nxb, ex, ny, nyb, ey, d, amx + amy)
        rows = _side(X, Y, k_rows, extra, rows_s, B, rescore_rows, group, min_other)
    if k_cols:
        B = _bounds(ny, nyb, ey, nx, nxb, ex, d, amx + amy)
        cols = _side(X, Y, k_cols, extra, cols_s, B, rescore_cols, group, min_other)
    bad = check_rescoring(
        X,
        Y,
        rows[3] if rows else None,
        cols[3] if cols else None,
        br,
        bc,
        group,
        min_other,
        rows[4] if rows else None,
        cols[4] if cols else None,
        tiles,
    )
    if bad is not None:
        return _all_exact(bad + "; computed exactly without the screen")
    out = []
    for side, exact, name in ((rows, _exact_rows, "rows"), (cols, _exact_cols, "cols")):
        if side is None:
            continue
        scores, idx, fb = side[0], side[1], side[2]
        if fb.numel():
            v, i = exact(X, Y, fb, scores.shape[1], br, bc, group, min_other)
            scores[fb], idx[fb] = v, i
        out += [scores, idx]
        info.update({f"{name}_fallback": int(fb.numel()), f"fallback_{name}": fb})
    info.update(reason=None, exact_fallback_all=False)
    if report is not None:
        report.update(info)
    return tuple(out)
