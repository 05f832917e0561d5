// The Python module of attnkit.kernels.cpu_ext (what each function computes: additive.cpp, gru.cpp, loss.cpp).
#include <torch/extension.h>

#include "common.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("additive_forward", &attnkit_cpu::additive_forward,
        "one step of additive attention: the softmax weights");
  m.def("additive_backward", &attnkit_cpu::additive_backward,
        "one step of additive attention: gradients of keys (accumulated), query and v");
  m.def("gru_forward", &attnkit_cpu::gru_forward, "one GRU cell step after its matrix products");
  m.def("gru_backward", &attnkit_cpu::gru_backward, "its backward, before the matrix products");
  m.def("cross_entropy_chunk", &attnkit_cpu::cross_entropy_chunk,
        "linear_cross_entropy's per-chunk loss and logits gradient, in place");
}
