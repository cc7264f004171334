"""The preflight (``xlrepro check``, run first by ``train``/``reproduce``): every problem at once,
one ``xlrepro: error:`` line each, exit 2, nothing trained; withheld labels are a loud warning."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, assert_names  # noqa: E402

from xlrepro import check
from xlrepro.config import load_config
from xlrepro.data.types import ClassificationExample, ReadResult, SpanQAExample, TaggingExample
from xlrepro.errors import DataFormatError
from xlrepro.tasks import get_task


def xlrepro(*args, cwd=None):
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "XLREPRO_PROGRESS": "0"}
    return subprocess.run(
        [sys.executable, "-m", "xlrepro", *args], capture_output=True, text=True, env=env, cwd=cwd or REPO, timeout=300
    )


# =========================================================================== labelled or withheld


def _res(examples, name="f.tsv"):
    return ReadResult(examples, {name: "0" * 64})


def test_label_status_scores_errors_or_warns():
    xnli, panx = get_task("xnli"), get_task("panx")
    lab = [ClassificationExample("a", "x", "y", "neutral")]
    unl = [ClassificationExample("a", "x", "y", None), ClassificationExample("b", "x", "y", None)]
    assert check.label_status(xnli, "dev", "de", _res(lab)) is True
    with pytest.raises(DataFormatError, match="2 of 2 examples have no label") as e:  # dev is labelled
        check.label_status(xnli, "dev", "de", _res(unl, "/d/dev-de.tsv"))
    assert_names(e.value, "/d/dev-de.tsv", field="label")
    assert check.label_status(xnli, "test", "de", _res(unl)) is False  # XTREME withholds XNLI test labels
    assert "NOT scored" in check.withheld_warning("xnli", "test", "de", _res(unl))
    with pytest.raises(DataFormatError, match="no examples"):
        check.label_status(panx, "test", "sw", _res([], "/d/test-sw.tsv"))
    # SQuAD v2.0's "no answer" questions are labelled; a blanked TyDiQA answer is not
    assert check.example_has_label(SpanQAExample("q", "?", "c", [], is_impossible=True))
    assert not check.example_has_label(SpanQAExample("q", "?", "c", []))
    assert not check.example_has_label(TaggingExample("s", ["w"], None))


class _Run:
    def __init__(self):
        self.events = []

    def log(self, ev):
        self.events.append(ev)


def test_pipeline_warns_and_reports_withheld_splits(caplog):
    from xlrepro.phases.target import labelled
    from xlrepro.report import withheld_section

    run, withheld = _Run(), []
    unl = _res([TaggingExample("s", ["w"], None)], "/d/test-sw.tsv")
    with caplog.at_level("WARNING", logger="xlrepro"):
        assert labelled(run, get_task("panx"), "test", "sw", unl, withheld) is False
    assert "labels withheld" in caplog.text and "/d/test-sw.tsv" in caplog.text
    assert run.events[0]["event"] == "unlabelled" and withheld[0]["task"] == "panx"
    section = "\n".join(withheld_section(withheld))
    assert "Not scored: labels withheld" in section and "panx test sw" in section
    with pytest.raises(DataFormatError):  # PAN-X dev is labelled: never a silent export
        labelled(run, get_task("panx"), "dev", "sw", unl, withheld)


# =========================================================================== what a run reads


def test_planned_reads_cover_every_phase():
    cfg = load_config("xstilts-squad")
    reads = {(r.task, r.split, r.lang, r.purpose) for r in check.planned_reads(cfg)}
    for want in [
        ("squad", "train", "en", "train"),
        ("squad", "dev", "en", "dev"),
        ("mnli", "train", "en", "train"),
        ("xnli", "test", "sw", "eval"),
        ("tydiqa", "test", "te", "eval"),
        ("bucc2018", "dev", "de", "eval"),
        ("bucc2018", "test", "zh", "eval"),
        ("tatoeba", "test", "jv", "eval"),
        ("udpos", "dev", "mr", "eval"),
    ]:
        assert want in reads, want
    cfg = load_config("xstilts-squad", ["data.languages=[de]", "retrieval.tasks=[]"])
    assert {r.lang for r in check.planned_reads(cfg) if r.purpose == "eval"} == {"de"}


# =========================================================================== the command


@pytest.fixture(scope="module")
def world(tmp_path_factory, samples):
    """Real-format files of XNLI (trained on MNLI) in their layouts, a tokenizer and a model config."""
    root = tmp_path_factory.mktemp("world")
    glue = samples / "mnli" / "hf_dummy_data" / "glue" / "MNLI"
    (root / "data" / "mnli").mkdir(parents=True)
    for f in ("train.tsv", "dev_matched.tsv"):
        shutil.copy(glue / f, root / "data" / "mnli" / f)
    (root / "data" / "xnli").mkdir()
    for split in ("dev", "test"):
        for lang in ("en", "de"):
            shutil.copy(samples / "xnli" / "xtreme_processed" / f"{split}-{lang}.tsv", root / "data" / "xnli")
    from transformers import XLMRobertaConfig

    from xlrepro.smoke.tokenizer import build_tokenizer

    corpus = root / "corpus.txt"
    corpus.write_text(
        "\n".join(
            l for l in (samples / "xnli" / "xtreme_processed" / "dev-en.tsv").read_text(encoding="utf-8").splitlines()
        ),
        encoding="utf-8",
    )
    build_tokenizer([corpus], 300, root / "model")
    XLMRobertaConfig(
        vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    ).save_pretrained(root / "model")
    cfg = {
        "name": "checkme",
        "seed": 1,
        "model": {"name_or_path": str(root / "model")},
        "data": {"root": str(root / "data"), "languages": ["en", "de"]},
        "target": {"tasks": ["xnli"], "train": {"max_steps": 1}},
    }
    (root / "ok.yaml").write_text(json.dumps(cfg))
    return root


def test_check_passes_and_warns_about_withheld_test_labels(world):
    r = xlrepro("check", str(world / "ok.yaml"), "--out", str(world / "out"))
    assert r.returncode == 0, r.stderr
    assert "ready" in r.stdout and "split(s) read and validated" in r.stdout
    # XTREME's XNLI test files have no labels: allowed by the registry, and said loudly
    assert "xlrepro: WARNING: xnli test de: labels withheld" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_lists_every_problem_at_once(world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    dev = data / "xnli" / "dev-de.tsv"  # the label column dropped: the labelled dev split would become an export
    dev.write_text(
        "".join("\t".join(l.split("\t")[:2]) + "\n" for l in dev.read_text(encoding="utf-8").splitlines()),
        encoding="utf-8",
    )
    (data / "mnli" / "dev_matched.tsv").write_text("", encoding="utf-8")  # empty English dev
    r = xlrepro(
        "check",
        str(world / "ok.yaml"),
        f"data.root={data}",
        "model.name_or_path=/nonexistent/model",
        "data.languages=[en,de,trr]",
        "--out",
        str(tmp_path / "out"),
    )
    assert r.returncode == 2
    errors = [l for l in r.stderr.splitlines() if l.startswith("xlrepro: error: ")]
    text = "\n".join(errors)
    assert "Traceback" not in r.stderr
    assert f"{dev}, field 'label'" in text and "have no label" in text
    assert "dev_matched.tsv" in text and "mnli dev en" in text
    assert "model.name_or_path" in text and "/nonexistent/model" in text
    assert "data.languages" in text and "'trr'" in text
    assert len(errors) >= 4


def test_train_runs_the_preflight_first(world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    (data / "xnli" / "test-de.tsv").write_bytes(b"")  # an empty evaluation file
    out = tmp_path / "out"
    r = xlrepro("train", str(world / "ok.yaml"), f"data.root={data}", "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert "xnli test de (eval)" in r.stderr and "no examples" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "runs").exists() and not any(out.glob("**/checkpoint*"))  # nothing trained


def test_language_filter_that_selects_nothing(world):
    r = xlrepro("check", str(world / "ok.yaml"), "data.languages=[trr]")
    assert r.returncode == 2
    assert "data.languages" in r.stderr and "xnli" in r.stderr and "Traceback" not in r.stderr


def test_engine_import_and_disk_room(world, monkeypatch):
    import importlib

    cfg = load_config(str(world / "ok.yaml"), ["target.train.engine=deepspeed", "target.train.deepspeed=zero2"])
    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "deepspeed":
            raise ModuleNotFoundError("No module named 'deepspeed'")
        return real(name, *a, **k)

    monkeypatch.setattr(check.importlib, "import_module", fake)
    monkeypatch.setattr(check.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    pf = check.preflight(cfg, world / "out")
    text = "\n".join(pf.problems)
    assert "target.train.engine: the package 'deepspeed' does not import" in text
    assert "disk:" in text and "GB free" in text
    with pytest.raises(check.PreflightError) as e:
        check.run_preflight([cfg], world / "out")
    assert str(e.value).count("\nxlrepro: error: ") == len(pf.problems) - 1


def test_disk_estimate_grows_with_the_runs_kept():
    base = load_config("xstilts-squad", ["retrieval.tasks=[]", "target.tasks=[xnli]"])
    more = load_config("xstilts-squad", ["retrieval.tasks=[]", "target.tasks=[xnli,pawsx]"])
    n = 560e6  # XLM-R Large
    assert check.disk_needed(base) == pytest.approx(n * 4 * (2 + 4), rel=0.01)
    assert check.disk_needed(more) - check.disk_needed(base) == pytest.approx(n * 4, rel=0.01)
