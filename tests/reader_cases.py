"""Every registered reader on a real sample (or, where no sample exists, a small file in the release's
format), and the corruptions the fuzz suite and ``benchmarks/reader_robustness.py`` apply to them.

A case copies its input files into a folder, corrupts one of them, and calls the reader (and, for
files of a registry split, ``xlrepro.check.label_status``). The contract under test: a
``DataFormatError`` naming one of the case's files, or a parsed result; never another exception.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from xlrepro.data.all_readers import READERS, get_reader
from xlrepro.errors import DataFormatError


@dataclass
class Case:
    name: str
    reader: str
    files: dict  # key -> source path (a sample file), or key -> str content (a made-up file in the release format)
    options: dict = field(default_factory=dict)
    task: tuple | None = None  # (task, split, lang) for label_status
    keep_lines: int | None = None  # read only the first N lines of line-based samples (speed)

    def materialise(self, folder: Path) -> dict:
        """Copy the inputs into ``folder``; {key: path}."""
        out = {}
        for key, src in self.files.items():
            if isinstance(src, Path):
                dest = folder / f"{key}__{src.name}"
                data = src.read_bytes()
                if self.keep_lines:
                    data = b"".join(data.splitlines(keepends=True)[: self.keep_lines])
                dest.write_bytes(data)
            elif isinstance(src, bytes):  # a binary file made in the release format (a Hub parquet shard)
                dest = folder / f"{key}__{self.name.replace('/', '_')}.parquet"
                dest.write_bytes(src)
            else:
                dest = folder / f"{key}__{self.name.replace('/', '_')}.txt"
                dest.write_text(src, encoding="utf-8")
            out[key] = dest
        if self.reader == "ccgbank_auto":  # a folder of AUTO sections
            sec = folder / "AUTO" / "00"
            sec.mkdir(parents=True, exist_ok=True)
            shutil.move(str(out["dir"]), sec / "wsj_0001.auto")
            out = {"dir": folder / "AUTO", "_file": sec / "wsj_0001.auto"}
        if self.reader == "hub_parquet":  # a prepared Hub split: a folder of parquet shards
            split = folder / "_hub" / "split"
            split.mkdir(parents=True, exist_ok=True)
            shard = split / "0000.parquet"
            shutil.move(str(out["file"]), shard)
            out = {"file": split, "_file": shard}
        return out

    def run(self, paths: dict):
        """Read (and judge the labels of) the materialised files."""
        from xlrepro.check import label_status
        from xlrepro.tasks import get_task

        res = get_reader(self.reader)({k: v for k, v in paths.items() if not k.startswith("_")}, **self.options)
        if self.task is not None:
            task, split, lang = self.task
            label_status(get_task(task), split, lang, res)
        return res


def _reg(name, task, layout, root, split, lang, keep_lines=None):
    from xlrepro.tasks import get_task

    spec = get_task(task)
    lay = spec.layout(layout)
    opts = dict(lay.options)
    if spec.labels is not None:
        opts.setdefault("labels", list(spec.labels))
    files = spec.files(root, split, lang, layout)
    return Case(
        name, lay.reader, dict(files), {**opts, "src_lang": lang, "split": split}, (task, split, lang), keep_lines
    )


def _made_up() -> dict:
    """Files of the three formats without a sample: Mewsli-X candidates and pairs, CCGbank AUTO."""
    desc = "Helsinki is the capital of Finland. It lies on the Gulf of Finland."
    ent = {
        "entity_id": "Q1757",
        "title": "Helsinki",
        "description": desc,
        "description_language": "en",
        "description_url": "https://en.wikipedia.org/wiki/Helsinki",
        "sentence_spans": [{"start": 0, "end": 35}, {"start": 36, "end": len(desc)}],
    }
    ent2 = {
        **ent,
        "entity_id": "Q33",
        "title": "Finland",
        "description": "Finland is a country.",
        "sentence_spans": [{"start": 0, "end": 21}],
    }
    text = "The strike in Helsinki affects 100,000 people."
    pair = {
        "contextual_mention": {
            "context": {
                "document_title": "t",
                "document_url": "u",
                "document_id": "en-1",
                "language": "en",
                "text": text,
                "sentence_spans": [{"start": 0, "end": len(text)}],
            },
            "mention": {
                "example_id": "p1",
                "mention_span": {"start": 14, "end": 22, "text": "Helsinki"},
                "entity_id": "Q1757",
            },
        },
        "entity": ent,
    }
    auto = (
        "ID=wsj_0001.1 PARSER=GOLD NUMPARSE=1\n"
        "(<T S[dcl] 0 2> (<L NP NNP NNP Vinken N>) (<T S[dcl]\\NP 0 2> (<L (S[dcl]\\NP)/NP VBZ VBZ is "
        "(S[dcl]\\NP_1)/NP_2>) (<L NP NN NN chairman N>) ) )\n"
        "ID=wsj_0001.2 PARSER=GOLD NUMPARSE=1\n"
        "(<T S[dcl] 0 2> (<L NP NNP NNP Elsevier N>) (<L S[dcl]\\NP VBZ VBZ won S[dcl]\\NP_1>) )\n"
    )
    return {
        "entities": "\n".join(json.dumps(e) for e in (ent, ent2)) + "\n",
        "pairs": json.dumps(pair)
        + "\n"
        + json.dumps(
            {
                **pair,
                "entity": ent2,
                "contextual_mention": {
                    **pair["contextual_mention"],
                    "mention": {**pair["contextual_mention"]["mention"], "example_id": "p2", "entity_id": "Q33"},
                },
            }
        )
        + "\n",
        "auto": auto,
    }


def cases(samples: Path) -> list[Case]:
    from xlrepro.tasks import get_task

    s = samples
    made = _made_up()
    text = (s / "mewsli-x" / "testdata" / "example_mentions.jsonl").read_text(encoding="utf-8")
    mentions_lang = json.loads(text.splitlines()[0])["context"]["language"]
    out = [
        _reg("xnli/xtreme", "xnli", "xtreme", s / "xnli" / "xtreme_processed", "dev", "de"),
        _reg("xnli/original", "xnli", "original", s / "xnli" / "hf_dummy_data" / "XNLI-1.0", "dev", "de"),
        _reg("xnli/original_jsonl", "xnli", "original_jsonl", s / "xnli" / "hf_dummy_data" / "XNLI-1.0", "dev", "ar"),
        _reg("pawsx/xtreme", "pawsx", "xtreme", s / "paws-x" / "xtreme_processed", "test", "de"),
        _reg("pawsx/original", "pawsx", "original", s / "paws-x" / "hf_dummy_data", "dev", "de"),
        _reg("mnli/glue", "mnli", "glue", s / "mnli" / "hf_dummy_data" / "glue" / "MNLI", "dev", "en"),
        _reg("mnli/original", "mnli", "original", s / "mnli" / "hf_dummy_data" / "multinli_1.0", "dev", "en"),
        _reg("qqp/glue", "qqp", "glue", s / "qqp" / "hf_dummy_data" / "glue" / "QQP", "dev", "en"),
        _reg("xcopa/original", "xcopa", "original", s / "xcopa", "dev", "et", keep_lines=30),
        _reg("copa/xtreme", "copa", "xtreme", s / "xcopa" / "xtreme_processed", "dev", "en", keep_lines=30),
        _reg("hellaswag", "hellaswag", "original", s / "hellaswag" / "hf_dummy_data", "dev", "en"),
        _reg("squad_v2", "squad_v2", "original", s / "squad" / "dataset", "dev", "en"),
        _reg("xquad", "xquad", "original", s / "xquad", "test", "de"),
        _reg("mlqa", "mlqa", "original", s / "mlqa", "dev", "de"),
        _reg("tydiqa/xtreme", "tydiqa", "xtreme", s / "tydiqa-goldp" / "xtreme_processed", "train", "en"),
        _reg("lareqa", "lareqa", "original", s / "xquad-r", "test", "de"),
        _reg("udpos/xtreme", "udpos", "xtreme", s / "udpos" / "xtreme_processed", "dev", "mr", keep_lines=120),
        _reg("panx/original", "panx", "original", s / "panx" / "hf_dummy_data", "dev", "sw"),
        _reg("tatoeba/original", "tatoeba", "original", s / "tatoeba" / "data" / "tatoeba" / "v1", "test", "de"),
        _reg("tatoeba/xtreme", "tatoeba", "xtreme", s / "tatoeba" / "xtreme_processed", "test", "sw"),
        _reg("bucc2018", "bucc2018", "xtreme", s / "bucc2018", "dev", "zh"),
        Case(
            "anli",
            "anli_jsonl",
            {"file": s / "anli" / "hf_dummy_data" / "anli_v0.1" / "R1" / "dev.jsonl"},
            {"labels": _labels("anli")},
            ("anli", "dev", "en"),
        ),
        _reg("commonsenseqa", "commonsenseqa", "original", s / "commonsenseqa", "dev", "en", keep_lines=40),
        _reg("cosmosqa/csv", "cosmosqa", "original", s / "cosmosqa" / "data", "dev", "en", keep_lines=60),
        _reg("cosmosqa/jsonl", "cosmosqa", "original", s / "cosmosqa" / "hf_dummy_data", "test", "en"),
        _reg("socialiqa/v1.4", "socialiqa", "v1.4", s / "socialiqa" / "socialIQa_v1.4", "dev", "en", keep_lines=40),
        _reg(
            "socialiqa/allenai",
            "socialiqa",
            "allenai",
            s / "socialiqa" / "hf_dummy_data" / "socialiqa-train-dev",
            "dev",
            "en",
        ),
        Case(
            "udpos/conllu",
            "conllu_upos",
            {"file": s / "udpos" / "UD_Marathi-UFAL" / "mr_ufal-ud-dev.conllu"},
            {"fused_forms": True, "labels": _labels("udpos")},
            ("udpos", "dev", "mr"),
            keep_lines=150,
        ),
        Case(
            "mewslix",
            "mewslix_jsonl",
            {"file": s / "mewsli-x" / "testdata" / "example_mentions.jsonl"},
            {"src_lang": mentions_lang},
            ("mewslix", "dev", mentions_lang),
        ),
        Case("mewslix/candidates", "mewslix_entities_jsonl", {"file": made["entities"]}),
        Case(
            "mewslix/pairs",
            "mewslix_pairs_jsonl",
            {"file": made["pairs"]},
            {"src_lang": "en"},
            ("mewslix_wikipedia", "dev", "en"),
        ),
        Case("ccg/auto", "ccgbank_auto", {"dir": made["auto"]}, {"split": "dev"}, ("ccg", "dev", "en")),
        Case(
            "xnli/hub",
            "hub_parquet",
            {"file": _xnli_parquet(s)},
            {"spec": get_task("xnli"), "src_lang": "de", "split": "dev"},
            ("xnli", "dev", "de"),
        ),
    ]
    covered = {c.reader for c in out}
    assert covered == set(READERS), f"readers without a fuzz case: {set(READERS) - covered}"
    return out


def _xnli_parquet(s: Path) -> bytes:
    """A Hub parquet shard of XNLI (``facebook/xnli``'s features: premise, hypothesis, a 3-way
    ClassLabel), written by ``datasets`` from the first rows of the XTREME-processed German dev file."""
    import io

    import datasets

    rows = [
        line.split("\t")
        for line in (s / "xnli" / "xtreme_processed" / "dev-de.tsv").read_text(encoding="utf-8").splitlines()[:20]
    ]
    names = ["entailment", "neutral", "contradiction"]
    feats = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=names),
        }
    )
    ds = datasets.Dataset.from_dict(
        {
            "premise": [r[0] for r in rows],
            "hypothesis": [r[1] for r in rows],
            "label": [names.index(r[2].strip()) for r in rows],
        },
        features=feats,
    )
    buf = io.BytesIO()
    ds.to_parquet(buf)
    return buf.getvalue()


def _labels(task):
    from xlrepro.tasks import get_task

    return list(get_task(task).labels)


# ---------------------------------------------------------------------- corruptions

JSON_VALUES = [None, True, False, 0, -1, -32, 7, 2.5, "", "false", "5", "EN", [], {}, [1], {"a": 1}, 10**12]


def _json_paths(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _json_paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:5]):
            yield from _json_paths(v, path + (i,))


def _set(obj, path, value, delete=False):
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return obj


def mutate_json(obj, rnd: random.Random):
    """Replace (or delete, or duplicate) one value at a random path of a JSON structure."""
    paths = list(_json_paths(obj))
    path = paths[rnd.randrange(len(paths))]
    op = rnd.random()
    if path and op < 0.2:
        return _set(obj, path, None, delete=True), f"delete {list(path)}"
    if path and op < 0.3 and isinstance(path[-1], int):
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        parent.append(json.loads(json.dumps(parent[path[-1]])))
        return obj, f"duplicate {list(path)}"
    v = JSON_VALUES[rnd.randrange(len(JSON_VALUES))]
    return _set(obj, path, v), f"set {list(path)} = {v!r}"


def corrupt(data: bytes, rnd: random.Random, is_json: bool, is_jsonl: bool) -> tuple[bytes, str]:
    """One random corruption of a file's bytes, and what it was."""
    kinds = [
        "flip",
        "truncate",
        "delete_range",
        "insert",
        "drop_line",
        "dup_line",
        "swap_lines",
        "tabs_to_spaces",
        "cr_only",
        "empty",
        "strip_column",
        "bom_latin1",
    ]
    if is_json or is_jsonl:
        kinds += ["json"] * 6
    kind = kinds[rnd.randrange(len(kinds))]
    n = len(data)
    lines = data.splitlines(keepends=True)
    if kind == "flip" and n:
        i = rnd.randrange(n)
        return data[:i] + bytes([rnd.randrange(256)]) + data[i + 1 :], f"byte {i} replaced"
    if kind == "truncate" and n:
        i = rnd.randrange(n)
        return data[:i], f"truncated at byte {i}"
    if kind == "delete_range" and n:
        i = rnd.randrange(n)
        j = min(n, i + rnd.randrange(1, 64))
        return data[:i] + data[j:], f"bytes {i}:{j} deleted"
    if kind == "insert":
        i = rnd.randrange(n + 1)
        junk = rnd.choice([b"\t", b"\n", b"\r", b"\x00", b'"', b"{", b"]", b",", b"\xff\xfe", b"-", b"1-2\t", b"\n\n"])
        return data[:i] + junk + data[i:], f"{junk!r} inserted at byte {i}"
    if kind in ("drop_line", "dup_line", "swap_lines") and lines:
        i = rnd.randrange(len(lines))
        if kind == "drop_line":
            return b"".join(lines[:i] + lines[i + 1 :]), f"line {i + 1} deleted"
        if kind == "dup_line":
            return b"".join(lines[: i + 1] + lines[i:]), f"line {i + 1} repeated"
        j = rnd.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return b"".join(lines), f"lines {i + 1} and {j + 1} swapped"
    if kind == "tabs_to_spaces":
        return data.replace(b"\t", b" "), "tabs replaced by spaces"
    if kind == "cr_only":
        return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r"), "line ends replaced by lone CR"
    if kind == "empty":
        return b"", "emptied"
    if kind == "strip_column" and lines:
        return b"".join(
            l.rsplit(b"\t", 1)[0] + (b"\n" if l.endswith(b"\n") else b"") for l in lines
        ), "last tab-separated column removed"
    if kind == "bom_latin1":
        try:
            return data.decode("utf-8").encode("latin-1", errors="replace"), "re-encoded as Latin-1"
        except UnicodeDecodeError:
            return data, "unchanged"
    if kind == "json":
        try:
            if is_json:
                obj, what = mutate_json(json.loads(data), rnd)
                return json.dumps(obj, ensure_ascii=False).encode("utf-8"), what
            idx = [i for i, l in enumerate(lines) if l.strip()]
            if idx:
                i = idx[rnd.randrange(len(idx))]
                obj, what = mutate_json(json.loads(lines[i]), rnd)
                lines[i] = json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n"
                return b"".join(lines), f"line {i + 1}: {what}"
        except (ValueError, RecursionError):
            pass
    return data, "unchanged"


def corrupt_case(case: Case, paths: dict, rnd: random.Random) -> str:
    """Corrupt one of the case's materialised files in place; returns a description."""
    files = [
        k
        for k in paths
        if not ((case.reader == "ccgbank_auto" and k == "dir") or (case.reader == "hub_parquet" and k == "file"))
    ]
    key = files[rnd.randrange(len(files))]
    path = paths[key]
    data = path.read_bytes()
    name = str(case.files.get(key, ""))
    is_json = path.name.endswith(".json") or name.endswith(".json")
    is_jsonl = path.name.endswith(".jsonl") or name.endswith(".jsonl") or case.reader.endswith("_jsonl")
    new, what = corrupt(data, rnd, is_json, is_jsonl)
    path.write_bytes(new)
    return f"{case.name}: {path.name}: {what}"


def outcome(case: Case, paths: dict) -> tuple[str, BaseException | None]:
    """'parsed', 'error_located' (DataFormatError naming a file and a line or field), 'error_file' (naming
    a file only), 'error_unnamed' (a DataFormatError naming none of the files) or 'traceback' (any
    other exception)."""
    try:
        case.run(paths)
        return "parsed", None
    except DataFormatError as e:
        names = [str(p) for p in paths.values()]
        if not any(n in str(e) for n in names):
            return "error_unnamed", e
        return ("error_located" if (e.line is not None or e.field) else "error_file"), e
    except Exception as e:  # noqa: BLE001 -- counted: the contract is broken
        return "traceback", e


def digest(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()[:12]
