// Warp collectives and the PTX instructions of ptx.cuh, as the PTX ISA defines them.
//
// A collective parks each lane until all 32 lanes of the warp arrived at the same instruction; the
// last one computes for the warp (lanes that skip it deadlock the block and are reported). Fragment
// layouts follow the PTX ISA's tables ("Matrix fragments for mma.m16n8k16 / mma.m16n8k8",
// "ldmatrix"), with groupID g = lane / 4 and threadID_in_group t = lane % 4; lower 16 bits hold
// the lower-indexed element of a .f16x2 / .bf16x2 register. tests/test_simt_ptx.py checks them
// against tables written independently in Python, and on a GPU against the hardware.
#include <cstring>

#include "common/common.h"
#include "runtime.h"

namespace ffsim {

namespace {

std::string op_at(uint32_t addr, const char* what) {
  return std::string(what) + " at shared address " + std::to_string(addr);
}

// Runs fn(slot) once per warp, in the last lane to arrive; the other lanes sleep until then.
template <typename Fn>
void warp_collective(const char* op, void* operands, Fn fn) {
  ThreadState* t = t_thread;
  BlockState* b = t->block;
  Runner* r = b->runner;
  const int w = t->linear / kWarpSize, lane = t->linear % kWarpSize;
  if (b->nthreads - w * kWarpSize < kWarpSize)
    report(t, std::string("partial-warp-") + op,
           std::string(op) + " in a partial warp (the block size is not a multiple of 32): " + where(t), true);
  WarpSlot& s = r->warps[w];
  if (s.arrived == 0) {
    s.op = op;
  } else if (s.op != op) {
    report(t, "warp-divergence",
           std::string("warp divergence: lanes of one warp at different collectives: ") + where(t) + " at " + op +
               ", an earlier lane at " + s.op + pc_where(__builtin_return_address(0)),
           true);
  }
  s.operands[lane] = operands;
  s.lanes[lane] = t;
  if (++s.arrived < kWarpSize) {
    t->state = State::kWarp;
    t->warp_op = op;
    yield_to_scheduler();
    return;
  }
  fn(s);
  r->counter(op)++;
  s.arrived = 0;
  for (int l = 0; l < kWarpSize; ++l)
    if (s.lanes[l] != t) s.lanes[l]->state = State::kRunnable;
}

}  // namespace

// ---- shfl.sync.bfly.b32 ---------------------------------------------------------------------------------
float shfl_xor(unsigned mask, float value, int lane_mask, int width) {
  ThreadState* t = t_thread;
  if (mask != 0xFFFFFFFFu || width != kWarpSize || lane_mask < 0 || lane_mask >= kWarpSize)
    report(t, "shfl-args",
           "__shfl_xor_sync with a partial mask, width or lane mask (the runtime implements full warps only): " +
               where(t) + pc_where(__builtin_return_address(0)),
           true);
  struct Op {
    float in, out;
  } op{value, 0.f};
  warp_collective("shfl.sync.bfly", &op, [lane_mask](WarpSlot& s) {
    for (int l = 0; l < kWarpSize; ++l)
      static_cast<Op*>(s.operands[l])->out = static_cast<Op*>(s.operands[l ^ lane_mask])->in;
  });
  return op.out;
}

// ---- cvta.to.shared, cp.async.cg.shared.global, commit_group, wait_group -----------------------------------
uint32_t smem_addr(const void* p) {
  ThreadState* t = t_thread;
  Runner* r = t->block->runner;
  const uintptr_t off = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(r->arena);
  if (off >= r->arena_bytes || r->region[off] == 0) {
    report(t, "cvta-shared",
           "__cvta_generic_to_shared of a pointer outside shared memory by " + where(t) +
               pc_where(__builtin_return_address(0)),
           true);
  }
  return uint32_t(off);
}

static bool smem_range_ok(Runner* r, uint32_t addr, size_t n) {
  if (size_t(addr) + n > r->arena_bytes) return false;
  for (size_t i = 0; i < n; ++i)
    if (r->region[addr + i] == 0) return false;
  return true;
}

void cp_async(uint32_t dst, const void* src, int cp_size, int src_size) {
  ThreadState* t = t_thread;
  BlockState* b = t->block;
  Runner* r = b->runner;
  const void* pc = __builtin_return_address(0);
  ++r->cp_async;
  if (dst % unsigned(cp_size)) {
    report(t, "cp.async-dst-align" + pc_where(pc),
           "misaligned cp.async destination: " + std::to_string(cp_size) + "-byte copy to " + smem_where(b, dst) +
               " by " + where(t) + pc_where(pc),
           true);
  }
  if (!smem_range_ok(r, dst, size_t(cp_size))) {
    report(t, "cp.async-dst-oob" + pc_where(pc),
           "cp.async destination out of bounds: " + std::to_string(cp_size) + " bytes at " + smem_where(b, dst) +
               " by " + where(t) + pc_where(pc),
           true);
  }
  if (src_size < 0 || src_size > cp_size) {
    report(t, "cp.async-size" + pc_where(pc),
           "cp.async src-size " + std::to_string(src_size) + " outside [0, " + std::to_string(cp_size) + "] by " +
               where(t) + pc_where(pc),
           true);
  }
  if (src_size > 0) {
    if (reinterpret_cast<uintptr_t>(src) % unsigned(cp_size)) {
      report(t, "cp.async-src-align" + pc_where(pc),
             "misaligned cp.async source: " + std::to_string(cp_size) + "-byte copy from a global address not " +
                 std::to_string(cp_size) + "-byte aligned, by " + where(t) + pc_where(pc),
             true);
    }
    if (!global_access_ok(t, src, size_t(src_size), false, pc)) return;
  }
  // The copy may land any time before its wait: it conflicts with this epoch's accesses already,
  // and every access to the destination until the wait is reported.
  smem_access(t, dst, size_t(cp_size), true, pc);
  for (int i = 0; i < cp_size; ++i) r->shadow[dst + i].inflight = b->serial;
  t->open_group.push_back({dst, static_cast<const uint8_t*>(src), cp_size, src_size, pc});
}

void cp_async_commit() {
  ThreadState* t = t_thread;
  t->groups.push_back(std::move(t->open_group));
  t->open_group.clear();
}

void cp_async_wait(int pending) {
  ThreadState* t = t_thread;
  Runner* r = t->block->runner;
  // Data lands now, written by this thread in the current epoch: other threads need a barrier
  // before reading it.
  while (int(t->groups.size()) > pending) {
    for (const AsyncCopy& c : t->groups.front()) {
      for (int i = 0; i < c.cp_size; ++i) r->shadow[c.dst + i].inflight = 0;
      if (c.src_size > 0) std::memcpy(r->arena + c.dst, c.src, size_t(c.src_size));
      std::memset(r->arena + c.dst + c.src_size, 0, size_t(c.cp_size - c.src_size));  // zero fill
      smem_access(t, c.dst, size_t(c.cp_size), true, c.pc);
    }
    t->groups.pop_front();
  }
}

// ---- ldmatrix.sync.aligned.m8n8.x4.shared.b16 ---------------------------------------------------------------
void ldmatrix_x4(uint32_t (&reg)[4], uint32_t addr) {
  struct Op {
    uint32_t addr;
    uint32_t* out;
    const void* pc;
  } op{addr, reg, __builtin_return_address(0)};
  warp_collective("ldmatrix.x4", &op, [](WarpSlot& s) {
    ThreadState* last = s.lanes[0];
    Runner* r = last->block->runner;
    uint8_t rows[4][8][16];
    // Lanes 8j .. 8j+7 give the addresses of rows 0..7 of matrix j (16 contiguous bytes each).
    for (int j = 0; j < 4; ++j) {
      for (int i = 0; i < 8; ++i) {
        const int lane = 8 * j + i;
        const Op* o = static_cast<const Op*>(s.operands[lane]);
        ThreadState* lt = s.lanes[lane];
        if (o->addr % 16) {
          report(lt, "ldmatrix-align" + pc_where(o->pc),
                 "misaligned ldmatrix row address: " + op_at(o->addr, "row") + " (must be 16-byte aligned), lane " +
                     std::to_string(lane) + " of " + where(lt) + pc_where(o->pc),
                 true);
        }
        if (!smem_range_ok(r, o->addr, 16)) {
          report(lt, "ldmatrix-oob" + pc_where(o->pc),
                 "ldmatrix row out of shared-memory bounds: " + smem_where(lt->block, o->addr) + ", " + where(lt) +
                     pc_where(o->pc),
                 true);
        }
        smem_access(lt, o->addr, 16, false, o->pc);
        std::memcpy(rows[j][i], r->arena + o->addr, 16);
      }
    }
    // Lane l receives, in register j, row l/4 and 32-bit column l%4 of matrix j.
    for (int l = 0; l < kWarpSize; ++l) {
      Op* o = static_cast<Op*>(s.operands[l]);
      for (int j = 0; j < 4; ++j) std::memcpy(&o->out[j], &rows[j][l / 4][4 * (l % 4)], 4);
    }
  });
}

// ---- cvt.rna.tf32.f32 -------------------------------------------------------------------------------------
uint32_t cvt_rna_tf32(uint32_t x) {
  if ((x & 0x7F800000u) == 0x7F800000u) return x;  // inf and NaN pass unchanged
  return (x + 0x1000u) & 0xFFFFE000u;              // 10 mantissa bits, nearest, ties away from zero
}

// ---- mma.sync.aligned.{m16n8k16 .f16/.bf16, m16n8k8 .tf32}.row.col.f32 ------------------------------------
void mma_sync(MmaKind kind, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  struct Op {
    float* d;
    const uint32_t* a;
    const uint32_t* b;
    MmaKind kind;
    const void* pc;
  } op{d, a, b, kind, __builtin_return_address(0)};
  const char* name = kind == MmaKind::kF16    ? "mma.m16n8k16.f16"
                     : kind == MmaKind::kBF16 ? "mma.m16n8k16.bf16"
                                              : "mma.m16n8k8.tf32";
  warp_collective(name, &op, [](WarpSlot& s) {
    const MmaKind k = static_cast<Op*>(s.operands[0])->kind;
    const int K = k == MmaKind::kTF32 ? 8 : 16;
    double A[16][16] = {}, B[16][8] = {}, C[16][8] = {};
    auto half = [k](uint32_t bits) {
      const uint16_t h = uint16_t(bits);
      return k == MmaKind::kF16 ? double(fastflow::half_to_float(h)) : double(fastflow::bf16_to_float(h));
    };
    for (int l = 0; l < kWarpSize; ++l) {
      const Op* o = static_cast<const Op*>(s.operands[l]);
      const int g = l / 4, tg = l % 4;
      if (k == MmaKind::kTF32) {
        for (int i = 0; i < 6; ++i) {
          const uint32_t v = i < 4 ? o->a[i] : o->b[i - 4];
          if (v & 0x1FFFu) {
            report(s.lanes[l], "tf32-operand" + pc_where(o->pc),
                   std::string("tf32 mma operand not rounded to tf32 (low 13 bits set; cvt.rna.tf32.f32 missing): ") +
                       (i < 4 ? "a[" + std::to_string(i) : "b[" + std::to_string(i - 4)) + "] of " +
                       where(s.lanes[l]) + pc_where(o->pc),
                   false);
            break;
          }
        }
        // A 16x8: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4). B 8x8: b0 (k=t, n=g), b1 (k=t+4, n=g).
        A[g][tg] = __uint_as_float(o->a[0]);
        A[g + 8][tg] = __uint_as_float(o->a[1]);
        A[g][tg + 4] = __uint_as_float(o->a[2]);
        A[g + 8][tg + 4] = __uint_as_float(o->a[3]);
        B[tg][g] = __uint_as_float(o->b[0]);
        B[tg + 4][g] = __uint_as_float(o->b[1]);
      } else {
        // A 16x16: a0,a1 (g, 2t+{0,1}), a2,a3 (g+8, 2t+{0,1}), a4,a5 (g, 2t+8+{0,1}), a6,a7 (g+8, 2t+8+{0,1});
        // register i holds elements 2i (low half) and 2i+1. B 16x8: b0,b1 (k=2t+{0,1}, n=g), b2,b3 (k=2t+8+{0,1}).
        const int row[4] = {g, g + 8, g, g + 8}, col[4] = {2 * tg, 2 * tg, 2 * tg + 8, 2 * tg + 8};
        for (int i = 0; i < 4; ++i) {
          A[row[i]][col[i]] = half(o->a[i]);
          A[row[i]][col[i] + 1] = half(o->a[i] >> 16);
        }
        for (int i = 0; i < 2; ++i) {
          B[2 * tg + 8 * i][g] = half(o->b[i]);
          B[2 * tg + 8 * i + 1][g] = half(o->b[i] >> 16);
        }
      }
      // C/D 16x8 f32: c0,c1 (g, 2t+{0,1}), c2,c3 (g+8, 2t+{0,1}).
      C[g][2 * tg] = o->d[0];
      C[g][2 * tg + 1] = o->d[1];
      C[g + 8][2 * tg] = o->d[2];
      C[g + 8][2 * tg + 1] = o->d[3];
    }
    // D = A B + C with exact products, summed in double and rounded once to fp32. (Tensor cores
    // round differently in the last bits; on dyadic data every variant is exact.)
    float D[16][8];
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n) {
        double acc = C[m][n];
        for (int kk = 0; kk < K; ++kk) acc += A[m][kk] * B[kk][n];
        D[m][n] = float(acc);
      }
    for (int l = 0; l < kWarpSize; ++l) {
      Op* o = static_cast<Op*>(s.operands[l]);
      const int g = l / 4, tg = l % 4;
      o->d[0] = D[g][2 * tg];
      o->d[1] = D[g][2 * tg + 1];
      o->d[2] = D[g + 8][2 * tg];
      o->d[3] = D[g + 8][2 * tg + 1];
    }
  });
}

}  // namespace ffsim
