"""How the readers take bad input: random corruptions of the real samples, and the known-bad inputs
of the reliability review (silently missing scores, late failures, type errors, bad values).

  PYTHONPATH=. XLREPRO_SHARED=../shared python benchmarks/reader_robustness.py [--per-case 40] [--seed 0] [--json]

Every reader runs on a real sample (tests/reader_cases.py; a made-up file in the release format where
no sample exists). Outcomes of an input: parsed; a ``DataFormatError`` naming the file and a line or
field ("located"); one naming the file only; one naming no file; or any other exception
("traceback"). A known-bad input that parses is a "silent acceptance". Goal: 0 tracebacks, 0
unnamed errors, 0 silent acceptances.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from conftest import SAMPLES  # noqa: E402
from reader_cases import cases, corrupt_case, outcome  # noqa: E402

# ---------------------------------------------------------------------- known-bad inputs


def _json_edit(fn):
    def edit(paths):
        p = paths["file"]
        obj = json.loads(p.read_text(encoding="utf-8"))
        fn(obj)
        p.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")

    return edit


def _jsonl_edit(fn, line=0):
    def edit(paths):
        p = paths["file"]
        rows = [json.loads(l) for l in p.read_text(encoding="utf-8").splitlines() if l.strip()]
        fn(rows, line)
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    return edit


def _text_edit(fn, key="file"):
    def edit(paths):
        p = paths[key]
        p.write_bytes(fn(p.read_bytes()))

    return edit


def _qa(obj, n=0):
    return [qa for art in obj["data"] for para in art["paragraphs"] for qa in para["qas"]][n]


def _ctx_of_first_qa(obj):
    return obj["data"][0]["paragraphs"][0]["context"]


def _set_start(value):
    return _json_edit(lambda o: _qa(o)["answers"][0].__setitem__("answer_start", value))


def _negative_alias(o):
    a = _qa(o)["answers"][0]
    a["answer_start"] = a["answer_start"] - len(_ctx_of_first_qa(o))


def _dup_qa(o):
    qas = o["data"][0]["paragraphs"][0]["qas"]
    qas.append(dict(qas[0]))


def _first_words_to_unknown_upos(b: bytes) -> bytes:
    lines = b.decode("utf-8").split("\n")
    for i, l in enumerate(lines):
        cols = l.split("\t")
        if len(cols) == 10 and cols[0].isdigit():
            cols[3] = "NOUNX"
            lines[i] = "\t".join(cols)
            break
    return "\n".join(lines).encode("utf-8")


def _dup_word_id(b: bytes) -> bytes:
    lines = b.decode("utf-8").split("\n")
    for i, l in enumerate(lines):
        cols = l.split("\t")
        if len(cols) == 10 and cols[0] == "2":
            cols[0] = "1"
            lines[i] = "\t".join(cols)
            break
    return "\n".join(lines).encode("utf-8")


def _mwt_at_end(b: bytes) -> bytes:
    text = b.decode("utf-8").rstrip("\n")
    last = text.split("\n")[-1].split("\t")[0]
    n = int(last) + 1
    return (text + f"\n{n}-{n + 1}\tdu\t_\t_\t_\t_\t_\t_\t_\t_\n").encode("utf-8")


def _drop_column(name: str):
    def fn(b: bytes) -> bytes:
        rows = [l.split("\t") for l in b.decode("utf-8").split("\n")]
        k = rows[0].index(name)
        return "\n".join("\t".join(r[:k] + r[k + 1 :]) if len(r) > k else "\t".join(r) for r in rows).encode("utf-8")

    return fn


def _mewslix_mention(key, value=None, delete=False):
    def fn(rows, line):
        m = rows[line]["mentions"][0]
        path = key.split(".")
        for k in path[:-1]:
            m = m[k]
        if delete:
            del m[path[-1]]
        else:
            m[path[-1]] = value

    return _jsonl_edit(fn)


def _mewslix_dup(rows, line):
    rows[line]["mentions"].append(dict(rows[line]["mentions"][0]))


KNOWN_BAD = [
    # point 4: scores that disappear silently
    (
        "xnli/xtreme",
        "every row lacks the label column",
        _text_edit(lambda b: b"".join(l.rsplit(b"\t", 1)[0] + b"\n" for l in b.splitlines())),
    ),
    ("udpos/xtreme", "tag file with spaces for tabs", _text_edit(lambda b: b.replace(b"\t", b" "))),
    ("mnli/glue", "header lacks the label column", _text_edit(_drop_column("gold_label"))),
    ("pawsx/original", "header lacks the label column", _text_edit(_drop_column("label"))),
    ("xcopa/original", "one record lacks 'label'", _jsonl_edit(lambda r, i: r[3].pop("label"))),
    ("copa/xtreme", "one record lacks 'label'", _jsonl_edit(lambda r, i: r[1].pop("label"))),
    ("hellaswag", "one record lacks 'label'", _jsonl_edit(lambda r, i: r[0].pop("label"))),
    ("udpos/conllu", "lone-CR line ends", _text_edit(lambda b: b.replace(b"\n", b"\r"))),
    ("mnli/glue", "lone-CR line ends", _text_edit(lambda b: b.replace(b"\n", b"\r"))),
    ("xnli/xtreme", "0-byte file", _text_edit(lambda b: b"")),
    ("mnli/glue", "header-only file", _text_edit(lambda b: b.split(b"\n")[0] + b"\n")),
    (
        "panx/original",
        "tags removed",
        _text_edit(lambda b: b"".join(l.split(b"\t")[0] + b"\n" for l in b.splitlines())),
    ),
    # point 6: late failures
    ("xquad", "duplicate question id", _json_edit(_dup_qa)),
    ("mlqa", "duplicate question id", _json_edit(_dup_qa)),
    ("lareqa", "duplicate question id", _json_edit(_dup_qa)),
    ("xquad", "empty 'data' list", _json_edit(lambda o: o.__setitem__("data", []))),
    ("mewslix", "duplicate example_id", _jsonl_edit(_mewslix_dup)),
    ("mewslix", "missing entity_id", _mewslix_mention("entity_id", delete=True)),
    # point 7: type errors and bad values
    ("xquad", "answer_start as a string", _set_start("12")),
    ("xquad", "answer_start null", _set_start(None)),
    ("xquad", "answer_start a float", _set_start(1.0)),
    ("xquad", "negative answer_start aliasing the text", _json_edit(_negative_alias)),
    ("squad_v2", 'is_impossible: "false"', _json_edit(lambda o: _qa(o).__setitem__("is_impossible", "false"))),
    ("xquad", "numeric context", _json_edit(lambda o: o["data"][0]["paragraphs"][0].__setitem__("context", 7))),
    ("xquad", "non-object article", _json_edit(lambda o: o["data"].__setitem__(0, "article"))),
    ("mlqa", "answer_start as a string", _set_start("0")),
    (
        "lareqa",
        "qa that is not an object",
        _json_edit(lambda o: o["data"][0]["paragraphs"][0]["qas"].__setitem__(0, "qa")),
    ),
    ("lareqa", "answer_start as a string", _set_start("3")),
    ("mewslix", "mention offset as a string", _mewslix_mention("mention_span.start", "50")),
    ("mewslix", "language 'EN'", _jsonl_edit(lambda r, i: r[0]["context"].__setitem__("language", "EN"))),
    ("xcopa/original", "label: true", _jsonl_edit(lambda r, i: r[2].__setitem__("label", True))),
    ("xcopa/original", "label: 1.0", _jsonl_edit(lambda r, i: r[2].__setitem__("label", 1.0))),
    ("hellaswag", 'label: "2"', _jsonl_edit(lambda r, i: r[0].__setitem__("label", "2"))),
    ("udpos/conllu", "unknown UPOS tag", _text_edit(_first_words_to_unknown_upos)),
    ("udpos/conllu", "multi-word-token range at end of file", _text_edit(_mwt_at_end)),
    ("udpos/conllu", "duplicate word id", _text_edit(_dup_word_id)),
    (
        "mewslix/candidates",
        "sentence span start: true",
        _jsonl_edit(lambda r, i: r[0]["sentence_spans"][0].__setitem__("start", True)),
    ),
]


def run_known_bad(all_cases) -> tuple[collections.Counter, list[str]]:
    by_name = {c.name: c for c in all_cases}
    counts, notes = collections.Counter(), []
    for name, what, edit in KNOWN_BAD:
        case = by_name[name]
        with tempfile.TemporaryDirectory() as d:
            paths = case.materialise(Path(d))
            edit(paths)
            kind, err = outcome(case, paths)
        counts[kind] += 1
        if kind not in ("error_located",):
            notes.append(f"  {kind:<14} {name}: {what}" + (f" ({type(err).__name__}: {err})" if err else ""))
    # a config-level one: data.languages selecting nothing
    from xlrepro.check import Preflight, _check_languages
    from xlrepro.config import load_config

    pf = Preflight()
    _check_languages(load_config("xstilts-squad", ["data.languages=[trr]"]), pf)
    counts["error_located" if pf.problems else "parsed"] += 1
    return counts, notes


def run_random(all_cases, per_case: int, seed: int) -> tuple[collections.Counter, dict, list[str]]:
    counts, per, notes = collections.Counter(), {}, []
    for case in all_cases:
        c = collections.Counter()
        for k in range(per_case):
            rnd = random.Random(f"{seed}:{case.name}:{k}")
            with tempfile.TemporaryDirectory() as d:
                paths = case.materialise(Path(d))
                what = corrupt_case(case, paths, rnd)
                kind, err = outcome(case, paths)
            c[kind] += 1
            if kind in ("traceback", "error_unnamed"):
                notes.append(f"  {kind:<14} {what}: {type(err).__name__}: {str(err)[:160]}")
        per[case.name] = dict(c)
        counts.update(c)
    return counts, per, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-case", type=int, default=40, help="random corruptions per reader case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if SAMPLES is None:
        print("the real-format samples are needed (XLREPRO_SHARED or ../shared/data-samples)", file=sys.stderr)
        return 2
    all_cases = cases(SAMPLES)
    rand, per, rnotes = run_random(all_cases, a.per_case, a.seed)
    bad, bnotes = run_known_bad(all_cases)
    summary = {
        "readers": len({c.reader for c in all_cases}),
        "cases": len(all_cases),
        "random": {"inputs": sum(rand.values()), **dict(rand)},
        "known_bad": {"inputs": sum(bad.values()), **dict(bad), "silent_acceptances": bad.get("parsed", 0)},
        "per_case": per,
    }
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        tot = collections.Counter(rand) + collections.Counter(bad)
        print(f"{summary['readers']} readers, {summary['cases']} sample cases")
        print(
            f"random corruptions: {sum(rand.values())} inputs: {rand.get('parsed', 0)} parsed, "
            f"{rand.get('error_located', 0)} errors with file and line/field, {rand.get('error_file', 0)} with file "
            f"only, {rand.get('error_unnamed', 0)} naming no file, {rand.get('traceback', 0)} tracebacks"
        )
        print(
            f"known-bad inputs: {sum(bad.values())}: {bad.get('error_located', 0)} errors with file and line/field, "
            f"{bad.get('error_file', 0)} with file only, {bad.get('traceback', 0)} tracebacks, "
            f"{bad.get('parsed', 0)} silent acceptances"
        )
        print(
            f"in all: {sum(tot.values())} inputs, {tot.get('traceback', 0)} tracebacks, "
            f"{bad.get('parsed', 0)} silent acceptances"
        )
        for line in rnotes + bnotes:
            print(line)
    return (
        0
        if not (rand.get("traceback") or rand.get("error_unnamed") or bad.get("traceback") or bad.get("parsed"))
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
