// Known-answer probes of the PTX wrappers in ptx.cuh (ptx_probe.cu): one warp runs one wrapped
// instruction on given operands and writes what it got. The same kernels run on a GPU (fastflow._C)
// and through the SIMT host runtime (fastflow._simt); tests/test_simt_ptx.py requires identical
// bits, which pins the runtime's ldmatrix / mma / cvt / cp.async semantics to the hardware.
#pragma once

#include <cstdint>

namespace fastflow {

enum class PtxProbe : int {
  kLdmatrix = 0,  // a: u32[256] shared-memory image (1 KB), b: u32[32] row byte offsets -> out u32[32][4]
  kMmaF16 = 1,    // a: u32[32][4] A fragments, b: u32[32][2] B fragments, c: f32[32][4] -> out f32[32][4]
  kMmaBF16 = 2,   // as kMmaF16
  kMmaTF32 = 3,   // as kMmaF16 (m16n8k8: operands must already be tf32)
  kCvtTF32 = 4,   // a: u32[n] fp32 bits -> out u32[n]
  kCpAsync = 5,   // a: u32[32][4] source chunks, b: i32[32] valid flags -> out u32[32][4] (0 where invalid)
};

void ptx_probe_cuda(int kind, const void* a, const void* b, const void* c, void* out, int n, int device,
                    int64_t stream);

}  // namespace fastflow
