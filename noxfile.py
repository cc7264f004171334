"""nox sessions: the entry points a reviewer and CI use.

  nox -s tests      the whole test suite (CPU), the smoke reproduction end to end included, and
                    the DeepSpeed engine (deepspeed from requirements/deepspeed.txt; its CPU ops
                    are compiled once into .nox/.torch_extensions and reused);
                    `nox -s tests -- -m "not slow"` leaves out the trainings (tests/README.md)
  nox -s smoke      the kick-the-tires reproduction: `xlrepro reproduce smoke --out results/smoke`
  nox -s info       build metadata and op availability of the installed package
  nox -s dev        a working environment at .venv/ (xlrepro editable, the test packages);
                    then `source .venv/bin/activate` and run `xlrepro ...`
  nox -s cuda_build compile the CUDA kernels (torch CUDA build + nvcc; no GPU needed to compile)
  nox -s lint       import layers (lint-imports, .importlinter), ruff check (ruff.toml), hadolint,
                    shell syntax, the image pin policy and the document-drift checks
  nox -s format_check  `ruff format --check --diff` (lint runs the check without the diff)
  nox -s lock_check the image lock files are what `docker/lock.sh` would write today (needs PyPI)
  nox -s typecheck  mypy over xlrepro/ (every module; UNTYPED would list one that cannot be typed)
  nox -s gpu_tests  the tests marked gpu against a CUDA build of xlrepro._C (skips where no GPU;
                    `nox -s gpu_tests -- tests/ops` runs a folder instead)
  nox -s bench      the micro-benchmarks in benchmarks/ (`nox -s bench -- retrieval --quick`)
  nox -s docker_build  build the CPU image with podman over a debootstrapped Debian base and run
                    the smoke reproduction inside it with the network off (root, Debian 12)
  nox -s "reproduce(result='<name>')"  one paper result or scaling figure (xlrepro/experiments/),
                    on the host, or in the image when XLREPRO_IMAGE=<image> is set

Each of tests/smoke/info/dev/typecheck/gpu_tests/bench makes its own virtualenv with Python 3.11,
installs torch (CPU build unless said otherwise) and the pinned requirements, and (except
typecheck) builds xlrepro's operator library against that torch.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.error_on_missing_interpreters = True  # never silently skip a session
nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["tests"]

PYTHON = "3.11"
TORCH = os.environ.get("XLREPRO_TORCH", "torch==2.13.0")


def install(session: nox.Session, *extra: str) -> None:
    session.install("--upgrade", "pip")  # old pips build `-e .` without PEP 517 and lose --no-build-isolation
    session.install(TORCH)
    session.install("-r", "requirements/host.txt", *extra)
    # --no-build-isolation: compile xlrepro._C against the torch installed above
    session.install("--no-build-isolation", "-e", ".")


def install_deepspeed(session: nox.Session) -> dict:
    """deepspeed (its setup.py imports torch: no build isolation) and its CPU ops (shared-memory
    communication, CPU Adam), compiled once into .nox/.torch_extensions and reused by later runs
    and CI steps that keep .nox (a first build takes a few minutes on 2 cores)."""
    session.install("--no-build-isolation", "-r", "requirements/deepspeed.txt")
    env = {"TORCH_EXTENSIONS_DIR": os.path.abspath(os.path.join(".nox", ".torch_extensions"))}
    session.run("python", "-c", "from xlrepro.ds_engine import prebuild_ops; prebuild_ops()", env=env)
    return env


@nox.session(python=PYTHON, download_python="never")
def tests(session: nox.Session) -> None:
    install(session, "-r", "requirements/test.txt")
    env = install_deepspeed(session)
    session.run("xlrepro", "info")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-ra",
        *session.posargs,
        env={"XLREPRO_PROGRESS": "0", "XLREPRO_REQUIRE_DEEPSPEED": "1", **env},
    )


@nox.session(python=PYTHON, download_python="never")
def smoke(session: nox.Session) -> None:
    install(session)
    out = os.environ.get("XLREPRO_SMOKE_OUT", "results/smoke")
    session.run("xlrepro", "reproduce", "smoke", "--out", out, *session.posargs)
    session.log(f"report: {out}/report.md, results: {out}/results.json")


@nox.session(python=PYTHON, download_python="never", reuse_venv=True)
def dev(session: nox.Session) -> None:
    """A working environment for the `xlrepro` command: the tests session's packages, xlrepro
    installed editable (extension compiled), reachable as .venv/ in the checkout. Then
    `source .venv/bin/activate`; rerunning updates it in place."""
    install(session, "-r", "requirements/test.txt")
    link, target = Path(".venv"), Path(session.virtualenv.location)
    if link.is_symlink() or not link.exists():
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)
    elif link.resolve() != target.resolve():
        session.error(f".venv exists and is not this session's environment ({target}); move it away first")
    session.run("xlrepro", "info")
    session.log("now: source .venv/bin/activate   (then `xlrepro --help`)")


@nox.session(python=PYTHON, download_python="never")
def info(session: nox.Session) -> None:
    install(session)
    session.run("xlrepro", "info", *session.posargs)


@nox.session(python=PYTHON, download_python="never")
def cuda_build(session: nox.Session) -> None:
    """Compile csrc/cuda/*.cu for sm_80 and sm_90 against a CUDA build of torch (no GPU needed).

    CUDA_HOME must point at the toolkit root (auto-detection can pick a wrong folder); the build
    goes to a temporary folder so the CPU extension of the source tree is left alone.
    """
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    if not os.path.exists(os.path.join(cuda_home, "bin", "nvcc")):
        session.error(f"no nvcc under CUDA_HOME={cuda_home}: set CUDA_HOME to the CUDA toolkit root")
    session.install(os.environ.get("XLREPRO_TORCH_CUDA", "torch==2.14.1"))
    session.install("numpy", "ninja==1.13.2", "pybind11==3.1.0", "setuptools", "wheel")
    tmp = session.create_tmp()
    for d in ("build", "lib"):  # a full build every time: the ptxas check reads every kernel's report
        shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    log = session.run(
        "python",
        "setup.py",
        "build_ext",
        "--build-temp",
        os.path.join(tmp, "build"),
        "--build-lib",
        os.path.join(tmp, "lib"),
        silent=True,
        env={
            "CUDA_HOME": cuda_home,
            "XLREPRO_USE_CUDA": "1",
            "TORCH_CUDA_ARCH_LIST": archs,
            "XLREPRO_PTXAS_VERBOSE": "1",
        },
    )
    why = check_selection_registers(log or "", len(archs.split(";")))
    if why:
        session.error(why)
    session.log(f"ptxas: the k-selection kernels have no stack frame and no spills ({archs})")
    session.run(
        "python",
        "-c",
        "import glob, json, sys; so = glob.glob(sys.argv[1] + '/xlrepro/_C*.so'); "
        "info = json.load(open(sys.argv[1] + '/xlrepro/_build_info.json')); "
        "assert so and info['extension'] == 'cuda', (so, info); print('built', so[0], info['cuda_arch_list'])",
        os.path.join(tmp, "lib"),
    )


SELECTION_KERNELS = ("row_select_kernel", "col_partial_kernel", "col_merge_kernel")
SELECTION_LIST_SIZES = 6  # K in {1, 2, 4, 8, 16, 32}: csrc/cuda/topk.cuh, with_k


def check_selection_registers(log: str, n_archs: int) -> str | None:
    """Why ptxas's -v report fails the check, or None: every instance of the CUDA k-selection
    kernels (csrc/cuda/similarity.cu) must have no stack frame and no spills (lists in registers)."""
    props = re.findall(
        r"Function properties for (\S+)\s+(\d+) bytes stack frame, (\d+) bytes spill stores, "
        r"(\d+) bytes spill loads",
        log,
    )
    sel = [(name, int(a), int(b), int(c)) for name, a, b, c in props if any(k in name for k in SELECTION_KERNELS)]
    want = len(SELECTION_KERNELS) * SELECTION_LIST_SIZES * n_archs
    if len(sel) != want:
        return f"ptxas reported {len(sel)} k-selection kernel instances, expected {want}"
    bad = [f"{n}: stack {a} B, spill stores {b} B, spill loads {c} B" for n, a, b, c in sel if a or b or c]
    if bad:
        return "k-selection kernels whose lists left registers:\n  " + "\n  ".join(bad)
    return None


# Tools of the static checks (exact pins; requirements/test.txt pins the same versions).
MYPY = ("mypy==2.4.1", "types-PyYAML==6.0.12.20261113")
# Modules mypy skips, each with a comment saying why it cannot be typed. Empty: every module of
# xlrepro/ is checked (mypy 2.4.1). Add one only with its reason; shrink only.
UNTYPED: tuple[str, ...] = ()


@nox.session(python=PYTHON, download_python="never")
def lint(session: nox.Session) -> None:
    """Static checks, no torch: import layers, ruff, hadolint, bash -n, pin policy, lock freshness, document drift."""
    session.install("-r", "requirements/test.txt")
    # the layers contract (.importlinter) over the source tree; nothing is imported or built
    session.run("lint-imports", "--no-cache", env={"PYTHONPATH": os.getcwd()})
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("hadolint", "--failure-threshold", "warning", "docker/Dockerfile")
    for script in ("docker/ci_build.sh", "docker/lock.sh", ".ci/run"):
        session.run("bash", "-n", script, external=True)
    # xlrepro's CLI parser is imported from the source tree (argparse only; nothing is built)
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-ra",
        "tests/repo/test_docker_policy.py",
        "tests/repo/test_artifact.py",
        *session.posargs,
        env={"PYTHONPATH": os.getcwd()},
    )


@nox.session(python=PYTHON, download_python="never")
def format_check(session: nox.Session) -> None:
    """`ruff format --check --diff`: the changes the formatter would make (`lint` runs the check
    without the diff); `ruff format .` applies them."""
    session.install("-r", "requirements/test.txt")
    session.run("ruff", "format", "--check", "--diff", ".", *session.posargs)


@nox.session(python=PYTHON, download_python="never")
def lock_check(session: nox.Session) -> None:
    """Re-resolve the image locks with the date in their headers and diff (PyPI needed)."""
    session.install("-r", "requirements/test.txt")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-ra",
        "tests/repo/test_docker_policy.py",
        "-k",
        "lock",
        *session.posargs,
        env={"XLREPRO_LOCK_CHECK": "required"},
    )


@nox.session(python=PYTHON, download_python="never")
def typecheck(session: nox.Session) -> None:
    """mypy over the package source (not installed: nothing is compiled) against the pinned deps."""
    session.install(TORCH)
    session.install("-r", "requirements/host.txt", *MYPY)
    files = sorted(str(p) for p in Path("xlrepro").rglob("*.py") if str(p) not in UNTYPED)
    session.run(
        "mypy",
        "--python-version",
        "3.11",
        "--ignore-missing-imports",
        "--follow-imports=silent",
        "--cache-dir",
        os.path.join(".nox", ".mypy_cache"),
        *files,
        *session.posargs,
    )
    session.log(f"{len(files)} modules checked; {len(UNTYPED)} skipped (noxfile.py UNTYPED)")


def _gpu_visible() -> str | None:
    """Why no GPU can be used here, or None when an NVIDIA GPU is visible."""
    if not shutil.which("nvidia-smi"):
        return "nvidia-smi not found"
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"nvidia-smi failed: {e}"
    if out.returncode != 0 or "GPU" not in out.stdout:
        return f"nvidia-smi -L lists no GPU ({(out.stderr or out.stdout).strip()[:200]})"
    return None


@nox.session(python=PYTHON, download_python="never")
def gpu_tests(session: nox.Session) -> None:
    """The tests marked gpu with xlrepro._C built for CUDA (XLREPRO_USE_CUDA=1); arguments replace
    the selection (`-- tests/ops`, `-- -m "not slow"`). A gpu test that cannot run is an error here
    (XLREPRO_REQUIRE_GPU=1), not a skip. Needs an NVIDIA GPU, a CUDA toolkit matching torch's CUDA
    major version (CUDA_HOME) and a CUDA torch: set XLREPRO_TORCH (default torch==2.13.0 from
    PyPI, a CUDA 13.0 build)."""
    why = _gpu_visible()
    if why:
        session.skip(
            f"no NVIDIA GPU visible ({why}); GPU tests need a CUDA machine, e.g. the GPU image "
            "(docker/README.md); nothing was tested"
        )
    # PyPI's torch==2.13.0 is the CUDA 13.0 build; keep a local CPU wheel folder out of the way
    session.install(
        os.environ.get("XLREPRO_TORCH", "torch==2.13.0"),
        "--index-url",
        "https://pypi.org/simple",
        env={"PIP_FIND_LINKS": ""},
    )
    session.install("-r", "requirements/host.txt", "-r", "requirements/test.txt")
    session.install(
        "--no-build-isolation",
        "-e",
        ".",
        env={"XLREPRO_USE_CUDA": "1", "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0")},
    )
    session.run("xlrepro", "info")
    session.run(
        "python",
        "-c",
        "import torch, sys; sys.exit(0 if torch.cuda.is_available() else "
        "'torch sees no GPU: a CPU build of torch, or a driver older than its CUDA')",
    )
    args = session.posargs or ["-m", "gpu"]
    session.run("python", "-m", "pytest", "-q", "-ra", *args, env={"XLREPRO_PROGRESS": "0", "XLREPRO_REQUIRE_GPU": "1"})


@nox.session(python=PYTHON, download_python="never")
def bench(session: nox.Session) -> None:
    """Run benchmarks/<name>.py (all of them, or the one named first in posargs, with the rest as
    its arguments). Timings depend on the machine: they are printed, not checked."""
    names = sorted(p.stem for p in Path("benchmarks").glob("*.py"))
    if not names:
        session.skip("no benchmarks in benchmarks/ yet")
    args = list(session.posargs)
    if args and not args[0].startswith("-"):
        if args[0] not in names:
            session.error(f"no benchmark {args[0]!r}; there are: {', '.join(names)}")
        names, args = [args[0]], args[1:]
    install(session)
    for name in names:
        session.run("python", f"benchmarks/{name}.py", *args, env={"XLREPRO_PROGRESS": "0"})


@nox.session(venv_backend="none")
def docker_build(session: nox.Session) -> None:
    """CI image check: docker/ci_build.sh (root on Debian 12; installs podman/runc/debootstrap).
    `nox -s docker_build -- gpu` builds the GPU variant over a stand-in CUDA base instead (CUDA_HOME:
    a CUDA 13 toolkit; about 4 GB of wheels from PyPI; not part of CI)."""
    if os.name != "posix" or os.geteuid() != 0:
        session.error(
            "docker_build needs root on a Debian 12 host (debootstrap, rootful podman); "
            "to build the image elsewhere follow docker/README.md"
        )
    session.run("bash", "docker/ci_build.sh", *session.posargs, external=True)


# One session per paper result and scaling figure: the spec files in xlrepro/experiments/ (plus
# the smoke reproduction). `nox -l` lists them as reproduce(result='<name>').
RESULTS = ["smoke"] + sorted(p.stem for p in Path("xlrepro/experiments").glob("*.yaml"))


def _container_engine() -> str | None:
    for engine in (os.environ.get("XLREPRO_CONTAINER_ENGINE"), "docker", "podman"):
        if engine and shutil.which(engine):
            return engine
    return None


@nox.session(python=PYTHON, download_python="never")
@nox.parametrize("result", RESULTS)
def reproduce(session: nox.Session, result: str) -> None:
    """`xlrepro reproduce <result>` on the host, or inside the image when XLREPRO_IMAGE names one.

    Host: a virtualenv like `tests` (torch from XLREPRO_TORCH). Image: `<engine> run` with
    data/ and models/ mounted read-only, results/ read-write and the Hugging Face cache in the
    volume XLREPRO_HF_VOLUME (default xlrepro-hf); XLREPRO_OFFLINE=1 also turns the network off.
    Extra arguments go to `xlrepro reproduce` (e.g. `-- --dry-run`, or dotted overrides)."""
    # the X-STILTs specs share one folder: runs are keyed by their spec hash, so the baseline and
    # intermediate x target runs of xstilts-table are reused by xstilts-submission, not retrained
    out = os.path.join("results", "xstilts" if result.startswith("xstilts-") else result)
    image = os.environ.get("XLREPRO_IMAGE")
    if not image:
        install(session)
        env = {}
        # the paper-scale recipes train on the DeepSpeed engine (xstilts-squad.yaml); a dry run and the
        # smoke-scale results (torch engine) do not need it
        if result not in ("smoke", "scaling-smoke") and "--dry-run" not in session.posargs:
            env = install_deepspeed(session)
        session.run("xlrepro", "reproduce", result, "--out", out, *session.posargs, env=env)
        return
    engine = _container_engine()
    if engine is None:
        session.error(
            "XLREPRO_IMAGE is set but neither docker nor podman is installed "
            "(XLREPRO_CONTAINER_ENGINE names another engine)"
        )
    cwd = os.getcwd()
    for d in ("data", "models", "results"):
        os.makedirs(d, exist_ok=True)
    # the host user's uid writes results/ (owned by the host user afterwards); HOME is not needed
    cmd = [
        engine,
        "run",
        "--rm",
        "--user",
        f"{os.getuid()}:{os.getgid()}",
        "-e",
        "HOME=/tmp",
        "-v",
        f"{cwd}/data:/srv/xlrepro/data:ro",
        "-v",
        f"{cwd}/models:/srv/xlrepro/models:ro",
        "-v",
        f"{cwd}/results:/srv/xlrepro/results",
        "-v",
        f"{os.environ.get('XLREPRO_HF_VOLUME', 'xlrepro-hf')}:/cache/huggingface",
    ]
    if os.environ.get("XLREPRO_OFFLINE", "0") == "1":
        cmd += ["--network", "none", "-e", "XLREPRO_OFFLINE=1"]
    if shutil.which("nvidia-smi") and engine == "docker":
        cmd += ["--gpus", "all"]
    session.run(*cmd, image, "reproduce", result, "--out", f"/srv/xlrepro/{out}", *session.posargs, external=True)
