// Per-pixel bilinear sampling math of the warp op, shared by the CPU and CUDA versions so the two
// cannot drift apart. See docs/design.md section 6 and fastflow.reference.warp.
#pragma once

#include <cmath>

#include "common/common.h"

namespace fastflow {

FF_HOST_DEVICE bool finite_f(float v) {
#if defined(__CUDA_ARCH__)
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

struct WarpTaps {
  int64_t off[4];  // (y0,x0) (y0,x1) (y1,x0) (y1,x1) as row * W + col, clamped into the image
  float wt[4];     // bilinear weights; zero for taps outside the image with zeros padding
  bool finite;     // false when the sample position is NaN or infinite
  bool inside;     // sample position within [0, W-1] x [0, H-1] (the validity mask)
};

// Sample position (j + u, i + v). "border" (Resample2d): weights from the unclamped position,
// taps clamped to the image. "zeros": taps outside contribute nothing. Clamping the position to
// [-1, W] first changes neither result (beyond that every tap is outside or on the same clamped
// edge) and keeps floor() within int range for huge flow.
FF_HOST_DEVICE WarpTaps warp_taps(int64_t i, int64_t j, float u, float v, int64_t H, int64_t W, bool zeros) {
  WarpTaps t;
  const float px = float(j) + u;
  const float py = float(i) + v;
  t.finite = finite_f(px) && finite_f(py);
  if (!t.finite) {
    for (int k = 0; k < 4; ++k) { t.off[k] = 0; t.wt[k] = 0.f; }
    t.inside = false;
    return t;
  }
  t.inside = px >= 0.f && px <= float(W - 1) && py >= 0.f && py <= float(H - 1);
  const float cx = fminf(fmaxf(px, -1.f), float(W));
  const float cy = fminf(fmaxf(py, -1.f), float(H));
  const float fx = floorf(cx), fy = floorf(cy);
  const float ax = cx - fx, ay = cy - fy;
  const int64_t x0 = int64_t(fx), y0 = int64_t(fy);
  const int64_t xs[2] = {x0, x0 + 1}, ys[2] = {y0, y0 + 1};
  const float wx[2] = {1.f - ax, ax}, wy[2] = {1.f - ay, ay};
  for (int a = 0; a < 2; ++a) {
    for (int c = 0; c < 2; ++c) {
      const int k = a * 2 + c;
      const bool in = xs[c] >= 0 && xs[c] < W && ys[a] >= 0 && ys[a] < H;
      const int64_t yy = ys[a] < 0 ? 0 : (ys[a] >= H ? H - 1 : ys[a]);
      const int64_t xx = xs[c] < 0 ? 0 : (xs[c] >= W ? W - 1 : xs[c]);
      t.off[k] = yy * W + xx;
      t.wt[k] = (zeros && !in) ? 0.f : wy[a] * wx[c];
    }
  }
  return t;
}

// Output value from the four taps' values; matches the reference's evaluation order.
FF_HOST_DEVICE float warp_combine(const WarpTaps& t, float v0, float v1, float v2, float v3, bool zeros) {
  if (!t.finite) return zeros ? 0.f : NAN;
  return t.wt[0] * v0 + t.wt[1] * v1 + t.wt[2] * v2 + t.wt[3] * v3;
}

}  // namespace fastflow
