// One step of a GRU cell around its matrix products (nn.GRU's equations, gate order r, z, n),
// forward and backward, over N independent rows (batch rows, or directions times batch rows).
//
// Forward, given x = W_ih u + b_ih (N, 3H), h = W_hh s + b_hh (N, >= 3H: a wider row is read
// up to 3H) and s = the previous state (N, H):
//   r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z)      written to gate_rz (N, 2H)
//   h_n                                                 written to hidden_n (N, H)
//   n = tanh(x_n + r h_n) = 2 sigmoid(2 (x_n + r h_n)) - 1      written to candidate (N, H)
//   s' = n + z (s - n), or s where keep is false        written to state (N, H)
// keep: None, or K booleans with N a multiple of K; row i uses keep[i % K] (the encoder's rows
// are direction-major, so a (B,) mask serves both directions).
//
// Backward, given g = d loss / d s' carried from later steps plus `incoming` (d loss / d s' of
// this step's output, optional), and what the forward saved; with g' = g where kept, else 0:
//   d loss / d x    = [g' (1 - z)(1 - n^2) h_n r (1 - r),  g' (s - n) z (1 - z),  g' (1 - z)(1 - n^2)]
//   d loss / d h    = the same with the last block multiplied by r     (first 3H of a wider row)
//   carried         = g' z where kept, else g: d loss / d s beyond the path through W_hh s
// Every tensor is two-dimensional with unit stride along its last dimension.

#include "common.h"

#include <ATen/Parallel.h>

namespace attnkit_cpu {
namespace {

void check_rows(const at::Tensor& t, int64_t rows, int64_t columns, at::ScalarType dtype,
                const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) >= columns && t.stride(1) == 1
              && t.scalar_type() == dtype && !t.is_cuda(), name, " must be a CPU (", rows, ", ",
              columns, ") tensor of the inputs' dtype with unit stride along its last dimension");
}

const bool* keep_pointer(const c10::optional<at::Tensor>& keep, int64_t rows, int64_t* period) {
  if (!keep.has_value() || !keep->defined()) {
    *period = 0;
    return nullptr;
  }
  TORCH_CHECK(keep->scalar_type() == at::kBool && keep->dim() == 1 && keep->is_contiguous()
              && keep->numel() > 0 && rows % keep->numel() == 0,
              "keep must be a contiguous bool vector whose length divides the number of rows");
  *period = keep->numel();
  return keep->data_ptr<bool>();
}

template <typename T>
void forward_impl(const at::Tensor& x_t, const at::Tensor& h_t, const at::Tensor& s_t,
                  const bool* keep, int64_t period, at::Tensor& rz_t, at::Tensor& hn_t,
                  at::Tensor& n_t, at::Tensor& out_t) {
  using Vec = at::vec::Vectorized<T>;
  const int64_t N = s_t.size(0), H = s_t.size(1);
  const int64_t vec_end = H - H % Vec::size();
  at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
    const Vec one(T(1)), two(T(2));
    for (int64_t i = begin; i < end; ++i) {
      const T* x = x_t.data_ptr<T>() + i * x_t.stride(0);
      const T* h = h_t.data_ptr<T>() + i * h_t.stride(0);
      const T* s = s_t.data_ptr<T>() + i * s_t.stride(0);
      T* rz = rz_t.data_ptr<T>() + i * rz_t.stride(0);
      T* hn = hn_t.data_ptr<T>() + i * hn_t.stride(0);
      T* n = n_t.data_ptr<T>() + i * n_t.stride(0);
      T* out = out_t.data_ptr<T>() + i * out_t.stride(0);
      const bool kept = keep == nullptr || keep[i % period];
      int64_t j = 0;
      for (; j < vec_end; j += Vec::size()) {
        const Vec r = sigmoid(Vec::loadu(x + j) + Vec::loadu(h + j));
        const Vec z = sigmoid(Vec::loadu(x + H + j) + Vec::loadu(h + H + j));
        const Vec h_n = Vec::loadu(h + 2 * H + j);
        const Vec c = two * sigmoid(two * at::vec::fmadd(r, h_n, Vec::loadu(x + 2 * H + j))) - one;
        const Vec previous = Vec::loadu(s + j);
        r.store(rz + j);
        z.store(rz + H + j);
        h_n.store(hn + j);
        c.store(n + j);
        (kept ? at::vec::fmadd(z, previous - c, c) : previous).store(out + j);
      }
      for (; j < H; ++j) {
        const T r = sigmoid(x[j] + h[j]), z = sigmoid(x[H + j] + h[H + j]);
        const T h_n = h[2 * H + j];
        const T c = T(2) * sigmoid(T(2) * (x[2 * H + j] + r * h_n)) - T(1);
        rz[j] = r;
        rz[H + j] = z;
        hn[j] = h_n;
        n[j] = c;
        out[j] = kept ? c + z * (s[j] - c) : s[j];
      }
    }
  });
}

template <typename T>
void backward_impl(const at::Tensor& g_t, const T* incoming_base, int64_t incoming_stride,
                   const at::Tensor& s_t, const at::Tensor& rz_t, const at::Tensor& n_t,
                   const at::Tensor& hn_t, const bool* keep, int64_t period, at::Tensor& gx_t,
                   at::Tensor& gh_t, at::Tensor& carried_t) {
  using Vec = at::vec::Vectorized<T>;
  const int64_t N = s_t.size(0), H = s_t.size(1);
  const int64_t vec_end = H - H % Vec::size();
  at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
    const Vec one(T(1));
    const Vec none(T(0));
    for (int64_t i = begin; i < end; ++i) {
      const T* g_row = g_t.data_ptr<T>() + i * g_t.stride(0);
      const T* inc = incoming_base == nullptr ? nullptr : incoming_base + i * incoming_stride;
      const T* s = s_t.data_ptr<T>() + i * s_t.stride(0);
      const T* rz = rz_t.data_ptr<T>() + i * rz_t.stride(0);
      const T* n = n_t.data_ptr<T>() + i * n_t.stride(0);
      const T* hn = hn_t.data_ptr<T>() + i * hn_t.stride(0);
      T* gx = gx_t.data_ptr<T>() + i * gx_t.stride(0);
      T* gh = gh_t.data_ptr<T>() + i * gh_t.stride(0);
      T* carried = carried_t.data_ptr<T>() + i * carried_t.stride(0);
      const bool kept = keep == nullptr || keep[i % period];
      int64_t j = 0;
      for (; j < vec_end; j += Vec::size()) {
        Vec g = Vec::loadu(g_row + j);
        if (inc != nullptr) g = g + Vec::loadu(inc + j);
        const Vec gs = kept ? g : none;
        const Vec r = Vec::loadu(rz + j), z = Vec::loadu(rz + H + j), c = Vec::loadu(n + j);
        const Vec g_n = gs * (one - z) * (one - c * c);
        const Vec g_r = g_n * Vec::loadu(hn + j) * r * (one - r);
        const Vec g_z = gs * (Vec::loadu(s + j) - c) * z * (one - z);
        g_r.store(gx + j);
        g_z.store(gx + H + j);
        g_n.store(gx + 2 * H + j);
        g_r.store(gh + j);
        g_z.store(gh + H + j);
        (g_n * r).store(gh + 2 * H + j);
        (kept ? gs * z : g).store(carried + j);
      }
      for (; j < H; ++j) {
        const T g = g_row[j] + (inc == nullptr ? T(0) : inc[j]);
        const T gs = kept ? g : T(0);
        const T r = rz[j], z = rz[H + j], c = n[j];
        const T g_n = gs * (T(1) - z) * (T(1) - c * c);
        const T g_r = g_n * hn[j] * r * (T(1) - r);
        const T g_z = gs * (s[j] - c) * z * (T(1) - z);
        gx[j] = g_r;
        gx[H + j] = g_z;
        gx[2 * H + j] = g_n;
        gh[j] = g_r;
        gh[H + j] = g_z;
        gh[2 * H + j] = g_n * r;
        carried[j] = kept ? gs * z : g;
      }
    }
  });
}

}  // namespace

void gru_forward(const at::Tensor& input_gates, const at::Tensor& hidden_gates,
                 const at::Tensor& previous, const c10::optional<at::Tensor>& keep,
                 at::Tensor gate_rz, at::Tensor hidden_n, at::Tensor candidate, at::Tensor state) {
  TORCH_CHECK(previous.dim() == 2, "previous state must be (N, H)");
  const int64_t N = previous.size(0), H = previous.size(1);
  const auto dtype = previous.scalar_type();
  check_rows(previous, N, H, dtype, "previous state");
  check_rows(input_gates, N, 3 * H, dtype, "input gates");
  check_rows(hidden_gates, N, 3 * H, dtype, "hidden gates");
  check_rows(gate_rz, N, 2 * H, dtype, "gate_rz");
  check_rows(hidden_n, N, H, dtype, "hidden_n");
  check_rows(candidate, N, H, dtype, "candidate");
  check_rows(state, N, H, dtype, "state");
  int64_t period = 0;
  const bool* kept = keep_pointer(keep, N, &period);
  AT_DISPATCH_FLOATING_TYPES(dtype, "gru_forward", [&] {
    forward_impl<scalar_t>(input_gates, hidden_gates, previous, kept, period, gate_rz, hidden_n,
                           candidate, state);
  });
}

void gru_backward(const at::Tensor& grad_state, const c10::optional<at::Tensor>& incoming,
                  const at::Tensor& previous, const at::Tensor& gate_rz,
                  const at::Tensor& candidate, const at::Tensor& hidden_n,
                  const c10::optional<at::Tensor>& keep, at::Tensor grad_input,
                  at::Tensor grad_hidden, at::Tensor carried) {
  TORCH_CHECK(previous.dim() == 2, "previous state must be (N, H)");
  const int64_t N = previous.size(0), H = previous.size(1);
  const auto dtype = previous.scalar_type();
  check_rows(grad_state, N, H, dtype, "grad_state");
  check_rows(previous, N, H, dtype, "previous state");
  check_rows(gate_rz, N, 2 * H, dtype, "gate_rz");
  check_rows(candidate, N, H, dtype, "candidate");
  check_rows(hidden_n, N, H, dtype, "hidden_n");
  check_rows(grad_input, N, 3 * H, dtype, "grad_input");
  check_rows(grad_hidden, N, 3 * H, dtype, "grad_hidden");
  check_rows(carried, N, H, dtype, "carried");
  const bool has_incoming = incoming.has_value() && incoming->defined();
  if (has_incoming) check_rows(*incoming, N, H, dtype, "incoming");
  int64_t period = 0;
  const bool* kept = keep_pointer(keep, N, &period);
  AT_DISPATCH_FLOATING_TYPES(dtype, "gru_backward", [&] {
    backward_impl<scalar_t>(grad_state,
                            has_incoming ? incoming->data_ptr<scalar_t>() : nullptr,
                            has_incoming ? incoming->stride(0) : 0, previous, gate_rz, candidate,
                            hidden_n, kept, period, grad_input, grad_hidden, carried);
  });
}

}  // namespace attnkit_cpu
