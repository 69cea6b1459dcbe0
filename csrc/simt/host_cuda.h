// SIMT host build of fastflow's CUDA kernels: force-included (g++ -x c++ -DFASTFLOW_SIMT -include
// simt/host_cuda.h) into every csrc/*.cu compiled for fastflow._simt. It supplies what the kernel
// sources take from nvcc and the CUDA runtime: the keywords, the vector types with CUDA's
// alignment, threadIdx/blockIdx/blockDim/gridDim of the running fiber, __syncthreads and
// __shfl_xor_sync, the subset of the runtime API the launchers call, and ffsim::launch behind
// FF_LAUNCH (cuda_common.cuh). The runtime itself is csrc/simt/*.cpp (see runtime.h).
//
// `__shared__` and `<<<...>>>` are deliberately left undefined: kernels must use FF_EXTERN_SHARED,
// FF_SHARED_ARRAY and FF_LAUNCH, so the host build fails to compile code that bypasses them.
#pragma once

#ifndef FASTFLOW_SIMT
#define FASTFLOW_SIMT 1
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- CUDA keywords ------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

// ---- vector types, with CUDA's alignment -----------------------------------------------------------
// Copying one from or to memory is a vector access on the GPU, which must be aligned to its size:
// the copy constructor and assignment report misaligned ones (the compiler may split the copy into
// scalar accesses, whose own alignment says nothing about the vector's).
namespace ffsim {
void vector_access(const void* p, size_t bytes, bool write, const void* pc);
}
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
#define FFSIM_VECTOR_COPY(NAME, BYTES, ...)                                                \
  NAME(const NAME& o) : __VA_ARGS__ {                                                      \
    ::ffsim::vector_access(&o, BYTES, false, __builtin_return_address(0));                 \
  }                                                                                        \
  NAME& operator=(const NAME& o) {                                                         \
    ::ffsim::vector_access(this, BYTES, true, __builtin_return_address(0));                \
    std::memcpy(static_cast<void*>(this), &o, BYTES);                                      \
    return *this;                                                                          \
  }
struct alignas(8) float2 {
  float x, y;
  float2() = default;
  constexpr float2(float a, float b) : x(a), y(b) {}
  FFSIM_VECTOR_COPY(float2, 8, x(o.x), y(o.y))
};
struct alignas(16) float4 {
  float x, y, z, w;
  float4() = default;
  constexpr float4(float a, float b, float c, float d) : x(a), y(b), z(c), w(d) {}
  FFSIM_VECTOR_COPY(float4, 16, x(o.x), y(o.y), z(o.z), w(o.w))
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
  uint4() = default;
  constexpr uint4(unsigned a, unsigned b, unsigned c, unsigned d) : x(a), y(b), z(c), w(d) {}
  FFSIM_VECTOR_COPY(uint4, 16, x(o.x), y(o.y), z(o.z), w(o.w))
};
#undef FFSIM_VECTOR_COPY
inline float2 make_float2(float x, float y) { return float2(x, y); }
inline float4 make_float4(float x, float y, float z, float w) { return float4(x, y, z, w); }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4(x, y, z, w); }

struct alignas(4) __half2 {
  uint16_t x, y;  // bits of the low and high half
};
namespace ffsim {
float half_bits_to_float(uint16_t h);
}
inline float2 __half22float2(__half2 h) {
  return {::ffsim::half_bits_to_float(h.x), ::ffsim::half_bits_to_float(h.y)};
}
inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

// ---- the CUDA runtime API subset the launchers use ------------------------------------------------
typedef struct CUstream_st* cudaStream_t;
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,
  cudaErrorLaunchFailure = 719,
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
enum cudaSharedCarveout { cudaSharedmemCarveoutDefault = -1, cudaSharedmemCarveoutMaxShared = 100, cudaSharedmemCarveoutMaxL1 = 0 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };

namespace ffsim {
cudaError_t set_func_attr(const void* fn, int attr, int value);
cudaError_t device_attr(int* value, int attr, int device);
cudaError_t take_last_error();
const char* error_name(cudaError_t e);
const char* error_string(cudaError_t e);
}  // namespace ffsim

inline cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetLastError() { return ::ffsim::take_last_error(); }
inline const char* cudaGetErrorName(cudaError_t e) { return ::ffsim::error_name(e); }
inline const char* cudaGetErrorString(cudaError_t e) { return ::ffsim::error_string(e); }
inline cudaError_t cudaDriverGetVersion(int* v) {
  *v = 0;
  return cudaSuccess;
}
inline cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int device) {
  return ::ffsim::device_attr(v, int(attr), device);
}
template <typename F>
cudaError_t cudaFuncSetAttribute(F* fn, cudaFuncAttribute attr, int value) {
  return ::ffsim::set_func_attr(reinterpret_cast<const void*>(fn), int(attr), value);
}

// ---- execution model ------------------------------------------------------------------------------
namespace ffsim {

// The running fiber's coordinates, by value (kernel code never reads the runtime's memory).
uint3 thread_idx();
uint3 block_idx();
dim3 block_dim();
dim3 grid_dim();

using KernelBody = void (*)(const void* params);
void run_grid(const char* kernel, const void* kernel_id, dim3 grid, dim3 block, size_t dyn_smem, KernelBody body,
              const void* params, size_t params_bytes);
void syncthreads(const char* file, int line);
void* dynamic_smem(size_t align);
void* static_smem(const void* site, const char* name, size_t bytes, size_t align);
float shfl_xor(unsigned mask, float value, int lane_mask, int width = 32);

// PTX instructions of ptx.cuh (warp_ops.cpp).
uint32_t smem_addr(const void* p);
void cp_async(uint32_t dst, const void* src, int cp_size, int src_size);
void cp_async_commit();
void cp_async_wait(int pending);
void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr);
uint32_t cvt_rna_tf32(uint32_t x);
enum class MmaKind { kF16, kBF16, kTF32 };
void mma_sync(MmaKind kind, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);

// "fastflow::igemm::igemm_kernel<1, fastflow::MathMode::kF16>" from the compiler's signature.
const char* kernel_name_from_signature(const char* pretty_function);
template <auto Kernel>
const char* kernel_name() {
  static const char* name = kernel_name_from_signature(__PRETTY_FUNCTION__);
  return name;
}

// FF_LAUNCH: the arguments are converted to the kernel's parameter types once (CUDA's parameter
// space; the runtime checks that kernels only read it), then every fiber calls the kernel with
// copies of them.
template <typename... P, typename... A>
void launch_params(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t smem, A&&... args) {
  struct Params {
    void (*kernel)(P...);
    std::tuple<std::decay_t<P>...> values;
  } params{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
  run_grid(name, reinterpret_cast<const void*>(kernel), grid, block, smem,
           [](const void* p) {
             const Params* x = static_cast<const Params*>(p);
             std::apply(x->kernel, x->values);
           },
           &params, sizeof params);
}
template <auto Kernel, typename G, typename B, typename... A>
void launch(G grid, B block, size_t smem, cudaStream_t, A&&... args) {
  launch_params(Kernel, kernel_name<Kernel>(), dim3(grid), dim3(block), smem, std::forward<A>(args)...);
}

}  // namespace ffsim

#define threadIdx (::ffsim::thread_idx())
#define blockIdx (::ffsim::block_idx())
#define blockDim (::ffsim::block_dim())
#define gridDim (::ffsim::grid_dim())
#define __syncthreads() ::ffsim::syncthreads(__FILE__, __LINE__)
#define __shfl_xor_sync(MASK, VALUE, ...) ::ffsim::shfl_xor(MASK, VALUE, __VA_ARGS__)
