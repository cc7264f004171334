"""nox sessions: the entry points a reviewer and CI use.

  nox -s tests      the whole test suite (CPU), the smoke reproduction end to end included
  nox -s smoke      the kick-the-tires reproduction: `xlrepro reproduce smoke --out results/smoke`
  nox -s info       build metadata and op availability of the installed package
  nox -s cuda_build compile the CUDA kernels (torch CUDA build + nvcc; no GPU needed to compile)

Each session makes its own virtualenv with Python 3.11, installs torch (CPU build) and the
pinned requirements, and builds xlrepro's operator library against that torch.
"""
import os

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


@nox.session(python=PYTHON, download_python="never")
def tests(session: nox.Session) -> None:
    install(session, "-r", "requirements/test.txt")
    session.run("xlrepro", "info")
    session.run("python", "-m", "pytest", "-q", "-ra", *session.posargs, env={"XLREPRO_PROGRESS": "0"})


@nox.session(python=PYTHON, download_python="never")
def smoke(session: nox.Session) -> None:
    install(session)
    out = os.environ.get("XLREPRO_SMOKE_OUT", "results/smoke")
    session.run("xlrepro", "reproduce", "smoke", "--out", out, *session.posargs)
    session.log(f"report: {out}/report.md, results: {out}/results.json")


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
    session.run("python", "setup.py", "build_ext", "--build-temp", os.path.join(tmp, "build"),
                "--build-lib", os.path.join(tmp, "lib"),
                env={"CUDA_HOME": cuda_home, "XLREPRO_USE_CUDA": "1",
                     "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0")})
    session.run("python", "-c", "import glob, json, sys; so = glob.glob(sys.argv[1] + '/xlrepro/_C*.so'); "
                "info = json.load(open(sys.argv[1] + '/xlrepro/_build_info.json')); "
                "assert so and info['extension'] == 'cuda', (so, info); print('built', so[0], info['cuda_arch_list'])",
                os.path.join(tmp, "lib"))
