// Index math of the implicit-GEMM ops conv2d_lrelu and deconv_lrelu (igemm.cu), shared by the
// CUDA kernels and the host emulation (igemm_cpu.cpp), so that CPU tests exercise the same
// addressing the GPU runs: GEMM row -> (b, oy, ox), GEMM k -> (ky, kx, c), the deconv sub-pixel
// taps, the tile plan (configs, split-K ranges, workspace size) and the epilogue's slice addressing.
//
// GEMM view. Input x is NHWC [B, H, W, Cx] (Cx a multiple of 8, padding channels zero).
//   conv:   M = B*Ho*Wo, N = Cout, K = k*k*Cx with k ordered (ky, kx, c), c fastest, so every
//           16-byte chunk of K (8 fp16 or 4 fp32 values) is 8- or 4-aligned channels of one tap.
//           Packed weight [Cout][k][k][Cx] = [N][K]. Output pixel of row m is m itself.
//   deconv: ConvTranspose2d(k4, s2, p1) as Z = 4 sub-pixel phases z = 2a + c (a: row parity,
//           c: column parity), each a stride-1 2x2 conv over the low-res input [B, h, w, Cx]:
//           M = B*h*w per phase, K = 2*2*Cx ordered (ty, tx, c). Packed weight [4][N][2][2][Cx].
//           Row m = (b, y, x) of phase z writes output pixel (b, 2y + a, 2x + c) of [B, 2h, 2w].
// Split-K: the K tiles are cut into `splits` contiguous ranges; split s writes fp32 partials of
// its whole tile into workspace [splits][Z*M][N]; a reduce pass sums them in split order, adds
// the bias and applies LeakyReLU.
#pragma once

#include <cstdint>

#include "common/common.h"
#include "common/deconv_taps.h"

namespace fastflow {

// Channel padding of every igemm operand: x's channels (and its pixel stride) are a multiple of 8,
// so each 16-byte chunk of K holds channels of a single tap (fastflow.network.pad8 on the Python side).
constexpr int kChannelAlign = 8;
FF_HOST_DEVICE bool channel_aligned(int64_t c) { return c % kChannelAlign == 0; }

// Every tile is 64 bytes of K deep (32 fp16/bf16 or 16 fp32 values) and loaded in 16-byte chunks.
constexpr int kTileKBytes = 64;
constexpr int kChunkBytes = 16;

// Thread-block tile shapes the kernels are instantiated for (index = IgemmPlan::config). The
// device-side configs in igemm.cuh static_assert against this table.
//   0: 128x128, 8 warps: large M and N (encoder at full resolution, batch >= 3): best reuse.
//   1:  64x64,  4 warps: mid-size layers, small N and everything split-K; also the strict-fp32
//       SIMT tile.
// (The 2-channel flow heads run their own kernel, flow_head.cu, so no narrow-N tile exists.)
struct IgemmTile {
  int bm, bn;
};
constexpr int kNumIgemmConfigs = 2;
constexpr IgemmTile kIgemmTiles[kNumIgemmConfigs] = {{128, 128}, {64, 64}};

struct IgemmShape {
  int B, H, W, Cx;  // input [B, H, W, Cx]
  int xstride;      // elements between neighbouring input pixels (>= Cx, % 8 == 0): lets a conv
                    // read the encoder's channel slice of a concat buffer in place
  int Ho, Wo;       // GEMM row grid: conv output size; deconv: the input size (h, w)
  int ksize;        // taps per axis: conv k, deconv 2
  int stride, pad;  // conv only (deconv: 1, 0, unused)
  int Cout;         // N
  int Ctot, offset; // output buffer channels and the first channel written
  bool deconv;

  FF_HOST_DEVICE int M() const { return B * Ho * Wo; }
  FF_HOST_DEVICE int N() const { return Cout; }
  FF_HOST_DEVICE int K() const { return ksize * ksize * Cx; }
  FF_HOST_DEVICE int Z() const { return deconv ? 4 : 1; }
  // Output image size (rows of the output buffer per sample = OH * OW).
  FF_HOST_DEVICE int OH() const { return deconv ? 2 * Ho : Ho; }
  FF_HOST_DEVICE int OW() const { return deconv ? 2 * Wo : Wo; }
};

FF_HOST_DEVICE int conv_out_size(int in, int k, int stride) { return (in + 2 * ((k - 1) / 2) - k) / stride + 1; }

// ---- rows: GEMM row m -> the input pixel the (0, 0) tap reads, relative coordinates ---------------
// Three 32-bit values per row (the kernels keep several rows per thread in registers): rows past M
// get iy0 far below zero, so every tap fails the bounds check and the chunk is zero-filled.
struct RowOrigin {
  int pix;       // b * H * W: first pixel of the sample in x (B*H*W < 2^31, checked by the bindings)
  int iy0, ix0;  // input coordinates before adding the tap's delta
};
constexpr int kInvalidRow = -(1 << 29);

FF_HOST_DEVICE RowOrigin row_origin(const IgemmShape& s, int m) {
  RowOrigin r;
  const bool valid = m < s.M();
  const int mm = valid ? m : 0;
  const int ox = mm % s.Wo;
  const int t = mm / s.Wo;
  const int oy = t % s.Ho;
  const int b = t / s.Ho;
  r.pix = b * s.H * s.W;
  r.iy0 = !valid ? kInvalidRow : s.deconv ? oy : oy * s.stride;
  r.ix0 = s.deconv ? ox : ox * s.stride;
  return r;
}

// Input offset (rows/columns) of tap t for a phase parity. Conv: t - pad. Deconv: the sub-pixel
// table (deconv_taps.h); the kernel indices k are baked into the packed weight.
FF_HOST_DEVICE int tap_delta(const IgemmShape& s, int parity, int t) {
  return s.deconv ? subpixel_tap(parity, t).d : t - s.pad;
}

// ---- k: GEMM column k -> (ky, kx, c); advanced incrementally tile by tile -------------------------
struct KState {
  int ky, kx, c;
};

FF_HOST_DEVICE KState k_decode(const IgemmShape& s, int k) {
  KState st;
  st.c = k % s.Cx;
  const int tap = k / s.Cx;
  st.kx = tap % s.ksize;
  st.ky = tap / s.ksize;
  return st;
}

// k += step. step < Cx takes one pass of the loop; conv1 (Cx = 8) takes step / 8.
FF_HOST_DEVICE void k_advance(const IgemmShape& s, KState& st, int step) {
  st.c += step;
  while (st.c >= s.Cx) {
    st.c -= s.Cx;
    if (++st.kx == s.ksize) {
      st.kx = 0;
      ++st.ky;
    }
  }
}

// Element offset into x of chunk (row r, k state st) in phase z, or -1 where the tap falls outside
// the image, past K (ky == ksize), or on a row past M (kInvalidRow): the loader zero-fills those chunks.
FF_HOST_DEVICE int64_t a_offset(const IgemmShape& s, const RowOrigin& r, const KState& st, int z) {
  if (st.ky >= s.ksize) return -1;
  const int iy = r.iy0 + tap_delta(s, z >> 1, st.ky);
  const int ix = r.ix0 + tap_delta(s, z & 1, st.kx);
  if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) return -1;
  return int64_t(r.pix + iy * s.W + ix) * s.xstride + st.c;
}

// Element offset into the packed weight [Z][N][K] of chunk (n, k) in phase z, or -1 (zero-fill).
FF_HOST_DEVICE int64_t b_offset(const IgemmShape& s, int z, int n, int k) {
  if (n >= s.N() || k >= s.K()) return -1;
  return (int64_t(z) * s.N() + n) * s.K() + k;
}

// ---- epilogue: GEMM (z, m) -> output pixel; element (pixel, n) lives at pixel*Ctot + offset + n ---
FF_HOST_DEVICE int64_t out_pixel(const IgemmShape& s, int z, int m) {
  if (!s.deconv) return m;
  const int x = m % s.Wo;
  const int t = m / s.Wo;
  const int y = t % s.Ho;
  const int b = t / s.Ho;
  return (int64_t(b) * s.OH() + 2 * y + (z >> 1)) * s.OW() + 2 * x + (z & 1);
}
FF_HOST_DEVICE int64_t out_index(const IgemmShape& s, int64_t pixel, int n) {
  return pixel * s.Ctot + s.offset + n;
}

FF_HOST_DEVICE float leaky_relu(float v, float slope) { return v > 0.f ? v : v * slope; }

// fp32 -> tf32 (10-bit mantissa) rounding to nearest, ties away from zero: cvt.rna.tf32.f32.
FF_HOST_DEVICE float tf32_round(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7F800000u) != 0x7F800000u) u = (u + 0x1000u) & 0xFFFFE000u;
  return bits_f32(u);
}

// ---- the plan: which tile config, how many K splits, workspace size -------------------------------
enum class MathMode : int { kF16 = 0, kBF16 = 1, kTF32 = 2, kF32Simt = 3 };

struct IgemmPlan {
  int config;           // index into kIgemmTiles
  int bm, bn, bk;       // tile (bk in elements)
  int k_tiles;          // ceil(K / bk)
  int splits;           // >= 1; every split gets >= 1 k tile
  int tiles_per_split;  // ceil(k_tiles / splits)
  int64_t workspace_elems;  // fp32 elements of [splits][Z*M][N] (0 when splits == 1)
};

inline MathMode math_mode(DType dtype, bool allow_tf32) {
  switch (dtype) {
    case DType::kFloat16: return MathMode::kF16;
    case DType::kBFloat16: return MathMode::kBF16;
    default: return allow_tf32 ? MathMode::kTF32 : MathMode::kF32Simt;
  }
}

// Heuristic (num_sms: the GPU's multiprocessor count; the emulation uses the H100's 132):
// - strict fp32 runs the SIMT kernel, instantiated for the 64x64 tile only;
// - 128x128 when N > 64 (N = 64, conv1 and deconv2, would leave half of its columns idle) and it
//   still makes at least one full wave of blocks; else 64x64;
// - split-K when the grid is under half a wave and K is deep (conv5..conv6_1 and deconv5 at small
//   batch): enough splits to fill about one wave, each split at least 4 k tiles, at most 16.
// split_override > 0 forces that many splits (tests), clamped to the number of k tiles.
inline IgemmPlan plan_igemm(const IgemmShape& s, MathMode mode, int num_sms, int split_override) {
  IgemmPlan p{};
  const int elem_bytes = (mode == MathMode::kF16 || mode == MathMode::kBF16) ? 2 : 4;
  p.bk = kTileKBytes / elem_bytes;
  const int64_t M = s.M(), N = s.N();
  if (mode == MathMode::kF32Simt) {
    p.config = 1;
  } else {
    const int64_t big = ((M + 127) / 128) * ((N + 127) / 128) * s.Z();
    p.config = (N > 64 && big >= num_sms) ? 0 : 1;
  }
  p.bm = kIgemmTiles[p.config].bm;
  p.bn = kIgemmTiles[p.config].bn;
  p.k_tiles = (s.K() + p.bk - 1) / p.bk;
  const int64_t tiles = ((M + p.bm - 1) / p.bm) * ((N + p.bn - 1) / p.bn) * s.Z();
  int splits = 1;
  if (split_override > 0) {
    splits = split_override;
  } else if (tiles * 2 <= num_sms && p.k_tiles >= 8) {
    splits = int(num_sms / tiles);
    const int max_by_depth = p.k_tiles / 4;
    splits = splits < max_by_depth ? splits : max_by_depth;
    splits = splits < 16 ? splits : 16;
  }
  splits = splits < p.k_tiles ? splits : p.k_tiles;
  splits = splits > 1 ? splits : 1;
  p.tiles_per_split = (p.k_tiles + splits - 1) / splits;
  p.splits = (p.k_tiles + p.tiles_per_split - 1) / p.tiles_per_split;  // no empty split
  p.workspace_elems = p.splits > 1 ? int64_t(p.splits) * s.Z() * M * N : 0;
  return p;
}

// K tiles [kt_begin, kt_end) of split `split`.
FF_HOST_DEVICE void split_range(int k_tiles, int tiles_per_split, int split, int& kt_begin, int& kt_end) {
  kt_begin = split * tiles_per_split;
  kt_end = kt_begin + tiles_per_split < k_tiles ? kt_begin + tiles_per_split : k_tiles;
}

// Workspace element of partial (split, z, m, n).
FF_HOST_DEVICE int64_t ws_index(const IgemmShape& s, int split, int z, int m, int n) {
  return ((int64_t(split) * s.Z() + z) * s.M() + m) * s.N() + n;
}

// ---- one call: tensors, shape, activation, precision -------------------------------------------
// x: [B, H, W, Cx] contiguous (Cx % 8 == 0); w: packed [Z][Cout][K] (above); bias: [Cout]
// in the dtype of x, or null; out: [B, OH, OW, Ctot] contiguous, channels [offset, offset + Cout)
// written, the others untouched; workspace: fp32, at least plan.workspace_elems (split-K only).
// All tensors share `dtype`; fp32 runs TF32 tensor cores when allow_tf32, else strict fp32 FFMA.
struct IgemmParams {
  const void* x;
  const void* w;
  const void* bias;
  void* out;
  float* workspace;
  int64_t workspace_elems;
  IgemmShape shape;
  float slope;
  DType dtype;
  bool allow_tf32;
};

}  // namespace fastflow
