"""Point tracking: move points from frame 1 to frame 2 along a forward optical-flow field.

Coordinates are pixel coordinates ``(x, y)`` with ``x`` the column and ``y`` the row, pixel centres
at integers: flow value ``flow[i, j]`` belongs to the point ``(x, y) = (j, i)``. This is the same
convention as :func:`fastflow.warp` (which samples at ``(i + v, j + u)``). torch is imported on
first use only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["track_points"]


def _flow_layout(shape: tuple[int, ...]) -> tuple[bool, bool]:
    """``(batched, channels_first)`` for a flow of ``shape``; a last dimension of 2 wins."""
    if len(shape) in (3, 4) and shape[-1] == 2:
        channels_first = False
    elif len(shape) in (3, 4) and shape[-3] == 2:
        channels_first = True
    else:
        raise ValueError(
            "flow must have shape (H, W, 2), (2, H, W), (B, H, W, 2) or (B, 2, H, W), "
            f"got {tuple(shape)}"
        )
    hw = shape[-3:-1] if not channels_first else shape[-2:]
    if min(hw) < 1:
        raise ValueError(f"flow must have H, W >= 1, got shape {tuple(shape)}")
    return len(shape) == 4, channels_first


def track_points(flow, points):
    """Move points along a flow field, sampling the flow bilinearly at each point.

    ``result = points + flow(points)``, where ``flow(p)`` interpolates the four pixels around ``p``.
    Points outside the image use the flow of the nearest border position (coordinates clamped to
    ``[0, W - 1] x [0, H - 1]`` before sampling; the points themselves are not clamped).

    Args:
        flow: forward flow ``(u, v)`` in pixels, NumPy array or torch tensor, one of
            ``(H, W, 2)``, ``(2, H, W)``, or batched ``(B, H, W, 2)``, ``(B, 2, H, W)``. A last
            dimension of 2 means channels-last. Non-finite flow in any of the (up to four) pixels
            around a point makes that point's result non-finite.
        points: ``(N, 2)`` (or ``(B, N, 2)`` with batched flow) ``(x, y)`` pixel coordinates,
            NumPy array or torch tensor, finite.

    Returns:
        Tracked points, same shape as ``points`` and the same kind (NumPy array, or tensor on
        ``points``' device). dtype: ``points``' floating dtype, else ``flow``'s, else float32.
        Computed in float64 (float32 on devices without float64, e.g. MPS).

    Raises:
        ValueError: bad shapes, non-finite points, or flow and points on different devices (a
            NumPy array counts as CPU).
        TypeError: non-real-valued input.
    """
    import torch

    def as_tensor(x, name):
        if isinstance(x, torch.Tensor):
            if x.dtype.is_complex or x.dtype == torch.bool:
                raise TypeError(f"{name} must have a real numeric dtype, got {x.dtype}")
            return x.detach()
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{name} must have a real numeric dtype, got {x.dtype}")
        # from_numpy keeps the dtype (for the result) and shares memory; copy only when torch
        # cannot wrap the array (read-only or non-native byte order).
        if not x.flags.writeable or not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="), copy=True)
        return torch.from_numpy(x)

    points_numpy = not isinstance(points, torch.Tensor)
    flow_t = as_tensor(flow, "flow")
    points_t = as_tensor(points, "points")

    batched, channels_first = _flow_layout(tuple(flow_t.shape))
    expected = "(B, N, 2) for batched flow" if batched else "(N, 2)"
    pshape = tuple(points_t.shape)
    if points_t.dim() != (3 if batched else 2) or pshape[-1] != 2:
        raise ValueError(f"points must have shape {expected}, got {pshape}")
    if batched and pshape[0] != flow_t.shape[0]:
        raise ValueError(f"points batch size {pshape[0]} does not match flow batch size {flow_t.shape[0]}")
    if flow_t.device != points_t.device:
        raise ValueError(
            f"flow is on {flow_t.device} and points on {points_t.device}; move them to one device "
            "(NumPy arrays count as cpu)"
        )

    if points_t.dtype.is_floating_point:
        out_dtype = points_t.dtype
    elif flow_t.dtype.is_floating_point:
        out_dtype = flow_t.dtype
    else:
        out_dtype = torch.float32
    compute = torch.float64 if points_t.device.type != "mps" else torch.float32

    if not batched:
        flow_t = flow_t.unsqueeze(0)
        points_t = points_t.unsqueeze(0)
    if channels_first:
        flow_t = flow_t.movedim(1, -1)  # (B, H, W, 2)
    pts = points_t.to(compute)
    if not bool(torch.isfinite(pts).all()):
        raise ValueError("points must be finite (no NaN or Inf)")

    _, height, width, _ = flow_t.shape
    x = pts[..., 0].clamp(0, width - 1)  # (B, N)
    y = pts[..., 1].clamp(0, height - 1)
    # Left/top neighbour at most W-2 / H-2 so the right/bottom one stays inside; a point on the last
    # column then has weight 1 on that column. Width or height 1 degenerates to a single pixel.
    x0 = x.floor().clamp(max=max(width - 2, 0))
    y0 = y.floor().clamp(max=max(height - 2, 0))
    wx = (x - x0).unsqueeze(-1)
    wy = (y - y0).unsqueeze(-1)
    x0 = x0.long()
    y0 = y0.long()
    x1 = (x0 + 1).clamp(max=width - 1)
    y1 = (y0 + 1).clamp(max=height - 1)
    b = torch.arange(flow_t.shape[0], device=flow_t.device).unsqueeze(1)  # (B, 1) broadcasts over N

    def at(yi, xi):
        return flow_t[b, yi, xi].to(compute)  # (B, N, 2)

    top = (1 - wx) * at(y0, x0) + wx * at(y0, x1)
    bottom = (1 - wx) * at(y1, x0) + wx * at(y1, x1)
    tracked = pts + (1 - wy) * top + wy * bottom

    if not batched:
        tracked = tracked.squeeze(0)
    tracked = tracked.to(out_dtype)
    return tracked.numpy() if points_numpy else tracked
