"""Reading a task from the Hugging Face Hub, pinned by revision.

``read_hub(spec, split, lang)`` loads ``spec.hub.repo`` (config from the entry's template) at
``spec.hub.revision`` and converts the rows into xlrepro's example types with
``convert_rows``. A task whose revision is not pinned is refused unless the caller allows it
explicitly (``data.allow_unpinned_hub``), and the revision actually used is recorded.
Environment variables that put the Hub offline must be set before ``datasets`` is imported
(the CLI does this for ``XLREPRO_OFFLINE=1``).
"""
from __future__ import annotations

from xlrepro import languages as langtab
from xlrepro.data.types import (Answer, BitextExample, ClassificationExample, Format, MultipleChoiceExample,
                                ReadResult, SpanQAExample, TaggingExample)
from xlrepro.errors import ConfigError, DataFormatError


def hub_config(spec, lang: str) -> str | None:
    if spec.hub.config is None:
        return None
    return spec.hub.config.format(**langtab.get(lang).template_fields())


def read_hub(spec, split: str, lang: str, allow_unpinned: bool = False) -> ReadResult:
    if spec.hub is None:
        raise ConfigError(f"task {spec.name} has no Hub source; read it from a local folder (data.source=local)")
    if spec.hub.revision is None and not allow_unpinned:
        raise ConfigError(f"task {spec.name}: the Hub source {spec.hub.repo} is not pinned to a revision in "
                          f"xlrepro/tasks/{spec.name}.yaml; pin it (hub.revision: <40-hex commit>) or pass "
                          "data.allow_unpinned_hub=true to accept whatever the Hub serves today")
    if split not in spec.hub.splits:
        raise ConfigError(f"task {spec.name}: no Hub split mapped for {split!r} (have {sorted(spec.hub.splits)})")
    import datasets

    name = hub_config(spec, lang)
    ds = datasets.load_dataset(spec.hub.repo, name, revision=spec.hub.revision, split=spec.hub.splits[split])
    where = f"hf://{spec.hub.repo}@{spec.hub.revision or 'UNPINNED'}/{name or ''}[{spec.hub.splits[split]}]"
    result = convert_rows(spec, ds, lang, where)
    result.files = {where: getattr(ds, "_fingerprint", "") or ""}
    return result


def _label_names(ds, column: str) -> list[str] | None:
    feat = ds.features.get(column) if hasattr(ds, "features") else None
    names = getattr(feat, "names", None)
    if names is None and feat is not None and hasattr(feat, "feature"):
        names = getattr(feat.feature, "names", None)
    return list(names) if names else None


def _first(row: dict, *keys):
    for k in keys:
        if k in row:
            return k
    return None


def convert_rows(spec, ds, lang: str, where: str = "hub") -> ReadResult:
    """Rows of a Hub dataset (an iterable of dicts with ``.features``) as xlrepro examples."""
    out, skipped = [], {}
    rows = list(ds)
    if not rows:
        return ReadResult([], {})
    r0 = rows[0]

    def bad(i, field, msg):
        raise DataFormatError(where, msg, line=i + 1, field=field)

    if spec.format == Format.CLASSIFICATION:
        a = _first(r0, "premise", "sentence1", "question1", "sentence")
        b = _first(r0, "hypothesis", "sentence2", "question2")
        if a is None or "label" not in r0:
            bad(0, "premise/sentence1/question1/sentence, label", f"unexpected columns {sorted(r0)}")
        names = _label_names(ds, "label")
        for i, r in enumerate(rows):
            lab = r["label"]
            if isinstance(lab, int):
                if lab < 0:  # e.g. MNLI/SNLI -1 = no gold label
                    skipped["label -1 (no gold label)"] = skipped.get("label -1 (no gold label)", 0) + 1
                    continue
                lab = names[lab] if names else str(lab)
            if spec.labels and lab not in spec.labels:
                bad(i, "label", f"unknown label {lab!r}; expected one of {list(spec.labels)}")
            out.append(ClassificationExample(str(r.get("idx", i)), r[a], r[b] if b else None, lab))
    elif spec.format == Format.MULTIPLE_CHOICE:
        for i, r in enumerate(rows):
            if "choice1" in r:
                ex = MultipleChoiceExample(str(r.get("idx", i)), r["premise"], [r["choice1"], r["choice2"]],
                                           r["label"] if r["label"] in (0, 1) else None, r["question"])
            elif "endings" in r:
                lab = r.get("label")
                ex = MultipleChoiceExample(str(r.get("ind", i)), r["ctx"], list(r["endings"]),
                                           int(lab) if lab not in (None, "") else None)
            else:
                bad(i, "choice1/endings", f"unexpected columns {sorted(r)}")
            out.append(ex)
    elif spec.format == Format.SPAN_QA:
        data = []
        for i, r in enumerate(rows):
            ans = r["answers"]
            answers = [Answer(t, int(s)) for t, s in zip(ans["text"], ans["answer_start"])]
            for a in answers:
                if r["context"][a.start:a.start + len(a.text)] != a.text:
                    bad(i, "answers.answer_start", f"answer {a.text!r} not at offset {a.start} (id {r['id']})")
            out.append(SpanQAExample(str(r["id"]), r["question"], r["context"], answers, r.get("title")))
            data.append({"title": r.get("title", ""), "paragraphs": [{"context": r["context"], "qas": [
                {"id": str(r["id"]), "question": r["question"],
                 "answers": [{"text": a.text, "answer_start": a.start} for a in answers]}]}]})
        return ReadResult(out, {}, skipped, raw=data)
    elif spec.format == Format.TAGGING:
        col = _first(r0, "pos_tags", "ner_tags")
        names = _label_names(ds, col)
        for i, r in enumerate(rows):
            tags = [names[t] if names and isinstance(t, int) else str(t) for t in r[col]]
            out.append(TaggingExample(str(i), list(r["tokens"]), tags))
    elif spec.format == Format.RETRIEVAL:
        src = [r["source_sentence"] for r in rows]
        tgt = [r["target_sentence"] for r in rows]
        ids = [str(i) for i in range(len(rows))]
        out.append(BitextExample(f"{spec.name}.{lang}", lang, "en", ids, src, list(ids), tgt, [(i, i) for i in ids]))
    return ReadResult(out, {}, skipped)
