"""Render ``results.json`` as ``report.md`` (a table per task x language), ``results.csv`` and a plot.

The report uses finished runs' records only. Every number says its split and metric mode;
aggregates name their rule. Smoke-world reports say that they are smoke-scale and that their
languages are generated stand-ins named after real ones. A task or split with nothing scored
gets a note saying why (labels withheld, or no evaluated language) instead of vanishing.

``results.csv`` has one row per task x language x split x metric x run (``CSV_COLUMNS``), with the
run's spec hash and the seed: ``pandas.read_csv`` loads it as it is.
"""

from __future__ import annotations

import collections
import csv
import io
import json
from pathlib import Path

from xlrepro.contrast import CHANCE_NOTE, chance_level, contrast, section
from xlrepro.runs import atomic_write_text, tmp_path
from xlrepro.tasks.registry import headline_metric, headline_metrics

CSV_COLUMNS = [
    "experiment",
    "task",
    "phase",
    "language",
    "split",
    "metric",
    "value",
    "mode",
    "n",
    "seed",
    "run",
    "run_hash",
    "config_hash",
    "intermediate",
    "variant",
    "volume",
    "resource_group",
]

PHASE_SUFFIX = {"control": " (control)", "baseline": " (baseline)"}
PHASE_TITLE = {
    "control": " — negative control (shuffled training labels)",
    "baseline": " — no-intermediate baseline (fine-tuned from the pre-trained encoder)",
}


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def tables(records: list[dict]) -> dict:
    """{(task, phase): {split: {language: {metric: value}}}}."""
    out: dict[tuple, dict[str, dict[str, dict]]] = collections.defaultdict(
        lambda: collections.defaultdict(lambda: collections.defaultdict(dict))
    )
    for r in records:
        out[(r["task"], r["phase"])][r["split"]][r["language"]][r["metric"]] = r["value"]
    return out


def write_plot(records: list[dict], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = collections.defaultdict(set)
    for r in records:
        metrics[r["task"]].add(r["metric"])
    # one bar per task and language: the task's headline metric, where it is an accuracy or an F1
    rows = [
        r
        for r in records
        if r["split"] == "test"
        and r["metric"] in ("accuracy", "f1")
        and r["metric"] == headline_metric(r["task"], metrics[r["task"]])
    ]
    if not rows:
        return False
    groups: dict[str, dict[str, float]] = collections.OrderedDict()
    for r in rows:
        groups.setdefault(f"{r['task']}{PHASE_SUFFIX.get(r['phase'], '')}", {})[r["language"]] = r["value"]
    langs = sorted({r["language"] for r in rows}, key=lambda l: (l != "en", l))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) * len(langs) / 3), 4))
    width = 0.8 / max(1, len(langs))
    for j, lang in enumerate(langs):
        xs = [i + j * width for i in range(len(groups))]
        ax.bar(xs, [g.get(lang, 0) for g in groups.values()], width, label=lang)
    chance_drawn = False
    for i, name in enumerate(groups):  # chance level of each task over its bars
        c = chance_level(name.split(" ")[0])
        if c is not None:
            ax.hlines(
                c,
                i - width / 2,
                i + width * (len(langs) - 0.5),
                colors="k",
                linestyles="--",
                lw=1,
                label="" if chance_drawn else "chance (1/labels, 1/choices)",  # "": not in the legend
            )
            chance_drawn = True
    ax.plot([], [], " ", label=CHANCE_NOTE)
    ax.set_xticks([i + width * (len(langs) - 1) / 2 for i in range(len(groups))])
    ax.set_xticklabels(list(groups), rotation=20, ha="right")
    ax.set_ylabel("test score (accuracy or F1, 0-100)")
    ax.set_ylim(0, 100)
    ax.legend(title="language", ncol=min(len(langs) + 1, 4), fontsize="small")
    ax.set_title("zero-shot test scores by task and language")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)
    return True


def metric_columns(task: str, metrics) -> list[str]:
    """The task's metric names in column order: its headline metrics first, in the registry's order
    (QA: F1, then exact match), then the others alphabetically."""
    head = headline_metrics(task)
    return sorted(metrics, key=lambda m: (head.index(m) if m in head else len(head), m))


def _non_english_means(task: str, by_lang: dict, metrics: list[str], langs: list[str]) -> list[float | None]:
    """Uniform mean over the non-English languages of every headline metric column (QA: F1 and EM)."""
    out = []
    for m in metrics:
        vals = [by_lang[l][m] for l in langs if l != "en" and m in by_lang[l]]
        out.append(sum(vals) / len(vals) if vals and (m in headline_metrics(task) or m == metrics[0]) else None)
    return out


def _run_events(run_dir: Path | None) -> list[dict]:
    if run_dir is None or not (run_dir / "log.jsonl").exists():
        return []
    return [json.loads(l) for l in (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines() if l.strip()]


def gap_notes(results: dict, out_dir: str | Path | None = None) -> dict:
    """{(task, phase): [note]} for every evaluated run's splits that were not scored, and why."""
    from xlrepro.tasks import get_task

    scored = collections.defaultdict(set)
    for r in results["records"]:
        scored[(r["task"], r["phase"])].add(r["split"])
    cfg = results.get("config") or {}
    keep = (cfg.get("data") or {}).get("languages") or ((cfg.get("smoke") or {}).get("languages"))
    notes = collections.defaultdict(list)
    for info in results.get("runs", {}).values():
        kind, task = info.get("kind"), info.get("task")
        if kind not in ("target", "control", "baseline", "retrieval"):
            continue
        run_dir = Path(out_dir) / "runs" / Path(info["dir"]).name if out_dir is not None else None
        withheld = collections.defaultdict(list)
        for e in _run_events(run_dir):
            if e.get("event") == "unlabelled":
                withheld[e["split"]].append(e["language"])
        for split, langs in sorted(withheld.items()):
            if split not in scored[(task, kind)]:
                notes[(task, kind)].append(
                    f"**{split}: nothing scored.** The labels of {split} are withheld in the "
                    f"data ({', '.join(sorted(langs))}): predictions exported (`submission/`), "
                    "not scored."
                )
            else:
                notes[(task, kind)].append(
                    f"{split}: labels withheld for {', '.join(sorted(langs))}; predictions exported, not scored."
                )
        if not scored[(task, kind)] and not withheld:
            try:
                spec = get_task(task)
                langs = sorted({l for sp in spec.splits for l in spec.split_languages(sp)})
            except KeyError:
                langs = []
            notes[(task, kind)].append(
                f"**Nothing scored.** No split and language of {task} was evaluated: the task's languages "
                f"({', '.join(langs) or 'unknown'}) and the evaluated languages "
                f"({', '.join(keep) if keep else 'all'}) leave none with labels."
            )
    return dict(notes)


def csv_rows(records: list[dict], **common) -> list[dict]:
    """Records as ``CSV_COLUMNS`` rows; ``common`` fills columns the records lack (experiment, seed, ...)."""
    rows = []
    for r in records:
        row = {c: r.get(c, common.get(c)) for c in CSV_COLUMNS}
        for c in ("run_hash", "config_hash", "seed", "experiment"):  # the run's identity wins over the experiment's
            if r.get(c) is None and common.get(c) is not None:
                row[c] = common[c]
        rows.append(row)
    rows.sort(key=lambda r: tuple(str(r[c]) for c in ("task", "phase", "split", "language", "metric", "run")))
    return rows


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write ``CSV_COLUMNS`` rows atomically (empty cells for missing values)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow(
            {
                c: ("" if row.get(c) is None else (repr(row[c]) if isinstance(row[c], float) else row[c]))
                for c in CSV_COLUMNS
            }
        )
    atomic_write_text(Path(path), buf.getvalue())
    return Path(path)


def experiment_csv_rows(results: dict) -> list[dict]:
    """One experiment's records (``results.json``) with its seed, config hash, each run's spec hash and its
    folder name as ``run`` (as in a sweep's table; never read as a number)."""
    full = {h[:12]: h for h in results.get("runs", {})}
    recs = []
    for r in results["records"]:
        h = full.get(r.get("run"), r.get("run"))
        info = results.get("runs", {}).get(h) or {}
        recs.append({**r, "run_hash": h, "run": Path(info["dir"]).name if info.get("dir") else r.get("run")})
    return csv_rows(
        recs, experiment=results.get("experiment"), seed=results.get("seed"), config_hash=results.get("config_hash")
    )


def render(results: dict, plot_name: str | None, notes: dict | None = None, contrast: list | None = None) -> str:
    recs = results["records"]
    prov = results["provenance"]
    lines = [f"# xlrepro report: {results['experiment']}", ""]
    if results.get("smoke_scale"):
        lines += [
            "> **Smoke scale.** A tiny XLM-R-shaped model on a generated world: the languages are synthetic",
            "> stand-ins named after real ones. These numbers test the pipeline; they are not the paper's.",
            "",
        ]
    lines += [
        f"Config hash `{results['config_hash'][:12]}` · seed {results['seed']} · metric mode "
        f"`{results['metric_mode']}` · git `{(prov.get('git_commit') or 'unknown')[:12]}`"
        f"{' (dirty)' if prov.get('git_dirty') else ''}",
        "",
    ]
    by_task = dict(tables(recs))
    for key in notes or {}:
        by_task.setdefault(key, {})
    for (task, phase), splits in sorted(by_task.items()):
        title = f"## {task}" + PHASE_TITLE.get(phase, "")
        lines += [title, ""]
        chain = next(
            (r.get("train_chain") for r in recs if r["task"] == task and r["phase"] == phase and r.get("train_chain")),
            None,
        )
        if chain:
            lines += [
                f"English training: {' → '.join(chain)}"
                + (" (one model, stage after stage)" if len(chain) > 1 else ""),
                "",
            ]
        for split, by_lang in sorted(splits.items()):
            metrics = metric_columns(task, {m for v in by_lang.values() for m in v})
            langs = sorted(by_lang, key=lambda l: (l != "en", l))
            lines.append(f"**{split}**")
            lines.append("")
            lines.append("| language | " + " | ".join(metrics) + " |")
            lines.append("|---|" + "---|" * len(metrics))
            for l in langs:
                lines.append(f"| {l} | " + " | ".join(_fmt(by_lang[l].get(m)) for m in metrics) + " |")
            means = _non_english_means(task, by_lang, metrics, langs)
            if any(v is not None for v in means):
                lines.append(
                    "| *mean over non-English (uniform)* | "
                    + " | ".join("" if v is None else _fmt(v) for v in means)
                    + " |"
                )
            lines.append("")
        for note in (notes or {}).get((task, phase), []):
            lines += [f"> {note}", ""]
    lines += section(contrast or [])
    if plot_name:
        lines += ["## Plot", "", f"![zero-shot test scores]({plot_name})", ""]
    lines += withheld_section(results.get("withheld") or [])
    lines += [
        "## Provenance",
        "",
        f"- xlrepro {prov['versions'].get('xlrepro')}, torch {prov['versions'].get('torch')}, "
        f"transformers {prov['versions'].get('transformers')}, python {prov['python']}",
        f"- hardware: {prov['cpu']} ({prov['cpu_count']} cores); GPU: {(prov.get('gpu') or {}).get('name', 'none')}",
        f"- extension: {'loaded' if prov['extension']['extension_loaded'] else 'not loaded'}"
        f"{' — ' + prov['extension']['reason'] if prov['extension'].get('reason') else ''}",
        f"- runs: {len(results['runs'])} (see `results.json` → `runs`)",
        "",
    ]
    return "\n".join(lines)


def withheld_section(withheld: list[dict]) -> list[str]:
    """Splits exported but not scored because their labels are withheld (``xlrepro.check.label_status``)."""
    if not withheld:
        return []
    out = [
        "## Not scored: labels withheld",
        "",
        "> **Warning.** These splits have no labels in the files read (as the task registry allows for them):",
        "> their predictions were exported to `submission/`, and no score of them appears above.",
        "",
    ]
    return out + [f"- {w['note']}" for w in withheld] + [""]


def write_report(results: dict, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    has_plot = write_plot(results["records"], out_dir / "scores.png")
    path = out_dir / "report.md"
    atomic_write_text(
        path,
        render(results, "scores.png" if has_plot else None, gap_notes(results, out_dir), contrast(results, out_dir)),
    )
    write_csv(experiment_csv_rows(results), out_dir / "results.csv")
    return path


def rebuild_report(out_dir: str | Path) -> list[Path]:
    """``xlrepro report`` on one experiment's output folder: ``report.md`` and ``results.csv`` again from
    its ``results.json``."""
    out_dir = Path(out_dir)
    path = out_dir / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        from xlrepro.errors import ConfigError

        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    return [write_report(results, out_dir), out_dir / "results.csv"]
