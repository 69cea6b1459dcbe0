"""``fastflow extract`` / ``fastflow.extract``: flow for whole video datasets, resumable and safe.

Each input (a video file or a folder of frames) gets ``OUT/<name>/`` holding one file per pair of
frames ``(i, i + step)``, named by the pair's first frame, in one of four formats:

- ``flo``: ``<frame>.flo`` (Middlebury), ``kitti``: ``<frame>.png`` (KITTI 16-bit PNG), where
  ``<frame>`` is the first frame's file name without extension for folders and its 1-based number
  ``%05d`` for videos (denseflow's and mmaction2's numbering);
- ``denseflow``: mmaction2's rawframes layout as denseflow writes it: ``flow_x_00001.jpg`` and
  ``flow_y_00001.jpg`` (u and v mapped linearly from ``[-bound, bound]`` to 0..255, rounded,
  clipped; JPEG quality 95), and with ``rgb`` also ``img_00001.jpg`` for every frame;
- ``npy``: one ``flow.npy``, float16 ``(pairs, H, W, 2)``.

Safety (docs/design.md section 12): one run per output folder (``lock``); every file written under
a temporary name and renamed (``files``); an input finished only when its completion record exists,
written last after ``os.sync`` and tied to the input's content (``record``); only files a run
itself wrote (its journal, its record) are ever removed, and an input that would overwrite someone
else's file fails naming it;
a video whose decoded frame count differs from its container's fails instead of being renumbered
(``video``); worker processes die with the run and a killed worker's input is retried once
(``pool``, ``worker``); SIGINT / SIGTERM stop everything and say how to resume (``api``).

Modules: ``options`` (what the files depend on), ``jobs`` (inputs and names), ``messages`` (the
typed messages between the pipeline's threads and processes), ``reader`` / ``video`` -> ``engine``
-> ``writer`` (the pipeline), ``pool`` / ``worker`` (local processes), ``rayrun`` (Ray),
``progress`` (tqdm), ``api`` (``extract``). No heavy import (torch, ray, imageio) at import time.
"""
from .api import ExtractInterrupted, extract, format_summary
from .files import quantize_flow
from .jobs import RECORD_DIR, Job, expand_inputs
from .lock import OutputInUseError
from .options import FORMATS, Options, resize_frame

__all__ = ["FORMATS", "RECORD_DIR", "ExtractInterrupted", "Job", "Options", "OutputInUseError", "expand_inputs",
           "extract", "format_summary", "quantize_flow", "resize_frame"]
