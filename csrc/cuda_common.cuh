// CUDA-side helpers: error reporting with the op's name, device/stream from the binding's integers,
// and the few constructs that differ between nvcc and the SIMT host build (csrc/simt/: the same
// kernel sources compiled as host C++ and run on the CPU, one fiber per CUDA thread):
//   FF_LAUNCH(KERNEL, grid, block, smem, stream, args...)  kernel launch (KERNEL: a kernel or a
//       template-id in parentheses, e.g. (warp_kernel<T, F>), never a variable)
//   FF_EXTERN_SHARED(T, name, align)                       extern __shared__ (dynamic) array
//   FF_SHARED_ARRAY(T, name, n)                            static __shared__ T name[n]
// Kernel bodies are otherwise plain CUDA; the PTX wrappers in ptx.cuh have a host branch.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <sstream>
#include <stdexcept>

#include "common.h"

namespace fastflow {

// Throws std::runtime_error("fastflow.<op>: CUDA error ...") (-> Python RuntimeError).
inline void cuda_check(cudaError_t err, const char* op, const char* what) {
  if (err == cudaSuccess) return;
  std::ostringstream s;
  s << "fastflow." << op << ": CUDA error during " << what << ": " << cudaGetErrorName(err) << " ("
    << cudaGetErrorString(err) << ")";
  if (err == cudaErrorInsufficientDriver) {
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    s << "; the driver supports CUDA " << drv / 1000 << "." << (drv % 1000) / 10 << " but fastflow was built with CUDA "
      << rt / 1000 << "." << (rt % 1000) / 10 << " (static runtime): rebuild with an nvcc the driver supports";
  }
  throw std::runtime_error(s.str());
}

// Makes `device` current for this thread (our static CUDA runtime keeps its own notion of the
// current device, separate from torch's) and returns the caller's stream.
inline cudaStream_t prepare_launch(int device, int64_t stream, const char* op) {
  cuda_check(cudaSetDevice(device), op, "cudaSetDevice");
  return reinterpret_cast<cudaStream_t>(static_cast<intptr_t>(stream));
}

// After a launch: reports configuration errors (bad grid, too much shared memory) at once.
inline void launch_check(const char* op) { cuda_check(cudaGetLastError(), op, "kernel launch"); }

inline unsigned ceil_div(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

// Raises Kernel's dynamic shared-memory limit to `bytes` once per device (devices >= 32: every call).
// The attribute belongs to the function, not the launch: setting it per launch to that launch's
// size would race between threads launching the same kernel with different sizes. Doing it once
// also keeps launches inside a CUDA-graph capture free of non-stream API calls after the first.
template <auto Kernel>
void raise_smem_limit_once(int bytes, int device, const char* op) {
  static std::atomic<uint32_t> raised{0};
  const uint32_t bit = device < 32 ? (1u << device) : 0u;
  if (bit && (raised.load(std::memory_order_acquire) & bit)) return;
  cuda_check(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), op,
             "cudaFuncSetAttribute");
  // Prefer the largest shared-memory carveout, so that as many blocks as the kernel's
  // __launch_bounds__ ask for fit (two 80 KB blocks of the 128x128 igemm tile an SM).
  cuda_check(cudaFuncSetAttribute(Kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                  int(cudaSharedmemCarveoutMaxShared)), op, "cudaFuncSetAttribute");
  raised.fetch_or(bit, std::memory_order_acq_rel);
}

}  // namespace fastflow

#if defined(FASTFLOW_SIMT)
// (The address is taken first: GCC does not instantiate a function template specialization that
// only appears as a template argument.)
#define FF_LAUNCH(KERNEL, GRID, BLOCK, SMEM, STREAM, ...) \
  do {                                                    \
    static_cast<void>(KERNEL);                            \
    ::ffsim::launch<(KERNEL)>(GRID, BLOCK, SMEM, STREAM, __VA_ARGS__); \
  } while (0)
#define FF_EXTERN_SHARED(T, NAME, ALIGN) T* NAME = static_cast<T*>(::ffsim::dynamic_smem(ALIGN))
#define FF_SHARED_ARRAY(T, NAME, N)                                                              \
  static const char NAME##_ffsim_site = 0;                                                       \
  T* NAME = static_cast<T*>(::ffsim::static_smem(&NAME##_ffsim_site, #NAME, sizeof(T) * (N), alignof(T)))
#else
#define FF_LAUNCH(KERNEL, GRID, BLOCK, SMEM, STREAM, ...) KERNEL<<<GRID, BLOCK, SMEM, STREAM>>>(__VA_ARGS__)
#define FF_EXTERN_SHARED(T, NAME, ALIGN) extern __shared__ __align__(ALIGN) T NAME[]
#define FF_SHARED_ARRAY(T, NAME, N) __shared__ T NAME[N]
#endif

// FF_BOOL_SWITCH(cond, NAME, body): body with `constexpr bool NAME` equal to cond.
#define FF_BOOL_SWITCH(COND, NAME, ...)   \
  do {                                    \
    if (COND) {                           \
      constexpr bool NAME = true;         \
      __VA_ARGS__;                        \
    } else {                              \
      constexpr bool NAME = false;        \
      __VA_ARGS__;                        \
    }                                     \
  } while (0)

// FF_DISPATCH_CUDA(dtype, T, op, body): body with T = float / Half / BFloat16 (16-bit types are
// bit-compatible with __half / __nv_bfloat16; load_f/store_f use the hardware conversions).
#define FF_DISPATCH_CUDA FF_DISPATCH_HOST
