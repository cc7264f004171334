"""GPU-hour estimates: the one estimator behind ``xlrepro plan``, ``reproduce --dry-run`` and the
sweep's dry run. GPU-hours = 6 * N * tokens / (peak FLOP/s * MFU) / 3600.

* N: the encoder's parameter count (``param_count``), computed by its family
  (``xlrepro.models``) from its config: ``model.init_config`` over the family's defaults, the
  model's ``config.json`` (a local folder, or the Hugging Face cache of a Hub id), or the
  published config of a Hub id the family knows; embeddings + layers, no pooler. Task heads
  (at most hidden^2 + hidden x labels each) are left out.
* tokens (``phase_tokens``): training tokens of a phase, counted as every sequence at its
  maximum length (an upper bound: real sequences are shorter unless packed): the phase's optimiser
  steps (``max_steps``, or ``epochs`` over the examples as ``train.total_steps`` counts them; the
  examples are the volume, or the task's English training size from its registry entry) x batch
  x accumulation x the longest example, which is the task's own ``max_seq_length`` (or the
  phase's) times its number of choices for a multiple-choice task. Evaluation passes,
  early-stopping evaluations and retrieval embedding (forward only) are not counted; neither are
  the extra doc-stride windows of QA, nor an early stop.
* peak: the card's dense datasheet throughput (no sparsity) in the precision the run trains in
  (``train_precision``): bf16/fp16 tensor cores for a DeepSpeed config with ``bf16``/``fp16``
  enabled, plain FP32 otherwise. FP32 means CUDA cores, not TF32 tensor cores: xlrepro leaves
  torch's ``allow_tf32`` off, so fp32 matmuls stay fp32 (as in the paper's fp32 training); at
  fp32 a run costs about 15x (H100) or 16x (A100) the GPU-hours of the same run in bf16.
* MFU: ``MFU`` below unless given (an assumption, not a measurement; see its comment).

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
    "h100": Card(
        "NVIDIA H100 SXM5 80GB",
        _HOPPER,
        "NVIDIA H100 Tensor Core GPU datasheet (SXM5): FP32 67 TFLOPS; TF32 / BF16 / FP16 Tensor Core "
        "989 / 1,979 / 1,979 TFLOPS with sparsity, half that dense",
    ),
    "h200": Card(
        "NVIDIA H200 SXM 141GB",
        _HOPPER,
        "NVIDIA H200 Tensor Core GPU datasheet (SXM): FP32 67 TFLOPS; TF32 / BF16 / FP16 Tensor Core "
        "989 / 1,979 / 1,979 TFLOPS with sparsity, half that dense",
    ),
    "a100": Card(
        "NVIDIA A100 SXM4 80GB",
        {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
        "NVIDIA A100 Tensor Core GPU datasheet (SXM): FP32 19.5 TFLOPS; TF32 / BF16 / FP16 Tensor Core "
        "156 / 312 / 312 TFLOPS dense",
    ),
}
# Model-FLOP utilisation assumed for every estimate (``--mfu`` overrides it). Not measured by
# xlrepro: an assumption below the 46.2% MFU that Chowdhery et al. 2022 (PaLM, Table 3) report for
# large-scale pre-training, because encoder fine-tuning at 128-512 tokens with batches of a few
# sequences per GPU runs far smaller matrix products, and the evaluations it does between steps
# are not counted as useful FLOPs.
MFU = 0.25
DEFAULT_MFU = MFU


def param_count(model_cfg, vocab_size: int | None = None) -> float:
    """The encoder's parameters (``xlrepro.models.param_count``); ``KeyError`` when its config is
    unknown without the network (a Hub id neither cached nor published in its family)."""
    from xlrepro.models import param_count as count

    return float(count(model_cfg, vocab_size)[0])


def _n_train(cfg, task: str, volume, examples: dict | None = None) -> int:
    """English training examples of ``task`` at ``volume``: ``examples[task]`` when given, else the
    registry's ``train_size`` of its training source (the smoke world's ``n_train``)."""
    from xlrepro.errors import ConfigError
    from xlrepro.tasks import get_task
    from xlrepro.tasks.registry import train_size

    source = get_task(task).train_source or task
    if examples and (task in examples or source in examples):
        n = int(examples[task] if task in examples else examples[source])
    else:
        try:  # the registry's train_size (xlrepro/tasks/<task>.yaml), or the smoke world's n_train
            n = train_size(source, cfg)[0]
        except ConfigError as e:
            raise ConfigError(
                f"the English training size of {task!r} is unknown ({e}); "
                f"`xlrepro plan` takes it as --examples {task}=N"
            ) from None
    return n if volume in (None, "all") else min(int(volume), n)


def phase_tokens(cfg, train, tasks: list[str], examples: dict | None = None, volume_scope: str = "per_task") -> dict:
    """Training tokens (upper bound, module docstring) of one phase training ``tasks`` together
    with ``train``: ``{"steps", "global_batch", "max_seq_length", "per_example", "tokens"}``.
    ``volume_scope="total"``: an integer volume is the phase's total, not each task's."""
    from xlrepro.tasks import get_task
    from xlrepro.train import total_steps

    if volume_scope == "total" and train.volume not in (None, "all"):
        from xlrepro.sampling import split_volume

        avail = {t: _n_train(cfg, t, "all", examples) for t in tasks}
        split = split_volume(max(len(tasks), min(int(train.volume), sum(avail.values()))), avail)
        sizes = [_n_train(cfg, t, split[t], examples) for t in tasks]
    else:
        sizes = [_n_train(cfg, t, train.volume, examples) for t in tasks]
    per_example, length = 0, 0
    for t in tasks:
        spec = get_task(t)
        src = get_task(spec.train_source) if spec.train_source else spec
        seq = train.max_seq_length or spec.max_seq_length
        choices = src.num_choices or spec.num_choices or 1
        length = max(length, seq)
        per_example = max(per_example, seq * choices)
    steps = total_steps(train, sizes)
    global_batch = train.batch_size * train.grad_accum
    return {
        "steps": steps,
        "global_batch": global_batch,
        "max_seq_length": length,
        "per_example": per_example,
        "tokens": float(steps * global_batch * per_example),
    }


def run_tokens(cfg, kind: str, task: str) -> float:
    if kind == "pretrain":
        p = cfg.pretrain
        return float(p.steps * p.batch_size * p.max_seq_length)
    if kind == "intermediate":
        inter = cfg.intermediate
        return phase_tokens(cfg, inter.train, inter.tasks, volume_scope=inter.volume_scope)["tokens"]
    if kind in ("target", "control"):
        from xlrepro.config import train_config_for

        return phase_tokens(cfg, train_config_for(cfg, task), [task])["tokens"]
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


def gpu_hours(n_params: float, tokens: float, card: str = "h100", mfu: float = MFU, precision: str = "bf16") -> float:
    """6 x ``n_params`` x ``tokens`` FLOPs at ``mfu`` of ``card``'s dense peak in ``precision``, in hours."""
    if card not in CARDS:
        raise KeyError(f"unknown card {card!r}; known: {sorted(CARDS)}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    flops = 6.0 * n_params * tokens
    return flops / (CARDS[card].peak(precision) * 1e12 * mfu) / 3600.0
