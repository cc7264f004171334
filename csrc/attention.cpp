// Schemas of the packed-sequence (varlen) attention family.
//
// A fragment, so that the family is added without touching csrc/ops.cpp. Kernels:
// csrc/cpu/varlen_attention.cpp (CPU) and csrc/cuda/varlen_attention.cu (CUDA). Fake kernels,
// autograd and the public entry point `xlrepro.ops.varlen_attention` live in
// xlrepro/ops/attention.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(xlrepro, m) {
  // Bidirectional (encoder) softmax attention over packed sequences, FlashAttention varlen layout.
  //   q, k, v:     (total_tokens, heads, head_dim), one dtype, last dimension contiguous
  //   cu_seqlens:  (batch + 1,) int32, contiguous, same device; cu_seqlens[0] == 0,
  //                non-decreasing, cu_seqlens[-1] == total_tokens. Token t of sequence b
  //                attends to every token of sequence b and to nothing else.
  //   max_seqlen:  >= the longest sequence (sizes the kernels' work; not a truncation)
  //   scale:       softmax scale (1/sqrt(head_dim) for XLM-R)
  //   dropout_p:   dropout of the attention probabilities, in [0, 1); kept ones scaled by 1/(1-p)
  //   seed:        dropout seed; the mask is a function of (seed, head, query token, key token),
  //                so the backward, given the same seed, regenerates it (no stored mask)
  // Returns out (total_tokens, heads, head_dim), contiguous, q's dtype, and the softmax
  // log-sum-exp (heads, total_tokens) in float32 (float64 for float64 inputs), which the
  // backward uses to recompute the probabilities (the log-normaliser before dropout).
  // The CUDA kernel does not implement dropout yet (dropout_p must be 0 there).
  m.def(
      "varlen_attention_fwd(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, SymInt max_seqlen, "
      "float scale, float dropout_p=0., int seed=0) -> (Tensor out, Tensor softmax_lse)");
  // Gradients of varlen_attention_fwd's `out` with respect to q, k, v (contiguous, q's dtype).
  m.def(
      "varlen_attention_bwd(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor out, "
      "Tensor softmax_lse, Tensor cu_seqlens, SymInt max_seqlen, float scale, float dropout_p=0., "
      "int seed=0) "
      "-> (Tensor grad_q, Tensor grad_k, Tensor grad_v)");
}
