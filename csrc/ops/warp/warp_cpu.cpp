// CPU version of the bilinear backward warp (see warp.h, warp_math.h).
#include "ops/warp/warp.h"
#include "ops/warp/warp_math.h"

namespace fastflow {

namespace {

template <typename T, typename FlowT>
void warp_impl(const WarpParams& p) {
  const T* x = static_cast<const T*>(p.x);
  const FlowT* flow = static_cast<const FlowT*>(p.flow);
  T* out = static_cast<T*>(p.out);
  T* mask = static_cast<T*>(p.mask);
  const int64_t* xs = p.x_stride;
  const int64_t* fs = p.flow_stride;
  const int64_t* os = p.out_stride;
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t i = 0; i < p.H; ++i) {
      for (int64_t j = 0; j < p.W; ++j) {
        const FlowT* f = flow + b * fs[0] + i * fs[2] + j * fs[3];
        const WarpTaps t = warp_taps(i, j, load_f(f), load_f(f + fs[1]), p.H, p.W, p.zeros);
        int64_t src[4];
        for (int k = 0; k < 4; ++k) src[k] = (t.off[k] / p.W) * xs[2] + (t.off[k] % p.W) * xs[3];
        for (int64_t c = 0; c < p.C; ++c) {
          const T* xc = x + b * xs[0] + c * xs[1];
          const float v = warp_combine(t, load_f(xc + src[0]), load_f(xc + src[1]), load_f(xc + src[2]),
                                       load_f(xc + src[3]), p.zeros);
          store_f(out + b * os[0] + c * os[1] + i * os[2] + j * os[3], v);
        }
        if (mask) store_f(mask + (b * p.H + i) * p.W + j, t.inside ? 1.f : 0.f);
      }
    }
  }
}

template <typename T>
void warp_dispatch_flow(const WarpParams& p) {
  FF_DISPATCH_HOST(p.flow_dtype, F, "warp", warp_impl<T, F>(p));
}

}  // namespace

void warp_cpu(const WarpParams& p) {
  FF_CHECK(!p.mask || p.zeros, "warp", "a validity mask needs padding='zeros'");
  if (p.B == 0 || p.C == 0 || p.H == 0 || p.W == 0) return;
  FF_DISPATCH_HOST(p.x_dtype, T, "warp", warp_dispatch_flow<T>(p));
}

}  // namespace fastflow
