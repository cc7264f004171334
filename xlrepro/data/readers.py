"""Readers of the tasks' original file formats (those several tasks share; the other modules of
``xlrepro.data.all_readers`` hold the rest).

A reader is registered under a name with ``@reader(name)`` (``xlrepro.data.reader_registry``) and
called as ``fn(paths: dict[str, Path], **options) -> ReadResult``; task registry entries name their
reader and the file templates (``xlrepro/tasks/*.yaml``). Readers parse, never regex, accept
LF and CRLF, and raise ``DataFormatError`` naming file, line and field on malformed input.
Skipping is allowed only by a documented rule and is counted in ``ReadResult.skipped``.
"""

from __future__ import annotations

from pathlib import Path

from xlrepro.data.io import lines, offset, read_json, read_jsonl, read_text, require, tsv_rows
from xlrepro.data.reader_registry import reader
from xlrepro.data.types import (
    Answer,
    BitextExample,
    ClassificationExample,
    MultipleChoiceExample,
    ReadResult,
    SpanQAExample,
    TaggingExample,
)
from xlrepro.errors import DataFormatError


def check_label(label: str, labels, path, line, field="label"):
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
                raise DataFormatError(
                    path,
                    f"expected 2 (text_a, text_b) or 3 (text_a, text_b, label) tab-separated columns, got {ncols}",
                    line=i,
                )
        elif len(fields) != ncols:
            raise DataFormatError(
                path, f"expected {ncols} tab-separated columns like line 1, got {len(fields)}", line=i
            )
        label = check_label(fields[2].strip(), labels, path, i) if ncols == 3 else None
        out.append(ClassificationExample(f"{Path(path).name}:{i}", fields[0], fields[1], label))
    return ReadResult(out, {str(path): digest})


@reader("glue_mnli_tsv")
def read_glue_mnli_tsv(paths, labels=None, **_) -> ReadResult:
    """GLUE's MNLI ``train.tsv`` / ``dev_matched.tsv`` / ``test_matched.tsv`` (header row; test has no label).

    Columns used: ``sentence1``, ``sentence2`` and ``gold_label`` (train/dev) — by header name.
    """
    path = paths["file"]
    row_iter, digest = tsv_rows(path)
    rows = list(row_iter)
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
            raise DataFormatError(
                path, f"expected {len(header)} tab-separated columns as in the header, got {len(f)}", line=i
            )
        label = check_label(f[il], labels, path, i, "gold_label") if il is not None else None
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
        check_label(label, labels, path, i, "gold_label")
        out.append(ClassificationExample(str(obj.get("pairID", f"{Path(path).name}:{i}")), s1, s2, label))
    return ReadResult(out, {str(path): digest}, {"gold_label '-' (no majority)": skipped} if skipped else {})


# --------------------------------------------------------------------------- multiple choice


def _consistent_labels(rows: list[tuple[int, dict]], key: str, path) -> None:
    """A JSON-lines file labels every record or none: a record without ``key`` among labelled ones (or
    the reverse) is an error naming its line, never a silently unlabelled split."""
    has = [key in obj for _, obj in rows]
    if any(has) and not all(has):
        first = next(i for (i, _), h in zip(rows, has) if h)
        line = next(i for (i, _), h in zip(rows, has) if not h)
        raise DataFormatError(
            path,
            f"record has no {key!r} but line {first} has one; expected every record "
            "labelled (or none, where labels are withheld)",
            line=line,
            field=key,
        )


def _choice_label(obj: dict, allowed: tuple, path, line: int):
    """The index label of a multiple-choice record: absent -> None; else an int (not a bool, not a
    float) in ``allowed``."""
    if "label" not in obj:
        return None
    v = obj["label"]
    if not isinstance(v, int) or isinstance(v, bool) or v not in allowed:
        raise DataFormatError(
            path,
            f"expected an integer label in {list(allowed)}, got {type(v).__name__} {v!r:.40}",
            line=line,
            field="label",
        )
    return v


@reader("copa_jsonl")
def read_copa_jsonl(paths, **_) -> ReadResult:
    """COPA / XCOPA JSON lines: ``premise``, ``choice1``, ``choice2``, ``question`` (cause|effect), ``label`` (0|1).

    Files without labels (none in the releases we know) give label None; a file must label every
    record or none (one record without ``label`` among labelled ones is an error).
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
        label = _choice_label(obj, (0, 1), path, i)
        out.append(MultipleChoiceExample(str(obj.get("idx", i - 1)), premise, [c1, c2], label, q))
    _consistent_labels(rows, "label", path)
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
        label = _choice_label(obj, (0, 1, 2, 3), path, i)
        out.append(MultipleChoiceExample(str(obj.get("ind", i - 1)), ctx, list(endings), label))
    _consistent_labels(rows, "label", path)
    return ReadResult(out, {str(path): digest})


# --------------------------------------------------------------------------- span QA


@reader("squad_json")
def read_squad_json(paths, require_answers: bool = True, unique_ids: bool = True, **_) -> ReadResult:
    """SQuAD v1.1 / v2.0-style JSON (SQuAD, XQuAD, MLQA, TyDiQA-GoldP in XTREME's layout).

    Accepts ``version`` first or last, ``qas`` before or after ``context``, no ``title``.
    ``raw`` is the file's ``data`` list, which the official scorers take. Answer offsets are
    checked against the context (a mismatch is an error naming the question id). Types are
    checked (``context``/``question``/``text`` strings, ``answer_start`` a non-negative integer,
    ``is_impossible`` a JSON boolean), and with ``unique_ids`` a question id that occurs twice is an
    error (the official scorers key predictions by id, so a duplicate would silently drop one).
    """
    path = paths["file"]
    obj, digest = read_json(path)
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        raise DataFormatError(path, "expected a top-level object with a 'data' list", field="data")
    seen: dict[str, str]
    out, seen = [], {}
    for a, article in enumerate(data):
        paragraphs = require(article, "paragraphs", list, path, None, f"data[{a}]")
        title = article.get("title")
        for p, para in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            ctx = require(para, "context", str, path, None, where)
            qas = para.get("qas", [])
            if not isinstance(qas, list):
                raise DataFormatError(path, f"expected a list, got {type(qas).__name__}", field=f"{where}.qas")
            for q, qa in enumerate(qas):
                qwhere = f"{where}.qas[{q}]"
                qid = require(qa, "id", (str, int), path, None, qwhere)
                question = require(qa, "question", str, path, None, qwhere)
                if unique_ids:
                    if str(qid) in seen:
                        raise DataFormatError(
                            path,
                            f"duplicate question id {qid!r} (first at {seen[str(qid)]}); "
                            "expected unique ids (the scorer keys predictions by id)",
                            field=f"{qwhere}.id",
                        )
                    seen[str(qid)] = qwhere
                answers = []
                raw_answers = qa.get("answers", [])
                if not isinstance(raw_answers, list):
                    raise DataFormatError(
                        path, f"expected a list, got {type(raw_answers).__name__}", field=f"{qwhere}.answers"
                    )
                for n, ans in enumerate(raw_answers):
                    awhere = f"{qwhere}.answers[{n}]"
                    if not isinstance(ans, dict) or "text" not in ans or "answer_start" not in ans:
                        raise DataFormatError(path, "answer needs 'text' and 'answer_start'", field=awhere)
                    text = require(ans, "text", str, path, None, awhere)
                    start = offset(ans["answer_start"], path, None, f"{awhere}.answer_start", len(ctx))
                    if ctx[start : start + len(text)] != text:
                        raise DataFormatError(
                            path,
                            f"answer {text!r} not found at offset {start} of the context (question id {qid})",
                            field=f"{awhere}.answer_start",
                        )
                    answers.append(Answer(text, start))
                impossible = qa.get("is_impossible", False)
                if not isinstance(impossible, bool):
                    raise DataFormatError(
                        path,
                        f"expected true or false, got {type(impossible).__name__} {impossible!r:.40}",
                        field=f"{qwhere}.is_impossible",
                    )
                if require_answers and not answers and not impossible:
                    raise DataFormatError(path, f"question {qid} has no answers", field=f"{qwhere}.answers")
                out.append(
                    SpanQAExample(
                        str(qid), question, ctx, answers, title if isinstance(title, str) else None, impossible
                    )
                )
    return ReadResult(out, {str(path): digest}, raw=data)


# --------------------------------------------------------------------------- tagging


@reader("conllu_upos")
def read_conllu_upos(paths, fused_forms: bool = True, labels=None, **_) -> ReadResult:
    """UD CoNLL-U, UPOS tags (column 4) of each word.

    ``fused_forms=True`` (XTREME's conversion, ``--replace_subtokens_with_fused_forms``): a
    multi-word token ``3-4`` becomes one word with the surface form and the tag of its FIRST
    part. ``False``: the syntactic words themselves. Empty nodes (``5.1``) are always dropped.
    Checked: word IDs run 1, 2, 3, ... within a sentence; a multi-word token's range starts at the
    next word and its words all follow before the sentence ends; the UPOS tag is one of ``labels``.
    """
    path = paths["file"]
    text, digest = read_text(path)
    words: list[str]
    tags: list[str | None]  # None: a fused form's tag, filled by its first part
    out, words, tags, sent_no = [], [], [], 0
    expect, span, span_line = 1, None, 0  # next word ID; open multi-word range (a, b) and its line

    def close(lineno):
        nonlocal words, tags, sent_no, expect, span
        if span is not None and expect <= span[1]:
            raise DataFormatError(
                path,
                f"multi-word token {span[0]}-{span[1]} is not followed by its words "
                f"{span[0]}..{span[1]} (sentence ends at line {lineno or 'end of file'})",
                line=span_line,
                field="ID",
            )
        if words:
            out.append(TaggingExample(f"{Path(path).name}:{sent_no}", words, tags))
            sent_no += 1
        words, tags, expect, span = [], [], 1, None

    all_lines = lines(text, path)
    for i, line in enumerate(all_lines, 1):
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
            if a != expect or b <= a:
                raise DataFormatError(
                    path, f"multi-word token range {tid!r}; expected {expect}-N with N > {expect}", line=i, field="ID"
                )
            span, span_line = (a, b), i
            if fused_forms:
                words.append(form)
                tags.append(None)  # filled by the first part
            continue
        if not tid.isdigit():
            raise DataFormatError(path, f"expected an integer word ID, got {tid!r}", line=i, field="ID")
        n = int(tid)
        if n != expect:
            raise DataFormatError(
                path,
                f"word ID {n}; expected {expect} (IDs run 1, 2, 3, ... in a sentence; a duplicate or a gap)",
                line=i,
                field="ID",
            )
        expect += 1
        if upos == "_" or not upos:
            raise DataFormatError(path, "missing UPOS tag", line=i, field="UPOS")
        check_label(upos, labels, path, i, "UPOS")
        if fused_forms and span is not None and n <= span[1]:
            if n == span[0]:
                tags[-1] = upos
            continue
        words.append(form)
        tags.append(upos)
    close(None)
    return ReadResult(out, {str(path): digest})


def _tags_after_spaces(body: list[str], labels, path) -> None:
    """A 'word TAG' file written with spaces for the tab would read as unlabelled words: when every
    line is one column whose last space-separated token is a known tag, that is an error."""
    rows = [(i, l) for i, l in enumerate(body, 1) if l.strip()]
    if not labels or not rows or any("\t" in l for _, l in rows):
        return
    if all(len(l.split()) >= 2 and l.split()[-1] in labels for _, l in rows):
        raise DataFormatError(
            path,
            f"every line is '<word> <tag>' separated by spaces (line {rows[0][0]}: "
            f"{rows[0][1]!r:.60}); expected 'word<TAB>tag'",
            line=rows[0][0],
            field="tag",
        )


@reader("xtreme_tag_tsv")
def read_xtreme_tag_tsv(paths, labels=None, **_) -> ReadResult:
    """XTREME's processed UD-POS / PAN-X files: ``word \\t TAG`` per line, blank line between sentences.

    Test files carry only the word column (labels withheld): tags None. A file must be
    consistently labelled or unlabelled.
    """
    path = paths["file"]
    text, digest = read_text(path)
    words: list[str]
    tags: list[str]
    out, words, tags, labelled = [], [], [], None
    start = 1
    body = lines(text, path)
    _tags_after_spaces(body, labels, path)
    for i, line in enumerate(body + [""], 1):
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
            raise DataFormatError(
                path,
                "mixed labelled and unlabelled lines; expected every line "
                + ("'word<TAB>tag'" if labelled else "'word'"),
                line=i,
            )
        words.append(cols[0])
        if has:
            tags.append(check_label(cols[1], labels, path, i, "tag"))
    return ReadResult(out, {str(path): digest})


# --------------------------------------------------------------------------- retrieval


@reader("tatoeba_pair")
def read_tatoeba_pair(paths, src_lang: str = "", **_) -> ReadResult:
    """LASER's Tatoeba test pairs: ``tatoeba.<xxx>-eng.<xxx>`` and ``tatoeba.<xxx>-eng.eng``, line i <-> line i.

    One ``BitextExample``: src = the non-English side, tgt = English, gold = (i, i).
    """
    src_text, src_digest = read_text(paths["src"])
    eng_text, eng_digest = read_text(paths["eng"])
    src, eng = lines(src_text, paths["src"]), lines(eng_text, paths["eng"])
    if len(src) != len(eng):
        raise DataFormatError(
            paths["src"],
            f"{len(src)} lines but the English side {paths['eng']} has {len(eng)}; expected line-aligned files",
        )
    for name, side in (("src", src), ("eng", eng)):
        for i, s in enumerate(side, 1):
            if not s.strip():
                raise DataFormatError(paths[name], "empty sentence; expected one sentence per line", line=i)
    ids = [str(i) for i in range(len(src))]
    ex = BitextExample(f"tatoeba.{src_lang}", src_lang, "en", ids, src, list(ids), eng, [(i, i) for i in ids])
    return ReadResult([ex], {str(paths["src"]): src_digest, str(paths["eng"]): eng_digest})
