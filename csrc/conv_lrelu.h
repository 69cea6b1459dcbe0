// Host API of the fused NHWC conv + bias + LeakyReLU (conv_lrelu.cu); shapes and the tile plan are
// in igemm_math.h, the kernel machinery in igemm.cuh.
#pragma once

#include "igemm_math.h"

namespace fastflow {

// Conv2d(k in {1,3,5,7}, stride 1|2, padding (k-1)//2) + bias + LeakyReLU(slope) of x [B, H, W, Cx]
// into channels [offset, offset + Cout) of out [B, Ho, Wo, Ctot], on `stream` of `device`.
void conv2d_lrelu_cuda(const IgemmParams& p, const IgemmPlan& plan, int device, int64_t stream);

}  // namespace fastflow
