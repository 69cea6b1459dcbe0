// normalize_pack, CPU version (CUDA: normalize_pack.cu; reference:
// fastflow.reference.normalize_pack; parameters: normalize_pack.h). Written so the compiler
// can vectorise the inner loops with the baseline ISA: independent float lanes for the sums (no
// reassociation needed), unit-stride loops over x for the packing. A memory-bound pass over a few
// MB, split over rows on several threads (common/parallel.h).
#include <cmath>
#include <vector>

#include "ops/normalize_pack/normalize_pack.h"
#include "common/parallel.h"

namespace fastflow {

namespace {

using cpu::parallel_rows;

constexpr int kLanes = 16;

// Sum of n floats spaced by stride, in kLanes independent float partial sums (vectorisable,
// each lane sums at most n / kLanes values), combined in double.
double row_sum(const float* row, int64_t n, int64_t stride) {
  float lane[kLanes] = {};
  int64_t x = 0;
  if (stride == 1) {
    for (; x + kLanes <= n; x += kLanes)
      for (int l = 0; l < kLanes; ++l) lane[l] += row[x + l];
  } else {
    for (; x + kLanes <= n; x += kLanes)
      for (int l = 0; l < kLanes; ++l) lane[l] += row[(x + l) * stride];
  }
  double acc = 0.0;
  for (int l = 0; l < kLanes; ++l) acc += double(lane[l]);
  for (; x < n; ++x) acc += double(row[x * stride]);
  return acc;
}

template <typename OutT>
void normalize_pack_impl(const NormalizePackParams& p) {
  const int64_t* s = p.in_stride;
  const int64_t B = p.B, H = p.H, W = p.W, C = p.C;
  // Per-colour mean over both frames: one double per (b, c, f, y) row, summed in double (like
  // the reference's float64-accurate mean; each row's float lanes sum at most W / 16 values).
  std::vector<double> rows(size_t(B * 6 * H));
  parallel_rows(B * 6 * H, W, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t y = r % H, plane = r / H, b = plane / 6, c = (plane % 6) / 2, f = plane % 2;
      rows[size_t(r)] = row_sum(p.in + b * s[0] + c * s[1] + f * s[2] + y * s[3], W, s[4]);
    }
  });
  std::vector<float> mean(size_t(B * 3));
  for (int64_t b = 0; b < B; ++b)
    for (int c = 0; c < 3; ++c) {
      double acc = 0.0;
      for (int64_t r = 0; r < 2 * H; ++r) acc += rows[size_t((b * 6 + c * 2) * H + r)];
      mean[size_t(b * 3 + c)] = float(acc / double(2 * H * W));
    }
  const float inv = 1.0f / p.rgb_max;
  OutT* out = static_cast<OutT*>(p.out);
  // Packing: row (b, y) of the six planes -> W pixels of C interleaved channels. Each plane row
  // is normalised and converted to OutT in a unit-stride (vectorisable) loop first, then the
  // six rows are interleaved with plain copies.
  parallel_rows(B * H, 6 * W, [&](int64_t r0, int64_t r1) {
    std::vector<OutT> norm(static_cast<size_t>(6 * W));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / H, y = r % H;
      for (int k = 0; k < 6; ++k) {  // channel k = frame k / 3, colour k % 3
        const int f = k / 3, c = k % 3;
        const float* src = p.in + b * s[0] + c * s[1] + f * s[2] + y * s[3];
        const float m = mean[size_t(b * 3 + c)];
        OutT* dst = norm.data() + k * W;
        if (s[4] == 1) {
          for (int64_t x = 0; x < W; ++x) store_f(dst + x, (src[x] - m) * inv);
        } else {
          for (int64_t x = 0; x < W; ++x) store_f(dst + x, (src[x * s[4]] - m) * inv);
        }
      }
      OutT zero;
      store_f(&zero, 0.f);
      OutT* o = out + (b * H + y) * W * C;
      const OutT* n = norm.data();
      if (C == 8) {
        for (int64_t x = 0; x < W; ++x) {
          OutT* px = o + x * 8;
          for (int k = 0; k < 6; ++k) px[k] = n[k * W + x];
          px[6] = zero;
          px[7] = zero;
        }
      } else {
        for (int64_t x = 0; x < W; ++x) {
          OutT* px = o + x * 6;
          for (int k = 0; k < 6; ++k) px[k] = n[k * W + x];
        }
      }
    }
  });
}

}  // namespace

void normalize_pack_cpu(const NormalizePackParams& p) {
  FF_CHECK(p.C == 6 || p.C == 8, "normalize_pack", "channels must be 6 or 8, got ", p.C);
  if (p.B == 0 || p.H == 0 || p.W == 0) return;
  FF_DISPATCH_HOST(p.out_dtype, T, "normalize_pack", normalize_pack_impl<T>(p));
}

}  // namespace fastflow
