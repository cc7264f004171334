"""One training run of a tiny model on the DeepSpeed engine, for the multi-process tests
(``python -m torch.distributed.run --nproc_per_node N tests/ds_worker.py OUT CONFIG [options]``).

Every rank writes ``OUT/rank<r>.json``: its parameters' sha256 after training, the loop state,
the consolidated weights' sha256 and, on rank 0, the logged events. ``--step-sleep`` slows each
step (the kill test needs time between checkpoints); ``--save-encoder`` writes the encoder
hand-off (safetensors) from rank 0, as the pipeline does.
"""

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

from xlrepro import distributed as dist
from xlrepro.config import ModelConfig, TrainConfig
from xlrepro.data.types import Format
from xlrepro.formats import Batch, pad_sequences
from xlrepro.model import MultiTaskModel, build_encoder, save_encoder
from xlrepro.train import Stream, train

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 40,
    "type_vocab_size": 1,
    "pad_token_id": 1,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


def setup(seed=0, n=64, packed=False):
    enc = build_encoder(ModelConfig(init_config=TINY), vocab_size=40, seed=seed)
    m = MultiTaskModel(enc, packed=packed)
    m.add_head("t", Format.CLASSIFICATION, 2, 0.0, seed=seed + 1)
    g = torch.Generator().manual_seed(0)
    feats = []
    for i in range(n):
        k = int(torch.randint(3, 12, (1,), generator=g))
        ids = torch.randint(3, 40, (k,), generator=g).tolist()
        feats.append({"ex": i, "input_ids": [0] + ids + [2], "label": int(ids[0] % 2)})

    def collate(fs):
        ids = pad_sequences([f["input_ids"] for f in fs], 1)
        return Batch(
            {"input_ids": ids, "attention_mask": (ids != 1).long()},
            {"labels": torch.tensor([f["label"] for f in fs])},
            [f["ex"] for f in fs],
        )

    return m, feats, collate


def digest(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("deepspeed")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--checkpoint-every", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--token-budget", type=int, default=None)
    ap.add_argument("--packed", action="store_true", help="model.attention=packed (varlen attention)")
    ap.add_argument("--step-sleep", type=float, default=0.0)
    ap.add_argument("--save-encoder", action="store_true")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"pid-rank{dist.rank()}").write_text(str(os.getpid()))
    torch.set_num_threads(1)
    m, feats, collate = setup(packed=a.packed)
    cfg = TrainConfig(
        lr=1e-3,
        batch_size=a.batch_size,
        grad_accum=a.grad_accum,
        max_steps=a.steps,
        checkpoint_every_steps=a.checkpoint_every,
        eval_every_steps=a.eval_every,
        patience=100,
        warmup_proportion=0.2,
        engine="deepspeed",
        deepspeed=a.deepspeed,
        token_budget=a.token_budget,
        packing_window=16,
    )
    dev = collate(feats[:16])

    def loss_fn(model, b):
        if a.step_sleep:
            time.sleep(a.step_sleep)
        return torch.nn.functional.cross_entropy(model("t", **b.inputs), b.targets["labels"])

    def evaluate():
        return -float(torch.nn.functional.cross_entropy(m("t", **dev.inputs), dev.targets["labels"]).detach())

    events = []

    def log(e):
        events.append(e)
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(e) + "\n")

    run_dir = out / "run"
    run_dir.mkdir(exist_ok=True)
    state = train(
        m,
        Stream("t", feats, collate, loss_fn),
        cfg,
        seed=5,
        run_dir=run_dir,
        evaluate=evaluate if a.eval_every < 1000 else None,
        log=log,
    )
    params = {n: p.detach().clone() for n, p in m.named_parameters()}
    result = {
        "rank": dist.rank(),
        "world": dist.world_size(),
        "step": state.step,
        "best_step": state.best_step,
        "param_sha256": digest(params),
        "dtype": str(next(m.parameters()).dtype),
        "final_dev": evaluate(),
        "events": events,
    }
    if a.save_encoder and dist.is_main():
        save_encoder(m, out / "encoder", {"run": "ds_worker"})
        result["encoder_sha256"] = digest({n: p for n, p in m.encoder.state_dict().items()})
    (out / f"rank{dist.rank()}.json").write_text(json.dumps(result))
    dist.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
