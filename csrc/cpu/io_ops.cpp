// CPU versions of the input normalisation/packing and the final flow upsample (see ops.h).
#include <cmath>
#include <vector>

#include "../ops.h"
#include "../upsample_math.h"

namespace fastflow {

namespace {

template <typename OutT>
void normalize_pack_impl(const NormalizeParams& p) {
  const int64_t* s = p.in_stride;
  OutT* out = static_cast<OutT*>(p.out);
  for (int64_t b = 0; b < p.B; ++b) {
    // Mean per colour channel over both frames, accumulated in double like the reference.
    float mean[3];
    for (int c = 0; c < 3; ++c) {
      double acc = 0.0;
      for (int f = 0; f < 2; ++f) {
        for (int64_t y = 0; y < p.H; ++y) {
          const float* row = p.in + b * s[0] + c * s[1] + f * s[2] + y * s[3];
          for (int64_t x = 0; x < p.W; ++x) acc += row[x * s[4]];
        }
      }
      mean[c] = float(acc / double(2 * p.H * p.W));
    }
    const float inv = 1.0f / p.rgb_max;
    for (int64_t y = 0; y < p.H; ++y) {
      for (int64_t x = 0; x < p.W; ++x) {
        OutT* o = out + ((b * p.H + y) * p.W + x) * p.C;
        for (int f = 0; f < 2; ++f) {
          for (int c = 0; c < 3; ++c) {
            const float v = p.in[b * s[0] + c * s[1] + f * s[2] + y * s[3] + x * s[4]];
            store_f(o + f * 3 + c, (v - mean[c]) * inv);
          }
        }
        for (int c = 6; c < p.C; ++c) store_f(o + c, 0.f);
      }
    }
  }
}

template <typename InT>
void upsample_flow_impl(const UpsampleParams& p) {
  const InT* in = static_cast<const InT*>(p.in);
  const int64_t H = 4 * p.h, W = 4 * p.w;
  std::vector<UpTap> tx(W);
  for (int64_t x = 0; x < W; ++x) tx[x] = up4_tap(x, p.w);
  for (int64_t b = 0; b < p.B; ++b) {
    for (int c = 0; c < 2; ++c) {
      const InT* plane = in + b * p.in_stride[0] + c * p.in_stride[1];
      float* o = p.out + (b * 2 + c) * H * W;
      for (int64_t y = 0; y < H; ++y) {
        const UpTap ty = up4_tap(y, p.h);
        const InT* r0 = plane + ty.i0 * p.in_stride[2];
        const InT* r1 = plane + ty.i1 * p.in_stride[2];
        for (int64_t x = 0; x < W; ++x) {
          const UpTap& t = tx[x];
          const int64_t c0 = t.i0 * p.in_stride[3], c1 = t.i1 * p.in_stride[3];
          const float top = (1.f - t.l1) * load_f(r0 + c0) + t.l1 * load_f(r0 + c1);
          const float bot = (1.f - t.l1) * load_f(r1 + c0) + t.l1 * load_f(r1 + c1);
          o[y * W + x] = p.div_flow * ((1.f - ty.l1) * top + ty.l1 * bot);
        }
      }
    }
  }
}

}  // namespace

void normalize_pack_cpu(const NormalizeParams& p) {
  FF_CHECK(p.C == 6 || p.C == 8, "normalize_pack", "channels must be 6 or 8, got ", p.C);
  if (p.B == 0 || p.H == 0 || p.W == 0) return;
  FF_DISPATCH_HOST(p.out_dtype, T, "normalize_pack", normalize_pack_impl<T>(p));
}

void upsample_flow_cpu(const UpsampleParams& p) {
  if (p.B == 0 || p.h == 0 || p.w == 0) return;
  FF_DISPATCH_HOST(p.in_dtype, T, "upsample_flow", upsample_flow_impl<T>(p));
}

}  // namespace fastflow
