"""Registry facts live in the task YAML files; code dispatches on their fields, never on a task's name.

* an AST scan of every module under ``xlrepro/`` for comparisons and membership tests against task
  names (string literals, or module-level tuples/sets/dicts of them);
* a task file with a missing or invalid dispatch field fails with its file and field named;
* the one headline rule picks, for every task, the metric the former fixed rule picked;
* a renamed copy of a task is scored, written and itemised like the task itself.
"""

import ast
import dataclasses
import json
from pathlib import Path

import pytest

import xlrepro
from xlrepro.data.types import MultipleChoiceExample
from xlrepro.errors import ConfigError
from xlrepro.tasks.registry import (
    DEFAULT_HEADLINE,
    EVALUATORS,
    all_tasks,
    benchmark_tasks,
    get_task,
    headline_metric,
    headline_metrics,
    headline_value,
    load_task_file,
)

PACKAGE = Path(xlrepro.__file__).parent

#: (module, task name) pairs still compared by name, each with the reason; a name that is data
#: (a default, a folder) is not a comparison and needs no entry. Empty: keep it so.
ALLOWED: dict = {}


def _names_in(node, consts: dict, names: set) -> set:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & names
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(set(), *(_names_in(e, {}, names) for e in node.elts))
    if isinstance(node, ast.Dict):
        return set().union(set(), *(_names_in(k, {}, names) for k in node.keys if k is not None))
    if isinstance(node, ast.Name):
        return consts.get(node.id, set())
    if isinstance(node, ast.BinOp):  # _QA + ("mewslix",)
        return _names_in(node.left, consts, names) | _names_in(node.right, consts, names)
    return set()


def name_comparisons(source: str, names: set) -> list[tuple[int, str]]:
    """(line, task name) for every ``==``, ``!=``, ``in``, ``not in`` with a task name on either side:
    a string literal, a literal collection holding one, or a module-level constant bound to one."""
    tree = ast.parse(source)
    consts: dict = {}
    for st in tree.body:
        if (
            isinstance(st, (ast.Assign, ast.AnnAssign))
            and st.value is not None
            and not isinstance(st.value, ast.Constant)
        ):
            found = _names_in(st.value, consts, names)
            for t in st.targets if isinstance(st, ast.Assign) else [st.target]:
                if found and isinstance(t, ast.Name):
                    consts[t.id] = found
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            for i, op in enumerate(node.ops):
                if isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
                    for n in sorted(_names_in(sides[i], consts, names) | _names_in(sides[i + 1], consts, names)):
                        out.append((node.lineno, n))
    return out


def test_the_scan_finds_every_form_of_a_name_test():
    names = {"xcopa", "lareqa", "mlqa"}
    src = (
        'A = ("xcopa",)\nB = A + ("mlqa",)\nD = {"lareqa": 1}\n'
        "def f(task, spec):\n"
        '    if task == "xcopa": pass\n'
        '    if "lareqa" != task: pass\n'
        '    if task in ("mlqa", "x"): pass\n'
        "    if task not in B: pass\n"
        "    if task in D: pass\n"
        '    if spec.evaluator == "qa_mlqa": pass\n'  # a field value, not a name
        '    g("xcopa")\n'
    )  # a name passed as data, not compared
    assert name_comparisons(src, names) == [
        (5, "xcopa"),
        (6, "lareqa"),
        (7, "mlqa"),
        (8, "mlqa"),
        (8, "xcopa"),
        (9, "lareqa"),
    ]


def test_no_module_compares_a_task_name():
    names = set(all_tasks())
    found, used = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        for line, name in name_comparisons(path.read_text(encoding="utf-8"), names):
            if (rel, name) in ALLOWED:
                used.add((rel, name))
            else:
                found.append(f"{rel}:{line}: compares the task name {name!r}; dispatch on a registry field instead")
    assert not found, "\n".join(found)
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"allow-list entries no longer needed, remove them: {stale}"


def test_no_evaluator_or_converter_value_is_a_task_name():
    # else a test of a field value would read as a test of a name (and the scan could not tell)
    from xlrepro.tasks.registry import HUB_CONVERTERS, PREDICTION_FILES

    assert not (set(EVALUATORS) | set(HUB_CONVERTERS) | set(PREDICTION_FILES)) & set(all_tasks())


# ---------------------------------------------------------------------- YAML validation

XNLI = (PACKAGE / "tasks" / "xnli.yaml").read_text(encoding="utf-8")
WHERE = "xlrepro/tasks/xnli.yaml"


def _edit(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    "old, new, field",
    [
        ("evaluator: accuracy", "", "evaluator: missing"),
        ("prediction_file: tsv", "", "prediction_file: missing"),
        ("headline: [accuracy]", "", "headline: missing"),
        ("evaluator: accuracy", "evaluator: acuracy", "evaluator: 'acuracy' is not one of"),
        ("prediction_file: tsv", "prediction_file: csv", "prediction_file: 'csv' is not one of"),
        ("headline: [accuracy]", "headline: [f1]", "headline: ['f1'] must be distinct metrics of the evaluator"),
        ("headline: [accuracy]", "headline: []", "headline: expected a non-empty list"),
        (
            "  xtreme_r: {position: 1, groups: [classification], group: classification, in_average: true}\n",
            "",
            "scoring.xtreme_r: missing",
        ),
        ("xtreme: {position: 2,", "xtreme: {position: 0,", "scoring.xtreme.position: expected a positive integer"),
        (
            "xtreme: {position: 2, groups: [classification]",
            "xtreme: {position: 2, groups: [multi_choice]",
            "scoring.xtreme.groups: expected a list of",
        ),
        (
            "group: classification, in_average: true}\n  xtreme_r",
            "group: nli, in_average: true}\n  xtreme_r",
            "scoring.xtreme.group: 'nli' is not one of",
        ),
        (
            "in_average: true}\n  xtreme_r",
            "in_average: yes please}\n  xtreme_r",
            "scoring.xtreme.in_average: expected true or false",
        ),
        ("in_average: true}\n  xtreme_r", "}\n  xtreme_r", "scoring.xtreme.in_average: missing"),
        (
            "in_average: true}\n  xtreme_r",
            "in_average: true, weight: 2}\n  xtreme_r",
            "scoring.xtreme: unknown key 'weight'",
        ),
        ("benchmarks: [xtreme, xtreme_r]", "benchmarks: [xtreme]", "scoring.xtreme_r: not a scored benchmark"),
    ],
)
def test_a_bad_dispatch_field_names_the_file_and_field(old, new, field):
    with pytest.raises(ConfigError) as e:
        load_task_file(_edit(XNLI, old, new), WHERE)
    assert str(e.value).startswith(WHERE) and field in str(e.value)


def test_the_xnli_file_itself_loads():
    spec = load_task_file(XNLI, WHERE)
    assert (spec.evaluator, spec.prediction_file, spec.headline) == ("accuracy", "tsv", ("accuracy",))
    assert spec.scoring["xtreme_r"] == {
        "position": 1,
        "groups": ("classification",),
        "group": "classification",
        "in_average": True,
    }


def test_no_per_file_metric_cannot_count_in_a_total():
    text = (PACKAGE / "tasks" / "lareqa.yaml").read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lareqa.yaml: scoring.xtreme_r.in_average: true needs a per-file metric"):
        load_task_file(_edit(text, "in_average: false", "in_average: true"), "xlrepro/tasks/lareqa.yaml")


def test_train_size_comes_from_sizes_and_must_agree_with_it():
    text = (PACKAGE / "tasks" / "pawsx.yaml").read_text(encoding="utf-8")
    where = "xlrepro/tasks/pawsx.yaml"
    line = next(l for l in text.splitlines(keepends=True) if l.startswith("train_size:"))
    derived = load_task_file(text.replace(line, ""), where).train_size
    assert derived["examples"] == 49401 and "Yang et al. 2019" in derived["source"]
    with pytest.raises(ConfigError, match=r"pawsx.yaml: train_size.examples 49175 differs from sizes.train.en 49401"):
        load_task_file(text.replace("examples: 49401", "examples: 49175"), where)


def test_a_bad_hub_converter_is_named():
    text = (PACKAGE / "tasks" / "mewslix.yaml").read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match=r"mewslix.yaml hub.converter: 'mentions' is not one of"):
        load_task_file(_edit(text, "converter: mewslix_mentions", "converter: mentions"), "xlrepro/tasks/mewslix.yaml")


# ---------------------------------------------------------------------- what the fields encode


def test_benchmark_order_and_groups_are_evaluate_py_s():
    # google-research/xtreme evaluate.py TASK2LANGS / XTREME_R_TASK2LANGS / GROUP2TASK
    from xlrepro.metrics.aggregate import categories, in_average, script_groups

    assert benchmark_tasks("xtreme") == (
        "pawsx",
        "xnli",
        "panx",
        "udpos",
        "bucc2018",
        "tatoeba",
        "xquad",
        "mlqa",
        "tydiqa",
    )
    assert benchmark_tasks("xtreme_r") == (
        "xnli",
        "panx",
        "udpos",
        "tatoeba",
        "xcopa",
        "lareqa",
        "mewslix",
        "xquad",
        "mlqa",
        "tydiqa",
    )
    assert script_groups("xtreme") == {
        "classification": ("pawsx", "xnli"),
        "tagging": ("panx", "udpos"),
        "qa": ("xquad", "mlqa", "tydiqa"),
        "retrieval": ("bucc2018", "tatoeba"),
    }
    assert script_groups("xtreme_r") == {
        "classification": ("xnli", "xcopa"),
        "tagging": ("panx", "udpos"),
        "qa": ("xquad", "mlqa", "tydiqa"),
        "retrieval": ("tatoeba", "mewslix"),
        "multi_choice": ("xcopa",),
    }
    assert categories("xtreme_r") == {
        "classification": ("xnli", "xcopa"),
        "structured": ("panx", "udpos"),
        "qa": ("xquad", "mlqa", "tydiqa"),
        "retrieval": ("tatoeba", "lareqa", "mewslix"),
    }
    assert in_average("xtreme_r") == tuple(t for t in benchmark_tasks("xtreme_r") if t != "lareqa")


def _former_rule(scores) -> str | None:
    # the fixed rule of pipeline.main_metric / sweep_report._main_metric before the headline field
    return next((m for m in ("f1", "accuracy", "map@20") if m in scores), None)


@pytest.mark.parametrize("task", sorted(all_tasks()))
def test_the_headline_rule_picks_the_former_metric_for_every_task(task):
    spec = get_task(task)
    reported = EVALUATORS[spec.evaluator]  # the keys the task's scorer returns
    assert headline_metric(task, reported) == _former_rule(reported) == spec.headline[0]
    scores = {m: float(i) for i, m in enumerate(reported)}
    assert headline_value(task, scores) == scores[_former_rule(scores)]


def test_the_headline_rule_for_qa_and_unknown_names():
    assert headline_metrics("mlqa") == ("f1", "exact_match")
    assert headline_metric("mlqa", {"exact_match", "f1"}) == "f1"
    assert headline_metric("xnli", {"f1"}) is None  # xnli's headline is accuracy, whatever else is there
    assert headline_metrics("not_a_task") == DEFAULT_HEADLINE
    assert headline_metric("not_a_task", {"map@20", "accuracy"}) == "accuracy"
    with pytest.raises(KeyError, match="task xnli: no headline metric"):
        headline_value("xnli", {"f1": 1.0})


def test_report_columns_lead_with_the_headline():
    from xlrepro.report import metric_columns

    assert metric_columns("xquad", {"exact_match", "f1"}) == ["f1", "exact_match"]
    assert metric_columns("udpos", {"token_accuracy", "recall", "f1", "precision"}) == [
        "f1",
        "precision",
        "recall",
        "token_accuracy",
    ]
    assert metric_columns("mewslix", {"map@20"}) == ["map@20"]


# ---------------------------------------------------------------------- a renamed task behaves the same


@pytest.fixture
def xcopa_copy(monkeypatch):
    spec = dataclasses.replace(get_task("xcopa"), name="xcopa_copy")
    monkeypatch.setitem(all_tasks(), "xcopa_copy", spec)
    return spec


def test_a_renamed_task_is_written_and_scored_by_its_fields(tmp_path, xcopa_copy):
    from xlrepro.items import item_scores
    from xlrepro.metrics import score_language
    from xlrepro.submission import label_text, prediction_text, submission_path

    ex = [MultipleChoiceExample(str(i), "premise", ["a", "b"], lab) for i, lab in enumerate([0, 1, 1, 0])]
    pred = [0, 1, 0, 0]
    ppath = submission_path(tmp_path / "pred", "xcopa_copy", "test", "et")
    gpath = submission_path(tmp_path / "gold", "xcopa_copy", "test", "et")
    assert ppath.name == "test-et.jsonl"
    for path, text in (
        (ppath, prediction_text("xcopa_copy", xcopa_copy.format, pred, ex)),
        (gpath, label_text("xcopa_copy", xcopa_copy.format, ex)),
    ):
        path.parent.mkdir(parents=True)
        path.write_text(text, encoding="utf-8")
    assert json.loads(ppath.read_text(encoding="utf-8").splitlines()[0]) == {"idx": 0, "label": 0}
    assert score_language("xcopa_copy", str(ppath), str(gpath), "et")["accuracy"] == 75.0
    assert item_scores(xcopa_copy, "multiple_choice", pred, ex, "et", "official")["scores"] == [
        100.0,
        100.0,
        0.0,
        100.0,
    ]


def test_a_renamed_qa_task_uses_its_evaluator(monkeypatch):
    from xlrepro.metrics import qa_score

    monkeypatch.setitem(all_tasks(), "mlqa_copy", dataclasses.replace(get_task("mlqa"), name="mlqa_copy"))
    data = [
        {
            "title": "",
            "paragraphs": [
                {
                    "context": "北京市",
                    "qas": [{"id": "q", "question": "?", "answers": [{"text": "北京", "answer_start": 0}]}],
                }
            ],
        }
    ]
    # MLQA's language-aware normalisation splits Chinese into characters: partial credit, unlike SQuAD's
    copy, mlqa = (qa_score({"q": "北京市"}, data, t, "zh")["f1"] for t in ("mlqa_copy", "mlqa"))
    assert copy == mlqa > 0
    with pytest.raises(ValueError, match="scored by 'accuracy', not a QA scorer"):
        qa_score({"q": "x"}, data, "xnli", "en")
