// normalize_pack, CUDA: the input prologue of the fused FlowNet2-S forward (CPU version:
// normalize_pack_cpu.cpp; reference: fastflow.reference.normalize_pack).
//
// (B, 3, 2, H, W) float32 RGB 0..255, any strides  ->  NHWC [B, H, W, C] with channels
// (x - mean) / rgb_max of frame 0 RGB, frame 1 RGB, then zeros up to C (C = 8 lets the conv1 kernel
// load 16-byte vectors). The per-sample, per-colour mean over both frames is a two-pass
// deterministic reduction: kMeanSplits partial sums per (b, colour) written by mean_partial_kernel,
// summed again by every block of pack_kernel (64 floats, L2-resident). No atomics and no memset, so
// the pair of kernels is CUDA-graph friendly and bit-reproducible.
#include "common/cuda_common.cuh"
#include "ops/normalize_pack/normalize_pack.h"

namespace fastflow {

namespace {

constexpr int kReduceThreads = 256;
constexpr int kPackThreads = 256;

struct InView {
  const float* ptr;
  int64_t s[5];
  __device__ __forceinline__ float at(int64_t b, int c, int f, int64_t y, int64_t x) const {
    return ptr[b * s[0] + c * s[1] + f * s[2] + y * s[3] + x * s[4]];
  }
};

// grid (B * 3, kMeanSplits): block (bc, split) sums a contiguous range of the 2*H*W samples.
__global__ void __launch_bounds__(kReduceThreads)
mean_partial_kernel(InView in, int64_t H, int64_t W, float* __restrict__ partial /* [B*3, splits] */) {
  const int64_t bc = blockIdx.x;
  const int64_t b = bc / 3;
  const int c = int(bc % 3);
  const int64_t n = 2 * H * W;
  const int64_t chunk = (n + gridDim.y - 1) / gridDim.y;
  const int64_t lo = blockIdx.y * chunk;
  const int64_t hi = lo + chunk < n ? lo + chunk : n;
  float acc = 0.f;
  for (int64_t k = lo + threadIdx.x; k < hi; k += blockDim.x) {
    const int f = int(k / (H * W));
    const int64_t r = k - f * H * W;
    acc += in.at(b, c, f, r / W, r % W);
  }
  FF_SHARED_ARRAY(float, red, kReduceThreads / 32);
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x < 32) {
    acc = threadIdx.x < kReduceThreads / 32 ? red[threadIdx.x] : 0.f;
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (threadIdx.x == 0) partial[bc * gridDim.y + blockIdx.y] = acc;
  }
}

// The 8 channels of one pixel as 16-byte vectors: one uint4 for 16-bit types, two float4 for fp32.
// The output pixel (8 elements) is 16-byte aligned whenever the buffer is.
__device__ __forceinline__ void store8(float* o, const float (&v)[8]) {
  reinterpret_cast<float4*>(o)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(o)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
template <typename T16>
__device__ __forceinline__ void store8(T16* o, const float (&v)[8]) {
  T16 h[8];
#pragma unroll
  for (int k = 0; k < 8; ++k) store_f(h + k, v[k]);
  uint32_t w[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) w[k] = uint32_t(h[2 * k].bits) | (uint32_t(h[2 * k + 1].bits) << 16);
  *reinterpret_cast<uint4*>(o) = make_uint4(w[0], w[1], w[2], w[3]);
}

// One thread per output pixel: 6 strided loads; C = 8 (the CUDA model's layout) stores 16-byte
// vectors, C = 6 scalars.
template <typename OutT>
__global__ void __launch_bounds__(kPackThreads)
pack_kernel(InView in, int64_t B, int64_t H, int64_t W, int C, float inv_rgb_max,
            const float* __restrict__ partial /* [B*3, splits] */, OutT* __restrict__ out /* [B, H, W, C] */) {
  const int64_t pix = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.y;
  FF_SHARED_ARRAY(float, mean, 3);
  if (threadIdx.x < 3) {
    // Same summation order in every block, so all blocks agree on the mean bit for bit.
    const float* p = partial + (b * 3 + threadIdx.x) * kMeanSplits;
    double s = 0.0;
    for (int k = 0; k < kMeanSplits; ++k) s += p[k];
    mean[threadIdx.x] = float(s / double(2 * H * W));
  }
  __syncthreads();
  if (pix >= H * W) return;
  const int64_t y = pix / W, x = pix % W;
  float v[8];
#pragma unroll
  for (int f = 0; f < 2; ++f)
#pragma unroll
    for (int c = 0; c < 3; ++c) v[f * 3 + c] = (in.at(b, c, f, y, x) - mean[c]) * inv_rgb_max;
  v[6] = v[7] = 0.f;
  OutT* o = out + (b * H * W + pix) * C;
  if (C == 8) {
    store8(o, v);
  } else {
#pragma unroll
    for (int c = 0; c < 6; ++c) store_f(o + c, v[c]);
  }
}

}  // namespace

void normalize_pack_cuda(const NormalizePackParams& p, int device, int64_t stream) {
  const char* op = "normalize_pack";
  FF_CHECK(p.C == 6 || p.C == 8, op, "channels must be 6 or 8, got ", p.C);
  FF_CHECK(p.B <= 65535, op, "batch ", p.B, " exceeds the grid limit of 65535");
  if (p.B == 0 || p.H == 0 || p.W == 0) return;
  FF_CHECK(p.partial != nullptr, op, "the CUDA version needs a workspace");
  float* partial = p.partial;
  cudaStream_t st = prepare_launch(device, stream, op);
  InView in{p.in, {p.in_stride[0], p.in_stride[1], p.in_stride[2], p.in_stride[3], p.in_stride[4]}};
  FF_LAUNCH(mean_partial_kernel, dim3(unsigned(p.B * 3), kMeanSplits), kReduceThreads, 0, st, in, p.H, p.W, partial);
  launch_check(op);
  FF_CHECK(p.C != 8 || (reinterpret_cast<uintptr_t>(p.out) & 15u) == 0, op, "output must be 16-byte aligned");
  const dim3 grid(ceil_div(p.H * p.W, kPackThreads), unsigned(p.B));
  FF_DISPATCH_CUDA(p.out_dtype, T, op,
                   FF_LAUNCH(pack_kernel<T>, grid, kPackThreads, 0, st, in, p.B, p.H, p.W, p.C, 1.f / p.rgb_max,
                             partial, static_cast<T*>(p.out)));
  launch_check(op);
}

}  // namespace fastflow
