"""`xlrepro data verify`: task x split x language, expected vs found examples, hash status.

Expected counts come from each task's ``sizes:`` block (``xlrepro/tasks/<task>.yaml``: per
split, a language or ``"*"`` for every language, and ``source`` naming the dataset card or
paper they were taken from). Found counts read the files through the task's readers (the same
path training takes). The hash column compares every file read with ``data.lock``: ``ok``,
``unpinned`` (not recorded by prepare) or ``CHANGED``.

Each task's ``download:`` and ``sizes:`` blocks say whether their facts (URLs, Hub repo ids,
configs and splits; expected counts) were checked against a primary source: ``verified: true``
with ``checked:`` naming what was compared with which source, or ``verified: false`` with the
reason in ``checked:``. The table's footer shows that status per task (``facts_status``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xlrepro.data import lock as lockmod
from xlrepro.data.prepare import count_examples
from xlrepro.errors import ConfigError, DataFormatError
from xlrepro.tasks import get_task


@dataclass
class Row:
    task: str
    split: str
    lang: str
    expected: int | None
    found: int | None
    hashes: str  # "ok", "unpinned", "CHANGED: file", "-"
    note: str = ""

    @property
    def problem(self) -> bool:
        return self.found is None or self.hashes.startswith("CHANGED")


def expected_count(spec, split: str, lang: str) -> int | None:
    per = (spec.sizes or {}).get(split) or {}
    if lang in per:
        return int(per[lang])
    return int(per["*"]) if "*" in per else None


def verify_task(spec, task_dir: Path, root: Path, lock: dict, languages=None, source: str = "local") -> list[Row]:
    if spec.components:
        return [
            r for c in spec.components for r in verify_task(get_task(c), task_dir / c, root, lock, languages, source)
        ]
    rows = []
    for split in spec.splits:
        for lang in spec.split_languages(split):
            if languages is not None and lang not in languages:
                continue
            exp = expected_count(spec, split, lang)
            try:
                res = spec.read(task_dir, split, lang)
            except FileNotFoundError as e:
                first = str(e).splitlines()[0]
                rows.append(Row(spec.name, split, lang, exp, None, "-", f"missing: {first}"))
                continue
            except (DataFormatError, ConfigError, KeyError, ValueError) as e:
                rows.append(Row(spec.name, split, lang, exp, None, "-", f"unreadable: {e}"))
                continue
            n = count_examples(res)
            states = []
            for f in res.files:
                rel = lockmod.rel(root, f)
                if not (root / rel).is_file():
                    continue
                st = lockmod.status(root, lock, rel)
                states.append(f"CHANGED: {rel}" if st == "CHANGED" else st)
            changed = [s for s in states if s.startswith("CHANGED")]
            hashes = changed[0] if changed else ("unpinned" if "unpinned" in states else ("ok" if states else "-"))
            note = "" if exp is None or exp == n else f"{n - exp:+d} vs expected"
            rows.append(Row(spec.name, split, lang, exp, n, hashes, note))
    return rows


def facts_status(spec) -> list[str]:
    """``download: verified (...)`` / ``download: UNVERIFIED: ...`` and the same for ``sizes``."""
    out = []
    for block in ("download", "sizes"):
        d = getattr(spec, block) or {}
        if not d:
            continue
        checked = d.get("checked") or "(no record of a check)"
        if d.get("verified") is True:
            out.append(f"{block}: verified ({checked})")
        else:
            out.append(f"{block}: UNVERIFIED: {checked}")
    return out


def render(rows: list[Row], sources: dict, checks: dict | None = None) -> str:
    head = f"{'task':<14} {'split':<5} {'lang':<5} {'expected':>9} {'found':>9} {'hash':<10} note"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.task:<14} {r.split:<5} {r.lang:<5} {'' if r.expected is None else r.expected:>9} "
            f"{'-' if r.found is None else r.found:>9} {r.hashes:<10} {r.note}"
        )
    missing = [r for r in rows if r.found is None]
    changed = [r for r in rows if r.hashes.startswith("CHANGED")]
    off = [r for r in rows if r.found is not None and r.expected is not None and r.found != r.expected]
    lines.append("")
    lines.append(
        f"{len(rows)} split/language pairs: {len(rows) - len(missing)} found, {len(missing)} missing or "
        f"unreadable, {len(changed)} changed since pinned, {len(off)} with a count other than expected"
    )
    lines.append("expected counts from:")
    for task, src in sources.items():
        lines.append(f"  {task}: {src or '(no published count recorded)'}")
    if checks:
        lines.append("facts checked against primary sources:")
        for task, states in checks.items():
            for st in states:
                lines.append(f"  {task} {st}")
    return "\n".join(lines)
