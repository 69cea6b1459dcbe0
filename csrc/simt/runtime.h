// The SIMT host runtime: runs fastflow's CUDA kernels, compiled as host C++ (host_cuda.h), on the
// CPU with checks. Internal to csrc/simt/; kernel code sees only host_cuda.h.
//
// Execution. A launch runs its blocks on `threads` OS threads (independent blocks; each OS thread
// is a Runner with its own shared memory, shadow and fiber stacks). Within a block every CUDA
// thread is a fiber (fiber.cpp: a hand-written context switch on x86-64, ucontext elsewhere). A
// fiber runs until it blocks at __syncthreads (all live threads of the block must arrive at the
// same call), at a warp collective (shfl, ldmatrix, mma: the last of the 32 lanes to arrive
// computes for the warp), or exits. Blocks run one after another on a runner.
//
// Checks (memcheck.cpp, warp_ops.cpp). Loads and stores of kernel code reach the runtime through
// the compiler's -fsanitize=thread instrumentation (the kernel sources are compiled with it; its
// __tsan_* callbacks are defined here and libtsan is not linked). Shared memory has a per-byte
// shadow: the barrier epoch and thread of its last write and reads (races between barriers, reads
// never written in this block), and whether a cp.async into it is still in flight. Global memory
// accesses must fall inside the tensors the op registered (set_buffers), writes inside writable
// ones, vector accesses must be aligned. A report names the kernel, block, thread and address;
// the launch then stops and the launcher throws CheckFailure (-> fastflow.ops.SimtError).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "host_cuda.h"

namespace ffsim {

constexpr int kWarpSize = 32;
constexpr int kMaxThreads = 1024;
constexpr size_t kStackBytes = 256 * 1024;   // per fiber (virtual; pages are touched on use)
constexpr size_t kStaticSmemMax = 16 * 1024;  // static __shared__ area, in front of the dynamic one
constexpr size_t kGuardBytes = 1024;          // unallocated shared memory before and after
constexpr size_t kSmemLimitDefault = 48 * 1024;

// Thrown by the launcher side of run_grid (never inside a fiber) when a check failed.
struct CheckFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- fibers (fiber.cpp) ----------------------------------------------------------------------------
struct Context {
  void* sp = nullptr;        // x86-64: saved stack pointer
  void* portable = nullptr;  // elsewhere: a ucontext_t
};
// Prepares `ctx` to run entry() on [stack, stack + bytes) at its first switch.
void context_init(Context& ctx, char* stack, size_t bytes, void (*entry)());
void context_switch(Context& from, Context& to);
void context_free(Context& ctx);
const char* context_switch_kind();

// ---- state ----------------------------------------------------------------------------------------
enum class State : uint8_t { kRunnable, kBarrier, kWarp, kDone };

struct AsyncCopy {
  uint32_t dst;
  const uint8_t* src;
  int cp_size, src_size;
  const void* pc;
};

struct BlockState;
struct Runner;

struct ThreadState {
  uint3 tid{0, 0, 0};
  BlockState* block = nullptr;
  int linear = 0;
  State state = State::kRunnable;
  Context ctx;
  char* stack = nullptr;
  const char* bar_file = nullptr;  // where it waits (kBarrier)
  int bar_line = 0;
  const char* warp_op = nullptr;  // the collective it waits at (kWarp)
  std::vector<AsyncCopy> open_group;
  std::deque<std::vector<AsyncCopy>> groups;  // committed, oldest first
};

struct WarpSlot {
  int arrived = 0;
  const char* op = nullptr;
  void* operands[kWarpSize];
  ThreadState* lanes[kWarpSize];
};

// Per-byte shadow of shared memory. Epochs count barrier intervals per runner, increasing across
// blocks and launches, so a byte whose write epoch is below its block's first epoch was never
// written by that block (no per-block reset).
struct Shadow {
  uint32_t w_epoch, r_epoch;
  uint16_t w_tid, r_tid;  // r_tid kManyReaders: more than one thread read it this epoch
  uint32_t inflight;      // == the block's serial: a cp.async into the byte has not been waited
};
constexpr uint16_t kManyReaders = 0xFFFF;

struct StaticArray {
  const void* site;
  const char* name;
  size_t offset, bytes;
};

struct Launch;

struct BlockRegs {
  uint3 bid;
  dim3 bdim, gdim;
};

struct BlockState {
  BlockRegs regs;
  Launch* launch = nullptr;
  Runner* runner = nullptr;
  int nthreads = 0;
  uint32_t serial = 0, first_epoch = 0, epoch = 0;
  std::vector<StaticArray> statics;
  size_t static_used = 0;
  bool aborted = false;
};

// One OS thread's execution resources, reused across launches.
struct Runner {
  Runner();
  ~Runner();
  std::vector<ThreadState> threads;
  std::vector<WarpSlot> warps;
  BlockState block;
  Context scheduler;
  char* stacks = nullptr;
  // Shared memory: [guard | static area | dynamic | guard]; offsets are the "shared addresses".
  std::vector<uint8_t> arena_storage;
  uint8_t* arena = nullptr;
  size_t arena_bytes = 0, dyn_offset = 0, dyn_bytes = 0;
  std::vector<Shadow> shadow;
  std::vector<uint8_t> region;  // per byte: 0 unallocated, 1 static, 2 dynamic
  uint32_t epoch_counter = 0, block_serial = 0;
  // Counters of the current launch (merged into stats() at its end; no atomics on the hot path).
  long accesses = 0, mma = 0, ldmatrix = 0, shfl = 0, cp_async = 0;
  long& counter(const char* warp_op) { return warp_op[0] == 'm' ? mma : warp_op[0] == 'l' ? ldmatrix : shfl; }
};

// A tensor an op passed to the kernels: accesses outside every registered range are reported.
struct Buffer {
  uintptr_t lo, hi;
  std::string name;
  bool writable;
};

struct Stats {
  std::atomic<long> blocks{0}, threads{0}, barriers{0}, switches{0}, mma{0}, ldmatrix{0}, shfl{0},
      cp_async{0}, accesses{0};
};

struct Launch {
  const char* kernel;
  const void* kernel_id;
  dim3 grid, block;
  size_t dyn_smem;
  KernelBody body;
  const void* params;
  size_t params_bytes;
  std::atomic<long> next_block{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> reports;  // distinct, in order of discovery
  std::vector<std::string> report_keys;
  long report_count = 0;
};

struct Config {
  int num_sms = 132;              // cudaDevAttrMultiProcessorCount (the plans' SM count)
  int smem_optin = 232448;        // cudaDevAttrMaxSharedMemoryPerBlockOptin (H100: 227 KB)
  int threads = 1;                // OS threads running blocks
};

Config& config();
Stats& stats();
std::vector<Buffer>& buffers();
// The running fiber, null in host code. Read on every instrumented access: initial-exec TLS (a
// fixed offset from the thread pointer) instead of a __tls_get_addr call.
extern thread_local ThreadState* t_thread __attribute__((tls_model("initial-exec")));

// Records a finding; `key` deduplicates (one message per kind and code site). Fatal findings abort
// the block at once (the access would be unsafe on the host); the others let it finish.
void report(ThreadState* t, const std::string& key, const std::string& message, bool fatal);
// "kernel K, block (x,y,z), thread T (warp W, lane L)".
std::string where(const ThreadState* t);
// "shared byte N (dynamic +N)" / "(static `red` +N)" / "(unallocated)".
std::string smem_where(const BlockState* b, size_t offset);
std::string pc_where(const void* pc);
// "file:line" of the barrier thread t waits at (paths from csrc/ on).
std::string bar_site(const ThreadState& t);
// The SimtError message of a launch with findings: the launch, the first finding, a count of the rest.
std::string format_failure(const Launch& l);
// Parks the running fiber and returns to the scheduler (state already set by the caller).
void yield_to_scheduler();

// Shared-memory check of an access by thread t at arena offset [off, off + n).
void smem_access(ThreadState* t, size_t off, size_t n, bool write, const void* pc);
// Global-memory check of [p, p + n): inside a registered buffer (writable for writes)?
bool global_access_ok(ThreadState* t, const void* p, size_t n, bool write, const void* pc);

}  // namespace ffsim
