"""The preflight: everything a run will need, checked before any training starts.

``xlrepro check <config> [overrides]`` runs it; ``xlrepro train`` / ``reproduce`` run it first, for
every config they will run (each cell of an experiment spec). Checked, and every problem listed at
once (``PreflightError``, one ``xlrepro: error:`` line each, exit 2):

- the config: every problem of ``config.problems`` (``config_problems``);
- data: every (task, split, language) every phase reads (``planned_reads``: English train and dev
  splits of every training stage, evaluation splits in every evaluated language, retrieval
  inputs, translated training copies, text corpora) is present, parses, is not empty, and has the
  labels the task registry says it has (``label_status``). Evaluation files are validated by the
  readers themselves (duplicate question or example ids, offsets, types);
- ``data.languages``: every code is a known language and evaluates something;
- the model: its config and tokenizer load (``transformers``), unless it is built from
  ``model.init_config`` on a generated tokenizer (the smoke world);
- the training engines' packages import (DeepSpeed where ``engine: deepspeed``);
- the output folder's disk has room for what the run keeps (``disk_needed``).

Splits whose labels the registry marks as withheld (XTREME's PAN-X, UD-POS, PAWS-X, XNLI test
files) are not errors: they are exported for the leaderboard, never scored, and reported as
warnings here, on the console and in the report. The smoke world is generated at run time, so its
data are not read here.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from xlrepro.errors import DataFormatError, XlreproError


class PreflightError(XlreproError):
    """Several problems at once; ``str`` is one problem per line, each to be shown as an error line."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\nxlrepro: error: ".join(self.problems))


# ---------------------------------------------------------------------- labels: scored or withheld


def example_has_label(e) -> bool:
    """Whether one example carries its gold label (the field depends on the format)."""
    if hasattr(e, "label"):
        return e.label is not None
    if hasattr(e, "tags"):
        return e.tags is not None
    if hasattr(e, "answers"):  # span QA: an answer, or a SQuAD v2.0 "no answer" gold
        return bool(e.answers) or bool(getattr(e, "is_impossible", False))
    if hasattr(e, "entity_id"):
        return e.entity_id is not None
    if hasattr(e, "gold"):
        return e.gold is not None
    return True


def _where(result) -> str:
    return ", ".join(sorted(result.files)) or "(no file)"


def label_status(spec, split: str, lang: str, result) -> bool:
    """Decide whether a read split is scored: True when every example is labelled.

    Where the task registry says the split is labelled, a split with an unlabelled example is a
    ``DataFormatError`` naming the file(s) and the first such example (a header without the label
    column, a tag file with spaces for tabs, ... would otherwise turn a score into an export).
    Where the registry marks the split's labels as withheld, such a split returns False: the
    caller exports it and warns (``withheld_warning``). An empty split is always an error.
    """
    if not result.examples:
        raise DataFormatError(
            _where(result),
            f"task {spec.name}, {split} split, language {lang}: no examples; "
            "expected a non-empty file (an empty or truncated download?)",
        )
    missing = [e for e in result.examples if not example_has_label(e)]
    if not missing:
        return True
    if spec.has_labels(split):
        raise DataFormatError(
            _where(result),
            f"task {spec.name}, {split} split, language {lang}: "
            f"{len(missing)} of {len(result.examples)} examples have no label "
            f"(first: {getattr(missing[0], 'guid', '?')}); the registry says this "
            "split is labelled (a missing label column, or tabs replaced by spaces?)",
            field="label",
        )
    return False


def withheld_warning(task: str, split: str, lang: str, result) -> str:
    n = sum(not example_has_label(e) for e in result.examples)
    return (
        f"{task} {split} {lang}: labels withheld ({n} of {len(result.examples)} examples unlabelled, as the "
        f"task registry allows for this split): predictions exported, NOT scored ({_where(result)})"
    )


# ---------------------------------------------------------------------- what a run reads


@dataclass(frozen=True)
class Read:
    task: str
    split: str
    lang: str
    purpose: str  # "train", "dev" (early stopping) or "eval"
    root: str | None = None  # a folder other than the task's (translated training copies)


def eval_languages(cfg, task: str, split: str) -> list[str]:
    """As ``xlrepro.phases.Context.eval_languages``: the task's languages of the split, restricted by
    ``data.languages``."""
    from xlrepro.tasks import get_task

    keep = cfg.data.languages
    if keep is None and cfg.smoke is not None:
        keep = cfg.smoke.languages
    return [l for l in get_task(task).split_languages(split) if keep is None or l in keep]


def _training_reads(task: str) -> list[Read]:
    from xlrepro.tasks import get_task

    spec = get_task(task)
    train = spec.train_source or task
    dev = spec.dev_source or train
    return [Read(train, "train", "en", "train"), Read(dev, "dev", "en", "dev")]


def planned_reads(cfg) -> list[Read]:
    """Every (task, split, language) the phases of ``cfg`` read, in phase order, without repeats."""
    from xlrepro.dual_encoder import DUAL_ENCODER_TASKS, retrieval_encoder_source
    from xlrepro.tasks import get_task

    out: list[Read] = []
    for t in cfg.intermediate.tasks:
        out += _training_reads(t)
        train = get_task(t).train_source or t
        for lang, folder in (cfg.intermediate.translated.get(t) or {}).items():
            out.append(Read(train, "train", "en", f"train (translated, {lang})", str(folder)))
    for t in list(cfg.target.tasks) + [c for c in cfg.controls if c not in cfg.target.tasks]:
        for stage in get_task(t).training_chain()[:-1]:
            out += _training_reads(stage)
        out += _training_reads(t)
        for split in cfg.target.eval_splits:
            out += [Read(t, split, lang, "eval") for lang in eval_languages(cfg, t, split)]
    for t in cfg.retrieval.tasks:
        spec = get_task(t)
        if t in DUAL_ENCODER_TASKS:
            out += _training_reads(t)
            for split in cfg.target.eval_splits:
                if split in spec.splits:
                    out += [Read(t, split, lang, "eval") for lang in eval_languages(cfg, t, split)]
            continue
        source = retrieval_encoder_source(_CfgOnly(cfg), t)
        if source == "squad_mrc":
            out += _training_reads("squad")
        elif source == "squad_dual_encoder":
            out += _training_reads("lareqa")
        splits = ("dev", "test") if spec.retrieval.get("threshold") == "tune_on_dev" else ("test",)
        for lang in eval_languages(cfg, t, "test"):
            out += [Read(t, s, lang, "eval") for s in splits]
    seen, unique = set(), []
    for r in out:
        key = (r.task, r.split, r.lang, r.root)
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique


@dataclass
class _CfgOnly:
    cfg: object


# ---------------------------------------------------------------------- the checks


@dataclass
class Preflight:
    """The outcome: ``problems`` (each an error line) and ``warnings`` (withheld labels, estimates skipped)."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # what was looked at, for ``xlrepro check``'s summary
    _cache: dict = field(default_factory=dict, repr=False)

    def ok(self) -> bool:
        return not self.problems

    def add(self, msg: str) -> None:
        if msg not in self.problems:
            self.problems.append(msg)

    def note(self, msg: str) -> None:
        if msg not in self.checked:
            self.checked.append(msg)

    def warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)


def config_problems(cfg, where: str = "config") -> list[str]:
    """Config-level problems of ``cfg`` (``xlrepro.config.problems``: keys, ranges, languages, QA
    windows, the retrieval layer against the encoder's depth, engine imports), as messages.
    ``load_config`` already refuses a config with any of them, so this matters for a config built
    in code or changed after loading."""
    from xlrepro import config as config_mod

    return [f"{where}: {p}" for p in config_mod.problems(cfg)]


def _read(cfg, r: Read):
    from xlrepro.tasks import get_task

    spec = get_task(r.task)
    if r.root is not None:
        return spec.read(r.root, r.split, r.lang, cfg.data.layouts.get(r.task))
    if cfg.data.source == "hub":
        from xlrepro.data.hub import read_hub

        return read_hub(spec, r.split, r.lang, allow_unpinned=cfg.data.allow_unpinned_hub)
    root = cfg.data.task_dirs.get(r.task) or Path(cfg.data.root) / r.task
    return spec.read(root, r.split, r.lang, cfg.data.layouts.get(r.task))


def _root(cfg, r: Read) -> str | None:
    """The local folder a read looks in (None: the Hub)."""
    if r.root is not None:
        return str(r.root)
    if cfg.data.source == "hub":
        return None
    return str(cfg.data.task_dirs.get(r.task) or Path(cfg.data.root) / r.task)


def _describe(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        msg = str(e.args[0])
    elif isinstance(e, (XlreproError, FileNotFoundError)):
        msg = str(e)
    else:
        msg = f"{type(e).__name__}: {e}"
    return "; ".join(part.strip() for part in msg.splitlines() if part.strip())  # one problem, one line


def check_data(cfg, pf: Preflight) -> None:
    """Read every planned split once; record problems and withheld-label warnings."""
    from xlrepro.tasks import get_task

    _check_languages(cfg, pf)
    if cfg.smoke is not None:
        pf.note("data: generated smoke world (created at run time, not read here)")
        return
    n, missing_roots = 0, set()
    for r in planned_reads(cfg):
        root = _root(cfg, r)
        if root is not None and not Path(root).is_dir():
            if root not in missing_roots:
                missing_roots.add(root)
                pf.add(
                    f"data: {r.task}: folder {root} does not exist (expected the task's files there: "
                    f"{'intermediate.translated' if r.root else f'data.root/{r.task} or data.task_dirs.{r.task}'})"
                )
            continue
        key = (
            cfg.data.source,
            str(cfg.data.root),
            str(cfg.data.task_dirs.get(r.task)),
            str(cfg.data.layouts.get(r.task)),
            r.task,
            r.split,
            r.lang,
            r.root,
            r.purpose == "eval",
        )
        if key in pf._cache:
            continue
        label = f"{r.task} {r.split} {r.lang} ({r.purpose})"
        try:
            res = _read(cfg, r)
            if r.purpose == "eval":
                if not label_status(get_task(r.task), r.split, r.lang, res):
                    pf.warn(withheld_warning(r.task, r.split, r.lang, res))
            elif not res.examples or not all(example_has_label(e) for e in res.examples):
                raise DataFormatError(
                    _where(res),
                    f"task {r.task}, {r.split} split: "
                    + ("no examples" if not res.examples else "unlabelled examples")
                    + f"; the {r.purpose} data of a training stage must be labelled "
                    "and non-empty",
                    field="label" if res.examples else None,
                )
            pf._cache[key] = True
            n += 1
        except Exception as e:  # noqa: BLE001 -- every failure becomes one listed problem, no traceback
            pf._cache[key] = False
            pf.add(f"data: {label}: {_describe(e)}")
    pf.note(f"data: {n} split(s) read and validated")


def _check_corpora(cfg, pf: Preflight) -> None:
    if cfg.smoke is not None:
        return
    folders = []
    if cfg.pretrain is not None and cfg.pretrain.steps:
        folders.append(("pretrain.corpus", cfg.pretrain.corpus))
    if cfg.intermediate.mlm_mix > 0:
        folders.append(("intermediate.mlm_corpus", cfg.intermediate.mlm_corpus))
    for key, folder in folders:
        if not folder or not sorted(Path(folder).glob("*.txt")):
            pf.add(f"config: {key}: no *.txt files in {folder or '(not set)'}; expected a folder of <lang>.txt files")


def _check_cand(cfg, pf: Preflight) -> None:
    """Parse each retrieval task's candidate set (``retrieval.candidates``: Mewsli-X's; duplicate
    entity ids, offsets) when it is there."""
    from xlrepro.data.all_readers import get_reader
    from xlrepro.tasks import get_task

    if cfg.smoke is not None or cfg.data.source != "local":
        return
    for t in cfg.retrieval.tasks:
        cand = get_task(t).retrieval.get("candidates")
        if cand is None:
            continue
        root = cfg.data.task_dirs.get(t) or Path(cfg.data.root) / t
        path = Path(root) / cand["file"]
        try:
            if not get_reader(cand["reader"])({"file": path}).examples:
                pf.add(f"data: {t} candidate set: {path}: no entities")
        except Exception as e:  # noqa: BLE001
            pf.add(f"data: {t} candidate set: {_describe(e)}")


def _check_languages(cfg, pf: Preflight) -> None:
    from xlrepro import languages as langtab
    from xlrepro.tasks import get_task

    keep = cfg.data.languages
    if keep is None:
        return
    for lang in keep:
        try:
            langtab.get(lang)
        except KeyError as e:
            pf.add(f"config: data.languages: {_describe(e)}")
    evaluated = list(cfg.target.tasks) + list(cfg.retrieval.tasks)
    for t in evaluated:
        spec = get_task(t)
        splits = [s for s in spec.splits if s in cfg.target.eval_splits or spec.format.value == "retrieval"]
        if splits and not any(eval_languages(cfg, t, s) for s in splits):
            pf.add(
                f"config: data.languages: {list(keep)} selects none of {t}'s evaluation languages "
                f"({spec.split_languages(splits[-1])}); the task would train and score nothing"
            )


def check_model(cfg, pf: Preflight) -> None:
    """The encoder's config and the tokenizer load (from the Hub cache or a local folder)."""
    if cfg.smoke is not None:
        pf.note("model: built from model.init_config with the smoke world's tokenizer")
        return
    m = cfg.model
    config_failed = False
    if m.init_config is None:
        from transformers import AutoConfig

        err = _load(AutoConfig.from_pretrained, m.name_or_path, m.revision)
        if err:
            config_failed = True
            pf.add(
                f"config: model.name_or_path: cannot load the model config of {m.name_or_path!r}"
                f"{f' at revision {m.revision}' if m.revision else ''} ({err}); expected a local folder with "
                "config.json, or a Hub id that is cached or reachable"
            )
    tok = m.tokenizer or m.name_or_path
    if config_failed and tok == m.name_or_path:
        return  # the same folder or Hub id: one problem
    from transformers import AutoTokenizer

    err = _load(AutoTokenizer.from_pretrained, tok, m.revision)
    if err:
        pf.add(
            f"config: model.{'tokenizer' if m.tokenizer else 'name_or_path'}: cannot load the tokenizer {tok!r} ({err})"
        )
    pf.note(f"model: {m.name_or_path} (config and tokenizer load)")


def _load(fn, name: str, revision: str | None) -> str | None:
    """None when ``fn(name)`` loads (a local folder, the Hub cache, else the Hub), else why not, in one line."""
    import os

    try:
        fn(name, revision=revision, local_files_only=True)
        return None
    except Exception as e:  # noqa: BLE001 -- OSError, HFValidationError, ...: one problem
        if Path(name).exists() or os.environ.get("HF_HUB_OFFLINE", "0") == "1":
            return _describe(e)
    try:
        fn(name, revision=revision)
        return None
    except Exception as e:  # noqa: BLE001 -- connection errors included
        return _describe(e)


def _train_configs(cfg) -> list[tuple[str, object]]:
    from xlrepro.config import train_config_for

    out = [
        ("intermediate.train", cfg.intermediate.train),
        ("target.train", cfg.target.train),
        ("retrieval.dual_encoder.train", cfg.retrieval.dual_encoder.train),
    ]
    out += [(f"target.per_task.{t}", train_config_for(cfg, t)) for t in cfg.target.per_task]
    if cfg.pretrain is not None:
        out.append(("pretrain", cfg.pretrain))
    return out


ENGINE_PACKAGES = {"torch": ("torch",), "deepspeed": ("torch", "deepspeed")}


def check_engines(cfg, pf: Preflight) -> None:
    needed: dict[str, str] = {}
    for name, tc in _train_configs(cfg):
        for pkg in ENGINE_PACKAGES.get(getattr(tc, "engine", "torch"), ()):
            needed.setdefault(pkg, name)
    for pkg, who in needed.items():
        key = ("import", pkg)
        if key not in pf._cache:
            try:
                importlib.import_module(pkg)
                pf._cache[key] = None
            except Exception as e:  # noqa: BLE001 -- ImportError, or a package that fails while importing
                pf._cache[key] = f"{type(e).__name__}: {e}"
        if pf._cache[key]:
            pf.add(
                f"config: {who}.engine: the package {pkg!r} does not import ({pf._cache[key]}); "
                "install it (requirements/) or choose engine: torch"
            )
    pf.note(f"engines: {', '.join(sorted(needed)) or 'none'} import")


def _n_params(cfg) -> float | None:
    from xlrepro.estimate import param_count

    try:
        return param_count(cfg.model, cfg.smoke.vocab_size if cfg.smoke else None)
    except (KeyError, TypeError):
        pass
    local = Path(cfg.model.name_or_path) / "config.json"
    if local.is_file():
        import dataclasses
        import json

        try:
            return param_count(dataclasses.replace(cfg.model, init_config=json.loads(local.read_text())))
        except (KeyError, TypeError, ValueError):
            return None
    return None


def disk_needed(cfg) -> int | None:
    """Bytes a run of ``cfg`` keeps, estimated: fp32 weights of every encoder it hands on (pre-training,
    intermediate, chain stages, dual encoders, SQuAD for Tatoeba) and of the best model of every target
    and control run, plus one resumable checkpoint at a time (weights, AdamW's two moments and the
    gradients: 4 copies). None when the parameter count is unknown."""
    n = _n_params(cfg)
    if n is None:
        return None
    from xlrepro.tasks import get_task

    kept = (cfg.pretrain is not None and cfg.pretrain.steps > 0) + bool(cfg.intermediate.tasks)
    for t in list(cfg.target.tasks) + list(cfg.controls):
        kept += 1 + len(get_task(t).training_chain()[:-1])
    kept += len(cfg.retrieval.tasks)
    return int(n * 4 * (kept + 4))


def _existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(cfg, out, pf: Preflight) -> None:
    need = disk_needed(cfg)
    if need is None:
        pf.warn(f"disk: parameter count of {cfg.model.name_or_path!r} unknown; free space not checked")
        return
    free = shutil.disk_usage(_existing(Path(out))).free
    if free < need:
        pf.add(
            f"disk: {out}: {free / 1e9:.1f} GB free, the run keeps about {need / 1e9:.1f} GB (fp32 encoders "
            "handed on, best models, one training checkpoint); free space or choose another --out"
        )
    pf.note(f"disk: {free / 1e9:.1f} GB free, about {need / 1e9:.2f} GB needed")


def preflight(cfg, out, where: str = "config", pf: Preflight | None = None) -> Preflight:
    """Run every check of ``cfg`` (see the module docstring); ``pf`` accumulates over several configs."""
    pf = pf if pf is not None else Preflight()
    bad_config = config_problems(cfg, where)
    for p in bad_config:
        pf.add(f"config: {p}" if not p.startswith(where) else p)
    try:
        check_data(cfg, pf)
        _check_cand(cfg, pf)
        _check_corpora(cfg, pf)
    except (XlreproError, KeyError, ValueError) as e:
        if not bad_config:
            raise
        pf.add(f"data: not fully checked until the config problems above are fixed ({type(e).__name__}: {e})")
    key = ("model", cfg.model.name_or_path, cfg.model.revision, cfg.model.tokenizer, cfg.smoke is None)
    if key not in pf._cache:
        pf._cache[key] = True
        check_model(cfg, pf)
    check_engines(cfg, pf)
    check_disk(cfg, out, pf)
    return pf


def run_preflight(cfgs: list, out, where: str = "config") -> Preflight:
    """Preflight every config (deduplicated data reads and model loads); warnings go to the console;
    raises ``PreflightError`` listing every problem."""
    pf = Preflight()
    for cfg in cfgs:
        preflight(cfg, out, where, pf)
    for w in pf.warnings:
        print(f"xlrepro: WARNING: {w}", file=sys.stderr)
    if pf.problems:
        raise PreflightError(pf.problems)
    return pf
