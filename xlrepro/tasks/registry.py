"""Tasks as data: ``xlrepro/tasks/<name>.yaml``, one entry per task.

An entry says everything the pipeline needs: format, version, benchmarks, languages (derived
from the language table by the task's column label), per-language split availability, label
set, metric, where its English training data comes from, its Hub source pinned by revision,
and readers for the original local file layouts. Adding a task of an existing format is one
YAML file. Unknown keys are rejected (with a did-you-mean); ``tests/test_readers_xtreme.py`` loads
every entry, and the ``tests/test_readers_*.py`` files read each task's sample files.

Split names are xlrepro's: ``train``, ``dev``, ``test``. Layout file templates may use
``{lang}`` (ISO 639-1), ``{iso639_3}``, ``{tatoeba}``, ``{ud}``, ``{name_lower}`` (the table's
English name, lower-cased: TyDi QA's ``english``, ``swahili``) and ``{split}``. Readers are
called as ``fn(paths, src_lang=lang, split=split, **layout.options)``.

A composite task (``components:``, e.g. ANLI+ = ANLI + MNLI + SNLI) has no layouts of its own:
each split it declares is the concatenation, in the listed order, of that split of every
component, each read from its own root (``root/<component>/`` or ``root[component]``).
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import importlib.resources
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xlrepro import languages as langtab
from xlrepro.data.readers import get_reader
from xlrepro.data.types import Format, ReadResult
from xlrepro.errors import ConfigError, did_you_mean

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class HubSource:
    repo: str
    revision: str | None  # a 40-hex commit SHA; None = not yet pinned (loading refuses without allow_unpinned)
    config: str | None = None  # template, e.g. "PAN-X.{lang}"
    splits: dict = field(default_factory=dict)  # xlrepro split -> Hub split name
    note: str | None = None
    # the converter's per-dataset facts (xlrepro.data.hub): class names -> xlrepro labels (GLUE),
    # rows of every language in one split kept by id prefix (TyDiQA), or why the Hub copy is refused
    label_map: dict = field(default_factory=dict)
    filter_language: str | None = None  # "id_prefix"
    refuse: str | None = None


@dataclass(frozen=True)
class Layout:
    name: str  # e.g. "xtreme" (XTREME's processed download), "original"
    reader: str
    files: dict  # split -> template (str) or dict of named templates (e.g. tatoeba src/eng)
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SplitSpec:
    languages: tuple[str, ...] | None = None  # None = every language of the task
    missing: tuple[str, ...] = ()  # languages of the task without this split
    labelled: bool = True  # False where the official files withhold labels (XTREME test sets)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    version: int
    format: Format
    description: str
    benchmarks: tuple[str, ...]  # "xtreme", "xtreme_r", "intermediate"
    language_column: dict  # benchmark -> column label in languages.tsv; {"fixed": [...]} for English-only tasks
    metric: str
    splits: dict  # split -> SplitSpec
    layouts: tuple[Layout, ...]
    hub: HubSource | None = None
    labels: tuple[str, ...] | None = None
    train_source: str | None = None  # the task whose English train split trains this one (XNLI <- MNLI)
    dev_source: str | None = None  # English dev used for early stopping (default: train_source's dev)
    # English tasks trained one after the other on the same model (encoder and, where the format
    # matches, head) before the target is evaluated; the last is train_source (XCOPA in XTREME-R:
    # Social IQa, then COPA). Empty = the single stage train_source (or the task itself).
    train_chain: tuple[str, ...] = ()
    num_choices: int | None = None
    max_seq_length: int = 256
    recipe: dict = field(default_factory=dict)  # protocol (jiant | xtreme_r) -> TrainConfig values + source
    train_size: dict = field(default_factory=dict)  # {examples: English training examples, source}
    domain: dict = field(default_factory=dict)  # {benchmark: in-domain | shifted, reason}: target's domain shift
    retrieval: dict = field(default_factory=dict)  # retrieval protocol defaults
    notes: str | None = None
    # Composite task: its splits are the concatenation (in this order) of the same split of these
    # tasks, each read from its own root; guids get a "<component>/" prefix. Such a task has no layouts.
    components: tuple[str, ...] = ()
    # Where `xlrepro data prepare` fetches the files and what `xlrepro data verify` expects
    # (xlrepro.data.prepare; docs/data.md)
    download: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ languages and splits
    def languages(self, benchmark: str | None = None) -> list[str]:
        """The task's evaluation languages (ISO 639-1) in ``benchmark`` (default: the first it belongs to)."""
        col = self.language_column
        if "fixed" in col:
            return list(col["fixed"])
        bench = benchmark or next(b for b in self.benchmarks if b in col)
        if bench not in col:
            raise KeyError(f"task {self.name} is not part of {bench}")
        return langtab.languages_for(col[bench], bench)

    def all_languages(self) -> list[str]:
        seen = []
        for b in self.language_column:
            for l in (self.language_column[b] if b == "fixed" else self.languages(b)):
                if l not in seen:
                    seen.append(l)
        return seen

    def benchmark_for(self, preferred: str) -> str | None:
        """The benchmark whose language set this task is evaluated on in a ``preferred``-benchmark
        recipe: ``preferred`` when the task belongs to it, else the first benchmark it belongs to
        (XCOPA in an XTREME recipe: XTREME-R's); None for English-only (fixed) tasks."""
        col = self.language_column
        if "fixed" in col:
            return None
        return preferred if preferred in col else next(b for b in self.benchmarks if b in col)

    def split_languages(self, split: str, benchmark: str | None = None) -> list[str]:
        spec = self.splits.get(split)
        if spec is None:
            return []
        base = list(spec.languages) if spec.languages is not None else self.all_languages() if benchmark is None \
            else self.languages(benchmark)
        return [l for l in base if l not in spec.missing]

    def training_chain(self) -> list[str]:
        """The English training tasks in the order they are trained (one stage for most tasks)."""
        if self.train_chain:
            return list(self.train_chain)
        if self.train_source:
            return [self.train_source]
        return [self.name] if "train" in self.splits else []

    def has_labels(self, split: str) -> bool:
        return split in self.splits and self.splits[split].labelled

    # ------------------------------------------------------------------ reading
    def layout(self, name: str | None = None) -> Layout:
        if name is None:
            return self.layouts[0]
        for l in self.layouts:
            if l.name == name:
                return l
        raise KeyError(f"task {self.name} has no layout {name!r}{did_you_mean(name, [l.name for l in self.layouts])}")

    def files(self, root: str | Path, split: str, lang: str, layout: str | None = None) -> dict[str, Path]:
        lay = self.layout(layout)
        if split not in lay.files:
            raise KeyError(f"task {self.name}, layout {lay.name}: no files for split {split!r}")
        tmpl = lay.files[split]
        tmpls = tmpl if isinstance(tmpl, dict) else {"file": tmpl}
        fill = {**langtab.get(lang).template_fields(), "split": split}
        return {k: Path(root) / v.format(**fill) for k, v in tmpls.items()}

    def find_layout(self, root: str | Path, split: str, lang: str) -> str:
        """The first layout whose files for (split, lang) exist under ``root``."""
        tried = []
        for lay in self.layouts:
            if split not in lay.files:
                continue
            paths = self.files(root, split, lang, lay.name)
            if all(_expand(p) for p in paths.values()):
                return lay.name
            tried.append(f"{lay.name}: {', '.join(str(p) for p in paths.values())}")
        raise FileNotFoundError(f"task {self.name}: no files for split {split!r}, language {lang!r} under {root}; "
                                "looked for\n  " + "\n  ".join(tried))

    def read(self, root, split: str, lang: str, layout: str | None = None) -> ReadResult:
        """Read one (split, language) of the task from a local folder in one of its layouts.

        For a composite task ``root`` is a folder with one sub-folder per component, or a mapping
        component -> root.
        """
        if split not in self.splits:
            raise KeyError(f"task {self.name} has no split {split!r} (has {list(self.splits)})")
        if lang not in self.split_languages(split):
            raise KeyError(f"task {self.name}: language {lang!r} has no {split} split "
                           f"(languages with one: {self.split_languages(split)})")
        if self.components:
            return self._read_components(root, split, lang)
        name = layout or self.find_layout(root, split, lang)
        lay = self.layout(name)
        opts = dict(lay.options)
        if self.labels is not None:
            opts.setdefault("labels", list(self.labels))
        paths = self.files(root, split, lang, name)
        fn = get_reader(lay.reader)
        if len(paths) == 1 and "file" in paths and glob.has_magic(str(paths["file"])):
            # e.g. UD: every treebank of the language, concatenated in sorted order (as XTREME does)
            matches = _expand(paths["file"])
            if not matches:
                raise FileNotFoundError(f"task {self.name}: no file matches {paths['file']}")
            parts = [fn({"file": m}, src_lang=lang, split=split, **opts) for m in matches]
            merged = ReadResult([e for p in parts for e in p.examples], {k: v for p in parts for k, v in p.files.items()})
            for p in parts:
                for rule, n in p.skipped.items():
                    merged.skipped[rule] = merged.skipped.get(rule, 0) + n
            return merged
        return fn(paths, src_lang=lang, split=split, **opts)

    def _read_components(self, root, split: str, lang: str) -> ReadResult:
        out = ReadResult([], {})
        for comp in self.components:
            part = get_task(comp).read(root[comp] if isinstance(root, Mapping) else Path(root) / comp, split, lang)
            for ex in part.examples:
                ex.guid = f"{comp}/{ex.guid}"
            out.examples.extend(part.examples)
            out.files.update(part.files)
            for rule, n in part.skipped.items():
                out.skipped[f"{comp}: {rule}"] = n
        return out


def _expand(path: Path) -> list[Path]:
    if glob.has_magic(str(path)):
        return [Path(p) for p in sorted(glob.glob(str(path)))]
    return [path] if path.exists() else []


# ---------------------------------------------------------------------- loading


def _strict(cls, data: dict, where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            raise ConfigError(f"{where}: unknown key {k!r}{did_you_mean(k, names)}")
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing}")


def _parse(data: dict, where: str) -> TaskSpec:
    data = dict(data)
    _strict(TaskSpec, {k: v for k, v in data.items()}, where)
    try:
        data["format"] = Format(data["format"])
    except ValueError:
        raise ConfigError(f"{where}: format {data['format']!r} is not one of {[f.value for f in Format]}") from None
    data["benchmarks"] = tuple(data["benchmarks"])
    if data.get("labels") is not None:
        data["labels"] = tuple(data["labels"])
    splits = {}
    for s, spec in (data.get("splits") or {}).items():
        if s not in SPLITS:
            raise ConfigError(f"{where}: unknown split {s!r}{did_you_mean(s, SPLITS)}")
        spec = dict(spec or {})
        _strict(SplitSpec, spec, f"{where} splits.{s}")
        for k in ("languages", "missing"):
            if spec.get(k) is not None:
                spec[k] = tuple(spec[k])
        splits[s] = SplitSpec(**spec)
    data["splits"] = splits
    layouts = []
    for i, lay in enumerate(data.get("layouts") or []):
        _strict(Layout, lay, f"{where} layouts[{i}]")
        layouts.append(Layout(**lay))
    data["components"] = tuple(data.get("components") or ())
    data["train_chain"] = tuple(data.get("train_chain") or ())
    if data["train_chain"] and data["train_chain"][-1] != data.get("train_source"):
        raise ConfigError(f"{where}: train_chain {list(data['train_chain'])} must end with train_source "
                          f"{data.get('train_source')!r} (the stage whose data trains the target last)")
    if data["components"] and layouts:
        raise ConfigError(f"{where}: a composite task (components) reads through its components; it has no layouts")
    if not layouts and not data["components"]:
        raise ConfigError(f"{where}: at least one local layout is required")
    if data.get("hub") is not None:
        _strict(HubSource, data["hub"], f"{where} hub")
        data["hub"] = HubSource(**data["hub"])
        if layouts and not data["hub"].refuse:  # the parquet files `xlrepro data prepare` fetched
            from xlrepro.data.hub import prepared_layout
            layouts.append(prepared_layout(data["name"], data["hub"]))
    data["layouts"] = tuple(layouts)
    if data.get("hub") is not None:
        rev = data["hub"].revision
        if rev is not None and not re.fullmatch(r"[0-9a-f]{40}", str(rev)):
            raise ConfigError(f"{where} hub.revision: expected a 40-hex commit SHA (or null while unpinned), "
                              f"got {rev!r}; `xlrepro data pin --write` resolves and records it")
    check_study_fields(data, where)
    return TaskSpec(**data)


RECIPE_PROTOCOLS = ("jiant", "xtreme_r")  # the protocols a task's ``recipe`` may name
DOMAIN_VALUES = ("in-domain", "shifted")  # a task's ``domain.<benchmark>``


def check_study_fields(data: dict, where: str) -> None:
    """Shape of the registry's ``recipe``, ``train_size`` and ``domain`` blocks. That a recipe's
    keys are training settings (TrainConfig fields) is checked with the config
    (``xlrepro.config_checks.recipe_problems``), which sits above the registry."""
    for proto, rec in (data.get("recipe") or {}).items():
        if proto not in RECIPE_PROTOCOLS:
            raise ConfigError(f"{where}: recipe.{proto}: not one of {list(RECIPE_PROTOCOLS)}"
                              f"{did_you_mean(proto, RECIPE_PROTOCOLS)}")
        if not isinstance(rec, dict) or not isinstance(rec.get("source"), str) or not rec["source"]:
            raise ConfigError(f"{where}: recipe.{proto}: expected a mapping of training settings with a 'source'")
    ts = data.get("train_size")
    if ts:
        n = ts.get("examples") if isinstance(ts, dict) else None
        if not isinstance(n, int) or isinstance(n, bool) or n < 1 or not isinstance(ts.get("source"), str):
            raise ConfigError(f"{where}: train_size: expected {{examples: positive integer, source: text}}, got {ts!r}")
    dom = data.get("domain")
    if dom:
        if not isinstance(dom.get("reason"), str) or not dom["reason"]:
            raise ConfigError(f"{where}: domain: a 'reason' is required")
        for bench, v in dom.items():
            if bench != "reason" and v not in DOMAIN_VALUES:
                raise ConfigError(f"{where}: domain.{bench}: {v!r} is not one of {list(DOMAIN_VALUES)}")


@functools.lru_cache(maxsize=1)
def all_tasks() -> dict[str, TaskSpec]:
    out = {}
    folder = importlib.resources.files("xlrepro.tasks")
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".yaml"):
            continue
        where = f"xlrepro/tasks/{entry.name}"
        try:
            data = yaml.safe_load(entry.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: invalid YAML: {e}") from None
        spec = _parse(data, where)
        if spec.name + ".yaml" != entry.name:
            raise ConfigError(f"{where}: name {spec.name!r} does not match the file name")
        for layout in spec.layouts:
            get_reader(layout.reader)  # unknown readers fail at load time
        out[spec.name] = spec
    for spec in out.values():
        for ref in (spec.train_source, spec.dev_source, *spec.train_chain):
            if ref is not None and ref not in out:
                raise ConfigError(f"xlrepro/tasks/{spec.name}.yaml: train/dev source {ref!r} is not a task"
                                  f"{did_you_mean(ref, out)}")
        for stage in spec.train_chain:
            if "train" not in out[stage].splits or "dev" not in out[stage].splits:
                raise ConfigError(f"xlrepro/tasks/{spec.name}.yaml: train_chain stage {stage!r} needs a train and a "
                                  "dev split (its English dev early-stops that stage)")
        for comp in spec.components:
            where = f"xlrepro/tasks/{spec.name}.yaml: component {comp!r}"
            if comp not in out:
                raise ConfigError(f"{where} is not a task{did_you_mean(comp, out)}")
            c = out[comp]
            if c.components or c.format != spec.format or c.labels != spec.labels:
                raise ConfigError(f"{where} must be a plain task with the same format and labels "
                                  f"(has {c.format.value}, {c.labels}; expected {spec.format.value}, {spec.labels})")
            missing = [s for s in spec.splits if s not in c.splits]
            if missing:
                raise ConfigError(f"{where} has no split(s) {missing}")
    return out


def get_task(name: str) -> TaskSpec:
    tasks = all_tasks()
    if name not in tasks:
        raise KeyError(f"unknown task {name!r}{did_you_mean(name, tasks)}")
    return tasks[name]
