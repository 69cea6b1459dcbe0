"""Small synthetic optical-flow datasets written in each standard layout, ground truth known by
construction (tests of fastflow.datasets and fastflow.validate).

Every pair is made from the shipped photograph: ``img2`` is a crop, ``flow`` a smooth field (a
rotation, zoom and shift, different per pair) and ``img1 = warp(img2, flow)`` (backward bilinear
warp), so ``flow`` is exactly the motion from ``img1`` to ``img2``. Flows are multiples of 1/64 px,
which KITTI's 16-bit PNGs store exactly. Each writer returns ``{sample name: Truth}``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np
import torch
from PIL import Image

import fastflow
from fastflow.samples import load_photo
from fastflow.io import write_flow


@dataclass
class Truth:
    img1: np.ndarray
    img2: np.ndarray
    flow: np.ndarray  # dense (H, W, 2), the construction
    valid: np.ndarray  # where the written ground truth is known
    regions: Dict[str, np.ndarray] = field(default_factory=dict)


def make_pair(h: int, w: int, seed: int, max_shift: float = 4.0, img2=None):
    """(img1, img2, flow, occluded): uint8 frames, float32 flow (1/64 px steps), bool mask of the
    pixels of img1 whose match falls outside img2. ``img2``: a crop of the photo unless given."""
    rng = np.random.default_rng(seed)
    photo = load_photo()
    y0, x0 = rng.integers(0, photo.shape[0] - h), rng.integers(0, photo.shape[1] - w)
    if img2 is None:
        img2 = photo[y0:y0 + h, x0:x0 + w].copy()
    ang, zoom = rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04)
    tx, ty = rng.uniform(-max_shift, max_shift, 2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xc, yc = xx - (w - 1) / 2, yy - (h - 1) / 2
    u = zoom * xc - ang * yc + tx
    v = ang * xc + zoom * yc + ty
    flow = (np.round(np.stack((u, v), -1) * 64) / 64).astype(np.float32)
    t2 = torch.from_numpy(img2).permute(2, 0, 1).float()
    img1 = fastflow.warp(t2, torch.from_numpy(flow).permute(2, 0, 1).contiguous())
    img1 = img1.round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    tx_, ty_ = xx + flow[..., 0], yy + flow[..., 1]
    occluded = (tx_ < 0) | (tx_ > w - 1) | (ty_ < 0) | (ty_ > h - 1)
    return img1, img2, flow, occluded


def _save(path, img):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(img).save(path)


def write_sintel(root, sequences=(("alley_1", 3), ("market_2", 2)), size=(40, 56), occlusions=True):
    """MPI-Sintel training layout (clean and final passes). ``sequences``: (name, number of flows).
    Frames are chained backwards from the last one: frame k = warp(frame k+1, flow k)."""
    truths = {}
    h, w = size
    tr = os.path.join(root, "training")
    for s, (seq, n) in enumerate(sequences):
        img2 = None
        for k in range(n, 0, -1):
            img1, img2, flow, occ = make_pair(h, w, seed=100 * s + k, img2=img2)
            for pss in ("clean", "final"):
                # final pass: the same frames, brightened (a stand-in for its atmospheric effects)
                a, b = (img1, img2) if pss == "clean" else (_brighten(img1), _brighten(img2))
                _save(os.path.join(tr, pss, seq, f"frame_{k:04d}.png"), a)
                _save(os.path.join(tr, pss, seq, f"frame_{k + 1:04d}.png"), b)
            os.makedirs(os.path.join(tr, "flow", seq), exist_ok=True)
            write_flow(os.path.join(tr, "flow", seq, f"frame_{k:04d}.flo"), flow)
            regions = {}
            if occlusions:
                _save(os.path.join(tr, "occlusions", seq, f"frame_{k:04d}.png"), (occ * 255).astype(np.uint8))
                regions = {"matched": ~occ, "unmatched": occ}
            truths[f"{seq}/frame_{k:04d}"] = Truth(img1, img2, flow, np.ones((h, w), bool), regions)
            img2 = img1
    return truths


def _brighten(img):
    return np.clip(img.astype(np.int16) + 12, 0, 255).astype(np.uint8)


def write_kitti(root, year="2015", sizes=((44, 60), (46, 62)), noc=True):
    """KITTI training layout: sparse 16-bit PNG ground truth in flow_occ (and a subset in flow_noc)."""
    truths = {}
    tr = os.path.join(root, "training")
    image_dir = "image_2" if year == "2015" else "colored_0"
    for i, (h, w) in enumerate(sizes):
        img1, img2, flow, occ = make_pair(h, w, seed=500 + i, max_shift=6.0)
        name = f"{i:06d}"
        _save(os.path.join(tr, image_dir, f"{name}_10.png"), img1)
        _save(os.path.join(tr, image_dir, f"{name}_11.png"), img2)
        rng = np.random.default_rng(i)
        valid = rng.random((h, w)) < 0.6  # sparse, like LiDAR ground truth
        os.makedirs(os.path.join(tr, "flow_occ"), exist_ok=True)
        write_flow(os.path.join(tr, "flow_occ", f"{name}_10.png"), flow, valid=valid)
        regions = {}
        if noc:
            os.makedirs(os.path.join(tr, "flow_noc"), exist_ok=True)
            write_flow(os.path.join(tr, "flow_noc", f"{name}_10.png"), flow, valid=valid & ~occ)
            regions = {"noc": valid & ~occ}
        truths[name] = Truth(img1, img2, flow, valid, regions)
    return truths


def write_chairs(root, n=3, size=(48, 64), labels=(1, 2, 2)):
    """FlyingChairs layout: data/NNNNN_img1.ppm, _img2.ppm, _flow.flo and the train/val list."""
    truths = {}
    h, w = size
    for i in range(1, n + 1):
        img1, img2, flow, _ = make_pair(h, w, seed=700 + i)
        name = f"{i:05d}"
        _save(os.path.join(root, "data", f"{name}_img1.ppm"), img1)
        _save(os.path.join(root, "data", f"{name}_img2.ppm"), img2)
        write_flow(os.path.join(root, "data", f"{name}_flow.flo"), flow)
        truths[name] = Truth(img1, img2, flow, np.ones((h, w), bool))
    if labels is not None:
        with open(os.path.join(root, "FlyingChairs_train_val.txt"), "w") as f:
            f.write("\n".join(map(str, labels)) + "\n")
    return truths


def write_middlebury(root, sequences=("Dimetrodon", "Venus"), size=(42, 58)):
    """Middlebury other-data / other-gt-flow layout; a band of unknown flow (1e10) per sequence."""
    truths = {}
    h, w = size
    for s, seq in enumerate(sequences):
        img1, img2, flow, _ = make_pair(h, w, seed=900 + s)
        valid = np.ones((h, w), bool)
        valid[:, :3 + s] = False  # unknown flow on the left edge, written as 1e10
        _save(os.path.join(root, "other-data", seq, "frame10.png"), img1)
        _save(os.path.join(root, "other-data", seq, "frame11.png"), img2)
        os.makedirs(os.path.join(root, "other-gt-flow", seq), exist_ok=True)
        write_flow(os.path.join(root, "other-gt-flow", seq, "flow10.flo"), flow, valid=valid)
        truths[seq] = Truth(img1, img2, flow, valid)
    return truths


def write_motorcycle(root, scale: int = 4) -> Optional[Truth]:
    """scikit-image's Middlebury motorcycle stereo pair (real photographs, real disparity) as a
    Middlebury-layout sequence "Motorcycle": left -> right flow is (-disparity, 0); pixels without
    a finite disparity are unknown. Downscaled by ``scale`` (disparity too) to keep tests fast."""
    from skimage import data

    left, right, disp = data.stereo_motorcycle()
    h, w = left.shape[0] // scale, left.shape[1] // scale
    small = lambda im: np.asarray(Image.fromarray(im).resize((w, h), Image.BILINEAR))
    d = disp[scale // 2::scale, scale // 2::scale][:h, :w] / scale  # nearest sample, in small pixels
    valid = np.isfinite(d) & (d > 0)
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = np.where(valid, -d, 0)
    img1, img2 = small(left), small(right)
    _save(os.path.join(root, "other-data", "Motorcycle", "frame10.png"), img1)
    _save(os.path.join(root, "other-data", "Motorcycle", "frame11.png"), img2)
    os.makedirs(os.path.join(root, "other-gt-flow", "Motorcycle"), exist_ok=True)
    write_flow(os.path.join(root, "other-gt-flow", "Motorcycle", "flow10.flo"), flow, valid=valid)
    return Truth(img1, img2, flow, valid)


def write_all(root) -> Dict[str, Dict[str, Truth]]:
    """One small dataset per layout under ``root`` (keys: sintel, kitti15, kitti12, chairs,
    middlebury; FlyingChairs with a split file: pairs 2 and 3 are the validation split)."""
    return {
        "sintel": write_sintel(os.path.join(root, "sintel")),
        "kitti15": write_kitti(os.path.join(root, "kitti15"), "2015"),
        "kitti12": write_kitti(os.path.join(root, "kitti12"), "2012", sizes=((40, 72), (41, 70), (43, 66))),
        "chairs": write_chairs(os.path.join(root, "chairs")),
        "middlebury": write_middlebury(os.path.join(root, "middlebury")),
    }


class Oracle:
    """A flow 'model' that looks the pair up by its first frame and returns the true flow, plus
    ``error(truth) -> (H, W, 2)`` if given (to test the metrics with a known error)."""

    def __init__(self, truths: Dict[str, Truth], error=None):
        # the Sintel final pass holds brightened frames: look those up too
        self.by_frame = {(im.shape, im.tobytes()): t for t in truths.values() for im in (t.img1, _brighten(t.img1))}
        self.error = error
        self.calls = 0

    def __call__(self, img1, img2):
        self.calls += 1
        t = self.by_frame[(img1.shape, np.asarray(img1).tobytes())]
        return t.flow + (self.error(t) if self.error is not None else 0)
