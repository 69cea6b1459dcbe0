"""flow_head: predict_flow (3x3 conv to 2 channels) fused with the 2->2 flow upsample into a concat
slice, and its weight packer (csrc/ops/flow_head/; reference: :func:`fastflow.reference.flow_head`)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .launch import DTYPE_CODES, check_float, check_tensor, device_args, empty, kernels, same_device


def _flow_head_layout(op: str, packed: torch.Tensor) -> Tuple[int, bool]:
    """(padded input channels Cp, has an upsample weight) from the packed length, see pack_flow_head."""
    n = packed.numel()
    if n >= 20 and (n - 2) % 18 == 0:
        return (n - 2) // 18, False
    if n >= 84 and (n - 66) % 18 == 0:
        return (n - 66) // 18, True
    raise ValueError(
        f"fastflow.{op}: packed has {n} elements, which is neither 18*Cp + 2 nor 18*Cp + 66; "
        "build it with fastflow.ops.pack_flow_head"
    )


def pack_flow_head(
    weight: torch.Tensor,
    bias: torch.Tensor,
    up_weight: Optional[torch.Tensor] = None,
    cin_padded: Optional[int] = None,
) -> torch.Tensor:
    """Pack a flow head's parameters for :func:`flow_head` (once per model; the values are exact).

    ``weight`` ``(2, Cin, 3, 3)`` and ``bias`` ``(2,)`` of ``predict_flowX``; ``up_weight``
    ``(2, 2, 4, 4)`` of ``upsampled_flowX_to_Y`` (ConvTranspose2d layout ``(Cin, Cout, kh, kw)``)
    or None for predict_flow2. ``cin_padded`` (default: Cin rounded up to a multiple of 8) is the
    channel count of the activation the head reads; the extra channels get zero weights.

    Returns a 1-D float32 tensor on the weights' device, ``18*Cp + 2`` elements, ``+ 64`` with an
    upsample weight: ``[0, 18*Cp)`` the conv weight as ``[ky*3 + kx][c][o]`` (tap, channel, output
    channel), then the bias, then ``up_weight`` flattened as is (csrc/ops/flow_head/flow_head_math.h).
    """
    op = "pack_flow_head"
    check_tensor("weight", op, weight)
    check_tensor("bias", op, bias)
    if weight.dim() != 4 or weight.shape[0] != 2 or weight.shape[2:] != (3, 3) or weight.shape[1] < 1:
        raise ValueError(f"fastflow.{op}: weight must be (2, Cin, 3, 3), got shape {tuple(weight.shape)}")
    if bias.shape != (2,):
        raise ValueError(f"fastflow.{op}: bias must be (2,), got shape {tuple(bias.shape)}")
    if not weight.is_floating_point() or not bias.is_floating_point():
        raise ValueError(f"fastflow.{op}: weight and bias must be floating point, got {weight.dtype} and {bias.dtype}")
    tensors = {"weight": weight, "bias": bias}
    if up_weight is not None:
        check_tensor("up_weight", op, up_weight)
        if up_weight.shape != (2, 2, 4, 4):
            raise ValueError(f"fastflow.{op}: up_weight must be (2, 2, 4, 4), got shape {tuple(up_weight.shape)}")
        if not up_weight.is_floating_point():
            raise ValueError(f"fastflow.{op}: up_weight must be floating point, got {up_weight.dtype}")
        tensors["up_weight"] = up_weight
    same_device(op, **tensors)
    cin = weight.shape[1]
    cp = -(-cin // 8) * 8 if cin_padded is None else int(cin_padded)
    if cp < cin:
        raise ValueError(f"fastflow.{op}: cin_padded={cp} is smaller than the weight's {cin} input channels")
    with torch.no_grad():
        w = torch.zeros((3, 3, cp, 2), dtype=torch.float32, device=weight.device)
        w[:, :, :cin] = weight.detach().float().permute(2, 3, 1, 0)
        parts = [w.reshape(-1), bias.detach().float().reshape(-1)]
        if up_weight is not None:
            parts.append(up_weight.detach().float().reshape(-1))
        return torch.cat(parts).contiguous()


def _nhwc_strides(t: torch.Tensor):
    """(batch, row, pixel) element strides of a (B, C, H, W) tensor with channel stride 1."""
    return [t.stride(0), t.stride(2), t.stride(3)]


@torch.library.custom_op("fastflow::flow_head", mutates_args=("out",))
def flow_head_op(x: torch.Tensor, packed: torch.Tensor, out: Optional[torch.Tensor], out_channel_offset: int) -> torch.Tensor:
    b, c, h, w = x.shape
    _, has_up = _flow_head_layout("flow_head", packed)
    flow = empty(b, 2, h, w, dtype=torch.float32, like=x, memory_format=torch.channels_last)
    device, stream = device_args(x)
    with kernels("flow_head", x, {"x": x, "packed": packed}, {"flow": flow, "out": out if has_up else None}) as lib:
        # NHWC element strides {batch, row, pixel}: the channel stride is 1 (flow_head checked it).
        params = lib.FlowHeadParams(
            x=x.data_ptr(), dtype=DTYPE_CODES[x.dtype], x_stride=_nhwc_strides(x), batch=b, channels=c, height=h,
            width=w, packed=packed.data_ptr(), has_up=has_up, flow=flow.data_ptr(),
            out=out.data_ptr() if has_up else 0, out_stride=_nhwc_strides(out) if has_up else [0, 0, 0],
            out_offset=int(out_channel_offset), out_channels=out.shape[1] if has_up else 0,
        )
        lib.flow_head(params, device, stream)
    return flow


@flow_head_op.register_fake
def _(x, packed, out, out_channel_offset):
    b, _, h, w = x.shape
    return x.new_empty((b, 2, h, w), dtype=torch.float32).contiguous(memory_format=torch.channels_last)


def flow_head(
    x: torch.Tensor,
    packed: torch.Tensor,
    out: Optional[torch.Tensor] = None,
    out_channel_offset: int = 0,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """predict_flow (3x3 conv to 2 channels, + bias) and, when ``packed`` holds an upsample weight,
    the 2->2 ConvTranspose2d(k4, s2, p1) of that flow, in one op.

    x: ``(B, Cp, h, w)`` float32/float16/bfloat16 with channel stride 1 (channels_last; a channel
    slice of a wider channels_last buffer is fine); Cp must equal the ``cin_padded`` of ``packed``
    (from :func:`pack_flow_head`, float32, same device). Accumulation is float32 (strict fp32 for
    float32 input). Returns ``(flow, flow_up)``: ``flow`` ``(B, 2, h, w)`` float32 in channels_last
    memory; ``flow_up`` ``(B, 2, 2h, 2w)`` in x's dtype, or None without an upsample weight. With
    ``out`` (a channels_last ``(B, Ctot, 2h, 2w)`` buffer of x's dtype) the upsampled flow is written
    into channels ``[out_channel_offset, out_channel_offset + 2)`` and ``flow_up`` is that slice
    (a view of ``out``); without it a fresh channels_last tensor is returned. No autograd history.
    """
    op = "flow_head"
    check_tensor("x", op, x)
    check_tensor("packed", op, packed)
    if x.dim() != 4:
        raise ValueError(f"fastflow.{op}: x must be (B, C, h, w), got shape {tuple(x.shape)}")
    check_float("x", op, x)
    if packed.dim() != 1 or packed.dtype != torch.float32 or not packed.is_contiguous():
        raise ValueError(
            f"fastflow.{op}: packed must be a contiguous 1-D float32 tensor from pack_flow_head, "
            f"got shape {tuple(packed.shape)} {packed.dtype}"
        )
    same_device(op, x=x, packed=packed)
    cp, has_up = _flow_head_layout(op, packed)
    b, c, h, w = x.shape
    if c != cp:
        raise ValueError(f"fastflow.{op}: x has {c} channels but packed was built for cin_padded={cp}")
    if c > 1 and x.stride(1) != 1:
        raise ValueError(
            f"fastflow.{op}: x must have channel stride 1 (torch.channels_last), got strides {tuple(x.stride())}"
        )
    offset = int(out_channel_offset)
    if out is not None:
        check_tensor("out", op, out)
        if not has_up:
            raise ValueError(f"fastflow.{op}: out was given but packed has no upsample weight (predict_flow2)")
        same_device(op, x=x, out=out)
        if out.dtype != x.dtype:
            raise ValueError(f"fastflow.{op}: out must have x's dtype {x.dtype}, got {out.dtype}")
        if out.dim() != 4 or out.shape[0] != b or out.shape[2] != 2 * h or out.shape[3] != 2 * w:
            raise ValueError(
                f"fastflow.{op}: out must be (B, Ctot, 2h, 2w) = ({b}, Ctot, {2 * h}, {2 * w}), got {tuple(out.shape)}"
            )
        if offset < 0 or offset + 2 > out.shape[1]:
            raise ValueError(
                f"fastflow.{op}: out_channel_offset={offset} does not leave 2 channels in out's {out.shape[1]}"
            )
        if out.shape[1] > 1 and out.stride(1) != 1:
            raise ValueError(
                f"fastflow.{op}: out must have channel stride 1 (torch.channels_last), got strides {tuple(out.stride())}"
            )
    elif offset != 0:
        raise ValueError(f"fastflow.{op}: out_channel_offset={offset} needs an out buffer")
    elif has_up:
        out = empty(b, 2, 2 * h, 2 * w, dtype=x.dtype, like=x, memory_format=torch.channels_last)
    flow = flow_head_op(x, packed, out, offset)
    return flow, (out[:, offset : offset + 2] if has_up else None)
