"""Flow metrics: end-point error, KITTI's Fl outliers, and their running sums per region and sequence."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Dict, List, Optional

import numpy as np

__all__ = ["FL_ABS_PX", "FL_REL", "end_point_error", "outlier_mask", "Region", "Stats"]

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


class Region:
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


class Stats:
    """Everything one precision accumulates over the dataset."""

    def __init__(self):
        self.regions: Dict[str, Region] = defaultdict(Region)
        self.groups: Dict[str, Dict[str, Region]] = defaultdict(lambda: defaultdict(Region))
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
               "pixels": allr["pixels"], "pairs": allr["pairs"], "nonfinite_pixels": self.nonfinite}
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
