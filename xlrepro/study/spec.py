"""Experiments as data: one YAML spec per paper result or scaling figure (``xlrepro/experiments/``).

A spec names a base experiment config (``xlrepro/configs/``) and the grid of cells to run::

    name: scaling-xtreme-r
    result: "Extension: score vs. volume of English intermediate data (XTREME-R)"
    kind: scaling                    # table | submission | ablation | scaling
    config: xstilts-squad            # base config; every cell is this config plus overrides
    overrides: ["target.tasks=[xnli, xcopa]"]
    variants:                        # the rows: one labelled set of overrides each
      - {label: baseline, overrides: ["intermediate.tasks=[]"]}
      - {label: mnli, overrides: ["intermediate.tasks=[mnli]"]}
    volumes: [1000, 10000, all]      # intermediate.train.volume (variants without an intermediate task: once)
    seeds: [1, 2, 3]
    baseline: baseline               # the variant paired tests compare against
    paper: [xtreme_test]             # tables of data/paper_numbers.yaml set beside ours

Cells = variants x volumes x seeds; each cell is a full ``ExperimentConfig`` (loaded, typed and
validated like any config). ``xlrepro.sweep`` turns the cells into a graph of runs. Unknown keys
are rejected with a did-you-mean; every shipped spec is validated and expanded by a test.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xlrepro.config import ExperimentConfig, apply_override, from_dict, resolve_config_path, validate
from xlrepro.errors import ConfigError, did_you_mean

KINDS = ("table", "submission", "ablation", "scaling")


@dataclass
class Variant:
    label: str
    overrides: list = field(default_factory=list)
    description: str = ""
    volumes: list | None = None  # this variant's volumes (default: the spec's)


@dataclass
class ExperimentSpec:
    name: str
    result: str  # which result of the paper (or of the extension) this spec reproduces
    kind: str  # one of KINDS
    config: str  # base experiment config: a shipped name or a YAML path
    variants: list = field(default_factory=list)  # list of Variant (mappings in YAML)
    overrides: list = field(default_factory=list)  # dotted overrides for every cell
    volumes: list = field(default_factory=list)  # intermediate.train.volume values; empty = the config's
    seeds: list = field(default_factory=lambda: [1])
    base_seed: int | None = None  # smoke world / pre-training seed shared by every cell (default: each cell's seed)
    baseline: str | None = None  # label of the variant that paired tests compare against
    paper: list = field(default_factory=list)  # ids of tables in data/paper_numbers.yaml
    max_reseeds: int = 2  # collapsed classification fine-tunes re-run with seed + 1000*k (stats.reseed_policy)
    select_on: str = "dev"  # submission: per target, the variant with the best mean on this split
    description: str = ""
    # The scaling study's design (xlrepro.study.design; docs/scaling-study.md):
    arms: list = field(default_factory=lambda: ["fixed-epochs"])  # fixed-epochs | fixed-steps
    fixed_steps: int | None = None  # fixed-steps arm: optimiser updates of every intermediate run
    selection: str = "config"  # intermediate model selection: config | scaled | last
    validations: int = 5  # selection=scaled: validations per intermediate run, at every volume
    recipe: str | None = None  # jiant | xtreme_r: the registry's per-task recipe under the spec's overrides
    # Trained controls of the analysis (scaling specs; xlrepro.study.controls): {positive: label,
    # negative: label} of two variants fitted apart from the primary rows. The positive variant's
    # intermediate data must help (its volume slope is detected); the negative one trains on
    # shuffled intermediate labels (intermediate.train.shuffle_labels=true; its slope's CI covers 0).
    analysis_controls: dict = field(default_factory=dict)


@dataclass
class Cell:
    """One point of the grid: a full experiment config and the labels that place it in the tables."""

    index: int
    variant: str
    volume: int | str | None  # None: no intermediate phase (volume does not apply)
    seed: int
    overrides: list
    cfg: ExperimentConfig
    arm: str | None = None  # fixed-epochs | fixed-steps (None: no intermediate phase)
    selection: dict | None = None  # the intermediate phase's model selection, as scheduled
    design: dict | None = None  # per target: overlap with the intermediate data, domain shift
    recipes: dict | None = None  # resolved per-task settings and where each came from

    @property
    def labels(self) -> dict:
        return {"variant": self.variant, "arm": self.arm, "volume": self.volume, "seed": self.seed}


def shipped_specs() -> dict[str, Path]:
    root = importlib.resources.files("xlrepro").joinpath("experiments")
    return {p.name[:-5]: Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml")}


def resolve_spec_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    shipped = shipped_specs()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise ConfigError(
        f"no experiment spec {name_or_path!r}: not a file and not a shipped spec"
        f"{did_you_mean(name_or_path, shipped)} (shipped: {sorted(shipped)})"
    )


def is_spec(name_or_path: str) -> bool:
    """A shipped spec name, or a YAML file that looks like a spec (``kind`` and ``config`` keys)
    rather than an experiment config (which has ``seed``)."""
    if name_or_path in shipped_specs():
        return True
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml") or not p.is_file():
        return False
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and "kind" in data and "config" in data and "seed" not in data


def parse_spec(data: dict, where: str) -> ExperimentSpec:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at top level")
    try:
        spec = from_dict(ExperimentSpec, data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    variants = []
    for i, v in enumerate(spec.variants):
        if isinstance(v, Variant):
            variants.append(v)
            continue
        try:
            variants.append(
                from_dict(Variant, v, f"variants[{i}]")
                if isinstance(v, dict)
                else _bad(f"variants[{i}]: expected a mapping with label and overrides, got {v!r}")
            )
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    spec.variants = variants or [Variant(label="main")]
    _check(spec, where)
    return spec


def _bad(msg: str):
    raise ConfigError(msg)


def _check(spec: ExperimentSpec, where: str) -> None:
    if spec.kind not in KINDS:
        raise ConfigError(f"{where}: kind: {spec.kind!r} is not one of {list(KINDS)}{did_you_mean(spec.kind, KINDS)}")
    labels = [v.label for v in spec.variants]
    dup = sorted({l for l in labels if labels.count(l) > 1})
    if dup:
        raise ConfigError(f"{where}: variants: duplicate labels {dup}")
    for i, v in enumerate(spec.variants):
        if not isinstance(v.overrides, list) or not all(isinstance(o, str) and "=" in o for o in v.overrides):
            raise ConfigError(
                f"{where}: variants[{i}] ({v.label}).overrides: expected a list of key.path=value strings"
            )
    if not all(isinstance(o, str) and "=" in o for o in spec.overrides):
        raise ConfigError(f"{where}: overrides: expected a list of key.path=value strings")
    for name, vols in [("volumes", spec.volumes)] + [
        (f"variants[{i}] ({x.label}).volumes", x.volumes or []) for i, x in enumerate(spec.variants)
    ]:
        if not isinstance(vols, list):
            raise ConfigError(f"{where}: {name}: expected a list of positive integers or 'all', got {vols!r}")
        for v in vols:
            if not ((isinstance(v, int) and not isinstance(v, bool) and v > 0) or v == "all"):
                raise ConfigError(f"{where}: {name}: {v!r} is not a positive integer or 'all'")
    if not spec.seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in spec.seeds):
        raise ConfigError(f"{where}: seeds: expected a non-empty list of non-negative integers, got {spec.seeds!r}")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise ConfigError(f"{where}: seeds: repeated seeds in {spec.seeds}")
    if spec.baseline is not None and spec.baseline not in labels:
        raise ConfigError(
            f"{where}: baseline: {spec.baseline!r} is not a variant label{did_you_mean(spec.baseline, labels)}"
        )
    ctl = spec.analysis_controls
    if not isinstance(ctl, dict) or any(k not in ("positive", "negative") for k in ctl):
        raise ConfigError(
            f"{where}: analysis_controls: expected a mapping with the keys positive and/or negative "
            f"(variant labels), got {ctl!r}"
        )
    if ctl and spec.kind != "scaling":
        raise ConfigError(f"{where}: analysis_controls: only a scaling spec fits a volume slope (kind is {spec.kind})")
    for k, label in ctl.items():
        if label not in labels:
            raise ConfigError(
                f"{where}: analysis_controls.{k}: {label!r} is not a variant label{did_you_mean(str(label), labels)}"
            )
        if label == spec.baseline:
            raise ConfigError(f"{where}: analysis_controls.{k}: {label!r} is the baseline; a control needs volumes")
    if len(set(ctl.values())) != len(ctl):
        raise ConfigError(f"{where}: analysis_controls: the positive and negative controls must be different variants")
    if spec.kind == "scaling" and not spec.volumes:
        raise ConfigError(f"{where}: a scaling spec needs volumes")
    from xlrepro.study.design import ARMS, RECIPE_PROTOCOLS, SELECTIONS

    if not spec.arms or any(a not in ARMS for a in spec.arms) or len(set(spec.arms)) != len(spec.arms):
        raise ConfigError(
            f"{where}: arms: expected a non-empty list of distinct arms from {list(ARMS)}, got {spec.arms!r}"
        )
    if "fixed-steps" in spec.arms and not (isinstance(spec.fixed_steps, int) and spec.fixed_steps > 0):
        raise ConfigError(
            f"{where}: fixed_steps: the fixed-steps arm needs a positive number of optimiser steps, "
            f"got {spec.fixed_steps!r}"
        )
    if spec.selection not in SELECTIONS:
        raise ConfigError(
            f"{where}: selection: {spec.selection!r} is not one of {list(SELECTIONS)}"
            f"{did_you_mean(spec.selection, SELECTIONS)}"
        )
    if not (isinstance(spec.validations, int) and spec.validations >= 1):
        raise ConfigError(f"{where}: validations: expected a positive integer, got {spec.validations!r}")
    if spec.recipe is not None and spec.recipe not in RECIPE_PROTOCOLS:
        raise ConfigError(
            f"{where}: recipe: {spec.recipe!r} is not one of {list(RECIPE_PROTOCOLS)}"
            f"{did_you_mean(spec.recipe, RECIPE_PROTOCOLS)}"
        )
    if spec.select_on not in ("dev", "test"):
        raise ConfigError(f"{where}: select_on: expected 'dev' or 'test', got {spec.select_on!r}")
    from xlrepro.paper import load_paper_numbers

    tables = load_paper_numbers()["tables"]
    for t in spec.paper:
        if t not in tables:
            raise ConfigError(f"{where}: paper: no table {t!r} in paper_numbers.yaml{did_you_mean(t, tables)}")
    resolve_config_path(spec.config)  # raises with the shipped names when missing


def load_spec(name_or_path: str) -> ExperimentSpec:
    path = resolve_spec_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    return parse_spec(data, str(path))


def load_cell_config(
    base: str,
    overrides: list[str],
    where: str,
    recipe: str | None = None,
    late: list[str] | tuple = (),
    provenance: dict | None = None,
) -> ExperimentConfig:
    """A cell's config: the base config, ``overrides`` (the spec's), then ``late`` (the command
    line's). With ``recipe`` the registry's per-task recipe sits under the spec's overrides
    (``xlrepro.study.design.apply_recipe_layer``; ``provenance`` receives where each setting came from)."""
    path = resolve_config_path(base)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    try:
        if recipe is None:
            for o in list(overrides) + list(late):
                apply_override(data, o)
        else:
            from xlrepro.study.design import apply_recipe_layer

            def spec_layer(d: dict) -> None:
                for o in overrides:
                    apply_override(d, o)

            def late_layer(d: dict) -> None:
                for o in late:
                    apply_override(d, o)

            prov = apply_recipe_layer(data, recipe, spec_layer, late_layer)
            if provenance is not None:
                provenance.update(prov)
        cfg = from_dict(ExperimentConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    validate(cfg, where)
    return cfg


def expand(spec: ExperimentSpec, extra_overrides: list[str] | tuple = ()) -> list[Cell]:
    """The cells of a spec, in a stable order (variant, arm, volume, seed). A variant without an
    intermediate phase is run once per seed (volume and arm None); cells with identical resolved
    configs are kept once (the first label wins). Every volume is checked against the task's
    training size before anything runs (``xlrepro.study.design.check_volumes``); the intermediate phase's
    model selection is scheduled per cell (``spec.selection``), and each cell records its arm,
    selection, per-target overlap and domain shift, and resolved recipe."""
    from xlrepro.config import config_hash
    from xlrepro.study import design as study

    cells: list[Cell] = []
    seen: set[str] = set()
    extra = list(extra_overrides)

    def load(over, where, prov=None):
        return load_cell_config(spec.config, over, where, spec.recipe, extra, prov)

    for v in spec.variants:
        base_over = list(spec.overrides) + list(v.overrides)
        probe = load(base_over + [f"seed={spec.seeds[0]}"], f"{spec.name}: variant {v.label}")
        has_inter = bool(probe.intermediate.tasks)
        wanted = v.volumes if v.volumes is not None else spec.volumes
        volumes: list = [None] if not has_inter or not wanted else list(wanted)
        arms: list = list(spec.arms) if has_inter else [None]
        for arm, vol, seed in itertools.product(arms, volumes, spec.seeds):
            over = base_over + [f"seed={seed}"]
            if spec.base_seed is not None:
                over.append(f"base_seed={spec.base_seed}")
            if vol is not None:
                over.append(f"intermediate.train.volume={vol}")
            if arm == "fixed-steps":
                over.append(f"intermediate.train.max_steps={spec.fixed_steps}")
            where = f"{spec.name}: variant {v.label}, {arm or 'no intermediate'}, volume {vol}, seed {seed}"
            prov: dict = {}
            cfg = load(over, where, prov)
            selection = None
            if cfg.intermediate.tasks:
                try:
                    sel_over, selection = study.selection_overrides(spec, cfg)
                except ConfigError as e:
                    raise ConfigError(f"{where}: selection {spec.selection}: {e}") from None
                if sel_over:
                    over = over + sel_over
                    cfg = load(over, where)
            h = config_hash(dataclasses.replace(cfg, name="", description=""))
            if h in seen:
                continue
            seen.add(h)
            label_volume = (
                vol if vol is not None else (None if not cfg.intermediate.tasks else cfg.intermediate.train.volume)
            )
            cells.append(
                Cell(
                    len(cells),
                    v.label,
                    label_volume,
                    seed,
                    over,
                    cfg,
                    arm=arm,
                    selection=selection,
                    design=study.cell_design(cfg, cfg.retrieval.benchmark),
                    recipes=prov or None,
                )
            )
    study.check_volumes(cells, spec.name)
    study.check_analysis_controls(spec, cells)
    return cells
