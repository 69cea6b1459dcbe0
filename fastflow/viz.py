"""Flow visualisation with the Middlebury colour wheel (Baker et al., "A Database and Evaluation
Methodology for Optical Flow", IJCV 2011).

Hue encodes direction and saturation encodes magnitude: zero flow is white, flow at the
normalisation radius is the fully saturated wheel colour, and flow beyond it is the wheel colour
darkened to 75 %. One torch implementation serves NumPy and torch inputs alike, so both give
bit-identical results; torch is imported on first use only.
"""

from __future__ import annotations

import numpy as np

from .io import UNKNOWN_FLOW_THRESH

__all__ = ["make_color_wheel", "flow_to_color"]

# Number of hues in each transition of the wheel: red-yellow, yellow-green, green-cyan, cyan-blue,
# blue-magenta, magenta-red. Chosen by Baker et al. to be roughly perceptually even.
_WHEEL_SEGMENTS = (15, 6, 4, 11, 13, 6)


def make_color_wheel() -> np.ndarray:
    """The Middlebury colour wheel.

    Returns:
        ``(55, 3)`` uint8 RGB table; entry 0 is red, going red -> yellow -> green -> cyan -> blue ->
        magenta and back towards red.
    """
    wheel = np.zeros((sum(_WHEEL_SEGMENTS), 3), dtype=np.int64)
    start = 0
    # (channel held at 255, channel ramping, ramp direction) for each segment in order.
    ramps = ((0, 1, +1), (1, 0, -1), (1, 2, +1), (2, 1, -1), (2, 0, +1), (0, 2, -1))
    for n, (full, ramp, direction) in zip(_WHEEL_SEGMENTS, ramps):
        steps = np.floor(255 * np.arange(n) / n).astype(np.int64)
        wheel[start : start + n, full] = 255
        wheel[start : start + n, ramp] = steps if direction > 0 else 255 - steps
        start += n
    return wheel.astype(np.uint8)


def _split_layout(shape: tuple[int, ...]) -> bool:
    """True when ``shape`` is channels-first ``(..., 2, H, W)``, False for ``(..., H, W, 2)``."""
    if len(shape) >= 3 and shape[-1] == 2:
        return False
    if len(shape) >= 3 and shape[-3] == 2:
        return True
    raise ValueError(
        f"flow must have shape (..., H, W, 2) or channels-first (..., 2, H, W) (e.g. model output "
        f"(B, 2, H, W)), got {tuple(shape)}"
    )


def flow_to_color(flow, max_flow: float | None = None):
    """Colour-code optical flow with the Middlebury colour wheel.

    Args:
        flow: flow ``(u, v)`` in pixels, as a NumPy array or a torch tensor on any device, in one of
            two layouts (the last dimension decides; a last dimension of 2 means channels-last):

            - channels-last ``(..., H, W, 2)``, as read by :func:`fastflow.read_flow`;
            - channels-first ``(..., 2, H, W)``, e.g. model output ``(B, 2, H, W)`` or ``(2, H, W)``.

            Any real dtype; computed in float64 (float32 on devices without float64, e.g. MPS).
        max_flow: radius (pixels) that maps to full saturation; larger flow is drawn darkened.
            Must be positive. Default: the largest flow magnitude of each image (each ``(H, W)``
            slice of a batch is normalised on its own, so an image's colours do not depend on the
            rest of the batch). Unknown pixels are left out of that maximum.

    Returns:
        uint8 RGB colours in 0..255, of the input's kind (NumPy array, or tensor on the input's
        device) and layout: ``(..., H, W, 3)`` for channels-last input, ``(..., 3, H, W)`` for
        channels-first. Pixels with NaN, Inf or magnitude >= 1e9 (Middlebury's "unknown flow") in
        either component are black ``(0, 0, 0)``.

    Raises:
        ValueError: bad shape, or ``max_flow`` not a positive finite number.
        TypeError: ``flow`` is not a real-valued array or tensor.
    """
    import torch

    if max_flow is not None:
        max_flow = float(max_flow)
        if not (max_flow > 0 and np.isfinite(max_flow)):
            raise ValueError(f"max_flow must be a positive finite number or None, got {max_flow}")

    is_numpy = not isinstance(flow, torch.Tensor)
    if is_numpy:
        flow = np.asarray(flow)
        if flow.dtype.kind not in "fiu":
            raise TypeError(f"flow must have a real numeric dtype, got {flow.dtype}")
        channels_first = _split_layout(flow.shape)
        # np.array copies into a fresh, writable, native-endian array that torch can wrap.
        flow = torch.from_numpy(np.array(flow, dtype=np.float64))
    else:
        if flow.dtype.is_complex or flow.dtype == torch.bool:
            raise TypeError(f"flow must have a real numeric dtype, got {flow.dtype}")
        channels_first = _split_layout(tuple(flow.shape))
    compute = torch.float64 if flow.device.type != "mps" else torch.float32
    flow = flow.detach()
    if channels_first:
        flow = flow.movedim(-3, -1)

    u = flow[..., 0].to(compute)
    v = flow[..., 1].to(compute)
    # |x| < threshold is False for NaN and +-Inf as well.
    known = (u.abs() < UNKNOWN_FLOW_THRESH) & (v.abs() < UNKNOWN_FLOW_THRESH)
    u = torch.where(known, u, 0.0)
    v = torch.where(known, v, 0.0)

    radius = torch.sqrt(u * u + v * v)
    if max_flow is not None:
        scale = max_flow
    elif radius.numel() > 0:
        scale = radius.amax(dim=(-2, -1), keepdim=True)
        # All-zero (or all-unknown) images: any scale gives white, avoid 0/0.
        scale = torch.where(scale > 0, scale, 1.0)
    else:
        scale = 1.0
    # Dividing the magnitude (rather than recomputing it from u/scale, v/scale) keeps the largest
    # flow at exactly 1.0, so it is drawn saturated rather than darkened by a rounding error.
    rad = radius / scale

    wheel = torch.from_numpy(make_color_wheel()).to(device=u.device, dtype=compute) / 255.0
    ncols = wheel.shape[0]
    angle = torch.atan2(-v, -u) / torch.pi  # in [-1, 1]
    fk = (angle + 1.0) / 2.0 * (ncols - 1)  # fractional wheel index in [0, ncols - 1]
    k0 = fk.floor().long()
    k1 = (k0 + 1) % ncols
    frac = (fk - k0.to(compute)).unsqueeze(-1)
    c0 = wheel[k0]
    # c0 + f * (c1 - c0) rather than the original (1 - f) * c0 + f * c1: identical in exact
    # arithmetic, but exact when c0 == c1, so a channel held at 255 along a wheel segment does not
    # round down to 254.
    col = c0 + frac * (wheel[k1] - c0)
    rad = rad.unsqueeze(-1)
    # Inside the unit circle blend towards white (saturation = magnitude); outside, darken to show
    # that the flow exceeds the normalisation radius.
    col = torch.where(rad <= 1.0, 1.0 - rad * (1.0 - col), col * 0.75)
    rgb = torch.floor(255.0 * col).to(torch.uint8)
    rgb = torch.where(known.unsqueeze(-1), rgb, 0)

    if channels_first:
        rgb = rgb.movedim(-1, -3)
    rgb = rgb.contiguous()
    return rgb.numpy() if is_numpy else rgb
