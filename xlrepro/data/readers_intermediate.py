"""Readers of the English intermediate tasks' original formats (registered in ``reader_registry.READERS``).

ANLI (JSON lines, letter labels), CommonsenseQA (JSON lines, 5 lettered choices), Cosmos QA
(RFC-4180 CSV, CRLF, and the JSON-lines test file), Social IQa (v1.4 inline letters; AllenAI
release with a 1-based label file) and CCGbank AUTO files (supertags). MNLI/SNLI, QQP, SST-2 and
SQuAD v2.0 use the generic readers (``multinli_jsonl``, ``glue_mnli_tsv``, ``header_tsv``,
``squad_json``). Same contract as ``readers.py``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from xlrepro.data.io import lines, read_jsonl, read_text, require
from xlrepro.data.reader_registry import reader
from xlrepro.data.readers import check_label
from xlrepro.data.types import ClassificationExample, MultipleChoiceExample, ReadResult, TaggingExample
from xlrepro.errors import DataFormatError

# --------------------------------------------------------------------------- ANLI

ANLI_LABELS = {"e": "entailment", "n": "neutral", "c": "contradiction"}


@reader("anli_jsonl")
def read_anli_jsonl(paths, labels=None, **_) -> ReadResult:
    """Adversarial NLI ``R{1,2,3}/{train,dev,test}.jsonl``: ``uid``, ``context`` (premise), ``hypothesis``, ``label``.

    The release's letter labels ``e`` / ``n`` / ``c`` are mapped to MNLI's names (entailment /
    neutral / contradiction), so that ANLI, MNLI and SNLI share one label set (ANLI+).
    """
    path = paths["file"]
    rows, digest = read_jsonl(path)
    out = []
    for i, obj in rows:
        uid = require(obj, "uid", str, path, i)
        premise = require(obj, "context", str, path, i)
        hyp = require(obj, "hypothesis", str, path, i)
        letter = require(obj, "label", str, path, i)
        if letter not in ANLI_LABELS:
            raise DataFormatError(
                path, f"unknown label {letter!r}; expected one of {list(ANLI_LABELS)}", line=i, field="label"
            )
        out.append(ClassificationExample(uid, premise, hyp, check_label(ANLI_LABELS[letter], labels, path, i)))
    return ReadResult(out, {str(path): digest})


# --------------------------------------------------------------------------- CommonsenseQA


@reader("commonsenseqa_jsonl")
def read_commonsenseqa_jsonl(paths, **_) -> ReadResult:
    """CommonsenseQA v1.11:
    ``{"answerKey", "id", "question": {"question_concept", "choices": [{label, text}], "stem"}}``.

    ``question`` = the stem, ``context`` = "" (CSQA has no passage), ``choices`` in file order
    (labels A-E), ``label`` = index of ``answerKey`` among the choice labels; the test file has no
    ``answerKey`` (label None).
    """
    path = paths["file"]
    rows, digest = read_jsonl(path)
    out = []
    for i, obj in rows:
        qid = require(obj, "id", str, path, i)
        q = require(obj, "question", dict, path, i)
        stem = require(q, "stem", str, path, i)
        choices = require(q, "choices", list, path, i)
        letters, texts = [], []
        for n, ch in enumerate(choices):
            if not isinstance(ch, dict) or not isinstance(ch.get("label"), str) or not isinstance(ch.get("text"), str):
                raise DataFormatError(path, "expected {label: str, text: str}", line=i, field=f"question.choices[{n}]")
            letters.append(ch["label"])
            texts.append(ch["text"])
        if len(texts) != 5:
            raise DataFormatError(path, f"expected 5 choices, got {len(texts)}", line=i, field="question.choices")
        label = None
        if "answerKey" in obj:
            key = obj["answerKey"]
            if key not in letters:
                raise DataFormatError(
                    path, f"unknown label {key!r}; expected one of {letters}", line=i, field="answerKey"
                )
            label = letters.index(key)
        out.append(MultipleChoiceExample(qid, "", texts, label, stem))
    return ReadResult(out, {str(path): digest})


# --------------------------------------------------------------------------- Cosmos QA

COSMOS_FIELDS = ("id", "context", "question", "answer0", "answer1", "answer2", "answer3")


def _cosmos_example(rec: dict, path, line: int, labelled: bool) -> MultipleChoiceExample:
    for k in COSMOS_FIELDS:
        if not isinstance(rec.get(k), str):
            raise DataFormatError(
                path,
                "missing required field" if k not in rec else f"expected a string, got {rec[k]!r:.40}",
                line=line,
                field=k,
            )
    label = None
    if labelled:
        raw = rec.get("label")
        if isinstance(raw, str) and raw.strip() in ("0", "1", "2", "3"):
            label = int(raw)
        elif isinstance(raw, int) and not isinstance(raw, bool) and raw in (0, 1, 2, 3):
            label = raw
        else:
            raise DataFormatError(path, f"unknown label {raw!r}; expected 0, 1, 2 or 3", line=line, field="label")
    return MultipleChoiceExample(
        rec["id"], rec["context"], [rec[f"answer{k}"] for k in range(4)], label, rec["question"]
    )


@reader("cosmosqa")
def read_cosmosqa(paths, **_) -> ReadResult:
    """Cosmos QA: ``train.csv`` / ``valid.csv`` (RFC-4180 CSV, CRLF, header
    ``id,context,question,answer0..answer3,label``) and ``test.jsonl`` (same keys, no label).

    The format is chosen by the file suffix (``.csv`` / ``.jsonl``). CSV is parsed with the
    ``csv`` module (quoted fields may hold commas, quotes and newlines); the line of a record is
    the physical line where it starts. A CSV with a ``label`` column must label every row.
    """
    path = paths["file"]
    if str(path).endswith(".jsonl"):
        rows, digest = read_jsonl(path)
        return ReadResult([_cosmos_example(obj, path, i, "label" in obj) for i, obj in rows], {str(path): digest})
    text, digest = read_text(path)
    rd = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(rd)
    except StopIteration:
        raise DataFormatError(path, "empty file; expected a header row", line=1) from None
    except csv.Error as e:
        raise DataFormatError(path, f"invalid CSV ({e})", line=rd.line_num) from None
    for k in COSMOS_FIELDS:
        if k not in header:
            raise DataFormatError(path, f"header lacks column {k!r} (have {header})", line=1, field=k)
    out, start = [], rd.line_num + 1
    while True:
        try:
            row = next(rd)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataFormatError(path, f"invalid CSV ({e})", line=start) from None
        if row:
            if len(row) != len(header):
                raise DataFormatError(
                    path,
                    f"expected {len(header)} comma-separated fields as in the header, got {len(row)}",
                    line=start,
                    field=header[len(row)] if len(row) < len(header) else None,
                )
            out.append(_cosmos_example(dict(zip(header, row)), path, start, "label" in header))
        start = rd.line_num + 1
    return ReadResult(out, {str(path): digest})


# --------------------------------------------------------------------------- Social IQa

SIQA_LETTERS = ("A", "B", "C")


def _siqa_example(obj: dict, path, line: int, label) -> MultipleChoiceExample:
    ctx = require(obj, "context", str, path, line)
    q = require(obj, "question", str, path, line)
    choices = [require(obj, f"answer{L}", str, path, line) for L in SIQA_LETTERS]
    return MultipleChoiceExample(f"{Path(path).name}:{line}", ctx, choices, label, q)


@reader("socialiqa_jsonl")
def read_socialiqa_jsonl(paths, **_) -> ReadResult:
    """Social IQa v1.4 (``socialIQa_v1.4_{trn,dev,tst}.jsonl``): ``context, question, answerA-C,
    correct`` (A/B/C inline).

    guid = ``<file>:<line>`` (the release has no ids).
    """
    path = paths["file"]
    rows, digest = read_jsonl(path)
    out = []
    for i, obj in rows:
        letter = require(obj, "correct", str, path, i)
        if letter not in SIQA_LETTERS:
            raise DataFormatError(path, f"unknown label {letter!r}; expected A, B or C", line=i, field="correct")
        out.append(_siqa_example(obj, path, i, SIQA_LETTERS.index(letter)))
    return ReadResult(out, {str(path): digest})


@reader("socialiqa_allenai")
def read_socialiqa_allenai(paths, **_) -> ReadResult:
    """The AllenAI Social IQa release: ``{train,dev}.jsonl`` without labels plus ``{train,dev}-labels.lst``.

    The label file has one label per line, **1-based** (1 = A, 2 = B, 3 = C), line i labelling the
    i-th non-blank JSON line; the counts must agree.
    """
    path, lpath = paths["file"], paths["labels"]
    rows, digest = read_jsonl(path)
    ltext, ldigest = read_text(lpath)
    labels = [(n, l.strip()) for n, l in enumerate(lines(ltext, lpath), 1) if l.strip()]
    if len(labels) != len(rows):
        raise DataFormatError(lpath, f"{len(labels)} labels but {path} has {len(rows)} examples", field="label")
    out = []
    for (i, obj), (n, lab) in zip(rows, labels):
        if lab not in ("1", "2", "3"):
            raise DataFormatError(
                lpath, f"unknown label {lab!r}; expected 1, 2 or 3 (1-based A-C)", line=n, field="label"
            )
        out.append(_siqa_example(obj, path, i, int(lab) - 1))
    return ReadResult(out, {str(path): digest, str(lpath): ldigest})


# --------------------------------------------------------------------------- CCGbank

# The standard CCGbank split (Hockenmaier & Steedman 2007; Clark & Curran 2007): WSJ sections
# 02-21 train, 00 dev, 23 test.
CCG_SECTIONS = {"train": tuple(f"{n:02d}" for n in range(2, 22)), "dev": ("00",), "test": ("23",)}


def _parse_auto_tree(tree: str, path, line: int) -> tuple[list[str], list[str]]:
    """(words, supertags) of one AUTO derivation; checks the bracket structure and child counts."""
    toks = tree.split()
    stack: list[list[int]]
    words, tags, stack, k = [], [], [], 0

    def bad(msg):
        return DataFormatError(path, f"{msg} (token {k + 1} of the derivation)", line=line, field="tree")

    while k < len(toks):
        t = toks[k]
        if t == "(<T":
            if k + 3 >= len(toks) or not toks[k + 3].endswith(">"):
                raise bad("expected '(<T CAT HEAD NCHILDREN>'")
            try:
                n = int(toks[k + 3][:-1])
            except ValueError:
                raise bad(f"expected the number of children, got {toks[k + 3]!r}") from None
            if stack:
                stack[-1][1] += 1
            stack.append([n, 0])
            k += 4
        elif t == "(<L":
            if k + 5 >= len(toks) or not toks[k + 5].endswith(">)"):
                raise bad("expected a leaf '(<L CAT POS POS WORD PRED-ARG-CAT>)'")
            tags.append(toks[k + 1])
            words.append(toks[k + 4])
            if stack:
                stack[-1][1] += 1
            k += 6
        elif t == ")":
            if not stack:
                raise bad("unbalanced ')'")
            n, got = stack.pop()
            if n != got:
                raise bad(f"a node declares {n} children but has {got}")
            k += 1
        else:
            raise bad(f"unexpected token {t!r}")
    if stack:
        raise bad("derivation ends inside an open node (truncated?)")
    if not words:
        raise bad("derivation has no leaves")
    return words, tags


def read_auto_file(path) -> tuple[list[TaggingExample], str]:
    """(examples, sha256) of one CCGbank ``wsj_*.auto`` file: ``ID=wsj_0001.1 PARSER=GOLD NUMPARSE=1`` lines,
    each followed by its derivation on one line."""
    text, digest = read_text(path)
    out, pending = [], None
    for i, line in enumerate(lines(text, path), 1):
        if not line.strip():
            continue
        if line.startswith("ID="):
            if pending is not None:
                raise DataFormatError(
                    path, f"header of {pending[0]} is not followed by a derivation", line=i, field="tree"
                )
            pending = (line.split()[0][3:], i)
            continue
        if pending is None:
            raise DataFormatError(path, "expected an 'ID=...' header line before the derivation", line=i, field="ID")
        words, tags = _parse_auto_tree(line, path, i)
        out.append(TaggingExample(pending[0], words, tags))
        pending = None
    if pending is not None:
        raise DataFormatError(
            path, f"header of {pending[0]} is not followed by a derivation (truncated?)", line=pending[1], field="tree"
        )
    return out, digest


@reader("ccgbank_auto")
def read_ccgbank_auto(paths, split: str = "", sections: dict | None = None, **_) -> ReadResult:
    """CCG supertagging from a user-supplied CCGbank (LDC2005T13; not redistributable).

    ``paths["dir"]`` is ``ccgbank/data/AUTO``; the split's WSJ sections (``sections`` option, else
    the standard split ``CCG_SECTIONS``: train 02-21, dev 00, test 23) are read in sorted order,
    ``<section>/wsj_*.auto`` each. Supertag of a word = the lexical category (first field) of its
    leaf ``(<L CAT POS POS word PredArgCat>)``. guid = the derivation's ``ID`` (``wsj_0001.1``).
    """
    root = Path(paths["dir"])
    secs = (sections or CCG_SECTIONS).get(split)
    if secs is None:
        raise DataFormatError(root, f"no CCGbank sections for split {split!r}; expected one of {list(CCG_SECTIONS)}")
    out, files = [], {}
    for sec in secs:
        folder = root / str(sec)
        found = sorted(folder.glob("wsj_*.auto"))
        if not found:
            raise DataFormatError(
                folder, "no wsj_*.auto files: expected a CCGbank AUTO section folder (ccgbank/data/AUTO/<section>/)"
            )
        for f in found:
            examples, files[str(f)] = read_auto_file(f)
            out.extend(examples)
    return ReadResult(out, files)
