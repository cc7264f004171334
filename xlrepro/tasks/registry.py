"""Tasks as data: ``xlrepro/tasks/<name>.yaml``, one entry per task.

An entry says everything the pipeline needs: format, version, benchmarks, languages (derived
from the language table by the task's column label), per-language split availability, label
set, metric, where its English training data comes from, its Hub source pinned by revision,
and readers for the original local file layouts. Adding a task of an existing format is one
YAML file. Unknown keys are rejected (with a did-you-mean); ``tests/data/test_readers_xtreme.py`` loads
every entry, and the ``tests/data/test_readers_*.py`` files read each task's sample files.

Split names are xlrepro's: ``train``, ``dev``, ``test``. Layout file templates may use
``{lang}`` (ISO 639-1), ``{iso639_3}``, ``{tatoeba}``, ``{ud}``, ``{name_lower}`` (the table's
English name, lower-cased: TyDi QA's ``english``, ``swahili``) and ``{split}``. Readers are
called as ``fn(paths, src_lang=lang, split=split, spec=<this TaskSpec>, **layout.options)`` (the
``hub_parquet`` reader converts rows by the entry; the others ignore ``spec``).

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
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml

from xlrepro import languages as langtab
from xlrepro.data.all_readers import get_reader
from xlrepro.data.hub import prepared_dir
from xlrepro.data.types import Format, ReadResult
from xlrepro.errors import ConfigError, did_you_mean

SPLITS = ("train", "dev", "test")

#: Scorer kinds (``evaluator:``) and the metric keys each one's per-language dict carries. The code
#: dispatches on these values, never on a task's name (docs/tasks.md); no value is a task's name.
EVALUATORS = {
    "accuracy": ("accuracy",),  # label accuracy (classification, multiple choice)
    "tagging_f1": ("f1", "precision", "recall", "token_accuracy"),  # seqeval-style chunk F1 (+ token accuracy)
    "qa_squad": ("f1", "exact_match"),  # SQuAD v1.1 evaluate script
    "qa_mlqa": ("f1", "exact_match"),  # MLQA's evaluate script (language-aware normalisation)
    "qa_squad_v2": ("f1", "exact_match"),  # SQuAD v2.0 script (no-answer questions)
    "bucc_f1": ("f1", "precision", "recall"),  # mined pairs against the gold pairs
    "tatoeba_accuracy": ("accuracy",),  # retrieved line is the query's own
    "mewslix_map": ("map@20",),  # Mewsli-X "map@20" (MRR@20) from ranked entity ids
    "lareqa_map": ("map@20",),  # LAReQA mAP@20 against the pooled candidates (embeddings)
}
#: The submission file of a (task, split, language): its extension, or ``none`` (no per-file metric).
PREDICTION_FILES = ("tsv", "jsonl", "json", "none")
#: Benchmarks that have a scoring block, with the group names of ``evaluate.py``'s GROUP2TASK.
SCRIPT_GROUPS = {
    "xtreme": ("classification", "tagging", "qa", "retrieval"),
    "xtreme_r": ("classification", "tagging", "qa", "retrieval", "multi_choice"),
}
#: The papers' task categories (XTREME Table 1; XTREME-R Table 3).
CATEGORIES = ("classification", "structured", "qa", "retrieval")
#: The headline rule for a name the registry does not know: the first of these a score dict has.
DEFAULT_HEADLINE = ("f1", "accuracy", "map@20")


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
    converter: str | None = None  # rows of a non-bitext retrieval task: "mewslix_mentions" | "lareqa_pool"


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
    # The fields code dispatches on (docs/tasks.md); every YAML file has them (load_task_file checks).
    evaluator: str | None = None  # scorer kind, a key of EVALUATORS
    prediction_file: str | None = None  # submission file extension (PREDICTION_FILES), or none
    headline: tuple[str, ...] = ()  # headline metric(s); the first selects checkpoints and leads summaries
    # benchmark -> {position, groups, group, in_average}: how the benchmark's scorer counts the task
    scoring: dict = field(default_factory=dict)

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
            for l in self.language_column[b] if b == "fixed" else self.languages(b):
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
        base = (
            list(spec.languages)
            if spec.languages is not None
            else self.all_languages()
            if benchmark is None
            else self.languages(benchmark)
        )
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
        raise FileNotFoundError(
            f"task {self.name}: no files for split {split!r}, language {lang!r} under {root}; "
            "looked for\n  " + "\n  ".join(tried)
        )

    def read(self, root, split: str, lang: str, layout: str | None = None) -> ReadResult:
        """Read one (split, language) of the task from a local folder in one of its layouts.

        For a composite task ``root`` is a folder with one sub-folder per component, or a mapping
        component -> root.
        """
        if split not in self.splits:
            raise KeyError(f"task {self.name} has no split {split!r} (has {list(self.splits)})")
        if lang not in self.split_languages(split):
            raise KeyError(
                f"task {self.name}: language {lang!r} has no {split} split "
                f"(languages with one: {self.split_languages(split)})"
            )
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
            parts = [fn({"file": m}, src_lang=lang, split=split, spec=self, **opts) for m in matches]
            merged = ReadResult(
                [e for p in parts for e in p.examples], {k: v for p in parts for k, v in p.files.items()}
            )
            for p in parts:
                for rule, n in p.skipped.items():
                    merged.skipped[rule] = merged.skipped.get(rule, 0) + n
            return merged
        return fn(paths, src_lang=lang, split=split, spec=self, **opts)

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
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data
    ]
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
        raise ConfigError(
            f"{where}: train_chain {list(data['train_chain'])} must end with train_source "
            f"{data.get('train_source')!r} (the stage whose data trains the target last)"
        )
    if data["components"] and layouts:
        raise ConfigError(f"{where}: a composite task (components) reads through its components; it has no layouts")
    if not layouts and not data["components"]:
        raise ConfigError(f"{where}: at least one local layout is required")
    if data.get("hub") is not None:
        _strict(HubSource, data["hub"], f"{where} hub")
        data["hub"] = HubSource(**data["hub"])
        if layouts and not data["hub"].refuse:  # the parquet files `xlrepro data prepare` fetched
            layouts.append(prepared_layout(data["hub"]))
    data["layouts"] = tuple(layouts)
    if data.get("hub") is not None:
        rev = data["hub"].revision
        if rev is not None and not re.fullmatch(r"[0-9a-f]{40}", str(rev)):
            raise ConfigError(
                f"{where} hub.revision: expected a 40-hex commit SHA (or null while unpinned), "
                f"got {rev!r}; `xlrepro data pin --write` resolves and records it"
            )
    _check_dispatch_fields(data, where)
    check_study_fields(data, where)
    return TaskSpec(**data)


HUB_CONVERTERS = ("mewslix_mentions", "lareqa_pool")


def _check_dispatch_fields(data: dict, where: str) -> None:
    """Validate (and normalise in ``data``) the fields code dispatches on where given: ``evaluator``,
    ``prediction_file``, ``headline``, ``scoring``; default ``train_size`` from ``sizes``.
    :func:`load_task_file` also requires them."""
    ev = data.get("evaluator")
    if ev is not None and ev not in EVALUATORS:
        raise ConfigError(
            f"{where}: evaluator: {ev!r} is not one of {list(EVALUATORS)}{did_you_mean(str(ev), EVALUATORS)}"
        )
    pf = data.get("prediction_file")
    if pf is not None and pf not in PREDICTION_FILES:
        raise ConfigError(f"{where}: prediction_file: {pf!r} is not one of {list(PREDICTION_FILES)}")
    head = data.get("headline")
    if head is not None:
        if isinstance(head, str):
            head = [head]
        if not isinstance(head, list) or not head or not all(isinstance(m, str) for m in head):
            raise ConfigError(f"{where}: headline: expected a non-empty list of metric names, got {data['headline']!r}")
        bad = [m for m in head if ev is not None and m not in EVALUATORS[ev]]
        if bad or len(set(head)) != len(head):
            raise ConfigError(
                f"{where}: headline: {head} must be distinct metrics of the evaluator {ev!r} "
                f"(it reports {list(EVALUATORS[ev] if ev is not None else ())})"
            )
        data["headline"] = tuple(head)
    conv = data.get("hub") and data["hub"].converter
    if conv is not None and conv not in HUB_CONVERTERS:
        raise ConfigError(f"{where} hub.converter: {conv!r} is not one of {list(HUB_CONVERTERS)}")
    scoring = dict(data.get("scoring") or {})
    if not isinstance(scoring, dict):
        raise ConfigError(f"{where}: scoring: expected a mapping benchmark -> {{position, groups, group, in_average}}")
    for bench, entry in scoring.items():
        at = f"{where}: scoring.{bench}"
        if bench not in SCRIPT_GROUPS or bench not in data["benchmarks"]:
            raise ConfigError(
                f"{at}: not a scored benchmark of this task (benchmarks {list(data['benchmarks'])}; "
                f"scored benchmarks {list(SCRIPT_GROUPS)})"
            )
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected a mapping {{position, groups, group, in_average}}, got {entry!r}")
        for k in entry:
            if k not in ("position", "groups", "group", "in_average"):
                raise ConfigError(
                    f"{at}: unknown key {k!r}{did_you_mean(k, ('position', 'groups', 'group', 'in_average'))}"
                )
        for k in ("position", "groups", "group", "in_average"):
            if k not in entry:
                raise ConfigError(f"{at}.{k}: missing")
        pos = entry["position"]
        if not isinstance(pos, int) or isinstance(pos, bool) or pos < 1:
            raise ConfigError(
                f"{at}.position: expected a positive integer (the task's place in evaluate.py's task list), got {pos!r}"
            )
        groups = entry["groups"]
        if not isinstance(groups, list) or any(g not in SCRIPT_GROUPS[bench] for g in groups):
            raise ConfigError(f"{at}.groups: expected a list of {list(SCRIPT_GROUPS[bench])}, got {groups!r}")
        if entry["group"] not in CATEGORIES:
            raise ConfigError(f"{at}.group: {entry['group']!r} is not one of {list(CATEGORIES)}")
        if not isinstance(entry["in_average"], bool):
            raise ConfigError(f"{at}.in_average: expected true or false, got {entry['in_average']!r}")
        if entry["in_average"] and pf == "none":
            raise ConfigError(f"{at}.in_average: true needs a per-file metric, but prediction_file is none")
        scoring[bench] = {**entry, "groups": tuple(groups)}
    data["scoring"] = scoring
    ts, train = data.get("train_size"), ((data.get("sizes") or {}).get("train") or {}).get("en")
    if train is not None and not ts:
        data["train_size"] = {"examples": train, "source": data["sizes"].get("source", "sizes.train.en")}
    elif train is not None and isinstance(ts, dict) and ts.get("examples") != train:
        raise ConfigError(
            f"{where}: train_size.examples {ts.get('examples')!r} differs from sizes.train.en "
            f"{train!r}; they are one fact (the English training examples)"
        )


def load_task_file(text: str, where: str, builtin: bool = True) -> TaskSpec:
    """Parse one task YAML file's text (``where`` names it in errors). Unlike :func:`_parse` of a
    bare mapping, a file must give every field code dispatches on: ``evaluator``,
    ``prediction_file``, ``headline`` and, per benchmark with a scorer (xtreme, xtreme_r),
    ``scoring.<benchmark>``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of task fields, got {type(data).__name__}")
    for key in ("evaluator", "prediction_file", "headline"):
        if data.get(key) is None:
            raise ConfigError(f"{where}: {key}: missing (every task file names it; see docs/tasks.md)")
    if not builtin and data.get("scoring"):
        raise ConfigError(
            f"{where}: scoring: a task added from {TASK_DIRS_ENV} is scored per language but is "
            "not one of the official benchmark's tasks (evaluate.py's task order and average); "
            "drop the scoring block"
        )
    for bench in (data.get("benchmarks") or ()) if builtin else ():
        if bench in SCRIPT_GROUPS and bench not in (data.get("scoring") or {}):
            raise ConfigError(
                f"{where}: scoring.{bench}: missing (the task is in benchmark {bench!r}; give its "
                "position, groups, group and in_average)"
            )
    return _parse(data, where)


def prepared_layout(hub: HubSource) -> Layout:
    """The ``hub`` layout of a task with a Hub source: the parquet files ``xlrepro data prepare``
    put under the task folder, read by the ``hub_parquet`` reader."""
    return Layout(name="hub", reader="hub_parquet", files={s: prepared_dir(hub, h) for s, h in hub.splits.items()})


TASK_DIRS_ENV = "XLREPRO_TASK_DIRS"


def extra_task_dirs() -> tuple[str, ...]:
    """Folders of further task YAMLs (``XLREPRO_TASK_DIRS``, separated by ``os.pathsep``): a task
    of an existing format is added by one ``<name>.yaml`` there, without editing the package."""
    import os

    return tuple(d for d in os.environ.get(TASK_DIRS_ENV, "").split(os.pathsep) if d)


RECIPE_PROTOCOLS = ("jiant", "xtreme_r")  # the protocols a task's ``recipe`` may name
DOMAIN_VALUES = ("in-domain", "shifted")  # a task's ``domain.<benchmark>``


def check_study_fields(data: dict, where: str) -> None:
    """Shape of the registry's ``recipe``, ``train_size`` and ``domain`` blocks. That a recipe's
    keys are training settings (TrainConfig fields) is checked with the config
    (``xlrepro.config_checks.recipe_problems``), which sits above the registry."""
    for proto, rec in (data.get("recipe") or {}).items():
        if proto not in RECIPE_PROTOCOLS:
            raise ConfigError(
                f"{where}: recipe.{proto}: not one of {list(RECIPE_PROTOCOLS)}{did_you_mean(proto, RECIPE_PROTOCOLS)}"
            )
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


def all_tasks() -> dict[str, TaskSpec]:
    return _load_tasks(extra_task_dirs())


def _task_files(extra: tuple[str, ...]) -> list[tuple[str, Traversable]]:
    folder = importlib.resources.files("xlrepro.tasks")
    files = [(f"xlrepro/tasks/{e.name}", e) for e in sorted(folder.iterdir(), key=lambda p: p.name)]
    for d in extra:
        if not Path(d).is_dir():
            raise ConfigError(f"{TASK_DIRS_ENV}: {d!r} is not a folder; expected folders of <task>.yaml files")
        files += [(str(p), p) for p in sorted(Path(d).iterdir(), key=lambda p: p.name)]  # not "xlrepro/..."
    return files


@functools.lru_cache(maxsize=4)
def _load_tasks(extra: tuple[str, ...]) -> dict[str, TaskSpec]:
    out: dict[str, TaskSpec] = {}
    for where, entry in _task_files(extra):
        if not entry.name.endswith(".yaml"):
            continue
        spec = load_task_file(entry.read_text(encoding="utf-8"), where, builtin=where.startswith("xlrepro/tasks/"))
        if spec.name + ".yaml" != entry.name:
            raise ConfigError(f"{where}: name {spec.name!r} does not match the file name")
        if spec.name in out:
            raise ConfigError(f"{where}: task {spec.name!r} is already defined (task names are unique)")
        for layout in spec.layouts:
            get_reader(layout.reader)  # unknown readers fail at load time
        out[spec.name] = spec
    for spec in out.values():
        for ref in (spec.train_source, spec.dev_source, *spec.train_chain):
            if ref is not None and ref not in out:
                raise ConfigError(
                    f"xlrepro/tasks/{spec.name}.yaml: train/dev source {ref!r} is not a task{did_you_mean(ref, out)}"
                )
        for stage in spec.train_chain:
            if "train" not in out[stage].splits or "dev" not in out[stage].splits:
                raise ConfigError(
                    f"xlrepro/tasks/{spec.name}.yaml: train_chain stage {stage!r} needs a train and a "
                    "dev split (its English dev early-stops that stage)"
                )
        for comp in spec.components:
            where = f"xlrepro/tasks/{spec.name}.yaml: component {comp!r}"
            if comp not in out:
                raise ConfigError(f"{where} is not a task{did_you_mean(comp, out)}")
            c = out[comp]
            if c.components or c.format != spec.format or c.labels != spec.labels:
                raise ConfigError(
                    f"{where} must be a plain task with the same format and labels "
                    f"(has {c.format.value}, {c.labels}; expected {spec.format.value}, {spec.labels})"
                )
            missing = [s for s in spec.splits if s not in c.splits]
            if missing:
                raise ConfigError(f"{where} has no split(s) {missing}")
    for bench in SCRIPT_GROUPS:
        pos = sorted((s.scoring[bench]["position"], s.name) for s in out.values() if bench in s.scoring)
        if [p for p, _ in pos] != list(range(1, len(pos) + 1)):
            raise ConfigError(
                f"xlrepro/tasks/*.yaml: scoring.{bench}.position: expected 1..{len(pos)}, each once "
                f"(evaluate.py's task order); got {[f'{n}={p}' for p, n in pos]}"
            )
    return out


def get_task(name: str) -> TaskSpec:
    tasks = all_tasks()
    if name not in tasks:
        raise KeyError(f"unknown task {name!r}{did_you_mean(name, tasks)}")
    return tasks[name]


# ---------------------------------------------------------------------- lookups on the dispatch fields


def benchmark_tasks(benchmark: str) -> tuple[str, ...]:
    """The tasks scored in ``benchmark`` (``xtreme`` / ``xtreme_r``), in ``evaluate.py``'s task order."""
    if benchmark not in SCRIPT_GROUPS:
        raise KeyError(f"no scoring for benchmark {benchmark!r}; expected one of {list(SCRIPT_GROUPS)}")
    found = [s for s in all_tasks().values() if benchmark in s.scoring]
    return tuple(s.name for s in sorted(found, key=lambda s: s.scoring[benchmark]["position"]))


def headline_metrics(task: str) -> tuple[str, ...]:
    """The task's headline metric names (``headline:``), first the one that selects and summarises;
    for a name the registry does not know, :data:`DEFAULT_HEADLINE`."""
    spec = all_tasks().get(task)
    return spec.headline if spec is not None else DEFAULT_HEADLINE


def headline_metric(task: str, metrics) -> str | None:
    """The one headline rule: the first of ``task``'s headline metrics among ``metrics`` (names, or a
    score dict's keys); None when there is none. Early stopping on dev, the report's leading column
    and the sweep summaries all use it."""
    have = set(metrics)
    return next((m for m in headline_metrics(task) if m in have), None)


def headline_value(task: str, scores) -> float:
    """``scores[headline_metric(task, scores)]`` as a float; KeyError naming the task when absent."""
    m = headline_metric(task, scores)
    if m is None:
        raise KeyError(f"task {task}: no headline metric {list(headline_metrics(task))} in {sorted(scores)}")
    return float(scores[m])


def train_size(task: str, cfg=None) -> tuple[int, str]:
    """(English training examples, source) of ``task``: the registry's ``train_size``, the sum
    over a composite task's components, or, in the smoke world, ``smoke.n_train`` per task."""
    spec = get_task(task)
    if cfg is not None and getattr(cfg, "smoke", None) is not None:
        k = max(1, len(spec.components))
        return cfg.smoke.n_train * k, f"smoke world: smoke.n_train = {cfg.smoke.n_train} per task"
    if spec.train_size:
        return int(spec.train_size["examples"]), spec.train_size["source"]
    if spec.components:
        parts = [train_size(c) for c in spec.components]
        return sum(n for n, _ in parts), "sum of " + ", ".join(spec.components)
    raise ConfigError(f"task {task!r}: no train_size in xlrepro/tasks/{task}.yaml (needed to check volumes)")
