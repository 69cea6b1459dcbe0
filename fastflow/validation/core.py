"""The validation loop: read pairs ahead, run each precision, score against the ground truth."""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
from tqdm import tqdm

from .. import precision as _precision
from ..datasets import FlowDataset, FlowSample, load_dataset
from .metrics import Stats

__all__ = ["validate", "RESIZE", "CROP", "IMPLAUSIBLE_DIAGONALS"]

RESIZE = ("fastflow.estimate_flow: frames resized bilinearly to the nearest multiples of 64 (antialiased when "
          "shrinking), flow resized back and scaled by W/W64, H/H64; every pixel of the full frame evaluated")
CROP = ("--crop (flownet2-pytorch's protocol): frames and ground truth centre-cropped to the largest multiples "
        "of 64, no resizing; only the cropped pixels evaluated")
#: Ground truth longer than this many frame diagonals is not scored (and is reported).
IMPLAUSIBLE_DIAGONALS = 4


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
    stats = {p: Stats() for p in predictors}
    sizes: Dict[tuple, int] = defaultdict(int)
    bar = tqdm(total=len(dataset), unit="pair", desc="validate", file=sys.stderr, dynamic_ncols=True,
               disable=not progress)
    implausible: Dict[str, int] = {}
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
            sample, n = _drop_implausible(sample)
            if n:
                implausible[sample.name] = n
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
    results = {p: s.summary(with_vs) for p, s in stats.items()}
    notes = list(dataset.notes) + _scoring_notes(results, implausible, dataset)
    return {
        "dataset": dataset.name,
        "root": os.path.abspath(dataset.root),
        "pairs": len(dataset),
        "pairs_scored": next(iter(results.values()))["pairs"],
        "notes": notes,
        "model": model_desc,
        "device": device_name,
        "sizes": [{"frame": list(hw), "network": _network_size(hw, crop, custom), "pairs": n} for hw, n in sizes.items()],
        "crop": bool(crop),
        "resize": CROP if crop else None if custom else RESIZE,
        "precisions": list(predictors),
        "results": results,
        "time": {"total_s": time.perf_counter() - t_start, "load_s": load_s},  # load_s: waiting for reads
    }


def _network_size(hw, crop: bool, custom: bool):
    """The size the network runs at for frames of size ``hw`` (None for a custom estimator)."""
    from ..api import network_size

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
        from ..load import load_model

        desc = os.fspath(model)
        model = load_model(model, device, "fp32")
    else:
        desc = type(model).__module__ + "." + type(model).__name__
    param = next(model.parameters())
    dev = param.device
    if param.dtype != torch.float32:
        import copy

        model = copy.deepcopy(model).float()  # every precision is derived from the float32 weights
    if compare_precisions:
        wanted = _precision.supported(dev) if compare_precisions is True else list(compare_precisions)
        names = ["fp32"] + [p for p in dict.fromkeys(_precision.resolve(p, dev) for p in wanted) if p != "fp32"]
    else:
        names = [_precision.resolve(precision, dev)]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    return {p: _predictor(model, p) for p in names}, name, desc


def _is_module(obj) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _drop_implausible(sample: FlowSample):
    """Ground truth longer than 4 frame diagonals is no motion a camera can see (a damaged file, or
    an unknown-flow marker under the 1e9 convention): such pixels are not scored. (sample, count)."""
    h, w = sample.valid.shape
    bad = sample.valid & ~(np.sqrt((np.asarray(sample.flow, dtype=np.float64) ** 2).sum(-1)) <= IMPLAUSIBLE_DIAGONALS * math.hypot(h, w))
    n = int(bad.sum())
    if n == 0:
        return sample, 0
    keep = ~bad
    return FlowSample(sample.files, sample.img1, sample.img2, sample.flow, sample.valid & keep,
                      {k: m & keep for k, m in sample.regions.items()}), n


def _scoring_notes(results: dict, implausible: Dict[str, int], dataset: FlowDataset) -> List[str]:
    """Say what was not scored; no valid ground truth in any pair is an error, not an EPE of NaN."""
    first = next(iter(results.values()))
    scored, n = first["pairs"], len(dataset)
    if first["pixels"] == 0:
        raise ValueError(f"{dataset.name} at {dataset.root}: none of the {n} pairs has valid ground truth "
                         "(every pixel invalid or unknown); nothing to score")
    notes = []
    if scored < n:
        names = [s["name"] for s in first["per_sample"] if "epe" not in s]
        notes.append(f"{n - scored} of {n} pairs have no valid ground truth and are not scored: "
                     + ", ".join(names[:5]) + (", ..." if len(names) > 5 else ""))
    if implausible:
        total = sum(implausible.values())
        notes.append(f"warning: {total} ground-truth pixels in {len(implausible)} pair{'' if len(implausible) == 1 else 's'} are longer than "
                     f"{IMPLAUSIBLE_DIAGONALS} frame diagonals (damaged files?) and are not scored: "
                     + ", ".join(list(implausible)[:5]) + (", ..." if len(implausible) > 5 else ""))
    return notes


def _predictor(model, name: str) -> Callable:
    """A function (img1, img2) -> (H, W, 2) numpy flow running a copy of ``model`` (float32) in
    precision ``name``: a fastflow model holds its precision itself; a plain PyTorch module gets
    PyTorch's TF32 switches around each call."""
    import copy

    from ..api import estimate_flow

    model = _precision.apply(copy.deepcopy(model), name)
    tf32 = {"fp32": False, "tf32": True}.get(name)
    switch = tf32 is not None and not hasattr(model, "allow_tf32")

    def predict(img1, img2):
        with _precision.torch_tf32(tf32) if switch else contextlib.nullcontext():
            return estimate_flow(model, img1, img2)

    return predict


def _as_flow(flow, shape, what: str) -> np.ndarray:
    if hasattr(flow, "detach"):
        flow = flow.detach().float().cpu().numpy()
    flow = np.asarray(flow, dtype=np.float32)
    if flow.shape != tuple(shape[:2]) + (2,):
        raise ValueError(f"{what} returned flow of shape {flow.shape}, expected {tuple(shape[:2]) + (2,)}")
    return flow
