"""Pictures of tracks for looking at: boxes coloured and labelled by track id (dashed when the box was
filled along the flow, not detected), trails of the box centres, tracked points (dots) and lost points
(red crosses), masks tinted. Written as numbered PNG frames or a video (``.mp4``, needs
``fastflow[video]``)."""
from __future__ import annotations

import colorsys
import os
from collections import defaultdict, deque
from typing import Optional

import numpy as np

__all__ = ["id_colour", "draw_frame", "OverlayWriter"]

LOST = (255, 40, 40)


def id_colour(tid: int):
    """A bright colour per id, golden-ratio hues so neighbouring ids differ."""
    r, g, b = colorsys.hsv_to_rgb((tid * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _to_rgb8(frame) -> np.ndarray:
    a = np.asarray(frame)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.dtype == np.uint16:
        a = (a // 257).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a * 255.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a[..., :3])


def draw_frame(frame, *, tracks=(), points=None, visible=None, boxes=None, box_lost=None, masks=None,
               trails=None, scale: int = 1, label: Optional[str] = None) -> np.ndarray:
    """The frame (``(H, W, 3)``) with what was tracked drawn on it, enlarged ``scale`` times (nearest
    pixel) so small frames stay readable. ``tracks``: :class:`fastflow.track.Track` list;
    ``points``/``visible``, ``boxes``/``box_lost``, ``masks``: what :func:`fastflow.track.propagate`
    gives; ``trails``: ``{id: [(x, y), ...]}`` centres to draw as lines. Returns uint8 RGB."""
    from PIL import Image, ImageDraw

    img = _to_rgb8(frame).astype(np.float32)
    if masks is not None:
        for m, mask in enumerate(np.asarray(masks, bool)):
            img[mask] = 0.55 * img[mask] + 0.45 * np.array(id_colour(m + 1), np.float32)
    im = Image.fromarray(img.astype(np.uint8))
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    d = ImageDraw.Draw(im)
    s = float(scale)
    try:  # Pillow >= 10.1 scales its built-in font
        from PIL import ImageFont

        font = ImageFont.load_default(size=max(10, 5 * scale))
    except TypeError:
        font = None

    def rect(box, colour, dashed=False, width=2):
        x, y, w, h = (float(v) * s for v in box)
        if not dashed:
            d.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=width)
            return
        for (x0, y0, x1, y1) in ((x, y, x + w, y), (x, y + h, x + w, y + h), (x, y, x, y + h), (x + w, y, x + w, y + h)):
            n = max(int(max(abs(x1 - x0), abs(y1 - y0)) // 6), 1)
            for i in range(0, n, 2):
                t0, t1 = i / n, min((i + 1) / n, 1.0)
                d.line([x0 + (x1 - x0) * t0, y0 + (y1 - y0) * t0, x0 + (x1 - x0) * t1, y0 + (y1 - y0) * t1],
                       fill=colour, width=width)

    def dot(p, colour, r=2):
        x, y = (p[0] + 0.5) * s - 0.5, (p[1] + 0.5) * s - 0.5
        d.ellipse([x - r, y - r, x + r, y + r], fill=colour)

    def cross(p, colour, r=3):
        x, y = (p[0] + 0.5) * s - 0.5, (p[1] + 0.5) * s - 0.5
        d.line([x - r, y - r, x + r, y + r], fill=colour, width=2)
        d.line([x - r, y + r, x + r, y - r], fill=colour, width=2)

    for tid, pts in (trails or {}).items():
        if len(pts) > 1:
            d.line([((x + 0.5) * s, (y + 0.5) * s) for x, y in pts], fill=id_colour(tid), width=2)
    for t in tracks:
        c = id_colour(t.id)
        for p in t.points[t.visible]:
            dot(p, c, 1)
        if t.keypoints is not None:
            for x, y, v in t.keypoints:
                if v > 0:
                    dot((x, y), (255, 255, 255), 2)
        rect(t.box, c, dashed=not t.detected)
        d.text((float(t.box[0]) * s + 3, float(t.box[1]) * s + 1), str(t.id), fill=c, font=font)
    if points is not None:
        vis = np.ones(len(points), bool) if visible is None else np.asarray(visible, bool)
        for p, v in zip(points, vis):
            if v:
                dot(p, (60, 255, 60))
            else:
                cross(p, LOST)
    if boxes is not None:
        lost = np.zeros(len(boxes), bool) if box_lost is None else np.asarray(box_lost, bool)
        for i, (b, gone) in enumerate(zip(boxes, lost)):
            rect(b, LOST if gone else id_colour(i + 1), dashed=bool(gone))
    if label:
        d.text((4, im.height - 14), label, fill=(255, 255, 255), font=font)
    return np.asarray(im)


class OverlayWriter:
    """Writes overlay frames to ``path``: a folder (``NNNNNN.png`` or the source frames' names) or a
    ``.mp4`` file (needs ``fastflow[video]``); keeps the trails (last ``trail`` centres per id)."""

    def __init__(self, path: str, *, fps: float = 25.0, scale: int = 1, trail: int = 20, label: Optional[str] = None):
        self.path, self.fps, self.scale, self.label = path, fps, scale, label
        self.video = path.lower().endswith((".mp4", ".avi", ".mov", ".mkv"))
        self.trails = defaultdict(lambda: deque(maxlen=trail))
        self.writer = None
        self.count = 0
        if self.video:
            try:
                import imageio.v2 as iio2
            except ImportError:
                raise ImportError("an overlay video needs imageio and imageio-ffmpeg: pip install 'fastflow[video]' "
                                  "(or give a folder for PNG frames)") from None
            self._iio = iio2
        else:
            os.makedirs(path, exist_ok=True)

    def add(self, frame, name: Optional[str] = None, **what) -> np.ndarray:
        for t in what.get("tracks", ()):
            x, y, w, h = t.box
            self.trails[t.id].append((x + w / 2, y + h / 2))
        live = {t.id for t in what.get("tracks", ())}
        for tid in list(self.trails):
            if tid not in live:
                del self.trails[tid]
        rgb = draw_frame(frame, trails=self.trails, scale=self.scale, label=self.label, **what)
        if self.video:
            if self.writer is None:
                self.writer = self._iio.get_writer(self.path, fps=self.fps, macro_block_size=1)
            self.writer.append_data(rgb)
        else:
            from PIL import Image

            Image.fromarray(rgb).save(os.path.join(self.path, (name or f"{self.count:06d}") + ".png"))
        self.count += 1
        return rgb

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
