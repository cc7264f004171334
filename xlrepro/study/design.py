"""The scaling study's design, as code: valid cells, arms, symmetric model selection, recipes.

What ``xlrepro.study.spec.expand`` asks of this module (the pre-registration is
``docs/scaling-study.md``):

* ``train_size``: a task's English training examples from the registry (``train_size:`` in
  ``xlrepro/tasks/<task>.yaml``, with its source), so a spec's volumes are checked before anything
  runs and without data on disk (``check_volumes``).
* Arms (``ARMS``): ``fixed-epochs`` keeps the config's epochs, so the number of updates grows with
  the volume; ``fixed-steps`` gives every volume the same number of optimiser updates
  (``intermediate.train.max_steps``; the training loop cycles through the data as often as needed).
* Model selection (``SELECTIONS``) of the intermediate phase: ``scaled`` validates the same number
  of times at every volume (``eval_schedule``: the interval is the run's step count divided by that
  number, and patience is never reached), ``last`` validates only after the last step (the last
  checkpoint is the one kept); ``config`` keeps the config's fixed interval (not symmetric).
* Recipes (``RECIPE_PROTOCOLS``): the registry's ``recipe:`` per protocol is the source of a
  task's target-phase defaults; precedence registry < spec < command-line override
  (``apply_recipe_layer`` / ``recipe_provenance``).
* Overlap (``overlap``) and domain shift (``domain_shift``) of each intermediate x target cell.
* The dry run (``dry_run_table``) lists every cell and every training inside each run (chain
  stages, the SQuAD encoder of XTREME-R Tatoeba, the dual encoders of LAReQA and Mewsli-X) with
  its GPU-hours.
"""

from __future__ import annotations

import copy
import math

from xlrepro.errors import ConfigError, did_you_mean
from xlrepro.tasks.registry import DOMAIN_VALUES, RECIPE_PROTOCOLS, train_size  # noqa: F401  (the study reads them)

ARMS = ("fixed-epochs", "fixed-steps")
SELECTIONS = ("config", "scaled", "last")


def check_volumes(cells, where: str) -> None:
    """Every cell's intermediate volume must exist: at most the task's training set (``all`` = the
    whole set). One error naming every invalid (task, volume, size), before anything runs."""
    from xlrepro.sampling import split_volume

    bad: list[str] = []
    for c in cells:
        inter = c.cfg.intermediate
        vol = inter.train.volume
        if not inter.tasks or vol == "all":
            continue
        sizes = {t: train_size(t, c.cfg) for t in inter.tasks}
        if inter.volume_scope == "total":
            n = sum(s for s, _ in sizes.values())
            if vol > n:
                bad.append(f"{'+'.join(inter.tasks)}: volume {vol} > {n} training examples in all")
            else:
                split_volume(vol, {t: s for t, (s, _) in sizes.items()})
            continue
        for t, (n, src) in sizes.items():
            if vol > n:
                msg = f"{t}: volume {vol} > {n} training examples ({src})"
                if msg not in bad:
                    bad.append(msg)
    if bad:
        raise ConfigError(
            f"{where}: volumes larger than the training set: "
            + "; ".join(bad)
            + ". Use 'all' for the whole set, or a volume no larger than it."
        )


def check_analysis_controls(spec, cells) -> None:
    """The trained analysis controls (``spec.analysis_controls``) must be able to show what they
    claim: both variants train an intermediate phase at two volumes or more; the negative one on
    shuffled intermediate labels in every cell, the positive one on real labels."""
    bad: list[str] = []
    for role, label in (spec.analysis_controls or {}).items():
        mine = [c for c in cells if c.variant == label]
        if not mine or any(not c.cfg.intermediate.tasks for c in mine):
            bad.append(f"{role} control {label!r} has no intermediate phase")
            continue
        if len({c.volume for c in mine}) < 2:
            bad.append(f"{role} control {label!r} runs one volume; a slope needs two or more")
        shuffled = {c.cfg.intermediate.train.shuffle_labels for c in mine}
        if role == "negative" and shuffled != {True}:
            bad.append(f"negative control {label!r} must set intermediate.train.shuffle_labels=true")
        if role == "positive" and True in shuffled:
            bad.append(f"positive control {label!r} shuffles its intermediate labels")
    if bad:
        raise ConfigError(f"{spec.name}: analysis_controls: " + "; ".join(bad))


# ---------------------------------------------------------------------- arms and model selection


def n_examples(cfg) -> list[int]:
    """Examples per intermediate task of a cell, as its training will use them."""
    from xlrepro.sampling import split_volume

    inter = cfg.intermediate
    sizes = {t: train_size(t, cfg)[0] for t in inter.tasks}
    vol = inter.train.volume
    if vol == "all":
        return list(sizes.values())
    if inter.volume_scope == "total":
        return list(split_volume(vol, sizes).values())
    return [min(vol, n) for n in sizes.values()]


def intermediate_steps(cfg) -> int:
    """Optimiser updates of a cell's intermediate phase (``xlrepro.train.total_steps``). For span QA
    the doc-stride windows make a few more features than examples: the count is then a lower bound."""
    from xlrepro.train import total_steps

    tc = cfg.intermediate.train
    if tc.token_budget and tc.max_steps is None:
        raise ConfigError(
            "selection by validation count needs fixed-size batches or max_steps "
            "(intermediate.train.token_budget plans batches from the data)"
        )
    return total_steps(tc, n_examples(cfg))


def n_validations(n_steps: int, every: int) -> int:
    """How many times ``xlrepro.train.train`` validates: every ``every`` steps and after the last."""
    return n_steps // every + (1 if n_steps % every else 0)


def eval_schedule(n_steps: int, k: int) -> int:
    """The interval at which a run of ``n_steps`` validates exactly ``k`` times."""
    if k < 1:
        raise ConfigError(f"validations: expected a positive integer, got {k}")
    if n_steps < k:
        raise ConfigError(f"{n_steps} optimiser steps cannot hold {k} validations")
    lo = math.ceil(n_steps / k)
    for every in range(lo, n_steps + 1):
        c = n_validations(n_steps, every)
        if c == k:
            return every
        if c < k:
            break
    raise ConfigError(
        f"no fixed interval gives exactly {k} validations in {n_steps} steps "
        f"(try validations <= {max(1, int(math.sqrt(n_steps)))})"
    )


def selection_overrides(spec, cfg) -> tuple[list[str], dict]:
    """Overrides that make a cell's intermediate model selection the spec's, and the record of it."""
    steps = intermediate_steps(cfg) if spec.selection != "config" else None
    if spec.selection == "scaled":
        assert steps is not None
        every = eval_schedule(steps, spec.validations)
        rec = {
            "mode": "scaled",
            "steps": steps,
            "eval_every_steps": every,
            "validations": spec.validations,
            "patience": spec.validations,
        }
        return [f"intermediate.train.eval_every_steps={every}", f"intermediate.train.patience={spec.validations}"], rec
    if spec.selection == "last":
        rec = {"mode": "last", "steps": steps, "eval_every_steps": steps, "validations": 1}
        return [f"intermediate.train.eval_every_steps={steps}"], rec
    tc = cfg.intermediate.train
    return [], {"mode": "config", "eval_every_steps": tc.eval_every_steps, "patience": tc.patience}


# ---------------------------------------------------------------------- recipes


def recipe_for(task: str, protocol: str) -> dict:
    """The registry's training settings of ``task`` under ``protocol`` (no ``source``); {} if none."""
    from xlrepro.tasks import get_task

    rec = (get_task(task).recipe or {}).get(protocol) or {}
    return {k: v for k, v in rec.items() if k != "source"}


def _recipe_slots(data: dict) -> list[tuple[tuple[str, ...], str]]:
    """(path of a per_task mapping in the raw config, task whose recipe fills it)."""
    from xlrepro.dual_encoder import DUAL_ENCODER_TASKS
    from xlrepro.tasks import get_task

    slots: list[tuple[tuple[str, ...], str]] = [
        (("target", "per_task", t), t) for t in (data.get("target") or {}).get("tasks") or []
    ]
    ret = data.get("retrieval") or {}
    bench = ret.get("benchmark", "xtreme")
    for t in ret.get("tasks") or []:
        if t in DUAL_ENCODER_TASKS:
            slots.append((("retrieval", "dual_encoder", "per_task", t), t))
            continue
        by_bench = get_task(t).retrieval.get("encoder") or {}
        source = (ret.get("encoder") or {}).get(t) or (by_bench.get(bench) if isinstance(by_bench, dict) else None)
        if source == "squad_mrc":
            slots.append((("target", "per_task", "squad"), "squad"))
        elif source == "squad_dual_encoder":
            slots.append((("retrieval", "dual_encoder", "per_task", "lareqa"), "lareqa"))
    return slots


def _get(data: dict, path) -> dict:
    node: object = data
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            return {}
    return dict(node) if isinstance(node, dict) else {}


def _put(data: dict, path, value: dict) -> None:
    node = data
    for p in path[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[path[-1]] = value


def apply_recipe_layer(data: dict, protocol: str, apply_spec, apply_override) -> dict:
    """Resolve per-task training settings with precedence registry < spec < override.

    ``data``: the base config (raw YAML mapping), changed in place. ``apply_spec(data)`` and
    ``apply_override(data)`` apply the spec's and the command line's dotted overrides. The
    registry's ``recipe[protocol]`` of each target task (and of the trainings inside retrieval
    runs) replaces the base config's per-task values; a value the spec sets wins over it, a value
    given on the command line wins over both. Returns the provenance of every per-task value
    (``recipe_provenance``)."""
    if protocol not in RECIPE_PROTOCOLS:
        raise ConfigError(
            f"recipe: {protocol!r} is not one of {list(RECIPE_PROTOCOLS)}"
            f"{did_you_mean(str(protocol), RECIPE_PROTOCOLS)}"
        )

    missing = object()
    spec_data = copy.deepcopy(data)
    apply_spec(spec_data)
    base, after_spec = {}, {}
    for path, task in _recipe_slots(spec_data):  # the slots of the targets the spec ends up with
        b, cur = _get(data, path), _get(spec_data, path)
        set_by_spec = {k: v for k, v in cur.items() if b.get(k, missing) != v}
        merged = {**b, **recipe_for(task, protocol), **set_by_spec}
        _put(spec_data, path, merged)
        base[path], after_spec[path] = b, dict(merged)
    apply_override(spec_data)
    final = {}
    for path, task in _recipe_slots(spec_data):
        # a dotted override sets one value; a whole-mapping override keeps what it does not name
        prev = after_spec.get(path) or recipe_for(task, protocol)
        merged = {**prev, **_get(spec_data, path)}
        _put(spec_data, path, merged)
        final[path] = merged
    data.clear()
    data.update(spec_data)
    return recipe_provenance(data, protocol, base, after_spec, final)


def recipe_provenance(data: dict, protocol: str, base: dict, after_spec: dict, final: dict) -> dict:
    """{slot: {task, protocol, source, settings: {name: {value, from}}}}; ``from`` is ``config``
    (the base config, not in the recipe), ``registry``, ``spec`` or ``override`` (command line)."""
    from xlrepro.tasks import get_task

    missing = object()
    out = {}
    for path, task in _recipe_slots(data):
        reg = recipe_for(task, protocol)
        b, s, f = base.get(path, {}), after_spec.get(path, {}), final.get(path, {})
        entry = {}
        for k, v in f.items():
            if s.get(k, missing) != v:
                src = "override"
            elif k in reg and reg[k] == v:
                src = "registry"
            elif k not in reg and b.get(k, missing) == v:
                src = "config"
            else:
                src = "spec"
            entry[k] = {"value": v, "from": src}
        rec = (get_task(task).recipe or {}).get(protocol) or {}
        out[".".join(path)] = {"task": task, "protocol": protocol, "source": rec.get("source"), "settings": entry}
    return out


# ---------------------------------------------------------------------- overlap and domain


def _data_sources(task: str) -> set[str]:
    from xlrepro.tasks import get_task

    spec = get_task(task)
    return set(spec.components) | {task} if spec.components else {task}


def target_training_sources(cfg, target: str) -> set[str]:
    """English training sets a target's result depends on: its training chain, and for retrieval
    the training set of the encoder it reads (XTREME-R Tatoeba: SQuAD; LAReQA: SQuAD; Mewsli-X:
    the Wikipedia pairs)."""
    from xlrepro.dual_encoder import DUAL_ENCODER_TASKS
    from xlrepro.tasks import get_task

    spec = get_task(target)
    out = set(spec.training_chain()) if spec.format.value != "retrieval" else set()
    if target in DUAL_ENCODER_TASKS:
        assert spec.train_source is not None  # lareqa and mewslix name theirs in the registry
        out.add(spec.train_source)
    elif spec.format.value == "retrieval":
        by_bench = spec.retrieval.get("encoder") or {}
        src = cfg.retrieval.encoder.get(target) or (
            by_bench.get(cfg.retrieval.benchmark) if isinstance(by_bench, dict) else None
        )
        if src in ("squad_mrc", "squad_dual_encoder"):
            out.add("squad")
    return out


def overlap(cfg, target: str) -> list[str]:
    """The intermediate tasks' datasets that are (part of) ``target``'s own training data."""
    inter: set[str] = set()
    for t in cfg.intermediate.tasks:
        inter |= _data_sources(t)
    return sorted(inter & target_training_sources(cfg, target))


def domain_shift(task: str, benchmark: str = "xtreme_r") -> dict | None:
    from xlrepro.tasks import get_task

    dom = get_task(task).domain or {}
    if benchmark not in dom:
        return None
    return {"shift": dom[benchmark], "reason": dom.get("reason")}


def cell_design(cfg, benchmark: str = "xtreme_r") -> dict:
    """Per target of a cell: the overlap with the intermediate data and the domain shift."""
    out = {}
    for t in list(cfg.target.tasks) + list(cfg.retrieval.tasks):
        out[t] = {"overlap": overlap(cfg, t), "domain": domain_shift(t, benchmark)}
    return out


# ---------------------------------------------------------------------- the dry run


HIDDEN_KINDS = ("chain", "squad_mrc", "dual_encoder")


def dry_run_table(graph, card: str, mfu: float) -> str:
    """Every cell (variant, arm, volume, seed, model selection, overlap) and every run of the graph
    (chain stages, SQuAD and dual encoders included: ``xlrepro.phases.graph``), each with its GPU-hours."""
    from xlrepro.estimate import CARDS, gpu_hours, param_count

    states = graph.states()
    spec = graph.spec
    lines = [
        f"{spec.name}: {spec.result}",
        f"{len(graph.cells)} cells, {len(graph.nodes)} runs -> {graph.out}",
        "",
        f"{'cell':>5} {'variant':<14} {'arm':<13} {'volume':>8} {'seed':>5} {'selection':<24} overlap",
    ]
    for c in graph.cells:
        sel = c.selection or {}
        s = (
            "-"
            if not sel
            else (
                f"{sel['mode']}: {sel.get('validations', '?')} x every {sel.get('eval_every_steps')}"
                if sel["mode"] != "config"
                else f"config: every {sel.get('eval_every_steps')}"
            )
        )
        ov = ", ".join(f"{t}<-{'+'.join(v['overlap'])}" for t, v in (c.design or {}).items() if v["overlap"]) or "-"
        lines.append(
            f"{c.index:>5} {c.variant:<14} {c.arm or '-':<13} {str(c.volume) if c.volume is not None else '-':>8} "
            f"{c.seed:>5} {s:<24} {ov}"
        )
    lines += [
        "",
        f"{'state':<10} {'kind':<15} {'task':<18} {'arm':<13} {'run folder':<44} {'tokens':>10} {'prec':>5} "
        f"{'GPU-h':>8}",
    ]
    total = remaining = 0.0
    precisions = set()
    for key, node in graph.nodes.items():
        cell = graph.cells[node.cells[0]]
        cfg = cell.cfg
        n = param_count(cfg.model, cfg.smoke.vocab_size if cfg.smoke else None)
        arms = sorted({graph.cells[i].arm or "-" for i in node.cells})
        arm = "/".join(arms)
        tokens = node.phase_node.tokens(cfg)  # the phase's own count (xlrepro.phases)
        prec = node.phase_node.precision(cfg)
        if tokens:
            precisions.add(prec)
        h = gpu_hours(n, tokens, card, mfu, prec)
        total += h
        if states[key] != "done":
            remaining += h
        lines.append(
            f"{states[key]:<10} {node.kind:<15} {node.task:<18} {arm:<13} {node.run_dir:<44} {tokens:>10.3g} "
            f"{prec:>5} {h:>8.2f}"
        )
    counts = {s: list(states.values()).count(s) for s in ("done", "resumable", "pending")}
    c = CARDS[card]
    lines += [
        "",
        f"runs: {counts['done']} done, {counts['resumable']} resumable, {counts['pending']} pending; "
        f"{sum(n.kind in HIDDEN_KINDS for n in graph.nodes.values())} of them trained inside target or retrieval "
        "phases (chain stages, SQuAD and dual encoders)",
        f"estimated GPU-hours: {total:.1f} in all, {remaining:.1f} still to run "
        f"(6 x N x training tokens / (peak x MFU {mfu:g}); {c.name}, dense peak "
        + ", ".join(f"{p.upper()} {c.peak(p):g} TFLOP/s" for p in sorted(precisions or {"fp32"}))
        + f" [{c.source}]; fp32 = CUDA cores, TF32 off; tokens counted at maximum sequence length, "
        "evaluation not counted)",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- power


# Test-set sizes (items per language) of the under-resourced and unseen languages the study cares
# about, from the datasets' own files: UD v2.5 / v2.7 test treebanks (sentences), WikiANN splits of
# Rahimi et al. 2019 (sentences), Tatoeba test pairs (google-research/xtreme), XCOPA test
# (Ponti et al. 2020), TyDiQA-GoldP v1.1 dev (Clark et al. 2020), XNLI test (Conneau et al. 2018).
POWER_TEST_SIZES = {
    ("udpos", "mr"): 47,
    ("udpos", "yo"): 100,
    ("udpos", "te"): 146,
    ("udpos", "wo"): 470,
    ("panx", "jv"): 100,
    ("panx", "my"): 100,
    ("panx", "yo"): 100,
    ("tatoeba", "jv"): 205,
    ("tatoeba", "te"): 234,
    ("tatoeba", "sw"): 390,
    ("tatoeba", "ml"): 687,
    ("xcopa", "ht"): 500,
    ("xcopa", "qu"): 500,
    ("xcopa", "sw"): 500,
    ("tydiqa", "sw"): 499,
    ("tydiqa", "te"): 669,
    ("xnli", "sw"): 5010,
}


def power_table(p: float = 0.5, alpha: float = 0.05, power: float = 0.8, correlation: float = 0.5) -> list[dict]:
    """Per (task, language): test items, the 95% CI half-width of one score, and the minimum
    detectable difference between two systems, unpaired and paired (item scores correlated by
    ``correlation``), in points (``xlrepro.stats``; normal approximation at accuracy ``p``). These
    are item-level bounds for one seed: seed variance comes on top."""
    from xlrepro import stats

    rows = []
    for (task, lang), n in POWER_TEST_SIZES.items():
        rows.append(
            {
                "task": task,
                "language": lang,
                "n": n,
                "ci_half_width": 100 * stats.ci_half_width(n, p, alpha),
                "mde_unpaired": 100 * stats.min_detectable_difference(n, p, alpha, power),
                "mde_paired": 100
                * stats.min_detectable_difference(n, p, alpha, power, paired=True, correlation=correlation),
            }
        )
    return rows


def render_power_table(**kw) -> str:
    """``power_table`` as the Markdown table of docs/scaling-study.md."""
    lines = [
        "| task | language | test items | 95% CI ± | MDE unpaired | MDE paired (ρ = 0.5) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in power_table(**kw):
        lines.append(
            f"| {r['task']} | {r['language']} | {r['n']} | {r['ci_half_width']:.1f} | "
            f"{r['mde_unpaired']:.1f} | {r['mde_paired']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # python -m xlrepro.study.design: the power table of docs/scaling-study.md
    print(render_power_table())
