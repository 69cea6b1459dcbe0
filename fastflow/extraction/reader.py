"""The reader thread: decodes and resizes the frames of each input ahead of the model, in order,
as typed messages (``messages.InputStart`` / ``Frame`` / ``InputEnd`` / ``InputError``)."""
from __future__ import annotations

import os
import queue
import threading
from typing import Optional, Sequence

from ..util import first_line
from .jobs import Job
from .messages import Frame, InputEnd, InputError, InputStart
from .options import Options, plural, resize_frame, target_size
from .video import VIDEO_HINT, check_count, open_video

__all__ = ["Reader", "first_line", "open_input"]


class _Input:
    """An input's frames: ``names`` (folders), ``count``, and for videos the count check."""

    def __init__(self, frames, count, names=None, stated=None, tol=0):
        self.frames, self.count, self.names = frames, count, names
        self.stated, self.tol = stated, tol

    def close(self) -> None:
        close = getattr(self.frames, "close", None)
        if close is not None:
            close()


def open_input(path: str) -> _Input:
    """A folder of frames or a video (ValueError / ImportError naming the input and the fix)."""
    from ..images import IMAGE_EXTS, list_frames, read_image

    if not os.path.exists(path):
        raise ValueError(f"video or frame folder not found: {path}")
    if os.path.isdir(path):
        paths = list_frames(path)
        if not paths:
            others = sorted(f for f in os.listdir(path) if not f.startswith("."))[:3]
            seen = f" (it holds {', '.join(others)}{', ...' if len(others) == 3 else ''})" if others else ""
            raise ValueError(f"{path} holds no image files ({', '.join(IMAGE_EXTS)}){seen}; {VIDEO_HINT}: pass "
                             f"video files themselves (e.g. {os.path.join(path, '*.mp4')}) or @list.txt naming them")
        names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
        return _Input((read_image(p) for p in paths), len(paths), names)
    frames, stated, tol = open_video(path)
    return _Input(frames, stated, None, stated, tol)


class Reader(threading.Thread):
    """Decodes and resizes the frames of each input ahead of the model, in order."""

    def __init__(self, jobs: Sequence[Job], opts: Options, depth: int):
        super().__init__(daemon=True, name="fastflow-extract-reader")
        self.jobs, self.opts = jobs, opts
        self.q: "queue.Queue" = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.skip: Optional[Job] = None  # a job the model thread gave up on: stop reading it

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            self._run()
        finally:
            self._put(None)  # the model thread stops waiting, whatever happened here

    def _run(self) -> None:
        for job in self.jobs:
            if self.stop.is_set():
                return
            try:
                src = open_input(job.source)
            except Exception as e:  # noqa: BLE001 - missing, unreadable, no decoder: this input fails
                if not self._put(InputError(job, first_line(e))):
                    return
                continue
            try:
                if not self._read(job, src):
                    return
            except Exception as e:  # noqa: BLE001 - any decoder failure is this input's failure
                if not self._put(InputError(job, first_line(e))):
                    return
            finally:
                try:
                    src.close()
                except Exception:  # noqa: BLE001
                    pass

    def _read(self, job: Job, src: _Input) -> bool:
        names = src.names
        if names is not None and self.opts.format in ("flo", "kitti") and len(set(names)) != len(names):
            from collections import Counter

            dup = sorted(n for n, c in Counter(names).items() if c > 1)[0]
            return self._put(InputError(job, f"two frames are named {dup!r} (different extensions); "
                                             "the flow files would collide"))
        if not self._put(InputStart(job, src.count)):
            return False
        self._n = 0  # frames decoded so far (for the message when a video fails midway)
        try:
            return self._frames(job, src, names)
        except ValueError as e:
            if names is not None or src.stated is None:
                raise
            raise ValueError(f"{first_line(e)} (after {self._n} decoded frames; the container states "
                             f"{src.stated})") from None

    def _frames(self, job: Job, src: _Input, names) -> bool:
        shape = size = None
        n = self._n = 0
        for frame in src.frames:
            if self.skip == job:
                return True
            if frame.ndim != 3 or frame.shape[2] != 3:
                return self._put(InputError(job, f"frame {n + 1} has shape {frame.shape}, not (H, W, 3)"))
            if shape is None:
                shape = frame.shape
                size = target_size(shape[0], shape[1], self.opts)
            elif frame.shape != shape:
                where = f" ({names[n]})" if names else ""
                return self._put(InputError(job, f"frame {n + 1}{where} is {frame.shape[1]}x{frame.shape[0]}, "
                                                 f"the first was {shape[1]}x{shape[0]}"))
            stem = names[n] if names else f"{n + 1:05d}"
            if not self._put(Frame(job, n, stem, resize_frame(frame, size))):
                return False
            n = self._n = n + 1
        if names is None:
            bad = check_count(job.source, n, src.stated, src.tol)
            if bad:
                return self._put(InputError(job, bad))
        if n < self.opts.step + 1:
            need = self.opts.step + 1
            return self._put(InputError(job, f"{plural(n, 'frame')}; need at least {need}"
                                             + (f" for step {self.opts.step}" if self.opts.step > 1 else "")))
        return self._put(InputEnd(job, n, size))
