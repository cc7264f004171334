"""The run graph (xlrepro.phases): hidden trainings are nodes, each node's spec is computed once and
is the spec it runs with, a single run and a sweep key the same nodes, and a new target task of an
existing format is one YAML file."""

import importlib.resources
import re

import pytest
from mini import WORLD

from xlrepro.cli import main as cli
from xlrepro.config import config_hash, load_config
from xlrepro.errors import ConfigError
from xlrepro.phases import Context
from xlrepro.phases.graph import build_graph
from xlrepro.phases.orchestrator import run_experiment

MINI = WORLD + [
    "pretrain.steps=4",
    "intermediate.train.max_steps=2",
    "intermediate.train.eval_every_steps=2",
    "target.train.max_steps=2",
    "target.train.eval_every_steps=2",
    "controls=[]",
    "retrieval.tasks=[]",
    "target.eval_splits=[dev]",
    "target.per_task={squad: {max_seq_length: 128, doc_stride: 64, max_query_length: 32}}",
    "retrieval.dual_encoder.train.max_steps=2",
    "retrieval.dual_encoder.train.eval_every_steps=2",
    "retrieval.dual_encoder.per_task={}",
]
XTREME_R = ["target.tasks=[xcopa, xnli]", "retrieval.tasks=[tatoeba, lareqa]", "retrieval.benchmark=xtreme_r"]


def _graph(tmp_path, overrides):
    ctx = Context(load_config("smoke", MINI + overrides), tmp_path)
    ctx.prepare()
    return build_graph(ctx)


def test_the_graph_holds_the_trainings_inside_target_and_retrieval_phases(tmp_path):
    g = _graph(tmp_path, XTREME_R + ["controls=[xnli]"])
    by = {(n.kind, n.task): n for n in g}
    inter = by[("intermediate", "hellaswag")]
    assert by[("intermediate", "hellaswag")].upstream == by[("pretrain", "mlm")].key
    # XCOPA trains Social IQa first; the target starts from that stage, which starts from the intermediate encoder
    assert by[("chain", "socialiqa")].upstream == inter.key
    assert by[("target", "xcopa")].upstream == by[("chain", "socialiqa")].key
    assert by[("target", "xcopa")].spec["upstream"] == by[("chain", "socialiqa")].ref()
    # XTREME-R Tatoeba reads a SQuAD-fine-tuned encoder; LAReQA a dual encoder
    assert by[("retrieval", "tatoeba")].upstream == by[("squad_mrc", "squad")].key
    assert by[("squad_mrc", "squad")].upstream == inter.key
    assert by[("retrieval", "lareqa")].upstream == by[("dual_encoder", "lareqa")].key
    # the control of xnli is its own node with its own key
    assert by[("control", "xnli")].key != by[("target", "xnli")].key
    # every node's key is its spec's hash, upstream first
    seen = set()
    for n in g:
        assert n.key == config_hash(n.spec) and (n.upstream is None or n.upstream in seen)
        seen.add(n.key)
    # the SQuAD dual encoder of Tatoeba is the LAReQA one: one node, not two
    g2 = _graph(tmp_path, XTREME_R + ["retrieval.encoder={tatoeba: squad_dual_encoder}"])
    assert [n.kind for n in g2].count("dual_encoder") == 1
    assert g2.find("retrieval", "tatoeba").upstream == g2.find("dual_encoder", "lareqa").key


@pytest.mark.slow
def test_each_node_spec_is_computed_once_and_is_the_spec_it_runs_with(tmp_path, monkeypatch):
    from xlrepro.phases.chain import Chain
    from xlrepro.phases.dual_encoder import DualEncoderTraining, DualRetrieval
    from xlrepro.phases.intermediate import Intermediate
    from xlrepro.phases.pretrain import Pretrain
    from xlrepro.phases.retrieval import Retrieval
    from xlrepro.phases.squad_mrc import SquadMrc
    from xlrepro.phases.target import Target

    calls: list[str] = []

    def counted(orig):
        def spec(self, ctx, upstream):
            s = orig(self, ctx, upstream)
            calls.append(config_hash(s))
            return s

        return spec

    for cls in (Pretrain, Intermediate, Chain, Target, Retrieval, SquadMrc, DualEncoderTraining, DualRetrieval):
        monkeypatch.setattr(cls, "spec", counted(cls.spec))
    res = run_experiment(load_config("smoke", MINI + XTREME_R + ["target.tasks=[xcopa]"]), tmp_path)
    assert sorted(calls) == sorted(set(calls)), "a node's spec was computed twice"
    assert set(calls) == set(res["runs"])  # every run of the experiment is a node of the graph, and only those
    kinds = {v["kind"] for v in res["runs"].values()}
    assert {"pretrain", "intermediate", "chain", "target", "squad_mrc", "dual_encoder", "retrieval"} == kinds
    for h, v in res["runs"].items():  # the run folder holds the spec the node was keyed by
        spec = __import__("json").loads((tmp_path / "runs" / v["dir"].split("/runs/")[-1] / "spec.json").read_text())
        assert config_hash(spec) == h


def test_a_sweep_and_a_single_run_key_the_same_nodes(tmp_path):
    from xlrepro import sweep
    from xlrepro.study.spec import expand, parse_spec

    overrides = MINI + XTREME_R
    spec = parse_spec(
        {
            "name": "t",
            "result": "r",
            "kind": "table",
            "config": "smoke",
            "overrides": overrides,
            "variants": [{"label": "hellaswag", "overrides": []}],
            "seeds": [1],
        },
        "t.yaml",
    )
    cells = expand(spec)
    graph = sweep.Graph(spec, cells, tmp_path, [])
    single = build_graph(sweep.cell_context(cells[0], tmp_path))
    assert list(graph.nodes) == [n.key for n in single]
    assert {k: (n.kind, n.task, n.run_dir, n.upstream) for k, n in graph.nodes.items()} == {
        n.key: (n.kind, n.task, n.run_dir, n.upstream) for n in single
    }
    assert {"chain", "squad_mrc", "dual_encoder"} <= {n.kind for n in graph.nodes.values()}


def test_the_dry_run_of_a_config_lists_every_run_with_its_estimate(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli(["reproduce", "smoke", "--dry-run", "--out", str(out), *MINI, *XTREME_R]) == 0
    text = capsys.readouterr().out
    rows = {(r[1], r[2]): r for r in (l.split() for l in text.splitlines()) if r and r[0] == "pending"}
    assert {
        ("chain", "socialiqa"),
        ("squad_mrc", "squad"),
        ("dual_encoder", "lareqa"),
        ("target", "xcopa"),
        ("retrieval", "tatoeba"),
    } <= set(rows)
    for trained in (("chain", "socialiqa"), ("squad_mrc", "squad"), ("dual_encoder", "lareqa"), ("target", "xcopa")):
        assert float(rows[trained][-3]) > 0  # training tokens (smoke-scale GPU-hours round to 0.00)
    assert float(rows[("retrieval", "tatoeba")][-3]) == 0  # evaluation only: no training tokens
    assert "estimated GPU-hours" in text
    assert not (out / "runs").exists(), "a dry run trains nothing"


# ---------------------------------------------------------------------- a new task is one YAML file


def _copy_of_pawsx(folder):
    text = (importlib.resources.files("xlrepro.tasks") / "pawsx.yaml").read_text(encoding="utf-8")
    folder.mkdir()
    text = text.replace("name: pawsx\n", "name: pawsx_copy\n", 1)
    # an added task is not one of the official benchmark's scored tasks: no scoring block
    text = re.sub(r"^scoring:.*\n(?:[ ].*\n)*", "", text, flags=re.M)
    (folder / "pawsx_copy.yaml").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.slow
def test_a_target_task_of_an_existing_format_is_one_yaml_file(tmp_path, monkeypatch):
    overrides = MINI + ["intermediate.tasks=[]", "pretrain.steps=2", "target.tasks=[pawsx]"]
    with pytest.raises(ConfigError, match="pawsx_copy"):  # not a task without the YAML
        load_config("smoke", overrides + ["target.tasks=[pawsx_copy]"])
    monkeypatch.setenv("XLREPRO_TASK_DIRS", str(_copy_of_pawsx(tmp_path / "tasks")))
    ctx = Context(load_config("smoke", overrides), tmp_path / "out")
    ctx.prepare()  # the smoke world, whose PAWS-X files the copy reads
    cfg = load_config(
        "smoke",
        overrides + ["target.tasks=[pawsx, pawsx_copy]", f"data.task_dirs={{pawsx_copy: {ctx.data_root / 'pawsx'}}}"],
    )
    ctx = Context(cfg, tmp_path / "out")
    ctx.prepare()
    g = build_graph(ctx)
    assert g.find("target", "pawsx_copy").upstream == g.find("pretrain", "mlm").key
    res = run_experiment(cfg, tmp_path / "out")
    by = {}
    for r in res["records"]:
        by.setdefault(r["task"], {})[(r["language"], r["split"], r["metric"])] = r["value"]
    assert by["pawsx_copy"] and by["pawsx_copy"] == by["pawsx"]  # same data, same seed: the same numbers


def test_task_folders_are_checked(tmp_path, monkeypatch):
    from xlrepro.tasks import all_tasks

    monkeypatch.setenv("XLREPRO_TASK_DIRS", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="XLREPRO_TASK_DIRS.*not a folder"):
        all_tasks()
    dup = tmp_path / "dup"
    dup.mkdir()
    text = (importlib.resources.files("xlrepro.tasks") / "pawsx.yaml").read_text()
    (dup / "pawsx.yaml").write_text(text)
    monkeypatch.setenv("XLREPRO_TASK_DIRS", str(dup))
    with pytest.raises(ConfigError, match="pawsx.yaml: scoring: a task added from XLREPRO_TASK_DIRS"):
        all_tasks()  # an added task cannot take a place in the official benchmark's scoring
    (dup / "pawsx.yaml").write_text(re.sub(r"^scoring:.*\n(?:[ ].*\n)*", "", text, flags=re.M))
    with pytest.raises(ConfigError, match="'pawsx' is already defined"):
        all_tasks()
