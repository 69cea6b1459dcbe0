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

This module imports no torch until a model runs (``fastflow validate --help`` stays quick).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import types
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .datasets import DATASETS, DatasetError, FlowDataset, FlowSample, load_dataset

__all__ = ["validate", "supported_precisions", "end_point_error", "outlier_mask", "format_report", "PRECISIONS"]

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
RESIZE = ("fastflow.estimate_flow: frames resized bilinearly to the nearest multiples of 64 (antialiased when "
          "shrinking), flow resized back and scaled by W/W64, H/H64; every pixel of the full frame evaluated")
CROP = ("--crop (flownet2-pytorch's protocol): frames and ground truth centre-cropped to the largest multiples "
        "of 64, no resizing; only the cropped pixels evaluated")
#: KITTI's outlier definition (Fl): EPE above both thresholds.
FL_ABS_PX = 3.0
FL_REL = 0.05


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def end_point_error(flow, gt) -> np.ndarray:
    """Per-pixel end-point error ``sqrt((u - u_gt)^2 + (v - v_gt)^2)``: ``(H, W)`` float64."""
    flow, gt = np.asarray(flow, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if flow.shape != gt.shape or flow.ndim < 1 or flow.shape[-1] != 2:
        raise ValueError(f"flow and ground truth must both be (H, W, 2), got {flow.shape} and {gt.shape}")
    return np.sqrt(((flow - gt) ** 2).sum(-1))


def outlier_mask(epe: np.ndarray, gt) -> np.ndarray:
    """KITTI's Fl outliers: EPE > 3 px and EPE > 5% of the ground-truth magnitude."""
    mag = np.sqrt((np.asarray(gt, dtype=np.float64) ** 2).sum(-1))
    return (epe > FL_ABS_PX) & (epe > FL_REL * mag)


class _Region:
    """Running sums of one region's EPE over pairs."""

    __slots__ = ("pixels", "epe_sum", "outliers", "pairs", "image_mean_sum")

    def __init__(self):
        self.pixels = self.outliers = self.pairs = 0
        self.epe_sum = self.image_mean_sum = 0.0

    def add(self, epe: np.ndarray, out: np.ndarray, mask: np.ndarray) -> Optional[dict]:
        n = int(mask.sum())
        if n == 0:
            return None
        s, o = float(epe[mask].sum()), int(out[mask].sum())
        self.pixels += n
        self.epe_sum += s
        self.outliers += o
        self.pairs += 1
        self.image_mean_sum += s / n
        return {"epe": s / n, "fl": 100.0 * o / n, "pixels": n}

    def summary(self) -> Optional[dict]:
        if self.pixels == 0:
            return None
        return {"epe": self.epe_sum / self.pixels, "epe_image_mean": self.image_mean_sum / self.pairs,
                "fl": 100.0 * self.outliers / self.pixels, "pixels": self.pixels, "pairs": self.pairs}


class _Stats:
    """Everything one precision accumulates over the dataset."""

    def __init__(self):
        self.regions: Dict[str, _Region] = defaultdict(_Region)
        self.groups: Dict[str, Dict[str, _Region]] = defaultdict(lambda: defaultdict(_Region))
        self.samples: List[dict] = []
        self.times: List[float] = []
        self.vs_sum = 0.0
        self.vs_pixels = 0
        self.vs_max = 0.0
        self.nonfinite = 0

    def add(self, sample, flow: np.ndarray, seconds: float, fp32_flow: Optional[np.ndarray]) -> None:
        epe = end_point_error(flow, sample.flow)
        out = outlier_mask(epe, sample.flow)
        self.nonfinite += int((~np.isfinite(flow)).any(-1).sum())
        self.times.append(seconds)
        rec = {"name": sample.name}
        masks = {"all": sample.valid, **sample.regions}
        for region, mask in masks.items():
            r = self.regions[region].add(epe, out, mask)
            if sample.group:
                self.groups[sample.group][region].add(epe, out, mask)
            if r is not None:
                if region == "all":
                    rec.update(epe=r["epe"], fl_all=r["fl"], pixels=r["pixels"])
                else:
                    rec[region] = r["epe"]
        if fp32_flow is not None:
            d = end_point_error(flow, fp32_flow)
            self.vs_sum += float(d.sum())
            self.vs_pixels += d.size
            self.vs_max = float(np.max([self.vs_max, d.max()]))  # NaN stays NaN
            rec["vs_fp32"] = float(d.mean())
        self.samples.append(rec)

    def summary(self, with_vs: bool) -> dict:
        allr = self.regions["all"].summary() or {"epe": math.nan, "epe_image_mean": math.nan, "fl": math.nan,
                                                 "pixels": 0, "pairs": 0}
        res = {"epe": allr["epe"], "epe_image_mean": allr["epe_image_mean"], "fl_all": allr["fl"],
               "pixels": allr["pixels"], "nonfinite_pixels": self.nonfinite}
        res["regions"] = {k: r.summary() for k, r in self.regions.items() if k != "all" and r.summary()}
        if with_vs:
            res["vs_fp32"] = {"epe": self.vs_sum / max(1, self.vs_pixels), "max": self.vs_max}
        t = np.asarray(self.times) * 1e3
        res["time"] = {"ms_per_pair_median": float(np.median(t)), "ms_per_pair_mean": float(t.mean()),
                       "first_pair_ms": float(t[0]), "total_s": float(t.sum() / 1e3)}
        if self.groups:
            res["per_group"] = {}
            for g, regions in self.groups.items():
                a = regions["all"].summary()
                entry = {"pairs": a["pairs"] if a else 0, "epe": a["epe"] if a else math.nan,
                         "fl_all": a["fl"] if a else math.nan}
                for k, r in regions.items():
                    if k != "all" and r.summary():
                        entry[k] = r.summary()["epe"]
                res["per_group"][g] = entry
        res["per_sample"] = self.samples
        return res


# --------------------------------------------------------------------------------------------
# Models and precisions
# --------------------------------------------------------------------------------------------


def supported_precisions(device) -> List[str]:
    """The precisions fastflow runs on ``device``, fp32 first: ``fp32, bf16, fp16`` on a CPU (no
    TF32 there), ``fp32, tf32, fp16`` and ``bf16`` (where the GPU supports it) on CUDA."""
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        return ["fp32", "bf16", "fp16"]
    out = ["fp32", "tf32", "fp16"]
    with torch.cuda.device(device):
        if torch.cuda.is_bf16_supported():
            out.append("bf16")
    return out


def _resolve_precision(precision: str, device) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "tf32" and device.type == "cpu":
        return "fp32"  # TF32 is a GPU tensor-core format: on a CPU float32 runs in full fp32
    if precision not in supported_precisions(device):
        raise ValueError(f"precision {precision} is not supported on {device}")
    return precision


def _predictor(model, precision: str) -> Callable:
    """A function (img1, img2) -> (H, W, 2) numpy flow running ``model`` (float32) in ``precision``."""
    import copy

    from .api import estimate_flow
    from .bench import tf32_mode

    if precision == "fp16":
        model = copy.deepcopy(model).half()
    elif precision == "bf16":
        model = copy.deepcopy(model).bfloat16()
    tf32 = {"fp32": False, "tf32": True}.get(precision)

    def predict(img1, img2):
        with tf32_mode(tf32) if tf32 is not None else contextlib.nullcontext():
            return estimate_flow(model, img1, img2)

    return predict


def _as_flow(flow, shape, what: str) -> np.ndarray:
    if hasattr(flow, "detach"):
        flow = flow.detach().float().cpu().numpy()
    flow = np.asarray(flow, dtype=np.float32)
    if flow.shape != tuple(shape[:2]) + (2,):
        raise ValueError(f"{what} returned flow of shape {flow.shape}, expected {tuple(shape[:2]) + (2,)}")
    return flow


# --------------------------------------------------------------------------------------------
# The validation loop
# --------------------------------------------------------------------------------------------


def validate(model, dataset: Union[str, FlowDataset], root=None, precision: Optional[str] = None, *,
             compare_precisions: Union[bool, Sequence[str]] = False, limit: Optional[int] = None,
             split: Optional[str] = None, device=None, crop: bool = False, progress: bool = False) -> dict:
    """EPE (and Fl, matched/unmatched, per sequence, timing) of a model on a dataset.

    Args:
        model: a ``fastflow.FlowNet2S`` (or reference) module, a checkpoint path, or any callable
            ``(img1, img2) -> (H, W, 2)`` flow (then ``precision`` and ``compare_precisions`` do
            not apply).
        dataset: a name from ``fastflow.datasets.DATASETS`` (with ``root``) or a ``FlowDataset``.
        precision: ``fp32``, ``tf32``, ``fp16`` or ``bf16`` (default: tf32 on CUDA, fp32 on CPU,
            where tf32 means fp32).
        compare_precisions: True for every precision the device supports, or a list; fp32 always
            runs first and each precision also gets ``vs_fp32``.
        limit: the first ``limit`` pairs only. split: FlyingChairs ``val`` / ``train`` / ``all``.
        device: where a checkpoint is loaded (default cuda if available); a module stays where it is.
        crop: flownet2-pytorch's protocol: centre-crop frames and ground truth to the largest
            multiples of 64 and evaluate only there (no resizing). Default: full frames.
        progress: a progress line on stderr.

    Returns:
        A JSON-ready dict: ``dataset``, ``root``, ``pairs``, ``notes``, ``device``, ``sizes`` (frame
        sizes and the network sizes they ran at), ``precisions`` and ``results[precision]`` with
        ``epe``, ``epe_image_mean``, ``fl_all`` (%), ``regions``, ``vs_fp32``, ``time``,
        ``per_group`` (sequences), ``per_sample``.
    """
    if not isinstance(dataset, FlowDataset):
        if root is None:
            raise ValueError("give the dataset's root folder (root=...)")
        dataset = load_dataset(dataset, root, limit=limit, split=split)
    elif limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        dataset = FlowDataset(dataset.name, dataset.root, dataset.files[:limit], dataset.notes)

    predictors, device_name, model_desc = _setup(model, precision, compare_precisions, device)
    custom = device_name == "custom"
    with_vs = bool(compare_precisions)
    stats = {p: _Stats() for p in predictors}
    sizes: Dict[tuple, int] = defaultdict(int)
    bar = _progress_bar(len(dataset), progress)
    t_start = time.perf_counter()
    load_s = 0.0
    samples = _prefetch(dataset)
    try:
        for _ in range(len(dataset)):
            t0 = time.perf_counter()
            sample = next(samples)
            load_s += time.perf_counter() - t0
            sizes[sample.img1.shape[:2]] += 1
            if crop:
                sample = _centre_crop64(sample)
            fp32_flow = None
            for p, predict in predictors.items():
                t0 = time.perf_counter()
                flow = _as_flow(predict(sample.img1, sample.img2), sample.img1.shape, f"the model ({p})")
                dt = time.perf_counter() - t0
                if p == "fp32" and with_vs:
                    fp32_flow = flow
                stats[p].add(sample, flow, dt, fp32_flow if with_vs else None)
            bar.update(1)
    finally:
        samples.close()
        bar.close()
    return {
        "dataset": dataset.name,
        "root": os.path.abspath(dataset.root),
        "pairs": len(dataset),
        "notes": list(dataset.notes),
        "model": model_desc,
        "device": device_name,
        "sizes": [{"frame": list(hw), "network": _network_size(hw, crop, custom), "pairs": n} for hw, n in sizes.items()],
        "crop": bool(crop),
        "resize": CROP if crop else None if custom else RESIZE,
        "precisions": list(predictors),
        "results": {p: s.summary(with_vs) for p, s in stats.items()},
        "time": {"total_s": time.perf_counter() - t_start, "load_s": load_s},  # load_s: waiting for reads
    }


def _network_size(hw, crop: bool, custom: bool):
    """The size the network runs at for frames of size ``hw`` (None for a custom estimator)."""
    from .api import network_size

    if crop:
        return [hw[0] // 64 * 64, hw[1] // 64 * 64]
    return None if custom else list(network_size(*hw))


def _centre_crop64(sample: FlowSample) -> FlowSample:
    """The sample centre-cropped to the largest multiples of 64 (flownet2-pytorch's inference crop)."""
    h, w = sample.valid.shape
    h64, w64 = h // 64 * 64, w // 64 * 64
    if h64 == 0 or w64 == 0:
        raise ValueError(f"crop: {sample.files.img1} is {w}x{h}; cropping needs frames of at least 64x64")
    y, x = (h - h64) // 2, (w - w64) // 2
    cut = lambda a: a[y:y + h64, x:x + w64]
    return FlowSample(sample.files, cut(sample.img1), cut(sample.img2), cut(sample.flow), cut(sample.valid),
                      {k: cut(m) for k, m in sample.regions.items()})


def _prefetch(dataset: FlowDataset, depth: int = 4):
    """The dataset's samples in order, read by two threads up to ``depth`` pairs ahead of the
    network (image decoding releases the GIL). A reading error is raised when its pair is due."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fastflow-validate-read") as pool:
        pending = [pool.submit(dataset.__getitem__, i) for i in range(min(depth, len(dataset)))]
        try:
            for i in range(len(dataset)):
                sample = pending.pop(0).result()
                if i + depth < len(dataset):
                    pending.append(pool.submit(dataset.__getitem__, i + depth))
                yield sample
        finally:
            for f in pending:
                f.cancel()


def _setup(model, precision, compare_precisions, device):
    """(predictors by precision, device name, model description)."""
    if callable(model) and not _is_module(model) and not isinstance(model, (str, os.PathLike)):
        if compare_precisions:
            raise ValueError("compare_precisions needs a FlowNet2S module or a checkpoint, not a function")
        return {precision or "custom": model}, "custom", getattr(model, "__name__", type(model).__name__)
    import torch

    if isinstance(model, (str, os.PathLike)):
        from .model import FlowNet2S

        dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        desc = os.fspath(model)
        model = FlowNet2S.from_checkpoint(model, map_location=dev)
    else:
        desc = type(model).__module__ + "." + type(model).__name__
    param = next(model.parameters())
    dev = param.device
    if param.dtype != torch.float32:
        import copy

        model = copy.deepcopy(model).float()  # every precision is derived from the float32 weights
    if compare_precisions:
        wanted = supported_precisions(dev) if compare_precisions is True else list(compare_precisions)
        names = ["fp32"] + [p for p in dict.fromkeys(_resolve_precision(p, dev) for p in wanted) if p != "fp32"]
    else:
        names = [_resolve_precision(precision or ("tf32" if dev.type == "cuda" else "fp32"), dev)]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    return {p: _predictor(model, p) for p in names}, name, desc


def _is_module(obj) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _progress_bar(total: int, enabled: bool):
    """The CLI's progress bar (``update(n)``, ``close()``)."""
    from .cli import _progress

    return _progress(total, enabled, "validate")


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _f(x, fmt="{:.3f}") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def format_report(res: dict) -> str:
    """The human-readable table of a :func:`validate` result."""
    lines = [f"{res['dataset']}: {res['pairs']} pairs from {res['root']} on {res['device']} ({res['model']})"]
    for s in res["sizes"]:
        fh, fw = s["frame"]
        if s["network"] is None:
            lines.append(f"  {s['pairs']} pairs of {fh}x{fw}")
            continue
        nh, nw = s["network"]
        if res.get("crop"):
            how = f"centre-cropped to {nh}x{nw} (flownet2-pytorch's protocol), only the crop evaluated"
        elif (fh, fw) == (nh, nw):
            how = "run as is"
        else:
            how = f"resized to {nh}x{nw} for the network, flow resized back"
        lines.append(f"  {s['pairs']} pairs of {fh}x{fw}: {how}")
    lines += [f"  note: {n}" for n in res["notes"]]
    results = res["results"]
    regions = sorted({k for r in results.values() for k in r["regions"]}, key=["matched", "unmatched", "noc"].index)
    kitti = res["dataset"].startswith("kitti")
    cols = ["precision", "EPE"] + [f"EPE {k}" for k in regions] + (["Fl-all"] if kitti else [])
    cols += ["Fl-noc"] if kitti and "noc" in regions else []
    with_vs = any("vs_fp32" in r for r in results.values())
    cols += ["vs fp32", "vs fp32 max"] if with_vs else []
    cols += ["ms/pair"]
    rows = []
    for p, r in results.items():
        row = [p, _f(r["epe"])] + [_f(r["regions"].get(k, {}).get("epe")) for k in regions]
        if kitti:
            row.append(_f(r["fl_all"], "{:.2f}%"))
            if "noc" in regions:
                row.append(_f(r["regions"].get("noc", {}).get("fl"), "{:.2f}%"))
        if with_vs:
            row += [_f(r["vs_fp32"]["epe"], "{:.4f}"), _f(r["vs_fp32"]["max"], "{:.3f}")] if "vs_fp32" in r else ["-", "-"]
        row.append(_f(r["time"]["ms_per_pair_median"], "{:.1f}"))
        rows.append(row)
        if r["nonfinite_pixels"]:
            lines.append(f"  warning: {p} produced non-finite flow at {r['nonfinite_pixels']} pixels")
    lines += _table(cols, rows)
    t = res.get("time")
    if t:
        lines.append(f"  {t['total_s']:.1f} s in all, {t['load_s']:.1f} s of it waiting for files")
    first = next(iter(results))
    groups = results[first].get("per_group")
    if groups and len(groups) > 1:
        lines.append(f"per sequence ({first}):")
        gcols = ["sequence", "pairs", "EPE"] + [f"EPE {k}" for k in regions]
        grows = [[g, str(e["pairs"]), _f(e["epe"])] + [_f(e.get(k)) for k in regions] for g, e in groups.items()]
        lines += _table(gcols, grows)
    return "\n".join(lines)


def _table(cols: List[str], rows: List[List[str]]) -> List[str]:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    fmt = lambda cells: "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return [fmt(cols)] + [fmt(r) for r in rows]


# --------------------------------------------------------------------------------------------
# The command (registered by fastflow.cli through PLUGIN_COMMANDS)
# --------------------------------------------------------------------------------------------


def add_arguments(parser, model_args) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--root", required=True, help="the dataset's folder (see the README for each layout)")
    model_args(parser)
    parser.add_argument("--compare-precisions", action="store_true",
                        help="one pass in every precision the device supports: EPE against the ground truth "
                             "and against the fp32 flow (--precision is then ignored)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs (sorted order)")
    parser.add_argument("--split", choices=["val", "train", "all"], default=None,
                        help="FlyingChairs split (default: val when FlyingChairs_train_val.txt is found)")
    parser.add_argument("--crop", action="store_true",
                        help="evaluate as flownet2-pytorch does: centre-crop frames and ground truth to the largest "
                             "multiples of 64 (Sintel: 384x1024) instead of resizing the full frames")
    parser.add_argument("--json", help="also write every number (per pair too) as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from .cli import CLIError, _checkpoint, _device, _ensure_parent

    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be at least 1, got {args.limit}")
    if args.json:
        _ensure_parent(args.json)
    try:
        dataset = load_dataset(args.dataset, args.root, limit=args.limit, split=args.split)
    except DatasetError as e:
        raise CLIError(str(e)) from None
    checkpoint = _checkpoint(args.checkpoint)
    device = _device(args.device)
    from .model import FlowNet2S

    model = FlowNet2S.from_checkpoint(checkpoint, map_location=device)
    try:
        res = validate(model, dataset, precision=args.precision, compare_precisions=args.compare_precisions,
                       crop=args.crop, progress=not args.quiet)
    except DatasetError as e:
        raise CLIError(str(e)) from None
    res["model"] = checkpoint
    if args.precision == "tf32" and device.type == "cpu" and not args.compare_precisions:
        res["notes"].append("no TF32 on a CPU: ran fp32")
    print(format_report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_json_safe(res), f, indent=1, allow_nan=False)
        print(f"wrote {args.json}")
    return 0


def _json_safe(obj):
    """NaN / inf (a precision that produced non-finite flow) become null: strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


class _CallableModule(types.ModuleType):
    """Importing ``fastflow.validate`` makes Python set the package attribute ``fastflow.validate``
    to this module (the CLI imports it), which would shadow the function of the same name; so the
    module itself is callable and ``fastflow.validate(...)`` is :func:`validate` either way."""

    def __call__(self, *args, **kwargs):
        return validate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
