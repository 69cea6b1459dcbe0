// Host launchers of every fastflow op, CPU (csrc/cpu/<op>.cpp) and CUDA (csrc/<op>.cu; conv2d_lrelu
// and deconv_lrelu: igemm.cu, cpu/igemm.cpp).
// Pointers are raw data pointers of torch tensors; sizes and strides are in elements.
// The CUDA launchers take the device index and the cudaStream_t as an integer (torch's
// current stream) so that torch's CUDA-graph capture records our kernels.
#pragma once

#include <cstdint>

#include "common.h"
#include "igemm.h"

namespace fastflow {

// ---- input normalisation / packing --------------------------------------------------------------
// in:  float32 [B, 3, 2, H, W] with arbitrary strides `in_stride` (5 entries)
// out: [B, H, W, C] contiguous (C = 6 or 8; channels 6..7 are zero), dtype `out_dtype`
// partial (CUDA only): float32 workspace of B * 3 * kMeanSplits entries.
struct NormalizeParams {
  const float* in;
  int64_t in_stride[5];
  int64_t B, H, W;
  void* out;
  DType out_dtype;
  int C;
  float rgb_max;
};
constexpr int kMeanSplits = 64;  // exported as fastflow._C.MEAN_SPLITS (fastflow.ops reads it)
void normalize_pack_cpu(const NormalizeParams& p);
void normalize_pack_cuda(const NormalizeParams& p, float* partial, int device, int64_t stream);

// ---- final output: flow2 * div_flow, bilinear x4 (align_corners=False) --------------------------
// in:  [B, 2, h, w] with arbitrary strides, dtype in_dtype; out: float32 [B, 2, 4h, 4w] contiguous
struct UpsampleParams {
  const void* in;
  DType in_dtype;
  int64_t in_stride[4];
  int64_t B, h, w;
  float div_flow;
  float* out;
};
void upsample_flow_cpu(const UpsampleParams& p);
void upsample_flow_cuda(const UpsampleParams& p, int device, int64_t stream);

// ---- bilinear backward warp ---------------------------------------------------------------------
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

// ---- conv2d_lrelu / deconv_lrelu (implicit GEMM): igemm.h --------------------------------------

}  // namespace fastflow
