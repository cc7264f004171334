"""The research question in miniature: intermediate training minus the no-intermediate baseline.

For every task of an experiment that ran both a target run (after the intermediate phase) and a
baseline run (the same fine-tuning from the pre-trained encoder; ``controls:`` in the config), the
test-split difference intermediate − baseline per resource group (``xlrepro.languages``), with a
paired item-bootstrap 95% CI and p (``xlrepro.stats``) over the items of the group's
languages, pooled: both runs are scored on the same test items (``xlrepro.items``).

Chance level of a task (``chance_level``) comes from the registry: 1 / number of labels for
classification, 1 / number of choices for multiple choice. F1 (tagging, QA) and retrieval scores
have no useful chance line (it is about 0), so none is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

N_BOOT = 1000
CHANCE_NOTE = "no chance line for F1, QA and retrieval scores (chance ≈ 0)"


def chance_level(task: str) -> float | None:
    """Chance score of ``task`` in points (0-100), or None where it is about 0 (F1, QA, retrieval)."""
    from xlrepro.tasks import get_task

    try:
        spec = get_task(task)
    except KeyError:
        return None
    fmt = spec.format.value
    if fmt == "classification" and spec.labels:
        return 100.0 / len(spec.labels)
    if fmt == "multiple_choice" and spec.num_choices:
        return 100.0 / spec.num_choices
    return None


def _run_dirs(results: Mapping, out_dir: Path, kind: str) -> dict[str, Path]:
    return {
        info["task"]: Path(out_dir) / "runs" / Path(info["dir"]).name
        for info in results.get("runs", {}).values()
        if info.get("kind") == kind and "task" in info
    }


def contrast(results: Mapping, out_dir: str | Path, split: str = "test") -> list[dict]:
    """Rows {task, group, languages, n, intermediate, baseline, diff, low, high, p_value, kind} for
    every task with a target and a baseline run and item scores for both."""
    import numpy as np

    from xlrepro import languages as langtab, stats
    from xlrepro.items import load_items
    from xlrepro.stats import GROUP_ORDER

    targets, baselines = _run_dirs(results, Path(out_dir), "target"), _run_dirs(results, Path(out_dir), "baseline")
    rows = []
    for task in sorted(set(targets) & set(baselines)):
        a_items, b_items = load_items(targets[task]), load_items(baselines[task])
        by_group: dict[str, list[str]] = {}
        for key in sorted(set(a_items) & set(b_items)):
            sp, lang = key.split("/", 1)
            a, b = a_items[key], b_items[key]
            if sp != split or a["kind"] != b["kind"] or len(a["scores"]) != len(b["scores"]):
                continue
            try:
                group = langtab.get(lang).resource_group
            except KeyError:
                continue
            by_group.setdefault(group, []).append(lang)
        order = [g for g in GROUP_ORDER if g in by_group] + sorted(g for g in by_group if g not in GROUP_ORDER)
        for group in order:
            langs = by_group[group]
            pa = [a_items[f"{split}/{l}"] for l in langs]
            pb = [b_items[f"{split}/{l}"] for l in langs]
            kind = pa[0]["kind"]
            if kind == "ratio":  # corpus-level F1 from [correct, predicted, gold] counts
                ca = np.concatenate([np.asarray(e["scores"], float) for e in pa])
                cb = np.concatenate([np.asarray(e["scores"], float) for e in pb])

                def f1(c):
                    s = c.sum(axis=0)
                    return 0.0 if s[1] + s[2] == 0 else 200 * s[0] / (s[1] + s[2])

                def diff(idx: np.ndarray, ca: np.ndarray = ca, cb: np.ndarray = cb) -> float:
                    return f1(ca[idx]) - f1(cb[idx])

                res = stats.paired_bootstrap_statistic(len(ca), diff, n_boot=N_BOOT, seed=0)
                sa, sb = f1(ca), f1(cb)
            else:
                xa = np.concatenate([np.asarray(e["scores"], float) for e in pa])
                xb = np.concatenate([np.asarray(e["scores"], float) for e in pb])
                res = stats.paired_bootstrap(xa.tolist(), xb.tolist(), n_boot=N_BOOT, seed=0)
                sa, sb = float(xa.mean()), float(xb.mean())
            rows.append(
                {
                    "task": task,
                    "group": group,
                    "languages": langs,
                    "n": res["n"],
                    "intermediate": sa,
                    "baseline": sb,
                    "diff": res["diff"],
                    "low": res["low"],
                    "high": res["high"],
                    "p_value": res["p_value"],
                    "kind": kind,
                    "chance": chance_level(task),
                }
            )
    return rows


def section(rows: list[dict]) -> list[str]:
    """The report's Markdown section of ``contrast`` rows (empty without rows)."""
    if not rows:
        return []
    L = [
        "## Intermediate training minus the no-intermediate baseline",
        "",
        "The research question in miniature: the same target fine-tuning started from the intermediate model "
        "and from the pre-trained encoder (the baseline run). Per resource group (`xlrepro.languages`), the test "
        f"items of the group's languages pooled; 95% CI and p from a paired item bootstrap ({N_BOOT} resamples; "
        "both runs scored on the same items). A CI that spans 0 cannot tell the two apart. "
        f"Chance from the task registry (1/labels, 1/choices); {CHANCE_NOTE}.",
        "",
        "| task | group (languages) | items | intermediate | baseline | difference | 95% CI | p | chance |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        chance = "—" if r["chance"] is None else f"{r['chance']:.1f}"
        L.append(
            f"| {r['task']} | {r['group']} ({' '.join(r['languages'])}) | {r['n']} | {r['intermediate']:.1f} | "
            f"{r['baseline']:.1f} | {r['diff']:+.1f} | [{r['low']:+.1f}, {r['high']:+.1f}] | "
            f"{r['p_value']:.3f} | {chance} |"
        )
    return L + [""]
