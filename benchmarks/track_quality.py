"""Tracking quality of ``fastflow.track`` on synthetic videos with known motion, per flow source.

    python benchmarks/track_quality.py [--seeds 20] [--frames 40] [--size 96x128] [--flows exact,dis]
                                       [--checkpoint CKPT | --random-weights] [--device cpu]

Each seed draws a scene (``fastflow.track.synthetic.make_sequence``: five textured rectangles over a
panning textured background; object 1 passes fully behind object 2, object 3 leaves the frame,
object 4 enters and passes behind object 3, object 5 enters). Detections are simulated from the
ground truth (an object with at least half its area visible is detected, box jittered by 1 px
Gaussian noise, 10% of detections dropped). Ground truth for scoring: every object with at least
20% of its area visible. Scored with py-motmetrics over all seeds together (MOTA, IDF1, id
switches, false positives, misses). The forward-backward check is measured on a 6x6 grid of points
on object 1: of the points that go behind object 2, how many are flagged lost by the frame they
disappear (caught), later (late), or never (they ride on the occluder); and how many point-frames
are flagged while still visible (false alarms). ``dis+c20``: DIS with the optional colour check
(``max_colour_diff=20``) added to the forward-backward check. ``model`` needs the official weights to mean
anything; with --random-weights it only shows the code path runs.
"""
import argparse
import sys

import numpy as np


def lost_point_stats(seq, flow, colour):
    from fastflow.track import box_grid, propagate

    o = seq._by_id[1]
    local = box_grid((0, 0, o.w, o.h), 6, 0.15)
    pts0, vis0 = seq.points(1, local, 0)
    local, pts0 = local[vis0], pts0[vis0]
    hidden = np.full(len(local), -1)
    flagged = np.full(len(local), -1)
    false_alarm = visible_frames = 0
    for r in propagate(seq.frames, flow, points=pts0, max_colour_diff=colour):
        _, vis = seq.points(1, local, r.index)
        hidden[(hidden < 0) & ~vis] = r.index
        flagged[(flagged < 0) & ~r.visible] = r.index
        still = hidden < 0
        visible_frames += int(still.sum())
        false_alarm += int((still & ~r.visible).sum())
    ev = hidden >= 0
    return {"hidden": int(ev.sum()), "caught": int((ev & (flagged >= 0) & (flagged <= hidden)).sum()),
            "late": int((ev & (flagged > hidden)).sum()), "never": int((ev & (flagged < 0)).sum()),
            "false_alarm": false_alarm, "visible_point_frames": visible_frames}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--size", default="96x128", help="HxW")
    ap.add_argument("--flows", default="exact,dis,dis+c20",
                    help="comma list of exact, dis, model; +cN adds the colour check with max_colour_diff N")
    ap.add_argument("--checkpoint")
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    from fastflow.track import dis_flow, track_detections
    from fastflow.track.evaluate import mot_metrics, tracks_by_frame
    from fastflow.track.synthetic import make_sequence

    h, w = (int(v) for v in args.size.lower().split("x"))
    model = None
    if "model" in args.flows:
        import fastflow

        model = fastflow.load_model(args.checkpoint, args.device, random_weights=args.random_weights)
    print(f"{args.seeds} synthetic videos, {args.frames} frames at {w}x{h}; detections: 1 px jitter, 10% missed")
    print("| flow | MOTA | IDF1 | id switches | FP | misses | GT boxes | points hidden | caught by then | late | never "
          "| false alarms (point-frames) | flow EPE (px) |")
    print("| --- " * 13 + "|")
    for name in args.flows.split(","):
        base, _, c = name.partition("+c")
        colour = float(c) if c else None
        gt_all, hyp_all = [], []
        lost = {}
        epe = []
        for seed in range(args.seeds):
            seq = make_sequence(seed, h, w, args.frames)
            flow = {"exact": seq.exact_flow, "dis": dis_flow(), "model": model}[base]
            dets = seq.detections(jitter=1.0, miss=0.1, seed=seq.n_frames)
            res = list(track_detections(seq.frames, flow, dets, max_colour_diff=colour))
            gt = seq.ground_truth()
            hyp = tracks_by_frame(res)
            gt_all += [{seed * 100 + k: v for k, v in g.items()} for g in gt]
            hyp_all += [{seed * 100_000 + k: v for k, v in hh.items()} for hh in hyp]
            for k, v in lost_point_stats(seq, flow, colour).items():
                lost[k] = lost.get(k, 0) + v
            if base != "exact" and colour is None:
                for t in range(0, args.frames - 1, 8):
                    f = flow(seq.frames[t], seq.frames[t + 1])
                    f = f.detach().cpu().numpy() if hasattr(f, "detach") else np.asarray(f)
                    err = f - seq.exact_flow(seq.frames[t], seq.frames[t + 1])
                    epe.append(float(np.hypot(err[..., 0], err[..., 1]).mean()))
        m = mot_metrics(gt_all, hyp_all)
        print(f"| {name} | {m['mota']:.3f} | {m['idf1']:.3f} | {m['num_switches']:.0f} | {m['num_false_positives']:.0f} "
              f"| {m['num_misses']:.0f} | {m['num_objects']:.0f} | {lost['hidden']} | {lost['caught']} | {lost['late']} "
              f"| {lost['never']} | {lost['false_alarm']} of {lost['visible_point_frames']} "
              f"| {np.mean(epe) if epe else 0:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
