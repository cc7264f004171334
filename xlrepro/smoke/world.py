"""Generate the smoke world: languages from one latent grammar, tasks in their original formats.

The latent world has nouns in four classes, verbs that select their subject's and object's
class, adjectives that select their noun's class, and numbers. English realises it with real
English words; every other language gets its own generated vocabulary (in the script the
language table gives it), its own word order (SVO/SOV/VSO, adjective before or after the noun)
and its own determiner. Digits and the full stop are shared anchors. A multilingual MLM corpus,
about half of it code-switched word by word, is the stand-in for XLM-R's pre-training: it is
what lets English task training transfer to the other languages.

Every task is written in the file layout of the real task it stands in for, so the real
readers run on it:

  mnli/      GLUE MNLI tsv (train.tsv, dev_matched.tsv)            English training data of XNLI
  xnli/      XTREME tsv (dev-xx.tsv, test-xx.tsv; labelled)         NLI: entail / neutral / contradict
  hellaswag/ hellaswag_{train,val}.jsonl                            intermediate task (4-way completion)
  copa/      XTREME's train-en.jsonl / val-en.jsonl                 English training data of XCOPA
  xcopa/     data/xx/{val,test}.xx.jsonl                             2-way plausibility
  squad/     train-v1.1.json, dev-v1.1.json                          English training data of XQuAD
  xquad/     xquad.xx.json                                           extractive QA
  udpos/     UD_<Name>-SMOKE/xx_smoke-ud-{train,dev,test}.conllu     UPOS tagging
  tatoeba/   tatoeba.xxx-eng.{xxx,eng}                               bitext retrieval
  bucc2018/  xx-en.{dev,test}.{xx,en,gold}                           bitext mining (BUCC languages only)
  corpus/    <lang>.txt, mixed.txt                                   MLM pre-training text
  pawsx/ panx/ mlqa/ tydiqa/ socialiqa/ labels/                      see ``world_tasks`` (own random stream)
  lareqa/, mewslix/, mewslix_wikipedia/                              dual-encoder retrieval (world_retrieval.py)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

from xlrepro import languages as langtab
from xlrepro.fsmode import apply_umask
from xlrepro.smoke import world_tasks  # PAWS-X, PAN-X, MLQA, TyDiQA, Social IQa, withheld test labels
from xlrepro.smoke.grammar import (
    Language,
    atomic_write,
    copa_item,
    mc_item,
    nli_pair,
    sample_clause,
    squad_article,
    text,
)
from xlrepro.smoke.world_retrieval import generate_retrieval  # LAReQA, Mewsli-X (own RNG)

WORLD_VERSION = 6  # bump when the generator's output changes (it is part of the world's cache key)


def _conllu(sentences: list[list[tuple[str, str]]], prefix: str) -> str:
    out = []
    for i, s in enumerate(sentences):
        out.append(f"# sent_id = {prefix}-{i + 1}")
        out.append(f"# text = {text(s)}")
        for j, (w, t) in enumerate(s, 1):
            out.append(f"{j}\t{w}\t_\t{t}\t_\t_\t0\t{'root' if j == 1 else 'dep'}\t_\t_")
        out.append("")
    return "\n".join(out) + "\n"


def generate(
    root: str | Path,
    languages: list[str],
    seed: int,
    n_train: int = 2000,
    n_dev: int = 200,
    n_test: int = 300,
    n_corpus: int = 8000,
    code_switch: float = 0.5,
) -> dict:
    """Write the smoke world under ``root`` (replaced atomically); returns a manifest."""
    if "en" not in languages:
        raise ValueError("the smoke world needs English ('en') among its languages")
    root = Path(root)
    tmp = Path(tempfile.mkdtemp(dir=root.parent if root.parent.exists() else None, prefix=".smoke-world-"))
    langs = {c: Language(c, i, seed) for i, c in enumerate(languages)}
    en = langs["en"]
    others = [c for c in languages if c != "en"]
    rng = random.Random(seed)

    # corpus: monolingual text in every language, and code-switched text
    corpus: dict[str, list[str]] = {c: [] for c in languages}
    mixed = []
    for _ in range(n_corpus):
        cl = sample_clause(rng)
        base = langs[rng.choice(languages)]
        if rng.random() < code_switch:
            lex = lambda concept: langs[rng.choice(languages)].word(concept)
            mixed.append(text(base.clause(cl, lex=lex)))
        else:
            corpus[base.code].append(text(base.clause(cl)))
    for c, sents in corpus.items():
        atomic_write(tmp / "corpus" / f"{c}.txt", "\n".join(sents) + "\n")
    atomic_write(tmp / "corpus" / "mixed.txt", "\n".join(mixed) + "\n")

    # NLI: MNLI (English train/dev, GLUE tsv) and XNLI (every language, XTREME tsv, labelled)
    header = [
        "index",
        "promptID",
        "pairID",
        "genre",
        "sentence1_binary_parse",
        "sentence2_binary_parse",
        "sentence1_parse",
        "sentence2_parse",
        "sentence1",
        "sentence2",
        "label1",
        "gold_label",
    ]
    for _split, fname, n in (("train", "train.tsv", n_train), ("dev", "dev_matched.tsv", n_dev)):
        rows = ["\t".join(header)]
        for i in range(n):
            p, h, label = nli_pair(rng)
            s1, s2 = text(en.clause(p)), text(en.clause(h))
            rows.append(
                "\t".join(
                    [
                        str(i),
                        str(i),
                        f"{i}{label[0]}",
                        "smoke",
                        f"( {s1} )",
                        f"( {s2} )",
                        f"(ROOT {s1})",
                        f"(ROOT {s2})",
                        s1,
                        s2,
                        label,
                        label,
                    ]
                )
            )
        atomic_write(tmp / "mnli" / fname, "\n".join(rows) + "\n")
    for c in languages:
        for split, n in (("dev", n_dev), ("test", n_test)):
            rows = []
            for _ in range(n):
                p, h, label = nli_pair(rng)
                rows.append(f"{text(langs[c].clause(p))}\t{text(langs[c].clause(h))}\t{label}")
            atomic_write(tmp / "xnli" / f"{split}-{c}.tsv", "\r\n".join(rows) + "\r\n")  # CRLF, as XTREME's

    # HellaSwag (intermediate, English, 4-way): context = subject + verb, endings = objects
    for split, fname, n in (("train", "hellaswag_train.jsonl", n_train), ("dev", "hellaswag_val.jsonl", n_dev)):
        rows = []
        for i in range(n):
            clause, choices, answer = mc_item(rng, 4)
            ctx = text(en.np(clause.subj) + [(en.word(clause.verb), "VERB")])
            endings = [text(en.np(np)) + " ." for np in choices]
            rows.append(
                json.dumps(
                    {
                        "ind": i,
                        "activity_label": "smoke",
                        "ctx_a": ctx,
                        "ctx_b": "",
                        "ctx": ctx,
                        "split": "train" if split == "train" else "val",
                        "split_type": "indomain",
                        "label": answer,
                        "endings": endings,
                        "source_id": f"smoke~{i}",
                    }
                )
            )
        atomic_write(tmp / "hellaswag" / fname, "\n".join(rows) + "\n")

    # COPA (English train/val, XTREME layout) and XCOPA (every language, original layout)
    def copa_rows(lang, n):
        rows = []
        for i in range(n):
            p, c1, c2, label, q = copa_item(rng)
            rows.append(
                json.dumps(
                    {
                        "premise": text(lang.clause(p)),
                        "choice1": text(lang.clause(c1)),
                        "choice2": text(lang.clause(c2)),
                        "question": q,
                        "label": label,
                        "idx": i,
                    },
                    ensure_ascii=False,
                )
            )
        return rows

    atomic_write(tmp / "copa" / "train-en.jsonl", "\n".join(copa_rows(en, n_train)) + "\n")
    atomic_write(tmp / "copa" / "val-en.jsonl", "\n".join(copa_rows(en, n_dev)) + "\n")
    for c in languages:
        for split, n in (("val", n_dev), ("test", n_test)):
            atomic_write(
                tmp / "xcopa" / "data" / c / f"{split}.{c}.jsonl", "\r\n".join(copa_rows(langs[c], n)) + "\r\n"
            )  # CRLF, as XCOPA's

    # SQuAD v1.1 (English) and XQuAD (every language)
    def squad_file(lang, n_questions, tag):
        n_par = max(1, n_questions // 3)
        arts = [
            squad_article(lang, rng, min(10, n_par - a * 10), f"smoke-{tag}-{a}", f"{tag}{a}")
            for a in range((n_par + 9) // 10)
        ]
        return json.dumps({"version": "1.1", "data": arts}, ensure_ascii=False)

    atomic_write(tmp / "squad" / "train-v1.1.json", squad_file(en, n_train, "train"))
    atomic_write(tmp / "squad" / "dev-v1.1.json", squad_file(en, n_dev, "dev"))
    for c in languages:
        atomic_write(tmp / "xquad" / f"xquad.{c}.json", squad_file(langs[c], n_test, f"x{c}"))

    # UD-POS (CoNLL-U, UD folder names from the language table)
    for c in languages:
        L = langtab.get(c)
        if L.ud_name is None:
            continue
        splits = (
            (("train", n_train), ("dev", n_dev), ("test", n_test)) if c == "en" else (("dev", n_dev), ("test", n_test))
        )
        for split, n in splits:
            tagged = [langs[c].clause(sample_clause(rng)) for _ in range(n)]
            atomic_write(
                tmp / "udpos" / f"UD_{L.ud_name}-SMOKE" / f"{c}_smoke-ud-{split}.conllu",
                _conllu(tagged, f"{c}-{split}"),
            )

    # Tatoeba (LASER layout): the same clause in English and in the other language
    for c in others:
        code = langtab.get(c).tatoeba_code
        if code is None:
            continue
        clauses = [sample_clause(rng) for _ in range(n_test)]
        atomic_write(
            tmp / "tatoeba" / f"tatoeba.{code}-eng.{code}", "\n".join(text(langs[c].clause(x)) for x in clauses) + "\n"
        )
        atomic_write(tmp / "tatoeba" / f"tatoeba.{code}-eng.eng", "\n".join(text(en.clause(x)) for x in clauses) + "\n")

    # BUCC 2018 (XTREME layout): comparable corpora, a third of the sentences translated
    for c in others:
        if "BUCC" not in langtab.get(c).xtreme_tasks:
            continue
        for split, n in (("dev", n_dev), ("test", n_test)):
            clauses = [sample_clause(rng) for _ in range(n)]
            pairs = rng.sample(range(n), n // 3)
            src = [(f"{c}-{split}-{i:06d}", text(langs[c].clause(cl))) for i, cl in enumerate(clauses)]
            eng = [
                (f"en-{split}-{i:06d}", text(en.clause(sample_clause(rng) if i not in pairs else clauses[i])))
                for i in range(n)
            ]
            order = list(range(n))
            rng.shuffle(order)  # the English side is not in the same order
            eng = [eng[i] for i in order]
            gold = sorted((f"{c}-{split}-{i:06d}", f"en-{split}-{i:06d}") for i in pairs)
            stem = tmp / "bucc2018" / f"{c}-en.{split}"
            atomic_write(stem.with_name(stem.name + f".{c}"), "".join(f"{i}\t{t}\n" for i, t in src))
            atomic_write(stem.with_name(stem.name + ".en"), "".join(f"{i}\t{t}\n" for i, t in eng))
            atomic_write(stem.with_name(stem.name + ".gold"), "".join(f"{a}\t{b}\n" for a, b in gold))

    world_tasks.generate(tmp, langs, seed, n_train, n_dev, n_test)
    generate_retrieval(tmp, langs, seed, n_train, n_dev, n_test)

    manifest = {
        "seed": seed,
        "world_version": WORLD_VERSION,
        "languages": languages,
        "word_order": {
            c: {"order": l.order, "adjective_after_noun": l.adj_after, "determiner": l.has_det}
            for c, l in langs.items()
        },
        "sizes": {"train": n_train, "dev": n_dev, "test": n_test, "corpus": n_corpus},
        "code_switch": code_switch,
    }
    atomic_write(tmp / "WORLD.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    apply_umask(tmp)  # mkdtemp creates 0700
    if root.exists():
        shutil.rmtree(root)
    os.replace(tmp, root)
    return manifest
