// The elementwise part of one chunk of linear_cross_entropy (attnkit/train/losses.py): what
// follows the product x W^T for C rows of a vocabulary of V, in place, one row per task. The
// bias is added here (l = x W^T + b) rather than by addmm, which copies it into every row of
// the output before the product: one pass over the chunk less.
//
// Per row, with eps the label smoothing and t the target id:
//   m = max_v l_v,  s = sum_v exp(l_v - m),  L = sum_v l_v
//   loss = m + log s - (1 - eps) l_t - (eps / V) L           (0 where the row is not kept)
// and with gradients, the row becomes d loss / d logits:
//   g_v = exp(l_v - m) / s - eps / V - (1 - eps) [v = t]      (all 0 where not kept)
// while the bias gradient accumulates sum over rows of g (per-thread sums, added at the end).
// Three passes over a row of V floats that stays in cache, where the PyTorch version makes
// about ten passes over the whole (C, V) chunk.

#include "common.h"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace attnkit_cpu {
namespace {

template <typename T>
void loss_impl(at::Tensor& logits_t, const at::Tensor& bias_t, const at::Tensor& targets_t,
               const at::Tensor& keep_t, double smoothing, bool grads, at::Tensor& loss_t,
               at::Tensor& grad_bias_t) {
  using Vec = at::vec::Vectorized<T>;
  const int64_t C = logits_t.size(0), V = logits_t.size(1);
  const int64_t vec_end = V - V % Vec::size();
  const T eps = T(smoothing), spread = T(smoothing / double(V));
  const int64_t threads = at::get_num_threads();
  std::vector<T> partial(grads ? threads * V : 0, T(0));
  T* l_ptr = logits_t.data_ptr<T>();
  const T* b = bias_t.data_ptr<T>();
  const int64_t* t_ptr = targets_t.data_ptr<int64_t>();
  const bool* k_ptr = keep_t.data_ptr<bool>();
  T* out_ptr = loss_t.data_ptr<T>();
  at::parallel_for(0, C, 8, [&](int64_t begin, int64_t end) {
    T* acc = grads ? partial.data() + at::get_thread_num() * V : nullptr;
    for (int64_t i = begin; i < end; ++i) {
      T* l = l_ptr + i * V;
      if (!k_ptr[i]) {
        out_ptr[i] = T(0);
        if (grads) std::fill(l, l + V, T(0));
        continue;
      }
      const int64_t target = t_ptr[i];
      TORCH_CHECK(target >= 0 && target < V, "targets of kept rows must lie in [0, V = ", V,
                  "), got ", target);
      const T chosen = l[target] + b[target];
      Vec top_v(-std::numeric_limits<T>::infinity()), total_v(T(0));
      int64_t v = 0;
      for (; v < vec_end; v += Vec::size()) {
        const Vec x = Vec::loadu(l + v) + Vec::loadu(b + v);
        top_v = at::vec::maximum(top_v, x);
        total_v = total_v + x;
      }
      T top = at::vec::vec_reduce_all<T>([](Vec& a, Vec& b) { return at::vec::maximum(a, b); },
                                         top_v);
      T total = at::vec::vec_reduce_all<T>([](Vec& a, Vec& b) { return a + b; }, total_v);
      for (; v < V; ++v) {
        top = std::max(top, l[v] + b[v]);
        total += l[v] + b[v];
      }
      const Vec shift(top);
      Vec sum_v(T(0));
      for (v = 0; v < vec_end; v += Vec::size()) {
        const Vec e = (Vec::loadu(l + v) + Vec::loadu(b + v) - shift).exp();
        e.store(l + v);
        sum_v = sum_v + e;
      }
      T sum = at::vec::vec_reduce_all<T>([](Vec& a, Vec& b) { return a + b; }, sum_v);
      for (; v < V; ++v) {
        l[v] = std::exp(l[v] + b[v] - top);
        sum += l[v];
      }
      out_ptr[i] = top + std::log(sum) - (T(1) - eps) * chosen - spread * total;
      if (!grads) continue;
      const Vec scale(T(1) / sum), minus(spread);
      for (v = 0; v < vec_end; v += Vec::size()) {
        const Vec g = Vec::loadu(l + v) * scale - minus;
        g.store(l + v);
        (Vec::loadu(acc + v) + g).store(acc + v);
      }
      for (; v < V; ++v) {
        l[v] = l[v] / sum - spread;
        acc[v] += l[v];
      }
      l[target] -= T(1) - eps;
      acc[target] -= T(1) - eps;
    }
  });
  if (grads) {
    T* grad_bias = grad_bias_t.data_ptr<T>();
    for (int64_t k = 0; k < threads; ++k) {
      const T* acc = partial.data() + k * V;
      for (int64_t v = 0; v < V; ++v) grad_bias[v] += acc[v];
    }
  }
}

}  // namespace

void cross_entropy_chunk(at::Tensor logits, const at::Tensor& bias, const at::Tensor& targets,
                         const at::Tensor& keep, double smoothing, bool grads,
                         at::Tensor row_loss, at::Tensor grad_bias) {
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous() && !logits.is_cuda(),
              "logits must be a contiguous CPU (C, V) tensor");
  const int64_t C = logits.size(0), V = logits.size(1);
  TORCH_CHECK(bias.scalar_type() == logits.scalar_type() && bias.dim() == 1
              && bias.size(0) == V && bias.is_contiguous(),
              "bias must be a contiguous (V,) tensor of the logits' dtype");
  TORCH_CHECK(targets.scalar_type() == at::kLong && targets.dim() == 1 && targets.size(0) == C
              && targets.is_contiguous(), "targets must be a contiguous int64 (C,)");
  TORCH_CHECK(keep.scalar_type() == at::kBool && keep.dim() == 1 && keep.size(0) == C
              && keep.is_contiguous(), "keep must be a contiguous bool (C,)");
  TORCH_CHECK(row_loss.scalar_type() == logits.scalar_type() && row_loss.dim() == 1
              && row_loss.size(0) == C && row_loss.is_contiguous(),
              "row_loss must be a contiguous (C,) tensor of the logits' dtype");
  if (grads) {
    TORCH_CHECK(grad_bias.scalar_type() == logits.scalar_type() && grad_bias.dim() == 1
                && grad_bias.size(0) == V && grad_bias.is_contiguous(),
                "grad_bias must be a contiguous (V,) tensor of the logits' dtype");
  }
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "cross_entropy_chunk", [&] {
    loss_impl<scalar_t>(logits, bias, targets, keep, smoothing, grads, row_loss, grad_bias);
  });
}

}  // namespace attnkit_cpu
