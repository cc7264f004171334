"""GPU-hour estimates for a sweep's runs: 6 * N * tokens / (peak FLOP/s * MFU).

* N: the encoder's parameter count, counted from ``model.init_config`` or from the model's
  ``config.json`` (a local folder, or the Hugging Face cache of a Hub id); ``KNOWN_PARAMS`` is only
  the fallback for a Hub id with no local config.
* tokens: training tokens of the run, counted as every sequence at its maximum length (an upper
  bound: real sequences are shorter unless packed): examples (the volume, or the task's English
  training size) x epochs x max length, or ``max_steps`` x batch x accumulation x max length.
  Evaluation passes, early-stopping evaluations and retrieval embedding (forward only) are not
  counted; neither are the extra doc-stride windows of QA.
* peak: the card's dense datasheet throughput (no sparsity) in the precision the run trains in
  (``train_precision``): bf16/fp16 tensor cores for a DeepSpeed config with ``bf16``/``fp16``
  enabled, plain FP32 otherwise. FP32 means CUDA cores, not TF32 tensor cores: xlrepro leaves
  torch's ``allow_tf32`` off, so fp32 matmuls stay fp32 (as in the paper's fp32 training); at
  fp32 a run costs about 15x (H100) or 16x (A100) the GPU-hours of the same run in bf16.
* MFU: the model-FLOP utilisation you assume (stated in the output; nothing here measured it).

An estimate for planning, not a measurement.
"""
from __future__ import annotations

from dataclasses import dataclass


PRECISIONS = ("bf16", "fp16", "tf32", "fp32")


@dataclass(frozen=True)
class Card:
    name: str
    peak_dense_tflops: dict  # precision -> dense TFLOP/s (datasheet, no sparsity)
    source: str

    def peak(self, precision: str) -> float:
        if precision not in self.peak_dense_tflops:
            raise KeyError(f"precision {precision!r}: one of {list(self.peak_dense_tflops)}")
        return self.peak_dense_tflops[precision]


_HOPPER = {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 67.0}
CARDS = {
    "h100": Card("NVIDIA H100 SXM5 80GB", _HOPPER,
                 "NVIDIA H100 Tensor Core GPU datasheet (SXM5): FP32 67 TFLOPS; TF32 / BF16 / FP16 Tensor Core "
                 "989 / 1,979 / 1,979 TFLOPS with sparsity, half that dense"),
    "h200": Card("NVIDIA H200 SXM 141GB", _HOPPER,
                 "NVIDIA H200 Tensor Core GPU datasheet (SXM): FP32 67 TFLOPS; TF32 / BF16 / FP16 Tensor Core "
                 "989 / 1,979 / 1,979 TFLOPS with sparsity, half that dense"),
    "a100": Card("NVIDIA A100 SXM4 80GB", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
                 "NVIDIA A100 Tensor Core GPU datasheet (SXM): FP32 19.5 TFLOPS; TF32 / BF16 / FP16 Tensor Core "
                 "156 / 312 / 312 TFLOPS dense"),
}
DEFAULT_MFU = 0.25

# Fallback parameter counts of Hub encoders with no local config.json (fairseq's XLM-R README lists
# Large as 560M, Base as 270M), keyed by the name after the organisation.
KNOWN_PARAMS = {"xlm-roberta-large": 560e6, "xlm-roberta-base": 270e6}



def param_count(model_cfg, vocab_size: int | None = None) -> float:
    if model_cfg.init_config:
        c = model_cfg.init_config
        h, n_layers, inter = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
        v = vocab_size or c.get("vocab_size", 250_002)
        emb = (v + c.get("max_position_embeddings", 514) + c.get("type_vocab_size", 1)) * h
        layer = 4 * h * h + 4 * h + 2 * h * inter + inter + h + 4 * h
        return float(emb + n_layers * layer)
    from xlrepro.model import model_config_json

    config = model_config_json(model_cfg)
    if config is not None:
        from xlrepro.plan import encoder_params, shape_from_config

        return float(encoder_params(shape_from_config(config, model_cfg.name_or_path))[0])
    name = model_cfg.name_or_path.rstrip("/").split("/")[-1]
    if name in KNOWN_PARAMS:
        return KNOWN_PARAMS[name]
    raise KeyError(f"model {model_cfg.name_or_path!r}: parameter count unknown (no config.json in a local folder "
                   f"or the Hugging Face cache); give model.init_config, a local model folder, "
                   f"or one of {sorted(KNOWN_PARAMS)}")


def _n_train(cfg, task: str, volume) -> int:
    from xlrepro.errors import ConfigError
    from xlrepro.study.design import train_size
    from xlrepro.tasks import get_task

    source = get_task(task).train_source or task
    try:  # the registry's train_size (xlrepro/tasks/<task>.yaml), or the smoke world's n_train
        n = cfg.smoke.n_train if cfg.smoke is not None else train_size(source)[0]
    except ConfigError as e:
        raise KeyError(f"no English training size known for {source!r}: {e}") from None
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


def train_precision(train) -> str:
    """The precision a phase's matmuls run in on a GPU: ``bf16``/``fp16`` when its DeepSpeed config
    enables them, else ``fp32`` (the torch engine and fp32 DeepSpeed configs; TF32 stays off)."""
    if getattr(train, "engine", "torch") != "deepspeed" or not getattr(train, "deepspeed", None):
        return "fp32"
    import json

    from xlrepro.config import resolve_deepspeed_config

    ds = json.loads(resolve_deepspeed_config(train.deepspeed).read_text())
    for prec in ("bf16", "fp16"):
        if (ds.get(prec) or {}).get("enabled") in (True, "true"):
            return prec
    return "fp32"


def run_precision(cfg, kind: str, task: str) -> str:
    """``train_precision`` of the phase a run trains (fp32 for runs that only evaluate)."""
    if kind == "pretrain":
        return train_precision(cfg.pretrain)
    if kind == "intermediate":
        return train_precision(cfg.intermediate.train)
    if kind in ("target", "control"):
        from xlrepro.config import train_config_for

        return train_precision(train_config_for(cfg, task))
    return "fp32"


def gpu_hours(n_params: float, tokens: float, card: str = "h100", mfu: float = DEFAULT_MFU,
              precision: str = "bf16") -> float:
    if card not in CARDS:
        raise KeyError(f"unknown card {card!r}; known: {sorted(CARDS)}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    flops = 6.0 * n_params * tokens
    return flops / (CARDS[card].peak(precision) * 1e12 * mfu) / 3600.0
