// Host replay of the CUDA k-selection (csrc/cuda/similarity.cu) against brute force.
//
// csrc/cuda/topk.cuh holds the selection as host-and-device functions; this program runs them
// with the kernels' decomposition, thread by thread and block by block: a tile row split over
// kRowThreads strided scans, the tree merge through entry-major "shared memory", the column scan
// over kColChunk-row chunks into the kernels' partial-list layout, the chunk merge, and the running
// lists of earlier tiles (negative local indices, empty slots when a tile is narrower than k).
// Within one round of the tree merge the threads touch disjoint lists, so running them one after
// another gives what the block computes. What this cannot check is CUDA itself (launch
// configuration, barriers, memory): the GPU tests in tests/ops/test_similarity.py do, on a lent GPU.
//
// Built and run by tests/ops/test_cuda_select_logic.py (g++ -std=c++17). Exit status 0 = all agree.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "../../csrc/cuda/topk.cuh"

using namespace xlrepro::topk;

struct Result {
  std::vector<float> rv, cv;
  std::vector<int64_t> ri, ci;
};

// What similarity.cu computes for the score matrix S (N x M, row-major) with the given blocking.
Result replay(const std::vector<float>& S, int N, int M, int br, int bc, int k_rows, int k_cols) {
  Result r;
  r.rv.assign(static_cast<size_t>(N) * k_rows, -INFINITY);
  r.ri.assign(static_cast<size_t>(N) * k_rows, kNoIndex);
  r.cv.assign(static_cast<size_t>(M) * k_cols, -INFINITY);
  r.ci.assign(static_cast<size_t>(M) * k_cols, kNoIndex);
  br = std::min(br, N);
  bc = std::min(bc, M);
  std::vector<float> tile;
  for (int r0 = 0; r0 < N; r0 += br) {
    const int tr = std::min(br, N - r0);
    for (int c0 = 0; c0 < M; c0 += bc) {
      const int tc = std::min(bc, M - c0);
      tile.assign(static_cast<size_t>(tr) * tc, 0.f);
      for (int i = 0; i < tr; ++i)
        for (int j = 0; j < tc; ++j) tile[static_cast<size_t>(i) * tc + j] = S[static_cast<size_t>(r0 + i) * M + c0 + j];
      // row_select_kernel: one block per tile row
      with_k(k_rows, [&](auto KT) {
        constexpr int K = decltype(KT)::value;
        std::vector<float> sv(K * kRowThreads);
        std::vector<int> si(K * kRowThreads);
        for (int row = 0; row < tr; ++row) {
          std::vector<List<K>> mine(kRowThreads);
          for (int t = 0; t < kRowThreads; ++t) {
            scan_row<K>(tile.data() + static_cast<size_t>(row) * tc, tc, t, kRowThreads, mine[t]);
            mine[t].store(sv.data() + t, si.data() + t, kRowThreads);
          }
          for (int stride = kRowThreads / 2; stride > 0; stride >>= 1)
            for (int t = 0; t < stride; ++t) {
              mine[t].offer_sorted(sv.data() + t + stride, si.data() + t + stride, K, kRowThreads);
              mine[t].store(sv.data() + t, si.data() + t, kRowThreads);
            }
          merge_running<K>(mine[0], c0, r.rv.data() + static_cast<size_t>(r0 + row) * k_rows,
                           r.ri.data() + static_cast<size_t>(r0 + row) * k_rows, k_rows);
        }
      });
      // col_partial_kernel, then col_merge_kernel
      with_k(k_cols, [&](auto KT) {
        constexpr int K = decltype(KT)::value;
        const int chunks = (tr + kColChunk - 1) / kColChunk;
        std::vector<float> pv(static_cast<size_t>(chunks) * K * tc);
        std::vector<int> pi(pv.size());
        for (int ch = 0; ch < chunks; ++ch)
          for (int j = 0; j < tc; ++j) {
            List<K> l;
            scan_col<K>(tile.data(), tc, ch * kColChunk, std::min(tr, (ch + 1) * kColChunk), j, l);
            const size_t o = static_cast<size_t>(ch) * K * tc + j;
            l.store(pv.data() + o, pi.data() + o, tc);
          }
        for (int j = 0; j < tc; ++j) {
          List<K> l;
          merge_partials<K>(pv.data() + j, pi.data() + j, chunks, static_cast<int64_t>(K) * tc, tc, l);
          merge_running<K>(l, r0, r.cv.data() + static_cast<size_t>(c0 + j) * k_cols,
                           r.ci.data() + static_cast<size_t>(c0 + j) * k_cols, k_cols);
        }
      });
    }
  }
  return r;
}

// Brute force: every row of the (n x m) matrix at(i, j) sorted by (score desc, index asc).
template <typename At>
void brute(int n, int m, int k, At at, std::vector<float>& v, std::vector<int64_t>& ix) {
  v.assign(static_cast<size_t>(n) * k, 0.f);
  ix.assign(static_cast<size_t>(n) * k, 0);
  std::vector<int> o(m);
  for (int i = 0; i < n; ++i) {
    std::iota(o.begin(), o.end(), 0);
    std::stable_sort(o.begin(), o.end(), [&](int a, int b) { return at(i, a) > at(i, b); });
    for (int c = 0; c < k; ++c) {
      v[static_cast<size_t>(i) * k + c] = at(i, o[c]);
      ix[static_cast<size_t>(i) * k + c] = o[c];
    }
  }
}

int failures = 0, cases = 0;

void check(const char* what, const std::vector<float>& S, int N, int M, int br, int bc, int kr, int kc) {
  ++cases;
  const Result r = replay(S, N, M, br, bc, kr, kc);
  std::vector<float> bv, cv;
  std::vector<int64_t> bi, ci;
  brute(N, M, kr, [&](int i, int j) { return S[static_cast<size_t>(i) * M + j]; }, bv, bi);
  brute(M, N, kc, [&](int j, int i) { return S[static_cast<size_t>(i) * M + j]; }, cv, ci);
  if (r.rv != bv || r.ri != bi || r.cv != cv || r.ci != ci) {
    ++failures;
    std::printf("MISMATCH %s N=%d M=%d tile=%dx%d k_rows=%d k_cols=%d (rows %s, cols %s)\n", what, N, M, br, bc, kr, kc,
                (r.rv == bv && r.ri == bi) ? "ok" : "differ", (r.cv == cv && r.ci == ci) ? "ok" : "differ");
  }
}

int main() {
  std::mt19937 g(1234);
  const int ks[] = {1, 2, 3, 4, 5, 8, 9, 16, 17, 31, 32};
  const int tiles[][2] = {{37, 23}, {64, 64}, {5, 130}, {200, 7}, {130, 200}, {1000, 1000}};
  for (int kind = 0; kind < 3; ++kind) {
    // 0: distinct random scores; 1: small integers (ties everywhere); 2: a few values, many duplicates
    const int N = kind == 0 ? 150 : 133, M = kind == 0 ? 130 : 141;
    std::vector<float> S(static_cast<size_t>(N) * M);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::uniform_int_distribution<int> small(-2, 2), few(0, 1);
    for (auto& s : S) s = kind == 0 ? u(g) : static_cast<float>(kind == 1 ? small(g) : few(g));
    const char* name = kind == 0 ? "random" : (kind == 1 ? "ties" : "two-values");
    for (const auto& t : tiles)
      for (int kr : ks) check(name, S, N, M, t[0], t[1], kr, ks[(kr * 7) % 11]);
  }
  // one tile row longer than a whole number of scan batches and chunks; a single column and row
  {
    std::vector<float> S(3 * 1);
    S = {0.5f, 0.5f, -1.f};
    check("single-column", S, 3, 1, 2, 1, 1, 3);
    check("single-row", S, 1, 3, 1, 2, 3, 1);
  }
  bool threw = false;
  try {
    with_k(33, [](auto) {});
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  if (!threw) {
    ++failures;
    std::printf("MISMATCH with_k(33) did not throw\n");
  }
  std::printf("%s: %d cases, %d failures\n", failures ? "FAILED" : "ok", cases, failures);
  return failures ? 1 : 0;
}
