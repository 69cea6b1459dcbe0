// The binding of the PTX probes (ptx_probe.h): a diagnostic, not an op; CUDA kernels only.
#include "common/binding.h"
#include "ptx_probe/ptx_probe.h"

namespace fastflow {

namespace {

// Runs one PTX probe kernel on device >= 0; no CPU version.
void ptx_probe(int kind, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t out, int n, int device, int64_t stream) {
  const char* op = "ptx_probe";
  FF_CHECK(device >= 0, op, "the probes run CUDA kernels only (a GPU, or fastflow._simt)");
  FF_CHECK(kind >= 0 && kind <= int(PtxProbe::kCpAsync), op, "unknown probe kind ", kind);
  FF_RUN_OP(op, device, (void)0,
            ptx_probe_cuda(kind, reinterpret_cast<const void*>(a), reinterpret_cast<const void*>(b),
                           reinterpret_cast<const void*>(c), reinterpret_cast<void*>(out), n, device, stream));
  (void)a, (void)b, (void)c, (void)out, (void)n, (void)stream;
}

}  // namespace

void bind_ptx_probe(pybind11::module_& m) {
  m.def("ptx_probe", &ptx_probe, "known-answer probe of one wrapped PTX instruction (csrc/ptx_probe/ptx_probe.h)");
}

}  // namespace fastflow
