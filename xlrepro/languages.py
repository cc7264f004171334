"""The one language table of xlrepro (``xlrepro/data/languages.tsv``).

Primary key: the ISO 639-1 code that XTREME file names and ``evaluate.py`` use. Every upstream
naming is derived from the table: ISO 639-3, Tatoeba/LASER three-letter codes, UD language
names (UD treebank folders ``UD_<ud_name>-*`` and ``google/xtreme`` ``udpos.<ud_name>``
configs). Task language lists come from the ``xtreme_tasks`` / ``xtreme_r_tasks`` columns.
No other module hard-codes a list of languages.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
from dataclasses import dataclass
from typing import Any

from xlrepro.errors import did_you_mean


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1 (XTREME's key)
    iso639_3: str
    tatoeba_code: str | None
    name: str
    ud_name: str | None
    in_xtreme: bool
    in_xtreme_r: bool
    script: str
    family: str
    joshi_class: int
    in_xlmr_pretraining: bool
    cc100_gib: float | None
    xtreme_tasks: tuple[str, ...]
    xtreme_r_tasks: tuple[str, ...]
    confidence: str

    @property
    def resource_group(self) -> str:
        """The scaling study's grouping: English; unseen by XLM-R (not in its CC-100 pre-training,
        Conneau et al. 2020, arXiv 1911.02116); then Joshi et al. 2020 (arXiv 2004.09095) class
        <= 2, 3, >= 4 (docs/scaling-study.md)."""
        if self.code == "en":
            return "source"
        if not self.in_xlmr_pretraining:
            return "unseen"
        if self.joshi_class <= 2:
            return "under-resourced"
        if self.joshi_class == 3:
            return "mid"
        return "high"

    def template_fields(self) -> dict[str, str]:
        """The placeholders that file and Hub-config templates may use for this language."""
        return {
            "lang": self.code,
            "iso639_3": self.iso639_3,
            "tatoeba": self.tatoeba_code or "",
            "ud": self.ud_name or "",
            "name_lower": self.name.lower(),
        }

    def naming(self, scheme: str) -> str:
        """The language's name in an upstream naming scheme (used by task source templates)."""
        value: Any = {
            "iso639_1": self.code,
            "iso639_3": self.iso639_3,
            "tatoeba": self.tatoeba_code,
            "ud": self.ud_name,
            "name": self.name,
        }.get(scheme, KeyError)
        if value is KeyError:
            raise KeyError(f"unknown naming scheme {scheme!r}; known: iso639_1, iso639_3, tatoeba, ud, name")
        if value is None:
            raise KeyError(f"language {self.code} has no {scheme} name")
        return value


def _opt(v: str) -> str | None:
    return None if v in ("-", "") else v


def _tasks(v: str) -> tuple[str, ...]:
    v = v.replace("(source)", "").strip()
    return tuple(t.strip() for t in v.split(",") if t.strip() and t.strip() != "-")


@functools.lru_cache(maxsize=1)
def table() -> dict[str, Language]:
    text = importlib.resources.files("xlrepro").joinpath("data/languages.tsv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    out = {}
    for r in rows:
        lang = Language(
            code=r["iso639_1"],
            iso639_3=r["iso639_3"],
            tatoeba_code=_opt(r["tatoeba_code"]),
            name=r["name"],
            ud_name=_opt(r["ud_name"]),
            in_xtreme=r["in_xtreme"] == "yes",
            in_xtreme_r=r["in_xtreme_r"] == "yes",
            script=r["script"],
            family=r["family"],
            joshi_class=int(r["joshi_class"]),
            in_xlmr_pretraining=r["in_xlmr_pretraining"] == "yes",
            cc100_gib=float(r["cc100_gib"]) if _opt(r["cc100_gib"]) else None,
            xtreme_tasks=_tasks(r["xtreme_tasks"]),
            xtreme_r_tasks=_tasks(r["xtreme_r_tasks"]),
            confidence=r["confidence"],
        )
        out[lang.code] = lang
    return out


def get(code: str) -> Language:
    t = table()
    if code not in t:
        raise KeyError(f"unknown language {code!r}{did_you_mean(code, t)}")
    return t[code]


def languages_for(column_label: str, benchmark: str) -> list[str]:
    """ISO codes evaluated by a task in a benchmark, in table order.

    ``column_label`` is the task's label in the table (e.g. "XNLI", "POS", "Tatoeba");
    ``benchmark`` is "xtreme" or "xtreme_r".
    """
    if benchmark not in ("xtreme", "xtreme_r"):
        raise ValueError(f"benchmark must be 'xtreme' or 'xtreme_r', got {benchmark!r}")
    attr = "xtreme_tasks" if benchmark == "xtreme" else "xtreme_r_tasks"
    return [c for c, l in table().items() if column_label in getattr(l, attr)]


def by_code(code: str, scheme: str) -> Language:
    """Reverse lookup: the language whose ``scheme`` name is ``code`` (e.g. tatoeba 'cmn' -> zh)."""
    for lang in table().values():
        try:
            if lang.naming(scheme) == code:
                return lang
        except KeyError:
            continue
    raise KeyError(f"no language has {scheme} name {code!r}")
