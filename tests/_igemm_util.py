"""Shared checks of fastflow.ops.conv2d_lrelu / deconv_lrelu against fastflow.reference.

One check function per op, device-generic: on CUDA it runs the kernels, on the CPU the host
emulation of their tiling (same wrappers, plan, index math and slice addressing). Each call draws
fresh random inputs (the seed is in the failure message), writes into a channel slice of a
NaN-poisoned buffer and checks both the slice (docs/design.md section 7 tolerances) and that every other
channel is bit-identical to before.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from conftest import rel_err
from fastflow import _backend, ops, reference
from fastflow.network import LAYERS, pad8

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SLOPE = reference.LRELU_SLOPE
# Sanity ceilings on top of the relative rules (catch a reference that is itself broken).
ABS_CEIL = {"fp16": 5e-3, "bf16": 4e-2}



def igemm_call(lib, **fields):
    """An IgemmCall (csrc/igemm_call.h) of extension ``lib`` (fastflow._C or fastflow._simt): the
    given fields over neutral defaults (null pointers, no bias or workspace, slope 1, strict fp32,
    132 SMs, the plan's own split-K; pixel stride = channels, output channels = out_channels)."""
    call = dict(x=0, batch=1, height=1, width=1, channels=8, weight=0, bias=0, out_channels=8, ksize=3, stride=1,
                out=0, out_offset=0, slope=1.0, dtype=0, allow_tf32=False, workspace=0, workspace_elems=0,
                num_sms=132, split_k=0)
    call.update(fields)
    call.setdefault("pixel_stride", call["channels"])
    call.setdefault("out_total_channels", call["out_channels"])
    return lib.IgemmCall(**call)


def igemm_plan(deconv, b, h, w, cx, cout, k, stride, dtype_code, allow_tf32, num_sms, split_k):
    """(config, bm, bn, bk, splits, workspace_elems): fastflow._C's plan of a conv (k, stride) or
    deconv call on x [b, cx, h, w] (cx padded) with cout outputs; split_k 0: the plan's own choice."""
    C = _backend.load()
    call = igemm_call(C, batch=b, height=h, width=w, channels=cx, out_channels=cout, ksize=k, stride=stride,
                      dtype=dtype_code, allow_tf32=allow_tf32, num_sms=num_sms, split_k=split_k)
    p = C.igemm_plan(call, deconv)
    return p.config, p.bm, p.bn, p.bk, p.splits, p.workspace_elems

def fresh_generator():
    seed = int.from_bytes(os.urandom(4), "little")
    return torch.Generator().manual_seed(seed), seed


def _bits(t: torch.Tensor) -> torch.Tensor:
    ints = {4: torch.int32, 2: torch.int16}
    return t.contiguous().view(ints[t.element_size()])


def _padded_input(gen, b, cin, cx, h, w):
    x = torch.randn(b, cin, h, w, generator=gen, dtype=torch.float64)
    return F.pad(x, (0, 0, 0, 0, 0, cx - cin))


def _check_slice(op, prec, buf, before, off, cout, got_ref, lowp_ref_err, seed, what):
    got = buf[:, off : off + cout]
    assert torch.isfinite(got).all(), f"{what}: non-finite output (unwritten or NaN) [seed {seed}]"
    # Every channel outside the slice keeps its exact bits (NaN poison included).
    assert torch.equal(_bits(buf[:, :off]), _bits(before[:, :off])), f"{what}: wrote below the slice [seed {seed}]"
    assert torch.equal(_bits(buf[:, off + cout :]), _bits(before[:, off + cout :])), (
        f"{what}: wrote above the slice [seed {seed}]"
    )
    err = rel_err(got, got_ref)
    if prec == "fp32":
        assert err <= 1e-5, f"{what}: strict fp32 rel err {err:.3e} > 1e-5 [seed {seed}]"
    elif prec == "tf32":
        assert err <= 5e-3, f"{what}: tf32 rel err {err:.3e} > 5e-3 [seed {seed}]"
    else:
        assert err <= 2 * lowp_ref_err, (
            f"{what}: {prec} rel err {err:.3e} > 2 x PyTorch's {lowp_ref_err:.3e} [seed {seed}]"
        )
        assert err <= ABS_CEIL[prec], f"{what}: {prec} rel err {err:.3e} > {ABS_CEIL[prec]} [seed {seed}]"
    return err


def check_conv(prec, b, cin, cout, k, stride, h, w, device, cx=None, before=3, after=5, split_k=None,
               pixel_stride=None):
    """conv2d_lrelu into channels [before, before + cout) of a (b, before + cout + after, Ho, Wo) buffer.
    ``pixel_stride`` > cx: x is the leading channel slice of a wider NaN-filled NHWC buffer (how an
    encoder conv reads its concat buffer in place)."""
    gen, seed = fresh_generator()
    cx = cx or pad8(cin)
    dt = DTYPES[prec]
    x = _padded_input(gen, b, cin, cx, h, w)
    wt = torch.randn(cout, cin, k, k, generator=gen, dtype=torch.float64) / math.sqrt(cin * k * k)
    bias = torch.randn(cout, generator=gen, dtype=torch.float64) * 0.5
    # The low-precision inputs are "the same inputs" for us and for PyTorch; the fp64 reference
    # computes exactly on them.
    x_d = x.to(dt).to(device).contiguous(memory_format=torch.channels_last)
    if pixel_stride is not None and pixel_stride != cx:
        wide = torch.full((b, pixel_stride, h, w), float("nan"), dtype=dt, device=device)
        wide = wide.contiguous(memory_format=torch.channels_last)
        wide[:, :cx] = x_d
        x_d = wide[:, :cx]  # a view with pixel stride `pixel_stride`: read in place, no copy
    w_d, b_d = wt.to(dt).to(device), bias.to(dt).to(device)
    ref = reference.conv2d_lrelu(x_d.double(), _pad_w(w_d, cx).double(), b_d.double(), stride, SLOPE)
    lowp = None
    if prec in ("fp16", "bf16"):
        lowp = rel_err(reference.conv2d_lrelu(x_d, _pad_w(w_d, cx), b_d, stride, SLOPE), ref)
    ho, wo = ref.shape[2:]
    buf = torch.full((b, before + cout + after, ho, wo), float("nan"), dtype=dt, device=device)
    buf = buf.contiguous(memory_format=torch.channels_last)
    snapshot = buf.clone()
    packed = ops.pack_conv_weight(w_d, dt, cx)
    res = ops.conv2d_lrelu(x_d, packed, b_d, stride, SLOPE, out=buf, out_channel_offset=before,
                           allow_tf32=prec == "tf32", split_k=split_k)
    assert res is buf
    what = (f"conv {prec} b{b} {cin}({cx}, pixel stride {pixel_stride or cx})->{cout} k{k} s{stride} {h}x{w} "
            f"slice {before}+{cout}+{after} on {device}")
    return _check_slice("conv", prec, buf, snapshot, before, cout, ref, lowp, seed, what)


def _pad_w(w: torch.Tensor, cx: int) -> torch.Tensor:
    """(Cout, Cin, k, k) -> (Cout, cx, k, k) with zero weights for the padding channels."""
    return F.pad(w, (0, 0, 0, 0, 0, cx - w.shape[1]))


def check_deconv(prec, b, cin, cout, h, w, device, cx=None, before=3, after=5, split_k=None):
    """deconv_lrelu (ConvTranspose2d k4 s2 p1) into a channel slice of a (b, Ctot, 2h, 2w) buffer."""
    gen, seed = fresh_generator()
    cx = cx or pad8(cin)
    dt = DTYPES[prec]
    x = _padded_input(gen, b, cin, cx, h, w)
    wt = torch.randn(cin, cout, 4, 4, generator=gen, dtype=torch.float64) / math.sqrt(cin * 4)
    bias = torch.randn(cout, generator=gen, dtype=torch.float64) * 0.5
    x_d = x.to(dt).to(device).contiguous(memory_format=torch.channels_last)
    w_d, b_d = wt.to(dt).to(device), bias.to(dt).to(device)
    w_full = F.pad(w_d, (0, 0, 0, 0, 0, 0, 0, cx - cin))  # (cx, cout, 4, 4)
    ref = reference.deconv_lrelu(x_d.double(), w_full.double(), b_d.double(), SLOPE)
    lowp = None
    if prec in ("fp16", "bf16"):
        lowp = rel_err(reference.deconv_lrelu(x_d, w_full, b_d, SLOPE), ref)
    buf = torch.full((b, before + cout + after, 2 * h, 2 * w), float("nan"), dtype=dt, device=device)
    buf = buf.contiguous(memory_format=torch.channels_last)
    snapshot = buf.clone()
    packed = ops.pack_deconv_weight(w_d, dt, cx)
    res = ops.deconv_lrelu(x_d, packed, b_d, SLOPE, out=buf, out_channel_offset=before,
                           allow_tf32=prec == "tf32", split_k=split_k)
    assert res is buf
    what = f"deconv {prec} b{b} {cin}({cx})->{cout} {h}x{w} slice {before}+{cout}+{after} on {device}"
    return _check_slice("deconv", prec, buf, snapshot, before, cout, ref, lowp, seed, what)


def layer_cases(layers, wide, wide_precisions):
    """pytest params ``(layer, precision)`` ids ``name-precision``: every precision, except for the
    layers ``wide(layer)`` selects, which run only ``wide_precisions`` (their CPU time dominates)."""
    import pytest

    return [pytest.param(layer, prec, id=f"{layer[0]}-{prec}")
            for layer in layers for prec in (wide_precisions if wide(layer) else PRECISIONS)]


def encoder_inputs(height: int, width: int):
    """(name, Cin, Cx, Cout, k, stride, H, W) of each FlowNet2-S encoder conv for a height x width pair
    (Cx: the stored, padded input channels)."""
    return [(l.name, l.cin, l.cin_padded, l.cout, l.kernel, l.stride, *l.input_size(height, width))
            for l in LAYERS if l.kind == "conv"]


def flow_head_inputs(height: int, width: int):
    """(name, Cin, Cx, H, W) of the five predict_flow convs (3x3 -> 2) on the padded concat buffers."""
    return [(l.name, l.cin, l.cin_padded, height // l.scale, width // l.scale) for l in LAYERS if l.kind == "flow"]


def decoder_inputs(height: int, width: int):
    """(name, Cin, Cx, Cout, h, w) of the four deconvs (input at 1/64, 1/32, 1/16, 1/8)."""
    return [(l.name, l.cin, l.cin_padded, l.cout, height // l.scale, width // l.scale)
            for l in LAYERS if l.kind == "deconv"]
