// CPU kernels of the similarity family: one pass over the tiles of one fp32 GEMM, with the
// row-wise and the column-wise top-k merged from the same tile while it is hot.
//
// Layout of the work: for each block of block_rows rows of x and each block of block_cols rows
// of y, one tile S = x_blk . y_blk^T is computed by ATen's matmul (MKL/oneDNN, all threads) into a
// reused buffer, then the tile's rows are split over the threads (at::parallel_for). Each thread
// owns its rows' top-k lists (rows never cross threads) and keeps a private copy of the column
// top-k lists, merged at the end. A candidate only reaches the (scalar) insertion when it beats
// the current k-th best of its row or of its column; that check is a vectorised compare over 16
// values, so the merge streams each tile once. Memory: O((N + threads * M) * k) + one tile.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../similarity.h"

namespace xlrepro {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kNoIndex = std::numeric_limits<int64_t>::max();

// The order of the results: higher score first; equal scores: lower index first.
inline bool better(float a, int64_t ia, float b, int64_t ib) { return a > b || (a == b && ia < ib); }

// Insert (s, j) into the sorted list (v, ix) of length k if it belongs there.
inline void insert(float* v, int64_t* ix, int64_t k, float s, int64_t j) {
  if (!better(s, j, v[k - 1], ix[k - 1])) return;
  int64_t p = k - 1;
  while (p > 0 && better(s, j, v[p - 1], ix[p - 1])) {
    v[p] = v[p - 1];
    ix[p] = ix[p - 1];
    --p;
  }
  v[p] = s;
  ix[p] = j;
}

// Merge rows [i0, i1) of one tile (tr x tc, row-major, tile origin (r0, c0)) into the row lists
// (global, indexed by row) and, when cols, into this thread's column lists and thresholds.
// target_clones: the compare loop is compiled for AVX-512 and AVX2 and picked at load time
// (the extension is built without -march flags).
__attribute__((target_clones("avx512f", "avx2", "default")))
void merge_tile(const float* __restrict__ S, int64_t tc, int64_t i0, int64_t i1, int64_t r0, int64_t c0,
                int64_t k_rows, float* __restrict__ rv, int64_t* __restrict__ ri, bool cols, int64_t k_cols,
                float* __restrict__ cv, int64_t* __restrict__ ci, float* __restrict__ cth) {
  constexpr int64_t W = 16;
  float* th = cols ? cth + c0 : nullptr;
  for (int64_t i = i0; i < i1; ++i) {
    const float* s = S + i * tc;
    const int64_t gi = r0 + i;
    float* rvi = rv + gi * k_rows;
    int64_t* rii = ri + gi * k_rows;
    float rth = rvi[k_rows - 1];
    int64_t j = 0;
    if (cols) {
      for (; j + W <= tc; j += W) {
        int any = 0;
        for (int64_t u = 0; u < W; ++u) any |= (s[j + u] >= rth) | (s[j + u] >= th[j + u]);
        if (!any) continue;
        for (int64_t u = j; u < j + W; ++u) {
          const float x = s[u];
          if (x >= rth) {
            insert(rvi, rii, k_rows, x, c0 + u);
            rth = rvi[k_rows - 1];
          }
          if (x >= th[u]) {
            const int64_t gj = c0 + u;
            insert(cv + gj * k_cols, ci + gj * k_cols, k_cols, x, gi);
            th[u] = cv[gj * k_cols + k_cols - 1];
          }
        }
      }
      for (; j < tc; ++j) {
        const float x = s[j];
        if (x >= rth) {
          insert(rvi, rii, k_rows, x, c0 + j);
          rth = rvi[k_rows - 1];
        }
        if (x >= th[j]) {
          const int64_t gj = c0 + j;
          insert(cv + gj * k_cols, ci + gj * k_cols, k_cols, x, gi);
          th[j] = cv[gj * k_cols + k_cols - 1];
        }
      }
    } else {
      for (; j + W <= tc; j += W) {
        int any = 0;
        for (int64_t u = 0; u < W; ++u) any |= (s[j + u] >= rth);
        if (!any) continue;
        for (int64_t u = j; u < j + W; ++u) {
          if (s[u] >= rth) {
            insert(rvi, rii, k_rows, s[u], c0 + u);
            rth = rvi[k_rows - 1];
          }
        }
      }
      for (; j < tc; ++j) {
        if (s[j] >= rth) {
          insert(rvi, rii, k_rows, s[j], c0 + j);
          rth = rvi[k_rows - 1];
        }
      }
    }
  }
}

struct KnnResult {
  at::Tensor row_scores, row_idx, col_scores, col_idx;
};

// bf16_screen: x_in and y_in are bfloat16 and used as they are (no normalisation, no checks of
// values); each tile is computed by ATen's bf16 GEMM (fp32 accumulation, bf16 result) and widened
// exactly to fp32 before the merge. Otherwise the fp32 path of knn / knn_both.
KnnResult knn_core(const char* op, const at::Tensor& x_in, const at::Tensor& y_in, int64_t k_rows, int64_t k_cols,
                   bool cols, bool cosine, int64_t block_rows, int64_t block_cols, bool bf16_screen = false) {
  similarity::check_pair(op, x_in, y_in, cols ? "x" : "queries", cols ? "y" : "keys");
  TORCH_CHECK(x_in.device().is_cpu(), op, " (CPU kernel): inputs must be on CPU");
  TORCH_CHECK(block_rows >= 1 && block_cols >= 1, op, ": block sizes must be >= 1");
  const int64_t N = x_in.size(0), M = y_in.size(0), d = x_in.size(1);
  similarity::check_k(op, k_rows, M, cols ? "rows of y" : "keys");
  if (cols) similarity::check_k(op, k_cols, N, "rows of x");
  at::Tensor X, Y;
  if (bf16_screen) {
    TORCH_CHECK(x_in.scalar_type() == at::kBFloat16 && y_in.scalar_type() == at::kBFloat16, op,
                ": inputs must be bfloat16");
    X = x_in.contiguous();
    Y = y_in.contiguous();
  } else {
    double ax = 0, ay = 0;
    X = similarity::prepare(op, x_in, cosine, &ax);
    Y = similarity::prepare(op, y_in, cosine, &ay);
    similarity::check_overflow(op, ax, ay, d, cosine);
  }

  auto fopt = X.options().dtype(at::kFloat);
  auto lopt = X.options().dtype(at::kLong);
  at::Tensor rv = at::full({N, k_rows}, kNegInf, fopt);
  at::Tensor ri = at::full({N, k_rows}, kNoIndex, lopt);
  const int64_t T = cols ? std::max<int64_t>(1, at::get_num_threads()) : 1;
  at::Tensor cv, ci, cth;
  if (cols) {
    cv = at::full({T, M, k_cols}, kNegInf, fopt);
    ci = at::full({T, M, k_cols}, kNoIndex, lopt);
    cth = at::full({T, M}, kNegInf, fopt);
  }
  const int64_t br = std::min(block_rows, N), bc = std::min(block_cols, M);
  at::Tensor buf = at::empty({br * bc}, fopt);
  at::Tensor buf16 = bf16_screen ? at::empty({br * bc}, X.options()) : at::Tensor();
  float* rvp = rv.data_ptr<float>();
  int64_t* rip = ri.data_ptr<int64_t>();
  for (int64_t r0 = 0; r0 < N; r0 += br) {
    const int64_t tr = std::min(br, N - r0);
    const at::Tensor xb = X.narrow(0, r0, tr);
    for (int64_t c0 = 0; c0 < M; c0 += bc) {
      const int64_t tc = std::min(bc, M - c0);
      at::Tensor S = buf.narrow(0, 0, tr * tc).view({tr, tc});
      if (bf16_screen) {
        at::Tensor S16 = buf16.narrow(0, 0, tr * tc).view({tr, tc});
        at::mm_out(S16, xb, Y.narrow(0, c0, tc).t());
        S.copy_(S16);  // exact widening
      } else {
        // The same call, on the same tile, as the reference's `xb @ yb.T`: identical bits.
        at::mm_out(S, xb, Y.narrow(0, c0, tc).t());
      }
      const float* Sp = S.data_ptr<float>();
      at::parallel_for(0, tr, 1, [&](int64_t i0, int64_t i1) {
        const int64_t t = cols ? std::min<int64_t>(at::get_thread_num(), T - 1) : 0;
        merge_tile(Sp, tc, i0, i1, r0, c0, k_rows, rvp, rip, cols, k_cols,
                   cols ? cv.data_ptr<float>() + t * M * k_cols : nullptr,
                   cols ? ci.data_ptr<int64_t>() + t * M * k_cols : nullptr,
                   cols ? cth.data_ptr<float>() + t * M : nullptr);
      });
    }
  }
  KnnResult out{rv, ri, at::Tensor(), at::Tensor()};
  if (cols) {
    if (T == 1) {
      out.col_scores = cv[0];
      out.col_idx = ci[0];
    } else {
      // Merge the threads' column lists; the order (score, index) makes the result independent of
      // which thread saw which row.
      at::Tensor fv = at::full({M, k_cols}, kNegInf, fopt);
      at::Tensor fi = at::full({M, k_cols}, kNoIndex, lopt);
      const float* cvp = cv.data_ptr<float>();
      const int64_t* cip = ci.data_ptr<int64_t>();
      float* fvp = fv.data_ptr<float>();
      int64_t* fip = fi.data_ptr<int64_t>();
      at::parallel_for(0, M, 256, [&](int64_t j0, int64_t j1) {
        for (int64_t j = j0; j < j1; ++j)
          for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < k_cols; ++c) {
              const int64_t o = (t * M + j) * k_cols + c;
              if (cip[o] == kNoIndex) break;
              insert(fvp + j * k_cols, fip + j * k_cols, k_cols, cvp[o], cip[o]);
            }
      });
      out.col_scores = fv;
      out.col_idx = fi;
    }
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& q, const at::Tensor& keys, int64_t k, bool cosine,
                                           int64_t block_rows, int64_t block_cols) {
  KnnResult r = knn_core("knn", q, keys, k, 0, /*cols=*/false, cosine, block_rows, block_cols);
  return {r.row_scores, r.row_idx};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> knn_both_cpu(const at::Tensor& x, const at::Tensor& y,
                                                                        int64_t k_rows, int64_t k_cols, bool cosine,
                                                                        int64_t block_rows, int64_t block_cols) {
  KnnResult r = knn_core("knn_both", x, y, k_rows, k_cols, /*cols=*/true, cosine, block_rows, block_cols);
  return {r.row_scores, r.row_idx, r.col_scores, r.col_idx};
}

// Screened lists of the bf16 screen (xlrepro/ops/screen.py): k_cols = 0 means rows only (the
// column outputs are then empty).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> knn_screen_bf16_cpu(const at::Tensor& xb,
                                                                               const at::Tensor& yb, int64_t k_rows,
                                                                               int64_t k_cols, int64_t block_rows,
                                                                               int64_t block_cols) {
  TORCH_CHECK(k_cols >= 0, "knn_screen_bf16: k_cols must be >= 0");
  const bool cols = k_cols > 0;
  KnnResult r = knn_core("knn_screen_bf16", xb, yb, k_rows, k_cols, cols, false, block_rows, block_cols, true);
  if (!cols) {
    r.col_scores = at::empty({yb.size(0), 0}, r.row_scores.options());
    r.col_idx = at::empty({yb.size(0), 0}, r.row_idx.options());
  }
  return {r.row_scores, r.row_idx, r.col_scores, r.col_idx};
}

// One pass over the prepared fp32 rows for the bf16 screen: xb = bf16(x) (round to nearest even)
// and, per row, in float64: ||x||, ||xb||, ||x - xb||, max |xb| (columns 0..3 of `stats`).
std::tuple<at::Tensor, at::Tensor> bf16_split_cpu(const at::Tensor& x_in) {
  TORCH_CHECK(x_in.dim() == 2, "bf16_split: x must be 2-D, got shape ", x_in.sizes());
  TORCH_CHECK(x_in.scalar_type() == at::kFloat, "bf16_split: x must be float32, got ", x_in.scalar_type());
  const at::Tensor x = x_in.contiguous();
  const int64_t n = x.size(0), d = x.size(1);
  at::Tensor xb = at::empty({n, d}, x.options().dtype(at::kBFloat16));
  at::Tensor stats = at::empty({n, 4}, x.options().dtype(at::kDouble));
  const float* xp = x.data_ptr<float>();
  c10::BFloat16* bp = xb.data_ptr<c10::BFloat16>();
  double* sp = stats.data_ptr<double>();
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      double sx = 0, sb = 0, se = 0, mb = 0;
      for (int64_t j = 0; j < d; ++j) {
        const float v = xp[i * d + j];
        const c10::BFloat16 b(v);
        bp[i * d + j] = b;
        const double bv = static_cast<float>(b), vv = v, e = vv - bv;
        sx += vv * vv;
        sb += bv * bv;
        se += e * e;
        mb = std::max(mb, std::abs(bv));
      }
      sp[i * 4 + 0] = std::sqrt(sx);
      sp[i * 4 + 1] = std::sqrt(sb);
      sp[i * 4 + 2] = std::sqrt(se);
      sp[i * 4 + 3] = mb;
    }
  });
  return {xb, stats};
}

// Sequential float32 mean of each row (left to right, as numpy's float32 mean for k < 8).
at::Tensor row_means(const at::Tensor& s) {
  const int64_t n = s.size(0), k = s.size(1);
  at::Tensor m = at::empty({n}, s.options());
  const float* sp = s.data_ptr<float>();
  float* mp = m.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    float acc = 0.f;
    for (int64_t c = 0; c < k; ++c) acc += sp[i * k + c];
    mp[i] = acc / static_cast<float>(k);
  }
  return m;
}

inline float apply_margin(int code, float a, float b) {
  return code == 0 ? a / b : (code == 1 ? a - b : a);
}

at::Tensor side_scores(const at::Tensor& sim, const at::Tensor& idx, const at::Tensor& self_mean,
                       const at::Tensor& other_mean, int code) {
  const int64_t n = sim.size(0), k = sim.size(1), m = other_mean.size(0);
  if (n > 0) {
    TORCH_CHECK(idx.min().item<int64_t>() >= 0 && idx.max().item<int64_t>() < m,
                "margin_scores: an index is out of range [0, ", m, ")");
  }
  at::Tensor out = at::empty({n, k}, sim.options());
  const float* sp = sim.data_ptr<float>();
  const int64_t* ip = idx.data_ptr<int64_t>();
  const float* smp = self_mean.data_ptr<float>();
  const float* omp = other_mean.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, n, 1024, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t c = 0; c < k; ++c) {
        const float b = (smp[i] + omp[ip[i * k + c]]) / 2.0f;
        op[i * k + c] = apply_margin(code, sp[i * k + c], b);
      }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> margin_scores_cpu(const at::Tensor& fs_in, const at::Tensor& fi_in,
                                                     const at::Tensor& bs_in, const at::Tensor& bi_in,
                                                     c10::string_view margin) {
  similarity::check_margin_args(fs_in, fi_in, bs_in, bi_in);
  const int code = similarity::margin_code(std::string(margin));
  const at::Tensor fs = fs_in.contiguous(), fi = fi_in.contiguous(), bs = bs_in.contiguous(),
                   bi = bi_in.contiguous();
  const at::Tensor fm = row_means(fs), bm = row_means(bs);
  return {side_scores(fs, fi, fm, bm, code), side_scores(bs, bi, bm, fm, code)};
}

}  // namespace

// CPU implementations of the schemas in csrc/similarity.cpp.
TORCH_LIBRARY_IMPL(xlrepro, CPU, m) {
  m.impl("knn", &knn_cpu);
  m.impl("knn_both", &knn_both_cpu);
  m.impl("margin_scores", &margin_scores_cpu);
  m.impl("knn_screen_bf16", &knn_screen_bf16_cpu);
  m.impl("bf16_split", &bf16_split_cpu);
}

}  // namespace xlrepro
