"""Tracking along the flow: points, boxes, masks and poses carried through a video, tracks by detection.

- :func:`track_video`: one call from a video or frame folder to MOTChallenge / PoseTrack-style files and
  an overlay (what ``fastflow track`` runs).
- :func:`propagate`: points, boxes and masks from the first frame, each point forward-backward
  checked (Sundaram, Brox, Keutzer, ECCV 2010: alpha = 0.01, beta = 0.5 px^2; ``FB_ALPHA``,
  ``FB_BETA``), boxes by the median flow of their points.
- :func:`track_detections` / :class:`Tracker`: FlowTrack-style (Xiao, Wu, Wei, ECCV 2018) ids for
  per-frame detections: IoU or OKS against flow-propagated tracks, Hungarian assignment, patience.
- :mod:`.formats` (COCO / MOTChallenge in, MOTChallenge / PoseTrack-style out), :mod:`.overlay`,
  :mod:`.synthetic` (videos with known motion and exact flow), :mod:`.evaluate` (py-motmetrics).

The flow source is a parameter everywhere: a FlowNet2S model (any device and precision), a callable
``(img1, img2) -> (H, W, 2)``, or :func:`dis_flow` (OpenCV DIS). ``track_points`` is
:func:`fastflow.track_points` (one step, no check).
"""
from ..tracking import track_points
from .associate import COCO_SIGMAS, Detection, Track, Tracker, assign, iou_matrix, oks_matrix, track_detections
from .flows import FlowSource, dis_flow, flow_source, flow_stream
from .propagate import (FB_ALPHA, FB_BETA, BoxState, PropagateFrame, box_grid, fb_check, propagate, propagate_box,
                        propagate_mask)
from .run import resolve_flow, track_video

__all__ = ["track_video", "propagate", "track_detections", "Tracker", "Track", "Detection", "fb_check",
           "propagate_box", "propagate_mask", "BoxState", "box_grid", "PropagateFrame", "FlowSource", "flow_source",
           "flow_stream", "dis_flow", "resolve_flow", "iou_matrix", "oks_matrix", "assign", "COCO_SIGMAS",
           "FB_ALPHA", "FB_BETA", "track_points"]
