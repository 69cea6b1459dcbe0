// Host API of the decoder's fused transposed convolution (deconv_upflow.cu); shapes and the tile
// plan are in igemm_math.h, the kernel machinery in igemm.cuh.
#pragma once

#include "igemm_math.h"

namespace fastflow {

// ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU(slope) of x [B, h, w, Cx] into channels
// [offset, offset + Cout) of out [B, 2h, 2w, Ctot], as 4 sub-pixel phase GEMMs in one launch.
void deconv_lrelu_cuda(const IgemmParams& p, const IgemmPlan& plan, int device, int64_t stream);

}  // namespace fastflow
