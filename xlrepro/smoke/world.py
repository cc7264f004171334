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
from dataclasses import dataclass
from pathlib import Path

from xlrepro import languages as langtab
from xlrepro.fsmode import apply_umask

WORLD_VERSION = 5  # bump when the generator's output changes (it is part of the world's cache key)

CLASSES = ("person", "animal", "food", "tool")
NOUNS = {
    "person": ["doctor", "teacher", "farmer", "child", "woman", "man", "king", "sailor", "baker", "singer"],
    "animal": ["dog", "cat", "horse", "bird", "fish", "goat", "mouse", "lion", "cow", "bear"],
    "food": ["apple", "bread", "rice", "cake", "soup", "egg", "cheese", "plum", "bean", "pear"],
    "tool": ["knife", "hammer", "rope", "cup", "pen", "box", "key", "lamp", "spoon", "bag"],
}
# verb -> (subject classes, object class)
VERBS = {
    "eats": (("person", "animal"), "food"), "cooks": (("person",), "food"), "buys": (("person",), "food"),
    "bakes": (("person",), "food"), "smells": (("animal",), "food"), "sells": (("person",), "tool"),
    "uses": (("person",), "tool"), "holds": (("person",), "tool"), "drops": (("person",), "tool"),
    "finds": (("person", "animal"), "tool"), "carries": (("person", "animal"), "tool"),
    "sees": (("person", "animal"), "animal"), "chases": (("animal",), "animal"), "feeds": (("person",), "animal"),
    "washes": (("person",), "animal"), "catches": (("person", "animal"), "animal"),
}
ADJECTIVES = {
    "person": ["tall", "old", "young"], "animal": ["wild", "small", "brown"],
    "food": ["fresh", "sweet", "hot"], "tool": ["heavy", "sharp", "new"],
}
NUMBERS = [str(i) for i in range(2, 10)]
FUNCTION = {"det": "the", "who": "who", "what": "what"}

_LETTERS = {
    "Latin": ("bcdfghjklmnprstvwz", "aeiou"),
    "Cyrillic": ("бвгдзклмнпрстфх", "аеиоу"),
    "Greek": ("βγδζκλμνπρστφχ", "αεηιου"),
    "Arabic": ("بتثجحدذرزسشصطعفقكلمن", "اوي"),
    "Devanagari": ("कखगचजटडतदनपबमयरलवस", "ािीुेो"),
    "Thai": ("กขคงจฉชซดตถทนบปผพมยรลวส", "ะาิีึุู"),
    "Hangul": None,
    "Han": None,
}


@dataclass
class NP:
    noun: str
    adj: str | None = None
    num: str | None = None


@dataclass
class Clause:
    subj: NP
    verb: str
    obj: NP


class Language:
    """One realisation of the latent world: vocabulary, word order, adjective position."""

    def __init__(self, code: str, index: int, seed: int):
        self.code = code
        rng = random.Random(f"{seed}-{code}")
        concepts = [n for c in CLASSES for n in NOUNS[c]] + list(VERBS) + [a for c in CLASSES for a in ADJECTIVES[c]] \
            + list(FUNCTION)
        if code == "en":
            self.lexicon = {c: FUNCTION.get(c, c) for c in concepts}
            self.order, self.adj_after = "SVO", False
        else:
            script = langtab.get(code).script.split()[0].split("(")[0].strip()
            letters = _LETTERS.get(script) or _LETTERS["Latin"]
            if letters is not None:  # each language its own orthography: a subset of the script's letters
                cons, vows = letters
                letters = ("".join(rng.sample(cons, max(6, 2 * len(cons) // 3))), "".join(rng.sample(vows, max(2, len(vows) - 1))))
            used = set()
            self.lexicon = {}
            for c in concepts:
                w = _make_word(rng, script, letters)
                while w in used:
                    w = _make_word(rng, script, letters)
                used.add(w)
                self.lexicon[c] = w
            self.order = ("SOV", "VSO", "SVO")[index % 3]
            self.adj_after = index % 2 == 1
        self.has_det = code == "en" or index % 3 != 2

    def word(self, concept: str) -> str:
        return self.lexicon[concept]

    def np(self, np: NP, lex=None) -> list[tuple[str, str]]:
        """(word, UPOS) of a noun phrase. ``lex`` maps a concept to a word (code-switching)."""
        lex = lex or self.word
        out = [(lex("det"), "DET")] if self.has_det else []
        mods = ([(np.num, "NUM")] if np.num else []) + ([(lex(np.adj), "ADJ")] if np.adj else [])
        head = [(lex(np.noun), "NOUN")]
        out += (head + mods) if self.adj_after else (mods + head)
        return out

    def clause(self, c: Clause, lex=None, wh: str | None = None) -> list[tuple[str, str]]:
        """Words of a clause; ``wh`` = "subj" or "obj" replaces that NP by a question word."""
        lex = lex or self.word
        s = [(lex("who"), "PRON")] if wh == "subj" else self.np(c.subj, lex)
        o = [(lex("what"), "PRON")] if wh == "obj" else self.np(c.obj, lex)
        v = [(lex(c.verb), "VERB")]
        parts = {"S": s, "V": v, "O": o}
        out = [w for k in self.order for w in parts[k]]
        return out + [("?" if wh else ".", "PUNCT")]


def _make_word(rng: random.Random, script: str, letters: tuple[str, str] | None = None) -> str:
    if script in ("Han", "Han + Kana") or script.startswith("Han"):
        return "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.choice((1, 2))))
    if script == "Hangul":
        return "".join(chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(rng.choice((1, 2))))
    cons, vows = letters or _LETTERS.get(script) or _LETTERS["Latin"]
    return "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.choice((2, 2, 3))))


def text(words: list[tuple[str, str]]) -> str:
    return " ".join(w for w, _ in words)


# ---------------------------------------------------------------------- latent sampling


def sample_np(rng: random.Random, cls: str, p_mod: float = 0.5) -> NP:
    return NP(rng.choice(NOUNS[cls]), rng.choice(ADJECTIVES[cls]) if rng.random() < p_mod else None,
              rng.choice(NUMBERS) if rng.random() < 0.2 else None)


def sample_clause(rng: random.Random, p_mod: float = 0.5) -> Clause:
    verb = rng.choice(list(VERBS))
    subj_classes, obj_class = VERBS[verb]
    return Clause(sample_np(rng, rng.choice(subj_classes), p_mod), verb, sample_np(rng, obj_class, p_mod))


def noun_class(noun: str) -> str:
    return next(c for c in CLASSES if noun in NOUNS[c])


# ---------------------------------------------------------------------- tasks


def nli_pair(rng: random.Random) -> tuple[Clause, Clause, str]:
    """Premise and hypothesis clauses and the label.

    entailment: the hypothesis drops modifiers. contradiction: it swaps the subject or object
    noun (same class) or the verb (same frame). neutral: it adds a modifier the premise lacks.
    """
    p = sample_clause(rng, p_mod=0.6)
    label = rng.choice(["entailment", "neutral", "contradiction"])
    keep = lambda np: NP(np.noun, np.adj if rng.random() < 0.5 else None, np.num if rng.random() < 0.5 else None)
    h = Clause(keep(p.subj), p.verb, keep(p.obj))
    if label == "contradiction":
        what = rng.choice(["subj", "obj", "verb"])
        if what == "verb":
            frame = VERBS[p.verb]
            alts = [v for v, f in VERBS.items() if v != p.verb and f[1] == frame[1]
                    and noun_class(p.subj.noun) in f[0]]
            if alts:
                h.verb = rng.choice(alts)
            else:
                what = "obj"
        if what in ("subj", "obj"):
            np = getattr(h, what)
            np.noun = rng.choice([n for n in NOUNS[noun_class(np.noun)] if n != np.noun])
    elif label == "neutral":
        slots = [s for s in ("subj", "obj") if getattr(p, s).adj is None]
        if not slots:
            p = Clause(NP(p.subj.noun, None, p.subj.num), p.verb, p.obj)
            slots = ["subj"]
        s = rng.choice(slots)
        np = getattr(h, s)
        np.adj = rng.choice(ADJECTIVES[noun_class(np.noun)])
    return p, h, label


def mc_item(rng: random.Random, n_choices: int) -> tuple[Clause, list[NP], int]:
    """A clause whose object must be chosen: one candidate fits the verb, the others do not."""
    c = sample_clause(rng)
    obj_class = VERBS[c.verb][1]
    wrong = [k for k in CLASSES if k != obj_class]
    choices = [c.obj] + [sample_np(rng, rng.choice(wrong)) for _ in range(n_choices - 1)]
    order = list(range(n_choices))
    rng.shuffle(order)
    return c, [choices[i] for i in order], order.index(0)


def copa_item(rng: random.Random) -> tuple[Clause, Clause, Clause, int, str]:
    """Premise; two follow-ups about the premise's object noun; the plausible one is the label."""
    p = sample_clause(rng)
    obj = p.obj.noun
    cls = noun_class(obj)
    good_verbs = [v for v, f in VERBS.items() if f[1] == cls]
    bad_verbs = [v for v, f in VERBS.items() if f[1] != cls]
    subj_for = lambda v: sample_np(rng, rng.choice(VERBS[v][0]))
    gv, bv = rng.choice(good_verbs), rng.choice(bad_verbs)
    good = Clause(subj_for(gv), gv, NP(obj))
    bad = Clause(subj_for(bv), bv, NP(obj))
    label = rng.randrange(2)
    c1, c2 = (good, bad) if label == 0 else (bad, good)
    return p, c1, c2, label, rng.choice(["cause", "effect"])


# ---------------------------------------------------------------------- writers


def _atomic_write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(content)
    apply_umask(tmp)  # mkstemp creates 0600; the world is shared like any result
    os.replace(tmp, path)


def _squad_article(lang: Language, rng: random.Random, n_par: int, title: str, qid: str) -> dict:
    paragraphs = []
    for p in range(n_par):
        clauses = [sample_clause(rng) for _ in range(3)]
        # distinct subjects and objects keep every question's answer unique in its paragraph
        while len({c.subj.noun for c in clauses}) < 3 or len({c.obj.noun for c in clauses}) < 3:
            clauses = [sample_clause(rng) for _ in range(3)]
        sents = [lang.clause(c) for c in clauses]
        context, starts = "", []
        for s in sents:
            starts.append(len(context) + (1 if context else 0))
            context = (context + " " if context else "") + text(s)
        qas = []
        for i, c in enumerate(clauses):
            wh = rng.choice(["subj", "obj"])
            np_words = lang.np(c.subj if wh == "subj" else c.obj)
            answer = text(np_words)
            sent_text = text(sents[i])
            off = sent_text.find(answer)
            assert off >= 0
            question = text(lang.clause(c, wh=wh))
            qas.append({"id": f"{qid}-{p}-{i}", "question": question,
                        "answers": [{"text": answer, "answer_start": starts[i] + off}]})
        paragraphs.append({"context": context, "qas": qas})
    return {"title": title, "paragraphs": paragraphs}


def _conllu(sentences: list[list[tuple[str, str]]], prefix: str) -> str:
    out = []
    for i, s in enumerate(sentences):
        out.append(f"# sent_id = {prefix}-{i + 1}")
        out.append(f"# text = {text(s)}")
        for j, (w, t) in enumerate(s, 1):
            out.append(f"{j}\t{w}\t_\t{t}\t_\t_\t0\t{'root' if j == 1 else 'dep'}\t_\t_")
        out.append("")
    return "\n".join(out) + "\n"


def generate(root: str | Path, languages: list[str], seed: int, n_train: int = 2000, n_dev: int = 200,
             n_test: int = 300, n_corpus: int = 8000, code_switch: float = 0.5) -> dict:
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
    corpus = {c: [] for c in languages}
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
        _atomic_write(tmp / "corpus" / f"{c}.txt", "\n".join(sents) + "\n")
    _atomic_write(tmp / "corpus" / "mixed.txt", "\n".join(mixed) + "\n")

    # NLI: MNLI (English train/dev, GLUE tsv) and XNLI (every language, XTREME tsv, labelled)
    header = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
              "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
    for split, fname, n in (("train", "train.tsv", n_train), ("dev", "dev_matched.tsv", n_dev)):
        rows = ["\t".join(header)]
        for i in range(n):
            p, h, label = nli_pair(rng)
            s1, s2 = text(en.clause(p)), text(en.clause(h))
            rows.append("\t".join([str(i), str(i), f"{i}{label[0]}", "smoke", f"( {s1} )", f"( {s2} )",
                                   f"(ROOT {s1})", f"(ROOT {s2})", s1, s2, label, label]))
        _atomic_write(tmp / "mnli" / fname, "\n".join(rows) + "\n")
    for c in languages:
        for split, n in (("dev", n_dev), ("test", n_test)):
            rows = []
            for _ in range(n):
                p, h, label = nli_pair(rng)
                rows.append(f"{text(langs[c].clause(p))}\t{text(langs[c].clause(h))}\t{label}")
            _atomic_write(tmp / "xnli" / f"{split}-{c}.tsv", "\r\n".join(rows) + "\r\n")  # CRLF, as XTREME's

    # HellaSwag (intermediate, English, 4-way): context = subject + verb, endings = objects
    for split, fname, n in (("train", "hellaswag_train.jsonl", n_train), ("dev", "hellaswag_val.jsonl", n_dev)):
        rows = []
        for i in range(n):
            c, choices, label = mc_item(rng, 4)
            ctx = text(en.np(c.subj) + [(en.word(c.verb), "VERB")])
            endings = [text(en.np(np)) + " ." for np in choices]
            rows.append(json.dumps({"ind": i, "activity_label": "smoke", "ctx_a": ctx, "ctx_b": "", "ctx": ctx,
                                    "split": "train" if split == "train" else "val", "split_type": "indomain",
                                    "label": label, "endings": endings, "source_id": f"smoke~{i}"}))
        _atomic_write(tmp / "hellaswag" / fname, "\n".join(rows) + "\n")

    # COPA (English train/val, XTREME layout) and XCOPA (every language, original layout)
    def copa_rows(lang, n):
        rows = []
        for i in range(n):
            p, c1, c2, label, q = copa_item(rng)
            rows.append(json.dumps({"premise": text(lang.clause(p)), "choice1": text(lang.clause(c1)),
                                    "choice2": text(lang.clause(c2)), "question": q, "label": label, "idx": i},
                                   ensure_ascii=False))
        return rows
    _atomic_write(tmp / "copa" / "train-en.jsonl", "\n".join(copa_rows(en, n_train)) + "\n")
    _atomic_write(tmp / "copa" / "val-en.jsonl", "\n".join(copa_rows(en, n_dev)) + "\n")
    for c in languages:
        for split, n in (("val", n_dev), ("test", n_test)):
            _atomic_write(tmp / "xcopa" / "data" / c / f"{split}.{c}.jsonl",
                          "\r\n".join(copa_rows(langs[c], n)) + "\r\n")  # CRLF, as XCOPA's

    # SQuAD v1.1 (English) and XQuAD (every language)
    def squad_file(lang, n_questions, tag):
        n_par = max(1, n_questions // 3)
        arts = [_squad_article(lang, rng, min(10, n_par - a * 10), f"smoke-{tag}-{a}", f"{tag}{a}")
                for a in range((n_par + 9) // 10)]
        return json.dumps({"version": "1.1", "data": arts}, ensure_ascii=False)
    _atomic_write(tmp / "squad" / "train-v1.1.json", squad_file(en, n_train, "train"))
    _atomic_write(tmp / "squad" / "dev-v1.1.json", squad_file(en, n_dev, "dev"))
    for c in languages:
        _atomic_write(tmp / "xquad" / f"xquad.{c}.json", squad_file(langs[c], n_test, f"x{c}"))

    # UD-POS (CoNLL-U, UD folder names from the language table)
    for c in languages:
        L = langtab.get(c)
        if L.ud_name is None:
            continue
        splits = (("train", n_train), ("dev", n_dev), ("test", n_test)) if c == "en" else (("dev", n_dev), ("test", n_test))
        for split, n in splits:
            sents = [langs[c].clause(sample_clause(rng)) for _ in range(n)]
            _atomic_write(tmp / "udpos" / f"UD_{L.ud_name}-SMOKE" / f"{c}_smoke-ud-{split}.conllu",
                          _conllu(sents, f"{c}-{split}"))

    # Tatoeba (LASER layout): the same clause in English and in the other language
    for c in others:
        code = langtab.get(c).tatoeba_code
        if code is None:
            continue
        clauses = [sample_clause(rng) for _ in range(n_test)]
        _atomic_write(tmp / "tatoeba" / f"tatoeba.{code}-eng.{code}", "\n".join(text(langs[c].clause(x)) for x in clauses) + "\n")
        _atomic_write(tmp / "tatoeba" / f"tatoeba.{code}-eng.eng", "\n".join(text(en.clause(x)) for x in clauses) + "\n")

    # BUCC 2018 (XTREME layout): comparable corpora, a third of the sentences translated
    for c in others:
        if "BUCC" not in langtab.get(c).xtreme_tasks:
            continue
        for split, n in (("dev", n_dev), ("test", n_test)):
            clauses = [sample_clause(rng) for _ in range(n)]
            pairs = rng.sample(range(n), n // 3)
            src = [(f"{c}-{split}-{i:06d}", text(langs[c].clause(cl))) for i, cl in enumerate(clauses)]
            eng = [(f"en-{split}-{i:06d}", text(en.clause(sample_clause(rng) if i not in pairs else clauses[i])))
                   for i in range(n)]
            order = list(range(n))
            rng.shuffle(order)  # the English side is not in the same order
            eng = [eng[i] for i in order]
            gold = sorted((f"{c}-{split}-{i:06d}", f"en-{split}-{i:06d}") for i in pairs)
            base = tmp / "bucc2018" / f"{c}-en.{split}"
            _atomic_write(base.with_name(base.name + f".{c}"), "".join(f"{i}\t{t}\n" for i, t in src))
            _atomic_write(base.with_name(base.name + ".en"), "".join(f"{i}\t{t}\n" for i, t in eng))
            _atomic_write(base.with_name(base.name + ".gold"), "".join(f"{a}\t{b}\n" for a, b in gold))

    from xlrepro.smoke import world_tasks  # PAWS-X, PAN-X, MLQA, TyDiQA, Social IQa, withheld test labels
    world_tasks.generate(tmp, langs, seed, n_train, n_dev, n_test)
    from xlrepro.smoke.world_retrieval import generate_retrieval  # LAReQA, Mewsli-X (own RNG)
    generate_retrieval(tmp, langs, seed, n_train, n_dev, n_test)

    manifest = {"seed": seed, "world_version": WORLD_VERSION, "languages": languages,
                "word_order": {c: {"order": l.order, "adjective_after_noun": l.adj_after, "determiner": l.has_det}
                               for c, l in langs.items()},
                "sizes": {"train": n_train, "dev": n_dev, "test": n_test, "corpus": n_corpus},
                "code_switch": code_switch}
    _atomic_write(tmp / "WORLD.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    apply_umask(tmp)  # mkdtemp creates 0700
    if root.exists():
        shutil.rmtree(root)
    os.replace(tmp, root)
    return manifest
