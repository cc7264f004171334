from collections import Counter

import pytest

from xlrepro import languages as L


def test_table_has_the_50_languages_with_upstream_names():
    t = L.table()
    assert len(t) == 50
    assert sum(l.in_xtreme for l in t.values()) == 40
    assert all(l.in_xtreme_r for l in t.values())
    assert L.get("zh").naming("tatoeba") == "cmn" and L.get("sw").naming("tatoeba") == "swh"
    assert L.get("fa").naming("tatoeba") == "pes"
    assert L.by_code("cmn", "tatoeba").code == "zh"
    assert L.get("el").naming("ud") == "Greek"
    with pytest.raises(KeyError, match="no tatoeba name"):
        L.get("yo").naming("tatoeba")
    with pytest.raises(KeyError, match="did you mean 'zh'"):
        L.get("zhh")


def test_resource_groups_match_the_notes():
    groups = Counter(l.resource_group for l in L.table().values())
    assert groups == {"source": 1, "high": 19, "mid": 17, "under-resourced": 9, "unseen": 4}
    assert sorted(c for c, l in L.table().items() if l.resource_group == "unseen") == ["ht", "qu", "wo", "yo"]


@pytest.mark.parametrize(
    "label,bench,n",
    [
        ("XNLI", "xtreme", 15),
        ("PAWS-X", "xtreme", 7),
        ("POS", "xtreme", 33),
        ("NER", "xtreme", 40),
        ("XQuAD", "xtreme", 11),
        ("MLQA", "xtreme", 7),
        ("TyDiQA", "xtreme", 9),
        ("BUCC", "xtreme", 4),
        ("Tatoeba", "xtreme", 36),
        ("POS", "xtreme_r", 38),
        ("NER", "xtreme_r", 48),
        ("Tatoeba", "xtreme_r", 41),
        ("XCOPA", "xtreme_r", 11),
        ("XQuAD", "xtreme_r", 12),
        ("Mewsli-X", "xtreme_r", 11),
        ("LAReQA", "xtreme_r", 11),
    ],
)
def test_task_language_counts(label, bench, n):
    assert len(L.languages_for(label, bench)) == n
    assert ("en" in L.languages_for(label, bench)) == (label not in ("Tatoeba", "BUCC", "XCOPA"))
