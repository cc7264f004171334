"""Stand-ins of the data release servers for the tests of `xlrepro data prepare`: the real-format
samples packed into the layouts their canonical servers publish (zips, tarballs, single files,
Hub parquet), served by a loopback server (tests/loopback.py). Used by tests/data/test_prepare.py
and tests/e2e/test_rehearsal.py."""

import io
import json
import tarfile
import zipfile
from pathlib import Path

from loopback import Loopback

HUB_SHA = "0123456789abcdef0123456789abcdef01234567"


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body in members.items():
            z.writestr(name, body)
    return buf.getvalue()


def _tar(members: dict, mode="w:bz2") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _merge_squad(files) -> bytes:
    data = []
    for f in files:
        data += json.loads(Path(f).read_text(encoding="utf-8"))["data"]
    return json.dumps({"version": "v1.1", "data": data}).encode()


def _panx_parquet(samples, lang, split) -> bytes:
    import datasets

    from xlrepro.data.all_readers import get_reader

    ex = get_reader("panx_rahimi")({"file": samples / "panx" / "hf_dummy_data" / lang / split}, src_lang=lang).examples
    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    feats = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
            "langs": datasets.Sequence(datasets.Value("string")),
        }
    )
    ds = datasets.Dataset.from_dict(
        {
            "tokens": [e.words for e in ex],
            "ner_tags": [[names.index(t) for t in e.tags] for e in ex],
            "langs": [[lang] * len(e.words) for e in ex],
        },
        features=feats,
    )
    buf = io.BytesIO()
    ds.to_parquet(buf)
    return buf.getvalue()


def _tatoeba_ron(s: Path) -> tuple[bytes, bytes]:
    """A Tatoeba v1 pair file for Romanian (none in the samples): XQuAD's Romanian questions and
    their English originals (XQuAD shares question ids across languages), one sentence a line,
    line i of the .ron file translating line i of the .eng file, as LASER's files are."""

    def questions(lang):
        d = json.loads((s / f"xquad/xquad.{lang}.json").read_text(encoding="utf-8"))
        return {q["id"]: " ".join(q["question"].split()) for a in d["data"] for p in a["paragraphs"] for q in p["qas"]}

    ro, en = questions("ro"), questions("en")
    ids = [i for i in ro if i in en][:100]
    return tuple(("".join(f"{side[i]}\n" for i in ids)).encode() for side in (ro, en))


def _mlqa_test(s: Path, lang: str) -> bytes:
    """A same-language MLQA test file (the samples have dev files only), in MLQA's exact form
    (``{"version": 1.0, "data": [...]}``, question keys ``question, answers, id``, 40-hex ids,
    ``json.dumps`` defaults, no final newline) with content distinct from the dev sample: the
    paragraphs and questions of XQuAD in the same language (also Wikipedia, SQuAD-style)."""
    import hashlib

    x = json.loads((s / f"xquad/xquad.{lang}.json").read_text(encoding="utf-8"))
    data = [
        {
            "title": a["title"],
            "paragraphs": [
                {
                    "context": p["context"],
                    "qas": [
                        {
                            "question": q["question"],
                            "answers": [
                                {"text": q["answers"][0]["text"], "answer_start": q["answers"][0]["answer_start"]}
                            ],
                            "id": hashlib.sha1(f"mlqa-test:{q['id']}".encode()).hexdigest(),
                        }
                        for q in p["qas"]
                    ],
                }
                for p in a["paragraphs"]
            ],
        }
        for a in x["data"]
    ]
    return json.dumps({"version": 1.0, "data": data}).encode()


def _conllu(sentences, sent_id: str) -> str:
    """CoNLL-U (10 tab-separated columns, ``# sent_id``/``# text`` comments, a blank line after
    each sentence) for (form, UPOS) sentences without trees: word 1 is the root, the rest
    attach to it (``dep``); lemma, XPOS, features, DEPS and MISC are ``_``."""
    out = []
    for n, sent in enumerate(sentences, 1):
        out += [f"# sent_id = {sent_id}-{n}", f"# text = {' '.join(w for w, _ in sent)}"]
        out += [
            f"{i}\t{w}\t_\t{t}\t_\t_\t{0 if i == 1 else 1}\t{'root' if i == 1 else 'dep'}\t_\t_"
            for i, (w, t) in enumerate(sent, 1)
        ]
        out.append("")
    return "\n".join(out) + "\n"


def _zh_sentences(s: Path, skip: int, n: int):
    """Chinese sentences from XQuAD's Chinese contexts, cut at 。, tokens = Han characters, digit
    runs and Latin runs, tagged by character class (generated tags: PUNCT, NUM, X for Latin
    script, NOUN otherwise; UD's Chinese treebanks are not among the samples)."""
    import re
    import unicodedata

    x = json.loads((s / "xquad/xquad.zh.json").read_text(encoding="utf-8"))
    text = "".join(p["context"] for a in x["data"] for p in a["paragraphs"])
    sents = [t + "。" for t in text.split("。") if t.strip()][skip : skip + n]
    out = []
    for t in sents:
        toks = re.findall(r"[0-9]+|[A-Za-z]+|\S", t)
        out.append(
            [
                (
                    w,
                    "NUM"
                    if w[0].isdigit()
                    else "X"
                    if w[0].isascii() and w[0].isalpha()
                    else "PUNCT"
                    if unicodedata.category(w[0]).startswith(("P", "S"))
                    else "NOUN",
                )
                for w in toks
            ]
        )
    return out


def _ud_tarball(s: Path) -> bytes:
    """UD v2.5's ud-treebanks-v2.5.tgz layout: ``ud-treebanks-v2.5/UD_<Lang>-<Treebank>/`` with
    ``<code>-ud-{train,dev,test}.conllu`` and the raw ``.txt`` beside them. The sampled treebanks
    as they are; English train (absent from the samples) converted to CoNLL-U from XTREME's
    processed English training file (EWT's first sentences); a Chinese treebank (UD_Chinese-GSD)
    generated by _zh_sentences."""
    ud = s / "udpos"
    members = {}
    for f in sorted(ud.glob("UD_*/*.conllu")):
        members[f"ud-treebanks-v2.5/{f.parent.name}/{f.name}"] = f.read_bytes()
    sents, cur = [], []
    for line in (ud / "xtreme_processed/train-en.tsv").read_text(encoding="utf-8").splitlines() + [""]:
        if line.strip():
            cur.append(tuple(line.split("\t")))
        elif cur:
            sents, cur = sents + [cur], []
    members["ud-treebanks-v2.5/UD_English-EWT/en_ewt-ud-train.conllu"] = _conllu(sents, "en-train").encode()
    for split, skip in (("dev", 0), ("test", 25)):
        members[f"ud-treebanks-v2.5/UD_Chinese-GSD/zh_gsd-ud-{split}.conllu"] = _conllu(
            _zh_sentences(s, skip, 25), f"zh-{split}"
        ).encode()
    for name in list(members):
        text = [l[len("# text = ") :] for l in members[name].decode("utf-8").splitlines() if l.startswith("# text = ")]
        members[name[: -len(".conllu")] + ".txt"] = ("\n".join(text) + "\n").encode()
    members["ud-treebanks-v2.5/UD_English-EWT/README.md"] = (
        b"# Summary\n\nUniversal Dependencies English Web Treebank\n"
    )
    return _tar(members, "w:gz")


def publish(lb: Loopback, s: Path) -> None:
    """The samples in the layouts their canonical servers publish."""
    squad = (s / "squad/dataset/dev-v1.1.json").read_bytes()
    lb.serve_url("https://rajpurkar.github.io/SQuAD-explorer/dataset/train-v1.1.json", squad)
    lb.serve_url("https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json", squad)
    for f in (s / "xquad").glob("xquad.*.json"):
        lb.serve_url(f"https://github.com/deepmind/xquad/raw/master/{f.name}", f.read_bytes())
    lang = s / "tydiqa-goldp/language_data"
    lb.serve_url(
        "https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-train.json",
        _merge_squad(sorted(lang.glob("*/*_tydiqa_train.json"))),
    )
    lb.serve_url(
        "https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-dev.json",
        _merge_squad(sorted(lang.glob("*/*_tydiqa_dev.json"))),
    )
    x = s / "xnli/hf_dummy_data/XNLI-1.0"
    lb.serve_url(
        "https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip",
        _zip({f"XNLI-1.0/{n}": (x / n).read_bytes() for n in ("xnli.dev.tsv", "xnli.test.tsv")}),
    )
    m = s / "mnli/hf_dummy_data/glue/MNLI"
    lb.serve_url(
        "https://dl.fbaipublicfiles.com/glue/data/MNLI.zip",
        _zip({f"MNLI/{n}": (m / n).read_bytes() for n in ("train.tsv", "dev_matched.tsv", "test_matched.tsv")}),
    )
    b = s / "bucc2018"
    lb.serve_url(
        "https://comparable.limsi.fr/bucc2018/bucc2018-zh-en.sample-gold.tar.bz2",
        _tar({f"bucc2018/zh-en/zh-en.sample.{e}": (b / f"zh-en.dev.{e}").read_bytes() for e in ("zh", "en", "gold")}),
    )
    lb.serve_url(
        "https://comparable.limsi.fr/bucc2018/bucc2018-zh-en.training-gold.tar.bz2",
        _tar({f"bucc2018/zh-en/zh-en.training.{e}": (b / f"zh-en.dev.{e}").read_bytes() for e in ("zh", "en", "gold")}),
    )
    for f in (s / "tatoeba/data/tatoeba/v1").iterdir():
        lb.serve_url(f"https://github.com/facebookresearch/LASER/raw/main/data/tatoeba/v1/{f.name}", f.read_bytes())
    for side, body in zip(("ron", "eng"), _tatoeba_ron(s)):  # no Romanian Tatoeba sample: XQuAD's parallel questions
        lb.serve_url(f"https://github.com/facebookresearch/LASER/raw/main/data/tatoeba/v1/tatoeba.ron-eng.{side}", body)
    px = s / "paws-x/hf_dummy_data"
    lb.serve_url(
        "https://storage.googleapis.com/paws/pawsx/x-final.tar.gz",
        _tar(
            {
                f.relative_to(px).as_posix(): f.read_bytes()
                for f in sorted(px.rglob("*.tsv"))
                if f.name != "translated_train.tsv"
            },
            "w:gz",
        ),
    )
    ml = s / "mlqa"
    lb.serve_url(
        "https://dl.fbaipublicfiles.com/MLQA/MLQA_V1.zip",  # no test sample: made from XQuAD, see _mlqa_test
        _zip(
            {
                **{f.relative_to(ml).as_posix(): f.read_bytes() for f in sorted(ml.rglob("MLQA_V1/dev/*.json"))},
                **{
                    f"MLQA_V1/test/test-context-{l}-question-{l}.json": _mlqa_test(s, l)
                    for l in ("en", "ar", "de", "es", "hi", "vi", "zh")
                },
            }
        ),
    )
    lb.serve_url(
        "https://lindat.mff.cuni.cz/repository/xmlui/bitstream/handle/11234/1-3105/ud-treebanks-v2.5.tgz",
        _ud_tarball(s),
    )
    lb.hub["unimelb-nlp/wikiann"] = {
        "sha": HUB_SHA[::-1],
        "files": {f"ro/{sp}/0000.parquet": _wikiann_parquet(s, "ro", sp) for sp in ("validation", "test")},
    }
    lb.hub["google/xtreme"] = {
        "sha": HUB_SHA,
        "files": {
            f"PAN-X.{l}/{sp}-00000-of-00001.parquet": _panx_parquet(s, l, d)
            for l in ("en", "sw", "zh")
            for sp, d in (("train", "train"), ("validation", "dev"), ("test", "test"))
        },
    }


def _wikiann_parquet(s: Path, lang: str, split: str) -> bytes:
    """unimelb-nlp/wikiann's parquet form (tokens, ner_tags, langs, spans) for an XTREME-R PAN-X
    language the samples lack: Romanian tokens from XQuAD's Romanian questions, generated tags
    (a capitalised word after the first is B-PER, everything else O)."""
    import datasets

    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    d = json.loads((s / f"xquad/xquad.{lang}.json").read_text(encoding="utf-8"))
    qs = [q["question"].split() for a in d["data"] for p in a["paragraphs"] for q in p["qas"]]
    qs = qs[:20] if split == "test" else qs[20:40]
    tags = [[1 if i and w[:1].isupper() else 0 for i, w in enumerate(q)] for q in qs]
    feats = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
            "langs": datasets.Sequence(datasets.Value("string")),
            "spans": datasets.Sequence(datasets.Value("string")),
        }
    )
    ds = datasets.Dataset.from_dict(
        {
            "tokens": qs,
            "ner_tags": tags,
            "langs": [[lang] * len(q) for q in qs],
            "spans": [[f"PER: {q[i]}" for i, t in enumerate(tg) if t] for q, tg in zip(qs, tags)],
        },
        features=feats,
    )
    buf = io.BytesIO()
    ds.to_parquet(buf)
    return buf.getvalue()


def release_sums_off(monkeypatch):
    """The samples are not the release files, so the published sha256 of the task files cannot
    match them; tests that fetch samples switch those off (test_a_published_sha256_is_enforced
    keeps them on)."""
    from xlrepro.data import prepare

    monkeypatch.setattr(prepare, "known_sha256", lambda entry, lang: None)
