// Fixture kernels: small CUDA kernels, each in a correct version and with one classic bug, that
// prove the SIMT runtime's checks fire (tests/test_simt_checks.py). Built only into fastflow._simt.
// One block of n threads (n a multiple of 32, <= 256) maps in[n] -> out[n]; what the correct
// version computes is stated per kernel, and the test checks it.
#include <stdexcept>

#include "igemm/ptx.cuh"
#include "fixtures.h"
#include "runtime.h"

namespace ffsim {

using fastflow::MathMode;
namespace ig = fastflow::igemm;

namespace {

// out[t] = in[(t + 1) % n]. Bug: no barrier between the shared-memory write and the neighbour's read.
__global__ void missing_barrier_kernel(const float* in, float* out, int n, bool bug) {
  FF_EXTERN_SHARED(float, s, 16);
  const int t = threadIdx.x;
  s[t] = in[t];
  if (!bug) __syncthreads();
  out[t] = s[(t + 1) % n];
}

// out[t] = in[t & ~1] + in[t | 1]. Bug: both threads of a pair store the pair's sum to one word.
__global__ void race_kernel(const float* in, float* out, int, bool bug) {
  FF_EXTERN_SHARED(float, s, 16);
  const int t = threadIdx.x;
  if (bug || t % 2 == 0) s[t / 2] = in[t & ~1] + in[t | 1];
  __syncthreads();
  out[t] = s[t / 2];
}

// out[t] = in[n - 1 - t] through n floats of dynamic shared memory. Bug: an off-by-one store index.
__global__ void oob_shared_kernel(const float* in, float* out, int n, bool bug) {
  FF_EXTERN_SHARED(float, s, 16);
  const int t = threadIdx.x;
  s[bug ? t + 1 : t] = in[t];
  __syncthreads();
  out[t] = s[n - 1 - t];
}

// out[t] = 3 in[t]. Bug: an off-by-one store index past the end of out.
__global__ void oob_global_kernel(const float* in, float* out, int, bool bug) {
  const int t = threadIdx.x;
  out[bug ? t + 1 : t] = 3.f * in[t];
}

// out[t] = in[(t + 4) % n], staged by cp.async in two groups (first and second half of in). Bug:
// the first wait allows both groups in flight (depth 2 instead of 1).
__global__ void missing_wait_kernel(const float* in, float* out, int n, bool bug) {
  FF_EXTERN_SHARED(float, s, 16);
  const int t = threadIdx.x, chunks = n / 4, half = chunks / 2;
  if (t < half) ig::cp_async_16(ig::smem_u32(s + 4 * t), in + 4 * t, true);
  ig::cp_async_commit();
  if (t >= half && t < chunks) ig::cp_async_16(ig::smem_u32(s + 4 * t), in + 4 * t, true);
  ig::cp_async_commit();
  if (bug) ig::cp_async_wait<2>();
  else ig::cp_async_wait<1>();
  __syncthreads();
  const int src = (t + 4) % n;
  float v = 0.f;
  if (src < 4 * half) v = s[src];  // the first group has landed
  ig::cp_async_wait<0>();
  __syncthreads();
  if (src >= 4 * half) v = s[src];
  out[t] = v;
}

// out[t] = in[t]: each thread copies its own 16 bytes with cp.async and reads them back. Bug: one
// more (empty) group is committed after the last wait and never retired.
__global__ void pending_group_kernel(const float* in, float* out, int n, bool bug) {
  FF_EXTERN_SHARED(float, s, 16);
  const int t = threadIdx.x;
  if (t < n / 4) ig::cp_async_16(ig::smem_u32(s + 4 * t), in + 4 * t, true);
  ig::cp_async_commit();
  ig::cp_async_wait<0>();
  if (bug) ig::cp_async_commit();
  __syncthreads();
  out[t] = s[t];
}

// out[t] = in[t] through cp.async 16-byte chunks (each thread reads back its own). Bug: the source
// of every chunk starts 8 bytes late (not 16-byte aligned).
__global__ void misaligned_cp_async_kernel(const float* in, float* out, int n, bool bug) {
  FF_EXTERN_SHARED(float, s, 16);
  const int t = threadIdx.x;
  if (t < n / 4 - 1) ig::cp_async_16(ig::smem_u32(s + 4 * t), in + 4 * t + (bug ? 2 : 0), true);
  ig::cp_async_commit();
  ig::cp_async_wait<0>();
  if (t < n / 4 - 1)
    for (int j = 0; j < 4; ++j) out[4 * t + j] = s[4 * t + j];
  else if (t < n / 4)
    for (int j = 0; j < 4; ++j) out[4 * t + j] = in[4 * t + j];
}

// out[t] = in[t ^ 1]. Bug: only even threads store, odd words of shared memory are never written.
__global__ void uninit_kernel(const float* in, float* out, int, bool bug) {
  FF_EXTERN_SHARED(float, s, 16);
  const int t = threadIdx.x;
  if (!bug || t % 2 == 0) s[t] = in[t];
  __syncthreads();
  out[t] = s[t ^ 1];
}

// out[t] = in[n - 1 - t]. Bug: the first warp and the rest wait at different __syncthreads.
__global__ void barrier_divergence_kernel(const float* in, float* out, int n, bool bug) {
  FF_EXTERN_SHARED(float, s, 16);
  const int t = threadIdx.x;
  s[t] = in[t];
  if (bug && t < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[t] = s[n - 1 - t];
}

// out[t] = in[n - 1 - t] for the first half, 0 for the second. Bug: the second half returns before
// the barrier instead of after it.
__global__ void barrier_after_exit_kernel(const float* in, float* out, int n, bool bug) {
  FF_EXTERN_SHARED(float, s, 16);
  const int t = threadIdx.x;
  if (bug && t >= n / 2) return;
  s[t] = in[t];
  __syncthreads();
  out[t] = t < n / 2 ? s[n - 1 - t] : 0.f;
}

// out[t] = in[t ^ 1] by a warp shuffle. Bug: only lanes 0-15 shuffle (a full-mask shuffle).
__global__ void shuffle_skipped_kernel(const float* in, float* out, int, bool bug) {
  const int t = threadIdx.x;
  float v = in[t];
  if (!bug || t % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[t] = v;
}

// out[t] = in[t] by 16-byte vector loads. Bug: the vectors start one float late (misaligned).
__global__ void misaligned_vector_kernel(const float* in, float* out, int n, bool bug) {
  const int t = threadIdx.x;
  if (t < n / 4 - 1) {
    const float4 v = *reinterpret_cast<const float4*>(in + 4 * t + (bug ? 1 : 0));
    out[4 * t] = v.x, out[4 * t + 1] = v.y, out[4 * t + 2] = v.z, out[4 * t + 3] = v.w;
  } else if (t < n / 4) {
    for (int j = 0; j < 4; ++j) out[4 * t + j] = in[4 * t + j];
  }
}

// ldmatrix of the first 512 bytes of in (as b16 pairs); out = the 32 x 4 fragment registers' bits.
// Bug: row addresses 8 bytes off their 16-byte alignment.
__global__ void misaligned_ldmatrix_kernel(const float* in, float* out, int, bool bug) {
  FF_EXTERN_SHARED(float, s, 16);
  const int t = threadIdx.x;
  for (int i = t; i < 136; i += blockDim.x) s[i] = i < 128 ? in[i] : 0.f;
  __syncthreads();
  if (t < 32) {
    uint32_t r[4];
    ig::ldmatrix_x4(r, ig::smem_u32(s) + 16 * t + (bug ? 8 : 0));
    for (int j = 0; j < 4; ++j) out[4 * t + j] = __uint_as_float(r[j]);
  }
}

// out[t] = in[t] through 64 KB of dynamic shared memory. Bug: launched without raising the limit.
template <bool kRaised>
__global__ void big_smem_kernel(const float* in, float* out, int, bool) {
  FF_EXTERN_SHARED(float, s, 16);
  const int t = threadIdx.x;
  s[16384 - 1 - t] = in[t];
  __syncthreads();
  out[t] = s[16384 - 1 - t];
}

// One warp: D = A B of tf32 operands taken from in (A fragments in[4 l + j], B fragments in[2 l + j],
// C = 0), written as out[4 l + j] = d[j]; lanes >= 32 copy in. Bug: operands not rounded to tf32.
__global__ void tf32_unrounded_kernel(const float* in, float* out, int n, bool bug) {
  const int t = threadIdx.x;
  if (t < 32) {
    uint32_t a[4], b[2];
    for (int j = 0; j < 4; ++j) a[j] = __float_as_uint(in[4 * t + j]);
    for (int j = 0; j < 2; ++j) b[j] = __float_as_uint(in[2 * t + j]);
    if (!bug) {
      for (int j = 0; j < 4; ++j) a[j] = ig::to_tf32(a[j]);
      for (int j = 0; j < 2; ++j) b[j] = ig::to_tf32(b[j]);
    }
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    ig::mma<MathMode::kTF32>(d, a, b);
    for (int j = 0; j < 4; ++j) out[4 * t + j] = d[j];
  } else if (t >= 128 && t < n) {
    out[t] = in[t];
  }
}

// out[t] = 2 in[t]. Bug: the result is also written back into the read-only input.
__global__ void readonly_write_kernel(const float* in, float* out, int, bool bug) {
  const int t = threadIdx.x;
  out[t] = 2.f * in[t];
  if (bug) const_cast<float*>(in)[t] = out[t];
}

using Runner = void (*)(const float*, float*, int, bool);
struct Fixture {
  const char* name;
  Runner run;
};

template <auto Kernel>
void plain(const float* in, float* out, int n, bool bug, size_t smem) {
  FF_LAUNCH(Kernel, 1, unsigned(n), smem, nullptr, in, out, n, bug);
}

const Fixture kFixtures[] = {
    {"missing_barrier", [](const float* i, float* o, int n, bool b) { plain<missing_barrier_kernel>(i, o, n, b, 4 * n); }},
    {"race", [](const float* i, float* o, int n, bool b) { plain<race_kernel>(i, o, n, b, 4 * n); }},
    {"oob_shared", [](const float* i, float* o, int n, bool b) { plain<oob_shared_kernel>(i, o, n, b, 4 * n); }},
    {"oob_global", [](const float* i, float* o, int n, bool b) { plain<oob_global_kernel>(i, o, n, b, 0); }},
    {"missing_wait", [](const float* i, float* o, int n, bool b) { plain<missing_wait_kernel>(i, o, n, b, 4 * n); }},
    {"pending_group", [](const float* i, float* o, int n, bool b) { plain<pending_group_kernel>(i, o, n, b, 4 * n); }},
    {"uninit", [](const float* i, float* o, int n, bool b) { plain<uninit_kernel>(i, o, n, b, 4 * n); }},
    {"barrier_divergence",
     [](const float* i, float* o, int n, bool b) { plain<barrier_divergence_kernel>(i, o, n, b, 4 * n); }},
    {"barrier_after_exit",
     [](const float* i, float* o, int n, bool b) { plain<barrier_after_exit_kernel>(i, o, n, b, 4 * n); }},
    {"shuffle_skipped", [](const float* i, float* o, int n, bool b) { plain<shuffle_skipped_kernel>(i, o, n, b, 0); }},
    {"misaligned_vector",
     [](const float* i, float* o, int n, bool b) { plain<misaligned_vector_kernel>(i, o, n, b, 0); }},
    {"misaligned_cp_async",
     [](const float* i, float* o, int n, bool b) { plain<misaligned_cp_async_kernel>(i, o, n, b, 4 * n); }},
    {"misaligned_ldmatrix",
     [](const float* i, float* o, int n, bool b) { plain<misaligned_ldmatrix_kernel>(i, o, n, b, 136 * 4); }},
    {"big_smem",
     [](const float* i, float* o, int n, bool b) {
       constexpr int kBytes = 64 * 1024;
       if (b) {
         plain<big_smem_kernel<false>>(i, o, n, b, kBytes);
       } else {
         fastflow::raise_smem_limit_once<big_smem_kernel<true>>(kBytes, 0, "fixture");
         plain<big_smem_kernel<true>>(i, o, n, b, kBytes);
       }
     }},
    {"tf32_unrounded", [](const float* i, float* o, int n, bool b) { plain<tf32_unrounded_kernel>(i, o, n, b, 0); }},
    {"readonly_write", [](const float* i, float* o, int n, bool b) { plain<readonly_write_kernel>(i, o, n, b, 0); }},
};

}  // namespace

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  for (const Fixture& f : kFixtures) names.push_back(f.name);
  return names;
}

void run_fixture(const std::string& name, bool bug, const float* in, float* out, int n) {
  if (n < 32 || n > 256 || n % 32) throw std::invalid_argument("fastflow._simt.run_fixture: n must be a multiple of 32 in 32..256");
  for (const Fixture& f : kFixtures) {
    if (name != f.name) continue;
    buffers() = {{reinterpret_cast<uintptr_t>(in), reinterpret_cast<uintptr_t>(in + n), "in", false},
                 {reinterpret_cast<uintptr_t>(out), reinterpret_cast<uintptr_t>(out + n), "out", true}};
    f.run(in, out, n, bug);
    return;
  }
  throw std::invalid_argument("fastflow._simt.run_fixture: unknown fixture '" + name + "'");
}

}  // namespace ffsim
