"""The dress rehearsal: the real route on real-format data, separate from the smoke world.

A loopback server and Hub stand-in (tests/loopback.py) serve the samples in their release
layouts (UD-POS as UD v2.5's treebank tarball; what the samples lack is made in the real format by
tests/release_standins.py: English UD train, a Chinese treebank, MLQA test files, Tatoeba ron-eng);
`xlrepro data prepare --config xstilts-squad` fetches them, `xlrepro data verify`
finds them, a Hugging Face-format stand-in model (a small XLMRobertaForMaskedLM with a tokenizer
trained on the samples) is loaded by path, and `xlrepro reproduce xstilts-squad`, shrunk by
overrides, runs every phase and target and writes the report and the submission folder.

Shrunk: languages en and zh; two optimisation steps per phase; the torch engine; retrieval at layer 2
of the 2-layer stand-in. About three minutes on two CPU cores.
"""

import json
import os

import pytest
from loopback import Loopback

# the release servers in their layouts (tests/release_standins.py)
from release_standins import publish, release_sums_off
from standin_model import build_standin

from xlrepro.cli import main

pytestmark = pytest.mark.slow  # every test here trains (tests/README.md)

SHRINK = ["data.languages=[en,zh]", "target.tasks=[xnli,pawsx,udpos,panx,xquad,mlqa,tydiqa]"]
TRAIN = [
    f"{phase}.train.{k}={v}"
    for phase in ("intermediate", "target")
    for k, v in (("engine", "torch"), ("max_steps", 2), ("batch_size", 2), ("grad_accum", 1), ("eval_subset", 8))
]


@pytest.fixture(scope="module")
def rehearsal(samples, tmp_path_factory):
    base = tmp_path_factory.mktemp("rehearsal")
    root, out = base / "data", base / "out"
    old = {k: os.environ.get(k) for k in ("HF_ENDPOINT", "XLREPRO_MIRRORS", "XLREPRO_PROGRESS")}
    patch = pytest.MonkeyPatch()
    release_sums_off(patch)  # the samples are not the release files their published sums describe
    try:
        with Loopback() as lb:
            publish(lb, samples)
            os.environ.update(HF_ENDPOINT=lb.url, XLREPRO_MIRRORS=f"https://={lb.url}/", XLREPRO_PROGRESS="0")
            prepared = main(
                ["data", "prepare", "--config", "xstilts-squad", "--root", str(root), *SHRINK, "--allow-unpinned-hub"]
            )
            served = len(lb.log)
    finally:
        patch.undo()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    verified = main(["data", "verify", "--config", "xstilts-squad", "--root", str(root), *SHRINK])
    model = build_standin(
        [
            samples / "squad/dataset/dev-v1.1.json",
            samples / "xquad/xquad.zh.json",
            samples / "xnli/hf_dummy_data/XNLI-1.0/xnli.dev.tsv",
        ],
        base / "model",
    )
    ran = main(
        [
            "reproduce",
            "xstilts-squad",
            "--out",
            str(out),
            "--device",
            "cpu",
            f"data.root={root}",
            f"model.name_or_path={model}",
            "retrieval.layer=2",
            *SHRINK,
            *TRAIN,
        ]
    )
    return {
        "prepared": prepared,
        "verified": verified,
        "ran": ran,
        "served": served,
        "root": root,
        "out": out,
        "model": model,
    }


def test_prepare_and_verify_find_everything_the_config_reads(rehearsal, capsys):
    assert rehearsal["prepared"] == 0 and rehearsal["verified"] == 0 and rehearsal["served"] > 20
    lock = json.loads((rehearsal["root"] / "data.lock").read_text())
    tasks = {p.split("/", 1)[0] for p in lock["files"] if not p.startswith(".downloads")}
    assert {
        "squad",
        "mnli",
        "xnli",
        "pawsx",
        "udpos",
        "panx",
        "xquad",
        "mlqa",
        "tydiqa",
        "bucc2018",
        "tatoeba",
    } <= tasks
    assert "udpos/UD_Chinese-GSD/zh_gsd-ud-test.conllu" in lock["files"]
    assert "mlqa/MLQA_V1/test/test-context-zh-question-zh.json" in lock["files"]


def test_the_shrunk_reproduction_runs_every_phase_and_target(rehearsal):
    assert rehearsal["ran"] == 0
    out = rehearsal["out"]
    results = json.loads((out / "results.json").read_text())
    seen = {(r["phase"], r["task"]) for r in results["records"]}
    for t in ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa"):
        assert ("target", t) in seen, t
    pos = {(r["split"], r["language"]) for r in results["records"] if r["task"] == "udpos" and r["phase"] == "target"}
    assert {("dev", "en"), ("dev", "zh")} <= pos, pos
    assert {("retrieval", "bucc2018"), ("retrieval", "tatoeba")} <= seen
    assert {r["language"] for r in results["records"]} >= {"en", "zh"}
    assert (out / "report.md").read_text().strip()
    manifest = json.loads((out / "submission" / "MANIFEST.json").read_text())
    assert manifest
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["name_or_path"] == str(rehearsal["model"])
