"""deconv_lrelu: ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU as four sub-pixel GEMMs into a
channel slice, and its weight packer (kernels: the implicit-GEMM engine in csrc/igemm/, binding in
csrc/ops/deconv_lrelu/; reference: :func:`fastflow.reference.deconv_lrelu`)."""
from __future__ import annotations

from typing import Optional

import torch

from ..network import DECONV_TAPS
from . import igemm
from .launch import DTYPE_CODES, check_tensor


def pack_deconv_weight(weight: torch.Tensor, dtype: torch.dtype, cin_padded: Optional[int] = None) -> torch.Tensor:
    """ConvTranspose2d(k4, s2, p1) weight ``(Cin, Cout, 4, 4)`` -> packed ``(4, Cout, 2, 2, Cin_p)``.

    ``packed[2a + c, co, ty, tx, ci] = weight[ci, co, DECONV_TAPS[a][ty], DECONV_TAPS[c][tx]]``: for each
    output sub-pixel phase (row parity a, column parity c) the 2x2 stride-1 conv whose tap ``ty``
    reads input row ``m + (0 if ty == 0 else (-1 if a == 0 else +1))`` (columns likewise), laid out
    as the GEMM B operand ``[phase][N][K]``, ``K = (ty, tx, ci)``. Padding channels get zero weights.
    """
    op = "pack_deconv_weight"
    check_tensor("weight", op, weight)
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (4, 4):
        raise ValueError(f"fastflow.{op}: weight must be (Cin, Cout, 4, 4), got shape {tuple(weight.shape)}")
    if dtype not in DTYPE_CODES:
        raise ValueError(f"fastflow.{op}: dtype must be float32, float16 or bfloat16, got {dtype}")
    cin, cout = weight.shape[:2]
    cp = igemm.padded_channels(op, cin, cin_padded)
    packed = torch.zeros((4, cout, 2, 2, cp), dtype=dtype, device=weight.device)
    w = weight.detach()
    for a in range(2):
        for c in range(2):
            for ty in range(2):
                for tx in range(2):
                    packed[2 * a + c, :, ty, tx, :cin] = w[:, :, DECONV_TAPS[a][ty], DECONV_TAPS[c][tx]].t().to(dtype)
    return packed


@torch.library.custom_op("fastflow::deconv_lrelu", mutates_args=("out",))
def deconv_lrelu_op(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], out: torch.Tensor, slope: float,
    out_channel_offset: int, allow_tf32: bool, split_k: int,
) -> None:
    igemm.run(True, x, weight, bias, out, weight.shape[1], 4, 2, slope, out_channel_offset, allow_tf32, split_k)


@deconv_lrelu_op.register_fake
def _(x, weight, bias, out, slope, out_channel_offset, allow_tf32, split_k):
    return None


# deconv_lrelu's signature repeats conv2d_lrelu's (less the stride) on purpose: two public ops
# whose parameters read alike; the shared checks are igemm.check_x, check_channels, check_args.
def deconv_lrelu(
    x: torch.Tensor,
    packed_weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    slope: float = 0.1,
    out: Optional[torch.Tensor] = None,
    out_channel_offset: int = 0,
    allow_tf32: Optional[bool] = None,
    *,
    split_k: Optional[int] = None,
) -> torch.Tensor:
    """ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU(slope): ``(B, Cx, h, w)`` -> ``(B, Cout, 2h, 2w)``.

    Four sub-pixel phases, each a 2x2 stride-1 conv over x, in one launch; the epilogue does the
    pixel shuffle. x: channels_last ``(B, Cx, h, w)`` (other layouts are copied), ``Cx`` a multiple of
    8. packed_weight: :func:`pack_deconv_weight` output ``(4, Cout, 2, 2, Cx)``. ``out``,
    ``out_channel_offset``, ``allow_tf32``, ``split_k`` and the CPU emulation as in :func:`conv2d_lrelu`.
    """
    op = "deconv_lrelu"
    igemm.check_x(op, x, packed_weight, "h, w")
    if packed_weight.dim() != 5 or packed_weight.shape[0] != 4 or tuple(packed_weight.shape[2:4]) != (2, 2):
        raise ValueError(
            f"fastflow.{op}: packed_weight must be (4, Cout, 2, 2, Cx) from pack_deconv_weight, "
            f"got {tuple(packed_weight.shape)}"
        )
    cout, cx = packed_weight.shape[1], packed_weight.shape[4]
    igemm.check_channels(op, x, cx)
    b, _, h, w = x.shape
    x, bias, out, tf32, split_k = igemm.check_args(
        op, x, packed_weight, bias, cout, (b, cout, 2 * h, 2 * w), out, out_channel_offset, allow_tf32, split_k
    )
    deconv_lrelu_op(x, packed_weight, bias, out, float(slope), int(out_channel_offset), tf32, split_k)
    return out
