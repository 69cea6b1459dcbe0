// conv2d_lrelu and deconv_lrelu, CPU: slow host emulation of the CUDA implicit-GEMM kernels
// (igemm.cu), for tests on machines without a GPU. It runs the kernels' tiling in scalar fp32: the same plan
// (tile config, k-tile depth, split-K ranges), the same loader addressing chunk by chunk with the
// incremental k state (igemm_math.h), zero-filled chunks where the kernel's cp.async zero-fills,
// split-K partials in a caller-provided workspace plus the reduce pass, and the epilogue's slice
// addressing. Operands are rounded to the kernel's input precision (fp16/bf16 as stored, TF32 with
// cvt.rna's rounding); only the order of the fp32 additions inside a k tile differs from the GPU.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "igemm/igemm.h"

namespace fastflow {

namespace {

template <typename T>
void igemm_emulate_impl(const IgemmParams& p, const IgemmPlan& plan) {
  const IgemmShape& s = p.shape;
  const T* x = static_cast<const T*>(p.x);        // [B, H, W, Cx]
  const T* w = static_cast<const T*>(p.w);        // [Z, N, K]
  const T* bias = static_cast<const T*>(p.bias);  // [N] or null
  T* out = static_cast<T*>(p.out);                // [B, OH, OW, Ctot]
  const bool tf32 = std::is_same<T, float>::value && p.allow_tf32;
  const int chunk = kChunkBytes / int(sizeof(T));
  const int bm = plan.bm, bn = plan.bn, bk = plan.bk, kchunks = bk / chunk;
  const int M = s.M(), N = s.N();
  auto operand = [&](const T* ptr) {
    const float v = load_f(ptr);
    return tf32 ? tf32_round(v) : v;
  };
  auto epilogue = [&](int z, int m, int n, float v) {
    if (bias) v += load_f(bias + n);
    store_f(out + out_index(s, out_pixel(s, z, m), n), leaky_relu(v, p.slope));
  };

  std::vector<float> As(size_t(bm) * bk), Bs(size_t(bn) * bk), acc(size_t(bm) * bn);
  std::vector<RowOrigin> rows(bm);
  std::vector<KState> kst(kchunks);
  for (int z = 0; z < s.Z(); ++z) {
    for (int m0 = 0; m0 < M; m0 += bm) {
      for (int r = 0; r < bm; ++r) rows[r] = row_origin(s, m0 + r);
      for (int n0 = 0; n0 < N; n0 += bn) {
        for (int split = 0; split < plan.splits; ++split) {
          int kt0, kt1;
          split_range(plan.k_tiles, plan.tiles_per_split, split, kt0, kt1);
          std::fill(acc.begin(), acc.end(), 0.f);
          for (int kc = 0; kc < kchunks; ++kc) kst[kc] = k_decode(s, kt0 * bk + kc * chunk);
          for (int kt = kt0; kt < kt1; ++kt) {
            for (int kc = 0; kc < kchunks; ++kc) {
              for (int r = 0; r < bm; ++r) {
                const int64_t off = a_offset(s, rows[r], kst[kc], z);
                for (int e = 0; e < chunk; ++e) As[size_t(r) * bk + kc * chunk + e] = off < 0 ? 0.f : operand(x + off + e);
              }
              const int k = kt * bk + kc * chunk;
              for (int n = 0; n < bn; ++n) {
                const int64_t off = b_offset(s, z, n0 + n, k);
                for (int e = 0; e < chunk; ++e) Bs[size_t(n) * bk + kc * chunk + e] = off < 0 ? 0.f : operand(w + off + e);
              }
              k_advance(s, kst[kc], bk);
            }
            for (int r = 0; r < bm && m0 + r < M; ++r)
              for (int n = 0; n < bn && n0 + n < N; ++n) {
                float a = acc[size_t(r) * bn + n];
                for (int kk = 0; kk < bk; ++kk) a += As[size_t(r) * bk + kk] * Bs[size_t(n) * bk + kk];
                acc[size_t(r) * bn + n] = a;
              }
          }
          for (int r = 0; r < bm && m0 + r < M; ++r)
            for (int n = 0; n < bn && n0 + n < N; ++n) {
              const float v = acc[size_t(r) * bn + n];
              if (plan.splits > 1)
                p.workspace[ws_index(s, split, z, m0 + r, n0 + n)] = v;
              else
                epilogue(z, m0 + r, n0 + n, v);
            }
        }
      }
    }
  }
  if (plan.splits == 1) return;
  for (int z = 0; z < s.Z(); ++z)
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        float v = 0.f;
        for (int split = 0; split < plan.splits; ++split) v += p.workspace[ws_index(s, split, z, m, n)];
        epilogue(z, m, n, v);
      }
}

}  // namespace

void igemm_emulate(const IgemmParams& p, const IgemmPlan& plan) {
  const char* op = p.shape.deconv ? "deconv_lrelu" : "conv2d_lrelu";
  FF_CHECK(channel_aligned(p.shape.Cx), op, "input channels must be a multiple of ", kChannelAlign, ", got ", p.shape.Cx);
  FF_CHECK(plan.splits == 1 || (p.workspace && p.workspace_elems >= plan.workspace_elems), op,
           "split-K needs a float32 workspace of ", plan.workspace_elems, " elements");
  if (p.shape.M() == 0 || p.shape.N() == 0) return;
  FF_DISPATCH_HOST(p.dtype, T, op, igemm_emulate_impl<T>(p, plan));
}

}  // namespace fastflow
