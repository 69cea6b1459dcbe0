// conv2d_lrelu's binding. The op is one of the two of the implicit-GEMM engine (csrc/igemm/: the
// kernels, launchers, CPU emulation, IgemmCall and its plan); this folder holds what is the op's own.
#include "common/binding.h"
#include "igemm/igemm_call.h"

namespace fastflow {

void bind_conv2d_lrelu(pybind11::module_& m) {
  m.def(
      "conv2d_lrelu",
      [](const IgemmCall& c, const IgemmCallPlan& plan, int device, int64_t stream) {
        igemm_run(c, plan, false, device, stream);
      },
      pybind11::arg("call"), pybind11::arg("plan"), pybind11::arg("device"), pybind11::arg("stream"),
      "NHWC implicit-GEMM conv + bias + LeakyReLU into a channel slice (CPU: slow host emulation of the CUDA "
      "kernel's tiling, for tests); plan: igemm_plan(call, False)");
}

}  // namespace fastflow
