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
// deconv2..deconv5). Sub-pixel decomposition (docs/design.md section 5): output pixel (2m + a, 2n + c)
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
#include "igemm/igemm.h"

#include "igemm/igemm.cuh"

namespace fastflow {
namespace igemm {

// ---- host launcher ------------------------------------------------------------------------------
// Runtime precision / tile config -> template parameters.
#define FF_IGEMM_MODE_SWITCH(MODE, K_MODE, ...)                                 \
  switch (MODE) {                                                               \
    case MathMode::kF16: { constexpr MathMode K_MODE = MathMode::kF16; __VA_ARGS__; break; }   \
    case MathMode::kBF16: { constexpr MathMode K_MODE = MathMode::kBF16; __VA_ARGS__; break; } \
    case MathMode::kTF32: { constexpr MathMode K_MODE = MathMode::kTF32; __VA_ARGS__; break; } \
    case MathMode::kF32Simt: { constexpr MathMode K_MODE = MathMode::kF32Simt; __VA_ARGS__; break; } \
  }
#define FF_IGEMM_CONFIG_SWITCH(CONFIG, K_CONFIG, ...)               \
  switch (CONFIG) {                                                 \
    case 0: { constexpr int K_CONFIG = 0; __VA_ARGS__; break; }     \
    case 1: { constexpr int K_CONFIG = 1; __VA_ARGS__; break; }     \
    default: fail(op, "unknown tile config ", CONFIG);              \
  }

template <int kConfig, MathMode kMode>
void launch_kernel(const KernelParams& kp, cudaStream_t st, const char* op) {
  using Tr = KernelTraits<kConfig, kMode>;
  const IgemmShape& s = kp.p.shape;
  if (Tr::kSmemBytes > 48 * 1024) {
    int device = 0;
    cuda_check(cudaGetDevice(&device), op, "cudaGetDevice");
    raise_smem_limit_once<igemm_kernel<kConfig, kMode>>(Tr::kSmemBytes, device, op);
  }
  const dim3 grid(ceil_div(s.M(), Tr::kBM), ceil_div(s.N(), Tr::kBN), unsigned(s.Z() * kp.splits));
  FF_LAUNCH((igemm_kernel<kConfig, kMode>), grid, Tr::kThreads, Tr::kSmemBytes, st, kp);
  launch_check(op);
}

// Which (config, mode) pairs exist: the SIMT path only with the 64x64 tile. Keeps the build to what
// plan_igemm uses.
template <int kConfig, MathMode kMode>
constexpr bool kInstantiated = kMode == MathMode::kF32Simt ? kConfig == 1 : true;

template <bool kDeconv>
void launch_igemm(const IgemmParams& p, const IgemmPlan& plan, int device, int64_t stream) {
  const char* op = kDeconv ? "deconv_lrelu" : "conv2d_lrelu";
  const IgemmShape& s = p.shape;
  FF_CHECK(s.deconv == kDeconv, op, "shape kind mismatch");
  FF_CHECK(channel_aligned(s.Cx), op, "input channels must be a multiple of ", kChannelAlign, ", got ", s.Cx);
  FF_CHECK(plan.splits == 1 || (p.workspace && p.workspace_elems >= plan.workspace_elems &&
                                reinterpret_cast<uintptr_t>(p.workspace) % 16 == 0), op,
           "split-K needs a float32 workspace of ", plan.workspace_elems, " elements");
  FF_CHECK(s.N() <= 65535 * 16 && s.Z() * plan.splits <= 65535, op, "grid too large");
  if (s.M() == 0 || s.N() == 0) return;
  cudaStream_t st = prepare_launch(device, stream, op);
  const MathMode mode = math_mode(p.dtype, p.allow_tf32);
  const int elem = p.dtype == DType::kFloat32 ? 4 : 2;
  const int vec = 16 / elem;
  KernelParams kp{};
  kp.p = p;
  kp.k_tiles = plan.k_tiles;
  kp.tiles_per_split = plan.tiles_per_split;
  kp.splits = plan.splits;
  kp.vec_out = s.Ctot % vec == 0 && s.offset % vec == 0 && reinterpret_cast<uintptr_t>(p.out) % 16 == 0;
  FF_IGEMM_MODE_SWITCH(mode, kMode, FF_IGEMM_CONFIG_SWITCH(plan.config, kConfig, {
    if constexpr (kInstantiated<kConfig, kMode>)
      launch_kernel<kConfig, kMode>(kp, st, op);
    else
      fail(op, "tile config ", kConfig, " is not built for this precision");
  }));
  if (plan.splits > 1) {
    const int64_t threads = int64_t(s.Z()) * s.M() * ((s.N() + vec - 1) / vec);
    FF_DISPATCH_CUDA(p.dtype, T, op,
                     FF_LAUNCH(splitk_reduce_kernel<T>, ceil_div(threads, kReduceThreads), kReduceThreads, 0, st, kp));
    launch_check(op);
  }
}

}  // namespace igemm

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
