// fastflow common helpers: argument checks, CUDA error reporting, the dtype enum shared with
// Python, and fp16/bf16 <-> fp32 conversions usable on the host (CPU ops) and the device.
//
// The extension is torch-free (docs/design.md section 4): tensors arrive as raw pointers plus sizes and
// strides, dtypes as the DType enum below, CUDA streams as integers. Python validates everything;
// the checks here are the cheap second line that turns a bad call into an exception, never a crash.
#pragma once

#include <cstdint>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define FF_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FF_HOST_DEVICE inline
#endif

namespace fastflow {

// Exported as fastflow._C.DTYPE_CODES (bindings.cpp), which fastflow.ops.DTYPE_CODES reads.
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

inline DType to_dtype(int code, const char* op) {
  if (code < 0 || code > 2) {
    std::ostringstream s;
    s << "fastflow." << op << ": unknown dtype code " << code;
    throw std::invalid_argument(s.str());
  }
  return static_cast<DType>(code);
}

// FF_CHECK(cond, op, message parts...): throws std::invalid_argument (-> Python ValueError).
template <typename... Args>
[[noreturn]] void fail(const char* op, const Args&... parts) {
  std::ostringstream s;
  s << "fastflow." << op << ": ";
  (s << ... << parts);
  throw std::invalid_argument(s.str());
}
#define FF_CHECK(cond, op, ...)                  \
  do {                                           \
    if (!(cond)) ::fastflow::fail(op, __VA_ARGS__); \
  } while (0)

// 16-bit storage types for host code. The CUDA kernels use __half / __nv_bfloat16 instead; the bit
// layouts are identical, so one pointer serves both.
struct Half { uint16_t bits; };
struct BFloat16 { uint16_t bits; };

FF_HOST_DEVICE uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
FF_HOST_DEVICE float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// IEEE binary16 -> binary32, exact.
FF_HOST_DEVICE float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return bits_f32(sign | 0x7F800000u | (mant << 13));  // inf / nan
  if (exp != 0) return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
  // zero or subnormal: mant * 2^-24, exact in float
  const float v = float(mant) * 5.9604644775390625e-8f;
  return sign ? -v : v;
}

// binary32 -> binary16, round to nearest even (matches __float2half_rn and torch's .half()).
FF_HOST_DEVICE uint16_t float_to_half(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) return sign | (ax > 0x7F800000u ? 0x7E00u : 0x7C00u);
  if (ax >= 0x477FF000u) return sign | 0x7C00u;  // >= 65520 rounds to inf
  if (ax < 0x38800000u) {
    // Result is subnormal or zero: count units of 2^-24, rounding half to even by hand.
    const uint32_t e = ax >> 23;
    if (e < 102) return sign;  // < 2^-25: rounds to zero
    const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126u - e;  // value = m * 2^(e-150) = (m >> shift) units of 2^-24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return sign | uint16_t(q);
  }
  uint32_t h = ((((ax >> 23) - 112u) << 10) | ((ax & 0x7FFFFFu) >> 13));
  const uint32_t rem = ax & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carries into the exponent correctly
  return sign | uint16_t(h);
}

FF_HOST_DEVICE float bf16_to_float(uint16_t b) { return bits_f32(uint32_t(b) << 16); }

// binary32 -> bfloat16, round to nearest even; NaN stays a (quiet) NaN.
FF_HOST_DEVICE uint16_t float_to_bf16(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((x >> 16) | 0x40u);
  return uint16_t((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

// Scalar load/store through float, for code templated on the storage type. On the device the
// hardware conversions are used (same rounding: nearest even).
FF_HOST_DEVICE float load_f(const float* p) { return *p; }
FF_HOST_DEVICE void store_f(float* p, float v) { *p = v; }
#if defined(__CUDA_ARCH__)
FF_HOST_DEVICE float load_f(const Half* p) { return __half2float(__ushort_as_half(p->bits)); }
FF_HOST_DEVICE float load_f(const BFloat16* p) { return __bfloat162float(__ushort_as_bfloat16(p->bits)); }
FF_HOST_DEVICE void store_f(Half* p, float v) { p->bits = __half_as_ushort(__float2half_rn(v)); }
FF_HOST_DEVICE void store_f(BFloat16* p, float v) { p->bits = __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
#else
FF_HOST_DEVICE float load_f(const Half* p) { return half_to_float(p->bits); }
FF_HOST_DEVICE float load_f(const BFloat16* p) { return bf16_to_float(p->bits); }
FF_HOST_DEVICE void store_f(Half* p, float v) { p->bits = float_to_half(v); }
FF_HOST_DEVICE void store_f(BFloat16* p, float v) { p->bits = float_to_bf16(v); }
#endif

}  // namespace fastflow

// FF_DISPATCH_HOST(dtype, T, op, body): runs body with T = float / Half / BFloat16.
#define FF_DISPATCH_HOST(DT, T, OP, ...)                                      \
  switch (DT) {                                                               \
    case ::fastflow::DType::kFloat32: { using T = float; __VA_ARGS__; break; } \
    case ::fastflow::DType::kFloat16: { using T = ::fastflow::Half; __VA_ARGS__; break; } \
    case ::fastflow::DType::kBFloat16: { using T = ::fastflow::BFloat16; __VA_ARGS__; break; } \
    default: ::fastflow::fail(OP, "unsupported dtype");                       \
  }
