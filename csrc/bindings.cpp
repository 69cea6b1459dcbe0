// fastflow._C and fastflow._simt: the module definition (docs/design.md sections 1 and 4). Each op
// binds itself (csrc/ops/<op>/<op>_bind.cpp: its keyword-built params struct and the op; the
// implicit-GEMM engine's IgemmCall and plan in csrc/igemm/igemm_bind.cpp); this file calls those
// bind functions and adds the constants Python reads, build_info and cuda_device_count.
// common/binding.h says how one source builds both modules.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "common/binding.h"
#include "common/deconv_taps.h"
#include "igemm/igemm_math.h"
#include "ops/normalize_pack/normalize_pack.h"

#if defined(FASTFLOW_SIMT)
#define FF_MODULE_NAME _simt
namespace ffsim {
void bind_module(pybind11::module_& m);
}
#else
#define FF_MODULE_NAME _C
#ifdef FASTFLOW_WITH_CUDA
#include <cuda_runtime.h>
#endif
#endif

namespace py = pybind11;
using namespace fastflow;

namespace {

#ifndef FASTFLOW_CUDA_ARCHS
#define FASTFLOW_CUDA_ARCHS ""
#endif
#ifndef FASTFLOW_NVCC_VERSION
#define FASTFLOW_NVCC_VERSION ""
#endif

// Constants Python needs from the C++ side (so it keeps no hand-synced copies).
void bind_constants(py::module_& m) {
  py::dict codes;
  codes["float32"] = int(DType::kFloat32);
  codes["float16"] = int(DType::kFloat16);
  codes["bfloat16"] = int(DType::kBFloat16);
  m.attr("DTYPE_CODES") = codes;   // torch dtype name -> common.h DType code
  m.attr("MEAN_SPLITS") = kMeanSplits;  // normalize_pack's CUDA workspace: B * 3 * MEAN_SPLITS floats
  m.attr("CHANNEL_ALIGN") = kChannelAlign;  // igemm inputs' channel padding (igemm/igemm_math.h)
  py::list taps;  // DECONV_TAPS[a][t]: ConvTranspose2d kernel index of sub-pixel tap t at parity a
  for (int a = 0; a < 2; ++a) taps.append(py::make_tuple(subpixel_tap(a, 0).k, subpixel_tap(a, 1).k));
  m.attr("DECONV_TAPS") = py::tuple(taps);
}

py::dict build_info() {
  py::dict d;
#if defined(FASTFLOW_SIMT)
  d["cuda_compiled"] = false;
  d["cuda_runtime_version"] = py::none();
  d["cuda_ops"] = std::vector<std::string>{"normalize_pack", "upsample_flow", "warp", "flow_head", "conv2d_lrelu",
                                            "deconv_lrelu"};
#elif defined(FASTFLOW_WITH_CUDA)
  d["cuda_compiled"] = true;
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  d["cuda_runtime_version"] = std::to_string(rt / 1000) + "." + std::to_string((rt % 1000) / 10);
  d["cuda_ops"] = std::vector<std::string>{"normalize_pack", "upsample_flow", "warp", "flow_head", "conv2d_lrelu",
                                            "deconv_lrelu"};
#else
  d["cuda_compiled"] = false;
  d["cuda_runtime_version"] = py::none();
  d["cuda_ops"] = std::vector<std::string>{};
#endif
  d["cuda_archs"] = std::string(FASTFLOW_CUDA_ARCHS);
  d["nvcc_version"] = std::string(FASTFLOW_NVCC_VERSION);
  d["cpu_ops"] = std::vector<std::string>{"normalize_pack", "upsample_flow", "warp", "flow_head",
                                           "conv2d_lrelu (emulation)", "deconv_lrelu (emulation)"};
#if defined(__clang__)
  d["cxx_compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["cxx_compiler"] = std::string("gcc ") + __VERSION__;
#endif
  return d;
}

// Number of CUDA devices our runtime sees (0 without a driver; never raises).
int cuda_device_count() {
#if defined(FASTFLOW_WITH_CUDA) && !defined(FASTFLOW_SIMT)
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
#else
  return 0;
#endif
}

}  // namespace

PYBIND11_MODULE(FF_MODULE_NAME, m) {
#if defined(FASTFLOW_SIMT)
  m.doc() = "fastflow's CUDA kernels run on the CPU by the SIMT host runtime (device 0; see fastflow.ops.simt)";
  ffsim::bind_module(m);
#else
  m.doc() = "fastflow kernels (torch-free; see fastflow.ops for the Python API)";
#endif
  bind_normalize_pack(m);
  bind_upsample_flow(m);
  bind_warp(m);
  bind_flow_head(m);
  bind_igemm(m);
  bind_conv2d_lrelu(m);
  bind_deconv_lrelu(m);
  bind_ptx_probe(m);
  bind_constants(m);
  m.def("build_info", &build_info, "how this extension was built");
  m.def("cuda_device_count", &cuda_device_count, "CUDA devices visible to the extension's runtime");
}
