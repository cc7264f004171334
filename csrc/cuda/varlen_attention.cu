// CUDA kernels of varlen_attention_fwd / varlen_attention_bwd (schemas in csrc/attention.cpp)
// for head_dim 64 (XLM-R base and large), float32 / float16 / bfloat16, float32 accumulation.
//
// FlashAttention-2 work split, on CUDA cores (no tensor-core MMA yet):
//   forward:  grid (query tiles of 128, heads, sequences); one thread owns one query row (q and
//             the output accumulator in registers) and streams key/value tiles of 32 through
//             shared memory with an online softmax (running max and sum, exp2 domain). Writes out
//             and the log-sum-exp; never materialises a score matrix.
//   backward: D = rowsum(dO o out) (one warp per row); dQ with one thread per query row, dK/dV
//             with one thread per key row, both recomputing P = exp(S - lse) from the saved
//             log-sum-exp. Two passes instead of FA2's atomic dQ: deterministic, no fp32 scratch.
// Values of cu_seqlens are not checked here (that needs a host sync): the Python entry point
// validates them; max_seqlen sizes the grid and must be >= the longest sequence.
// 2026-11-25 (attn): compiled for sm_80/sm_90 in CI but not yet run on a GPU.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cmath>

namespace xlrepro {
namespace {

constexpr int kD = 64;        // head_dim
constexpr int kFwdBQ = 128;   // threads = query rows per forward / dQ block
constexpr int kFwdBK = 32;    // keys per shared-memory tile (forward, dQ)
constexpr int kKvBK = 64;     // threads = key rows per dK/dV block
constexpr int kKvBQ = 16;     // queries per shared-memory tile (dK/dV)
constexpr float kLog2e = 1.4426950408889634f;

struct Strides {
  int64_t tok, head;
};

template <typename scalar_t>
__device__ __forceinline__ float ld(const scalar_t* p) {
  return static_cast<float>(p[0]);
}

// Loads rows [t0, t0 + rows) of one head into a [tile][kD] shared array; rows past n are zero.
template <typename scalar_t, int TILE, int THREADS>
__device__ __forceinline__ void load_tile(float (*dst)[kD], const scalar_t* __restrict__ x, Strides s,
                                          int64_t first_tok, int h, int n) {
  for (int idx = threadIdx.x; idx < TILE * kD; idx += THREADS) {
    const int r = idx / kD, c = idx % kD;
    dst[r][c] = r < n ? ld(x + (first_tok + r) * s.tok + h * s.head + c) : 0.f;
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kFwdBQ)
    varlen_fwd_kernel(const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                      const scalar_t* __restrict__ v, const int* __restrict__ cu, scalar_t* __restrict__ out,
                      float* __restrict__ lse, Strides qs, Strides ks, Strides vs, int heads, int64_t total,
                      float scale_log2) {
  const int b = blockIdx.z, h = blockIdx.y;
  const int64_t start = cu[b];
  const int L = cu[b + 1] - cu[b];
  const int q0 = blockIdx.x * kFwdBQ;
  if (q0 >= L) return;  // uniform over the block
  __shared__ float k_tile[kFwdBK][kD];
  __shared__ float v_tile[kFwdBK][kD];
  const int i = q0 + threadIdx.x;
  const bool valid = i < L;
  float qr[kD], o[kD];
#pragma unroll
  for (int c = 0; c < kD; ++c) {
    qr[c] = valid ? ld(q + (start + i) * qs.tok + h * qs.head + c) * scale_log2 : 0.f;
    o[c] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int kt = 0; kt < L; kt += kFwdBK) {
    const int nk = min(kFwdBK, L - kt);
    __syncthreads();
    load_tile<scalar_t, kFwdBK, kFwdBQ>(k_tile, k, ks, start + kt, h, nk);
    load_tile<scalar_t, kFwdBK, kFwdBQ>(v_tile, v, vs, start + kt, h, nk);
    __syncthreads();
    float s[kFwdBK];
    float mt = m;
#pragma unroll
    for (int j = 0; j < kFwdBK; ++j) {
      float acc = 0.f;
#pragma unroll
      for (int c = 0; c < kD; ++c) acc = fmaf(qr[c], k_tile[j][c], acc);
      s[j] = j < nk ? acc : -INFINITY;
      mt = fmaxf(mt, s[j]);
    }
    const float alpha = exp2f(m - mt);  // first tile: exp2(-inf) = 0
    l *= alpha;
#pragma unroll
    for (int c = 0; c < kD; ++c) o[c] *= alpha;
#pragma unroll
    for (int j = 0; j < kFwdBK; ++j) {
      const float p = exp2f(s[j] - mt);  // masked keys: exp2(-inf) = 0
      l += p;
#pragma unroll
      for (int c = 0; c < kD; ++c) o[c] = fmaf(p, v_tile[j][c], o[c]);
    }
    m = mt;
  }
  if (valid) {
    const float inv = 1.f / l;
    scalar_t* dst = out + ((start + i) * heads + h) * kD;
#pragma unroll
    for (int c = 0; c < kD; ++c) dst[c] = static_cast<scalar_t>(o[c] * inv);
    lse[h * total + start + i] = (m + log2f(l)) / kLog2e;  // natural-log units, as the CPU kernel
  }
}

// D[h, t] = sum_c dout[t, h, c] * out[t, h, c]; one warp per (token, head); both contiguous.
template <typename scalar_t>
__global__ void varlen_bwd_dot_kernel(const scalar_t* __restrict__ dout, const scalar_t* __restrict__ out,
                                      float* __restrict__ dsum, int64_t total, int heads) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= total * heads) return;  // uniform over the warp
  float s = 0.f;
  for (int c = lane; c < kD; c += 32) s += ld(dout + row * kD + c) * ld(out + row * kD + c);
#pragma unroll
  for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
  if (lane == 0) dsum[(row % heads) * total + row / heads] = s;
}

// dQ: one thread per query row.
template <typename scalar_t>
__global__ void __launch_bounds__(kFwdBQ)
    varlen_bwd_dq_kernel(const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                         const scalar_t* __restrict__ v, const scalar_t* __restrict__ dout,
                         const float* __restrict__ lse, const float* __restrict__ dsum, const int* __restrict__ cu,
                         scalar_t* __restrict__ dq, Strides qs, Strides ks, Strides vs, int heads, int64_t total,
                         float scale) {
  const int b = blockIdx.z, h = blockIdx.y;
  const int64_t start = cu[b];
  const int L = cu[b + 1] - cu[b];
  const int q0 = blockIdx.x * kFwdBQ;
  if (q0 >= L) return;
  __shared__ float k_tile[kFwdBK][kD];
  __shared__ float v_tile[kFwdBK][kD];
  const int i = q0 + threadIdx.x;
  const bool valid = i < L;
  const float scale_log2 = scale * kLog2e;
  float qr[kD], dor[kD], acc[kD];
#pragma unroll
  for (int c = 0; c < kD; ++c) {
    qr[c] = valid ? ld(q + (start + i) * qs.tok + h * qs.head + c) * scale_log2 : 0.f;
    dor[c] = valid ? ld(dout + ((start + i) * heads + h) * kD + c) : 0.f;
    acc[c] = 0.f;
  }
  const float lse2 = valid ? lse[h * total + start + i] * kLog2e : INFINITY;
  const float di = valid ? dsum[h * total + start + i] : 0.f;
  for (int kt = 0; kt < L; kt += kFwdBK) {
    const int nk = min(kFwdBK, L - kt);
    __syncthreads();
    load_tile<scalar_t, kFwdBK, kFwdBQ>(k_tile, k, ks, start + kt, h, nk);
    load_tile<scalar_t, kFwdBK, kFwdBQ>(v_tile, v, vs, start + kt, h, nk);
    __syncthreads();
#pragma unroll 4
    for (int j = 0; j < kFwdBK; ++j) {
      if (j >= nk) break;  // uniform over the block
      float s = 0.f, dp = 0.f;
#pragma unroll
      for (int c = 0; c < kD; ++c) {
        s = fmaf(qr[c], k_tile[j][c], s);
        dp = fmaf(dor[c], v_tile[j][c], dp);
      }
      const float ds = exp2f(s - lse2) * (dp - di);
#pragma unroll
      for (int c = 0; c < kD; ++c) acc[c] = fmaf(ds, k_tile[j][c], acc[c]);
    }
  }
  if (valid) {
    scalar_t* dst = dq + ((start + i) * heads + h) * kD;
#pragma unroll
    for (int c = 0; c < kD; ++c) dst[c] = static_cast<scalar_t>(acc[c] * scale);
  }
}

// dK, dV: one thread per key row; its v row lives in padded shared memory (conflict-free).
template <typename scalar_t>
__global__ void __launch_bounds__(kKvBK)
    varlen_bwd_dkdv_kernel(const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                           const scalar_t* __restrict__ v, const scalar_t* __restrict__ dout,
                           const float* __restrict__ lse, const float* __restrict__ dsum,
                           const int* __restrict__ cu, scalar_t* __restrict__ dk, scalar_t* __restrict__ dv,
                           Strides qs, Strides ks, Strides vs, int heads, int64_t total, float scale) {
  const int b = blockIdx.z, h = blockIdx.y;
  const int64_t start = cu[b];
  const int L = cu[b + 1] - cu[b];
  const int k0 = blockIdx.x * kKvBK;
  if (k0 >= L) return;
  __shared__ float v_own[kKvBK][kD + 1];
  __shared__ float q_tile[kKvBQ][kD];
  __shared__ float do_tile[kKvBQ][kD];
  __shared__ float lse_tile[kKvBQ];
  __shared__ float d_tile[kKvBQ];
  const int j = k0 + threadIdx.x;
  const bool valid = j < L;
  const float scale_log2 = scale * kLog2e;
  float kr[kD], dk_acc[kD], dv_acc[kD];
#pragma unroll
  for (int c = 0; c < kD; ++c) {
    kr[c] = valid ? ld(k + (start + j) * ks.tok + h * ks.head + c) * scale_log2 : 0.f;
    v_own[threadIdx.x][c] = valid ? ld(v + (start + j) * vs.tok + h * vs.head + c) : 0.f;
    dk_acc[c] = 0.f;
    dv_acc[c] = 0.f;
  }
  const Strides dos{static_cast<int64_t>(heads) * kD, kD};
  for (int qt = 0; qt < L; qt += kKvBQ) {
    const int nq = min(kKvBQ, L - qt);
    __syncthreads();
    load_tile<scalar_t, kKvBQ, kKvBK>(q_tile, q, qs, start + qt, h, nq);
    load_tile<scalar_t, kKvBQ, kKvBK>(do_tile, dout, dos, start + qt, h, nq);
    if (threadIdx.x < kKvBQ) {
      const int r = threadIdx.x;
      lse_tile[r] = r < nq ? lse[h * total + start + qt + r] * kLog2e : INFINITY;
      d_tile[r] = r < nq ? dsum[h * total + start + qt + r] : 0.f;
    }
    __syncthreads();
#pragma unroll 2
    for (int r = 0; r < kKvBQ; ++r) {
      if (r >= nq) break;  // uniform over the block
      float s = 0.f, dp = 0.f;
#pragma unroll
      for (int c = 0; c < kD; ++c) {
        s = fmaf(kr[c], q_tile[r][c], s);
        dp = fmaf(v_own[threadIdx.x][c], do_tile[r][c], dp);
      }
      const float p = exp2f(s - lse_tile[r]);
      const float ds = p * (dp - d_tile[r]);
#pragma unroll
      for (int c = 0; c < kD; ++c) {
        dv_acc[c] = fmaf(p, do_tile[r][c], dv_acc[c]);
        dk_acc[c] = fmaf(ds, q_tile[r][c], dk_acc[c]);
      }
    }
  }
  if (valid) {
    const int64_t off = ((start + j) * heads + h) * kD;
#pragma unroll
    for (int c = 0; c < kD; ++c) {
      dk[off + c] = static_cast<scalar_t>(dk_acc[c] * scale);
      dv[off + c] = static_cast<scalar_t>(dv_acc[c]);
    }
  }
}

// ------------------------------------------------------------------------------------------

bool last_dim_contiguous(const at::Tensor& t) { return t.numel() == 0 || t.size(-1) <= 1 || t.stride(-1) == 1; }

void check_cuda_args(const char* fn, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& cu, int64_t max_seqlen) {
  TORCH_CHECK(q.dim() == 3, fn, ": q must be (total_tokens, heads, head_dim), got ", q.dim(), " dims");
  TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(), fn, ": k and v must have q's shape ", q.sizes());
  TORCH_CHECK(q.is_cuda() && k.device() == q.device() && v.device() == q.device(), fn,
              " (CUDA kernel): q, k, v must be on one CUDA device");
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), fn,
              ": q, k, v must share one dtype");
  const auto st = q.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16, fn,
              " (CUDA kernel): dtype must be float32, float16 or bfloat16, got ", st);
  TORCH_CHECK(q.size(2) == kD, fn, " (CUDA kernel): head_dim must be ", kD, ", got ", q.size(2));
  TORCH_CHECK(last_dim_contiguous(q), fn, ": q must have a contiguous last dimension");
  TORCH_CHECK(last_dim_contiguous(k), fn, ": k must have a contiguous last dimension");
  TORCH_CHECK(last_dim_contiguous(v), fn, ": v must have a contiguous last dimension");
  TORCH_CHECK(cu.scalar_type() == at::kInt, fn, ": cu_seqlens must be int32, got ", cu.scalar_type());
  TORCH_CHECK(cu.dim() == 1 && cu.numel() >= 1, fn, ": cu_seqlens must be 1-D of length batch + 1");
  TORCH_CHECK(cu.is_contiguous(), fn, ": cu_seqlens must be contiguous");
  TORCH_CHECK(cu.device() == q.device(), fn, ": cu_seqlens on ", cu.device(), " but q on ", q.device());
  TORCH_CHECK(cu.numel() - 1 <= 65535, fn, " (CUDA kernel): at most 65535 sequences per call");
  TORCH_CHECK(max_seqlen >= 0, fn, ": max_seqlen must be >= 0");
}

Strides strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1)}; }

template <typename scalar_t>
void launch_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cu,
                int64_t max_seqlen, float scale_log2, at::Tensor& out, at::Tensor& lse) {
  const int64_t total = q.size(0), heads = q.size(1), batch = cu.numel() - 1;
  const dim3 grid((max_seqlen + kFwdBQ - 1) / kFwdBQ, heads, batch);
  varlen_fwd_kernel<scalar_t><<<grid, kFwdBQ, 0, at::cuda::getCurrentCUDAStream()>>>(
      q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), cu.data_ptr<int>(),
      out.data_ptr<scalar_t>(), lse.data_ptr<float>(), strides_of(q), strides_of(k), strides_of(v), heads, total,
      scale_log2);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> varlen_attention_fwd_cuda(const at::Tensor& q, const at::Tensor& k,
                                                             const at::Tensor& v, const at::Tensor& cu_seqlens,
                                                             c10::SymInt max_seqlen_s, double scale,
                                                             double dropout_p, int64_t /*seed*/) {
  const char* fn = "varlen_attention";
  TORCH_CHECK(dropout_p == 0.0, fn, " (CUDA kernel): dropout is not implemented, got dropout_p = ", dropout_p);
  const int64_t max_seqlen = max_seqlen_s.expect_int();
  check_cuda_args(fn, q, k, v, cu_seqlens, max_seqlen);
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t total = q.size(0), heads = q.size(1), batch = cu_seqlens.numel() - 1;
  at::Tensor out = at::empty({total, heads, kD}, q.options());
  at::Tensor lse = at::empty({heads, total}, q.options().dtype(at::kFloat));
  if (total == 0 || heads == 0 || batch == 0 || max_seqlen == 0) return {out, lse};
  const float sl = static_cast<float>(scale) * kLog2e;
  switch (q.scalar_type()) {
    case at::kFloat: launch_fwd<float>(q, k, v, cu_seqlens, max_seqlen, sl, out, lse); break;
    case at::kHalf: launch_fwd<at::Half>(q, k, v, cu_seqlens, max_seqlen, sl, out, lse); break;
    case at::kBFloat16: launch_fwd<at::BFloat16>(q, k, v, cu_seqlens, max_seqlen, sl, out, lse); break;
    default: TORCH_CHECK(false, fn, " (CUDA kernel): unsupported dtype ", q.scalar_type());
  }
  return {out, lse};
}

template <typename scalar_t>
void launch_bwd(const at::Tensor& g, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                const at::Tensor& out, const at::Tensor& lse, const at::Tensor& cu, int64_t max_seqlen, float scale,
                at::Tensor& dq, at::Tensor& dk, at::Tensor& dv) {
  const int64_t total = q.size(0), heads = q.size(1), batch = cu.numel() - 1;
  auto stream = at::cuda::getCurrentCUDAStream();
  at::Tensor dsum = at::empty({heads, total}, q.options().dtype(at::kFloat));
  {
    constexpr int threads = 256;
    const int64_t rows = total * heads, per_block = threads / 32;
    varlen_bwd_dot_kernel<scalar_t><<<(rows + per_block - 1) / per_block, threads, 0, stream>>>(
        g.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), dsum.data_ptr<float>(), total, heads);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const dim3 grid_q((max_seqlen + kFwdBQ - 1) / kFwdBQ, heads, batch);
  varlen_bwd_dq_kernel<scalar_t><<<grid_q, kFwdBQ, 0, stream>>>(
      q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
      lse.data_ptr<float>(), dsum.data_ptr<float>(), cu.data_ptr<int>(), dq.data_ptr<scalar_t>(), strides_of(q),
      strides_of(k), strides_of(v), heads, total, scale);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const dim3 grid_kv((max_seqlen + kKvBK - 1) / kKvBK, heads, batch);
  varlen_bwd_dkdv_kernel<scalar_t><<<grid_kv, kKvBK, 0, stream>>>(
      q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
      lse.data_ptr<float>(), dsum.data_ptr<float>(), cu.data_ptr<int>(), dk.data_ptr<scalar_t>(),
      dv.data_ptr<scalar_t>(), strides_of(q), strides_of(k), strides_of(v), heads, total, scale);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> varlen_attention_bwd_cuda(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, const at::Tensor& softmax_lse, const at::Tensor& cu_seqlens, c10::SymInt max_seqlen_s,
    double scale, double dropout_p, int64_t /*seed*/) {
  const char* fn = "varlen_attention_bwd";
  TORCH_CHECK(dropout_p == 0.0, fn, " (CUDA kernel): dropout is not implemented, got dropout_p = ", dropout_p);
  const int64_t max_seqlen = max_seqlen_s.expect_int();
  check_cuda_args(fn, q, k, v, cu_seqlens, max_seqlen);
  TORCH_CHECK(grad_out.sizes() == q.sizes() && out.sizes() == q.sizes(), fn,
              ": grad_out and out must have q's shape ", q.sizes());
  TORCH_CHECK(grad_out.scalar_type() == q.scalar_type() && out.scalar_type() == q.scalar_type(), fn,
              ": grad_out and out must have q's dtype");
  TORCH_CHECK(softmax_lse.scalar_type() == at::kFloat && softmax_lse.dim() == 2 &&
                  softmax_lse.size(0) == q.size(1) && softmax_lse.size(1) == q.size(0),
              fn, ": softmax_lse must be (heads, total_tokens) float32");
  TORCH_CHECK(grad_out.device() == q.device() && out.device() == q.device() && softmax_lse.device() == q.device(),
              fn, ": all tensors must be on q's device");
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t total = q.size(0), heads = q.size(1), batch = cu_seqlens.numel() - 1;
  at::Tensor dq = at::empty({total, heads, kD}, q.options());
  at::Tensor dk = at::empty({total, heads, kD}, q.options());
  at::Tensor dv = at::empty({total, heads, kD}, q.options());
  if (total == 0 || heads == 0 || batch == 0 || max_seqlen == 0) return {dq.zero_(), dk.zero_(), dv.zero_()};
  // grad_out and out are read as contiguous (tokens, heads, 64) rows.
  const at::Tensor g = grad_out.contiguous(), o = out.contiguous(), l = softmax_lse.contiguous();
  const float sc = static_cast<float>(scale);
  switch (q.scalar_type()) {
    case at::kFloat: launch_bwd<float>(g, q, k, v, o, l, cu_seqlens, max_seqlen, sc, dq, dk, dv); break;
    case at::kHalf: launch_bwd<at::Half>(g, q, k, v, o, l, cu_seqlens, max_seqlen, sc, dq, dk, dv); break;
    case at::kBFloat16: launch_bwd<at::BFloat16>(g, q, k, v, o, l, cu_seqlens, max_seqlen, sc, dq, dk, dv); break;
    default: TORCH_CHECK(false, fn, " (CUDA kernel): unsupported dtype ", q.scalar_type());
  }
  return {dq, dk, dv};
}

}  // namespace

// CUDA implementations of the schemas in csrc/attention.cpp.
TORCH_LIBRARY_IMPL(xlrepro, CUDA, m) {
  m.impl("varlen_attention_fwd", &varlen_attention_fwd_cuda);
  m.impl("varlen_attention_bwd", &varlen_attention_bwd_cuda);
}

}  // namespace xlrepro
