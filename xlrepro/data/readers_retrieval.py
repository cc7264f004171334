"""Readers and input builders of the dual-encoder retrieval tasks of XTREME-R.

Mewsli-X ships, besides the WikiNews mentions (``mewslix_jsonl`` in ``readers_xtreme``), the English
Wikipedia fine-tuning pairs ``wikipedia_pairs-{train,dev}.jsonl`` (one ``{"contextual_mention":
{"context", "mention"}, "entity"}`` object per line) and the candidate set
``candidate_set_entities.jsonl`` (one entity per line: ``entity_id, title, description,
description_language, description_url, sentence_spans``). Their schema is Mewsli-X's
``schema.py`` (mirrored in xtreme's ``third_party/utils_mewslix.py``); offsets are Unicode code
points into the text they index.

The model inputs are built as the XTREME-R baseline builds them:

- a mention (``mewslix_mention_text``): the sentence holding the mention (window 0), the mention
  wrapped in ``{ }`` markers (pre-existing ``{...}`` in the sentence become ``(...)``), with the
  mention text and ``": "`` prepended; newlines joined with spaces, double spaces collapsed once,
  stripped;
- an entity (``mewslix_entity_text``): the description's sentences joined with one space, same
  normalisation;
- LAReQA/SQuAD: the question alone; the answer is the (sentence, paragraph) pair. SQuAD v1.1
  has no sentence breaks: ``sentence_breaks`` splits after ``.?!`` (plus closing quotes/brackets)
  followed by whitespace. The official code uses its sed-style ``sb_sed.infer_sentence_breaks``,
  which also needs an upper-case letter or digit after the break and has Wikipedia- and
  SQuAD-specific exceptions; this splitter is simpler (a documented deviation).
"""

from __future__ import annotations

import re

from xlrepro.data.io import read_jsonl, require
from xlrepro.data.reader_registry import reader
from xlrepro.data.types import EntityDescription, EntityMentionExample, MentionEntityPair, ReadResult
from xlrepro.errors import DataFormatError


def _spans(obj: dict, key: str, text: str, path, line: int, where: str) -> list[tuple[int, int]]:
    raw = obj.get(key)
    if not isinstance(raw, list):
        raise DataFormatError(path, "expected a list of {start, end}", line=line, field=f"{where}.{key}")
    out = []
    for j, s in enumerate(raw):
        if not isinstance(s, dict) or not all(
            isinstance(s.get(k), int) and not isinstance(s.get(k), bool) for k in ("start", "end")
        ):
            raise DataFormatError(path, "expected {start: int, end: int}", line=line, field=f"{where}.{key}[{j}]")
        if not 0 <= s["start"] < s["end"] <= len(text):
            raise DataFormatError(
                path,
                f"span [{s['start']}, {s['end']}) is not inside the text (length {len(text)}, Unicode code points)",
                line=line,
                field=f"{where}.{key}[{j}]",
            )
        out.append((s["start"], s["end"]))
    return out


def _entity(obj, path, line: int, where: str) -> EntityDescription:
    if not isinstance(obj, dict):
        raise DataFormatError(path, "expected an object", line=line, field=where)
    fields = {
        k: require(obj, k, str, path, line)
        for k in ("entity_id", "title", "description", "description_language", "description_url")
    }
    spans = _spans(obj, "sentence_spans", fields["description"], path, line, where)
    return EntityDescription(sentence_spans=spans, **fields)


@reader("mewslix_entities_jsonl")
def read_mewslix_entities(paths, src_lang: str = "", **_) -> ReadResult:
    """Mewsli-X candidate set: one ``EntityDescription`` per line, in file order (all languages;
    ``src_lang`` is ignored: the candidate pool is language-agnostic). Duplicate entity ids are an error."""
    path = paths["file"]
    rows, digest = read_jsonl(path)
    seen: dict[str, int]
    out, seen = [], {}
    for i, obj in rows:
        e = _entity(obj, path, i, "entity")
        if e.entity_id in seen:
            raise DataFormatError(
                path,
                f"duplicate entity_id {e.entity_id!r} (first on line {seen[e.entity_id]})",
                line=i,
                field="entity_id",
            )
        seen[e.entity_id] = i
        out.append(e)
    return ReadResult(out, {str(path): digest})


@reader("mewslix_pairs_jsonl")
def read_mewslix_pairs(paths, src_lang: str = "", **_) -> ReadResult:
    """Mewsli-X English Wikipedia fine-tuning pairs: one ``MentionEntityPair`` per line.

    Checked: ``context.text[start:end] == mention_span.text``, sentence spans inside the texts.
    Pairs whose context language is not ``src_lang`` are an error (the release is English only).
    """
    path = paths["file"]
    rows, digest = read_jsonl(path, required=("contextual_mention", "entity"))
    out = []
    for i, obj in rows:
        cm = obj["contextual_mention"]
        if not isinstance(cm, dict):
            raise DataFormatError(path, "expected an object", line=i, field="contextual_mention")
        ctx, men = cm.get("context"), cm.get("mention")
        if not isinstance(ctx, dict) or not isinstance(men, dict):
            raise DataFormatError(path, "expected {context: {...}, mention: {...}}", line=i, field="contextual_mention")
        lang = require(ctx, "language", str, path, i)
        if src_lang and lang != src_lang:
            raise DataFormatError(
                path,
                f"context language {lang!r}; expected {src_lang!r}",
                line=i,
                field="contextual_mention.context.language",
            )
        text = require(ctx, "text", str, path, i)
        doc = require(ctx, "document_id", str, path, i)
        spans = _spans(ctx, "sentence_spans", text, path, i, "contextual_mention.context")
        span = men.get("mention_span")
        if (
            not isinstance(span, dict)
            or not all(isinstance(span.get(k), int) and not isinstance(span.get(k), bool) for k in ("start", "end"))
            or not isinstance(span.get("text"), str)
            or not 0 <= span["start"] <= span["end"] <= len(text)
        ):
            raise DataFormatError(
                path,
                "expected {start: int, end: int, text: str}",
                line=i,
                field="contextual_mention.mention.mention_span",
            )
        if text[span["start"] : span["end"]] != span["text"]:
            raise DataFormatError(
                path,
                f"text[{span['start']}:{span['end']}] is {text[span['start'] : span['end']]!r}, "
                f"expected {span['text']!r} (offsets are Unicode code points)",
                line=i,
                field="contextual_mention.mention.mention_span",
            )
        example_id = require(men, "example_id", str, path, i)
        entity = _entity(obj["entity"], path, i, "entity")
        gold = require(men, "entity_id", str, path, i)
        if gold != entity.entity_id:
            raise DataFormatError(
                path,
                f"mention.entity_id {gold!r} != entity.entity_id {entity.entity_id!r}",
                line=i,
                field="contextual_mention.mention.entity_id",
            )
        mention = EntityMentionExample(
            example_id, lang, doc, text, span["start"], span["end"], span["text"], gold, spans
        )
        out.append(MentionEntityPair(mention, entity))
    return ReadResult(out, {str(path): digest})


# --------------------------------------------------------------------------- model inputs

_MARKED = re.compile(r"\{(.*?)\}")


def _normalise(s: str) -> str:
    return " ".join(s.splitlines()).replace("  ", " ").strip()


def mewslix_mention_text(m: EntityMentionExample) -> str:
    """The XTREME-R baseline's query string of a mention (module docstring).

    Raises:
        ValueError: the mention lies in no sentence span or crosses a sentence boundary (the
            official preprocessing fails on such a mention too).
    """
    focus = next((s for s in m.sentence_spans if s[0] <= m.start < s[1] and s[0] < m.end <= s[1]), None)
    if focus is None:
        raise ValueError(f"Mewsli-X mention {m.guid!r} [{m.start}, {m.end}) lies in no single sentence span")
    left = _MARKED.sub(r"(\1)", m.context[focus[0] : m.start])
    right = _MARKED.sub(r"(\1)", m.context[m.end : focus[1]])
    return _normalise(f"{m.mention}: {left} {{ {m.mention} }} {right}")


def mewslix_entity_text(e: EntityDescription) -> str:
    """The XTREME-R baseline's string of an entity: its description's sentences, space-joined."""
    return _normalise(" ".join(e.description[a:b] for a, b in e.sentence_spans))


_BREAK = re.compile(r"[.?!][)\]'\"\u201d\u2019]*\s+")


def sentence_breaks(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` of each sentence of ``text`` (see the module docstring); surrounding
    whitespace is outside the spans, and every non-space character is in exactly one span."""
    out, start = [], 0
    for m in _BREAK.finditer(text):
        end = m.end() - len(m.group()) + len(m.group().rstrip())
        out.append((start, end))
        start = m.end()
    out.append((start, len(text)))
    spans = []
    for a, b in out:
        seg = text[a:b]
        a2 = a + len(seg) - len(seg.lstrip())
        b2 = b - (len(seg) - len(seg.rstrip()))
        if a2 < b2:
            spans.append((a2, b2))
    return spans
