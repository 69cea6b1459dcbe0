// Bilinear backward warp (docs/design.md section 6): out[b, c, i, j] = x[b, c, i + v, j + u].
//
// One thread per output pixel computes the four taps and weights once (warp_math.h, shared with
// the CPU version) and loops over channels. Threads of a warp take consecutive j, so NCHW tensors
// are read and written coalesced per channel; NHWC inputs are served by the same code through
// strides (each thread then walks contiguous channels, L1 absorbs the access pattern).
#include "common/cuda_common.cuh"
#include "ops/warp/warp.h"
#include "ops/warp/warp_math.h"

namespace fastflow {

namespace {

constexpr int kWarpThreads = 256;

template <typename T, typename FlowT>
__global__ void __launch_bounds__(kWarpThreads) warp_kernel(WarpParams p) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.B * p.H * p.W) return;
  const int64_t j = idx % p.W;
  const int64_t i = (idx / p.W) % p.H;
  const int64_t b = idx / (p.H * p.W);
  const T* __restrict__ x = static_cast<const T*>(p.x);           // [B, C, H, W] strided
  const FlowT* __restrict__ flow = static_cast<const FlowT*>(p.flow);  // [B, 2, H, W] strided
  T* __restrict__ out = static_cast<T*>(p.out);                    // [B, C, H, W] strided
  const FlowT* f = flow + b * p.flow_stride[0] + i * p.flow_stride[2] + j * p.flow_stride[3];
  const WarpTaps t = warp_taps(i, j, load_f(f), load_f(f + p.flow_stride[1]), p.H, p.W, p.zeros);
  int64_t src[4];
  for (int k = 0; k < 4; ++k) src[k] = (t.off[k] / p.W) * p.x_stride[2] + (t.off[k] % p.W) * p.x_stride[3];
  const T* xb = x + b * p.x_stride[0];
  T* ob = out + b * p.out_stride[0] + i * p.out_stride[2] + j * p.out_stride[3];
  for (int64_t c = 0; c < p.C; ++c) {
    const T* xc = xb + c * p.x_stride[1];
    const float v = warp_combine(t, load_f(xc + src[0]), load_f(xc + src[1]), load_f(xc + src[2]), load_f(xc + src[3]), p.zeros);
    store_f(ob + c * p.out_stride[1], v);
  }
  if (p.mask) store_f(static_cast<T*>(p.mask) + idx, t.inside ? 1.f : 0.f);
}

template <typename T>
void launch_warp(const WarpParams& p, cudaStream_t st) {
  FF_CHECK((p.B * p.H * p.W + kWarpThreads - 1) / kWarpThreads <= 0x7FFFFFFF, "warp", "image too large for one grid");
  const unsigned grid = ceil_div(p.B * p.H * p.W, kWarpThreads);
  FF_DISPATCH_CUDA(p.flow_dtype, F, "warp", FF_LAUNCH((warp_kernel<T, F>), grid, kWarpThreads, 0, st, p));
}

}  // namespace

void warp_cuda(const WarpParams& p, int device, int64_t stream) {
  const char* op = "warp";
  FF_CHECK(!p.mask || p.zeros, op, "a validity mask needs padding='zeros'");
  if (p.B == 0 || p.C == 0 || p.H == 0 || p.W == 0) return;
  cudaStream_t st = prepare_launch(device, stream, op);
  FF_DISPATCH_CUDA(p.x_dtype, T, op, launch_warp<T>(p, st));
  launch_check(op);
}

}  // namespace fastflow
