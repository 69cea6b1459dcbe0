// CPU versions of the input normalisation/packing and the final flow upsample (see ops.h).
//
// Both are memory-bound passes over a few MB, so they are split over rows on several threads
// (std::thread: the extension does not link OpenMP or torch) and written so the compiler can
// vectorise the inner loops with the baseline ISA: independent float lanes for the sums (no
// reassociation needed), unit-stride loops over x for the packing and the upsample.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <system_error>
#include <thread>
#include <vector>

#include "../ops.h"
#include "../upsample_math.h"

namespace fastflow {

namespace {

// Below this many elements per thread, a thread costs more to start than it saves.
constexpr int64_t kMinWorkPerThread = 1 << 16;
constexpr int64_t kMaxThreads = 16;
constexpr int kLanes = 16;

// Threads the CPU kernels may use: FASTFLOW_CPU_IO_THREADS if set (>= 1), else the hardware's.
int64_t io_threads() {
  static const int64_t n = [] {
    const char* env = std::getenv("FASTFLOW_CPU_IO_THREADS");
    if (env != nullptr && *env != '\0') {
      char* end = nullptr;
      const long v = std::strtol(env, &end, 10);
      if (end != env && *end == '\0' && v >= 1) return int64_t(v);
    }
    return std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency()));
  }();
  return n;
}

// f(begin, end) over [0, n) in contiguous chunks, on up to io_threads() threads (the calling one
// included). Falls back to fewer threads if the system refuses to start one.
template <typename F>
void parallel_rows(int64_t n, int64_t work_per_row, const F& f) {
  const int64_t hw = io_threads();
  const int64_t by_work = std::max<int64_t>(1, n * std::max<int64_t>(1, work_per_row) / kMinWorkPerThread);
  const int64_t threads = std::min({hw, kMaxThreads, n, by_work});
  if (threads <= 1) {
    if (n > 0) f(int64_t(0), n);
    return;
  }
  const int64_t chunk = (n + threads - 1) / threads;
  std::vector<std::thread> pool;
  int64_t next = chunk;  // [0, chunk) runs on this thread
  for (int64_t t = 1; t < threads && next < n; ++t, next += chunk) {
    const int64_t b = next, e = std::min(n, next + chunk);
    try {
      pool.emplace_back([&f, b, e] { f(b, e); });
    } catch (const std::system_error&) {
      break;  // no more threads: the rest runs here
    }
  }
  f(int64_t(0), std::min(n, chunk));
  if (next < n) f(next, n);
  for (auto& t : pool) t.join();
}

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
void normalize_pack_impl(const NormalizeParams& p) {
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

template <typename InT>
void upsample_flow_impl(const UpsampleParams& p) {
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
