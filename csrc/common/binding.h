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

// FF_CPU_FN(f) / FF_CUDA_FN(f): an op's CPU version / CUDA launcher, or nullptr where this build
// does not have it (def_op then raises the message of FF_CPU / require_cuda).
#if defined(FASTFLOW_SIMT)
#define FF_CPU_FN(F) nullptr
#else
#define FF_CPU_FN(F) F
#endif
#ifdef FF_KERNELS
#define FF_CUDA_FN(F) F
#else
#define FF_CUDA_FN(F) nullptr
#endif

// Defines op `name` as Python sees it: name(params, device, stream) with its params struct P:
// `check` (may be null) validates what the struct alone cannot, then the CPU version runs for
// device -1, the CUDA launcher otherwise, with the GIL released.
template <typename P>
void def_op(pybind11::module_& m, const char* name, void (*check)(const P&), void (*cpu)(const P&),
            void (*cuda)(const P&, int, int64_t), const char* doc) {
  m.def(
      name,
      [name, check, cpu, cuda](const P& p, int device, int64_t stream) {
        if (check) check(p);
        require_cuda(device, name);
        pybind11::gil_scoped_release release_gil;
        if (device >= 0) {
          cuda(p, device, stream);  // not null: require_cuda raised for a build without kernels
        } else if (cpu) {
          cpu(p);
        } else {
          throw std::invalid_argument(std::string("fastflow.") + name +
                                      ": fastflow._simt runs the CUDA kernels only (device 0)");
        }
      },
      pybind11::arg("params"), pybind11::arg("device"), pybind11::arg("stream"), doc);
}

// Defines conv2d_lrelu (deconv false) or deconv_lrelu as name(call, plan, device, stream): an
// IgemmCall and the IgemmCallPlan igemm_plan made for it (csrc/igemm/igemm_bind.cpp).
void def_igemm_op(pybind11::module_& m, bool deconv, const char* doc);

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
