// Implicit-GEMM kernels of conv2d_lrelu and deconv_lrelu (instantiated and launched once, in
// igemm.cu): tile configs, the multi-stage cp.async mainloop over the PTX wrappers of ptx.cuh
// (cp.async, ldmatrix, mma.sync), the fused epilogue (bias + LeakyReLU + store into a channel
// slice, or fp32 split-K partials) and the split-K reduce kernel. The index math lives in igemm_math.h, shared with the host
// emulation (cpu/igemm.cpp).
//
// Layout and alignment assumptions (checked by the bindings/Python): x NHWC with Cx % 8 == 0 and a
// 16-byte aligned base, so every 16-byte K chunk is 8 (fp16/bf16) or 4 (fp32) channels of one tap
// and can be fetched by one cp.async (zero-filled outside the image / past M, N, K). The packed
// weight [Z][N][K] has K % 8 == 0 and a 16-byte aligned base. The output is written with 16-byte
// stores where Ctot, offset and the base allow it, element by element otherwise.
//
// Shared memory per stage: A tile [BM][64 bytes of K] and B tile [BN][64 bytes], rows padded to 80
// bytes: ldmatrix reads 8 rows of 16 bytes at one column, and an 80-byte pitch puts those rows in
// 8 different 16-byte bank groups (5r mod 8 is a permutation), with no swizzle arithmetic. The same
// pitch spreads the SIMT path's 4-byte reads of 16 rows over the banks with at most 2-way conflicts.
#pragma once

#include <cstdint>

#include "cuda_common.cuh"
#include "igemm_math.h"
#include "ptx.cuh"

namespace fastflow {
namespace igemm {

// ---- configs ------------------------------------------------------------------------------------
constexpr int kRowBytes = kTileKBytes + 16;  // padded smem pitch, see the file header
constexpr int kChunksPerRow = kTileKBytes / kChunkBytes;
constexpr int kStages = 4;  // 3 tiles in flight cover global latency at 1-2 blocks per SM

// Tile shape per config index (igemm_math.h kIgemmTiles, which also says why each exists).
// kMinBlocks caps registers (65536 / (threads * kMinBlocks)) so that the blocks the shared memory
// allows can also be resident. Config 0 keeps 64 fp32 accumulators per thread plus the gather
// state; under a 128-register cap (2 blocks of 256 threads) ptxas spilled 8 bytes on sm_90, so it
// asks for 1 block (8 warps, 4-stage pipeline) and gets its registers.
template <int kConfig>
struct TileConfig;
template <>
struct TileConfig<0> {
  // kMinBlocks 2: ptxas keeps it at 128 registers (144 when free) with no spills, so two blocks
  // (16 warps, 160 KB of shared memory) are resident on sm_80/sm_90 instead of one (8 warps):
  // benchmarks/gpu_report.py, NOTES.md "GPU" has the prediction.
  static constexpr int kBM = 128, kBN = 128, kWarpsM = 2, kWarpsN = 4, kMinBlocks = 2;
};
template <>
struct TileConfig<1> {
  static constexpr int kBM = 64, kBN = 64, kWarpsM = 2, kWarpsN = 2, kMinBlocks = 4;
};

template <MathMode kMode>
struct MathTraits;
template <>
struct MathTraits<MathMode::kF16> {
  using T = Half;
  static constexpr bool kTensorCore = true;
};
template <>
struct MathTraits<MathMode::kBF16> {
  using T = BFloat16;
  static constexpr bool kTensorCore = true;
};
template <>
struct MathTraits<MathMode::kTF32> {
  using T = float;
  static constexpr bool kTensorCore = true;
};
template <>
struct MathTraits<MathMode::kF32Simt> {
  using T = float;
  static constexpr bool kTensorCore = false;
};

template <int kConfig, MathMode kMode>
struct KernelTraits {
  using Cfg = TileConfig<kConfig>;
  using T = typename MathTraits<kMode>::T;
  static constexpr bool kTensorCore = MathTraits<kMode>::kTensorCore;
  static constexpr int kBM = Cfg::kBM, kBN = Cfg::kBN;
  static constexpr int kWarpsM = Cfg::kWarpsM, kWarpsN = Cfg::kWarpsN;
  static constexpr int kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kMinBlocks = Cfg::kMinBlocks;
  static constexpr int kElemBytes = int(sizeof(T));
  static constexpr int kBK = kTileKBytes / kElemBytes;  // K elements per tile
  static constexpr int kChunk = kChunkBytes / kElemBytes;  // K elements per 16-byte chunk
  // Tensor-core warp tile: kMI x kNI mma tiles of 16 x 8.
  static constexpr int kWM = kBM / kWarpsM, kWN = kBN / kWarpsN;
  static constexpr int kMI = kWM / 16, kNI = kWN / 8;
  // Loader: each thread owns one 16-byte column chunk (tid % 4) of kAChunks A rows.
  static constexpr int kAChunks = kBM * kChunksPerRow / kThreads;
  static constexpr int kBIters = (kBN * kChunksPerRow + kThreads - 1) / kThreads;
  static constexpr int kStageBytes = (kBM + kBN) * kRowBytes;
  static constexpr int kPipeBytes = kStages * kStageBytes;
  // Epilogue staging tile [BM][BN + 8] fp32: rows stay 16-byte aligned, and a pitch of 8 mod 32
  // words makes the half-warps' float2 fragment stores conflict-free (+4 overlapped 4 banks).
  static constexpr int kCPitch = kBN + 8;
  static constexpr int kSmemBytes = kPipeBytes;
  // Output chunk: one 16-byte store of T.
  static constexpr int kVec = 16 / kElemBytes;

  static_assert(kBM == kIgemmTiles[kConfig].bm && kBN == kIgemmTiles[kConfig].bn, "config table mismatch");
  static_assert(kThreads % kChunksPerRow == 0, "each thread must keep one K column chunk");
  static_assert(kBM * kChunksPerRow % kThreads == 0, "A tile chunks must divide evenly among threads");
  static_assert(kBK % kChunk == 0 && kTileKBytes % 32 == 0, "a tile is whole chunks and whole mma k steps");
  static_assert(!kTensorCore || (kWM % 16 == 0 && kWN % 16 == 0), "ldmatrix.x4 loads 16 rows of A / 16 cols of B");
  static_assert(kTensorCore || (kBM == 64 && kBN == 64 && kThreads == 128), "SIMT path: 64x64 tile, 8x4 per thread");
  static_assert(kBM * kCPitch * 4 <= kPipeBytes, "epilogue staging must fit in the pipeline's shared memory");
  static_assert(kBN % kVec == 0 && kBN % 4 == 0, "epilogue chunks must tile BN");
};

// Everything a kernel needs: the call plus the plan's K split and the output store width.
struct KernelParams {
  IgemmParams p;
  int k_tiles, tiles_per_split, splits;
  bool vec_out;  // 16-byte output stores allowed (Ctot, offset and base aligned)
};

// Bias + LeakyReLU of kVec consecutive outputs (n .. n+kVec-1, those < N) of GEMM row (z, m), stored
// into the output slice. Shared by the fused epilogue and the split-K reduce.
template <typename T, int kVec>
__device__ __forceinline__ void store_out_chunk(const KernelParams& kp, int z, int m, int n, const float (&v)[kVec]) {
  const IgemmShape& s = kp.p.shape;
  const T* bias = static_cast<const T*>(kp.p.bias);
  T* dst = static_cast<T*>(kp.p.out) + out_index(s, out_pixel(s, z, m), n);
  if (kp.vec_out && n + kVec <= s.N()) {
    alignas(16) T tmp[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) store_f(&tmp[j], leaky_relu(v[j] + (bias ? load_f(bias + n + j) : 0.f), kp.p.slope));
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(tmp);
  } else {
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      if (n + j < s.N()) store_f(dst + j, leaky_relu(v[j] + (bias ? load_f(bias + n + j) : 0.f), kp.p.slope));
  }
}

// ---- the kernel ---------------------------------------------------------------------------------
// grid (ceil(M / BM), ceil(N / BN), Z * splits); block z index = split * Z + phase.
template <int kConfig, MathMode kMode>
__global__ void __launch_bounds__(KernelTraits<kConfig, kMode>::kThreads, KernelTraits<kConfig, kMode>::kMinBlocks)
igemm_kernel(const KernelParams kp) {
  using Tr = KernelTraits<kConfig, kMode>;
  using T = typename Tr::T;
  FF_EXTERN_SHARED(unsigned char, smem, 16);
  const IgemmShape& s = kp.p.shape;
  const T* __restrict__ x = static_cast<const T*>(kp.p.x);  // [B, H, W, Cx]
  const T* __restrict__ w = static_cast<const T*>(kp.p.w);  // [Z, N, K]
  const int tid = threadIdx.x;
  const int m0 = blockIdx.x * Tr::kBM;
  const int n0 = blockIdx.y * Tr::kBN;
  const int z = blockIdx.z % s.Z();
  const int split = blockIdx.z / s.Z();
  int kt0, kt1;
  split_range(kp.k_tiles, kp.tiles_per_split, split, kt0, kt1);

  // Loader state: this thread's K chunk column and A rows; the k state advances one tile per load.
  const int kc = tid % kChunksPerRow;
  const int row0 = tid / kChunksPerRow;
  constexpr int kRowStep = Tr::kThreads / kChunksPerRow;
  RowOrigin rows[Tr::kAChunks];
#pragma unroll
  for (int i = 0; i < Tr::kAChunks; ++i) rows[i] = row_origin(s, m0 + row0 + i * kRowStep);
  KState ks = k_decode(s, kt0 * Tr::kBK + kc * Tr::kChunk);

  // Loads k tile kt (the next one in order: ks tracks it) into a pipeline stage.
  auto load_tile = [&](int stage, int kt) {
    const int k = kt * Tr::kBK + kc * Tr::kChunk;
    unsigned char* As = smem + stage * Tr::kStageBytes;
    unsigned char* Bs = As + Tr::kBM * kRowBytes;
#pragma unroll
    for (int i = 0; i < Tr::kAChunks; ++i) {
      const int64_t off = a_offset(s, rows[i], ks, z);
      cp_async_16(smem_u32(As + (row0 + i * kRowStep) * kRowBytes + kc * kChunkBytes), off >= 0 ? x + off : x,
                  off >= 0);
    }
#pragma unroll
    for (int i = 0; i < Tr::kBIters; ++i) {
      const int r = row0 + i * kRowStep;
      if (Tr::kBN * kChunksPerRow % Tr::kThreads == 0 || r < Tr::kBN) {
        const int64_t off = b_offset(s, z, n0 + r, k);
        cp_async_16(smem_u32(Bs + r * kRowBytes + kc * kChunkBytes), off >= 0 ? w + off : w, off >= 0);
      }
    }
    k_advance(s, ks, Tr::kBK);
  };

  const int lane = tid % 32, warp = tid / 32;
  const int wm = warp % Tr::kWarpsM, wn = warp / Tr::kWarpsM;
  // Accumulators: tensor cores kMI x kNI x 4 (mma C fragments); SIMT 8 rows x 4 columns per thread.
  constexpr int kAccM = Tr::kTensorCore ? Tr::kMI : 8;
  constexpr int kAccN = Tr::kTensorCore ? Tr::kNI * 4 : 4;
  float acc[kAccM][kAccN];
#pragma unroll
  for (int i = 0; i < kAccM; ++i)
#pragma unroll
    for (int j = 0; j < kAccN; ++j) acc[i][j] = 0.f;

  auto compute_tile = [&](int stage) {
    const unsigned char* As = smem + stage * Tr::kStageBytes;
    const unsigned char* Bs = As + Tr::kBM * kRowBytes;
    if constexpr (Tr::kTensorCore) {
#pragma unroll
      for (int kb = 0; kb < kTileKBytes; kb += 32) {
        uint32_t a[Tr::kMI][4];
        // A 16x(32 bytes): lanes 0-15 address rows 0-15 at the first 16 bytes, 16-31 the second.
#pragma unroll
        for (int mi = 0; mi < Tr::kMI; ++mi) {
          const int r = wm * Tr::kWM + mi * 16 + (lane % 16);
          ldmatrix_x4(a[mi], smem_u32(As + r * kRowBytes + kb + (lane / 16) * 16));
          if constexpr (kMode == MathMode::kTF32) {
#pragma unroll
            for (int j = 0; j < 4; ++j) a[mi][j] = to_tf32(a[mi][j]);
          }
        }
        // B stored [n][k], 16 columns at a time (fewer live fragment registers than all at once):
        // matrices (n 0-7, k lo), (n 0-7, k hi), (n 8-15, k lo), (n 8-15, k hi).
#pragma unroll
        for (int nj = 0; nj < Tr::kNI / 2; ++nj) {
          const int r = wn * Tr::kWN + nj * 16 + (lane & 7) + ((lane >> 4) << 3);
          uint32_t q[4];
          ldmatrix_x4(q, smem_u32(Bs + r * kRowBytes + kb + ((lane >> 3) & 1) * 16));
          if constexpr (kMode == MathMode::kTF32) {
#pragma unroll
            for (int j = 0; j < 4; ++j) q[j] = to_tf32(q[j]);
          }
          const uint32_t b0[2] = {q[0], q[1]}, b1[2] = {q[2], q[3]};
#pragma unroll
          for (int mi = 0; mi < Tr::kMI; ++mi) {
            mma<kMode>(*reinterpret_cast<float(*)[4]>(&acc[mi][(2 * nj) * 4]), a[mi], b0);
            mma<kMode>(*reinterpret_cast<float(*)[4]>(&acc[mi][(2 * nj + 1) * 4]), a[mi], b1);
          }
        }
      }
    } else {
      // Strict fp32: thread (ty, tx) owns rows ty + 8i and columns tx + 16j; A reads broadcast
      // (two rows per warp), B reads 16 rows at an 80-byte pitch (at most 2-way conflicts).
      const float* Af = reinterpret_cast<const float*>(As);
      const float* Bf = reinterpret_cast<const float*>(Bs);
      constexpr int kPitch = kRowBytes / 4;
      const int tx = tid % 16, ty = tid / 16;
#pragma unroll
      for (int kk = 0; kk < Tr::kBK; ++kk) {
        float a[8], b[4];
#pragma unroll
        for (int i = 0; i < 8; ++i) a[i] = Af[(ty + 8 * i) * kPitch + kk];
#pragma unroll
        for (int j = 0; j < 4; ++j) b[j] = Bf[(tx + 16 * j) * kPitch + kk];
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
    }
  };

  // Mainloop: kStages - 1 tiles in flight. Iteration it waits for tile it, then refills the slot
  // computed in iteration it - 1 (every thread is past it: the barrier), then computes tile it.
  const int nk = kt1 - kt0;
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < nk) load_tile(st, kt0 + st);
    cp_async_commit();
  }
  for (int it = 0; it < nk; ++it) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    if (it + kStages - 1 < nk) load_tile((it + kStages - 1) % kStages, kt0 + it + kStages - 1);
    cp_async_commit();
    compute_tile(it % kStages);
  }
  cp_async_wait<0>();
  __syncthreads();

  // Epilogue: stage the fp32 tile in shared memory, then write 16-byte chunks (coalesced rows).
  float* Cs = reinterpret_cast<float*>(smem);  // [BM][kCPitch]
  if constexpr (Tr::kTensorCore) {
#pragma unroll
    for (int mi = 0; mi < Tr::kMI; ++mi)
#pragma unroll
      for (int ni = 0; ni < Tr::kNI; ++ni) {
        const int r = wm * Tr::kWM + mi * 16 + lane / 4;
        const int c = wn * Tr::kWN + ni * 8 + (lane % 4) * 2;
        *reinterpret_cast<float2*>(&Cs[r * Tr::kCPitch + c]) = make_float2(acc[mi][ni * 4 + 0], acc[mi][ni * 4 + 1]);
        *reinterpret_cast<float2*>(&Cs[(r + 8) * Tr::kCPitch + c]) =
            make_float2(acc[mi][ni * 4 + 2], acc[mi][ni * 4 + 3]);
      }
  } else {
    const int tx = tid % 16, ty = tid / 16;
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) Cs[(ty + 8 * i) * Tr::kCPitch + tx + 16 * j] = acc[i][j];
  }
  __syncthreads();

  const int M = s.M(), N = s.N();
  if (kp.splits > 1) {
    // fp32 partials of the whole tile (zeros included), so the reduce needs no memset.
    constexpr int kCols = Tr::kBN / 4;
    for (int idx = tid; idx < Tr::kBM * kCols; idx += Tr::kThreads) {
      const int r = idx / kCols, c = (idx % kCols) * 4;
      const int m = m0 + r, n = n0 + c;
      if (m >= M || n >= N) continue;
      float* dst = kp.p.workspace + ws_index(s, split, z, m, n);
      const float4 v = *reinterpret_cast<const float4*>(&Cs[r * Tr::kCPitch + c]);
      if (N % 4 == 0) {
        *reinterpret_cast<float4*>(dst) = v;
      } else {
        const float vv[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (n + j < N) dst[j] = vv[j];
      }
    }
  } else {
    constexpr int kCols = Tr::kBN / Tr::kVec;
    for (int idx = tid; idx < Tr::kBM * kCols; idx += Tr::kThreads) {
      const int r = idx / kCols, c = (idx % kCols) * Tr::kVec;
      const int m = m0 + r, n = n0 + c;
      if (m >= M || n >= N) continue;
      float v[Tr::kVec];
#pragma unroll
      for (int j = 0; j < Tr::kVec; ++j) v[j] = Cs[r * Tr::kCPitch + c + j];
      store_out_chunk<T, Tr::kVec>(kp, z, m, n, v);
    }
  }
}

// Split-K reduce: one thread per kVec outputs of one GEMM row; sums the splits in order (the host
// emulation's order), then the shared epilogue. The workspace is small and L2-resident.
constexpr int kReduceThreads = 256;
template <typename T>
__global__ void __launch_bounds__(kReduceThreads) splitk_reduce_kernel(const KernelParams kp) {
  constexpr int kVec = 16 / int(sizeof(T));
  const IgemmShape& s = kp.p.shape;
  const int N = s.N(), M = s.M();
  const int chunks = (N + kVec - 1) / kVec;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(s.Z()) * M * chunks) return;
  const int n = int(idx % chunks) * kVec;
  const int zm = int(idx / chunks);
  const int z = zm / M, m = zm % M;
  float v[kVec];
#pragma unroll
  for (int j = 0; j < kVec; ++j) v[j] = 0.f;
  for (int sp = 0; sp < kp.splits; ++sp) {
    const float* src = kp.p.workspace + ws_index(s, sp, z, m, n);
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      if (n + j < N) v[j] += src[j];
  }
  store_out_chunk<T, kVec>(kp, z, m, n, v);
}

}  // namespace igemm
}  // namespace fastflow
