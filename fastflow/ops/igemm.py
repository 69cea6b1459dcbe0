"""The implicit-GEMM engine shared by :mod:`.conv2d_lrelu` and :mod:`.deconv_lrelu` (csrc/igemm/):
the checks both ops make, the NHWC view of x, and the run of one call: plan once, allocate the
split-K workspace, launch with that plan."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .. import _backend
from ..network import pad8
from .launch import DTYPE_CODES, check_float, check_tensor, device_args, empty, kernels, num_sms, same_device, simt_on


def padded_channels(op: str, cin: int, cin_padded: Optional[int]) -> int:
    cp = pad8(cin) if cin_padded is None else int(cin_padded)
    if cp < cin or cp % 8:
        raise ValueError(
            f"fastflow.{op}: cin_padded must be a multiple of 8 and >= the {cin} input channels, got {cin_padded}"
        )
    return cp


def run(
    deconv: bool, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], out: torch.Tensor,
    cout: int, ksize: int, stride: int, slope: float, offset: int, allow_tf32: bool, split_k: int,
) -> None:
    """Plans the call once (tile config, split-K: the extension's igemm_plan), allocates the split-K
    workspace the plan needs and runs the op with that plan (C++ checks the plan is this call's)."""
    op = "deconv_lrelu" if deconv else "conv2d_lrelu"
    if x.data_ptr() % 16 or weight.data_ptr() % 16:
        raise ValueError(f"fastflow.{op}: x and the packed weight must start at 16-byte aligned addresses")
    b, cx, h, w = x.shape
    # IgemmCall and IgemmCallPlan are module-local: both come from the extension that runs the call.
    lib = _backend.load_simt() if simt_on(x) else _backend.load()
    call = lib.IgemmCall(
        x=x.data_ptr(), batch=b, height=h, width=w, channels=cx, pixel_stride=pixel_stride(x),
        weight=weight.data_ptr(), bias=0 if bias is None else bias.data_ptr(), out_channels=cout, ksize=ksize,
        stride=stride, out=out.data_ptr(), out_total_channels=out.shape[1], out_offset=offset, slope=float(slope),
        dtype=DTYPE_CODES[x.dtype], allow_tf32=bool(allow_tf32), workspace=0, workspace_elems=0,
        num_sms=num_sms(x), split_k=split_k,
    )
    plan = lib.igemm_plan(call, deconv)
    ws = empty(plan.workspace_elems, dtype=torch.float32, like=x) if plan.workspace_elems > 0 else None
    if ws is not None:
        call.workspace, call.workspace_elems = ws.data_ptr(), plan.workspace_elems
    device, stream = device_args(x)
    with kernels(op, x, {"x": x, "weight": weight, "bias": bias}, {"out": out, "workspace": ws}) as run_lib:
        (run_lib.deconv_lrelu if deconv else run_lib.conv2d_lrelu)(call, plan, device, stream)


def pixel_stride(x: torch.Tensor) -> int:
    """Elements between neighbouring pixels of an NHWC-read tensor (size-1 dims have arbitrary
    strides in torch, so take the first dim that pins it down)."""
    b, c, h, w = x.shape
    if w > 1:
        return x.stride(3)
    if h > 1:
        return x.stride(2)
    return x.stride(0) if b > 1 else c


def _nhwc_view(x: torch.Tensor) -> bool:
    """True if x reads as NHWC with a pixel stride >= C, a multiple of 8: a contiguous channels_last
    tensor, or a leading channel slice of one (how a conv reads its part of a concat buffer)."""
    b, c, h, w = x.shape
    ps = pixel_stride(x)
    return (
        (x.stride(1) == 1 or c == 1) and ps >= c and ps % 8 == 0
        and (x.stride(2) == w * ps or h == 1) and (x.stride(0) == h * w * ps or b == 1)
    )


def check_args(
    op: str, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], cout: int, out_shape: Tuple[int, ...],
    out: Optional[torch.Tensor], out_channel_offset: int, allow_tf32: Optional[bool], split_k: Optional[int],
):
    """The validation conv2d_lrelu and deconv_lrelu share; returns (x, bias, out, allow_tf32, split_k)."""
    same_device(op, x=x, weight=weight, **({} if bias is None else {"bias": bias}), **({} if out is None else {"out": out}))
    device_args(x)
    if weight.dtype != x.dtype:
        raise ValueError(f"fastflow.{op}: packed weight dtype {weight.dtype} differs from x dtype {x.dtype}; repack it")
    if not weight.is_contiguous():
        raise ValueError(f"fastflow.{op}: the packed weight must be contiguous (use the pack function's output)")
    if bias is not None:
        check_tensor("bias", op, bias)
        if bias.dim() != 1 or bias.shape[0] != cout:
            raise ValueError(f"fastflow.{op}: bias must be ({cout},), got shape {tuple(bias.shape)}")
        bias = bias.detach().to(x.dtype).contiguous()
    if not _nhwc_view(x):
        x = x.contiguous(memory_format=torch.channels_last)
    b, ho, wo = out_shape[0], out_shape[2], out_shape[3]
    off = int(out_channel_offset)
    if out is None:
        if off != 0:
            raise ValueError(f"fastflow.{op}: out_channel_offset={off} needs an out buffer")
        out = empty(*out_shape, dtype=x.dtype, like=x, memory_format=torch.channels_last)
    else:
        check_tensor("out", op, out)
        if out.dtype != x.dtype:
            raise ValueError(f"fastflow.{op}: out dtype {out.dtype} differs from x dtype {x.dtype}")
        if out.dim() != 4 or out.shape[0] != b or tuple(out.shape[2:]) != (ho, wo):
            raise ValueError(
                f"fastflow.{op}: out must be (B={b}, Ctot, {ho}, {wo}), got shape {tuple(out.shape)}"
            )
        if not out.is_contiguous(memory_format=torch.channels_last):
            raise ValueError(f"fastflow.{op}: out must be a contiguous channels_last (NHWC) tensor")
        if off < 0 or off + cout > out.shape[1]:
            raise ValueError(
                f"fastflow.{op}: channels [{off}, {off + cout}) do not fit in out's {out.shape[1]} channels"
            )
    if allow_tf32 is None:
        allow_tf32 = bool(torch.backends.cudnn.allow_tf32)
    if split_k is None:
        split_k = 0
    if int(split_k) < 0:
        raise ValueError(f"fastflow.{op}: split_k must be None (automatic) or >= 1, got {split_k}")
    return x, bias, out, bool(allow_tf32) and x.dtype == torch.float32, int(split_k)


def check_x(op: str, x, packed_weight, hw: str) -> None:
    check_tensor("x", op, x)
    check_tensor("packed_weight", op, packed_weight)
    if x.dim() != 4:
        raise ValueError(f"fastflow.{op}: x must be (B, Cx, {hw}), got shape {tuple(x.shape)}")
    check_float("x", op, x)


def check_channels(op: str, x: torch.Tensor, cx: int) -> None:
    if x.shape[1] != cx or cx % 8:
        raise ValueError(
            f"fastflow.{op}: x has {x.shape[1]} channels, the packed weight expects {cx} (a multiple of 8)"
        )
