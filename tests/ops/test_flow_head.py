"""fastflow.ops.flow_head (predict_flow + 2->2 flow upsample; csrc/ops/flow_head/) against
fastflow.reference.flow_head: the CPU version and a GPU (`device` parameter), and the CUDA kernels
through the SIMT runtime (marker simt: every tile size the launcher picks, vector and scalar loads).

Tolerances (docs/design.md section 7): float32 within 1e-5 relative of a float64 reference; float16 /
bfloat16 error against the float64 reference (computed from the same 16-bit inputs and weights) at
most twice PyTorch's own error on the same computation, with a floor of one rounding of the
output dtype (the error of storing the exact result, which no implementation can beat).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import rel_err
from _op_bounds import TOL_SIMT, seeded
from _simt_util import CUDA, simt_test
from fastflow import ops, reference as ref
from fastflow.ops.flow_head import flow_head_op

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
DEVICES = ["cpu", CUDA]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# FlowNet2-S heads: (Cin, padded channels of the activation read, next concat's padded channels,
# channel offset of the upsampled flow in it) or None for predict_flow2.
HEADS = [
    (1024, 1024, (1032, 1024)),  # predict_flow6 on conv6_1 -> concat5
    (1026, 1032, (776, 768)),  # predict_flow5 on concat5 -> concat4
    (770, 776, (392, 384)),  # predict_flow4 on concat4 -> concat3
    (386, 392, (200, 192)),  # predict_flow3 on concat3 -> concat2
    (194, 200, None),  # predict_flow2 on concat2
]
# Spatial size of each head at 448x1024 input (1/64 .. 1/4).
SINTEL = [(7, 16), (14, 32), (28, 64), (56, 128), (112, 256)]


def make_case(b, cin, cp, h, w, dtype, device, up=True, seed=0):
    """Random channels_last input (channels >= cin zero) and head parameters in `dtype`."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cp, h, w, generator=g)
    x[:, cin:] = 0
    x = x.to(device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    weight = (torch.randn(2, cin, 3, 3, generator=g) / (3 * cin**0.5)).to(device=device, dtype=dtype)
    bias = torch.randn(2, generator=g).to(device=device, dtype=dtype)
    up_weight = torch.randn(2, 2, 4, 4, generator=g).to(device=device, dtype=dtype) if up else None
    return x, weight, bias, up_weight


def ref64(x, weight, bias, up_weight):
    return ref.flow_head(
        x.double(), weight.double(), bias.double(), None if up_weight is None else up_weight.double()
    )


def check(x, weight, bias, up_weight, flow, up):
    """flow / up from fastflow against the float64 reference under the section 7 rules."""
    rflow, rup = ref64(x, weight, bias, up_weight)
    assert flow.dtype == torch.float32 and flow.shape == rflow.shape
    assert torch.isfinite(flow).all()
    if up_weight is None:
        assert up is None
    else:
        assert up.dtype == x.dtype and up.shape == rup.shape
        assert torch.isfinite(up).all()
    if x.dtype == torch.float32:
        assert rel_err(flow, rflow) < 1e-5
        if up_weight is not None:
            assert rel_err(up, rup) < 1e-5
        return
    tflow, tup = ref.flow_head(x, weight, bias, up_weight)  # PyTorch's own 16-bit computation
    assert rel_err(flow, rflow) <= 2 * rel_err(tflow, rflow)
    if up_weight is not None:
        floor = torch.finfo(x.dtype).eps / 2
        assert rel_err(up, rup) <= max(2 * rel_err(tup, rup), floor)


def run_into_slice(x, packed, ctot, offset):
    """flow_head writing into channels [offset, offset+2) of a NaN-poisoned buffer; checks the rest is untouched."""
    b, _, h, w = x.shape
    out = torch.full((b, ctot, 2 * h, 2 * w), float("nan"), dtype=x.dtype, device=x.device)
    out = out.contiguous(memory_format=torch.channels_last)
    # Make the bystander channels distinguishable from the poison, except a few NaN ones.
    out[:, : max(0, offset - 1)] = torch.randn(b, max(0, offset - 1), 2 * h, 2 * w, dtype=x.dtype, device=x.device)
    before = out.clone()
    flow, up = ops.flow_head(x, packed, out=out, out_channel_offset=offset)
    assert up.data_ptr() == out[:, offset : offset + 2].data_ptr()
    keep = torch.ones(ctot, dtype=torch.bool)
    keep[offset : offset + 2] = False
    bits = torch.int32 if x.dtype == torch.float32 else torch.int16
    assert torch.equal(out[:, keep].contiguous().view(bits), before[:, keep].contiguous().view(bits))
    return flow, up


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "b,cin,cp,h,w",
    [
        (1, 1, 1, 1, 1),
        (1, 5, 8, 1, 1),
        (3, 13, 16, 5, 7),
        (2, 20, 24, 9, 1),
        (1, 8, 8, 1, 11),
        (3, 37, 40, 17, 6),
        (1, 30, 30, 4, 5),  # Cp not a multiple of 8 (scalar CUDA path)
        (2, 300, 304, 3, 19),
    ],
)
@pytest.mark.parametrize("up", [True, False])
def test_awkward_sizes(device, dtype, b, cin, cp, h, w, up):
    x, weight, bias, up_weight = make_case(b, cin, cp, h, w, dtype, device, up, seed=b * 1000 + cin + h + w)
    packed = ops.pack_flow_head(weight, bias, up_weight, cin_padded=cp)
    flow, flow_up = ops.flow_head(x, packed)
    check(x, weight, bias, up_weight, flow, flow_up)
    if up:
        assert flow_up.is_contiguous(memory_format=torch.channels_last)
        # Into an odd channel offset of a wider NaN-poisoned buffer: bit-identical to the fresh result.
        sflow, sup = run_into_slice(x, packed, 11, 5)
        assert torch.equal(sflow, flow) and torch.equal(sup, flow_up)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", range(5))
def test_flownet2s_heads(device, dtype, head):
    cin, cp, nxt = HEADS[head]
    h, w = [(2, 3), (3, 4), (5, 6), (6, 9), (7, 5)][head]
    x, weight, bias, up_weight = make_case(2, cin, cp, h, w, dtype, device, nxt is not None, seed=head)
    packed = ops.pack_flow_head(weight, bias, up_weight)
    assert packed.numel() == 18 * cp + 2 + (64 if nxt else 0)
    if nxt is None:
        flow, up = ops.flow_head(x, packed)
    else:
        flow, up = run_into_slice(x, packed, *nxt)
    check(x, weight, bias, up_weight, flow, up)


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=needs_cuda)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("head", range(5))
def test_sintel_sized_heads_cuda(device, dtype, batch, head):
    cin, cp, nxt = HEADS[head]
    h, w = SINTEL[head]
    x, weight, bias, up_weight = make_case(batch, cin, cp, h, w, dtype, device, nxt is not None, seed=10 + head)
    packed = ops.pack_flow_head(weight, bias, up_weight)
    if nxt is None:
        flow, up = ops.flow_head(x, packed)
    else:
        flow, up = run_into_slice(x, packed, *nxt)
    check(x, weight, bias, up_weight, flow, up)
    # Same index math as the CPU op: compare with it directly too.
    cflow, cup = ops.flow_head(x.cpu(), packed.cpu())
    assert rel_err(flow.cpu(), cflow) < 1e-5
    if up is not None:
        assert rel_err(up.cpu().float(), cup.float()) < (1e-5 if dtype == torch.float32 else torch.finfo(dtype).eps)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("start", [0, 1, 8])
def test_x_channel_slice(device, dtype, start):
    """x as a channel slice of a wider channels_last buffer (misaligned for start=1)."""
    b, cin, cp, h, w = 2, 19, 24, 6, 5
    _, weight, bias, up_weight = make_case(b, cin, cp, h, w, dtype, device, seed=start)
    big = torch.randn(b, cp + 16, h, w, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    big[:, start + cin : start + cp] = 0
    x = big[:, start : start + cp]
    packed = ops.pack_flow_head(weight, bias, up_weight)
    flow, up = ops.flow_head(x, packed)
    check(x, weight, bias, up_weight, flow, up)


@pytest.mark.parametrize("device", DEVICES)
def test_matches_reference_with_out(device):
    """Same semantics as fastflow.reference.flow_head with an out buffer."""
    x, weight, bias, up_weight = make_case(1, 10, 16, 4, 6, torch.float32, device)
    out_a = torch.zeros(1, 6, 8, 12, device=device).contiguous(memory_format=torch.channels_last)
    out_b = out_a.clone()
    fa, ua = ops.flow_head(x, ops.pack_flow_head(weight, bias, up_weight), out=out_a, out_channel_offset=3)
    fb, ub = ref.flow_head(x, weight, bias, up_weight, out=out_b, out_channel_offset=3)
    assert fa.shape == fb.shape and fa.dtype == fb.dtype
    assert ua.shape == ub.shape and ua.data_ptr() == out_a[:, 3:5].data_ptr()
    assert rel_err(fa, fb) < 1e-5 and rel_err(out_a, out_b) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_fresh_inputs_each_call(device):
    """No state carried between calls: new inputs in the same buffers give new results."""
    x, weight, bias, up_weight = make_case(2, 12, 16, 5, 5, torch.float32, device)
    packed = ops.pack_flow_head(weight, bias, up_weight)
    f1, u1 = ops.flow_head(x, packed)
    f1, u1 = f1.clone(), u1.clone()
    x.copy_(torch.randn_like(x) * (torch.arange(16, device=device) < 12).view(1, 16, 1, 1))
    f2, u2 = ops.flow_head(x, packed)
    check(x, weight, bias, up_weight, f2, u2)
    assert not torch.equal(f1, f2)


@pytest.mark.parametrize("device", DEVICES)
def test_empty(device):
    x, weight, bias, up_weight = make_case(1, 4, 8, 3, 3, torch.float32, device)
    packed = ops.pack_flow_head(weight, bias, up_weight)
    flow, up = ops.flow_head(x[:0], packed)
    assert flow.shape == (0, 2, 3, 3) and up.shape == (0, 2, 6, 6)


def test_pack_layout():
    weight = torch.randn(2, 5, 3, 3)
    bias = torch.randn(2)
    up_weight = torch.randn(2, 2, 4, 4)
    packed = ops.pack_flow_head(weight, bias, up_weight, cin_padded=7)
    cp = 7
    w = packed[: 18 * cp].view(3, 3, cp, 2)
    assert torch.equal(w[:, :, :5], weight.permute(2, 3, 1, 0))
    assert torch.equal(w[:, :, 5:], torch.zeros(3, 3, 2, 2))
    assert torch.equal(packed[18 * cp : 18 * cp + 2], bias)
    assert torch.equal(packed[18 * cp + 2 :], up_weight.reshape(-1))
    assert packed.dtype == torch.float32 and packed.dim() == 1
    assert ops.pack_flow_head(weight, bias).numel() == 18 * 8 + 2


def test_bad_inputs():
    x, weight, bias, up_weight = make_case(1, 10, 16, 4, 4, torch.float32, "cpu")
    packed = ops.pack_flow_head(weight, bias, up_weight)
    out = torch.zeros(1, 6, 8, 8).contiguous(memory_format=torch.channels_last)
    bad_calls = [
        lambda: ops.pack_flow_head(weight[:, :, :2], bias),
        lambda: ops.pack_flow_head(weight, bias[:1]),
        lambda: ops.pack_flow_head(weight, bias, up_weight[:1]),
        lambda: ops.pack_flow_head(weight, bias, cin_padded=9),
        lambda: ops.pack_flow_head(weight.long(), bias),
        lambda: ops.flow_head(x[0], packed),
        lambda: ops.flow_head(x.long(), packed),
        lambda: ops.flow_head(x.double(), packed),
        lambda: ops.flow_head(x[:, :8], packed),
        lambda: ops.flow_head(x.contiguous(), packed),  # NCHW memory
        lambda: ops.flow_head(x, packed[:-1]),
        lambda: ops.flow_head(x, packed.double()),
        lambda: ops.flow_head(x, packed.view(1, -1)),
        lambda: ops.flow_head(x, packed, out=out.half()),
        lambda: ops.flow_head(x, packed, out=out[:, :, :6]),
        lambda: ops.flow_head(x, packed, out=out, out_channel_offset=5),
        lambda: ops.flow_head(x, packed, out=out, out_channel_offset=-1),
        lambda: ops.flow_head(x, packed, out=out.contiguous()),  # NCHW memory
        lambda: ops.flow_head(x, packed, out_channel_offset=2),  # offset without out
        lambda: ops.flow_head(x, ops.pack_flow_head(weight, bias), out=out),  # out without upsample
        lambda: ref.flow_head(x, weight, bias, None, out=out),
    ]
    for i, call in enumerate(bad_calls):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(TypeError):
        ops.flow_head(x.numpy(), packed)


@needs_cuda
def test_device_mismatch():
    x, weight, bias, up_weight = make_case(1, 10, 16, 4, 4, torch.float32, "cpu")
    packed = ops.pack_flow_head(weight, bias, up_weight)
    with pytest.raises(ValueError):
        ops.flow_head(x.cuda(), packed)
    out = torch.zeros(1, 2, 8, 8).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError):
        ops.flow_head(x.cuda(), packed.cuda(), out=out)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("up", [True, False])
def test_opcheck(device, up):
    x, weight, bias, up_weight = make_case(2, 6, 8, 3, 5, torch.float16, device, up)
    packed = ops.pack_flow_head(weight, bias, up_weight)
    out = torch.zeros(2, 4, 6, 10, dtype=torch.float16, device=device).contiguous(memory_format=torch.channels_last)
    args = (x, packed, out if up else None, 1 if up else 0)
    torch.library.opcheck(flow_head_op, args)


# ---- SIMT: the CUDA kernels on the CPU ----------------------------------------------------------


def _flow_head_ref64(x, weight, bias, up_weight):
    """fp64 predict_flow conv (+ the 2->2 ConvTranspose2d(k4, s2, p1) of its flow)."""
    flow = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    up = F.conv_transpose2d(flow, up_weight.double(), stride=2, padding=1) if up_weight is not None else None
    return flow, up


SIMT_HEADS = [(2, 64, 7, 9, 132), (1, 136, 17, 19, 1), (1, 20, 5, 3, 132), (1, 1032, 3, 5, 132), (3, 12, 6, 4, 1)]


@simt_test
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("up", [True, False], ids=["up", "noup"])
@pytest.mark.parametrize("head", SIMT_HEADS, ids=lambda h: "b{}c{}_{}x{}_sms{}".format(*h))
def test_flow_head_simt(head, up, dtype):
    b, c, h, w, sms = head
    g = seeded(c * 7 + h)
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
    want_flow, want_up = _flow_head_ref64(x, weight, bias, up_w)
    assert rel_err(flow, want_flow) <= 1e-5
    if up:
        assert rel_err(flow_up, want_up) <= TOL_SIMT[dtype]
        assert torch.isnan(out[:, :off]).all() and torch.isnan(out[:, off + 2:]).all()
    else:
        assert flow_up is None
