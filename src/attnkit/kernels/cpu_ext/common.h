// Shared by attnkit's CPU kernels: the functions the Python module binds, and a vectorized
// logistic function (torch's CPU tanh is several times slower than exp, so tanh is taken
// as 2 sigmoid(2x) - 1 wherever it appears).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/Exception.h>

#include <cmath>

namespace attnkit_cpu {

template <typename T>
inline at::vec::Vectorized<T> sigmoid(const at::vec::Vectorized<T>& x) {
  const at::vec::Vectorized<T> one(T(1));
  return one / (one + x.neg().exp());
}

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

void additive_forward(const at::Tensor& doubled_keys, const at::Tensor& query,
                      const at::Tensor& doubled_score, const at::Tensor& mask, at::Tensor weights);
void additive_backward(const at::Tensor& doubled_keys, const at::Tensor& query,
                       const at::Tensor& quadrupled_score, const at::Tensor& weights,
                       const at::Tensor& grad_weights, at::Tensor grad_keys, at::Tensor grad_query,
                       at::Tensor grad_rows);
void gru_forward(const at::Tensor& input_gates, const at::Tensor& hidden_gates,
                 const at::Tensor& previous, const c10::optional<at::Tensor>& keep,
                 at::Tensor gate_rz, at::Tensor hidden_n, at::Tensor candidate, at::Tensor state);
void gru_backward(const at::Tensor& grad_state, const c10::optional<at::Tensor>& incoming,
                  const at::Tensor& previous, const at::Tensor& gate_rz,
                  const at::Tensor& candidate, const at::Tensor& hidden_n,
                  const c10::optional<at::Tensor>& keep, at::Tensor grad_input,
                  at::Tensor grad_hidden, at::Tensor carried);

void cross_entropy_chunk(at::Tensor logits, const at::Tensor& targets, const at::Tensor& keep,
                         double smoothing, bool grads, at::Tensor row_loss, at::Tensor grad_bias);

}  // namespace attnkit_cpu
