"""Reading a task from the Hugging Face Hub, pinned by revision.

``read_hub(spec, split, lang)`` loads ``spec.hub.repo`` (config from the entry's template) at
``spec.hub.revision`` and converts the rows into xlrepro's example types with
``convert_rows``. A task whose revision is not pinned is refused unless the caller allows it
explicitly (``data.allow_unpinned_hub``), and the revision actually used is recorded.
Environment variables that put the Hub offline must be set before ``datasets`` is imported
(the CLI does this for ``XLREPRO_OFFLINE=1``).

``xlrepro data prepare`` fetches a task's parquet files into ``<task dir>/_hub/<config>/<split>/``;
every task with a Hub source has a layout named ``hub`` (``xlrepro.tasks.registry.prepared_layout``,
read by the ``hub_parquet`` reader, which ``TaskSpec.read`` hands the task's entry) that reads them
offline, through the same converter.

The converter follows each dataset's published features (its dataset card): class ids become
names through the ``ClassLabel`` feature, then ``hub.label_map`` (GLUE's ``not_duplicate`` ->
``0``); ``hub.filter_language: id_prefix`` keeps one language of a split that mixes them
(``google/xtreme`` ``tydiqa``); ``hub.refuse`` names a copy that cannot stand in for the
original (BUCC on the Hub has only the gold pairs, no distractor sentences).
"""

from __future__ import annotations

from pathlib import Path

from xlrepro import languages as langtab
from xlrepro.data.io import sha256_file
from xlrepro.data.reader_registry import reader
from xlrepro.data.readers_xtreme import read_lareqa_json, read_mewslix_jsonl, tydiqa_language_prefix
from xlrepro.data.types import (
    Answer,
    BitextExample,
    ClassificationExample,
    Example,
    Format,
    MultipleChoiceExample,
    ReadResult,
    SpanQAExample,
    TaggingExample,
)
from xlrepro.errors import ConfigError, DataFormatError

PREPARED = "_hub"


def prepared_dir(hub, split_name: str) -> str:
    """The folder (a template in the task's layout fields) of one prepared Hub split."""
    return f"{PREPARED}/{hub.config or 'default'}/{split_name}"


class Rows(list):
    """Rows of a Hub split with the dataset's ``features`` (what ``convert_rows`` needs)."""

    def __init__(self, rows, features):
        super().__init__(rows)
        self.features = features


@reader("hub_parquet")
def read_hub_parquet(paths, src_lang: str = "", split: str = "", spec=None, **_) -> ReadResult:
    """A prepared Hub split: every ``*.parquet`` under the folder, in name order, converted with
    ``convert_rows`` for ``spec``, the task's registry entry (``TaskSpec.read`` passes it)."""
    import datasets
    import pyarrow.parquet as pq

    if spec is None or isinstance(spec, str):
        raise ValueError(f"hub_parquet: expected spec=<the task's TaskSpec> (TaskSpec.read passes it), got {spec!r}")
    folder = Path(paths["file"])
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{folder}: no parquet files (run `xlrepro data prepare {spec.name}`)")
    rows, feats = [], None
    for f in files:
        try:
            table = pq.read_table(f)
        except Exception as e:  # pyarrow raises its own error types for a damaged file
            raise DataFormatError(f, f"not a readable parquet file ({type(e).__name__}: {e})") from None
        feats = feats or datasets.Features.from_arrow_schema(table.schema)
        rows.extend(table.to_pylist())
    result = convert_rows(spec, Rows(rows, feats), src_lang, str(folder))
    result.files = {str(f): sha256_file(f) for f in files}
    return result


def hub_config(spec, lang: str) -> str | None:
    if spec.hub.config is None:
        return None
    return spec.hub.config.format(**langtab.get(lang).template_fields())


def refused(spec) -> str | None:
    return spec.hub.refuse if spec.hub is not None else None


def read_hub(spec, split: str, lang: str, allow_unpinned: bool = False, prepared=None) -> ReadResult:
    """One split of a task from the Hub: from the parquet files `xlrepro data prepare` put under
    the task folder ``prepared`` when they are there (offline; their commit is in data.lock),
    else through ``datasets`` at the pinned revision."""
    if spec.hub is None:
        raise ConfigError(f"task {spec.name} has no Hub source; read it from a local folder (data.source=local)")
    if spec.hub.refuse:
        raise ConfigError(f"task {spec.name}: the Hub copy {spec.hub.repo} is not used: {spec.hub.refuse}")
    if prepared is not None and split in spec.hub.splits:
        if all(p.is_dir() for p in spec.files(prepared, split, lang, "hub").values()):
            return spec.read(prepared, split, lang, "hub")
    repo, revision, name = spec.hub.repo, spec.hub.revision, hub_config(spec, lang)
    for src in (spec.download or {}).get("hub_languages") or []:  # a language the task's own repo lacks
        if lang in (src.get("languages") or []):
            repo, revision = src["repo"], src.get("revision")
            name = None if src.get("config") is None else src["config"].format(**langtab.get(lang).template_fields())
    if revision is None and not allow_unpinned:
        where = "hub.revision" if repo == spec.hub.repo else "its revision under download.hub_languages"
        raise ConfigError(
            f"task {spec.name}: the Hub source {repo} is not pinned to a revision in "
            f"xlrepro/tasks/{spec.name}.yaml; pin it ({where}: <40-hex commit>) or pass "
            "data.allow_unpinned_hub=true to accept whatever the Hub serves today"
        )
    if split not in spec.hub.splits:
        raise ConfigError(f"task {spec.name}: no Hub split mapped for {split!r} (have {sorted(spec.hub.splits)})")
    import datasets

    ds = datasets.load_dataset(repo, name, revision=revision, split=spec.hub.splits[split])
    where = f"hf://{repo}@{revision or 'UNPINNED'}/{name or ''}[{spec.hub.splits[split]}]"
    result = convert_rows(spec, ds, lang, where)
    result.files = {where: getattr(ds, "_fingerprint", "") or ""}
    return result


def _label_names(ds, column: str) -> list[str] | None:
    feats = getattr(ds, "features", None) or {}
    feat = feats.get(column)
    names = getattr(feat, "names", None)
    if names is None and feat is not None and hasattr(feat, "feature"):
        names = getattr(feat.feature, "names", None)
    return list(names) if names else None


def _first(row: dict, *keys):
    for k in keys:
        if k in row:
            return k
    return None


def _need(row: dict, keys, where: str, i: int, what: str):
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataFormatError(
            where,
            f"{what}: expected columns {list(keys)}, missing {missing} (the row has {sorted(row)})",
            line=i + 1,
            field=missing[0],
        )


def _mc_row(r: dict, i: int, where: str, names) -> MultipleChoiceExample:
    """One multiple-choice row in any of the published schemas (label None when unlabelled, e.g. -1)."""
    if "choice1" in r:  # COPA (aps/super_glue copa), XCOPA (cambridgeltl/xcopa)
        _need(r, ("premise", "choice2", "question", "label"), where, i, "COPA")
        lab = r["label"]
        return MultipleChoiceExample(
            str(r.get("idx", i)),
            r["premise"],
            [r["choice1"], r["choice2"]],
            lab if lab in (0, 1) else None,
            r["question"],
        )
    if "answerA" in r:  # Social IQa (allenai/social_i_qa): label "1".."3" as a string
        _need(r, ("context", "question", "answerB", "answerC", "label"), where, i, "Social IQa")
        lab = str(r["label"]).strip()
        if lab not in ("1", "2", "3"):
            raise DataFormatError(where, f"label {r['label']!r}: expected '1', '2' or '3'", line=i + 1, field="label")
        return MultipleChoiceExample(
            str(i), r["context"], [r["answerA"], r["answerB"], r["answerC"]], int(lab) - 1, r["question"]
        )
    if "choices" in r and "answerKey" in r:  # CommonsenseQA (tau/commonsense_qa)
        ch = r["choices"]
        if not isinstance(ch, dict) or "label" not in ch or "text" not in ch:
            raise DataFormatError(where, "expected {label: [...], text: [...]}", line=i + 1, field="choices")
        key = (r["answerKey"] or "").strip()
        if key and key not in ch["label"]:
            raise DataFormatError(
                where, f"answerKey {key!r} is not one of {list(ch['label'])}", line=i + 1, field="answerKey"
            )
        return MultipleChoiceExample(
            str(r.get("id", i)), "", list(ch["text"]), ch["label"].index(key) if key else None, r["question"]
        )
    if "answer0" in r:  # Cosmos QA (allenai/cosmos_qa): label -1 on the unlabelled test split
        _need(r, ("context", "question", "answer1", "answer2", "answer3", "label"), where, i, "Cosmos QA")
        lab = int(r["label"])
        return MultipleChoiceExample(
            str(r.get("id", i)),
            r["context"],
            [r[f"answer{k}"] for k in range(4)],
            lab if lab >= 0 else None,
            r["question"],
        )
    if "endings" in r:  # HellaSwag (Rowan/hellaswag): label "" on test
        lab = r.get("label")
        return MultipleChoiceExample(
            str(r.get("ind", i)), r["ctx"], list(r["endings"]), int(lab) if lab not in (None, "") else None
        )
    raise DataFormatError(
        where,
        f"no known multiple-choice schema (COPA, Social IQa, CommonsenseQA, Cosmos QA, "
        f"HellaSwag) matches the columns {sorted(r)}",
        line=i + 1,
        field="columns",
    )


def _lareqa(spec, rows, lang: str, where: str) -> ReadResult:
    """XQuAD-R rows -> the LAReQA reader's input (one SQuAD-style article per title)."""
    import json
    import os
    import tempfile

    if rows and not {"sentences", "sentence_breaks"} <= set(rows[0]):
        raise DataFormatError(
            where,
            "the rows carry no 'sentences'/'sentence_breaks', which LAReQA's candidate pool "
            "is built from; use the release files (data.sources.lareqa=local after "
            "`xlrepro data prepare lareqa`)",
            line=1,
            field="sentence_breaks",
        )
    articles: dict = {}
    for i, r in enumerate(rows):
        _need(r, ("id", "context", "question", "answers", "sentences", "sentence_breaks"), where, i, "XQuAD-R")
        paras = articles.setdefault(r.get("title", ""), {})
        para = paras.setdefault(
            r["context"],
            {
                "context": r["context"],
                "sentences": list(r["sentences"]),
                "sentence_breaks": [list(b) for b in r["sentence_breaks"]],
                "qas": [],
            },
        )
        ans = r["answers"]
        para["qas"].append(
            {
                "id": str(r["id"]),
                "question": r["question"],
                "answers": [{"text": t, "answer_start": int(s)} for t, s in zip(ans["text"], ans["answer_start"])],
            }
        )
    data = [{"title": t, "paragraphs": list(p.values())} for t, p in articles.items()]
    fd, tmp = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"data": data}, f)
        try:
            return read_lareqa_json({"file": Path(tmp)}, src_lang=lang)
        except DataFormatError as e:
            raise DataFormatError(where, str(e).split(": ", 1)[-1]) from None
    finally:
        os.unlink(tmp)


def _mewslix(rows, lang: str, where: str) -> ReadResult:
    """Mewsli-X article rows ({context: {...}, mentions: [...]}, the release's JSON lines) through its reader."""
    import json
    import os
    import tempfile

    if rows and not {"context", "mentions"} <= set(rows[0]):
        raise DataFormatError(
            where,
            f"expected Mewsli-X article rows with 'context' and 'mentions' (the release's "
            f"JSON lines), got columns {sorted(rows[0])}; use the release files",
            line=1,
            field="context",
        )
    fd, tmp = tempfile.mkstemp(suffix=".jsonl")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"context": r["context"], "mentions": r["mentions"]}, ensure_ascii=False) + "\n")
        try:
            return read_mewslix_jsonl({"file": Path(tmp)}, src_lang=lang)
        except DataFormatError as e:
            raise DataFormatError(where, str(e).split(": ", 1)[-1]) from None
    finally:
        os.unlink(tmp)


def convert_rows(spec, ds, lang: str, where: str = "hub") -> ReadResult:
    """Rows of a Hub dataset (an iterable of dicts with ``.features``) as xlrepro examples."""
    if spec.hub is not None and spec.hub.refuse:
        raise ConfigError(f"task {spec.name}: the Hub copy {spec.hub.repo} is not used: {spec.hub.refuse}")
    out: list[Example]
    out, skipped = [], {}
    rows = list(ds)
    if spec.hub is not None and spec.hub.filter_language == "id_prefix":
        prefix = tydiqa_language_prefix(lang)
        kept = [r for r in rows if str(r.get("id", "")).startswith(prefix)]
        if len(kept) < len(rows):
            skipped[f"other languages (id not starting with {prefix!r})"] = len(rows) - len(kept)
        rows = kept
    if not rows:
        return ReadResult([], {}, skipped)
    r0 = rows[0]

    def bad(i, field, msg):
        raise DataFormatError(where, msg, line=i + 1, field=field)

    if spec.format == Format.CLASSIFICATION:
        a = _first(r0, "premise", "sentence1", "question1", "sentence")
        b = _first(r0, "hypothesis", "sentence2", "question2")
        if a is None or "label" not in r0:
            bad(0, "premise/sentence1/question1/sentence, label", f"unexpected columns {sorted(r0)}")
        names = _label_names(ds, "label")
        lmap = dict(spec.hub.label_map) if spec.hub is not None else {}
        for i, r in enumerate(rows):
            lab = r["label"]
            if isinstance(lab, int):
                if lab < 0:  # e.g. MNLI/SNLI -1 = no gold label; GLUE test = unlabelled
                    skipped["label -1 (no gold label)"] = skipped.get("label -1 (no gold label)", 0) + 1
                    continue
                lab = names[lab] if names else str(lab)
            lab = lmap.get(lab, lab)
            if spec.labels and lab not in spec.labels:
                bad(
                    i,
                    "label",
                    f"unknown label {lab!r}; expected one of {list(spec.labels)}"
                    + ("" if lmap else " (a hub.label_map in the task file maps the dataset's class names)"),
                )
            out.append(ClassificationExample(str(r.get("idx", r.get("id", i))), r[a], r[b] if b else None, lab))
    elif spec.format == Format.MULTIPLE_CHOICE:
        for i, r in enumerate(rows):
            out.append(_mc_row(r, i, where, None))
    elif spec.format == Format.SPAN_QA:
        data = []
        for i, r in enumerate(rows):
            _need(r, ("id", "question", "context", "answers"), where, i, "SQuAD-style QA")
            ans = r["answers"]
            answers = [Answer(t, int(s)) for t, s in zip(ans["text"], ans["answer_start"])]
            for a in answers:
                if r["context"][a.start : a.start + len(a.text)] != a.text:
                    bad(i, "answers.answer_start", f"answer {a.text!r} not at offset {a.start} (id {r['id']})")
            out.append(SpanQAExample(str(r["id"]), r["question"], r["context"], answers, r.get("title")))
            data.append(
                {
                    "title": r.get("title", ""),
                    "paragraphs": [
                        {
                            "context": r["context"],
                            "qas": [
                                {
                                    "id": str(r["id"]),
                                    "question": r["question"],
                                    "answers": [{"text": a.text, "answer_start": a.start} for a in answers],
                                }
                            ],
                        }
                    ],
                }
            )
        return ReadResult(out, {}, skipped, raw=data)
    elif spec.format == Format.TAGGING:
        col = _first(r0, "pos_tags", "ner_tags")
        if col is None or "tokens" not in r0:
            bad(0, "tokens, pos_tags/ner_tags", f"unexpected columns {sorted(r0)}")
        names = _label_names(ds, col)
        for i, r in enumerate(rows):
            tags = [names[t] if names and isinstance(t, int) else str(t) for t in r[col]]
            out.append(TaggingExample(str(i), list(r["tokens"]), tags))
    elif spec.hub.converter == "mewslix_mentions":
        res = _mewslix(rows, lang, where)
        res.skipped.update(skipped)
        return res
    elif spec.hub.converter == "lareqa_pool":
        res = _lareqa(spec, rows, lang, where)
        res.skipped.update(skipped)
        return res
    elif spec.format == Format.RETRIEVAL:
        _need(r0, ("source_sentence", "target_sentence"), where, 0, "bitext")
        src = [r["source_sentence"] for r in rows]
        tgt = [r["target_sentence"] for r in rows]
        ids = [str(i) for i in range(len(rows))]
        out.append(BitextExample(f"{spec.name}.{lang}", lang, "en", ids, src, list(ids), tgt, [(i, i) for i in ids]))
    else:
        raise ConfigError(
            f"task {spec.name}: no Hub converter for the {spec.format.value} format; read it from "
            "the release files (data.source=local after `xlrepro data prepare`)"
        )
    return ReadResult(out, {}, skipped)
