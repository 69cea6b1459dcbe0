// The binding of the implicit-GEMM engine shared by conv2d_lrelu and deconv_lrelu: the IgemmCall
// struct (built by keyword), the IgemmCallPlan it is planned into (igemm_plan) and the run of a
// planned call. The ops themselves are bound in csrc/ops/conv2d_lrelu/ and csrc/ops/deconv_lrelu/.
#include <string>

#include "common/binding.h"
#include "common/keyword_struct.h"
#include "igemm/igemm_call.h"

namespace fastflow {

void igemm_run(const IgemmCall& c, const IgemmCallPlan& planned, bool deconv, int device, int64_t stream) {
  const char* op = igemm_op(deconv);
  const IgemmParams p = igemm_params(c, deconv, planned);
  FF_RUN_OP(op, device, (igemm_emulate(p, planned.plan)),
            (deconv ? deconv_lrelu_cuda(p, planned.plan, device, stream)
                    : conv2d_lrelu_cuda(p, planned.plan, device, stream)));
  (void)p, (void)stream;
}

void def_igemm_op(pybind11::module_& m, bool deconv, const char* doc) {
  m.def(
      igemm_op(deconv),
      [deconv](const IgemmCall& c, const IgemmCallPlan& plan, int device, int64_t stream) {
        igemm_run(c, plan, deconv, device, stream);
      },
      pybind11::arg("call"), pybind11::arg("plan"), pybind11::arg("device"), pybind11::arg("stream"), doc);
}

void bind_igemm(pybind11::module_& m) {
  KeywordStruct<IgemmCall>(m, "IgemmCall", "one conv2d_lrelu / deconv_lrelu call (csrc/igemm/igemm_call.h), by keyword")
      .field("x", &IgemmCall::x, "data pointer of x")
      .field("batch", &IgemmCall::batch, "B")
      .field("height", &IgemmCall::height, "H of x")
      .field("width", &IgemmCall::width, "W of x")
      .field("channels", &IgemmCall::channels, "channels of x (a multiple of 8)")
      .field("pixel_stride", &IgemmCall::pixel_stride, "elements between neighbouring pixels of x")
      .field("weight", &IgemmCall::weight, "data pointer of the packed weight")
      .field("bias", &IgemmCall::bias, "data pointer of the bias, or 0")
      .field("out_channels", &IgemmCall::out_channels, "Cout")
      .field("ksize", &IgemmCall::ksize, "conv kernel size (ignored by deconv_lrelu: 4)")
      .field("stride", &IgemmCall::stride, "conv stride (ignored by deconv_lrelu: 2)")
      .field("out", &IgemmCall::out, "data pointer of the output buffer")
      .field("out_total_channels", &IgemmCall::out_total_channels, "channels of the output buffer")
      .field("out_offset", &IgemmCall::out_offset, "first output channel written")
      .field("slope", &IgemmCall::slope, "LeakyReLU slope (1: identity)")
      .field("dtype", &IgemmCall::dtype, "DTYPE_CODES code of every tensor")
      .field("allow_tf32", &IgemmCall::allow_tf32, "fp32 on TF32 tensor cores")
      .field("workspace", &IgemmCall::workspace, "data pointer of the float32 split-K workspace, or 0")
      .field("workspace_elems", &IgemmCall::workspace_elems, "its size in elements")
      .field("num_sms", &IgemmCall::num_sms, "multiprocessors the plan fills")
      .field("split_k", &IgemmCall::split_k, "> 0 forces that many K splits; 0: the plan's choice")
      .done();
  pybind11::class_<IgemmCallPlan>(m, "IgemmCallPlan",
                                  "the tile plan of an IgemmCall (igemm_math.h) and the key of that call",
                                  pybind11::module_local())
      .def_property_readonly("config", [](const IgemmCallPlan& p) { return p.plan.config; })
      .def_property_readonly("bm", [](const IgemmCallPlan& p) { return p.plan.bm; })
      .def_property_readonly("bn", [](const IgemmCallPlan& p) { return p.plan.bn; })
      .def_property_readonly("bk", [](const IgemmCallPlan& p) { return p.plan.bk; })
      .def_property_readonly("k_tiles", [](const IgemmCallPlan& p) { return p.plan.k_tiles; })
      .def_property_readonly("splits", [](const IgemmCallPlan& p) { return p.plan.splits; })
      .def_property_readonly("tiles_per_split", [](const IgemmCallPlan& p) { return p.plan.tiles_per_split; })
      .def_property_readonly("workspace_elems", [](const IgemmCallPlan& p) { return p.plan.workspace_elems; })
      .def_property_readonly("deconv", [](const IgemmCallPlan& p) { return p.key.shape.deconv; })
      .def("__repr__", [](const IgemmCallPlan& c) {
        const IgemmPlan& p = c.plan;
        return std::string("IgemmCallPlan(") + igemm_op(c.key.shape.deconv) + ", config=" + std::to_string(p.config) +
               ", bm=" + std::to_string(p.bm) + ", bn=" + std::to_string(p.bn) + ", bk=" + std::to_string(p.bk) +
               ", splits=" + std::to_string(p.splits) + ", workspace_elems=" + std::to_string(p.workspace_elems) + ")";
      });
  m.def("igemm_plan", &igemm_plan, pybind11::arg("call"), pybind11::arg("deconv"),
        "the IgemmCallPlan (tile config, K splits, workspace size) the conv/deconv kernels use for a call; pass it "
        "to conv2d_lrelu / deconv_lrelu with the call");
}

}  // namespace fastflow
