"""The DeepSpeed engine: ZeRO stage 0-3, optimizer/parameter offload, bf16 (and fp16 on a GPU).

It implements the training loop's engine interface (``xlrepro.train``) on top of
``deepspeed.initialize``. One source of truth: the optimiser (AdamW, decoupled weight decay, none
on biases and LayerNorm) and the linear warm-up/decay schedule are built from ``TrainConfig``
exactly as ``TorchEngine`` builds them and handed to DeepSpeed as client objects; the DeepSpeed
JSON config (``xlrepro/configs/deepspeed/<name>.json`` or a path, ``train.deepspeed``) says how to
shard, offload and cast. Its batch, accumulation and clipping keys are filled from ``TrainConfig``
where they are ``"auto"`` or absent; a value that disagrees is rejected (``resolve_ds_config``).

Data parallelism keeps the global batch of the config: an optimiser step is ``grad_accum``
micro-batches of ``batch_size`` examples whatever the world size; rank ``r`` of ``W`` runs
micro-batches ``r, r+W, ...`` of each step (so ``grad_accum`` must be a multiple of ``W``), and
DeepSpeed's ``gradient_accumulation_steps`` is ``grad_accum / W``. DeepSpeed divides each
micro-batch loss by that and averages gradients over ranks: every micro-batch weighs
``1 / grad_accum``, as in ``TorchEngine`` (micro-batches of a token budget vary in size; each is
still the mean over its own examples, so ``train_micro_batch_size_per_gpu`` is nominal).

Checkpoints go through ``save_checkpoint``/``load_checkpoint`` into ``<run>/ds_checkpoint/<tag>/``
(model, optimizer and scheduler states, ZeRO partitions per rank, each rank's RNG states); rank 0
then points ``ds_checkpoint/latest.json`` at the new tag (atomic rename) and removes older tags,
so a run killed at any moment resumes from a complete checkpoint. ``finish`` gathers the fp32
master weights (ZeRO-3: from every rank's partition), tears the engine down and leaves a plain
fp32 module, so evaluation and the encoder hand-off (safetensors) work as after ``TorchEngine``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import time
from pathlib import Path

import torch

# deepspeed is imported where an engine is built: it is optional and slow to import
from xlrepro import distributed as dist
from xlrepro.config import TrainConfig, resolve_deepspeed_config
from xlrepro.errors import ConfigError, DataFormatError
from xlrepro.extensions_dir import use_private_copy
from xlrepro.optim import atomic_torch_save, linear_schedule, param_groups, safe_load
from xlrepro.runs import atomic_write_json

# DeepSpeed keys that TrainConfig determines (see module docstring)
_DERIVED = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping")


def _fp16_needs_gpu(where: str) -> ConfigError:
    return ConfigError(
        f"{where}: fp16 needs a GPU (DeepSpeed's fp16 mixed precision and loss scaling run on CUDA "
        f"devices only); no GPU is visible here. Use a bf16 config (e.g. 'zero2-bf16') or fp32 on CPU"
    )


def resolve_ds_config(cfg: TrainConfig, world: int, cuda: bool | None = None) -> dict:
    """The DeepSpeed config of ``cfg.deepspeed`` with the keys ``TrainConfig`` determines filled in.

    Raises ``ConfigError`` naming the file and key when the file sets an optimizer or scheduler
    (xlrepro builds them from ``train.lr`` etc.), when a batch/accumulation/clipping value
    conflicts with ``TrainConfig``, when ``grad_accum`` is not a multiple of the world size, and
    when fp16 is asked for without a GPU.
    """
    if cfg.deepspeed is None:
        raise ConfigError(
            "train.engine is 'deepspeed' but train.deepspeed is not set: name a shipped DeepSpeed "
            "config (xlrepro/configs/deepspeed/) or a JSON file"
        )
    path = resolve_deepspeed_config(cfg.deepspeed)
    try:
        ds = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(ds, dict):
        raise ConfigError(f"{path}: expected a JSON object at top level")
    for key, fields in (
        ("optimizer", "train.lr, train.adam_eps, train.weight_decay"),
        ("scheduler", "train.warmup_proportion and the step count"),
    ):
        if key in ds:
            raise ConfigError(
                f"{path}: {key!r}: xlrepro builds the {key} from {fields} (one source of truth); "
                f"remove the {key!r} section"
            )
    if cfg.grad_accum % world:
        raise ConfigError(
            f"train.grad_accum = {cfg.grad_accum} is not a multiple of the world size {world}: each "
            f"optimiser step's {cfg.grad_accum} micro-batches are shared out among the ranks (global "
            f"batch = batch_size x grad_accum); set grad_accum to a multiple of {world}"
        )
    expected = {
        "train_batch_size": cfg.batch_size * cfg.grad_accum,
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum // world,
        "gradient_clipping": cfg.max_grad_norm,
    }
    source = {
        "train_batch_size": f"train.batch_size x train.grad_accum = {cfg.batch_size} x {cfg.grad_accum}",
        "train_micro_batch_size_per_gpu": f"train.batch_size = {cfg.batch_size}",
        "gradient_accumulation_steps": f"train.grad_accum / world size = {cfg.grad_accum} / {world}",
        "gradient_clipping": f"train.max_grad_norm = {cfg.max_grad_norm}",
    }
    for key in _DERIVED:
        value = ds.get(key, "auto")
        if value == "auto":
            ds[key] = expected[key]
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or float(value) != float(expected[key]):
            raise ConfigError(
                f"{path}: {key} = {value!r} conflicts with {source[key]} (expected {expected[key]}); "
                f'set it to "auto" or make the two agree'
            )
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if ds.get("fp16", {}).get("enabled") in (True, "auto") and not cuda:
        raise _fp16_needs_gpu(str(path))
    if ds.get("fp16", {}).get("enabled") is True and ds.get("bf16", {}).get("enabled") is True:
        raise ConfigError(f"{path}: fp16 and bf16 are both enabled; enable one")
    ds.setdefault("steps_per_print", 2**31 - 1)  # xlrepro logs every step itself
    ds.setdefault("wall_clock_breakdown", False)
    return ds


def _zero_stage(ds: dict) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))


def _offloads_optimizer(ds: dict) -> bool:
    return ds.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none") not in ("none", None)


class DeepSpeedEngine:
    name = "deepspeed"

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
        ensure_ops_dir()
        import deepspeed

        if not os.environ.get("XLREPRO_DS_VERBOSE"):
            logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        dist.ensure_initialized()
        self.world, self.rank = dist.world_size(), dist.rank()
        self.cfg = cfg
        self.model = model
        self.ds_config = resolve_ds_config(cfg, self.world)
        self.stage = _zero_stage(self.ds_config)
        heads = getattr(model, "heads", None)
        if isinstance(heads, torch.nn.ModuleDict) and len(heads) > 1:
            setattr(model, "lockstep_heads", True)  # multi-task / MLM mixing: the same modules on every rank
        groups = param_groups(model, cfg.weight_decay)
        if _offloads_optimizer(self.ds_config):
            # ZeRO-Offload steps on the CPU: DeepSpeed's vectorised CPU Adam (the cpu_adam op)
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            optimizer = DeepSpeedCPUAdam(groups, lr=cfg.lr, eps=cfg.adam_eps, adamw_mode=True)
        else:  # torch's AdamW, as TorchEngine: no DeepSpeed op to compile
            optimizer = torch.optim.AdamW(groups, lr=cfg.lr, eps=cfg.adam_eps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(cfg.warmup_proportion, total_steps))
        self.scheduler = scheduler
        self.ds, _, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=self.ds_config, dist_init_required=False
        )
        # DeepSpeed 0.19.8 loads every checkpoint file through its checkpoint engine, whose
        # TorchCheckpointEngine.load calls torch.load(weights_only=False) with no way to change it:
        # replace it by one that loads with weights_only=True (safe_checkpoint_engine).
        self.ds.checkpoint_engine = safe_checkpoint_engine(self.ds.checkpoint_engine)
        self.forward_module = self.ds
        self._steps_before = 0

    # ------------------------------------------------------------------ the loop's interface
    def backward(self, loss: torch.Tensor) -> None:
        """``loss``: the mean over one micro-batch (DeepSpeed scales it by the accumulation)."""
        self.ds.backward(loss)
        if not self.ds.is_gradient_accumulation_boundary():
            self.ds.step()  # DeepSpeed counts micro-batches in step(); no update before the boundary

    def step(self) -> float | None:
        """The optimiser update at the accumulation boundary; the gradient norm before clipping
        (None where DeepSpeed computed none: ZeRO-1/2 with its norm computation switched off)."""
        if not self.ds.is_gradient_accumulation_boundary():
            raise RuntimeError(
                f"{dist.describe()}: optimiser step requested off the accumulation boundary "
                f"(DeepSpeed micro-step {self.ds.micro_steps}, gradient_accumulation_steps "
                f"{self.ds.gradient_accumulation_steps()})"
            )
        norm: float | None = None
        if self.stage == 0 and not (self.ds.bfloat16_enabled() or self.ds.fp16_enabled()):
            # plain data parallelism records no norm: the gradients are already averaged here
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        self.ds.step()
        if norm is None:
            ds_norm = self.ds.get_global_grad_norm()
            norm = float(ds_norm) if ds_norm is not None else None
        return norm

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def state_dict(self) -> dict:
        raise NotImplementedError("the DeepSpeed engine's state lives in its checkpoints: use save_checkpoint")

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError("the DeepSpeed engine's state lives in its checkpoints: use load_checkpoint")

    # ------------------------------------------------------------------ checkpoints
    @staticmethod
    def checkpoint_dir(run_dir: Path) -> Path:
        return Path(run_dir) / "ds_checkpoint"

    def has_checkpoint(self, run_dir: Path) -> bool:
        return (self.checkpoint_dir(run_dir) / "latest.json").exists()

    def save_checkpoint(self, run_dir: Path, client_state: dict, rng: dict) -> None:
        root = self.checkpoint_dir(run_dir)
        tag = f"step{client_state['step']}"
        self.ds.save_checkpoint(str(root), tag=tag, client_state={"loop": client_state}, save_latest=False)
        atomic_torch_save(rng, root / tag / f"rng-rank{self.rank}.pt")
        dist.barrier()  # every rank's files are complete before the pointer moves
        if dist.is_main():
            atomic_write_json(root / "latest.json", {"tag": tag, "world_size": self.world, "zero_stage": self.stage})
            for old in root.iterdir():
                if old.is_dir() and old.name != tag:
                    shutil.rmtree(old, ignore_errors=True)
        dist.barrier()

    def load_checkpoint(self, run_dir: Path) -> tuple[dict, dict] | None:
        """(loop state, this rank's RNG states) of the latest checkpoint, or None."""
        root = self.checkpoint_dir(run_dir)
        if not self.has_checkpoint(run_dir):
            return None
        latest = json.loads((root / "latest.json").read_text())
        if latest["world_size"] != self.world:
            raise RuntimeError(
                f"{root / 'latest.json'}: the checkpoint was written by {latest['world_size']} ranks; "
                f"this run has {self.world}: resume with the same world size"
            )
        self.ds.checkpoint_engine = safe_checkpoint_engine(self.ds.checkpoint_engine)
        path, client = self.ds.load_checkpoint(
            str(root), tag=latest["tag"], load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if path is None:
            raise RuntimeError(f"{root / latest['tag']}: DeepSpeed could not load this checkpoint")
        rng = safe_load(root / latest["tag"] / f"rng-rank{self.rank}.pt", "RNG state")
        return client["loop"], rng

    def remove_checkpoint(self, run_dir: Path) -> None:
        dist.barrier()
        if dist.is_main():
            shutil.rmtree(self.checkpoint_dir(run_dir), ignore_errors=True)

    # ------------------------------------------------------------------ weights
    def full_state_dict(self) -> dict:
        """The model's full state with the fp32 master weights (collective under ZeRO-3: every rank calls it)."""
        from deepspeed.utils import safe_get_full_fp32_param

        names: dict[int, list[str]] = {}
        for n, p in self.model.named_parameters(remove_duplicate=False):
            names.setdefault(id(p), []).append(n)
        out = {}
        for _, p in self.model.named_parameters():
            full = safe_get_full_fp32_param(p)
            full = (p.detach() if full is None else full).float().cpu().clone()
            for alias in names[id(p)]:
                out[alias] = full
        params = {a for v in names.values() for a in v}
        for k, v in self.model.state_dict().items():
            if k not in params:
                out[k] = v.detach().cpu().clone()
        return out

    def finish(self, state: dict | None = None) -> None:
        """Tear the engine down and leave a plain fp32 module holding ``state`` (default: the
        final weights): ZeRO-3 partitions gathered, DeepSpeed's hooks removed."""
        full = self.full_state_dict() if state is None else state
        self.ds.destroy()
        self.ds = self.forward_module = None
        for n, p in self.model.named_parameters():
            p.data = full[n].to(p.device if p.device.type != "meta" else "cpu", torch.float32).clone()
            for attr in [a for a in vars(p) if a.startswith("ds_") or a in ("_z3_optimizer", "_hp_mapping")]:
                delattr(p, attr)
            p.grad = None
        self.model.float()
        self.model.load_state_dict(full)
        if getattr(self.model, "lockstep_heads", False):
            setattr(self.model, "lockstep_heads", False)
        dist.barrier()


def _deepspeed_safe_globals() -> list:
    """The non-tensor classes DeepSpeed's own checkpoints hold (ZeRO stage enum, loss scaler state,
    parameter fragment addresses): constructed from data, they run no code when loaded."""
    out = []
    for mod, names in (
        ("deepspeed.runtime.zero.config", ("ZeroStageEnum",)),
        ("deepspeed.runtime.fp16.loss_scaler", ("LossScaler", "DynamicLossScaler")),
        ("deepspeed.utils.tensor_fragment", ("fragment_address",)),
        ("deepspeed.runtime.zero.offload_config", ("OffloadDeviceEnum",)),
    ):
        try:
            m = __import__(mod, fromlist=list(names))
        except ImportError:
            continue
        out += [getattr(m, n) for n in names if hasattr(m, n)]
    return out


def safe_checkpoint_engine(engine):
    """``engine`` with ``load`` replaced by ``torch.load(weights_only=True)`` (DeepSpeed's own state
    classes allowed, ``_deepspeed_safe_globals``); a file holding anything else is refused with an
    error naming it (xlrepro.train.safe_load). Saving is unchanged."""
    if getattr(engine, "_xlrepro_safe", False):
        return engine

    def load(path, map_location=None):
        try:
            with torch.serialization.safe_globals(_deepspeed_safe_globals()):
                return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            reason = str(e).split("\n")[0][:300]
            raise DataFormatError(
                path,
                "refused to load this DeepSpeed checkpoint file: it holds more than tensors "
                f"and plain values (loaded with weights_only=True; {reason}). Remove the "
                "run's ds_checkpoint/ if you did not write it",
            ) from None

    engine.load = load
    engine._xlrepro_safe = True
    return engine


# x86 instruction-set flags of /proc/cpuinfo that -march=native can turn into instructions
_ISA_FLAG = re.compile(
    r"^(mmx|sse|ssse|avx|fma|f16c|bmi|amx|adx|aes|sha|vaes|vpclmul|pclmul|gfni|movbe|popcnt|"
    r"lzcnt|abm|rdrand|rdseed|xsave|clflushopt|clwb|prefetchw|serialize|movdir|cx16)"
)


def cpu_isa_flags(cpuinfo: str | None = None) -> list[str]:
    """The instruction-set flags of this CPU (first ``flags`` line of /proc/cpuinfo), sorted."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return sorted({f for f in line.split(":", 1)[1].split() if _ISA_FLAG.match(f)})
    return []


def ensure_ops_dir(image_info: str | None = None, cpuinfo: str | None = None) -> str | None:
    """Keep DeepSpeed from loading ops compiled for another CPU.

    DeepSpeed compiles its C++ ops with ``-march=native``. The image compiles them at build time
    into ``$TORCH_EXTENSIONS_DIR`` and records the build CPU's instruction-set flags in its build
    record (``$XLREPRO_IMAGE_INFO``, key ``deepspeed.build_cpu_flags``). When this CPU lacks one of
    them, the prebuilt ops could stop the run with an illegal instruction, so ``TORCH_EXTENSIONS_DIR``
    is pointed at a cache of this CPU's own (compiled on first use, then reused). Returns the new
    folder, or None when nothing changed (no record, or a compatible CPU)."""
    path = image_info or os.environ.get("XLREPRO_IMAGE_INFO")
    if not path:
        return None
    try:
        rec = json.loads(Path(path).read_text()).get("deepspeed") or {}
    except (OSError, ValueError):
        return None
    built = set(rec.get("build_cpu_flags") or [])
    here = cpu_isa_flags(cpuinfo)
    missing = sorted(built - set(here)) if here else []
    if not built or not missing or os.environ.get("TORCH_EXTENSIONS_DIR") != rec.get("ops_dir"):
        if built and not missing and os.environ.get("TORCH_EXTENSIONS_DIR") == rec.get("ops_dir"):
            return use_private_copy(rec["ops_dir"])  # the image's folder is read-only
        return None  # nothing recorded, same CPU features, or the user chose another folder already
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path(os.environ.get("HOME") or "/tmp") / ".cache")
    folder = cache / f"xlrepro-torch-extensions-{hashlib.sha256(' '.join(here).encode()).hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCH_EXTENSIONS_DIR"] = str(folder)
    logging.getLogger("xlrepro").warning(
        "the image's DeepSpeed ops were compiled on a CPU with %s, which this CPU lacks; they are compiled "
        "for this CPU into %s instead (a few minutes, once)",
        ", ".join(missing),
        folder,
    )
    return str(folder)


def prebuild_ops(names: tuple[str, ...] = ("ShareMemCommBuilder", "CPUAdamBuilder")) -> dict[str, float]:
    """Compile DeepSpeed's CPU ops now (into $TORCH_EXTENSIONS_DIR, where DeepSpeed's JIT loader
    finds them later): the shared-memory communication op every process group loads and the
    CPU Adam that optimizer offload steps with. Seconds per op (a cached op loads in well under one)."""
    ensure_ops_dir()
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != "cpu":
        # a GPU host: the engine's AdamW and NCCL need no DeepSpeed op, and DeepSpeed's CUDA op
        # builds need nvcc; an op a config does need (CPU Adam for offload) compiles on first use
        print(
            f"DeepSpeed accelerator {get_accelerator().device_name()}: no op prebuilt (none is needed without offload)"
        )
        return {}
    took = {}
    for name in names:
        builder = get_accelerator().create_op_builder(name)
        if builder is None:
            continue
        t0 = time.time()
        builder.load(verbose=False)
        took[name] = round(time.time() - t0, 1)
        print(
            f"DeepSpeed op {builder.NAME}: ready in {took[name]} s "
            f"(TORCH_EXTENSIONS_DIR={os.environ.get('TORCH_EXTENSIONS_DIR', 'default')})"
        )
    return took
