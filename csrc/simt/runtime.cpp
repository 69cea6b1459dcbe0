// SIMT runtime: launches, the block scheduler, barriers, shared-memory allocation, reports and the
// CUDA runtime API subset of host_cuda.h. See runtime.h for the model.
#include "runtime.h"

#include <dlfcn.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <thread>

#include "../common.h"

namespace ffsim {

thread_local ThreadState* t_thread __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {
thread_local Runner* t_runner __attribute__((tls_model("initial-exec"))) = nullptr;
std::mutex g_mu;  // configuration, attributes, runner pool
std::map<const void*, int> g_max_dyn_smem;
std::vector<std::unique_ptr<Runner>> g_runners;
thread_local cudaError_t t_last_error = cudaSuccess;
}  // namespace

Config& config() {
  static Config c;
  return c;
}
Stats& stats() {
  static Stats s;
  return s;
}
std::vector<Buffer>& buffers() {
  static std::vector<Buffer> b;
  return b;
}

uint3 thread_idx() { return t_thread->tid; }
uint3 block_idx() { return t_thread->block->regs.bid; }
dim3 block_dim() { return t_thread->block->regs.bdim; }
dim3 grid_dim() { return t_thread->block->regs.gdim; }

float half_bits_to_float(uint16_t h) { return fastflow::half_to_float(h); }

// ---- CUDA runtime API subset -------------------------------------------------------------------------
cudaError_t set_func_attr(const void* fn, int attr, int value) {
  // The carveout is a hint about the L1 / shared-memory split; the runtime has no L1: checked only.
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout)
    return value == cudaSharedmemCarveoutDefault || (value >= 0 && value <= 100) ? cudaSuccess : cudaErrorInvalidValue;
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  if (value < 0 || value > config().smem_optin) return cudaErrorInvalidValue;
  g_max_dyn_smem[fn] = value;
  return cudaSuccess;
}

cudaError_t device_attr(int* value, int attr, int device) {
  if (device != 0) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(g_mu);
  if (attr == cudaDevAttrMultiProcessorCount) *value = config().num_sms;
  else if (attr == cudaDevAttrMaxSharedMemoryPerBlockOptin) *value = config().smem_optin;
  else return cudaErrorInvalidValue;
  return cudaSuccess;
}

cudaError_t take_last_error() {
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}

const char* error_name(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
const char* error_string(cudaError_t e) { return e == cudaSuccess ? "no error" : "SIMT runtime launch error"; }

const char* kernel_name_from_signature(const char* pretty) {
  // GCC: "... [with auto Kernel = fastflow::igemm::igemm_kernel<1, fastflow::MathMode::kF16>]",
  // clang: "... [Kernel = &fastflow::...]". Namespaces are dropped for readability.
  std::string s(pretty);
  size_t at = s.find("Kernel = ");
  if (at != std::string::npos) {
    s = s.substr(at + 9);
    if (!s.empty() && s.back() == ']') s.pop_back();
    if (!s.empty() && s[0] == '&') s.erase(0, 1);
  }
  for (const char* ns : {"fastflow::", "(anonymous namespace)::", "{anonymous}::", "igemm::"}) {
    for (size_t p; (p = s.find(ns)) != std::string::npos;) s.erase(p, std::strlen(ns));
  }
  return strdup(s.c_str());  // once per kernel (kernel_name's static), kept for the process
}

// ---- reports --------------------------------------------------------------------------------------------
// "csrc/igemm.cuh" from the compiler's (absolute) __FILE__.
static std::string short_file(const char* file) {
  const std::string f(file);
  const size_t at = f.rfind("csrc/");
  return at == std::string::npos ? f : f.substr(at);
}
static std::string bar_site(const ThreadState& t) { return short_file(t.bar_file) + ":" + std::to_string(t.bar_line); }

std::string where(const ThreadState* t) {
  const BlockState* b = t->block;
  std::ostringstream s;
  s << "kernel " << b->launch->kernel << ", block (" << b->regs.bid.x << "," << b->regs.bid.y << "," << b->regs.bid.z
    << "), thread " << t->linear;
  if (b->regs.bdim.y > 1 || b->regs.bdim.z > 1)
    s << " = (" << t->tid.x << "," << t->tid.y << "," << t->tid.z << ")";
  s << " (warp " << t->linear / kWarpSize << ", lane " << t->linear % kWarpSize << ")";
  return s.str();
}

std::string smem_where(const BlockState* b, size_t offset) {
  const Runner* r = b->runner;
  std::ostringstream s;
  s << "shared address " << offset;
  if (offset >= r->dyn_offset && offset < r->dyn_offset + r->dyn_bytes) {
    s << " (dynamic shared memory byte " << offset - r->dyn_offset << " of " << r->dyn_bytes << ")";
    return s.str();
  }
  for (const StaticArray& a : b->statics)
    if (offset >= a.offset && offset < a.offset + a.bytes) {
      s << " (static __shared__ `" << a.name << "` byte " << offset - a.offset << " of " << a.bytes << ")";
      return s.str();
    }
  if (offset >= r->dyn_offset + r->dyn_bytes)
    s << " (" << offset - (r->dyn_offset + r->dyn_bytes) << " bytes past the end of the " << r->dyn_bytes
      << " bytes of dynamic shared memory)";
  else
    s << " (outside every shared-memory allocation)";
  return s.str();
}

std::string pc_where(const void* pc) {
  if (!pc) return "";
  Dl_info info{};
  std::ostringstream s;
  if (dladdr(pc, &info) && info.dli_fname) {
    const char* base = std::strrchr(info.dli_fname, '/');
    s << " [code " << (base ? base + 1 : info.dli_fname) << "+0x" << std::hex
      << (reinterpret_cast<uintptr_t>(pc) - reinterpret_cast<uintptr_t>(info.dli_fbase)) << "]";
  }
  return s.str();
}

void report(ThreadState* t, const std::string& key, const std::string& message, bool fatal) {
  BlockState* b = t ? t->block : nullptr;
  Launch* l = b ? b->launch : nullptr;
  if (!l) return;
  {
    std::lock_guard<std::mutex> lock(l->mu);
    ++l->report_count;
    if (std::find(l->report_keys.begin(), l->report_keys.end(), key) == l->report_keys.end() &&
        l->reports.size() < 16) {
      l->report_keys.push_back(key);
      l->reports.push_back(message);
    }
  }
  l->stop.store(true);
  if (fatal) {
    b->aborted = true;
    if (t_thread) yield_to_scheduler();  // the running fiber is never resumed: the block is abandoned
  }
}

// ---- fibers and the block scheduler -------------------------------------------------------------------
Runner::Runner() {
  threads.resize(kMaxThreads);
  warps.resize(kMaxThreads / kWarpSize);
  stacks = static_cast<char*>(mmap(nullptr, kStackBytes * kMaxThreads, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (stacks == MAP_FAILED) throw std::runtime_error("fastflow._simt: cannot reserve fiber stacks");
  for (int i = 0; i < kMaxThreads; ++i) {
    mprotect(stacks + i * kStackBytes, 4096, PROT_NONE);  // guard page below each stack
    threads[i].stack = stacks + i * kStackBytes;
  }
}

Runner::~Runner() {
  munmap(stacks, kStackBytes * kMaxThreads);
  for (ThreadState& t : threads) context_free(t.ctx);
  context_free(scheduler);
}

void yield_to_scheduler() {
  ThreadState* t = t_thread;
  context_switch(t->ctx, t_runner->scheduler);
}

static void fiber_entry() {
  ThreadState* t = t_thread;
  Launch* l = t->block->launch;
  l->body(l->params);
  const size_t pending = t->groups.size();
  if (!t->open_group.empty()) {
    report(t, "cp.async-uncommitted",
           "cp.async never completed: " + where(t) + " exited with " + std::to_string(t->open_group.size()) +
               " cp.async copies not committed and waited (cp.async.commit_group / wait_group missing)" +
               pc_where(t->open_group.front().pc),
           false);
  } else if (pending) {
    // Stricter than PTX, which lets trailing groups lapse: every committed group must be retired by
    // a wait, so the final wait's depth is checked too.
    report(t, "cp.async-pending",
           "cp.async groups not waited: " + where(t) + " exited with " + std::to_string(pending) +
               " committed cp.async group(s) that no cp.async.wait_group retired",
           false);
  }
  t->state = State::kDone;
  yield_to_scheduler();
  std::abort();  // a finished fiber is never resumed
}

static std::string describe_states(const BlockState& b, const Runner& r) {
  std::map<std::string, int> counts;
  for (int i = 0; i < b.nthreads; ++i) {
    const ThreadState& t = r.threads[i];
    switch (t.state) {
      case State::kDone: ++counts["exited"]; break;
      case State::kRunnable: ++counts["runnable"]; break;
      case State::kBarrier:
        ++counts["at __syncthreads " + bar_site(t)];
        break;
      case State::kWarp: ++counts[std::string("at warp collective ") + t.warp_op]; break;
    }
  }
  std::ostringstream s;
  bool first = true;
  for (const auto& kv : counts) {
    s << (first ? "" : ", ") << kv.second << " " << kv.first;
    first = false;
  }
  return s.str();
}

// Runs one block to completion (or until a fatal report / deadlock).
static void run_block(Runner& r) {
  BlockState& b = r.block;
  Stats& st = stats();
  long switches = 0;
  for (;;) {
    bool ran = false;
    for (int i = 0; i < b.nthreads && !b.aborted; ++i) {
      ThreadState& t = r.threads[i];
      if (t.state != State::kRunnable) continue;
      ran = true;
      t_thread = &t;
      context_switch(r.scheduler, t.ctx);
      t_thread = nullptr;
      switches += 2;
    }
    if (b.aborted) break;
    if (ran) continue;
    int live = 0, at_bar = 0;
    ThreadState* first_bar = nullptr;
    for (int i = 0; i < b.nthreads; ++i) {
      ThreadState& t = r.threads[i];
      live += t.state != State::kDone;
      if (t.state == State::kBarrier) {
        ++at_bar;
        if (!first_bar) first_bar = &t;
      }
    }
    if (live == 0) break;
    if (at_bar == live) {
      // Barrier: every live thread waits at the same __syncthreads, and none has exited.
      for (int i = 0; i < b.nthreads; ++i) {
        ThreadState& t = r.threads[i];
        if (t.state == State::kBarrier && (t.bar_line != first_bar->bar_line || std::strcmp(t.bar_file, first_bar->bar_file))) {
          report(first_bar, "barrier-divergence",
                 "barrier divergence: threads of one block wait at different __syncthreads: " + where(first_bar) +
                     " at " + bar_site(*first_bar) + ", thread " + std::to_string(t.linear) + " at " + bar_site(t) +
                     " (" + describe_states(b, r) + ")",
                 false);
          b.aborted = true;
          break;
        }
      }
      if (live < b.nthreads && !b.aborted) {
        report(first_bar, "barrier-after-exit",
               "barrier divergence: __syncthreads at " + bar_site(*first_bar) + " reached after " +
                   std::to_string(b.nthreads - live) +
                   " thread(s) of the block exited (" + where(first_bar) + "; " + describe_states(b, r) + ")",
               false);
        b.aborted = true;
      }
      if (b.aborted) break;
      b.epoch = ++r.epoch_counter;
      st.barriers.fetch_add(1, std::memory_order_relaxed);
      for (int i = 0; i < b.nthreads; ++i)
        if (r.threads[i].state == State::kBarrier) r.threads[i].state = State::kRunnable;
      continue;
    }
    // Nothing can run: threads wait for others that will never arrive.
    ThreadState* any = nullptr;
    for (int i = 0; i < b.nthreads && !any; ++i)
      if (r.threads[i].state != State::kDone) any = &r.threads[i];
    report(any, "deadlock",
           "deadlock in kernel " + std::string(b.launch->kernel) + ", block (" + std::to_string(b.regs.bid.x) + "," +
               std::to_string(b.regs.bid.y) + "," + std::to_string(b.regs.bid.z) +
               "): no thread can proceed (" + describe_states(b, r) +
               "; a barrier not reached by every thread, or a warp collective some lanes of the warp skipped)",
           false);
    b.aborted = true;
    break;
  }
  st.switches.fetch_add(switches, std::memory_order_relaxed);
}

static void prepare_runner(Runner& r, Launch& l) {
  // Shared memory layout and its shadow for this launch's dynamic size.
  r.dyn_offset = kGuardBytes + kStaticSmemMax;
  r.dyn_bytes = l.dyn_smem;
  r.arena_bytes = r.dyn_offset + r.dyn_bytes + kGuardBytes;
  if (r.arena_storage.size() < r.arena_bytes + 128) r.arena_storage.resize(r.arena_bytes + 128);
  r.arena = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(r.arena_storage.data()) + 127) & ~uintptr_t(127));
  if (r.shadow.size() < r.arena_bytes) r.shadow.resize(r.arena_bytes, Shadow{0, 0, 0, 0, 0});
  r.region.assign(r.arena_bytes, 0);
  std::fill(r.region.begin() + r.dyn_offset, r.region.begin() + r.dyn_offset + r.dyn_bytes, uint8_t(2));
  if (r.epoch_counter > 0xF0000000u) {  // epochs must keep increasing: start over with a clean shadow
    std::fill(r.shadow.begin(), r.shadow.end(), Shadow{0, 0, 0, 0, 0});
    r.epoch_counter = 0;
    r.block_serial = 0;
  }
  const int nthreads = int(l.block.x * l.block.y * l.block.z);
  for (int w = 0; w < (nthreads + kWarpSize - 1) / kWarpSize; ++w) r.warps[w] = WarpSlot{};
  r.block.launch = &l;
  r.block.runner = &r;
  r.block.nthreads = nthreads;
  r.block.regs.bdim = l.block;
  r.block.regs.gdim = l.grid;
}

static void run_blocks(Runner& r, Launch& l) {
  t_runner = &r;
  prepare_runner(r, l);
  BlockState& b = r.block;
  const long total = long(l.grid.x) * l.grid.y * l.grid.z;
  Stats& st = stats();
  for (long id; !l.stop.load() && (id = l.next_block.fetch_add(1)) < total;) {
    b.regs.bid = {unsigned(id % l.grid.x), unsigned(id / l.grid.x % l.grid.y), unsigned(id / (long(l.grid.x) * l.grid.y))};
    b.serial = ++r.block_serial;
    b.first_epoch = b.epoch = ++r.epoch_counter;
    b.statics.clear();
    b.static_used = 0;
    b.aborted = false;
    std::fill(r.region.begin() + kGuardBytes, r.region.begin() + r.dyn_offset, uint8_t(0));
    std::memset(r.arena, 0xFF, r.arena_bytes);  // NaN poison: unwritten shared memory reads as NaN
    for (int i = 0; i < b.nthreads; ++i) {
      ThreadState& t = r.threads[i];
      t.tid = {unsigned(i % l.block.x), unsigned(i / l.block.x % l.block.y), unsigned(i / (l.block.x * l.block.y))};
      t.block = &b;
      t.linear = i;
      t.state = State::kRunnable;
      t.bar_file = nullptr;
      t.warp_op = nullptr;
      t.open_group.clear();
      t.groups.clear();
      context_init(t.ctx, t.stack + 4096, kStackBytes - 4096, fiber_entry);
    }
    for (int w = 0; w < (b.nthreads + kWarpSize - 1) / kWarpSize; ++w) r.warps[w].arrived = 0;
    run_block(r);
    st.blocks.fetch_add(1, std::memory_order_relaxed);
    st.threads.fetch_add(b.nthreads, std::memory_order_relaxed);
  }
  st.accesses.fetch_add(r.accesses);
  st.mma.fetch_add(r.mma);
  st.ldmatrix.fetch_add(r.ldmatrix);
  st.shfl.fetch_add(r.shfl);
  st.cp_async.fetch_add(r.cp_async);
  r.accesses = r.mma = r.ldmatrix = r.shfl = r.cp_async = 0;
  t_runner = nullptr;
}

static std::string format_failure(Launch& l) {
  std::ostringstream s;
  s << "SIMT check failed in kernel " << l.kernel << " (grid (" << l.grid.x << "," << l.grid.y << "," << l.grid.z
    << "), block (" << l.block.x << "," << l.block.y << "," << l.block.z << "), " << l.dyn_smem
    << " bytes of dynamic shared memory): " << l.reports.front();
  if (l.report_count > 1) {
    s << "\n(" << l.report_count - 1 << " more finding(s) before the launch stopped";
    for (size_t i = 1; i < l.reports.size(); ++i) s << ";\n  " << l.reports[i];
    s << ")";
  }
  return s.str();
}

void run_grid(const char* kernel, const void* kernel_id, dim3 grid, dim3 block, size_t dyn_smem, KernelBody body,
              const void* params, size_t params_bytes) {
  const long nthreads = long(block.x) * block.y * block.z;
  std::ostringstream cfg;
  if (nthreads <= 0 || nthreads > kMaxThreads || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.y > 65535 || grid.z > 65535) {
    cfg << "SIMT launch of kernel " << kernel << " with an invalid configuration: grid (" << grid.x << "," << grid.y
        << "," << grid.z << "), block (" << block.x << "," << block.y << "," << block.z << ")";
    throw CheckFailure(cfg.str());
  }
  if (dyn_smem > kSmemLimitDefault) {
    int allowed = -1;
    {
      std::lock_guard<std::mutex> lock(g_mu);
      auto it = g_max_dyn_smem.find(kernel_id);
      if (it != g_max_dyn_smem.end()) allowed = it->second;
    }
    if (allowed < 0 || size_t(allowed) < dyn_smem) {
      cfg << "SIMT launch of kernel " << kernel << " with " << dyn_smem
          << " bytes of dynamic shared memory, more than 48 KB, without cudaFuncSetAttribute("
             "cudaFuncAttributeMaxDynamicSharedMemorySize) raising the kernel's limit to it"
          << (allowed >= 0 ? " (the limit is " + std::to_string(allowed) + ")" : std::string());
      throw CheckFailure(cfg.str());
    }
  }
  Launch l;
  l.kernel = kernel;
  l.kernel_id = kernel_id;
  l.grid = grid;
  l.block = block;
  l.dyn_smem = dyn_smem;
  l.body = body;
  l.params = params;
  l.params_bytes = params_bytes;
  const long total = long(grid.x) * grid.y * grid.z;
  std::vector<Runner*> runners;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    const int n = int(std::max<long>(1, std::min<long>(config().threads, total)));
    while (int(g_runners.size()) < n) g_runners.push_back(std::make_unique<Runner>());
    for (int i = 0; i < n; ++i) runners.push_back(g_runners[i].get());
  }
  // One launch at a time: the runners (and their shared memory) are shared by all launches.
  static std::mutex launch_mu;
  std::lock_guard<std::mutex> lock(launch_mu);
  if (runners.size() == 1) {
    run_blocks(*runners[0], l);
  } else {
    std::vector<std::thread> pool;
    for (size_t i = 1; i < runners.size(); ++i) pool.emplace_back([&, i] { run_blocks(*runners[i], l); });
    run_blocks(*runners[0], l);
    for (auto& th : pool) th.join();
  }
  if (!l.reports.empty()) throw CheckFailure(format_failure(l));
}

// ---- barriers and shared memory ----------------------------------------------------------------------------
void syncthreads(const char* file, int line) {
  ThreadState* t = t_thread;
  t->bar_file = file;
  t->bar_line = line;
  t->state = State::kBarrier;
  yield_to_scheduler();
}

void* dynamic_smem(size_t align) {
  Runner* r = t_runner;
  if (r->dyn_offset % align) std::abort();  // the layout keeps it 128-byte aligned
  return r->arena + r->dyn_offset;
}

void* static_smem(const void* site, const char* name, size_t bytes, size_t align) {
  ThreadState* t = t_thread;
  BlockState* b = t->block;
  for (const StaticArray& a : b->statics)
    if (a.site == site) return b->runner->arena + a.offset;
  // First thread of the block to reach the declaration allocates it (same layout in every block).
  const size_t off = (b->static_used + align - 1) / align * align;
  if (off + bytes > kStaticSmemMax) {
    report(t, "static-smem",
           "static __shared__ `" + std::string(name) + "` (" + std::to_string(bytes) +
               " bytes) does not fit in the runtime's " + std::to_string(kStaticSmemMax) + "-byte static area: " +
               where(t),
           true);
  }
  Runner* r = b->runner;
  b->statics.push_back({site, name, kGuardBytes + off, bytes});
  b->static_used = off + bytes;
  std::fill(r->region.begin() + kGuardBytes + off, r->region.begin() + kGuardBytes + off + bytes, uint8_t(1));
  return r->arena + kGuardBytes + off;
}

}  // namespace ffsim
