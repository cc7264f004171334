"""Language sets per benchmark: an XTREME recipe evaluates XTREME's languages, an XTREME-R recipe
XTREME-R's, and a paper comparison averages over exactly the paper's set, naming what is missing."""

from __future__ import annotations

import pytest

from xlrepro.config import load_config
from xlrepro.paper import paper_languages
from xlrepro.phases import Context
from xlrepro.study.report import _paper_comparison
from xlrepro.study.spec import load_spec
from xlrepro.tasks import get_task

# (task, split): (XTREME, XTREME-R) language counts, from the benchmarks' papers and download scripts
COUNTS = {
    ("panx", "test"): (40, 48),
    ("udpos", "test"): (33, 38),
    ("tatoeba", "test"): (36, 41),
    ("xquad", "test"): (11, 12),
    ("xnli", "test"): (15, 15),
    ("mlqa", "test"): (7, 7),
}


@pytest.mark.parametrize("bench, i", [("xtreme", 0), ("xtreme_r", 1)])
def test_a_recipe_evaluates_its_benchmarks_languages(tmp_path, bench, i):
    cfg = load_config("xstilts-squad", [f"retrieval.benchmark={bench}"])
    exp = Context(cfg, tmp_path)
    for (task, split), n in COUNTS.items():
        langs = exp.eval_languages(task, split)
        assert len(langs) == n[i], (task, bench, langs)
    assert ("ro" in exp.eval_languages("xquad", "test")) == (bench == "xtreme_r")
    # a task of one benchmark only keeps its own set in the other benchmark's recipe
    assert len(exp.eval_languages("xcopa", "test")) == 11
    assert len(exp.eval_languages("pawsx", "test")) == 7


def test_data_languages_still_restricts(tmp_path):
    cfg = load_config("xstilts-squad", ["data.languages=[de, ro]", "retrieval.benchmark=xtreme_r"])
    assert Context(cfg, tmp_path).eval_languages("xquad", "test") == ["de", "ro"]


def _rec(task, lang, value, metric="f1"):
    return {
        "task": task,
        "variant": "baseline",
        "split": "test",
        "metric": metric,
        "value": value,
        "seed": 1,
        "language": lang,
        "phase": "target",
    }


def test_paper_comparison_averages_over_exactly_the_papers_languages():
    spec = load_spec("xstilts-submission")
    xtreme = paper_languages("xtreme", "xquad", "test")
    assert len(xtreme) == 11 and "ro" not in xtreme
    recs = [_rec("xquad", l, 80.0) for l in xtreme] + [_rec("xquad", "ro", 0.0)]  # ro: XTREME-R only
    recs += [_rec("xquad", l, 60.0, "exact_match") for l in xtreme]
    table = next(t for t in _paper_comparison(recs, spec, {}) if t["id"] == "xtreme_test")
    row = next(r for r in table["rows"] if r["system"] == "xlmr_large" and r["task"] == "xquad" and r["metric"] == "f1")
    assert row["ours"] == pytest.approx(80.0)  # the XTREME-R-only language is not averaged in
    assert not row.get("missing_languages")


def test_paper_comparison_names_missing_languages():
    spec = load_spec("xstilts-submission")
    xtreme = paper_languages("xtreme", "xquad", "test")
    recs = [_rec("xquad", l, 80.0) for l in xtreme if l not in ("de", "th")]
    table = next(t for t in _paper_comparison(recs, spec, {}) if t["id"] == "xtreme_test")
    row = next(r for r in table["rows"] if r["system"] == "xlmr_large" and r["task"] == "xquad" and r["metric"] == "f1")
    assert row["missing_languages"] == ["de", "th"]
    assert "ours lacks 2 of the paper's languages: de, th" in row["note"]


def test_paper_languages_of_the_xtreme_r_table_and_of_unrestricted_tables():
    assert paper_languages("xtreme_r", "panx", "test") == get_task("panx").split_languages("test", "xtreme_r")
    assert paper_languages(None, "panx", "test") is None  # a table without a benchmark (smoke orientation)
    assert paper_languages("xtreme", "xtreme_score", "test") is None
