"""Masked-language-model training: the smoke world's pre-training (and, later, MLM mixing), for any
encoder family (``xlrepro.models``: the family builds the masked-LM model and gives its encoder).

With ``pack``, text is packed like RoBERTa's FULL-SENTENCES: sentences (each ending in
``</s>``) are concatenated in corpus order into sequences of up to ``max_seq_length`` tokens;
otherwise each sentence is one sequence (the smoke default: downstream inputs are sentences).
Masking follows BERT/XLM-R: 15% of non-special tokens are chosen; of those 80% become the
tokenizer's mask token, 10% a random token, 10% stay. The mask is drawn from torch's global RNG,
which the training loop seeds and checkpoints, so a resumed run masks exactly as an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlrepro import distributed as dist
from xlrepro.config import TrainConfig
from xlrepro.data.io import lines, read_text
from xlrepro.errors import ConfigError, DataFormatError
from xlrepro.formats import Batch, pad_sequences as _pad
from xlrepro.train import Stream, train


def mask_tokens(ids: torch.Tensor, tokenizer, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    labels = ids.clone()
    special = torch.zeros_like(ids, dtype=torch.bool)
    for t in (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id):
        special |= ids == t
    chosen = (torch.rand(ids.shape) < p) & ~special
    labels[~chosen] = -100
    ids = ids.clone()
    to_mask = chosen & (torch.rand(ids.shape) < 0.8)
    ids[to_mask] = tokenizer.mask_token_id
    to_random = chosen & ~to_mask & (torch.rand(ids.shape) < 0.5)
    ids[to_random] = torch.randint(len(tokenizer), ids.shape)[to_random]
    return ids, labels


def pack_corpus(tokenizer, files: list[Path], max_len: int, pack: bool = True) -> list[dict]:
    """Sentences of the corpus files packed into sequences of at most ``max_len`` tokens
    (``pack=False``: one sentence per sequence)."""
    texts = [l for f in files for l in lines(read_text(f)[0]) if l.strip()]
    if not pack:
        enc = tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]
        return [{"ex": i, "input_ids": ids} for i, ids in enumerate(enc)]
    enc = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_len - 2)["input_ids"]
    feats: list[dict]
    cur: list[int]
    feats, cur = [], []
    for ids in enc:
        piece = ids + [tokenizer.sep_token_id]
        if cur and len(cur) + len(piece) > max_len - 1:
            feats.append({"ex": len(feats), "input_ids": [tokenizer.cls_token_id] + cur})
            cur = []
        cur += piece
    if cur:
        feats.append({"ex": len(feats), "input_ids": [tokenizer.cls_token_id] + cur})
    return feats


def mlm_collate(tokenizer, p: float):
    def collate(fs):
        ids = _pad([f["input_ids"] for f in fs], tokenizer.pad_token_id)
        masked, labels = mask_tokens(ids, tokenizer, p)
        return Batch(
            {"input_ids": masked, "attention_mask": (ids != tokenizer.pad_token_id).long()},
            {"labels": labels},
            [f["ex"] for f in fs],
        )

    return collate


def mlm_stream(model, tokenizer, files: list[Path], max_len: int, p: float, device: str, seed: int) -> Stream:
    """An MLM stream for continued multilingual MLM during intermediate training (``mlm`` head)."""
    model.add_mlm_head(seed=seed + 2)

    def loss_fn(m, batch):
        logits = m("mlm", batch.inputs["input_ids"].to(device), batch.inputs["attention_mask"].to(device))
        return torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1), batch.targets["labels"].to(device).flatten(), ignore_index=-100
        )

    return Stream("mlm", pack_corpus(tokenizer, files, max_len), mlm_collate(tokenizer, p), loss_fn)


def pretrain_mlm(cfg, tokenizer, files: list[Path], run, device: str):
    """Pre-train a fresh masked-LM model of ``cfg.model.family`` (from ``model.init_config``) and
    save its encoder to ``run.dir / "encoder"``."""
    from xlrepro.models import resolve_family

    family = resolve_family(cfg.model)
    p = cfg.pretrain
    feats = pack_corpus(tokenizer, files, p.max_seq_length, p.pack)
    if not feats:  # before any training: an empty corpus has no batch to give
        raise DataFormatError(
            ", ".join(str(f) for f in files) or str(p.corpus), "the pre-training corpus has no non-empty line"
        )
    model = family.build_mlm(cfg.model.init_config, len(tokenizer), cfg.seed).to(device)

    collate = mlm_collate(tokenizer, p.mlm_probability)

    def loss_fn(m, batch):
        out = m(
            input_ids=batch.inputs["input_ids"].to(device),
            attention_mask=batch.inputs["attention_mask"].to(device),
            labels=batch.targets["labels"].to(device),
        )
        return out.loss

    # one micro-batch per step; with the DeepSpeed engine on W ranks, W micro-batches of batch_size / W
    world = dist.world_size() if p.engine == "deepspeed" else 1
    if p.batch_size % world:
        raise ConfigError(f"pretrain.batch_size = {p.batch_size} is not a multiple of the world size {world}")
    tcfg = TrainConfig(
        lr=p.lr,
        batch_size=p.batch_size // world,
        grad_accum=world,
        max_steps=p.steps,
        warmup_proportion=p.warmup_proportion,
        weight_decay=0.01,
        eval_every_steps=p.steps + 1,
        checkpoint_every_steps=p.checkpoint_every_steps or p.steps + 1,
        checkpoint_every_seconds=p.checkpoint_every_seconds,
        engine=p.engine,
        deepspeed=p.deepspeed,
    )
    run.log({"event": "data", "n_sequences": len(feats), "files": [str(f) for f in files]})
    state = train(
        model,
        Stream("mlm", feats, collate, loss_fn),
        tcfg,
        cfg.seed,
        run.dir,
        None,
        run.log,
        desc="pretrain:mlm",
        keep_checkpoint=True,
    )
    if dist.is_main():
        family.mlm_encoder(model).save_pretrained(str(run.dir / "encoder"), safe_serialization=True)
        from xlrepro.fsmode import apply_umask_tree

        apply_umask_tree(run.dir / "encoder")  # model.safetensors is written 0600 by transformers
    return state
