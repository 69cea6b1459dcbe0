"""``fastflow validate``: end-point error (EPE) of FlowNet2-S on the standard optical-flow datasets,
and what each precision (fp32, TF32, fp16, bf16) costs in EPE.

Python::

    import fastflow
    res = fastflow.validate("FlowNet2-S_checkpoint.pth.tar", "sintel-clean", "/data/MPI-Sintel")
    res["results"]["tf32"]["epe"]                  # or the fp32 key on a CPU

    res = fastflow.validate(model, "kitti-2015", "/data/kitti15", compare_precisions=True)
    {p: (r["epe"], r["fl_all"], r["vs_fp32"]["epe"]) for p, r in res["results"].items()}

Metrics (all over the pixels that have ground truth, in pixels of the original frames):

- ``epe``: mean end-point error ``|flow - gt|`` over all valid pixels of all pairs (pixel-weighted);
  ``epe_image_mean``: the mean over pairs of each pair's mean EPE (the two differ only when pairs
  have different numbers of valid pixels, e.g. KITTI).
- ``fl_all``: KITTI's outlier rate in percent: pixels with EPE > 3 px and EPE > 5% of ``|gt|``.
- ``regions``: the same on ``matched`` / ``unmatched`` pixels (Sintel: visible in both frames /
  in one frame only, from the occlusion masks) and ``noc`` (KITTI's non-occluded ground truth).
- ``vs_fp32`` (``compare_precisions``): EPE between this precision's flow and the fp32 flow of the
  same frames, over all pixels, and its maximum.

Frames of any size go through :func:`fastflow.estimate_flow`: both frames are resized bilinearly to
the nearest multiples of 64 (``fastflow.api.network_size``; antialiased when shrinking), the network
runs there, and the flow is resized back to the full frame with u scaled by ``W / W64`` and v by
``H / H64``. Every pixel of the full frame is evaluated. ``crop=True`` (``--crop``) evaluates as
flownet2-pytorch does instead: frames and ground truth centre-cropped to the largest multiples of 64.

This package imports no torch until a model runs (``fastflow validate --help`` stays quick).
"""
from __future__ import annotations

from ..precision import PRECISIONS
from ..precision import supported as supported_precisions
from .core import validate
from .metrics import end_point_error, outlier_mask
from .report import format_report, json_safe

__all__ = ["validate", "supported_precisions", "end_point_error", "outlier_mask", "format_report", "json_safe", "PRECISIONS"]
