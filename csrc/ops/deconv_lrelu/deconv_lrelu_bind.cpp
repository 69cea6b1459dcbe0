// deconv_lrelu's binding. The op is one of the two of the implicit-GEMM engine (csrc/igemm/: the
// kernels, launchers, CPU emulation, IgemmCall and its plan); this folder holds what is the op's own.
#include "common/binding.h"

namespace fastflow {

void bind_deconv_lrelu(pybind11::module_& m) {
  def_igemm_op(m, true,
               "ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU as 4 sub-pixel GEMMs into a channel slice "
               "(CPU: slow host emulation of the CUDA kernel's tiling, for tests); plan: igemm_plan(call, True)");
}

}  // namespace fastflow
