// CUDA kernels of the similarity family.
//
// Same structure as the CPU kernels: the GEMM of each block_rows x block_cols tile is one fp32
// cuBLAS call (at::mm_out, so it is the same call as the reference's `xb @ yb.T`, which makes the
// scores identical on one GPU), and the k-selection of the tile runs right after it, on the same
// stream, while the tile sits in L2 (a 2048 x 2048 fp32 tile is 16 MiB; an H100 has 50 MB of L2).
// The selection (csrc/cuda/topk.cuh, shared with a host test of its logic) keeps each list in
// registers, sized by a compile-time K in {1, 2, 4, 8, 16, 32} >= k (nox -s cuda_build checks
// from ptxas's report that no instance has a stack frame or spills):
//   - rows: one block of kRowThreads threads per tile row; each thread scans a strided share of
//     the row, the lists are merged as a tree through shared memory, and thread 0 folds in the
//     row's running list (earlier column tiles) and writes it back;
//   - columns: a grid of (column groups) x (row chunks of kColChunk rows): each thread scans one
//     column over one chunk (reads coalesced across the warp) and writes a partial list; a second
//     kernel merges a column's partial lists with its running list (earlier row tiles).
// Tiles alternate between two side streams with a tile buffer each, so that one tile's GEMM can
// overlap the previous tile's selection (FAISS's GPU brute-force search double-buffers its tiles
// too); the selections run in tile order, chained by events, so the running lists need no
// atomics. k <= 32 (the Python dispatch falls back to the reference above that). Selection is
// exact and follows the contract's order (score desc, index asc); tensor-core (bf16/TF32) tiles
// would change the scores and are not used. Compiled in CI; never run: timings and the GPU tests
// need a lent GPU (benchmarks/gpu_check.sh).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <array>
#include <cstdint>
#include <limits>

#include "../similarity.h"
#include "topk.cuh"

namespace xlrepro {
namespace {

using topk::kColChunk;
using topk::kColThreads;
using topk::kMaxK;
using topk::kRowThreads;
constexpr int kMergeThreads = 128;

template <int K>
__global__ void __launch_bounds__(kRowThreads)
    row_select_kernel(const float* __restrict__ S, int tc, int64_t r0, int64_t c0, int k, float* __restrict__ rv,
                      int64_t* __restrict__ ri) {
  // Lists stored entry-major (entry c of thread t at [c * kRowThreads + t]): no bank conflicts.
  __shared__ float sv[K * kRowThreads];
  __shared__ int si[K * kRowThreads];
  const int t = threadIdx.x;
  const int64_t row = blockIdx.x;
  topk::List<K> mine;
  topk::scan_row<K>(S + row * tc, tc, t, kRowThreads, mine);
  mine.store(sv + t, si + t, kRowThreads);
  __syncthreads();
  // Round with stride s: threads t < s fold in list t + s. Reads touch [s, 2s), writes [0, s).
  for (int stride = kRowThreads / 2; stride > 0; stride >>= 1) {
    if (t < stride) {
      mine.offer_sorted(sv + t + stride, si + t + stride, K, kRowThreads);
      mine.store(sv + t, si + t, kRowThreads);
    }
    __syncthreads();
  }
  if (t == 0) topk::merge_running<K>(mine, c0, rv + (r0 + row) * k, ri + (r0 + row) * k, k);
}

// grid (ceil(tc / kColThreads), chunks): partial list of column j over chunk blockIdx.y, entry c
// at pv[(chunk * K + c) * tc + j] (coalesced across j).
template <int K>
__global__ void __launch_bounds__(kColThreads)
    col_partial_kernel(const float* __restrict__ S, int tr, int tc, float* __restrict__ pv, int* __restrict__ pi) {
  const int j = blockIdx.x * kColThreads + threadIdx.x;
  if (j >= tc) return;
  const int ch = blockIdx.y;
  const int i0 = ch * kColChunk;
  const int i1 = min(tr, i0 + kColChunk);
  topk::List<K> l;
  topk::scan_col<K>(S, tc, i0, i1, j, l);
  const int64_t o = static_cast<int64_t>(ch) * K * tc + j;
  l.store(pv + o, pi + o, tc);
}

template <int K>
__global__ void __launch_bounds__(kMergeThreads)
    col_merge_kernel(const float* __restrict__ pv, const int* __restrict__ pi, int chunks, int tc, int64_t r0,
                     int64_t c0, int k, float* __restrict__ cv, int64_t* __restrict__ ci) {
  const int j = blockIdx.x * kMergeThreads + threadIdx.x;
  if (j >= tc) return;
  topk::List<K> l;
  topk::merge_partials<K>(pv + j, pi + j, chunks, static_cast<int64_t>(K) * tc, tc, l);
  topk::merge_running<K>(l, r0, cv + (c0 + j) * k, ci + (c0 + j) * k, k);
}

unsigned blocks_for(int64_t n, int per_block) { return static_cast<unsigned>((n + per_block - 1) / per_block); }

struct KnnResult {
  at::Tensor row_scores, row_idx, col_scores, col_idx;
};

KnnResult knn_core_cuda(const char* op, const at::Tensor& x_in, const at::Tensor& y_in, int64_t k_rows,
                        int64_t k_cols, bool cols, bool cosine, int64_t block_rows, int64_t block_cols) {
  similarity::check_pair(op, x_in, y_in, cols ? "x" : "queries", cols ? "y" : "keys");
  TORCH_CHECK(x_in.is_cuda(), op, " (CUDA kernel): inputs must be on CUDA");
  TORCH_CHECK(block_rows >= 1 && block_cols >= 1, op, ": block sizes must be >= 1");
  const int64_t N = x_in.size(0), M = y_in.size(0), d = x_in.size(1);
  similarity::check_k(op, k_rows, M, cols ? "rows of y" : "keys");
  if (cols) similarity::check_k(op, k_cols, N, "rows of x");
  TORCH_CHECK(k_rows <= kMaxK && (!cols || k_cols <= kMaxK), op, " (CUDA kernel): k must be <= ", kMaxK);
  constexpr int64_t kMaxRows = std::numeric_limits<int32_t>::max() - 1;  // local indices are int32
  TORCH_CHECK(N <= kMaxRows && M <= kMaxRows, op, " (CUDA kernel): at most ", kMaxRows, " rows per side, got ", N,
              " and ", M);
  const int64_t br = std::min(block_rows, N), bc = std::min(block_cols, M);
  const int64_t max_chunks = (br + kColChunk - 1) / kColChunk;
  TORCH_CHECK(!cols || max_chunks <= 65535, op, " (CUDA kernel): block_rows=", block_rows, " is too large (at most ",
              65535 * kColChunk, ")");
  const c10::cuda::CUDAGuard guard(x_in.device());
  double ax = 0, ay = 0;
  const at::Tensor X = similarity::prepare(op, x_in, cosine, &ax);
  const at::Tensor Y = similarity::prepare(op, y_in, cosine, &ay);
  similarity::check_overflow(op, ax, ay, d, cosine);

  auto fopt = X.options();
  auto iopt = X.options().dtype(at::kInt);
  auto lopt = X.options().dtype(at::kLong);
  at::Tensor rv = at::full({N, k_rows}, -std::numeric_limits<float>::infinity(), fopt);
  at::Tensor ri = at::full({N, k_rows}, topk::kNoIndex, lopt);
  at::Tensor cv, ci, pv, pi;
  if (cols) {
    cv = at::full({M, k_cols}, -std::numeric_limits<float>::infinity(), fopt);
    ci = at::full({M, k_cols}, topk::kNoIndex, lopt);
    int kt = 0;
    topk::with_k(static_cast<int>(k_cols), [&](auto KT) { kt = decltype(KT)::value; });
    pv = at::empty({max_chunks * kt * bc}, fopt);  // partial lists of one tile's columns
    pi = at::empty({max_chunks * kt * bc}, iopt);
  }
  // Two side streams take the tiles in turn, each with its own tile buffer, so that the GEMM of
  // one tile can run while the previous tile is being selected. The selections stay in tile order
  // (each waits for the previous one: they update the same running lists).
  const auto cur = at::cuda::getCurrentCUDAStream();
  const std::array<c10::cuda::CUDAStream, 2> side = {at::cuda::getStreamFromPool(), at::cuda::getStreamFromPool()};
  const std::array<at::Tensor, 2> bufs = {at::empty({br * bc}, fopt), at::empty({br * bc}, fopt)};
  std::array<at::cuda::CUDAEvent, 2> selected;
  {
    at::cuda::CUDAEvent inputs_ready;  // X, Y and the initialised lists, made on the current stream
    inputs_ready.record(cur);
    for (const auto& s : side) inputs_ready.block(s);
  }
  int64_t tile = 0;
  for (int64_t r0 = 0; r0 < N; r0 += br) {
    const int64_t tr = std::min(br, N - r0);
    const at::Tensor xb = X.narrow(0, r0, tr);
    for (int64_t c0 = 0; c0 < M; c0 += bc, ++tile) {
      const int b = static_cast<int>(tile % 2);
      const c10::cuda::CUDAStream stream = side[b];
      const int tc = static_cast<int>(std::min(bc, M - c0));
      at::Tensor S = bufs[b].narrow(0, 0, tr * tc).view({tr, static_cast<int64_t>(tc)});
      {
        // The same cuBLAS call as the reference's `xb @ yb.T`, on this side stream. Its buffer was
        // last read by the selection of tile - 2, earlier on the same stream.
        const c10::cuda::CUDAStreamGuard on_side(stream);
        at::mm_out(S, xb, Y.narrow(0, c0, tc).t());
      }
      if (tile > 0) selected[1 - b].block(stream);  // the selection of the previous tile
      const float* Sp = S.data_ptr<float>();
      topk::with_k(static_cast<int>(k_rows), [&](auto KT) {
        row_select_kernel<decltype(KT)::value><<<static_cast<unsigned>(tr), kRowThreads, 0, stream>>>(
            Sp, tc, r0, c0, static_cast<int>(k_rows), rv.data_ptr<float>(), ri.data_ptr<int64_t>());
      });
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (cols) {
        const int chunks = static_cast<int>((tr + kColChunk - 1) / kColChunk);
        topk::with_k(static_cast<int>(k_cols), [&](auto KT) {
          constexpr int K = decltype(KT)::value;
          const dim3 grid(blocks_for(tc, kColThreads), static_cast<unsigned>(chunks));
          col_partial_kernel<K><<<grid, kColThreads, 0, stream>>>(Sp, static_cast<int>(tr), tc, pv.data_ptr<float>(),
                                                                  pi.data_ptr<int>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          col_merge_kernel<K><<<blocks_for(tc, kMergeThreads), kMergeThreads, 0, stream>>>(
              pv.data_ptr<float>(), pi.data_ptr<int>(), chunks, tc, r0, c0, static_cast<int>(k_cols),
              cv.data_ptr<float>(), ci.data_ptr<int64_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      }
      selected[b].record(stream);
    }
  }
  // The current stream continues after both side streams; every tensor used on them was allocated
  // on the current stream and is freed after this point in its order, so no recordStream is needed.
  for (const auto& s : side) {
    at::cuda::CUDAEvent done;
    done.record(s);
    done.block(cur);
  }
  return {rv, ri, cv, ci};
}

std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& q, const at::Tensor& keys, int64_t k, bool cosine,
                                            int64_t block_rows, int64_t block_cols) {
  KnnResult r = knn_core_cuda("knn", q, keys, k, 0, false, cosine, block_rows, block_cols);
  return {r.row_scores, r.row_idx};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> knn_both_cuda(const at::Tensor& x, const at::Tensor& y,
                                                                         int64_t k_rows, int64_t k_cols, bool cosine,
                                                                         int64_t block_rows, int64_t block_cols) {
  KnnResult r = knn_core_cuda("knn_both", x, y, k_rows, k_cols, true, cosine, block_rows, block_cols);
  return {r.row_scores, r.row_idx, r.col_scores, r.col_idx};
}

// Sequential float32 mean per row (left to right), as the CPU kernel and the reference.
__global__ void row_mean_kernel(const float* __restrict__ s, int64_t n, int k, float* __restrict__ m) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float acc = 0.f;
  for (int c = 0; c < k; ++c) acc = __fadd_rn(acc, s[i * k + c]);
  m[i] = __fdiv_rn(acc, static_cast<float>(k));
}

__global__ void side_score_kernel(const float* __restrict__ sim, const int64_t* __restrict__ idx,
                                  const float* __restrict__ self_mean, const float* __restrict__ other_mean,
                                  int64_t n, int k, int code, float* __restrict__ out) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n * k) return;
  const int64_t i = e / k;
  // __f*_rn: correctly rounded, never contracted into an FMA, so the bits match the CPU.
  const float b = __fdiv_rn(__fadd_rn(self_mean[i], other_mean[idx[e]]), 2.0f);
  const float a = sim[e];
  out[e] = code == 0 ? __fdiv_rn(a, b) : (code == 1 ? __fsub_rn(a, b) : a);
}

at::Tensor side_scores_cuda(const at::Tensor& sim, const at::Tensor& idx, const at::Tensor& self_mean,
                            const at::Tensor& other_mean, int code, cudaStream_t stream) {
  const int64_t n = sim.size(0), k = sim.size(1), m = other_mean.size(0);
  if (n > 0) {
    TORCH_CHECK(idx.min().item<int64_t>() >= 0 && idx.max().item<int64_t>() < m,
                "margin_scores: an index is out of range [0, ", m, ")");
  }
  at::Tensor out = at::empty({n, k}, sim.options());
  if (n == 0) return out;
  const unsigned blocks = static_cast<unsigned>((n * k + 255) / 256);
  side_score_kernel<<<blocks, 256, 0, stream>>>(sim.data_ptr<float>(), idx.data_ptr<int64_t>(),
                                                self_mean.data_ptr<float>(), other_mean.data_ptr<float>(), n,
                                                static_cast<int>(k), code, out.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor row_means_cuda(const at::Tensor& s, cudaStream_t stream) {
  const int64_t n = s.size(0), k = s.size(1);
  at::Tensor m = at::empty({n}, s.options());
  if (n == 0) return m;
  row_mean_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(s.data_ptr<float>(), n,
                                                                              static_cast<int>(k),
                                                                              m.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return m;
}

std::tuple<at::Tensor, at::Tensor> margin_scores_cuda(const at::Tensor& fs_in, const at::Tensor& fi_in,
                                                      const at::Tensor& bs_in, const at::Tensor& bi_in,
                                                      c10::string_view margin) {
  similarity::check_margin_args(fs_in, fi_in, bs_in, bi_in);
  TORCH_CHECK(fs_in.is_cuda(), "margin_scores (CUDA kernel): inputs must be on CUDA");
  const int code = similarity::margin_code(std::string(margin));
  const c10::cuda::CUDAGuard guard(fs_in.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  const at::Tensor fs = fs_in.contiguous(), fi = fi_in.contiguous(), bs = bs_in.contiguous(),
                   bi = bi_in.contiguous();
  const at::Tensor fm = row_means_cuda(fs, stream), bm = row_means_cuda(bs, stream);
  return {side_scores_cuda(fs, fi, fm, bm, code, stream), side_scores_cuda(bs, bi, bm, fm, code, stream)};
}

}  // namespace

// CUDA implementations of the schemas in csrc/similarity.cpp.
TORCH_LIBRARY_IMPL(xlrepro, CUDA, m) {
  m.impl("knn", &knn_cuda);
  m.impl("knn_both", &knn_both_cuda);
  m.impl("margin_scores", &margin_scores_cuda);
}

}  // namespace xlrepro
