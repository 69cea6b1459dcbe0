// fastflow._C: pybind11 bindings, one m.def per op (docs/design.md sections 1 and 4): argument
// marshalling, the GIL, the CPU/CUDA dispatch. Validation and planning that needs more than a
// stride count lives with the op (igemm_call.cpp for conv2d_lrelu / deconv_lrelu).
//
// Every op takes raw data pointers (tensor.data_ptr()), sizes and strides in elements, dtype codes
// (common.h DType) and `device`: -1 runs the CPU version, >= 0 the CUDA version on that device and
// on `stream` (torch.cuda.current_stream().cuda_stream). C++ exceptions map to Python:
// std::invalid_argument -> ValueError, std::runtime_error (CUDA errors) -> RuntimeError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <string>
#include <vector>

#include "deconv_taps.h"
#include "flow_head.h"
#include "igemm_call.h"
#include "keyword_struct.h"
#include "ops.h"
#include "ptx_probe.h"

// The same bindings build two modules: fastflow._C (CPU ops, plus the CUDA kernels when nvcc built
// them: FASTFLOW_WITH_CUDA) and fastflow._simt (FASTFLOW_SIMT: the CUDA kernels compiled as host
// C++ and run on the CPU by the SIMT runtime in csrc/simt/, with "device" 0 standing for it).
#if defined(FASTFLOW_SIMT)
#define FF_KERNELS 1
#define FF_MODULE_NAME _simt
namespace ffsim {
void bind_module(pybind11::module_& m);
}
// FF_CPU(op, call): the CPU version of an op; fastflow._simt holds the CUDA kernels only.
#define FF_CPU(OP, ...) \
  throw std::invalid_argument(std::string("fastflow.") + OP + ": fastflow._simt runs the CUDA kernels only (device 0)")
#else
#define FF_MODULE_NAME _C
#define FF_CPU(OP, ...) __VA_ARGS__
#ifdef FASTFLOW_WITH_CUDA
#define FF_KERNELS 1
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

template <size_t N>
std::array<int64_t, N> strides(const std::vector<int64_t>& v, const char* op, const char* what) {
  FF_CHECK(v.size() == N, op, what, " needs ", N, " strides, got ", v.size());
  std::array<int64_t, N> a{};
  for (size_t i = 0; i < N; ++i) a[i] = v[i];
  return a;
}

void require_cuda(int device, const char* op) {
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

void normalize_pack(uintptr_t in, const std::vector<int64_t>& in_stride, int64_t B, int64_t H, int64_t W,
                    uintptr_t out, int out_dtype, int channels, float rgb_max, uintptr_t partial, int device,
                    int64_t stream) {
  const char* op = "normalize_pack";
  NormalizeParams p{};
  p.in = reinterpret_cast<const float*>(in);
  const auto s = strides<5>(in_stride, op, "input");
  for (int i = 0; i < 5; ++i) p.in_stride[i] = s[i];
  p.B = B;
  p.H = H;
  p.W = W;
  p.out = reinterpret_cast<void*>(out);
  p.out_dtype = to_dtype(out_dtype, op);
  p.C = channels;
  p.rgb_max = rgb_max;
  require_cuda(device, op);
  py::gil_scoped_release release;
  if (device < 0) {
    FF_CPU(op, normalize_pack_cpu(p));
  } else {
#ifdef FF_KERNELS
    FF_CHECK(partial != 0, op, "the CUDA version needs a workspace");
    normalize_pack_cuda(p, reinterpret_cast<float*>(partial), device, stream);
#endif
  }
  (void)partial;
  (void)stream;
}

void upsample_flow(uintptr_t in, int in_dtype, const std::vector<int64_t>& in_stride, int64_t B, int64_t h, int64_t w,
                   float div_flow, uintptr_t out, int device, int64_t stream) {
  const char* op = "upsample_flow";
  UpsampleParams p{};
  p.in = reinterpret_cast<const void*>(in);
  p.in_dtype = to_dtype(in_dtype, op);
  const auto s = strides<4>(in_stride, op, "flow");
  for (int i = 0; i < 4; ++i) p.in_stride[i] = s[i];
  p.B = B;
  p.h = h;
  p.w = w;
  p.div_flow = div_flow;
  p.out = reinterpret_cast<float*>(out);
  require_cuda(device, op);
  py::gil_scoped_release release;
  if (device < 0) {
    FF_CPU(op, upsample_flow_cpu(p));
  } else {
#ifdef FF_KERNELS
    upsample_flow_cuda(p, device, stream);
#endif
  }
  (void)stream;
}

void warp(uintptr_t x, int x_dtype, const std::vector<int64_t>& x_stride, uintptr_t flow, int flow_dtype,
          const std::vector<int64_t>& flow_stride, int64_t B, int64_t C, int64_t H, int64_t W, uintptr_t out,
          const std::vector<int64_t>& out_stride, uintptr_t mask, bool zeros, int device, int64_t stream) {
  const char* op = "warp";
  WarpParams p{};
  p.x = reinterpret_cast<const void*>(x);
  p.x_dtype = to_dtype(x_dtype, op);
  p.flow = reinterpret_cast<const void*>(flow);
  p.flow_dtype = to_dtype(flow_dtype, op);
  const auto xs = strides<4>(x_stride, op, "x");
  const auto fs = strides<4>(flow_stride, op, "flow");
  const auto os = strides<4>(out_stride, op, "out");
  for (int i = 0; i < 4; ++i) {
    p.x_stride[i] = xs[i];
    p.flow_stride[i] = fs[i];
    p.out_stride[i] = os[i];
  }
  p.B = B;
  p.C = C;
  p.H = H;
  p.W = W;
  p.out = reinterpret_cast<void*>(out);
  p.mask = reinterpret_cast<void*>(mask);
  p.zeros = zeros;
  require_cuda(device, op);
  py::gil_scoped_release release;
  if (device < 0) {
    FF_CPU(op, warp_cpu(p));
  } else {
#ifdef FF_KERNELS
    warp_cuda(p, device, stream);
#endif
  }
  (void)stream;
}

void flow_head(uintptr_t x, int x_dtype, const std::vector<int64_t>& x_stride, int64_t B, int64_t C, int64_t h,
               int64_t w, uintptr_t packed, bool has_up, uintptr_t flow, uintptr_t out,
               const std::vector<int64_t>& out_stride, int64_t out_channels, int64_t out_offset, int device,
               int64_t stream) {
  const char* op = "flow_head";
  FlowHeadParams p{};
  p.x = reinterpret_cast<const void*>(x);
  p.dtype = to_dtype(x_dtype, op);
  const auto xs = strides<4>(x_stride, op, "x");
  FF_CHECK(xs[1] == 1 || C == 1, op, "x needs channel stride 1 (channels_last), got ", xs[1]);
  p.x_stride[0] = xs[0];
  p.x_stride[1] = xs[2];
  p.x_stride[2] = xs[3];
  p.B = B;
  p.C = C;
  p.h = h;
  p.w = w;
  p.packed = reinterpret_cast<const float*>(packed);
  p.has_up = has_up;
  p.flow = reinterpret_cast<float*>(flow);
  p.out = reinterpret_cast<void*>(out);
  if (has_up) {
    const auto os = strides<4>(out_stride, op, "out");
    FF_CHECK(os[1] == 1 || out_channels == 1, op, "out needs channel stride 1 (channels_last), got ", os[1]);
    FF_CHECK(out_offset >= 0 && out_offset + 2 <= out_channels, op, "channels [", out_offset, ", ", out_offset + 2,
             ") do not fit in out's ", out_channels, " channels");
    p.out_stride[0] = os[0];
    p.out_stride[1] = os[2];
    p.out_stride[2] = os[3];
    p.out_offset = out_offset;
  }
  require_cuda(device, op);
  py::gil_scoped_release release;
  if (device < 0) {
    FF_CPU(op, flow_head_cpu(p));
  } else {
#ifdef FF_KERNELS
    flow_head_cuda(p, device, stream);
#endif
  }
  (void)stream;
}

// ---- conv2d_lrelu / deconv_lrelu: one IgemmCall (named fields) validated and planned in
// igemm_call.cpp ---------------------------------------------------------------------------------
void igemm_run(const IgemmCall& c, bool deconv, int device, int64_t stream) {
  const char* op = igemm_op(deconv);
  IgemmPlan plan{};
  const IgemmParams p = igemm_params(c, deconv, plan);
  require_cuda(device, op);
  py::gil_scoped_release release;
  if (device < 0) {
    FF_CPU(op, igemm_emulate(p, plan));
  } else {
#ifdef FF_KERNELS
    if (deconv)
      deconv_lrelu_cuda(p, plan, device, stream);
    else
      conv2d_lrelu_cuda(p, plan, device, stream);
#endif
  }
  (void)p, (void)stream;
}

void conv2d_lrelu(const IgemmCall& c, int device, int64_t stream) { igemm_run(c, false, device, stream); }
void deconv_lrelu(const IgemmCall& c, int device, int64_t stream) { igemm_run(c, true, device, stream); }

void bind_igemm(py::module_& m) {
  KeywordStruct<IgemmCall>(m, "IgemmCall", "one conv2d_lrelu / deconv_lrelu call (csrc/igemm_call.h), built by keyword")
      .field("x", &IgemmCall::x, "data pointer of x")
      .field("batch", &IgemmCall::batch, "B")
      .field("height", &IgemmCall::height, "H of x")
      .field("width", &IgemmCall::width, "W of x")
      .field("channels", &IgemmCall::channels, "channels of x (a multiple of 8)")
      .field("pixel_stride", &IgemmCall::pixel_stride, "elements between neighbouring pixels of x")
      .field("weight", &IgemmCall::weight, "data pointer of the packed weight")
      .field("bias", &IgemmCall::bias, "data pointer of the bias, or 0")
      .field("out_channels", &IgemmCall::out_channels, "Cout")
      .field("ksize", &IgemmCall::ksize, "conv kernel size (ignored by deconv_lrelu: 4)")
      .field("stride", &IgemmCall::stride, "conv stride (ignored by deconv_lrelu: 2)")
      .field("out", &IgemmCall::out, "data pointer of the output buffer")
      .field("out_total_channels", &IgemmCall::out_total_channels, "channels of the output buffer")
      .field("out_offset", &IgemmCall::out_offset, "first output channel written")
      .field("slope", &IgemmCall::slope, "LeakyReLU slope (1: identity)")
      .field("dtype", &IgemmCall::dtype, "DTYPE_CODES code of every tensor")
      .field("allow_tf32", &IgemmCall::allow_tf32, "fp32 on TF32 tensor cores")
      .field("workspace", &IgemmCall::workspace, "data pointer of the float32 split-K workspace, or 0")
      .field("workspace_elems", &IgemmCall::workspace_elems, "its size in elements")
      .field("num_sms", &IgemmCall::num_sms, "multiprocessors the plan fills")
      .field("split_k", &IgemmCall::split_k, "> 0 forces that many K splits; 0: the plan's choice")
      .done();
  py::class_<IgemmPlan>(m, "IgemmPlan", "the tile plan of an IgemmCall (igemm_math.h)", py::module_local())
      .def_readonly("config", &IgemmPlan::config)
      .def_readonly("bm", &IgemmPlan::bm)
      .def_readonly("bn", &IgemmPlan::bn)
      .def_readonly("bk", &IgemmPlan::bk)
      .def_readonly("k_tiles", &IgemmPlan::k_tiles)
      .def_readonly("splits", &IgemmPlan::splits)
      .def_readonly("tiles_per_split", &IgemmPlan::tiles_per_split)
      .def_readonly("workspace_elems", &IgemmPlan::workspace_elems)
      .def("__repr__", [](const IgemmPlan& p) {
        return "IgemmPlan(config=" + std::to_string(p.config) + ", bm=" + std::to_string(p.bm) + ", bn=" +
               std::to_string(p.bn) + ", bk=" + std::to_string(p.bk) + ", splits=" + std::to_string(p.splits) +
               ", workspace_elems=" + std::to_string(p.workspace_elems) + ")";
      });
  m.def("igemm_plan", &igemm_plan, py::arg("call"), py::arg("deconv"),
        "the IgemmPlan (tile config, K splits, workspace size) the conv/deconv kernels use for a call");
  m.def("conv2d_lrelu", &conv2d_lrelu, py::arg("call"), py::arg("device"), py::arg("stream"),
        "NHWC implicit-GEMM conv + bias + LeakyReLU into a channel slice (CPU: slow host emulation of the CUDA "
        "kernel's tiling, for tests)");
  m.def("deconv_lrelu", &deconv_lrelu, py::arg("call"), py::arg("device"), py::arg("stream"),
        "ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU as 4 sub-pixel GEMMs into a channel slice (CPU: slow host "
        "emulation of the CUDA kernel's tiling, for tests)");
}

// Constants Python needs from the C++ side (so it keeps no hand-synced copies).
void bind_constants(py::module_& m) {
  py::dict codes;
  codes["float32"] = int(DType::kFloat32);
  codes["float16"] = int(DType::kFloat16);
  codes["bfloat16"] = int(DType::kBFloat16);
  m.attr("DTYPE_CODES") = codes;   // torch dtype name -> common.h DType code
  m.attr("MEAN_SPLITS") = kMeanSplits;  // normalize_pack's CUDA workspace: B * 3 * MEAN_SPLITS floats
  m.attr("CHANNEL_ALIGN") = kChannelAlign;  // igemm inputs' channel padding (igemm_math.h)
  py::list taps;  // DECONV_TAPS[a][t]: ConvTranspose2d kernel index of sub-pixel tap t at parity a
  for (int a = 0; a < 2; ++a) taps.append(py::make_tuple(subpixel_tap(a, 0).k, subpixel_tap(a, 1).k));
  m.attr("DECONV_TAPS") = py::tuple(taps);
}

// Runs one PTX probe kernel (ptx_probe.h) on device >= 0; no CPU version.
void ptx_probe(int kind, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t out, int n, int device, int64_t stream) {
  const char* op = "ptx_probe";
  FF_CHECK(device >= 0, op, "the probes run CUDA kernels only (a GPU, or fastflow._simt)");
  FF_CHECK(kind >= 0 && kind <= int(PtxProbe::kCpAsync), op, "unknown probe kind ", kind);
  require_cuda(device, op);
  py::gil_scoped_release release;
#ifdef FF_KERNELS
  ptx_probe_cuda(kind, reinterpret_cast<const void*>(a), reinterpret_cast<const void*>(b),
                 reinterpret_cast<const void*>(c), reinterpret_cast<void*>(out), n, device, stream);
#endif
  (void)a, (void)b, (void)c, (void)out, (void)n, (void)stream;
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
  m.def("normalize_pack", &normalize_pack, "RGB pair (B,3,2,H,W) -> normalised NHWC network input");
  m.def("upsample_flow", &upsample_flow, "flow2 * div_flow, bilinear x4 -> (B,2,4h,4w) float32");
  m.def("warp", &warp, "bilinear backward warp, border (Resample2d) or zeros padding");
  m.def("flow_head", &flow_head, "predict_flow 3x3 conv -> float32 flow, + 2->2 flow upsample into a concat slice");
  bind_igemm(m);
  bind_constants(m);
  m.def("ptx_probe", &ptx_probe, "known-answer probe of one wrapped PTX instruction (csrc/ptx_probe.h)");
  m.def("build_info", &build_info, "how this extension was built");
  m.def("cuda_device_count", &cuda_device_count, "CUDA devices visible to the extension's runtime");
}
