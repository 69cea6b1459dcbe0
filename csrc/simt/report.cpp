// SIMT runtime: the reports of its checks (where a finding happened: kernel, block, thread, shared
// address, code address) and the message of a failed launch. See runtime.h for the model.
#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "runtime.h"

namespace ffsim {

// ---- findings --------------------------------------------------------------------------------------------
// "csrc/igemm/igemm.cuh" from the compiler's (absolute) __FILE__.
static std::string short_file(const char* file) {
  const std::string f(file);
  const size_t at = f.rfind("csrc/");
  return at == std::string::npos ? f : f.substr(at);
}
std::string bar_site(const ThreadState& t) { return short_file(t.bar_file) + ":" + std::to_string(t.bar_line); }

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

std::string format_failure(const Launch& l) {
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

}  // namespace ffsim
