"""The CUDA k-selection's logic, checked on the CPU.

csrc/cuda/topk.cuh is the selection code of the CUDA similarity kernels, written as host-and-device
functions. tests/cpp/topk_select_test.cpp replays the kernels' decomposition with those very
functions (strided row scans + tree merge, column chunks + partial-list merge, running lists across
tiles) and compares every row and column list with brute force on random scores, ties everywhere
and duplicates, for every compile-time list size and tiles narrower than k. This runs without a GPU;
the CUDA tests in tests/ops/test_similarity.py run the kernels themselves when a GPU is lent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cuda_topk_selection_replayed_on_the_host_matches_brute_force(tmp_path):
    cxx = os.environ.get("CXX", "g++")
    assert shutil.which(cxx), f"{cxx} not found: the C++ compiler that builds xlrepro._C is needed here too"
    exe = tmp_path / "topk_select_test"
    build = subprocess.run(
        [
            cxx,
            "-std=c++17",
            "-O2",
            "-Wall",
            "-Wextra",
            "-o",
            str(exe),
            str(ROOT / "tests" / "cpp" / "topk_select_test.cpp"),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    assert "warning" not in build.stderr, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith("0 failures") and "ok: 200 cases" in run.stdout, run.stdout


def _ptxas_report(stack=0, spills=0, drop=0):
    """ptxas -v lines for every k-selection kernel instance of one architecture (names as nvcc mangles them)."""
    import noxfile

    lines = []
    for kernel in noxfile.SELECTION_KERNELS:
        for K in (1, 2, 4, 8, 16, 32):
            name = f"_ZN7xlrepro12_GLOBAL__N_1{len(kernel)}{kernel}ILi{K}EEEvPKf"
            lines += [
                f"ptxas info    : Compiling entry function '{name}' for 'sm_90'",
                f"ptxas info    : Function properties for {name}",
                f"    {stack} bytes stack frame, {spills} bytes spill stores, {spills} bytes spill loads",
                "ptxas info    : Used 32 registers, used 1 barriers",
            ]
    return "\n".join(lines[: len(lines) - 4 * drop])


def test_cuda_build_register_check_passes_clean_reports_and_names_spills(monkeypatch):
    """nox -s cuda_build fails when a k-selection kernel spills its lists or a report is missing."""
    monkeypatch.syspath_prepend(str(ROOT))
    import noxfile

    assert noxfile.check_selection_registers(_ptxas_report(), 1) is None
    assert "expected 36" in noxfile.check_selection_registers(_ptxas_report(), 2)
    assert "expected 18" in noxfile.check_selection_registers(_ptxas_report(drop=1), 1)
    why = noxfile.check_selection_registers(_ptxas_report(spills=8), 1)
    assert "left registers" in why and "spill stores 8 B" in why and why.count("kernel") >= 18
    assert "stack 16 B" in noxfile.check_selection_registers(_ptxas_report(stack=16), 1)
