// What every op's binding (csrc/ops/<op>/<op>_bind.cpp, csrc/igemm/igemm_bind.cpp) shares: which
// module is being built, the CPU/CUDA dispatch macros and the "no CUDA in this build" error.
//
// The same binding sources build two modules: fastflow._C (CPU ops, plus the CUDA kernels when nvcc
// built them: FASTFLOW_WITH_CUDA) and fastflow._simt (FASTFLOW_SIMT: the CUDA kernels compiled as
// host C++ and run on the CPU by the SIMT runtime in csrc/simt/, with "device" 0 standing for it).
//
// Every op takes one params struct built by keyword (common/keyword_struct.h), `device` (-1: the
// CPU version, >= 0: the CUDA version on that device) and `stream` (torch's current stream as an
// integer). C++ exceptions map to Python: std::invalid_argument -> ValueError, std::runtime_error
// (CUDA errors) -> RuntimeError.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/common.h"

// FF_CPU(op, call): the CPU version of an op; fastflow._simt holds the CUDA kernels only (and does
// not link the CPU versions). FF_CUDA(call): the CUDA launch, absent from a build without kernels.
#if defined(FASTFLOW_SIMT)
#define FF_KERNELS 1
#define FF_CPU(OP, ...) \
  throw std::invalid_argument(std::string("fastflow.") + OP + ": fastflow._simt runs the CUDA kernels only (device 0)")
#else
#define FF_CPU(OP, ...) __VA_ARGS__
#ifdef FASTFLOW_WITH_CUDA
#define FF_KERNELS 1
#endif
#endif
#ifdef FF_KERNELS
#define FF_CUDA(...) __VA_ARGS__
#else
#define FF_CUDA(...) (void)0
#endif

// FF_RUN_OP(op, device, cpu_call, cuda_call...): the body of every op binding: "no CUDA in this
// build" for device >= 0 without kernels, then, with the GIL released, the CPU version for device
// -1 and the CUDA launch otherwise (a cpu_call with commas goes in parentheses).
#define FF_RUN_OP(OP, DEVICE, CPU_CALL, ...)     \
  do {                                          \
    ::fastflow::require_cuda(DEVICE, OP);       \
    pybind11::gil_scoped_release release_gil;   \
    if ((DEVICE) < 0) {                         \
      FF_CPU(OP, CPU_CALL);                     \
    } else {                                    \
      FF_CUDA(__VA_ARGS__);                     \
    }                                           \
  } while (0)

namespace fastflow {

// Raises RuntimeError for device >= 0 when this build has no CUDA kernels.
inline void require_cuda(int device, const char* op) {
#ifdef FF_KERNELS
  (void)device;
  (void)op;
#else
  if (device >= 0)
    throw std::runtime_error(std::string("fastflow.") + op +
                             ": this build of fastflow has no CUDA code (nvcc was not found when it was built); "
                             "reinstall with nvcc on PATH or CUDA_HOME set");
#endif
}

// The bind function of each op (defined in its folder), called by bindings.cpp.
void bind_normalize_pack(pybind11::module_& m);
void bind_upsample_flow(pybind11::module_& m);
void bind_warp(pybind11::module_& m);
void bind_flow_head(pybind11::module_& m);
void bind_igemm(pybind11::module_& m);
void bind_conv2d_lrelu(pybind11::module_& m);
void bind_deconv_lrelu(pybind11::module_& m);
void bind_ptx_probe(pybind11::module_& m);

}  // namespace fastflow
