// CPU kernels of masked_mean_pool and its backward.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

namespace xlrepro {
namespace {

void check_pool_args(const at::Tensor& hidden, const at::Tensor& mask) {
  TORCH_CHECK(hidden.dim() == 3, "masked_mean_pool: hidden must be (batch, seq_len, hidden), got ",
              hidden.dim(), " dims");
  TORCH_CHECK(mask.dim() == 2, "masked_mean_pool: mask must be (batch, seq_len), got ", mask.dim(),
              " dims");
  TORCH_CHECK(mask.size(0) == hidden.size(0) && mask.size(1) == hidden.size(1),
              "masked_mean_pool: mask shape ", mask.sizes(), " does not match hidden's first two dims ",
              hidden.sizes());
  TORCH_CHECK(!mask.is_floating_point() && !mask.is_complex(),
              "masked_mean_pool: mask must be bool or integer, got ", mask.scalar_type());
  TORCH_CHECK(hidden.device() == mask.device(), "masked_mean_pool: hidden on ", hidden.device(),
              " but mask on ", mask.device());
}

// Per-row count of unmasked positions, as the op-math type.
at::Tensor row_counts(const at::Tensor& mask_bool) {
  return mask_bool.sum(1, /*keepdim=*/false, at::kLong);
}

at::Tensor masked_mean_pool_cpu(const at::Tensor& hidden_in, const at::Tensor& mask_in) {
  check_pool_args(hidden_in, mask_in);
  TORCH_CHECK(hidden_in.device().is_cpu(), "masked_mean_pool (CPU kernel): hidden must be on CPU");
  const at::Tensor hidden = hidden_in.contiguous();
  const at::Tensor mask = mask_in.ne(0).contiguous();
  const int64_t B = hidden.size(0), L = hidden.size(1), H = hidden.size(2);
  at::Tensor out = at::empty({B, H}, hidden.options());
  if (B == 0 || H == 0) return out;
  const at::Tensor counts = row_counts(mask);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, hidden.scalar_type(), "masked_mean_pool_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* h = hidden.data_ptr<scalar_t>();
    const bool* mk = mask.data_ptr<bool>();
    const int64_t* cnt = counts.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    // One task per batch row; the hidden dimension is the contiguous inner loop.
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<acc_t> acc(H);
      for (int64_t b = b0; b < b1; ++b) {
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t l = 0; l < L; ++l) {
          if (!mk[b * L + l]) continue;
          const scalar_t* row = h + (b * L + l) * H;
          for (int64_t j = 0; j < H; ++j) acc[j] += static_cast<acc_t>(row[j]);
        }
        const acc_t inv = cnt[b] > 0 ? acc_t(1) / static_cast<acc_t>(cnt[b]) : acc_t(0);
        for (int64_t j = 0; j < H; ++j) o[b * H + j] = static_cast<scalar_t>(acc[j] * inv);
      }
    });
  });
  return out;
}

at::Tensor masked_mean_pool_backward_cpu(const at::Tensor& grad_in, const at::Tensor& mask_in,
                                         c10::SymInt seq_len) {
  TORCH_CHECK(grad_in.dim() == 2, "masked_mean_pool_backward: grad_out must be (batch, hidden)");
  TORCH_CHECK(mask_in.dim() == 2 && mask_in.size(0) == grad_in.size(0) &&
                  mask_in.size(1) == seq_len.expect_int(),
              "masked_mean_pool_backward: mask must be (batch, seq_len)");
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor mask = mask_in.ne(0).contiguous();
  const int64_t B = grad.size(0), H = grad.size(1), L = seq_len.expect_int();
  at::Tensor out = at::empty({B, L, H}, grad.options());
  if (out.numel() == 0) return out;
  const at::Tensor counts = row_counts(mask);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "masked_mean_pool_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const bool* mk = mask.data_ptr<bool>();
    const int64_t* cnt = counts.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * L, 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t b = i / L;
        scalar_t* dst = o + i * H;
        if (!mk[i] || cnt[b] == 0) {
          std::fill(dst, dst + H, scalar_t(0));
          continue;
        }
        const acc_t inv = acc_t(1) / static_cast<acc_t>(cnt[b]);
        for (int64_t j = 0; j < H; ++j) dst[j] = static_cast<scalar_t>(static_cast<acc_t>(g[b * H + j]) * inv);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(xlrepro, CPU, m) {
  m.impl("masked_mean_pool", &masked_mean_pool_cpu);
  m.impl("masked_mean_pool_backward", &masked_mean_pool_backward_cpu);
}

}  // namespace xlrepro
