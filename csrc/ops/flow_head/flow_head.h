// Flow head op (predict_flow 3x3 conv to 2 channels + optional 2->2 flow upsample into the next
// concat buffer): parameters and launchers, CPU (flow_head_cpu.cpp) and CUDA (flow_head.cu).
// Packed weight layout and tap math: flow_head_math.h.
#pragma once

#include <cstdint>

#include "common/common.h"

namespace fastflow {

// x:      [B, h, w, C] with channel stride 1 and element strides x_stride = {batch, row, pixel};
//         C = the packed Cp (channels >= Cin are multiplied by zero weights).
// packed: float32, flow_head_packed_size(C, has_up) elements (flow_head_math.h).
// flow:   float32 [B, h, w, 2] contiguous (a channels_last (B, 2, h, w) tensor).
// out:    only with has_up: [B, 2h, 2w, Ctot] in x's dtype, channel stride 1, element strides
//         out_stride = {batch, row, pixel}; channels [out_offset, out_offset + 2) of its
//         out_channels are written.
struct FlowHeadParams {
  const void* x;
  DType dtype;
  int64_t x_stride[3];
  int64_t B, h, w, C;
  const float* packed;
  bool has_up;
  float* flow;
  void* out;
  int64_t out_stride[3];
  int64_t out_offset;
  int64_t out_channels;  // Ctot of out (the binding checks the slice fits; the kernels do not read it)
};

void flow_head_cpu(const FlowHeadParams& p);
void flow_head_cuda(const FlowHeadParams& p, int device, int64_t stream);

}  // namespace fastflow
