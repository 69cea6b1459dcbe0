"""upsample_flow: the output of the fused forward, ``flow2 * div_flow`` upsampled bilinearly x4
(csrc/ops/upsample_flow/; reference: :func:`fastflow.reference.upsample_flow`)."""
from __future__ import annotations

import torch

from .launch import DTYPE_CODES, check_float, check_tensor, device_args, empty, kernels


def launch_upsample_flow(flow2: torch.Tensor, div_flow: float) -> torch.Tensor:
    """The launch alone (no validation, no dispatcher): flow2 (B, 2, h, w) float32/16-bit."""
    b, _, h, w = flow2.shape
    out = empty(b, 2, 4 * h, 4 * w, dtype=torch.float32, like=flow2)
    device, stream = device_args(flow2)
    with kernels("upsample_flow", flow2, {"flow2": flow2}, {"out": out}) as lib:
        params = lib.UpsampleFlowParams(
            flow2=flow2.data_ptr(), flow2_dtype=DTYPE_CODES[flow2.dtype], flow2_stride=list(flow2.stride()), batch=b,
            height=h, width=w, div_flow=float(div_flow), out=out.data_ptr(),
        )
        lib.upsample_flow(params, device, stream)
    return out


upsample_flow_op = torch.library.custom_op("fastflow::upsample_flow", mutates_args=())(launch_upsample_flow)


@upsample_flow_op.register_fake
def _(flow2, div_flow):
    b, _, h, w = flow2.shape
    return flow2.new_empty((b, 2, 4 * h, 4 * w), dtype=torch.float32)


def upsample_flow(flow2: torch.Tensor, div_flow: float = 20.0) -> torch.Tensor:
    """``(B, 2, h, w)`` quarter-resolution flow -> ``(B, 2, 4h, 4w)`` float32 flow in pixels.

    ``flow2 * div_flow`` upsampled bilinearly x4 (align_corners=False): FlowNet2S's eval output.
    Any strides (NCHW or channels_last), float32/float16/bfloat16 input.
    """
    op = "upsample_flow"
    check_tensor("flow2", op, flow2)
    if flow2.dim() != 4 or flow2.shape[1] != 2:
        raise ValueError(f"fastflow.{op}: expected flow of shape (B, 2, h, w), got {tuple(flow2.shape)}")
    check_float("flow2", op, flow2)
    if flow2.is_cuda and flow2.shape[0] > 32767:
        raise ValueError(f"fastflow.{op}: batch {flow2.shape[0]} exceeds 32767")
    return upsample_flow_op(flow2, float(div_flow))
