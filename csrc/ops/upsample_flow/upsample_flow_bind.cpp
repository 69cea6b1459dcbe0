// upsample_flow's binding: UpsampleFlowParams built by keyword, and the op itself.
#include "common/binding.h"
#include "common/keyword_struct.h"
#include "ops/upsample_flow/upsample_flow.h"

namespace fastflow {

void bind_upsample_flow(pybind11::module_& m) {
  KeywordStruct<UpsampleFlowParams>(m, "UpsampleFlowParams", "one upsample_flow call (upsample_flow.h), by keyword")
      .pointer("flow2", &UpsampleFlowParams::in, "data pointer of the (B, 2, h, w) flow")
      .dtype("flow2_dtype", &UpsampleFlowParams::in_dtype, "its DTYPE_CODES code")
      .strides("flow2_stride", &UpsampleFlowParams::in_stride, "its 4 strides in elements")
      .field("batch", &UpsampleFlowParams::B, "B")
      .field("height", &UpsampleFlowParams::h, "h")
      .field("width", &UpsampleFlowParams::w, "w")
      .field("div_flow", &UpsampleFlowParams::div_flow, "flow scale")
      .pointer("out", &UpsampleFlowParams::out, "data pointer of the float32 (B, 2, 4h, 4w) output")
      .done();
  def_op<UpsampleFlowParams>(m, "upsample_flow", nullptr, FF_CPU_FN(upsample_flow_cpu), FF_CUDA_FN(upsample_flow_cuda),
                             "flow2 * div_flow, bilinear x4 -> (B,2,4h,4w) float32");
}

}  // namespace fastflow
