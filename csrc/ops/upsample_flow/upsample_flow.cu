// upsample_flow, CUDA: the output epilogue of the fused FlowNet2-S forward (CPU version:
// upsample_flow_cpu.cpp; reference: fastflow.reference.upsample_flow).
//
// flow2 [B, 2, h, w] (any strides, fp32/fp16/bf16) -> float32 [B, 2, 4h, 4w], flow2 * div_flow
// upsampled bilinearly (align_corners=False). One thread per 4 outputs of a row (one float4
// store); the input (1/16 of the output) stays in L1/L2, so the kernel is bound by its writes.
#include "common/cuda_common.cuh"
#include "ops/upsample_flow/upsample_flow.h"
#include "ops/upsample_flow/upsample_flow_math.h"

namespace fastflow {

namespace {

constexpr int kUpThreads = 256;

template <typename InT>
__global__ void __launch_bounds__(kUpThreads)
upsample_flow_kernel(const InT* __restrict__ in /* [B, 2, h, w] strided */, int64_t s0, int64_t s1, int64_t s2,
                     int64_t s3, int h, int w, float div_flow, float* __restrict__ out /* [B, 2, 4h, 4w] */) {
  const int quads = 4 * h * w;  // per plane: H * W / 4
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= quads) return;
  const int bc = blockIdx.y;
  const int y = q / w;          // output row (W / 4 = w quads per row)
  const int m = q - y * w;      // input column the quad sits on
  const InT* plane = in + (bc >> 1) * s0 + (bc & 1) * s1;
  const UpTap ty = up4_tap(y, h);
  const InT* r0 = plane + ty.i0 * s2;
  const InT* r1 = plane + ty.i1 * s2;
  float v[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const UpTap tx = up4_tap(4 * m + k, w);
    const float top = (1.f - tx.l1) * load_f(r0 + tx.i0 * s3) + tx.l1 * load_f(r0 + tx.i1 * s3);
    const float bot = (1.f - tx.l1) * load_f(r1 + tx.i0 * s3) + tx.l1 * load_f(r1 + tx.i1 * s3);
    v[k] = div_flow * ((1.f - ty.l1) * top + ty.l1 * bot);
  }
  reinterpret_cast<float4*>(out + int64_t(bc) * 4 * quads)[q] = make_float4(v[0], v[1], v[2], v[3]);
}

}  // namespace

void upsample_flow_cuda(const UpsampleFlowParams& p, int device, int64_t stream) {
  const char* op = "upsample_flow";
  if (p.B == 0 || p.h == 0 || p.w == 0) return;
  cudaStream_t st = prepare_launch(device, stream, op);
  FF_CHECK(p.B * 2 <= 65535, op, "batch ", p.B, " exceeds the grid limit of 32767");
  FF_CHECK(4 * p.h * p.w < (int64_t(1) << 31), op, "flow too large for 32-bit indexing");
  FF_CHECK((reinterpret_cast<uintptr_t>(p.out) & 15u) == 0, op, "output must be 16-byte aligned");
  const dim3 grid(ceil_div(4 * p.h * p.w, kUpThreads), unsigned(p.B * 2));
  FF_DISPATCH_CUDA(p.in_dtype, T, op,
                   FF_LAUNCH(upsample_flow_kernel<T>, grid, kUpThreads, 0, st, static_cast<const T*>(p.in),
                             p.in_stride[0], p.in_stride[1], p.in_stride[2], p.in_stride[3], int(p.h), int(p.w),
                             p.div_flow, p.out));
  launch_check(op);
}

}  // namespace fastflow
