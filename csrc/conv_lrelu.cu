// Conv2d + bias + LeakyReLU fused, NHWC, written into a channel slice of a concat buffer.
//
// Implicit GEMM (igemm.cuh, index math in igemm_math.h): M = B*Ho*Wo output pixels, N = Cout,
// K = k*k*Cx with k ordered (ky, kx, c). The A tile is gathered straight from x [B, H, W, Cx] by
// cp.async in 16-byte chunks (8 fp16/bf16 or 4 fp32 channels of one tap; zero-filled for the
// padding border, rows past M and K past the end), the B tile from the packed weight
// [Cout][k][k][Cx]. fp16/bf16 run mma.sync m16n8k16, fp32 m16n8k8 TF32 (when allowed) or a strict
// FFMA path, all with fp32 accumulation. The epilogue adds the bias, applies LeakyReLU (slope 1:
// identity) and stores channels [offset, offset + Cout) of out [B, Ho, Wo, Ctot] - 16-byte stores
// when Ctot, offset and the base are aligned - or, for split-K, fp32 partials reduced by a second
// kernel. Layout assumptions: Cx % 8 == 0, x and weight 16-byte aligned (checked in Python).
#include "conv_lrelu.h"

#include "igemm.cuh"

namespace fastflow {

void conv2d_lrelu_cuda(const IgemmParams& p, const IgemmPlan& plan, int device, int64_t stream) {
  igemm::launch_igemm<false>(p, plan, device, stream);
}

// Explicit instantiation: every conv kernel (tile configs x precisions that plan_igemm picks).
template void igemm::launch_igemm<false>(const IgemmParams&, const IgemmPlan&, int, int64_t);

}  // namespace fastflow
