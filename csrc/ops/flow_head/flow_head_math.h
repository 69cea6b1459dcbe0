// Index math of the flow head (predict_flow 3x3 conv + 2->2 ConvTranspose2d(k4, s2, p1) flow
// upsample), shared by the CUDA kernel (flow_head.cu) and the CPU version (flow_head_cpu.cpp) so
// that the CPU tests in CI exercise the same packed-weight layout and sub-pixel taps as the GPU.
//
// Packed parameters (built by fastflow.ops.pack_flow_head), one float32 vector, Cp = padded Cin:
//   [0, 18*Cp)          conv weight as [9 taps][Cp][2 outputs], tap = ky*3 + kx, zero for c >= Cin;
//                       the 2 outputs of one channel are adjacent so one 16-byte smem load serves
//                       both, and a lane's run of channels is one contiguous span.
//   [18*Cp, 18*Cp+2)    conv bias
//   [18*Cp+2, +64)      upsample weight as ConvTranspose2d stores it, [ci][co][ky][kx] (optional)
// The two possible lengths, 18*Cp + 2 and 18*Cp + 66, differ mod 18, so the length alone says
// whether an upsample weight is present.
#pragma once

#include <cmath>

#include "common/common.h"
#include "common/deconv_taps.h"

namespace fastflow {

FF_HOST_DEVICE int64_t flow_head_weight_index(int tap, int64_t c, int o, int64_t cp) { return (tap * cp + c) * 2 + o; }
FF_HOST_DEVICE int64_t flow_head_bias_offset(int64_t cp) { return 18 * cp; }
FF_HOST_DEVICE int64_t flow_head_up_offset(int64_t cp) { return 18 * cp + 2; }
FF_HOST_DEVICE int64_t flow_head_packed_size(int64_t cp, bool has_up) { return 18 * cp + 2 + (has_up ? 64 : 0); }

// Source offset of conv tap `tap` (padding 1): input row y + dy, column x + dx.
FF_HOST_DEVICE int conv_tap_dy(int tap) { return tap / 3 - 1; }
FF_HOST_DEVICE int conv_tap_dx(int tap) { return tap % 3 - 1; }

// Bit `tap` set when that tap of output pixel (y, x) reads inside the h x w image; taps outside
// read the zero padding and are skipped.
FF_HOST_DEVICE unsigned conv_tap_mask(int64_t y, int64_t x, int64_t h, int64_t w) {
  unsigned m = 0;
  for (int tap = 0; tap < 9; ++tap) {
    const int64_t sy = y + conv_tap_dy(tap), sx = x + conv_tap_dx(tap);
    if (sy >= 0 && sy < h && sx >= 0 && sx < w) m |= 1u << tap;
  }
  return m;
}

// The 2x2 block of upsampled flow owned by low-res pixel (m, n).
// nb[i][j][ci]: flow at (m + i - 1, n + j - 1), zero outside the image.
// up: [ci][co][ky][kx]. res[a][c][co]: output pixel (2m + a, 2n + c), channel co.
// Fixed fmaf order, so CPU and GPU give bit-identical results from identical flow.
FF_HOST_DEVICE void flow_up_quad(const float (&nb)[3][3][2], const float* up, float (&res)[2][2][2]) {
  for (int a = 0; a < 2; ++a) {
    for (int c = 0; c < 2; ++c) {
      for (int co = 0; co < 2; ++co) {
        float s = 0.f;
        for (int ty = 0; ty < 2; ++ty) {
          const SubpixelTap ry = subpixel_tap(a, ty);
          for (int tx = 0; tx < 2; ++tx) {
            const SubpixelTap rx = subpixel_tap(c, tx);
            for (int ci = 0; ci < 2; ++ci)
              s = fmaf(nb[ry.d + 1][rx.d + 1][ci], up[((ci * 2 + co) * 4 + ry.k) * 4 + rx.k], s);
          }
        }
        res[a][c][co] = s;
      }
    }
  }
}

}  // namespace fastflow
