// CUDA kernels of masked_mean_pool and its backward.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace xlrepro {
namespace {

// grid: (B, ceil(H / blockDim.x)); each thread owns one hidden unit of one row and walks the
// sequence. Reads along the hidden dimension are coalesced.
template <typename scalar_t>
__global__ void masked_mean_pool_kernel(const scalar_t* __restrict__ h, const bool* __restrict__ mask,
                                        const int64_t* __restrict__ counts, scalar_t* __restrict__ out,
                                        int64_t L, int64_t H) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t b = blockIdx.x;
  const int64_t j = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (j >= H) return;
  acc_t acc = 0;
  for (int64_t l = 0; l < L; ++l) {
    if (mask[b * L + l]) acc += static_cast<acc_t>(h[(b * L + l) * H + j]);
  }
  const int64_t n = counts[b];
  out[b * H + j] = static_cast<scalar_t>(n > 0 ? acc / static_cast<acc_t>(n) : acc_t(0));
}

template <typename scalar_t>
__global__ void masked_mean_pool_backward_kernel(const scalar_t* __restrict__ g, const bool* __restrict__ mask,
                                                 const int64_t* __restrict__ counts,
                                                 scalar_t* __restrict__ out, int64_t L, int64_t H) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t i = blockIdx.x;  // flattened (b, l)
  const int64_t b = i / L;
  const int64_t j = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (j >= H) return;
  const int64_t n = counts[b];
  acc_t v = 0;
  if (mask[i] && n > 0) v = static_cast<acc_t>(g[b * H + j]) / static_cast<acc_t>(n);
  out[i * H + j] = static_cast<scalar_t>(v);
}

constexpr int kThreads = 256;

at::Tensor masked_mean_pool_cuda(const at::Tensor& hidden_in, const at::Tensor& mask_in) {
  TORCH_CHECK(hidden_in.dim() == 3 && mask_in.dim() == 2 && mask_in.size(0) == hidden_in.size(0) &&
                  mask_in.size(1) == hidden_in.size(1),
              "masked_mean_pool: hidden must be (B, L, H) and mask (B, L)");
  TORCH_CHECK(hidden_in.is_cuda() && mask_in.is_cuda(), "masked_mean_pool (CUDA kernel): inputs must be on CUDA");
  TORCH_CHECK(!mask_in.is_floating_point(), "masked_mean_pool: mask must be bool or integer");
  const c10::cuda::CUDAGuard guard(hidden_in.device());
  const at::Tensor hidden = hidden_in.contiguous();
  const at::Tensor mask = mask_in.ne(0).contiguous();
  const int64_t B = hidden.size(0), L = hidden.size(1), H = hidden.size(2);
  at::Tensor out = at::empty({B, H}, hidden.options());
  if (B == 0 || H == 0) return out;
  const at::Tensor counts = mask.sum(1, false, at::kLong);
  const dim3 grid(B, (H + kThreads - 1) / kThreads);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, hidden.scalar_type(), "masked_mean_pool_cuda", [&] {
    masked_mean_pool_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        hidden.data_ptr<scalar_t>(), mask.data_ptr<bool>(), counts.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), L, H);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor masked_mean_pool_backward_cuda(const at::Tensor& grad_in, const at::Tensor& mask_in, c10::SymInt seq_len) {
  TORCH_CHECK(grad_in.dim() == 2 && mask_in.dim() == 2 && mask_in.size(0) == grad_in.size(0) &&
                  mask_in.size(1) == seq_len.expect_int(),
              "masked_mean_pool_backward: grad_out must be (B, H) and mask (B, L)");
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor mask = mask_in.ne(0).contiguous();
  const int64_t B = grad.size(0), H = grad.size(1), L = seq_len.expect_int();
  at::Tensor out = at::empty({B, L, H}, grad.options());
  if (out.numel() == 0) return out;
  const at::Tensor counts = mask.sum(1, false, at::kLong);
  const dim3 grid(B * L, (H + kThreads - 1) / kThreads);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "masked_mean_pool_backward_cuda", [&] {
    masked_mean_pool_backward_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), mask.data_ptr<bool>(), counts.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), L, H);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(xlrepro, CUDA, m) {
  m.impl("masked_mean_pool", &masked_mean_pool_cuda);
  m.impl("masked_mean_pool_backward", &masked_mean_pool_backward_cuda);
}

}  // namespace xlrepro
