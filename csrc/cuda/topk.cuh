// The k-selection of the CUDA similarity kernels (csrc/cuda/similarity.cu), written once as
// host-and-device functions so that the same code runs on a GPU and, compiled by g++ without
// CUDA, in tests/cpp/topk_select_test.cpp, which replays the kernels' decomposition (threads of a
// row, row chunks of a column, the tree merge, the running lists) on a CPU against brute force.
//
// A List<K> is a sorted top-K of (score, local index) pairs held in registers: every index into
// its arrays is a compile-time constant (unrolled loops), so nvcc keeps it out of local memory.
// K is a power of two >= the k asked for (with_k below); a list of K >= k best candidates is a
// superset of the k best, and only the first k are ever written out.
//
// Order: higher score first; equal scores: lower index first (xlrepro/ops/similarity.py).
// Local indices are tile-relative int32; the running lists in global memory hold int64 indices
// of earlier tiles, which are brought into the same frame as (global - offset): the host checks
// N, M < 2^31 - 1, so every such difference fits in int32 and keeps its order.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#ifdef __CUDACC__
#define XLR_HD __host__ __device__ __forceinline__
#define XLR_UNROLL _Pragma("unroll")
#else
#define XLR_HD inline
#define XLR_UNROLL
#endif

namespace xlrepro {
namespace topk {

constexpr int kNoLocal = std::numeric_limits<int32_t>::max();    // empty slot of a List
constexpr int64_t kNoIndex = std::numeric_limits<int64_t>::max();  // empty slot of a running list
constexpr int kMaxK = 32;

// The kernels' decomposition (the test harness uses the same constants).
constexpr int kRowThreads = 64;   // threads per tile row (power of two: tree merge)
constexpr int kColThreads = 128;  // tile columns per block of the column scan
constexpr int kColChunk = 64;     // tile rows per column-scan block (one partial list each)
constexpr int kScanBatch = 8;     // loads issued before they are compared (instruction-level parallelism)
static_assert(kRowThreads > 0 && (kRowThreads & (kRowThreads - 1)) == 0, "kRowThreads: a power of two");

XLR_HD bool better(float a, int ia, float b, int ib) { return a > b || (a == b && ia < ib); }

template <int K>
struct List {
  float v[K];
  int i[K];

  XLR_HD void init() {
XLR_UNROLL
    for (int c = 0; c < K; ++c) {
      v[c] = -INFINITY;
      i[c] = kNoLocal;
    }
  }
  XLR_HD bool admits(float s, int j) const { return better(s, j, v[K - 1], i[K - 1]); }
  // Insert (s, j), which admits() accepted: replace the last entry and bubble it up.
  XLR_HD void push(float s, int j) {
    v[K - 1] = s;
    i[K - 1] = j;
XLR_UNROLL
    for (int c = K - 1; c > 0; --c) {
      if (better(v[c], i[c], v[c - 1], i[c - 1])) {
        const float tv = v[c];
        v[c] = v[c - 1];
        v[c - 1] = tv;
        const int ti = i[c];
        i[c] = i[c - 1];
        i[c - 1] = ti;
      }
    }
  }
  XLR_HD void offer(float s, int j) {
    if (admits(s, j)) push(s, j);
  }
  // Offer the entries of a sorted list of length n (entry c at sv[c * stride]) until one is
  // empty or not admitted: everything after it is worse.
  XLR_HD void offer_sorted(const float* sv, const int* si, int n, int64_t stride) {
    for (int c = 0; c < n; ++c) {
      const int j = si[c * stride];
      const float s = sv[c * stride];
      if (j == kNoLocal || !admits(s, j)) break;
      push(s, j);
    }
  }
  XLR_HD void store(float* sv, int* si, int64_t stride) const {
XLR_UNROLL
    for (int c = 0; c < K; ++c) {
      sv[c * stride] = v[c];
      si[c * stride] = i[c];
    }
  }
};

// One thread's share of a tile row: columns t, t + nthreads, ... of the row s (length tc).
template <int K>
XLR_HD void scan_row(const float* s, int tc, int t, int nthreads, List<K>& out) {
  out.init();
  for (int j = t; j < tc; j += nthreads) out.offer(s[j], j);
}

// Column j of the tile S (row-major, tc columns) over tile rows [i0, i1).
template <int K>
XLR_HD void scan_col(const float* S, int tc, int i0, int i1, int j, List<K>& out) {
  out.init();
  int i = i0;
  for (; i + kScanBatch <= i1; i += kScanBatch) {
    float x[kScanBatch];
XLR_UNROLL
    for (int u = 0; u < kScanBatch; ++u) x[u] = S[static_cast<int64_t>(i + u) * tc + j];
XLR_UNROLL
    for (int u = 0; u < kScanBatch; ++u) out.offer(x[u], i + u);
  }
  for (; i < i1; ++i) out.offer(S[static_cast<int64_t>(i) * tc + j], i);
}

// The partial lists of one column: chunk ch's entry c at pv[ch * chunk_stride + c * entry_stride].
template <int K>
XLR_HD void merge_partials(const float* pv, const int* pi, int chunks, int64_t chunk_stride, int64_t entry_stride,
                           List<K>& out) {
  out.init();
  for (int ch = 0; ch < chunks; ++ch) out.offer_sorted(pv + ch * chunk_stride, pi + ch * chunk_stride, K, entry_stride);
}

// Fold the running top-k (gv, gi: sorted, k entries, empty slots (-inf, kNoIndex) at the end) of
// one row or column into t, whose local indices are global - offset, and write the first k back.
template <int K>
XLR_HD void merge_running(List<K>& t, int64_t offset, float* gv, int64_t* gi, int k) {
  for (int c = 0; c < k; ++c) {
    if (gi[c] == kNoIndex) break;
    const int j = static_cast<int>(gi[c] - offset);
    if (!t.admits(gv[c], j)) break;
    t.push(gv[c], j);
  }
XLR_UNROLL
  for (int c = 0; c < K; ++c) {
    if (c < k) {
      gv[c] = t.v[c];
      gi[c] = t.i[c] == kNoLocal ? kNoIndex : offset + t.i[c];
    }
  }
}

// Calls f(std::integral_constant<int, K>) with the smallest K in {1, 2, 4, 8, 16, 32} >= k.
template <typename F>
inline void with_k(int k, F&& f) {
  if (k < 1 || k > kMaxK) throw std::invalid_argument("topk::with_k: k must be in [1, 32], got " + std::to_string(k));
  if (k <= 1) return f(std::integral_constant<int, 1>{});
  if (k <= 2) return f(std::integral_constant<int, 2>{});
  if (k <= 4) return f(std::integral_constant<int, 4>{});
  if (k <= 8) return f(std::integral_constant<int, 8>{});
  if (k <= 16) return f(std::integral_constant<int, 16>{});
  return f(std::integral_constant<int, 32>{});
}

}  // namespace topk
}  // namespace xlrepro
