"""The kick-the-tires report shows the research question in miniature: a no-intermediate baseline
beside the intermediate run, their difference per resource group with a paired-bootstrap CI, and
chance levels on every chart (xlrepro.contrast, xlrepro.report). A miniature smoke world."""

import json

import matplotlib.axes
import numpy as np
import pytest
from mini import MINI as BASE

from xlrepro.config import load_config
from xlrepro.contrast import CHANCE_NOTE, chance_level
from xlrepro.phases.orchestrator import run_experiment

MINI = BASE + [
    "smoke.n_test=40",
    "target.train.eval_every_steps=2",
    "target.tasks=[xnli]",
    "controls=[xnli]",
    "retrieval.tasks=[]",
    "target.per_task={}",
    "target.eval_splits=[test]",
]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("contrast")
    return out, run_experiment(load_config("smoke", MINI), out)


def test_chance_levels_come_from_the_registry():
    assert chance_level("xnli") == pytest.approx(100 / 3) and chance_level("pawsx") == 50.0
    assert chance_level("xcopa") == 50.0  # num_choices: 2
    assert all(chance_level(t) is None for t in ("udpos", "panx", "xquad", "tatoeba", "bucc2018", "lareqa"))


@pytest.mark.slow
def test_a_control_task_gets_a_baseline_run_and_the_report_its_difference_per_group(mini):
    out, res = mini
    kinds = {(v["kind"], v.get("task")) for v in res["runs"].values()}
    assert ("baseline", "xnli") in kinds and ("target", "xnli") in kinds and ("control", "xnli") in kinds
    assert sum(k == "baseline" for k, _ in kinds) == 1  # one baseline run per control task
    base = next(v for v in res["runs"].values() if v["kind"] == "baseline")
    spec = json.loads((out / "runs" / base["dir"].split("/")[-1] / "spec.json").read_text())
    assert spec["upstream"]["kind"] == "pretrain"  # fine-tuned from the pre-trained encoder
    recs = [r for r in res["records"] if r["phase"] == "baseline"]
    assert recs and all(r["task"] == "xnli" and r["intermediate"] is None for r in recs)
    manifest = (out / "submission" / "MANIFEST.json").read_text()
    assert base["dir"].split("/")[-1] not in manifest  # the submission holds the intermediate model's runs only
    md = (out / "report.md").read_text()
    assert "## xnli — no-intermediate baseline (fine-tuned from the pre-trained encoder)" in md
    sec = md.split("## Intermediate training minus the no-intermediate baseline")[1].split("\n## ")[0]
    rows = [l for l in sec.splitlines() if l.startswith("| xnli |")]
    assert [r.split(" | ")[1] for r in rows] == ["source (en)", "high (tr vi zh)"]

    def acc(phase, langs):
        return sum(
            r["value"]
            for r in res["records"]
            if r["phase"] == phase
            and r["task"] == "xnli"
            and r["split"] == "test"
            and r["metric"] == "accuracy"
            and r["language"] in langs
        ) / len(langs)

    for row, langs in zip(rows, (["en"], ["tr", "vi", "zh"])):
        cells = row.strip("|").split(" | ")
        inter, baseline, diff = float(cells[3]), float(cells[4]), float(cells[5])
        assert inter == pytest.approx(acc("target", langs), abs=0.06)
        assert baseline == pytest.approx(acc("baseline", langs), abs=0.06)
        assert diff == pytest.approx(inter - baseline, abs=0.11)
        lo, hi = (float(x) for x in cells[6].strip("[]").split(", "))
        assert lo <= diff <= hi  # (a 4-step fine-tune may predict alike in both runs: CI [0, 0])
        assert cells[-1].strip(" |") == "33.3"
    assert CHANCE_NOTE in sec


@pytest.mark.slow
def test_scores_png_marks_chance_for_classification_only(mini, monkeypatch, tmp_path):
    from xlrepro.report import write_plot

    _, res = mini
    drawn = []
    real = matplotlib.axes.Axes.hlines
    monkeypatch.setattr(
        matplotlib.axes.Axes, "hlines", lambda self, y, *a, **k: drawn.append(y) or real(self, y, *a, **k)
    )
    assert write_plot(res["records"], tmp_path / "scores.png")
    # xnli, its shuffled-label control and its baseline: 1/3 each; an F1 task (udpos): none
    udpos = [{**r, "task": "udpos", "metric": "f1"} for r in res["records"] if r["phase"] == "target"]
    assert write_plot(res["records"] + udpos, tmp_path / "scores.png")
    assert drawn == [pytest.approx(100 / 3)] * 6


def test_contrast_pairs_items_per_group_with_a_bootstrap_ci(tmp_path):
    """Planted item files: the intermediate run is right on 70% of the items, the baseline on 50%,
    paired on the same items; English and the high group come out separately."""
    import numpy as np

    from xlrepro.contrast import contrast, section

    rng = np.random.default_rng(0)
    runs = {}
    truth = {l: rng.random(400) for l in ("en", "tr", "vi", "mr")}
    for kind, p in (("target", 0.7), ("baseline", 0.5)):
        d = tmp_path / "runs" / f"{kind}-xnli-x"
        d.mkdir(parents=True)
        items = {
            f"test/{l}": {"kind": "binary", "scores": [100.0 if u < p else 0.0 for u in u_]} for l, u_ in truth.items()
        }
        items["dev/en"] = {"kind": "binary", "scores": [0.0]}  # another split: not used
        (d / "items.json").write_text(json.dumps({"version": 3, "task": "xnli", "items": items}))
        runs[kind] = {"kind": kind, "task": "xnli", "dir": f"elsewhere/runs/{d.name}"}
    runs["c"] = {"kind": "control", "task": "xnli", "dir": "runs/control-xnli-y"}
    rows = contrast({"runs": runs}, tmp_path)
    assert [(r["group"], r["languages"], r["n"]) for r in rows] == [
        ("source", ["en"], 400),
        ("high", ["tr", "vi"], 800),
        ("under-resourced", ["mr"], 400),
    ]
    for r in rows:
        assert r["low"] < r["diff"] < r["high"] and r["low"] > 5 and r["high"] < 35 and r["p_value"] < 0.01
        assert r["diff"] == pytest.approx(r["intermediate"] - r["baseline"])
        assert r["chance"] == pytest.approx(100 / 3)
    text = "\n".join(section(rows))
    assert "| xnli | high (tr vi) | 800 |" in text and CHANCE_NOTE in text
    assert contrast({"runs": {"t": runs["target"]}}, tmp_path) == []  # no baseline: no contrast


@pytest.mark.parametrize("task, chance", [("xnli", 100 / 3), ("udpos", None)])
def test_sweep_figures_mark_chance_or_say_there_is_none(tmp_path, monkeypatch, task, chance):
    from xlrepro import stats
    from xlrepro.study.report import heatmap_figure, scaling_figure

    lines, labels = [], []
    real_h, real_legend = matplotlib.axes.Axes.axhline, matplotlib.axes.Axes.legend
    monkeypatch.setattr(
        matplotlib.axes.Axes, "axhline", lambda self, y=0, *a, **k: lines.append(y) or real_h(self, y, *a, **k)
    )

    def legend(self, *a, **k):
        labels.extend(self.get_legend_handles_labels()[1])
        return real_legend(self, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "legend", legend)
    pts = [(v, 40.0 + s + 2 * np.log10(v)) for v in (100, 300, 900) for s in (0, 1)]
    fits = [
        {
            "task": task,
            "variant": "mnli",
            "group": "all languages",
            "points": pts,
            "fit": stats.fit_log_linear([p[0] for p in pts], [p[1] for p in pts], n_boot=50),
        }
    ]
    assert scaling_figure(fits, [], task, tmp_path, None, False) == f"scaling-{task}.png"
    cells = [{"task": task, "variant": "mnli", "volume": 100, "languages": {"tr": {"seeds": {"mean": 50.0}}}}]
    assert heatmap_figure(cells, task, tmp_path) == f"heatmap-{task}.png"
    if chance is None:
        assert lines == [] and CHANCE_NOTE in labels
    else:
        assert lines == [pytest.approx(chance)] * 2 and "chance (1/labels, 1/choices)" in labels
