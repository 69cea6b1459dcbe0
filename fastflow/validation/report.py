"""The human-readable table of a :func:`fastflow.validate` result."""
from __future__ import annotations

import math
from typing import List

__all__ = ["format_report", "json_safe"]


def _pairs(n: int) -> str:
    return f"{n} pair" + ("" if n == 1 else "s")


def _f(x, fmt="{:.3f}") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def format_report(res: dict) -> str:
    """The human-readable table of a :func:`validate` result."""
    scored = res.get("pairs_scored", res["pairs"])
    pairs = _pairs(res["pairs"]) + (f" ({scored} scored)" if scored != res["pairs"] else "")
    lines = [f"{res['dataset']}: {pairs} from {res['root']} on {res['device']} ({res['model']})"]
    for s in res["sizes"]:
        fh, fw = s["frame"]
        if s["network"] is None:
            lines.append(f"  {_pairs(s['pairs'])} of {fh}x{fw}")
            continue
        nh, nw = s["network"]
        if res.get("crop") and (fh, fw) != (nh, nw):
            how = f"centre-cropped to {nh}x{nw} (flownet2-pytorch's protocol), only the crop evaluated"
        elif (fh, fw) == (nh, nw):
            how = "run as is"
        else:
            how = f"resized to {nh}x{nw} for the network, flow resized back"
        lines.append(f"  {_pairs(s['pairs'])} of {fh}x{fw}: {how}")
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


def json_safe(obj):
    """A :func:`fastflow.validate` result with NaN / inf (a precision that produced non-finite flow)
    as None: strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
