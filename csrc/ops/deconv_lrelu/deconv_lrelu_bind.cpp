// deconv_lrelu's binding. The op is one of the two of the implicit-GEMM engine (csrc/igemm/: the
// kernels, launchers, CPU emulation, IgemmCall and its plan); this folder holds what is the op's own.
#include "common/binding.h"
#include "igemm/igemm_call.h"

namespace fastflow {

void bind_deconv_lrelu(pybind11::module_& m) {
  m.def(
      "deconv_lrelu",
      [](const IgemmCall& c, const IgemmCallPlan& plan, int device, int64_t stream) {
        igemm_run(c, plan, true, device, stream);
      },
      pybind11::arg("call"), pybind11::arg("plan"), pybind11::arg("device"), pybind11::arg("stream"),
      "ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU as 4 sub-pixel GEMMs into a channel slice (CPU: slow host "
      "emulation of the CUDA kernel's tiling, for tests); plan: igemm_plan(call, True)");
}

}  // namespace fastflow
