"""Experiment specs (xlrepro/experiments/*.yaml), their run graphs, the dry run and the paper numbers.

Fast: nothing is trained. Graphs of the paper-scale specs need no data (their run specs hash
configs, not files); the scaling-smoke graph generates its small world once.
"""

import json
from pathlib import Path

import pytest
import yaml

from xlrepro.cli import main as cli
from xlrepro.errors import ConfigError
from xlrepro.estimate import CARDS, gpu_hours, param_count
from xlrepro.paper import load_paper_numbers, mark, parse_paper_numbers
from xlrepro.study.spec import expand, load_spec, parse_spec, shipped_specs
from xlrepro.sweep import build_graph

XTREME_TARGETS = {"xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa"}
INTERMEDIATE = {"anli_plus", "ccg", "commonsenseqa", "cosmosqa", "hellaswag", "mnli", "qqp", "squad", "sst2"}


@pytest.mark.parametrize("name", sorted(shipped_specs()))
def test_every_shipped_spec_validates_and_expands(name):
    spec = load_spec(name)
    cells = expand(spec)
    assert cells, name
    for v in spec.variants:
        mine = [c for c in cells if c.variant == v.label]
        n_vol = len(v.volumes if v.volumes is not None else spec.volumes) or 1
        per_seed = 1 if not mine[0].cfg.intermediate.tasks else n_vol * len(spec.arms)
        assert len(mine) == per_seed * len(spec.seeds), (name, v.label)
    for c in cells:
        assert c.cfg.seed == c.seed
        if c.volume is not None and spec.volumes:
            assert c.cfg.intermediate.train.volume == c.volume


def test_the_paper_results_and_the_scaling_figure_each_have_a_spec():
    specs = {n: load_spec(n) for n in shipped_specs()}
    table = specs["xstilts-table"]
    assert {v.label for v in table.variants} == INTERMEDIATE | {"baseline"}
    cfg = expand(table)[0].cfg
    assert set(cfg.target.tasks) == XTREME_TARGETS and set(cfg.retrieval.tasks) == {"bucc2018", "tatoeba"}
    assert specs["xstilts-submission"].kind == "submission"
    assert any("," in o for v in specs["xstilts-multitask"].variants for o in v.overrides if "intermediate.tasks" in o)
    assert any("mlm_mix" in o for v in specs["xstilts-ablation-mlm"].variants for o in v.overrides)
    assert any("translated" in o for v in specs["xstilts-ablation-translated"].variants for o in v.overrides)
    sc = specs["scaling-xtreme-r"]
    assert sc.volumes == [1000, 2000, 5000, 10000, 25000, "all"]
    vols = {v.label: v.volumes for v in sc.variants}
    assert vols["mnli"] == vols["anli_plus"] == [1000, 2000, 5000, 10000, 25000, 50000, 100000, "all"]
    assert 100000 not in vols["squad"] and 50000 not in vols["hellaswag"]  # SQuAD 87,599, HellaSwag 39,905
    assert sc.arms == ["fixed-epochs", "fixed-steps"] and sc.selection == "scaled" and sc.recipe == "xtreme_r"
    assert {"mnli", "squad", "hellaswag", "anli_plus"} <= {v.label for v in sc.variants}
    assert len(sc.seeds) >= 3
    smoke = specs["scaling-smoke"]
    assert (
        len(smoke.volumes) == 3
        and len(smoke.seeds) == 2
        and len([v for v in smoke.variants if v.label != "baseline"]) == 2 + 2
        and smoke.analysis_controls == {"positive": "ccg", "negative": "ccg-shuffled"}
    )


def _spec(**over):
    data = {
        "name": "t",
        "result": "r",
        "kind": "table",
        "config": "xstilts-squad",
        "variants": [{"label": "baseline", "overrides": ["intermediate.tasks=[]"]}],
        "seeds": [1],
    }
    data.update(over)
    return data


@pytest.mark.parametrize(
    "over, message",
    [
        ({"voluems": [1]}, "voluems: unknown key"),
        ({"variants": [{"label": "a", "overides": []}]}, "overides: unknown key"),
        ({"kind": "tabel"}, "kind: 'tabel' is not one of"),
        ({"volumes": [0]}, "volumes: 0 is not a positive integer"),
        ({"seeds": [1, 1]}, "repeated seeds"),
        ({"baseline": "nope"}, "baseline: 'nope' is not a variant label"),
        ({"paper": ["no_table"]}, "paper: no table 'no_table'"),
        ({"config": "no-such-config"}, "no config 'no-such-config'"),
        ({"variants": [{"label": "a"}, {"label": "a"}]}, "duplicate labels"),
        ({"kind": "scaling"}, "a scaling spec needs volumes"),
    ],
)
def test_bad_specs_are_rejected_with_the_field_named(over, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(_spec(**over), "spec.yaml")


def test_a_bad_override_names_the_cell():
    spec = parse_spec(_spec(variants=[{"label": "x", "overrides": ["intermediate.taks=[mnli]"]}]), "spec.yaml")
    with pytest.raises(ConfigError, match="variant x.*taks"):
        expand(spec)


def test_graph_trains_each_intermediate_checkpoint_once_and_shares_it(tmp_path):
    g = build_graph("xstilts-table", tmp_path)
    kinds = [n.kind for n in g.nodes.values()]
    assert kinds.count("intermediate") == 9
    assert kinds.count("target") == 10 * 7 and kinds.count("retrieval") == 10 * 2
    for key, n in g.nodes.items():
        if n.kind == "intermediate":
            users = [m for m in g.nodes.values() if m.upstream == key]
            assert len(users) == 7 + 2  # every target and retrieval run of that variant starts from it
        if n.kind in ("target", "retrieval"):
            assert n.upstream is None or g.nodes[n.upstream].kind == "intermediate"
        spec = json.loads(json.dumps(n.key))  # keys are full sha256 hex digests
        assert len(spec) == 64
    # the two XTREME specs share every run: one output folder trains each once
    g2 = build_graph("xstilts-submission", tmp_path)
    assert set(g2.nodes) == set(g.nodes)
    # dependency order: every node comes after its upstream
    order = list(g.nodes)
    assert all(n.upstream is None or order.index(n.upstream) < order.index(k) for k, n in g.nodes.items())


def test_dry_run_lists_states_and_gpu_hours(tmp_path, capsys):
    g = build_graph("xstilts-table", tmp_path)
    nodes = [n for n in g.nodes.values() if n.kind == "intermediate"]
    (tmp_path / nodes[0].run_dir).mkdir(parents=True)
    (tmp_path / nodes[0].run_dir / "done.json").write_text("{}")
    (tmp_path / nodes[1].run_dir).mkdir(parents=True)
    (tmp_path / nodes[1].run_dir / "checkpoint.pt").write_bytes(b"x")
    assert (
        cli(["reproduce", "xstilts-table", "--dry-run", "--out", str(tmp_path), "--card", "a100", "--mfu", "0.5"]) == 0
    )
    text = capsys.readouterr().out
    assert "1 done, 1 resumable, 97 pending" in text
    # the paper recipe trains in fp32 (DeepSpeed ZeRO-2 without bf16): A100 FP32 peak, not its tensor cores
    assert "MFU 0.5" in text and "dense peak FP32 19.5 TFLOP/s [" in text and "A100" in text
    rows = [l.split() for l in text.splitlines() if l.split() and l.split()[0] in ("done", "resumable", "pending")]
    assert {r[-2] for r in rows if r[1] in ("intermediate", "target")} == {"fp32"}
    total = float(text.split("estimated GPU-hours: ")[1].split(" ")[0])
    still = float(text.split(" in all, ")[1].split(" ")[0])
    assert 0 < still < total
    assert not any(p.name.startswith("sweep-") for p in tmp_path.iterdir()), "a dry run must not write the sweep file"


def test_gpu_hour_arithmetic():
    # 6 N D / (peak x MFU): XLM-R Large (560M) on 1e9 tokens on an H100 at 25% MFU
    expect = 6 * 560e6 * 1e9 / (989.4e12 * 0.25) / 3600
    assert gpu_hours(560e6, 1e9, "h100", 0.25) == pytest.approx(expect)
    assert gpu_hours(560e6, 1e9, "a100", 0.25) == pytest.approx(expect * 989.4 / 312)
    assert CARDS["h200"].peak_dense_tflops == CARDS["h100"].peak_dense_tflops
    # fp32 on CUDA cores: 989.4 / 67 (H100) and 312 / 19.5 (A100) times the bf16 estimate
    assert gpu_hours(560e6, 1e9, "h100", 0.25, "fp32") == pytest.approx(expect * 989.4 / 67)
    assert gpu_hours(560e6, 1e9, "a100", 0.25, "fp32") == pytest.approx(expect * 989.4 / 19.5)
    with pytest.raises(KeyError, match="precision 'fp8'"):
        gpu_hours(1e6, 1e6, "h100", 0.25, "fp8")
    from xlrepro.config import ModelConfig

    tiny = ModelConfig(
        init_config={
            "hidden_size": 8,
            "num_hidden_layers": 1,
            "intermediate_size": 16,
            "max_position_embeddings": 10,
            "type_vocab_size": 1,
            "num_attention_heads": 2,
        }
    )
    # embeddings (100 + 10 + 1) x 8 + LayerNorm 2*8; one layer: 4*64 + 4*8 + 2*8*16 + 16 + 8 + 4*8
    assert param_count(tiny, vocab_size=100) == 111 * 8 + 16 + (256 + 32 + 256 + 16 + 8 + 32)
    with pytest.raises(ValueError):
        gpu_hours(1e6, 1e6, "h100", 0)
    with pytest.raises(KeyError, match="unknown card"):
        gpu_hours(1e6, 1e6, "v100")


def test_train_precision_follows_the_engine_and_the_deepspeed_config():
    from xlrepro.config import TrainConfig
    from xlrepro.estimate import train_precision

    assert train_precision(TrainConfig()) == "fp32"  # torch engine: fp32, no autocast
    assert train_precision(TrainConfig(engine="deepspeed", deepspeed="zero2")) == "fp32"
    assert train_precision(TrainConfig(engine="deepspeed", deepspeed="zero3-bf16")) == "bf16"
    assert train_precision(TrainConfig(engine="deepspeed", deepspeed="zero2-fp16")) == "fp16"


def test_paper_numbers_keep_sources_tolerances_and_gaps():
    p = load_paper_numbers()
    x = p["tables"]["xtreme_test"]["entries"]
    xnli = next(e for e in x if e["system"] == "xlmr_large" and e["task"] == "xnli")
    assert (xnli["value"], xnli["tag"], xnli["tolerance"]) == (79.2, "S", 1.0) and xnli["source"] in p["sources"]
    gaps = [e for e in x if e["status"] == "gap"]
    assert {(e["task"], e["metric"]) for e in gaps} >= {("bucc2018", "f1"), ("tatoeba", "accuracy")}
    val = {(e["system"], e["task"], e["metric"]): e for e in x}
    # both X-STILTs rows with their sources; EM known from the leaderboard; no mixed-source POS
    assert (
        val[("xstilts_best", "udpos", "f1")]["value"] == 74.9
        and val[("xstilts_best", "udpos", "f1")]["source"] == "rembert16"
    )
    assert [val[("xstilts_best", t, "exact_match")]["value"] for t in ("xquad", "mlqa", "tydiqa")] == [63.3, 53.7, 59.5]
    assert (
        val[("xstilts_mt5", "xnli", "accuracy")]["value"] == 80.4
        and val[("xstilts_mt5", "xnli", "accuracy")]["tag"] == "S"
    )
    assert {val[("xlmr_large", "udpos", "f1")]["value"], val[("xlmr_large_rembert_t7", "udpos", "f1")]["value"]} == {
        73.8,
        72.6,
    }
    assert not any(e["source"] == "mt5" and e["tag"] == "C" for e in x)
    band = p["tables"]["tatoeba_layer14"]["entries"][0]
    assert (band["value"], band["task"]) == (31.0, "tatoeba") and band["value"] + band["tolerance"] < 57.3 - 2
    grid = p["tables"]["intermediate_x_target"]["entries"]
    assert len(grid) == 10 * 9 and all(e["value"] is None for e in grid)  # the main table is not known
    for t in p["tables"].values():
        for e in t["entries"]:
            assert (e["value"] is None) == (e["status"] == "gap")
            if e["value"] is not None:
                assert e["tag"] in "CSRD" and e["source"] and e["tolerance"] >= 0
    assert mark(79.9, xnli) == "pass" and mark(80.3, xnli) == "deviation" and mark(None, xnli) == "not run"
    assert mark(50.0, gaps[0]) == "no reference"


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {
                "system": "s",
                "task": "xnli",
                "metric": "accuracy",
                "value": 1.0,
                "tag": "Q",
                "source": "a",
                "tolerance": 1,
            },
            "tag: expected one of",
        ),
        (
            {
                "system": "s",
                "task": "xnli",
                "metric": "accuracy",
                "value": 1.0,
                "tag": "C",
                "source": "zz",
                "tolerance": 1,
            },
            "source: 'zz' is not a key",
        ),
        ({"system": "s", "task": "xnli", "metric": "accuracy", "value": 1.0, "tag": "C", "source": "a"}, "tolerance"),
        (
            {"system": "s", "task": "xnli", "metric": "accuracy", "value": 1.0, "status": "gap"},
            "a gap must have value null",
        ),
        ({"system": "s", "task": "xnli", "metric": "accuracy", "valeu": 1.0}, "unknown keys"),
        ({"system": "t", "task": "xnli", "metric": "accuracy", "value": None}, "not one of the table's rows"),
    ],
)
def test_bad_paper_numbers_are_rejected(entry, message):
    data = {
        "sources": {"a": "src"},
        "tables": {"t": {"title": "T", "split": "test", "rows": {"s": "baseline"}, "entries": [entry]}},
    }
    with pytest.raises(ConfigError, match=message):
        parse_paper_numbers(data, "paper_numbers.yaml")


def test_reproduce_rejects_sweep_options_for_a_plain_config(capsys):
    assert cli(["reproduce", "smoke", "--executor", "slurm"]) == 2
    assert "applies to experiment specs" in capsys.readouterr().err


def test_reproduce_tells_specs_from_configs(tmp_path):
    from xlrepro.study.spec import is_spec

    cfg = tmp_path / "mine.yaml"
    cfg.write_text("name: mine\nseed: 1\n")
    spec = tmp_path / "study.yaml"
    spec.write_text(yaml.safe_dump(_spec()))
    assert is_spec("xstilts-table") and is_spec(str(spec))
    assert not is_spec("smoke") and not is_spec(str(cfg)) and not is_spec("xstilts-squad")
    assert set(shipped_specs()).isdisjoint(
        {p.stem for p in (Path(__file__).parents[2] / "xlrepro" / "configs").glob("*.yaml")}
    )
