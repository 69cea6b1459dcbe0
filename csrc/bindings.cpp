// fastflow._C: pybind11 bindings only, one m.def per op (DESIGN.md sections 1 and 4).
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

#include "flow_head.h"
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

// Shape of an implicit-GEMM call. conv: k = ksize, any stride; deconv (ConvTranspose2d k4 s2 p1):
// 2x2 taps per phase, output 2H x 2W.
IgemmShape igemm_shape(bool deconv, int64_t B, int64_t H, int64_t W, int64_t Cx, int64_t x_pixel_stride, int64_t Cout,
                       int ksize, int stride, int64_t Ctot, int64_t offset, const char* op) {
  FF_CHECK(B >= 0 && H >= 0 && W >= 0 && Cout >= 0, op, "negative size");
  FF_CHECK(Cx > 0 && channel_aligned(Cx), op, "input channels must be a positive multiple of ", kChannelAlign, ", got ", Cx);
  FF_CHECK(offset >= 0 && Ctot >= offset + Cout, op, "output slice [", offset, ", ", offset + Cout,
           ") does not fit in ", Ctot, " channels");
  IgemmShape s{};
  s.B = int(B);
  s.H = int(H);
  s.W = int(W);
  s.Cx = int(Cx);
  FF_CHECK(x_pixel_stride >= Cx && channel_aligned(x_pixel_stride), op, "input pixel stride ", x_pixel_stride,
           " must be a multiple of ", kChannelAlign, " and at least the ", Cx, " input channels");
  s.xstride = int(x_pixel_stride);
  s.Cout = int(Cout);
  s.Ctot = int(Ctot);
  s.offset = int(offset);
  s.deconv = deconv;
  if (deconv) {
    s.ksize = 2;
    s.stride = 1;
    s.pad = 0;
    s.Ho = int(H);
    s.Wo = int(W);
  } else {
    FF_CHECK(ksize >= 1 && ksize <= 7 && ksize % 2 == 1, op, "kernel size must be odd and in 1..7, got ", ksize);
    FF_CHECK(stride == 1 || stride == 2, op, "stride must be 1 or 2, got ", stride);
    s.ksize = ksize;
    s.stride = stride;
    s.pad = (ksize - 1) / 2;
    s.Ho = H > 0 ? conv_out_size(int(H), ksize, stride) : 0;
    s.Wo = W > 0 ? conv_out_size(int(W), ksize, stride) : 0;
  }
  // 32-bit GEMM indices; element offsets are 64-bit.
  // Row indices run up to M + a tile past the end inside the kernel: keep a margin below 2^31.
  FF_CHECK(int64_t(B) * s.OH() * s.OW() < (int64_t(1) << 31) - 256 && B * H * W < (int64_t(1) << 31) &&
               int64_t(s.K()) * Cout < (int64_t(1) << 31),
           op, "tensor too large for 32-bit GEMM indices");
  return s;
}

py::tuple igemm_plan(bool deconv, int64_t B, int64_t H, int64_t W, int64_t Cx, int64_t Cout, int ksize, int stride,
                     int dtype, bool allow_tf32, int num_sms, int split_k) {
  const char* op = deconv ? "deconv_lrelu" : "conv2d_lrelu";
  const IgemmShape s = igemm_shape(deconv, B, H, W, Cx, Cx, Cout, ksize, stride, Cout, 0, op);
  const IgemmPlan p = plan_igemm(s, math_mode(to_dtype(dtype, op), allow_tf32), num_sms, split_k);
  return py::make_tuple(p.config, p.bm, p.bn, p.bk, p.splits, p.workspace_elems);
}

void igemm_run(bool deconv, uintptr_t x, int64_t B, int64_t H, int64_t W, int64_t Cx, int64_t xs, uintptr_t w, int64_t Cout,
               int ksize, int stride, uintptr_t bias, uintptr_t out, int64_t Ctot, int64_t offset, float slope,
               int dtype, bool allow_tf32, uintptr_t workspace, int64_t workspace_elems, int num_sms, int split_k,
               int device, int64_t stream) {
  const char* op = deconv ? "deconv_lrelu" : "conv2d_lrelu";
  IgemmParams p{};
  p.shape = igemm_shape(deconv, B, H, W, Cx, xs, Cout, ksize, stride, Ctot, offset, op);
  p.x = reinterpret_cast<const void*>(x);
  p.w = reinterpret_cast<const void*>(w);
  p.bias = reinterpret_cast<const void*>(bias);
  p.out = reinterpret_cast<void*>(out);
  p.workspace = reinterpret_cast<float*>(workspace);
  p.workspace_elems = workspace_elems;
  p.slope = slope;
  p.dtype = to_dtype(dtype, op);
  p.allow_tf32 = allow_tf32;
  const IgemmPlan plan = plan_igemm(p.shape, math_mode(p.dtype, allow_tf32), num_sms, split_k);
  FF_CHECK(plan.splits == 1 || (workspace != 0 && workspace_elems >= plan.workspace_elems), op,
           "split-K needs a float32 workspace of ", plan.workspace_elems, " elements, got ", workspace_elems);
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
  (void)stream;
}

void conv2d_lrelu(uintptr_t x, int64_t B, int64_t H, int64_t W, int64_t Cx, int64_t xs, uintptr_t w, int64_t Cout, int ksize,
                  int stride, uintptr_t bias, uintptr_t out, int64_t Ctot, int64_t offset, float slope, int dtype,
                  bool allow_tf32, uintptr_t workspace, int64_t workspace_elems, int num_sms, int split_k, int device,
                  int64_t stream) {
  igemm_run(false, x, B, H, W, Cx, xs, w, Cout, ksize, stride, bias, out, Ctot, offset, slope, dtype, allow_tf32, workspace,
            workspace_elems, num_sms, split_k, device, stream);
}

void deconv_lrelu(uintptr_t x, int64_t B, int64_t h, int64_t w_, int64_t Cx, int64_t xs, uintptr_t w, int64_t Cout, uintptr_t bias,
                  uintptr_t out, int64_t Ctot, int64_t offset, float slope, int dtype, bool allow_tf32,
                  uintptr_t workspace, int64_t workspace_elems, int num_sms, int split_k, int device, int64_t stream) {
  igemm_run(true, x, B, h, w_, Cx, xs, w, Cout, 4, 2, bias, out, Ctot, offset, slope, dtype, allow_tf32, workspace,
            workspace_elems, num_sms, split_k, device, stream);
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
  m.def("conv2d_lrelu", &conv2d_lrelu,
        "NHWC implicit-GEMM conv + bias + LeakyReLU into a channel slice (CPU: slow host emulation of the CUDA "
        "kernel's tiling, for tests)");
  m.def("deconv_lrelu", &deconv_lrelu,
        "ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU as 4 sub-pixel GEMMs into a channel slice (CPU: slow host "
        "emulation of the CUDA kernel's tiling, for tests)");
  m.def("igemm_plan", &igemm_plan,
        "(config, bm, bn, bk, splits, workspace_elems) the conv/deconv kernels use for a shape");
  m.def("ptx_probe", &ptx_probe, "known-answer probe of one wrapped PTX instruction (csrc/ptx_probe.h)");
  m.def("build_info", &build_info, "how this extension was built");
  m.def("cuda_device_count", &cuda_device_count, "CUDA devices visible to the extension's runtime");
}
