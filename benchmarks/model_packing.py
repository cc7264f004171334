"""Whole-model training throughput: padded vs packed XLM-R (model.attention=packed).

Train steps (forward + backward + AdamW) of an XLM-R-shaped encoder with a classification head on
the length distribution of a real task (see "Length pools" below). Real (non-padding) tokens per
second for each batching strategy, measured in the same run on the same examples:

  fixed      pad every batch to 256 tokens (jiant's XNLI setting), random batches of 32
  dynamic    pad to the longest sequence of each random batch of 32
  grouped    HF group_by_length: mega-batches of 50 x 32 sorted by length, then batches of 32
  packed     token-budget batches (first-fit decreasing in shuffled windows, budget = 32 x mean
             length) and model.attention=packed (token-wise layers on unpadded tokens, varlen attention)
  ideal      the zero-padding ideal: the random batches of `dynamic`, one sequence at a time (no
             padding at all; gradients accumulated over the batch)

Length pools (estimated subword counts from ../shared/data-samples, as in benchmarks/attention.py):
xnli, pawsx, udpos (max 128) and squad (384-token windows, batch 16 instead of 32).

    python benchmarks/model_packing.py [--model base2|smoke] [--task xnli|pawsx|udpos|squad] [--steps 8]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import random
import time

import numpy as np
import torch

from xlrepro.config import ModelConfig
from xlrepro.data.types import Format
from xlrepro.model import MultiTaskModel, build_encoder
from xlrepro.packing import plan_packed_batches

try:  # the same length source as the attention-core benchmark
    from attention import length_pools
except ImportError:  # run from the repository root
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from attention import length_pools

MODELS = {
    "base2": {"hidden_size": 768, "num_hidden_layers": 2, "num_attention_heads": 12, "intermediate_size": 3072},
    "smoke": {"hidden_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 512},
}


def batches(strategy: str, lengths: list[int], rng: random.Random, n: int, bs: int = 32) -> list[list[int]]:
    idx = list(range(len(lengths)))
    if strategy in ("fixed", "dynamic", "ideal"):
        rng.shuffle(idx)
        return [idx[i : i + bs] for i in range(0, bs * n, bs)]
    if strategy == "grouped":
        rng.shuffle(idx)
        mega = sorted(idx[: 50 * bs], key=lambda i: -lengths[i])
        out = [mega[i : i + bs] for i in range(0, len(mega), bs)]
        rng.shuffle(out)
        return out[:n]
    budget = bs * int(np.mean(lengths))
    return plan_packed_batches(lengths, budget, 1000, seed=rng.randrange(1 << 30), epoch=0)[:n]


def run(model_name: str, steps: int, lengths: list[int], bs: int, fixed_len: int) -> list[tuple]:
    cfg = {
        **MODELS[model_name],
        "max_position_embeddings": 514,
        "type_vocab_size": 1,
        "pad_token_id": 1,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
    }
    rows = []
    for strategy in ("fixed", "dynamic", "grouped", "packed", "ideal"):
        torch.manual_seed(0)
        enc = build_encoder(ModelConfig(init_config=cfg), vocab_size=5000, seed=0)
        m = MultiTaskModel(enc, packed=strategy == "packed")
        m.add_head("xnli", Format.CLASSIFICATION, 3, 0.1, seed=1)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-5)
        rng = random.Random(0)
        plan = batches(strategy, lengths, rng, steps + 1, bs)
        tokens, elapsed, padded = 0, 0.0, 0
        for s, b in enumerate(plan):
            L = fixed_len if strategy == "fixed" else max(lengths[i] for i in b)
            ids = torch.full((len(b), L), 1)
            for r, i in enumerate(b):
                ids[r, : lengths[i]] = torch.randint(3, 5000, (lengths[i],))
            mask = (ids != 1).long()
            labels = torch.randint(0, 3, (len(b),))
            t0 = time.perf_counter()
            if strategy == "ideal":
                for r, i in enumerate(b):
                    n_r = lengths[i]
                    out = m("xnli", ids[r : r + 1, :n_r], mask[r : r + 1, :n_r])
                    (torch.nn.functional.cross_entropy(out, labels[r : r + 1]) / len(b)).backward()
            else:
                torch.nn.functional.cross_entropy(m("xnli", ids, mask), labels).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if s > 0:  # the first step warms up allocators and kernels
                elapsed += time.perf_counter() - t0
                tokens += int(mask.sum())
                padded += int(mask.sum()) if strategy == "ideal" else ids.numel()
        rows.append((strategy, tokens / elapsed, 1 - tokens / padded))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="base2", choices=sorted(MODELS))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--task", default="xnli", choices=["xnli", "pawsx", "udpos", "squad"])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    lengths, bs = length_pools()[a.task]
    fixed_len = (
        384 if a.task == "squad" else 256
    )  # jiant's fixed lengths (jiant scripts/benchmarks/xtreme/subscripts/c_tokenize_and_cache.sh)
    rows = run(a.model, a.steps, lengths, bs, fixed_len)
    by = {r[0]: r[1] for r in rows}
    print(
        f"# whole-model train step, {a.model}, {a.task} lengths (mean {np.mean(lengths):.0f}, max {max(lengths)}), "
        f"batch {bs}, fixed = {fixed_len}, "
        f"{a.steps} timed steps, {a.threads} threads, {platform.processor() or platform.machine()}, "
        f"{datetime.date.today()}, torch {torch.__version__}"
    )
    print("| strategy | real tokens/s | padding | vs fixed | vs dynamic | vs grouped | vs ideal |")
    print("|---|---|---|---|---|---|---|")
    for s, tps, pad in rows:
        print(
            f"| {s} | {tps:.0f} | {pad:.0%} | {tps / by['fixed']:.2f} | {tps / by['dynamic']:.2f} | "
            f"{tps / by['grouped']:.2f} | {tps / by['ideal']:.2f} |"
        )


if __name__ == "__main__":
    main()
