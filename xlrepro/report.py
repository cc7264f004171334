"""Render ``results.json`` as ``report.md`` (a table per task x language) and a plot.

The report uses finished runs' records only. Every number says its split and metric mode;
aggregates name their rule. Smoke-world reports say that they are smoke-scale and that their
languages are generated stand-ins named after real ones.
"""
from __future__ import annotations

import collections
from pathlib import Path

from xlrepro.runs import atomic_write_text

PRIMARY = {"accuracy", "f1", "exact_match"}


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def tables(records: list[dict]) -> dict:
    """{(task, phase): {split: {language: {metric: value}}}}."""
    out = collections.defaultdict(lambda: collections.defaultdict(lambda: collections.defaultdict(dict)))
    for r in records:
        out[(r["task"], r["phase"])][r["split"]][r["language"]][r["metric"]] = r["value"]
    return out


def write_plot(records: list[dict], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in records if r["split"] == "test" and r["metric"] in ("accuracy", "f1")
            and not (r["task"] in ("xquad", "mlqa", "tydiqa") and r["metric"] != "f1")]
    if not rows:
        return False
    groups = collections.OrderedDict()
    for r in rows:
        groups.setdefault(f"{r['task']}{' (control)' if r['phase'] == 'control' else ''}", {})[r["language"]] = r["value"]
    langs = sorted({r["language"] for r in rows}, key=lambda l: (l != "en", l))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) * len(langs) / 3), 4))
    width = 0.8 / max(1, len(langs))
    for j, lang in enumerate(langs):
        xs = [i + j * width for i in range(len(groups))]
        ax.bar(xs, [g.get(lang, 0) for g in groups.values()], width, label=lang)
    ax.set_xticks([i + width * (len(langs) - 1) / 2 for i in range(len(groups))])
    ax.set_xticklabels(list(groups), rotation=20, ha="right")
    ax.set_ylabel("test score (accuracy or F1, 0-100)")
    ax.set_ylim(0, 100)
    ax.legend(title="language", ncol=len(langs), fontsize="small")
    ax.set_title("zero-shot test scores by task and language")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return True


def render(results: dict, plot_name: str | None) -> str:
    recs = results["records"]
    prov = results["provenance"]
    lines = [f"# xlrepro report: {results['experiment']}", ""]
    if results.get("smoke_scale"):
        lines += ["> **Smoke scale.** A tiny XLM-R-shaped model on a generated world: the languages are synthetic",
                  "> stand-ins named after real ones. These numbers test the pipeline; they are not the paper's.", ""]
    lines += [f"Config hash `{results['config_hash'][:12]}` · seed {results['seed']} · metric mode "
              f"`{results['metric_mode']}` · git `{(prov.get('git_commit') or 'unknown')[:12]}`"
              f"{' (dirty)' if prov.get('git_dirty') else ''}", ""]
    for (task, phase), splits in sorted(tables(recs).items()):
        title = f"## {task}" + (" — negative control (shuffled training labels)" if phase == "control" else "")
        lines += [title, ""]
        chain = next((r.get("train_chain") for r in recs if r["task"] == task and r["phase"] == phase
                      and r.get("train_chain")), None)
        if chain:
            lines += [f"English training: {' → '.join(chain)}" + (" (one model, stage after stage)" if len(chain) > 1
                                                                   else ""), ""]
        for split, by_lang in sorted(splits.items()):
            metrics = sorted({m for v in by_lang.values() for m in v}, key=lambda m: (m not in PRIMARY, m))
            langs = sorted(by_lang, key=lambda l: (l != "en", l))
            lines.append(f"**{split}**")
            lines.append("")
            lines.append("| language | " + " | ".join(metrics) + " |")
            lines.append("|---|" + "---|" * len(metrics))
            for l in langs:
                lines.append(f"| {l} | " + " | ".join(_fmt(by_lang[l].get(m)) for m in metrics) + " |")
            non_en = [by_lang[l][metrics[0]] for l in langs if l != "en" and metrics[0] in by_lang[l]]
            if non_en:
                lines.append(f"| *mean over non-English (uniform)* | {_fmt(sum(non_en) / len(non_en))} |"
                             + " |" * (len(metrics) - 1))
            lines.append("")
    if plot_name:
        lines += ["## Plot", "", f"![zero-shot test scores]({plot_name})", ""]
    lines += withheld_section(results.get("withheld") or [])
    lines += ["## Provenance", "",
              f"- xlrepro {prov['versions'].get('xlrepro')}, torch {prov['versions'].get('torch')}, "
              f"transformers {prov['versions'].get('transformers')}, python {prov['python']}",
              f"- hardware: {prov['cpu']} ({prov['cpu_count']} cores); GPU: {(prov.get('gpu') or {}).get('name', 'none')}",
              f"- extension: {'loaded' if prov['extension']['extension_loaded'] else 'not loaded'}"
              f"{' — ' + prov['extension']['reason'] if prov['extension'].get('reason') else ''}",
              f"- runs: {len(results['runs'])} (see `results.json` → `runs`)", ""]
    return "\n".join(lines)


def withheld_section(withheld: list[dict]) -> list[str]:
    """Splits exported but not scored because their labels are withheld (``xlrepro.check.label_status``)."""
    if not withheld:
        return []
    out = ["## Not scored: labels withheld", "",
           "> **Warning.** These splits have no labels in the files read (as the task registry allows for them):",
           "> their predictions were exported to `submission/`, and no score of them appears above.", ""]
    return out + [f"- {w['note']}" for w in withheld] + [""]


def write_report(results: dict, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    has_plot = write_plot(results["records"], out_dir / "scores.png")
    path = out_dir / "report.md"
    atomic_write_text(path, render(results, "scores.png" if has_plot else None))
    return path
