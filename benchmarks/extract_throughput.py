"""End-to-end ``fastflow extract`` throughput against the model alone, in pairs per second.

    python benchmarks/extract_throughput.py [--size 256x340] [--frames 33] [--batch 4]
                                            [--repeats 3] [--device cpu|cuda] [--formats flo,denseflow]

Inputs: one H.264 video made here from the shipped photograph (a slow pan), ``--frames`` frames
at ``--size`` (default 256x340, mmaction2's usual rawframes size; the network runs at 256x320).
Random weights (speed does not depend on them). Rows, each the median of ``--repeats`` rounds; the
rounds interleave the rows, so a busy machine slows all of them alike:

- ``module``: the FlowNet2S module's forward on ``(B, 3, 2, 256, 320)`` float tensors already on the
  device (what ``fastflow bench`` times);
- ``estimate_flow``: ``estimate_flow`` on decoded uint8 frames in memory (adds the resize to
  multiples of 64 and back, and the copies to and from the device);
- ``extract <format>``: ``fastflow.extract`` on the video file, start to finish (decoding in the
  reader thread, batching, the writer thread encoding and writing, completion record); denseflow
  with ``--rgb`` (the frames written too, as for mmaction2).
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time


def make_video(path, frames, h, w):
    import imageio.v2 as iio
    import numpy as np
    from PIL import Image

    from fastflow.samples import load_photo

    photo = load_photo()
    scale = max((h + 2 * frames + 8) / photo.shape[0], (w + 3 * frames + 8) / photo.shape[1])
    big = np.asarray(Image.fromarray(photo).resize((int(photo.shape[1] * scale) + 1, int(photo.shape[0] * scale) + 1)))
    with iio.get_writer(path, fps=25, macro_block_size=1, quality=8) as wr:
        for i in range(frames):
            wr.append_data(big[2 * i : 2 * i + h, 3 * i : 3 * i + w])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="256x340")
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--formats", default="flo,denseflow")
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.split("x"))

    import numpy as np
    import torch

    import fastflow
    from fastflow.api import network_size
    from fastflow.images import open_frames

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = fastflow.FlowNet2S().eval().to(device)
    tmp = tempfile.mkdtemp(prefix="ff-extract-bench-")
    try:
        video = os.path.join(tmp, "clip.mp4")
        make_video(video, args.frames, h, w)
        src = open_frames(video)
        frames = list(src)
        src.close()
        pairs = len(frames) - 1
        h64, w64 = network_size(h, w)
        x = torch.rand(args.batch, 3, 2, h64, w64, device=device) * 255

        def sync():
            if device.type == "cuda":
                torch.cuda.synchronize()

        def t_module():
            n = (pairs + args.batch - 1) // args.batch
            with torch.no_grad():
                model(x)
                sync()
                t0 = time.perf_counter()
                for _ in range(n):
                    model(x)
                sync()
            return n * args.batch / (time.perf_counter() - t0)

        def t_estimate():
            t0 = time.perf_counter()
            for i in range(0, pairs, args.batch):
                j = min(pairs, i + args.batch)
                fastflow.estimate_flow(model, np.stack(frames[i:j]), np.stack(frames[i + 1 : j + 1]))
            sync()
            return pairs / (time.perf_counter() - t0)

        def t_extract(fmt):
            out = os.path.join(tmp, "out-" + fmt)
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            s = fastflow.extract(video, out, model=model, format=fmt, batch=args.batch, device=str(device),
                                 rgb=(fmt == "denseflow"))
            assert s["done"] == 1 and s["pairs"] == pairs, s
            return pairs / (time.perf_counter() - t0)

        rows = {"module": t_module, "estimate_flow": t_estimate}
        for fmt in args.formats.split(","):
            rows[f"extract {fmt}" + (" --rgb" if fmt == "denseflow" else "")] = (lambda f: lambda: t_extract(f))(fmt)
        for fn in rows.values():  # warm-up: plans, packed weights
            fn()
        got = {k: [] for k in rows}
        for _ in range(args.repeats):
            for k, fn in rows.items():
                got[k].append(fn())
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        print(f"extract throughput: {args.frames} frames {w}x{h} (network {w64}x{h64}), batch {args.batch}, {where}, "
              f"load average {os.getloadavg()[0]:.1f}")
        print("| row | pairs/s (median) | min..max | vs module |")
        print("| --- | --- | --- | --- |")
        base = statistics.median(got["module"])
        for k, v in got.items():
            m = statistics.median(v)
            print(f"| {k} | {m:.2f} | {min(v):.2f}..{max(v):.2f} | {m / base:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
