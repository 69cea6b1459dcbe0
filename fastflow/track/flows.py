"""Flow sources for tracking and the streaming of a video's flow.

A flow source is a FlowNet2-S model (any device and precision) or any callable ``(img1, img2) ->
(H, W, 2)`` flow in pixels from img1 to img2; :func:`dis_flow` gives OpenCV's DIS as one.
:func:`flow_stream` walks a video once, computing forward and backward flow in batches.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, List, Sequence

import numpy as np

__all__ = ["FlowSource", "flow_source", "dis_flow", "flow_stream"]


# ------------------------------------------------------------------------------------- flow sources
class FlowSource:
    """Flow for batches of frame pairs: a FlowNet2-S module (any device and precision: runs
    :func:`fastflow.estimate_flow` on the whole batch) or any callable ``(img1, img2) -> (H, W, 2)``
    flow in pixels from img1 to img2 (numpy array or tensor). ``pairs(firsts, seconds)`` gives a list
    of ``(H, W, 2)`` float32 numpy arrays."""

    def __init__(self, flow):
        self.model = None
        self.fn = None
        if isinstance(flow, FlowSource):
            self.model, self.fn, self.name = flow.model, flow.fn, flow.name
            return
        if hasattr(flow, "parameters") and hasattr(flow, "forward"):  # a torch module
            self.model = flow
            p = next(flow.parameters())
            self.name = f"FlowNet2-S ({p.device}, {p.dtype})"
        elif callable(flow):
            self.fn = flow
            self.name = getattr(flow, "__name__", type(flow).__name__)
        else:
            raise TypeError(f"flow must be a FlowNet2S model or a callable (img1, img2) -> (H, W, 2) flow, "
                            f"got {type(flow).__name__}")

    def pairs(self, firsts: Sequence[np.ndarray], seconds: Sequence[np.ndarray]) -> List[np.ndarray]:
        if not firsts:
            return []
        h, w = firsts[0].shape[:2]
        if self.model is not None:
            from ..api import estimate_flow

            out = estimate_flow(self.model, np.stack(firsts), np.stack(seconds))
            flows = list(np.asarray(out, dtype=np.float32))
        else:
            flows = []
            for a, b in zip(firsts, seconds):
                f = self.fn(a, b)
                if hasattr(f, "detach"):
                    f = f.detach().cpu().numpy()
                flows.append(np.asarray(f, dtype=np.float32))
        for f in flows:
            if f.shape != (h, w, 2):
                raise ValueError(f"flow source {self.name} gave flow of shape {f.shape} for {w}x{h} frames; "
                                 f"expected ({h}, {w}, 2)")
        return flows


def flow_source(flow) -> FlowSource:
    """``flow`` as a :class:`FlowSource` (a FlowNet2S module, a callable, or a FlowSource)."""
    return flow if isinstance(flow, FlowSource) else FlowSource(flow)


def dis_flow(preset: str = "medium") -> Callable:
    """OpenCV's DIS optical flow (Kroeger et al., ECCV 2016) as a flow callable, a classical baseline
    to compare with FlowNet2-S; needs ``opencv-python-headless``. ``preset``: ultrafast, fast, medium."""
    try:
        import cv2
    except ImportError:
        raise ImportError("DIS flow needs OpenCV: pip install opencv-python-headless") from None
    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    if preset not in presets:
        raise ValueError(f"unknown DIS preset {preset!r} (use {', '.join(presets)})")
    dis = cv2.DISOpticalFlow_create(presets[preset])

    def grey(img):
        img = np.asarray(img)
        if img.dtype != np.uint8:
            img = (img / 257).astype(np.uint8) if img.dtype == np.uint16 else np.clip(img * 255, 0, 255).astype(np.uint8)
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img

    def dis_flow(img1, img2):
        return dis.calc(grey(img1), grey(img2), None)

    dis_flow.__name__ = f"dis_flow[{preset}]"
    return dis_flow


def flow_stream(frames: Iterable, flow, *, batch: int = 4, backward: bool = True,
                name: str = "video") -> Iterator:
    """Stream a video's flow: yields ``(k, frame_k, fwd, bwd)`` for k = 0, 1, ...: ``fwd`` the flow
    from frame k-1 to frame k (on frame k-1's pixels), ``bwd`` from frame k back to k-1 (on frame k's
    pixels; None unless ``backward``); both None for k = 0. ``batch`` pairs go through the flow
    source together (forward and backward pairs in one batch), so at most ``batch + 1`` frames are
    held. Frames of changing size raise ValueError naming the frame; no frames at all raise
    ValueError ("empty video")."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    src = flow_source(flow)
    shape = None
    pending = []  # frames whose pair with the previous frame is not computed yet
    prev = None
    k = -1

    def flush():
        firsts = [prev_f for prev_f, _ in pending]
        seconds = [f for _, f in pending]
        if backward:
            flows = src.pairs(firsts + seconds, seconds + firsts)
            fwds, bwds = flows[: len(pending)], flows[len(pending):]
        else:
            fwds, bwds = src.pairs(firsts, seconds), [None] * len(pending)
        return fwds, bwds

    start = 0
    for k, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.ndim not in (2, 3) or frame.shape[0] == 0 or frame.shape[1] == 0:
            raise ValueError(f"{name}: frame {k} has shape {frame.shape}; expected an (H, W, 3) image")
        if shape is None:
            shape = frame.shape[:2]
            prev = frame
            yield 0, frame, None, None
            start = 1
            continue
        if frame.shape[:2] != shape:
            raise ValueError(f"{name}: frame {k} is {frame.shape[1]}x{frame.shape[0]}, but frame 0 is "
                             f"{shape[1]}x{shape[0]}; all frames must have one size")
        pending.append((prev, frame))
        prev = frame
        if len(pending) >= batch:
            fwds, bwds = flush()
            for j, (_, f) in enumerate(pending):
                yield start + j, f, fwds[j], bwds[j]
            start += len(pending)
            pending = []
    if shape is None:
        raise ValueError(f"{name}: empty video (no frames)")
    if pending:
        fwds, bwds = flush()
        for j, (_, f) in enumerate(pending):
            yield start + j, f, fwds[j], bwds[j]
