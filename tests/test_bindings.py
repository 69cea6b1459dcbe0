"""What crosses the pybind11 boundary by name: the IgemmCall struct of conv2d_lrelu / deconv_lrelu
(built by keyword, every field required, validated in csrc/igemm_call.cpp) and the constants Python
reads from the extension instead of keeping copies (dtype codes, MEAN_SPLITS, the deconv taps)."""
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
        C.conv2d_lrelu(call, -1, 0)


def test_constants_come_from_the_extension():
    C = _backend.load()
    assert C.DTYPE_CODES == {"float32": 0, "float16": 1, "bfloat16": 2}
    assert ops.DTYPE_CODES == {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
    assert ops.MEAN_SPLITS == C.MEAN_SPLITS == 64
    assert C.CHANNEL_ALIGN == 8 and all(network.pad8(c) % C.CHANNEL_ALIGN == 0 for c in range(1, 40))
    # The kernels' sub-pixel tap table (csrc/deconv_taps.h) is the Python one (fastflow.network).
    assert C.DECONV_TAPS == network.DECONV_TAPS == ((1, 3), (2, 0))
    for lib in _extensions()[1:]:
        for name in ("DTYPE_CODES", "MEAN_SPLITS", "CHANNEL_ALIGN", "DECONV_TAPS"):
            assert getattr(lib, name) == getattr(C, name), name
