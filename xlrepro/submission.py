"""Predictions (and labels) in the XTREME / XTREME-R submission layout: what ``evaluate.py`` and
``xlrepro score`` read.

  <folder>/<task>/<split>-<lang>.<ext>     ext: the task's ``prediction_file`` in the registry (json for
                                           xquad, mlqa, tydiqa, mewslix; jsonl for xcopa; tsv otherwise)

The leaderboard takes the ``test`` files; the pipeline writes every evaluated split the same way.
File contents, one file per task and language, in the order of the task's own files:

  classification (xnli, pawsx)    one label string per line
  xcopa                           one JSON object per line, {"idx": <example id>, "label": <chosen
                                  alternative, 0 or 1>} (``evaluate.py`` parses each line as JSON and
                                  compares the ``label`` fields only)
  other multiple choice           the index of the chosen alternative per line
  tagging (udpos, panx)           one tag per word and line, a blank line after every sentence
  span QA (xquad, mlqa, tydiqa)   JSON {question id: answer text}; the ids are the official ones of the
                                  task's file (TyDiQA's guids are file positions, so its ids come from the
                                  file's data, which keeps the examples' order)
  bucc2018                        one extracted pair per line, ``<xx id> TAB <en id>`` (the gold file's form)
  tatoeba                         for each English sentence, in file order, the line index (0-based) of the
                                  retrieved non-English sentence (evaluate.py compares it with the label
                                  file's index; the official retrieval script's ``[12]`` form never matches)
  mewslix                         JSON {example id: [entity ids, best first]} (scored as MRR@20 over the first)

The content follows the task's registry fields, never its name: ``evaluator`` (bucc_f1, tatoeba_accuracy,
mewslix_map have their own forms), ``prediction_file`` (jsonl: the XCOPA form) and ``format``.
LAReQA (``prediction_file: none``) has no per-file metric in ``evaluate.py`` and so no submission
file. Writing is atomic (temporary file, then rename). :func:`assemble_submission` rebuilds an experiment's
``<out>/submission/`` from its runs' test files: the folder then holds exactly the files its
``MANIFEST.json`` lists.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from xlrepro.data.types import Format, qa_ids
from xlrepro.formats import squad_data
from xlrepro.metrics.evaluate import task_file_extension
from xlrepro.runs import atomic_write_json, atomic_write_text
from xlrepro.tasks.registry import get_task


def submission_path(folder: str | Path, task: str, split: str, lang: str) -> Path:
    """``<folder>/<task>/<split>-<lang>.<ext>``."""
    return Path(folder) / task / f"{split}-{lang}.{task_file_extension(task)}"


def prediction_text(task: str, fmt: Format, predictions, examples: Sequence = (), raw=None) -> str:
    """The content of one prediction file (see the module doc).

    ``predictions``: the adapter's predictions in example order (label strings, choice indices,
    tag lists, answer strings); for bucc2018 the extracted ``(xx id, en id)`` pairs; for tatoeba
    the retrieved non-English line index per English sentence; for mewslix ``{example id:
    [entity ids]}``.
    """
    spec = get_task(task)
    if spec.prediction_file == "none":
        raise ValueError(f"{task}: evaluate.py has no per-file metric for it, so there is no submission file")
    if spec.evaluator == "bucc_f1":
        return "".join(f"{_field(a, task)}\t{_field(b, task)}\n" for a, b in predictions)
    if spec.evaluator == "tatoeba_accuracy":
        return "".join(f"{int(i)}\n" for i in predictions)
    if spec.evaluator == "mewslix_map":
        if not isinstance(predictions, Mapping):
            raise ValueError(f"{task}: expected {{example id: [entity ids]}}")
        return json.dumps({str(k): [str(e) for e in v] for k, v in predictions.items()}, ensure_ascii=False) + "\n"
    predictions = list(predictions)
    if len(predictions) != len(examples):
        raise ValueError(f"{task}: {len(predictions)} predictions for {len(examples)} examples")
    if fmt == Format.SPAN_QA:
        return json.dumps(dict(zip(qa_ids(examples, raw), predictions)), ensure_ascii=False) + "\n"
    if fmt == Format.TAGGING:
        out = []
        for e, tags in zip(examples, predictions):
            if len(tags) != len(e.words) or not tags:
                raise ValueError(f"{task}: {len(tags)} tags for the {len(e.words)} words of {e.guid}")
            out.append("".join(f"{_field(t, task)}\n" for t in tags) + "\n")
        return "".join(out)
    if spec.prediction_file == "jsonl":  # read by evaluate.py:read_xcopa, scored by the label field
        return "".join(
            json.dumps({"idx": _json_idx(e.guid), "label": _choice(p, task, e.guid)}) + "\n"
            for e, p in zip(examples, predictions)
        )
    if fmt in (Format.CLASSIFICATION, Format.MULTIPLE_CHOICE):
        return "".join(f"{_field(p, task)}\n" for p in predictions)
    raise ValueError(f"{task}: no submission format for {fmt}")


def label_text(task: str, fmt: Format, examples: Sequence, raw=None) -> str:
    """The gold of labelled examples in the label layout ``evaluate.py`` reads (the counterpart of
    :func:`prediction_text`; for checking exports, and for scoring splits whose labels one holds).
    An example without its label is an error: a withheld split has no label file."""
    spec = get_task(task)
    if spec.prediction_file == "none":
        raise ValueError(f"{task}: evaluate.py has no per-file metric for it, so there is no label file")
    if spec.evaluator in ("bucc_f1", "tatoeba_accuracy"):
        (ex,) = examples
        if ex.gold is None:
            raise ValueError(f"{task}: {ex.guid} has no gold pairs")
        if spec.evaluator == "bucc_f1":
            return prediction_text(task, fmt, ex.gold)
        src_index = {s: i for i, s in enumerate(ex.src_ids)}
        src_of = dict((t, s) for s, t in ex.gold)
        return prediction_text(task, fmt, [src_index[src_of[t]] for t in ex.tgt_ids])
    if spec.evaluator == "mewslix_map":
        missing = [e.guid for e in examples if e.entity_id is None]
        if missing:
            raise ValueError(f"{task}: {len(missing)} mentions without an entity id (first: {missing[0]})")
        return prediction_text(task, fmt, {e.guid: [e.entity_id] for e in examples})
    if fmt == Format.SPAN_QA:
        unlabelled = [e.guid for e in examples if not e.answers]
        if unlabelled:
            raise ValueError(f"{task}: {len(unlabelled)} questions without answers (first: {unlabelled[0]})")
        if raw is None:  # the reader kept no raw file: the examples as SQuAD data
            raw = squad_data(examples)
        return json.dumps({"version": "1.1", "data": list(raw)}, ensure_ascii=False) + "\n"
    gold = [e.tags if fmt == Format.TAGGING else e.label for e in examples]
    if any(g is None for g in gold):
        raise ValueError(f"{task}: labels withheld; a split without labels has no label file")
    return prediction_text(task, fmt, gold, examples)


def write_predictions(
    folder: str | Path, task: str, split: str, lang: str, fmt: Format, predictions, examples: Sequence = (), raw=None
) -> Path:
    path = submission_path(folder, task, split, lang)
    atomic_write_text(path, prediction_text(task, fmt, predictions, examples, raw))
    return path


def write_labels(
    folder: str | Path, task: str, split: str, lang: str, fmt: Format, examples: Sequence, raw=None
) -> Path:
    path = submission_path(folder, task, split, lang)
    atomic_write_text(path, label_text(task, fmt, examples, raw))
    return path


def _field(value, task: str) -> str:
    s = str(value)
    if not s or s != s.strip() or any(c in s for c in "\t\n\r"):
        raise ValueError(f"{task}: {value!r} cannot be written as one field of a line (evaluate.py strips lines)")
    return s


def _json_idx(guid):
    """An example's id as the JSON ``idx`` field: an int when the id is a decimal number (XCOPA's
    own ``idx``), else the id string."""
    g = str(guid)
    return int(g) if g.isdecimal() and g.isascii() else g


def _choice(value, task: str, guid) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{task}: the answer for {guid} must be the index of an alternative (an int), got {value!r}")
    return value


def assemble_submission(
    dest: str | Path, sources: Iterable[tuple[str, str, str | Path]], scored: set | frozenset = frozenset()
) -> dict:
    """Rebuild ``dest`` (``<out>/submission``) from the ``test-*`` files of some runs.

    Args:
        dest: the submission folder.
        sources: ``(task, run id, folder)`` per run, in order; ``folder`` holds the run's
            ``test-<lang>.<ext>`` files of ``task``. When two runs give the same task and
            language, the later one wins.
        scored: the ``(task, language)`` pairs whose test split was scored (labels held);
            recorded in the manifest.

    Returns:
        The manifest ``{task: {lang: {"run", "scored"}}}``, also written to
        ``dest/MANIFEST.json`` when not empty.

    The new content is built in a sibling temporary folder and then put in place of ``dest``, so
    ``dest`` holds exactly the files the manifest lists: files of earlier runs (other
    languages, tasks no longer in the experiment, an old manifest) do not stay. With nothing to
    list, ``dest`` is removed. A temporary folder left by an interrupted call is removed too.
    """
    dest = Path(dest)
    chosen: dict[tuple[str, str], tuple[str, Path]] = {}
    for task, run, folder in sources:
        for f in sorted(Path(folder).glob("test-*")):
            if f.is_file():
                chosen[(task, f.stem.split("-", 1)[1])] = (run, f)
    manifest: dict = {}
    for (task, lang), (run, _) in sorted(chosen.items(), key=lambda kv: kv[0]):
        manifest.setdefault(task, {})[lang] = {"run": run, "scored": (task, lang) in scored}
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{dest.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = parent / f".{dest.name}.tmp-{os.getpid()}"
    old = parent / f".{dest.name}.old-{os.getpid()}"
    if manifest:
        for (task, _), (_, f) in chosen.items():
            (tmp / task).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, tmp / task / f.name)
        atomic_write_json(tmp / "MANIFEST.json", manifest)
    if dest.exists():
        os.replace(dest, old)
    if manifest:
        os.replace(tmp, dest)
    for stale in parent.glob(f".{dest.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return manifest
