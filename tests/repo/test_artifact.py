"""The documents cannot drift from the code: every command a reader is told to run exists.

Scanned: README.md (when present), ARTIFACT.md and docker/README.md; only their code (``spans``
and fenced blocks), split into single commands at newlines, ``&&``, ``;`` and ``|``.

- ``nox ... -s A B`` / ``--session``: every session is in ``nox -l --json`` (all sessions, not just
  the default ones), parametrised ones by their full name;
- ``xlrepro <args>``, and ``docker|podman run ... <image> <args>`` (the image's entrypoint is
  ``xlrepro``): the CLI's own parser accepts the arguments (placeholders like ``<config>`` are fine
  as values), and a config given to ``reproduce``/``train`` is a shipped config or experiment spec;
- ARTIFACT.md has the artifact-appendix headings A.1-A.9 and every claim row names either a
  command or says it is not yet supported.

Needs nox (requirements/test.txt) and the xlrepro source; nothing is built or run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", REPO / "ARTIFACT.md", REPO / "docker" / "README.md"]
IMAGE_TOKEN = re.compile(r"^(?:<image>|(?:[\w.\-]+(?::\d+)?/)*xlrepro(?::[\w.\-<>]+)?(?:@sha256:[0-9a-f<>\w]+)?)$")


def _docs() -> list[Path]:
    docs = [p for p in DOCS if p.exists()]
    assert REPO / "ARTIFACT.md" in docs, "ARTIFACT.md is missing"
    return docs


def _code(text: str) -> list[str]:
    """Code of a markdown text: fenced blocks (continuation lines joined) and inline spans."""
    out = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M):
        out.append(block.replace("\\\n", " "))
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    out += re.findall(r"`([^`\n]+)`", prose)
    return out


def _commands(doc: Path) -> list[str]:
    cmds = []
    for code in _code(doc.read_text()):
        for line in code.splitlines():
            line = line.split(" #", 1)[0]
            for part in re.split(r"&&|\|\||;|\|", line):
                part = part.strip().removeprefix("$ ").strip()
                if part:
                    cmds.append(part)
    return cmds


def _split(cmd: str) -> list[str]:
    cmd = re.sub(r"\s\[[^\]]*\]", " ", cmd)  # optional parts in usage notation: `[key.path=value ...]`
    try:
        words = shlex.split(cmd)
    except ValueError:
        words = cmd.split()
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # leading env assignments
        words = words[1:]
    return words


def _nox_sessions(words: list[str]) -> list[str] | None:
    """Session names of a nox command line, or None if it is not one."""
    if words[:1] == ["nox"]:
        args = words[1:]
    elif len(words) >= 3 and re.match(r"python(3(\.\d+)?)?$", words[0]) and words[1:3] == ["-m", "nox"]:
        args = words[3:]
    else:
        return None
    names, i = [], 0
    while i < len(args):
        a = args[i]
        if a == "--":
            break
        if a in ("-s", "--session", "--sessions", "-e"):
            i += 1
            while i < len(args) and not args[i].startswith("-"):
                names.append(args[i])
                i += 1
            continue
        if a.startswith("--session=") or a.startswith("--sessions="):
            names += a.split("=", 1)[1].split(",")
        i += 1
    return names


@pytest.fixture(scope="module")
def nox_sessions() -> set[str]:
    r = subprocess.run(
        [sys.executable, "-m", "nox", "-l", "--json", "-k", "any_name or not any_name"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"nox -l --json failed:\n{r.stderr}"
    return {s["session"] for s in json.loads(r.stdout)}


@pytest.fixture(scope="module")
def cli():
    sys.path.insert(0, str(REPO))
    from xlrepro.cli import build_parser

    return build_parser()


def _shipped_configs() -> set[str]:
    """Shipped experiment configs and experiment specs (both run by `xlrepro reproduce <name>`)."""
    return {p.stem for d in ("configs", "experiments") for p in (REPO / "xlrepro" / d).glob("*.yaml")}


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    return {n for a in parser._actions if isinstance(a, argparse._SubParsersAction) for n in a.choices}


def _check_cli(parser: argparse.ArgumentParser, argv: list[str], where: str) -> None:
    if argv[0].startswith("<"):  # `docker run <image> <xlrepro arguments>`: a template, not a command
        return
    if len(argv) == 1 and not argv[0].startswith("-"):  # a mention of a subcommand, e.g. `xlrepro score`
        assert argv[0] in _subcommands(parser), (
            f"{where}: no subcommand {argv[0]!r} (have {sorted(_subcommands(parser))})"
        )
        return
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            a, extra = parser.parse_known_args(argv)
        except SystemExit as e:
            if e.code in (0, None) and any(x in argv for x in ("-h", "--help")):
                return
            raise AssertionError(
                f"{where}: `xlrepro {' '.join(argv)}` is rejected by the CLI: {err.getvalue().strip()}"
            ) from None
    bad = [x for x in extra if "=" not in x or x.startswith("-")]
    assert not bad, f"{where}: `xlrepro {' '.join(argv)}`: unrecognized arguments {bad}"
    if a.command in ("reproduce", "train") and not re.search(r"[<>{}$]|\.ya?ml$", a.config):
        assert a.config in _shipped_configs(), (
            f"{where}: `xlrepro {' '.join(argv)}`: no shipped config {a.config!r} (have {sorted(_shipped_configs())})"
        )


def _image_argv(words: list[str]) -> list[str] | None:
    """The xlrepro arguments of a `docker/podman run ... <image> ...` line (None if not one)."""
    if len(words) < 3 or words[0] not in ("docker", "podman") or "run" not in words[1:3]:
        return None
    if any(w == "--entrypoint" or w.startswith("--entrypoint=") for w in words):
        return None
    for i, w in enumerate(words[2:], start=2):
        if IMAGE_TOKEN.match(w) and words[i - 1] not in ("-v", "--volume", "-e", "--env", "--name", "-w", "--workdir"):
            return words[i + 1 :]
    return None


def test_documented_commands_exist(nox_sessions, cli):
    checked = {"nox": 0, "xlrepro": 0}
    for doc in _docs():
        for cmd in _commands(doc):
            words = _split(cmd)
            if not words:
                continue
            where = f"{doc.relative_to(REPO)}: `{cmd}`"
            names = _nox_sessions(words)
            if names is not None:
                for n in names:
                    assert n in nox_sessions, f"{where}: no nox session {n!r} (have {sorted(nox_sessions)})"
                    checked["nox"] += 1
                continue
            if words[0] == "xlrepro" and len(words) > 1:
                _check_cli(cli, words[1:], where)
                checked["xlrepro"] += 1
                continue
            argv = _image_argv(words)
            if argv:
                _check_cli(cli, argv, where)
                checked["xlrepro"] += 1
    assert checked["nox"] >= 3 and checked["xlrepro"] >= 3, f"suspiciously few commands found: {checked}"


def test_scanner_catches_a_wrong_command(nox_sessions, cli):
    # the checks above must be able to fail
    assert _nox_sessions(_split("pip install nox && nox -s smoke".split("&&")[1])) == ["smoke"]
    assert "no_such_session" not in nox_sessions
    with pytest.raises(AssertionError, match="no subcommand"):
        _check_cli(cli, ["no-such-command"], "test")
    with pytest.raises(AssertionError, match="rejected by the CLI"):
        _check_cli(cli, ["score", "--predictions", "P"], "test")
    with pytest.raises(AssertionError, match="no shipped config"):
        _check_cli(cli, ["reproduce", "no_such_config"], "test")
    assert _image_argv(_split("docker run --rm -v x:/srv/xlrepro/results xlrepro:cpu reproduce smoke")) == [
        "reproduce",
        "smoke",
    ]


APPENDIX = [
    "A.1 Abstract",
    "A.2 Artifact check-list",
    "A.3 Description",
    "A.4 Installation",
    "A.5 Experiment workflow",
    "A.6 Evaluation and expected results",
    "A.7 Experiment customization",
    "A.8 Notes",
    "A.9 Methodology",
]


def test_artifact_md_has_the_appendix_headings_in_order():
    text = (REPO / "ARTIFACT.md").read_text()
    heads = [h.strip() for h in re.findall(r"^#{2,3} (.+)$", text, re.M)]
    pos = []
    for want in APPENDIX:
        hit = [i for i, h in enumerate(heads) if h.startswith(want)]
        assert hit, f"ARTIFACT.md lacks the heading {want!r}"
        pos.append(hit[0])
    assert pos == sorted(pos), "the A.1-A.9 headings are out of order"
    for word in ("disk", "time to prepare", "time to run", "hardware", "kick-the-tires"):
        assert word in text.lower(), f"ARTIFACT.md does not state {word!r}"


def test_every_claim_row_has_a_command_or_says_it_is_unsupported():
    text = (REPO / "ARTIFACT.md").read_text()
    section = text.split("## A.6", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("| C")]
    assert len(rows) >= 10, "the claims table has too few rows"
    for r in rows:
        assert "`nox -s" in r or "`xlrepro " in r or "not yet supported" in r, f"claim row without a command: {r[:100]}"


def test_license_and_citation_ship_with_the_code():
    """Apache-2.0 in full (as google-research/xtreme and transformers use), declared in setup.py's
    metadata, and a CITATION.cff that cites the software and the reproduced paper."""
    import ast

    import yaml

    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 170  # the full text
    call = next(
        n
        for n in ast.walk(ast.parse((REPO / "setup.py").read_text()))
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setup"
    )
    kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("license", "license_files")}
    assert kw == {"license": "Apache-2.0", "license_files": ["LICENSE"]}
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"].startswith("1.2") and cff["type"] == "software" and cff["license"] == "Apache-2.0"
    assert cff["title"] and cff["authors"] and "message" in cff
    version = re.search(r'^VERSION = "(.+)"$', (REPO / "setup.py").read_text(), re.M).group(1)
    assert str(cff["version"]) == version
    paper = next(r for r in cff["references"] if "Intermediate-Task Training" in r["title"])
    assert paper["year"] == 2020 and paper["authors"][0]["family-names"] == "Phang"
    assert any("2005.13013" in str(i["value"]) for i in paper["identifiers"])


def _section(text: str, heading: str) -> str:
    m = re.search(rf"^## {re.escape(heading)}[^\n]*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, f"README.md has no '## {heading}' section"
    return m.group(1)


def test_readme_route_from_set_up_to_the_cli(nox_sessions, cli):
    """A newcomer who follows Set-up gets a shell where the commands under "Using it" run: the route
    names only existing sessions and subcommands, and one of its sessions installs xlrepro into the
    environment the README tells them to activate."""
    import ast

    readme = (REPO / "README.md").read_text()
    setup, using = _section(readme, "Set-up"), _section(readme, "Using it")
    setup_cmds = [c for code in _code(setup) for c in code.splitlines() if c.strip()]
    assert "pip install nox && nox -s smoke" in setup_cmds and "pip install nox && nox -s tests" in setup_cmds
    sessions = [
        n for c in setup_cmds for part in re.split(r"&&|;", c) for n in (_nox_sessions(_split(part.strip())) or [])
    ]
    assert sessions and all(n in nox_sessions for n in sessions), (sessions, sorted(nox_sessions))
    activate = [
        m.group(1) for c in setup_cmds for m in [re.match(r"(?:source|\.) (\S+)/bin/activate$", c.strip())] if m
    ]
    assert activate, "Set-up does not say which environment to activate for the `xlrepro` commands"
    tree = ast.parse((REPO / "noxfile.py").read_text())
    funcs = {
        f.name: ast.get_source_segment((REPO / "noxfile.py").read_text(), f)
        for f in tree.body
        if isinstance(f, ast.FunctionDef)
    }
    providers = [
        n
        for n in sessions
        if n in funcs and "install(session" in funcs[n] and any(f'Path("{a}")' in funcs[n] for a in activate)
    ]
    assert providers, f"no Set-up session installs xlrepro into {activate} (sessions {sessions})"
    assert "-e" in funcs["install"] and "session.install" in funcs["install"]  # editable, extension compiled
    used = [_split(c) for code in _code(using) for c in code.splitlines() if c.split(" #")[0].strip()]
    subs = {w[1] for w in used if w[:1] == ["xlrepro"] and len(w) > 1}
    assert subs and subs <= _subcommands(cli), subs - _subcommands(cli)


def test_help_texts_and_messages_name_only_existing_commands(cli):
    """Every `xlrepro ...` span in the CLI's help texts and in the package's strings and comments is
    a command the CLI accepts (e.g. `xlrepro config list`, which `reproduce --help` points at)."""
    texts = []

    def walk(parser):
        texts.extend(filter(None, [parser.description, parser.epilog]))
        for a in parser._actions:
            texts.extend(filter(None, [a.help if a.help != argparse.SUPPRESS else None]))
            if isinstance(a, argparse._SubParsersAction):
                for p in a.choices.values():
                    walk(p)

    walk(cli)
    assert any("config list" in t for t in texts)
    for path in sorted((REPO / "xlrepro").rglob("*.py")):
        texts.append(path.read_text(encoding="utf-8"))
    spans = {s for t in texts for s in re.findall(r"`(xlrepro [^`\n]+)`", t)}
    assert len(spans) >= 5, spans
    for span in sorted(spans):
        if "{" in span:  # an f-string template
            continue
        argv = [w for w in _split(span)[1:] if w not in ("...", "…")]
        if argv:
            _check_cli(cli, argv, f"`{span}`")
    with pytest.raises(AssertionError):
        _check_cli(cli, ["config", "lists"], "test")
