"""The smoke world's latent grammar: nouns in four classes, verbs and adjectives that select
their nouns' class, numbers; each language's realisation of it (``Language``: vocabulary, word
order, determiner); samplers of clauses and task items; and the atomic file writer the task
generators share. ``world.generate`` writes the world from these (see ``world.py``)."""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from xlrepro import languages as langtab
from xlrepro.fsmode import apply_umask

CLASSES = ("person", "animal", "food", "tool")
NOUNS = {
    "person": ["doctor", "teacher", "farmer", "child", "woman", "man", "king", "sailor", "baker", "singer"],
    "animal": ["dog", "cat", "horse", "bird", "fish", "goat", "mouse", "lion", "cow", "bear"],
    "food": ["apple", "bread", "rice", "cake", "soup", "egg", "cheese", "plum", "bean", "pear"],
    "tool": ["knife", "hammer", "rope", "cup", "pen", "box", "key", "lamp", "spoon", "bag"],
}
# verb -> (subject classes, object class)
VERBS = {
    "eats": (("person", "animal"), "food"),
    "cooks": (("person",), "food"),
    "buys": (("person",), "food"),
    "bakes": (("person",), "food"),
    "smells": (("animal",), "food"),
    "sells": (("person",), "tool"),
    "uses": (("person",), "tool"),
    "holds": (("person",), "tool"),
    "drops": (("person",), "tool"),
    "finds": (("person", "animal"), "tool"),
    "carries": (("person", "animal"), "tool"),
    "sees": (("person", "animal"), "animal"),
    "chases": (("animal",), "animal"),
    "feeds": (("person",), "animal"),
    "washes": (("person",), "animal"),
    "catches": (("person", "animal"), "animal"),
}
ADJECTIVES = {
    "person": ["tall", "old", "young"],
    "animal": ["wild", "small", "brown"],
    "food": ["fresh", "sweet", "hot"],
    "tool": ["heavy", "sharp", "new"],
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
        concepts = (
            [n for c in CLASSES for n in NOUNS[c]]
            + list(VERBS)
            + [a for c in CLASSES for a in ADJECTIVES[c]]
            + list(FUNCTION)
        )
        if code == "en":
            self.lexicon = {c: FUNCTION.get(c, c) for c in concepts}
            self.order, self.adj_after = "SVO", False
        else:
            script = langtab.get(code).script.split()[0].split("(")[0].strip()
            letters = _LETTERS.get(script) or _LETTERS["Latin"]
            if letters is not None:  # each language its own orthography: a subset of the script's letters
                cons, vows = letters
                letters = (
                    "".join(rng.sample(cons, max(6, 2 * len(cons) // 3))),
                    "".join(rng.sample(vows, max(2, len(vows) - 1))),
                )
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
    pair = letters or _LETTERS.get(script) or _LETTERS["Latin"]
    assert pair is not None  # Latin has letters
    cons, vows = pair
    return "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.choice((2, 2, 3))))


def text(words: list[tuple[str, str]]) -> str:
    return " ".join(w for w, _ in words)


# ---------------------------------------------------------------------- latent sampling


def sample_np(rng: random.Random, cls: str, p_mod: float = 0.5) -> NP:
    return NP(
        rng.choice(NOUNS[cls]),
        rng.choice(ADJECTIVES[cls]) if rng.random() < p_mod else None,
        rng.choice(NUMBERS) if rng.random() < 0.2 else None,
    )


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
            alts = [v for v, f in VERBS.items() if v != p.verb and f[1] == frame[1] and noun_class(p.subj.noun) in f[0]]
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


def atomic_write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(content)
    apply_umask(tmp)  # mkstemp creates 0600; the world is shared like any result
    os.replace(tmp, path)


def squad_article(lang: Language, rng: random.Random, n_par: int, title: str, qid: str) -> dict:
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
            qas.append(
                {
                    "id": f"{qid}-{p}-{i}",
                    "question": question,
                    "answers": [{"text": answer, "answer_start": starts[i] + off}],
                }
            )
        paragraphs.append({"context": context, "qas": qas})
    return {"title": title, "paragraphs": paragraphs}
