"""Smoke-world data of the dual-encoder retrieval tasks, in the files the real readers read.

  lareqa/xquad-r/<lang>.json               XQuAD-R: SQuAD JSON + sentences/sentence_breaks, 11-way parallel
                                           (here: the world's LAReQA languages), question ids shared
  mewslix/candidate_set_entities.jsonl     candidate entities, descriptions in several languages
  mewslix/wikinews_mentions-{dev,test}.jsonl  "news" mentions in the world's Mewsli-X languages
  mewslix_wikipedia/wikipedia_pairs-{train,dev}.jsonl  English "Wikipedia" (mention, entity) pairs

An entity is a (noun, adjective) pair of the latent world ("the tall doctor"); its description
names it and says what it does (or what is done to it). Wikipedia contexts are single sentences
without numbers; WikiNews articles are three sentences and may carry numbers (the domain shift).
A third of the entities never occurs in a training pair (Mewsli-X is doubly zero-shot).
Everything is drawn from its own RNG (``seed``-retrieval), so the other tasks of the world do
not change when this generator does.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from xlrepro import languages as langtab
from xlrepro.smoke import grammar as W


def _clause_with_offsets(lang: W.Language, c: W.Clause) -> tuple[str, dict]:
    """The clause's text and the [start, end) character span of its subject and object NPs."""
    parts = {"S": lang.np(c.subj), "V": [(lang.word(c.verb), "VERB")], "O": lang.np(c.obj)}
    words: list[str]
    words, spans, pos = [], {}, 0
    for k in lang.order:
        start = pos + (1 if words else 0)
        for w, _ in parts[k]:
            pos += (1 if words else 0) + len(w)
            words.append(w)
        spans[k] = (start, pos)
    return " ".join(words) + " .", spans


def _entity_clause(rng: random.Random, np: W.NP, p_num: float = 0.0) -> tuple[W.Clause, str]:
    """A clause with ``np`` as subject (person/animal) or object (food/tool); returns (clause, slot)."""
    cls = W.noun_class(np.noun)
    np = W.NP(np.noun, np.adj, rng.choice(W.NUMBERS) if rng.random() < p_num else None)
    if cls in ("person", "animal"):
        verb = rng.choice([v for v, f in W.VERBS.items() if cls in f[0]])
        return W.Clause(np, verb, W.sample_np(rng, W.VERBS[verb][1])), "S"
    verb = rng.choice([v for v, f in W.VERBS.items() if f[1] == cls])
    return W.Clause(W.sample_np(rng, rng.choice(W.VERBS[verb][0])), verb, np), "O"


def _lareqa(root: Path, langs: dict, rng: random.Random, n_par: int) -> None:
    codes = [c for c in langs if c in langtab.languages_for("LAReQA", "xtreme_r")]
    articles = []  # latent: [[(clauses, question slots)]]
    for a in range((n_par + 9) // 10):
        paras = []
        for _ in range(min(10, n_par - 10 * a)):
            clauses = [W.sample_clause(rng) for _ in range(3)]
            while len({c.subj.noun for c in clauses}) < 3 or len({c.obj.noun for c in clauses}) < 3:
                clauses = [W.sample_clause(rng) for _ in range(3)]
            paras.append((clauses, [rng.choice(["subj", "obj"]) for _ in clauses]))
        articles.append(paras)
    for code in codes:
        lang = langs[code]
        data = []
        for a, paras in enumerate(articles):
            out_paras = []
            for p, (clauses, whs) in enumerate(paras):
                sents, breaks, qas, context = [], [], [], ""
                for i, (c, wh) in enumerate(zip(clauses, whs)):
                    s, spans = _clause_with_offsets(lang, c)
                    start = len(context) + (1 if context else 0)
                    context = (context + " " if context else "") + s
                    sents.append(s)
                    breaks.append([start, start + len(s)])
                    a0, a1 = spans["S" if wh == "subj" else "O"]
                    qas.append(
                        {
                            "id": f"lareqa-{a}-{p}-{i}",
                            "question": W.text(lang.clause(c, wh=wh)),
                            "answers": [{"text": s[a0:a1], "answer_start": start + a0}],
                        }
                    )
                out_paras.append({"context": context, "sentences": sents, "sentence_breaks": breaks, "qas": qas})
            data.append({"title": f"smoke-lareqa-{a}", "paragraphs": out_paras})
        W.atomic_write(
            root / "lareqa" / "xquad-r" / f"{code}.json",
            json.dumps({"version": "1.1", "data": data}, ensure_ascii=False),
        )


def _mewslix(
    root: Path, langs: dict, rng: random.Random, n_pairs: int, n_dev_pairs: int, n_articles: int, n_dev_articles: int
) -> None:
    en = langs["en"]
    entities = [(noun, adj) for c in W.CLASSES for noun in W.NOUNS[c] for adj in W.ADJECTIVES[c]]
    qid = {e: f"Q{7000 + i}" for i, e in enumerate(entities)}
    records = {}
    for e in entities:
        lang = en if rng.random() < 0.5 else langs[rng.choice(list(langs))]
        name = W.text(lang.np(W.NP(e[0], e[1])))
        c, _ = _entity_clause(rng, W.NP(e[0], e[1]))
        first, second = name + " .", _clause_with_offsets(lang, c)[0]
        desc = f"{first} {second}"
        records[e] = {
            "entity_id": qid[e],
            "title": W.text(en.np(W.NP(e[0], e[1]))),
            "description": desc,
            "description_language": lang.code,
            "description_url": f"https://{lang.code}.wikipedia.org/wiki/Smoke_{qid[e]}",
            "sentence_spans": [{"start": 0, "end": len(first)}, {"start": len(first) + 1, "end": len(desc)}],
        }
    W.atomic_write(
        root / "mewslix" / "candidate_set_entities.jsonl",
        "\n".join(json.dumps(records[e], ensure_ascii=False) for e in entities) + "\n",
    )

    seen = entities[:]
    rng.shuffle(seen)
    seen = seen[: 2 * len(seen) // 3]  # the other third is never trained on
    for split, n in (("train", n_pairs), ("dev", n_dev_pairs)):
        rows = []
        for i in range(n):
            e = rng.choice(seen)
            c, slot = _entity_clause(rng, W.NP(e[0], e[1]))
            text, spans = _clause_with_offsets(en, c)
            a, b = spans[slot]
            ctx = {
                "document_title": f"Smoke {split} {i}",
                "document_url": f"https://en.wikipedia.org/wiki?curid={i}",
                "document_id": f"Q{90000 + i}",
                "language": "en",
                "text": text,
                "sentence_spans": [{"start": 0, "end": len(text)}],
            }
            men = {
                "example_id": f"wiki-{split}-{i}",
                "mention_span": {"start": a, "end": b, "text": text[a:b]},
                "entity_id": qid[e],
            }
            rows.append(
                json.dumps(
                    {"contextual_mention": {"context": ctx, "mention": men}, "entity": records[e]}, ensure_ascii=False
                )
            )
        W.atomic_write(root / "mewslix_wikipedia" / f"wikipedia_pairs-{split}.jsonl", "\n".join(rows) + "\n")

    codes = [c for c in langs if c in langtab.languages_for("Mewsli-X", "xtreme_r")]
    for split, n in (("dev", n_dev_articles), ("test", n_articles)):
        rows = []
        for code in codes:
            lang = langs[code]
            for i in range(n):
                text, sent_spans, mentions = "", [], []
                for j in range(3):
                    e = rng.choice(entities)
                    c, slot = _entity_clause(rng, W.NP(e[0], e[1]), p_num=0.3)
                    s, sp = _clause_with_offsets(lang, c)
                    start = len(text) + (1 if text else 0)
                    text = (text + " " if text else "") + s
                    sent_spans.append({"start": start, "end": start + len(s)})
                    a, b = sp[slot]
                    mentions.append((start + a, start + b, qid[e], j))
                md5 = hashlib.md5(text.encode("utf-8")).hexdigest()
                doc = f"{code}-{split}{i}"
                rows.append(
                    json.dumps(
                        {
                            "context": {
                                "document_title": f"Smoke news {i}",
                                "document_url": f"https://{code}.wikinews.org/wiki?curid={i}",
                                "document_id": doc,
                                "language": code,
                                "text": text,
                                "sentence_spans": sent_spans,
                            },
                            "mentions": [
                                {
                                    "example_id": hashlib.md5(f"{doc}-{j}".encode()).hexdigest(),
                                    "mention_span": {"start": a, "end": b, "text": text[a:b]},
                                    "entity_id": q,
                                    "metadata": {
                                        "curid": str(i),
                                        "revid": str(1000 + i),
                                        "text_md5": md5,
                                        "mention_url": f"https://{code}.wikinews.org/wiki?curid={i}",
                                        "bin_name": "smoke",
                                    },
                                }
                                for a, b, q, j in mentions
                            ],
                        },
                        ensure_ascii=False,
                    )
                )
        W.atomic_write(root / "mewslix" / f"wikinews_mentions-{split}.jsonl", "\n".join(rows))  # no final newline


def generate_retrieval(root: str | Path, langs: dict, seed: int, n_train: int, n_dev: int, n_test: int) -> dict:
    """Write the LAReQA- and Mewsli-X-like files under ``root``; returns their sizes for the manifest."""
    rng = random.Random(f"{seed}-retrieval")
    root = Path(root)
    n_par = max(2, n_test // 5)
    _lareqa(root, langs, rng, n_par)
    sizes: dict[str, Any] = {
        "lareqa_questions_per_language": 3 * n_par,
        "mewslix_pairs": [max(20, n_train // 2), max(10, n_dev // 2)],
        "mewslix_articles": [max(2, n_dev // 10), max(2, n_test // 10)],
    }
    _mewslix(
        root,
        langs,
        rng,
        sizes["mewslix_pairs"][0],
        sizes["mewslix_pairs"][1],
        sizes["mewslix_articles"][1],
        sizes["mewslix_articles"][0],
    )
    return sizes
