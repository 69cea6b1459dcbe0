// Validation and planning of conv2d_lrelu / deconv_lrelu calls (igemm_call.h): sizes, channel
// padding, output slice, 32-bit index limits, the tile plan and the split-K workspace.
#include "igemm/igemm_call.h"

namespace fastflow {

namespace {

// Shape of an implicit-GEMM call. conv: k = ksize, any stride; deconv (ConvTranspose2d k4 s2 p1):
// 2x2 taps per phase, output 2H x 2W.
IgemmShape igemm_shape(const IgemmCall& c, bool deconv, const char* op) {
  FF_CHECK(c.batch >= 0 && c.height >= 0 && c.width >= 0 && c.out_channels >= 0, op, "negative size");
  FF_CHECK(c.channels > 0 && channel_aligned(c.channels), op, "input channels must be a positive multiple of ",
           kChannelAlign, ", got ", c.channels);
  FF_CHECK(c.out_offset >= 0 && c.out_total_channels >= c.out_offset + c.out_channels, op, "output slice [",
           c.out_offset, ", ", c.out_offset + c.out_channels, ") does not fit in ", c.out_total_channels, " channels");
  FF_CHECK(c.pixel_stride >= c.channels && channel_aligned(c.pixel_stride), op, "input pixel stride ",
           c.pixel_stride, " must be a multiple of ", kChannelAlign, " and at least the ", c.channels,
           " input channels");
  // 32-bit GEMM indices; element offsets are 64-bit. Checked before any narrowing below.
  FF_CHECK(c.batch < (int64_t(1) << 31) && c.height < (int64_t(1) << 31) && c.width < (int64_t(1) << 31) &&
               c.channels < (int64_t(1) << 28) && c.out_channels < (int64_t(1) << 31) &&
               c.pixel_stride < (int64_t(1) << 31) && c.out_total_channels < (int64_t(1) << 31),
           op, "tensor too large for 32-bit GEMM indices");
  IgemmShape s{};
  s.B = int(c.batch);
  s.H = int(c.height);
  s.W = int(c.width);
  s.Cx = int(c.channels);
  s.xstride = int(c.pixel_stride);
  s.Cout = int(c.out_channels);
  s.Ctot = int(c.out_total_channels);
  s.offset = int(c.out_offset);
  s.deconv = deconv;
  if (deconv) {
    s.ksize = 2;
    s.stride = 1;
    s.pad = 0;
    s.Ho = s.H;
    s.Wo = s.W;
  } else {
    FF_CHECK(c.ksize >= 1 && c.ksize <= 7 && c.ksize % 2 == 1, op, "kernel size must be odd and in 1..7, got ",
             c.ksize);
    FF_CHECK(c.stride == 1 || c.stride == 2, op, "stride must be 1 or 2, got ", c.stride);
    s.ksize = c.ksize;
    s.stride = c.stride;
    s.pad = (c.ksize - 1) / 2;
    s.Ho = s.H > 0 ? conv_out_size(s.H, c.ksize, c.stride) : 0;
    s.Wo = s.W > 0 ? conv_out_size(s.W, c.ksize, c.stride) : 0;
  }
  // Row indices run up to M + a tile past the end inside the kernel: keep a margin below 2^31.
  FF_CHECK(c.batch * s.OH() * s.OW() < (int64_t(1) << 31) - 256 && c.batch * c.height * c.width < (int64_t(1) << 31) &&
               int64_t(s.K()) * c.out_channels < (int64_t(1) << 31),
           op, "tensor too large for 32-bit GEMM indices");
  return s;
}

IgemmPlanKey key_of(const IgemmCall& c, const IgemmShape& s, const char* op) {
  return IgemmPlanKey{s, math_mode(to_dtype(c.dtype, op), c.allow_tf32), c.num_sms, c.split_k};
}

bool same_shape(const IgemmShape& a, const IgemmShape& b) {
  return a.B == b.B && a.H == b.H && a.W == b.W && a.Cx == b.Cx && a.xstride == b.xstride && a.Ho == b.Ho &&
         a.Wo == b.Wo && a.ksize == b.ksize && a.stride == b.stride && a.pad == b.pad && a.Cout == b.Cout &&
         a.Ctot == b.Ctot && a.offset == b.offset && a.deconv == b.deconv;
}

}  // namespace

bool operator==(const IgemmPlanKey& a, const IgemmPlanKey& b) {
  return same_shape(a.shape, b.shape) && a.mode == b.mode && a.num_sms == b.num_sms && a.split_k == b.split_k;
}

IgemmCallPlan igemm_plan(const IgemmCall& c, bool deconv) {
  const char* op = igemm_op(deconv);
  const IgemmPlanKey key = key_of(c, igemm_shape(c, deconv, op), op);
  return IgemmCallPlan{plan_igemm(key.shape, key.mode, key.num_sms, key.split_k), key};
}

IgemmParams igemm_params(const IgemmCall& c, bool deconv, const IgemmCallPlan& planned) {
  const char* op = igemm_op(deconv);
  IgemmParams p{};
  p.shape = igemm_shape(c, deconv, op);
  FF_CHECK(key_of(c, p.shape, op) == planned.key, op,
           "the plan was made for another call (sizes, dtype, TF32, SM count or split_k differ); "
           "plan this call with igemm_plan");
  const IgemmPlan& plan = planned.plan;
  p.x = reinterpret_cast<const void*>(c.x);
  p.w = reinterpret_cast<const void*>(c.weight);
  p.bias = reinterpret_cast<const void*>(c.bias);
  p.out = reinterpret_cast<void*>(c.out);
  p.workspace = reinterpret_cast<float*>(c.workspace);
  p.workspace_elems = c.workspace_elems;
  p.slope = c.slope;
  p.dtype = to_dtype(c.dtype, op);
  p.allow_tf32 = c.allow_tf32;
  FF_CHECK(plan.splits == 1 || (c.workspace != 0 && c.workspace_elems >= plan.workspace_elems), op,
           "split-K needs a float32 workspace of ", plan.workspace_elems, " elements, got ", c.workspace_elems);
  return p;
}

}  // namespace fastflow
