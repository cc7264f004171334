"""The test tree mirrors the package and its markers say what a test needs (tests/README.md).

- every test file lies in ``tests/`` (top-level modules), in ``tests/<sub>/`` for a subpackage
  ``xlrepro/<sub>/``, or in one of the extra folders (``e2e``, ``repo``); a file named after a
  subpackage does not sit at the top; file names are unique and there is no ``__init__.py``
  (pytest imports test files by their base name); every folder is listed in tests/README.md;
- a test that touches CUDA (``.cuda()``, a ``cuda`` device, ``torch.cuda``) carries the ``gpu``
  marker, and a ``gpu`` test touches CUDA: ``-m gpu`` selects exactly the CUDA tests;
- the ``gpu`` tests are skipped with the reason where there is no GPU, and are an error instead
  under XLREPRO_REQUIRE_GPU=1.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
PACKAGE = REPO / "xlrepro"
# folders that are not a subpackage: whole-pipeline runs, and checks of the repository as a whole
EXTRA = {"e2e", "repo"}
# folders without test files: the shipped samples, the C++ test of the CUDA selection logic
DATA = {"fixtures", "cpp"}


def subpackages() -> set[str]:
    return {p.parent.name for p in PACKAGE.glob("*/__init__.py")}


def all_test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "fixtures" not in p.relative_to(TESTS).parts)


def misplaced(files: list[Path], subs: set[str]) -> list[str]:
    """Why each file does not mirror the package, one line each."""
    bad = []
    for f in files:
        rel = f.relative_to(TESTS)
        if len(rel.parts) == 1:
            stem = f.stem[len("test_") :]
            owner = next((s for s in sorted(subs) if stem == s or stem.startswith(s + "_")), None)
            if owner:
                bad.append(f"tests/{rel}: named after xlrepro/{owner}/, move it to tests/{owner}/")
        elif len(rel.parts) > 2 or rel.parts[0] not in subs | EXTRA:
            bad.append(
                f"tests/{rel}: tests/{'/'.join(rel.parts[:-1])}/ is neither a subpackage of xlrepro/ "
                f"nor one of {sorted(EXTRA)}"
            )
    return bad


def test_every_test_file_mirrors_the_package():
    subs = subpackages()
    assert {"data", "ops", "phases", "study", "models", "metrics", "tasks", "smoke"} <= subs
    assert not misplaced(all_test_files(), subs), "\n".join(misplaced(all_test_files(), subs))


def test_the_layout_check_names_a_misplaced_file():
    subs = {"ops", "study"}
    bad = misplaced(
        [TESTS / p for p in ("test_ops_x.py", "opz/test_y.py", "e2e/test_z.py", "ops/a/test_w.py", "test_cli.py")],
        subs,
    )
    assert bad == [
        "tests/test_ops_x.py: named after xlrepro/ops/, move it to tests/ops/",
        "tests/opz/test_y.py: tests/opz/ is neither a subpackage of xlrepro/ nor one of ['e2e', 'repo']",
        "tests/ops/a/test_w.py: tests/ops/a/ is neither a subpackage of xlrepro/ nor one of ['e2e', 'repo']",
    ]


def test_names_are_unique_and_no_folder_is_a_package():
    names = [f.name for f in all_test_files()]
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)
    assert not list(TESTS.rglob("__init__.py"))


def test_every_folder_is_described_in_the_readme():
    readme = (TESTS / "README.md").read_text(encoding="utf-8")
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    assert folders <= subpackages() | EXTRA | DATA, folders - (subpackages() | EXTRA | DATA)
    undocumented = sorted(d for d in folders if f"`{d}/`" not in readme)
    assert not undocumented, f"tests/README.md does not describe {undocumented}"


# ---------------------------------------------------------------- the gpu marker


def _is_cuda(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.split(":")[0] == "cuda"


def _touches_cuda(node: ast.AST) -> bool:
    """``x.cuda()``, ``device="cuda"``, ``.to("cuda")``, ``torch.device("cuda")`` or ``torch.cuda.*``."""
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and n.attr == "cuda":
            return True  # x.cuda(), torch.cuda.is_available(), ...
        if isinstance(n, ast.Call):
            if any(k.arg == "device" and _is_cuda(k.value) for k in n.keywords):
                return True
            name = ast.unparse(n.func)
            if (name.endswith(".to") or name == "torch.device") and n.args and _is_cuda(n.args[0]):
                return True
    return False


def _cuda_parameter(decorator: ast.AST) -> bool:
    """``@pytest.mark.parametrize("device", [..., "cuda"])`` without ``pytest.param("cuda", marks=...gpu)``."""
    if not (isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("parametrize")):
        return False
    if len(decorator.args) < 2 or "device" not in ast.unparse(decorator.args[0]):
        return False
    marked = set()
    for n in ast.walk(decorator.args[1]):
        if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("param"):
            if any(k.arg == "marks" and "gpu" in ast.unparse(k.value) for k in n.keywords):
                marked |= {id(c) for c in ast.walk(n)}
    return any(_is_cuda(n) and id(n) not in marked for n in ast.walk(decorator.args[1]))


def _marks(decorators) -> set[str]:
    out = set()
    for d in decorators:
        text = ast.unparse(d.func if isinstance(d, ast.Call) else d)
        if text.startswith("pytest.mark."):
            out.add(text[len("pytest.mark.") :])
    return out


def cuda_marker_problems(source: str, where: str) -> list[str]:
    """Tests that touch CUDA without the gpu marker, and gpu tests that do not touch CUDA. A test
    touches CUDA when its body, its decorators' arguments or a module-level function it calls
    (directly or through others) does."""
    tree = ast.parse(source)
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    module_marks: set[str] = set()
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(ast.unparse(t) == "pytestmark" for t in n.targets):
            values = n.value.elts if isinstance(n.value, ast.List | ast.Tuple) else [n.value]
            module_marks |= _marks(values)
    memo: dict[str, bool] = {}

    def uses(fn, seen=()) -> bool:
        if fn.name not in memo:
            called = {c.func.id for c in ast.walk(fn) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
            memo[fn.name] = _touches_cuda(fn) or any(
                uses(funcs[c], seen + (fn.name,)) for c in called if c in funcs and c not in seen + (fn.name,)
            )
        return memo[fn.name]

    tests = [(n, set()) for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.startswith("Test")):
        tests += [(m, _marks(cls.decorator_list)) for m in cls.body if isinstance(m, ast.FunctionDef)]
    problems = []
    for fn, class_marks in tests:
        if not fn.name.startswith("test_"):
            continue
        marked = "gpu" in _marks(fn.decorator_list) | class_marks | module_marks
        cuda = uses(fn) if fn.name in funcs and funcs[fn.name] is fn else _touches_cuda(fn)
        cuda = cuda or any(_touches_cuda(d) or _cuda_parameter(d) for d in fn.decorator_list)
        if cuda and not marked:
            problems.append(f"{where}::{fn.name} uses CUDA but has no @pytest.mark.gpu")
        if marked and not cuda:
            problems.append(f"{where}::{fn.name} is marked gpu but uses no CUDA")
    return problems


def test_every_cuda_test_carries_the_gpu_marker_and_only_those():
    problems = []
    for f in all_test_files():
        problems += cuda_marker_problems(f.read_text(encoding="utf-8"), str(f.relative_to(REPO)))
    assert not problems, "\n".join(problems)
    marked = [f for f in all_test_files() if "pytest.mark.gpu" in f.read_text(encoding="utf-8")]
    assert {f.name for f in marked} >= {"test_similarity.py", "test_varlen_attention.py", "test_screen.py"}


def test_the_marker_check_finds_unmarked_and_needlessly_marked_tests():
    src = """
import pytest, torch

def _on_gpu(x):
    return x.cuda()

def _twice(x):
    return _on_gpu(_on_gpu(x))

def test_method_call():
    torch.ones(2).cuda()

def test_device_keyword():
    torch.ones(2, device="cuda:0")

def test_through_helpers():
    _twice(torch.ones(2))

def test_availability_branch():
    if torch.cuda.is_available():
        pass

def test_to():
    torch.ones(2).to("cuda")

@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_parametrized(device):
    torch.ones(2, device=device)

def test_backend_name_only():
    f(backend="cuda")  # a name in an error-message test, no device

@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_parametrized_with_a_marked_cuda_case(device):
    torch.ones(2, device=device)

@pytest.mark.parametrize("backend", ["cpp", "cuda"])
def test_backend_names_only(backend):
    g(backend)

@pytest.mark.gpu
def test_marked_and_uses():
    torch.ones(2).cuda()

@pytest.mark.gpu
def test_marked_on_cpu():
    torch.ones(2)

class TestGroup:
    def test_in_a_class(self):
        torch.device("cuda")
"""
    got = cuda_marker_problems(src, "t.py")
    unmarked = ["method_call", "device_keyword", "through_helpers", "availability_branch", "to", "parametrized"]
    assert got == [f"t.py::test_{n} uses CUDA but has no @pytest.mark.gpu" for n in unmarked] + [
        "t.py::test_marked_on_cpu is marked gpu but uses no CUDA",
        "t.py::test_in_a_class uses CUDA but has no @pytest.mark.gpu",
    ]
    module = "import pytest\npytestmark = [pytest.mark.gpu]\n\ndef test_a():\n    x.cuda()\n"
    assert cuda_marker_problems(module, "m.py") == []


def _pytest(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_gpu_tests_skip_with_the_reason_or_fail_when_a_gpu_is_required():
    sys.path.insert(0, str(TESTS))
    from conftest import gpu_unavailable_reason

    target = ["tests/ops/test_screen.py", "-m", "gpu"]
    why = gpu_unavailable_reason()
    r = _pytest(*target, XLREPRO_REQUIRE_GPU="0")
    out = r.stdout + r.stderr
    if why is None:  # a GPU and a CUDA build: the gpu tests run
        assert r.returncode == 0 and "1 passed" in out and "skipped" not in out, out[-3000:]
        return
    assert r.returncode == 0, out[-3000:]
    assert "1 skipped" in out and f"gpu test: {why}" in out, out[-3000:]
    r = _pytest(*target, XLREPRO_REQUIRE_GPU="1")
    out = r.stdout + r.stderr
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, out[-3000:]
    assert f"XLREPRO_REQUIRE_GPU=1 but 1 gpu tests cannot run: {why}" in out, out[-3000:]


def test_markers_are_registered_and_strict(tmp_path):
    r = _pytest("--markers")
    assert "@pytest.mark.slow:" in r.stdout and "@pytest.mark.gpu:" in r.stdout, r.stdout[-2000:]
    probe = tmp_path / "test_probe.py"
    probe.write_text("import pytest\n\n@pytest.mark.gpux\ndef test_a():\n    pass\n")
    r = _pytest("-c", str(REPO / "pytest.ini"), "--rootdir", str(REPO), str(probe))
    assert r.returncode != 0 and "'gpux' not found in `markers` configuration option" in r.stdout + r.stderr, (
        r.stdout[-2000:] + r.stderr[-2000:]
    )
