"""Fused similarity scoring for retrieval: ``knn``, ``knn_both`` and ``margin_mine``.

Used by BUCC (margin mining), Tatoeba (cosine top-1), LAReQA and Mewsli-X (raw dot products,
ranking for mAP@20). Backends, in priority order: ``cuda`` (compiled CUDA kernels), ``cpp``
(compiled CPU kernels), ``reference`` (PyTorch, any device). The compiled kernels compute the
row-wise AND the column-wise top-k from the same tiles of one GEMM and never materialise the
N x M similarity matrix (memory O((N + M) k) plus one tile).

Contract (what the tests check):

* **Scores.** ``S = X . Y^T`` in float32, computed in tiles of ``block_rows x block_cols``
  (default 2048 x 2048): each tile is one float32 matmul ``X[r0:r1] @ Y[c0:c1].T``.
  ``similarity="cosine"`` first L2-normalises each row in float32 as
  ``x * where(ss > 0, 1 / sqrt(ss), 0)`` with ``ss = (x * x).sum(1)``, so zero vectors stay zero
  and score 0 against everything (as ``faiss.normalize_L2`` leaves them). **Tiny vectors**: a
  row whose largest ``|x|`` is below ``TINY_ROW_MAX = 2**-32`` (norm below about 2.3e-10, where
  ``ss`` would lose precision to float32 underflow, or become 0 and rank neighbours in index
  order) is first multiplied by the power of two that brings its largest ``|x|`` into [0.5, 1).
  That scaling is exact and does not change the row's direction, so a vector of norm 1e-30
  ranks exactly like the same vector at norm 1; only an all-zero row has no direction and
  follows the zero rule. The entry points apply the rule before any backend runs
  (``rescale_tiny_rows``), so the compiled and reference scores stay bit-identical; ``"dot"`` uses the
  raw inner product (LAReQA's official scorer, google-research/xtreme ``third_party/utils_lareqa.py``).
  The reference computes the same tiles with the same ATen calls, so on one machine and build the
  compiled scores and indices
  are **bit-identical** to the reference (tested with exact equality). Across BLAS builds or
  blockings scores may differ in the last bits (summation order); for inputs whose dot products
  are exact in float32 (e.g. small integers, the adversarial tests) every blocking and every
  backend gives identical results.
* **Order and ties.** Each list is sorted by score descending; equal scores are broken by the
  **lowest index** (deterministic, independent of threads and blocking).
* **Dtypes.** Inputs float32, bfloat16 or float16 (mixed allowed) are converted exactly to
  float32 and everything after is float32: a bf16/fp16 call returns exactly what the float32
  call on ``x.float()`` returns. Scores are float32, indices int64.
* **Errors** (ValueError from the Python entry points, RuntimeError from the ops called
  directly): non-2-D inputs, mismatched embedding dims, empty inputs, other dtypes, inputs on
  different devices, ``k < 1`` or ``k`` larger than the pool, NaN/Inf in the inputs, and
  magnitudes at which a float32 dot product (or squared norm) could overflow.

* **bf16 screen** (opt-in, CPU): ``screen="bf16"`` on ``knn``, ``knn_both`` and ``margin_mine``
  finds candidates with a bf16 GEMM, re-scores them exactly (bit-identical to the fp32 tiles,
  checked on every call), certifies each row with a rigorous error bound and recomputes the rows
  it cannot certify; the answer is identical to the unscreened call, and ``report=`` says which
  rows were recomputed (xlrepro/ops/screen.py).

Margin mining (``margin_mine``) follows LASER's ``mine_bitext`` as XTREME uses it
(google-research/xtreme ``third_party/utils_retrieve.py``; docs/protocol.md): k-NN each way with
``k = min(k, pool)``, the mean of the k similarities
(left-to-right float32 sum / k, which is numpy's float32 mean for k < 8), margin of every
candidate ``margin(cos, (fwd_mean[x] + bwd_mean[y]) / 2)`` with ratio a/b, distance a-b,
absolute a, best candidate = first argmax among the k, and the modes fwd / bwd / intersect /
max. Two deliberate, documented differences from LASER: the similarity of a candidate is the
k-NN score (LASER recomputes ``x[i].dot(y[j])`` with numpy, which may differ in the last bit),
and ``max`` orders equal scores stably (forward candidates in source order, then backward in
target order) where LASER's ``np.argsort`` quicksort leaves the order of ties unspecified.
"""

from __future__ import annotations

import torch

from xlrepro.ops import _dispatch, _lib, screen as _screen
from xlrepro.ops.screen import topk_lowest_index

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
SIMILARITIES = ("cosine", "dot")
MARGINS = ("ratio", "distance", "absolute")
MODES = ("fwd", "bwd", "intersect", "max")
BLOCK_ROWS = 2048  # tile of the GEMM; the compiled ops and the reference use the same blocking
BLOCK_COLS = 2048
CUDA_MAX_K = 32  # the CUDA k-selection keeps each list in registers, sized at compile time (csrc/cuda/topk.cuh)


TINY_ROW_MAX = 2.0**-32  # cosine: rows with max |x| below this are rescaled exactly first


# ----------------------------------------------------------------------------- checks


def _check_pair(op: str, x: torch.Tensor, y: torch.Tensor, xn: str, yn: str) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"{op}: {xn} and {yn} must be tensors")
    if x.dim() != 2:
        raise ValueError(f"{op}: {xn} must be 2-D (n, d), got shape {tuple(x.shape)}")
    if y.dim() != 2:
        raise ValueError(f"{op}: {yn} must be 2-D (m, d), got shape {tuple(y.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{op}: embedding dims differ: {xn} has d={x.shape[1]}, {yn} has d={y.shape[1]}")
    for t in (x, y):
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{op}: inputs must be float32, bfloat16 or float16, got {t.dtype}")
    if x.device != y.device:
        raise ValueError(f"{op}: {xn} on {x.device} but {yn} on {y.device}")
    if x.shape[0] == 0 or y.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{op}: empty input ({xn} {tuple(x.shape)}, {yn} {tuple(y.shape)})")


def _check_k(op: str, k: int, pool: int, what: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"{op}: k must be an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"{op}: k must be >= 1, got {k}")
    if k > pool:
        raise ValueError(f"{op}: k={k} exceeds the number of {what} ({pool})")


def _check_similarity(op: str, similarity: str) -> bool:
    if similarity not in SIMILARITIES:
        raise ValueError(f"{op}: similarity must be one of {SIMILARITIES}, got {similarity!r}")
    return similarity == "cosine"


# ----------------------------------------------------------------------------- reference


def rescale_tiny_rows(t: torch.Tensor) -> torch.Tensor:
    """The tiny-vector rule of cosine similarity (module doc): rows with ``0 < max|x| < 2**-32``
    are multiplied by ``2**-e`` (``max|x| = m * 2**e``, ``m`` in [0.5, 1)), exactly, in float32.
    Returns ``t`` itself when no row is tiny (no copy, the common case)."""
    f = t.to(torch.float32)
    amax = f.abs().amax(1)
    tiny = (amax > 0) & (amax < TINY_ROW_MAX)
    if not bool(tiny.any()):
        return t
    _, exp = torch.frexp(amax[tiny])
    # 2**-e can exceed float32's range (subnormal rows: e down to -148), so scale in float64: the
    # product of a float32 value and a power of two is exact there and fits float32 again
    scale = torch.pow(torch.tensor(2.0, dtype=torch.float64, device=f.device), (-exp).to(torch.float64))
    f = f.clone()
    f[tiny] = (f[tiny].to(torch.float64) * scale[:, None]).to(torch.float32)
    return f


def _prepare(op: str, t: torch.Tensor, cosine: bool) -> tuple[torch.Tensor, float]:
    """float32, contiguous, finite, normalised when cosine; op for op as csrc/similarity.h."""
    f = t.to(torch.float32).contiguous()
    if not bool(torch.isfinite(f).all()):
        raise ValueError(f"{op}: inputs contain NaN or Inf")
    amax = float(f.abs().max())
    if cosine:
        f = rescale_tiny_rows(f).contiguous()
        if f.shape[1] * amax * amax >= torch.finfo(torch.float32).max:
            raise ValueError(f"{op}: values too large: the squared norm could overflow float32 (max |x| = {amax})")
        ss = torch.mul(f, f).sum(1, keepdim=True)
        inv = torch.where(ss > 0, ss.sqrt().reciprocal(), torch.zeros_like(ss))
        f = torch.mul(f, inv)
    return f, amax


def _check_overflow(op: str, ax: float, ay: float, d: int, cosine: bool) -> None:
    if not cosine and d * ax * ay >= torch.finfo(torch.float32).max:
        raise ValueError(
            f"{op}: values too large: a dot product could overflow float32 (d * max|x| * max|y| = {d * ax * ay:g})"
        )


def _tiles(
    X: torch.Tensor, Y: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int], br: int, bc: int
) -> torch.Tensor:
    """S[rows, cols] assembled from the canonical tiles X[r0:r0+br] @ Y[c0:c0+bc].T.

    ``rows``/``cols`` are aligned to the blocking along the axis that is cut (a full row block
    across all column tiles, or a full column block across all row tiles)."""
    (r_lo, r_hi), (c_lo, c_hi) = rows, cols
    out = []
    for r0 in range(r_lo, r_hi, br):
        xb = X[r0 : min(r0 + br, r_hi)]
        out.append(torch.cat([xb @ Y[c0 : min(c0 + bc, c_hi)].T for c0 in range(c_lo, c_hi, bc)], dim=1))
    return torch.cat(out, dim=0)


def knn_both_reference(
    x: torch.Tensor,
    y: torch.Tensor,
    k_rows: int,
    k_cols: int | None = None,
    similarity: str = "dot",
    block_rows: int = BLOCK_ROWS,
    block_cols: int = BLOCK_COLS,
    rows: bool = True,
    cols: bool = True,
):
    """PyTorch definition of ``knn_both`` (and, with ``cols=False``, of ``knn``).

    Memory is bounded by one row block (block_rows x M) or one column block (N x block_cols);
    the column pass recomputes the tiles, which the compiled ops do not."""
    cosine = _check_similarity("knn_both", similarity)
    _check_pair("knn_both", x, y, "x", "y")
    k_cols = k_rows if k_cols is None else k_cols
    N, M, d = x.shape[0], y.shape[0], x.shape[1]
    _check_k("knn_both", k_rows, M, "rows of y")
    if cols:
        _check_k("knn_both", k_cols, N, "rows of x")
    X, ax = _prepare("knn_both", x, cosine)
    Y, ay = _prepare("knn_both", y, cosine)
    _check_overflow("knn_both", ax, ay, d, cosine)
    br, bc = min(block_rows, N), min(block_cols, M)
    rs, ri, cs, ci = [], [], [], []
    if rows:
        for r0 in range(0, N, br):
            s, i = topk_lowest_index(_tiles(X, Y, (r0, min(r0 + br, N)), (0, M), br, bc), k_rows)
            rs.append(s)
            ri.append(i)
    if cols:
        for c0 in range(0, M, bc):
            s, i = topk_lowest_index(_tiles(X, Y, (0, N), (c0, min(c0 + bc, M)), br, bc).T.contiguous(), k_cols)
            cs.append(s)
            ci.append(i)
    out = []
    if rows:
        out += [torch.cat(rs), torch.cat(ri)]
    if cols:
        out += [torch.cat(cs), torch.cat(ci)]
    return tuple(out)


def knn_reference(
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int,
    similarity: str = "dot",
    block_rows: int = BLOCK_ROWS,
    block_cols: int = BLOCK_COLS,
):
    """PyTorch definition of ``knn``: (scores (N, k) float32, indices (N, k) int64)."""
    cosine = _check_similarity("knn", similarity)
    _check_pair("knn", queries, keys, "queries", "keys")
    _check_k("knn", k, keys.shape[0], "keys")
    return knn_both_reference(queries, keys, k, 1, "cosine" if cosine else "dot", block_rows, block_cols, cols=False)


def _seq_mean(s: torch.Tensor) -> torch.Tensor:
    m = s[:, 0]
    for c in range(1, s.shape[1]):
        m = m + s[:, c]
    return m / s.shape[1]


def margin_scores_reference(fwd_sim, fwd_idx, bwd_sim, bwd_idx, margin: str = "ratio"):
    """PyTorch definition of ``xlrepro::margin_scores`` (see csrc/similarity.cpp)."""
    if margin not in MARGINS:
        raise ValueError(f"margin_scores: margin must be one of {MARGINS}, got {margin!r}")
    fm, bm = _seq_mean(fwd_sim), _seq_mean(bwd_sim)

    def side(sim, idx, self_mean, other_mean):
        b = (self_mean[:, None] + other_mean[idx]) / 2
        if margin == "ratio":
            return sim / b
        if margin == "distance":
            return sim - b
        return sim.clone()

    return side(fwd_sim, fwd_idx, fm, bm), side(bwd_sim, bwd_idx, bm, fm)


# ----------------------------------------------------------------------------- compiled paths


def _cosine_flag(similarity: str) -> bool:
    return similarity == "cosine"


def _tiny_rule(similarity: str, *ts):
    """The compiled ops normalise without the tiny-vector rule: apply it here (NaN/Inf pass through
    unchanged for the op's own check)."""
    if similarity != "cosine":
        return ts
    return tuple(t if not bool(torch.isfinite(t).all()) else rescale_tiny_rows(t) for t in ts)


def _knn_compiled(queries, keys, k, similarity="dot", block_rows=BLOCK_ROWS, block_cols=BLOCK_COLS):
    queries, keys = _tiny_rule(similarity, queries, keys)
    return torch.ops.xlrepro.knn(queries, keys, k, _cosine_flag(similarity), block_rows, block_cols)


def _knn_both_compiled(x, y, k_rows, k_cols=None, similarity="dot", block_rows=BLOCK_ROWS, block_cols=BLOCK_COLS):
    k_cols = k_rows if k_cols is None else k_cols
    x, y = _tiny_rule(similarity, x, y)
    return torch.ops.xlrepro.knn_both(x, y, k_rows, k_cols, _cosine_flag(similarity), block_rows, block_cols)


def _margin_compiled(fwd_sim, fwd_idx, bwd_sim, bwd_idx, margin="ratio"):
    return torch.ops.xlrepro.margin_scores(fwd_sim, fwd_idx, bwd_sim, bwd_idx, margin)


def _cuda_k_limit(main, k=1, k_cols=None, **_):
    ks = [k] + ([k_cols] if k_cols is not None else [])
    return [f"k={max(ks)} > {CUDA_MAX_K} (CUDA k-selection limit)"] if max(ks) > CUDA_MAX_K else []


_ALL_DEVICES = ("cpu", "cuda")

KNN_BACKENDS = (
    _dispatch.Backend("cuda", _knn_compiled, ("cuda",), FLOAT_DTYPES, op="knn", extra=_cuda_k_limit),
    _dispatch.Backend("cpp", _knn_compiled, ("cpu",), FLOAT_DTYPES, op="knn"),
    _dispatch.Backend("reference", knn_reference, _ALL_DEVICES, FLOAT_DTYPES),
)
KNN_BOTH_BACKENDS = (
    _dispatch.Backend("cuda", _knn_both_compiled, ("cuda",), FLOAT_DTYPES, op="knn_both", extra=_cuda_k_limit),
    _dispatch.Backend("cpp", _knn_both_compiled, ("cpu",), FLOAT_DTYPES, op="knn_both"),
    _dispatch.Backend("reference", knn_both_reference, _ALL_DEVICES, FLOAT_DTYPES),
)
MARGIN_BACKENDS = (
    _dispatch.Backend("cuda", _margin_compiled, ("cuda",), (torch.float32,), op="margin_scores"),
    _dispatch.Backend("cpp", _margin_compiled, ("cpu",), (torch.float32,), op="margin_scores"),
    _dispatch.Backend("reference", margin_scores_reference, _ALL_DEVICES, (torch.float32,)),
)


# ----------------------------------------------------------------------------- public


def knn(
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int,
    similarity: str = "dot",
    backend: str = "auto",
    screen: str | None = None,
    screen_extra: int | None = None,
    report: dict | None = None,
):
    """Top-k keys of every query: ``(scores (N, k) float32, indices (N, k) int64)``.

    ``similarity``: "dot" (raw inner product; LAReQA, Mewsli-X) or "cosine" (normalisation
    fused; Tatoeba). Sorted by score descending, ties by lowest key index. ``backend``: "auto",
    "cuda", "cpp" or "reference". Contract: see the module docstring.

    ``screen="bf16"`` (CPU, opt-in): find candidates with a bf16 GEMM, re-score them exactly in
    fp32 and certify the answer with a rigorous error bound; rows that cannot be certified are
    recomputed exactly, so the result is always identical to the call without a screen.
    ``screen_extra``: candidates kept beyond k (default ``max(8, 2k)``, ``max(12, 3k)`` beyond
    32768 rows; see ``screen.default_extra``). ``report``: a dict that
    the call fills with ``rows_fallback`` (how many rows were recomputed), ``fallback_rows`` (which),
    ``exact_fallback_all`` and ``reason`` (why the screen was not used at all, or None). See
    ``xlrepro/ops/screen.py`` for the bound and the checks.
    """
    _check_similarity("knn", similarity)
    _check_pair("knn", queries, keys, "queries", "keys")
    _check_k("knn", k, keys.shape[0], "keys")
    if screen is not None:
        return screened(
            "knn",
            queries,
            keys,
            k,
            None,
            similarity,
            screen,
            screen_extra,
            report,
            lambda: knn(queries, keys, k, similarity, backend),
        )
    b = _dispatch.select(KNN_BACKENDS, backend, queries, k=k)
    return _run(b, "knn", queries, keys, k, similarity=similarity)


def knn_backend(queries: torch.Tensor, k: int = 1, backend: str = "auto") -> str:
    """Name of the backend ``knn`` would run for ``queries`` and ``k`` (for logs and manifests)."""
    return _dispatch.select(KNN_BACKENDS, backend, queries, k=k).name


def knn_both(
    x: torch.Tensor,
    y: torch.Tensor,
    k: int,
    similarity: str = "dot",
    backend: str = "auto",
    screen: str | None = None,
    screen_extra: int | None = None,
    report: dict | None = None,
):
    """Top-k of every row and of every column of ``x . y^T`` from one pass.

    Returns ``(row_scores (N, k), row_idx (N, k) into y, col_scores (M, k), col_idx (M, k) into x)``;
    the column results are what ``knn(y, x, k)`` means, scored from the same tiles as the rows.
    ``screen``/``screen_extra``/``report``: as in ``knn``; the report also has ``cols_fallback``
    and ``fallback_cols``.
    """
    _check_similarity("knn_both", similarity)
    _check_pair("knn_both", x, y, "x", "y")
    _check_k("knn_both", k, y.shape[0], "rows of y")
    _check_k("knn_both", k, x.shape[0], "rows of x")
    if screen is not None:
        return screened(
            "knn_both",
            x,
            y,
            k,
            k,
            similarity,
            screen,
            screen_extra,
            report,
            lambda: knn_both(x, y, k, similarity, backend),
        )
    b = _dispatch.select(KNN_BOTH_BACKENDS, backend, x, k=k)
    return _run(b, "knn_both", x, y, k, k, similarity=similarity)


def screened(
    op: str,
    x,
    y,
    k_rows: int,
    k_cols: int | None,
    similarity: str,
    screen,
    extra,
    report: dict | None,
    exact_all,
    block_rows: int = BLOCK_ROWS,
    block_cols: int = BLOCK_COLS,
    group: int | None = None,
    min_other: int = _screen.MIN_OTHER,
):
    """The screened path of knn / knn_both (see xlrepro/ops/screen.py); arguments already checked
    except the screen's own. ``exact_all()`` returns the unscreened answer."""
    _screen.check_screen(op, screen, extra)
    if report is not None and not isinstance(report, dict):
        raise ValueError(f"{op}: report must be a dict (filled by the call) or None, got {type(report).__name__}")
    if x.device.type != "cpu" or y.device.type != "cpu":
        raise ValueError(f"{op}: screen={screen!r} runs on CPU only; inputs are on {x.device} and {y.device}")
    cosine = similarity == "cosine"
    X, ax = _prepare(op, x, cosine)
    Y, ay = _prepare(op, y, cosine)
    _check_overflow(op, ax, ay, X.shape[1], cosine)
    return _screen.screened_knn_both(
        op, X, Y, k_rows, k_cols, extra, block_rows, block_cols, exact_all, report, group, min_other
    )


def _run(b: _dispatch.Backend, op: str, *args, **kwargs):
    try:
        return b.fn(*args, **kwargs)
    except RuntimeError as e:  # compiled ops raise RuntimeError; the entry points promise ValueError
        msg = str(e).split("\nException raised from")[0]
        if msg.startswith(op + ":"):
            raise ValueError(msg) from e
        raise


def _first_argmax(scores: torch.Tensor) -> torch.Tensor:
    """numpy's argmax along dim 1: the first maximum, or the first NaN when a row has one."""
    nan = torch.isnan(scores)
    filled = torch.where(nan, torch.full_like(scores, float("-inf")), scores)
    m = filled.max(dim=1, keepdim=True).values
    is_max = filled == m
    first_max = is_max.float().argmax(dim=1)  # argmax of 0/1 picks the first 1
    first_nan = nan.float().argmax(dim=1)
    return torch.where(nan.any(dim=1), first_nan, first_max)


def margin_mine(
    x: torch.Tensor,
    y: torch.Tensor,
    k: int = 4,
    margin: str = "ratio",
    mode: str = "max",
    similarity: str = "cosine",
    threshold: float = 0.0,
    backend: str = "auto",
    screen: str | None = None,
    screen_extra: int | None = None,
    report: dict | None = None,
):
    """Mine candidate pairs between source ``x`` (N, d) and target ``y`` (M, d), as LASER/XTREME.

    Returns ``(src (P,) int64, tgt (P,) int64, scores (P,) float32)`` in the official output order
    (google-research/xtreme ``third_party/utils_retrieve.py``, ``mine_bitext``):

    * ``fwd``: one pair per source, in source order: (i, best target of i, its margin).
    * ``bwd``: one pair per target, in target order: (best source of j, j, its margin).
    * ``intersect``: the sources i whose best target j has i as its best source, in source order,
      with the forward margin.
    * ``max``: all N forward and M backward candidates, by margin descending (ties: forward before
      backward, then by position; NaN last, as numpy's argsort puts it), matched greedily one to
      one; a pair whose source or target is already used is skipped, and a visited pair marks its
      source and target as used **even when it is not written**; only ``score > threshold`` is
      written. ``threshold`` applies to ``max`` only, as in LASER.

    ``k`` is capped per direction at the pool size (LASER's ``min(neighborhood, n)``).
    ``margin``: "ratio" (a / b), "distance" (a - b), "absolute" (a), with
    ``b = (fwd_mean[x] + bwd_mean[y]) / 2``. ``similarity``: "cosine" (default; LASER normalises)
    or "dot". Deduplicating sentences is the caller's job (D6). ``screen``/``screen_extra``/
    ``report``: the k-NN of both sides through the bf16 screen, as in ``knn_both`` (same result).
    """
    if margin not in MARGINS:
        raise ValueError(f"margin_mine: margin must be one of {MARGINS}, got {margin!r}")
    if mode not in MODES:
        raise ValueError(f"margin_mine: mode must be one of {MODES}, got {mode!r}")
    _check_similarity("margin_mine", similarity)
    _check_pair("margin_mine", x, y, "x", "y")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"margin_mine: k must be an int >= 1, got {k!r}")
    N, M = x.shape[0], y.shape[0]
    kf, kb = min(k, M), min(k, N)
    b = _dispatch.select(KNN_BOTH_BACKENDS, backend, x, k=kf, k_cols=kb)
    if screen is not None:
        fs, fi, bs, bi = screened(
            "margin_mine",
            x,
            y,
            kf,
            kb,
            similarity,
            screen,
            screen_extra,
            report,
            lambda: _run(b, "knn_both", x, y, kf, kb, similarity=similarity),
        )
    else:
        fs, fi, bs, bi = _run(b, "knn_both", x, y, kf, kb, similarity=similarity)
    # A forced backend forces the same one for the margins (both compiled or both reference).
    mb = _dispatch.select(MARGIN_BACKENDS, backend, fs)
    fsc, bsc = mb.fn(fs, fi, bs, bi, margin)
    return mine_from_scores(fi, fsc, bi, bsc, mode=mode, threshold=threshold)


def mine_from_scores(
    fwd_idx: torch.Tensor,
    fwd_scores: torch.Tensor,
    bwd_idx: torch.Tensor,
    bwd_scores: torch.Tensor,
    mode: str = "max",
    threshold: float = 0.0,
):
    """The retrieval modes of LASER's ``mine_bitext`` on precomputed candidate margins (D8).

    ``fwd_idx``/``fwd_scores``: (N, k_f) candidates of each source and their margins;
    ``bwd_idx``/``bwd_scores``: (M, k_b) for each target. Pure PyTorch (the greedy is sequential).
    """
    if mode not in MODES:
        raise ValueError(f"mine: mode must be one of {MODES}, got {mode!r}")
    dev = fwd_idx.device
    N, M = fwd_idx.shape[0], bwd_idx.shape[0]
    fa, ba = _first_argmax(fwd_scores), _first_argmax(bwd_scores)
    fwd_best = fwd_idx.gather(1, fa[:, None])[:, 0]
    bwd_best = bwd_idx.gather(1, ba[:, None])[:, 0]
    fwd_max = fwd_scores.gather(1, fa[:, None])[:, 0]
    bwd_max = bwd_scores.gather(1, ba[:, None])[:, 0]
    ar_n = torch.arange(N, device=dev)
    ar_m = torch.arange(M, device=dev)
    if mode == "fwd":
        return ar_n, fwd_best, fwd_max
    if mode == "bwd":
        return bwd_best, ar_m, bwd_max
    if mode == "intersect":
        keep = bwd_best[fwd_best] == ar_n
        return ar_n[keep], fwd_best[keep], fwd_max[keep]
    # max: numpy's argsort(-scores) order, stable for ties, NaN last.
    src = torch.cat([ar_n, bwd_best])
    tgt = torch.cat([fwd_best, ar_m])
    scores = torch.cat([fwd_max, bwd_max])
    nan = torch.isnan(scores)
    key = torch.where(nan, torch.full_like(scores, float("-inf")), scores)
    order = torch.sort(key, descending=True, stable=True).indices
    order = order[torch.sort(nan[order].to(torch.uint8), stable=True).indices]
    s_l, t_l, v_l = src[order].tolist(), tgt[order].tolist(), scores[order].tolist()
    seen_s, seen_t = bytearray(N), bytearray(M)
    out = []
    for pos, (si, ti, v) in enumerate(zip(s_l, t_l, v_l)):
        if not seen_s[si] and not seen_t[ti]:
            seen_s[si] = 1
            seen_t[ti] = 1
            if v > threshold:
                out.append(pos)
    sel = order[torch.tensor(out, dtype=torch.long, device=dev)]
    return src[sel], tgt[sel], scores[sel]


# ----------------------------------------------------------------------------- registration


def _register_python_parts() -> None:
    """Fake kernels for the compiled ops (only when the library is loaded). The ops are not
    differentiable (retrieval), so no autograd is registered."""
    if not _lib.has_schemas("knn", "knn_both", "margin_scores"):
        return

    @torch.library.register_fake("xlrepro::knn")
    def _fake_knn(queries, keys, k, cosine=False, block_rows=BLOCK_ROWS, block_cols=BLOCK_COLS):
        torch._check(queries.dim() == 2 and keys.dim() == 2, lambda: "knn: inputs must be 2-D")
        torch._check(queries.shape[1] == keys.shape[1], lambda: "knn: embedding dims differ")
        n = queries.shape[0]
        return (queries.new_empty((n, k), dtype=torch.float32), queries.new_empty((n, k), dtype=torch.long))

    def _both_directions(op, x, y, k_rows, k_cols):
        """Fake outputs of a both-direction top-k op: (row scores, row ids, column scores, column ids)."""
        torch._check(x.dim() == 2 and y.dim() == 2, lambda: f"{op}: inputs must be 2-D")
        torch._check(x.shape[1] == y.shape[1], lambda: f"{op}: embedding dims differ")
        n, m = x.shape[0], y.shape[0]
        f, i = torch.float32, torch.long
        return (
            x.new_empty((n, k_rows), dtype=f),
            x.new_empty((n, k_rows), dtype=i),
            x.new_empty((m, k_cols), dtype=f),
            x.new_empty((m, k_cols), dtype=i),
        )

    @torch.library.register_fake("xlrepro::knn_both")
    def _fake_knn_both(x, y, k_rows, k_cols, cosine=False, block_rows=BLOCK_ROWS, block_cols=BLOCK_COLS):
        return _both_directions("knn_both", x, y, k_rows, k_cols)

    @torch.library.register_fake("xlrepro::margin_scores")
    def _fake_margin(fwd_sim, fwd_idx, bwd_sim, bwd_idx, margin):
        return torch.empty_like(fwd_sim), torch.empty_like(bwd_sim)

    if _lib.has_schemas("bf16_split"):

        @torch.library.register_fake("xlrepro::bf16_split")
        def _fake_split(x):
            torch._check(x.dim() == 2, lambda: "bf16_split: x must be 2-D")
            return x.new_empty(x.shape, dtype=torch.bfloat16), x.new_empty((x.shape[0], 4), dtype=torch.float64)

    if _lib.has_schemas("knn_screen_bf16"):

        @torch.library.register_fake("xlrepro::knn_screen_bf16")
        def _fake_screen(xb, yb, k_rows, k_cols, block_rows=BLOCK_ROWS, block_cols=BLOCK_COLS):
            return _both_directions("knn_screen_bf16", xb, yb, k_rows, k_cols)


_register_python_parts()
