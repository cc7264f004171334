"""The rest of XTREME's task families in the smoke world, each in the file layout its reader reads.

``world.generate`` calls :func:`generate` after the foundation's tasks. Everything here draws
from its own random stream (seeded from the world seed), so adding it leaves the foundation's
files (and the pre-training corpus) byte-identical.

  pawsx/      XTREME tsv: train-en.tsv, dev-xx.tsv (labelled), test-xx.tsv (labels withheld,
              as XTREME's download does); CRLF, as XTREME's
  panx/       XTREME tsv: train-en.tsv, dev-xx.tsv (word TAB IOB2 tag), test-xx.tsv (words only)
  mlqa/       MLQA_V1/{dev,test}/{split}-context-xx-question-xx.json (same-language pairs)
  tydiqa/     tydiqa-goldp-v1.1-{train,dev}.json: the official files, every language in one file,
              ids ``<language>-<signed int>-<k>``; English training data must be filtered out
  socialiqa/  socialIQa_v1.4_{trn,dev}.jsonl (first stage of XCOPA's XTREME-R training chain)
  ccg/        ccgbank/data/AUTO/<section>/wsj_*.auto: English CCG derivations of the grammar's
              clauses (train in sections 02-21, dev 00, test 23, as CCGbank's standard split);
              a tagging intermediate task whose supertags refine the clause's UPOS tags
  labels/     <task>/test-xx.<ext>: the test labels withheld above, in the XTREME label layout
              that ``xlrepro score`` (and evaluate.py) reads

The tasks reuse the latent grammar of ``grammar``:

- PAWS-X: a pair of clauses; paraphrase (1) = the same clause, non-paraphrase (0) = the same
  words reordered (subject and object swapped where the verb allows it, else their modifiers
  swapped) or one noun or verb replaced by one of the same class or frame.
- PAN-X: a clause whose person subject may be a PER or ORG name and whose object may be a LOC
  name. Names are one- or two-word Latin strings shared by every language (as WikiANN's
  Latin-script names often are), tagged B-/I-; every other word is O.
- MLQA, TyDiQA: the SQuAD generator of ``grammar`` (who/what questions about one clause).
- Social IQa: a premise and three follow-ups about its object; only one follow-up's verb takes
  an object of that class.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

from xlrepro import languages as langtab
from xlrepro.smoke.grammar import (
    NOUNS,
    NP,
    VERBS,
    Clause,
    Language,
    atomic_write,
    noun_class,
    sample_clause,
    sample_np,
    squad_article,
    text,
)
from xlrepro.tasks import get_task

NAMES = {  # lower case: the smoke tokenizer learnt no capital letters
    "PER": [
        "anna berg",
        "boris",
        "carla mendez",
        "dmitri volk",
        "elif",
        "farid nasser",
        "greta",
        "hiro sato",
        "ines costa",
        "jonas lind",
    ],
    "ORG": [
        "acme",
        "nordic bank",
        "vega motors",
        "delta foods",
        "orion group",
        "kappa",
        "sunrise media",
        "atlas steel",
    ],
    "LOC": ["oslo", "cape town", "lima", "nairobi", "new harbor", "kyoto", "porto", "santa rosa", "tromso"],
}
# TyDi QA languages written into the mixed official files besides the world's own (never read as
# English; they exist so that the reader's id-prefix filter has something to drop)
TYDIQA_OTHERS = ("ar", "fi", "sw")


def generate(root: str | Path, langs: dict[str, Language], seed: int, n_train: int, n_dev: int, n_test: int) -> dict:
    """Write the tasks under ``root`` (the world's temporary folder); returns {task: sizes}."""
    root = Path(root)
    rng = random.Random(f"{seed}-xtreme-tasks")
    en = langs["en"]
    sizes = {
        "pawsx": _pawsx(root, langs, rng, max(40, n_train // 2), max(20, n_dev // 2), max(20, n_test // 3)),
        "panx": _panx(root, langs, rng, max(40, n_train // 2), max(20, n_dev // 2), max(20, n_test // 3)),
        "mlqa": _mlqa(root, langs, rng, max(9, n_dev // 4), max(9, n_test // 4)),
        "tydiqa": _tydiqa(root, en, seed, rng, max(30, n_train // 5), max(9, n_test // 4)),
        "socialiqa": _socialiqa(root, en, rng, max(30, n_train // 4), max(20, n_dev // 2)),
        # its own stream: the files above stay byte-identical to worlds generated before CCG
        "ccg": _ccg(root, en, random.Random(f"{seed}-ccg"), n_train, n_dev, n_test),
    }
    return sizes


# ---------------------------------------------------------------------- PAWS-X


def paws_pair(rng: random.Random) -> tuple[Clause, Clause, str]:
    """(sentence 1, sentence 2, label) with label "1" = paraphrase, "0" = not (see the module doc)."""
    a = sample_clause(rng, p_mod=0.6)
    b = copy.deepcopy(a)
    if rng.random() < 0.5:
        return a, b, "1"
    subj_cls, obj_cls = noun_class(a.subj.noun), noun_class(a.obj.noun)
    swappable = obj_cls in VERBS[a.verb][0] and subj_cls == VERBS[a.verb][1] and a.subj.noun != a.obj.noun
    mods_differ = (a.subj.adj, a.subj.num) != (a.obj.adj, a.obj.num) and subj_cls == obj_cls
    how = rng.choice(["reorder", "reorder", "replace"])
    if how == "reorder" and swappable:
        b.subj, b.obj = b.obj, b.subj
    elif how == "reorder" and mods_differ:
        b.subj.adj, b.obj.adj = a.obj.adj, a.subj.adj
        b.subj.num, b.obj.num = a.obj.num, a.subj.num
    else:
        alts = [v for v, f in VERBS.items() if v != a.verb and f[1] == obj_cls and subj_cls in f[0]]
        if alts and rng.random() < 0.4:
            b.verb = rng.choice(alts)
        else:
            np = b.subj if rng.random() < 0.5 else b.obj
            np.noun = rng.choice([n for n in NOUNS[noun_class(np.noun)] if n != np.noun])
    return a, b, "0"


def _task_langs(task: str, langs: dict[str, Language]) -> dict[str, Language]:
    """The world's languages that the task has (as the real download has files for those only)."""
    have = set(get_task(task).all_languages())
    return {c: l for c, l in langs.items() if c in have}


def _pawsx(root, langs, rng, n_train, n_dev, n_test) -> dict:
    def rows(lang, n, labelled):
        out, gold = [], []
        for _ in range(n):
            a, b, label = paws_pair(rng)
            out.append(f"{text(lang.clause(a))}\t{text(lang.clause(b))}" + (f"\t{label}" if labelled else ""))
            gold.append(label)
        return out, gold

    def write(path, lines):
        atomic_write(path, "\r\n".join(lines) + "\r\n")  # CRLF, as XTREME's

    write(root / "pawsx" / "train-en.tsv", rows(langs["en"], n_train, True)[0])
    for code, lang in _task_langs("pawsx", langs).items():
        write(root / "pawsx" / f"dev-{code}.tsv", rows(lang, n_dev, True)[0])
        test, gold = rows(lang, n_test, False)
        write(root / "pawsx" / f"test-{code}.tsv", test)
        atomic_write(root / "labels" / "pawsx" / f"test-{code}.tsv", "".join(f"{g}\n" for g in gold))
    return {"train": n_train, "dev": n_dev, "test": n_test}


# ---------------------------------------------------------------------- PAN-X


def ner_sentence(lang: Language, rng: random.Random) -> list[tuple[str, str]]:
    """(word, IOB2 tag) of one clause with names in place of some noun phrases."""
    c = sample_clause(rng)
    ents = {}
    if noun_class(c.subj.noun) == "person":
        r = rng.random()
        if r < 0.45:
            ents["subj"] = ("PER", rng.choice(NAMES["PER"]))
        elif r < 0.7:
            ents["subj"] = ("ORG", rng.choice(NAMES["ORG"]))
    if rng.random() < 0.35:
        ents["obj"] = ("LOC", rng.choice(NAMES["LOC"]))
    words, done = [], set()
    for (w, slot), _ in _clause_with_slots(lang, c):
        if slot in ents:  # the whole noun phrase becomes the name
            if slot not in done:
                etype, name = ents[slot]
                words += [(part, ("B-" if k == 0 else "I-") + etype) for k, part in enumerate(name.split())]
                done.add(slot)
            continue
        words.append((w, "O"))
    return words


def _clause_with_slots(lang: Language, c: Clause) -> list[tuple[tuple[str, str | None], str]]:
    """``lang.clause(c)`` with each word marked by the slot (subj/obj) of the noun phrase it belongs to."""
    s = [((w, "subj"), p) for w, p in lang.np(c.subj)]
    o = [((w, "obj"), p) for w, p in lang.np(c.obj)]
    v = [((lang.word(c.verb), None), "VERB")]
    parts: dict[str, list] = {"S": s, "V": v, "O": o}
    return [x for k in lang.order for x in parts[k]] + [((".", None), "PUNCT")]


def _panx(root, langs, rng, n_train, n_dev, n_test) -> dict:
    def block(sents, with_tags):
        return "".join("".join(f"{w}\t{t}\n" if with_tags else f"{w}\n" for w, t in s) + "\n" for s in sents)

    atomic_write(root / "panx" / "train-en.tsv", block([ner_sentence(langs["en"], rng) for _ in range(n_train)], True))
    for code, lang in _task_langs("panx", langs).items():
        atomic_write(root / "panx" / f"dev-{code}.tsv", block([ner_sentence(lang, rng) for _ in range(n_dev)], True))
        test = [ner_sentence(lang, rng) for _ in range(n_test)]
        atomic_write(root / "panx" / f"test-{code}.tsv", block(test, False))
        atomic_write(
            root / "labels" / "panx" / f"test-{code}.tsv", "".join("".join(f"{t}\n" for _, t in s) + "\n" for s in test)
        )
    return {"train": n_train, "dev": n_dev, "test": n_test}


# ---------------------------------------------------------------------- MLQA, TyDiQA


def _squad_file(lang: Language, rng: random.Random, n_questions: int, tag: str) -> dict:
    n_par = max(1, n_questions // 3)
    arts = [
        squad_article(lang, rng, min(10, n_par - a * 10), f"smoke-{tag}-{a}", f"{tag}{a}")
        for a in range((n_par + 9) // 10)
    ]
    return {"version": "1.1", "data": arts}


def _mlqa(root, langs, rng, n_dev, n_test) -> dict:
    for code, lang in _task_langs("mlqa", langs).items():
        for split, n in (("dev", n_dev), ("test", n_test)):
            obj = _squad_file(lang, rng, n, f"mlqa-{split}-{code}")
            atomic_write(
                root / "mlqa" / "MLQA_V1" / split / f"{split}-context-{code}-question-{code}.json",
                json.dumps(obj, ensure_ascii=False),
            )
    return {"dev": n_dev, "test": n_test}


def _tydiqa(root, en: Language, seed: int, rng, n_train, n_test) -> dict:
    others = {c: Language(c, 100 + i, seed) for i, c in enumerate(TYDIQA_OTHERS)}

    def mixed(n_en, split):
        articles = []
        for code, lang in [("en", en), *others.items()]:
            n = n_en if code == "en" else max(3, n_en // 4)
            name = langtab.get(code).name.lower()
            for art in _squad_file(lang, rng, n, f"tydiqa-{split}-{code}")["data"]:
                for para in art["paragraphs"]:
                    for k, qa in enumerate(para["qas"]):
                        qa["id"] = f"{name}-{rng.randint(-(2**63), 2**63 - 1)}-{k}"
                articles.append(art)
        rng.shuffle(articles)  # the official files interleave the languages' articles
        return {"data": articles, "version": "TyDiQA-GoldP-1.1-for-SQuAD-1.1"}

    atomic_write(
        root / "tydiqa" / "tydiqa-goldp-v1.1-train.json", json.dumps(mixed(n_train, "train"), ensure_ascii=False)
    )
    atomic_write(root / "tydiqa" / "tydiqa-goldp-v1.1-dev.json", json.dumps(mixed(n_test, "dev"), ensure_ascii=False))
    return {"train_en": n_train, "test_en": n_test, "other_languages": list(TYDIQA_OTHERS)}


# ---------------------------------------------------------------------- Social IQa


def siqa_item(rng: random.Random) -> tuple[Clause, list[Clause], int]:
    """Premise and three follow-ups about its object; only the answer's verb takes that object's class."""
    p = sample_clause(rng)
    cls = noun_class(p.obj.noun)
    good = [v for v, f in VERBS.items() if f[1] == cls]
    bad = [v for v, f in VERBS.items() if f[1] != cls]
    verbs = [rng.choice(good)] + rng.sample(bad, 2)
    follow = [Clause(sample_np(rng, rng.choice(VERBS[v][0])), v, NP(p.obj.noun)) for v in verbs]
    order = [0, 1, 2]
    rng.shuffle(order)
    return p, [follow[i] for i in order], order.index(0)


def _socialiqa(root, en: Language, rng, n_train, n_dev) -> dict:
    for fname, n in (("socialIQa_v1.4_trn.jsonl", n_train), ("socialIQa_v1.4_dev.jsonl", n_dev)):
        rows = []
        for _ in range(n):
            p, answers, label = siqa_item(rng)
            rows.append(
                json.dumps(
                    {
                        "context": text(en.clause(p)),
                        "question": "What happens next?",
                        "answerA": text(en.clause(answers[0])),
                        "answerB": text(en.clause(answers[1])),
                        "answerC": text(en.clause(answers[2])),
                        "correct": "ABC"[label],
                    }
                )
            )
        atomic_write(root / "socialiqa" / fname, "\n".join(rows) + "\n")
    return {"train": n_train, "dev": n_dev}


# ---------------------------------------------------------------------- CCGbank

# English leaves: UPOS -> (supertag, PTB tag, predicate-argument category), CCGbank's notation
CCG_LEAVES = {
    "DET": ("NP[nb]/N", "DT", "NP[nb]_1/N_1"),
    "NUM": ("N/N", "CD", "N_1/N_1"),
    "ADJ": ("N/N", "JJ", "N_1/N_1"),
    "NOUN": ("N", "NN", "N"),
    "VERB": ("(S[dcl]\\NP)/NP", "VBZ", "(S[dcl]\\NP_1)/NP_2"),
    "PUNCT": (".", ".", "."),
}
CCG_SPLITS = {"train": [f"{s:02d}" for s in range(2, 22)], "dev": ["00"], "test": ["23"]}


def _leaf(word: str, upos: str) -> str:
    cat, ptb, pred = CCG_LEAVES[upos]
    return f"(<L {cat} {ptb} {ptb} {word} {pred}>)"


def ccg_derivation(en: Language, c: Clause) -> str:
    """One line of a CCGbank AUTO derivation of an English clause (determiner, numbers and
    adjectives before the noun, subject-verb-object, final stop)."""
    if (en.order, en.adj_after, en.has_det) != ("SVO", False, True):
        raise ValueError("ccg_derivation is written for English word order (SVO, adjective first, determiner)")

    def np(words: list[tuple[str, str]]) -> str:
        (det, _), *rest = words
        nbar = _leaf(*rest[-1])
        for w, t in reversed(rest[:-1]):  # modifiers apply right to left: N/N N -> N
            nbar = f"(<T N 1 2> {_leaf(w, t)} {nbar} )"
        return f"(<T NP 0 2> {_leaf(det, 'DET')} {nbar} )"

    subj, verb, obj = en.np(c.subj), (en.word(c.verb), "VERB"), en.np(c.obj)
    vp = f"(<T S[dcl]\\NP 0 2> {_leaf(*verb)} {np(obj)} )"
    return f"(<T S[dcl] 0 2> (<T S[dcl] 1 2> {np(subj)} {vp} ) {_leaf('.', 'PUNCT')} )"


def _ccg(root, en: Language, rng, n_train, n_dev, n_test) -> dict:
    base = root / "ccg" / "ccgbank" / "data" / "AUTO"
    sizes = {}
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        sections = CCG_SPLITS[split]
        per = -(-n // len(sections))  # ceil: every section gets a file
        done = 0
        for sec in sections:
            k = min(per, n - done)
            rows = []
            for i in range(1, max(k, 1) + 1):
                rows += [f"ID=wsj_{sec}01.{i} PARSER=GOLD NUMPARSE=1", ccg_derivation(en, sample_clause(rng))]
            done += max(k, 1)
            atomic_write(base / sec / f"wsj_{sec}01.auto", "\n".join(rows) + "\n")
        sizes[split] = done
    return sizes
