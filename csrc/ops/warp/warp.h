// warp: parameters and launchers of the bilinear backward warp (CPU: warp_cpu.cpp, CUDA: warp.cu,
// binding: warp_bind.cpp, tap math shared by both: warp_math.h; reference: fastflow.reference.warp).
#pragma once

#include <cstdint>

#include "common/common.h"

namespace fastflow {

// x: [B, C, H, W] (any strides, NCHW or NHWC), flow: [B, 2, H, W] (any strides),
// out: [B, C, H, W] with strides out_stride, same dtype as x; mask (zeros padding only, may be
// null): [B, 1, H, W] contiguous, dtype of x.
struct WarpParams {
  const void* x;
  DType x_dtype;
  int64_t x_stride[4];
  const void* flow;
  DType flow_dtype;
  int64_t flow_stride[4];
  int64_t B, C, H, W;
  void* out;
  int64_t out_stride[4];
  void* mask;
  bool zeros;
};
void warp_cpu(const WarpParams& p);
void warp_cuda(const WarpParams& p, int device, int64_t stream);

}  // namespace fastflow
