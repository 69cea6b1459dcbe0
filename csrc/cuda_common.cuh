// CUDA-side helpers: error reporting with the op's name, device/stream from the binding's integers.
#pragma once

#include <cuda_runtime.h>

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

}  // namespace fastflow

// FF_DISPATCH_CUDA(dtype, T, op, body): body with T = float / Half / BFloat16 (16-bit types are
// bit-compatible with __half / __nv_bfloat16; load_f/store_f use the hardware conversions).
#define FF_DISPATCH_CUDA FF_DISPATCH_HOST
