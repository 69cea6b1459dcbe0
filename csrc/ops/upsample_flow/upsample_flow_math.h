// Source taps of bilinear x4 upsampling with align_corners=False, shared by CPU and CUDA.
#pragma once

#include "common/common.h"

namespace fastflow {

struct UpTap {
  int64_t i0, i1;
  float l1;  // weight of i1; i0 gets 1 - l1
};

// PyTorch's rule for scale_factor=4: src = (dst + 0.5) / 4 - 0.5, clamped below at 0.
FF_HOST_DEVICE UpTap up4_tap(int64_t dst, int64_t n_in) {
  float src = (float(dst) + 0.5f) * 0.25f - 0.5f;
  src = src < 0.f ? 0.f : src;
  UpTap t;
  t.i0 = int64_t(src);
  t.i1 = t.i0 + 1 < n_in ? t.i0 + 1 : n_in - 1;
  t.l1 = src - float(t.i0);
  return t;
}

}  // namespace fastflow
