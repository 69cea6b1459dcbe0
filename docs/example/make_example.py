"""Regenerates the README's worked example: two frames with a known motion and its colour picture.

frame2 is frame1 (a crop of the public-domain photo shipped with fastflow) moved by a small
rotation + zoom + shift, made with fastflow.warp; flow_true.png is the Middlebury colour coding
of the exact forward flow frame1 -> frame2. With the official checkpoint,
`fastflow flow frame1.png frame2.png --checkpoint ... --viz flow.png` estimates that flow.
"""
import math
import os

import numpy as np
import torch
from PIL import Image

import fastflow
from fastflow.bench import load_photo

HERE = os.path.dirname(os.path.abspath(__file__))
H, W = 256, 320
ANGLE, ZOOM, SHIFT = math.radians(4.0), 1.05, (3.0, -2.0)  # frame1 -> frame2: rotate, zoom, shift (x, y)


def main():
    img = load_photo()[40 : 40 + H, 96 : 96 + W].astype(np.float32)
    c, s = math.cos(ANGLE) * ZOOM, math.sin(ANGLE) * ZOOM
    cy, cx = (H - 1) / 2, (W - 1) / 2
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    # Forward map of frame1 points: q = R (p - centre) + centre + shift. Forward flow = q - p.
    fx = c * (xs - cx) - s * (ys - cy) + cx + SHIFT[0] - xs
    fy = s * (xs - cx) + c * (ys - cy) + cy + SHIFT[1] - ys
    # frame2(q) = frame1(p) with p = R^-1 (q - centre - shift) + centre: a backward warp of frame1.
    det = c * c + s * s
    qx, qy = xs - cx - SHIFT[0], ys - cy - SHIFT[1]
    px = (c * qx + s * qy) / det + cx
    py = (-s * qx + c * qy) / det + cy
    back = torch.from_numpy(np.stack((px - xs, py - ys))[None].astype(np.float32))
    frame1 = torch.from_numpy(img).permute(2, 0, 1)[None]
    frame2 = fastflow.warp(frame1, back, padding="border")[0].permute(1, 2, 0).clamp(0, 255).round().byte().numpy()
    flow = np.stack((fx, fy), axis=-1).astype(np.float32)
    Image.fromarray(img.astype(np.uint8)).save(os.path.join(HERE, "frame1.png"))
    Image.fromarray(frame2).save(os.path.join(HERE, "frame2.png"))
    Image.fromarray(fastflow.flow_to_color(flow)).save(os.path.join(HERE, "flow_true.png"))
    print("max |flow|:", float(np.hypot(fx, fy).max()))


if __name__ == "__main__":
    main()
