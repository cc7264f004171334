"""`xlrepro data prepare`: fetch each task's files from its canonical source into the layouts the
readers read, pinned in ``<root>/data.lock``.

A task's ``download:`` block (``xlrepro/tasks/<task>.yaml``) says where its files come from::

  download:
    citation: "..."                       # the dataset's paper or card
    files:                                # release files, fetched over HTTP(S)
      - {url: ".../train-v1.1.json", to: train-v1.1.json, sha256: <optional>}
      - {url: ".../xquad.{lang}.json", to: "xquad.{lang}.json", each: test}   # one per language
      - url: ".../XNLI-1.0.zip"                                              # an archive
        extract: {"XNLI-1.0/xnli.dev.tsv": xnli.dev.tsv}                     # member -> file
    from: hub                             # the canonical copy is the Hub's parquet (PAN-X)
    manual: "..."                         # no public download: what to fetch and where to put it
    xtreme: {folder: siqa, files: {...}}  # how XTREME's download/ names the task's files

Templates take the language fields of the layouts (``{lang}``, ``{iso639_3}``, ``{tatoeba}``,
``{ud}``, ``{name_lower}``); ``each: <split>`` expands an entry over the languages of that split
(default: every language of the task), narrowed to ``data.languages`` when a config sets it.

Files land under ``<root>/<task>/`` (composite tasks: ``<root>/<task>/<component>/``). Each
file is written under a temporary name and renamed into place; ``data.lock`` records its source
(URL, archive member, Hub commit or imported path), sha256, size and the examples each
(split, language) read from it. A file already present is checked against the lock instead of
fetched again. ``--mirror FROM=TO`` (or ``XLREPRO_MIRRORS="FROM=TO;..."``) rewrites URL prefixes.
The Hub goes through ``huggingface_hub`` (it honours ``HF_ENDPOINT``).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from xlrepro import languages as langtab
from xlrepro.data import lock as lockmod
from xlrepro.data.fetch import DownloadError, download, sha256_of
from xlrepro.data.hub import prepared_dir
from xlrepro.errors import ConfigError, DataFormatError, XlreproError
from xlrepro.tasks import get_task

DOWNLOADS = ".downloads"


@dataclass
class TaskReport:
    task: str
    fetched: list = field(default_factory=list)  # root-relative paths written this run
    present: list = field(default_factory=list)  # already there (checked against the lock)
    imported: list = field(default_factory=list)
    manual: str | None = None  # what the user must fetch by hand (nothing was fetched)
    counts: dict = field(default_factory=dict)  # "split/lang" -> examples
    problems: list = field(default_factory=list)


# ---------------------------------------------------------------------- which tasks


def config_tasks(cfg) -> list[str]:
    """Every task a config reads: intermediate, target (with their English training and dev
    sources) and retrieval tasks, in that order, without repeats."""
    out: list[str] = []

    def add(name):
        if name and name not in out:
            out.append(name)

    for t in cfg.intermediate.tasks:
        add(t)
    for t in cfg.target.tasks:
        spec = get_task(t)
        for stage in spec.training_chain():
            add(stage)
        add(spec.dev_source)
        add(t)
    for t in cfg.retrieval.tasks:
        add(t)
    return out


def task_source(cfg, task: str) -> str:
    if cfg is None:
        return "local"
    return (getattr(cfg.data, "sources", None) or {}).get(task, cfg.data.source)


# ---------------------------------------------------------------------- helpers


def _fill(template: str, lang: str | None) -> str:
    if lang is None:
        if "{" in template:
            raise ConfigError(f"template {template!r} needs a language")
        return template
    return template.format(**langtab.get(lang).template_fields())


def _langs(spec, entry: dict, only: list | None) -> list[str]:
    each = entry.get("each")
    base = spec.split_languages(each) if each else spec.all_languages()
    return [l for l in base if only is None or l in only]


def _has_template(*texts) -> bool:
    return any("{" in (t or "") for t in texts)


def mirrors_from(args_mirrors: list | None) -> list[tuple[str, str]]:
    items = [m for m in (os.environ.get("XLREPRO_MIRRORS", "").split(";")) if m.strip()] + list(args_mirrors or [])
    out = []
    for m in items:
        src, sep, dst = m.partition("=")
        if not sep or not src or not dst:
            raise ConfigError(f"mirror {m!r}: expected FROM=TO (a URL prefix and its replacement)")
        out.append((src, dst))
    return out


def _rewrite(url: str, mirrors) -> str:
    for src, dst in mirrors:
        if url.startswith(src):
            return dst + url[len(src) :]
    return url


def _place(tmp: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)


def _tmp_beside(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


class _Archive:
    """Zip or tar members by name (compression detected from the file)."""

    def __init__(self, path: Path, url: str):
        self.path, self.url = path, url
        self.zf: zipfile.ZipFile | None
        self.tf: tarfile.TarFile | None
        if zipfile.is_zipfile(path):
            self.zf, self.tf = zipfile.ZipFile(path), None
            self.names = [n for n in self.zf.namelist() if not n.endswith("/")]
        else:
            try:
                self.tf, self.zf = tarfile.open(path), None
            except tarfile.TarError as e:
                raise DataFormatError(path, f"downloaded from {url}: neither a zip nor a tar archive ({e})") from None
            self.names = [m.name for m in self.tf.getmembers() if m.isfile()]

    def extract(self, member: str, dest: Path) -> None:
        if member not in self.names:
            close = [n for n in self.names if n.rsplit("/", 1)[-1] == member.rsplit("/", 1)[-1]][:3]
            raise DataFormatError(
                self.path,
                f"archive from {self.url} has no member {member!r}"
                + (f" (same name elsewhere: {close})" if close else ""),
                field=member,
            )
        tmp = _tmp_beside(dest)
        try:
            src = self.zf.open(member) if self.zf else self._tar_member(member)
            with src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            _place(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _tar_member(self, member: str) -> IO[bytes]:
        assert self.tf is not None
        f = self.tf.extractfile(member)
        assert f is not None  # self.names lists regular files only
        return f

    def close(self):
        (self.zf or self.tf).close()


# ---------------------------------------------------------------------- the preparer


class Preparer:
    def __init__(self, root, mirrors=(), languages: list | None = None, allow_unpinned_hub: bool = False, out=None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = lockmod.load(self.root)
        self.mirrors = list(mirrors)
        self.languages = languages
        self.allow_unpinned = allow_unpinned_hub
        self.out = out or sys.stdout

    def say(self, msg: str) -> None:
        print(msg, file=self.out, flush=True)

    # the lock ----------------------------------------------------------
    def _rel(self, path: Path) -> str:
        return lockmod.rel(self.root, path)

    def _pinned(self, dest: Path) -> str | None:
        e = self.lock["files"].get(self._rel(dest))
        return e["sha256"] if e else None

    def _present(self, dest: Path, rep: TaskReport) -> bool:
        if not dest.exists():
            return False
        lockmod.check(self.root, self.lock, self._rel(dest))
        if self._rel(dest) not in self.lock["files"]:
            lockmod.record(self.root, self.lock, self._rel(dest), "present before prepare", sha256_of(dest))
        rep.present.append(self._rel(dest))
        return True

    def _fetched(self, dest: Path, source: str, digest: str, rep: TaskReport) -> None:
        rel = self._rel(dest)
        pinned = self._pinned(dest)
        if pinned and pinned != digest:
            dest.unlink()
            raise DataFormatError(
                dest,
                f"fetched from {source} with sha256 {digest}, but {self.root / lockmod.NAME} "
                f"pins {pinned}: the source changed; the new file was deleted",
                field="sha256",
            )
        lockmod.record(self.root, self.lock, rel, source, digest)
        rep.fetched.append(rel)
        lockmod.save(self.root, self.lock)

    # one task ----------------------------------------------------------
    def prepare(self, spec, task_dir: Path, source: str = "local", xtreme: Path | None = None) -> list[TaskReport]:
        if spec.components:
            reps = []
            for comp in spec.components:
                reps += self.prepare(get_task(comp), task_dir / comp, source, xtreme)
            return reps
        rep = TaskReport(spec.name)
        dl = spec.download or {}
        if xtreme is not None:
            self._import_xtreme(spec, task_dir, xtreme, rep)
        if self._complete(spec, task_dir):  # every split and language readable: check the pins, fetch nothing
            prefix = self._rel(task_dir).rstrip("/") + "/"
            for rel in [r for r in self.lock["files"] if r.startswith(prefix)]:
                if (self.root / rel).is_file():
                    lockmod.check(self.root, self.lock, rel)
                    if rel not in rep.imported:
                        rep.present.append(rel)
        elif source == "hub" or dl.get("from") == "hub":
            self._hub(spec, task_dir, rep)
        elif dl.get("manual") and not dl.get("files"):
            if not self._complete(spec, task_dir):
                lay = spec.layouts[0]
                want = sorted(
                    {str(v) for f in lay.files.values() for v in (f.values() if isinstance(f, dict) else [f])}
                )
                rep.manual = f"{dl['manual']}; put them under {task_dir}/ as {', '.join(want)}"
        else:
            if not dl.get("files"):
                raise ConfigError(
                    f"xlrepro/tasks/{spec.name}.yaml: no download source (download.files, from: hub or manual)"
                )
            for entry in dl["files"]:
                self._entry(spec, task_dir, entry, rep)
        lockmod.save(self.root, self.lock)
        if rep.manual is None:
            self._count(spec, task_dir, rep)
        return [rep]

    def _complete(self, spec, task_dir: Path) -> bool:
        try:
            for split in spec.splits:
                for lang in spec.split_languages(split):
                    if self.languages is None or lang in self.languages:
                        spec.find_layout(task_dir, split, lang)
        except FileNotFoundError:
            return False
        return True

    def _entry(self, spec, task_dir: Path, entry: dict, rep: TaskReport) -> None:
        url_t = entry.get("url")
        if not url_t:
            raise ConfigError(f"xlrepro/tasks/{spec.name}.yaml download.files: an entry without 'url': {entry}")
        extract = entry.get("extract")
        if _has_template(url_t):
            for lang in _langs(spec, entry, self.languages):
                self._one(spec, task_dir, _fill(url_t, lang), entry, lang, rep)
        elif extract:
            self._archive(spec, task_dir, url_t, entry, rep)
        else:
            self._one(spec, task_dir, url_t, entry, None, rep)

    def _one(self, spec, task_dir, url, entry, lang, rep) -> None:
        if entry.get("extract"):
            return self._archive(spec, task_dir, url, entry, rep, lang)
        to = entry.get("to") or url.rsplit("/", 1)[-1]
        dest = task_dir / _fill(to, lang)
        if self._present(dest, rep):
            return
        self.say(f"{spec.name}: fetching {url}")
        digest, _ = download(_rewrite(url, self.mirrors), dest, known_sha256(entry, lang) or self._pinned(dest))
        self._fetched(dest, url, digest, rep)

    def _archive(self, spec, task_dir, url, entry, rep, lang=None) -> None:
        pairs, globs = [], []  # (member, dest); (member pattern, dest folder)
        for member_t, dest_t in entry["extract"].items():
            for l in (
                _langs(spec, entry, self.languages) if _has_template(member_t, dest_t) and lang is None else [lang]
            ):
                member, dest = _fill(member_t, l), _fill(dest_t, l)
                if glob_magic(member):
                    globs.append((member, task_dir / dest))
                else:
                    pairs.append((member, task_dir / dest))
        todo = [(m, d) for m, d in pairs if not self._present(d, rep)]
        todo_globs = []
        for pattern, folder in globs:  # present when anything matching the pattern is there
            found = sorted(folder.glob(pattern.split("/", 1)[1])) if "/" in pattern else []
            if found:
                for f in found:
                    self._present(f, rep)
            else:
                todo_globs.append((pattern, folder))
        if not todo and not todo_globs:
            return
        name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rsplit("/", 1)[-1]) or "archive"
        arch = self.root / DOWNLOADS / spec.name / name
        self.say(f"{spec.name}: fetching {url}")
        digest, _ = download(_rewrite(url, self.mirrors), arch, known_sha256(entry, lang) or self._pinned(arch))
        lockmod.record(self.root, self.lock, self._rel(arch), url, digest)
        a = _Archive(arch, url)
        try:
            for pattern, folder in todo_globs:
                hits = [n for n in a.names if fnmatch.fnmatchcase(n, pattern)]
                if not hits:
                    raise DataFormatError(arch, f"archive from {url} has no member matching {pattern!r}", field=pattern)
                todo += [(n, folder / n.split("/", 1)[1]) for n in hits]
            for member, dest in todo:
                a.extract(member, dest)
                self._fetched(dest, f"{url}#{member}", sha256_of(dest), rep)
        finally:
            a.close()
        if not entry.get("keep_archive"):
            arch.unlink()  # the lock keeps its hash; a later run that needs it fetches it again

    # XTREME's download/ folder ----------------------------------------
    def _import_xtreme(self, spec, task_dir: Path, xtreme: Path, rep: TaskReport) -> None:
        xt = (spec.download or {}).get("xtreme") or {}
        folder = xtreme / xt.get("folder", spec.name)
        if not folder.is_dir():
            return
        pairs = []
        if xt.get("files"):
            langs = [l for l in spec.all_languages() if self.languages is None or l in self.languages]
            for src_t, dst_t in xt["files"].items():
                for l in langs if _has_template(src_t, dst_t) else [None]:
                    pairs.append((folder / _fill(src_t, l), task_dir / _fill(dst_t, l)))
        else:
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    pairs.append((p, task_dir / p.relative_to(folder)))
        for src, dest in pairs:
            if not src.is_file() or self._present(dest, rep):
                continue
            tmp = _tmp_beside(dest)
            try:
                shutil.copyfile(src, tmp)
                _place(tmp, dest)
            finally:
                if tmp.exists():
                    tmp.unlink()
            rel = self._rel(dest)
            self._fetched(dest, f"xtreme-download:{src.relative_to(xtreme).as_posix()}", sha256_of(dest), rep)
            rep.fetched.remove(rel)
            rep.imported.append(rel)

    # the Hub ------------------------------------------------------------
    def _hub(self, spec, task_dir: Path, rep: TaskReport) -> None:
        hub = spec.hub
        if hub is None:
            raise ConfigError(
                f"task {spec.name} has no Hub source (xlrepro/tasks/{spec.name}.yaml); prepare it "
                "from its release files (data.sources.<task>=local)"
            )
        if hub.refuse:
            raise ConfigError(f"task {spec.name}: the Hub copy {hub.repo} is not used: {hub.refuse}")
        langs = [l for l in spec.all_languages() if self.languages is None or l in self.languages]
        other = hub_languages(spec)
        sources = [(hub.repo, hub.revision, hub.config, [l for l in langs if l not in other])]
        for src in (spec.download or {}).get("hub_languages") or []:
            mine = [l for l in langs if l in (src.get("languages") or [])]
            if mine:
                sources.append((src["repo"], src.get("revision"), src.get("config"), mine))
        for repo, revision, config, these in sources:
            if not these:
                continue
            if revision is None and not self.allow_unpinned:
                how = (
                    "run `xlrepro data pin --write`"
                    if repo == hub.repo
                    else f"set its revision under download.hub_languages to a commit of {repo}"
                )
                raise ConfigError(
                    f"task {spec.name}: the Hub source {repo} (languages {', '.join(these)}) is not "
                    f"pinned (xlrepro/tasks/{spec.name}.yaml); {how}, or pass "
                    "--allow-unpinned-hub to take today's commit (recorded in data.lock)"
                )
            try:
                self._hub_fetch(spec, task_dir, rep, repo, revision, config, these)
            except XlreproError:
                raise
            except Exception as e:  # huggingface_hub's HTTP and repository errors share no base class with ours
                raise DownloadError(
                    f"task {spec.name}: the Hub ({os.environ.get('HF_ENDPOINT') or 'huggingface.co'}) "
                    f"did not serve {repo} (languages {', '.join(these)}): {type(e).__name__}: {e}"
                ) from None

    def _hub_fetch(self, spec, task_dir: Path, rep: TaskReport, repo: str, revision, config_t, langs) -> None:
        from huggingface_hub import HfApi, hf_hub_download

        hub = spec.hub
        endpoint = os.environ.get("HF_ENDPOINT") or None
        api = HfApi(endpoint=endpoint)
        rev = revision or api.dataset_info(repo).sha
        assert rev is not None  # the Hub reports the commit of a dataset it serves
        tree = [
            e
            for e in api.list_repo_tree(repo, repo_type="dataset", revision=rev, recursive=True)
            if getattr(e, "path", "").endswith(".parquet") and hasattr(e, "lfs")
        ]
        files = sorted(e.path for e in tree)
        lfs_sha = {e.path: e.lfs.sha256 for e in tree if e.lfs is not None}  # the Hub's own sha256 of LFS files
        wanted: dict[tuple[str | None, str], str] = {}  # (config, hub split) -> fill language
        for split, hsplit in hub.splits.items():
            if split not in spec.splits:
                continue
            first = langs[:1] if repo == hub.repo else []  # a split none of the languages has: its first
            for lang in [l for l in langs if l in spec.split_languages(split)] or first:
                config = None if config_t is None else _fill(config_t, lang)
                wanted.setdefault((config, hsplit), lang)
        stage = self.root / DOWNLOADS / "hub"
        for (config, hsplit), lang in wanted.items():
            out_dir = task_dir / _fill(prepared_dir(hub, hsplit), lang)  # the task's own layout, whatever the repo
            for part in hsplit.split("+"):
                match = match_parquet(files, config, part)
                if not match:
                    raise DataFormatError(
                        f"hf://datasets/{repo}@{rev}",
                        f"no parquet file for config {config!r}, "
                        f"split {part!r} (parquet files: {files[:8]}{' ...' if len(files) > 8 else ''})",
                        field="hub.splits",
                    )
                for f in match:
                    dest = out_dir / f.replace("/", "__")
                    if self._present(dest, rep):
                        continue
                    self.say(f"{spec.name}: fetching hf://datasets/{repo}@{rev[:12]}/{f}")
                    got = Path(
                        hf_hub_download(repo, f, repo_type="dataset", revision=rev, local_dir=stage, endpoint=endpoint)
                    )
                    digest = sha256_of(got)
                    if f in lfs_sha and lfs_sha[f] != digest:
                        got.unlink()
                        raise DataFormatError(
                            dest,
                            f"hf://datasets/{repo}@{rev}/{f}: sha256 mismatch: the Hub "
                            f"lists {lfs_sha[f]}, the download has {digest}; it was deleted "
                            "(nothing written)",
                            field="sha256",
                        )
                    pinned = self._pinned(dest)
                    if pinned and pinned != digest:
                        got.unlink()
                        raise DataFormatError(
                            dest,
                            f"hf://datasets/{repo}@{rev}/{f} has sha256 {digest}, the lock pins {pinned}",
                            field="sha256",
                        )
                    _place(got, dest)
                    self._fetched(dest, f"hf://datasets/{repo}@{rev}/{f}", digest, rep)

    # counting -------------------------------------------------------------
    def _count(self, spec, task_dir: Path, rep: TaskReport) -> None:
        for split in spec.splits:
            for lang in spec.split_languages(split):
                if self.languages is not None and lang not in self.languages:
                    continue
                key = f"{split}/{lang}"
                try:
                    res = spec.read(task_dir, split, lang)
                except FileNotFoundError:
                    rep.problems.append(f"{key}: no files")
                    continue
                except (DataFormatError, ConfigError, KeyError, ValueError) as e:
                    rep.problems.append(f"{key}: {e}")
                    continue
                n = count_examples(res)
                rep.counts[key] = n
                for f in res.files:
                    entry = self.lock["files"].get(self._rel(Path(f)))
                    if entry is not None:
                        entry.setdefault("examples", {})[f"{spec.name}:{key}"] = n
        lockmod.save(self.root, self.lock)


def hub_languages(spec) -> dict:
    """``download.hub_languages`` of a task: language -> the other Hub repo that serves it (for
    languages the task's own Hub repo lacks; PAN-X's XTREME-R languages are in unimelb-nlp/wikiann)."""
    out = {}
    for src in (spec.download or {}).get("hub_languages") or []:
        for lang in src.get("languages") or []:
            out[lang] = src
    return out


def known_sha256(entry: dict, lang: str | None) -> str | None:
    """The published sha256 of a download entry: ``sha256: <hex>`` for one file, or
    ``sha256: {<lang>: <hex>}`` for an entry expanded over languages (none for a language not listed)."""
    sha = entry.get("sha256")
    if isinstance(sha, dict):
        return sha.get(lang) if lang is not None else None
    return sha


def glob_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def count_examples(res) -> int:
    """Examples of a read: items, or for a retrieval corpus its gold pairs (or source sentences)."""
    exs = res.examples
    if len(exs) == 1 and hasattr(exs[0], "src_sentences"):
        return len(exs[0].gold) if exs[0].gold else len(exs[0].src_sentences)
    return len(exs)


def match_parquet(files: list[str], config: str | None, split: str) -> list[str]:
    """The parquet files of one config and split in a Hub repo's listing.

    Layouts on the Hub: ``<config>/<split>-00000-of-00001.parquet`` (datasets' push_to_hub),
    ``<config>/<split>/0000.parquet`` and ``<config>/partial-<split>/...`` (the parquet
    conversion branch), ``data/<split>-*.parquet`` for a repo with one config.
    """
    out = []
    for f in files:
        parts = f.split("/")
        if config is not None:
            if parts[0] != config:
                continue
            rest = parts[1:]
        else:
            rest = parts[1:] if len(parts) > 1 and parts[0] in ("default", "data", "plain_text") else parts
        if not rest:
            continue
        head, base = rest[0], rest[-1]
        if len(rest) > 1 and head in (split, f"partial-{split}"):
            out.append(f)
        elif len(rest) == 1 and (fnmatch.fnmatch(base, f"{split}-*.parquet") or base == f"{split}.parquet"):
            out.append(f)
    return sorted(out)


def render(reports: list[TaskReport], root: Path) -> str:
    lines = []
    for r in reports:
        what = []
        if r.fetched:
            what.append(f"{len(r.fetched)} fetched")
        if r.imported:
            what.append(f"{len(r.imported)} imported from XTREME's download/")
        if r.present:
            what.append(f"{len(r.present)} present (hash checked)")
        if r.manual:
            lines.append(f"{r.task}: MANUAL STEP: {r.manual}")
            continue
        n = sum(r.counts.values())
        lines.append(
            f"{r.task}: {', '.join(what) or 'nothing to fetch'}; {n} examples in {len(r.counts)} "
            "split/language pairs" + (f"; {len(r.problems)} problems" if r.problems else "")
        )
        for p in r.problems:
            lines.append(f"  {r.task}: {p}")
    lines.append(f"lock: {root / lockmod.NAME}")
    return "\n".join(lines)
