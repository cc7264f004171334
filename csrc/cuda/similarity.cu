// CUDA kernels of the similarity family.
//
// Same structure as the CPU kernels: the GEMM of each block_rows x block_cols tile is one fp32
// cuBLAS call (at::mm_out, so it is the same call as the reference's `xb @ yb.T`, which makes the
// scores identical on one GPU), and the k-selection of the tile is fused right after it on the
// same stream while the tile sits in L2 (32 MiB tile <= H100's 50 MiB L2):
//   - rows: one block of 64 threads per tile row; each thread keeps a sorted top-k of its strided
//     columns, the 64 lists are merged as a tree in shared memory, and the result is merged into
//     the row's running list;
//   - columns: one thread per tile column walks the tile's rows (coalesced across the warp) and
//     updates the column's running list in place.
// Tiles run one after another on the stream, so the running lists need no atomics. k <= 32
// (the Python dispatch falls back to the reference above that). This is a first, correct version;
// FAISS's WarpSelect/BlockSelect (warp-wide sorting networks) and tensor-core (bf16/tf32) tiles
// are the next steps, and none of it has been timed on a GPU yet.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>

#include "../similarity.h"

namespace xlrepro {
namespace {

constexpr int kMaxK = 32;
constexpr int kRowThreads = 64;  // power of two (tree merge)
constexpr int kColThreads = 128;

__device__ __forceinline__ bool better(float a, int64_t ia, float b, int64_t ib) {
  return a > b || (a == b && ia < ib);
}

__device__ __forceinline__ void insert(float* v, int64_t* ix, int k, float s, int64_t j) {
  if (!better(s, j, v[k - 1], ix[k - 1])) return;
  int p = k - 1;
  while (p > 0 && better(s, j, v[p - 1], ix[p - 1])) {
    v[p] = v[p - 1];
    ix[p] = ix[p - 1];
    --p;
  }
  v[p] = s;
  ix[p] = j;
}

// out = top-k of the union of the sorted lists a and b (out may not alias a or b).
__device__ __forceinline__ void merge_lists(const float* av, const int64_t* ai, const float* bv, const int64_t* bi,
                                            int k, float* ov, int64_t* oi) {
  int p = 0, q = 0;
  for (int c = 0; c < k; ++c) {
    if (better(av[p], ai[p], bv[q], bi[q])) {
      ov[c] = av[p];
      oi[c] = ai[p];
      ++p;
    } else {
      ov[c] = bv[q];
      oi[c] = bi[q];
      ++q;
    }
  }
}

__global__ void row_select_kernel(const float* __restrict__ S, int64_t tc, int64_t r0, int64_t c0, int k,
                                  float* __restrict__ rv, int64_t* __restrict__ ri) {
  extern __shared__ unsigned char smem[];
  int64_t* si = reinterpret_cast<int64_t*>(smem);            // kRowThreads * k
  float* sv = reinterpret_cast<float*>(si + kRowThreads * k);  // kRowThreads * k
  const int64_t i = blockIdx.x;
  const int t = threadIdx.x;
  const float* s = S + i * tc;
  float v[kMaxK];
  int64_t ix[kMaxK];
  for (int c = 0; c < k; ++c) {
    v[c] = -INFINITY;
    ix[c] = std::numeric_limits<int64_t>::max();
  }
  for (int64_t j = t; j < tc; j += kRowThreads) insert(v, ix, k, s[j], c0 + j);
  for (int c = 0; c < k; ++c) {
    sv[t * k + c] = v[c];
    si[t * k + c] = ix[c];
  }
  __syncthreads();
  for (int stride = kRowThreads / 2; stride > 0; stride >>= 1) {
    if (t < stride) {
      merge_lists(sv + t * k, si + t * k, sv + (t + stride) * k, si + (t + stride) * k, k, v, ix);
      for (int c = 0; c < k; ++c) {
        sv[t * k + c] = v[c];
        si[t * k + c] = ix[c];
      }
    }
    __syncthreads();
  }
  if (t == 0) {
    float* gv = rv + (r0 + i) * k;
    int64_t* gi = ri + (r0 + i) * k;
    merge_lists(sv, si, gv, gi, k, v, ix);
    for (int c = 0; c < k; ++c) {
      gv[c] = v[c];
      gi[c] = ix[c];
    }
  }
}

__global__ void col_select_kernel(const float* __restrict__ S, int64_t tr, int64_t tc, int64_t r0, int64_t c0,
                                  int k, float* __restrict__ cv, int64_t* __restrict__ ci) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= tc) return;
  float v[kMaxK];
  int64_t ix[kMaxK];
  float* gv = cv + (c0 + j) * k;
  int64_t* gi = ci + (c0 + j) * k;
  for (int c = 0; c < k; ++c) {
    v[c] = gv[c];
    ix[c] = gi[c];
  }
  float th = v[k - 1];
  for (int64_t i = 0; i < tr; ++i) {
    const float x = S[i * tc + j];
    if (x >= th) {
      insert(v, ix, k, x, r0 + i);
      th = v[k - 1];
    }
  }
  for (int c = 0; c < k; ++c) {
    gv[c] = v[c];
    gi[c] = ix[c];
  }
}

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
  const c10::cuda::CUDAGuard guard(x_in.device());
  double ax = 0, ay = 0;
  const at::Tensor X = similarity::prepare(op, x_in, cosine, &ax);
  const at::Tensor Y = similarity::prepare(op, y_in, cosine, &ay);
  similarity::check_overflow(op, ax, ay, d, cosine);

  auto fopt = X.options();
  auto lopt = X.options().dtype(at::kLong);
  const float ninf = -std::numeric_limits<float>::infinity();
  const int64_t none = std::numeric_limits<int64_t>::max();
  at::Tensor rv = at::full({N, k_rows}, ninf, fopt);
  at::Tensor ri = at::full({N, k_rows}, none, lopt);
  at::Tensor cv, ci;
  if (cols) {
    cv = at::full({M, k_cols}, ninf, fopt);
    ci = at::full({M, k_cols}, none, lopt);
  }
  const int64_t br = std::min(block_rows, N), bc = std::min(block_cols, M);
  at::Tensor buf = at::empty({br * bc}, fopt);
  auto stream = at::cuda::getCurrentCUDAStream();
  const size_t row_smem = static_cast<size_t>(kRowThreads) * k_rows * (sizeof(float) + sizeof(int64_t));
  for (int64_t r0 = 0; r0 < N; r0 += br) {
    const int64_t tr = std::min(br, N - r0);
    const at::Tensor xb = X.narrow(0, r0, tr);
    for (int64_t c0 = 0; c0 < M; c0 += bc) {
      const int64_t tc = std::min(bc, M - c0);
      at::Tensor S = buf.narrow(0, 0, tr * tc).view({tr, tc});
      at::mm_out(S, xb, Y.narrow(0, c0, tc).t());  // on the current stream
      row_select_kernel<<<static_cast<unsigned>(tr), kRowThreads, row_smem, stream>>>(
          S.data_ptr<float>(), tc, r0, c0, static_cast<int>(k_rows), rv.data_ptr<float>(), ri.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (cols) {
        const unsigned blocks = static_cast<unsigned>((tc + kColThreads - 1) / kColThreads);
        col_select_kernel<<<blocks, kColThreads, 0, stream>>>(S.data_ptr<float>(), tr, tc, r0, c0,
                                                              static_cast<int>(k_cols), cv.data_ptr<float>(),
                                                              ci.data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
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
