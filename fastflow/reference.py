"""Pure-PyTorch FlowNet2-S and one reference function per fused op.

This module is the oracle: ``FlowNet2S`` has exactly flownet2-pytorch's FlowNet2S semantics
(``batchNorm=False``) and parameter names, so the official ``FlowNet2-S_checkpoint.pth.tar`` loads
unchanged, and every fused op in :mod:`fastflow.ops` has a function here with the same signature
that computes the same thing with plain PyTorch operations.

Layout convention shared with :mod:`fastflow.ops`: activations are logical NCHW tensors; the fused
ops produce them in ``torch.channels_last`` memory (NHWC), which these references accept as well.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

# The layer table lives in fastflow.network. flops_per_pair is re-exported for fastflow/bench.py
# (which still imports it from here).
from .network import CONCAT, LAYERS, LRELU_SLOPE, flops_per_pair  # noqa: F401

__all__ = [
    "FlowNet2S",
    "LRELU_SLOPE",
    "normalize_pack",
    "upsample_flow",
    "warp",
    "conv2d_lrelu",
    "deconv_lrelu",
    "flow_head",
]

def _module(layer) -> nn.Module:
    """The torch module of one row of fastflow.network.LAYERS, as flownet2-pytorch builds it:
    conv / deconv layers are ``Sequential(conv, LeakyReLU)`` (parameter names ``conv1.0.weight``),
    flow heads and their upsamples bare modules."""
    cls = nn.ConvTranspose2d if layer.transposed else nn.Conv2d
    m = cls(layer.cin, layer.cout, layer.kernel, stride=layer.stride, padding=layer.padding, bias=layer.bias)
    return nn.Sequential(m, nn.LeakyReLU(LRELU_SLOPE, inplace=True)) if layer.lrelu else m


def check_pair_input(x: torch.Tensor) -> None:
    """Raise ValueError unless ``x`` is a ``(B, 3, 2, H, W)`` float tensor with H, W multiples of 64."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"FlowNet2S expects a torch.Tensor of shape (B, 3, 2, H, W), got {type(x).__name__}")
    if x.dim() != 5 or x.shape[1] != 3 or x.shape[2] != 2:
        raise ValueError(
            "FlowNet2S expects input of shape (B, 3, 2, H, W): B image pairs, 3 RGB channels, 2 frames "
            f"(frame index on dim 2); got {tuple(x.shape)}"
        )
    b, _, _, h, w = x.shape
    if b == 0:
        raise ValueError(f"FlowNet2S got an empty batch (input shape {tuple(x.shape)})")
    if h == 0 or w == 0 or h % 64 or w % 64:
        raise ValueError(
            f"FlowNet2S needs H and W to be positive multiples of 64, got H={h}, W={w}; "
            "resize or pad the images, or use fastflow.estimate_flow(), which accepts any size"
        )
    if not x.is_floating_point():
        raise ValueError(f"FlowNet2S expects a floating-point input (RGB 0..255), got dtype {x.dtype}")


class FlowNet2S(nn.Module):
    """FlowNet2-S (Ilg et al., CVPR 2017) exactly as flownet2-pytorch's ``FlowNet2S(batchNorm=False)``.

    Input ``(B, 3, 2, H, W)``: B pairs of RGB frames with values in 0..``rgb_max``, the frame index on
    dim 2, H and W multiples of 64. Eval output: ``(B, 2, H, W)`` flow in pixels (u, v) from frame 0 to
    frame 1. Training mode returns ``(flow2, flow3, flow4, flow5, flow6)`` at 1/4..1/64 resolution,
    not multiplied by ``div_flow``.
    """

    def __init__(self, rgb_max: float = 255.0, div_flow: float = 20.0):
        super().__init__()
        self.rgb_max = float(rgb_max)
        self.div_flow = float(div_flow)
        # Registration order (encoder, deconvs, then each flow head with its upsample) fixes the
        # state_dict order and which random numbers each layer's initialisation draws.
        order = {"conv": 0, "deconv": 1, "flow": 2, "flow_up": 2}
        for layer in sorted(LAYERS, key=lambda l: order[l.kind]):
            setattr(self, layer.name, _module(layer))
        # The original initialisation: xavier_uniform weights, uniform(0, 1) biases.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                if m.bias is not None:
                    nn.init.uniform_(m.bias)
                nn.init.xavier_uniform_(m.weight)
        self.upsample1 = nn.Upsample(scale_factor=4, mode="bilinear")

    def forward(self, inputs: torch.Tensor):
        check_pair_input(inputs)
        b = inputs.shape[0]
        rgb_mean = inputs.contiguous().view(b, 3, -1).mean(dim=-1).view(b, 3, 1, 1, 1)
        x = (inputs - rgb_mean) / self.rgb_max
        x = torch.cat((x[:, :, 0, :, :], x[:, :, 1, :, :]), dim=1)

        # Every layer of the table in order; a concat buffer [skip | deconv | flow_up] exists once
        # all the layers that feed it have run.
        outs = {"input": x}
        parts = {}
        for layer in LAYERS:
            y = outs[layer.name] = getattr(self, layer.name)(outs[layer.reads])
            if layer.feeds is not None:
                feed = parts.setdefault(layer.feeds, {})
                feed[layer.offset] = y
                if sum(t.shape[1] for t in feed.values()) == CONCAT[layer.feeds].channels:
                    outs[layer.feeds] = torch.cat([feed[o] for o in sorted(feed)], 1)

        flows = tuple(outs[f"predict_flow{n}"] for n in range(2, 7))
        if self.training:
            return flows
        return self.upsample1(flows[0] * self.div_flow)


# --------------------------------------------------------------------------------------------------
# One reference per fused op. Same signatures as fastflow.ops.
# --------------------------------------------------------------------------------------------------


def normalize_pack(
    pair: torch.Tensor, rgb_max: float = 255.0, channels: int = 6, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``(B, 3, 2, H, W)`` RGB pair -> ``(B, channels, H, W)`` normalised network input.

    Channels 0..5 are ``(x - mean) / rgb_max`` of frame 0 RGB then frame 1 RGB, the mean taken per
    sample and colour channel over both frames; channels 6.. (``channels`` = 8 pads for aligned
    16-byte loads on the GPU) are zero. The result is in channels_last memory, dtype ``dtype``.
    """
    b = pair.shape[0]
    x = pair.to(torch.float64)
    mean = x.reshape(b, 3, -1).mean(dim=-1).view(b, 3, 1, 1, 1)
    x = (x - mean) / rgb_max
    x = torch.cat((x[:, :, 0], x[:, :, 1]), dim=1)
    if channels > 6:
        x = F.pad(x, (0, 0, 0, 0, 0, channels - 6))
    return x.to(dtype).contiguous(memory_format=torch.channels_last)


def upsample_flow(flow2: torch.Tensor, div_flow: float = 20.0) -> torch.Tensor:
    """``(B, 2, h, w)`` flow at 1/4 resolution -> ``(B, 2, 4h, 4w)`` float32: ``flow2 * div_flow``
    upsampled bilinearly x4 (align_corners=False), as FlowNet2S's eval output."""
    return F.interpolate(flow2.float() * div_flow, scale_factor=4, mode="bilinear", align_corners=False)


def warp(
    x: torch.Tensor, flow: torch.Tensor, padding: str = "border", return_mask: bool = False
):
    """Backward bilinear warp: ``out[b, c, i, j] = x[b, c, i + v, j + u]`` with ``(u, v) = flow[b, :, i, j]``.

    ``padding="border"``: flownet2-pytorch's Resample2d: the bilinear weights come from the
    unclamped position, the four taps are clamped to the image. ``padding="zeros"``: taps outside the
    image count as 0 (``grid_sample(..., padding_mode="zeros", align_corners=True)``); with
    ``return_mask`` also returns a ``(B, 1, H, W)`` mask, 1 where the sample position lies inside
    ``[0, W-1] x [0, H-1]``, else 0. Non-finite flow gives NaN ("border") or 0 with mask 0 ("zeros").
    Computed in float32 (float64 for float64 input), returned in x's dtype.
    """
    if padding not in ("border", "zeros"):
        raise ValueError(f"padding must be 'border' or 'zeros', got {padding!r}")
    b, c, h, w = x.shape
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(cdt)
    fl = flow.to(cdt)
    gy, gx = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=cdt), torch.arange(w, device=x.device, dtype=cdt), indexing="ij"
    )
    px = gx + fl[:, 0]
    py = gy + fl[:, 1]
    finite = torch.isfinite(px) & torch.isfinite(py)
    # Clamping to one pixel beyond the image changes nothing (all taps are then outside or clamped
    # to the same edge) and keeps floor() in integer range.
    pxc = torch.where(finite, px, torch.zeros_like(px)).clamp(-1.0, float(w))
    pyc = torch.where(finite, py, torch.zeros_like(py)).clamp(-1.0, float(h))
    x0 = torch.floor(pxc)
    y0 = torch.floor(pyc)
    ax = (pxc - x0).unsqueeze(1)
    ay = (pyc - y0).unsqueeze(1)
    x0 = x0.long()
    y0 = y0.long()
    flat = xf.reshape(b, c, h * w)

    def tap(yi, xi):
        inside = ((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)).unsqueeze(1)
        idx = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).reshape(b, 1, h * w).expand(b, c, h * w)
        v = torch.gather(flat, 2, idx).reshape(b, c, h, w)
        return v, inside

    v00, i00 = tap(y0, x0)
    v01, i01 = tap(y0, x0 + 1)
    v10, i10 = tap(y0 + 1, x0)
    v11, i11 = tap(y0 + 1, x0 + 1)
    if padding == "zeros":
        v00, v01, v10, v11 = (v * i for v, i in ((v00, i00), (v01, i01), (v10, i10), (v11, i11)))
    out = (1 - ax) * (1 - ay) * v00 + ax * (1 - ay) * v01 + (1 - ax) * ay * v10 + ax * ay * v11
    bad = ~finite.unsqueeze(1)
    out = out.masked_fill(bad, float("nan") if padding == "border" else 0.0).to(x.dtype)
    if not return_mask:
        return out
    if padding != "zeros":
        raise ValueError("return_mask=True needs padding='zeros'")
    mask = finite & (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    return out, mask.unsqueeze(1).to(x.dtype)


def conv2d_lrelu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    stride: int = 1,
    slope: float = LRELU_SLOPE,
    out: Optional[torch.Tensor] = None,
    out_channel_offset: int = 0,
) -> torch.Tensor:
    """Conv2d(padding=(k-1)//2) + bias + LeakyReLU(slope) (slope 1.0: no activation).

    ``x`` ``(B, Cin, H, W)``, ``weight`` ``(Cout, Cin, k, k)`` (unpacked). With ``out`` (a
    ``(B, Ctot, Ho, Wo)`` buffer) the result is stored into channels
    ``[out_channel_offset, out_channel_offset + Cout)`` and ``out`` is returned.
    """
    k = weight.shape[-1]
    y = F.conv2d(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), stride=stride, padding=(k - 1) // 2)
    return _lrelu_into(y, slope, out, out_channel_offset)


def deconv_lrelu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    slope: float = LRELU_SLOPE,
    out: Optional[torch.Tensor] = None,
    out_channel_offset: int = 0,
) -> torch.Tensor:
    """ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU(slope): ``(B, Cin, h, w)`` -> ``(B, Cout, 2h, 2w)``.

    ``weight`` is ConvTranspose2d's ``(Cin, Cout, 4, 4)``. With ``out`` the result goes into channels
    ``[out_channel_offset, out_channel_offset + Cout)`` of that buffer.
    """
    y = F.conv_transpose2d(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), stride=2, padding=1)
    return _lrelu_into(y, slope, out, out_channel_offset)


def _lrelu_into(y: torch.Tensor, slope: float, out: Optional[torch.Tensor], offset: int) -> torch.Tensor:
    """LeakyReLU(slope) of ``y`` (none for slope 1.0), stored into channels ``[offset, offset + C)``
    of ``out`` when given (and ``out`` returned), else returned."""
    if slope != 1.0:
        y = F.leaky_relu(y, slope)
    if out is None:
        return y
    out[:, offset : offset + y.shape[1]] = y
    return out


def flow_head(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    up_weight: Optional[torch.Tensor] = None,
    out: Optional[torch.Tensor] = None,
    out_channel_offset: int = 0,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """predict_flow (3x3 conv to 2 channels) and, with ``up_weight`` ``(2, 2, 4, 4)``, the 2->2
    ConvTranspose2d(k4, s2, p1, no bias) flow upsample, computed in x's dtype as the eager model does.

    ``x`` ``(B, C, h, w)`` with C >= Cin: channels beyond the weight's Cin (zero padding of a
    fused concat buffer) are ignored. Returns ``(flow (B, 2, h, w) float32 (float64 for float64
    input), flow_up (B, 2, 2h, 2w) in x's dtype or None)``; with ``out`` the upsampled flow is
    stored into channels ``[out_channel_offset, out_channel_offset + 2)`` of ``out`` and
    ``flow_up`` is that slice. ``out`` without ``up_weight`` is a ValueError.
    """
    if up_weight is None and out is not None:
        raise ValueError("flow_head: out was given but there is no up_weight")
    x = x[:, : weight.shape[1]]
    flow = F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype), padding=1)
    rdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    if up_weight is None:
        return flow.to(rdt), None
    up = F.conv_transpose2d(flow, up_weight.to(x.dtype), None, stride=2, padding=1)
    if out is not None:
        out[:, out_channel_offset : out_channel_offset + 2] = up
        up = out[:, out_channel_offset : out_channel_offset + 2]
    return flow.to(rdt), up
