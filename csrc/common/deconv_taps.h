// The sub-pixel taps of ConvTranspose2d(k4, s2, p1), the one C++ copy of the table (the Python
// side: fastflow.network.deconv_kernel_index / DECONV_TAPS). Used by the decoder's deconv kernels
// (igemm_math.h tap_delta) and the flow heads' 2->2 flow upsample (flow_head_math.h).
//
// Output row 2m + a (a: row parity) reads input rows m + d of taps t = 0, 1 with kernel row k:
//   a = 0: (d = 0, k = 1), (d = -1, k = 3);   a = 1: (d = 0, k = 2), (d = +1, k = 0).
// Columns likewise, so each of the 4 parities (a, c) is a stride-1 2x2 conv over the low-res input.
#pragma once

#include "common/common.h"

namespace fastflow {

struct SubpixelTap {
  int d;  // input row (column) offset from m
  int k;  // ConvTranspose2d kernel row (column)
};
FF_HOST_DEVICE SubpixelTap subpixel_tap(int a, int t) {
  SubpixelTap r;
  r.d = t == 0 ? 0 : (a == 0 ? -1 : 1);
  r.k = a == 0 ? (t == 0 ? 1 : 3) : (t == 0 ? 2 : 0);
  return r;
}

}  // namespace fastflow
