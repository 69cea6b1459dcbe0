// conv2d_lrelu's binding. The op is one of the two of the implicit-GEMM engine (csrc/igemm/: the
// kernels, launchers, CPU emulation, IgemmCall and its plan); this folder holds what is the op's own.
#include "common/binding.h"

namespace fastflow {

void bind_conv2d_lrelu(pybind11::module_& m) {
  def_igemm_op(m, false,
               "NHWC implicit-GEMM conv + bias + LeakyReLU into a channel slice (CPU: slow host emulation of "
               "the CUDA kernel's tiling, for tests); plan: igemm_plan(call, False)");
}

}  // namespace fastflow
