"""Aggregation of per-language scores into task averages and benchmark scores.

Four named aggregators (never an unnamed "Avg": the benchmark totals differ in what they average):

* :func:`task_average` - ``evaluate.py``'s per-task mean over a language list + ``avg_metric``;
* :func:`xtreme_score` - ``evaluate.py``'s XTREME score (``all_task``) and group means;
* :func:`xtreme_r_script_groups` - the group means ``evaluate.py --xtreme_version xtreme-r``
  prints (it can print no total);
* :func:`xtreme_r_task_mean` - xlrepro's script-style XTREME-R total (plain task mean);
* :func:`xtreme_r_category_mean` - the XTREME-R paper's total (mean of 4 category means).

Language lists are never built in here: callers pass them (the task registry owns them). Which
tasks a benchmark has, their order (``evaluate.py``'s TASK2LANGS order, also the summation order),
their groups, and which count in a total come from each task's ``scoring`` field in the registry;
a task's ``avg_metric`` follows its ``headline`` field (docs/tasks.md).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from xlrepro.tasks.registry import (
    CATEGORIES,
    SCRIPT_GROUPS,
    all_tasks,
    benchmark_tasks,
    headline_metric,
    headline_metrics,
)

from ._common import is_metric_key, official_source


def script_groups(benchmark: str) -> dict[str, tuple]:
    """``evaluate.py``'s GROUP2TASK of ``benchmark`` (``xtreme`` / ``xtreme_r``): group -> tasks in
    task order, from the tasks' ``scoring.<benchmark>.groups`` (XTREME-R: no lareqa; xcopa twice)."""
    tasks = benchmark_tasks(benchmark)
    return {
        g: tuple(t for t in tasks if g in all_tasks()[t].scoring[benchmark]["groups"]) for g in SCRIPT_GROUPS[benchmark]
    }


def categories(benchmark: str) -> dict[str, tuple]:
    """The paper's categories of ``benchmark``: category -> tasks in task order (``scoring.<b>.group``)."""
    tasks = benchmark_tasks(benchmark)
    return {c: tuple(t for t in tasks if all_tasks()[t].scoring[benchmark]["group"] == c) for c in CATEGORIES}


def in_average(benchmark: str) -> tuple:
    """The tasks a script-style total of ``benchmark`` requires (``scoring.<b>.in_average``)."""
    return tuple(t for t in benchmark_tasks(benchmark) if all_tasks()[t].scoring[benchmark]["in_average"])


_EVALUATE_PY = official_source("evaluate.py")

TaskAvg = Mapping[str, Any] | float


def _avg_metric_of(task: str, entry: TaskAvg) -> float:
    if isinstance(entry, numbers.Real) and not isinstance(entry, bool):
        return float(entry)
    if isinstance(entry, Mapping) and "avg_metric" in entry:
        return entry["avg_metric"]
    raise ValueError(f"task {task!r}: expected a task_average() dict with 'avg_metric' or a number, got {entry!r}")


def _mode_of(entries) -> str | None:
    """The common mode of per-language dicts of ONE task; mixing modes there is an error."""
    modes = {e["mode"] for e in entries if isinstance(e, Mapping) and "mode" in e}
    if len(modes) > 1:
        raise ValueError(f"refusing to aggregate scores computed in different modes: {sorted(modes)}")
    return modes.pop() if modes else None


def _record_modes(result: dict[str, object], task_avgs: Mapping[str, TaskAvg], tasks: Sequence[str]) -> None:
    """Across tasks, modes may legitimately differ (e.g. tagging scored with seqeval_1x): record
    ``mode`` (the common one, or ``"mixed"``) and, when mixed, ``modes`` per task."""
    per_task = {t: a["mode"] for t in tasks if isinstance(a := task_avgs[t], Mapping) and "mode" in a}
    distinct = set(per_task.values())
    if len(distinct) == 1:
        result["mode"] = distinct.pop()
    elif len(distinct) > 1:
        result["mode"] = "mixed"
        result["modes"] = per_task


def task_average(per_language: Mapping[str, Mapping[str, Any]], languages: Sequence[str], task: str) -> dict:
    """Per-task averages, as ``evaluate.py`` computes them (``evaluate``'s ``avg_<metric>`` loop).

    Args:
        per_language: language -> metric dict (e.g. the output of :func:`accuracy`); only the
            metric keys (accuracy, f1, precision, recall, exact_match, map@k) are averaged,
            bookkeeping keys (mode, note, n_*) are ignored.
        languages: the task's language list for the benchmark version (from the registry);
            every one must be present, extra languages in ``per_language`` are ignored.
        task: task name; decides the ``avg_metric`` rule.

    Returns:
        ``{"avg_<m>": plain mean over languages for each metric m, "avg_metric": ...,
        "task", "languages", "aggregator": "task_average", "source", "mode" (if the inputs
        carry one)}``. ``avg_metric`` is, in order: ``(avg_exact_match + avg_f1) / 2`` for QA
        tasks (xquad, mlqa, tydiqa); ``avg_f1`` if present; ``avg_accuracy``; ``avg_map@20``.
        Sums run in the given language order (as ``evaluate.py``'s dict order).

    Raises:
        ValueError: empty language list (``evaluate.py`` yields no ``avg_metric`` then, e.g.
            lareqa), a missing language (officially ``FileNotFoundError``), languages with
            different metric sets, mixed modes, or no rule for ``avg_metric``.
    """
    languages = list(languages)
    if not languages:
        raise ValueError(
            f"task_average({task!r}): empty language list; evaluate.py produces no avg_metric for such a task"
        )
    missing = [lang for lang in languages if lang not in per_language]
    if missing:
        raise ValueError(f"task_average({task!r}): no scores for language(s) {', '.join(missing)}")
    metric_names: list[str] = [m for m in per_language[languages[0]] if is_metric_key(m)]
    if not metric_names:
        raise ValueError(f"task_average({task!r}): language {languages[0]!r} has no metric values")
    for lang in languages:
        names = [m for m in per_language[lang] if is_metric_key(m)]
        if set(names) != set(metric_names):
            raise ValueError(
                f"task_average({task!r}): language {lang!r} has metrics {sorted(names)}, "
                f"but {languages[0]!r} has {sorted(metric_names)}"
            )
    result: dict[str, Any] = {}
    for m in metric_names:
        result[f"avg_{m}"] = sum(per_language[lang][m] for lang in languages) / len(languages)
    headline = headline_metrics(task)
    if len(headline) > 1:  # QA: evaluate.py averages exact match and F1
        if any(f"avg_{m}" not in result for m in headline):
            raise ValueError(
                f"task_average({task!r}): QA tasks need exact_match and f1 (the task's avg_metric is "
                f"the mean of its headline metrics {list(headline)})"
            )
        result["avg_metric"] = sum(result[f"avg_{m}"] for m in headline) / len(headline)
    else:
        rule = headline_metric(task, metric_names)
        if rule is None:
            raise ValueError(
                f"task_average({task!r}): no avg_metric rule applies to {sorted(result)} (headline {list(headline)})"
            )
        result["avg_metric"] = result[f"avg_{rule}"]
    result.update(
        {
            "task": task,
            "languages": languages,
            "aggregator": "task_average",
            "source": f"{_EVALUATE_PY} (per-task mean over the version's language list)",
        }
    )
    mode = _mode_of(per_language[lang] for lang in languages)
    if mode is not None:
        result["mode"] = mode
    return result


def _group_means(task_avgs: Mapping[str, TaskAvg], groups: Mapping[str, Sequence[str]]) -> dict[str, float]:
    out = {}
    for group, tasks in groups.items():
        if all(t in task_avgs for t in tasks):
            out[group] = sum(_avg_metric_of(t, task_avgs[t]) for t in tasks) / len(tasks)
    return out


def xtreme_score(task_avgs: Mapping[str, TaskAvg]) -> dict:
    """The XTREME score and group scores as ``evaluate.py --xtreme_version xtreme`` (A2).

    Args:
        task_avgs: task -> :func:`task_average` dict (or a bare ``avg_metric`` number).
            Tasks that are not XTREME tasks are ignored.

    Returns:
        ``{"all_task"}`` - the plain mean of the 9 tasks' ``avg_metric`` (QA counts 3 of 9),
        only when all 9 are present - plus the mean of each complete group (classification =
        pawsx, xnli; tagging = udpos, panx; qa = xquad, mlqa, tydiqa; retrieval = bucc2018,
        tatoeba), ``"tasks"`` (present XTREME tasks), ``"aggregator": "xtreme_score"``,
        ``"source"``, ``"mode"`` (the inputs' common mode, or ``"mixed"`` with per-task ``"modes"``)
        and ``"note"``.

    The official ``all_task`` sums over a ``set`` of task names, so its last bits depend on
    ``PYTHONHASHSEED`` (about 1e-14, A4); here the sum runs in TASK2LANGS order.
    """
    xtreme_tasks = benchmark_tasks("xtreme")
    present = [t for t in xtreme_tasks if t in task_avgs]
    result: dict[str, Any] = {}
    if len(present) == len(xtreme_tasks):
        result["all_task"] = sum(_avg_metric_of(t, task_avgs[t]) for t in xtreme_tasks) / len(xtreme_tasks)
    result.update(_group_means(task_avgs, script_groups("xtreme")))
    result.update(
        {
            "tasks": present,
            "aggregator": "xtreme_score",
            "source": f"{_EVALUATE_PY} (all_task = mean of the 9 tasks' avg_metric; group means)",
            "note": [
                "all_task is summed in TASK2LANGS order; the official code sums over a set "
                "(PYTHONHASHSEED-dependent last bits, ~1e-14)"
            ],
        }
    )
    ignored = sorted(t for t in task_avgs if t not in xtreme_tasks)
    if ignored:
        result["note"].append(f"ignored non-XTREME tasks: {', '.join(ignored)}")
    _record_modes(result, task_avgs, present)
    return result


def xtreme_r_script_groups(task_avgs: Mapping[str, TaskAvg]) -> dict:
    """The group means ``evaluate.py --xtreme_version xtreme-r`` prints (its XTREME-R ``GROUP2TASK``).

    Groups: classification = xnli, xcopa; tagging = udpos, panx; qa = xquad, mlqa, tydiqa;
    retrieval = tatoeba, mewslix (**no lareqa**); multi_choice = xcopa. Only complete groups are
    reported. No total: the script cannot produce one (lareqa has an empty language list and
    no metric), see :func:`xtreme_r_task_mean` and :func:`xtreme_r_category_mean`.

    Returns:
        ``{<group>: mean, "tasks", "aggregator": "xtreme_r_script_groups", "source", "note"}``.
    """
    present = [t for t in benchmark_tasks("xtreme_r") if t in task_avgs]
    result: dict[str, object] = dict(_group_means(task_avgs, script_groups("xtreme_r")))
    result.update(
        {
            "tasks": present,
            "aggregator": "xtreme_r_script_groups",
            "source": f"{_EVALUATE_PY} (XTREME-R GROUP2TASK)",
            "note": [
                "evaluate.py cannot produce an XTREME-R total (lareqa has no metric; KeyError "
                "'avg_metric' when a lareqa folder exists); xcopa counts in two groups"
            ],
        }
    )
    _record_modes(result, task_avgs, present)
    return result


def _require(task_avgs: Mapping[str, TaskAvg], tasks: Sequence[str], func: str) -> None:
    missing = [t for t in tasks if t not in task_avgs]
    if missing:
        raise ValueError(f"{func}: missing task average(s) for {', '.join(missing)}")


def xtreme_r_task_mean(task_avgs: Mapping[str, TaskAvg]) -> dict:
    """Script-style XTREME-R total: the plain mean of every task's ``avg_metric``.

    This is **xlrepro's own** aggregator: it is what ``evaluate.py``'s ``all_task`` rule would
    give for XTREME-R if the script could run to the end (it cannot, see docs/metrics.md). The 9
    scored tasks (xnli, xcopa, udpos, panx, tatoeba, mewslix, xquad, mlqa, tydiqa) are required;
    lareqa is included when present. It does **not** reproduce the paper's average (for XLM-R
    Large it gives about 63.9, not 65.3); that is :func:`xtreme_r_category_mean`.

    Returns:
        ``{"score", "tasks", "includes_lareqa", "aggregator": "xtreme_r_task_mean", "source",
        "mode"}`` (``"mode"``: the inputs' common mode, or ``"mixed"`` with
        per-task ``"modes"``; absent when the inputs carry none).

    Raises:
        ValueError: a required task is missing.
    """
    required = in_average("xtreme_r")
    _require(task_avgs, required, "xtreme_r_task_mean")
    tasks = [t for t in benchmark_tasks("xtreme_r") if t in task_avgs]
    score = sum(_avg_metric_of(t, task_avgs[t]) for t in tasks) / len(tasks)
    result = {
        "score": score,
        "tasks": tasks,
        "includes_lareqa": len(tasks) > len(required),
        "aggregator": "xtreme_r_task_mean",
        "source": "xlrepro (script-style plain task mean; evaluate.py cannot produce an XTREME-R "
        "total, see docs/metrics.md)",
    }
    _record_modes(result, task_avgs, tasks)
    return result


def xtreme_r_category_mean(task_avgs: Mapping[str, TaskAvg]) -> dict:
    """The XTREME-R paper's average: the mean of the 4 category means.

    Categories: classification = xnli, xcopa; structured = udpos, panx; qa = xquad, mlqa,
    tydiqa (each (EM+F1)/2 via ``avg_metric``); retrieval = tatoeba, mewslix, lareqa. All 10
    tasks are required. With the XLM-R Large row of XTREME-R Table 3 this gives 65.27
    (74.2, 69.7, 62.63, 54.57), matching the published 65.3.

    Returns:
        ``{"score", "classification", "structured", "qa", "retrieval", "aggregator":
        "xtreme_r_category_mean", "source", "mode"}`` (``"mode"``: the inputs' common mode, or ``"mixed"`` with
        per-task ``"modes"``; absent when the inputs carry none).

    Raises:
        ValueError: a task is missing.
    """
    groups = categories("xtreme_r")
    tasks = [t for group in groups.values() for t in group]
    _require(task_avgs, tasks, "xtreme_r_category_mean")
    cats = _group_means(task_avgs, groups)
    result: dict[str, object] = {"score": sum(cats[c] for c in groups) / len(groups)}
    result.update(cats)
    result.update(
        {
            "aggregator": "xtreme_r_category_mean",
            "source": "Ruder et al. 2021, XTREME-R (EMNLP 2021, arXiv 2104.07412), Table 3 'Avg' = mean of "
            "the four category means (the XLM-R Large row of Table 3 gives 65.27 this way, published 65.3; "
            "see docs/metrics.md)",
        }
    )
    _record_modes(result, task_avgs, tasks)
    return result
