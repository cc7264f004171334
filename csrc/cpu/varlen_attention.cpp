// CPU kernels of varlen_attention_fwd / varlen_attention_bwd (schemas in csrc/attention.cpp).
//
// FlashAttention-2 structure on a CPU: one task per (sequence, head), tasks scheduled
// longest-first over the intra-op threads (dynamic queue, so mixed lengths balance on few
// cores). Inside a task, operands are read in place (fp32/fp64, head_dim a multiple of 16/8) or
// packed into a per-thread float32 workspace (float64 for float64 inputs), so bf16/fp16 inputs
// cost one conversion pass; K^T is always packed. No B x L x L buffer ever exists:
//   forward:  for each query block (64 rows), for each key block (256 keys):
//             S = Q K^T, online softmax with running max / running sum, O = O * alpha + P V;
//             out = O / l, lse = m + log l.
//   dropout:  counter-based (hash of seed, head, query token, key token): the backward
//             regenerates the forward's mask without storing it (see Dropout below).
//   backward: recompute P = exp(S * scale - lse) per (key block 64, query block 128) tile in
//             the transposed orientation; dV += P^T dO, dS = P (dP - D) with D = rowsum(dO o out),
//             dK += dS^T Q, dQ += dS K. The task owns its sequence's dQ/dK/dV: no atomics.
// The small GEMMs are register-blocked micro-kernels written with GCC vector extensions (one
// 64-byte vector type, lowered to zmm/ymm/xmm), compiled for AVX-512, AVX2 and baseline x86
// and picked at run time (XL_MULTIVERSION): setup.py builds without -march flags, and ATen's
// per-call GEMM overhead is too high for (sequence, head) blocks of a few dozen tokens.
// 2026-11-25 (attn)
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__)
// setup.py compiles with -std=c++17 (ISO mode), which turns off FMA contraction; the
// micro-kernels want a*b+c fused. Everything below this line is our own code.
#pragma GCC optimize("fp-contract=fast")
#endif

// Leaf kernels are compiled three times (AVX-512, AVX2+FMA, baseline) and picked at run time from
// the CPU's feature bits. (target_clones("arch=...") was tried first: its resolver tests the CPU
// *model*, which virtual machines report generically, so it silently ran the SSE2 clone.)
#if defined(__x86_64__) && defined(__GNUC__)
#define XL_HAVE_ISA_VARIANTS 1
#define XL_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi,bmi2,f16c")))
#define XL_AVX2 __attribute__((target("avx2,fma,bmi,bmi2,f16c")))
#endif
#define XL_INLINE inline __attribute__((always_inline))

namespace xlrepro {
namespace {

// 2: AVX-512 (F, VL, BW, DQ), 1: AVX2 + FMA, 0: baseline.
int cpu_isa() {
#ifdef XL_HAVE_ISA_VARIANTS
  static const int isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
      return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
  }();
  return isa;
#else
  return 0;
#endif
}

// Defines `ret name params` dispatching on cpu_isa() to copies of name##_impl compiled per ISA.
#ifdef XL_HAVE_ISA_VARIANTS
#define XL_MULTIVERSION(ret, name, params, args)                  \
  XL_AVX512 ret name##_avx512 params { return name##_impl args; } \
  XL_AVX2 ret name##_avx2 params { return name##_impl args; }     \
  ret name##_base params { return name##_impl args; }             \
  ret name params {                                               \
    switch (cpu_isa()) {                                          \
      case 2: return name##_avx512 args;                          \
      case 1: return name##_avx2 args;                            \
      default: return name##_base args;                           \
    }                                                             \
  }
#else
#define XL_MULTIVERSION(ret, name, params, args) \
  ret name params { return name##_impl args; }
#endif

// ------------------------------------------------------------------------------------------
// Argument checks (the Python entry point checks first, with the same wording; these guard
// direct torch.ops calls).
// ------------------------------------------------------------------------------------------

// Last dimension contiguous (FlashAttention's rule); trivially true for empty or 1-wide tensors.
bool last_dim_contiguous(const at::Tensor& t) { return t.numel() == 0 || t.size(-1) <= 1 || t.stride(-1) == 1; }

void check_qkv(const char* fn, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(q.dim() == 3, fn, ": q must be (total_tokens, heads, head_dim), got ", q.dim(), " dims");
  TORCH_CHECK(k.sizes() == q.sizes(), fn, ": k shape ", k.sizes(), " must equal q shape ", q.sizes());
  TORCH_CHECK(v.sizes() == q.sizes(), fn, ": v shape ", v.sizes(), " must equal q shape ", q.sizes());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), fn,
              ": q, k, v must share one dtype, got ", q.scalar_type(), ", ", k.scalar_type(), ", ",
              v.scalar_type());
  TORCH_CHECK(q.device() == k.device() && q.device() == v.device(), fn, ": q, k, v must be on one device");
  TORCH_CHECK(last_dim_contiguous(q), fn, ": q must have a contiguous last dimension");
  TORCH_CHECK(last_dim_contiguous(k), fn, ": k must have a contiguous last dimension");
  TORCH_CHECK(last_dim_contiguous(v), fn, ": v must have a contiguous last dimension");
}

// Validates cu_seqlens (CPU tensor) and returns its values.
std::vector<int32_t> read_cu_seqlens(const char* fn, const at::Tensor& cu, const at::Tensor& q,
                                     int64_t max_seqlen) {
  TORCH_CHECK(cu.scalar_type() == at::kInt, fn, ": cu_seqlens must be int32, got ", cu.scalar_type());
  TORCH_CHECK(cu.dim() == 1 && cu.numel() >= 1, fn, ": cu_seqlens must be 1-D of length batch + 1");
  TORCH_CHECK(cu.is_contiguous(), fn, ": cu_seqlens must be contiguous");
  TORCH_CHECK(cu.device() == q.device(), fn, ": cu_seqlens on ", cu.device(), " but q on ", q.device());
  const int64_t total = q.size(0);
  const int32_t* p = cu.data_ptr<int32_t>();
  std::vector<int32_t> c(p, p + cu.numel());
  for (size_t i = 0; i < c.size(); ++i)
    TORCH_CHECK(c[i] >= 0 && c[i] <= total, fn, ": cu_seqlens[", i, "] = ", c[i],
                " is out of range [0, total_tokens = ", total, "]");
  TORCH_CHECK(c[0] == 0, fn, ": cu_seqlens[0] must be 0, got ", c[0]);
  int64_t longest = 0;
  for (size_t i = 1; i < c.size(); ++i) {
    TORCH_CHECK(c[i] >= c[i - 1], fn, ": cu_seqlens must be non-decreasing, but cu_seqlens[", i, "] = ",
                c[i], " < cu_seqlens[", i - 1, "] = ", c[i - 1]);
    longest = std::max<int64_t>(longest, c[i] - c[i - 1]);
  }
  TORCH_CHECK(c.back() == total, fn, ": total_tokens mismatch: cu_seqlens[-1] = ", c.back(),
              " but q has ", total, " tokens");
  TORCH_CHECK(longest <= max_seqlen, fn, ": max_seqlen = ", max_seqlen,
              " is smaller than the longest sequence (", longest, ")");
  return c;
}

// ------------------------------------------------------------------------------------------
// Vector type and micro-kernels
// ------------------------------------------------------------------------------------------

template <typename T> struct Vec;
template <> struct Vec<float> {
  typedef float type __attribute__((vector_size(64)));
  typedef float utype __attribute__((vector_size(64), aligned(4)));
  typedef int32_t itype __attribute__((vector_size(64)));
  static constexpr int n = 16;
};
template <> struct Vec<double> {
  typedef double type __attribute__((vector_size(64)));
  typedef double utype __attribute__((vector_size(64), aligned(8)));
  typedef int64_t itype __attribute__((vector_size(64)));
  static constexpr int n = 8;
};

template <typename T> XL_INLINE typename Vec<T>::type vload(const T* p) {
  return *reinterpret_cast<const typename Vec<T>::utype*>(p);
}
template <typename T> XL_INLINE void vstore(T* p, typename Vec<T>::type x) {
  *reinterpret_cast<typename Vec<T>::utype*>(p) = x;
}
template <typename T> XL_INLINE typename Vec<T>::type vsplat(T a) {
  typename Vec<T>::type r = {};
  return r + a;
}

// exp with exactly 0 below the float range (masked / padded scores are -inf). Cephes-style
// range reduction and degree-6 polynomial: ~2 ulp, vectorisable for every target.
XL_INLINE Vec<float>::type vexp(Vec<float>::type x) {
  using V = Vec<float>::type;
  using I = Vec<float>::itype;
  const V lo = vsplat(-87.33654f), hi = vsplat(88.72283f);
  const I under = x < lo;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const V magic = vsplat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  V t = x * vsplat(1.44269504088896341f) + magic;
  const I n = (I)t - (I)magic;  // GCC vector casts of equal size reinterpret the bits (no aliasing UB)
  const V fn = t - magic;
  V r = x - fn * vsplat(0.693359375f);
  r = r - fn * vsplat(-2.12194440e-4f);
  V p = vsplat(1.9875691500E-4f);
  p = p * r + vsplat(1.3981999507E-3f);
  p = p * r + vsplat(8.3334519073E-3f);
  p = p * r + vsplat(4.1665795894E-2f);
  p = p * r + vsplat(1.6666665459E-1f);
  p = p * r + vsplat(5.0000001201E-1f);
  p = p * (r * r) + r + vsplat(1.0f);
  // 2^n, split in two factors so that n = -127 and n = 128 stay representable.
  const I h = n >> 1;
  const I e1 = (h + 127) << 23, e2 = (n - h + 127) << 23;
  p = p * (V)e1 * (V)e2;
  return under ? vsplat(0.0f) : p;
}
XL_INLINE Vec<double>::type vexp(Vec<double>::type x) {
  Vec<double>::type r;
  for (int i = 0; i < Vec<double>::n; ++i) r[i] = std::exp(x[i]);
  return r;
}

// C[MR x NB*W] (+)= A[MR x K] * B[K x NB*W]; A, B, C row-major with leading dims.
template <typename T, int MR, int NB>
XL_INLINE void micro(int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc,
                     bool accumulate) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::n;
  V c[MR][NB];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) c[r][j] = accumulate ? vload(C + r * ldc + j * W) : V{};
  for (int64_t k = 0; k < K; ++k) {
    V b[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) b[j] = vload(B + k * ldb + j * W);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const T a = A[r * lda + k];  // scalar * vector: a broadcast load
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) c[r][j] += a * b[j];
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) vstore(C + r * ldc + j * W, c[r][j]);
}

template <typename T, int NB>
XL_INLINE void gemm_cols(int64_t M, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                         int64_t ldc, bool acc) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) micro<T, 4, NB>(K, A + m * lda, lda, B, ldb, C + m * ldc, ldc, acc);
  switch (M - m) {
    case 3: micro<T, 3, NB>(K, A + m * lda, lda, B, ldb, C + m * ldc, ldc, acc); break;
    case 2: micro<T, 2, NB>(K, A + m * lda, lda, B, ldb, C + m * ldc, ldc, acc); break;
    case 1: micro<T, 1, NB>(K, A + m * lda, lda, B, ldb, C + m * ldc, ldc, acc); break;
    default: break;
  }
}

// C[M x N] (+)= A[M x K] B[K x N]. N must be a multiple of the vector width (callers pad).
template <typename T>
XL_INLINE void gemm_impl(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
                         T* C, int64_t ldc, bool acc) {
  constexpr int W = Vec<T>::n;
  int64_t n = 0;
  for (; n + 4 * W <= N; n += 4 * W) gemm_cols<T, 4>(M, K, A, lda, B + n, ldb, C + n, ldc, acc);
  for (; n + W <= N; n += W) gemm_cols<T, 1>(M, K, A, lda, B + n, ldb, C + n, ldc, acc);
}

#define XL_GEMM_PARAMS(T)                                                                        \
  (int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc, \
   bool acc)
XL_MULTIVERSION(void, gemm, XL_GEMM_PARAMS(float), (M, N, K, A, lda, B, ldb, C, ldc, acc))
XL_MULTIVERSION(void, gemm, XL_GEMM_PARAMS(double), (M, N, K, A, lda, B, ldb, C, ldc, acc))

// Softmax pieces over one row of n (multiple of W) scores.
// row <- row * scale, entries [valid, n) <- -inf; returns max(row).
template <typename T>
XL_INLINE T scale_and_max(T* row, int64_t valid, int64_t n, T scale) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::n;
  const V s = vsplat(scale);
  for (int64_t j = 0; j < n; j += W) vstore(row + j, vload(row + j) * s);
  for (int64_t j = valid; j < n; ++j) row[j] = -std::numeric_limits<T>::infinity();
  V m = vsplat<T>(-std::numeric_limits<T>::infinity());
  for (int64_t j = 0; j < n; j += W) {
    const V x = vload(row + j);
    m = x > m ? x : m;
  }
  T r = m[0];
  for (int i = 1; i < W; ++i) r = m[i] > r ? m[i] : r;
  return r;
}
// row <- exp(row - shift); returns sum(row).
template <typename T>
XL_INLINE T exp_and_sum(T* row, int64_t n, T shift) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::n;
  V acc = {};
  const V sh = vsplat(shift);
  for (int64_t j = 0; j < n; j += W) {
    V p = vexp(vload(row + j) - sh);
    vstore(row + j, p);
    acc += p;
  }
  T r = 0;
  for (int i = 0; i < W; ++i) r += acc[i];
  return r;
}

// One key block of the online softmax for one query row; returns the rescale factor of the
// running output.
// One key block of the online softmax for one query row: scales the row, masks [valid, n),
// turns it into exp(row - new max), updates the running max m and sum l; returns the factor
// by which the running output must be rescaled.
template <typename T>
XL_INLINE T row_softmax_step_impl(T* row, int64_t valid, int64_t n, T scale, T* m, T* l) {
  const T mx = scale_and_max(row, valid, n, scale);
  const T mnew = *m > mx ? *m : mx;
  const T alpha = std::exp(*m - mnew);
  *l = *l * alpha + exp_and_sum(row, n, mnew);
  *m = mnew;
  return alpha;
}
XL_MULTIVERSION(float, row_softmax_step, (float* row, int64_t valid, int64_t n, float scale, float* m, float* l),
                (row, valid, n, scale, m, l))
XL_MULTIVERSION(double, row_softmax_step,
                (double* row, int64_t valid, int64_t n, double scale, double* m, double* l),
                (row, valid, n, scale, m, l))

// Backward elementwise on a (rows x n) tile with leading dim ld:
//   P = exp(S * scale - lse[col]);  dS = P * (dP - D[col]) (in place in dP).
template <typename T>
XL_INLINE void probs_tile_impl(T* S, int64_t rows, int64_t n, int64_t ld, T scale, const T* lse) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::n;
  const V s = vsplat(scale);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; j += W) vstore(S + r * ld + j, vexp(vload(S + r * ld + j) * s - vload(lse + j)));
}
template <typename T>
XL_INLINE void dscores_tile_impl(const T* P, T* dP, int64_t rows, int64_t n, int64_t ld, const T* D) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::n;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; j += W)
      vstore(dP + r * ld + j, vload(P + r * ld + j) * (vload(dP + r * ld + j) - vload(D + j)));
}
XL_MULTIVERSION(void, probs_tile, (float* S, int64_t rows, int64_t n, int64_t ld, float scale, const float* lse),
                (S, rows, n, ld, scale, lse))
XL_MULTIVERSION(void, probs_tile,
                (double* S, int64_t rows, int64_t n, int64_t ld, double scale, const double* lse),
                (S, rows, n, ld, scale, lse))
XL_MULTIVERSION(void, dscores_tile, (const float* P, float* dP, int64_t rows, int64_t n, int64_t ld, const float* D),
                (P, dP, rows, n, ld, D))
XL_MULTIVERSION(void, dscores_tile,
                (const double* P, double* dP, int64_t rows, int64_t n, int64_t ld, const double* D),
                (P, dP, rows, n, ld, D))

// Dropout of attention probabilities, regenerated identically in the backward: element
// (head h, query token q, key token k) is kept iff (mix64(query_key(seed, h, q) ^ k) >> 32) >=
// threshold, with global token indices, so the mask depends on neither blocking nor threads.
// Kept probabilities are scaled by 1 / (1 - p), as nn.Dropout.
struct Dropout {
  bool on = false;
  uint64_t seed = 0;
  uint32_t threshold = 0;
  double inv_keep = 1.0;
};

XL_INLINE uint64_t mix64(uint64_t z) {  // splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
inline uint64_t query_key(uint64_t seed, int64_t h, int64_t tok) {
  return mix64(mix64(seed ^ (static_cast<uint64_t>(h) * 0x9E3779B97F4A7C15ULL)) ^ static_cast<uint64_t>(tok));
}
// row[c] (key token k0 + c) of one query: dropped or scaled.
template <typename T>
XL_INLINE void dropout_along_keys_impl(T* row, int64_t n, uint64_t qkey, uint64_t k0, uint32_t thr, T inv) {
  for (int64_t c = 0; c < n; ++c) {
    const uint32_t hsh = static_cast<uint32_t>(mix64(qkey ^ (k0 + static_cast<uint64_t>(c))) >> 32);
    row[c] = hsh >= thr ? row[c] * inv : T(0);
  }
}
// dst[c] = src[c] (query c, one key token ktok) dropped or scaled.
template <typename T>
XL_INLINE void dropout_along_queries_impl(const T* src, T* dst, int64_t n, const uint64_t* qkeys, uint64_t ktok,
                                          uint32_t thr, T inv) {
  for (int64_t c = 0; c < n; ++c) {
    const uint32_t hsh = static_cast<uint32_t>(mix64(qkeys[c] ^ ktok) >> 32);
    dst[c] = hsh >= thr ? src[c] * inv : T(0);
  }
}
XL_MULTIVERSION(void, dropout_along_keys, (float* row, int64_t n, uint64_t qkey, uint64_t k0, uint32_t thr, float inv),
                (row, n, qkey, k0, thr, inv))
XL_MULTIVERSION(void, dropout_along_keys,
                (double* row, int64_t n, uint64_t qkey, uint64_t k0, uint32_t thr, double inv),
                (row, n, qkey, k0, thr, inv))
XL_MULTIVERSION(void, dropout_along_queries,
                (const float* src, float* dst, int64_t n, const uint64_t* qkeys, uint64_t ktok, uint32_t thr,
                 float inv),
                (src, dst, n, qkeys, ktok, thr, inv))
XL_MULTIVERSION(void, dropout_along_queries,
                (const double* src, double* dst, int64_t n, const uint64_t* qkeys, uint64_t ktok, uint32_t thr,
                 double inv),
                (src, dst, n, qkeys, ktok, thr, inv))

Dropout make_dropout(const char* fn, double p, int64_t seed) {
  TORCH_CHECK(p >= 0.0 && p < 1.0, fn, ": dropout_p must be in [0, 1) for the compiled kernel, got ", p);
  Dropout d;
  d.on = p > 0.0;
  d.seed = static_cast<uint64_t>(seed);
  d.threshold = static_cast<uint32_t>(std::min(4294967295.0, std::llround(p * 4294967296.0) * 1.0));
  d.inv_keep = 1.0 / (1.0 - p);
  return d;
}

// ------------------------------------------------------------------------------------------
// Tasks
// ------------------------------------------------------------------------------------------

constexpr int64_t kFwdBQ = 64;   // query rows per forward block
constexpr int64_t kFwdBK = 256;  // keys per forward block (online softmax across blocks)
constexpr int64_t kBwdBQ = 128;  // query columns per backward tile
constexpr int64_t kBwdBK = 64;   // key rows per backward tile

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// A (tokens x heads x head_dim) tensor with a contiguous last dim, addressed by token and head.
template <typename scalar_t>
struct Strided {
  const scalar_t* p;
  int64_t s_tok, s_head;
  const scalar_t* row(int64_t tok, int64_t h) const { return p + tok * s_tok + h * s_head; }
};
template <typename scalar_t>
Strided<scalar_t> strided(const at::Tensor& t) {
  return {t.data_ptr<scalar_t>(), t.stride(0), t.stride(1)};
}

// rows x d block of x (starting at token `start`) -> dst[rows x ld], zero-padded to ld columns.
template <typename scalar_t, typename acc_t>
XL_INLINE void pack_rows(const Strided<scalar_t>& x, int64_t start, int64_t h, int64_t rows, int64_t d,
                         acc_t* dst, int64_t ld) {
  for (int64_t t = 0; t < rows; ++t) {
    const scalar_t* src = x.row(start + t, h);
    acc_t* o = dst + t * ld;
    for (int64_t c = 0; c < d; ++c) o[c] = static_cast<acc_t>(src[c]);
    for (int64_t c = d; c < ld; ++c) o[c] = acc_t(0);
  }
}
// Transposed: dst[d x ld] with dst[c][t] = x[start + t][c], columns >= rows zeroed. Blocks of
// 16 tokens, so that every store fills part of one cache line.
template <typename scalar_t, typename acc_t>
XL_INLINE void pack_cols(const Strided<scalar_t>& x, int64_t start, int64_t h, int64_t rows, int64_t d,
                         acc_t* dst, int64_t ld) {
  constexpr int64_t TB = 16;
  for (int64_t c = 0; c < d; ++c)
    for (int64_t t = rows; t < ld; ++t) dst[c * ld + t] = acc_t(0);
  for (int64_t t0 = 0; t0 < rows; t0 += TB) {
    const int64_t nt = std::min(TB, rows - t0);
    const scalar_t* src[TB];
    for (int64_t t = 0; t < nt; ++t) src[t] = x.row(start + t0 + t, h);
    for (int64_t c = 0; c < d; ++c) {
      acc_t* o = dst + c * ld + t0;
      for (int64_t t = 0; t < nt; ++t) o[t] = static_cast<acc_t>(src[t][c]);
    }
  }
}

// Row-major (rows x d) view of x's block for use as a GEMM operand: the input itself when it
// already has the working dtype and d is a multiple of the vector width (fp32/fp64, head_dim 64),
// else a converted, zero-padded copy in buf. Sets *ld to the leading dimension.
template <typename scalar_t, typename acc_t>
XL_INLINE const acc_t* rows_view(const Strided<scalar_t>& x, int64_t start, int64_t h, int64_t rows, int64_t d,
                                 int64_t dpad, acc_t* buf, int64_t* ld) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (d == dpad) {
      *ld = x.s_tok;
      return x.row(start, h);
    }
  }
  pack_rows(x, start, h, rows, d, buf, dpad);
  *ld = dpad;
  return buf;
}

struct Task {
  int64_t b, h, start, len;
};

// Tasks (sequence, head) of nonzero length, longest first (LPT scheduling).
std::vector<Task> make_tasks(const std::vector<int32_t>& cu, int64_t heads) {
  std::vector<Task> tasks;
  for (size_t b = 0; b + 1 < cu.size(); ++b) {
    const int64_t len = cu[b + 1] - cu[b];
    if (len == 0) continue;
    for (int64_t h = 0; h < heads; ++h) tasks.push_back({static_cast<int64_t>(b), h, cu[b], len});
  }
  std::stable_sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) { return a.len > b.len; });
  return tasks;
}

// Runs fn(task, worker_state) over all tasks with a shared atomic queue on the intra-op pool.
template <typename State, typename Fn>
void run_tasks(const std::vector<Task>& tasks, const std::function<State()>& make_state, const Fn& fn) {
  if (tasks.empty()) return;
  std::atomic<int64_t> next{0};
  const int64_t n = static_cast<int64_t>(tasks.size());
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    State st = make_state();
    for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(tasks[i], st);
  });
}

template <typename acc_t>
struct FwdWork {
  std::vector<acc_t> kt, vp, qp, s, o, m, l;
  std::vector<uint64_t> qkey;
  FwdWork(int64_t max_len, int64_t d, int64_t dpad) {
    const int64_t L = std::max<int64_t>(max_len, 1);
    qkey.resize(L);
    kt.resize(d * round_up(L, Vec<acc_t>::n));
    vp.resize(L * dpad);
    qp.resize(L * dpad);
    s.resize(kFwdBQ * kFwdBK);
    o.resize(kFwdBQ * dpad);
    m.resize(kFwdBQ);
    l.resize(kFwdBQ);
  }
};

template <typename scalar_t, typename acc_t>
XL_INLINE void fwd_task_impl(const Task& t, FwdWork<acc_t>& w, const Strided<scalar_t>& q,
                             const Strided<scalar_t>& k, const Strided<scalar_t>& v, int64_t heads, int64_t d,
                             int64_t total, acc_t scale, scalar_t* out, acc_t* lse, const Dropout& dr) {
  constexpr int64_t W = Vec<acc_t>::n;
  const int64_t L = t.len, dpad = round_up(d, W), lpad = round_up(L, W);
  pack_cols(k, t.start, t.h, L, d, w.kt.data(), lpad);
  int64_t ldq, ldv;
  const acc_t* Q = rows_view(q, t.start, t.h, L, d, dpad, w.qp.data(), &ldq);
  const acc_t* V = rows_view(v, t.start, t.h, L, d, dpad, w.vp.data(), &ldv);
  acc_t* S = w.s.data();
  acc_t* O = w.o.data();
  if (dr.on)
    for (int64_t i = 0; i < L; ++i) w.qkey[i] = query_key(dr.seed, t.h, t.start + i);
  const acc_t inv_keep = static_cast<acc_t>(dr.inv_keep);
  for (int64_t i0 = 0; i0 < L; i0 += kFwdBQ) {
    const int64_t mq = std::min(kFwdBQ, L - i0);
    std::fill(w.m.begin(), w.m.begin() + mq, -std::numeric_limits<acc_t>::infinity());
    std::fill(w.l.begin(), w.l.begin() + mq, acc_t(0));
    for (int64_t j0 = 0; j0 < L; j0 += kFwdBK) {
      const int64_t nk = std::min(kFwdBK, L - j0), nkp = round_up(nk, W);
      gemm(mq, nkp, d, Q + i0 * ldq, ldq, w.kt.data() + j0, lpad, S, kFwdBK, false);
      for (int64_t r = 0; r < mq; ++r) {
        const acc_t alpha = row_softmax_step(S + r * kFwdBK, nk, nkp, scale, &w.m[r], &w.l[r]);
        // Dropout after the running sum: the normaliser counts every key, as softmax-then-dropout.
        if (dr.on) dropout_along_keys(S + r * kFwdBK, nkp, w.qkey[i0 + r], t.start + j0, dr.threshold, inv_keep);
        if (j0 > 0 && alpha != acc_t(1)) {
          acc_t* o = O + r * dpad;
          for (int64_t c = 0; c < dpad; ++c) o[c] *= alpha;
        }
      }
      // The first key block overwrites O (its rescale factor is exp(-inf) = 0).
      gemm(mq, dpad, nk, S, kFwdBK, V + j0 * ldv, ldv, O, dpad, j0 > 0);
    }
    for (int64_t r = 0; r < mq; ++r) {
      const int64_t tok = t.start + i0 + r;
      const acc_t inv = acc_t(1) / w.l[r];
      const acc_t* __restrict__ o = O + r * dpad;
      scalar_t* __restrict__ dst = out + (tok * heads + t.h) * d;
      for (int64_t c = 0; c < d; ++c) dst[c] = static_cast<scalar_t>(o[c] * inv);
      lse[t.h * total + tok] = w.m[r] + std::log(w.l[r]);
    }
  }
}

template <typename acc_t>
struct BwdWork {
  std::vector<acc_t> qp, qt, kp, vp, dop, dot, lse, dd, dq, dk, dv, pt, pdt, dpt, ds;
  std::vector<uint64_t> qkey;
  BwdWork(int64_t max_len, int64_t d, int64_t dpad) {
    const int64_t L = std::max<int64_t>(max_len, 1);
    const int64_t lpad = round_up(L, Vec<acc_t>::n);
    qkey.resize(lpad);
    pdt.resize(kBwdBK * kBwdBQ);
    for (auto* b : {&qp, &kp, &vp, &dop, &dq, &dk, &dv}) b->resize(L * dpad);
    for (auto* b : {&qt, &dot}) b->resize(d * lpad);
    lse.resize(lpad);
    dd.resize(lpad);
    pt.resize(kBwdBK * kBwdBQ);
    dpt.resize(kBwdBK * kBwdBQ);
    ds.resize(kBwdBQ * kBwdBK);
  }
};

template <typename scalar_t, typename acc_t>
XL_INLINE void bwd_task_impl(const Task& t, BwdWork<acc_t>& w, const Strided<scalar_t>& g,
                             const Strided<scalar_t>& q, const Strided<scalar_t>& k, const Strided<scalar_t>& v,
                             const Strided<scalar_t>& o, const acc_t* lse, int64_t heads, int64_t d,
                             int64_t total, acc_t scale, scalar_t* dq_out, scalar_t* dk_out, scalar_t* dv_out,
                             const Dropout& dr) {
  constexpr int64_t W = Vec<acc_t>::n;
  const int64_t L = t.len, dpad = round_up(d, W), lpad = round_up(L, W);
  int64_t ldq, ldk, ldv, ldo;
  const acc_t* Q = rows_view(q, t.start, t.h, L, d, dpad, w.qp.data(), &ldq);
  const acc_t* K = rows_view(k, t.start, t.h, L, d, dpad, w.kp.data(), &ldk);
  const acc_t* V = rows_view(v, t.start, t.h, L, d, dpad, w.vp.data(), &ldv);
  const acc_t* dO = rows_view(g, t.start, t.h, L, d, dpad, w.dop.data(), &ldo);
  pack_cols(q, t.start, t.h, L, d, w.qt.data(), lpad);
  pack_cols(g, t.start, t.h, L, d, w.dot.data(), lpad);
  for (int64_t i = 0; i < L; ++i) {
    const scalar_t* orow = o.row(t.start + i, t.h);
    const acc_t* grow = dO + i * ldo;
    acc_t s = 0;
    for (int64_t c = 0; c < d; ++c) s += grow[c] * static_cast<acc_t>(orow[c]);
    w.dd[i] = s;
    w.lse[i] = lse[t.h * total + t.start + i];
  }
  // Padded query columns: P = exp(finite - inf) = 0, so they contribute nothing.
  std::fill(w.dd.begin() + L, w.dd.begin() + lpad, acc_t(0));
  std::fill(w.lse.begin() + L, w.lse.begin() + lpad, std::numeric_limits<acc_t>::infinity());
  // dQ/dK/dV need no zeroing: the first tile that touches a block overwrites it (acc = false).

  acc_t* pt = w.pt.data();
  acc_t* dpt = w.dpt.data();
  acc_t* pdt = w.pdt.data();
  const acc_t inv_keep = static_cast<acc_t>(dr.inv_keep);
  if (dr.on) {
    for (int64_t i = 0; i < L; ++i) w.qkey[i] = query_key(dr.seed, t.h, t.start + i);
    std::fill(w.qkey.begin() + L, w.qkey.begin() + lpad, uint64_t(0));
  }
  acc_t* ds = w.ds.data();
  for (int64_t j0 = 0; j0 < L; j0 += kBwdBK) {
    const int64_t nk = std::min(kBwdBK, L - j0);
    for (int64_t i0 = 0; i0 < L; i0 += kBwdBQ) {
      const int64_t nq = std::min(kBwdBQ, L - i0), nqp = round_up(nq, W);
      // P^T (nk x nq) = exp(K Q^T * scale - lse)
      gemm(nk, nqp, d, K + j0 * ldk, ldk, w.qt.data() + i0, lpad, pt, kBwdBQ, false);
      probs_tile(pt, nk, nqp, kBwdBQ, scale, w.lse.data() + i0);
      // dV += Pd^T dO, with Pd = P o mask / (1 - p) the dropped probabilities
      const acc_t* pv = pt;
      if (dr.on) {
        for (int64_t r = 0; r < nk; ++r)
          dropout_along_queries(pt + r * kBwdBQ, pdt + r * kBwdBQ, nqp, w.qkey.data() + i0, t.start + j0 + r,
                                dr.threshold, inv_keep);
        pv = pdt;
      }
      gemm(nk, dpad, nq, pv, kBwdBQ, dO + i0 * ldo, ldo, w.dv.data() + j0 * dpad, dpad, i0 > 0);
      // dP^T = V dO^T ; dS^T = P^T (dP^T - D)
      gemm(nk, nqp, d, V + j0 * ldv, ldv, w.dot.data() + i0, lpad, dpt, kBwdBQ, false);
      // dL/dP = dL/dPd o mask / (1 - p); D = rowsum(dO o out) still equals rowsum(P o dL/dP).
      if (dr.on)
        for (int64_t r = 0; r < nk; ++r)
          dropout_along_queries(dpt + r * kBwdBQ, dpt + r * kBwdBQ, nqp, w.qkey.data() + i0, t.start + j0 + r,
                                dr.threshold, inv_keep);
      dscores_tile(pt, dpt, nk, nqp, kBwdBQ, w.dd.data() + i0);
      // dK += dS^T Q
      gemm(nk, dpad, nq, dpt, kBwdBQ, Q + i0 * ldq, ldq, w.dk.data() + j0 * dpad, dpad, i0 > 0);
      // dQ += dS K
      for (int64_t r = 0; r < nk; ++r)
        for (int64_t c = 0; c < nq; ++c) ds[c * kBwdBK + r] = dpt[r * kBwdBQ + c];
      gemm(nq, dpad, nk, ds, kBwdBK, K + j0 * ldk, ldk, w.dq.data() + i0 * dpad, dpad, j0 > 0);
    }
  }
  for (int64_t i = 0; i < L; ++i) {
    const int64_t off = ((t.start + i) * heads + t.h) * d;
    const acc_t* __restrict__ a = w.dq.data() + i * dpad;
    const acc_t* __restrict__ b = w.dk.data() + i * dpad;
    const acc_t* __restrict__ c = w.dv.data() + i * dpad;
    scalar_t* __restrict__ x = dq_out + off;
    scalar_t* __restrict__ y = dk_out + off;
    scalar_t* __restrict__ z = dv_out + off;
    for (int64_t j = 0; j < d; ++j) x[j] = static_cast<scalar_t>(a[j] * scale);
    for (int64_t j = 0; j < d; ++j) y[j] = static_cast<scalar_t>(b[j] * scale);
    for (int64_t j = 0; j < d; ++j) z[j] = static_cast<scalar_t>(c[j]);
  }
}

// The task bodies (packing, softmax bookkeeping, conversions) per ISA as well; the GEMMs and
// tile kernels they call dispatch on their own.
#define XL_TASK_ARGS_FWD(scalar_t, acc_t)                                                             \
  (const Task& t, FwdWork<acc_t>& w, const Strided<scalar_t>& q, const Strided<scalar_t>& k,         \
   const Strided<scalar_t>& v, int64_t heads, int64_t d, int64_t total, acc_t scale, scalar_t* out, \
   acc_t* lse, const Dropout& dr)
#define XL_TASK_ARGS_BWD(scalar_t, acc_t)                                                             \
  (const Task& t, BwdWork<acc_t>& w, const Strided<scalar_t>& g, const Strided<scalar_t>& q,         \
   const Strided<scalar_t>& k, const Strided<scalar_t>& v, const Strided<scalar_t>& o, const acc_t* lse, \
   int64_t heads, int64_t d, int64_t total, acc_t scale, scalar_t* dq_out, scalar_t* dk_out,        \
   scalar_t* dv_out, const Dropout& dr)
#define XL_FWD_CALL (t, w, q, k, v, heads, d, total, scale, out, lse, dr)
#define XL_BWD_CALL (t, w, g, q, k, v, o, lse, heads, d, total, scale, dq_out, dk_out, dv_out, dr)

#ifdef XL_HAVE_ISA_VARIANTS
template <typename scalar_t, typename acc_t>
XL_AVX512 void fwd_task_avx512 XL_TASK_ARGS_FWD(scalar_t, acc_t) { fwd_task_impl<scalar_t, acc_t> XL_FWD_CALL; }
template <typename scalar_t, typename acc_t>
XL_AVX2 void fwd_task_avx2 XL_TASK_ARGS_FWD(scalar_t, acc_t) { fwd_task_impl<scalar_t, acc_t> XL_FWD_CALL; }
template <typename scalar_t, typename acc_t>
XL_AVX512 void bwd_task_avx512 XL_TASK_ARGS_BWD(scalar_t, acc_t) { bwd_task_impl<scalar_t, acc_t> XL_BWD_CALL; }
template <typename scalar_t, typename acc_t>
XL_AVX2 void bwd_task_avx2 XL_TASK_ARGS_BWD(scalar_t, acc_t) { bwd_task_impl<scalar_t, acc_t> XL_BWD_CALL; }
#endif

template <typename scalar_t, typename acc_t>
void fwd_task XL_TASK_ARGS_FWD(scalar_t, acc_t) {
#ifdef XL_HAVE_ISA_VARIANTS
  if (cpu_isa() == 2) return fwd_task_avx512<scalar_t, acc_t> XL_FWD_CALL;
  if (cpu_isa() == 1) return fwd_task_avx2<scalar_t, acc_t> XL_FWD_CALL;
#endif
  fwd_task_impl<scalar_t, acc_t> XL_FWD_CALL;
}
template <typename scalar_t, typename acc_t>
void bwd_task XL_TASK_ARGS_BWD(scalar_t, acc_t) {
#ifdef XL_HAVE_ISA_VARIANTS
  if (cpu_isa() == 2) return bwd_task_avx512<scalar_t, acc_t> XL_BWD_CALL;
  if (cpu_isa() == 1) return bwd_task_avx2<scalar_t, acc_t> XL_BWD_CALL;
#endif
  bwd_task_impl<scalar_t, acc_t> XL_BWD_CALL;
}

// ------------------------------------------------------------------------------------------
// Registered kernels
// ------------------------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor> varlen_attention_fwd_cpu(const at::Tensor& q, const at::Tensor& k,
                                                            const at::Tensor& v, const at::Tensor& cu_seqlens,
                                                            c10::SymInt max_seqlen_s, double scale,
                                                            double dropout_p, int64_t seed) {
  const char* fn = "varlen_attention";
  const Dropout dr = make_dropout(fn, dropout_p, seed);
  check_qkv(fn, q, k, v);
  TORCH_CHECK(q.device().is_cpu(), fn, " (CPU kernel): q must be on CPU, got ", q.device());
  const int64_t max_seqlen = max_seqlen_s.expect_int();
  const auto cu = read_cu_seqlens(fn, cu_seqlens, q, max_seqlen);
  const int64_t total = q.size(0), heads = q.size(1), d = q.size(2);
  const auto lse_dtype = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor out = at::empty({total, heads, d}, q.options());
  at::Tensor lse = at::empty({heads, total}, q.options().dtype(lse_dtype));
  if (total == 0 || heads == 0) return {out, lse};
  if (d == 0) {
    // Degenerate head_dim: softmax of all-zero scores, output is empty per token.
    lse.zero_();
    for (size_t b = 0; b + 1 < cu.size(); ++b)
      if (cu[b + 1] > cu[b]) lse.narrow(1, cu[b], cu[b + 1] - cu[b]).fill_(std::log(double(cu[b + 1] - cu[b])));
    return {out, lse};
  }
  const auto tasks = make_tasks(cu, heads);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(), "varlen_attention_fwd_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const auto qs = strided<scalar_t>(q), ks = strided<scalar_t>(k), vs = strided<scalar_t>(v);
    scalar_t* o = out.data_ptr<scalar_t>();
    acc_t* l = lse.data_ptr<acc_t>();
    const int64_t dpad = round_up(d, Vec<acc_t>::n);
    run_tasks<FwdWork<acc_t>>(
        tasks, [&] { return FwdWork<acc_t>(max_seqlen, d, dpad); },
        [&](const Task& t, FwdWork<acc_t>& w) {
          fwd_task<scalar_t, acc_t>(t, w, qs, ks, vs, heads, d, total, static_cast<acc_t>(scale), o, l, dr);
        });
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> varlen_attention_bwd_cpu(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, const at::Tensor& softmax_lse, const at::Tensor& cu_seqlens, c10::SymInt max_seqlen_s,
    double scale, double dropout_p, int64_t seed) {
  const char* fn = "varlen_attention_bwd";
  const Dropout dr = make_dropout(fn, dropout_p, seed);
  check_qkv(fn, q, k, v);
  TORCH_CHECK(q.device().is_cpu(), fn, " (CPU kernel): q must be on CPU, got ", q.device());
  TORCH_CHECK(grad_out.sizes() == q.sizes() && out.sizes() == q.sizes(), fn,
              ": grad_out and out must have q's shape ", q.sizes());
  TORCH_CHECK(grad_out.scalar_type() == q.scalar_type() && out.scalar_type() == q.scalar_type(), fn,
              ": grad_out and out must have q's dtype ", q.scalar_type());
  TORCH_CHECK(last_dim_contiguous(grad_out) && last_dim_contiguous(out), fn,
              ": grad_out and out must have a contiguous last dimension");
  const auto lse_dtype = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(softmax_lse.scalar_type() == lse_dtype && softmax_lse.dim() == 2 &&
                  softmax_lse.size(0) == q.size(1) && softmax_lse.size(1) == q.size(0),
              fn, ": softmax_lse must be (heads, total_tokens) ", lse_dtype);
  const int64_t max_seqlen = max_seqlen_s.expect_int();
  const auto cu = read_cu_seqlens(fn, cu_seqlens, q, max_seqlen);
  const int64_t total = q.size(0), heads = q.size(1), d = q.size(2);
  // Every token belongs to one sequence (cu_seqlens[-1] == total), so every row is written.
  at::Tensor dq = at::empty({total, heads, d}, q.options());
  at::Tensor dk = at::empty({total, heads, d}, q.options());
  at::Tensor dv = at::empty({total, heads, d}, q.options());
  if (total == 0 || heads == 0 || d == 0) return {dq.zero_(), dk.zero_(), dv.zero_()};
  const at::Tensor lse_c = softmax_lse.contiguous();
  const auto tasks = make_tasks(cu, heads);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(), "varlen_attention_bwd_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const auto gs = strided<scalar_t>(grad_out), qs = strided<scalar_t>(q), ks = strided<scalar_t>(k),
               vs = strided<scalar_t>(v), os = strided<scalar_t>(out);
    const acc_t* l = lse_c.data_ptr<acc_t>();
    scalar_t *a = dq.data_ptr<scalar_t>(), *b = dk.data_ptr<scalar_t>(), *c = dv.data_ptr<scalar_t>();
    const int64_t dpad = round_up(d, Vec<acc_t>::n);
    run_tasks<BwdWork<acc_t>>(
        tasks, [&] { return BwdWork<acc_t>(max_seqlen, d, dpad); },
        [&](const Task& t, BwdWork<acc_t>& w) {
          bwd_task<scalar_t, acc_t>(t, w, gs, qs, ks, vs, os, l, heads, d, total, static_cast<acc_t>(scale), a,
                                    b, c, dr);
        });
  });
  return {dq, dk, dv};
}

}  // namespace

// CPU implementations of the schemas in csrc/attention.cpp.
TORCH_LIBRARY_IMPL(xlrepro, CPU, m) {
  m.impl("varlen_attention_fwd", &varlen_attention_fwd_cpu);
  m.impl("varlen_attention_bwd", &varlen_attention_bwd_cpu);
}

}  // namespace xlrepro
