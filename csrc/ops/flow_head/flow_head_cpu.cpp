// CPU version of the flow head (see flow_head.h; index math shared with the CUDA kernel through
// flow_head_math.h). Pass 1 computes the float32 flow of every pixel, pass 2 the upsampled 2x2
// block of every pixel from its 3x3 flow neighbourhood. 16-bit inputs are widened to float once
// per pixel row (the software conversion per multiply-add would dominate otherwise). Each output
// channel accumulates into kLanes partial sums combined pairwise at the end: shorter dependency
// chains (vectorisable) and a smaller rounding error than one running sum over 9*C terms.
#include <vector>

#include "ops/flow_head/flow_head.h"
#include "ops/flow_head/flow_head_math.h"

namespace fastflow {

namespace {

constexpr int kLanes = 8;

// Row y of image b widened to float: [w][C].
template <typename T>
const float* widen_row(const FlowHeadParams& p, int64_t b, int64_t y, std::vector<float>& buf) {
  const T* x = static_cast<const T*>(p.x);
  buf.resize(size_t(p.w * p.C));
  for (int64_t xx = 0; xx < p.w; ++xx) {
    const T* src = x + b * p.x_stride[0] + y * p.x_stride[1] + xx * p.x_stride[2];
    for (int64_t c = 0; c < p.C; ++c) buf[size_t(xx * p.C + c)] = load_f(src + c);
  }
  return buf.data();
}

template <typename T>
void flow_pass(const FlowHeadParams& p) {
  const int64_t C = p.C;
  const float* bias = p.packed + flow_head_bias_offset(C);
  std::vector<std::vector<float>> bufs(3);
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t y = 0; y < p.h; ++y) {
      const float* rows[3] = {nullptr, nullptr, nullptr};
      for (int r = 0; r < 3; ++r) {
        const int64_t sy = y + r - 1;
        if (sy >= 0 && sy < p.h) rows[r] = widen_row<T>(p, b, sy, bufs[size_t(r)]);
      }
      for (int64_t x = 0; x < p.w; ++x) {
        const unsigned mask = conv_tap_mask(y, x, p.h, p.w);
        float acc[2][kLanes] = {};
        for (int tap = 0; tap < 9; ++tap) {
          if (!((mask >> tap) & 1u)) continue;
          const float* src = rows[conv_tap_dy(tap) + 1] + (x + conv_tap_dx(tap)) * C;
          const float* wt = p.packed + flow_head_weight_index(tap, 0, 0, C);
          int64_t c = 0;
          for (; c + kLanes <= C; c += kLanes) {
            for (int l = 0; l < kLanes; ++l) {
              acc[0][l] = fmaf(src[c + l], wt[(c + l) * 2], acc[0][l]);
              acc[1][l] = fmaf(src[c + l], wt[(c + l) * 2 + 1], acc[1][l]);
            }
          }
          for (; c < C; ++c) {
            acc[0][c % kLanes] = fmaf(src[c], wt[c * 2], acc[0][c % kLanes]);
            acc[1][c % kLanes] = fmaf(src[c], wt[c * 2 + 1], acc[1][c % kLanes]);
          }
        }
        float* f = p.flow + ((b * p.h + y) * p.w + x) * 2;
        for (int o = 0; o < 2; ++o) {
          for (int width = kLanes / 2; width > 0; width /= 2)
            for (int l = 0; l < width; ++l) acc[o][l] += acc[o][l + width];
          f[o] = bias[o] + acc[o][0];
        }
      }
    }
  }
}

template <typename T>
void up_pass(const FlowHeadParams& p) {
  const float* up = p.packed + flow_head_up_offset(p.C);
  T* out = static_cast<T*>(p.out) + p.out_offset;
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t m = 0; m < p.h; ++m) {
      for (int64_t n = 0; n < p.w; ++n) {
        float nb[3][3][2];
        for (int i = 0; i < 3; ++i) {
          for (int j = 0; j < 3; ++j) {
            const int64_t y = m + i - 1, x = n + j - 1;
            const bool in = y >= 0 && y < p.h && x >= 0 && x < p.w;
            for (int ci = 0; ci < 2; ++ci) nb[i][j][ci] = in ? p.flow[((b * p.h + y) * p.w + x) * 2 + ci] : 0.f;
          }
        }
        float res[2][2][2];
        flow_up_quad(nb, up, res);
        for (int a = 0; a < 2; ++a)
          for (int c = 0; c < 2; ++c) {
            T* o = out + b * p.out_stride[0] + (2 * m + a) * p.out_stride[1] + (2 * n + c) * p.out_stride[2];
            store_f(o, res[a][c][0]);
            store_f(o + 1, res[a][c][1]);
          }
      }
    }
  }
}

template <typename T>
void flow_head_impl(const FlowHeadParams& p) {
  flow_pass<T>(p);
  if (p.has_up) up_pass<T>(p);
}

}  // namespace

void flow_head_cpu(const FlowHeadParams& p) {
  FF_CHECK(p.C > 0, "flow_head", "x needs at least one channel");
  if (p.B == 0 || p.h == 0 || p.w == 0) return;
  FF_CHECK(!p.has_up || p.out != nullptr, "flow_head", "an upsample weight needs an output buffer");
  FF_DISPATCH_HOST(p.dtype, T, "flow_head", flow_head_impl<T>(p));
}

}  // namespace fastflow
