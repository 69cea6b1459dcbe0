// ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU fused, NHWC, written into a channel slice of the
// next concat buffer (the decoder's deconv2..deconv5).
//
// Sub-pixel decomposition (DESIGN.md section 5): output pixel (2m + a, 2n + c) only sees input rows
// m + {0, -1} (a = 0, kernel rows 1, 3) or m + {0, +1} (a = 1, kernel rows 2, 0), columns
// likewise; so each of the 4 phases z = 2a + c is a stride-1 2x2 conv over the low-res input
// [B, h, w, Cx] - a quarter of the MACs of zero insertion and no wasted zero taps. All 4 phases run
// in one launch (blockIdx.z = split * 4 + phase) of the same implicit-GEMM kernel as the convs
// (igemm.cuh): M = B*h*w, N = Cout, K = 4*Cx, packed weight [4][Cout][2][2][Cx]. The epilogue does
// the pixel shuffle (row (z, m) -> output pixel (b, 2y + a, 2x + c) of [B, 2h, 2w, Ctot]), bias,
// LeakyReLU and the slice store; split-K (deconv5 at small batch) goes through the shared reduce.
#include "deconv_upflow.h"

#include "igemm.cuh"

namespace fastflow {

void deconv_lrelu_cuda(const IgemmParams& p, const IgemmPlan& plan, int device, int64_t stream) {
  igemm::launch_igemm<true>(p, plan, device, stream);
}

// Explicit instantiation: every deconv kernel (tile configs 0/1 x precisions).
template void igemm::launch_igemm<true>(const IgemmParams&, const IgemmPlan&, int, int64_t);

}  // namespace fastflow
