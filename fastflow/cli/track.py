"""``fastflow track SOURCE``: points, boxes, masks or detections carried through a video along the flow."""
from __future__ import annotations

import os
import sys

from ._common import CLIError, add_model_args, check_output_file, load_model, random_label


def register(sub) -> None:
    t = sub.add_parser("track", help="track points, boxes, masks or detections through a video along the flow",
                       description="Either --detections (tracking by detection: ids for per-frame detections, "
                                   "FlowTrack-style) or --points/--boxes/--mask on the first frame (propagation, "
                                   "each point forward-backward checked).")
    t.add_argument("source", help="video file (needs fastflow[video]) or folder of frames (natural order)")
    what = t.add_argument_group("what to track")
    what.add_argument("--detections", help="per-frame detections: COCO JSON (boxes and/or keypoints; a results list's "
                                           "image_id is the frame index from 0) or MOTChallenge det.txt")
    what.add_argument("--points", nargs="+", metavar="X,Y", help="points on the first frame (pixels)")
    what.add_argument("--boxes", nargs="+", metavar="X,Y,W,H", help="boxes on the first frame: left, top, width, height")
    what.add_argument("--mask", nargs="+", metavar="PNG", help="masks of the first frame (non-zero pixels are inside)")
    out = t.add_argument_group("outputs")
    out.add_argument("--mot", help="MOTChallenge text file to write (frame, id, x, y, w, h, score, -1, -1, -1)")
    out.add_argument("--json", help="JSON to write: COCO/PoseTrack-style with track_id (detections), or per-frame "
                                    "points and boxes (propagation)")
    out.add_argument("--overlay", help="pictures to write: a folder of PNG frames, or a .mp4 file")
    out.add_argument("--overlay-scale", type=int, default=1, help="enlarge overlay frames N times (default 1)")
    t.add_argument("--flow", default="model", help="flow source: model (FlowNet2-S, the default: needs --checkpoint "
                                                   "or --random-weights) or dis / dis:fast / dis:ultrafast (OpenCV DIS)")
    t.add_argument("--fb-alpha", type=float, default=0.01, help="forward-backward check alpha (default 0.01)")
    t.add_argument("--fb-beta", type=float, default=0.5, help="forward-backward check beta, px^2 (default 0.5)")
    t.add_argument("--max-colour-diff", type=float, default=None, metavar="N",
                   help="also lose a point whose colour changes by more than N (mean |RGB difference|, 0..255) "
                        "along its move: catches occlusions a smooth flow hides from the forward-backward check "
                        "(off by default; 12-20 suits DIS on the synthetic tests, see the README)")
    t.add_argument("--no-check", action="store_true", help="no backward flow, no check (propagation only; half the flow)")
    t.add_argument("--patience", type=int, default=12, help="frames a track lives without a detection (default 12)")
    t.add_argument("--iou", type=float, default=0.3, help="smallest box IoU to match a track to a detection (0.3)")
    t.add_argument("--oks", type=float, default=0.3, help="smallest OKS to match poses (0.3)")
    t.add_argument("--min-score", type=float, default=0.0, help="ignore detections scored below this")
    t.add_argument("--batch", type=int, default=4, help="frame pairs per flow batch (default 4)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_args(t)
    t.set_defaults(func=run)


def _numbers(items, n, what):
    import numpy as np

    rows = []
    for s in items or []:
        try:
            v = [float(x) for x in s.split(",")]
        except ValueError:
            v = []
        if len(v) != n:
            raise CLIError(f"--{what} {s!r}: expected {n} comma-separated numbers")
        rows.append(v)
    return np.array(rows, np.float64).reshape(-1, n) if items else None


def _masks(paths):
    import numpy as np

    from ..images import read_image

    if not paths:
        return None
    ms = [read_image(p).max(axis=-1) > 0 for p in paths]
    if len({m.shape for m in ms}) > 1:
        raise CLIError("the --mask images differ in size")
    return np.stack(ms)


def run(args) -> int:
    from tqdm import tqdm

    from ..track.run import track_video

    if args.detections is None and not (args.points or args.boxes or args.mask):
        raise CLIError("nothing to track: give --detections FILE, or --points / --boxes / --mask for the first frame")
    if args.detections is not None and (args.points or args.boxes or args.mask):
        raise CLIError("give --detections or --points/--boxes/--mask, not both")
    if not (args.mot or args.json or args.overlay):
        raise CLIError("nothing to write: give --mot FILE, --json FILE and/or --overlay FOLDER|FILE.mp4")
    if args.detections is not None and not os.path.isfile(args.detections):
        raise CLIError(f"detections file not found: {args.detections}")
    for path in (args.mot, args.json):
        if path:
            check_output_file(path)
    if args.overlay and args.overlay.lower().endswith(".mp4"):
        check_output_file(args.overlay)
    if args.overlay_scale < 1 or args.batch < 1 or args.patience < 0:
        raise CLIError("--overlay-scale and --batch must be at least 1, --patience at least 0")
    if args.mask and args.no_check:
        raise CLIError("--mask follows the backward flow: it cannot go with --no-check")
    points, boxes, masks = _numbers(args.points, 2, "points"), _numbers(args.boxes, 4, "boxes"), _masks(args.mask)
    if args.flow == "model":
        flow = load_model(args)
        label = random_label(args)
    elif args.flow.split(":")[0] == "dis":
        if args.checkpoint or args.random_weights:
            raise CLIError("--flow dis uses no model: drop --checkpoint / --random-weights")
        flow, label = args.flow, ""
    else:
        raise CLIError(f"--flow {args.flow!r}: use model, dis, dis:fast or dis:ultrafast")
    bars = []  # made at the first frame, so errors found before it come alone

    def progress(k):
        if not bars:
            bars.append(tqdm(unit="frame", desc="track", file=sys.stderr, dynamic_ncols=True, disable=args.quiet))
        bars[0].update(1)

    try:
        s = track_video(args.source, flow, detections=args.detections, points=points, boxes=boxes, masks=masks,
                        mot=args.mot, json_path=args.json, overlay=args.overlay, overlay_scale=args.overlay_scale,
                        batch=args.batch, alpha=args.fb_alpha, beta=args.fb_beta, check=not args.no_check,
                        patience=args.patience, iou_threshold=args.iou, oks_threshold=args.oks,
                        min_score=args.min_score, max_colour_diff=args.max_colour_diff,
                        label=label.strip(" []") or None, on_frame=progress)
    finally:
        for b in bars:
            b.close()
    if s["mode"] == "detections":
        what = f"{s['ids']} track ids, {s['detected']} detected and {s['filled']} filled boxes"
    else:
        n_pts = len(s["results"][-1].points)
        n_box = len(s["results"][-1].boxes)
        what = f"{n_pts} points ({s['points_lost']} lost), {n_box} boxes ({s['boxes_lost']} lost) at the last frame"
    outs = ", ".join(p for p in (args.mot, args.json, args.overlay) if p)
    print(f"tracked {s['frames']} frames ({s['frames_per_s']:.1f} frames/s): {what}; wrote {outs}{label}")
    return 0
