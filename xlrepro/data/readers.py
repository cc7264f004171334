"""Readers of the tasks' original file formats.

A reader is registered under a name with ``@reader(name)`` and called as
``fn(paths: dict[str, Path], **options) -> ReadResult``; task registry entries name their
reader and the file templates (``xlrepro/tasks/*.yaml``). Readers parse, never regex, accept
LF and CRLF, and raise ``DataFormatError`` naming file, line and field on malformed input.
Skipping is allowed only by a documented rule and is counted in ``ReadResult.skipped``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from xlrepro.data.io import lines, read_json, read_jsonl, read_text, require, tsv_rows
from xlrepro.data.types import (Answer, BitextExample, ClassificationExample, MultipleChoiceExample, ReadResult,
                                SpanQAExample, TaggingExample)
from xlrepro.errors import DataFormatError, did_you_mean

READERS: dict[str, Callable[..., ReadResult]] = {}


def reader(name: str):
    def deco(fn):
        if name in READERS:
            raise ValueError(f"reader {name!r} registered twice")
        READERS[name] = fn
        return fn
    return deco


def get_reader(name: str) -> Callable[..., ReadResult]:
    if name not in READERS:
        raise KeyError(f"unknown reader {name!r}{did_you_mean(name, READERS)}")
    return READERS[name]


def _check_label(label: str, labels, path, line, field="label"):
    if labels is not None and label not in labels:
        raise DataFormatError(path, f"unknown label {label!r}; expected one of {list(labels)}", line=line, field=field)
    return label


# --------------------------------------------------------------------------- classification


@reader("xtreme_pair_tsv")
def read_xtreme_pair_tsv(paths, labels=None, **_) -> ReadResult:
    """XTREME's processed XNLI / PAWS-X files: ``text_a \\t text_b [\\t label]``, no header.

    Test files have no label column (XTREME withholds test labels): examples get label None.
    A file must be consistently 2 or 3 columns.
    """
    path = paths["file"]
    rows, digest = tsv_rows(path)
    out, ncols = [], None
    for i, fields in rows:
        if ncols is None:
            ncols = len(fields)
            if ncols not in (2, 3):
                raise DataFormatError(path, f"expected 2 (text_a, text_b) or 3 (text_a, text_b, label) "
                                            f"tab-separated columns, got {ncols}", line=i)
        elif len(fields) != ncols:
            raise DataFormatError(path, f"expected {ncols} tab-separated columns like line 1, got {len(fields)}", line=i)
        label = _check_label(fields[2].strip(), labels, path, i) if ncols == 3 else None
        out.append(ClassificationExample(f"{Path(path).name}:{i}", fields[0], fields[1], label))
    return ReadResult(out, {str(path): digest})


@reader("glue_mnli_tsv")
def read_glue_mnli_tsv(paths, labels=None, **_) -> ReadResult:
    """GLUE's MNLI ``train.tsv`` / ``dev_matched.tsv`` / ``test_matched.tsv`` (header row; test has no label).

    Columns used: ``sentence1``, ``sentence2`` and ``gold_label`` (train/dev) — by header name.
    """
    path = paths["file"]
    rows, digest = tsv_rows(path)
    rows = list(rows)
    if not rows:
        raise DataFormatError(path, "empty file; expected a header row")
    header = rows[0][1]
    for col in ("sentence1", "sentence2"):
        if col not in header:
            raise DataFormatError(path, f"header lacks column {col!r} (have {header})", line=1, field=col)
    has_label = "gold_label" in header
    i1, i2 = header.index("sentence1"), header.index("sentence2")
    il = header.index("gold_label") if has_label else None
    out = []
    for i, f in rows[1:]:
        if len(f) != len(header):
            raise DataFormatError(path, f"expected {len(header)} tab-separated columns as in the header, got {len(f)}", line=i)
        label = _check_label(f[il], labels, path, i, "gold_label") if has_label else None
        guid = f[header.index("pairID")] if "pairID" in header else f"{Path(path).name}:{i}"
        out.append(ClassificationExample(guid, f[i1], f[i2], label))
    return ReadResult(out, {str(path): digest})


@reader("multinli_jsonl")
def read_multinli_jsonl(paths, labels=None, **_) -> ReadResult:
    """The original MultiNLI / SNLI JSON-lines release (``sentence1``, ``sentence2``, ``gold_label``).

    Rule: pairs whose ``gold_label`` is ``-`` (no annotator majority) are skipped and counted,
    as in every published MNLI/SNLI setup.
    """
    path = paths["file"]
    rows, digest = read_jsonl(path)
    out, skipped = [], 0
    for i, obj in rows:
        s1 = require(obj, "sentence1", str, path, i)
        s2 = require(obj, "sentence2", str, path, i)
        label = require(obj, "gold_label", str, path, i)
        if label == "-":
            skipped += 1
            continue
        _check_label(label, labels, path, i, "gold_label")
        out.append(ClassificationExample(str(obj.get("pairID", f"{Path(path).name}:{i}")), s1, s2, label))
    return ReadResult(out, {str(path): digest}, {"gold_label '-' (no majority)": skipped} if skipped else {})


# --------------------------------------------------------------------------- multiple choice


@reader("copa_jsonl")
def read_copa_jsonl(paths, **_) -> ReadResult:
    """COPA / XCOPA JSON lines: ``premise``, ``choice1``, ``choice2``, ``question`` (cause|effect), ``label`` (0|1).

    Files without labels (none in the releases we know) would give label None.
    """
    path = paths["file"]
    rows, digest = read_jsonl(path)
    out = []
    for i, obj in rows:
        premise = require(obj, "premise", str, path, i)
        c1 = require(obj, "choice1", str, path, i)
        c2 = require(obj, "choice2", str, path, i)
        q = require(obj, "question", str, path, i)
        if q not in ("cause", "effect"):
            raise DataFormatError(path, f"expected 'cause' or 'effect', got {q!r}", line=i, field="question")
        label = obj.get("label")
        if label is not None and label not in (0, 1):
            raise DataFormatError(path, f"expected 0 or 1, got {label!r}", line=i, field="label")
        out.append(MultipleChoiceExample(str(obj.get("idx", i - 1)), premise, [c1, c2], label, q))
    return ReadResult(out, {str(path): digest})


@reader("hellaswag_jsonl")
def read_hellaswag_jsonl(paths, **_) -> ReadResult:
    """HellaSwag's release files: ``ctx`` (= ``ctx_a`` + " " + ``ctx_b``), 4 ``endings``, ``label`` (absent in test)."""
    path = paths["file"]
    rows, digest = read_jsonl(path)
    out = []
    for i, obj in rows:
        ctx = require(obj, "ctx", str, path, i)
        endings = require(obj, "endings", list, path, i)
        if len(endings) != 4 or not all(isinstance(e, str) for e in endings):
            raise DataFormatError(path, f"expected a list of 4 strings, got {endings!r:.80}", line=i, field="endings")
        label = obj.get("label")
        if label is not None and label not in (0, 1, 2, 3):
            raise DataFormatError(path, f"expected an integer 0-3, got {label!r}", line=i, field="label")
        out.append(MultipleChoiceExample(str(obj.get("ind", i - 1)), ctx, list(endings), label))
    return ReadResult(out, {str(path): digest})


# --------------------------------------------------------------------------- span QA


@reader("squad_json")
def read_squad_json(paths, require_answers: bool = True, **_) -> ReadResult:
    """SQuAD v1.1 / v2.0-style JSON (SQuAD, XQuAD, MLQA, TyDiQA-GoldP in XTREME's layout).

    Accepts ``version`` first or last, ``qas`` before or after ``context``, no ``title``.
    ``raw`` is the file's ``data`` list, which the official scorers take. Answer offsets are
    checked against the context (a mismatch is an error naming the question id).
    """
    path = paths["file"]
    obj, digest = read_json(path)
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        raise DataFormatError(path, "expected a top-level object with a 'data' list", field="data")
    out = []
    for a, article in enumerate(data):
        paragraphs = require(article, "paragraphs", list, path, None)
        for p, para in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            if "context" not in para:
                raise DataFormatError(path, "missing required field", field=f"{where}.context")
            ctx = para["context"]
            for q, qa in enumerate(para.get("qas", [])):
                qwhere = f"{where}.qas[{q}]"
                for key in ("id", "question"):
                    if key not in qa:
                        raise DataFormatError(path, "missing required field", field=f"{qwhere}.{key}")
                answers = []
                for n, ans in enumerate(qa.get("answers", [])):
                    if "text" not in ans or "answer_start" not in ans:
                        raise DataFormatError(path, "answer needs 'text' and 'answer_start'", field=f"{qwhere}.answers[{n}]")
                    start = int(ans["answer_start"])
                    if ctx[start:start + len(ans["text"])] != ans["text"]:
                        raise DataFormatError(path, f"answer {ans['text']!r} not found at offset {start} of the context "
                                                    f"(question id {qa['id']})", field=f"{qwhere}.answers[{n}].answer_start")
                    answers.append(Answer(ans["text"], start))
                impossible = bool(qa.get("is_impossible", False))
                if require_answers and not answers and not impossible:
                    raise DataFormatError(path, f"question {qa['id']} has no answers", field=f"{qwhere}.answers")
                out.append(SpanQAExample(str(qa["id"]), qa["question"], ctx, answers, article.get("title"), impossible))
    return ReadResult(out, {str(path): digest}, raw=data)


# --------------------------------------------------------------------------- tagging


@reader("conllu_upos")
def read_conllu_upos(paths, fused_forms: bool = True, **_) -> ReadResult:
    """UD CoNLL-U, UPOS tags (column 4) of each word.

    ``fused_forms=True`` (XTREME's conversion, ``--replace_subtokens_with_fused_forms``): a
    multi-word token ``3-4`` becomes one word with the surface form and the tag of its FIRST
    part. ``False``: the syntactic words themselves. Empty nodes (``5.1``) are always dropped.
    """
    path = paths["file"]
    text, digest = read_text(path)
    out, words, tags, span_end, sent_no = [], [], [], 0, 0

    def close(lineno):
        nonlocal words, tags, sent_no, span_end
        span_end = 0
        if words:
            out.append(TaggingExample(f"{Path(path).name}:{sent_no}", words, tags))
            sent_no += 1
        words, tags = [], []

    for i, line in enumerate(lines(text), 1):
        if not line.strip():
            close(i)
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise DataFormatError(path, f"expected 10 tab-separated CoNLL-U columns, got {len(cols)}", line=i)
        tid, form, upos = cols[0], cols[1], cols[3]
        if "." in tid:
            continue
        if "-" in tid:
            try:
                a, b = (int(x) for x in tid.split("-"))
            except ValueError:
                raise DataFormatError(path, f"bad multi-word token range {tid!r}", line=i, field="ID") from None
            if fused_forms:
                words.append(form)
                tags.append(None)  # filled by the first part
                span_end = b
            continue
        if not tid.isdigit():
            raise DataFormatError(path, f"expected an integer word ID, got {tid!r}", line=i, field="ID")
        if upos == "_" or not upos:
            raise DataFormatError(path, "missing UPOS tag", line=i, field="UPOS")
        n = int(tid)
        if fused_forms and n <= span_end:
            if tags and tags[-1] is None:
                tags[-1] = upos
            continue
        words.append(form)
        tags.append(upos)
    close(None)
    return ReadResult(out, {str(path): digest})


@reader("xtreme_tag_tsv")
def read_xtreme_tag_tsv(paths, labels=None, **_) -> ReadResult:
    """XTREME's processed UD-POS / PAN-X files: ``word \\t TAG`` per line, blank line between sentences.

    Test files carry only the word column (labels withheld): tags None. A file must be
    consistently labelled or unlabelled.
    """
    path = paths["file"]
    text, digest = read_text(path)
    out, words, tags, labelled = [], [], [], None
    start = 1
    for i, line in enumerate(lines(text) + [""], 1):
        if not line.strip():
            if words:
                out.append(TaggingExample(f"{Path(path).name}:{start}", words, tags if labelled else None))
            words, tags, start = [], [], i + 1
            continue
        cols = line.split("\t")
        if len(cols) > 2:
            raise DataFormatError(path, f"expected 'word' or 'word<TAB>tag', got {len(cols)} columns", line=i)
        has = len(cols) == 2
        if labelled is None:
            labelled = has
        elif has != labelled:
            raise DataFormatError(path, "mixed labelled and unlabelled lines; expected every line "
                                        + ("'word<TAB>tag'" if labelled else "'word'"), line=i)
        words.append(cols[0])
        if has:
            tags.append(_check_label(cols[1], labels, path, i, "tag"))
    return ReadResult(out, {str(path): digest})


# --------------------------------------------------------------------------- retrieval


@reader("tatoeba_pair")
def read_tatoeba_pair(paths, src_lang: str = "", **_) -> ReadResult:
    """LASER's Tatoeba test pairs: ``tatoeba.<xxx>-eng.<xxx>`` and ``tatoeba.<xxx>-eng.eng``, line i <-> line i.

    One ``BitextExample``: src = the non-English side, tgt = English, gold = (i, i).
    """
    src_text, src_digest = read_text(paths["src"])
    eng_text, eng_digest = read_text(paths["eng"])
    src, eng = lines(src_text), lines(eng_text)
    if len(src) != len(eng):
        raise DataFormatError(paths["src"], f"{len(src)} lines but the English side {paths['eng']} has {len(eng)}; "
                                            "expected line-aligned files")
    for name, side in (("src", src), ("eng", eng)):
        for i, s in enumerate(side, 1):
            if not s.strip():
                raise DataFormatError(paths[name], "empty sentence; expected one sentence per line", line=i)
    ids = [str(i) for i in range(len(src))]
    ex = BitextExample(f"tatoeba.{src_lang}", src_lang, "en", ids, src, list(ids), eng, [(i, i) for i in ids])
    return ReadResult([ex], {str(paths["src"]): src_digest, str(paths["eng"]): eng_digest})

from xlrepro.data import readers_intermediate, readers_xtreme  # noqa: E402,F401  (register their readers)

from xlrepro.data import readers_retrieval  # noqa: E402,F401  (dual-encoder retrieval: Mewsli-X pairs, candidates)
from xlrepro.data import hub  # noqa: E402,F401  (the hub_parquet reader of prepared Hub splits)
