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

// float32: exp(-x) by Cody-Waite range reduction and a degree-7 polynomial (Cephes' expf
// coefficients), about 1 ulp like the Sleef exp ATen calls but with no special-case
// handling: the argument is clamped to [-87, 87], where the logistic function is 0 or 1 to
// float32 precision anyway. Measured on a 2-core AMD EPYC (AVX512): the additive kernels
// 1.7x faster alone, 1.3x inside rnn-attention's training step (16.2 -> 12.6 ms a step).
inline at::vec::Vectorized<float> sigmoid(const at::vec::Vectorized<float>& x) {
  using Vec = at::vec::Vectorized<float>;
  using at::vec::fmadd;
  const Vec t = at::vec::clamp(x.neg(), Vec(-87.0f), Vec(87.0f));
  const Vec n = (t * Vec(1.44269504088896341f)).round();  // t = n ln2 + r, |r| <= ln2 / 2
  Vec r = fmadd(n, Vec(-0.693359375f), t);  // ln 2 in two parts: the first is exact
  r = fmadd(n, Vec(2.12194440e-4f), r);
  Vec p = fmadd(Vec(1.9875691500e-4f), r, Vec(1.3981999507e-3f));
  p = fmadd(p, r, Vec(8.3334519073e-3f));
  p = fmadd(p, r, Vec(4.1665795894e-2f));
  p = fmadd(p, r, Vec(1.6666665459e-1f));
  p = fmadd(p, r, Vec(5.0000001201e-1f));
  p = fmadd(p, r * r, r) + Vec(1.0f);  // exp(r)
  // 2^n from the exponent bits: n + 127 in [1, 253] after the clamp
  const auto bits = (at::vec::convert_to_int_of_same_size(n) + at::vec::Vectorized<int32_t>(127))
                    << at::vec::Vectorized<int32_t>(23);
  const Vec one(1.0f);
  return one / fmadd(p, at::vec::cast<float>(bits), one);
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

void cross_entropy_chunk(at::Tensor logits, const at::Tensor& bias, const at::Tensor& targets,
                         const at::Tensor& keep, double smoothing, bool grads,
                         at::Tensor row_loss, at::Tensor grad_bias);

}  // namespace attnkit_cpu
