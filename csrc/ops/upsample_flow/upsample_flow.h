// upsample_flow: parameters and launchers (CPU: upsample_flow_cpu.cpp, CUDA: upsample_flow.cu,
// binding: upsample_flow_bind.cpp; reference: fastflow.reference.upsample_flow).
// flow2 * div_flow, bilinear x4 (align_corners=False): the output of the fused forward.
#pragma once

#include <cstdint>

#include "common/common.h"

namespace fastflow {

// in:  [B, 2, h, w] with arbitrary strides, dtype in_dtype; out: float32 [B, 2, 4h, 4w] contiguous
struct UpsampleFlowParams {
  const void* in;
  DType in_dtype;
  int64_t in_stride[4];
  int64_t B, h, w;
  float div_flow;
  float* out;
};
void upsample_flow_cpu(const UpsampleFlowParams& p);
void upsample_flow_cuda(const UpsampleFlowParams& p, int device, int64_t stream);

}  // namespace fastflow
