"""The reproduction report of a sweep, from its finished runs only (``xlrepro report <dir>``).

For every ``sweep-<name>.json`` in the folder: collect the records of finished target, control
and retrieval runs (re-seeded runs replace collapsed ones, as ``reseeds.jsonl`` decided), then

* the paper's tables beside ours (``data/paper_numbers.yaml``): difference and a pass/deviation
  mark; unknown paper numbers stay visible as "no reference";
* per task, variant and volume: the seed mean ± sd and item-bootstrap 95% CIs (``stats``);
  paired bootstrap tests against the baseline on the same test items, Holm-corrected over the
  language x task cells, and a plain "cannot tell" where the CI is wider than the difference;
* scaling curves (score vs. log volume) with a log-linear fit and its bootstrap slope CI, per
  task and per resource group (Joshi class <= 2, and the XLM-R-unseen ht/qu/wo/yo, never pooled);
* for scaling specs, the pre-registered mixed model per arm, with and without the re-seeded runs
  (``xlrepro.study.primary``), and its positive and negative controls (``xlrepro.study.controls``);
* per-language heatmaps (chance marked where the task has one); and a provenance section
  (commits, image digests, data digests and revisions, hardware).

Writes ``<dir>/report-<name>/report.md``, ``report.html``, the PNGs and ``analysis.json``.
"""

from __future__ import annotations

import collections
import html
import json
import math
import re
from pathlib import Path

import numpy as np

from xlrepro import stats
from xlrepro.contrast import CHANCE_NOTE, chance_level
from xlrepro.items import load_items, statistic
from xlrepro.paper import load_paper_numbers, mark, paper_languages
from xlrepro.runs import atomic_write_json, atomic_write_text, tmp_path
from xlrepro.tasks.registry import benchmark_tasks, headline_metric, headline_metrics

MAIN = {"accuracy", "f1", "map@20"}
N_BOOT = 1000


def _main_metric(task: str, metrics: set) -> str | None:
    return headline_metric(task, metrics)


def _fmt(v, nd: int = 1) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def _vol_label(v) -> str:
    return "—" if v is None else str(v)


# ---------------------------------------------------------------------- collection


def collect(out: Path, desc: dict, attempts: str = "accepted") -> dict:
    """Finished runs' records with their cell labels. ``attempts``: ``accepted`` applies the re-seed
    replacements; ``first`` keeps every fine-tune's first attempt (collapsed or not); ``no-reseeded``
    leaves out every (cell, task) that was re-seeded (``xlrepro.study.primary``)."""
    reseeds: dict[tuple, dict] = {}
    path = out / "reseeds.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                e = json.loads(line)
                reseeds[(e["cell"], e["task"])] = e  # the last decision wins
    nodes = desc["nodes"]
    records, runs, missing, collapsed = [], {}, [], []
    for cell in desc["cells"]:
        for key in cell["runs"]:
            node = nodes[key]
            if node["kind"] not in ("target", "control", "retrieval"):
                continue
            run_dir = out / node["run_dir"]
            decision = reseeds.get((cell["index"], node["task"])) if node["kind"] == "target" else None
            note = None
            if decision is not None and attempts != "accepted":
                if decision.get("attempt", 0) > 0 and attempts == "no-reseeded":
                    continue
                decision = None  # the node's own run: the first attempt
            if decision is not None:
                if decision["action"] == "accept":
                    run_dir = out / decision["run_dir"]
                    note = f"re-seeded: seed {decision['seed']} accepted after {decision['attempt']} re-seed(s)"
                elif decision["action"] == "give-up":
                    note = f"collapsed ({decision['reason']}); re-seed budget spent, kept and flagged"
                    collapsed.append({"cell": cell["index"], "task": node["task"], "reason": decision["reason"]})
            if not (run_dir / "done.json").exists() or not (run_dir / "results.json").exists():
                missing.append(node["run_dir"])
                continue
            res = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
            rid = run_dir.name
            runs[rid] = {"dir": run_dir, "kind": node["kind"], "task": node["task"], "note": note}
            for r in res["records"]:
                records.append(
                    {
                        **r,
                        "phase": node["kind"],
                        "variant": _row_label(cell),
                        "volume": cell["volume"],
                        "seed": cell["seed"],
                        "intermediate": cell["intermediate"],
                        "cell": cell["index"],
                        "run": rid,
                        "upstream": node["upstream"],
                        **_design_fields(cell, node["task"]),
                    }
                )
    return {"records": records, "runs": runs, "missing": sorted(set(missing)), "collapsed": collapsed}


def _row_label(cell: dict) -> str:
    """The report's row of a cell: its variant, and ``@fixed-steps`` for the fixed-steps arm, so
    the two arms give two curves (fixed epochs, the default arm, keeps the plain label)."""
    arm = cell.get("arm")
    return cell["variant"] + (f"@{arm}" if arm not in (None, "fixed-epochs") else "")


def _design_fields(cell: dict, task: str) -> dict:
    """Arm, overlap with the intermediate data, domain shift and resolved recipe of a record."""
    design = (cell.get("design") or {}).get(task) or {}
    recipe = next((r for r in (cell.get("recipes") or {}).values() if r.get("task") == task), None)
    return {
        "arm": cell.get("arm"),
        "overlap": design.get("overlap") or [],
        "domain": design.get("domain"),
        "recipe": {k: v["value"] for k, v in recipe["settings"].items()} if recipe else None,
        "recipe_source": recipe.get("source") if recipe else None,
    }


def _items_for(runs: dict, rid: str, split: str, lang: str, rec: dict) -> dict | None:
    items = load_items(runs[rid]["dir"])  # retrieval runs have items too (items.RETRIEVAL_ITEM_TASKS)
    entry = items.get(f"{split}/{lang}")
    if entry is not None:
        return entry
    if rec["metric"] == "accuracy" and rec.get("n"):  # 0/1 items are determined by n and the accuracy
        n = int(rec["n"])
        k = int(round(rec["value"] * n / 100.0))
        return {"kind": "binary", "scores": [100.0] * k + [0.0] * (n - k), "unpaired": True}
    return None


# ---------------------------------------------------------------------- analysis


def _intermediate_volumes(out: Path, desc: dict) -> dict[int, float]:
    """Cell index -> intermediate examples actually used (from the intermediate run's done.json)."""
    vols = {}
    for cell in desc["cells"]:
        for key in cell["runs"]:
            node = desc["nodes"][key]
            if node["kind"] == "intermediate":
                done = out / node["run_dir"] / "done.json"
                if done.exists():
                    info = json.loads(done.read_text()).get("tasks", {})
                    vols[cell["index"]] = float(sum(t.get("n_examples", 0) for t in info.values()))
    return vols


def analyse(out: Path, desc: dict, spec) -> dict:
    col = collect(out, desc)
    recs, runs = col["records"], col["runs"]
    test = [r for r in recs if r["split"] == "test" and r["phase"] in ("target", "retrieval")]
    main = {}
    for (task, _phase), rs in _group(test, lambda r: (r["task"], r["phase"])).items():
        m = _main_metric(task, {r["metric"] for r in rs})
        if m:
            main[task] = m
    # (task, variant, volume) -> language -> seed -> record
    rows: dict[tuple, dict[str, dict[int, dict]]] = collections.defaultdict(lambda: collections.defaultdict(dict))
    cell_ids: dict[tuple, set] = collections.defaultdict(set)
    for r in test:
        if r["metric"] == main.get(r["task"]):
            rows[(r["task"], r["variant"], r["volume"])][r["language"]][r["seed"]] = r
            cell_ids[(r["task"], r["variant"], r["volume"])].add(r["cell"])
    # per-language summaries with item CIs
    cells = []
    no_items: dict[str, set] = collections.defaultdict(set)  # task -> runs without item scores (no CI)
    for (task, variant, volume), by_lang in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], str(kv[0][2]))):
        langs = {}
        for lang, by_seed in sorted(by_lang.items()):
            vals = [r["value"] for r in by_seed.values()]
            cis = []
            for seed, r in by_seed.items():
                entry = _items_for(runs, r["run"], "test", lang, r)
                if entry is None:
                    no_items[task].add(r["run"])
                if entry is not None and len(entry["scores"]) > 1:
                    x, f = statistic(entry)
                    ci = stats.bootstrap_ci(list(range(len(x))), n_boot=N_BOOT, seed=seed, statistic=_as_index(f))
                    cis.append(ci["half_width"])
            langs[lang] = {
                "seeds": stats.seed_summary(vals),
                "ci_half_width": float(np.mean(cis)) if cis else None,
                "n": int(next(iter(by_seed.values())).get("n", 0)),
            }
        seed_means = collections.defaultdict(list)
        for by_seed in by_lang.values():
            for seed, r in by_seed.items():
                seed_means[seed].append(r["value"])
        complete = {s: float(np.mean(v)) for s, v in seed_means.items() if len(v) == len(by_lang)}
        groups: dict[str, dict] = {}
        for seed in complete:
            g = stats.group_means({l: by_lang[l][seed]["value"] for l in by_lang if seed in by_lang[l]})
            for name, v in g["means"].items():
                groups.setdefault(name, {"languages": g["languages"][name], "by_seed": {}})["by_seed"][seed] = v
        cells.append(
            {
                "task": task,
                "variant": variant,
                "volume": volume,
                "metric": main[task],
                "languages": langs,
                "cell_indices": sorted(cell_ids[(task, variant, volume)]),
                "mean_by_seed": complete,
                "mean": stats.seed_summary(list(complete.values())) if complete else None,
                "groups": groups,
            }
        )
    paired = _paired_tests(rows, runs, spec)
    volumes = _intermediate_volumes(out, desc)
    scaling = _scaling(cells, volumes, spec)
    comparison = _paper_comparison(recs, spec, desc)
    primary_fits, controls = _primary(out, desc, spec, recs, main, volumes)
    return {
        "cells": cells,
        "paired": paired,
        "scaling": scaling,
        "comparison": comparison,
        "primary": primary_fits,
        "controls": controls,
        "missing": col["missing"],
        "collapsed": col["collapsed"],
        "runs": runs,
        "records": recs,
        "main": main,
        "no_item_runs": {t: sorted(v) for t, v in sorted(no_items.items())},
        "design": _design_rows(test),
        "collapse_by_volume": collapse_by_volume(out, desc),
    }


def _primary(out: Path, desc: dict, spec, recs: list, main: dict, volumes: dict) -> tuple[dict, dict]:
    """The pre-registered mixed model per arm, with and without the re-seeded runs, and the analysis
    controls on this sweep's design (scaling specs only)."""
    if spec.kind != "scaling":
        return {}, {}
    from xlrepro.study import controls, primary

    by_attempt = {
        "accepted": recs,
        "first": collect(out, desc, "first")["records"],
        "no-reseeded": collect(out, desc, "no-reseeded")["records"],
    }
    arms = list(getattr(spec, "arms", None) or ["fixed-epochs"])
    trained = dict(getattr(spec, "analysis_controls", None) or {})
    apart = list(trained.values())
    fits = primary.analyse(by_attempt, main, volumes, arms, apart)
    arm = "fixed-steps" if "fixed-steps" in arms else arms[0]
    design = primary.model_rows(recs, main, volumes, apart)["rows"].get(arm, [])
    return fits, {**controls.run(design, arm), "trained": controls.trained(recs, main, volumes, arms, trained)}


def collapse_by_volume(out: Path, desc: dict) -> dict:
    """Share of classification / multiple-choice fine-tunes whose first attempt collapsed, per
    intermediate volume and arm (from ``reseeds.jsonl``): re-seeding keeps survivors, so a rate that
    changes with volume biases the curves."""
    path = out / "reseeds.jsonl"
    if not path.exists():
        return {}
    cells = {c["index"]: c for c in desc["cells"]}
    first: dict[tuple, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            e = json.loads(line)
            if len(e["seeds_tried"]) == 1 and e["cell"] in cells:
                first.setdefault((e["cell"], e["task"]), e)
    entries = [
        {"volume": f"{_row_label(cells[c])} @ {cells[c]['volume']}", "collapsed": e["action"] != "accept"}
        for (c, _), e in first.items()
    ]
    return stats.collapse_rate_by_volume(entries)


def _design_rows(test: list[dict]) -> list[dict]:
    """Per (task, row): the arm, the overlap with the intermediate data, the domain shift and the
    resolved training recipe of the target, as recorded with the results."""
    out = {}
    for r in test:
        key = (r["task"], r["variant"])
        if key not in out:
            out[key] = {
                "task": r["task"],
                "variant": r["variant"],
                "arm": r.get("arm"),
                "overlap": r.get("overlap") or [],
                "domain": r.get("domain"),
                "recipe": r.get("recipe"),
                "recipe_source": r.get("recipe_source"),
            }
    return [out[k] for k in sorted(out)]


def _design_section(rows: list[dict]) -> list[str]:
    """Overlapping cells (intermediate data = part of the target's training data), domain shift
    and resolved recipes; empty for sweeps without these records (specs without the study fields)."""
    if not any(r["overlap"] or r["domain"] or r["recipe"] for r in rows):
        return []
    L = [
        "## Design: arms, overlap, domain shift, recipes",
        "",
        "Rows marked *overlap* train the intermediate phase on (part of) the target's own training data; "
        "their volume effect is extra in-task training, so they are reported and analysed apart.",
        "",
        "| task | row | arm | overlap | domain | recipe |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        dom = f"{r['domain']['shift']}" if r["domain"] else "—"
        rec = ", ".join(f"{k} {v}" for k, v in sorted((r["recipe"] or {}).items())) or "—"
        L.append(
            f"| {r['task']} | {r['variant']} | {r['arm'] or '—'} | "
            f"{'*overlap*: ' + ', '.join(r['overlap']) if r['overlap'] else '—'} | {dom} | {rec} |"
        )
    return L + [""]


def _as_index(f):
    """bootstrap_ci resamples the item positions 0..n-1 (as floats); f scores the drawn items."""
    return lambda pos: f(np.asarray(pos).astype(int))


def _group(items, key):
    out = collections.defaultdict(list)
    for x in items:
        out[key(x)].append(x)
    return out


def _paired_tests(rows, runs, spec) -> list[dict]:
    """Each (task, variant, volume, language) against the baseline, items paired by seed."""
    if spec.baseline is None:
        return []
    tests = []
    for (task, variant, volume), by_lang in rows.items():
        if variant == spec.baseline:
            continue
        base = next((v for (t, vv, _), v in rows.items() if t == task and vv == spec.baseline), None)
        if base is None:
            continue
        for lang, by_seed in by_lang.items():
            pairs = []
            for seed, r in by_seed.items():
                b = base.get(lang, {}).get(seed)
                if b is None:
                    continue
                ea, eb = _items_for(runs, r["run"], "test", lang, r), _items_for(runs, b["run"], "test", lang, b)
                if (
                    ea is None
                    or eb is None
                    or ea.get("unpaired")
                    or eb.get("unpaired")
                    or len(ea["scores"]) != len(eb["scores"])
                    or ea["kind"] != eb["kind"]
                ):
                    continue
                pairs.append((ea, eb))
            if not pairs:
                continue
            if pairs[0][0]["kind"] == "ratio":
                xa = [statistic(a)[0] for a, _ in pairs]
                xb = [statistic(b)[0] for _, b in pairs]
                offsets = np.cumsum([0] + [len(x) for x in xa])
                ca, cb = np.concatenate(xa), np.concatenate(xb)

                def diff(idx, ca=ca, cb=cb, offsets=offsets):  # mean over seeds of F1(a) - F1(b)
                    out = []
                    for s in range(len(offsets) - 1):
                        sel = idx[(idx >= offsets[s]) & (idx < offsets[s + 1])]
                        if sel.size == 0:
                            continue
                        sa, sb = ca[sel].sum(axis=0), cb[sel].sum(axis=0)
                        fa = 0.0 if sa[1] + sa[2] == 0 else 200 * sa[0] / (sa[1] + sa[2])
                        fb = 0.0 if sb[1] + sb[2] == 0 else 200 * sb[0] / (sb[1] + sb[2])
                        out.append(fa - fb)
                    return float(np.mean(out))

                res = stats.paired_bootstrap_statistic(int(offsets[-1]), diff, n_boot=N_BOOT, seed=0)
            else:
                a = np.concatenate([np.asarray(x["scores"], float) for x, _ in pairs])
                b = np.concatenate([np.asarray(y["scores"], float) for _, y in pairs])
                res = stats.paired_bootstrap(a.tolist(), b.tolist(), n_boot=N_BOOT, seed=0)
            tests.append(
                {
                    "task": task,
                    "variant": variant,
                    "volume": volume,
                    "language": lang,
                    "n_seeds": len(pairs),
                    **res,
                    "cannot_tell": stats.underpowered(res["half_width"], res["diff"]),
                }
            )
    for group in _group(tests, lambda t: (t["variant"], str(t["volume"]))).values():
        adj = stats.holm({i: t["p_value"] for i, t in enumerate(group)})
        for i, t in enumerate(group):
            t["p_holm"] = adj[i]
    return tests


def _scaling(cells, volumes_by_cell, spec) -> list[dict]:
    """Log-linear fits of score on log10(intermediate examples): overall and per resource group."""
    if spec.kind != "scaling":
        return []
    return _fits(cells, volumes_by_cell)


def _numeric_volume(cell_volume, fallback):
    if isinstance(cell_volume, int):
        return float(cell_volume)
    return fallback


def _fits(cells, volumes_by_cell) -> list[dict]:
    fits = []
    by = _group([c for c in cells if c["volume"] is not None], lambda c: (c["task"], c["variant"]))
    for (task, variant), cs in by.items():
        series: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        for c in cs:
            vol = _numeric_volume(c["volume"], None)
            if vol is None:  # "all": the examples the intermediate runs really used
                used = [volumes_by_cell[i] for i in c["cell_indices"] if i in volumes_by_cell]
                vol = float(np.mean(used)) if used else None
            if vol is None:
                continue
            for v in c["mean_by_seed"].values():
                series["all languages"].append((vol, v))
            for g, gd in c["groups"].items():
                for v in gd["by_seed"].values():
                    series[g].append((vol, v))
        for group, pts in series.items():
            vols = [p[0] for p in pts]
            entry = {"task": task, "variant": variant, "group": group, "points": pts}
            if len(set(vols)) >= 2 and len(pts) >= 3:
                entry["fit"] = stats.fit_log_linear(vols, [p[1] for p in pts], seed=0, n_boot=N_BOOT)
            else:
                entry["fit"] = None
            fits.append(entry)
    return fits


def _task_average(
    recs, task, variant_filter, split, metric, language=None, languages=None, missing: set | None = None
) -> float | None:
    """Seed mean of the uniform language mean of one task and metric (None if not run).
    ``languages``: average over these only (a paper table's set); those without a record are
    added to ``missing``."""
    by_seed = collections.defaultdict(list)
    seen = set()
    for r in recs:
        if (
            r["task"] == task
            and r["split"] == split
            and r["metric"] == metric
            and variant_filter(r)
            and r["phase"] in ("target", "retrieval")
            and (language is None or r["language"] == language)
            and (languages is None or r["language"] in languages)
        ):
            by_seed[r["seed"]].append(r["value"])
            seen.add(r["language"])
    if languages is not None and missing is not None and by_seed:
        missing.update(l for l in languages if l not in seen)
    if not by_seed:
        return None
    return float(np.mean([np.mean(v) for v in by_seed.values()]))


def _best_variant(recs, task, metric, split) -> str | None:
    scores = {}
    for v in {r["variant"] for r in recs if r["task"] == task}:
        s = _task_average(recs, task, lambda r, v=v: r["variant"] == v, split, metric)
        if s is not None:
            scores[v] = s
    return max(scores, key=lambda v: scores[v]) if scores else None


def _paper_comparison(recs, spec, desc) -> list[dict]:
    tables = load_paper_numbers()["tables"]
    out = []
    for tid in spec.paper:
        t = tables[tid]
        rows = []
        for e in t["entries"]:
            our_row = t["rows"][e["system"]]
            missing: set[str]
            ours, chosen, missing = None, None, set()
            if e["task"] == "xtreme_score":
                ours = _xtreme_score(recs, our_row, spec, t["split"], t.get("benchmark"), missing)
            else:
                variant = our_row
                if our_row == "best":
                    variant = _best_variant(recs, e["task"], e["metric"], spec.select_on)
                    chosen = variant
                langs = None if e.get("language") else paper_languages(t.get("benchmark"), e["task"], t["split"])
                if variant is not None:
                    ours = _task_average(
                        recs,
                        e["task"],
                        lambda r, v=variant: r["variant"] == v,
                        t["split"],
                        e["metric"],
                        e.get("language"),
                        langs,
                        missing,
                    )
            if missing:  # the mean is over fewer languages than the paper's: say which are absent
                miss = sorted(missing)
                e = {
                    **e,
                    "missing_languages": miss,
                    "note": "; ".join(
                        filter(
                            None, [e.get("note"), f"ours lacks {len(miss)} of the paper's languages: {', '.join(miss)}"]
                        )
                    ),
                }
            rows.append(
                {
                    **e,
                    "our_row": our_row,
                    "chosen": chosen,
                    "ours": ours,
                    "diff": None if ours is None or e["value"] is None else ours - e["value"],
                    "mark": mark(ours, e),
                }
            )
        out.append({"id": tid, "title": t["title"], "split": t["split"], "rows": rows, "smoke_table": t["smoke"]})
    return out


def _xtreme_score(recs, our_row, spec, split, benchmark=None, missing: set | None = None) -> float | None:
    vals = []
    for task in benchmark_tasks("xtreme"):  # the registry's XTREME tasks, evaluate.py's order
        metric = headline_metrics(task)[0]
        variant = _best_variant(recs, task, metric, spec.select_on) if our_row == "best" else our_row
        if variant is None:
            return None
        f = lambda r, v=variant: r["variant"] == v
        langs = paper_languages(benchmark, task, split)
        lacking: set[str] = set()
        s = _task_average(recs, task, f, split, metric, languages=langs, missing=lacking)
        if s is None:
            return None
        if missing is not None:
            missing.update(f"{task}:{l}" for l in lacking)
        if "exact_match" in headline_metrics(task):  # QA: the paper's score is the mean of F1 and EM
            em = _task_average(recs, task, f, split, "exact_match", languages=langs)
            if em is None:
                return None
            s = (s + em) / 2
        vals.append(s)
    return float(np.mean(vals))


# ---------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    tmp = tmp_path(path)
    fig.savefig(tmp, dpi=100, format="png")
    tmp.replace(path)


def scaling_figure(fits, cells, task, folder: Path, baseline: str | None, by_group: bool) -> str | None:
    """Score vs. log volume per intermediate variant: one panel (all languages), or one panel per
    resource group. Points: seed mean ± sd; line: log-linear fit; band: its slope's 95% CI."""
    plt = _plt()
    sel = [f for f in fits if f["task"] == task and ((f["group"] != "all languages") == by_group)]
    if not sel:
        return None
    groups = list(dict.fromkeys(f["group"] for f in sel))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups) + 1, 4), squeeze=False, sharey=True)
    variants = sorted({f["variant"] for f in sel})
    for ax, group in zip(axes[0], groups):
        for f in [f for f in sel if f["group"] == group]:
            color = f"C{variants.index(f['variant']) % 10}"
            pts = collections.defaultdict(list)
            for v, y in f["points"]:
                pts[v].append(y)
            xs = sorted(pts)
            ax.errorbar(
                xs,
                [np.mean(pts[x]) for x in xs],
                yerr=[np.std(pts[x]) for x in xs],
                fmt="o",
                color=color,
                capsize=3,
                label=f["variant"],
            )
            fit = f["fit"]
            if fit:
                grid = np.linspace(np.log10(min(xs)), np.log10(max(xs)), 50)
                xm = float(np.mean(np.log10([p[0] for p in f["points"]])))
                ym = fit["intercept"] + fit["slope"] * xm
                ax.plot(10**grid, fit["intercept"] + fit["slope"] * grid, "-", color=color, lw=1)
                lo, hi = ym + fit["slope_low"] * (grid - xm), ym + fit["slope_high"] * (grid - xm)
                ax.fill_between(10**grid, np.minimum(lo, hi), np.maximum(lo, hi), color=color, alpha=0.15)
        if baseline:
            base = [c for c in cells if c["task"] == task and c["variant"] == baseline and c["mean"]]
            if base and group == "all languages":
                ax.axhline(base[0]["mean"]["mean"], color="k", ls="--", lw=1, label=f"{baseline} (no intermediate)")
            elif base:
                vals = [v for s, v in base[0]["groups"].get(group, {}).get("by_seed", {}).items()]
                if vals:
                    ax.axhline(float(np.mean(vals)), color="k", ls="--", lw=1, label=f"{baseline} (no intermediate)")
        chance = chance_level(task)
        if chance is not None:
            ax.axhline(chance, color="grey", ls=":", lw=1, label="chance (1/labels, 1/choices)")
        else:
            ax.plot([], [], " ", label=CHANCE_NOTE)
        langs: list = next(
            (c["groups"][group]["languages"] for c in cells if c["task"] == task and group in c["groups"]), []
        )
        ax.set_title(group + (f" ({' '.join(langs)})" if langs else ""), fontsize="small")
        ax.set_xscale("log")
        ax.set_xlabel("English intermediate examples (log)")
        ax.legend(fontsize="x-small")
    axes[0][0].set_ylabel(f"{task} test score (seed mean ± sd)")
    fig.suptitle(
        f"{task}: score vs. intermediate volume"
        + (" per resource group" if by_group else "")
        + " — line: log-linear fit; band: 95% CI of its slope",
        fontsize="small",
    )
    fig.tight_layout()
    name = f"scaling-{task}{'-groups' if by_group else ''}.png"
    _save(fig, folder / name)
    plt.close(fig)
    return name


def heatmap_figure(cells, task, folder: Path) -> str | None:
    plt = _plt()
    cs = [c for c in cells if c["task"] == task]
    if not cs:
        return None
    langs = sorted({l for c in cs for l in c["languages"]}, key=lambda l: (l != "en", l))
    rows = [f"{c['variant']} @ {_vol_label(c['volume'])}" for c in cs]
    m = np.array([[c["languages"].get(l, {}).get("seeds", {}).get("mean", np.nan) for l in langs] for c in cs])
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(langs), 1.0 + 0.35 * len(rows)))
    im = ax.imshow(m, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(rows)), rows, fontsize="small")
    for i in range(len(rows)):
        for j in range(len(langs)):
            if np.isfinite(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.1f}", ha="center", va="center", fontsize=7, color="w")
    chance = chance_level(task)
    bar = fig.colorbar(
        im, ax=ax, label="test score (seed mean)" + ("; red: chance" if chance is not None else f"; {CHANCE_NOTE}")
    )
    if chance is not None:
        bar.ax.axhline(chance, color="r", lw=2)
    ax.set_title(f"{task}: per-language test scores")
    fig.tight_layout()
    name = f"heatmap-{task}.png"
    _save(fig, folder / name)
    plt.close(fig)
    return name


# ---------------------------------------------------------------------- rendering


def render(desc: dict, spec, a: dict, figures: dict, provenance: dict) -> str:
    L = [f"# xlrepro reproduction report: {desc['spec']}", "", f"**Result:** {spec.result}", ""]
    if desc.get("smoke_scale"):
        L += [
            "> **Smoke scale.** A tiny XLM-R-shaped model on the generated smoke world; its languages are",
            "> synthetic stand-ins named after real ones. These numbers test the machinery (runs, curves,",
            "> statistics, tables); they are not the paper's numbers and not the scaling study's.",
            "",
        ]
    n_runs = len(desc["nodes"])
    L += [
        f"Spec kind `{spec.kind}` · {len(desc['cells'])} cells · {n_runs} runs in the graph · "
        f"{len(a['runs'])} finished evaluation runs used · seeds {spec.seeds}",
        "",
    ]
    if a["missing"]:
        L += [
            f"**Incomplete:** {len(a['missing'])} evaluation runs have not finished and are left out "
            f"(this report uses finished runs only): "
            + ", ".join(f"`{m}`" for m in a["missing"][:10])
            + (" …" if len(a["missing"]) > 10 else ""),
            "",
        ]
    L += _design_section(a.get("design") or [])
    if a.get("primary"):
        from xlrepro.study import controls, primary

        L += primary.section(a["primary"], a.get("collapse_by_volume"))
        L += controls.section(a.get("controls") or {})
    if a.get("collapse_by_volume"):
        L += [
            "## Collapse rate per volume",
            "",
            "First attempts of classification / multiple-choice fine-tunes "
            "that collapsed to one class (then re-seeded); compare across volumes before reading the curves.",
            "",
            "| row @ volume | fine-tunes | collapsed | rate |",
            "|---|---|---|---|",
        ]
        L += [f"| {v} | {d['runs']} | {d['collapsed']} | {d['rate']:.2f} |" for v, d in a["collapse_by_volume"].items()]
        L.append("")
    # paper comparison
    L += [
        "## The paper's numbers beside ours",
        "",
        "Mark: **pass** = within the tolerance, **deviation** = outside it, *no reference* = the paper's number "
        "is not known (a gap, kept visible), *not run* = no finished run of ours. Tags: C checked, S secondary, "
        "R recalled (unverified), D derived.",
        "",
    ]
    for t in a["comparison"]:
        L += [f"### {t['title']} ({t['split']})", ""]
        if t["smoke_table"]:
            L += ["*Smoke orientation values, not published numbers.*", ""]
        L += [
            "| paper system | our row | task | metric | lang | paper | tag | source | ours | diff | tol | mark |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in t["rows"]:
            row = r["our_row"] + (f" → {r['chosen']}" if r["chosen"] else "")
            L.append(
                f"| {r['system']} | {row} | {r['task']} | {r['metric']} | {r.get('language') or 'mean'} | "
                f"{_fmt(r['value'])} | {r['tag'] or '—'} | {r['source'] or '—'} | {_fmt(r['ours'])} | "
                f"{_fmt(r['diff'])} | {_fmt(r['tolerance'])} | {r['mark']} |"
            )
        counts = collections.Counter(r["mark"] for r in t["rows"])
        L += ["", "Marks: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + "."]
        notes = [r for r in t["rows"] if r.get("note") and r["value"] is not None]
        L += [f"- {r['system']} {r['task']} {r['metric']}: {r['note']}" for r in notes]
        if any(r["chosen"] for r in t["rows"]):
            L.append(
                f"- `best → X`: per target, the variant with the best mean on the {spec.select_on} split; "
                "its score on this table's split is shown."
            )
        L.append("")
    # per task tables
    L += [
        "## Scores per task, variant and volume (test split)",
        "",
        "Per language: seed mean ± sd (n seeds), and ± the item-bootstrap 95% CI half-width (mean over seeds; "
        f"{N_BOOT} resamples of the test items). `n` = test items. Language means are uniform over languages.",
        "",
    ]
    for task, cs in _group(a["cells"], lambda c: c["task"]).items():
        langs = sorted({l for c in cs for l in c["languages"]}, key=lambda l: (l != "en", l))
        L += [f"### {task} ({cs[0]['metric']})", ""]
        L.append("| variant | volume | mean | " + " | ".join(langs) + " |")
        L.append("|---|---|---|" + "---|" * len(langs))
        for c in cs:
            cells_txt = []
            for l in langs:
                d = c["languages"].get(l)
                if not d:
                    cells_txt.append("—")
                    continue
                s = d["seeds"]
                sd = f" ± {s['sd']:.1f}" if s["sd"] is not None else ""
                ci = f" [CI ±{d['ci_half_width']:.1f}]" if d["ci_half_width"] is not None else ""
                cells_txt.append(f"{s['mean']:.1f}{sd} ({s['n']}){ci}")
            m = c["mean"]
            L.append(
                f"| {c['variant']} | {_vol_label(c['volume'])} | "
                f"{_fmt(m['mean']) if m else '—'}{' ± ' + _fmt(m['sd']) if m and m['sd'] is not None else ''} | "
                + " | ".join(cells_txt)
                + " |"
            )
        if a.get("no_item_runs", {}).get(task):
            n_runs = len(a["no_item_runs"][task])
            L += [
                "",
                f"{task}: {n_runs} run(s) have no item-level scores (no per-item file, e.g. finished before "
                "this task exported one), so their numbers have no bootstrap CI and no paired test against the "
                "baseline (seed spread only).",
            ]
        ns = {l: d["n"] for c in cs for l, d in c["languages"].items()}
        small = {l: n for l, n in ns.items() if n and stats.ci_half_width(n) * 100 > 5}
        L += ["", f"Test items per language: {', '.join(f'{l} {n}' for l, n in sorted(ns.items()))}."]
        if small:
            by_n = _group(sorted(small.items()), lambda kv: kv[1])
            L.append(
                "**Test sets too small to tell small differences** (normal approximation for an accuracy near 50%; "
                "paired tests on the same items do better): "
                + "; ".join(
                    f"{', '.join(l for l, _ in ls)} (n={n}): ±{stats.ci_half_width(n) * 100:.1f} points, "
                    f"unpaired detectable difference {stats.min_detectable_difference(n) * 100:.1f} points"
                    for n, ls in sorted(by_n.items())
                )
                + "."
            )
        L.append("")
        if task in figures.get("heatmaps", {}):
            L += [f"![{task} per-language heatmap]({figures['heatmaps'][task]})", ""]
    # paired tests
    if a["paired"]:
        L += [
            "## Paired tests against the baseline",
            "",
            f"Paired item bootstrap ({N_BOOT} resamples; items paired by seed: variant seed s vs. baseline seed s on "
            "the same test items); p-values Holm-corrected over the language × task cells of each variant and volume. "
            "**cannot tell** = the 95% CI of the difference is wider than the difference itself.",
            "",
            "| task | variant | volume | lang | seeds | diff | 95% CI | p | p (Holm) | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t in sorted(a["paired"], key=lambda t: (t["task"], t["variant"], str(t["volume"]), t["language"])):
            verdict = (
                "cannot tell" if t["cannot_tell"] else ("significant" if t["p_holm"] <= 0.05 else "not significant")
            )
            L.append(
                f"| {t['task']} | {t['variant']} | {_vol_label(t['volume'])} | {t['language']} | {t['n_seeds']} | "
                f"{t['diff']:+.1f} | [{t['low']:+.1f}, {t['high']:+.1f}] | {t['p_value']:.3f} | "
                f"{t['p_holm']:.3f} | {verdict} |"
            )
        n_ct = sum(t["cannot_tell"] for t in a["paired"])
        L += [
            "",
            f"{n_ct} of {len(a['paired'])} comparisons cannot be told apart from no difference with these "
            "test sets and seeds.",
            "",
        ]
    # scaling
    if a["scaling"]:
        L += [
            "## Scaling: score vs. intermediate volume",
            "",
            "Fit: score = a + b · log10(examples) by least squares over (volume, seed) points; the slope's 95% CI "
            f"from {N_BOOT} bootstrap resamples of the points. "
            "Resource groups follow `xlrepro.languages` (docs/scaling-study.md): "
            "under-resourced = Joshi class ≤ 2 and seen by XLM-R; unseen = ht, qu, wo, yo (never pooled).",
            "",
            "| task | variant | group | points | slope b (points per 10×) | 95% CI | R² | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for f in a["scaling"]:
            fit = f["fit"]
            if fit is None:
                L.append(
                    f"| {f['task']} | {f['variant']} | {f['group']} | {len(f['points'])} | — | — | — | too few points |"
                )
                continue
            verdict = (
                "rises" if fit["slope_low"] > 0 else "falls" if fit["slope_high"] < 0 else "cannot tell (CI spans 0)"
            )
            L.append(
                f"| {f['task']} | {f['variant']} | {f['group']} | {len(f['points'])} | {fit['slope']:+.2f} | "
                f"[{fit['slope_low']:+.2f}, {fit['slope_high']:+.2f}] | {fit['r2']:.2f} | {verdict} |"
            )
        L.append("")
        for task, names in figures.get("scaling", {}).items():
            for n in names:
                L += [f"![{task} scaling]({n})", ""]
    if a["collapsed"]:
        L += ["## Collapsed fine-tunes", "", "Runs that stayed collapsed after the re-seed budget (kept, flagged):", ""]
        L += [f"- cell {c['cell']}, {c['task']}: {c['reason']}" for c in a["collapsed"]] + [""]
    L += provenance_lines(provenance)
    return "\n".join(L) + "\n"


def provenance_of(a: dict) -> dict:
    commits, images, hardware, versions = set(), set(), set(), set()
    data: dict[tuple, set] = {}
    for run in a["runs"].values():
        p = run["dir"] / "provenance.json"
        if not p.exists():
            continue
        prov = json.loads(p.read_text())
        commits.add(f"{(prov.get('git_commit') or 'unknown')[:12]}{' (dirty)' if prov.get('git_dirty') else ''}")
        img = prov.get("image") or {}
        images.add(img.get("digest") or "none (not run in the image)")
        gpu = (prov.get("gpu") or {}).get("name", "no GPU")
        hardware.add(f"{prov.get('cpu')} ({prov.get('cpu_count')} cores); {gpu}")
        v = prov.get("versions", {})
        versions.add(
            f"xlrepro {v.get('xlrepro')}, torch {v.get('torch')}, transformers {v.get('transformers')}, "
            f"python {prov.get('python')}"
        )
    for r in a["records"]:
        if r.get("data_sha256"):
            data.setdefault((r["task"], r["split"], r["language"]), set()).add(r["data_sha256"][:12])
    from xlrepro.tasks import get_task

    revisions = {}
    for task in {r["task"] for r in a["records"]}:
        hub = get_task(task).hub
        revisions[task] = f"{hub.repo}@{hub.revision or 'unpinned'}" if hub else "local files only"
    return {
        "commits": sorted(commits),
        "images": sorted(images),
        "hardware": sorted(hardware),
        "versions": sorted(versions),
        "data": {f"{k[0]}/{k[1]}/{k[2]}": sorted(v) for k, v in sorted(data.items())},
        "revisions": revisions,
    }


def provenance_lines(p: dict) -> list[str]:
    L = ["## Provenance", ""]
    L.append(f"- code commits of the runs: {', '.join(p['commits']) or 'unknown'}")
    L.append(f"- image digests: {', '.join(p['images']) or 'unknown'}")
    L.append(f"- hardware: {'; '.join(p['hardware']) or 'unknown'}")
    L.append(f"- software: {'; '.join(p['versions']) or 'unknown'}")
    L.append(
        "- data revisions (Hub id@revision; the local files are identified by their digests below): "
        + ", ".join(f"{t} {r}" for t, r in sorted(p["revisions"].items()))
    )
    digests = sorted({d for v in p["data"].values() for d in v})
    conflicting = [k for k, v in p["data"].items() if len(v) > 1]
    L.append(
        f"- data file digests: {len(digests)} distinct over {len(p['data'])} task/split/language cells"
        + (
            f"; **different data for the same cell in different runs:** {', '.join(conflicting)}"
            if conflicting
            else "; every run read identical data for each cell"
        )
    )
    L.append(
        "- every run folder holds `spec.json` (resolved spec), `log.jsonl`, `done.json`, `provenance.json`; "
        "`sweep-log.jsonl` records every start, finish, skip and re-seed decision"
    )
    return L + [""]


def to_html(md: str, title: str) -> str:
    """A small Markdown subset (headings, tables, images, lists, quotes, paragraphs) as HTML."""
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:75em;margin:2em auto}table{border-collapse:collapse;"
        "font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}blockquote{background:#fff3cd;"
        "padding:.5em 1em;border-left:4px solid #e0a800}img{max-width:100%}</style></head><body>",
    ]

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        s = re.sub(r"`(.+?)`", r"<code>\1</code>", s)
        return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", s)

    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in rows[0]) + "</tr>")
            for r in rows[2:]:
                out.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>")
            out.append("</table>")
            continue
        elif line.startswith("!["):
            m = re.match(r"!\[(.*?)\]\((.*?)\)", line)
            if m:
                out.append(f"<p><img alt='{html.escape(m.group(1))}' src='{html.escape(m.group(2))}'></p>")
        elif line.startswith("> "):
            quote = []
            while i < len(lines) and lines[i].startswith("> "):
                quote.append(inline(lines[i][2:]))
                i += 1
            out.append("<blockquote>" + " ".join(quote) + "</blockquote>")
            continue
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            out.append("</ul>")
            continue
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
        i += 1
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _jsonable(a: dict) -> dict:
    return {k: v for k, v in a.items() if k not in ("runs", "records")} | {
        "runs": {k: {**v, "dir": str(v["dir"])} for k, v in a["runs"].items()}
    }


def write_sweep_csv(out: Path, desc: dict, spec, a: dict, folder: Path) -> Path:
    """``<folder>/results.csv``: one row per task x language x split x metric x run (``xlrepro.report.CSV_COLUMNS``),
    with the run's spec hash and seed (a re-seeded run: its own seed) and the cell config's hash."""
    from xlrepro import languages as langtab
    from xlrepro.config import config_hash
    from xlrepro.report import csv_rows, write_csv
    from xlrepro.study.spec import load_cell_config

    key_of = {Path(n["run_dir"]).name: k for k, n in desc["nodes"].items()}
    cell_hash = {
        c["index"]: config_hash(load_cell_config(spec.config, c["overrides"], f"{spec.name}: cell {c['index']}"))
        for c in desc["cells"]
    }
    seeds = {}
    for rid, info in a["runs"].items():
        path = Path(info["dir"]) / "spec.json"
        seeds[rid] = json.loads(path.read_text(encoding="utf-8")).get("seed") if path.exists() else None
    recs = []
    for r in a["records"]:
        try:
            group = langtab.get(r["language"]).resource_group
        except KeyError:
            group = None
        recs.append(
            {
                **r,
                "experiment": desc["spec"],
                "run_hash": key_of.get(r["run"], r["run"].rsplit("-", 1)[-1]),
                "config_hash": cell_hash.get(r["cell"]),
                "seed": r.get("seed") if seeds.get(r["run"]) is None else seeds[r["run"]],
                "resource_group": r.get("resource_group") or group,
            }
        )
    return write_csv(csv_rows(recs), folder / "results.csv")


def build_report(out_dir: str | Path) -> list[Path]:
    """Reports for every sweep in ``out_dir`` (``sweep-<name>.json``); returns the Markdown paths."""
    import yaml

    from xlrepro.study.spec import parse_spec, resolve_spec_path

    out = Path(out_dir)
    sweeps = sorted(out.glob("sweep-*.json"))
    if not sweeps:
        raise FileNotFoundError(f"{out}: no sweep-<name>.json here: run `xlrepro reproduce <result> --out {out}` first")
    paths = []
    for sp in sweeps:
        desc = json.loads(sp.read_text(encoding="utf-8"))
        ref = desc.get("spec_ref") or desc["spec"]
        spec_path = resolve_spec_path(ref)
        spec = parse_spec(yaml.safe_load(spec_path.read_text(encoding="utf-8")), str(spec_path))
        a = analyse(out, desc, spec)
        folder = out / f"report-{desc['spec']}"
        folder.mkdir(parents=True, exist_ok=True)
        figures: dict = {"heatmaps": {}, "scaling": {}}
        for task in sorted({c["task"] for c in a["cells"]}):
            h = heatmap_figure(a["cells"], task, folder)
            if h:
                figures["heatmaps"][task] = h
            if a["scaling"]:
                names = [
                    n
                    for n in (
                        scaling_figure(a["scaling"], a["cells"], task, folder, spec.baseline, False),
                        scaling_figure(a["scaling"], a["cells"], task, folder, spec.baseline, True),
                    )
                    if n
                ]
                figures["scaling"][task] = names
        prov = provenance_of(a)
        md = render(desc, spec, a, figures, prov)
        atomic_write_text(folder / "report.md", md)
        atomic_write_text(folder / "report.html", to_html(md, f"xlrepro report: {desc['spec']}"))
        atomic_write_json(
            folder / "analysis.json",
            {**_jsonable(a), "provenance": prov, "figures": figures, "smoke_scale": desc.get("smoke_scale", False)},
        )
        write_sweep_csv(out, desc, spec, a, folder)  # per-language tables as CSV
        paths.append(folder / "report.md")
    return paths
