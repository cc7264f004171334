// Device-independent parts of the similarity family: argument checks and the input preparation
// (float32 conversion, finiteness/overflow checks, fused L2 normalisation). Written with ATen
// ops that match xlrepro/ops/similarity.py's reference op for op, so both produce the same bits.
#pragma once
#include <ATen/ATen.h>

#include <cfloat>
#include <string>

namespace xlrepro {
namespace similarity {

inline void check_pair(const char* op, const at::Tensor& x, const at::Tensor& y, const char* xn,
                       const char* yn) {
  TORCH_CHECK(x.dim() == 2, op, ": ", xn, " must be 2-D (n, d), got shape ", x.sizes());
  TORCH_CHECK(y.dim() == 2, op, ": ", yn, " must be 2-D (m, d), got shape ", y.sizes());
  TORCH_CHECK(x.size(1) == y.size(1), op, ": embedding dims differ: ", xn, " has d=", x.size(1), ", ", yn,
              " has d=", y.size(1));
  for (const at::Tensor* t : {&x, &y}) {
    const auto st = t->scalar_type();
    TORCH_CHECK(st == at::kFloat || st == at::kBFloat16 || st == at::kHalf, op,
                ": inputs must be float32, bfloat16 or float16, got ", st);
  }
  TORCH_CHECK(x.device() == y.device(), op, ": ", xn, " on ", x.device(), " but ", yn, " on ", y.device());
  TORCH_CHECK(x.size(0) > 0 && y.size(0) > 0 && x.size(1) > 0, op, ": empty input (", xn, " ", x.sizes(),
              ", ", yn, " ", y.sizes(), ")");
}

inline void check_k(const char* op, int64_t k, int64_t pool, const char* what) {
  TORCH_CHECK(k >= 1, op, ": k must be >= 1, got ", k);
  TORCH_CHECK(k <= pool, op, ": k=", k, " exceeds the number of ", what, " (", pool, ")");
}

// float32, contiguous, finite; L2-normalised when cosine (zero rows stay zero, as
// faiss.normalize_L2 leaves them). Returns also max|value| (before normalisation) for the
// overflow check. Reference: similarity._prepare.
inline at::Tensor prepare(const char* op, const at::Tensor& t, bool cosine, double* amax_out) {
  at::Tensor f = t.to(at::kFloat).contiguous();
  TORCH_CHECK(at::isfinite(f).all().item<bool>(), op, ": inputs contain NaN or Inf");
  const double amax = f.abs().max().item<double>();
  const double d = static_cast<double>(f.size(1));
  if (cosine) {
    TORCH_CHECK(d * amax * amax < static_cast<double>(FLT_MAX), op,
                ": values too large: the squared norm could overflow float32 (max |x| = ", amax, ")");
    at::Tensor ss = at::mul(f, f).sum(1, /*keepdim=*/true);
    at::Tensor inv = at::where(ss > 0, ss.sqrt().reciprocal(), at::zeros_like(ss));
    f = at::mul(f, inv);
  }
  *amax_out = amax;
  return f;
}

inline void check_overflow(const char* op, double amax_x, double amax_y, int64_t d, bool cosine) {
  if (cosine) return;  // |cos| <= ~1
  TORCH_CHECK(static_cast<double>(d) * amax_x * amax_y < static_cast<double>(FLT_MAX), op,
              ": values too large: a dot product could overflow float32 (d * max|x| * max|y| = ",
              static_cast<double>(d) * amax_x * amax_y, ")");
}

inline int margin_code(const std::string& margin) {
  if (margin == "ratio") return 0;
  if (margin == "distance") return 1;
  if (margin == "absolute") return 2;
  TORCH_CHECK(false, "margin_scores: margin must be 'ratio', 'distance' or 'absolute', got '", margin, "'");
  return -1;
}

inline void check_margin_args(const at::Tensor& fs, const at::Tensor& fi, const at::Tensor& bs,
                              const at::Tensor& bi) {
  TORCH_CHECK(fs.dim() == 2 && bs.dim() == 2 && fs.sizes() == fi.sizes() && bs.sizes() == bi.sizes(),
              "margin_scores: fwd_sim/fwd_idx must be (N, k_f) and bwd_sim/bwd_idx (M, k_b)");
  TORCH_CHECK(fs.scalar_type() == at::kFloat && bs.scalar_type() == at::kFloat,
              "margin_scores: similarities must be float32");
  TORCH_CHECK(fi.scalar_type() == at::kLong && bi.scalar_type() == at::kLong,
              "margin_scores: indices must be int64");
  TORCH_CHECK(fs.size(1) >= 1 && bs.size(1) >= 1, "margin_scores: k must be >= 1");
  TORCH_CHECK(fs.device() == bs.device() && fs.device() == fi.device() && fs.device() == bi.device(),
              "margin_scores: all inputs must be on one device");
}

}  // namespace similarity
}  // namespace xlrepro
