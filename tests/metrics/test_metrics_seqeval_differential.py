"""Differential tests: xlrepro's tagging F1 against the real seqeval packages from PyPI.

``evaluate.py:f1`` calls seqeval's ``f1_score`` / ``precision_score`` / ``recall_score`` with
default arguments. The official numbers follow seqeval 0.0.12 (xlrepro mode ``"official"``);
seqeval 1.2.2 is what ``pip install seqeval`` gives today (mode ``"seqeval_1x"``). Each version
is installed into a throwaway virtual environment (cached under pytest's cache folder, keyed by
version) and scores a few hundred generated corpora: NER tags with B-/I-/E-/S- edge cases,
lowercase and dashed types, UPOS runs, empty sentences, flat tag lists, token-count and
sentence-count mismatches. Wherever seqeval returns a value xlrepro must return the same (and the same chunk
list); wherever seqeval raises xlrepro must raise.

The install needs PyPI. When it fails the test fails, unless XLREPRO_OFFLINE=1 is set: then it
is skipped and says why.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xlrepro.metrics import get_entities, tagging_f1

# version -> (xlrepro mode, pip arguments). 0.0.12's metric code imports only numpy (its Keras
# requirement is for a callback module the metrics do not import), so it goes in with --no-deps;
# 1.2.2 imports scikit-learn (for a warning class), pinned with what it pulls in.
SEQEVAL = {
    "0.0.12": ("official", ["--no-deps", "seqeval==0.0.12", "numpy==2.4.6"]),
    "1.2.2": (
        "seqeval_1x",
        [
            "seqeval==1.2.2",
            "numpy==2.4.6",
            "scikit-learn==1.9.1",
            "scipy==1.17.1",
            "joblib==1.6.0",
            "threadpoolctl==3.8.0",
        ],
    ),
}
N_CASES = 400

_RUNNER = r"""
import json, sys, warnings
from importlib.metadata import version
warnings.simplefilter("ignore")
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
out = []
for gold, pred in json.load(sys.stdin):
    row = {}
    try:
        row["scores"] = [f1_score(gold, pred) * 100, precision_score(gold, pred) * 100,
                         recall_score(gold, pred) * 100]
    except Exception as e:
        row["error"] = type(e).__name__
    try:
        row["entities"] = [[list(c) for c in get_entities(gold)], [list(c) for c in get_entities(pred)]]
    except Exception as e:
        row["entities_error"] = type(e).__name__
    out.append(row)
json.dump({"version": version("seqeval"), "rows": out}, sys.stdout)
"""


def _cache_root(request) -> Path:
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("seqeval-venvs"))
    return Path(request.getfixturevalue("tmp_path_factory").mktemp("seqeval-venvs"))


def _unavailable(message: str):
    if os.environ.get("XLREPRO_OFFLINE") == "1":
        pytest.skip(f"XLREPRO_OFFLINE=1: not comparing with the real package ({message})")
    pytest.fail(
        f"{message}\n(the differential tests install seqeval from PyPI; set XLREPRO_OFFLINE=1 to skip "
        "them on a machine without PyPI)",
        pytrace=False,
    )


def _seqeval_python(root: Path, version: str) -> Path:
    """The python of a venv holding seqeval==version: built once (in a temporary folder, then
    renamed into place) and reused."""
    venv = root / f"seqeval-{version}"
    python = venv / "bin" / "python"
    if (venv / "READY").is_file():
        return python
    tmp = root / f".seqeval-{version}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(tmp)],
        [
            str(tmp / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            *SEQEVAL[version][1],
        ],
        [str(tmp / "bin" / "python"), "-c", "import seqeval.metrics"],
    ]
    for cmd in steps:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            _unavailable(f"could not install seqeval=={version}: {' '.join(cmd[:4])} failed ({e})")
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            _unavailable(
                f"could not install seqeval=={version}: {' '.join(cmd[:6])} exited {r.returncode}:\n"
                f"{(r.stdout + r.stderr)[-2000:]}"
            )
    (tmp / "READY").write_text(version + "\n")
    shutil.rmtree(venv, ignore_errors=True)
    os.replace(tmp, venv)
    return python


# ----------------------------------------------------------------- generated corpora

UPOS = [
    "ADJ",
    "ADP",
    "ADV",
    "AUX",
    "CCONJ",
    "DET",
    "INTJ",
    "NOUN",
    "NUM",
    "PART",
    "PRON",
    "PROPN",
    "PUNCT",
    "SCONJ",
    "SYM",
    "VERB",
    "X",
]
NER = [
    "O",
    "O",
    "O",
    "B-PER",
    "I-PER",
    "B-LOC",
    "I-LOC",
    "B-ORG",
    "I-ORG",
    "E-PER",
    "S-LOC",
    "E-ORG",
    "S-PER",
    "b-per",
    "B-A-X",
    "B-B-X",
    "I-A-X",
    "I-MISC",
    "B-MISC",
]


def _sentence(rng, pool, runs):
    n = rng.randint(0, 8) if rng.random() < 0.9 else 0
    out = []
    while len(out) < n:
        tag = rng.choice(pool)
        out.extend([tag] * (rng.randint(1, 3) if runs else 1))
    return out[:n]


def _perturb(rng, sentence, pool):
    out = [rng.choice(pool) if rng.random() < 0.25 else t for t in sentence]
    if out and rng.random() < 0.1:  # token-count mismatch
        del out[rng.randrange(len(out))]
    elif rng.random() < 0.05:
        out.insert(rng.randint(0, len(out)), rng.choice(pool))
    return out


def generated_cases(n=N_CASES, seed=20260):
    rng = random.Random(seed)
    cases = [
        ([], []),
        ([[]], [[]]),
        ([["X"], ["X", "X"]], [["X"], ["X", "X"]]),
        ([["NOUN", "CCONJ", "NOUN"]], [["NOUN", "SCONJ", "NOUN"]]),
        ([["B-A-X"]], [["B-B-X"]]),
        (["B-PER", "I-PER", "O"], ["B-PER", "O", "O"]),
        (["NOUN", "NOUN"], [["NOUN", "NOUN"]]),
    ]  # flat lists
    while len(cases) < n:
        pool = UPOS if rng.random() < 0.5 else NER
        gold = [_sentence(rng, pool, runs=pool is UPOS) for _ in range(rng.randint(1, 6))]
        pred = (
            [_perturb(rng, s, pool) for s in gold]
            if rng.random() < 0.8
            else [_sentence(rng, pool, pool is UPOS) for _ in gold]
        )
        if rng.random() < 0.05:  # sentence-count mismatch
            if rng.random() < 0.5 and pred:
                pred = pred[:-1]
            else:
                pred = pred + [_sentence(rng, pool, False)]
        cases.append((gold, pred))
    return cases


# ----------------------------------------------------------------- the comparison


@pytest.mark.parametrize("version", sorted(SEQEVAL))
def test_tagging_f1_equals_real_seqeval(request, version):
    python = _seqeval_python(_cache_root(request), version)
    mode = SEQEVAL[version][0]
    cases = generated_cases()
    r = subprocess.run(
        [str(python), "-c", _RUNNER], input=json.dumps(cases), capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["version"] == version
    rows = report["rows"]
    n_values = n_raised = 0
    for i, ((gold, pred), row) in enumerate(zip(cases, rows)):
        where = f"case {i}: gold={gold!r} pred={pred!r} seqeval {version}: {row}"
        if "entities" in row:
            ours = [[list(c) for c in get_entities(gold, mode)], [list(c) for c in get_entities(pred, mode)]]
            assert ours == row["entities"], where
        if "error" in row:
            with pytest.raises(ValueError):
                tagging_f1(pred, gold, mode)
            n_raised += 1
            continue
        out = tagging_f1(pred, gold, mode)
        ours = [out["f1"], out["precision"], out["recall"]]
        assert ours == pytest.approx(row["scores"], rel=1e-12, abs=1e-12), where
        n_values += 1
    # the generator exercises both outcomes: values on most cases, errors on the mismatches in 1.2.2
    assert n_values > N_CASES // 2
    if version == "1.2.2":
        assert n_raised > 0
