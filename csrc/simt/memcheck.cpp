// Memory checks of the SIMT runtime: every load and store of kernel code arrives here through the
// -fsanitize=thread instrumentation callbacks (__tsan_readN / __tsan_writeN, defined below; the
// kernel objects are compiled with -fsanitize=thread, and libtsan is never linked). Accesses to the
// fiber's own stack (CUDA local memory) pass; shared-memory accesses go through the per-byte shadow;
// everything else is global memory and must fall inside a tensor the op registered.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "runtime.h"

namespace ffsim {

namespace {

std::string hex(uintptr_t p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%" PRIxPTR, p);
  return buf;
}

const char* rw(bool write) { return write ? "write" : "read"; }

}  // namespace

void smem_access(ThreadState* t, size_t off, size_t n, bool write, const void* pc) {
  BlockState* b = t->block;
  Runner* r = b->runner;
  const uint16_t tid = uint16_t(t->linear);
  auto race = [&](const char* key, const char* verb, size_t i, const std::string& other) {
    report(t, key + pc_where(pc),
           "shared-memory race: " + where(t) + " " + verb + " " + smem_where(b, i) + " " + other +
               " with no __syncthreads between" + pc_where(pc),
           false);
  };
  for (size_t i = off; i < off + n; ++i) {
    if (r->region[i] == 0) {
      report(t, std::string("smem-oob") + pc_where(pc),
             "shared memory out of bounds: " + std::string(rw(write)) + " of " + std::to_string(n) + " bytes at " +
                 smem_where(b, i) + " by " + where(t) + pc_where(pc),
             false);
      return;
    }
    Shadow& s = r->shadow[i];
    if (s.inflight == b->serial) {
      report(t, std::string("inflight-") + rw(write) + pc_where(pc),
             std::string(rw(write)) + " of a cp.async destination before the cp.async.wait_group that completes "
                 "it: " + smem_where(b, i) + " by " + where(t) + pc_where(pc),
             false);
      return;
    }
    if (!write) {
      if (s.w_epoch < b->first_epoch) {
        report(t, "uninit" + pc_where(pc),
               "read of uninitialised shared memory (never written in this block): " + smem_where(b, i) + " by " +
                   where(t) + pc_where(pc),
               false);
        return;
      }
      if (s.w_epoch == b->epoch && s.w_tid != tid) {
        race("race-raw", "reads", i, "written by thread " + std::to_string(s.w_tid));
        return;
      }
      if (s.r_epoch != b->epoch) {
        s.r_epoch = b->epoch;
        s.r_tid = tid;
      } else if (s.r_tid != tid) {
        s.r_tid = kManyReaders;
      }
    } else {
      if (s.w_epoch == b->epoch && s.w_tid != tid) {
        race("race-waw", "writes", i, "also written by thread " + std::to_string(s.w_tid));
        return;
      }
      if (s.r_epoch == b->epoch && s.r_tid != tid) {
        race("race-war", "writes", i,
             s.r_tid == kManyReaders ? std::string("read by other threads") : "read by thread " + std::to_string(s.r_tid));
        return;
      }
      s.w_epoch = b->epoch;
      s.w_tid = tid;
    }
  }
}

bool global_access_ok(ThreadState* t, const void* p, size_t n, bool write, const void* pc) {
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + n;
  for (const Buffer& buf : buffers()) {
    if (lo >= buf.lo && hi <= buf.hi) {
      if (write && !buf.writable) {
        report(t, "readonly" + pc_where(pc),
               "write to read-only input `" + buf.name + "` (byte " + std::to_string(lo - buf.lo) + " of " +
                   std::to_string(buf.hi - buf.lo) + ") by " + where(t) + pc_where(pc),
               true);
        return false;
      }
      return true;
    }
  }
  const Launch* l = t->block->launch;
  const uintptr_t plo = reinterpret_cast<uintptr_t>(l->params);
  if (lo >= plo && hi <= plo + l->params_bytes) {
    if (!write) return true;
    report(t, "param-write" + pc_where(pc), "write to the kernel's parameters by " + where(t) + pc_where(pc), true);
    return false;
  }
  std::ostringstream s;
  s << "global memory out of bounds: " << rw(write) << " of " << n << " bytes at " << hex(lo) << " by " << where(t)
    << pc_where(pc) << "; the tensors passed are";
  if (buffers().empty()) s << " none";
  for (const Buffer& buf : buffers()) {
    s << " `" << buf.name << "` [" << hex(buf.lo) << ", " << hex(buf.hi) << ")";
    if (lo >= buf.hi && lo < buf.hi + 4096) s << " (" << lo - buf.hi << " bytes past its end)";
    if (lo >= buf.lo && lo < buf.hi && hi > buf.hi) s << " (the access ends " << hi - buf.hi << " bytes past it)";
    if (hi <= buf.lo && hi + 4096 > buf.lo) s << " (" << buf.lo - lo << " bytes before its start)";
  }
  report(t, "global-oob" + pc_where(pc), s.str(), true);
  return false;
}

// Every instrumented load and store. `natural`: the compiler knows the access is aligned to its
// size (the __tsan_readN/writeN forms), as CUDA requires of every access, vector ones included.
static inline void access(const void* a, size_t n, bool write, bool natural, const void* pc) {
  ThreadState* t = t_thread;
  if (!t) return;  // host code of the launchers
  const uintptr_t p = reinterpret_cast<uintptr_t>(a);
  if (p - reinterpret_cast<uintptr_t>(t->stack) < kStackBytes) return;  // the thread's local memory
  Runner* r = t->block->runner;
  ++r->accesses;
  const uintptr_t arena = reinterpret_cast<uintptr_t>(r->arena);
  const bool shared = p - arena < r->arena_bytes;
  if (natural && n > 1 && p % n) {
    report(t, "misaligned" + pc_where(pc),
           "misaligned " + std::to_string(n) + "-byte " + rw(write) + " at " +
               (shared ? smem_where(t->block, p - arena) : "global address " + hex(p)) + " by " + where(t) +
               pc_where(pc),
           true);
    return;
  }
  if (shared) {
    if (p - arena + n > r->arena_bytes) {
      report(t, "smem-oob" + pc_where(pc),
             "shared memory out of bounds: " + std::string(rw(write)) + " at " + smem_where(t->block, p - arena) +
                 " by " + where(t) + pc_where(pc),
             true);
      return;
    }
    smem_access(t, p - arena, n, write, pc);
  } else {
    global_access_ok(t, a, n, write, pc);
  }
}

void vector_access(const void* a, size_t bytes, bool write, const void* pc) {
  ThreadState* t = t_thread;
  if (!t) return;
  const uintptr_t p = reinterpret_cast<uintptr_t>(a);
  if (p % bytes == 0 || p - reinterpret_cast<uintptr_t>(t->stack) < kStackBytes) return;
  Runner* r = t->block->runner;
  const uintptr_t arena = reinterpret_cast<uintptr_t>(r->arena);
  report(t, "vector-misaligned" + pc_where(pc),
         "misaligned " + std::to_string(bytes) + "-byte vector " + rw(write) + " at " +
             (p - arena < r->arena_bytes ? smem_where(t->block, p - arena) : "global address " + hex(p)) + " by " +
             where(t) + pc_where(pc),
         true);
}

}  // namespace ffsim

// ---- -fsanitize=thread callbacks (GCC and clang emit these; no libtsan is linked) -------------------------
#define FFSIM_TSAN_SIZE(N)                                                                                   \
  extern "C" void __tsan_read##N(void* a) { ffsim::access(a, N, false, true, __builtin_return_address(0)); }   \
  extern "C" void __tsan_write##N(void* a) { ffsim::access(a, N, true, true, __builtin_return_address(0)); }   \
  extern "C" void __tsan_unaligned_read##N(void* a) {                                                        \
    ffsim::access(a, N, false, false, __builtin_return_address(0));                                           \
  }                                                                                                          \
  extern "C" void __tsan_unaligned_write##N(void* a) {                                                       \
    ffsim::access(a, N, true, false, __builtin_return_address(0));                                            \
  }                                                                                                          \
  extern "C" void __tsan_volatile_read##N(void* a) {                                                         \
    ffsim::access(a, N, false, true, __builtin_return_address(0));                                            \
  }                                                                                                          \
  extern "C" void __tsan_volatile_write##N(void* a) {                                                        \
    ffsim::access(a, N, true, true, __builtin_return_address(0));                                             \
  }
FFSIM_TSAN_SIZE(1)
FFSIM_TSAN_SIZE(2)
FFSIM_TSAN_SIZE(4)
FFSIM_TSAN_SIZE(8)
FFSIM_TSAN_SIZE(16)
#undef FFSIM_TSAN_SIZE

extern "C" void __tsan_read_range(void* a, unsigned long n) {
  ffsim::access(a, n, false, false, __builtin_return_address(0));
}
extern "C" void __tsan_write_range(void* a, unsigned long n) {
  ffsim::access(a, n, true, false, __builtin_return_address(0));
}
extern "C" void* __tsan_memcpy(void* dst, const void* src, unsigned long n) {
  ffsim::access(src, n, false, false, __builtin_return_address(0));
  ffsim::access(dst, n, true, false, __builtin_return_address(0));
  return std::memcpy(dst, src, n);
}
extern "C" void* __tsan_memmove(void* dst, const void* src, unsigned long n) {
  ffsim::access(src, n, false, false, __builtin_return_address(0));
  ffsim::access(dst, n, true, false, __builtin_return_address(0));
  return std::memmove(dst, src, n);
}
extern "C" void* __tsan_memset(void* dst, int c, unsigned long n) {
  ffsim::access(dst, n, true, false, __builtin_return_address(0));
  return std::memset(dst, c, n);
}
extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_vptr_update(void**, void*) {}
extern "C" void __tsan_vptr_read(void**) {}

// Atomics appear only in host code of the kernel sources (raise_smem_limit_once); kernels use none.
#define FFSIM_TSAN_ATOMIC(BITS, T)                                                                            \
  extern "C" T __tsan_atomic##BITS##_load(const volatile T* a, int) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); } \
  extern "C" void __tsan_atomic##BITS##_store(volatile T* a, T v, int) { __atomic_store_n(a, v, __ATOMIC_SEQ_CST); } \
  extern "C" T __tsan_atomic##BITS##_fetch_or(volatile T* a, T v, int) {                                       \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                                          \
  }                                                                                                            \
  extern "C" T __tsan_atomic##BITS##_fetch_add(volatile T* a, T v, int) {                                      \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                                         \
  }                                                                                                            \
  extern "C" T __tsan_atomic##BITS##_exchange(volatile T* a, T v, int) {                                       \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                            \
  extern "C" int __tsan_atomic##BITS##_compare_exchange_strong(volatile T* a, T* expected, T desired, int, int) { \
    return __atomic_compare_exchange_n(a, expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);       \
  }
FFSIM_TSAN_ATOMIC(8, uint8_t)
FFSIM_TSAN_ATOMIC(32, uint32_t)
FFSIM_TSAN_ATOMIC(64, uint64_t)
#undef FFSIM_TSAN_ATOMIC
extern "C" void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
extern "C" void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
