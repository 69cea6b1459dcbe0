// conv2d_lrelu and deconv_lrelu, CUDA: the one translation unit that instantiates the
// implicit-GEMM kernels (igemm.cuh, index math in igemm_math.h) for both ops.
//
// conv2d_lrelu: Conv2d + bias + LeakyReLU fused, NHWC, written into a channel slice of a concat
// buffer (the encoder and the decoder's convs). M = B*Ho*Wo output pixels, N = Cout, K = k*k*Cx with
// k ordered (ky, kx, c). The A tile is gathered straight from x [B, H, W, Cx] by cp.async in 16-byte
// chunks (8 fp16/bf16 or 4 fp32 channels of one tap; zero-filled for the padding border, rows past
// M and K past the end), the B tile from the packed weight [Cout][k][k][Cx].
//
// deconv_lrelu: ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU fused (the decoder's
// deconv2..deconv5). Sub-pixel decomposition (DESIGN.md section 5): output pixel (2m + a, 2n + c)
// only sees input rows m + {0, -1} (a = 0, kernel rows 1, 3) or m + {0, +1} (a = 1, kernel rows 2,
// 0), columns likewise; so each of the 4 phases z = 2a + c is a stride-1 2x2 conv over the low-res
// input [B, h, w, Cx] - a quarter of the MACs of zero insertion and no wasted zero taps. All 4
// phases run in one launch (blockIdx.z = split * 4 + phase): M = B*h*w, N = Cout, K = 4*Cx, packed
// weight [4][Cout][2][2][Cx]. The epilogue does the pixel shuffle (row (z, m) -> output pixel
// (b, 2y + a, 2x + c) of [B, 2h, 2w, Ctot]).
//
// Both: fp16/bf16 run mma.sync m16n8k16, fp32 m16n8k8 TF32 (when allowed) or a strict FFMA path,
// all with fp32 accumulation. The epilogue adds the bias, applies LeakyReLU (slope 1: identity) and
// stores channels [offset, offset + Cout) of out - 16-byte stores when Ctot, offset and the base
// are aligned - or, for split-K, fp32 partials reduced by a second kernel. Layout assumptions:
// Cx % 8 == 0, x and weight 16-byte aligned (checked in Python).
#include "igemm.h"

#include "igemm.cuh"

namespace fastflow {

void conv2d_lrelu_cuda(const IgemmParams& p, const IgemmPlan& plan, int device, int64_t stream) {
  igemm::launch_igemm<false>(p, plan, device, stream);
}

void deconv_lrelu_cuda(const IgemmParams& p, const IgemmPlan& plan, int device, int64_t stream) {
  igemm::launch_igemm<true>(p, plan, device, stream);
}

// Explicit instantiation, once each: every kernel (tile configs x precisions that plan_igemm picks)
// of the convs and of the deconvs.
template void igemm::launch_igemm<false>(const IgemmParams&, const IgemmPlan&, int, int64_t);
template void igemm::launch_igemm<true>(const IgemmParams&, const IgemmPlan&, int, int64_t);

}  // namespace fastflow
