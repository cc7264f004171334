"""Score an XTREME / XTREME-R submission folder like google-research/xtreme's ``evaluate.py``
(see docs/metrics.md for what is read and how, and for every difference from the official code).

Layout: ``<folder>/<task>/test-<lang>.<ext>``, ``ext`` being the task's ``prediction_file``
field in the registry (``json`` for QA tasks and Mewsli-X, ``jsonl`` for XCOPA: one JSON object
per line, scored by its ``label`` field; ``tsv`` otherwise), for both the prediction and the
label folder. How a file is read and scored follows the task's ``evaluator`` field; which tasks a
version scores, their order and groups follow its ``scoring`` field (docs/tasks.md). The task ->
languages map is passed in by the caller (the task registry).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from xlrepro.errors import DataFormatError
from xlrepro.tasks.registry import benchmark_tasks, get_task

from ._common import CORRECTED, DEFAULT_MODES, OFFICIAL, SEQEVAL_1X, check_mode, is_metric_key, official_source
from .aggregate import task_average, xtreme_r_category_mean, xtreme_r_script_groups, xtreme_r_task_mean, xtreme_score
from .bucc import bucc_f1
from .classification import accuracy
from .qa import mlqa_scores, squad_scores
from .retrieval import mewslix_map_at_k
from .tagging import tagging_f1

VERSIONS = ("xtreme", "xtreme-r")
#: evaluate.py's ``--xtreme_version`` -> the registry's benchmark name.
BENCHMARK_OF_VERSION = {"xtreme": "xtreme", "xtreme-r": "xtreme_r"}
#: Evaluators whose prediction/label counts evaluate.py does not assert equal (QA and Mewsli-X
#: files are keyed by id, BUCC files are sets of pairs).
_NO_LENGTH_CHECK = ("qa_squad", "qa_mlqa", "bucc_f1", "mewslix_map")
#: Evaluators whose files hold one label per line (``evaluate.py:read_label``) and are scored by
#: plain accuracy; BUCC's pair lines are read the same way.
_LABEL_LINE_EVALUATORS = ("accuracy", "tatoeba_accuracy")


def task_file_extension(task: str) -> str:
    """The task's ``prediction_file`` (``json`` for xquad/mlqa/tydiqa/mewslix, ``jsonl`` for xcopa,
    ``tsv`` for the others); ValueError for a task without a per-file metric (LAReQA)."""
    ext = get_task(task).prediction_file
    if ext is None or ext == "none":
        raise ValueError(f"{task}: evaluate.py has no per-file metric for it, so it has no prediction file")
    return ext


# --------------------------------------------------------------------------- readers


def _read_text_lines(path: str) -> list[str]:
    """Lines of a UTF-8 text file as Python's text mode yields them (universal newlines: ``\\n``,
    ``\\r\\n`` and ``\\r`` end a line), without the line ends. (``evaluate.py`` opens files with
    the locale's default encoding; UTF-8 is used here so results do not depend on the locale.)"""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"missing file: {path}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataFormatError(path, f"not valid UTF-8 ({e.reason})", line=line) from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def read_label(path: str) -> list[str]:
    """One label per line, every line ``strip()``ped (``evaluate.py:read_label``): trailing spaces, tabs and ``\\r``
    vanish and a blank line becomes the example ``''``. Raises ``FileNotFoundError`` /
    ``ValueError`` (with file and line) on a missing or non-UTF-8 file."""
    return [line.strip() for line in _read_text_lines(path)]


def read_tag(path: str, mode: str = OFFICIAL) -> list[list[str]]:
    """Tag sentences separated by blank lines (``evaluate.py:read_tag``).

    ``"official"``: every blank line closes a sentence, so two consecutive blank lines make an
    empty sentence and trailing blank lines add empty sentences; the whole stripped line is
    the tag (a ``word\\tTAG`` line is the tag ``"word\\tTAG"``). ``"corrected"``: runs of blank
    lines are one separator and no empty sentence is produced.
    """
    check_mode(mode, "read_tag")
    sentences: list[list[str]] = []
    current: list[str] = []
    for line in _read_text_lines(path):
        line = line.strip()
        if line:
            current.append(line)
        else:
            if current or mode == OFFICIAL:
                sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def read_xcopa(path: str) -> list:
    """The ``label`` field of every line, each line parsed as JSON (``evaluate.py:read_xcopa``).

    Only ``label`` counts: ``{"label": 1}`` and ``{"idx": 0, "label": 1}`` are the same answer,
    and key order or spacing do not matter. Values are compared as JSON values later, so the
    number ``1`` and the string ``"1"`` differ, as in the official code. Lines end as in
    Python's text mode (``\\n``, ``\\r\\n``, ``\\r``).

    Raises:
        FileNotFoundError: a missing file. ValueError naming file and line: not UTF-8, a line
            that is not JSON (a blank line included; the official code raises a JSON decode
            error), a line that is not an object with a ``label`` field (officially a
            ``TypeError`` / ``KeyError``).
    """
    labels = []
    for n, line in enumerate(_read_text_lines(path), start=1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            what = "a blank line" if not line.strip() else f"invalid JSON ({e.msg})"
            raise DataFormatError(
                path, f"{what}; expected one JSON object with a 'label' field per line", line=n
            ) from None
        if not isinstance(obj, dict) or "label" not in obj:
            raise DataFormatError(
                path, f"expected a JSON object with a 'label' field, got {line.strip()[:60]!r}", line=n, field="label"
            )
        labels.append(obj["label"])
    return labels


def read_squad(path: str):
    """JSON file; returns ``obj['data']`` when the top level has a ``data`` key, else the object
    (``evaluate.py:read_squad``: a bare list or a prediction dict works). Raises ``ValueError`` naming file, line and
    column on invalid JSON."""
    return _read_json(path, data_rule=True)


def _read_json(path: str, data_rule: bool):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"missing file: {path}") from None
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataFormatError(path, f"not valid UTF-8 ({e.reason})", line=line) from None
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"invalid JSON ({e.msg}, column {e.colno})", line=e.lineno) from None
    if data_rule and isinstance(obj, dict) and "data" in obj:
        return obj["data"]
    return obj


def _read_mewslix(path: str, mode: str) -> dict:
    obj = _read_json(path, data_rule=(mode == OFFICIAL))
    if not isinstance(obj, dict):
        if mode == OFFICIAL:
            raise DataFormatError(
                path,
                "has an example id 'data', so evaluate.py's read_squad returns obj['data'] and the "
                "official Mewsli-X scoring fails (AttributeError); use mode='corrected'",
            )
        raise DataFormatError(path, "expected a JSON object example_id -> list of entity ids")
    return obj


# --------------------------------------------------------------------------- scoring


def score_language(
    task: str,
    prediction_file: str,
    label_file: str,
    lang: str,
    mode: str = OFFICIAL,
    tagging_mode: str | None = None,
) -> dict:
    """Score one ``(task, language)`` file pair like ``evaluate_one_task``; returns the metric
    dict of the task's metric function (accuracy / tagging_f1 / bucc_f1 / squad_scores /
    mlqa_scores / mewslix_map_at_k with k=20). XCOPA files are read with :func:`read_xcopa`,
    the other accuracy tasks and BUCC with :func:`read_label`.

    Raises:
        FileNotFoundError: a missing file. :class:`xlrepro.errors.DataFormatError` (a
        ``ValueError``) naming the file and, where known, the line: unequal example counts where
        ``evaluate.py`` asserts them (all tasks except bucc2018, mewslix, mlqa, tydiqa, xquad),
        or bad file contents. ValueError: an unknown task or mode.
    """
    check_mode(mode, "score_language")
    try:
        spec = get_task(task)
    except KeyError:
        raise ValueError(f"score_language: no metric for task {task!r}") from None
    ev, ext = spec.evaluator, spec.prediction_file
    predictions: Any  # the evaluator's input: labels, tag sequences, or id -> answer mappings
    labels: Any
    if ext == "jsonl":
        predictions, labels = read_xcopa(prediction_file), read_xcopa(label_file)
    elif ev in _LABEL_LINE_EVALUATORS or ev == "bucc_f1":
        predictions, labels = read_label(prediction_file), read_label(label_file)
    elif ev == "tagging_f1":
        predictions, labels = read_tag(prediction_file, mode), read_tag(label_file, mode)
    elif ev in ("qa_squad", "qa_mlqa"):
        predictions, labels = read_squad(prediction_file), read_squad(label_file)
        if not isinstance(predictions, dict):
            raise DataFormatError(prediction_file, "expected a JSON object question_id -> answer text")
    elif ev == "mewslix_map":
        predictions, labels = _read_mewslix(prediction_file, mode), _read_mewslix(label_file, mode)
    else:
        raise ValueError(f"score_language: no metric for task {task!r}")
    if ev not in _NO_LENGTH_CHECK and len(predictions) != len(labels):
        unit = "sentences" if ev == "tagging_f1" else "examples"
        raise DataFormatError(
            prediction_file,
            f"number of {unit} ({len(predictions)}) does not match {label_file} "
            f"({len(labels)}) in task {task} (evaluate.py asserts this)",
        )
    try:
        if ev in _LABEL_LINE_EVALUATORS:
            return accuracy(predictions, labels, mode)
        if ev == "tagging_f1":
            return tagging_f1(predictions, labels, tagging_mode or mode)
        if ev == "bucc_f1":
            return bucc_f1(predictions, labels, mode)
        if ev == "qa_mlqa":
            return mlqa_scores(predictions, labels, lang, mode)
        if ev == "qa_squad":
            return squad_scores(predictions, labels, mode)
        return mewslix_map_at_k(predictions, labels, k=20, mode=mode)
    except DataFormatError:
        raise
    except ValueError as e:  # a content problem the metric found: name the files
        raise DataFormatError(prediction_file, f"{e} (scored against {label_file})") from None


def _subfolders(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"not a folder: {folder}")
    return sorted(e.name for e in os.scandir(folder) if e.is_dir())


def score_folder(
    prediction_folder: str,
    label_folder: str,
    version: str,
    task2langs: Mapping[str, Sequence[str]],
    mode: str = OFFICIAL,
    tagging_mode: str | None = None,
    extra_task_avgs: Mapping[str, Mapping] | None = None,
) -> dict:
    """Do what ``evaluate.py --xtreme_version <version>`` does over a submission layout.

    Args:
        prediction_folder, label_folder: folders with one sub-folder per task.
        version: ``"xtreme"`` or ``"xtreme-r"``.
        task2langs: task -> language list for this version (from the task registry). Only these
            tasks are scored, and only when the task folder exists in **both** folders; every
            listed language must then have both files.
        mode: ``"official"`` or ``"corrected"``, passed to every metric. Corrected also changes
            reading: tag files ignore repeated/trailing blank lines and Mewsli-X files skip the
            ``data`` rule of ``read_squad``.
        tagging_mode: overrides ``mode`` for udpos/panx (e.g. ``"seqeval_1x"``).
        extra_task_avgs: task averages computed elsewhere (typically ``lareqa`` from
            :func:`lareqa_map_at_k` + :func:`task_average`) to include in the XTREME-R totals.

    Returns:
        ``{"version", "mode", "detailed": {task: {metric: {lang: value}, "avg_<metric>": ...,
        "avg_metric": ...}} (evaluate.py's layout), "per_language": {task: {lang: full metric
        dict}}, "task_averages": {task: task_average dict}, "overall": {...}, "aggregates":
        {...}, "note": [...]}``.

        ``overall`` mirrors ``evaluate.py``'s overall scores: for XTREME ``all_task`` (only with
        all 9 tasks) and complete group means; for XTREME-R the complete group means only (the
        script cannot produce a total). ``aggregates`` holds the named aggregator dicts:
        ``xtreme_score``, or ``xtreme_r_script_groups`` and, when the tasks are complete,
        ``xtreme_r_task_mean`` and (with lareqa) ``xtreme_r_category_mean``.

    Official crash handled: ``lareqa`` (empty language list in ``evaluate.py``) has no metric
    there; ``evaluate.py`` records ``{}`` for it and then fails with ``KeyError: 'avg_metric'``.
    Here a ``lareqa`` folder is skipped with a note whatever language list is passed (its
    mAP@20 needs embeddings: use :func:`lareqa_map_at_k` and ``extra_task_avgs``).

    Raises:
        FileNotFoundError: a missing folder or file; ValueError: unknown version, task or mode,
        bad file contents, unequal counts.
    """
    check_mode(mode, "score_folder", DEFAULT_MODES)
    if tagging_mode is not None:
        check_mode(tagging_mode, "score_folder(tagging_mode)", DEFAULT_MODES + (SEQEVAL_1X,))
    if version not in VERSIONS:
        raise ValueError(f"score_folder: unknown version {version!r}; expected 'xtreme' or 'xtreme-r'")
    bench = BENCHMARK_OF_VERSION[version]
    known = benchmark_tasks(bench)
    unknown = [t for t in task2langs if t not in known]
    if unknown:
        raise ValueError(f"score_folder: task(s) {', '.join(unknown)} are not {version} tasks")
    pred_tasks, label_tasks = set(_subfolders(prediction_folder)), set(_subfolders(label_folder))
    notes: list[str] = []
    detailed: dict[str, dict] = {}
    per_language: dict[str, dict[str, dict]] = {}
    task_avgs: dict[str, dict] = {}
    for task, langs in task2langs.items():
        if task not in pred_tasks or task not in label_tasks:
            continue
        langs = list(langs)
        if get_task(task).prediction_file == "none" or not langs:
            notes.append(
                f"{task}: no per-file metric in evaluate.py (empty language list there; it records {{}} "
                "and later fails with KeyError 'avg_metric'); skipped - score it with lareqa_map_at_k "
                "and pass the task average as extra_task_avgs"
            )
            continue
        ext = task_file_extension(task)
        scores: dict[str, dict] = {}
        for lang in langs:
            pfile = os.path.join(prediction_folder, task, f"test-{lang}.{ext}")
            lfile = os.path.join(label_folder, task, f"test-{lang}.{ext}")
            scores[lang] = score_language(task, pfile, lfile, lang, mode, tagging_mode)
            for note in scores[lang].get("note", []):
                notes.append(f"{task}/{lang}: {note}")
        per_language[task] = scores
        avg = task_average(scores, langs, task)
        task_avgs[task] = avg
        table: dict[str, Any] = {}
        for lang in langs:
            for metric, value in scores[lang].items():
                if is_metric_key(metric):
                    table.setdefault(metric, {})[lang] = value
        table.update({k: v for k, v in avg.items() if k.startswith("avg_")})
        detailed[task] = table
    all_avgs: dict[str, Mapping] = dict(task_avgs)
    if extra_task_avgs:
        for task, extra in extra_task_avgs.items():
            if task in all_avgs:
                raise ValueError(f"score_folder: extra_task_avgs repeats scored task {task!r}")
            all_avgs[task] = extra
    aggregates: dict[str, dict] = {}
    overall: dict[str, float] = {}
    if version == "xtreme":
        agg = xtreme_score(all_avgs)
        aggregates["xtreme_score"] = agg
        overall = {k: agg[k] for k in ("all_task", "classification", "tagging", "qa", "retrieval") if k in agg}
    else:
        agg = xtreme_r_script_groups(all_avgs)
        aggregates["xtreme_r_script_groups"] = agg
        overall = {k: agg[k] for k in ("classification", "tagging", "qa", "retrieval", "multi_choice") if k in agg}
        required = [t for t in known if get_task(t).scoring[bench]["in_average"]]
        if all(t in all_avgs for t in required):
            aggregates["xtreme_r_task_mean"] = xtreme_r_task_mean(all_avgs)
            absent = [t for t in known if t not in all_avgs]
            if not absent:
                aggregates["xtreme_r_category_mean"] = xtreme_r_category_mean(all_avgs)
            else:
                notes.append(f"xtreme_r_category_mean needs a {', '.join(absent)} task average (pass extra_task_avgs)")
    if mode == CORRECTED:
        notes.append("mode 'corrected': numbers are not the official scorer's")
    return {
        "version": version,
        "mode": mode,
        "tagging_mode": tagging_mode or mode,
        "detailed": detailed,
        "per_language": per_language,
        "task_averages": task_avgs,
        "overall": overall,
        "aggregates": aggregates,
        "note": notes,
        "source": official_source("evaluate.py"),
    }
