"""``xlrepro plan <config>``: what a run needs, so a reviewer can pick the hardware.

Per-GPU memory of the model states (parameters, gradients, Adam states) under each ZeRO stage,
from DeepSpeed's own estimators (``estimate_zero2_model_states_mem_needs_all_cold`` and the
ZeRO-3 one: they work from parameter counts, no model is built), and expected GPU-hours:

    FLOPs = 6 x parameters x training tokens;  GPU-hours = FLOPs / (card peak x MFU) / 3600

per phase, with the card's dense peak in the precision the phase trains in (``estimate.train_precision``:
bf16/fp16 from its DeepSpeed config, fp32 on CUDA cores otherwise; ``estimate.CARDS`` has the
datasheet numbers). Parameters, tokens and GPU-hours come from ``xlrepro.estimate``, the one
estimator the sweep's dry run uses too (its ``MFU`` unless ``--mfu`` is given).

Training tokens are an upper bound: every phase runs to its ``max_steps`` or ``epochs`` (no
early stop) and every example is counted at its task's ``max_seq_length`` (or the phase's;
padding included; a multiple-choice example counts once per choice). Activation memory is not
included (it depends on batch and sequence length; DeepSpeed's estimators leave it out too).
"""

from __future__ import annotations

from xlrepro.config import ExperimentConfig, train_config_for
from xlrepro.errors import ConfigError
from xlrepro.estimate import CARDS, MFU, gpu_hours, phase_tokens as _phase_tokens, train_precision


def encoder_params(cfg: ExperimentConfig) -> tuple[int, int]:
    """(parameters, largest tensor's parameters) of the configured encoder, from its config
    (``xlrepro.models.param_count``); a ``ConfigError`` when the config is unknown."""
    from xlrepro.models import param_count

    try:
        return param_count(cfg.model, cfg.smoke.vocab_size if cfg.smoke else None)
    except KeyError as e:
        raise ConfigError(f"model.name_or_path: {e.args[0]}") from None


def phase_tokens(cfg: ExperimentConfig, examples: dict[str, int] | None = None) -> list[dict]:
    """Training tokens (upper bound, ``estimate.phase_tokens``) of every training phase."""
    phases = []

    def one(name, tasks, tc, scope="per_task"):
        ph = _phase_tokens(cfg, tc, tasks, examples, scope)
        phases.append(
            {
                "phase": name,
                "steps": ph["steps"],
                "global_batch": ph["global_batch"],
                "max_seq_length": ph["max_seq_length"],
                "tokens": ph["tokens"],
                "engine": tc.engine,
                "deepspeed": tc.deepspeed,
                "precision": train_precision(tc),
            }
        )

    if cfg.pretrain is not None and cfg.pretrain.steps:
        p = cfg.pretrain
        phases.append(
            {
                "phase": "pretrain:mlm",
                "steps": p.steps,
                "global_batch": p.batch_size,
                "max_seq_length": p.max_seq_length,
                "tokens": float(p.steps * p.batch_size * p.max_seq_length),
                "engine": p.engine,
                "deepspeed": p.deepspeed,
                "precision": train_precision(p),
            }
        )
    if cfg.intermediate.tasks:
        one(
            "intermediate:" + "+".join(cfg.intermediate.tasks),
            cfg.intermediate.tasks,
            cfg.intermediate.train,
            cfg.intermediate.volume_scope,
        )
    for t in cfg.target.tasks:
        one(f"target:{t}", [t], train_config_for(cfg, t))
    return phases


def plan(
    cfg: ExperimentConfig,
    gpus_per_node: int = 8,
    nodes: int = 1,
    card: str = "h100",
    mfu: float = MFU,
    examples: dict[str, int] | None = None,
) -> dict:
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    if card not in CARDS:
        raise ConfigError(f"--card {card!r}: one of {sorted(CARDS)}")
    total, largest = encoder_params(cfg)
    gib = 2**30
    memory = []
    for stage in (0, 1, 2, 3):
        for offload in ("none", "optimizer", "optimizer+params"):
            if offload == "optimizer+params" and stage < 3 or offload != "none" and stage < 2:
                continue
            if stage == 2:
                cpu, gpu = estimate_zero2_model_states_mem_needs(
                    total, gpus_per_node, nodes, cpu_offload=offload != "none"
                )
            elif stage == 3:
                cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
                    total,
                    largest,
                    gpus_per_node,
                    nodes,
                    cpu_offload=offload != "none",
                    cpu_offload_params=offload == "optimizer+params",
                )
            else:
                # DeepSpeed has no estimator for ZeRO-0/1: the same bytes per parameter as its ZeRO-2 one
                # (2 16-bit params + 2 16-bit grads + 16 fp32 grads/params/Adam), with only the last
                # 16 partitioned (ZeRO-1) or nothing (ZeRO-0); CPU: none needed
                shard = gpus_per_node * nodes if stage == 1 else 1
                gpu, cpu = 4 * total + 16 * total / shard, 0
            memory.append(
                {
                    "zero_stage": stage,
                    "offload": offload,
                    "gpu_gib": round(gpu / gib, 2),
                    "cpu_gib_per_node": round(cpu / gib, 2),
                }
            )
    phases = phase_tokens(cfg, examples)
    for ph in phases:
        ph["peak_tflops"] = CARDS[card].peak(ph["precision"])
        ph["gpu_hours"] = gpu_hours(total, ph["tokens"], card, mfu, ph["precision"])
    tokens = sum(p["tokens"] for p in phases)
    flops = 6 * total * tokens
    hours = sum(p["gpu_hours"] for p in phases)
    return {
        "config": cfg.name,
        "parameters": total,
        "largest_layer_parameters": largest,
        "family": cfg.model.family,
        "gpus_per_node": gpus_per_node,
        "nodes": nodes,
        "memory": memory,
        "phases": phases,
        "training_tokens_upper_bound": tokens,
        "flops": flops,
        "card": card,
        "card_peak_tflops": {p["precision"]: p["peak_tflops"] for p in phases},
        "card_source": CARDS[card].source,
        "mfu": mfu,
        "gpu_hours": round(hours, 1),
        "seeds_note": "per seed; multiply by the seeds you run",
    }


def render(p: dict) -> str:
    lines = [
        f"{p['config']}: {p['parameters'] / 1e6:.0f}M parameters "
        f"(largest layer {p['largest_layer_parameters'] / 1e6:.0f}M), "
        f"{p['nodes']} node(s) x {p['gpus_per_node']} GPUs",
        "",
        "model states per GPU (DeepSpeed estimators; activations not included)",
        f"  {'ZeRO':<5} {'offload':<17} {'GPU GiB':>8} {'CPU GiB/node':>13}",
    ]
    for m in p["memory"]:
        lines.append(f"  {m['zero_stage']:<5} {m['offload']:<17} {m['gpu_gib']:>8.2f} {m['cpu_gib_per_node']:>13.2f}")
    lines += ["", "training phases (tokens: upper bound, no early stop, padded to max_seq_length)"]
    for ph in p["phases"]:
        lines.append(
            f"  {ph['phase']:<28} {ph['steps']:>8} steps x {ph['global_batch']:>3} x {ph['max_seq_length']:>4} "
            f"= {ph['tokens'] / 1e6:>9.1f}M tokens  {ph['precision']:>4}  {ph['gpu_hours']:>8.1f} GPU-h"
        )
    peaks = ", ".join(f"{k} {v:g}" for k, v in sorted(p["card_peak_tflops"].items()))
    lines += [
        "",
        f"GPU-hours (one seed) = sum over phases of 6 x {p['parameters'] / 1e6:.0f}M params x tokens / "
        f"({p['card']} dense peak in the phase's precision [{peaks} TFLOP/s] x MFU {p['mfu']}) = {p['gpu_hours']}",
        "  fp32 = CUDA cores (TF32 off, as the paper's fp32 training); a bf16 config (e.g. *.train.deepspeed="
        "zero2-bf16) costs about 1/15 of it on Hopper",
    ]
    return "\n".join(lines)


def graph_listing(cfg: ExperimentConfig, out, card: str = "h100", mfu: float | None = None) -> str:
    """``xlrepro reproduce <config> --dry-run``: every run of the config's graph (``xlrepro.phases.graph``:
    chain stages, SQuAD and dual encoders included), its state, training tokens and GPU-hours
    (``xlrepro.estimate``). Trains nothing; a smoke config's world is generated (its corpus keys
    the pre-training run)."""
    from xlrepro.estimate import DEFAULT_MFU, gpu_hours, param_count
    from xlrepro.phases import Context
    from xlrepro.phases.graph import build_graph

    mfu = DEFAULT_MFU if mfu is None else mfu
    if card not in CARDS:
        raise ConfigError(f"--card {card!r}: one of {sorted(CARDS)}")
    ctx = Context(cfg, out)
    if cfg.smoke is not None:
        ctx.prepare()
    graph = build_graph(ctx)
    n = param_count(cfg.model, cfg.smoke.vocab_size if cfg.smoke else None)
    lines = [
        f"{cfg.name}: {len(graph)} runs -> {ctx.out}",
        "",
        f"{'state':<10} {'kind':<13} {'task':<18} {'starts from':<34} {'run folder':<44} {'tokens':>10} {'prec':>5} "
        f"{'GPU-h':>8}",
    ]
    total = remaining = 0.0
    for node in graph:
        up = graph.upstream(node)
        tokens, prec = node.tokens(cfg), node.precision(cfg)
        h = gpu_hours(n, tokens, card, mfu, prec)
        state = node.state(ctx.out)
        total += h
        remaining += h if state != "done" else 0.0
        lines.append(
            f"{state:<10} {node.kind:<13} {node.task:<18} {up.run_dir[5:] if up else 'base model':<34} "
            f"{node.run_dir:<44} {tokens:>10.3g} {prec:>5} {h:>8.2f}"
        )
    lines += [
        "",
        f"estimated GPU-hours: {total:.2f} in all, {remaining:.2f} still to run (6 x {n / 1e6:.0f}M params x "
        f"training tokens / ({CARDS[card].name} dense peak x MFU {mfu:g}); tokens at maximum sequence length, "
        "evaluation not counted)",
    ]
    return "\n".join(lines)
