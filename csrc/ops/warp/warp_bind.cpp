// warp's binding: WarpParams built by keyword, and the op itself.
#include "common/binding.h"
#include "common/keyword_struct.h"
#include "ops/warp/warp.h"

namespace fastflow {

void bind_warp(pybind11::module_& m) {
  KeywordStruct<WarpParams>(m, "WarpParams", "one warp call (warp.h), by keyword")
      .pointer("x", &WarpParams::x, "data pointer of the (B, C, H, W) image")
      .dtype("x_dtype", &WarpParams::x_dtype, "its DTYPE_CODES code (also out's and mask's)")
      .strides("x_stride", &WarpParams::x_stride, "its 4 strides in elements")
      .pointer("flow", &WarpParams::flow, "data pointer of the (B, 2, H, W) flow")
      .dtype("flow_dtype", &WarpParams::flow_dtype, "its DTYPE_CODES code")
      .strides("flow_stride", &WarpParams::flow_stride, "its 4 strides in elements")
      .field("batch", &WarpParams::B, "B")
      .field("channels", &WarpParams::C, "C")
      .field("height", &WarpParams::H, "H")
      .field("width", &WarpParams::W, "W")
      .pointer("out", &WarpParams::out, "data pointer of the (B, C, H, W) output")
      .strides("out_stride", &WarpParams::out_stride, "its 4 strides in elements")
      .pointer("mask", &WarpParams::mask, "data pointer of the contiguous (B, 1, H, W) mask, or 0")
      .field("zeros", &WarpParams::zeros, "padding: True zeros, False border")
      .done();
  def_op<WarpParams>(m, "warp", nullptr, FF_CPU_FN(warp_cpu), FF_CUDA_FN(warp_cuda),
                     "bilinear backward warp, border (Resample2d) or zeros padding");
}

}  // namespace fastflow
