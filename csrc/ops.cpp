// The xlrepro operator library: schemas of the foundation ops, and the Python module stub.
//
// Schemas are declared once, here or in one csrc/<family>.cpp file per op family (with
// TORCH_LIBRARY_FRAGMENT, so that families can be added without touching this file). Kernels
// live in csrc/cpu/*.cpp and csrc/cuda/*.cu and register themselves with TORCH_LIBRARY_IMPL.
// Python reaches every op through torch.ops.xlrepro.<op>; fake (meta) kernels and autograd
// are registered in xlrepro/ops/*.py.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import xlrepro._C` only needs to run the static initialisers below; the module itself is
// empty (no pybind11 bindings: every entry point is a dispatcher op).
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "xlrepro operator library (ops under torch.ops.xlrepro)", -1,
      nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(xlrepro, m) {
  // Mean of hidden[b, l, :] over the positions l with mask[b, l] != 0.
  // hidden: (B, L, H) float32/float64/bfloat16/float16; mask: (B, L) bool or integer.
  // Rows with no unmasked position give zeros. Accumulates in float32 (float64 for float64).
  m.def("masked_mean_pool(Tensor hidden, Tensor mask) -> Tensor");
  // Gradient of masked_mean_pool: grad_hidden[b, l, :] = grad_out[b, :] * mask[b, l] / n_b.
  m.def("masked_mean_pool_backward(Tensor grad_out, Tensor mask, SymInt seq_len) -> Tensor");
}
