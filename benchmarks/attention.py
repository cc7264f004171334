"""Attention-core benchmark for ``xlrepro.ops.varlen_attention`` (results: benchmarks/RESULTS_attention.md).

Forward + backward of the attention core only (no projections, no pad/unpad), XLM-R base shape
(12 heads, head_dim 64), on batches whose lengths follow real task distributions:

  xnli     premise + hypothesis pairs from ../shared/data-samples/xnli (all 15 languages), max 128
  pawsx    sentence pairs from ../shared/data-samples/paws-x (7 languages), max 128
  udpos    sentences of ../shared/data-samples/udpos/xtreme_processed, max 128
  squad    SQuAD v1.1 dev windows (max 384, doc stride 128, question <= 64 tokens)

Without ../shared beside the checkout (or $XLREPRO_SHARED), the same files are read from
tests/fixtures/data-samples: synthetic text of identical lengths, so the length pools are identical.

No XLM-R tokenizer is available offline, so subword counts are *estimated*: 1.35 subwords per
whitespace word, 0.8 per CJK/kana/hangul character, plus XLM-R's special tokens (2 for a single
sentence, 4 for a pair). Compared in the same run, on the same batches:

  op         xlrepro varlen_attention (auto backend: the compiled CPU kernel here) on packed tokens
  padded     torch SDPA on the batch padded to its longest sequence, boolean key-padding mask
  loop       torch SDPA once per sequence, no padding (the zero-padding ideal)

Each cell is the minimum over ``--repeats`` of the total time over ``--batches`` batches.

    python benchmarks/attention.py                       # print the table
    python benchmarks/attention.py --append benchmarks/RESULTS_attention.md
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import math
import os
import platform
import random
import re
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from xlrepro.ops import varlen_attention, varlen_attention_backend

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data-samples"  # ../shared beside the checkout
if not DATA.exists() and os.environ.get("XLREPRO_SHARED"):
    DATA = Path(os.environ["XLREPRO_SHARED"]) / "data-samples"
if not DATA.exists():  # the shipped synthetic samples: same layout, lengths and word counts (tests/fixtures/)
    DATA = HERE.parent / "tests" / "fixtures" / "data-samples"

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def est_subwords(text: str) -> int:
    cjk = len(_CJK.findall(text))
    words = len(_CJK.sub(" ", text).split())
    return max(1, math.ceil(1.35 * words + 0.8 * cjk))


def _pairs(pattern: str, max_len: int) -> list[int]:
    lens = []
    for path in sorted(glob.glob(str(DATA / pattern))):
        with open(path, encoding="utf-8", newline="") as f:
            for line in f:
                cols = line.rstrip("\r\n").split("\t")
                if len(cols) < 2:
                    continue
                lens.append(min(max_len, est_subwords(cols[0]) + est_subwords(cols[1]) + 4))
    return lens


def _udpos(max_len: int) -> list[int]:
    lens = []
    for path in sorted(glob.glob(str(DATA / "udpos" / "xtreme_processed" / "*.tsv"))):
        words = []
        with open(path, encoding="utf-8") as f:
            for line in list(f) + [""]:
                line = line.strip()
                if line:
                    words.append(line.split("\t")[0])
                elif words:
                    lens.append(min(max_len, est_subwords(" ".join(words)) + 2))
                    words = []
    return lens


def _squad_windows(max_len: int = 384, stride: int = 128, max_q: int = 64) -> list[int]:
    data = json.loads((DATA / "squad" / "dataset" / "dev-v1.1.json").read_text(encoding="utf-8"))
    lens = []
    for art in data["data"]:
        for para in art["paragraphs"]:
            ctx = est_subwords(para["context"])
            for qa in para["qas"]:
                qlen = min(max_q, est_subwords(qa["question"]))
                room = max_len - qlen - 4
                start = 0
                while True:  # HF-style windows: advance by `stride` until the context end is covered
                    n = min(room, ctx - start)
                    lens.append(qlen + n + 4)
                    if start + n >= ctx:
                        break
                    start += stride
    return lens


def length_pools() -> dict[str, tuple[list[int], int]]:
    """name -> (lengths, batch size)."""
    return {
        "xnli": (_pairs("xnli/xtreme_processed/dev-*.tsv", 128), 32),
        "pawsx": (_pairs("paws-x/xtreme_processed/dev-*.tsv", 128), 32),
        "udpos": (_udpos(128), 32),
        "squad": (_squad_windows(), 16),
    }


# ---------------------------------------------------------------------------------------------


def _inputs(lens, heads, dim, dtype, gen):
    total = sum(lens)
    q, k, v, g = (torch.randn(total, heads, dim, generator=gen).to(dtype) for _ in range(4))
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.int32)
    B, Lmax = len(lens), max(lens)
    pad = []
    for t in (q, k, v, g):
        p = t.new_zeros(B, Lmax, heads, dim)
        for b, (s, e) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
            p[b, : e - s] = t[s:e]
        pad.append(p.transpose(1, 2).contiguous())  # (B, H, L, D)
    mask = torch.arange(Lmax)[None, :] < torch.tensor(lens)[:, None]
    return dict(q=q, k=k, v=v, g=g, cu=cu, max_len=Lmax, lens=lens, pad=pad, mask=mask[:, None, None, :])


def run_op(x):
    q, k, v = (t.detach().requires_grad_() for t in (x["q"], x["k"], x["v"]))
    out = varlen_attention(q, k, v, x["cu"], x["max_len"])
    torch.autograd.backward(out, x["g"])


def run_padded(x):
    q, k, v = (t.detach().requires_grad_() for t in x["pad"][:3])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=x["mask"])
    torch.autograd.backward(out, x["pad"][3])


def run_loop(x):
    q, k, v = (t.detach().requires_grad_() for t in (x["q"], x["k"], x["v"]))
    outs = []
    for s, e in zip(x["cu"][:-1].tolist(), x["cu"][1:].tolist()):
        outs.append(
            F.scaled_dot_product_attention(*(t[s:e].transpose(0, 1)[None] for t in (q, k, v)))[0].transpose(0, 1)
        )
    torch.autograd.backward(torch.cat(outs), x["g"])


METHODS = {"op": run_op, "padded": run_padded, "loop": run_loop}


def bench(batches, repeats):
    best = {m: float("inf") for m in METHODS}
    for fn in METHODS.values():  # warm-up
        fn(batches[0])
    for _ in range(repeats):
        for name, fn in METHODS.items():  # interleaved, so load changes hit every method alike
            t0 = time.perf_counter()
            for x in batches:
                fn(x)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        out = subprocess.check_output(["lscpu"], text=True)
        cpu = next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
        flags = next(l for l in out.splitlines() if l.startswith("Flags"))
        cpu += " (AVX-512)" if "avx512f" in flags else (" (AVX2)" if "avx2" in flags else "")
    except Exception:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} intra-op threads"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="xnli,pawsx,udpos,squad")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    ap.add_argument("--append", type=Path, help="append the table to this markdown file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    pools = length_pools()
    rows = []
    header = (
        "| task | dtype | batch | mean len | max len | padding | op ms | padded SDPA ms | loop SDPA ms "
        "| padded / op | loop / op |"
    )
    lines = [header, "|" + "---|" * 11]
    print(header)
    print(lines[1])
    for task in args.tasks.split(","):
        pool, bsz = pools[task]
        rng = random.Random(args.seed)
        lens_batches = [[rng.choice(pool) for _ in range(bsz)] for _ in range(args.batches)]
        for dname in args.dtypes.split(","):
            dtype = getattr(torch, dname)
            gen = torch.Generator().manual_seed(args.seed)
            batches = [_inputs(lb, args.heads, args.head_dim, dtype, gen) for lb in lens_batches]
            t = bench(batches, args.repeats)
            n_tok = sum(sum(lb) for lb in lens_batches)
            n_pad = sum(len(lb) * max(lb) for lb in lens_batches)
            mean = n_tok / (len(lens_batches) * bsz)
            line = (
                f"| {task} | {dname} | {bsz} | {mean:.0f} | {max(max(lb) for lb in lens_batches)} | "
                f"{1 - n_tok / n_pad:.0%} | {t['op'] * 1e3:.1f} | {t['padded'] * 1e3:.1f} | "
                f"{t['loop'] * 1e3:.1f} | {t['padded'] / t['op']:.2f} | {t['loop'] / t['op']:.2f} |"
            )
            print(line, flush=True)
            lines.append(line)
            rows.append((task, dname, t))
    backend = varlen_attention_backend(torch.empty(1, 1, args.head_dim))
    load = os.getloadavg()
    notes = [
        f"- {datetime.date.today().isoformat()}, {machine()}; op backend: `{backend}`.",
        f"- Load average at the end of the run: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        "(other jobs shared this machine; cells are minima over repeats, methods interleaved).",
        f"- {args.batches} batches per cell, best of {args.repeats}; heads {args.heads}, head_dim {args.head_dim}; "
        "fwd + bwd of the attention core only; subword lengths estimated (see benchmarks/attention.py).",
        "- Ratios > 1 mean the op is faster. padding = share of padded positions in the padded batches.",
        "- No GPU was available: the CUDA kernel is compiled but was neither run nor timed.",
    ]
    print("\n".join(notes))
    if args.append:
        with open(args.append, "a", encoding="utf-8") as f:
            f.write(
                f"\n## Attention core fwd+bwd, {datetime.date.today().isoformat()}, "
                f"{torch.get_num_threads()} intra-op thread(s)\n\n"
            )
            f.write("\n".join(lines) + "\n\n" + "\n".join(notes) + "\n")


if __name__ == "__main__":
    main()
