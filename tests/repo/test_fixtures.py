"""The shipped synthetic samples (tests/fixtures/data-samples) stand in for the real ones.

A clone without ../shared beside it must run every reader test on them, skipping nothing; and the
tool that wrote them must keep structure, offsets and labels while replacing the prose.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SAMPLE_TESTS = [
    "tests/data/test_readers_foundation.py",
    "tests/data/test_readers_intermediate.py",
    "tests/data/test_readers_xtreme.py",
    "tests/test_submission.py",
    "tests/metrics/test_metrics_qa.py",
]


def test_reader_tests_pass_on_the_shipped_fixtures_with_no_skip(tmp_path):
    env = {
        **os.environ,
        "XLREPRO_SAMPLES": "fixtures",
        "XLREPRO_SHARED": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *SAMPLE_TESTS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = r.stdout.strip().splitlines()[-1]
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary
    assert int(re.search(r"(\d+) passed", summary).group(1)) >= 200, summary


def test_the_conftest_falls_back_to_the_fixtures(tmp_path):
    code = "import conftest; print(conftest.find_samples())"
    env = {k: v for k, v in os.environ.items() if k not in ("XLREPRO_SAMPLES", "XLREPRO_SHARED")}
    forced = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO / "tests",
        capture_output=True,
        text=True,
        env={**env, "XLREPRO_SAMPLES": "fixtures"},
        check=True,
    ).stdout.strip()
    assert Path(forced) == FIXTURES / "data-samples"
    named = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO / "tests",
        capture_output=True,
        text=True,
        env={**env, "XLREPRO_SAMPLES": str(tmp_path)},
        check=True,
    ).stdout.strip()
    assert Path(named) == tmp_path
    for d in ("xquad", "mlqa", "udpos", "tatoeba", "bucc2018", "xquad-r", "mewsli-x", "cosmosqa"):
        assert (FIXTURES / "data-samples" / d).is_dir(), d


def _tool():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_make_fixtures_keeps_structure_and_replaces_prose(tmp_path, monkeypatch):
    tool = _tool()
    src = tmp_path / "src"
    ctx = "The quick brown fox jumps over the lazy dog near Helsinki. Второе предложение здесь."
    squad = {
        "version": "1.1",
        "data": [
            {
                "title": "Foxes",
                "paragraphs": [
                    {
                        "context": ctx,
                        "qas": [
                            {
                                "id": "q1",
                                "question": "What does the fox jump over?",
                                "answers": [{"text": "the lazy dog", "answer_start": 31}],
                            },
                            {"id": "q2", "question": "Where?", "answers": [{"text": "Helsinki", "answer_start": 49}]},
                        ],
                    }
                ],
            }
        ],
    }
    (src / "squad").mkdir(parents=True)
    (src / "squad" / "dev-v1.1.json").write_text(json.dumps(squad, indent=4), encoding="utf-8")
    (src / "xnli").mkdir()
    (src / "xnli" / "dev-en.tsv").write_bytes(b"A man sleeps.\tA person rests.\tentailment\r\n")
    (src / "udpos").mkdir()
    (src / "udpos" / "x-ud-dev.conllu").write_text(
        "# text = Del sol\n1-2\tDel\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "1\tDe\tde\tADP\t_\t_\t3\tcase\t_\t_\n"
        "2\tel\tel\tDET\t_\t_\t3\tdet\t_\t_\n"
        "3\tsol\tsol\tNOUN\t_\t_\t0\troot\t_\t_\n\n",
        encoding="utf-8",
    )
    (src / "SOURCE.md").write_text("not copied")
    out = tmp_path / "out"
    monkeypatch.setattr(tool, "OUT", out)
    assert tool.main([str(src)]) == 0
    assert not (out / "SOURCE.md").exists() and not out.with_name("out.tmp").exists()

    got = json.loads((out / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    par = got["data"][0]["paragraphs"][0]
    new = par["context"]
    assert len(new) == len(ctx) and new != ctx
    assert re.sub(r"\w", "x", new) == re.sub(r"\w", "x", ctx)  # same shape: spaces, punctuation
    assert "Helsinki" in new  # a string the tests quote stays
    for qa, old_qa in zip(par["qas"], squad["data"][0]["paragraphs"][0]["qas"]):
        a = qa["answers"][0]
        assert qa["id"] == old_qa["id"] and a["answer_start"] == old_qa["answers"][0]["answer_start"]
        assert new[a["answer_start"] : a["answer_start"] + len(a["text"])] == a["text"]  # still a span
        assert qa["question"] != old_qa["question"] and len(qa["question"]) == len(old_qa["question"])
    assert "fox" not in new and "lazy" not in new and "Второе" not in new
    assert all("\u0400" <= c <= "\u04ff" for c in new.split(". ")[1].replace(" ", "").rstrip("."))  # same script

    tsv = (out / "xnli" / "dev-en.tsv").read_bytes().decode()
    a, b, label = tsv.rstrip("\r\n").split("\t")
    assert tsv.endswith("\r\n") and label == "entailment" and a != "A man sleeps." and len(a) == len("A man sleeps.")

    rows = [line.split("\t") for line in (out / "udpos" / "x-ud-dev.conllu").read_text().splitlines() if "\t" in line]
    assert [r[0] for r in rows] == ["1-2", "1", "2", "3"] and [r[3] for r in rows[1:]] == ["ADP", "DET", "NOUN"]
    assert [len(r[1]) for r in rows] == [3, 2, 2, 3] and rows[0][1] != "Del"
