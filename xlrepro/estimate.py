"""GPU-hour estimates for a sweep's runs: 6 * N * tokens / (peak FLOP/s * MFU).

* N: the encoder's parameter count (known models, or counted from ``model.init_config``).
* tokens: training tokens of the run, counted as every sequence at its maximum length (an upper
  bound: real sequences are shorter unless packed): examples (the volume, or the task's English
  training size) x epochs x max length, or ``max_steps`` x batch x accumulation x max length.
  Evaluation passes, early-stopping evaluations and retrieval embedding (forward only) are not
  counted; neither are the extra doc-stride windows of QA.
* peak: dense BF16 tensor-core throughput of the card (datasheet numbers, without sparsity).
* MFU: the model-FLOP utilisation you assume (stated in the output; nothing here measured it).

An estimate for planning, not a measurement.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Card:
    name: str
    peak_bf16_dense_tflops: float
    source: str


CARDS = {
    "h100": Card("NVIDIA H100 SXM5 80GB", 989.4,
                 "NVIDIA H100 Tensor Core GPU datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity = 989.4 dense"),
    "h200": Card("NVIDIA H200 SXM 141GB", 989.4,
                 "NVIDIA H200 Tensor Core GPU datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity = 989.4 dense"),
    "a100": Card("NVIDIA A100 SXM4 80GB", 312.0,
                 "NVIDIA A100 Tensor Core GPU datasheet: BF16 Tensor Core 312 TFLOPS dense (624 with sparsity)"),
}
DEFAULT_MFU = 0.25

# Parameter counts of named encoders (fairseq's XLM-R README lists Large as 560M, Base as 270M).
KNOWN_PARAMS = {"xlm-roberta-large": 560e6, "xlm-roberta-base": 270e6}

# English training examples per task (shared/notes/paper.md §3 and benchmarks.md §3, their tags).
TRAIN_SIZES = {
    "mnli": 392_702, "anli_plus": 1_104_934, "anli": 162_865, "snli": 549_367, "ccg": 38_015,
    "commonsenseqa": 9_741, "cosmosqa": 25_262, "hellaswag": 39_905, "qqp": 363_846, "squad": 87_599,
    "squad_v2": 130_319, "sst2": 67_349, "pawsx": 49_401, "udpos": 21_253, "panx": 20_000, "tydiqa": 3_696,
    "copa": 400, "socialiqa": 33_410,
}


def param_count(model_cfg, vocab_size: int | None = None) -> float:
    if model_cfg.init_config:
        c = model_cfg.init_config
        h, n_layers, inter = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
        v = vocab_size or c.get("vocab_size", 250_002)
        emb = (v + c.get("max_position_embeddings", 514) + c.get("type_vocab_size", 1)) * h
        layer = 4 * h * h + 4 * h + 2 * h * inter + inter + h + 4 * h
        return float(emb + n_layers * layer)
    name = model_cfg.name_or_path.rstrip("/").split("/")[-1]
    if name in KNOWN_PARAMS:
        return KNOWN_PARAMS[name]
    raise KeyError(f"model {model_cfg.name_or_path!r}: parameter count unknown; give model.init_config "
                   f"or use one of {sorted(KNOWN_PARAMS)}")


def _n_train(cfg, task: str, volume) -> int:
    from xlrepro.tasks import get_task

    spec = get_task(task)
    source = spec.train_source or task
    n = cfg.smoke.n_train if cfg.smoke is not None else TRAIN_SIZES.get(source)
    if n is None:
        raise KeyError(f"no English training size known for {source!r} (xlrepro/estimate.py TRAIN_SIZES)")
    return n if volume in (None, "all") else min(int(volume), n)


def _tokens(cfg, train, tasks: list[str]) -> float:
    from xlrepro.tasks import get_task

    lengths = [train.max_seq_length or get_task(t).max_seq_length for t in tasks]
    length = max(lengths)
    if train.max_steps is not None:
        return float(train.max_steps * train.batch_size * train.grad_accum * length)
    n = sum(_n_train(cfg, t, train.volume) for t in tasks)
    return float(n * train.epochs * length)


def run_tokens(cfg, kind: str, task: str) -> float:
    if kind == "pretrain":
        p = cfg.pretrain
        return float(p.steps * p.batch_size * p.max_seq_length)
    if kind == "intermediate":
        return _tokens(cfg, cfg.intermediate.train, cfg.intermediate.tasks)
    if kind in ("target", "control"):
        from xlrepro.config import train_config_for

        return _tokens(cfg, train_config_for(cfg, task), [task])
    return 0.0  # retrieval: forward passes only, not counted


def gpu_hours(n_params: float, tokens: float, card: str = "h100", mfu: float = DEFAULT_MFU) -> float:
    if card not in CARDS:
        raise KeyError(f"unknown card {card!r}; known: {sorted(CARDS)}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    flops = 6.0 * n_params * tokens
    return flops / (CARDS[card].peak_bf16_dense_tflops * 1e12 * mfu) / 3600.0
