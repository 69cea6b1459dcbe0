"""Carrying points, boxes and masks from frame to frame along the flow, with a forward-backward check.

Coordinates are pixels ``(x, y)``, pixel centres at integers (as :func:`fastflow.track_points`).
Boxes are ``(x, y, w, h)``: left, top, width, height in pixels, the box covering ``x <= px < x + w``.

Forward-backward consistency (Sundaram, Brox and Keutzer, "Dense point trajectories by GPU-accelerated
large displacement optical flow", ECCV 2010, eq. 5): with ``w_f`` the forward flow at a point ``x``
and ``w_b`` the backward flow at ``x + w_f``, the point is kept when

    |w_f + w_b|^2 < alpha * (|w_f|^2 + |w_b|^2) + beta          (alpha = 0.01, beta = 0.5 px^2)

and flagged lost otherwise (it went behind something, or the flow there is wrong). A point also
becomes lost when it leaves the image or its flow is not finite. Lost points stay lost.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, List, Optional

import numpy as np

from .flows import flow_stream

__all__ = ["FB_ALPHA", "FB_BETA", "fb_check", "box_grid", "BoxState", "propagate_box", "propagate_mask",
           "propagate", "PropagateFrame", "check_boxes", "check_points"]

# Sundaram, Brox, Keutzer (ECCV 2010): the forward-backward thresholds of their paper.
FB_ALPHA = 0.01
FB_BETA = 0.5


# ------------------------------------------------------------------------------- points and the check
def _sample(flow: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Bilinear flow at points (``fastflow.track_points`` without the addition)."""
    from ..tracking import track_points

    if len(pts) == 0:
        return np.zeros((0, 2), np.float64)
    return track_points(flow, pts.astype(np.float64)) - pts


def fb_check(fwd: np.ndarray, bwd: Optional[np.ndarray], pts: np.ndarray, alpha: float = FB_ALPHA,
             beta: float = FB_BETA, images=None, max_colour_diff: Optional[float] = None):
    """Move ``(N, 2)`` points along ``fwd`` and test each with the forward-backward check (module
    docstring). Returns ``(new_points, ok)``: ``ok`` is False where the check fails (``bwd`` None:
    no check), the flow is not finite, or the new point is outside the image.

    Optional colour check (off by default; not part of Sundaram et al.'s test): with ``images`` =
    ``(frame_before, frame_after)`` and ``max_colour_diff``, a point also fails when the mean absolute
    RGB difference (0..255 scale) between its colour before and after the move exceeds
    ``max_colour_diff``. It catches points that a smooth flow carries onto an occluder consistently in
    both directions, at the price of false alarms on drifting points."""
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    h, w = fwd.shape[:2]
    wf = _sample(fwd, pts)
    new = pts + wf
    ok = np.isfinite(new).all(axis=1)
    ok &= (new[:, 0] >= 0) & (new[:, 0] <= w - 1) & (new[:, 1] >= 0) & (new[:, 1] <= h - 1)
    if bwd is not None and len(pts):
        safe = np.where(np.isfinite(new), new, 0.0)
        wb = _sample(bwd, safe)
        err = ((wf + wb) ** 2).sum(axis=1)
        bound = alpha * ((wf ** 2).sum(axis=1) + (wb ** 2).sum(axis=1)) + beta
        with np.errstate(invalid="ignore"):
            ok &= np.isfinite(err) & (err < bound)
    if max_colour_diff is not None and images is not None and len(pts):
        a, b = (_rgb255(im) for im in images)
        safe = np.where(np.isfinite(new), new, 0.0)
        diff = np.abs(_bilinear_at(a, pts[:, 0], pts[:, 1]) - _bilinear_at(b, safe[:, 0], safe[:, 1]))
        ok &= diff.reshape(len(pts), -1).mean(axis=1) <= max_colour_diff
    return new, ok


def _rgb255(img) -> np.ndarray:
    """A frame as float64 on the 0..255 scale (``fastflow.images`` value rules: uint16 /257, float x255)."""
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a.astype(np.float64)
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 257.0
    return a.astype(np.float64) * 255.0


def check_points(points, shape, name: str = "points") -> np.ndarray:
    """``(N, 2)`` float64 points, finite and inside an ``(H, W)`` image, else ValueError naming one."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) (x, y), got {pts.shape}")
    h, w = shape
    bad = ~np.isfinite(pts).all(axis=1) | (pts[:, 0] < 0) | (pts[:, 0] > w - 1) | (pts[:, 1] < 0) | (pts[:, 1] > h - 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {tuple(pts[i])} is outside the {w}x{h} image (x in 0..{w - 1}, y in 0..{h - 1})")
    return pts


def check_boxes(boxes, shape, name: str = "boxes", clip: bool = True) -> np.ndarray:
    """``(K, 4)`` float64 ``(x, y, w, h)`` boxes: finite, positive size, overlapping an ``(H, W)``
    image. A box entirely outside the image raises ValueError naming it; one partly outside is clipped
    to the image (``clip``)."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must have shape (K, 4) (x, y, width, height), got {b.shape}")
    h, w = shape
    for i, (x, y, bw, bh) in enumerate(b):
        if not np.isfinite([x, y, bw, bh]).all() or bw <= 0 or bh <= 0:
            raise ValueError(f"{name}[{i}] = {(x, y, bw, bh)}: width and height must be positive and finite")
        if x >= w or y >= h or x + bw <= 0 or y + bh <= 0:
            raise ValueError(f"{name}[{i}] = {(x, y, bw, bh)} (x, y, width, height) lies outside the {w}x{h} image")
    return clip_boxes(b, shape) if clip else b


def clip_boxes(b: np.ndarray, shape) -> np.ndarray:
    h, w = shape
    x0, y0 = np.clip(b[:, 0], 0, w), np.clip(b[:, 1], 0, h)
    x1, y1 = np.clip(b[:, 0] + b[:, 2], 0, w), np.clip(b[:, 1] + b[:, 3], 0, h)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


def box_grid(box, n: int = 6, inset: float = 0.1) -> np.ndarray:
    """``n x n`` points spread over a box, ``inset`` of its size away from the edges (edge pixels mix
    the object's flow with what is behind it)."""
    x, y, w, h = box
    f = inset + (1 - 2 * inset) * (np.arange(n) + 0.5) / n
    gx, gy = np.meshgrid(x - 0.5 + f * w, y - 0.5 + f * h)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


# ---------------------------------------------------------------------------------------------- boxes
@dataclass
class BoxState:
    """One box carried along the flow: its points (``points``, ``visible``), the box, the last
    displacement of its centre (``velocity``, px/frame) and whether it is ``lost`` (too few points)."""

    box: np.ndarray
    points: np.ndarray
    visible: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    lost: bool = False

    @classmethod
    def seed(cls, box, n: int = 6, extra: Optional[np.ndarray] = None, shape=None, exclude=None) -> "BoxState":
        """A fresh ``n x n`` grid of points in ``box`` (plus ``extra`` points). Grid points inside any of
        the ``exclude`` boxes (other objects' boxes overlapping this one: whichever is in front, those
        pixels are ambiguous) are left out, unless fewer than 4 points would remain."""
        pts = box_grid(box, n)
        if exclude is not None and len(exclude):
            ex = np.asarray(exclude, np.float64).reshape(-1, 4)
            inside = ((pts[:, None, 0] >= ex[None, :, 0]) & (pts[:, None, 0] < ex[None, :, 0] + ex[None, :, 2])
                      & (pts[:, None, 1] >= ex[None, :, 1]) & (pts[:, None, 1] < ex[None, :, 1] + ex[None, :, 3])).any(1)
            if (~inside).sum() >= 4:
                pts = pts[~inside]
        if extra is not None and len(extra):
            pts = np.concatenate([pts, extra])
        vis = np.ones(len(pts), bool)
        if shape is not None:
            h, w = shape
            vis = (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
        return cls(np.asarray(box, np.float64), pts, vis)


def _dominant_motion(disp: np.ndarray, outlier_px: float, outlier_rel: float):
    """The displacement most points agree with (the one with the most others within tolerance), the
    median over those points, and which points agree with it."""
    tol = np.maximum(outlier_px, outlier_rel * np.hypot(*disp.T))
    d = np.hypot(*(disp[:, None] - disp[None]).transpose(2, 0, 1))
    support = (d <= tol[:, None]).sum(axis=1)
    best = int(np.argmax(support))
    med = np.median(disp[d[best] <= tol[best]], axis=0)
    agree = np.hypot(*(disp - med).T) <= max(outlier_px, outlier_rel * float(np.hypot(*med)))
    return med, agree


def propagate_box(state: BoxState, fwd, bwd, *, alpha=FB_ALPHA, beta=FB_BETA, min_visible: float = 0.3,
                  min_points: int = 3, outlier_px: float = 1.5, outlier_rel: float = 0.3,
                  scale: bool = True, images=None, max_colour_diff: Optional[float] = None) -> BoxState:
    """One step of a box: its visible points go through :func:`fb_check`; of those that pass, the
    ones that do not move with the majority are dropped as well (they sit on something else, e.g. an
    occluder inside the box): the dominant displacement is the one with the most points within
    ``max(outlier_px, outlier_rel |d|)`` of it. The box moves by the median displacement of the points
    kept and, with ``scale``, is scaled by the median ratio of their pairwise distances (the
    median-flow rule). It is ``lost`` once fewer than ``min_visible`` of its points, or fewer than
    ``min_points``, remain; a lost box no longer moves along the flow. ``images``,
    ``max_colour_diff``: the optional colour check of :func:`fb_check`."""
    if state.lost:
        return state
    vis = state.visible.copy()
    idx = np.flatnonzero(vis)
    new_pts = state.points.copy()
    moved, ok = fb_check(fwd, bwd, state.points[idx], alpha, beta, images, max_colour_diff)
    new_pts[idx] = moved
    disp = moved - state.points[idx]
    good = ok.copy()
    if good.any():
        _, agree = _dominant_motion(disp[good], outlier_px, outlier_rel)
        good[np.flatnonzero(good)[~agree]] = False
    vis[idx] = good
    n_vis = int(vis.sum())
    if n_vis < max(min_points, min_visible * len(vis)) or not good.any():
        return BoxState(state.box, new_pts, vis, state.velocity, lost=True)
    med = np.median(disp[good], axis=0)
    s = 1.0
    if scale and n_vis >= 2:
        p0, p1 = state.points[idx][good], moved[good]
        i, j = np.triu_indices(len(p0), 1)
        d0 = np.hypot(*(p0[i] - p0[j]).T)
        keep = d0 > 1.0
        if keep.any():
            s = float(np.clip(np.median(np.hypot(*(p1[i] - p1[j]).T)[keep] / d0[keep]), 0.5, 2.0))
    x, y, w, h = state.box
    cx, cy = x + w / 2 + med[0], y + h / 2 + med[1]
    box = np.array([cx - s * w / 2, cy - s * h / 2, s * w, s * h])
    return BoxState(box, new_pts, vis, med)


def _bilinear_at(img: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """``img`` (H, W) or (H, W, C) sampled bilinearly at (sx, sy), positions clamped to the image."""
    h, w = img.shape[:2]
    sx, sy = np.clip(sx, 0, w - 1), np.clip(sy, 0, h - 1)
    x0 = np.minimum(np.floor(sx).astype(int), max(w - 2, 0))
    y0 = np.minimum(np.floor(sy).astype(int), max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = sx - x0, sy - y0
    if img.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    return top * (1 - fy) + (img[y1, x0] * (1 - fx) + img[y1, x1] * fx) * fy


def propagate_mask(mask: np.ndarray, fwd: np.ndarray, bwd: np.ndarray, alpha: float = FB_ALPHA,
                   beta: float = FB_BETA) -> np.ndarray:
    """A mask of frame k-1 carried to frame k: each pixel ``y`` of frame k takes the mask value at
    ``y + w_b(y)`` (backward flow, bilinear), where the backward flow is
    consistent with the forward flow there (the same check as for points, run backward). A pixel that
    shows an occluder points back at the occluder, outside the mask; a pixel just uncovered (background
    revealed behind a moving object) fails the check: both drop out of the mask.

    The mask is soft: a float mask in 0..1 in and out (pass a bool mask the first time; threshold the
    result at 0.5 for a binary mask). Carrying the soft values keeps the sub-pixel position of the
    edges; re-binarising every frame would lose up to half a pixel per frame and the mask would drift."""
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    wb = bwd.astype(np.float64)
    sx, sy = xx + wb[..., 0], yy + wb[..., 1]
    ok = np.isfinite(sx) & np.isfinite(sy) & (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
    sx, sy = np.nan_to_num(sx), np.nan_to_num(sy)
    # Forward flow at the nearest pixel: bilinear mixing across the object's edge would fail the check
    # there every frame and erode the mask.
    h1, w1 = fwd.shape[:2]
    wf = fwd[np.clip(np.rint(sy).astype(int), 0, h1 - 1), np.clip(np.rint(sx).astype(int), 0, w1 - 1)].astype(np.float64)
    err = ((wb + wf) ** 2).sum(-1)
    with np.errstate(invalid="ignore"):
        ok &= err < alpha * ((wb ** 2).sum(-1) + (wf ** 2).sum(-1)) + beta
    return np.where(ok, _bilinear_at(mask.astype(np.float32), sx, sy), np.float32(0))


# --------------------------------------------------------------------------------- the video driver
@dataclass
class PropagateFrame:
    """What :func:`propagate` knows at frame ``index``: ``points`` ``(N, 2)`` with ``visible``
    ``(N,)`` (False = lost: occluded, flow inconsistent, or left the image; its position is then the
    last one tracked), ``boxes`` ``(K, 4)`` (x, y, w, h) with ``box_lost`` ``(K,)``, ``masks``
    ``(M, H, W)`` bool (or None), and the frame itself when asked for (``keep_frames``)."""

    index: int
    points: np.ndarray
    visible: np.ndarray
    boxes: np.ndarray
    box_lost: np.ndarray
    masks: Optional[np.ndarray] = None
    frame: Optional[np.ndarray] = None


def propagate(frames: Iterable, flow, *, points=None, boxes=None, masks=None, batch: int = 4,
              alpha: float = FB_ALPHA, beta: float = FB_BETA, grid: int = 6, min_visible: float = 0.3,
              check: bool = True, keep_frames: bool = False, name: str = "video",
              max_colour_diff: Optional[float] = None) -> Iterator[PropagateFrame]:
    """Carry ``points`` ``(N, 2)``, ``boxes`` ``(K, 4)`` and ``masks`` ``(M, H, W)`` given on frame 0
    through ``frames`` (an iterable of images, e.g. ``fastflow.images.open_frames(path)``) along the
    flow of ``flow`` (a FlowNet2S model or a callable ``(img1, img2) -> (H, W, 2)``): yields one
    :class:`PropagateFrame` per frame, frame 0 included, streaming (``batch`` pairs in memory).

    Each point is checked forward-backward (``alpha``, ``beta``: module docstring; ``check=False``
    skips the backward flow and the check, halving the flow computed). Each box follows the median
    displacement of a ``grid x grid`` set of its points (:func:`propagate_box`) and is lost when fewer
    than ``min_visible`` of them remain. Masks follow the backward flow, checked against the forward flow
    (:func:`propagate_mask`; they need ``check``). Points or boxes outside frame 0 raise ValueError naming them."""
    if masks is not None and not check:
        raise ValueError("masks follow the backward flow: they need check=True")
    states: List[BoxState] = []
    pts = vis = mk = prev = None
    for k, frame, fwd, bwd in flow_stream(frames, flow, batch=batch, backward=check, name=name):
        if k == 0:
            shape = frame.shape[:2]
            pts = check_points(np.zeros((0, 2)) if points is None else points, shape)
            vis = np.ones(len(pts), bool)
            bx = check_boxes(np.zeros((0, 4)) if boxes is None else boxes, shape)
            states = [BoxState.seed(b, grid, shape=shape) for b in bx]
            if masks is not None:
                mk = np.asarray(masks).astype(bool).astype(np.float32)  # soft from here on
                if mk.ndim == 2:
                    mk = mk[None]
                if mk.shape[1:] != shape:
                    raise ValueError(f"masks are {mk.shape[1:]} (H, W) but frame 0 of {name} is {shape}")
        else:
            idx = np.flatnonzero(vis)
            pair = (prev, frame)
            moved, ok = fb_check(fwd, bwd, pts[idx], alpha, beta, pair, max_colour_diff)
            pts = pts.copy()
            pts[idx] = np.where(ok[:, None], moved, pts[idx])
            vis = vis.copy()
            vis[idx] = ok
            states = [propagate_box(s, fwd, bwd, alpha=alpha, beta=beta, min_visible=min_visible, images=pair,
                                    max_colour_diff=max_colour_diff) for s in states]
            if mk is not None:
                mk = np.stack([propagate_mask(m, fwd, bwd, alpha, beta) for m in mk])
        prev = frame
        yield PropagateFrame(k, pts.copy(), vis.copy(),
                             np.array([s.box for s in states]).reshape(-1, 4),
                             np.array([s.lost for s in states], bool),
                             None if mk is None else mk >= 0.5, frame if keep_frames else None)
