// flow_head's binding: FlowHeadParams built by keyword (x and out as NHWC element strides
// {batch, row, pixel}: both have channel stride 1, which Python checks), and the op itself.
#include "common/binding.h"
#include "common/keyword_struct.h"
#include "ops/flow_head/flow_head.h"

namespace fastflow {

namespace {

// What the struct alone cannot check: the upsampled flow's slice fits in out.
void check_flow_head(const FlowHeadParams& p) {
  FF_CHECK(!p.has_up || (p.out_offset >= 0 && p.out_offset + 2 <= p.out_channels), "flow_head", "channels [",
           p.out_offset, ", ", p.out_offset + 2, ") do not fit in out's ", p.out_channels, " channels");
}

}  // namespace

void bind_flow_head(pybind11::module_& m) {
  KeywordStruct<FlowHeadParams>(m, "FlowHeadParams", "one flow_head call (flow_head.h), by keyword")
      .pointer("x", &FlowHeadParams::x, "data pointer of the (B, C, h, w) channels_last activation")
      .dtype("dtype", &FlowHeadParams::dtype, "DTYPE_CODES code of x and out")
      .strides("x_stride", &FlowHeadParams::x_stride, "x's batch, row and pixel strides in elements")
      .field("batch", &FlowHeadParams::B, "B")
      .field("channels", &FlowHeadParams::C, "C, the packed weight's padded input channels")
      .field("height", &FlowHeadParams::h, "h")
      .field("width", &FlowHeadParams::w, "w")
      .pointer("packed", &FlowHeadParams::packed, "data pointer of the float32 packed weights (pack_flow_head)")
      .field("has_up", &FlowHeadParams::has_up, "packed holds the 2->2 upsample weight")
      .pointer("flow", &FlowHeadParams::flow, "data pointer of the float32 (B, h, w, 2) flow")
      .pointer("out", &FlowHeadParams::out, "with has_up: data pointer of the (B, 2h, 2w, Ctot) buffer, else 0")
      .strides("out_stride", &FlowHeadParams::out_stride, "out's batch, row and pixel strides (0s without has_up)")
      .field("out_offset", &FlowHeadParams::out_offset, "first channel of out written")
      .field("out_channels", &FlowHeadParams::out_channels, "Ctot of out (0 without has_up)")
      .done();
  def_op<FlowHeadParams>(m, "flow_head", check_flow_head, FF_CPU_FN(flow_head_cpu), FF_CUDA_FN(flow_head_cuda),
                         "predict_flow 3x3 conv -> float32 flow, + 2->2 flow upsample into a concat slice");
}

}  // namespace fastflow
