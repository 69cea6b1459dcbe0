"""What crosses the pybind11 boundary by name: the params struct of every op (built by keyword,
every field required, unknown or mistyped fields a TypeError: csrc/common/keyword_struct.h), the
IgemmCall of conv2d_lrelu / deconv_lrelu (validated in csrc/igemm/igemm_call.cpp) and the plan
made once for it, and the constants Python reads from the extension instead of keeping copies
(dtype codes, MEAN_SPLITS, the deconv taps)."""
import pytest
import torch

from fastflow import _backend, network, ops

FIELDS = dict(
    x=0, batch=1, height=9, width=7, channels=16, pixel_stride=16, weight=0, bias=0, out_channels=24, ksize=3,
    stride=1, out=0, out_total_channels=24, out_offset=0, slope=0.1, dtype=1, allow_tf32=True, workspace=0,
    workspace_elems=0, num_sms=132, split_k=0,
)


def _extensions():
    libs = [_backend.load()]
    if _backend.simt_available():
        libs.append(_backend.load_simt())
    return libs


@pytest.mark.parametrize("lib", _extensions(), ids=lambda m: m.__name__)
def test_igemm_call_by_keyword(lib):
    call = lib.IgemmCall(**FIELDS)
    assert call.channels == 16 and call.out_channels == 24 and call.ksize == 3 and call.allow_tf32 is True
    assert "out_offset=0" in repr(call)
    plan = lib.igemm_plan(call, False)
    assert (plan.config, plan.bm, plan.bn) == (1, 64, 64) and plan.splits >= 1
    with pytest.raises(TypeError, match="missing field split_k"):
        lib.IgemmCall(**{k: v for k, v in FIELDS.items() if k != "split_k"})
    with pytest.raises(TypeError, match="unknown field kernel_size"):
        lib.IgemmCall(**FIELDS, kernel_size=3)
    with pytest.raises(TypeError):
        lib.IgemmCall(**{**FIELDS, "batch": "1"})
    with pytest.raises(TypeError):
        lib.IgemmCall(1, 2, 3)  # no positional construction


@pytest.mark.parametrize("field, value, message", [
    ("channels", 12, "input channels must be a positive multiple of 8, got 12"),
    ("pixel_stride", 8, "input pixel stride 8 must be a multiple of 8 and at least the 16 input channels"),
    ("out_offset", 8, r"output slice \[8, 32\) does not fit in 24 channels"),
    ("ksize", 4, "kernel size must be odd and in 1..7, got 4"),
    ("stride", 3, "stride must be 1 or 2, got 3"),
    ("dtype", 7, "unknown dtype code 7"),
    ("batch", -1, "negative size"),
    ("height", 1 << 40, "tensor too large for 32-bit GEMM indices"),
])
def test_igemm_call_validation(field, value, message):
    C = _backend.load()
    with pytest.raises(ValueError, match="fastflow.conv2d_lrelu: " + message):
        C.igemm_plan(C.IgemmCall(**{**FIELDS, field: value}), False)


def test_split_k_call_needs_its_workspace():
    C = _backend.load()
    call = C.IgemmCall(**{**FIELDS, "split_k": 2, "channels": 64, "pixel_stride": 64})
    assert C.igemm_plan(call, False).splits == 2
    with pytest.raises(ValueError, match="split-K needs a float32 workspace"):
        C.conv2d_lrelu(call, C.igemm_plan(call, False), -1, 0)


@pytest.mark.parametrize("change", [dict(height=10), dict(split_k=3), dict(num_sms=1), dict(dtype=0),
                                    dict(out_offset=0, out_total_channels=32), "deconv"])
def test_a_plan_runs_only_its_own_call(change):
    """conv2d_lrelu / deconv_lrelu take the plan igemm_plan made (no second planning) and refuse one
    made for another call: other sizes, split, SM count, precision, output slice or op."""
    C = _backend.load()
    call = C.IgemmCall(**{**FIELDS, "channels": 64, "pixel_stride": 64})
    plan = C.igemm_plan(call, False)
    assert "conv2d_lrelu" in repr(plan) and plan.deconv is False
    if change == "deconv":
        with pytest.raises(ValueError, match="fastflow.deconv_lrelu: the plan was made for another call"):
            C.deconv_lrelu(call, plan, -1, 0)
        return
    other = C.IgemmCall(**{**FIELDS, "channels": 64, "pixel_stride": 64, **change})
    with pytest.raises(ValueError, match="fastflow.conv2d_lrelu: the plan was made for another call"):
        C.conv2d_lrelu(other, plan, -1, 0)


# The keyword-built params struct of each other op (csrc/ops/<op>/<op>.h), with valid field values.
PARAMS = {
    "NormalizePackParams": dict(pair=0, pair_stride=[1, 1, 1, 1, 1], batch=0, height=0, width=0, out=0, out_dtype=0,
                                channels=6, rgb_max=255.0, partial=0),
    "UpsampleFlowParams": dict(flow2=0, flow2_dtype=1, flow2_stride=[1, 1, 1, 1], batch=0, height=0, width=0,
                               div_flow=20.0, out=0),
    "WarpParams": dict(x=0, x_dtype=2, x_stride=[1, 1, 1, 1], flow=0, flow_dtype=0, flow_stride=[1, 1, 1, 1], batch=0,
                       channels=3, height=0, width=0, out=0, out_stride=[1, 1, 1, 1], mask=0, zeros=False),
    "FlowHeadParams": dict(x=0, dtype=0, x_stride=[1, 1, 1], batch=0, channels=8, height=0, width=0, packed=0,
                           has_up=False, flow=0, out=0, out_stride=[0, 0, 0], out_offset=0, out_channels=0),
}
STRIDES = {"NormalizePackParams": ("pair_stride", 5), "UpsampleFlowParams": ("flow2_stride", 4),
           "WarpParams": ("x_stride", 4), "FlowHeadParams": ("x_stride", 3)}
DTYPE_FIELD = {"NormalizePackParams": "out_dtype", "UpsampleFlowParams": "flow2_dtype", "WarpParams": "x_dtype",
               "FlowHeadParams": "dtype"}


@pytest.mark.parametrize("lib", _extensions(), ids=lambda m: m.__name__)
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_op_params_by_keyword(lib, name):
    cls, fields = getattr(lib, name), PARAMS[name]
    params = cls(**fields)
    for field, value in fields.items():
        assert getattr(params, field) == value, field
    assert repr(params).startswith(name + "(")
    first = next(iter(fields))
    with pytest.raises(TypeError, match=f"missing field {first}"):
        cls(**{k: v for k, v in fields.items() if k != first})
    with pytest.raises(TypeError, match="unknown field stream"):
        cls(**fields, stream=0)
    with pytest.raises(TypeError):
        cls(**{**fields, "batch": "1"})
    with pytest.raises(TypeError):
        cls(*fields.values())  # no positional construction
    stride_field, n = STRIDES[name]
    with pytest.raises(ValueError, match=f"{stride_field} needs {n} strides, got {n + 1}"):
        cls(**{**fields, stride_field: [1] * (n + 1)})
    with pytest.raises(ValueError, match="unknown dtype code 3"):
        cls(**{**fields, DTYPE_FIELD[name]: 3})


def test_ops_take_their_params_struct():
    """Each op takes (params, device, stream) by name; an empty call runs and returns."""
    C = _backend.load()
    for op, name in (("normalize_pack", "NormalizePackParams"), ("upsample_flow", "UpsampleFlowParams"),
                     ("warp", "WarpParams"), ("flow_head", "FlowHeadParams")):
        getattr(C, op)(params=getattr(C, name)(**PARAMS[name]), device=-1, stream=0)
        with pytest.raises(TypeError):
            getattr(C, op)(getattr(C, name)(**PARAMS[name]))  # device and stream are required
    bad = C.FlowHeadParams(**{**PARAMS["FlowHeadParams"], "has_up": True, "out_offset": 3, "out_channels": 4})
    with pytest.raises(ValueError, match=r"fastflow.flow_head: channels \[3, 5\) do not fit in out's 4 channels"):
        C.flow_head(bad, -1, 0)


def test_constants_come_from_the_extension():
    C = _backend.load()
    assert C.DTYPE_CODES == {"float32": 0, "float16": 1, "bfloat16": 2}
    assert ops.DTYPE_CODES == {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
    assert ops.MEAN_SPLITS == C.MEAN_SPLITS == 64
    assert C.CHANNEL_ALIGN == 8 and all(network.pad8(c) % C.CHANNEL_ALIGN == 0 for c in range(1, 40))
    # The kernels' sub-pixel tap table (csrc/common/deconv_taps.h) is the Python one (fastflow.network).
    assert C.DECONV_TAPS == network.DECONV_TAPS == ((1, 3), (2, 0))
    for lib in _extensions()[1:]:
        for name in ("DTYPE_CODES", "MEAN_SPLITS", "CHANNEL_ALIGN", "DECONV_TAPS"):
            assert getattr(lib, name) == getattr(C, name), name
