"""The scaling study's design (xlrepro.study.design, wired into xlrepro.study.spec.expand): valid cells,
the two arms, symmetric model selection, recipe precedence, overlap and domain, the dry run."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml

from xlrepro.cli import main as cli
from xlrepro.errors import ConfigError
from xlrepro.study.design import eval_schedule, n_examples, n_validations, overlap, train_size
from xlrepro.study.spec import expand, parse_spec
from xlrepro.sweep import build_graph
from xlrepro.train import Stream, train


def _spec(**over):
    data = {
        "name": "t",
        "result": "r",
        "kind": "scaling",
        "config": "xstilts-squad",
        "seeds": [1],
        "variants": [
            {"label": "baseline", "overrides": ["intermediate.tasks=[]"]},
            {"label": "hellaswag", "overrides": ["intermediate.tasks=[hellaswag]"]},
        ],
        "volumes": [1000, 4000, "all"],
        "overrides": ["target.tasks=[xnli]", "retrieval.tasks=[]"],
    }
    data.update(over)
    return parse_spec(data, "test-spec")


# ---------------------------------------------------------------------- valid cells


def test_registry_gives_training_sizes_with_a_source():
    assert train_size("hellaswag") == (39905, train_size("hellaswag")[1])
    assert train_size("squad")[0] == 87599 and "v1.1" in train_size("squad")[1]
    assert train_size("anli_plus")[0] == 162865 + 392702 + 549367


def test_a_volume_larger_than_the_training_set_is_an_error_naming_task_volume_and_size():
    with pytest.raises(ConfigError) as e:
        expand(_spec(volumes=[1000, 50000, 100000]))
    msg = str(e.value)
    assert "hellaswag: volume 50000 > 39905 training examples" in msg
    assert "hellaswag: volume 100000 > 39905" in msg and "'all'" in msg
    # 'all' is the whole set, always valid; per-variant volumes replace the spec's
    cells = expand(
        _spec(
            volumes=[1000, 50000],
            variants=[
                {"label": "hellaswag", "overrides": ["intermediate.tasks=[hellaswag]"], "volumes": [1000, "all"]}
            ],
        )
    )
    assert [c.volume for c in cells] == [1000, "all"]


def test_dry_run_rejects_invalid_cells_before_anything_runs(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    data = {
        "name": "bad",
        "result": "r",
        "kind": "scaling",
        "config": "xstilts-squad",
        "seeds": [1],
        "variants": [{"label": "squad", "overrides": ["intermediate.tasks=[squad]"]}],
        "volumes": [100000],
    }
    spec.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert cli(["reproduce", str(spec), "--dry-run", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlrepro: error:") and "squad: volume 100000 > 87599" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_every_shipped_scaling_cell_is_valid():
    from xlrepro.study.spec import load_spec

    cells = expand(load_spec("scaling-xtreme-r"))
    for c in cells:
        if c.cfg.intermediate.tasks and c.volume != "all":
            assert all(c.volume <= train_size(t)[0] for t in c.cfg.intermediate.tasks)


# ---------------------------------------------------------------------- arms and model selection


def _toy_train(tcfg, n: int, tmp_path):
    """The real training loop on a toy model and ``n`` examples: (optimiser steps, validations)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    feats = [{"input_ids": [1, 2]} for _ in range(n)]
    stream = Stream("toy", feats, lambda fs: torch.ones(len(fs), 2), lambda m, b: m(b).pow(2).mean())
    tcfg = dataclasses.replace(tcfg, engine="torch", deepspeed=None, checkpoint_every_steps=10**9)
    run = tmp_path / f"run-{n}-{tcfg.max_steps}-{tcfg.eval_every_steps}"
    run.mkdir()
    state = train(model, stream, tcfg, 1, run, lambda: 0.0, lambda e: None)
    return state.step, len(state.history)


def test_fixed_steps_arm_gives_equal_update_counts_across_volumes(tmp_path):
    cells = expand(_spec(arms=["fixed-epochs", "fixed-steps"], fixed_steps=120, volumes=[300, 1000, 4000]))
    inter = [c for c in cells if c.cfg.intermediate.tasks]
    assert {c.arm for c in inter} == {"fixed-epochs", "fixed-steps"}
    assert [c.arm for c in cells if not c.cfg.intermediate.tasks] == [None]
    steps = {}
    for c in inter:
        steps[(c.arm, c.volume)] = _toy_train(c.cfg.intermediate.train, n_examples(c.cfg)[0], tmp_path)[0]
    assert {steps[("fixed-steps", v)] for v in (300, 1000, 4000)} == {120}
    # fixed epochs: the updates grow with the volume (3 epochs of 4 x 8 examples)
    assert steps[("fixed-epochs", 300)] < steps[("fixed-epochs", 1000)] < steps[("fixed-epochs", 4000)]


@pytest.mark.parametrize("arms", [["fixed-epochs"], ["fixed-steps"]])
def test_scaled_selection_validates_equally_often_at_every_volume(tmp_path, arms):
    cells = expand(_spec(arms=arms, fixed_steps=150, selection="scaled", validations=4, volumes=[300, 1000, 4000]))
    counts = {}
    for c in cells:
        if c.cfg.intermediate.tasks:
            assert c.selection["mode"] == "scaled" and c.selection["validations"] == 4
            counts[c.volume] = _toy_train(c.cfg.intermediate.train, n_examples(c.cfg)[0], tmp_path)[1]
    assert counts == {300: 4, 1000: 4, 4000: 4}


def test_config_selection_is_asymmetric_and_last_selection_validates_once(tmp_path):
    # today's fixed interval (1000 steps): the small volumes validate once, the large ones more often
    cells = [c for c in expand(_spec(volumes=[1000, "all"])) if c.cfg.intermediate.tasks]
    counts = [_toy_train(c.cfg.intermediate.train, n_examples(c.cfg)[0], tmp_path)[1] for c in cells]
    assert counts[0] == 1 and counts[1] > 1
    cells = [c for c in expand(_spec(volumes=[1000, "all"], selection="last")) if c.cfg.intermediate.tasks]
    assert [_toy_train(c.cfg.intermediate.train, n_examples(c.cfg)[0], tmp_path)[1] for c in cells] == [1, 1]


def test_eval_schedule():
    for k in (1, 2, 3, 5, 10):
        for n in range(k * (k - 1) or 1, 600):  # from k(k-1) steps on, an interval always exists
            assert n_validations(n, eval_schedule(n, k)) == k
    with pytest.raises(ConfigError, match="cannot hold"):
        eval_schedule(3, 5)
    with pytest.raises(ConfigError, match="no fixed interval gives exactly 5 validations in 11 steps"):
        eval_schedule(11, 5)


@pytest.mark.parametrize(
    "over, message",
    [
        ({"arms": ["fixed-epoch"]}, "arms: expected"),
        ({"arms": ["fixed-steps"]}, "fixed_steps: the fixed-steps arm needs"),
        ({"selection": "best"}, "selection: 'best' is not one of"),
        ({"validations": 0}, "validations: expected a positive integer"),
        ({"recipe": "xtreme-r"}, "recipe: 'xtreme-r' is not one of"),
        ({"variants": [{"label": "a", "volumes": [0]}]}, "variants[0] (a).volumes: 0 is not"),
        ({"analysis_controls": {"positive": "hellaswg"}}, "analysis_controls.positive: 'hellaswg' is not a variant"),
        ({"analysis_controls": {"postive": "hellaswag"}}, "analysis_controls: expected a mapping with the keys"),
        ({"analysis_controls": {"positive": "hellaswag", "negative": "hellaswag"}}, "must be different variants"),
        ({"analysis_controls": {"negative": "baseline"}, "baseline": "baseline"}, "'baseline' is the baseline"),
        ({"analysis_controls": {"positive": "hellaswag"}, "kind": "table"}, "only a scaling spec"),
    ],
)
def test_bad_design_fields(over, message):
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
    ):
        _spec(**over)


def test_analysis_controls_must_be_able_to_show_what_they_claim():
    shuffled = {
        "label": "hs-shuffled",
        "overrides": ["intermediate.tasks=[hellaswag]", "intermediate.train.shuffle_labels=true"],
    }
    hs = {"label": "hellaswag", "overrides": ["intermediate.tasks=[hellaswag]"]}
    base = {"label": "baseline", "overrides": ["intermediate.tasks=[]"]}
    cells = expand(
        _spec(variants=[base, hs, shuffled], analysis_controls={"positive": "hellaswag", "negative": "hs-shuffled"})
    )
    assert {c.variant for c in cells} == {"baseline", "hellaswag", "hs-shuffled"}
    for controls, variants, message in (
        (
            {"negative": "hellaswag"},
            [hs],
            "negative control 'hellaswag' must set intermediate.train.shuffle_labels=true",
        ),
        ({"positive": "hs-shuffled"}, [shuffled], "positive control 'hs-shuffled' shuffles its intermediate labels"),
        ({"positive": "baseline"}, [base, hs], "positive control 'baseline' has no intermediate phase"),
        ({"positive": "hellaswag"}, [{**hs, "volumes": [1000]}], "runs one volume; a slope needs two or more"),
    ):
        with pytest.raises(ConfigError, match=message):
            expand(_spec(variants=variants, analysis_controls=controls))
    # a span-QA intermediate task has no labels to shuffle: said before anything runs
    with pytest.raises(
        ConfigError, match=r"intermediate.train.shuffle_labels: labels can be shuffled for .*'squad' is span_qa"
    ):
        expand(
            _spec(
                variants=[
                    {
                        "label": "s",
                        "overrides": ["intermediate.tasks=[squad]", "intermediate.train.shuffle_labels=true"],
                    }
                ]
            )
        )


# ---------------------------------------------------------------------- recipes


def test_recipe_precedence_registry_then_spec_then_override(tmp_path):
    from xlrepro.config import train_config_for

    spec = _spec(
        recipe="xtreme_r",
        volumes=[1000],
        overrides=[
            "target.tasks=[xnli, xcopa]",
            "retrieval.tasks=[]",
            "target.per_task.xcopa={epochs: 3, max_seq_length: 100}",
        ],
    )
    cells = expand(spec, ["target.per_task.xcopa.max_seq_length=96"])
    cfg = cells[0].cfg
    xnli, xcopa = train_config_for(cfg, "xnli"), train_config_for(cfg, "xcopa")
    # registry (google-research/xtreme scripts/train_xnli.sh): lr 3e-5, 2 x 16, 5 epochs, length 128,
    # over the base config's jiant value (per_task.xnli.epochs = 2)
    assert (xnli.lr, xnli.batch_size, xnli.grad_accum, xnli.epochs, xnli.max_seq_length) == (3e-5, 2, 16, 5, 128)
    # spec over registry (epochs 3), command line over spec (length 96); the rest from the registry
    assert (xcopa.lr, xcopa.epochs, xcopa.max_seq_length) == (3e-5, 3, 96)
    prov = cells[0].recipes["target.per_task.xcopa"]["settings"]
    assert prov["lr"] == {"value": 3e-5, "from": "registry"}
    assert prov["epochs"] == {"value": 3, "from": "spec"}
    assert prov["max_seq_length"] == {"value": 96, "from": "override"}
    assert "train_xcopa.sh" in cells[0].recipes["target.per_task.xcopa"]["source"]
    # the resolved recipe is recorded with the sweep (and the run spec keeps the resolved TrainConfig)
    g = build_graph(spec, tmp_path, ["target.per_task.xcopa.max_seq_length=96"])
    desc = g.describe()["cells"][0]
    assert desc["recipes"]["target.per_task.xcopa"]["settings"]["max_seq_length"]["from"] == "override"
    assert desc["arm"] is None and desc["selection"] is None
    # without recipe: today's behaviour, the config's values
    plain = expand(_spec(volumes=[1000]))[0].cfg
    assert train_config_for(plain, "xnli").lr == 1e-5 and train_config_for(plain, "xnli").epochs == 2


def test_xtreme_r_recipes_reach_the_inner_trainings():
    from xlrepro.config import train_config_for
    from xlrepro.dual_encoder import dual_encoder_train_config

    spec = _spec(
        recipe="xtreme_r",
        volumes=[1000],
        overrides=["target.tasks=[xnli]", "retrieval.tasks=[tatoeba, lareqa, mewslix]", "retrieval.benchmark=xtreme_r"],
    )
    cfg = expand(spec)[0].cfg
    sq = train_config_for(cfg, "squad")  # the Tatoeba encoder (run_tatoeba.sh's checkpoint name)
    assert (sq.lr, sq.epochs, sq.batch_size, sq.grad_accum, sq.max_seq_length) == (3e-5, 2, 2, 16, 384)
    la, me = dual_encoder_train_config(cfg, "lareqa"), dual_encoder_train_config(cfg, "mewslix")
    assert (la.lr, la.epochs, la.batch_size * la.grad_accum) == (2e-5, 3, 16)
    assert (me.lr, me.epochs, me.batch_size, me.grad_accum) == (1e-5, 2, 8, 4)


def test_registry_recipe_fields_are_checked():
    import dataclasses

    from xlrepro.config import TrainConfig
    from xlrepro.config_checks import recipe_problems
    from xlrepro.tasks.registry import check_study_fields, get_task

    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    bad = dataclasses.replace(get_task("xcopa"), recipe={"xtreme_r": {"learning_rate": 1, "source": "x"}})
    assert any(
        "recipe.xtreme_r.learning_rate: not a training setting" in p for p in recipe_problems({"xcopa": bad}, fields)
    )
    assert recipe_problems({"xcopa": get_task("xcopa")}, fields) == []
    with pytest.raises(ConfigError, match="recipe.xtreme: not one of"):
        check_study_fields({"recipe": {"xtreme": {"source": "x"}}}, "t.yaml")
    with pytest.raises(ConfigError, match="train_size: expected"):
        check_study_fields({"train_size": {"examples": "many", "source": "x"}}, "t.yaml")
    with pytest.raises(ConfigError, match="domain.xtreme_r: 'new' is not one of"):
        check_study_fields({"domain": {"xtreme_r": "new", "reason": "r"}}, "t.yaml")


# ---------------------------------------------------------------------- overlap and domain


def test_overlap_flags_and_domain_shift():
    spec = _spec(
        volumes=[1000],
        variants=[
            {"label": v, "overrides": [f"intermediate.tasks=[{v}]"]}
            for v in ("mnli", "squad", "hellaswag", "anli_plus")
        ],
        overrides=[
            "target.tasks=[xnli, xcopa, xquad, mlqa, tydiqa]",
            "retrieval.tasks=[tatoeba, lareqa, mewslix]",
            "retrieval.benchmark=xtreme_r",
        ],
    )
    by = {c.variant: c for c in expand(spec)}
    assert overlap(by["mnli"].cfg, "xnli") == ["mnli"] and overlap(by["anli_plus"].cfg, "xnli") == ["mnli"]
    sq = by["squad"].design
    assert {t for t, d in sq.items() if d["overlap"]} == {"xquad", "mlqa", "tatoeba", "lareqa"}
    assert not any(d["overlap"] for d in by["hellaswag"].design.values())
    assert sq["mewslix"]["domain"]["shift"] == "shifted" and "WikiNews" in sq["mewslix"]["domain"]["reason"]
    assert sq["xnli"]["domain"]["shift"] == "in-domain"


# ---------------------------------------------------------------------- the dry run


def test_dry_run_lists_cells_arms_and_inner_trainings(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    data = {
        "name": "s",
        "result": "r",
        "kind": "scaling",
        "config": "xstilts-squad",
        "seeds": [1],
        "recipe": "xtreme_r",
        "arms": ["fixed-epochs", "fixed-steps"],
        "fixed_steps": 500,
        "selection": "scaled",
        "validations": 5,
        "volumes": [1000, "all"],
        "overrides": [
            "target.tasks=[xcopa]",
            "retrieval.tasks=[tatoeba, lareqa, mewslix]",
            "retrieval.benchmark=xtreme_r",
        ],
        "variants": [
            {"label": "baseline", "overrides": ["intermediate.tasks=[]"]},
            {"label": "hellaswag", "overrides": ["intermediate.tasks=[hellaswag]"]},
        ],
    }
    spec.write_text(yaml.safe_dump(data))
    assert cli(["reproduce", str(spec), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    cells = [l.split() for l in text.splitlines() if l.split()[:2][1:] == ["hellaswag"]]
    assert {r[2] for r in cells} == {"fixed-epochs", "fixed-steps"} and all("scaled:" in " ".join(r) for r in cells)
    runs = [l.split() for l in text.splitlines() if l.split() and l.split()[0] in ("pending", "done")]
    inner = [r for r in runs if r[1] in ("chain", "dual_encoder", "squad_mrc")]  # their own nodes of the graph
    # 5 encoders (baseline + 2 arms x 2 volumes): each has a SIQA chain stage, a SQuAD encoder, two dual encoders
    assert sorted({(r[1], r[2]) for r in inner}) == [
        ("chain", "socialiqa"),
        ("dual_encoder", "lareqa"),
        ("dual_encoder", "mewslix"),
        ("squad_mrc", "squad"),
    ]
    assert len(inner) == 5 * 4 and all(float(r[-1]) > 0 for r in inner)
    assert {r[3] for r in runs if r[1] == "intermediate"} == {"fixed-epochs", "fixed-steps"}
    total = float(text.split("estimated GPU-hours: ")[1].split(" ")[0])
    assert total == pytest.approx(sum(float(r[-1]) for r in runs), abs=0.1 + 0.01 * len(runs))
    assert sum(float(r[-1]) for r in inner) > 1


def test_sweep_file_records_the_design(tmp_path):
    spec = _spec(arms=["fixed-steps"], fixed_steps=300, selection="scaled", validations=3, volumes=[1000])
    g = build_graph(spec, tmp_path)
    path = g.write()
    cells = json.loads(path.read_text())["cells"]
    inter = [c for c in cells if c["intermediate"]]
    assert inter[0]["arm"] == "fixed-steps" and inter[0]["selection"]["validations"] == 3
    assert inter[0]["selection"]["eval_every_steps"] == 100 and inter[0]["design"]["xnli"]["overlap"] == []


def test_the_pre_registration_has_the_current_power_table():
    from pathlib import Path

    from xlrepro.study.design import render_power_table

    doc = (Path(__file__).parents[2] / "docs" / "scaling-study.md").read_text(encoding="utf-8")
    assert render_power_table() in doc
    for heading in (
        "## Hypotheses",
        "## Primary estimand and model",
        "## Secondary analyses",
        "## Exclusion rules",
        "## Power",
    ):
        assert heading in doc
