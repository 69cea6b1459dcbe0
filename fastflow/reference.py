"""Pure-PyTorch FlowNet2-S and one reference function per fused op.

This module is the oracle: ``FlowNet2S`` has exactly flownet2-pytorch's FlowNet2S semantics
(``batchNorm=False``) and parameter names, so the official ``FlowNet2-S_checkpoint.pth.tar`` loads
unchanged, and every fused op in :mod:`fastflow.ops` has a function here with the same signature
that computes the same thing with plain PyTorch operations.

Layout convention shared with :mod:`fastflow.ops`: activations are logical NCHW tensors; the fused
ops produce them in ``torch.channels_last`` memory (NHWC), which these references accept as well.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "FlowNet2S",
    "LRELU_SLOPE",
    "ENCODER",
    "DECODER",
    "FLOW_HEADS",
    "normalize_pack",
    "upsample_flow",
    "warp",
    "conv2d_lrelu",
    "deconv_lrelu",
    "flow_head",
]

LRELU_SLOPE = 0.1

# (name, Cin, Cout, kernel, stride) of the ten encoder convolutions, in execution order.
ENCODER = (
    ("conv1", 6, 64, 7, 2),
    ("conv2", 64, 128, 5, 2),
    ("conv3", 128, 256, 5, 2),
    ("conv3_1", 256, 256, 3, 1),
    ("conv4", 256, 512, 3, 2),
    ("conv4_1", 512, 512, 3, 1),
    ("conv5", 512, 512, 3, 2),
    ("conv5_1", 512, 512, 3, 1),
    ("conv6", 512, 1024, 3, 2),
    ("conv6_1", 1024, 1024, 3, 1),
)
# (name, Cin, Cout) of the four ConvTranspose2d(k4, s2, p1) + LeakyReLU decoder stages.
DECODER = (
    ("deconv5", 1024, 512),
    ("deconv4", 1026, 256),
    ("deconv3", 770, 128),
    ("deconv2", 386, 64),
)
# (predict_flow name, Cin, upsampled_flow name or None): the five flow heads, coarse to fine.
FLOW_HEADS = (
    ("predict_flow6", 1024, "upsampled_flow6_to_5"),
    ("predict_flow5", 1026, "upsampled_flow5_to_4"),
    ("predict_flow4", 770, "upsampled_flow4_to_3"),
    ("predict_flow3", 386, "upsampled_flow3_to_2"),
    ("predict_flow2", 194, None),
)


def _conv(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, bias=True),
        nn.LeakyReLU(LRELU_SLOPE, inplace=True),
    )


def _deconv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=2, padding=1, bias=True),
        nn.LeakyReLU(LRELU_SLOPE, inplace=True),
    )


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
        for name, cin, cout, k, s in ENCODER:
            setattr(self, name, _conv(cin, cout, k, s))
        for name, cin, cout in DECODER:
            setattr(self, name, _deconv(cin, cout))
        for pred, cin, up in FLOW_HEADS:
            setattr(self, pred, nn.Conv2d(cin, 2, kernel_size=3, stride=1, padding=1, bias=True))
            if up is not None:
                setattr(self, up, nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=False))
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

        out_conv1 = self.conv1(x)
        out_conv2 = self.conv2(out_conv1)
        out_conv3 = self.conv3_1(self.conv3(out_conv2))
        out_conv4 = self.conv4_1(self.conv4(out_conv3))
        out_conv5 = self.conv5_1(self.conv5(out_conv4))
        out_conv6 = self.conv6_1(self.conv6(out_conv5))

        flow6 = self.predict_flow6(out_conv6)
        flow6_up = self.upsampled_flow6_to_5(flow6)
        out_deconv5 = self.deconv5(out_conv6)
        concat5 = torch.cat((out_conv5, out_deconv5, flow6_up), 1)

        flow5 = self.predict_flow5(concat5)
        flow5_up = self.upsampled_flow5_to_4(flow5)
        out_deconv4 = self.deconv4(concat5)
        concat4 = torch.cat((out_conv4, out_deconv4, flow5_up), 1)

        flow4 = self.predict_flow4(concat4)
        flow4_up = self.upsampled_flow4_to_3(flow4)
        out_deconv3 = self.deconv3(concat4)
        concat3 = torch.cat((out_conv3, out_deconv3, flow4_up), 1)

        flow3 = self.predict_flow3(concat3)
        flow3_up = self.upsampled_flow3_to_2(flow3)
        out_deconv2 = self.deconv2(concat3)
        concat2 = torch.cat((out_conv2, out_deconv2, flow3_up), 1)

        flow2 = self.predict_flow2(concat2)
        if self.training:
            return flow2, flow3, flow4, flow5, flow6
        return self.upsample1(flow2 * self.div_flow)


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
    if slope != 1.0:
        y = F.leaky_relu(y, slope)
    if out is None:
        return y
    out[:, out_channel_offset : out_channel_offset + y.shape[1]] = y
    return out


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
    if slope != 1.0:
        y = F.leaky_relu(y, slope)
    if out is None:
        return y
    out[:, out_channel_offset : out_channel_offset + y.shape[1]] = y
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


def flops_per_pair(height: int, width: int) -> float:
    """Multiply-adds x 2 of one FlowNet2-S forward at ``height x width`` (convs, deconvs, flow heads)."""
    total = 0.0
    h, w = height, width
    sizes = {}
    for name, cin, cout, k, s in ENCODER:
        h, w = math.ceil(h / s), math.ceil(w / s)
        sizes[name] = (h, w)
        total += 2.0 * h * w * cout * cin * k * k
    h6, w6 = sizes["conv6_1"]
    scale = 1
    for (pred, cin, up), dec in zip(FLOW_HEADS, DECODER + (None,)):
        hh, ww = h6 * scale, w6 * scale
        total += 2.0 * hh * ww * 2 * cin * 9
        if up is not None:
            total += 2.0 * (2 * hh) * (2 * ww) * 2 * 2 * 4
        if dec is not None:
            _, dcin, dcout = dec
            total += 2.0 * (2 * hh) * (2 * ww) * dcout * dcin * 4
        scale *= 2
    return total
