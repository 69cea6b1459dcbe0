// normalize_pack: parameters and launchers (CPU: normalize_pack_cpu.cpp, CUDA: normalize_pack.cu,
// binding: normalize_pack_bind.cpp; reference: fastflow.reference.normalize_pack).
// Pointers are raw data pointers of torch tensors; sizes and strides are in elements. The CUDA
// launcher takes the device index and the cudaStream_t as an integer (torch's current stream), so
// that torch's CUDA-graph capture records the kernels.
#pragma once

#include <cstdint>

#include "common/common.h"

namespace fastflow {

constexpr int kMeanSplits = 64;  // exported as fastflow._C.MEAN_SPLITS (fastflow.ops reads it)

// in:      float32 [B, 3, 2, H, W] with arbitrary strides `in_stride` (5 entries)
// out:     [B, H, W, C] contiguous (C = 6 or 8; channels 6..7 are zero), dtype `out_dtype`
// partial: CUDA only, float32 workspace of B * 3 * kMeanSplits entries (null for the CPU version)
struct NormalizePackParams {
  const float* in;
  int64_t in_stride[5];
  int64_t B, H, W;
  void* out;
  DType out_dtype;
  int C;
  float rgb_max;
  float* partial;
};
void normalize_pack_cpu(const NormalizePackParams& p);
void normalize_pack_cuda(const NormalizePackParams& p, int device, int64_t stream);

}  // namespace fastflow
