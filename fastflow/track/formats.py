"""Track file formats: detections in (COCO keypoint/box JSON, MOTChallenge text), tracks out
(MOTChallenge text, COCO/PoseTrack-style JSON with track ids, per-frame JSON of propagated points).

Frame numbering: Python results count frames from 0; MOTChallenge files count from 1 (as the format
does); COCO files name frames by ``image_id`` (a bare results list: ``image_id`` is the frame index
from 0) or by their ``images`` entries (matched to a frame folder's file names, else taken in natural
order of ``file_name``).
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

__all__ = ["Detections", "read_detections", "read_coco_detections", "read_mot_detections", "write_mot", "write_posetrack",
           "write_points_json"]


def _fail(path, msg):
    raise ValueError(f"{path}: {msg}")


def _det_from_coco(path, i, a) -> dict:
    if not isinstance(a, dict):
        _fail(path, f"detection {i} is {type(a).__name__}, not an object")
    kp = None
    if a.get("keypoints") is not None:
        flat = np.asarray(a["keypoints"], dtype=np.float64)
        if flat.ndim != 1 or flat.size % 3 or flat.size == 0:
            _fail(path, f"detection {i}: keypoints must be a flat list x1, y1, v1, x2, ... (length a multiple of 3), "
                        f"got {flat.size} numbers")
        kp = flat.reshape(-1, 3)
        if not np.isfinite(kp).all():
            _fail(path, f"detection {i}: keypoints are not finite")
    if a.get("bbox") is not None:
        box = np.asarray(a["bbox"], dtype=np.float64)
        if box.shape != (4,):
            _fail(path, f"detection {i}: bbox must be [x, y, width, height], got {a['bbox']!r}")
    elif kp is not None and (kp[:, 2] > 0).any():
        lab = kp[kp[:, 2] > 0, :2]
        lo, hi = lab.min(0), lab.max(0)
        box = np.r_[lo, np.maximum(hi - lo, 1.0)]
    else:
        _fail(path, f"detection {i} has neither a bbox nor labelled keypoints")
    score = float(a.get("score", 1.0))
    return {"box": box, "score": score, "keypoints": kp}


def read_coco_detections(path: str, n_frames: Optional[int] = None, frame_names: Optional[Sequence[str]] = None,
                         min_score: float = 0.0) -> List[List[dict]]:
    """Per-frame detections from a COCO JSON file: a results list (``[{"image_id", "bbox", "score",
    "keypoints"?}]``, ``image_id`` = frame index from 0) or a dataset-style object with ``images``
    and ``annotations``. ``keypoints`` (flat x, y, v) make pose detections; ``bbox`` may be left out
    when keypoints are given (their extent is used). Detections below ``min_score`` are dropped.
    Returns :class:`Detections`: ``n_frames`` lists (else one per listed image, else as many as the
    last frame with detections) of ``{"box", "score", "keypoints"}``. A file that does not fit the video (an image id past the last frame, a file name
    not among ``frame_names``) raises ValueError naming it."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"detections file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        _fail(path, f"not a JSON file ({e})")
    if isinstance(data, dict):
        if "annotations" not in data or "images" not in data:
            _fail(path, "a COCO object needs 'images' and 'annotations' (or give a results list)")
        from ..images import natural_key

        images = data["images"]
        if frame_names is not None:
            index = {n: k for k, n in enumerate(frame_names)}
            frame_of = {}
            for im in images:
                stem = os.path.splitext(os.path.basename(str(im.get("file_name", ""))))[0]
                if stem not in index:
                    _fail(path, f"image {im.get('file_name')!r} (id {im.get('id')}) is not a frame of the video "
                                f"(frames are named {frame_names[0]!r} ... {frame_names[-1]!r})")
                frame_of[im.get("id")] = index[stem]
        else:
            order = sorted(images, key=lambda im: natural_key(str(im.get("file_name", im.get("id")))))
            frame_of = {im.get("id"): k for k, im in enumerate(order)}
        anns = [(frame_of.get(a.get("image_id")), i, a) for i, a in enumerate(data["annotations"])]
        for k, i, a in anns:
            if k is None:
                _fail(path, f"annotation {i} has image_id {a.get('image_id')!r}, which is not in 'images'")
        if n_frames is None and frame_names is None:
            items = [(k, _det_from_coco(path, i, a)) for k, i, a in anns]
            return _per_frame(path, items, len(images), min_score, exact=True)
    elif isinstance(data, list):
        anns = []
        for i, a in enumerate(data):
            k = a.get("image_id") if isinstance(a, dict) else None
            if not isinstance(k, int) or isinstance(k, bool) or k < 0:
                _fail(path, f"detection {i}: image_id must be the frame index (an integer >= 0), got {k!r}")
            anns.append((k, i, a))
    else:
        _fail(path, f"expected a COCO results list or an object with images and annotations, got {type(data).__name__}")
    return _per_frame(path, [(k, _det_from_coco(path, i, a)) for k, i, a in anns], n_frames, min_score)


class Detections(list):
    """Per-frame detections (a list of lists) that knows whether its length is the video's
    (``exact_length``: the frame count was given, or the file lists its images) or only reaches the
    last frame with a detection (a results list, a det.txt: later frames simply have none)."""

    exact_length = True


def _per_frame(path, items, n_frames, min_score, exact=None):
    last = max((k for k, _ in items), default=-1)
    if n_frames is not None and last >= n_frames:
        _fail(path, f"has detections for frame {last} (from 0) but the video has {n_frames} frames: "
                    "the detections do not belong to this video")
    out = Detections([] for _ in range(n_frames if n_frames is not None else last + 1))
    out.exact_length = n_frames is not None if exact is None else exact
    for k, d in items:
        if d["score"] >= min_score:
            out[k].append(d)
    return out


def read_mot_detections(path: str, n_frames: Optional[int] = None, min_score: float = 0.0) -> List[List[dict]]:
    """Per-frame detections from a MOTChallenge ``det.txt`` (``frame, id, x, y, w, h, score, ...``,
    frames from 1)."""
    items = []
    try:
        with open(path) as f:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    v = [float(x) for x in line.replace(" ", "").split(",")]
                except ValueError:
                    _fail(path, f"line {ln} is not comma-separated numbers: {line.strip()[:60]!r}")
                if len(v) < 6 or v[0] < 1 or v[0] != int(v[0]):
                    _fail(path, f"line {ln}: expected frame (from 1), id, x, y, w, h[, score], got {line.strip()[:60]!r}")
                items.append((int(v[0]) - 1, {"box": np.array(v[2:6]), "score": v[6] if len(v) > 6 else 1.0,
                                              "keypoints": None}))
    except FileNotFoundError:
        raise FileNotFoundError(f"detections file not found: {path}") from None
    return _per_frame(path, items, n_frames, min_score)


def read_detections(path: str, n_frames: Optional[int] = None, frame_names=None, min_score: float = 0.0):
    """COCO JSON (``.json``) or MOTChallenge text (anything else)."""
    if str(path).lower().endswith(".json"):
        return read_coco_detections(path, n_frames, frame_names, min_score)
    return read_mot_detections(path, n_frames, min_score)


def write_mot(path: str, results: Iterable) -> int:
    """MOTChallenge text: one line ``frame, id, x, y, w, h, score, -1, -1, -1`` per track and frame
    (frames from 1); ``results``: ``(k, tracks)`` pairs as :func:`fastflow.track.track_detections`
    yields. Returns the number of lines."""
    n = 0
    with open(path, "w") as f:
        for r in results:
            k, tracks = r[0], r[1]
            for t in tracks:
                x, y, w, h = (float(v) for v in t.box)
                f.write(f"{k + 1},{t.id},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{t.score:.3f},-1,-1,-1\n")
                n += 1
    return n


def write_posetrack(path: str, results: Iterable, frame_names: Optional[Sequence[str]] = None) -> int:
    """COCO/PoseTrack-style JSON: ``images`` (``id`` = frame index, ``file_name``, ``frame_id``) and
    ``annotations`` with ``track_id``, ``bbox``, ``score``, ``detected`` (False: a frame filled along the
    flow) and, for poses, ``keypoints`` (flat x, y, v; v = 0 for keypoints lost by the forward-backward
    check). Returns the number of annotations."""
    images, anns = [], []
    for r in results:
        k, tracks = r[0], r[1]
        name = frame_names[k] if frame_names is not None else f"{k:06d}"
        images.append({"id": k, "file_name": name, "frame_id": k})
        for t in tracks:
            a = {"id": len(anns) + 1, "image_id": k, "track_id": int(t.id), "category_id": 1,
                 "bbox": [round(float(v), 2) for v in t.box], "score": round(float(t.score), 4),
                 "detected": bool(t.detected)}
            if t.keypoints is not None:
                kp = np.asarray(t.keypoints, np.float64).copy()
                kp[:, 2] = np.where(kp[:, 2] > 0, kp[:, 2], 0)
                a["keypoints"] = [round(float(v), 2) for v in kp.ravel()]
                a["num_keypoints"] = int((kp[:, 2] > 0).sum())
            anns.append(a)
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}, f)
    return len(anns)


def write_points_json(path: str, frames: Iterable, frame_names: Optional[Sequence[str]] = None) -> int:
    """Per-frame JSON of :func:`fastflow.track.propagate` results: ``{"frames": [{"frame", "file_name",
    "points": [[x, y], ...], "visible": [...], "boxes": [[x, y, w, h], ...], "box_lost": [...]}]}``."""
    out: List[Dict] = []
    for r in frames:
        out.append({"frame": r.index, "file_name": frame_names[r.index] if frame_names is not None else None,
                    "points": np.round(r.points, 2).tolist(), "visible": r.visible.tolist(),
                    "boxes": np.round(r.boxes, 2).tolist(), "box_lost": r.box_lost.tolist()})
    with open(path, "w") as f:
        json.dump({"frames": out}, f)
    return len(out)
