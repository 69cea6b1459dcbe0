"""Throughput of ``fastflow.track`` in frames per second, end to end in memory, per flow source.

    python benchmarks/track_throughput.py [--size 96x128] [--frames 24] [--repeats 3] [--batch 4]
                                          [--device cpu] [--threads N]

Input: a synthetic video (``fastflow.track.synthetic.make_sequence``, five objects) already decoded
in memory, with simulated detections. Rows (each the median of ``--repeats`` rounds; rounds
interleave the rows, so a busy machine slows all of them alike):

- ``exact flow``: the tracker alone (the flow is looked up, not computed): propagation, the
  forward-backward check, matching, lifecycle;
- ``DIS medium``: OpenCV's DIS flow (forward and backward per frame);
- ``FlowNet2-S fp32`` (random weights: speed does not depend on them), ``--batch`` pairs per forward,
  forward and backward flow per frame (2 network pairs per frame);
- ``FlowNet2-S fp32, no check``: propagation of the same boxes with ``check=False`` (1 pair per frame).
"""
import argparse
import statistics
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="96x128", help="HxW")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    import torch

    import fastflow
    from fastflow.track import dis_flow, propagate, track_detections
    from fastflow.track.synthetic import make_sequence

    if args.threads:
        torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    seq = make_sequence(0, h, w, args.frames)
    dets = seq.detections(jitter=1.0, miss=0.1)
    boxes = [seq.box_in_image(o.id, 0) for o in seq.objects if seq.visibility(o.id, 0) > 0.5]
    model = fastflow.load_model(device=args.device, precision="fp32", random_weights=True)
    dis = dis_flow()

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    rows = {
        "exact flow (tracker alone)": lambda: list(track_detections(seq.frames, seq.exact_flow, dets, batch=args.batch)),
        "DIS medium": lambda: list(track_detections(seq.frames, dis, dets, batch=args.batch)),
        "FlowNet2-S fp32 (fwd + bwd)": lambda: list(track_detections(seq.frames, model, dets, batch=args.batch)),
        "FlowNet2-S fp32, no check": lambda: list(propagate(seq.frames, model, boxes=boxes, check=False, batch=args.batch)),
    }
    for fn in rows.values():  # warm-up: oneDNN primitives, DIS allocations, imports
        fn()
    times = {k: [] for k in rows}
    for _ in range(args.repeats):
        for name, fn in rows.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t)
    n = seq.n_frames
    print(f"{n} frames at {w}x{h} (network {fastflow.api.network_size(h, w)[1]}x{fastflow.api.network_size(h, w)[0]}), "
          f"batch {args.batch}, {args.device}, torch threads {torch.get_num_threads()}, medians of {args.repeats}")
    print("| flow source | frames/s (median) | min..max |")
    print("| --- | --- | --- |")
    for name, ts in times.items():
        fps = [n / t for t in ts]
        print(f"| {name} | {statistics.median(fps):.1f} | {min(fps):.1f}..{max(fps):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
