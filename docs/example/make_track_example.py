"""Regenerates the README's tracking example: a synthetic video with known motion, its detections,
and the picture docs/example/track.png.

    python docs/example/make_track_example.py [--out track_demo]

writes ``track_demo/frames/0.png ... 39.png`` (96x128, fastflow.track.synthetic.make_sequence(7)) and
``track_demo/detections.json`` (COCO results list: image_id = frame index; simulated detector: objects
at least half visible, 1 px box jitter, 10% missed), to run ``fastflow track`` on. The picture shows
four frames around object 1 passing behind object 2, tracked along the exact flow (tracks by
detection: solid box = detected, dashed = filled along the flow; trails of the box centres; a 6x6
grid of points on object 1 propagated on its own: green dots tracked, red crosses flagged lost by the
forward-backward check).
"""
import argparse
import json
import os

import numpy as np
from PIL import Image

from fastflow.track import box_grid, propagate, track_detections
from fastflow.track.overlay import OverlayWriter
from fastflow.track.synthetic import make_sequence

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 7


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="track_demo", help="folder for the frames and detections.json")
    args = ap.parse_args(argv)
    seq = make_sequence(SEED)
    dets = seq.detections(jitter=1.0, miss=0.1, seed=SEED)
    os.makedirs(os.path.join(args.out, "frames"), exist_ok=True)
    for k, f in enumerate(seq.frames):
        Image.fromarray(f).save(os.path.join(args.out, "frames", f"{k}.png"))
    with open(os.path.join(args.out, "detections.json"), "w") as f:
        json.dump([{"image_id": k, "category_id": 1, "bbox": [round(float(v), 2) for v in d["box"]],
                    "score": round(d["score"], 3)} for k, ds in enumerate(dets) for d in ds], f)

    o = seq._by_id[1]
    pts0, _ = seq.points(1, box_grid((0, 0, o.w, o.h), 6, 0.15), 0)
    points = list(propagate(seq.frames, seq.exact_flow, points=pts0))
    vis1 = [seq.visibility(1, k) for k in range(seq.n_frames)]
    hidden = next(k for k, v in enumerate(vis1) if v == 0)
    back = next(k for k in range(hidden, seq.n_frames) if any(d["object"] == 1 for d in dets[k]))
    partly = next(k for k in range(hidden) if vis1[k] < 0.6)
    panels = [partly - 4, partly, hidden, back + 2]
    writer = OverlayWriter(os.path.join(args.out, "overlay"), scale=3)
    pictures = {}
    for (k, tracks), p in zip(track_detections(seq.frames, seq.exact_flow, dets), points):
        rgb = writer.add(seq.frames[k], tracks=tracks, points=p.points, visible=p.visible)
        if k in panels:
            pictures[k] = rgb
    writer.close()
    gap = np.full((pictures[panels[0]].shape[0], 6, 3), 255, np.uint8)
    strip = np.concatenate(sum([[pictures[k], gap] for k in panels], [])[:-1], axis=1)
    Image.fromarray(strip).save(os.path.join(HERE, "track.png"), optimize=True)
    print(f"panels: frames {panels}; object 1 hidden from frame {hidden}, detected again at {back}")
    print(f"wrote {args.out}/frames, {args.out}/detections.json, {args.out}/overlay, {os.path.join(HERE, 'track.png')}")


if __name__ == "__main__":
    main()
