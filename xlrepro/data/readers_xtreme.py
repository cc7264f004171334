"""Readers of the XTREME / XTREME-R target tasks' original formats (registered in ``reader_registry.READERS``).

PAWS-X and XNLI-1.0 (header tsv), PAN-X (Rahimi ``lang:token<TAB>TAG``), TyDiQA-GoldP (SQuAD-style
JSON, per-file guids), BUCC 2018 (id-tagged sentence files + gold pairs), LAReQA / XQuAD-R
(SQuAD JSON with sentence breaks) and Mewsli-X (WikiNews mention JSON lines). MLQA is SQuAD JSON
and uses ``squad_json`` directly. Same contract as ``readers.py``: LF and CRLF both accepted,
``DataFormatError`` naming file, line (or JSON path) and field on malformed input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from xlrepro import languages as langtab
from xlrepro.data.io import lines, offset, read_json, read_jsonl, read_text, require, tsv_rows
from xlrepro.data.reader_registry import reader
from xlrepro.data.readers import check_label, read_squad_json
from xlrepro.data.types import (
    BitextExample,
    ClassificationExample,
    EntityMentionExample,
    QASentencePool,
    ReadResult,
    TaggingExample,
)
from xlrepro.errors import DataFormatError

# --------------------------------------------------------------------------- header tsv (PAWS-X, XNLI-1.0, GLUE)


@reader("header_tsv")
def read_header_tsv(
    paths,
    text_a: str = "sentence1",
    text_b: str | None = "sentence2",
    label_column: str | None = "label",
    id_column: str | None = None,
    language_column: str | None = None,
    skip_malformed: bool = False,
    src_lang: str = "",
    labels=None,
    **_,
) -> ReadResult:
    """A tab-separated file with a header row, columns picked by name (no quoting, as GLUE/PAWS-X write them).

    ``text_a`` / ``text_b`` (``None``: single-sentence task, e.g. SST-2) / ``label_column`` /
    ``id_column`` name the columns. A file whose header lacks the label column is unlabelled
    (test files): labels None. ``language_column``: the name of a language column; only rows whose value is the
    requested language are kept (XNLI-1.0's ``xnli.dev.tsv`` holds all 15 languages), and a
    file without a single such row is an error. guid = the id column, else ``<file>:<line>``.
    A row with a wrong number of columns is an error, unless ``skip_malformed`` (GLUE's QQP
    ``train.tsv`` has rows broken by an embedded newline, nyu-mll/GLUE-baselines#5): then such
    rows are skipped and counted in ``skipped``.
    """
    path = paths["file"]
    row_iter, digest = tsv_rows(path)
    rows = list(row_iter)
    if not rows:
        raise DataFormatError(path, "empty file; expected a header row", line=1)
    header = rows[0][1]
    idx = {}
    for role, col in (("text_a", text_a), ("text_b", text_b), ("id", id_column), ("language", language_column)):
        if col is None:
            continue
        if col not in header:
            raise DataFormatError(path, f"header lacks the {role} column (have {header})", line=1, field=col)
        idx[role] = header.index(col)
    il = header.index(label_column) if label_column is not None and label_column in header else None
    out, bad = [], 0
    for i, f in rows[1:]:
        if len(f) != len(header):
            if skip_malformed:
                bad += 1
                continue
            raise DataFormatError(
                path,
                f"expected {len(header)} tab-separated columns as in the header, got {len(f)}",
                line=i,
                field=header[len(f)] if len(f) < len(header) else None,
            )
        if "language" in idx and f[idx["language"]] != src_lang:
            continue
        lab = check_label(f[il], labels, path, i, label_column) if il is not None else None
        guid = f[idx["id"]] if "id" in idx else f"{Path(path).name}:{i}"
        out.append(ClassificationExample(guid, f[idx["text_a"]], f[idx["text_b"]] if "text_b" in idx else None, lab))
    if "language" in idx and not out:
        raise DataFormatError(path, f"no row with {language_column} = {src_lang!r}", field=language_column)
    return ReadResult(out, {str(path): digest}, {"row with a wrong number of columns": bad} if bad else {})


@reader("xnli_original_jsonl")
def read_xnli_original_jsonl(paths, src_lang: str = "", labels=None, **_) -> ReadResult:
    """XNLI-1.0's ``xnli.{dev,test}.jsonl``: all languages in one file; rows of ``language == src_lang`` are kept."""
    path = paths["file"]
    rows, digest = read_jsonl(path)
    out = []
    for i, obj in rows:
        if require(obj, "language", str, path, i) != src_lang:
            continue
        s1 = require(obj, "sentence1", str, path, i)
        s2 = require(obj, "sentence2", str, path, i)
        lab = check_label(require(obj, "gold_label", str, path, i), labels, path, i, "gold_label")
        out.append(ClassificationExample(str(obj.get("pairID", f"{Path(path).name}:{i}")), s1, s2, lab))
    if not out:
        raise DataFormatError(path, f"no row with language = {src_lang!r}", field="language")
    return ReadResult(out, {str(path): digest})


# --------------------------------------------------------------------------- PAN-X (Rahimi splits)


@reader("panx_rahimi")
def read_panx_rahimi(paths, src_lang: str = "", labels=None, **_) -> ReadResult:
    """WikiANN with the Rahimi et al. (2019) splits: ``<lang>:<token> \\t <IOB2 tag>``, blank line between sentences.

    The ``<lang>:`` prefix is stripped at the first colon (tokens may contain colons) and must be
    the requested language (a file of another language is an error). zh/ja/th "tokens" are
    WikiANN's own character groups, kept as they are. guid = ``<folder>/<file>:<first line of the sentence>``.
    """
    path = paths["file"]
    text, digest = read_text(path)
    words: list[str]
    tags: list[str]
    out, words, tags, start = [], [], [], 1
    for i, line in enumerate(lines(text, path) + [""], 1):
        if not line.strip():
            if words:
                out.append(TaggingExample(f"{Path(path).parent.name}/{Path(path).name}:{start}", words, tags))
            words, tags, start = [], [], i + 1
            continue
        cols = line.split("\t")
        if len(cols) != 2:
            raise DataFormatError(
                path,
                f"expected '<lang>:<token><TAB><tag>', got {len(cols)} tab-separated columns",
                line=i,
                field="tag" if len(cols) < 2 else None,
            )
        prefix, sep, token = cols[0].partition(":")
        if not sep or (src_lang and prefix != src_lang):
            raise DataFormatError(
                path,
                f"expected the token to start with '{src_lang or '<lang>'}:', got {cols[0]!r}",
                line=i,
                field="token",
            )
        words.append(token)
        tags.append(check_label(cols[1].strip(), labels, path, i, "tag"))
    return ReadResult(out, {str(path): digest})


# --------------------------------------------------------------------------- TyDiQA-GoldP

# official GoldP v1.1 train questions with an english- id
# (google-research-datasets/tydiqa tydiqa-goldp-v1.1-train.json)
TYDIQA_ENGLISH_TRAIN_SIZE = 3696


def tydiqa_language_prefix(lang: str) -> str:
    """The id prefix of a language's TyDi QA questions: its English name, lower-cased, and a hyphen.

    Official TyDi QA ids are ``<language>-<signed 64-bit int>-<k>``, e.g. ``english-3099181763220861848-0``
    or ``english--9041575374418655524-12`` (a negative number gives two hyphens). XTREME's
    processed *train* files keep only ``<k>``, so no language can be read from their ids.
    """
    return langtab.get(lang).name.lower() + "-"


def filter_tydiqa_english(rows: Iterable, id_key: str = "id", expect_full: bool = False) -> list:
    """The English questions of a multilingual TyDiQA-GoldP split, by the id-prefix rule.

    ``rows``: mappings with an ``id`` (e.g. ``google/xtreme`` ``tydiqa`` rows, whose train split
    is the multilingual 49,881) or objects with that attribute. A question is English iff its id
    starts with ``english-``. ``expect_full=True`` checks that a full train split gives the
    3,696 questions XTREME trains on (and raises ``ValueError`` otherwise).
    """
    prefix = tydiqa_language_prefix("en")
    out = []
    for r in rows:
        rid = r[id_key] if isinstance(r, Mapping) else getattr(r, id_key)
        if str(rid).startswith(prefix):
            out.append(r)
    if expect_full and len(out) != TYDIQA_ENGLISH_TRAIN_SIZE:
        raise ValueError(
            f"filter_tydiqa_english: {len(out)} English questions, expected "
            f"{TYDIQA_ENGLISH_TRAIN_SIZE} (full GoldP v1.1 train); wrong split or a partial download?"
        )
    return out


@reader("tydiqa_goldp_json")
def read_tydiqa_goldp_json(
    paths, src_lang: str = "", filter_language: bool = False, split: str = "", **_
) -> ReadResult:
    """TyDiQA-GoldP in SQuAD v1.1 form (official files, their per-language split, or XTREME's files).

    guid = ``<file name>#<index of the question in file order>`` (0-based), never the id: XTREME's
    train files keep only the last id component, which is not unique (google-research/xtreme
    ``utils_preprocess.py``). The official id of a question is recoverable from ``raw`` (the file's
    ``data``, same order).
    ``filter_language=True`` keeps only the questions whose id carries ``src_lang``'s prefix
    (``tydiqa_language_prefix``): for the official multilingual files; the others are counted in
    ``skipped`` and dropped from ``raw``.

    XTREME's download blanks the answers of its TyDiQA test files (the GoldP dev set) to
    ``[{"answer_start": 0, "text": ""}]`` (``utils_preprocess.py`` ``remove_qa_test_annotations``).
    Such a question gets ``answers == []`` (withheld, not an empty gold answer) and is counted
    under ``skipped`` (kept, not dropped).
    """
    # ids must be unique in evaluation files; XTREME's processed train files keep only the last id
    # component, which repeats (see the guid rule above)
    res = read_squad_json(paths, unique_ids=split != "train")
    name = Path(paths["file"]).name
    prefix = tydiqa_language_prefix(src_lang) if filter_language else ""
    out, withheld = [], 0
    for n, ex in enumerate(res.examples):
        if ex.guid.startswith(prefix):
            ex.guid = f"{name}#{n}"
            if ex.answers and all(a.text == "" for a in ex.answers):
                ex.answers = []
                withheld += 1
            out.append(ex)
    skipped = {}
    if len(res.examples) > len(out):
        skipped[f"TyDi QA id prefix is not {prefix!r}"] = len(res.examples) - len(out)
    if withheld:
        skipped["answers withheld (blank answer text; kept with answers=[])"] = withheld
    raw = res.raw
    if filter_language:
        raw = []
        for art in res.raw:
            paras = []
            for para in art["paragraphs"]:
                qas = [qa for qa in para.get("qas", []) if str(qa["id"]).startswith(prefix)]
                if qas:
                    paras.append({**para, "qas": qas})
            if paras:
                raw.append({**art, "paragraphs": paras})
    return ReadResult(out, res.files, skipped, raw=raw)


# --------------------------------------------------------------------------- BUCC 2018


def _bucc_side(path) -> tuple[list[str], list[str], str]:
    text, digest = read_text(path)
    ids, sents, seen = [], [], set()
    for i, line in enumerate(lines(text, path), 1):
        cols = line.split("\t")
        if len(cols) != 2:
            raise DataFormatError(
                path,
                f"expected '<id><TAB><sentence>', got {len(cols)} tab-separated columns",
                line=i,
                field="sentence" if len(cols) < 2 else None,
            )
        if not cols[0].strip():
            raise DataFormatError(path, "empty sentence id", line=i, field="id")
        if cols[0] in seen:
            raise DataFormatError(path, f"duplicate sentence id {cols[0]!r}", line=i, field="id")
        seen.add(cols[0])
        ids.append(cols[0])
        sents.append(cols[1])
    return ids, sents, digest


@reader("bucc_bitext")
def read_bucc_bitext(paths, src_lang: str = "", split: str = "", **_) -> ReadResult:
    """BUCC 2018 mining data: ``src`` / ``eng`` files of ``<id> \\t <sentence>`` and ``gold`` pairs
    ``<src id> \\t <en id>``.

    One ``BitextExample`` with the corpus ids (most sentences have no translation). Every gold
    id must occur in its corpus. BUCC's "sample" set is XTREME's dev, its "training" set XTREME's test.
    """
    src_ids, src, d1 = _bucc_side(paths["src"])
    eng_ids, eng, d2 = _bucc_side(paths["eng"])
    text, d3 = read_text(paths["gold"])
    known_src, known_eng = set(src_ids), set(eng_ids)
    gold = []
    for i, line in enumerate(lines(text, paths["gold"]), 1):
        cols = line.split("\t")
        if len(cols) != 2:
            raise DataFormatError(
                paths["gold"],
                f"expected '<{src_lang or 'xx'} id><TAB><en id>', got {len(cols)} tab-separated columns",
                line=i,
                field="en id" if len(cols) < 2 else None,
            )
        if cols[0] not in known_src:
            raise DataFormatError(paths["gold"], f"id {cols[0]!r} is not in {paths['src']}", line=i, field="src id")
        if cols[1] not in known_eng:
            raise DataFormatError(paths["gold"], f"id {cols[1]!r} is not in {paths['eng']}", line=i, field="en id")
        gold.append((cols[0], cols[1]))
    ex = BitextExample(f"bucc2018.{src_lang}-en.{split}".rstrip("."), src_lang, "en", src_ids, src, eng_ids, eng, gold)
    return ReadResult([ex], {str(paths["src"]): d1, str(paths["eng"]): d2, str(paths["gold"]): d3})


# --------------------------------------------------------------------------- LAReQA / XQuAD-R


@reader("lareqa_json")
def read_lareqa_json(paths, src_lang: str = "", **_) -> ReadResult:
    """XQuAD-R (LAReQA): SQuAD v1.1 JSON whose paragraphs add ``sentences`` and ``sentence_breaks``.

    One ``QASentencePool`` per file. Each paragraph's ``sentence_breaks[i] = [start, end)`` must
    cut ``sentences[i]`` out of the context. A question's gold sentence is the one containing
    its answer's start offset (as LAReQA defines it; an answer may run past the sentence end,
    e.g. one Turkish item of the sample). ``raw`` is the file's ``data``.
    """
    path = paths["file"]
    obj, digest = read_json(path)
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        raise DataFormatError(path, "expected a top-level object with a 'data' list", field="data")
    pool = QASentencePool(f"lareqa.{src_lang}", src_lang, [], [], [], [], [], [], [])
    seen: dict[str, str] = {}
    for a, article in enumerate(data):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DataFormatError(path, "expected an object with a 'paragraphs' list", field=f"data[{a}].paragraphs")
        for p, para in enumerate(article["paragraphs"]):
            where = f"data[{a}].paragraphs[{p}]"
            if not isinstance(para, dict):
                raise DataFormatError(path, f"expected an object, got {type(para).__name__}", field=where)
            for key, typ in (("context", str), ("sentences", list), ("sentence_breaks", list), ("qas", list)):
                if not isinstance(para.get(key), typ):
                    raise DataFormatError(path, f"missing or not a {typ.__name__}", field=f"{where}.{key}")
            ctx, sents, breaks = para["context"], para["sentences"], para["sentence_breaks"]
            if len(sents) != len(breaks):
                raise DataFormatError(
                    path, f"{len(sents)} sentences but {len(breaks)} sentence_breaks", field=f"{where}.sentence_breaks"
                )
            first = len(pool.sentence_ids)
            for s, (sent, br) in enumerate(zip(sents, breaks)):
                if (
                    not isinstance(br, list)
                    or len(br) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= len(ctx) for x in br)
                    or br[0] >= br[1]
                    or ctx[br[0] : br[1]] != sent
                ):
                    raise DataFormatError(
                        path,
                        f"break {br!r} does not cut sentence {sent!r:.60} out of the context",
                        field=f"{where}.sentence_breaks[{s}]",
                    )
                pool.sentence_ids.append(f"{src_lang}:{a}:{p}:{s}")
                pool.sentences.append(sent)
                pool.contexts.append(ctx)
                pool.sentence_qids.append([])
            for q, qa in enumerate(para["qas"]):
                qwhere = f"{where}.qas[{q}]"
                qid = str(require(qa, "id", (str, int), path, None, qwhere))
                question = require(qa, "question", str, path, None, qwhere)
                if not require(qa, "answers", list, path, None, qwhere):
                    raise DataFormatError(path, "no answers", field=f"{qwhere}.answers")
                if qid in seen:
                    raise DataFormatError(
                        path,
                        f"duplicate question id {qid!r} (first at {seen[qid]}); expected "
                        "unique ids (gold sentences are looked up by id)",
                        field=f"{qwhere}.id",
                    )
                seen[qid] = qwhere
                ans = qa["answers"][0]
                if not isinstance(ans, dict) or "text" not in ans or "answer_start" not in ans:
                    raise DataFormatError(path, "answer needs 'text' and 'answer_start'", field=f"{qwhere}.answers[0]")
                text = require(ans, "text", str, path, None, f"{qwhere}.answers[0]")
                start = offset(ans["answer_start"], path, None, f"{qwhere}.answers[0].answer_start", len(ctx))
                if ctx[start : start + len(text)] != text:
                    raise DataFormatError(
                        path,
                        f"answer {text!r} not found at offset {start!r} of the context",
                        field=f"{qwhere}.answers[0].answer_start",
                    )
                hit = [s for s, br in enumerate(breaks) if br[0] <= start < br[1]]
                if not hit:
                    raise DataFormatError(
                        path, f"answer offset {start} lies in no sentence", field=f"{qwhere}.answers[0]"
                    )
                sid = pool.sentence_ids[first + hit[0]]
                pool.question_ids.append(qid)
                pool.questions.append(question)
                pool.sentence_qids[first + hit[0]].append(qid)
                pool.gold.append((qid, sid))
    return ReadResult([pool], {str(path): digest}, raw=data)


def pool_lareqa(pools: Iterable[QASentencePool]) -> tuple[list[str], list[str], dict[tuple[str, str], set[str]]]:
    """The language-agnostic LAReQA pool over several languages.

    Returns (sentence_ids, sentences, gold) where ``gold[(lang, question_id)]`` is the set of
    pooled sentence ids (in every language) that answer the question: each question has one
    correct sentence per language.
    """
    pools = list(pools)
    by_qid: dict[str, set[str]]
    sids, sents, by_qid = [], [], {}
    for pool in pools:
        for sid, sent, qids in zip(pool.sentence_ids, pool.sentences, pool.sentence_qids):
            sids.append(sid)
            sents.append(sent)
            for q in qids:
                by_qid.setdefault(q, set()).add(sid)
    gold = {(pool.lang, q): by_qid[q] for pool in pools for q in pool.question_ids}
    return sids, sents, gold


# --------------------------------------------------------------------------- Mewsli-X


@reader("mewslix_jsonl")
def read_mewslix_jsonl(paths, src_lang: str = "", allow_missing_text: bool = False, **_) -> ReadResult:
    """Mewsli-X WikiNews mentions: one JSON line per article, ``{"context": {...}, "mentions": [...]}``.

    Articles of every language share one file; those with ``context.language == src_lang`` are
    kept (``context.language`` must be a language code of the language table, lower case as the
    release writes it: ``"EN"`` is an error, not another language). Offsets are Unicode code
    points (Python ``str`` indices). Checked: the MD5 of the UTF-8 text equals each mention's
    ``metadata.text_md5``, and ``text[start:end]`` equals the mention text; every mention has a
    gold ``entity_id`` and an ``example_id`` unique among the language's mentions. The released ``*_no_text*`` files
    have ``text == ""``: reading one raises a ``DataFormatError`` saying that the text must first
    be restored from WikiNews (``get-mewsli-x.sh``); ``allow_missing_text=True`` instead yields
    mentions with an empty context and unchecked spans (for tools that restore the text afterwards).
    """
    path = paths["file"]
    rows, digest = read_jsonl(path, required=("context", "mentions"))
    seen: dict[str, int]
    out, seen = [], {}
    for i, obj in rows:
        ctx = obj["context"]
        if not isinstance(ctx, dict):
            raise DataFormatError(path, "expected an object", line=i, field="context")
        lang = require(ctx, "language", str, path, i, "context")
        try:
            langtab.get(lang)
        except KeyError:
            raise DataFormatError(
                path,
                f"unknown language code {lang!r}; expected a lower-case code of the language table (e.g. 'en')",
                line=i,
                field="context.language",
            ) from None
        mentions = require(obj, "mentions", list, path, i)
        if lang != src_lang:
            continue
        for m, men in enumerate(mentions):  # predictions are keyed by example_id within a language
            eid = require(men, "example_id", str, path, i, f"mentions[{m}]")
            if eid in seen:
                raise DataFormatError(
                    path,
                    f"duplicate example_id {eid!r} in language {lang!r} (first on line {seen[eid]})",
                    line=i,
                    field=f"mentions[{m}].example_id",
                )
            seen[eid] = i
        text = require(ctx, "text", str, path, i, "context")
        doc = require(ctx, "document_id", str, path, i, "context")
        spans = []
        raw_spans = ctx.get("sentence_spans", [])
        if not isinstance(raw_spans, list):
            raise DataFormatError(path, "expected a list of {start, end}", line=i, field="context.sentence_spans")
        for j, sp in enumerate(raw_spans):
            where = f"context.sentence_spans[{j}]"
            a = offset(require(sp, "start", int, path, i, where), path, i, f"{where}.start", len(text) or None)
            b = offset(require(sp, "end", int, path, i, where), path, i, f"{where}.end", len(text) or None)
            spans.append((a, b))
        if not text and not allow_missing_text:
            raise DataFormatError(
                path,
                "context.text is empty: this is a Mewsli-X '_no_text' file; restore the "
                "WikiNews article text first (google-research get-mewsli-x.sh; each "
                "mention's metadata.text_md5 checks the restored text)",
                line=i,
                field="context.text",
            )
        md5 = hashlib.md5(text.encode("utf-8")).hexdigest() if text else None
        for m, men in enumerate(mentions):
            where = f"mentions[{m}]"
            span = require(men, "mention_span", dict, path, i, where)
            mtext = require(span, "text", str, path, i, f"{where}.mention_span")
            start = offset(
                require(span, "start", int, path, i, f"{where}.mention_span"),
                path,
                i,
                f"{where}.mention_span.start",
                len(text) or None,
            )
            end = offset(
                require(span, "end", int, path, i, f"{where}.mention_span"),
                path,
                i,
                f"{where}.mention_span.end",
                len(text) or None,
            )
            gold = require(men, "entity_id", str, path, i, where)
            meta = men.get("metadata", {})
            if not isinstance(meta, dict):
                raise DataFormatError(path, "expected an object", line=i, field=f"{where}.metadata")
            if text:
                if "text_md5" not in meta:
                    raise DataFormatError(path, "missing required field", line=i, field=f"{where}.metadata.text_md5")
                if meta["text_md5"] != md5:
                    raise DataFormatError(
                        path,
                        f"MD5 of context.text is {md5}, the record says {meta['text_md5']!r:.40} "
                        "(text altered, or restored from another revision)",
                        line=i,
                        field=f"{where}.metadata.text_md5",
                    )
                if text[start:end] != mtext:
                    raise DataFormatError(
                        path,
                        f"text[{start}:{end}] is {text[start:end]!r}, expected {mtext!r} "
                        "(offsets are Unicode code points)",
                        line=i,
                        field=f"{where}.mention_span",
                    )
            out.append(EntityMentionExample(men["example_id"], lang, doc, text, start, end, mtext, gold, spans))
    return ReadResult(out, {str(path): digest})
