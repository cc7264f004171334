// Schemas of the similarity-scoring family (retrieval: BUCC, Tatoeba, LAReQA, Mewsli-X).
//
// A FRAGMENT, so that this family adds itself without touching csrc/ops.cpp. CPU kernels are in
// csrc/cpu/similarity.cpp, CUDA kernels in csrc/cuda/similarity.cu; the PyTorch reference, fake
// kernels and the dispatch are in xlrepro/ops/similarity.py, whose docstring states the contract.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(xlrepro, m) {
  // Top-k of every row of S = queries . keys^T (cosine: both sides L2-normalised first).
  // queries (N, d), keys (M, d): float32/bfloat16/float16 (converted to float32; float32 math).
  // Returns scores (N, k) float32 and indices (N, k) int64, sorted by score descending, ties
  // broken by the lowest key index. S is computed in block_rows x block_cols tiles of one fp32
  // GEMM (the reference uses the same blocking, which makes the scores bit-identical).
  m.def("knn(Tensor queries, Tensor keys, int k, bool cosine=False, int block_rows=2048, "
        "int block_cols=2048) -> (Tensor, Tensor)");
  // Row top-k_rows AND column top-k_cols of S = x . y^T from one pass over the tiles of one GEMM.
  // Returns (row_scores (N, k_rows), row_idx, col_scores (M, k_cols), col_idx); column results
  // index rows of x. Same ordering and tie rule as knn.
  m.def("knn_both(Tensor x, Tensor y, int k_rows, int k_cols, bool cosine=False, int block_rows=2048, "
        "int block_cols=2048) -> (Tensor, Tensor, Tensor, Tensor)");
  // LASER/XTREME margin of every k-NN candidate, both directions (google-research/xtreme third_party/utils_retrieve.py):
  //   fwd_mean[i] = (sum_c fwd_sim[i, c]) / k_f, summed left to right in float32 (bwd alike);
  //   fwd_scores[i, c] = margin(fwd_sim[i, c], (fwd_mean[i] + bwd_mean[fwd_idx[i, c]]) / 2)
  //   bwd_scores[j, c] = margin(bwd_sim[j, c], (bwd_mean[j] + fwd_mean[bwd_idx[j, c]]) / 2)
  // margin: "ratio" (a / b), "distance" (a - b) or "absolute" (a). All float32.
  // The screen of the bf16 screen (xlrepro/ops/screen.py): xb (N, d), yb (M, d) bfloat16 as given
  // (already prepared and rounded). Top-k_rows of every row and top-k_cols of every column
  // (k_cols = 0: none; empty (M, 0) outputs) of the bf16 GEMM tiles xb . yb^T (fp32 accumulation,
  // bf16 results), scores widened exactly to float32; same ordering and tie rule as knn.
  m.def("knn_screen_bf16(Tensor xb, Tensor yb, int k_rows, int k_cols, int block_rows=2048, "
        "int block_cols=2048) -> (Tensor, Tensor, Tensor, Tensor)");
  // For the bf16 screen: x (n, d) float32 -> (bf16(x) rounded to nearest even, stats (n, 4) float64
  // with ||x||, ||bf16(x)||, ||x - bf16(x)||, max |bf16(x)| per row, accumulated in float64).
  m.def("bf16_split(Tensor x) -> (Tensor, Tensor)");
  m.def("margin_scores(Tensor fwd_sim, Tensor fwd_idx, Tensor bwd_sim, Tensor bwd_idx, str margin) "
        "-> (Tensor, Tensor)");
}
