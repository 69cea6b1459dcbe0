// Known-answer probe kernels of the PTX wrappers (see ptx_probe.h). One warp each; the shared
// memory they use is written in full before it is read, and every lane writes its own outputs.
#include "igemm/ptx.cuh"
#include "ptx_probe/ptx_probe.h"

namespace fastflow {

namespace {

constexpr int kProbeSmemBytes = 1024;

__global__ void __launch_bounds__(32) probe_ldmatrix(const uint32_t* image, const uint32_t* row_offsets, uint32_t* out) {
  FF_EXTERN_SHARED(unsigned char, smem, 16);
  const int lane = threadIdx.x;
  for (int i = lane; i < kProbeSmemBytes / 4; i += 32) reinterpret_cast<uint32_t*>(smem)[i] = image[i];
  __syncthreads();
  uint32_t r[4];
  igemm::ldmatrix_x4(r, igemm::smem_u32(smem + row_offsets[lane]));
  for (int j = 0; j < 4; ++j) out[lane * 4 + j] = r[j];
}

template <MathMode kMode>
__global__ void __launch_bounds__(32) probe_mma(const uint32_t* a, const uint32_t* b, const float* c, float* d) {
  const int lane = threadIdx.x;
  const uint32_t ra[4] = {a[lane * 4], a[lane * 4 + 1], a[lane * 4 + 2], a[lane * 4 + 3]};
  const uint32_t rb[2] = {b[lane * 2], b[lane * 2 + 1]};
  float acc[4] = {c[lane * 4], c[lane * 4 + 1], c[lane * 4 + 2], c[lane * 4 + 3]};
  igemm::mma<kMode>(acc, ra, rb);
  for (int j = 0; j < 4; ++j) d[lane * 4 + j] = acc[j];
}

__global__ void __launch_bounds__(32) probe_cvt_tf32(const uint32_t* in, uint32_t* out, int n) {
  for (int i = threadIdx.x; i < n; i += 32) out[i] = igemm::to_tf32(in[i]);
}

__global__ void __launch_bounds__(32) probe_cp_async(const uint4* src, const int* valid, uint4* out) {
  FF_EXTERN_SHARED(uint4, chunks, 16);  // (extern shared arrays of one file need distinct names)
  const int lane = threadIdx.x;
  igemm::cp_async_16(igemm::smem_u32(chunks + lane), src + lane, valid[lane] != 0);
  igemm::cp_async_commit();
  igemm::cp_async_wait<0>();
  out[lane] = chunks[lane];  // this lane's own copy: visible to it after the wait, no barrier needed
}

}  // namespace

void ptx_probe_cuda(int kind, const void* a, const void* b, const void* c, void* out, int n, int device,
                    int64_t stream) {
  const char* op = "ptx_probe";
  cudaStream_t st = prepare_launch(device, stream, op);
  const auto* ua = static_cast<const uint32_t*>(a);
  const auto* ub = static_cast<const uint32_t*>(b);
  switch (PtxProbe(kind)) {
    case PtxProbe::kLdmatrix:
      FF_LAUNCH(probe_ldmatrix, 1, 32, kProbeSmemBytes, st, ua, ub, static_cast<uint32_t*>(out));
      break;
    case PtxProbe::kMmaF16:
      FF_LAUNCH(probe_mma<MathMode::kF16>, 1, 32, 0, st, ua, ub, static_cast<const float*>(c), static_cast<float*>(out));
      break;
    case PtxProbe::kMmaBF16:
      FF_LAUNCH(probe_mma<MathMode::kBF16>, 1, 32, 0, st, ua, ub, static_cast<const float*>(c), static_cast<float*>(out));
      break;
    case PtxProbe::kMmaTF32:
      FF_LAUNCH(probe_mma<MathMode::kTF32>, 1, 32, 0, st, ua, ub, static_cast<const float*>(c), static_cast<float*>(out));
      break;
    case PtxProbe::kCvtTF32:
      FF_CHECK(n >= 0, op, "negative element count ", n);
      FF_LAUNCH(probe_cvt_tf32, 1, 32, 0, st, ua, static_cast<uint32_t*>(out), n);
      break;
    case PtxProbe::kCpAsync:
      FF_LAUNCH(probe_cp_async, 1, 32, 32 * 16, st, static_cast<const uint4*>(a), static_cast<const int*>(b),
                static_cast<uint4*>(out));
      break;
    default:
      fail(op, "unknown probe kind ", kind);
  }
  launch_check(op);
}

}  // namespace fastflow
