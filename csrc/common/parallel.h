// Row-parallel loops of the CPU versions of the memory-bound ops (normalize_pack_cpu.cpp,
// upsample_flow_cpu.cpp): split over rows on several threads (std::thread: the extension links
// neither OpenMP nor torch); FASTFLOW_CPU_IO_THREADS caps the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <system_error>
#include <thread>
#include <vector>

namespace fastflow {
namespace cpu {

// Below this many elements per thread, a thread costs more to start than it saves.
constexpr int64_t kMinWorkPerThread = 1 << 16;
constexpr int64_t kMaxThreads = 16;

// Threads the CPU kernels may use: FASTFLOW_CPU_IO_THREADS if set (>= 1), else the hardware's.
inline int64_t cpu_op_threads() {
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

// f(begin, end) over [0, n) in contiguous chunks, on up to cpu_op_threads() threads (the calling one
// included). Falls back to fewer threads if the system refuses to start one.
template <typename F>
inline void parallel_rows(int64_t n, int64_t work_per_row, const F& f) {
  const int64_t hw = cpu_op_threads();
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

}  // namespace cpu
}  // namespace fastflow
