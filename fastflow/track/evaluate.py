"""Scoring tracks against ground truth with py-motmetrics (``pip install 'fastflow[track]'``): MOTA,
IDF1, id switches and the counts behind them, CLEAR-MOT matching at box IoU >= 0.5."""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence

import numpy as np

from .associate import iou_matrix

__all__ = ["mot_metrics", "tracks_by_frame"]

METRICS = ["mota", "motp", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects",
           "mostly_tracked", "num_unique_objects"]


def tracks_by_frame(results) -> List[Dict[int, np.ndarray]]:
    """``[(k, tracks), ...]`` from :func:`fastflow.track.track_detections` as ``[{id: box}, ...]``."""
    out = []
    for r in results:
        k, tracks = r[0], r[1]
        while len(out) <= k:
            out.append({})
        out[k] = {t.id: np.asarray(t.box, np.float64) for t in tracks}
    return out


def mot_metrics(gt: Sequence[Mapping[int, np.ndarray]], hyp: Sequence[Mapping[int, np.ndarray]],
                min_iou: float = 0.5) -> Dict[str, float]:
    """CLEAR-MOT and identity metrics of ``hyp`` against ``gt`` (both: per frame ``{id: (x, y, w, h)}``,
    the same number of frames), computed by py-motmetrics: ``mota``, ``motp`` (1 - mean IoU of matches,
    motmetrics' distance), ``idf1``, ``num_switches``, ``num_false_positives``, ``num_misses``,
    ``num_objects``, ``mostly_tracked``, ``num_unique_objects``."""
    try:
        import motmetrics as mm
    except ImportError:
        raise ImportError("scoring tracks needs py-motmetrics: pip install 'fastflow[track]' (or motmetrics)") from None
    if len(gt) != len(hyp):
        raise ValueError(f"ground truth has {len(gt)} frames, the tracks {len(hyp)}")
    acc = mm.MOTAccumulator(auto_id=True)
    for g, h in zip(gt, hyp):
        gids, hids = list(g), list(h)
        gb = np.array([g[i] for i in gids], np.float64).reshape(-1, 4)
        hb = np.array([h[i] for i in hids], np.float64).reshape(-1, 4)
        # motmetrics.distances.iou_matrix (1 - IoU, NaN where IoU < min_iou) calls np.asfarray, which
        # NumPy 2 removed (motmetrics 1.4.0): the same distances from fastflow's IoU.
        dist = 1.0 - iou_matrix(gb, hb)
        acc.update(gids, hids, np.where(dist > 1 - min_iou, np.nan, dist))
    summary = mm.metrics.create().compute(acc, metrics=METRICS, name="all")
    return {m: float(summary[m].iloc[0]) for m in METRICS}
