"""score_folder over small XTREME / XTREME-R submission folders written to tmp_path, read as
google-research/xtreme's ``evaluate.py`` reads them (docs/metrics.md). Every expected value is
derived in the comments."""

import json

import pytest

from xlrepro.metrics import read_label, read_squad, read_tag, read_xcopa, score_folder, score_language

XTREME_LANGS = {
    "pawsx": ["de"],
    "xnli": ["en", "de"],
    "panx": ["en"],
    "udpos": ["en"],
    "bucc2018": ["de"],
    "tatoeba": ["de"],
    "xquad": ["zh"],
    "mlqa": ["zh"],
    "tydiqa": ["en"],
}

QA_LABEL = {
    "version": "1.1",
    "data": [
        {
            "title": "t",
            "paragraphs": [
                {
                    "context": "北京 上海",
                    "qas": [
                        {"id": "q1", "question": "?", "answers": [{"text": "北京", "answer_start": 0}]},
                        {"id": "q2", "question": "?", "answers": [{"text": "上海", "answer_start": 3}]},
                    ],
                }
            ],
        }
    ],
}
QA_PRED = {"q1": "北京市", "q2": "上海"}
# TyDiQA label as a bare list (read_squad returns it unchanged)
TYDI_LABEL = [
    {
        "paragraphs": [
            {
                "context": "c",
                "qas": [
                    {"id": "t1", "answers": [{"text": "The Beatles", "answer_start": 0}]},
                    {"id": "t2", "answers": [{"text": "1969", "answer_start": 0}]},
                ],
            }
        ]
    }
]
TYDI_PRED = {"t1": "beatles", "extra": "ignored"}


def _write(root, task, lang, ext, content):
    d = root / task
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"test-{lang}.{ext}"
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return path


def _xtreme_folders(tmp_path):
    pred, gold = tmp_path / "pred", tmp_path / "gold"
    _write(gold, "pawsx", "de", "tsv", "1\n0\n1\n0\n")
    _write(pred, "pawsx", "de", "tsv", "1\n1\n1\n0\n")  # 3/4 -> 75
    _write(gold, "xnli", "en", "tsv", "entailment\r\nneutral\r\n")  # CRLF stripped
    _write(pred, "xnli", "en", "tsv", "entailment \nneutral\n")  # trailing space stripped -> 100
    _write(gold, "xnli", "de", "tsv", "contradiction\nneutral\n")
    _write(pred, "xnli", "de", "tsv", "neutral\nneutral\n")  # 1/2 -> 50; avg 75
    _write(gold, "panx", "en", "tsv", "B-PER\nI-PER\nO\n\nB-LOC\n")
    _write(pred, "panx", "en", "tsv", "B-PER\nI-PER\nO\n\nO\n")
    # gold (PER,0,1) (LOC,4,4); pred (PER,0,1): P 100, R 50, F1 2/3
    _write(gold, "udpos", "en", "tsv", "NOUN\nNOUN\nVERB\n")
    _write(pred, "udpos", "en", "tsv", "NOUN\nNOUN\nADJ\n")
    # gold (NOUN,0,1) (VERB,2,2); pred (NOUN,0,1) (ADJ,2,2): 1 of 2 each way -> 50
    _write(gold, "bucc2018", "de", "tsv", "de1\ten1\nde2\ten2\n")
    _write(pred, "bucc2018", "de", "tsv", "de1\ten1\nde3\ten3\n")  # 1 of 2 / 1 of 2 -> 50
    _write(gold, "tatoeba", "de", "tsv", "0\n1\n2\n3\n")
    _write(pred, "tatoeba", "de", "tsv", "0\n1\n3\n2\n")  # 2/4 -> 50
    for task in ("xquad", "mlqa"):
        _write(gold, task, "zh", "json", QA_LABEL)
        _write(pred, task, "zh", "json", QA_PRED)
    # xquad (SQuAD rules): q1 北京市 vs 北京 EM 0 F1 0; q2 EM 1 F1 1 -> EM 50, F1 50 -> 50
    # mlqa (zh rules): q1 EM 0 F1 0.8; q2 1/1 -> EM 50, F1 90 -> 70
    _write(gold, "tydiqa", "en", "json", TYDI_LABEL)
    _write(pred, "tydiqa", "en", "json", TYDI_PRED)
    # t1 'beatles' == norm('The Beatles') -> 1/1; t2 unanswered -> 0 -> EM 50, F1 50 -> 50
    (pred / "not_a_task").mkdir()  # ignored: only tasks of task2langs are read
    return pred, gold


def test_score_folder_xtreme_end_to_end(tmp_path):
    pred, gold = _xtreme_folders(tmp_path)
    out = score_folder(str(pred), str(gold), "xtreme", XTREME_LANGS)
    d = out["detailed"]
    assert d["pawsx"]["accuracy"] == {"de": pytest.approx(75.0)}
    assert d["xnli"]["accuracy"] == {"en": pytest.approx(100.0), "de": pytest.approx(50.0)}
    assert d["xnli"]["avg_metric"] == pytest.approx(75.0)
    assert d["panx"]["f1"]["en"] == pytest.approx(200 / 3)
    assert d["panx"]["precision"]["en"] == pytest.approx(100.0)
    assert d["panx"]["recall"]["en"] == pytest.approx(50.0)
    assert d["udpos"]["avg_f1"] == pytest.approx(50.0)
    assert d["bucc2018"]["avg_f1"] == pytest.approx(50.0)
    assert d["tatoeba"]["avg_accuracy"] == pytest.approx(50.0)
    assert d["xquad"]["avg_metric"] == pytest.approx(50.0)
    assert d["mlqa"]["f1"]["zh"] == pytest.approx(90.0)
    assert d["mlqa"]["avg_metric"] == pytest.approx(70.0)
    assert d["tydiqa"]["avg_exact_match"] == pytest.approx(50.0)
    assert d["tydiqa"]["avg_metric"] == pytest.approx(50.0)
    ov = out["overall"]
    # (75 + 75 + 66.667 + 50 + 50 + 50 + 50 + 70 + 50) / 9 = (536 + 2/3) / 9
    assert ov["all_task"] == pytest.approx((536 + 2 / 3) / 9)
    assert ov["classification"] == pytest.approx(75.0)
    assert ov["tagging"] == pytest.approx((50 + 200 / 3) / 2)
    assert ov["qa"] == pytest.approx((50 + 70 + 50) / 3)
    assert ov["retrieval"] == pytest.approx(50.0)
    assert out["aggregates"]["xtreme_score"]["aggregator"] == "xtreme_score"
    assert out["mode"] == "official"


def test_score_folder_skips_tasks_missing_on_one_side(tmp_path):
    pred, gold = _xtreme_folders(tmp_path)
    (gold / "pawsx" / "test-de.tsv").unlink()
    (gold / "pawsx").rmdir()
    out = score_folder(str(pred), str(gold), "xtreme", XTREME_LANGS)
    assert "pawsx" not in out["detailed"]
    assert "all_task" not in out["overall"] and "classification" not in out["overall"]
    assert out["overall"]["retrieval"] == pytest.approx(50.0)


def test_score_folder_missing_language_file(tmp_path):
    pred, gold = _xtreme_folders(tmp_path)
    (pred / "xnli" / "test-de.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="test-de.tsv"):
        score_folder(str(pred), str(gold), "xtreme", XTREME_LANGS)


def test_score_folder_length_mismatch_names_files(tmp_path):
    pred, gold = _xtreme_folders(tmp_path)
    _write(pred, "tatoeba", "de", "tsv", "0\n1\n2\n3\n\n")  # blank line -> 5th example '' (read_label strips)
    with pytest.raises(ValueError, match=r"test-de.tsv: number of examples \(5\).*\(4\).*tatoeba"):
        score_folder(str(pred), str(gold), "xtreme", XTREME_LANGS)


def test_read_tag_blank_lines(tmp_path):
    path = _write(tmp_path, "udpos", "en", "tsv", "NOUN\n\n\nVERB\n\n\n")
    # official: blank closes a sentence every time -> [NOUN], [], [VERB], []
    assert read_tag(str(path)) == [["NOUN"], [], ["VERB"], []]
    assert read_tag(str(path), "corrected") == [["NOUN"], ["VERB"]]
    # a 'word\tTAG' line is read whole as the tag
    path = _write(tmp_path, "udpos", "de", "tsv", "Haus\tNOUN\n")
    assert read_tag(str(path)) == [["Haus\tNOUN"]]


def test_tag_files_differing_in_trailing_blank_lines(tmp_path):
    pred, gold = _xtreme_folders(tmp_path)
    _write(pred, "udpos", "en", "tsv", "NOUN\nNOUN\nADJ\n\n\n")  # 2 sentences officially, 1 in gold
    with pytest.raises(ValueError, match="number of sentences"):
        score_folder(str(pred), str(gold), "xtreme", XTREME_LANGS)
    out = score_folder(str(pred), str(gold), "xtreme", XTREME_LANGS, mode="corrected")
    assert out["detailed"]["udpos"]["avg_f1"] == pytest.approx(50.0)
    assert out["mode"] == "corrected"


def test_tagging_mode_override(tmp_path):
    pred, gold = _xtreme_folders(tmp_path)
    _write(gold, "udpos", "en", "tsv", "NOUN\nCCONJ\nNOUN\n")
    _write(pred, "udpos", "en", "tsv", "NOUN\nSCONJ\nNOUN\n")
    # 0.0.12: 2/3; 1.2.2: CONJ == CONJ -> 100
    assert score_folder(str(pred), str(gold), "xtreme", XTREME_LANGS)["detailed"]["udpos"]["avg_f1"] == pytest.approx(
        200 / 3
    )
    out = score_folder(str(pred), str(gold), "xtreme", XTREME_LANGS, tagging_mode="seqeval_1x")
    assert out["detailed"]["udpos"]["avg_f1"] == pytest.approx(100.0)
    agg = out["aggregates"]["xtreme_score"]
    assert agg["mode"] == "mixed"
    assert agg["modes"]["udpos"] == agg["modes"]["panx"] == "seqeval_1x"
    assert agg["modes"]["xnli"] == "official"


def test_readers(tmp_path):
    path = _write(tmp_path, "xnli", "en", "tsv", "a \r\n\tb\rc")
    assert read_label(str(path)) == ["a", "b", "c"]
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"ok\n\xff\n")
    with pytest.raises(ValueError, match=r"bad.tsv, line 2: not valid UTF-8"):
        read_label(str(bad))
    js = tmp_path / "bad.json"
    js.write_text('{"a": 1,\n "b": }', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.json, line 2: invalid JSON"):
        read_squad(str(js))
    ok = _write(tmp_path, "xquad", "en", "json", {"data": [1, 2]})
    assert read_squad(str(ok)) == [1, 2]


XTREME_R_LANGS = {"xnli": ["en"], "xcopa": ["et"], "mewslix": ["en"], "lareqa": []}


def _xtreme_r_folders(tmp_path):
    pred, gold = tmp_path / "pred", tmp_path / "gold"
    _write(gold, "xnli", "en", "tsv", "neutral\n")
    _write(pred, "xnli", "en", "tsv", "neutral\n")  # 100
    _write(gold, "xcopa", "et", "jsonl", '{"idx": 0, "label": 0}\r\n{"idx": 1, "label": 1}\r\n')
    _write(pred, "xcopa", "et", "jsonl", '{"label": 0}\n{"label": 0}\n')  # 50
    _write(gold, "mewslix", "en", "json", {"m1": ["Q1"], "m2": ["Q2 "]})
    _write(pred, "mewslix", "en", "json", {"m1": ["Q1"], "m2": ["Q3", "Q2"]})
    # m1 rank 1 -> 1; m2 gold 'Q2' (stripped) at rank 2 -> 1/2 -> (1 + 0.5)/2 = 75
    for root in (pred, gold):
        (root / "lareqa").mkdir()
    return pred, gold


def test_score_folder_xtreme_r(tmp_path):
    pred, gold = _xtreme_r_folders(tmp_path)
    out = score_folder(str(pred), str(gold), "xtreme-r", XTREME_R_LANGS)
    d = out["detailed"]
    assert d["xcopa"]["avg_accuracy"] == pytest.approx(50.0)
    assert d["mewslix"]["map@20"] == {"en": pytest.approx(75.0)}
    assert d["mewslix"]["avg_metric"] == pytest.approx(75.0)
    assert "lareqa" not in d
    assert any("lareqa" in n and "KeyError" in n for n in out["note"])
    # groups: classification (100 + 50)/2 = 75; multi_choice 50; retrieval needs tatoeba -> absent
    assert out["overall"] == {"classification": pytest.approx(75.0), "multi_choice": pytest.approx(50.0)}
    assert "xtreme_r_task_mean" not in out["aggregates"]


def test_score_folder_xtreme_r_complete_with_extra_lareqa(tmp_path):
    langs = {
        "xnli": ["en"],
        "panx": ["en"],
        "udpos": ["en"],
        "tatoeba": ["de"],
        "xcopa": ["et"],
        "lareqa": [],
        "mewslix": ["en"],
        "xquad": ["zh"],
        "mlqa": ["zh"],
        "tydiqa": ["en"],
    }
    pred, gold = _xtreme_folders(tmp_path)  # xnli(en)=100 here, panx 66.67, udpos 50, tatoeba 50, QA
    _write(gold, "xcopa", "et", "jsonl", '{"idx": 0, "label": 0}\n{"idx": 1, "label": 1}\n')
    _write(pred, "xcopa", "et", "jsonl", '{"idx": 0, "label": 0}\n{"idx": 1, "label": 0}\n')  # 50
    _write(gold, "mewslix", "en", "json", {"m1": ["Q1"], "m2": ["Q2"]})
    _write(pred, "mewslix", "en", "json", {"m1": ["Q1"], "m2": ["Q3", "Q2"]})  # 75
    lareqa = {"avg_map@20": 40.0, "avg_metric": 40.0}
    out = score_folder(str(pred), str(gold), "xtreme-r", langs, extra_task_avgs={"lareqa": lareqa})
    # task avg_metrics: xnli 100, xcopa 50, udpos 50, panx 66.667, tatoeba 50, mewslix 75,
    # xquad 50, mlqa 70, tydiqa 50, lareqa 40
    # category mean: classification 75; structured (50 + 66.667)/2 = 58.333;
    # qa (50 + 70 + 50)/3 = 56.667; retrieval (50 + 75 + 40)/3 = 55 -> (75 + 58.333 + 56.667 + 55)/4 = 61.25
    cat = out["aggregates"]["xtreme_r_category_mean"]
    assert cat["score"] == pytest.approx(61.25)
    # task mean: (100 + 50 + 50 + 66.667 + 50 + 75 + 50 + 70 + 50 + 40)/10 = 601.667/10
    assert out["aggregates"]["xtreme_r_task_mean"]["score"] == pytest.approx((601 + 2 / 3) / 10)
    # script groups: retrieval = tatoeba + mewslix only -> (50 + 75)/2
    assert out["overall"]["retrieval"] == pytest.approx(62.5)
    assert "all_task" not in out["overall"]


def test_lareqa_folder_skipped_even_with_a_language_list(tmp_path):
    pred, gold = _xtreme_r_folders(tmp_path)
    langs = dict(XTREME_R_LANGS, lareqa=["ar", "de"])
    out = score_folder(str(pred), str(gold), "xtreme-r", langs)
    assert "lareqa" not in out["detailed"]
    assert any(n.startswith("lareqa:") for n in out["note"])


def test_mewslix_example_id_data(tmp_path):
    pred, gold = _xtreme_r_folders(tmp_path)
    _write(gold, "mewslix", "en", "json", {"data": ["Q1"]})
    _write(pred, "mewslix", "en", "json", {"data": ["Q1"]})
    with pytest.raises(ValueError, match="example id 'data'"):
        score_folder(str(pred), str(gold), "xtreme-r", XTREME_R_LANGS)
    out = score_folder(str(pred), str(gold), "xtreme-r", XTREME_R_LANGS, mode="corrected")
    assert out["detailed"]["mewslix"]["avg_metric"] == pytest.approx(100.0)


def test_score_folder_bad_arguments(tmp_path):
    pred, gold = _xtreme_folders(tmp_path)
    with pytest.raises(ValueError, match="unknown version"):
        score_folder(str(pred), str(gold), "xtreme-3", XTREME_LANGS)
    with pytest.raises(ValueError, match="not xtreme tasks"):
        score_folder(str(pred), str(gold), "xtreme", {"xcopa": ["et"]})
    with pytest.raises(FileNotFoundError, match="not a folder"):
        score_folder(str(tmp_path / "nope"), str(gold), "xtreme", XTREME_LANGS)


# ----------------------------------------------------------------- XCOPA: JSON lines by 'label'


def _xcopa_pair(tmp_path, pred_text, gold_text):
    p = _write(tmp_path / "pred", "xcopa", "et", "jsonl", pred_text)
    g = _write(tmp_path / "gold", "xcopa", "et", "jsonl", gold_text)
    return str(p), str(g)


def test_xcopa_is_scored_by_the_label_field(tmp_path):
    # official read_xcopa: json.loads(line)['label'] for every line of both files, then
    # accuracy(): p == l. {"label": 1} vs {"idx": 0, "label": 1}: 1 == 1 -> correct.
    # Key order and spacing do not matter: {"label":0,"idx":1} -> 0 == 0 -> correct. 2 of 2 -> 100.
    p, g = _xcopa_pair(
        tmp_path, '{"label": 1}\n{"label":0,"idx":1}\n', '{"idx": 0, "label": 1}\n{"idx": 1,   "label": 0}\n'
    )
    assert score_language("xcopa", p, g, "et")["accuracy"] == 100.0
    assert read_xcopa(p) == [1, 0]


def test_xcopa_labels_compare_as_json_values(tmp_path):
    # "1" (a JSON string) vs 1 (a number): official p == l is '1' == 1 -> False; 0 vs 0 -> True.
    # 1 of 2 -> 50. Corrected mode compares str(p) == str(l): '1' == '1' -> 2 of 2 -> 100.
    p, g = _xcopa_pair(tmp_path, '{"label": "1"}\n{"label": 0}\n', '{"label": 1}\n{"label": 0}\n')
    assert score_language("xcopa", p, g, "et")["accuracy"] == 50.0
    assert score_language("xcopa", p, g, "et", mode="corrected")["accuracy"] == 100.0


@pytest.mark.parametrize(
    "bad,match",
    [
        ("0\n", r"test-et.jsonl, line 1, field 'label': expected a JSON object"),  # bare label: 0['label'] fails
        ('{"label": 0}\n\n', r"test-et.jsonl, line 2: a blank line"),  # json.loads('\n') fails
        ('{"label": 0}\n{"idx": 3}\n', r"test-et.jsonl, line 2, field 'label'"),  # KeyError
        ('{"label": 0\n', r"test-et.jsonl, line 1: invalid JSON"),
    ],
)
def test_xcopa_bad_lines_name_file_and_line(tmp_path, bad, match):
    p, g = _xcopa_pair(tmp_path, bad, '{"label": 0}\n{"label": 1}\n')
    with pytest.raises(ValueError, match=match):
        score_language("xcopa", p, g, "et")


def test_metric_content_errors_name_the_files(tmp_path):
    from xlrepro.errors import DataFormatError

    # a gold list that is empty: the official code fails on labels[0] (IndexError); here the
    # metric's error is re-raised naming both files
    p = _write(tmp_path / "pred", "mewslix", "en", "json", {"e": ["Q1"]})
    g = _write(tmp_path / "gold", "mewslix", "en", "json", {"e": []})
    with pytest.raises(DataFormatError, match=r"pred/mewslix/test-en.json: .*non-empty list.*scored against .*gold"):
        score_language("mewslix", str(p), str(g), "en")
