// fastflow._simt's own functions, next to the op bindings it shares with fastflow._C
// (bindings.cpp): configuration, the tensors an op passes (for the global-memory bounds check),
// statistics, the fixture kernels, and CheckFailure -> fastflow._backend.SimtError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>
#include <vector>

#include "fixtures.h"
#include "runtime.h"

namespace py = pybind11;

namespace ffsim {

namespace {

void configure(int num_sms, int smem_optin, int threads) {
  if (num_sms < 1 || num_sms > 100000) throw std::invalid_argument("fastflow._simt: num_sms must be in 1..100000");
  if (smem_optin < 48 * 1024 || smem_optin > 16 * 1024 * 1024)
    throw std::invalid_argument("fastflow._simt: smem_optin must be at least 48 KB");
  if (threads < 1 || threads > 256) throw std::invalid_argument("fastflow._simt: threads must be in 1..256");
  Config& c = config();
  c.num_sms = num_sms;
  c.smem_optin = smem_optin;
  c.threads = threads;
}

py::dict get_config() {
  py::dict d;
  d["num_sms"] = config().num_sms;
  d["smem_optin"] = config().smem_optin;
  d["threads"] = config().threads;
  d["context_switch"] = std::string(context_switch_kind());
  return d;
}

// [(address, bytes, name, writable)]: the global memory the next launches may touch.
void set_buffers(const std::vector<std::tuple<uintptr_t, int64_t, std::string, bool>>& list) {
  std::vector<Buffer> b;
  for (const auto& e : list) {
    if (std::get<1>(e) < 0) throw std::invalid_argument("fastflow._simt.set_buffers: negative size");
    b.push_back({std::get<0>(e), std::get<0>(e) + uintptr_t(std::get<1>(e)), std::get<2>(e), std::get<3>(e)});
  }
  buffers() = std::move(b);
}

py::dict get_stats() {
  Stats& s = stats();
  py::dict d;
  d["blocks"] = s.blocks.load();
  d["threads"] = s.threads.load();
  d["barriers"] = s.barriers.load();
  d["switches"] = s.switches.load();
  d["mma"] = s.mma.load();
  d["ldmatrix"] = s.ldmatrix.load();
  d["shfl"] = s.shfl.load();
  d["cp_async"] = s.cp_async.load();
  d["accesses"] = s.accesses.load();
  return d;
}

void reset_stats() {
  Stats& s = stats();
  for (auto* c : {&s.blocks, &s.threads, &s.barriers, &s.switches, &s.mma, &s.ldmatrix, &s.shfl, &s.cp_async, &s.accesses})
    c->store(0);
}

}  // namespace

void bind_module(py::module_& m) {
  // CheckFailure -> the Python class fastflow._backend.SimtError (a RuntimeError), so that callers
  // can catch it without importing this extension.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const CheckFailure& e) {
      py::object cls = py::module_::import("fastflow._backend").attr("SimtError");
      PyErr_SetString(cls.ptr(), e.what());
    }
  });
  m.def("configure", &configure, py::arg("num_sms"), py::arg("smem_optin"), py::arg("threads"),
        "SM count and opt-in shared memory the device reports, OS threads running blocks");
  m.def("config", &get_config, "the current configuration and the fiber switch in use");
  m.def("set_buffers", &set_buffers, "[(address, bytes, name, writable)]: the tensors the next launches may access");
  m.def("stats", &get_stats, "counters since reset_stats()");
  m.def("reset_stats", &reset_stats);
  m.def("fixture_names", &fixture_names, "the fixture kernels (csrc/simt/fixtures.cu)");
  m.def(
      "run_fixture",
      [](const std::string& name, bool bug, uintptr_t in, uintptr_t out, int n) {
        py::gil_scoped_release release;
        run_fixture(name, bug, reinterpret_cast<const float*>(in), reinterpret_cast<float*>(out), n);
      },
      py::arg("name"), py::arg("bug"), py::arg("inp"), py::arg("out"), py::arg("n"),
      "runs fixture kernel `name` (its correct version, or with its bug) on float32 in[n] -> out[n]");
}

}  // namespace ffsim
