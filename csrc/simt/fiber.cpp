// Fibers of the SIMT runtime: one per CUDA thread, switched by the block scheduler.
//
// x86-64 (System V): a hand-written switch that saves the six callee-saved registers on the old
// stack, stores its stack pointer, loads the new one and pops. About 20x faster than ucontext
// (swapcontext also saves the signal mask with a system call), which matters because every
// barrier and every warp collective switches all threads of the block. Other targets (aarch64, ...)
// and builds with FFSIM_PORTABLE_FIBERS use <ucontext.h>.
#include <cstdint>
#include <cstdlib>

#include "runtime.h"

#if defined(__x86_64__) && !defined(FFSIM_PORTABLE_FIBERS)
#define FFSIM_X86_64_SWITCH 1
#else
#include <ucontext.h>
#endif

namespace ffsim {

#if defined(FFSIM_X86_64_SWITCH)

extern "C" void ffsim_switch_x86_64(void** save_sp, void* load_sp);
asm(R"(
.text
.p2align 4
.globl ffsim_switch_x86_64
.hidden ffsim_switch_x86_64
.type ffsim_switch_x86_64,@function
ffsim_switch_x86_64:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size ffsim_switch_x86_64,.-ffsim_switch_x86_64
.section .note.GNU-stack,"",@progbits
.text
)");

void context_init(Context& ctx, char* stack, size_t bytes, void (*entry)()) {
  // Initial frame: six zero "saved registers", then entry() as the return address of the first
  // switch. At entry rsp % 16 == 8, as after a call.
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t(15);
  uintptr_t* frame = reinterpret_cast<uintptr_t*>(top) - 2;
  frame[0] = reinterpret_cast<uintptr_t>(entry);
  frame[1] = 0;  // entry never returns
  uintptr_t* sp = frame - 6;
  for (int i = 0; i < 6; ++i) sp[i] = 0;
  ctx.sp = sp;
}

void context_switch(Context& from, Context& to) { ffsim_switch_x86_64(&from.sp, to.sp); }

void context_free(Context&) {}

const char* context_switch_kind() { return "x86-64 assembly"; }

#else

static ucontext_t* uctx(Context& c) {
  if (!c.portable) c.portable = new ucontext_t();
  return static_cast<ucontext_t*>(c.portable);
}

void context_init(Context& ctx, char* stack, size_t bytes, void (*entry)()) {
  ucontext_t* u = uctx(ctx);
  if (getcontext(u) != 0) std::abort();
  u->uc_stack.ss_sp = stack;
  u->uc_stack.ss_size = bytes;
  u->uc_link = nullptr;
  makecontext(u, entry, 0);
}

void context_switch(Context& from, Context& to) {
  if (swapcontext(uctx(from), uctx(to)) != 0) std::abort();
}

void context_free(Context& ctx) {
  delete static_cast<ucontext_t*>(ctx.portable);
  ctx.portable = nullptr;
}

const char* context_switch_kind() { return "ucontext (portable)"; }

#endif

}  // namespace ffsim
