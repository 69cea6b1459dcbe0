// upsample_flow, CPU version (CUDA: upsample_flow.cu; reference: fastflow.reference.upsample_flow;
// parameters: upsample_flow.h). Unit-stride loops over x that the compiler can vectorise; a
// memory-bound pass, split over output rows on several threads (common/parallel.h).
#include <vector>

#include "ops/upsample_flow/upsample_flow.h"
#include "ops/upsample_flow/upsample_flow_math.h"
#include "common/parallel.h"

namespace fastflow {

namespace {

using cpu::parallel_rows;

template <typename InT>
void upsample_flow_impl(const UpsampleFlowParams& p) {
  const InT* in = static_cast<const InT*>(p.in);
  const int64_t H = 4 * p.h, W = 4 * p.w;
  std::vector<int64_t> c0(static_cast<size_t>(W)), c1(static_cast<size_t>(W));
  std::vector<float> l1(static_cast<size_t>(W));
  for (int64_t x = 0; x < W; ++x) {
    const UpTap t = up4_tap(x, p.w);
    c0[size_t(x)] = t.i0 * p.in_stride[3];
    c1[size_t(x)] = t.i1 * p.in_stride[3];
    l1[size_t(x)] = t.l1;
  }
  // One output row per item: (b, c, y).
  parallel_rows(p.B * 2 * H, W, [&](int64_t r0, int64_t r1) {
    std::vector<float> top(static_cast<size_t>(W)), bot(static_cast<size_t>(W));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t y = r % H, bc = r / H, b = bc / 2, c = bc % 2;
      const InT* plane = in + b * p.in_stride[0] + c * p.in_stride[1];
      const UpTap ty = up4_tap(y, p.h);
      const InT* a0 = plane + ty.i0 * p.in_stride[2];
      const InT* a1 = plane + ty.i1 * p.in_stride[2];
      for (int64_t x = 0; x < W; ++x) {  // gathers: kept apart from the arithmetic below
        top[size_t(x)] = (1.f - l1[size_t(x)]) * load_f(a0 + c0[size_t(x)]) + l1[size_t(x)] * load_f(a0 + c1[size_t(x)]);
        bot[size_t(x)] = (1.f - l1[size_t(x)]) * load_f(a1 + c0[size_t(x)]) + l1[size_t(x)] * load_f(a1 + c1[size_t(x)]);
      }
      float* o = p.out + (bc * H + y) * W;
      for (int64_t x = 0; x < W; ++x) o[x] = p.div_flow * ((1.f - ty.l1) * top[size_t(x)] + ty.l1 * bot[size_t(x)]);
    }
  });
}

}  // namespace

void upsample_flow_cpu(const UpsampleFlowParams& p) {
  if (p.B == 0 || p.h == 0 || p.w == 0) return;
  FF_DISPATCH_HOST(p.in_dtype, T, "upsample_flow", upsample_flow_impl<T>(p));
}

}  // namespace fastflow
