"""Python wrappers of the fused ops: validate, allocate, call ``fastflow._C``.

Each op here has a reference with the same signature in :mod:`fastflow.reference`. Tensors may
live on the CPU (C++ versions) or on a CUDA GPU (CUDA versions, launched on the current stream).
The ops are registered with ``torch.library.custom_op`` (namespace ``fastflow``) with fake
implementations, so ``torch.compile`` and CUDA-graph capture treat them as opaque ops.
Activations follow one convention: logical NCHW shapes in ``torch.channels_last`` memory.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from . import _backend

__all__ = ["normalize_pack", "upsample_flow", "warp", "DTYPE_CODES", "MEAN_SPLITS"]

DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
# Must match kMeanSplits in csrc/ops.h (partial sums per (sample, colour) of the CUDA mean).
MEAN_SPLITS = 64


def _device_args(t: torch.Tensor) -> Tuple[int, int]:
    """(device index or -1 for the CPU, current CUDA stream handle or 0)."""
    if t.device.type == "cpu":
        return -1, 0
    if t.device.type == "cuda":
        idx = t.device.index if t.device.index is not None else torch.cuda.current_device()
        return idx, torch.cuda.current_stream(idx).cuda_stream
    raise ValueError(f"fastflow ops run on CPU or CUDA tensors, got a tensor on {t.device}")


def _check_float(name: str, op: str, t: torch.Tensor) -> None:
    if t.dtype not in DTYPE_CODES:
        raise ValueError(
            f"fastflow.{op}: {name} must be float32, float16 or bfloat16, got {t.dtype}"
        )


def _check_tensor(name: str, op: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"fastflow.{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def _same_device(op: str, **tensors: torch.Tensor) -> None:
    devs = {n: t.device for n, t in tensors.items()}
    if len(set(devs.values())) > 1:
        desc = ", ".join(f"{n} on {d}" for n, d in devs.items())
        raise ValueError(f"fastflow.{op}: tensors must be on the same device, got {desc}")


# ---------------------------------------------------------------------------------------------
# normalize_pack
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("fastflow::normalize_pack", mutates_args=("out",))
def _normalize_pack_op(pair: torch.Tensor, rgb_max: float, out: torch.Tensor) -> None:
    b, _, _, h, w = pair.shape
    device, stream = _device_args(pair)
    partial = 0
    if device >= 0:
        ws = torch.empty(b * 3 * MEAN_SPLITS, dtype=torch.float32, device=pair.device)
        partial = ws.data_ptr()
    _backend.load().normalize_pack(
        pair.data_ptr(), list(pair.stride()), b, h, w, out.data_ptr(), DTYPE_CODES[out.dtype], out.shape[1],
        float(rgb_max), partial, device, stream,
    )


@_normalize_pack_op.register_fake
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
    _check_tensor("pair", op, pair)
    if pair.dim() != 5 or pair.shape[1] != 3 or pair.shape[2] != 2:
        raise ValueError(f"fastflow.{op}: expected a (B, 3, 2, H, W) image pair, got shape {tuple(pair.shape)}")
    if not pair.is_floating_point():
        raise ValueError(f"fastflow.{op}: the pair must be a floating-point tensor, got {pair.dtype}")
    if rgb_max <= 0:
        raise ValueError(f"fastflow.{op}: rgb_max must be positive, got {rgb_max}")
    b, _, _, h, w = pair.shape
    if out is None:
        if channels not in (6, 8):
            raise ValueError(f"fastflow.{op}: channels must be 6 or 8, got {channels}")
        if dtype not in DTYPE_CODES:
            raise ValueError(f"fastflow.{op}: dtype must be float32, float16 or bfloat16, got {dtype}")
        out = torch.empty((b, channels, h, w), dtype=dtype, device=pair.device, memory_format=torch.channels_last)
    else:
        _check_tensor("out", op, out)
        _check_float("out", op, out)
        if out.dim() != 4 or out.shape[0] != b or out.shape[1] not in (6, 8) or tuple(out.shape[2:]) != (h, w):
            raise ValueError(f"fastflow.{op}: out must be ({b}, 6 or 8, {h}, {w}), got {tuple(out.shape)}")
        if not out.is_contiguous(memory_format=torch.channels_last):
            raise ValueError(f"fastflow.{op}: out must be contiguous in channels_last memory")
        _same_device(op, pair=pair, out=out)
    if pair.dtype != torch.float32:
        pair = pair.float()
    if pair.is_cuda and b > 65535:
        raise ValueError(f"fastflow.{op}: batch {b} exceeds 65535")
    _normalize_pack_op(pair, float(rgb_max), out)
    return out


# ---------------------------------------------------------------------------------------------
# upsample_flow
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("fastflow::upsample_flow", mutates_args=())
def _upsample_flow_op(flow2: torch.Tensor, div_flow: float) -> torch.Tensor:
    b, _, h, w = flow2.shape
    out = torch.empty((b, 2, 4 * h, 4 * w), dtype=torch.float32, device=flow2.device)
    device, stream = _device_args(flow2)
    _backend.load().upsample_flow(
        flow2.data_ptr(), DTYPE_CODES[flow2.dtype], list(flow2.stride()), b, h, w, float(div_flow), out.data_ptr(),
        device, stream,
    )
    return out


@_upsample_flow_op.register_fake
def _(flow2, div_flow):
    b, _, h, w = flow2.shape
    return flow2.new_empty((b, 2, 4 * h, 4 * w), dtype=torch.float32)


def upsample_flow(flow2: torch.Tensor, div_flow: float = 20.0) -> torch.Tensor:
    """``(B, 2, h, w)`` quarter-resolution flow -> ``(B, 2, 4h, 4w)`` float32 flow in pixels.

    ``flow2 * div_flow`` upsampled bilinearly x4 (align_corners=False): FlowNet2S's eval output.
    Any strides (NCHW or channels_last), float32/float16/bfloat16 input.
    """
    op = "upsample_flow"
    _check_tensor("flow2", op, flow2)
    if flow2.dim() != 4 or flow2.shape[1] != 2:
        raise ValueError(f"fastflow.{op}: expected flow of shape (B, 2, h, w), got {tuple(flow2.shape)}")
    _check_float("flow2", op, flow2)
    return _upsample_flow_op(flow2, float(div_flow))


# ---------------------------------------------------------------------------------------------
# warp
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("fastflow::warp", mutates_args=())
def _warp_op(x: torch.Tensor, flow: torch.Tensor, zeros: bool, with_mask: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = x.shape
    out = torch.empty_like(x)  # preserves channels_last
    mask = torch.empty((b, 1, h, w) if with_mask else (0,), dtype=x.dtype, device=x.device)
    device, stream = _device_args(x)
    _backend.load().warp(
        x.data_ptr(), DTYPE_CODES[x.dtype], list(x.stride()), flow.data_ptr(), DTYPE_CODES[flow.dtype],
        list(flow.stride()), b, c, h, w, out.data_ptr(), list(out.stride()), mask.data_ptr() if with_mask else 0,
        zeros, device, stream,
    )
    return out, mask


@_warp_op.register_fake
def _(x, flow, zeros, with_mask):
    b, c, h, w = x.shape
    return torch.empty_like(x), x.new_empty((b, 1, h, w) if with_mask else (0,))


def warp(
    x: torch.Tensor, flow: torch.Tensor, padding: str = "border", return_mask: bool = False
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Backward bilinear warp: ``out[b, :, i, j] = x[b, :, i + v, j + u]``, ``(u, v) = flow[b, :, i, j]``.

    x: ``(B, C, H, W)`` or ``(C, H, W)``, float32/float16/bfloat16, NCHW or channels_last (kept).
    flow: ``(B, 2, H, W)`` or ``(2, H, W)`` in pixels, on the same device. ``padding="border"`` is
    flownet2-pytorch's Resample2d (edge taps clamped); ``"zeros"`` reads 0 outside the image and
    with ``return_mask=True`` also returns a ``(B, 1, H, W)`` mask: 1 where the sample position is
    inside the image, else 0. Non-finite flow gives NaN ("border") or 0 with mask 0 ("zeros").
    The result carries no autograd history.
    """
    op = "warp"
    _check_tensor("x", op, x)
    _check_tensor("flow", op, flow)
    if padding not in ("border", "zeros"):
        raise ValueError(f"fastflow.{op}: padding must be 'border' or 'zeros', got {padding!r}")
    if return_mask and padding != "zeros":
        raise ValueError(f"fastflow.{op}: return_mask=True needs padding='zeros'")
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
        if flow.dim() == 3:
            flow = flow.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"fastflow.{op}: x must be (B, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"fastflow.{op}: flow must be (B, 2, H, W), got shape {tuple(flow.shape)}")
    b, _, h, w = x.shape
    if flow.shape[0] != b or flow.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"fastflow.{op}: flow {tuple(flow.shape)} does not match x {tuple(x.shape)} (need the same B, H, W)"
        )
    _check_float("x", op, x)
    _check_float("flow", op, flow)
    _same_device(op, x=x, flow=flow)
    out, mask = _warp_op(x, flow, padding == "zeros", bool(return_mask))
    if squeeze:
        out = out.squeeze(0)
        mask = mask.squeeze(0) if return_mask else mask
    return (out, mask) if return_mask else out
