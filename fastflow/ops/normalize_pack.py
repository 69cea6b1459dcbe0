"""normalize_pack: the prologue of the fused forward, ``(B, 3, 2, H, W)`` RGB pair -> normalised
NHWC network input (csrc/ops/normalize_pack/; reference: :func:`fastflow.reference.normalize_pack`)."""
from __future__ import annotations

import math
from typing import Optional

import torch

from .launch import DTYPE_CODES, MEAN_SPLITS, check_float, check_tensor, device_args, empty, kernels, same_device


def launch_normalize_pack(pair: torch.Tensor, rgb_max: float, out: torch.Tensor) -> None:
    """The launch alone, for callers that validated already (the model's hot path skips the
    dispatcher): pair float32 (B, 3, 2, H, W), out contiguous channels_last (B, 6|8, H, W)."""
    b, _, _, h, w = pair.shape
    device, stream = device_args(pair)
    ws = empty(b * 3 * MEAN_SPLITS, dtype=torch.float32, like=pair) if device >= 0 else None
    with kernels("normalize_pack", pair, {"pair": pair}, {"out": out, "partial": ws}) as lib:
        params = lib.NormalizePackParams(
            pair=pair.data_ptr(), pair_stride=list(pair.stride()), batch=b, height=h, width=w, out=out.data_ptr(),
            out_dtype=DTYPE_CODES[out.dtype], channels=out.shape[1], rgb_max=float(rgb_max),
            partial=0 if ws is None else ws.data_ptr(),
        )
        lib.normalize_pack(params, device, stream)


normalize_pack_op = torch.library.custom_op("fastflow::normalize_pack", mutates_args=("out",))(launch_normalize_pack)


@normalize_pack_op.register_fake
def _(pair, rgb_max, out):
    return None


def normalize_pack(
    pair: torch.Tensor,
    rgb_max: float = 255.0,
    channels: int = 6,
    dtype: torch.dtype = torch.float32,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``(B, 3, 2, H, W)`` RGB pair (0..rgb_max) -> ``(B, channels, H, W)`` normalised input, NHWC memory.

    Subtracts the per-sample, per-colour mean over both frames, divides by ``rgb_max`` and puts
    frame 0's RGB in channels 0..2, frame 1's in 3..5; ``channels=8`` appends two zero channels
    (the CUDA conv1 layout). Any H, W and strides; non-float32 input is converted to float32 first.
    ``out``: an existing contiguous channels_last ``(B, channels, H, W)`` tensor to write (its dtype
    wins over ``dtype``); it is returned.
    """
    op = "normalize_pack"
    check_tensor("pair", op, pair)
    if pair.dim() != 5 or pair.shape[1] != 3 or pair.shape[2] != 2:
        raise ValueError(f"fastflow.{op}: expected a (B, 3, 2, H, W) image pair, got shape {tuple(pair.shape)}")
    if not pair.is_floating_point():
        raise ValueError(f"fastflow.{op}: the pair must be a floating-point tensor, got {pair.dtype}")
    if not (math.isfinite(rgb_max) and rgb_max > 0):
        raise ValueError(f"fastflow.{op}: rgb_max must be positive and finite, got {rgb_max}")
    b, _, _, h, w = pair.shape
    if out is None:
        if channels not in (6, 8):
            raise ValueError(f"fastflow.{op}: channels must be 6 or 8, got {channels}")
        if dtype not in DTYPE_CODES:
            raise ValueError(f"fastflow.{op}: dtype must be float32, float16 or bfloat16, got {dtype}")
        out = empty(b, channels, h, w, dtype=dtype, like=pair, memory_format=torch.channels_last)
    else:
        check_tensor("out", op, out)
        check_float("out", op, out)
        if out.dim() != 4 or out.shape[0] != b or out.shape[1] not in (6, 8) or tuple(out.shape[2:]) != (h, w):
            raise ValueError(f"fastflow.{op}: out must be ({b}, 6 or 8, {h}, {w}), got {tuple(out.shape)}")
        if not out.is_contiguous(memory_format=torch.channels_last):
            raise ValueError(f"fastflow.{op}: out must be contiguous in channels_last memory")
        same_device(op, pair=pair, out=out)
    if pair.dtype != torch.float32:
        pair = pair.float()
    if pair.is_cuda and b > 65535:
        raise ValueError(f"fastflow.{op}: batch {b} exceeds 65535")
    normalize_pack_op(pair, float(rgb_max), out)
    return out
