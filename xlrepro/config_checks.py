"""Config checks that need no data: the range of every numeric field, languages, QA windows, the
retrieval layer against the encoder's depth, and the training engine's packages.

``extra_problems(cfg, tasks)`` returns them as ``key: what is wrong (what is allowed)`` lines;
``xlrepro.config.problems`` adds them to its own checks. The rules are listed in docs/config.md.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

# transformers is imported where a model config is read: it is slow to import
from xlrepro import languages as langtab
from xlrepro.errors import did_you_mean
from xlrepro.typed import from_dict, to_dict

# Special tokens around a question/context pair in XLM-R's tokenizer: <s> q </s></s> c </s>
# (the default family's; each family says its own: xlrepro.models, Family.pair_special_tokens).
PAIR_SPECIAL_TOKENS = 4
# XLM-R's position ids start after the padding index (padding_idx + 1 = 2), so a model with
# max_position_embeddings P takes at most P - 2 tokens (514 -> 512 for XLM-R Large); BERT's start
# at 0 (Family.position_offset).
POSITION_OFFSET = 2
SEED_MAX = 2**32 - 1  # numpy's and Python's random seeds


@dataclass(frozen=True)
class Range:
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = True
    none_ok: bool = False

    def text(self) -> str:
        lo = "-inf" if self.lo is None else _num(self.lo)
        hi = "inf" if self.hi is None else _num(self.hi)
        kind = "an integer" if self.integer else "a number"
        left = "(" if self.lo_open or self.lo is None else "["
        right = ")" if self.hi_open or self.hi is None else "]"
        s = f"{kind} in {left}{lo}, {hi}{right}"
        return s + (" or null" if self.none_ok else "")

    def ok(self, v) -> bool:
        if v is None:
            return self.none_ok
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        return True


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


POS = Range(1)  # integer >= 1
POS_OR_NONE = Range(1, none_ok=True)
FRACTION = Range(0.0, 1.0, integer=False)  # [0, 1]
SECONDS_OR_NONE = Range(0.0, lo_open=True, integer=False, none_ok=True)  # > 0 seconds, or null

# Class name -> field -> allowed range. Every numeric field of every config section is here
# (tests/test_config_ranges.py checks that none is missing).
RANGES: dict[str, dict[str, Range]] = {
    "ExperimentConfig": {"seed": Range(0, SEED_MAX), "base_seed": Range(0, SEED_MAX, none_ok=True)},
    "ModelConfig": {"classifier_dropout": Range(0.0, 1.0, hi_open=True, integer=False)},
    "TrainConfig": {
        "lr": Range(0.0, 1.0, lo_open=True, integer=False),
        "batch_size": POS,
        "grad_accum": POS,
        "epochs": Range(0.0, lo_open=True, integer=False),
        "max_steps": POS_OR_NONE,
        "warmup_proportion": FRACTION,
        "weight_decay": Range(0.0, 1.0, hi_open=True, integer=False),
        "adam_eps": Range(0.0, 1.0, lo_open=True, hi_open=True, integer=False),
        "max_grad_norm": Range(0.0, lo_open=True, integer=False),
        "max_seq_length": POS_OR_NONE,
        "eval_every_steps": POS,
        "eval_subset": POS,
        "patience": POS,
        "eval_batch_size": POS_OR_NONE,
        "checkpoint_every_steps": POS,
        "checkpoint_every_seconds": SECONDS_OR_NONE,
        "volume": POS,  # or "all" (checked by config.problems)
        "token_budget": POS_OR_NONE,
        "packing_window": POS,
        "doc_stride": POS,
        "max_query_length": POS,
        "max_answer_length": POS,
    },
    "IntermediateConfig": {
        "temperature": Range(0.0, lo_open=True, integer=False),
        "mlm_mix": Range(0.0, 1.0, hi_open=True, integer=False),
    },
    "TargetConfig": {"eval_batch_size": POS},
    "DualEncoderConfig": {"logit_scale": Range(0.0, lo_open=True, integer=False)},
    "RetrievalConfig": {"layer": Range(0), "batch_size": POS, "max_seq_length": POS},
    "PretrainConfig": {
        "steps": Range(0),  # 0 = no pre-training
        "batch_size": POS,
        "lr": Range(0.0, 1.0, lo_open=True, integer=False),
        "max_seq_length": Range(3),  # <s> + one token + </s>
        "mlm_probability": Range(0.0, 1.0, lo_open=True, hi_open=True, integer=False),
        "warmup_proportion": FRACTION,
        "checkpoint_every_steps": POS_OR_NONE,
        "checkpoint_every_seconds": SECONDS_OR_NONE,
    },
    "SmokeConfig": {
        "n_train": POS,
        "n_dev": POS,
        "n_test": POS,
        "n_corpus": POS,
        "code_switch": FRACTION,
        "vocab_size": POS,
    },
}
# mlm_mix is also checked by config.problems with its historical message; skip it here
_SKIP = {("IntermediateConfig", "mlm_mix")}


def _range_problems(obj, prefix: str, only: set | None = None) -> list[str]:
    out = []
    table = RANGES.get(type(obj).__name__, {})
    for f in dataclasses.fields(obj):
        if (type(obj).__name__, f.name) in _SKIP or f.name not in table or (only is not None and f.name not in only):
            continue
        v = getattr(obj, f.name)
        if f.name == "volume" and v == "all" or isinstance(v, str):
            continue  # "all" or a bad string: config.problems reports it
        r = table[f.name]
        if not r.ok(v):
            key = f"{prefix}.{f.name}" if prefix else f.name
            out.append(f"{key}: expected {r.text()}, got {v!r}")
    return out


def range_problems(cfg) -> list[str]:
    TrainConfig = type(cfg.target.train)  # noqa: N806  (xlrepro.config.TrainConfig, which imports this module)
    out = _range_problems(cfg, "")
    sections = [
        ("model", cfg.model),
        ("intermediate", cfg.intermediate),
        ("intermediate.train", cfg.intermediate.train),
        ("target", cfg.target),
        ("target.train", cfg.target.train),
        ("retrieval", cfg.retrieval),
        ("retrieval.dual_encoder", cfg.retrieval.dual_encoder),
        ("retrieval.dual_encoder.train", cfg.retrieval.dual_encoder.train),
    ]
    if cfg.pretrain is not None:
        sections.append(("pretrain", cfg.pretrain))
    if cfg.smoke is not None:
        sections.append(("smoke", cfg.smoke))
    for prefix, obj in sections:
        out += _range_problems(obj, prefix)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for prefix, base, per_task in (
        ("target.per_task", cfg.target.train, cfg.target.per_task),
        ("retrieval.dual_encoder.per_task", cfg.retrieval.dual_encoder.train, cfg.retrieval.dual_encoder.per_task),
    ):
        for t, over in per_task.items():
            if not isinstance(over, dict) or not set(over) <= names:
                continue  # reported by config.problems
            try:
                tc = from_dict(TrainConfig, {**to_dict(base), **over})
            except Exception:
                continue  # type problems: reported by config.problems
            out += _range_problems(tc, f"{prefix}.{t}", only=set(over))
    return out


# ------------------------------------------------------------------------------- languages


def evaluated_tasks(cfg, tasks: dict) -> list[str]:
    return [t for t in list(cfg.target.tasks) + list(cfg.retrieval.tasks) if t in tasks]


def valid_languages(cfg, tasks: dict) -> list[str]:
    """Languages ``data.languages`` may name: those evaluated by at least one of the config's
    target/retrieval tasks on the recipe's benchmark (every task's when it evaluates none),
    within the smoke world's languages for a smoke config."""
    names = evaluated_tasks(cfg, tasks) or sorted(tasks)
    seen: list[str] = []
    for t in names:
        spec = tasks[t]
        bench = spec.benchmark_for(cfg.retrieval.benchmark)
        for split in ("dev", "test"):
            for lang in spec.split_languages(split, bench):
                if lang not in seen:
                    seen.append(lang)
    if cfg.smoke is not None:
        seen = [lang for lang in seen if lang in cfg.smoke.languages]
    return seen


def language_problems(cfg, tasks: dict) -> list[str]:
    out = []
    if cfg.smoke is not None:
        for lang in cfg.smoke.languages:
            if not isinstance(lang, str) or lang not in langtab.table():
                out.append(
                    f"smoke.languages: {lang!r} is not a language of the language table{_dym(lang, langtab.table())}"
                )
        if "en" not in cfg.smoke.languages:
            out.append(f"smoke.languages: the smoke world needs English ('en'), got {cfg.smoke.languages}")
    langs = cfg.data.languages
    if langs is None:
        return out
    if not langs:
        return out + ["data.languages: expected at least one language, or null for every language of each task"]
    valid = valid_languages(cfg, tasks)
    for lang in langs:
        if lang not in valid:
            out.append(
                f"data.languages: {lang!r} is not evaluated by any task of this config"
                f"{_dym(lang, valid)} (valid: {', '.join(valid)})"
            )
    return out


def _dym(name, candidates) -> str:
    return did_you_mean(name, candidates) if isinstance(name, str) else ""


# ------------------------------------------------------------------------------- model and QA


def _family(cfg):
    """The configured encoder family, or None when ``model.family`` is not valid (reported elsewhere)."""
    from xlrepro.errors import ConfigError
    from xlrepro.models import resolve_family

    try:
        return resolve_family(cfg.model)
    except ConfigError:
        return None


def model_config(cfg) -> dict | None:
    """The encoder's config as a dict, when it is known without the network: the smoke model's
    ``model.init_config`` (over the family's config defaults) or a local folder's config.json."""
    m = cfg.model
    if m.init_config is not None:
        fam = _family(cfg)
        return None if fam is None else {**fam.default_config(), **m.init_config}
    p = Path(m.name_or_path) / "config.json"
    if p.is_file():
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # unreadable: loading the model reports it
        return data if isinstance(data, dict) else None
    return None


def model_problems(cfg, tasks: dict) -> list[str]:
    from xlrepro.models import AUTO, FAMILIES

    if cfg.model.family == AUTO and cfg.model.init_config is not None:
        return [
            f"model.family: 'auto' reads a model folder's config.json; a model built from model.init_config "
            f"names its family: one of {list(FAMILIES)}"
        ]
    mc = model_config(cfg)
    if mc is None:
        return []
    out = []
    src = "model.init_config" if cfg.model.init_config is not None else f"{cfg.model.name_or_path}/config.json"
    fam = _family(cfg)
    if (
        cfg.model.init_config is None
        and fam is not None
        and mc.get("model_type") is not None
        and mc.get("model_type") not in fam.model_types
    ):
        out.append(
            f"model.family: {cfg.model.family!r} runs models of type {list(fam.model_types)}, but {src} "
            f"has model_type {mc.get('model_type')!r} (set model.family to its family, or 'auto')"
        )
    depth = mc.get("num_hidden_layers")
    uses_layer = any(t in tasks and t not in dual_encoder_tasks(tasks) for t in cfg.retrieval.tasks)
    r = cfg.retrieval.layer
    if uses_layer and isinstance(depth, int) and isinstance(r, int) and not 0 <= r <= depth:
        out.append(
            f"retrieval.layer: {r} is beyond the encoder's depth: hidden_states has layers 0..{depth} "
            f"(0 = embeddings; num_hidden_layers = {depth} in {src})"
        )
    pos = mc.get("max_position_embeddings")
    offset = fam.position_offset if fam is not None else POSITION_OFFSET
    if isinstance(pos, int):
        limit = pos - offset
        for key, v in _lengths(cfg):
            if isinstance(v, int) and v > limit:
                out.append(
                    f"{key}: {v} tokens exceed the encoder's {limit} positions "
                    f"(max_position_embeddings = {pos} in {src}, minus {offset})"
                )
    return out


def _lengths(cfg):
    yield "intermediate.train.max_seq_length", cfg.intermediate.train.max_seq_length
    yield "target.train.max_seq_length", cfg.target.train.max_seq_length
    for t, over in cfg.target.per_task.items():
        if isinstance(over, dict) and "max_seq_length" in over:
            yield f"target.per_task.{t}.max_seq_length", over["max_seq_length"]
    if cfg.retrieval.tasks:
        yield "retrieval.max_seq_length", cfg.retrieval.max_seq_length
    if cfg.pretrain is not None:
        yield "pretrain.max_seq_length", cfg.pretrain.max_seq_length


def qa_problems(cfg, tasks: dict) -> list[str]:
    """Every span-QA training window must hold the longest question and leave room for the
    stride: ``doc_stride < max_seq_length - max_query_length - s`` (the family's pair special tokens: XLM-R 4, BERT 3),
    else the tokenizer cannot split a long context into overlapping windows."""
    runs = []  # (key of the TrainConfig, TrainConfig, task)
    for t in cfg.intermediate.tasks:
        if t in tasks and tasks[t].format.value == "span_qa":
            runs.append(("intermediate.train", cfg.intermediate.train, t))
    qa_targets = [t for t in cfg.target.tasks if t in tasks and tasks[t].format.value == "span_qa"]
    by_bench = [(tasks[t].retrieval.get("encoder") if t in tasks else None) or {} for t in cfg.retrieval.tasks]
    if "squad_mrc" in cfg.retrieval.encoder.values() or any(
        isinstance(e, dict) and e.get(cfg.retrieval.benchmark) == "squad_mrc" for e in by_bench
    ):
        qa_targets.append("squad")  # the SQuAD encoder of Tatoeba (target.train + target.per_task.squad)
    for t in qa_targets:
        try:
            tc = train_config_for(cfg, t)
        except Exception:
            continue  # type problems: reported elsewhere
        key = f"target.per_task.{t}" if t in cfg.target.per_task else "target.train"
        runs.append((key, tc, t))
    out = []
    fam = _family(cfg) if runs else None
    special = fam.pair_special_tokens if fam is not None else PAIR_SPECIAL_TOKENS
    for key, tc, t in runs:
        if not all(isinstance(v, int) and v >= 1 for v in (tc.doc_stride, tc.max_query_length)):
            continue  # range problems: reported elsewhere
        max_len = tc.max_seq_length or tasks[t].max_seq_length
        window = max_len - tc.max_query_length - special
        if tc.doc_stride >= window:
            msg = (
                f"{key}: {t}: doc_stride = {tc.doc_stride} must be smaller than max_seq_length - "
                f"max_query_length - {special} = {max_len} - {tc.max_query_length} - "
                f"{special} = {window} (the context tokens of a window with the longest question)"
            )
            if msg not in out:
                out.append(msg)
    return out


# ------------------------------------------------------------------------------- engines

ENGINE_PACKAGES = {"deepspeed": ("deepspeed",)}


@functools.cache
def import_problem(module: str) -> str | None:
    """None when ``module`` imports, else why not (cached: one import per process)."""
    try:
        importlib.import_module(module)
    except Exception as e:  # ImportError, or a broken install raising anything at import
        return f"{type(e).__name__}: {e}"
    return None


def engine_problems(cfg) -> list[str]:
    used = [
        ("intermediate.train", cfg.intermediate.train.engine),
        ("target.train", cfg.target.train.engine),
        ("retrieval.dual_encoder.train", cfg.retrieval.dual_encoder.train.engine),
    ]
    if cfg.pretrain is not None:
        used.append(("pretrain", cfg.pretrain.engine))
    for prefix, per_task in (
        ("target.per_task", cfg.target.per_task),
        ("retrieval.dual_encoder.per_task", cfg.retrieval.dual_encoder.per_task),
    ):
        for t, over in per_task.items():
            if isinstance(over, dict) and isinstance(over.get("engine"), str):
                used.append((f"{prefix}.{t}", over["engine"]))
    out = []
    for key, engine in used:
        for module in ENGINE_PACKAGES.get(engine, ()):
            why = import_problem(module)
            if why is not None:
                out.append(
                    f"{key}.engine: {engine!r} needs the {module} package, which does not import here "
                    f"({why}); install requirements/{module}.txt or set {key}.engine=torch"
                )
    return out


def extra_problems(cfg, tasks: dict) -> list[str]:
    return (
        range_problems(cfg)
        + language_problems(cfg, tasks)
        + qa_problems(cfg, tasks)
        + model_problems(cfg, tasks)
        + engine_problems(cfg)
    )


# ------------------------------------------------------------------------------- tasks


def train_config_for(cfg, task: str):
    """The target phase's TrainConfig for one task (``target.train`` + ``target.per_task[task]``)."""
    return from_dict(type(cfg.target.train), {**to_dict(cfg.target.train), **(cfg.target.per_task.get(task) or {})})


def dual_encoder_tasks(tasks: dict) -> tuple[str, ...]:
    """The retrieval tasks evaluated with a fine-tuned dual encoder: the registry's
    ``retrieval.encoder: dual_encoder`` (LAReQA and Mewsli-X in XTREME-R)."""
    return tuple(sorted(n for n, t in tasks.items() if (t.retrieval or {}).get("encoder") == "dual_encoder"))


def recipe_problems(tasks: dict, train_fields: list[str]) -> list[str]:
    """Every registry ``recipe.<protocol>`` key that is not a training setting (a TrainConfig
    field); the registry itself checks the recipes' shape when it loads the task files."""
    out = []
    for name, t in sorted(tasks.items()):
        for proto, rec in (t.recipe or {}).items():
            for k in rec:
                if k != "source" and k not in train_fields:
                    out.append(
                        f"xlrepro/tasks/{name}.yaml: recipe.{proto}.{k}: not a training setting"
                        f"{did_you_mean(k, train_fields)}"
                    )
    return out
