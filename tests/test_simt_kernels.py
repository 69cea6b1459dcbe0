"""The other CUDA kernels through the SIMT host runtime and their normal launchers: flow head
(vector and scalar loads, with and without the fused upsample, every tile size the launcher picks),
input normalisation/packing (mean reduction with warp shuffles and static shared memory), the final
x4 upsample and the warp. Each is compared with the op's reference on awkward sizes; the runtime
checks every access on the way.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import rel_err
from _simt_util import _require_simt, simt_marks  # noqa: F401
from fastflow import ops, reference

pytestmark = simt_marks

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---- flow head --------------------------------------------------------------------------------------


def _flow_head_ref(x, weight, bias, up_weight):
    """fp64 predict_flow conv (+ the 2->2 ConvTranspose2d(k4, s2, p1) of its flow)."""
    flow = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    up = F.conv_transpose2d(flow, up_weight.double(), stride=2, padding=1) if up_weight is not None else None
    return flow, up


# (B, C, h, w, num_sms): 16-bit C not a multiple of 8 takes the scalar path; 132 SMs -> small tiles
# and split reductions, 1 SM -> 16x16 tiles; C = 1032 (a decoder concat) splits K across warps.
HEADS = [(2, 64, 7, 9, 132), (1, 136, 17, 19, 1), (1, 20, 5, 3, 132), (1, 1032, 3, 5, 132), (3, 12, 6, 4, 1)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("up", [True, False], ids=["up", "noup"])
@pytest.mark.parametrize("head", HEADS, ids=lambda h: "b{}c{}_{}x{}_sms{}".format(*h))
def test_flow_head(head, up, dtype):
    b, c, h, w, sms = head
    g = _gen(c * 7 + h)
    x = torch.randn(b, c, h, w, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(2, c, 3, 3, generator=g) / math.sqrt(9 * c)
    bias = torch.randn(2, generator=g)
    up_w = torch.randn(2, 2, 4, 4, generator=g) * 0.5 if up else None
    packed = ops.pack_flow_head(weight, bias, up_w, cin_padded=c)
    ctot, off = 7, 3  # the upsampled flow goes into channels 3..4 of a NaN-poisoned buffer
    out = None
    if up:
        out = torch.full((b, ctot, 2 * h, 2 * w), float("nan"), dtype=dtype).contiguous(memory_format=torch.channels_last)
    with ops.simt(num_sms=sms):
        flow, flow_up = ops.flow_head(x, packed, out=out, out_channel_offset=off if up else 0)
    want_flow, want_up = _flow_head_ref(x, weight, bias, up_w)
    assert rel_err(flow, want_flow) <= 1e-5
    if up:
        assert rel_err(flow_up, want_up) <= TOL[dtype]
        assert torch.isnan(out[:, :off]).all() and torch.isnan(out[:, off + 2:]).all()
    else:
        assert flow_up is None


# ---- normalize_pack, upsample_flow, warp ------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels", [6, 8])
def test_normalize_pack(channels, dtype):
    g = _gen(channels)
    pair = torch.rand(2, 3, 2, 11, 37, generator=g) * 255
    pair = pair.transpose(3, 4).contiguous().transpose(3, 4)  # strided (W-major) input
    with ops.simt():
        got = ops.normalize_pack(pair, 255.0, channels=channels, dtype=dtype)
    x = pair.double() / 255.0
    x = x - x.mean(dim=(2, 3, 4), keepdim=True)
    want = torch.cat((x[:, :, 0], x[:, :, 1]), 1)
    assert rel_err(got[:, :6], want) <= TOL[dtype]
    if channels == 8:
        assert (got[:, 6:] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_upsample_flow(dtype):
    g = _gen(3)
    flow2 = torch.randn(2, 2, 5, 7, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    with ops.simt():
        got = ops.upsample_flow(flow2, 20.0)
    want = F.interpolate(flow2.double() * 20.0, scale_factor=4, mode="bilinear", align_corners=False)
    assert got.dtype == torch.float32 and rel_err(got, want) <= 1e-6


@pytest.mark.parametrize("padding", ["border", "zeros"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_warp(layout, dtype, padding):
    g = _gen(5)
    x = torch.randn(2, 5, 9, 13, generator=g).to(dtype)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    flow = torch.randn(2, 2, 9, 13, generator=g) * 4
    with ops.simt():
        got = ops._warp_nchw(x, flow, padding, return_mask=padding == "zeros")
    want = ops._warp_nchw(x, flow, padding, return_mask=padding == "zeros")  # the CPU version
    if padding == "zeros":
        assert torch.equal(got[1], want[1])
        got, want = got[0], want[0]
    assert got.is_contiguous(memory_format=torch.channels_last) == (layout == "nhwc")
    assert torch.isfinite(got).all() and rel_err(got, want) <= 1e-6
    assert rel_err(got.double(), reference.warp(x.double(), flow.double(), padding)) <= TOL[dtype]
