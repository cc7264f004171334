"""`xlrepro data prepare` / `data verify` against loopback stand-ins of the release servers and the Hub.

The release files are the real-format samples (../shared/data-samples), packed by the test into
the layouts their servers publish (zips, tarballs, single files, Hub parquet); a loopback HTTP
server (127.0.0.1, started and stopped here) serves them, `--mirror https://=<server>/` points
the canonical URLs at it and HF_ENDPOINT points huggingface_hub at it.
"""
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from loopback import Loopback
from xlrepro.cli import main
from xlrepro.data import lock as lockmod
from xlrepro.data.fetch import download
from xlrepro.errors import DataFormatError

HUB_SHA = "0123456789abcdef0123456789abcdef01234567"
LANGS = "en,zh,ro,sw"  # a slice of every task's languages the samples cover


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body in members.items():
            z.writestr(name, body)
    return buf.getvalue()


def _tar(members: dict, mode="w:bz2") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _merge_squad(files) -> bytes:
    data = []
    for f in files:
        data += json.loads(Path(f).read_text(encoding="utf-8"))["data"]
    return json.dumps({"version": "v1.1", "data": data}).encode()


def _panx_parquet(samples, lang, split) -> bytes:
    import datasets

    from xlrepro.data.readers import get_reader

    ex = get_reader("panx_rahimi")({"file": samples / "panx" / "hf_dummy_data" / lang / split}, src_lang=lang).examples
    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    feats = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                               "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
                               "langs": datasets.Sequence(datasets.Value("string"))})
    ds = datasets.Dataset.from_dict({"tokens": [e.words for e in ex], "ner_tags": [[names.index(t) for t in e.tags] for e in ex],
                                     "langs": [[lang] * len(e.words) for e in ex]}, features=feats)
    buf = io.BytesIO()
    ds.to_parquet(buf)
    return buf.getvalue()


def publish(lb: Loopback, s: Path) -> None:
    """The samples in the layouts their canonical servers publish."""
    squad = (s / "squad/dataset/dev-v1.1.json").read_bytes()
    lb.serve_url("https://rajpurkar.github.io/SQuAD-explorer/dataset/train-v1.1.json", squad)
    lb.serve_url("https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json", squad)
    for f in (s / "xquad").glob("xquad.*.json"):
        lb.serve_url(f"https://github.com/deepmind/xquad/raw/master/{f.name}", f.read_bytes())
    lang = s / "tydiqa-goldp/language_data"
    lb.serve_url("https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-train.json",
                 _merge_squad(sorted(lang.glob("*/*_tydiqa_train.json"))))
    lb.serve_url("https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-dev.json",
                 _merge_squad(sorted(lang.glob("*/*_tydiqa_dev.json"))))
    x = s / "xnli/hf_dummy_data/XNLI-1.0"
    lb.serve_url("https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip",
                 _zip({f"XNLI-1.0/{n}": (x / n).read_bytes() for n in ("xnli.dev.tsv", "xnli.test.tsv")}))
    m = s / "mnli/hf_dummy_data/glue/MNLI"
    lb.serve_url("https://dl.fbaipublicfiles.com/glue/data/MNLI.zip",
                 _zip({f"MNLI/{n}": (m / n).read_bytes() for n in ("train.tsv", "dev_matched.tsv", "test_matched.tsv")}))
    b = s / "bucc2018"
    lb.serve_url("https://comparable.limsi.fr/bucc2018/bucc2018-zh-en.sample-gold.tar.bz2",
                 _tar({f"bucc2018/zh-en/zh-en.sample.{e}": (b / f"zh-en.dev.{e}").read_bytes() for e in ("zh", "en", "gold")}))
    lb.serve_url("https://comparable.limsi.fr/bucc2018/bucc2018-zh-en.training-gold.tar.bz2",
                 _tar({f"bucc2018/zh-en/zh-en.training.{e}": (b / f"zh-en.dev.{e}").read_bytes() for e in ("zh", "en", "gold")}))
    for f in (s / "tatoeba/data/tatoeba/v1").iterdir():
        lb.serve_url(f"https://github.com/facebookresearch/LASER/raw/main/data/tatoeba/v1/{f.name}", f.read_bytes())
    for side in ("ron", "eng"):  # no Romanian sample: the German pair stands in under XTREME-R's ron name
        lb.serve_url(f"https://github.com/facebookresearch/LASER/raw/main/data/tatoeba/v1/tatoeba.ron-eng.{side}",
                     (s / f"tatoeba/data/tatoeba/v1/tatoeba.deu-eng.{'deu' if side == 'ron' else 'eng'}").read_bytes())
    px = s / "paws-x/hf_dummy_data"
    lb.serve_url("https://storage.googleapis.com/paws/pawsx/x-final.tar.gz",
                 _tar({f.relative_to(px).as_posix(): f.read_bytes() for f in sorted(px.rglob("*.tsv"))
                       if f.name != "translated_train.tsv"}, "w:gz"))
    ml = s / "mlqa"
    lb.serve_url("https://dl.fbaipublicfiles.com/MLQA/MLQA_V1.zip",  # no same-language test sample: dev stands in
                 _zip({**{f.relative_to(ml).as_posix(): f.read_bytes() for f in sorted(ml.rglob("MLQA_V1/dev/*.json"))},
                       **{f.relative_to(ml).as_posix().replace("dev", "test"): f.read_bytes()
                          for f in sorted(ml.rglob("MLQA_V1/dev/*.json"))}}))
    lb.hub["google/xtreme"] = {"sha": HUB_SHA, "files": {
        f"PAN-X.{l}/{sp}-00000-of-00001.parquet": _panx_parquet(s, l, d)
        for l in ("en", "sw", "zh") for sp, d in (("train", "train"), ("validation", "dev"), ("test", "test"))}}


@pytest.fixture
def world(samples, tmp_path, monkeypatch):
    with Loopback() as lb:
        publish(lb, samples)
        monkeypatch.setenv("HF_ENDPOINT", lb.url)
        monkeypatch.setenv("XLREPRO_MIRRORS", f"https://={lb.url}/")
        monkeypatch.setenv("XLREPRO_PROGRESS", "0")
        yield lb, tmp_path / "data"


def _prepare(root, *args, langs=LANGS):
    return main(["data", "prepare", *args, "--root", str(root), "--languages", langs, "--allow-unpinned-hub"])


TASKS = ["squad", "xquad", "tydiqa", "xnli", "mnli", "bucc2018", "tatoeba"]


def test_prepare_fetches_every_task_into_its_layout_and_pins_it(world, capsys):
    lb, root = world
    assert _prepare(root, *TASKS) == 0
    assert _prepare(root, "panx", langs="en,sw,zh") == 0  # google/xtreme has no ro (an XTREME-R language)
    out = capsys.readouterr().out
    for t in TASKS + ["panx"]:
        assert f"{t}: " in out
    assert (root / "squad/train-v1.1.json").is_file() and (root / "xquad/xquad.ro.json").is_file()
    assert (root / "xnli/xnli.dev.tsv").is_file() and (root / "mnli/train.tsv").is_file()
    assert (root / "bucc2018/zh-en.training.gold").is_file() and (root / "tatoeba/tatoeba.swh-eng.swh").is_file()
    assert sorted(p.name for p in (root / "panx/_hub/PAN-X.en/train").iterdir()) == ["PAN-X.en__train-00000-of-00001.parquet"]
    assert (root / "panx/_hub/PAN-X.sw/test").is_dir() and not (root / "panx/_hub/PAN-X.sw/train").exists()
    assert not list(root.rglob("*.part")) and not list(root.rglob("*.tmp"))
    lock = lockmod.load(root)
    e = lock["files"]["xquad/xquad.zh.json"]
    assert e["source"] == "https://github.com/deepmind/xquad/raw/master/xquad.zh.json"
    assert e["size"] == (root / "xquad/xquad.zh.json").stat().st_size and e["examples"] == {"xquad:test/zh": 105}
    pan = lock["files"]["panx/_hub/PAN-X.en/train/PAN-X.en__train-00000-of-00001.parquet"]
    assert pan["source"] == f"hf://datasets/google/xtreme@{HUB_SHA}/PAN-X.en/train-00000-of-00001.parquet"
    assert lock["files"]["xnli/xnli.dev.tsv"]["source"].endswith("XNLI-1.0.zip#XNLI-1.0/xnli.dev.tsv")
    # the readers read what was laid out: TyDiQA filtered to English from the official file, PAN-X from parquet
    from xlrepro.tasks import get_task
    ty = get_task("tydiqa").read(root / "tydiqa", "train", "en")
    assert ty.examples and all(e.guid for e in ty.examples)
    assert get_task("panx").read(root / "panx", "train", "en").examples[0].tags[0] in ("B-ORG", "O", "B-PER", "B-LOC")
    # a second run fetches nothing: every file is present and checked against the lock
    n = len(lb.log)
    assert _prepare(root, *TASKS) == 0 and _prepare(root, "panx", langs="en,sw,zh") == 0
    assert [r for r in lb.log[n:] if r[0] == "GET" and not r[1].startswith("/api/")] == []


def test_interrupted_download_resumes_with_range(world):
    lb, root = world
    path = "/github.com/deepmind/xquad/raw/master/xquad.zh.json"
    lb.cut_once.add(path)
    assert _prepare(root, "xquad") == 0
    hits = [r for r in lb.log if r[1] == path]
    assert len(hits) == 2 and hits[0][2] is None and hits[1][2].startswith("bytes=") and hits[1][2] != "bytes=0-"
    assert (root / "xquad/xquad.zh.json").read_bytes() == lb.files[path]


def test_a_partial_file_left_by_a_killed_run_is_resumed(world, tmp_path):
    lb, _ = world
    body = lb.files["/github.com/deepmind/xquad/raw/master/xquad.zh.json"]
    dest = tmp_path / "x" / "xquad.zh.json"
    dest.parent.mkdir()
    dest.with_name("xquad.zh.json.part").write_bytes(body[:1000])
    digest, size = download(f"{lb.url}/github.com/deepmind/xquad/raw/master/xquad.zh.json", dest)
    assert dest.read_bytes() == body and size == len(body)
    assert lb.log[-1][2] == "bytes=1000-"


def test_corrupted_download_is_an_error_and_leaves_nothing(world, tmp_path):
    lb, _ = world
    url = f"{lb.url}/github.com/deepmind/xquad/raw/master/xquad.zh.json"
    dest = tmp_path / "y" / "xquad.de.json"
    with pytest.raises(DataFormatError, match="sha256 mismatch.*expected 0+, got [0-9a-f]{64}"):
        download(url, dest, sha256="0" * 64)
    assert not dest.exists() and not list(dest.parent.iterdir())


def test_a_source_that_changed_after_pinning_is_refused(world, capsys):
    lb, root = world
    assert _prepare(root, "xquad") == 0
    (root / "xquad/xquad.zh.json").unlink()
    lb.files["/github.com/deepmind/xquad/raw/master/xquad.zh.json"] += b" "
    assert _prepare(root, "xquad") == 2
    err = capsys.readouterr().err
    assert "xlrepro: error:" in err and "xquad.zh.json" in err and "sha256 mismatch" in err and "Traceback" not in err
    assert not (root / "xquad/xquad.zh.json").exists() and not list(root.rglob("*.part"))


def test_a_local_file_changed_after_pinning_is_named(world, capsys):
    lb, root = world
    assert _prepare(root, "squad") == 0
    with open(root / "squad/dev-v1.1.json", "ab") as f:
        f.write(b"\n")
    assert _prepare(root, "squad") == 2
    err = capsys.readouterr().err
    assert "squad/dev-v1.1.json" in err and "changed since it was pinned" in err
    assert main(["data", "verify", "squad", "--root", str(root)]) == 1
    assert "CHANGED: squad/dev-v1.1.json" in capsys.readouterr().out


def test_xtreme_download_folder_is_imported_with_its_real_names(world, samples, tmp_path, capsys):
    lb, root = world
    xt = tmp_path / "download"
    # as XTREME's download_data.sh leaves it: xquad without ro, BUCC without test gold,
    # XCOPA/COPA as val.<lang>.jsonl / train.en.jsonl, Social IQa under siqa/, no MNLI
    (xt / "xquad").mkdir(parents=True)
    for f in (samples / "xquad").glob("xquad.*.json"):
        if f.name != "xquad.ro.json":
            (xt / "xquad" / f.name).write_bytes(f.read_bytes())
    (xt / "bucc2018").mkdir()
    for e in ("zh", "en", "gold"):
        (xt / "bucc2018" / f"zh-en.dev.{e}").write_bytes((samples / f"bucc2018/zh-en.dev.{e}").read_bytes())
    for e in ("zh", "en"):
        (xt / "bucc2018" / f"zh-en.test.{e}").write_bytes((samples / f"bucc2018/zh-en.dev.{e}").read_bytes())
    (xt / "xcopa").mkdir()
    (xt / "xcopa/val.sw.jsonl").write_bytes((samples / "xcopa/data/sw/val.sw.jsonl").read_bytes())
    (xt / "xcopa/train.en.jsonl").write_bytes((samples / "xcopa/xtreme_processed/train-en.jsonl").read_bytes())
    (xt / "xcopa/val.en.jsonl").write_bytes((samples / "xcopa/xtreme_processed/val-en.jsonl").read_bytes())
    (xt / "siqa").mkdir()
    for f in (samples / "socialiqa/hf_dummy_data/socialiqa-train-dev").iterdir():  # dev; dev stands in for train
        (xt / "siqa" / f.name).write_bytes(f.read_bytes())
        (xt / "siqa" / f.name.replace("dev", "train")).write_bytes(f.read_bytes())
    assert _prepare(root, "xquad", "bucc2018", "copa", "socialiqa", "--xtreme", str(xt)) == 0
    out = capsys.readouterr().out
    assert "socialiqa: 4 imported from XTREME's download/" in out and "test/en: no files" in out  # the AI2 release has no test
    lock = lockmod.load(root)
    assert lock["files"]["xquad/xquad.zh.json"]["source"] == "xtreme-download:xquad/xquad.zh.json"
    assert lock["files"]["xquad/xquad.ro.json"]["source"].startswith("https://github.com/deepmind/xquad")
    assert lock["files"]["copa/train-en.jsonl"]["source"] == "xtreme-download:xcopa/train.en.jsonl"
    assert (root / "socialiqa/dev.jsonl").is_file()
    # BUCC's test gold was deleted by XTREME: the release files fill the gap, and test reads them
    assert (root / "bucc2018/zh-en.training.gold").is_file()
    from xlrepro.tasks import get_task
    assert get_task("bucc2018").find_layout(root / "bucc2018", "test", "zh") == "original"
    assert get_task("copa").read(root / "copa", "train", "en").examples


def test_manual_sources_say_what_to_fetch_and_where(tmp_path, capsys):
    assert main(["data", "prepare", "ccg", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "LDC2005T13" in err and str(tmp_path / "ccg") in err and "ccgbank/data/AUTO" in err


def test_verify_table_expected_found_and_missing(world, capsys):
    lb, root = world
    assert _prepare(root, "xquad", "squad") == 0
    capsys.readouterr()
    code = main(["data", "verify", "xquad", "squad", "tydiqa", "--root", str(root), "--languages", "en,zh"])
    out = capsys.readouterr().out
    assert code == 1  # tydiqa was not prepared
    row = next(l for l in out.splitlines() if l.startswith("xquad") and " zh " in l)
    assert row.split()[3:6] == ["1190", "105", "ok"]
    assert any(l.startswith("tydiqa") and "missing" in l for l in out.splitlines())
    assert "Artetxe et al. 2020" in out


def test_prepare_a_config_lists_every_task_it_reads():
    from xlrepro.config import load_config
    from xlrepro.data.prepare import config_tasks

    tasks = config_tasks(load_config("xstilts-squad"))
    assert tasks[:1] == ["squad"] and "mnli" in tasks and tasks.index("mnli") < tasks.index("xnli")
    assert {"bucc2018", "tatoeba", "panx", "udpos", "tydiqa"} <= set(tasks)


def test_every_task_has_a_download_source_and_sized_splits_name_their_source():
    from xlrepro.tasks import all_tasks

    for name, t in all_tasks().items():
        if t.components:
            continue
        d = t.download
        assert d.get("files") or d.get("from") == "hub" or d.get("manual"), name
        assert d.get("citation"), name
        if any(k != "source" for k in t.sizes):
            assert t.sizes.get("source"), name


def test_a_hub_source_reads_the_prepared_parquet_offline(world, tmp_path, monkeypatch):
    lb, root = world
    assert _prepare(root, "panx", langs="en,zh") == 0
    from xlrepro.config import load_config
    from xlrepro.phases import Context

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the Hub is not asked
    cfg = load_config("xstilts-squad", ["data.sources={panx: hub}", f"data.root={root}"])
    n = len(lb.log)
    r = Context(cfg, tmp_path / "out", device="cpu").read("panx", "test", "zh")
    assert r.examples and len(lb.log) == n
    assert all(k.endswith(".parquet") for k in r.files)


def test_bad_invocations_are_named_errors_without_traceback(tmp_path, capsys):
    assert main(["data", "prepare", "--root", str(tmp_path)]) == 2
    assert "name the tasks" in capsys.readouterr().err
    assert main(["data", "prepare", "xqaud", "--root", str(tmp_path)]) == 2
    assert "did you mean 'xquad'" in capsys.readouterr().err
    assert main(["data", "prepare", "xquad", "--root", str(tmp_path), "--xtreme", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "data.lock").write_text("{oops")
    assert main(["data", "verify", "xquad", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "data.lock" in err and "not valid JSON" in err and "Traceback" not in err


def test_a_hub_that_does_not_answer_is_a_named_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    assert main(["data", "prepare", "panx", "--root", str(tmp_path), "--languages", "en", "--allow-unpinned-hub"]) == 2
    err = capsys.readouterr().err
    assert "xlrepro: error: task panx: the Hub (http://127.0.0.1:9) did not serve google/xtreme" in err
    assert not list(tmp_path.rglob("*.parquet"))


def test_a_hub_file_that_does_not_match_the_hubs_sha256_is_refused(world, capsys):
    lb, root = world
    f = "PAN-X.en/test-00000-of-00001.parquet"
    lb.hub["google/xtreme"]["lfs_sha256"] = {f: "f" * 64}  # the listing's hash; the bytes served differ
    assert _prepare(root, "panx", langs="en") == 2
    err = capsys.readouterr().err
    assert "sha256 mismatch: the Hub lists ffff" in err and f in err
    assert not (root / "panx/_hub/PAN-X.en/test").exists() or not list((root / "panx/_hub/PAN-X.en/test").iterdir())
    assert not list(root.rglob(".downloads/hub/**/*.parquet"))
