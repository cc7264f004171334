"""nox sessions: the entry points a reviewer and CI use.

  nox -s tests      the whole test suite (CPU), the smoke reproduction end to end included
  nox -s smoke      the kick-the-tires reproduction: `xlrepro reproduce smoke --out results/smoke`
  nox -s info       build metadata and op availability of the installed package

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
