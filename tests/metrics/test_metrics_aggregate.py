"""Golden tests for task averages and benchmark aggregates (google-research/xtreme ``evaluate.py``;
the XTREME-R paper's Table 3; docs/metrics.md)."""

import pytest

from xlrepro.metrics import (
    task_average,
    xtreme_r_category_mean,
    xtreme_r_script_groups,
    xtreme_r_task_mean,
    xtreme_score,
)


def test_task_average_accuracy_ignores_bookkeeping_and_extra_languages():
    per_lang = {
        "en": {"accuracy": 80.0, "mode": "official"},
        "de": {"accuracy": 70.0, "mode": "official"},
        "xx": {"accuracy": 0.0, "mode": "official"},
    }
    out = task_average(per_lang, ["en", "de"], "xnli")
    # (80 + 70) / 2 = 75; 'xx' is not in the language list
    assert out["avg_accuracy"] == pytest.approx(75.0)
    assert out["avg_metric"] == pytest.approx(75.0)
    assert out["mode"] == "official"
    assert out["aggregator"] == "task_average" and "evaluate.py" in out["source"]


def test_task_average_qa_uses_mean_of_em_and_f1():
    per_lang = {
        "en": {"exact_match": 60.0, "f1": 80.0, "n_questions": 3},
        "de": {"exact_match": 50.0, "f1": 70.0, "n_questions": 5},
    }
    out = task_average(per_lang, ["en", "de"], "mlqa")
    # avg EM 55, avg F1 75 -> (55 + 75) / 2 = 65; n_questions is not averaged
    assert out["avg_exact_match"] == pytest.approx(55.0)
    assert out["avg_f1"] == pytest.approx(75.0)
    assert out["avg_metric"] == pytest.approx(65.0)
    assert "avg_n_questions" not in out


def test_task_average_metric_precedence():
    # f1 before accuracy (panx/udpos/bucc have f1, precision, recall)
    tag = task_average({"en": {"f1": 50.0, "precision": 40.0, "recall": 60.0, "accuracy": 90.0}}, ["en"], "udpos")
    assert tag["avg_metric"] == pytest.approx(50.0)
    # map@20 last (mewslix)
    assert task_average({"en": {"map@20": 30.0}}, ["en"], "mewslix")["avg_metric"] == pytest.approx(30.0)


def test_task_average_errors():
    with pytest.raises(ValueError, match="no scores for language"):
        task_average({"en": {"accuracy": 1.0}}, ["en", "de"], "xnli")
    with pytest.raises(ValueError, match="empty language list"):
        task_average({}, [], "lareqa")
    with pytest.raises(ValueError, match="different modes"):
        task_average(
            {"en": {"accuracy": 1.0, "mode": "official"}, "de": {"accuracy": 1.0, "mode": "corrected"}},
            ["en", "de"],
            "xnli",
        )
    with pytest.raises(ValueError, match="QA tasks need"):
        task_average({"en": {"f1": 1.0}}, ["en"], "xquad")


def _qa(em, f1, task):
    return task_average({"en": {"exact_match": em, "f1": f1}}, ["en"], task)


def _xlmr_xtreme():
    return {
        "xnli": 79.2,
        "pawsx": 86.4,
        "udpos": 72.6,
        "panx": 65.4,
        "xquad": _qa(60.8, 76.6, "xquad"),  # (76.6 + 60.8) / 2 = 68.7
        "mlqa": _qa(53.2, 71.6, "mlqa"),  # (71.6 + 53.2) / 2 = 62.4
        "tydiqa": _qa(45.0, 65.1, "tydiqa"),  # (65.1 + 45.0) / 2 = 55.05
        "bucc2018": 66.0,
        "tatoeba": 57.3,
    }


def test_xtreme_score_of_xlmr():
    out = xtreme_score(_xlmr_xtreme())
    # (79.2 + 86.4 + 72.6 + 65.4 + 68.7 + 62.4 + 55.05 + 66.0 + 57.3) / 9 = 613.05 / 9 = 68.1167
    assert out["all_task"] == pytest.approx(68.12, abs=0.01)
    assert out["all_task"] == pytest.approx(613.05 / 9)
    assert out["classification"] == pytest.approx((86.4 + 79.2) / 2)  # 82.8
    assert out["tagging"] == pytest.approx((72.6 + 65.4) / 2)  # 69.0
    assert out["qa"] == pytest.approx((68.7 + 62.4 + 55.05) / 3)  # 62.05
    assert out["retrieval"] == pytest.approx((66.0 + 57.3) / 2)  # 61.65
    assert out["aggregator"] == "xtreme_score" and "evaluate.py" in out["source"]


def test_xtreme_score_needs_all_tasks_for_all_task():
    avgs = _xlmr_xtreme()
    del avgs["pawsx"]
    out = xtreme_score(avgs)
    assert "all_task" not in out and "classification" not in out
    assert out["tagging"] == pytest.approx(69.0)


def _xlmr_xtreme_r(with_lareqa=True):
    avgs = {
        "xnli": 79.2,
        "xcopa": 69.2,
        "udpos": 75.0,
        "panx": 64.4,
        "xquad": _qa(61.6, 77.2, "xquad"),  # 69.4
        "mlqa": _qa(54.2, 72.7, "mlqa"),  # 63.45
        "tydiqa": _qa(45.8, 64.3, "tydiqa"),  # 55.05
        "mewslix": 45.7,
        "tatoeba": 77.3,
    }
    if with_lareqa:
        avgs["lareqa"] = 40.7
    return avgs


def test_xtreme_r_category_mean_reproduces_paper_65_27():
    out = xtreme_r_category_mean(_xlmr_xtreme_r())
    # classification (79.2 + 69.2)/2 = 74.2; structured (75.0 + 64.4)/2 = 69.7;
    # qa (69.4 + 63.45 + 55.05)/3 = 62.633; retrieval (77.3 + 45.7 + 40.7)/3 = 54.567
    # -> (74.2 + 69.7 + 62.633 + 54.567)/4 = 261.1/4 = 65.275
    assert out["classification"] == pytest.approx(74.2)
    assert out["structured"] == pytest.approx(69.7)
    assert out["qa"] == pytest.approx(187.9 / 3)
    assert out["retrieval"] == pytest.approx(163.7 / 3)
    assert out["score"] == pytest.approx(65.27, abs=0.01)
    assert out["aggregator"] == "xtreme_r_category_mean" and "2104.07412" in out["source"]
    with pytest.raises(ValueError, match="lareqa"):
        xtreme_r_category_mean(_xlmr_xtreme_r(with_lareqa=False))


def test_xtreme_r_task_mean_is_not_the_paper_number():
    # 79.2 + 69.2 + 75.0 + 64.4 + 69.4 + 63.45 + 55.05 + 45.7 + 40.7 + 77.3 = 639.4 -> /10 = 63.94
    out = xtreme_r_task_mean(_xlmr_xtreme_r())
    assert out["score"] == pytest.approx(63.94)
    assert out["includes_lareqa"] is True
    assert out["aggregator"] == "xtreme_r_task_mean" and "xlrepro" in out["source"]
    # without lareqa: (639.4 - 40.7) / 9 = 66.522
    out = xtreme_r_task_mean(_xlmr_xtreme_r(with_lareqa=False))
    assert out["score"] == pytest.approx(598.7 / 9)
    assert out["includes_lareqa"] is False
    avgs = _xlmr_xtreme_r()
    del avgs["xcopa"]
    with pytest.raises(ValueError, match="xcopa"):
        xtreme_r_task_mean(avgs)


def test_xtreme_r_script_groups():
    out = xtreme_r_script_groups(_xlmr_xtreme_r())
    assert out["classification"] == pytest.approx(74.2)
    assert out["retrieval"] == pytest.approx((77.3 + 45.7) / 2)  # no lareqa in the script's group
    assert out["multi_choice"] == pytest.approx(69.2)
    assert "all_task" not in out and "score" not in out
