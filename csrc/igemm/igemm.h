// Host API of the implicit-GEMM ops conv2d_lrelu and deconv_lrelu (CUDA launchers: igemm.cu;
// CPU emulation: igemm_cpu.cpp); shapes and the tile plan are in igemm_math.h, the kernel
// machinery in igemm.cuh.
#pragma once

#include "igemm/igemm_math.h"

namespace fastflow {

// Conv2d(k in {1,3,5,7}, stride 1|2, padding (k-1)//2) + bias + LeakyReLU(slope) of x [B, H, W, Cx]
// into channels [offset, offset + Cout) of out [B, Ho, Wo, Ctot], on `stream` of `device`.
void conv2d_lrelu_cuda(const IgemmParams& p, const IgemmPlan& plan, int device, int64_t stream);

// ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU(slope) of x [B, h, w, Cx] into channels
// [offset, offset + Cout) of out [B, 2h, 2w, Ctot], as 4 sub-pixel phase GEMMs in one launch.
void deconv_lrelu_cuda(const IgemmParams& p, const IgemmPlan& plan, int device, int64_t stream);

// CPU: slow host emulation of the CUDA kernels' tiling (same plan, tiles, split-K and addressing),
// scalar fp32 on operands rounded to the kernel's input precision; for tests.
void igemm_emulate(const IgemmParams& p, const IgemmPlan& plan);

}  // namespace fastflow
