// One decoder step of additive (Bahdanau) attention, forward and backward, fused for CPUs.
//
// With u_bsd = sigmoid(2 (k_bsd + q_bd)) (so tanh(k + q) = 2u - 1), the energy is
// e_bs = sum_d v_d tanh(k_bsd + q_bd) = 2 v.u_bs - sum(v); the constant drops out of the
// softmax. The caller passes the doubled keys K2 = 2k once per sequence, the step's query
// q (a strided row view is fine) and 2v (forward) or 4v (backward).
//
// Forward: a_b = softmax_s(2 v.u_bs) over the unmasked s, written into `weights` (B, S).
// Backward, given a_b and d loss / d a_b (B, S):
//   g_bs    = a_bs (ga_bs - sum_s a_bs ga_bs)                d loss / d e_bs
//   gq_bd   = 4 v_d sum_s g_bs u_bsd (1 - u_bsd)             d loss / d q_bd   (written)
//   gk_bsd += g_bs u_bsd (1 - u_bsd)                         times 4 v after the last step
//   gu_bd  += sum_s g_bs (u_bsd - 1/2)                       sum over b and times 2: d / d v
// (d / d v = sum g (2u - 1). Summing g u alone, as sum_s g_bs = 0, is equal in exact
// arithmetic but cancels in float32 where u is near 1/2; centred terms, like tanh's, cut
// the error of the score vector's float32 gradient at the job's width by a third or more.)
// One pass over K2 per call, where the unfused version makes five to seven over (B, S, d)
// tensors; positions with g_bs = 0 (padding) are skipped. Batches run in parallel through
// at::parallel_for (torch's intra-op threads).

#include "common.h"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <limits>
#include <vector>

namespace attnkit_cpu {
namespace {

using at::vec::Vectorized;

void check(const at::Tensor& keys, const at::Tensor& query, const at::Tensor& score) {
  TORCH_CHECK(keys.dim() == 3 && keys.is_contiguous(), "doubled keys must be a contiguous (B, S, d)");
  TORCH_CHECK(query.dim() == 2 && query.size(0) == keys.size(0) && query.size(1) == keys.size(2)
              && query.stride(1) == 1, "query must be (B, d) with unit stride along d");
  TORCH_CHECK(score.dim() == 1 && score.size(0) == keys.size(2) && score.is_contiguous(),
              "score vector must be a contiguous (d,)");
  TORCH_CHECK(query.scalar_type() == keys.scalar_type() && score.scalar_type() == keys.scalar_type(),
              "keys, query and score vector must share a dtype");
  TORCH_CHECK(!keys.is_cuda(), "CPU tensors only");
}

template <typename T>
void forward_impl(const at::Tensor& keys, const at::Tensor& query, const at::Tensor& score,
                  const at::Tensor& mask, at::Tensor& weights) {
  using Vec = Vectorized<T>;
  const int64_t B = keys.size(0), S = keys.size(1), D = keys.size(2);
  const int64_t q_stride = query.stride(0), w_stride = weights.stride(0);
  const T* k_ptr = keys.data_ptr<T>();
  const T* q_ptr = query.data_ptr<T>();
  const T* v_ptr = score.data_ptr<T>();
  const bool* m_ptr = mask.data_ptr<bool>();
  T* w_ptr = weights.data_ptr<T>();
  const int64_t vec_end = D - D % Vec::size();
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> doubled(D);
    for (int64_t b = begin; b < end; ++b) {
      const T* q = q_ptr + b * q_stride;
      for (int64_t d = 0; d < D; ++d) doubled[d] = q[d] * T(2);
      T* w = w_ptr + b * w_stride;
      T top = -std::numeric_limits<T>::infinity();
      for (int64_t s = 0; s < S; ++s) {
        if (!m_ptr[b * S + s]) {
          w[s] = -std::numeric_limits<T>::infinity();
          continue;
        }
        const T* k = k_ptr + (b * S + s) * D;
        Vec acc(T(0));
        int64_t d = 0;
        for (; d < vec_end; d += Vec::size()) {
          const Vec u = sigmoid(Vec::loadu(k + d) + Vec::loadu(doubled.data() + d));
          acc = at::vec::fmadd(u, Vec::loadu(v_ptr + d), acc);
        }
        T e = at::vec::vec_reduce_all<T>([](Vec& x, Vec& y) { return x + y; }, acc);
        for (; d < D; ++d) e += v_ptr[d] * sigmoid(k[d] + doubled[d]);
        w[s] = e;
        top = e > top ? e : top;
      }
      T total = 0;
      for (int64_t s = 0; s < S; ++s) {
        w[s] = std::exp(w[s] - top);  // masked: exp(-inf) = 0
        total += w[s];
      }
      const T inverse = T(1) / total;
      for (int64_t s = 0; s < S; ++s) w[s] *= inverse;
    }
  });
}

template <typename T>
void backward_impl(const at::Tensor& keys, const at::Tensor& query, const at::Tensor& score,
                   const at::Tensor& weights, const at::Tensor& grad_weights,
                   at::Tensor& grad_keys, at::Tensor& grad_query, at::Tensor& grad_rows) {
  using Vec = Vectorized<T>;
  const int64_t B = keys.size(0), S = keys.size(1), D = keys.size(2);
  const int64_t q_stride = query.stride(0), gq_stride = grad_query.stride(0);
  const int64_t w_stride = weights.stride(0), gw_stride = grad_weights.stride(0);
  const T* k_ptr = keys.data_ptr<T>();
  const T* q_ptr = query.data_ptr<T>();
  const T* v_ptr = score.data_ptr<T>();
  const T* a_ptr = weights.data_ptr<T>();
  const T* ga_ptr = grad_weights.data_ptr<T>();
  T* gk_ptr = grad_keys.data_ptr<T>();
  T* gq_ptr = grad_query.data_ptr<T>();
  T* gu_ptr = grad_rows.data_ptr<T>();
  const int64_t vec_end = D - D % Vec::size();
  const Vec half(T(0.5));
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> doubled(D), slope_sum(D);
    for (int64_t b = begin; b < end; ++b) {
      const T* q = q_ptr + b * q_stride;
      const T* a = a_ptr + b * w_stride;
      const T* ga = ga_ptr + b * gw_stride;
      T* gu = gu_ptr + b * D;
      for (int64_t d = 0; d < D; ++d) {
        doubled[d] = q[d] * T(2);
        slope_sum[d] = T(0);
      }
      T dot = 0;
      for (int64_t s = 0; s < S; ++s) dot += a[s] * ga[s];
      for (int64_t s = 0; s < S; ++s) {
        const T g = a[s] * (ga[s] - dot);
        if (g == T(0)) continue;  // padding (a = 0) contributes nothing
        const Vec gv(g);
        const T* k = k_ptr + (b * S + s) * D;
        T* gk = gk_ptr + (b * S + s) * D;
        int64_t d = 0;
        for (; d < vec_end; d += Vec::size()) {
          const Vec u = sigmoid(Vec::loadu(k + d) + Vec::loadu(doubled.data() + d));
          const Vec gw = gv * (u - u * u);
          at::vec::fmadd(gv, u - half, Vec::loadu(gu + d)).store(gu + d);
          (Vec::loadu(slope_sum.data() + d) + gw).store(slope_sum.data() + d);
          (Vec::loadu(gk + d) + gw).store(gk + d);
        }
        for (; d < D; ++d) {
          const T u = sigmoid(k[d] + doubled[d]);
          const T gw = g * (u - u * u);
          gu[d] += g * (u - T(0.5));
          slope_sum[d] += gw;
          gk[d] += gw;
        }
      }
      T* gq = gq_ptr + b * gq_stride;
      for (int64_t d = 0; d < D; ++d) gq[d] = v_ptr[d] * slope_sum[d];
    }
  });
}

}  // namespace

// weights (B, S) <- softmax over the unmasked s of 2 v . sigmoid(K2 + 2 q); pass 2v as score
void additive_forward(const at::Tensor& doubled_keys, const at::Tensor& query,
                      const at::Tensor& doubled_score, const at::Tensor& mask,
                      at::Tensor weights) {
  check(doubled_keys, query, doubled_score);
  TORCH_CHECK(mask.scalar_type() == at::kBool && mask.is_contiguous()
              && mask.sizes() == doubled_keys.sizes().slice(0, 2), "mask must be a contiguous bool (B, S)");
  TORCH_CHECK(weights.scalar_type() == doubled_keys.scalar_type() && weights.dim() == 2
              && weights.sizes() == mask.sizes() && weights.stride(1) == 1,
              "weights must be (B, S) with unit stride along S");
  AT_DISPATCH_FLOATING_TYPES(doubled_keys.scalar_type(), "additive_forward", [&] {
    forward_impl<scalar_t>(doubled_keys, query, doubled_score, mask, weights);
  });
}

// grad_keys += g u (1 - u); grad_query <- 4 v . sum_s g u (1 - u) (pass 4v as score);
// grad_rows += sum_s g (u - 1/2)
void additive_backward(const at::Tensor& doubled_keys, const at::Tensor& query,
                       const at::Tensor& quadrupled_score, const at::Tensor& weights,
                       const at::Tensor& grad_weights, at::Tensor grad_keys,
                       at::Tensor grad_query, at::Tensor grad_rows) {
  check(doubled_keys, query, quadrupled_score);
  const auto bs = doubled_keys.sizes().slice(0, 2);
  for (const auto* t : {&weights, &grad_weights}) {
    TORCH_CHECK(t->scalar_type() == doubled_keys.scalar_type() && t->dim() == 2 && t->sizes() == bs
                && t->stride(1) == 1, "weights and their gradient must be (B, S) with unit stride along S");
  }
  TORCH_CHECK(grad_keys.sizes() == doubled_keys.sizes() && grad_keys.is_contiguous()
              && grad_keys.scalar_type() == doubled_keys.scalar_type(),
              "grad_keys must be a contiguous tensor like the keys");
  TORCH_CHECK(grad_query.sizes() == query.sizes() && grad_query.stride(1) == 1
              && grad_query.scalar_type() == doubled_keys.scalar_type(),
              "grad_query must be (B, d) with unit stride along d");
  TORCH_CHECK(grad_rows.sizes() == query.sizes() && grad_rows.is_contiguous()
              && grad_rows.scalar_type() == doubled_keys.scalar_type(),
              "grad_rows must be a contiguous (B, d)");
  AT_DISPATCH_FLOATING_TYPES(doubled_keys.scalar_type(), "additive_backward", [&] {
    backward_impl<scalar_t>(doubled_keys, query, quadrupled_score, weights, grad_weights,
                            grad_keys, grad_query, grad_rows);
  });
}

}  // namespace attnkit_cpu
