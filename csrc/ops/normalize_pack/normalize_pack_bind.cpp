// normalize_pack's binding: NormalizePackParams built by keyword, and the op itself.
#include "common/binding.h"
#include "common/keyword_struct.h"
#include "ops/normalize_pack/normalize_pack.h"

namespace fastflow {

void bind_normalize_pack(pybind11::module_& m) {
  KeywordStruct<NormalizePackParams>(m, "NormalizePackParams", "one normalize_pack call (normalize_pack.h), by keyword")
      .pointer("pair", &NormalizePackParams::in, "data pointer of the float32 (B, 3, 2, H, W) pair")
      .strides("pair_stride", &NormalizePackParams::in_stride, "its 5 strides in elements")
      .field("batch", &NormalizePackParams::B, "B")
      .field("height", &NormalizePackParams::H, "H")
      .field("width", &NormalizePackParams::W, "W")
      .pointer("out", &NormalizePackParams::out, "data pointer of the (B, H, W, channels) output")
      .dtype("out_dtype", &NormalizePackParams::out_dtype, "DTYPE_CODES code of out")
      .field("channels", &NormalizePackParams::C, "6 or 8")
      .field("rgb_max", &NormalizePackParams::rgb_max, "the pair's value range 0..rgb_max")
      .pointer("partial", &NormalizePackParams::partial,
               "data pointer of the CUDA version's float32 workspace (B * 3 * MEAN_SPLITS), or 0")
      .done();
  def_op<NormalizePackParams>(m, "normalize_pack", nullptr, FF_CPU_FN(normalize_pack_cpu),
                              FF_CUDA_FN(normalize_pack_cuda), "RGB pair (B,3,2,H,W) -> normalised NHWC network input");
}

}  // namespace fastflow
