"""conv2d_lrelu: NHWC implicit-GEMM Conv2d + bias + LeakyReLU into a channel slice, and its weight
packer (kernels: the implicit-GEMM engine in csrc/igemm/, binding in csrc/ops/conv2d_lrelu/;
reference: :func:`fastflow.reference.conv2d_lrelu`)."""
from __future__ import annotations

from typing import Optional

import torch

from . import igemm
from .launch import DTYPE_CODES, check_tensor


def pack_conv_weight(weight: torch.Tensor, dtype: torch.dtype, cin_padded: Optional[int] = None) -> torch.Tensor:
    """Conv2d weight ``(Cout, Cin, k, k)`` -> packed ``(Cout, k, k, Cin_p)`` contiguous, dtype ``dtype``.

    The layout is the kernel's GEMM B operand ``[N][K]`` with ``K = (ky, kx, c)``, channels fastest
    (OHWI). ``Cin_p`` (default: ``Cin`` rounded up to a multiple of 8) must equal the channel count of
    the NHWC input; channels ``Cin..Cin_p-1`` get zero weights, so zero-padded inputs (conv1's 6 -> 8,
    the decoder's 1026 -> 1032 concat buffers) read nothing from the padding. Pack once and cache.
    """
    op = "pack_conv_weight"
    check_tensor("weight", op, weight)
    if weight.dim() != 4 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"fastflow.{op}: weight must be (Cout, Cin, k, k), got shape {tuple(weight.shape)}")
    cout, cin, k, _ = weight.shape
    if k % 2 == 0 or not 1 <= k <= 7:
        raise ValueError(f"fastflow.{op}: kernel size must be odd and in 1..7, got {k}")
    if dtype not in DTYPE_CODES:
        raise ValueError(f"fastflow.{op}: dtype must be float32, float16 or bfloat16, got {dtype}")
    cp = igemm.padded_channels(op, cin, cin_padded)
    packed = torch.zeros((cout, k, k, cp), dtype=dtype, device=weight.device)
    packed[..., :cin] = weight.detach().permute(0, 2, 3, 1).to(dtype)
    return packed


@torch.library.custom_op("fastflow::conv2d_lrelu", mutates_args=("out",))
def conv2d_lrelu_op(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], out: torch.Tensor, stride: int, slope: float,
    out_channel_offset: int, allow_tf32: bool, split_k: int,
) -> None:
    igemm.run(False, x, weight, bias, out, weight.shape[0], weight.shape[1], stride, slope, out_channel_offset,
              allow_tf32, split_k)


@conv2d_lrelu_op.register_fake
def _(x, weight, bias, out, stride, slope, out_channel_offset, allow_tf32, split_k):
    return None


def conv2d_lrelu(
    x: torch.Tensor,
    packed_weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    stride: int = 1,
    slope: float = 0.1,
    out: Optional[torch.Tensor] = None,
    out_channel_offset: int = 0,
    allow_tf32: Optional[bool] = None,
    *,
    split_k: Optional[int] = None,
) -> torch.Tensor:
    """Conv2d(k, stride, padding=(k-1)//2) + bias + LeakyReLU(slope) (slope 1.0: none), fused.

    x: ``(B, Cx, H, W)`` in channels_last memory (NHWC; other layouts are copied to it first),
    float32/float16/bfloat16, ``Cx`` a multiple of 8 (pad with zero channels). packed_weight:
    :func:`pack_conv_weight` output ``(Cout, k, k, Cx)`` in x's dtype. bias: ``(Cout,)`` or None
    (converted to x's dtype). Writes ``(B, Cout, Ho, Wo)``, ``Ho = (H - 1) // stride + 1``, into
    channels ``[out_channel_offset, +Cout)`` of ``out`` (a channels_last ``(B, Ctot, Ho, Wo)``
    buffer; other channels untouched) or a new tensor, and returns it. float32 uses TF32 tensor cores
    when ``allow_tf32`` (None: ``torch.backends.cudnn.allow_tf32``), else strict fp32. ``split_k``
    forces the number of K splits (None: the kernel's heuristic). On CPU tensors this runs a slow
    host emulation of the CUDA kernel's tiling (for tests).
    """
    op = "conv2d_lrelu"
    igemm.check_x(op, x, packed_weight, "H, W")
    if packed_weight.dim() != 4 or packed_weight.shape[1] != packed_weight.shape[2]:
        raise ValueError(
            f"fastflow.{op}: packed_weight must be (Cout, k, k, Cx) from pack_conv_weight, got {tuple(packed_weight.shape)}"
        )
    cout, k, _, cx = packed_weight.shape
    if k % 2 == 0 or not 1 <= k <= 7:
        raise ValueError(f"fastflow.{op}: kernel size must be odd and in 1..7, got {k}")
    igemm.check_channels(op, x, cx)
    if stride not in (1, 2):
        raise ValueError(f"fastflow.{op}: stride must be 1 or 2, got {stride}")
    b, _, h, w = x.shape
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    x, bias, out, tf32, split_k = igemm.check_args(
        op, x, packed_weight, bias, cout, (b, cout, ho, wo), out, out_channel_offset, allow_tf32, split_k
    )
    conv2d_lrelu_op(x, packed_weight, bias, out, int(stride), float(slope), int(out_channel_offset), tf32, split_k)
    return out
