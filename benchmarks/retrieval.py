"""Retrieval scoring benchmark: both-direction top-k / margin mining vs. its baselines.

    python benchmarks/retrieval.py                # full table (a few minutes on 2 cores)
    python benchmarks/retrieval.py --quick        # 10k shapes only
    python benchmarks/retrieval.py --no-check     # skip the comparison with the fp32 reference
    python benchmarks/retrieval.py --embed        # instead: packed vs padded retrieval embeddings
    python benchmarks/retrieval.py --device cuda  # on a GPU: the CUDA kernels against cuBLAS (TF32 off)

Every ratio is against baselines measured in the same run on the same inputs (random normal,
cosine similarity, k = 4). Methods (both directions unless said):

  gemm         one bare fp32 GEMM of the shape, x @ y.T (the floor; materialises N x M)
  knn_both     xlrepro.ops.knn_both (compiled kernel when built): row + column top-k, one pass
  margin_mine  xlrepro.ops.margin_mine(mode="max", margin="ratio"): knn_both + margins + greedy
  knn_both+bf16  knn_both(..., screen="bf16"): bf16 GEMM screen, exact fp32 re-scoring of the
               candidates, certified rows, exact fallback (same answer as knn_both; notes: time
               relative to knn_both, share of rows/columns that needed the fallback, identity)
  torch        blocked torch matmul + topk, two passes (one per direction)
  faiss        faiss-cpu IndexFlatIP, two searches (BUCC mining as LASER does it)
  numpy        blocked numpy matmul + argpartition, two passes

GFLOP/s counts one N x M x d GEMM (2 N M d) for every method, so it is comparable across rows;
"of GEMM rate" is the bare GEMM's time over the method's (the issue's GPU goal: >= 70% for the
mining). Times are the minimum of ``--repeats`` calls (default 1; the calls of one method run
back to back). Peak memory: the largest RSS increase over the process's RSS before the call,
sampled every 2 ms (on a GPU: the peak of torch's allocated memory over what was allocated before).

The BUCC-scale point (N = M = 100k, d = 1024) is an estimate: a measured subset of the query rows
against all 100k keys, scaled linearly in N (every method's cost is linear in N at fixed M). The
screen's column side does not scale that way, so there the screen is measured rows-only:
`knn` and `knn+bf16` (knn(..., screen="bf16")), both on the subset.

``--device cuda``: the same table on the GPU with fp32 matmuls at "highest" precision (TF32 off,
as the op's fp32 contract needs): gemm, knn_both (the CUDA kernels), margin_mine and the blocked
torch two-pass; faiss-cpu, numpy and the bf16 screen (CPU only) are left out. Shapes 10k and 20k
(d = 768, 1024) and N = M = 100k, d = 1024 in full (the gemm baseline of that row is measured on
``--bucc-subset`` rows and scaled, as its 40 GB result would not fit next to the rest).

``--embed``: the embedding step before the search (``xlrepro.retrieval.embed``, hidden_states[last]
mean-pooled, batches of 32 sentences sorted by length as the pipeline runs it) with the encoder
padded vs packed (``packed=True``: varlen attention, pooled from the packed tokens). Sentences are
the Tatoeba (all languages and English) and BUCC zh-en samples of ../shared/data-samples; no XLM-R
tokenizer is available offline, so each sentence becomes random ids of its estimated subword length
(``benchmarks/attention.est_subwords`` + 2 special tokens). Encoder: ``--embed-model`` (base2 = a
2-layer XLM-R-base-width encoder, or the smoke model). Real tokens/s, minimum of ``--repeats``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import threading
import time
import zlib

import numpy as np
import torch

import xlrepro.ops as ops
from xlrepro.ops import _lib, similarity as sim
from xlrepro.ops.screen import availability as screen_availability, default_extra

K = 4
PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Peak RSS increase during a with-block (sampled)."""

    def __enter__(self):
        self.base = _rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())
        self.mb = (self.peak - self.base) / 2**20


REPEATS = 1  # set by --repeats


def timed(fn, device: torch.device = torch.device("cpu")):  # noqa: B008  (an immutable value)
    """(min seconds over REPEATS calls, peak memory MB, the last call's output)."""
    if device.type == "cuda":
        return _timed_cuda(fn, device)
    best, mb, out = float("inf"), 0.0, None
    for _ in range(REPEATS):
        out = None  # the previous output is not counted in the next call's memory
        with PeakRSS() as m:
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
        best, mb = min(best, dt), max(mb, m.mb)
    return best, mb, out


def _timed_cuda(fn, device):
    best, mb, out = float("inf"), 0.0, None
    for _ in range(REPEATS):
        out = None
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
        mb = max(mb, (torch.cuda.max_memory_allocated(device) - base) / 2**20)
    return best, mb, out


def normalize(t: torch.Tensor) -> torch.Tensor:
    return sim._prepare("bench", t, True)[0]


def torch_two_pass(x, y, block=4096):
    X, Y = normalize(x), normalize(y)
    out = []
    for a, b in ((X, Y), (Y, X)):
        vs, ix = [], []
        for r0 in range(0, a.shape[0], block):
            v, i = (a[r0 : r0 + block] @ b.T).topk(K, dim=1)
            vs.append(v)
            ix.append(i)
        out += [torch.cat(vs), torch.cat(ix)]
    return out


def numpy_two_pass(x, y, block=4096):
    X, Y = normalize(x).numpy(), normalize(y).numpy()
    out = []
    for a, b in ((X, Y), (Y, X)):
        ix = np.empty((a.shape[0], K), dtype=np.int64)
        vs = np.empty((a.shape[0], K), dtype=np.float32)
        for r0 in range(0, a.shape[0], block):
            s = a[r0 : r0 + block] @ b.T
            p = np.argpartition(-s, K - 1, axis=1)[:, :K]
            v = np.take_along_axis(s, p, 1)
            o = np.argsort(-v, axis=1, kind="stable")
            ix[r0 : r0 + block] = np.take_along_axis(p, o, 1)
            vs[r0 : r0 + block] = np.take_along_axis(v, o, 1)
        out += [vs, ix]
    return out


def faiss_two_searches(x, y):
    import faiss

    X, Y = normalize(x).numpy(), normalize(y).numpy()
    out = []
    for q, base in ((X, Y), (Y, X)):
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base)
        v, i = index.search(q, K)
        out += [v, i]
    return out


def faiss_one_direction(q, base):
    import faiss

    Q, B = normalize(q).numpy(), normalize(base).numpy()
    index = faiss.IndexFlatIP(B.shape[1])
    index.add(B)
    return index.search(Q, K)


def agree(a, b) -> float:
    """Fraction of rows whose top-k index lists are identical."""
    a, b = np.asarray(a), np.asarray(b)
    return float((a == b).all(axis=1).mean())


def run_shape(n, d, methods, check, rows, screen=True):
    g = torch.Generator().manual_seed(n + d)
    x = torch.randn(n, d, generator=g)
    y = torch.randn(n, d, generator=g)
    flop = 2.0 * n * n * d
    res = {}
    x[:256] @ y[:256].T  # warm-up (thread pool, MKL)
    ops.knn_both(x[:256], y[:256], K, similarity="cosine")
    t, mb, _ = timed(lambda: x @ y.T)
    res["gemm"] = (t, mb, "")
    t, mb, kb = timed(lambda: ops.knn_both(x, y, K, similarity="cosine"))
    res["knn_both"] = (t, mb, _check_identical(x, y, kb) if check else "")
    t, mb, _ = timed(lambda: ops.margin_mine(x, y, k=K, margin="ratio", mode="max"))
    res["margin_mine"] = (t, mb, "")
    if screen:
        rep = {}
        t, mb, sb = timed(lambda: ops.knn_both(x, y, K, similarity="cosine", screen="bf16", report=rep))
        same = "yes" if all(torch.equal(u, v) for u, v in zip(sb, kb)) else "NO"
        res["knn_both+bf16"] = (
            t,
            mb,
            f"x knn_both {t / res['knn_both'][0]:.2f}; fallback rows "
            f"{rep['rows_fallback'] / n:.2%} cols {rep['cols_fallback'] / n:.2%}; identical: {same}"
            + (f"; {rep['reason']}" if rep["reason"] else ""),
        )
    if "torch" in methods:
        t, mb, o = timed(lambda: torch_two_pass(x, y))
        res["torch"] = (t, mb, f"idx {agree(o[1], kb[1]) * 100:.2f}%")
    if "faiss" in methods:
        t, mb, o = timed(lambda: faiss_two_searches(x, y))
        res["faiss"] = (t, mb, f"idx {agree(o[1], kb[1]) * 100:.2f}%")
    if "numpy" in methods:
        t, mb, o = timed(lambda: numpy_two_pass(x, y))
        res["numpy"] = (t, mb, f"idx {agree(o[1], kb[1]) * 100:.2f}%")
    for name, (t, mb, note) in res.items():
        rows.append(
            (
                f"{n // 1000}k x {n // 1000}k, d={d}",
                name,
                t,
                flop / t / 1e9,
                t / res["gemm"][0],
                res["faiss"][0] / t if "faiss" in res else float("nan"),
                mb,
                note,
            )
        )


def _check_identical(x, y, kb) -> str:
    ref = sim.knn_both_reference(x, y, K, K, "cosine")
    diff = [int((u != v).any(1).sum()) for u, v in zip(kb, ref)]
    dmax = max(float((u - v).abs().max()) for u, v in zip(kb[::2], ref[::2]))
    return "yes" if not any(diff) else f"NO: rows differing {diff}, max |d score| {dmax:.2g}"


def run_shape_cuda(n, d, check, rows, device, gemm_rows=None):
    """One shape on the GPU: gemm (on gemm_rows query rows, scaled, when given), knn_both,
    margin_mine, torch two-pass."""
    g = torch.Generator().manual_seed(n + d)
    x = torch.randn(n, d, generator=g).to(device)
    y = torch.randn(n, d, generator=g).to(device)
    flop = 2.0 * n * n * d
    ops.knn_both(x[:256], y[:256], K, similarity="cosine")  # warm-up (context, cuBLAS handles)
    res = {}
    xs = x if gemm_rows is None else x[:gemm_rows]
    t, mb, _ = timed(lambda: xs @ y.T, device)
    t *= n / xs.shape[0]
    res["gemm"] = (t, mb, "" if gemm_rows is None else f"measured {gemm_rows} rows")
    t, mb, kb = timed(lambda: ops.knn_both(x, y, K, similarity="cosine"), device)
    res["knn_both"] = (t, mb, _check_identical(x, y, kb) if check else "")
    t, mb, _ = timed(lambda: ops.margin_mine(x, y, k=K, margin="ratio", mode="max"), device)
    res["margin_mine"] = (t, mb, "")
    t, mb, o = timed(lambda: torch_two_pass(x, y), device)
    res["torch"] = (t, mb, f"idx {agree(o[1].cpu(), kb[1].cpu()) * 100:.2f}%")
    for name, (t, mb, note) in res.items():
        rows.append(
            (f"{n // 1000}k x {n // 1000}k, d={d}", name, t, flop / t / 1e9, t / res["gemm"][0], float("nan"), mb, note)
        )


def run_bucc_estimate(sub, rows, n=100_000, d=1024, screen=True, have_faiss=True):
    """N = M = 100k, d = 1024: `sub` query rows against all 100k keys, scaled by n / sub."""
    g = torch.Generator().manual_seed(7)
    y = torch.randn(n, d, generator=g)
    x = torch.randn(sub, d, generator=g)
    scale = n / sub
    flop = 2.0 * n * n * d
    res = {}
    t, mb, _ = timed(lambda: x @ y.T)
    res["gemm"] = (t * scale, mb, f"measured {sub} rows")
    # The kernel's work per row block is the same for every block; the column lists are for all M.
    t, mb, _ = timed(lambda: ops.knn_both(x, y, K, similarity="cosine"))
    res["knn_both"] = (t * scale, mb, f"measured {sub} rows")
    if screen:
        t, mb, kn = timed(lambda: ops.knn(x, y, K, similarity="cosine"))
        res["knn"] = (t * scale, mb, f"rows only; measured {sub} rows")
        rep = {}
        t, mb, ks = timed(lambda: ops.knn(x, y, K, similarity="cosine", screen="bf16", report=rep))
        same = "yes" if all(torch.equal(u, v) for u, v in zip(ks, kn)) else "NO"
        res["knn+bf16"] = (
            t * scale,
            mb,
            f"rows only; measured {sub} rows; x knn {t * scale / res['knn'][0]:.2f}; "
            f"fallback rows {rep['rows_fallback'] / sub:.2%}; identical: {same}",
        )
    if have_faiss:
        t, mb, _ = timed(lambda: faiss_one_direction(x, y))
        # two searches of n queries each against n keys = 2 * scale times this measurement
        res["faiss"] = (2 * t * scale, mb, f"2 x measured {sub} queries")
    for name, (t, mb, note) in res.items():
        rows.append(
            (
                "100k x 100k, d=1024 (est.)",
                name,
                t,
                flop / t / 1e9,
                t / res["gemm"][0],
                res["faiss"][0] / t if "faiss" in res else float("nan"),
                mb,
                note,
            )
        )


def embed_pools() -> dict[str, list[str]]:
    """name -> sentences of the shared samples (Tatoeba: every language file; BUCC: zh-en dev, both sides)."""
    import glob

    from attention import DATA

    pools = {}
    tat = sorted(glob.glob(str(DATA / "tatoeba" / "data" / "tatoeba" / "v1" / "tatoeba.*-eng.*")))
    pools["tatoeba"] = [line.rstrip("\n") for p in tat for line in open(p, encoding="utf-8") if line.strip()]
    bucc = sorted(glob.glob(str(DATA / "bucc2018" / "zh-en.dev.[a-z][a-z]")))
    pools["bucc"] = [
        line.rstrip("\n").split("\t", 1)[-1] for p in bucc for line in open(p, encoding="utf-8") if line.strip()
    ]
    return {k: v for k, v in pools.items() if v}


class EstimatedTokenizer:
    """Random ids of each sentence's estimated XLM-R subword length (+ <s> </s>), padded with 1."""

    pad_token_id = 1

    def __init__(self, vocab: int = 5000):
        self.vocab = vocab

    def __call__(self, texts, truncation=True, max_length=None, padding=False, return_tensors=None):
        from attention import est_subwords
        from transformers import BatchEncoding

        ids = []
        for t in texts:
            g = np.random.default_rng(zlib.crc32(t.encode("utf-8")))
            ids.append(([0] + g.integers(3, self.vocab, est_subwords(t)).tolist() + [2])[:max_length])
        if not padding:
            return {"input_ids": ids}
        L = max(len(x) for x in ids)
        return BatchEncoding(
            {
                "input_ids": torch.tensor([x + [1] * (L - len(x)) for x in ids]),
                "attention_mask": torch.tensor([[1] * len(x) + [0] * (L - len(x)) for x in ids]),
            }
        )


def run_embed(model_name: str, repeats: int) -> None:
    from model_packing import MODELS

    from xlrepro.config import ModelConfig
    from xlrepro.model import build_encoder
    from xlrepro.ops import varlen_attention_backend
    from xlrepro.retrieval import embed

    cfg = {**MODELS[model_name], "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1}
    enc = build_encoder(ModelConfig(init_config=cfg), vocab_size=5000, seed=0)
    tok = EstimatedTokenizer()
    layer = cfg["num_hidden_layers"]
    print(
        f"# retrieval embeddings  {datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"threads={torch.get_num_threads()}  torch {torch.__version__}  model {model_name}  "
        f"varlen backend: {varlen_attention_backend(torch.empty(1, 1, 64))}"
    )
    hdr = (
        "pool",
        "sentences",
        "mean tokens",
        "padding share (padded)",
        "padded tok/s",
        "packed tok/s",
        "packed/padded",
        "max rel. diff",
    )
    print("| " + " | ".join(hdr) + " |")
    print("|" + "|".join("---" for _ in hdr) + "|")
    for name, sents in embed_pools().items():
        lens = [len(x) for x in tok(sents, max_length=512)["input_ids"]]
        order = sorted(range(len(sents)), key=lambda i: len(sents[i]))  # as embed batches them
        padded_slots = sum(
            max(lens[i] for i in order[s : s + 32]) * len(order[s : s + 32]) for s in range(0, len(order), 32)
        )
        out, best = {}, {}
        for packed in (False, True):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                out[packed] = embed(
                    enc, tok, sents, layer=layer, pooling="mean", max_len=512, batch_size=32, packed=packed
                )
                times.append(time.perf_counter() - t0)
            best[packed] = min(times)
        rel = ((out[True] - out[False]).abs().max() / out[False].abs().max()).item()
        tps = {p: sum(lens) / best[p] for p in best}
        print(
            f"| {name} | {len(sents)} | {np.mean(lens):.1f} | {1 - sum(lens) / padded_slots:.1%} | "
            f"{tps[False]:.0f} | {tps[True]:.0f} | {tps[True] / tps[False]:.2f} | {rel:.1e} |"
        )


def print_table(rows) -> None:
    hdr = ("shape", "method", "time s", "GFLOP/s", "x gemm", "of GEMM rate", "faiss/this", "peak MB", "notes")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "|".join("---" for _ in hdr) + "|")
    for shape, name, t, gf, xg, vf, mb, note in rows:
        vfs = "-" if vf != vf else f"{vf:.2f}"
        print(f"| {shape} | {name} | {t:.3f} | {gf:.0f} | {xg:.2f} | {1 / xg:.0%} | {vfs} | {mb:.0f} | {note} |")


def run_cuda(args) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no GPU (a CPU build of torch, or no driver)")
    device = torch.device("cuda")
    torch.set_float32_matmul_precision("highest")  # no TF32: fp32 GEMMs, as the op's contract
    b = ops.families()["knn_both"]
    probe = torch.empty(1, 1, device=device)
    path = [x.name for x in b if not x.not_supported_reasons(probe, k=K)][0]
    print(
        f"# retrieval benchmark (GPU)  {datetime.date.today()}  {torch.cuda.get_device_name(device)}  "
        f"torch {torch.__version__} (CUDA {torch.version.cuda})  knn_both backend: {path}  "
        f"fp32 matmul precision: {torch.get_float32_matmul_precision()}  repeats: {REPEATS}"
    )
    print(f"# tile {sim.BLOCK_ROWS}x{sim.BLOCK_COLS}, k={K}, cosine, fp32")
    rows: list = []
    shapes = [(10_000, 768), (10_000, 1024)] + ([] if args.quick else [(20_000, 768), (20_000, 1024)])
    for n, d in shapes:
        run_shape_cuda(n, d, not args.no_check, rows, device)
    if not args.quick:
        run_shape_cuda(100_000, 1024, not args.no_check, rows, device, gemm_rows=args.bucc_subset)
    print_table(rows)
    print(
        "\nnotes: knn_both notes = bit-identical to similarity.knn_both_reference on the same GPU (same tiling);"
        " torch notes = share of rows whose forward top-k index list equals knn_both's."
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embed", action="store_true", help="packed vs padded retrieval embeddings instead of search")
    ap.add_argument("--embed-model", default="base2", choices=["base2", "smoke"])
    ap.add_argument("--repeats", type=int, help="calls per method, the minimum is reported (default: 1; --embed: 3)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="10k shapes only, no 100k estimate")
    ap.add_argument("--no-check", action="store_true", help="skip the bit-identity check against the reference")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bucc-subset", type=int, default=4096)
    ap.add_argument("--no-screen", action="store_true", help="skip the bf16-screen rows")
    args = ap.parse_args()
    global REPEATS
    REPEATS = args.repeats or 1
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        run_cuda(args)
        return
    if args.embed:
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent))  # attention.py, model_packing.py beside this
        run_embed(args.embed_model, args.repeats or 3)
        return
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        have_faiss = True
    except ImportError:
        have_faiss = False
    methods = ["torch", "numpy"] + (["faiss"] if have_faiss else [])
    b = ops.families()["knn_both"]
    path = [x.name for x in b if not x.not_supported_reasons(torch.empty(1, 1), k=K)][0]
    print(
        f"# retrieval benchmark  {datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"threads={args.threads}  torch {torch.__version__}  knn_both backend: {path}"
        + ("" if _lib.load() else f" ({_lib.unavailable_reason()})")
    )
    print(f"# tile {sim.BLOCK_ROWS}x{sim.BLOCK_COLS}, k={K}, cosine, fp32; faiss: {have_faiss}")
    if not args.no_screen:
        av = screen_availability()
        print(
            f"# bf16 screen: native bf16 GEMM {av['native_bf16'] or 'none'}; screen kernel {av['screen_kernel']}; "
            f"extra candidates {default_extra(K)} (beyond 32768 rows {default_extra(K, 10**9)})"
        )
    rows = []
    shapes = [(10_000, 768), (10_000, 1024)] + ([] if args.quick else [(20_000, 768), (20_000, 1024)])
    for n, d in shapes:
        run_shape(n, d, methods, not args.no_check, rows, not args.no_screen)
    if not args.quick and (have_faiss or not args.no_screen):
        run_bucc_estimate(args.bucc_subset, rows, screen=not args.no_screen, have_faiss=have_faiss)
    print_table(rows)
    print(
        "\nnotes: knn_both notes = bit-identical to similarity.knn_both_reference (same tiling);"
        " baseline notes = share of rows whose forward top-k index list equals knn_both's."
    )


if __name__ == "__main__":
    main()
