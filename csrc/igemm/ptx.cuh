// PTX wrappers of the implicit-GEMM kernels (igemm.cuh): cp.async (16 bytes, zero-fill, commit,
// wait_group), ldmatrix.x4, mma.sync (fp16, bf16, tf32) and cvt.rna.tf32, with a host branch for the
// SIMT build. Each is checked against a known answer by the probe kernels (ptx_probe.cu).
#pragma once

#include <cstdint>

#include "common/cuda_common.cuh"
#include "igemm/igemm_math.h"

namespace fastflow {
namespace igemm {

// ---- device helpers -----------------------------------------------------------------------------
#if defined(FASTFLOW_SIMT)
// Host build: the SIMT runtime implements each instruction (csrc/simt/warp_ops.cpp) with the PTX
// ISA's semantics: cp.async lands at the wait_group that retires it, ldmatrix and mma gather the
// warp's 32 lanes and use the ISA fragment layouts.
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return ::ffsim::smem_addr(p); }
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  ::ffsim::cp_async(dst, src, 16, valid ? 16 : 0);
}
__device__ __forceinline__ void cp_async_commit() { ::ffsim::cp_async_commit(); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  ::ffsim::cp_async_wait(kPending);
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) { ::ffsim::ldmatrix_x4(r, addr); }
__device__ __forceinline__ uint32_t to_tf32(uint32_t x) { return ::ffsim::cvt_rna_tf32(x); }
template <MathMode kMode>
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  static_assert(kMode != MathMode::kF32Simt, "mma path is fp16, bf16 or tf32");
  ::ffsim::mma_sync(kMode == MathMode::kF16 ? ::ffsim::MmaKind::kF16
                    : kMode == MathMode::kBF16 ? ::ffsim::MmaKind::kBF16
                                               : ::ffsim::MmaKind::kTF32,
                    d, a, b);
}
#else
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; src_bytes = 0 zero-fills the destination without reading. The
// "memory" clobbers keep ordinary shared-memory accesses from moving across issue and wait.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  const uint64_t gsrc = static_cast<uint64_t>(__cvta_generic_to_global(src));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gsrc), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Four 8x8 b16 matrices (= four 8-row x 16-byte blocks; for fp32 data each is 8 x 4 values).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ uint32_t to_tf32(uint32_t x) {
  uint32_t y;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(y) : "f"(__uint_as_float(x)));
  return y;
}

// One mma of the 32-byte K step: m16n8k16 for fp16/bf16, m16n8k8 for tf32. fp32 accumulate.
template <MathMode kMode>
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (kMode == MathMode::kF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else if constexpr (kMode == MathMode::kBF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    static_assert(kMode == MathMode::kTF32, "mma path is fp16, bf16 or tf32");
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}
#endif  // FASTFLOW_SIMT

}  // namespace igemm
}  // namespace fastflow
