"""Build and install xlrepro and its operator library ``xlrepro._C``.

The extension is a CPU extension (``CppExtension``) by default and a CUDA extension
(``CUDAExtension``) when a CUDA build of torch and a CUDA toolkit are present. Knobs (env vars):

  XLREPRO_USE_CUDA     auto (default) | 1 (require CUDA; fail if impossible) | 0 (CPU only)
  XLREPRO_SKIP_EXT     1: build no extension at all (pure-PyTorch fallbacks are used)
  TORCH_CUDA_ARCH_LIST which GPU architectures to compile for (default "8.0;9.0": A100, H100/H200)
  CUDA_HOME            the toolkit root (set it explicitly: auto-detection can pick a wrong folder)
  MAX_JOBS             parallel compile jobs (default: from free memory, at most the core count)
  DEBUG=1              -O0 -g
  XLREPRO_PTXAS_VERBOSE=1  ptxas prints each kernel's registers, stack and spills (nox -s cuda_build
                       checks from it that the k-selection kernels keep their lists in registers)

Install without build isolation so the extension is compiled against the torch you run:
``pip install --no-build-isolation -e .``. The build writes ``xlrepro/_build_info.json``
(ops compiled, torch/CUDA versions, arch list, git commit), which ``xlrepro info`` reports.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import subprocess
import sys

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = "0.1.0"


def _git_commit() -> str | None:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "HEAD"], cwd=HERE, stderr=subprocess.DEVNULL, text=True
        ).strip()
    except Exception:
        return None


def _max_jobs() -> str:
    if os.environ.get("MAX_JOBS"):
        return os.environ["MAX_JOBS"]
    try:
        with open("/proc/meminfo") as f:
            avail_kb = next(int(l.split()[1]) for l in f if l.startswith("MemAvailable"))
        by_mem = max(1, avail_kb // (3 * 1024 * 1024))  # ~3 GB per nvcc/g++ job on torch headers
    except Exception:
        by_mem = 1
    return str(max(1, min(os.cpu_count() or 1, by_mem)))


def _nvidia_wheel_includes() -> list[str]:
    import site

    out = []
    for sp in site.getsitepackages() + [site.getusersitepackages()]:
        out += sorted(glob.glob(os.path.join(sp, "nvidia", "*", "include")))
    return out


_BUILD_INFO: dict = {}


def _write_build_info(info: dict, folder: str | None = None) -> None:
    """Write the build record next to the extension that was built (the source tree for -e installs)."""
    _BUILD_INFO.update(info)
    path = os.path.join(folder or os.path.join(HERE, "xlrepro"), "_build_info.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _extension():
    info = {
        "xlrepro_version": VERSION,
        "git_commit": _git_commit(),
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "extension": None,
        "reason": None,
    }
    if os.environ.get("XLREPRO_SKIP_EXT") == "1":
        info["reason"] = "XLREPRO_SKIP_EXT=1 at build time"
        _write_build_info(info)
        return [], {}
    import torch
    from torch.utils import cpp_extension as ce

    want = os.environ.get("XLREPRO_USE_CUDA", "auto").lower()
    cuda_reasons = []
    if want in ("0", "false", "no"):
        cuda_reasons.append("XLREPRO_USE_CUDA=0")
    if torch.version.cuda is None:
        cuda_reasons.append(f"torch {torch.__version__} is a CPU build")
    if ce.CUDA_HOME is None or not os.path.exists(os.path.join(ce.CUDA_HOME, "bin", "nvcc")):
        cuda_reasons.append(f"no nvcc under CUDA_HOME={ce.CUDA_HOME!r}")
    use_cuda = not cuda_reasons
    if want in ("1", "true", "yes") and not use_cuda:
        raise RuntimeError("XLREPRO_USE_CUDA=1 but a CUDA extension cannot be built: " + "; ".join(cuda_reasons))

    debug = os.environ.get("DEBUG") == "1"
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    cxx += ["-std=c++20", "-fopenmp"]  # torch >= 2.14 headers need C++20
    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    kwargs = dict(extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])
    if use_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        kwargs["extra_compile_args"]["nvcc"] = (["-O0", "-g", "-G"] if debug else ["-O3"]) + [
            "-std=c++20",
            "--expt-relaxed-constexpr",
            "-lineinfo",
        ]
        if os.environ.get("XLREPRO_PTXAS_VERBOSE") == "1":
            kwargs["extra_compile_args"]["nvcc"] += ["-Xptxas", "-v"]
        # CUDA wheels of torch ship headers (cusparse.h, ...) that a minimal toolkit may lack
        kwargs["include_dirs"] = _nvidia_wheel_includes()
        ext = ce.CUDAExtension("xlrepro._C", sources, **kwargs)
    else:
        ext = ce.CppExtension("xlrepro._C", sources, **kwargs)
    os.environ["MAX_JOBS"] = _max_jobs()
    info.update(
        {
            "extension": "cuda" if use_cuda else "cpu",
            "reason": None if use_cuda else "CPU-only build: " + "; ".join(cuda_reasons),
            "torch_version": torch.__version__,
            "torch_cuda_version": torch.version.cuda,
            "cuda_home": ce.CUDA_HOME if use_cuda else None,
            "cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST") if use_cuda else None,
            "sources": sources,
            "debug": debug,
            "python": sys.version.split()[0],
        }
    )
    base = ce.BuildExtension.with_options(use_ninja=True)

    class BuildExtWithInfo(base):
        def run(self):
            super().run()
            # next to the built xlrepro/_C*.so: the source tree (inplace) or the build folder
            _write_build_info(_BUILD_INFO, os.path.dirname(self.get_ext_fullpath("xlrepro._C")))

    _BUILD_INFO.update(info)
    return [ext], {"build_ext": BuildExtWithInfo}


ext_modules, cmdclass = _extension()

setup(
    name="xlrepro",
    version=VERSION,
    description="Reproducible English intermediate-task training for zero-shot cross-lingual transfer "
    "(Phang et al. 2020) and its data-volume scaling study on XTREME / XTREME-R",
    license="Apache-2.0",
    license_files=["LICENSE"],
    packages=find_packages(include=["xlrepro", "xlrepro.*"]),
    package_data={
        "xlrepro": [
            "_build_info.json",
            "data/*.tsv",
            "data/*.yaml",
            "tasks/*.yaml",
            "configs/**/*.yaml",
            "configs/deepspeed/*.json",
            "experiments/*.yaml",
        ]
    },
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "transformers>=4.44",
        "tokenizers>=0.19",
        "datasets>=3.0",
        "numpy",
        "pyyaml",
        "safetensors",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "cluster": ["submitit>=1.5"],  # the SLURM executor (requirements/cluster.txt pins it)
        "tensorboard": ["tensorboard>=2.14"],
    },  # logging.tensorboard: true (requirements/test.txt pins it)
    entry_points={"console_scripts": ["xlrepro=xlrepro.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
