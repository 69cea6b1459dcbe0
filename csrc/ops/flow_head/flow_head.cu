// Flow head of FlowNet2-S (docs/design.md section 5): predict_flow = Conv2d(C, 2, k3, p1, bias) on an
// NHWC activation, fused with upsampled_flow = ConvTranspose2d(2, 2, k4, s2, p1, no bias) of that
// flow, written straight into its channel slice of the next concat buffer.
//
// Layout: x [B, h, w, C] with channel stride 1 (any batch/row/pixel strides; a channel slice of a
// wider buffer works), fp32/fp16/bf16. flow: float32 [B, h, w, 2] contiguous (flow2 feeds the
// final x4 upsample, so it is kept in fp32). out: [B, 2h, 2w, Ctot] of x's dtype, channels
// [out_offset, out_offset + 2). Packed weights: flow_head_math.h.
//
// Why SIMT and not tensor cores: N = 2 output channels. An mma tile is at least 8 wide in N, so
// 3/4 of every tensor-core instruction would multiply zeros, and the op is bound by reading x
// (9*C multiply-adds per 2*C input bytes), not by arithmetic. Plain FFMA at fp32 also gives the
// strict-fp32 result for fp32 inputs (TF32 would buy nothing here).
//
// One block = one tile of th x tw low-res pixels (runtime, 16x16 down to 2x2: the launcher takes
// the largest tile whose grid still gives every SM a block; the coarse heads are only 7x16 pixels
// at 448x1024). With an upsample the block computes the flow of the tile plus a one-pixel halo
// (the transposed conv of pixel (m, n) needs the flow of its 8 neighbours) into shared memory,
// then the 2x upsampled tile. Recomputing the halo costs (th+2)(tw+2)/(th*tw) times the flow work
// (1.27x at 16x16), the price of one kernel and no second pass over global memory.
//
// Flow phase: a warp work item is a group of kPix consecutive halo pixels and one of `splits`
// slices of the flattened reduction index k = (tap, channel chunk of kVec elements). Lanes stride
// over k; per k a lane loads the 2*kVec weights once from shared memory and reuses them for the
// kPix pixels (16-byte __ldg of x each), so shared-memory traffic per FMA drops kPix-fold. Lane
// sums are reduced by warp shuffles; the `splits` partial sums of a pixel are added in a fixed
// order (deterministic, no atomics). splits > 1 only when a small tile has fewer groups than warps.
// Alignment: the vector path (kVec = 16 bytes / element size) needs x 16-byte aligned and C and the
// strides multiples of kVec; otherwise the launcher picks kVec = 1 (same code, scalar loads).
#include <type_traits>

#include "common/cuda_common.cuh"
#include "ops/flow_head/flow_head.h"
#include "ops/flow_head/flow_head_math.h"

namespace fastflow {

namespace {

template <typename T, bool kVector>
struct FlowHeadTraits {
  static constexpr int kThreads = 256;
  static constexpr int kWarps = kThreads / 32;
  // Pixels per work item: each weight fetched from shared memory feeds kPix pixels. 8 keeps
  // 16 accumulators + 2*kVec weights + kPix pointers under ~100 registers (no spills, 2 blocks/SM).
  static constexpr int kPix = 8;
  // Two resident blocks per SM (smem allows it up to C ~ 1400 on A100): the register budget is
  // then 128 per thread. Without the bound ptxas for sm_90 settles at 80 and spills.
  static constexpr int kMinBlocks = 2;
  static constexpr int kVec = kVector ? int(16 / sizeof(T)) : 1;
  // Largest tile the launcher uses (large batches): with a halo (16+2)^2 = 324 flows are computed
  // for 256 outputs, 1.27x; the 8x16 tile that follows costs 1.41x but gives twice the blocks.
  static constexpr int kMaxTileH = 16;
  static constexpr int kMaxTileW = 16;
  static_assert(kThreads % 32 == 0, "whole warps");
  static_assert(kVec == 1 || kVec * sizeof(T) == 16, "vector loads are 16 bytes");
  // float4s of weights per lane and k-step (2 outputs x kVec channels); vector path only.
  static constexpr int kQuads = kVector ? 2 * kVec / 4 : 0;
  static_assert(!kVector || kQuads * 4 == 2 * kVec, "a lane's weights are whole float4s");
  static_assert(kMaxTileH * kMaxTileW <= kThreads, "upsample phase: one pass over the tile");
};

struct Tiling {
  int th, tw;          // tile of low-res pixels
  int tiles_h, tiles_w;
  int splits;          // slices of the reduction per pixel group
  int w_floats;        // packed floats rounded up to a float4
};

// kVec consecutive elements of x -> float.
template <typename T, int kVec>
__device__ __forceinline__ void load_x(const T* __restrict__ src, float (&v)[kVec]) {
  if constexpr (kVec == 1) {
    v[0] = load_f(src);
  } else {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(src));
    if constexpr (sizeof(T) == 4) {
      v[0] = __uint_as_float(raw.x);
      v[1] = __uint_as_float(raw.y);
      v[2] = __uint_as_float(raw.z);
      v[3] = __uint_as_float(raw.w);
    } else {
      const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if constexpr (std::is_same<T, Half>::value) {
          const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
          v[2 * i] = f.x;
          v[2 * i + 1] = f.y;
        } else {  // bf16 is the top half of a float: one shift or mask per element
          v[2 * i] = __uint_as_float(words[i] << 16);
          v[2 * i + 1] = __uint_as_float(words[i] & 0xFFFF0000u);
        }
      }
    }
  }
}

template <typename T, bool kVector, bool kUp>
__global__ void __launch_bounds__(FlowHeadTraits<T, kVector>::kThreads, FlowHeadTraits<T, kVector>::kMinBlocks)
flow_head_kernel(const FlowHeadParams p, const Tiling t) {
  using Tr = FlowHeadTraits<T, kVector>;
  constexpr int kVec = Tr::kVec;
  constexpr int kPix = Tr::kPix;
  constexpr int kHalo = kUp ? 1 : 0;
  const T* __restrict__ x = static_cast<const T*>(p.x);  // [B, h, w, C] strided
  float* __restrict__ flow = p.flow;                     // [B, h, w, 2]

  FF_EXTERN_SHARED(float4, smem4, 16);
  float* smem = reinterpret_cast<float*>(smem4);
  float* w_s = smem;                              // packed: [9, C, 2] weights, bias, up weight
  const int hh = t.th + 2 * kHalo, hw = t.tw + 2 * kHalo, hp = hh * hw;
  float* part_s = smem + t.w_floats;              // [splits, hp, 2]
  float* flow_s = part_s + t.splits * hp * 2;     // [hh, hw, 2], zero outside the image

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  int tile = blockIdx.x;
  const int tile_x = tile % t.tiles_w;
  tile /= t.tiles_w;
  const int tile_y = tile % t.tiles_h;
  const int64_t b = tile / t.tiles_h;
  const int64_t y0 = int64_t(tile_y) * t.th - kHalo, x0 = int64_t(tile_x) * t.tw - kHalo;

  // Packed weights -> smem. The vector path re-lays the conv weight out as
  // [9][kQuads][n_chunks][float4] (kQuads float4s per lane and k-step): in the k-loop the lanes
  // read consecutive chunks, so quad j of a warp's 32 chunks is 512 contiguous bytes and each
  // LDS.128 is conflict-free. In the packed [9][C][2] order lanes would sit 2*kVec floats apart
  // (a 4-way bank conflict for 16-bit inputs). Bias and upsample weight keep their offsets.
  const int n_packed = int(flow_head_packed_size(p.C, kUp));
  const int n_chunks = int(p.C / kVec);
  const bool packed_aligned = (reinterpret_cast<uintptr_t>(p.packed) & 15u) == 0;
  int copied = 0;
  if constexpr (kVec > 1) {
    const int n_quads = 9 * n_chunks * Tr::kQuads;
    for (int u = tid; u < n_quads; u += Tr::kThreads) {
      const int chunk = u % n_chunks, tq = u / n_chunks;
      const float* src = p.packed + flow_head_weight_index(tq / Tr::kQuads, int64_t(chunk) * kVec, 0, p.C) +
                         (tq % Tr::kQuads) * 4;
      smem4[u] = packed_aligned ? __ldg(reinterpret_cast<const float4*>(src))
                                : make_float4(__ldg(src), __ldg(src + 1), __ldg(src + 2), __ldg(src + 3));
    }
    copied = n_quads * 4;
  }
  for (int i = copied + tid; i < n_packed; i += Tr::kThreads) w_s[i] = __ldg(p.packed + i);
  __syncthreads();

  const int K = 9 * n_chunks;
  const int k_split = (K + t.splits - 1) / t.splits;
  const int groups = (hp + kPix - 1) / kPix;
  const T* xb = x + b * p.x_stride[0];
  for (int item = warp; item < groups * t.splits; item += Tr::kWarps) {
    const int g = item / t.splits, s = item - g * t.splits;
    const T* base[kPix];
    unsigned mask[kPix];
#pragma unroll
    for (int i = 0; i < kPix; ++i) {
      const int q = g * kPix + i;
      const int64_t y = y0 + q / hw, xx = x0 + q % hw;
      const bool in = q < hp && y >= 0 && y < p.h && xx >= 0 && xx < p.w;
      mask[i] = in ? conv_tap_mask(y, xx, p.h, p.w) : 0u;
      base[i] = in ? xb + y * p.x_stride[1] + xx * p.x_stride[2] : xb;
    }
    float acc[kPix][2];
#pragma unroll
    for (int i = 0; i < kPix; ++i) acc[i][0] = acc[i][1] = 0.f;

    const int k_end = min(K, (s + 1) * k_split);
    int k = s * k_split + lane;
    int tap = k / n_chunks;
    int chunk = k - tap * n_chunks;
    for (; k < k_end; k += 32) {
      const int64_t off = conv_tap_dy(tap) * p.x_stride[1] + conv_tap_dx(tap) * p.x_stride[2] + chunk * kVec;
      float wv[2 * kVec];
      if constexpr (kVec == 1) {
        const float2 w2 = *reinterpret_cast<const float2*>(w_s + flow_head_weight_index(tap, chunk, 0, p.C));
        wv[0] = w2.x;
        wv[1] = w2.y;
      } else {
        const float4* wsrc = smem4 + tap * Tr::kQuads * n_chunks + chunk;
#pragma unroll
        for (int j = 0; j < Tr::kQuads; ++j) {
          const float4 w4 = wsrc[j * n_chunks];
          wv[4 * j] = w4.x;
          wv[4 * j + 1] = w4.y;
          wv[4 * j + 2] = w4.z;
          wv[4 * j + 3] = w4.w;
        }
      }
#pragma unroll
      for (int i = 0; i < kPix; ++i) {
        if ((mask[i] >> tap) & 1u) {
          float xv[kVec];
          load_x<T, kVec>(base[i] + off, xv);
#pragma unroll
          for (int j = 0; j < kVec; ++j) {
            acc[i][0] = fmaf(xv[j], wv[2 * j], acc[i][0]);
            acc[i][1] = fmaf(xv[j], wv[2 * j + 1], acc[i][1]);
          }
        }
      }
      chunk += 32;
      while (chunk >= n_chunks) {  // at most once when C >= 32 * kVec
        chunk -= n_chunks;
        ++tap;
      }
    }
#pragma unroll
    for (int i = 0; i < kPix; ++i) {
#pragma unroll
      for (int o = 0; o < 2; ++o) {
#pragma unroll
        for (int sh = 16; sh > 0; sh >>= 1) acc[i][o] += __shfl_xor_sync(0xffffffffu, acc[i][o], sh);
      }
    }
    if (lane == 0) {
#pragma unroll
      for (int i = 0; i < kPix; ++i) {
        const int q = g * kPix + i;
        if (q < hp) {
          part_s[(s * hp + q) * 2] = acc[i][0];
          part_s[(s * hp + q) * 2 + 1] = acc[i][1];
        }
      }
    }
  }
  __syncthreads();

  // Bias + split sums in a fixed order; pixels outside the image are the upsample's zero padding.
  const float* bias = w_s + flow_head_bias_offset(p.C);
  for (int q = tid; q < hp; q += Tr::kThreads) {
    const int r = q / hw, c = q % hw;
    const int64_t y = y0 + r, xx = x0 + c;
    const bool in = y >= 0 && y < p.h && xx >= 0 && xx < p.w;
    float f0 = 0.f, f1 = 0.f;
    if (in) {
      f0 = bias[0];
      f1 = bias[1];
      for (int s = 0; s < t.splits; ++s) {
        f0 += part_s[(s * hp + q) * 2];
        f1 += part_s[(s * hp + q) * 2 + 1];
      }
      const bool interior = r >= kHalo && r < kHalo + t.th && c >= kHalo && c < kHalo + t.tw;
      if (interior) *reinterpret_cast<float2*>(flow + ((b * p.h + y) * p.w + xx) * 2) = make_float2(f0, f1);
    }
    if constexpr (kUp) {
      flow_s[q * 2] = f0;
      flow_s[q * 2 + 1] = f1;
    }
  }
  if constexpr (kUp) {
    __syncthreads();
    const float* up = w_s + flow_head_up_offset(p.C);
    T* __restrict__ out = static_cast<T*>(p.out) + p.out_offset;  // [B, 2h, 2w, Ctot] strided
    for (int q = tid; q < t.th * t.tw; q += Tr::kThreads) {
      const int r = q / t.tw, c = q % t.tw;
      const int64_t m = y0 + kHalo + r, n = x0 + kHalo + c;
      if (m >= p.h || n >= p.w) continue;
      float nb[3][3][2];
#pragma unroll
      for (int i = 0; i < 3; ++i)
#pragma unroll
        for (int j = 0; j < 3; ++j) {
          nb[i][j][0] = flow_s[((r + i) * hw + c + j) * 2];
          nb[i][j][1] = flow_s[((r + i) * hw + c + j) * 2 + 1];
        }
      float res[2][2][2];
      flow_up_quad(nb, up, res);
#pragma unroll
      for (int a = 0; a < 2; ++a)
#pragma unroll
        for (int cc = 0; cc < 2; ++cc) {
          T* o = out + b * p.out_stride[0] + (2 * m + a) * p.out_stride[1] + (2 * n + cc) * p.out_stride[2];
          store_f(o, res[a][cc][0]);
          store_f(o + 1, res[a][cc][1]);
        }
    }
  }
}

int sm_count(int device, const char* op) {
  int n = 0;
  cuda_check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device), op, "cudaDeviceGetAttribute");
  return n;
}

template <typename T, bool kVector, bool kUp>
void launch_flow_head(const FlowHeadParams& p, int device, cudaStream_t st, const char* op) {
  using Tr = FlowHeadTraits<T, kVector>;
  constexpr int kHalo = kUp ? 1 : 0;
  // Largest tile whose grid still gives every SM a block: the halo overhead of small tiles is
  // cheaper than idle SMs on the coarse heads (flow6 at 448x1024 is 7x16 pixels).
  static constexpr int kTiles[][2] = {{Tr::kMaxTileH, Tr::kMaxTileW}, {8, 16}, {8, 8}, {4, 8}, {4, 4}, {2, 4}, {2, 2}};
  const int64_t sms = sm_count(device, op);
  Tiling t{};
  for (const auto& cand : kTiles) {
    t.th = cand[0];
    t.tw = cand[1];
    t.tiles_h = int((p.h + t.th - 1) / t.th);
    t.tiles_w = int((p.w + t.tw - 1) / t.tw);
    if (p.B * t.tiles_h * t.tiles_w >= sms) break;
  }
  const int64_t blocks = p.B * t.tiles_h * t.tiles_w;
  FF_CHECK(blocks <= 0x7FFFFFFF, op, "too many tiles (", blocks, ")");
  const int hp = (t.th + 2 * kHalo) * (t.tw + 2 * kHalo);
  const int groups = (hp + Tr::kPix - 1) / Tr::kPix;
  // Split the reduction only as far as needed to give every warp an item, and never below two
  // k-steps per lane.
  const int64_t k_total = 9 * (p.C / Tr::kVec);
  const int max_splits = int(k_total / 64 > 1 ? k_total / 64 : 1);
  const int want = (Tr::kWarps + groups - 1) / groups;
  t.splits = want < max_splits ? want : max_splits;
  t.w_floats = int((flow_head_packed_size(p.C, kUp) + 3) / 4 * 4);
  const size_t smem = sizeof(float) * (size_t(t.w_floats) + size_t(t.splits) * hp * 2 + size_t(hp) * 2);
  int smem_max = 0;
  cuda_check(cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), op,
             "cudaDeviceGetAttribute");
  FF_CHECK(smem <= size_t(smem_max), op, "x has ", p.C, " channels; the weights need ", smem,
           " bytes of shared memory, more than the device's ", smem_max);
  // Heads of different C share this kernel: allow the device's maximum once, not each launch's size.
  if (smem > 48 * 1024) raise_smem_limit_once<flow_head_kernel<T, kVector, kUp>>(smem_max, device, op);
  FF_LAUNCH((flow_head_kernel<T, kVector, kUp>), unsigned(blocks), Tr::kThreads, smem, st, p, t);
}

template <typename T>
bool vector_ok(const FlowHeadParams& p) {
  constexpr int v = int(16 / sizeof(T));
  return (reinterpret_cast<uintptr_t>(p.x) & 15u) == 0 && p.C % v == 0 && p.x_stride[0] % v == 0 &&
         p.x_stride[1] % v == 0 && p.x_stride[2] % v == 0;
}

// Every (dtype, vector path, upsample) variant the dispatch below can pick.
#define FF_FLOW_HEAD_INSTANTIATE(T, VEC, UP) \
  template void launch_flow_head<T, VEC, UP>(const FlowHeadParams&, int, cudaStream_t, const char*);
#define FF_FLOW_HEAD_INSTANTIATE_DTYPE(T)    \
  FF_FLOW_HEAD_INSTANTIATE(T, false, false)  \
  FF_FLOW_HEAD_INSTANTIATE(T, false, true)   \
  FF_FLOW_HEAD_INSTANTIATE(T, true, false)   \
  FF_FLOW_HEAD_INSTANTIATE(T, true, true)
FF_FLOW_HEAD_INSTANTIATE_DTYPE(float)
FF_FLOW_HEAD_INSTANTIATE_DTYPE(Half)
FF_FLOW_HEAD_INSTANTIATE_DTYPE(BFloat16)
#undef FF_FLOW_HEAD_INSTANTIATE_DTYPE
#undef FF_FLOW_HEAD_INSTANTIATE

}  // namespace

void flow_head_cuda(const FlowHeadParams& p, int device, int64_t stream) {
  const char* op = "flow_head";
  FF_CHECK(p.C > 0, op, "x needs at least one channel");
  FF_CHECK(9 * p.C <= 0x7FFFFFFF / 4, op, "x has too many channels (", p.C, ")");
  if (p.B == 0 || p.h == 0 || p.w == 0) return;
  FF_CHECK(!p.has_up || p.out != nullptr, op, "an upsample weight needs an output buffer");
  cudaStream_t st = prepare_launch(device, stream, op);
  FF_DISPATCH_CUDA(p.dtype, T, op,
                   FF_BOOL_SWITCH(vector_ok<T>(p), kVector,
                                  FF_BOOL_SWITCH(p.has_up, kUp, launch_flow_head<T, kVector, kUp>(p, device, st, op))));
  launch_check(op);
}

}  // namespace fastflow
