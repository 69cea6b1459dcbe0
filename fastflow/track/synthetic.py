"""Synthetic videos with known motion, for measuring a tracker: textured rectangles moving at constant
velocity over a textured, panning background, in depth order, crossing and occluding each other and
leaving the frame. Everything is known: each object's box and visibility per frame, the exact flow
(:meth:`Sequence.exact_flow`, a flow callable), where any point on an object is and whether it is
visible, and simulated detections (boxes and 17 COCO-style keypoints per object).

Rendering: each surface (background, object) is a smooth random texture sampled bilinearly at its
moved position, so a texture point at ``p`` in frame t is at ``p + t * velocity`` in frame t; objects
are painted back to front (higher ``depth`` in front) over pixels whose centre lies inside the box.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

__all__ = ["SynthObject", "Sequence", "make_sequence"]


def _texture(rng, h: int, w: int, tint, cell: int = 4, base: float = 40, contrast: float = 175) -> np.ndarray:
    """Smooth random RGB texture (values 0..255, float): noise on a coarse grid, upsampled bilinearly."""
    gh, gw = h // cell + 3, w // cell + 3
    coarse = rng.uniform(0, 1, (gh, gw, 1)) * 0.7 + rng.uniform(0, 1, (gh, gw, 3)) * 0.3
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) / cell
    tex = _bilinear(coarse, xx, yy)
    return np.clip(base + contrast * tex * np.asarray(tint)[None, None], 0, 255)


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(int), w - 2)
    y0 = np.minimum(np.floor(y).astype(int), h - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bot = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


@dataclass
class SynthObject:
    """A textured rectangle: box ``(x, y, w, h)`` at frame 0, velocity ``(vx, vy)`` px/frame,
    ``depth`` (higher is in front), 17 ``keypoints`` in box coordinates, and its texture."""

    id: int
    x: float
    y: float
    w: float
    h: float
    vx: float
    vy: float
    depth: int
    keypoints: np.ndarray
    texture: np.ndarray

    def box(self, t: int) -> np.ndarray:
        return np.array([self.x + self.vx * t, self.y + self.vy * t, self.w, self.h])


class Sequence:
    """A rendered synthetic video (``frames``: ``(T, H, W, 3)`` uint8) and its ground truth."""

    def __init__(self, height: int, width: int, n_frames: int, objects: List[SynthObject], background: np.ndarray,
                 bg_velocity=(0.0, 0.0)):
        self.height, self.width, self.n_frames = height, width, n_frames
        self.objects = sorted(objects, key=lambda o: o.depth)
        self.background, self.bg_velocity = background, np.asarray(bg_velocity, np.float64)
        self.frames = np.zeros((n_frames, height, width, 3), np.uint8)
        self.labels = np.full((n_frames, height, width), -1, np.int32)  # object id on top, -1 background
        self._index: Dict[bytes, int] = {}
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
        pad = (background.shape[0] - height) / 2, (background.shape[1] - width) / 2
        for t in range(n_frames):
            img = _bilinear(background, xx + pad[1] - self.bg_velocity[0] * t, yy + pad[0] - self.bg_velocity[1] * t)
            lab = self.labels[t]
            for o in self.objects:
                x, y, w, h = o.box(t)
                inside = (xx >= x) & (xx < x + w) & (yy >= y) & (yy < y + h)
                if inside.any():
                    img[inside] = _bilinear(o.texture, xx[inside] - x, yy[inside] - y)
                    lab[inside] = o.id
            self.frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
            key = hashlib.blake2b(self.frames[t].tobytes(), digest_size=16).digest()
            if key in self._index:
                raise ValueError(f"synthetic frames {self._index[key]} and {t} are identical")
            self._index[key] = t
        self._by_id = {o.id: o for o in self.objects}

    # ---- ground truth
    def velocity_map(self, t: int) -> np.ndarray:
        """``(H, W, 2)``: the velocity of the surface seen at each pixel of frame t."""
        v = np.empty((self.height, self.width, 2), np.float32)
        v[:] = self.bg_velocity
        for o in self.objects:
            v[self.labels[t] == o.id] = (o.vx, o.vy)
        return v

    def frame_index(self, img) -> int:
        key = hashlib.blake2b(np.ascontiguousarray(np.asarray(img, np.uint8)).tobytes(), digest_size=16).digest()
        if key not in self._index:
            raise ValueError("exact_flow: that image is not a frame of this synthetic sequence")
        return self._index[key]

    def exact_flow(self, img1, img2) -> np.ndarray:
        """The true flow from img1 to img2 (two frames of this sequence, found by content): for every
        pixel of img1, how far the surface seen there moves (visible or not in img2)."""
        t1, t2 = self.frame_index(img1), self.frame_index(img2)
        return self.velocity_map(t1) * np.float32(t2 - t1)

    def visibility(self, obj_id: int, t: int) -> float:
        """Fraction of the object's whole area seen in frame t (occluded and out-of-frame parts count
        as not seen)."""
        o = self._by_id[obj_id]
        return min(1.0, float((self.labels[t] == obj_id).sum()) / (o.w * o.h))

    def box_in_image(self, obj_id: int, t: int) -> np.ndarray:
        x, y, w, h = self._by_id[obj_id].box(t)
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, float(self.width)), min(y + h, float(self.height))
        return np.array([x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)])

    def ground_truth(self, min_visible: float = 0.2) -> List[Dict[int, np.ndarray]]:
        """Per frame, ``{object id: box (x, y, w, h) clipped to the image}`` for each object with at
        least ``min_visible`` of its area visible."""
        return [{o.id: self.box_in_image(o.id, t) for o in self.objects if self.visibility(o.id, t) >= min_visible}
                for t in range(self.n_frames)]

    def points(self, obj_id: int, local: np.ndarray, t: int):
        """Where points fixed on an object (``local``: ``(N, 2)`` in box coordinates) are in frame t, and
        whether each is visible there (inside the image and not covered by a nearer object)."""
        x, y, _, _ = self._by_id[obj_id].box(t)
        pts = np.asarray(local, np.float64) + [x, y]
        xi, yi = np.rint(pts[:, 0]).astype(int), np.rint(pts[:, 1]).astype(int)
        inside = (xi >= 0) & (xi < self.width) & (yi >= 0) & (yi < self.height)
        vis = np.zeros(len(pts), bool)
        vis[inside] = self.labels[t][yi[inside], xi[inside]] == obj_id
        return pts, vis

    def detections(self, min_visible: float = 0.5, jitter: float = 0.0, miss: float = 0.0, seed: int = 0,
                   keypoints: bool = False) -> List[List[dict]]:
        """Simulated detector output per frame: a detection for each object with at least
        ``min_visible`` of its area visible, dropped with probability ``miss``, its box (clipped to the
        image) moved by Gaussian noise of ``jitter`` px per coordinate; ``{"box", "score", "object"}``
        (``object``: the true id, for checking only) and, with ``keypoints``, ``"keypoints"``
        ``(17, 3)`` (x, y, v), v = 2 where the point is visible, else the row is 0."""
        rng = np.random.default_rng(seed)
        out = []
        for t in range(self.n_frames):
            dets = []
            for o in self.objects:
                if self.visibility(o.id, t) < min_visible or rng.uniform() < miss:
                    continue
                box = self.box_in_image(o.id, t) + rng.normal(0, jitter, 4) * (jitter > 0)
                box[2:] = np.maximum(box[2:], 1.0)
                d = {"box": box, "score": float(rng.uniform(0.6, 1.0)), "object": o.id}
                if keypoints:
                    pts, vis = self.points(o.id, o.keypoints, t)
                    kp = np.zeros((len(pts), 3))
                    kp[vis, :2] = pts[vis] + rng.normal(0, jitter / 2, (int(vis.sum()), 2)) * (jitter > 0)
                    kp[vis, 2] = 2
                    d["keypoints"] = kp
                dets.append(d)
            out.append(dets)
        return out


def make_sequence(seed: int = 0, height: int = 96, width: int = 128, n_frames: int = 40) -> Sequence:
    """A scene with known events, its details (textures, sizes, speeds, positions) drawn from ``seed``:

    - objects 1 (behind) and 2 (in front, taller and wider) cross head-on in one band: object 1 goes
      fully behind object 2 for a few frames and comes out the other side;
    - object 3 moves diagonally and leaves the frame;
    - object 4 enters the frame later from the bottom edge, and object 5 passes in front of object 4's
      path, partly covering it;
    - the background pans slowly.
    Coordinates scale with ``height`` x ``width`` (designed at 96 x 128)."""
    rng = np.random.default_rng(seed)
    sy, sx = height / 96, width / 128
    sp = n_frames / 40

    def obj(i, x, y, w, h, vx, vy, depth):
        w, h = w * sx, h * sy
        tint = np.roll([1.0, rng.uniform(0.3, 0.6), rng.uniform(0.0, 0.3)], i)
        tex = _texture(rng, int(np.ceil(h)) + 2, int(np.ceil(w)) + 2, tint, cell=3, base=60, contrast=195)
        kp = np.stack([rng.uniform(0.15 * w, 0.85 * w, 17), rng.uniform(0.15 * h, 0.85 * h, 17)], 1)
        return SynthObject(i, x * sx, y * sy, w, h, vx * sx / sp, vy * sy / sp, depth, kp, tex)

    j = lambda a: a * rng.uniform(0.9, 1.1)  # noqa: E731
    objects = [
        obj(1, j(6), j(30), j(18), j(20), j(2.4), 0.0, 0),
        obj(2, j(96), 26, j(28), 30, -j(1.6), 0.0, 2),
        obj(3, j(20), j(62), j(22), j(18), j(2.3), j(0.9), 1),
        obj(4, j(70), 96, j(20), j(22), 0.0, -j(1.5), 0),
        obj(5, -30, j(52), j(22), j(24), j(2.0), j(-0.2), 3),
    ]
    margin = 8
    bg = _texture(rng, height + 2 * margin + 4, width + 2 * margin + 4, (1.0, 1.0, 1.0), cell=6, base=50, contrast=90)
    bg_v = (rng.uniform(-0.15, 0.15) * sx / sp, rng.uniform(-0.1, 0.1) * sy / sp)
    return Sequence(height, width, n_frames, objects, bg, bg_v)
