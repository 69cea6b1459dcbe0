"""The ``fastflow`` command: ``flow``, ``video``, ``bench``, ``info``.

Errors a user can cause (bad paths, unreadable images, wrong checkpoint, mismatched sizes) end
with a one-line ``fastflow: error: ...`` on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from typing import List, Optional

EXIT_USAGE = 2

CHECKPOINT_HELP = (
    "fastflow ships no weights. Get the official FlowNet2-S checkpoint (FlowNet2-S_checkpoint.pth.tar, "
    "linked from the README of NVIDIA's flownet2-pytorch) and pass --checkpoint PATH or set FASTFLOW_CHECKPOINT"
)


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def _device(name: Optional[str]):
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise CLIError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise CLIError(f"unsupported device {name!r}: fastflow runs on cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda asked for, but PyTorch sees no CUDA GPU")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CLIError(f"--device {name}: PyTorch sees {torch.cuda.device_count()} GPU(s)")
    return dev


def _checkpoint(arg: Optional[str]) -> str:
    path = arg or os.environ.get("FASTFLOW_CHECKPOINT")
    if not path:
        raise CLIError("no checkpoint given. " + CHECKPOINT_HELP)
    if not os.path.isfile(path):
        raise CLIError(f"checkpoint not found: {path}")
    return path


def _load_model(args):
    import torch

    from .model import FlowNet2S

    device = _device(args.device)
    model = FlowNet2S.from_checkpoint(_checkpoint(args.checkpoint), map_location=device)
    if args.precision == "fp16":
        model = model.half()
    elif args.precision == "bf16":
        model = model.bfloat16()
    elif args.precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False
    return model


def _read_image(path: str):
    """``fastflow.images.read_image`` with its errors as CLI errors."""
    from .images import read_image

    try:
        return read_image(path)
    except ValueError as e:
        raise CLIError(str(e)) from None


def _write_png(path: str, rgb) -> None:
    from PIL import Image

    _ensure_parent(path)
    Image.fromarray(rgb).save(path)


def _ensure_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CLIError(f"output folder does not exist: {parent}")


# ----------------------------------------------------------------------------------------- flow
def cmd_flow(args) -> int:
    from .api import estimate_flow
    from .io import write_flow
    from .viz import flow_to_color

    if not args.output and not args.viz:
        raise CLIError("nothing to write: give -o OUT.flo (or .png for KITTI) and/or --viz OUT.png")
    for path in (args.output, args.viz):  # fail before the network runs
        if path:
            _ensure_parent(path)
    if args.output and not args.output.lower().endswith((".flo", ".png")):
        raise CLIError(f"{args.output}: unknown flow file extension (use .flo or .png)")
    if args.max_flow is not None and not args.max_flow > 0:
        raise CLIError(f"--max-flow must be positive, got {args.max_flow}")
    img1, img2 = _read_image(args.img1), _read_image(args.img2)
    if img1.shape != img2.shape:
        raise CLIError(f"the images differ in size: {args.img1} is {img1.shape[1]}x{img1.shape[0]}, "
                       f"{args.img2} is {img2.shape[1]}x{img2.shape[0]}")
    model = _load_model(args)
    flow = estimate_flow(model, img1, img2)
    if args.output:
        _ensure_parent(args.output)
        write_flow(args.output, flow)
        print(f"wrote {args.output} ({flow.shape[1]}x{flow.shape[0]} flow)")
    if args.viz:
        _write_png(args.viz, flow_to_color(flow, max_flow=args.max_flow))
        print(f"wrote {args.viz}")
    return 0


# ----------------------------------------------------------------------------------------- video
def _frames(source: str):
    """(iterator of HxWx3 frames, count or None): ``fastflow.images.open_frames``."""
    from .images import open_frames

    try:
        src = open_frames(source)
    except ValueError as e:
        raise CLIError(str(e)) from None
    except ImportError as e:
        raise CLIError(str(e)) from None
    if src.paths is not None and len(src.paths) < 2:
        raise CLIError(f"{source} holds {len(src.paths)} image(s); need at least 2 frames")
    return iter(src), src.count


class _Progress:
    def __init__(self, total: Optional[int], enabled: bool):
        self.total, self.enabled, self.t0, self.n = total, enabled, time.perf_counter(), 0

    def update(self, k: int) -> None:
        self.n += k
        if not self.enabled:
            return
        rate = self.n / max(1e-9, time.perf_counter() - self.t0)
        tot = f"/{self.total}" if self.total else ""
        sys.stderr.write(f"\rflow {self.n}{tot} pairs, {rate:.1f} pairs/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def cmd_video(args) -> int:
    import numpy as np
    import torch

    from .api import estimate_flow
    from .io import write_flo
    from .viz import flow_to_color

    if not args.flo and not args.viz_video and not args.viz_frames:
        args.flo = True
    frames, count = _frames(args.source)
    os.makedirs(args.out, exist_ok=True)
    model = _load_model(args)
    writer = None
    if args.viz_video:
        try:
            import imageio.v2 as iio2
        except ImportError:
            raise CLIError("--viz-video needs imageio and imageio-ffmpeg: pip install 'fastflow[video]'") from None
        writer = iio2.get_writer(os.path.join(args.out, "flow.mp4"), fps=args.fps, macro_block_size=1)
    progress = _Progress(count - 1 if count else None, not args.quiet)
    prev = None
    index = 0
    shape = None
    batch1, batch2 = [], []

    def flush():
        nonlocal index
        if not batch1:
            return
        a, b = torch.from_numpy(np.stack(batch1)), torch.from_numpy(np.stack(batch2))
        flows = estimate_flow(model, a, b).numpy()
        for f in flows:
            if args.flo:
                write_flo(os.path.join(args.out, f"{index:06d}.flo"), f)
            if args.viz_frames or writer is not None:
                rgb = flow_to_color(f, max_flow=args.max_flow)
                if args.viz_frames:
                    _write_png(os.path.join(args.out, f"{index:06d}.png"), rgb)
                if writer is not None:
                    writer.append_data(rgb)
            index += 1
        progress.update(len(batch1))
        batch1.clear()
        batch2.clear()

    try:
        for frame in frames:
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise CLIError(f"frame {index + len(batch1) + 1} is {frame.shape[1]}x{frame.shape[0]}, "
                               f"the first was {shape[1]}x{shape[0]}")
            if prev is not None:
                batch1.append(prev)
                batch2.append(frame)
                if len(batch1) >= args.batch:
                    flush()
            prev = frame
        flush()
    finally:
        progress.close()
        if writer is not None:
            writer.close()
    if index == 0:
        raise CLIError(f"{args.source} has fewer than 2 frames")
    print(f"wrote {index} flow fields to {args.out}")
    return 0


# ----------------------------------------------------------------------------------------- bench
def _parse_size(s: str):
    try:
        h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise CLIError(f"--size must look like 384x512 (HEIGHTxWIDTH), got {s!r}") from None
    if h <= 0 or w <= 0 or h % 64 or w % 64:
        raise CLIError(f"--size {s}: height and width must be positive multiples of 64")
    return h, w


def cmd_bench(args) -> int:
    import torch

    from .bench import bench_environment, format_table, rows_to_dicts, run_model_bench

    device = _device(args.device)
    size = _parse_size(args.size) if args.size else ((448, 1024) if device.type == "cuda" else (384, 512))
    ckpt = _checkpoint(args.checkpoint) if (args.checkpoint or os.environ.get("FASTFLOW_CHECKPOINT")) else None
    precisions = [p for p in (args.precision or "").split(",") if p]
    bad = [p for p in precisions if p not in ("fp32", "tf32", "fp16", "bf16")]
    if bad:
        raise CLIError(f"--precision takes a comma-separated list of fp32, tf32, fp16, bf16; got {bad[0]!r}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    env = bench_environment(device)
    where = env["device"] + ("" if device.type == "cuda" else f", {env['threads']} threads")
    log(f"fastflow bench: FlowNet2-S {size[0]}x{size[1]}, batch {args.batch}, on {where}; fastflow {env['fastflow']}"
        f" ({env['commit'] or 'commit unknown'}), torch {env['torch']}")
    rows = run_model_bench(size[0], size[1], args.batch, device, ckpt, warmup=args.warmup, repeats=args.repeats,
                           include_compile=args.compile, log=log, precisions=precisions or None)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(env, bench=rows_to_dicts(rows)), f, indent=1)
        print(f"wrote {args.json}")
    return 0


# ----------------------------------------------------------------------------------------- info
def cmd_info(args) -> int:
    import torch

    from ._backend import build_info

    info = build_info()
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            print(f"{k:>22}: {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastflow", description="FlowNet2-S optical flow, fast.")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp):
        sp.add_argument("--checkpoint", help="FlowNet2-S checkpoint (.pth.tar); default: $FASTFLOW_CHECKPOINT")
        sp.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
        sp.add_argument("--precision", choices=["fp32", "tf32", "fp16", "bf16"], default="tf32",
                        help="fp16/bf16: 16-bit model (on the CPU bf16 runs oneDNN bf16 convolutions, fp16 computes "
                             "in fp32); tf32 (default) / fp32: float32 model")
        sp.add_argument("--max-flow", type=float, default=None, help="fixed colour normalisation (pixels)")

    f = sub.add_parser("flow", help="flow between two images")
    f.add_argument("img1")
    f.add_argument("img2")
    f.add_argument("-o", "--output", help="flow file to write: .flo (Middlebury) or .png (KITTI 16-bit)")
    f.add_argument("--viz", help="colour-coded flow picture to write (.png)")
    model_args(f)
    f.set_defaults(func=cmd_flow)

    v = sub.add_parser("video", help="flow between consecutive frames of a video or a folder of frames")
    v.add_argument("source", help="video file (needs fastflow[video]) or folder of images (sorted by name)")
    v.add_argument("--out", required=True, help="output folder")
    v.add_argument("--flo", action="store_true", help="write NNNNNN.flo per pair (default if nothing else asked)")
    v.add_argument("--viz-frames", action="store_true", help="write NNNNNN.png colour pictures")
    v.add_argument("--viz-video", action="store_true", help="write flow.mp4, colour-coded (needs fastflow[video])")
    v.add_argument("--fps", type=float, default=25.0)
    v.add_argument("--batch", type=int, default=8, help="pairs per forward (default 8)")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    model_args(v)
    v.set_defaults(func=cmd_video)

    b = sub.add_parser("bench", help="benchmark fastflow against the PyTorch reference")
    b.add_argument("--size", help="HEIGHTxWIDTH, multiples of 64 (default 384x512 on CPU, 448x1024 on GPU)")
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--device", default="auto")
    b.add_argument("--checkpoint", help="official weights (default: random weights)")
    b.add_argument("--warmup", type=int, default=3, help="minimum warm-up runs (more until 3 runs agree within 10%%)")
    b.add_argument("--repeats", type=int, default=10, help="interleaved timing rounds (default 10)")
    b.add_argument("--precision", help="only these precisions, comma-separated (e.g. fp32,bf16); default all")
    b.add_argument("--threads", type=int, help="torch.set_num_threads first (CPU)")
    b.add_argument("--compile", action="store_true",
                   help="include torch.compile: max-autotune fp16 on CUDA; inductor with freezing fp32/bf16 on the CPU "
                        "(compile time reported apart)")
    b.add_argument("--json", help="also write the rows as JSON here")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="how fastflow was built and which GPUs it sees")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    # Subcommands that live in their own modules: each module defines
    # ``add_arguments(parser, model_args)`` and ``run(args) -> int``; imported only when present, so
    # a subcommand's heavy imports (ray, video decoders) cost nothing until it runs.
    for name, module, helptext in PLUGIN_COMMANDS:
        try:
            mod = importlib.import_module(f"fastflow.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"fastflow.{module}":
                raise
            continue
        sp = sub.add_parser(name, help=helptext)
        mod.add_arguments(sp, model_args)
        sp.set_defaults(func=mod.run)
    return p


# (command, module in fastflow/, help): see build_parser.
PLUGIN_COMMANDS = [
    ("extract", "extraction", "flow for whole video datasets, resumable (one machine, --workers, or --ray)"),
    ("validate", "validate", "end-point error on Sintel, KITTI, FlyingChairs or Middlebury"),
]


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "batch", 1) is not None and getattr(args, "batch", 1) < 1:
        parser.error("--batch must be at least 1")
    if getattr(args, "repeats", 1) < 1 or getattr(args, "warmup", 0) < 0:
        parser.error("--repeats must be at least 1 and --warmup at least 0")
    if getattr(args, "threads", None) is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    try:
        return args.func(args)
    except CLIError as e:
        print(f"fastflow: error: {e}", file=sys.stderr)
    except (ValueError, TypeError, ImportError, OSError) as e:
        print(f"fastflow: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
    except KeyboardInterrupt:
        print("fastflow: interrupted", file=sys.stderr)
        return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
