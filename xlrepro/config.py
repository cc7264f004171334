"""Typed experiment configs: dataclasses loaded from YAML, with dotted command-line overrides.

``load_config(path, overrides=["target.train.lr=2e-5", ...])`` returns an ``ExperimentConfig``.
Unknown keys are rejected with a did-you-mean, values are type-checked, and ``seed`` is required
(never random by default). ``to_dict`` gives the resolved config that every run saves.
Shipped configs live in ``xlrepro/configs/`` and are all validated by ``tests/test_config.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xlrepro import languages as langtab
from xlrepro.config_checks import dual_encoder_tasks, extra_problems, recipe_problems, train_config_for
from xlrepro.errors import ConfigError, did_you_mean
from xlrepro.tasks import all_tasks
from xlrepro.typed import from_dict, to_dict


@dataclass
class ModelConfig:
    """The encoder. ``name_or_path``: a Hub id (pinned by ``revision``) or a local directory."""

    name_or_path: str = "FacebookAI/xlm-roberta-large"
    revision: str | None = None
    # Build the encoder from this config (over the family's config defaults) instead of loading weights (smoke/tests).
    init_config: dict | None = None
    tokenizer: str | None = None  # default: name_or_path
    classifier_dropout: float = 0.1
    attention: str = "padded"  # "padded" | "packed" (varlen attention)
    # encoder family (xlrepro.models, docs/models.md): "xlmr" | "bert" | "auto" (config.json's model_type)
    family: str = "xlmr"


@dataclass
class TrainConfig:
    """One training phase. Defaults are jiant's XTREME recipe (nyu-mll/jiant
    jiant/scripts/benchmarks/xtreme/: subscripts/d_write_configs.sh, e_run_models.sh)."""

    lr: float = 1e-5
    batch_size: int = 4
    grad_accum: int = 8
    epochs: float = 3.0
    max_steps: int | None = None  # overrides epochs when set
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    max_seq_length: int | None = None  # default: the task's
    eval_every_steps: int = 1000
    eval_subset: int = 500  # English dev examples used for early stopping
    patience: int = 30  # evaluations without improvement before stopping
    eval_batch_size: int | None = None  # default: 2 x batch_size
    checkpoint_every_steps: int = 1000
    # also checkpoint when this many seconds have passed since the last checkpoint (null: by steps only)
    checkpoint_every_seconds: float | None = None
    engine: str = "torch"  # "torch" (one process) | "deepspeed" (ZeRO; one process or many under a launcher)
    # engine=deepspeed: a DeepSpeed JSON config, by name (xlrepro/configs/deepspeed/<name>.json) or path
    deepspeed: str | None = None
    volume: int | str = "all"  # training examples used: an integer or "all" (nested, prefix-stable subsets)
    # Token-budget batches instead of batch_size examples: each micro-batch holds at most this many
    # real tokens (first-fit decreasing inside shuffled windows of packing_window examples). The loss
    # is still the mean over each micro-batch's examples. Pairs with model.attention=packed.
    token_budget: int | None = None
    packing_window: int = 1000
    shuffle_labels: bool = False  # negative control: permute the training labels
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 30


@dataclass
class DataConfig:
    """Where task data comes from: a local folder of original files, or the Hub (pinned)."""

    root: str = "data"  # one subfolder per task, named like the task, in one of its layouts
    source: str = "local"  # "local" | "hub" (every task's default)
    sources: dict = field(default_factory=dict)  # task -> "local" | "hub" (e.g. data.sources={tydiqa: hub})
    task_dirs: dict = field(default_factory=dict)  # task -> folder (overrides root/<task>)
    layouts: dict = field(default_factory=dict)  # task -> layout name (default: first that exists)
    languages: list | None = None  # restrict evaluation to these languages (default: all of the task)
    allow_unpinned_hub: bool = False


@dataclass
class IntermediateConfig:
    """The intermediate phase: one English task, or several trained jointly (multi-task)."""

    tasks: list = field(default_factory=list)  # empty = no intermediate phase (the baseline)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampler: str = "proportional"  # multi-task: "proportional" | "temperature" | "uniform"
    temperature: float = 1.0  # for sampler=temperature: p_i ∝ n_i ** (1/T)
    volume_scope: str = "per_task"  # train.volume applies to each task, or to the "total" (split by size)
    mlm_mix: float = 0.0  # fraction of micro-batches that are multilingual MLM (continued-MLM ablation)
    mlm_corpus: str = ""  # folder of <lang>.txt plain-text files (smoke default: the world's corpus)
    translated: dict = field(default_factory=dict)  # task -> {language: folder of a translated copy}


@dataclass
class TargetConfig:
    tasks: list = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    per_task: dict = field(default_factory=dict)  # task -> {TrainConfig field: value}
    eval_splits: list = field(default_factory=lambda: ["dev", "test"])
    eval_batch_size: int = 32


@dataclass
class DualEncoderConfig:
    """Dual-encoder fine-tuning of LAReQA and Mewsli-X (``xlrepro.dual_encoder``): ``train`` plus
    ``per_task[task]`` overrides (TrainConfig fields). Query/candidate lengths come from the task's
    registry ``retrieval`` entry. ``token_budget`` batching is not supported (in-batch negatives)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    per_task: dict = field(default_factory=dict)  # lareqa / mewslix -> {TrainConfig field: value}
    logit_scale: float = 100.0  # initial value of the learnable logit scale (XTREME-R's BertForRetrieval)


@dataclass
class RetrievalConfig:
    """Retrieval evaluation: BUCC/Tatoeba from an encoder (no head), LAReQA/Mewsli-X via a dual encoder."""

    tasks: list = field(default_factory=list)
    layer: int = 14  # hidden_states[layer]; index 0 = embeddings
    pooling: str = "mean"  # "mean" (non-padding tokens, special tokens included) | "cls"
    similarity: str = "cosine"  # "cosine" | "dot"
    batch_size: int = 32
    max_seq_length: int = 512
    # Protocol of a task that is in several benchmarks: Tatoeba is read from the intermediate encoder in
    # XTREME, from a SQuAD v1.1 fine-tuned encoder in XTREME-R (the task registry's retrieval.encoder).
    benchmark: str = "xtreme"  # "xtreme" | "xtreme_r"
    # task -> encoder source, overriding the benchmark's: "intermediate" | "squad_mrc" (SQuAD span-QA
    # fine-tuning with target.train + target.per_task.squad, as XTREME-R's run_tatoeba.sh) |
    # "squad_dual_encoder" (the LAReQA dual encoder). Recorded with every number.
    encoder: dict = field(default_factory=dict)
    dual_encoder: DualEncoderConfig = field(default_factory=DualEncoderConfig)


# the values retrieval.encoder.<task> may take (see RetrievalConfig.encoder)
ENCODER_SOURCES = ("intermediate", "squad_mrc", "squad_dual_encoder")


@dataclass
class PretrainConfig:
    """Multilingual MLM pre-training: the smoke world's stand-in for XLM-R's pre-training."""

    corpus: str = ""  # folder of <lang>.txt files
    steps: int = 0
    batch_size: int = 32
    lr: float = 5e-4
    max_seq_length: int = 64
    mlm_probability: float = 0.15
    warmup_proportion: float = 0.06
    pack: bool = False  # pack sentences into max_seq_length sequences (RoBERTa FULL-SENTENCES) or one per row
    # resume granularity: checkpoint every N steps (null: by time only) and/or every S seconds
    checkpoint_every_steps: int | None = None
    checkpoint_every_seconds: float | None = 300.0
    engine: str = "torch"  # as train.engine
    deepspeed: str | None = None  # as train.deepspeed


@dataclass
class SmokeConfig:
    """The generated world of ``xlrepro reproduce smoke`` (see ``xlrepro/smoke``)."""

    languages: list = field(default_factory=lambda: ["en", "tr", "vi", "zh"])
    n_train: int = 2000
    n_dev: int = 200
    n_test: int = 300
    n_corpus: int = 8000
    code_switch: float = 0.5
    vocab_size: int = 700


@dataclass
class LoggingConfig:
    """Extra outputs of a run besides ``log.jsonl`` (none of them is part of any run's identity)."""

    tensorboard: bool = False  # TensorBoard event files in <run>/tensorboard/ (optional tensorboard package)


@dataclass
class ExportConfig:
    """``xlrepro export`` at the end of ``reproduce``/``train`` (``xlrepro.export``)."""

    at_end: bool = False  # export the fine-tuned target models as transformers models when the run ends
    dir: str = ""  # default: <out>/export


@dataclass
class ExperimentConfig:
    name: str
    seed: int
    # Seed of the smoke world and of MLM pre-training (default: ``seed``). A sweep over fine-tuning
    # seeds fixes it so that every seed shares one world and one pre-trained encoder.
    base_seed: int | None = None
    output_dir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig | None = None
    intermediate: IntermediateConfig = field(default_factory=IntermediateConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    smoke: SmokeConfig | None = None
    # For these tasks, re-run the target phase with shuffled training labels (negative control) and,
    # when there is an intermediate phase, from the pre-trained encoder without it (no-intermediate baseline).
    controls: list = field(default_factory=list)
    description: str = ""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    # what a finished run keeps: "handoff" (encoder hand-offs, chain heads, predictions, results) or
    # "all" (also each training run's full best state dict, best_model.pt); docs/runs.md.
    # export.at_end keeps the best models it exports (run_keep).
    keep: str = "handoff"

    def run_keep(self) -> str:
        """The keep policy the runs apply: ``keep``, or "all" when ``export.at_end`` needs the best models."""
        return "all" if self.export.at_end else self.keep


# ---------------------------------------------------------------------- (de)serialisation


def config_hash(obj) -> str:
    """sha256 of the canonical JSON of a config (dataclass or dict): the run's identity."""
    data = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def apply_override(data: dict, dotted: str) -> None:
    """Apply ``a.b.c=value`` to a nested dict (value parsed as YAML: numbers, lists, null...)."""
    if "=" not in dotted:
        raise ConfigError(f"override {dotted!r}: expected key.path=value")
    key, raw = dotted.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {dotted!r}: value is not valid YAML ({e})") from None
    parts = key.strip().split(".")
    node = data
    cls: Any = ExperimentConfig
    for p in parts[:-1]:
        if cls is not None:
            names = [f.name for f in dataclasses.fields(cls)]
            if p not in names:
                raise ConfigError(f"override {key}: unknown key {p!r}{did_you_mean(p, names)}")
            hint = typing.get_type_hints(cls)[p]
            args = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
            cls = hint if dataclasses.is_dataclass(hint) else (args[0] if args else None)
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    if cls is not None:
        names = [f.name for f in dataclasses.fields(cls)]
        if parts[-1] not in names:
            raise ConfigError(f"override {key}: unknown key {parts[-1]!r}{did_you_mean(parts[-1], names)}")
    node[parts[-1]] = value


def shipped_configs() -> dict[str, Path]:
    """Configs shipped with the package: name -> path (``xlrepro/configs/<name>.yaml``)."""
    root = importlib.resources.files("xlrepro").joinpath("configs")
    return {p.name[:-5]: Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml")}


def resolve_config_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    shipped = shipped_configs()
    if name_or_path in shipped:
        return shipped[name_or_path]
    if p.exists():
        return p
    raise ConfigError(
        f"no config {name_or_path!r}: not a file and not a shipped config"
        f"{did_you_mean(name_or_path, shipped)} (shipped: {sorted(shipped)})"
    )


def shipped_description(path: Path) -> str:
    """One line about a shipped config or experiment spec: its ``description:`` if it has one,
    else the first sentence of its opening comment."""
    text = Path(path).read_text(encoding="utf-8")
    m = re.search(r'^description:\s*"?(.*?)"?\s*$', text, re.M)
    if m and m.group(1):
        return m.group(1)
    head = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line.lstrip("#").strip()
        if not body or body.startswith(("xlrepro ", "nox ")):
            break
        head.append(body)
    first = " ".join(head)
    end = re.search(r"(?<!\bal)(?<!e\.g)(?<!i\.e)(?<!\bvs)\.(\s|$)", first)
    return first[: end.start() + 1] if end else first


def shipped_deepspeed_configs() -> dict[str, Path]:
    """DeepSpeed configs shipped with the package: name -> path (``xlrepro/configs/deepspeed/<name>.json``)."""
    root = importlib.resources.files("xlrepro").joinpath("configs", "deepspeed")
    return {p.name[:-5]: Path(str(p)) for p in root.iterdir() if p.name.endswith(".json")}


def resolve_deepspeed_config(name_or_path: str) -> Path:
    shipped = shipped_deepspeed_configs()
    if name_or_path in shipped:
        return shipped[name_or_path]
    p = Path(name_or_path)
    if p.is_file():
        return p
    raise ConfigError(
        f"no DeepSpeed config {name_or_path!r}: not a file and not a shipped one"
        f"{did_you_mean(name_or_path, shipped)} (shipped: {sorted(shipped)})"
    )


def load_config(name_or_path: str, overrides: list[str] | tuple = (), check: bool = True) -> ExperimentConfig:
    """The typed config of a shipped name or YAML file with ``key.path=value`` overrides. Every
    problem is raised at once (one ``ConfigError``); ``check=False`` raises only what stops the config
    from being built (syntax, unknown keys, types), leaving ``problems(cfg)`` to the caller (the
    preflight lists them together with the data's)."""
    path = resolve_config_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    found: list[str] = []
    for o in overrides:
        try:
            apply_override(data, o)
        except ConfigError as e:
            found.append(str(e))
    cfg = from_dict(ExperimentConfig, data, problems=found)
    if cfg is not None and check:
        found += problems(cfg)
    if found:
        lines = [f"{path}: {p}" for p in found]
        raise ConfigError("\n".join(lines), problems=lines)
    return cfg


def validate(cfg: ExperimentConfig, where: str = "config") -> None:
    """Raise one ``ConfigError`` listing every problem of ``problems(cfg)`` (one per line)."""
    found = problems(cfg)
    if found:
        raise ConfigError("\n".join(f"{where}: {p}" for p in found), problems=[f"{where}: {p}" for p in found])


SHUFFLABLE_FORMATS = ("classification", "multiple_choice", "tagging")  # formats whose training labels can be permuted


def problems(cfg: ExperimentConfig) -> list[str]:
    """Every problem of a typed config that needs no data, each as ``key: what is wrong (what is
    allowed)``: task names exist, per-task overrides name TrainConfig fields, enums, the ranges of
    every numeric field, languages, QA window lengths, the retrieval layer against the encoder's
    depth, and that the training engine's packages import. Empty when the config is valid. Used
    by ``validate`` and by preflight checks."""
    out: list[str] = []
    tasks = all_tasks()
    out += recipe_problems(tasks, [f.name for f in dataclasses.fields(TrainConfig)])
    for section, names in (
        ("intermediate.tasks", cfg.intermediate.tasks),
        ("target.tasks", cfg.target.tasks),
        ("retrieval.tasks", cfg.retrieval.tasks),
        ("controls", cfg.controls),
    ):
        for n in names:
            if n not in tasks:
                out.append(f"{section}: unknown task {n!r}{did_you_mean(n, tasks)}")
    for n in cfg.controls:
        if n not in cfg.target.tasks:
            out.append(f"controls: {n!r} is not one of target.tasks {cfg.target.tasks}")
        elif n in tasks and tasks[n].format.value not in SHUFFLABLE_FORMATS:
            out.append(
                f"controls: the shuffled-label control needs a classification, multiple-choice or "
                f"tagging task; {n!r} is {tasks[n].format.value}"
            )
    for section, names, tc in (
        ("intermediate", cfg.intermediate.tasks, cfg.intermediate.train),
        ("target", cfg.target.tasks, cfg.target.train),
    ):
        if tc.shuffle_labels:
            for n in names:
                if n in tasks and tasks[n].format.value not in SHUFFLABLE_FORMATS:
                    out.append(
                        f"{section}.train.shuffle_labels: labels can be shuffled for classification, "
                        f"multiple-choice or tagging tasks; {n!r} is {tasks[n].format.value}"
                    )
    train_fields = [f.name for f in dataclasses.fields(TrainConfig)]
    for t, over in cfg.target.per_task.items():
        if t not in tasks:
            out.append(f"target.per_task: unknown task {t!r}{did_you_mean(t, tasks)}")
        if not isinstance(over, (dict, type(None))):
            out.append(f"target.per_task.{t}: expected a mapping of TrainConfig fields, got {over!r}")
            continue
        for k in over or {}:
            if k not in train_fields:
                out.append(f"target.per_task.{t}.{k}: unknown key{did_you_mean(k, train_fields)}")
        from_dict(
            TrainConfig,
            {k: v for k, v in {**to_dict(cfg.target.train), **(over or {})}.items() if k in train_fields},
            f"target.per_task.{t}",
            problems=out,
        )
    for t in cfg.retrieval.tasks:
        if t in tasks and tasks[t].format.value != "retrieval":
            out.append(f"retrieval.tasks: {t!r} is a {tasks[t].format.value} task")
    for t in cfg.target.tasks:
        if t in tasks and tasks[t].format.value == "retrieval":
            out.append(f"target.tasks: {t!r} is a retrieval task; list it under retrieval.tasks")
    from xlrepro.models import AUTO, FAMILIES

    enums: dict[str, tuple[Any, tuple[str, ...]]] = {
        "model.attention": (cfg.model.attention, ("padded", "packed")),
        "model.family": (cfg.model.family, FAMILIES + (AUTO,)),
        "data.source": (cfg.data.source, ("local", "hub")),
        "retrieval.pooling": (cfg.retrieval.pooling, ("mean", "cls")),
        "retrieval.similarity": (cfg.retrieval.similarity, ("cosine", "dot")),
    }
    enums["retrieval.benchmark"] = (cfg.retrieval.benchmark, ("xtreme", "xtreme_r"))
    for t, src in (cfg.data.sources or {}).items():
        if t not in tasks:
            out.append(f"data.sources: unknown task {t!r}{did_you_mean(t, tasks)}")
            continue
        enums[f"data.sources.{t}"] = (src, ("local", "hub"))
    enums["keep"] = (cfg.keep, ("handoff", "all"))
    dual = dual_encoder_tasks(tasks)
    for t, src in cfg.retrieval.encoder.items():
        if t not in tasks or t in dual or tasks[t].format.value != "retrieval":
            out.append(
                f"retrieval.encoder.{t}: the encoder choice applies to BUCC/Tatoeba-style retrieval tasks, not {t!r}"
            )
        if src not in ENCODER_SOURCES:
            out.append(
                f"retrieval.encoder.{t}: {src!r} is not one of {list(ENCODER_SOURCES)}"
                f"{did_you_mean(str(src), ENCODER_SOURCES)}"
            )
    for t, over in cfg.retrieval.dual_encoder.per_task.items():
        if t not in dual:
            out.append(f"retrieval.dual_encoder.per_task: {t!r} is not a dual-encoder task {list(dual)}")
        if not isinstance(over, (dict, type(None))):
            out.append(f"retrieval.dual_encoder.per_task.{t}: expected a mapping of TrainConfig fields, got {over!r}")
            continue
        for k in over or {}:
            if k not in train_fields:
                out.append(f"retrieval.dual_encoder.per_task.{t}.{k}: unknown key{did_you_mean(k, train_fields)}")
        from_dict(
            TrainConfig,
            {
                k: v
                for k, v in {**to_dict(cfg.retrieval.dual_encoder.train), **(over or {})}.items()
                if k in train_fields
            },
            f"retrieval.dual_encoder.per_task.{t}",
            problems=out,
        )
    if cfg.retrieval.dual_encoder.train.token_budget or any(
        (o or {}).get("token_budget")
        for o in cfg.retrieval.dual_encoder.per_task.values()
        if isinstance(o, (dict, type(None)))
    ):
        out.append(
            "retrieval.dual_encoder: token_budget batching is not supported "
            "(the in-batch negatives need fixed-size batches)"
        )
    enums["intermediate.sampler"] = (cfg.intermediate.sampler, ("proportional", "temperature", "uniform"))
    enums["intermediate.volume_scope"] = (cfg.intermediate.volume_scope, ("per_task", "total"))
    if not 0.0 <= cfg.intermediate.mlm_mix < 1.0:
        out.append(f"intermediate.mlm_mix: expected a fraction in [0, 1), got {cfg.intermediate.mlm_mix}")
    for t, by_lang in cfg.intermediate.translated.items():
        if t not in cfg.intermediate.tasks:
            out.append(f"intermediate.translated.{t}: not one of intermediate.tasks {cfg.intermediate.tasks}")
        if not isinstance(by_lang, dict):
            out.append(f"intermediate.translated.{t}: expected {{language: folder}}")
            continue
        for lang in by_lang:
            try:
                langtab.get(lang)
            except KeyError as e:
                out.append(f"intermediate.translated.{t}: {e.args[0]}")
    engines: list[tuple[str, Any]] = [
        ("intermediate.train", cfg.intermediate.train),
        ("target.train", cfg.target.train),
    ]
    for t, over in cfg.target.per_task.items():
        if isinstance(over, (dict, type(None))) and all(k in train_fields for k in (over or {})):
            try:
                engines.append((f"target.per_task.{t}", train_config_for(cfg, t)))
            except ConfigError:
                pass  # its type problems are listed above
    if cfg.pretrain is not None:
        engines.append(("pretrain", cfg.pretrain))
    for tc_name, tc in engines:
        if tc.engine not in ("torch", "deepspeed"):
            out.append(
                f"{tc_name}.engine: {tc.engine!r} is not one of ['torch', 'deepspeed']"
                f"{did_you_mean(tc.engine, ('torch', 'deepspeed'))}"
            )
        if tc.engine == "deepspeed":
            if tc.deepspeed is None:
                out.append(
                    f"{tc_name}.deepspeed: engine 'deepspeed' needs a DeepSpeed config "
                    f"(one of {sorted(shipped_deepspeed_configs())}, or a JSON file)"
                )
            else:
                try:
                    resolve_deepspeed_config(tc.deepspeed)
                except ConfigError as e:
                    out.append(f"{tc_name}.deepspeed: {e}")
    for tc_name, tc in (("intermediate.train", cfg.intermediate.train), ("target.train", cfg.target.train)):
        if isinstance(tc.volume, str) and tc.volume != "all":
            out.append(f"{tc_name}.volume: expected an integer or 'all', got {tc.volume!r}")
    for key, (value, allowed) in enums.items():
        if value not in allowed:
            out.append(f"{key}: {value!r} is not one of {list(allowed)}{did_you_mean(value, allowed)}")
    for split in cfg.target.eval_splits:
        if split not in ("dev", "test"):
            out.append(f"target.eval_splits: {split!r} is not 'dev' or 'test'")
    out += extra_problems(cfg, tasks)
    return out
