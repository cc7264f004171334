#!/usr/bin/env bash
# The GPU checks in one run, for a machine with an NVIDIA GPU, nvcc and a CUDA build of torch
# already installed (no network needed): build xlrepro._C for the visible card in place, run the
# op tests (their CUDA cases run only here), then the GPU retrieval benchmark.
#
#   bash benchmarks/gpu_check.sh            # build, tests, full benchmark
#   QUICK=1 bash benchmarks/gpu_check.sh    # build, tests, 10k shapes only
#
# Everything goes to $OUT (default results/gpu-check): env.txt (card, driver, torch), build.log,
# tests.txt, retrieval.md. It stops at the first failing step with that step's exit status;
# a missing GPU is an error, not a skip. Record card, date and numbers in benchmarks/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu-check}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "environment"
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  git rev-parse HEAD 2>/dev/null || echo "git: unknown commit"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || echo "nvidia-smi failed"
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
  nvcc --version | tail -n 1
} 2>&1 | tee "$OUT/env.txt"
arch=$("$PY" -c 'import torch, sys
if not torch.cuda.is_available(): sys.exit("torch sees no GPU")
print("%d.%d" % torch.cuda.get_device_capability())') || { echo "no usable GPU: nothing was checked"; exit 2; }

step "build xlrepro._C for sm_${arch/./} in place"
export CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}"
XLREPRO_USE_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
  "$PY" setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -n 40 "$OUT/build.log"; exit 3; }
tail -n 2 "$OUT/build.log"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'from xlrepro.ops import _lib; import sys
ok = _lib.load() and _lib.has_kernel("knn_both", "CUDA")
print("xlrepro._C loaded with CUDA kernels" if ok else "no CUDA kernels: %s" % _lib.unavailable_reason())
sys.exit(0 if ok else 1)' || exit 4

step "op tests (CUDA cases included)"
XLREPRO_VARLEN_CUDA=1 XLREPRO_REQUIRE_GPU=1 "$PY" -m pytest -q -ra -p no:cacheprovider tests/ops/test_similarity.py \
  tests/ops/test_screen.py tests/ops/test_cuda_select_logic.py tests/ops/test_ops_pooling.py \
  tests/ops/test_varlen_attention.py 2>&1 | tee "$OUT/tests.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { echo "tests failed ($rc): the benchmark is not run"; exit 5; }

step "retrieval benchmark on the GPU"
"$PY" benchmarks/retrieval.py --device cuda --repeats 3 ${QUICK:+--quick} 2>&1 | tee "$OUT/retrieval.md"
exit "${PIPESTATUS[0]}"
