"""Tracking by detection along the flow (FlowTrack-style: Xiao, Wu and Wei, "Simple Baselines for Human
Pose Estimation and Tracking", ECCV 2018): each frame, the tracks of the previous frame are carried
forward along the flow (boxes by the median flow of their points, keypoints point by point, both
forward-backward checked), then matched to the frame's detections by box IoU or, for poses, object
keypoint similarity (OKS), with the Hungarian solver (``scipy.optimize.linear_sum_assignment``).

Lifecycle (the rules, in order, each frame):

1. Active tracks are propagated. A track whose points are mostly lost (occluded) becomes *lost*: it
   then coasts, not output: its last detection moved on at the velocity the flow measured then.
2. Active tracks are matched to the detections; matched pairs need similarity >= ``iou_threshold``
   (boxes) or ``oks_threshold`` (poses). A matched track takes the detection's box and keypoints and
   re-seeds its points there.
3. Lost tracks are matched to the detections left (same thresholds); a match brings the track back
   under its old id.
4. Each detection still unmatched starts a new track (birth).
5. An active track with no detection whose box lies mostly (``occlusion_cover``, 70% of its area)
   inside the box of a track with one is taken to be behind it and becomes lost (its points may have been carried onto the
   occluder by a flow that is smooth across the boundary, which the forward-backward check cannot
   see). Any other active track with no detection keeps its propagated box and is output (it fills
   the frame the detector missed) as long as it has gone at most ``patience`` frames without a
   detection; a track
   (active or lost) past ``patience`` frames without one, or whose box has left the image, ends.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np

from .flows import flow_stream
from .propagate import FB_ALPHA, FB_BETA, BoxState, clip_boxes, fb_check, propagate_box

__all__ = ["COCO_SIGMAS", "iou_matrix", "oks_matrix", "assign", "Detection", "Track", "Tracker", "track_detections"]

# COCO's per-keypoint sigmas (pycocotools cocoeval), for the 17 person keypoints in COCO order.
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0


def _covered(box: np.ndarray, others: np.ndarray) -> float:
    """The largest fraction of ``box``'s area inside any one of ``others``."""
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[0] + box[2], others[:, 0] + others[:, 2])
    y1 = np.minimum(box[1] + box[3], others[:, 1] + others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return float(inter.max() / max(box[2] * box[3], 1e-9))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every ``(x, y, w, h)`` box in ``a`` with every one in ``b``."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum((a[:, 0] + a[:, 2])[:, None], (b[:, 0] + b[:, 2])[None])
    y1 = np.minimum((a[:, 1] + a[:, 3])[:, None], (b[:, 1] + b[:, 3])[None])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def oks_matrix(kp_a: Sequence[Optional[np.ndarray]], kp_b: Sequence[Optional[np.ndarray]],
               areas_b: Sequence[float], sigmas: Optional[np.ndarray] = None) -> np.ndarray:
    """Object keypoint similarity (COCO's definition) of every pose in ``kp_a`` with every one in
    ``kp_b`` (each ``(K, 3)`` x, y, v; None for no pose): ``mean over the keypoints labelled (v > 0) in
    both of exp(-d^2 / (2 s^2 k^2))``, ``s^2`` the area of the ``b`` object (``areas_b``), ``k = 2
    sigma``. ``sigmas`` default: :data:`COCO_SIGMAS` (17 keypoints); NaN where no keypoint is shared."""
    out = np.full((len(kp_a), len(kp_b)), np.nan)
    for j, (b, area) in enumerate(zip(kp_b, areas_b)):
        if b is None:
            continue
        sig = COCO_SIGMAS if sigmas is None else np.asarray(sigmas, np.float64)
        if len(sig) != len(b):
            raise ValueError(f"poses have {len(b)} keypoints but {len(sig)} sigmas; pass sigmas= for non-COCO poses")
        var = (2 * sig) ** 2
        for i, a in enumerate(kp_a):
            if a is None or len(a) != len(b):
                continue
            both = (a[:, 2] > 0) & (b[:, 2] > 0)
            if not both.any():
                continue
            d2 = ((a[both, :2] - b[both, :2]) ** 2).sum(axis=1)
            out[i, j] = float(np.exp(-d2 / (2 * max(area, 1.0) * var[both])).mean())
    return out


def assign(similarity: np.ndarray, threshold: float):
    """Hungarian assignment maximising total similarity; pairs below ``threshold`` (or NaN) are not
    allowed. Returns a list of ``(row, column)``."""
    if similarity.size == 0:
        return []
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        raise ImportError("tracking by detection needs SciPy's assignment solver: pip install 'fastflow[track]'") from None

    sim = np.where(np.isfinite(similarity), similarity, -1.0)
    allowed = sim >= threshold
    cost = np.where(allowed, 1.0 - sim, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


@dataclass
class Detection:
    """One detection: ``box`` (x, y, w, h), ``score``, optional ``keypoints`` ``(K, 3)`` (x, y, v)."""

    box: np.ndarray
    score: float = 1.0
    keypoints: Optional[np.ndarray] = None


@dataclass
class Track:
    """One track as output for a frame: ``id``, ``box`` (x, y, w, h), ``score`` (the detection's, or
    the last one's for filled frames), ``keypoints`` ``(K, 3)`` (v = 0 for lost keypoints) or None,
    ``detected`` (False: filled by the flow), ``points`` ``(N, 2)`` and ``visible`` (for overlays)."""

    id: int
    box: np.ndarray
    score: float
    keypoints: Optional[np.ndarray]
    detected: bool
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    visible: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


class _State:
    def __init__(self, tid: int, det: Detection, grid: int, shape, exclude):
        self.id = tid
        self.misses = 0
        self.lost = False
        self.velocity = np.zeros(2)
        self.update(det, grid, shape, exclude)

    def update(self, det: Detection, grid: int, shape, exclude) -> None:
        self.box_state = BoxState.seed(det.box, grid, shape=shape, exclude=exclude)
        self.box_state.velocity = self.velocity
        # Where a lost track is predicted to be: its last detection moved on at the velocity the flow
        # measured then (dead reckoning; not what the flow said since, which may have been an occluder).
        self.anchor_box, self.anchor_velocity = np.asarray(det.box, np.float64).copy(), self.velocity.copy()
        self.score = det.score
        self.keypoints = None if det.keypoints is None else np.asarray(det.keypoints, np.float64).copy()
        self.misses = 0
        self.lost = False

    @property
    def box(self):
        return self.box_state.box

    def coast(self) -> None:
        self.lost = True
        self.box_state.box = self.anchor_box + np.r_[self.anchor_velocity * self.misses, 0, 0]


class Tracker:
    """The lifecycle of the module docstring, one frame at a time: ``step(fwd, bwd, detections)``
    with the flow from the previous frame (None on the first frame) returns the frame's tracks."""

    def __init__(self, shape, *, patience: int = 12, iou_threshold: float = 0.3, oks_threshold: float = 0.3,
                 sigmas=None, grid: int = 6, alpha: float = FB_ALPHA, beta: float = FB_BETA,
                 min_visible: float = 0.3, leave_fraction: float = 0.2, max_colour_diff: Optional[float] = None,
                 occlusion_cover: float = 0.7):
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.shape = tuple(shape)
        self.patience, self.iou_threshold, self.oks_threshold = patience, iou_threshold, oks_threshold
        self.sigmas, self.grid, self.alpha, self.beta = sigmas, grid, alpha, beta
        self.min_visible, self.leave_fraction = min_visible, leave_fraction
        self.max_colour_diff = max_colour_diff
        self.occlusion_cover = occlusion_cover
        self.images = None
        self.tracks: List[_State] = []
        self.next_id = 1

    def _propagate(self, s: _State, fwd, bwd) -> None:
        s.misses += 1
        if s.lost:
            s.coast()
        else:
            s.box_state = propagate_box(s.box_state, fwd, bwd, alpha=self.alpha, beta=self.beta,
                                        min_visible=self.min_visible, images=self.images,
                                        max_colour_diff=self.max_colour_diff)
            if s.box_state.lost:
                s.coast()
            else:
                s.velocity = s.box_state.velocity
        if s.keypoints is not None and not s.lost:
            kp = s.keypoints
            live = np.flatnonzero(kp[:, 2] > 0)
            moved, ok = fb_check(fwd, bwd, kp[live, :2], self.alpha, self.beta, self.images, self.max_colour_diff)
            kp[live[ok], :2] = moved[ok]
            kp[live[~ok], 2] = 0
        elif s.keypoints is not None:
            s.keypoints[:, :2] += s.anchor_velocity

    def _similarity(self, states: List[_State], dets: List[Detection]) -> np.ndarray:
        if not states or not dets:
            return np.zeros((len(states), len(dets)))
        sim = iou_matrix([s.box for s in states], [d.box for d in dets])
        if any(d.keypoints is not None for d in dets):
            oks = oks_matrix([s.keypoints for s in states], [d.keypoints for d in dets],
                             [d.box[2] * d.box[3] for d in dets], self.sigmas)
            # OKS is on a different scale: map it onto the IoU threshold so one gate serves both.
            scaled = oks * (self.iou_threshold / self.oks_threshold)
            sim = np.where(np.isfinite(oks), scaled, sim)
        return sim

    def step(self, fwd: Optional[np.ndarray], bwd: Optional[np.ndarray], detections: Sequence[Detection],
             images=None) -> List[Track]:
        """One frame. ``images``: ``(previous frame, this frame)``, needed only for the optional colour
        check (``max_colour_diff``)."""
        dets = list(detections)
        self.images = images
        if fwd is not None:
            for s in self.tracks:
                self._propagate(s, fwd, bwd)
        matched = {}
        free = list(range(len(dets)))
        for group in ([s for s in self.tracks if not s.lost], [s for s in self.tracks if s.lost]):
            sim = self._similarity(group, [dets[j] for j in free])
            pairs = assign(sim, self.iou_threshold)
            taken = set()
            for r, c in pairs:
                matched[id(group[r])] = free[c]
                taken.add(free[c])
            free = [j for j in free if j not in taken]
        # New points avoid the other objects: the other detections and the other tracks still followed
        # (a detector miss must not let a track seed points on its neighbour).
        det_boxes = np.array([d.box for d in dets]).reshape(-1, 4)
        owner = {j: id(s) for s in self.tracks for j in [matched.get(id(s))] if j is not None}
        live = [(id(s), s.box) for s in self.tracks if not s.lost]

        def others(j):
            near = [b for sid, b in live if sid != owner.get(j)]
            return np.concatenate([np.delete(det_boxes, j, axis=0), np.array(near).reshape(-1, 4)])

        for s in self.tracks:
            if id(s) in matched:
                s.update(dets[matched[id(s)]], self.grid, self.shape, others(matched[id(s)]))
        for j in free:
            self.tracks.append(_State(self.next_id, dets[j], self.grid, self.shape, others(j)))
            matched[id(self.tracks[-1])] = j
            self.next_id += 1
        # A track without a detection sitting on a track that has one is taken to be behind it (its points
        # were carried onto the occluder by a flow smooth across the boundary): it coasts, unseen.
        got = [t.box for t in self.tracks if id(t) in matched and not t.lost]
        for t in self.tracks:
            if not t.lost and id(t) not in matched and got:
                if _covered(t.box, np.array(got)) >= self.occlusion_cover:
                    t.coast()
        alive = []
        for s in self.tracks:
            inside = clip_boxes(s.box[None], self.shape)[0]
            area = s.box[2] * s.box[3]
            if s.misses > self.patience or area <= 0 or inside[2] * inside[3] < self.leave_fraction * area:
                continue
            alive.append(s)
        self.tracks = alive
        out = []
        for s in self.tracks:
            if s.lost:
                continue
            bs = s.box_state
            kp = None if s.keypoints is None else s.keypoints.copy()
            out.append(Track(s.id, clip_boxes(s.box[None], self.shape)[0], s.score, kp, id(s) in matched,
                             bs.points.copy(), bs.visible.copy()))
        return out


def track_detections(frames: Iterable, flow, detections: Sequence[Sequence], *, batch: int = 4,
                     keep_frames: bool = False, name: str = "video", pad: bool = False, **tracker_args) -> Iterator:
    """Track ids for per-frame ``detections`` (a list, one entry per frame, of :class:`Detection` or
    dicts with ``box``, optional ``score`` and ``keypoints``) through ``frames`` along ``flow`` (a
    FlowNet2S model or a callable ``(img1, img2) -> (H, W, 2)``). Yields ``(k, tracks)`` per frame
    (``(k, tracks, frame)`` with ``keep_frames``), streaming. ``tracker_args`` go to
    :class:`Tracker` (``patience``, ``iou_threshold``, ``oks_threshold``, ``sigmas``, ``alpha``,
    ``beta``, ``max_colour_diff``, ...). More detection frames than video frames raise ValueError after the last
    frame; a video longer than the detections is an error at the first frame without an entry, unless
    ``pad`` (then later frames have no detections: for detections that stop at their last non-empty
    frame)."""
    from .propagate import check_boxes

    tracker = None
    k = -1
    prev = None
    for k, frame, fwd, bwd in flow_stream(frames, flow, batch=batch, name=name):
        if tracker is None:
            tracker = Tracker(frame.shape[:2], **tracker_args)
        if k >= len(detections) and not pad:
            raise ValueError(f"{name} has more frames than the detections ({len(detections)} frames of detections; "
                             f"frame {k} has none): the detections do not belong to this video")
        dets = []
        for i, d in enumerate(detections[k] if k < len(detections) else []):
            if isinstance(d, dict):
                d = Detection(np.asarray(d["box"], np.float64), float(d.get("score", 1.0)), d.get("keypoints"))
            box = check_boxes(np.asarray(d.box, np.float64)[None], frame.shape[:2], name=f"frame {k} detection")[0]
            dets.append(Detection(box, d.score, None if d.keypoints is None else np.asarray(d.keypoints, np.float64)))
        tracks = tracker.step(fwd, bwd, dets, (prev, frame))
        prev = frame
        yield (k, tracks, frame) if keep_frames else (k, tracks)
    if k + 1 < len(detections):
        raise ValueError(f"the detections cover {len(detections)} frames but {name} has {k + 1}: "
                         "the detections do not belong to this video")
