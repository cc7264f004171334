"""report: per-language CSV tables loadable by pandas as they are; notes for tasks with nothing scored;
QA's mean row with F1 and EM."""

import json
from types import SimpleNamespace

import pytest
from mini import WORLD

from xlrepro.cli import main
from xlrepro.config import config_hash, load_config
from xlrepro.phases.orchestrator import run_experiment
from xlrepro.report import CSV_COLUMNS

pd = pytest.importorskip("pandas")

MINI = WORLD + [
    "pretrain.steps=4",
    "intermediate.train.max_steps=2",
    "intermediate.train.eval_every_steps=2",
    "target.train.max_steps=2",
    "target.train.eval_every_steps=2",
    "controls=[]",
    "target.eval_splits=[test]",
    "target.per_task={xquad: {max_seq_length: 128, doc_stride: 64, max_query_length: 32}}",
    # BUCC's languages (de fr ru zh) and the evaluated ones do not meet; PAN-X's test labels are withheld
    # (as TyDiQA's test answers are in XTREME's download)
    "data.languages=[en, tr, vi]",
    "target.tasks=[xnli, xquad, panx]",
    "retrieval.tasks=[bucc2018, tatoeba]",
]


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    res = run_experiment(load_config("smoke", MINI), out)
    return out, res


@pytest.mark.slow
def test_results_csv_has_one_row_per_record_with_run_hash_and_seed(done):
    out, res = done
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == CSV_COLUMNS
    assert len(df) == len(res["records"]) and len(df) > 0
    assert not df.duplicated(["task", "language", "split", "metric", "run"]).any()
    assert df["value"].dtype == float and df["seed"].dtype == int and (df["seed"] == res["seed"]).all()
    assert (df["config_hash"] == res["config_hash"]).all()
    for _, row in df.iterrows():
        assert (
            row["run_hash"] in res["runs"]
            and row["run"] == f"{res['runs'][row['run_hash']]['kind']}-{row['task']}-{row['run_hash'][:12]}"
        )
    got = {(r.task, r.language, r.split, r.metric): r.value for r in df.itertuples()}
    for r in res["records"]:
        assert got[(r["task"], r["language"], r["split"], r["metric"])] == r["value"], "full precision kept"
    assert set(df["task"]) == {"xnli", "xquad", "tatoeba"}


@pytest.mark.slow
def test_report_notes_tasks_with_nothing_scored(done):
    out, _ = done
    md = (out / "report.md").read_text()
    panx = md.split("## panx", 1)[1].split("\n## ", 1)[0]
    assert "nothing scored" in panx and "withheld" in panx and "(en, tr, vi)" in panx
    bucc = md.split("## bucc2018", 1)[1].split("\n## ", 1)[0]
    assert "Nothing scored" in bucc and "de, fr, ru, zh" in bucc and "en, tr, vi" in bucc


@pytest.mark.slow
def test_qa_mean_row_has_f1_and_em(done):
    out, res = done
    md = (out / "report.md").read_text()
    xquad = md.split("## xquad", 1)[1].split("\n## ", 1)[0]
    header = next(l for l in xquad.splitlines() if l.startswith("| language"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    mean = next(l for l in xquad.splitlines() if "mean over non-English" in l)
    cells = [c.strip() for c in mean.strip("|").split("|")]
    for metric in ("f1", "exact_match"):
        vals = [
            r["value"]
            for r in res["records"]
            if r["task"] == "xquad" and r["metric"] == metric and r["language"] != "en"
        ]
        assert cells[cols.index(metric)] == f"{sum(vals) / len(vals):.1f}"


@pytest.mark.slow
def test_report_command_rebuilds_the_experiment_report_and_csv(done, capsys):
    out, _ = done
    before = (out / "results.csv").read_text()
    (out / "results.csv").unlink()
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "results.csv").read_text() == before and (out / "report.md").exists()
    assert str(out / "results.csv") in capsys.readouterr().out


def test_sweep_csv_rows_carry_each_runs_spec_hash_seed_and_cell_config(tmp_path):
    from xlrepro.study.report import collect, write_sweep_csv

    nodes, cells = {}, []
    for index, seed in enumerate((1, 2)):
        key = f"{index}f" * 32
        run_dir = tmp_path / "runs" / f"target-xnli-{key[:12]}"
        run_dir.mkdir(parents=True)
        (run_dir / "done.json").write_text("{}")
        (run_dir / "spec.json").write_text(json.dumps({"kind": "target", "task": "xnli", "seed": seed + 1000}))
        recs = [
            {
                "task": "xnli",
                "language": l,
                "split": "test",
                "metric": "accuracy",
                "value": 50.0 + seed + i / 3,
                "n": 10,
                "mode": "official",
            }
            for i, l in enumerate(("de", "fr"))
        ]
        (run_dir / "results.json").write_text(json.dumps({"records": recs}))
        nodes[key] = {"kind": "target", "task": "xnli", "run_dir": f"runs/{run_dir.name}", "upstream": None}
        cells.append(
            {
                "index": index,
                "runs": [key],
                "variant": "mnli",
                "volume": 100 * (index + 1),
                "seed": seed,
                "intermediate": "mnli",
                "overrides": [f"seed={seed}"],
            }
        )
    desc = {"spec": "planted", "nodes": nodes, "cells": cells}
    spec = SimpleNamespace(config="smoke", name="planted")
    path = write_sweep_csv(tmp_path, desc, spec, collect(tmp_path, desc), tmp_path / "report")
    df = pd.read_csv(path)
    assert list(df.columns) == CSV_COLUMNS and len(df) == 4
    for index, seed in enumerate((1, 2)):
        rows = df[df["run_hash"] == f"{index}f" * 32]
        assert len(rows) == 2 and set(rows["language"]) == {"de", "fr"}
        assert (rows["seed"] == seed + 1000).all(), "the run's own seed (a re-seeded run differs from its cell's)"
        assert (rows["config_hash"] == config_hash(load_config("smoke", [f"seed={seed}"]))).all()
        assert (rows["volume"] == 100 * (index + 1)).all() and (rows["variant"] == "mnli").all()
    assert df.loc[(df["run_hash"] == "1f" * 32) & (df["language"] == "fr"), "value"].item() == 52.0 + 1 / 3
