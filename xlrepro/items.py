"""Item-level scores of a finished target or retrieval run, for bootstrap CIs and paired tests.

The pipeline exports each run's predictions (``predictions/<task>/<split>-<lang>.<ext>``, the
XTREME submission layout). ``write_items`` scores them item by item against the gold data and
writes ``items.json`` into the run folder (atomically; derived data, recomputed if missing):

* classification / multiple choice: ``binary`` items, 100 when correct else 0 (their mean is
  the accuracy), with the predictions and labels (for collapse detection);
* span QA: ``mean`` items, the per-question F1 and exact match of the task's official scorer
  (their means are the official F1 / EM);
* tagging: ``ratio`` items, per-sentence chunk counts ``[correct, predicted, gold]``; F1 =
  200 * sum(correct) / (sum(predicted) + sum(gold)), so resampling sentences keeps the corpus-level
  (micro) F1 of the official scorer;
* Tatoeba: ``binary`` items, one per English query (retrieved line correct or not);
* BUCC: ``ratio`` items, one per source sentence, ``[correct, predicted, gold]`` pair counts of the
  pairs extracted at the threshold tuned on dev (set-level F1 as the official scorer computes it);
* Mewsli-X: ``mean`` items, one per mention, its reciprocal rank@20 x 100 recomputed from the exported
  ranked entity ids (``metrics.mewslix_reciprocal_ranks``; their mean is the official "map@20");
* LAReQA: ``mean`` items, one per question of the language, its AP@20 x 100 against the pool of all
  evaluated languages. LAReQA has no submission file, so the run writes these per-question values
  itself (``per_question/lareqa/<split>-<lang>.json``, outside the submission layout); their mean
  is the language's mAP@20 record.

A run finished before its task wrote these files gets no items (the report then shows no CI for it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xlrepro.metrics import METRIC_MODE
from xlrepro.runs import atomic_write_json
from xlrepro.stats import detect_collapse
from xlrepro.tasks.registry import all_tasks, get_task

ITEMS_VERSION = 3  # 2: Tatoeba and BUCC retrieval runs; 3: LAReQA and Mewsli-X
#: Retrieval evaluators with item-level scores (dispatch is on the task's ``evaluator`` field).
RETRIEVAL_ITEM_EVALUATORS = ("tatoeba_accuracy", "bucc_f1", "mewslix_map", "lareqa_map")


def retrieval_item_tasks() -> tuple[str, ...]:
    """Benchmark retrieval tasks whose runs get item-level scores (tatoeba, bucc2018, lareqa, mewslix)."""
    return tuple(
        n
        for n, t in all_tasks().items()
        if t.scoring and t.format.value == "retrieval" and t.evaluator in RETRIEVAL_ITEM_EVALUATORS
    )


def __getattr__(name: str):
    if name == "RETRIEVAL_ITEM_TASKS":  # computed from the registry on use (xlrepro.sweep imports it)
        return retrieval_item_tasks()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def item_source_folder(run_dir: Path, task_name: str) -> Path:
    """Where a run keeps the files its items are scored from: ``predictions/<task>`` (the submission
    layout), or ``per_question/<task>`` for a task without a submission file (``prediction_file:
    none``: LAReQA), whose runs write their per-item values there instead."""
    folder = "per_question" if get_task(task_name).prediction_file == "none" else "predictions"
    return Path(run_dir) / folder / task_name


def _read_predictions(path: Path, fmt: str):
    if fmt == "span_qa" or path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    text = path.read_text(encoding="utf-8")
    if fmt == "tagging":
        return [blk.split("\n") for blk in text.split("\n\n") if blk.strip()] if text.strip() else []
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def item_scores(task, fmt: str, preds, examples, lang: str, mode: str) -> dict:
    """One (split, language) entry of items.json from predictions and gold examples."""
    if fmt in ("classification", "multiple_choice"):
        labels = [str(e.label) for e in examples]
        preds = [str(p) for p in preds]
        if len(preds) != len(labels):
            raise ValueError(f"{task.name}/{lang}: {len(preds)} predictions for {len(labels)} examples")
        return {
            "metric": "accuracy",
            "kind": "binary",
            "scores": [100.0 if p == g else 0.0 for p, g in zip(preds, labels)],
            "predictions": preds,
            "labels": labels,
        }
    if fmt == "span_qa":
        from xlrepro.formats import squad_data
        from xlrepro.metrics import qa_score

        f1, em = [], []
        for e in examples:
            s = qa_score({e.guid: preds.get(e.guid, "")}, squad_data([e]), task=task.name, lang=lang, mode=mode)
            f1.append(float(s["f1"]))
            em.append(float(s["exact_match"]))
        return {"metric": "f1", "kind": "mean", "scores": f1, "exact_match": em}
    if fmt == "tagging":
        from xlrepro.metrics.tagging import get_entities

        counts = []
        for p, e in zip(preds, examples):
            pc, gc = set(get_entities(list(p), mode)), set(get_entities(list(e.tags), mode))
            counts.append([len(pc & gc), len(pc), len(gc)])
        return {"metric": "f1", "kind": "ratio", "scores": counts}
    if fmt == "retrieval" and task.evaluator == "tatoeba_accuracy":
        # one item per English query: the retrieved line index is correct when it is the query's own line
        (ex,) = examples
        if len(preds) != len(ex.tgt_sentences):
            raise ValueError(
                f"{task.name}/{lang}: {len(preds)} predictions for {len(ex.tgt_sentences)} English sentences"
            )
        return {
            "metric": "accuracy",
            "kind": "binary",
            "scores": [100.0 if int(p) == i else 0.0 for i, p in enumerate(preds)],
        }
    if fmt == "retrieval" and task.evaluator == "bucc_f1":
        # one item per source sentence: [correct, predicted, gold] pair counts, so resampling sentences
        # keeps the official set-level F1 = 200 * correct / (predicted + gold)
        (ex,) = examples
        pred = {tuple(line.split("\t")) for line in preds if line}
        gold = {tuple(g) for g in ex.gold}
        by_src: dict = {}
        for a, b in pred:
            by_src.setdefault(a, [0, 0, 0])[1] += 1
            by_src[a][0] += (a, b) in gold
        for a, _ in gold:
            by_src.setdefault(a, [0, 0, 0])[2] += 1
        unknown = set(by_src) - set(ex.src_ids)
        if unknown:
            raise ValueError(f"{task.name}/{lang}: predicted or gold source ids not in the data: {sorted(unknown)[:5]}")
        return {
            "metric": "f1",
            "kind": "ratio",
            "scores": [by_src.get(i, [0, 0, 0]) for i in dict.fromkeys(ex.src_ids)],
        }
    if fmt == "retrieval" and task.evaluator == "mewslix_map":
        # one item per mention: its reciprocal rank@k (x 100), the official "map@20" term
        from xlrepro.metrics import mewslix_reciprocal_ranks

        k = int(task.retrieval.get("k", 20))
        if not isinstance(preds, dict):
            raise ValueError(
                f"{task.name}/{lang}: expected predictions {{mention id: [entity ids]}}, got {type(preds).__name__}"
            )
        missing = [e.guid for e in examples if e.entity_id is None]
        if missing:
            raise ValueError(
                f"{task.name}/{lang}: {len(missing)} mentions without a gold entity id (first: {missing[0]})"
            )
        gold_ids = {e.guid: [e.entity_id] for e in examples}
        unknown = set(preds) - set(gold_ids)
        if unknown:
            raise ValueError(f"{task.name}/{lang}: predicted mention ids not in the data: {sorted(unknown)[:5]}")
        return {
            "metric": f"map@{k}",
            "kind": "mean",
            "scores": [100.0 * rr for rr in mewslix_reciprocal_ranks(preds, gold_ids, k=k, mode=mode)],
        }
    if fmt == "retrieval" and task.evaluator == "lareqa_map":
        # one item per question: its AP@k (x 100) as the run computed it against the pooled candidates
        (pool,) = examples
        if not isinstance(preds, dict) or not {"question_ids", "average_precision", "metric"} <= set(preds):
            raise ValueError(
                f"{task.name}/{lang}: expected a per-question file with question_ids, average_precision and metric"
            )
        qids, aps = list(preds["question_ids"]), [float(a) for a in preds["average_precision"]]
        if qids != list(pool.question_ids):
            raise ValueError(
                f"{task.name}/{lang}: the per-question file's {len(qids)} question ids differ from the "
                f"{len(pool.question_ids)} questions of the data (order included)"
            )
        if len(aps) != len(qids) or not all(0.0 <= a <= 1.0 for a in aps):
            raise ValueError(f"{task.name}/{lang}: expected one average precision in [0, 1] per question")
        return {"metric": preds["metric"], "kind": "mean", "scores": [100.0 * a for a in aps]}
    raise ValueError(f"no item-level scores for format {fmt!r} (task {task.name})")


def write_items(exp, task_name: str, run_dir: Path) -> Path | None:
    """Write ``items.json`` for a finished target/control run, or a retrieval run of ``RETRIEVAL_ITEM_TASKS``
    (no-op when present)."""
    path = Path(run_dir) / "items.json"
    if path.exists():
        return path
    task = get_task(task_name)
    fmt = task.format.value
    folder = item_source_folder(run_dir, task_name)
    entries = {}
    for f in sorted(folder.glob("*-*.*")) if folder.is_dir() else []:
        split, lang = f.stem.split("-", 1)
        data = exp.read(task_name, split, lang)
        if not all(exp.has_label(e) for e in data.examples):
            continue
        entries[f"{split}/{lang}"] = item_scores(task, fmt, _read_predictions(f, fmt), data.examples, lang, METRIC_MODE)
    atomic_write_json(path, {"version": ITEMS_VERSION, "task": task_name, "format": fmt, "items": entries})
    return path


def load_items(run_dir: Path) -> dict:
    path = Path(run_dir) / "items.json"
    return json.loads(path.read_text(encoding="utf-8"))["items"] if path.exists() else {}


def statistic(entry: dict):
    """(values array, function of an index array -> score) for bootstrap over items."""
    if entry["kind"] == "ratio":
        c = np.asarray(entry["scores"], dtype=float).reshape(-1, 3)

        def f1(idx):
            s = c[idx].sum(axis=0)
            return 0.0 if s[1] + s[2] == 0 else 200.0 * s[0] / (s[1] + s[2])

        return c, f1
    x = np.asarray(entry["scores"], dtype=float)
    return x, lambda idx: float(x[idx].mean())


def collapse_check(run_dir: Path) -> dict | None:
    """detect_collapse on the English dev predictions (else another dev language, else test)."""
    items = load_items(run_dir)
    binary = {k: v for k, v in items.items() if v["kind"] == "binary"}
    for key in ["dev/en", *sorted(k for k in binary if k.startswith("dev/")), "test/en", *sorted(binary)]:
        if key in binary:
            res = detect_collapse(binary[key]["predictions"], binary[key]["labels"])
            return {**res, "on": key}
    return None
