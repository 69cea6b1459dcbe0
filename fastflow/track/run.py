"""``fastflow.track.track_video``: one call from a video (or frame folder) to track files and an
overlay, the function behind ``fastflow track``."""
from __future__ import annotations

import os
import time
from typing import Optional

from .propagate import FB_ALPHA, FB_BETA

__all__ = ["track_video", "resolve_flow"]


def resolve_flow(flow):
    """``"dis"`` (or ``"dis:fast"`` etc.): OpenCV DIS; a FlowNet2S model or a callable: as given."""
    if isinstance(flow, str):
        name, _, preset = flow.partition(":")
        if name != "dis":
            raise ValueError(f"unknown flow source {flow!r}: give a FlowNet2S model, a callable, or 'dis'")
        from .flows import dis_flow

        return dis_flow(preset or "medium")
    return flow


def track_video(source, flow, *, detections=None, points=None, boxes=None, masks=None, mot: Optional[str] = None,
                json_path: Optional[str] = None, overlay: Optional[str] = None, overlay_scale: int = 1,
                batch: int = 4, alpha: float = FB_ALPHA, beta: float = FB_BETA, check: bool = True,
                patience: int = 12, iou_threshold: float = 0.3, oks_threshold: float = 0.3, sigmas=None,
                min_score: float = 0.0, fps: Optional[float] = None, label: Optional[str] = None,
                max_colour_diff: Optional[float] = None, on_frame=None) -> dict:
    """Track through ``source`` (a video file, a frame folder, or a sequence of ``(H, W, 3)`` frames)
    along ``flow`` (a FlowNet2S model, a callable ``(img1, img2) -> (H, W, 2)``, or ``"dis"``).

    Two modes:

    - ``detections`` given (a COCO JSON or MOTChallenge text path, or a per-frame list as
      :func:`fastflow.track.track_detections` takes): tracking by detection; ``mot`` writes
      MOTChallenge text, ``json_path`` COCO/PoseTrack-style JSON with track ids.
    - else ``points`` ``(N, 2)``, ``boxes`` ``(K, 4)`` and/or ``masks`` ``(M, H, W)`` on the first frame
      are carried through the video (:func:`fastflow.track.propagate`); ``json_path`` writes them per
      frame (``mot`` the boxes, one id per box, while not lost).

    ``max_colour_diff``: the optional colour check beside the forward-backward check
    (:func:`fastflow.track.fb_check`; off by default). ``overlay``: a folder for PNG frames or a
    ``.mp4`` path. ``on_frame(k)`` is called after each
    frame (progress). Returns a summary: ``frames``, ``mode``, ``ids`` (tracks started),
    ``points_lost``/``boxes_lost`` (propagation), ``seconds`` and ``frames_per_s`` (end to end)."""
    from ..images import open_frames
    from .associate import track_detections
    from .formats import read_detections, write_mot, write_points_json, write_posetrack
    from .overlay import OverlayWriter
    from .propagate import propagate

    if detections is None and points is None and boxes is None and masks is None:
        raise ValueError("nothing to track: give detections, or points, boxes or masks on the first frame")
    if detections is not None and (points is not None or boxes is not None or masks is not None):
        raise ValueError("give detections (tracking by detection) or points/boxes/masks (propagation), not both")
    flow = resolve_flow(flow)
    src = None
    names = None
    if isinstance(source, (str, os.PathLike)):
        src = open_frames(source)
        frames, name, names = src, os.fspath(source), src.names
        n_frames = src.count if src.paths is not None else None
        fps = fps or src.fps
    else:
        frames, name = source, "frames"
        n_frames = len(source) if hasattr(source, "__len__") else None
    if isinstance(detections, (str, os.PathLike)):
        detections = read_detections(os.fspath(detections), n_frames, names, min_score)
    # A results list or det.txt ends at its last detection: later frames of the video have none.
    pad = not getattr(detections, "exact_length", True)
    writer = OverlayWriter(overlay, fps=fps or 25.0, scale=overlay_scale, label=label) if overlay else None
    results = []
    start = time.perf_counter()
    summary = {"source": name, "mode": "detections" if detections is not None else "propagate"}
    try:
        if detections is not None:
            stream = track_detections(frames, flow, detections, batch=batch, keep_frames=writer is not None, name=name, pad=pad,
                                      alpha=alpha, beta=beta, patience=patience, iou_threshold=iou_threshold,
                                      oks_threshold=oks_threshold, sigmas=sigmas, max_colour_diff=max_colour_diff)
            for r in stream:
                results.append(r[:2])
                if writer is not None:
                    writer.add(r[2], names[r[0]] if names else None, tracks=r[1])
                if on_frame:
                    on_frame(r[0])
            summary["ids"] = len({t.id for _, tr in results for t in tr})
            summary["detected"] = sum(t.detected for _, tr in results for t in tr)
            summary["filled"] = sum(not t.detected for _, tr in results for t in tr)
            if mot:
                write_mot(mot, results)
            if json_path:
                write_posetrack(json_path, results, names)
        else:
            stream = propagate(frames, flow, points=points, boxes=boxes, masks=masks, batch=batch, alpha=alpha,
                               beta=beta, check=check, keep_frames=writer is not None, name=name,
                               max_colour_diff=max_colour_diff)
            for r in stream:
                if writer is not None:
                    writer.add(r.frame, names[r.index] if names else None, points=r.points, visible=r.visible,
                               boxes=r.boxes, box_lost=r.box_lost, masks=r.masks)
                r.frame = None
                r.masks = None  # masks are drawn, not kept: a video's worth would not fit
                results.append(r)
                if on_frame:
                    on_frame(r.index)
            last = results[-1]
            summary["points_lost"] = int((~last.visible).sum())
            summary["boxes_lost"] = int(last.box_lost.sum())
            if json_path:
                write_points_json(json_path, results, names)
            if mot:
                from .associate import Track

                write_mot(mot, [(r.index, [Track(i + 1, b, 1.0, None, False) for i, (b, lost) in
                                           enumerate(zip(r.boxes, r.box_lost)) if not lost]) for r in results])
    finally:
        if writer is not None:
            writer.close()
        if src is not None:
            src.close()
    summary["frames"] = len(results)
    summary["seconds"] = time.perf_counter() - start
    summary["frames_per_s"] = len(results) / summary["seconds"] if summary["seconds"] > 0 else float("inf")
    summary["results"] = results
    return summary
