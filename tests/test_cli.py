import json
import subprocess
import sys


def xlrepro(*args, check=True):
    return subprocess.run([sys.executable, "-m", "xlrepro", *args], capture_output=True, text=True, check=check)


def test_info_json_explains_the_build():
    d = json.loads(xlrepro("info", "--json").stdout)
    assert d["extension_loaded"] is True
    assert d["build"]["extension"] in ("cpu", "cuda") and d["build"]["torch_version"] == d["torch"]
    cpu = d["ops"]["masked_mean_pool"]["cpu"]
    assert cpu["selected"] == "cpp"
    assert cpu["backends"]["cuda"]["reasons"] == ["device cpu not supported"]
    text = xlrepro("info").stdout
    assert "extension xlrepro._C: loaded" in text and "masked_mean_pool" in text


def test_tasks_json_lists_the_registry():
    rows = {r["name"]: r for r in json.loads(xlrepro("tasks", "--json").stdout)}
    assert rows["xnli"]["english_training_source"] == "mnli" and len(rows["xnli"]["languages"]["test"]) == 15
    assert rows["xquad"]["english_training_source"] == "squad"
    assert rows["tatoeba"]["format"] == "retrieval"


def test_config_errors_exit_2_with_a_message():
    r = xlrepro("config", "validate", "smoke", "target.train.lrr=1", check=False)
    assert r.returncode == 2 and "did you mean 'lr'" in r.stderr
    r = xlrepro("config", "validate", "smok", check=False)
    assert r.returncode == 2 and "did you mean 'smoke'" in r.stderr
    assert xlrepro("config", "validate", "smoke").stdout.strip() == "smoke: valid"


def test_score_reads_the_submission_layout(tmp_path):
    from xlrepro.tasks import get_task

    langs = get_task("xnli").languages("xtreme")
    for folder, first in (("pred", "entailment"), ("gold", "entailment")):
        (tmp_path / folder / "xnli").mkdir(parents=True)
        for i, lang in enumerate(langs):
            # predictions: one of 2 right for the first language, both right elsewhere
            second = "neutral" if (folder == "gold" or i > 0) else "contradiction"
            (tmp_path / folder / "xnli" / f"test-{lang}.tsv").write_text(f"{first}\n{second}\n")
    out = json.loads(xlrepro("score", "--predictions", str(tmp_path / "pred"), "--labels", str(tmp_path / "gold"),
                             "--version", "xtreme").stdout)
    text = json.dumps(out)
    assert "xnli" in text
    # mean over the 15 languages: (50 + 14 x 100) / 15
    assert f"{(50 + 14 * 100) / 15:.6f}"[:7] in text
