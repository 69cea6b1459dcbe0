// One conv2d_lrelu / deconv_lrelu call as Python describes it, and its validation and planning
// (igemm_call.cpp, compiled into fastflow._C and fastflow._simt). fastflow.ops builds an IgemmCall
// by keyword (igemm_bind.cpp exposes it with named fields), so no positional argument can be
// swapped. A call is planned once: Python asks igemm_plan() for an IgemmCallPlan, allocates the
// split-K workspace it needs and passes the plan back with the call; the op checks that the plan's
// key is the call's (cheap) instead of planning again.
#pragma once

#include <cstdint>

#include "igemm/igemm.h"

namespace fastflow {

struct IgemmCall {
  // x: NCHW logical, read as NHWC [batch, height, width, channels] with `pixel_stride` elements
  // between neighbouring pixels (a leading channel slice of a concat buffer reads in place).
  uintptr_t x = 0;
  int64_t batch = 0, height = 0, width = 0, channels = 0, pixel_stride = 0;
  // Packed weight (fastflow.ops.pack_conv_weight / pack_deconv_weight) and optional bias [out_channels].
  uintptr_t weight = 0, bias = 0;
  int64_t out_channels = 0;
  int ksize = 0, stride = 1;  // conv only; deconv_lrelu is always ConvTranspose2d(k4, s2, p1)
  // Output buffer [batch, out_total_channels, OH, OW] in channels_last memory; channels
  // [out_offset, out_offset + out_channels) are written.
  uintptr_t out = 0;
  int64_t out_total_channels = 0, out_offset = 0;
  float slope = 1.f;  // LeakyReLU slope (1: identity)
  int dtype = 0;      // common.h DType code of x, weight, bias and out
  bool allow_tf32 = false;
  // Split-K workspace (float32, plan.workspace_elems elements; 0 when the plan has 1 split).
  uintptr_t workspace = 0;
  int64_t workspace_elems = 0;
  int num_sms = 0;  // multiprocessors the plan fills (the GPU's, or the emulated H100's 132)
  int split_k = 0;  // > 0 forces that many K splits (tests); 0: the plan's own choice
};

// The op name of a call kind, for messages: "deconv_lrelu" or "conv2d_lrelu".
inline const char* igemm_op(bool deconv) { return deconv ? "deconv_lrelu" : "conv2d_lrelu"; }

// Everything plan_igemm reads: the validated shape (deconv included), the math mode, the SM count
// and the forced split count. Two calls with equal keys have the same plan.
struct IgemmPlanKey {
  IgemmShape shape;
  MathMode mode;
  int num_sms;
  int split_k;
};
bool operator==(const IgemmPlanKey& a, const IgemmPlanKey& b);

// The plan of one call (tile config, K splits, workspace size) and the key it was made for.
struct IgemmCallPlan {
  IgemmPlan plan;
  IgemmPlanKey key;
};

// Validates the sizes of a call (std::invalid_argument naming the problem) and plans it.
IgemmCallPlan igemm_plan(const IgemmCall& c, bool deconv);

// The launcher's parameters of a validated call whose plan `planned` is (its key must be the
// call's: ValueError otherwise) and whose workspace fits that plan.
IgemmParams igemm_params(const IgemmCall& c, bool deconv, const IgemmCallPlan& planned);

// Runs a planned call (igemm_bind.cpp): the CPU emulation for device -1, else the CUDA kernels of
// conv2d_lrelu / deconv_lrelu on `stream` of `device`, with the GIL released.
void igemm_run(const IgemmCall& c, const IgemmCallPlan& planned, bool deconv, int device, int64_t stream);

}  // namespace fastflow
