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


def _name_limit(folder: str) -> int:
    """The longest file name (bytes) the file system holding ``folder`` (or its nearest existing
    parent) allows."""
    folder = os.path.abspath(folder)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _check_name(name: str, folder: str) -> None:
    limit = _name_limit(folder)
    if len(os.fsencode(name)) > limit:
        raise CLIError(f"output file name too long ({len(os.fsencode(name))} bytes, the file system allows "
                       f"{limit}): {name[:48]}...")


def _check_output_file(path: str) -> None:
    """Fail before the network runs if ``path`` cannot be written."""
    _ensure_parent(path)
    if os.path.isdir(path):
        raise CLIError(f"{path} is a folder; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    _check_name(os.path.basename(path), parent)
    if not os.access(parent, os.W_OK):
        raise CLIError(f"cannot write to {parent} (permission denied)")


# Above about this many pixels at network size, a CPU forward takes many seconds: say so.
_CPU_NOTE_PIXELS = 4_000_000


def _size_note(device, h: int, w: int) -> None:
    from .api import network_size

    h64, w64 = network_size(h, w)
    if device.type == "cpu" and h64 * w64 > _CPU_NOTE_PIXELS:
        print(f"fastflow: note: {w}x{h} images run at {w64}x{h64} ({h64 * w64 / 1e6:.0f} megapixels); on the CPU "
              "that takes tens of seconds or more per pair (--device cuda, or smaller images, is faster)",
              file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- flow
def cmd_flow(args) -> int:
    from .api import estimate_flow
    from .io import write_flow
    from .viz import flow_to_color

    if not args.output and not args.viz:
        raise CLIError("nothing to write: give -o OUT.flo (or .png for KITTI) and/or --viz OUT.png")
    if args.output and not args.output.lower().endswith((".flo", ".png")):
        raise CLIError(f"{args.output}: unknown flow file extension (use .flo or .png)")
    for path in (args.output, args.viz):  # fail before the network runs
        if path:
            _check_output_file(path)
    if args.max_flow is not None and not args.max_flow > 0:
        raise CLIError(f"--max-flow must be positive, got {args.max_flow}")
    img1, img2 = _read_image(args.img1), _read_image(args.img2)
    if img1.shape[:2] != img2.shape[:2]:
        raise CLIError(f"the images differ in size: {args.img1} is {img1.shape[1]}x{img1.shape[0]}, "
                       f"{args.img2} is {img2.shape[1]}x{img2.shape[0]} (width x height, EXIF orientation applied)")
    model = _load_model(args)
    _size_note(next(model.parameters()).device, img1.shape[0], img1.shape[1])
    flow = estimate_flow(model, img1, img2)
    if args.output:
        write_flow(args.output, flow)
        print(f"wrote {args.output} ({flow.shape[0]}x{flow.shape[1]}x2 flow, height x width x (u, v))")
    if args.viz:
        _write_png(args.viz, flow_to_color(flow, max_flow=args.max_flow))
        print(f"wrote {args.viz}")
    return 0


# ----------------------------------------------------------------------------------------- video
def _frames(source: str):
    """``fastflow.images.open_frames`` with its errors as CLI errors; folders need 2 frames."""
    from .images import open_frames

    try:
        src = open_frames(source)
    except (ValueError, ImportError) as e:
        raise CLIError(str(e)) from None
    if src.paths is not None and len(src.paths) < 2:
        raise CLIError(f"{source} holds {len(src.paths)} image(s); need at least 2 frames")
    return src


def _pair_names(src) -> Optional[List[str]]:
    """Output names of a folder's pairs: the first frame's name without extension (with it when two
    files share a stem)."""
    if src.paths is None:
        return None
    names = src.names if len(set(src.names)) == len(src.names) else [os.path.basename(p) for p in src.paths]
    return names[:-1]


def _progress(total: Optional[int], enabled: bool, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency; without it, no bar
        tqdm = None
    if tqdm is None or not enabled:
        class _Silent:
            def update(self, n=1):
                pass

            def close(self):
                pass

        return _Silent()
    return tqdm(total=total, unit="pair", desc=desc, file=sys.stderr, dynamic_ncols=True)


def _max_known_magnitude(flows) -> float:
    import numpy as np

    from .io import UNKNOWN_FLOW_THRESH

    u, v = flows[..., 0].astype(np.float64), flows[..., 1].astype(np.float64)
    known = (np.abs(u) < UNKNOWN_FLOW_THRESH) & (np.abs(v) < UNKNOWN_FLOW_THRESH)
    if not known.any():
        return 0.0
    return float(np.sqrt(u[known] ** 2 + v[known] ** 2).max())


def cmd_video(args) -> int:
    import tempfile

    import numpy as np

    from .api import estimate_flow
    from .images import to_float255
    from .io import read_flo, write_flo
    from .viz import flow_to_color

    if not args.flo and not args.viz_video and not args.viz_frames:
        args.flo = True
    if args.max_flow is not None and not args.max_flow > 0:
        raise CLIError(f"--max-flow must be positive, got {args.max_flow}")
    if args.fps is not None and not args.fps > 0:
        raise CLIError(f"--fps must be positive, got {args.fps}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CLIError(f"--out {args.out} exists and is not a folder")
    src = _frames(args.source)
    names = _pair_names(src)
    # Output names are known for folders: check them now, not after the network ran.
    for stem in (names or ["000000"])[:]:
        for ext in [e for e, on in ((".flo", args.flo), (".png", args.viz_frames)) if on]:
            _check_name(stem + ext, args.out)
    iio2 = None
    if args.viz_video:
        try:
            import imageio.v2 as iio2
        except ImportError:
            raise CLIError("--viz-video needs imageio and imageio-ffmpeg: pip install 'fastflow[video]'") from None
    fps = args.fps or src.fps or 25.0
    model = _load_model(args)
    device = next(model.parameters()).device
    viz = args.viz_frames or args.viz_video
    fixed_scale = args.max_flow if args.max_flow is not None else None
    two_pass = viz and fixed_scale is None and not args.per_frame_scale

    created = not os.path.isdir(args.out)
    os.makedirs(args.out, exist_ok=True)
    writer = None
    store = None
    state = {"count": 0, "max": 0.0, "shape": None, "first": None}
    progress = _progress(src.count - 1 if src.count else None, not args.quiet, "flow")
    batch1, batch2 = [], []

    def name_of(i: int) -> str:
        return names[i] if names is not None else f"{i:06d}"

    def colour(i: int, flow) -> None:
        nonlocal writer
        rgb = flow_to_color(flow, max_flow=None if args.per_frame_scale else fixed_scale)
        if args.viz_frames:
            _write_png(os.path.join(args.out, name_of(i) + ".png"), rgb)
        if args.viz_video:
            if writer is None:
                writer = iio2.get_writer(os.path.join(args.out, "flow.mp4"), fps=fps, macro_block_size=1)
            writer.append_data(rgb)

    def flush() -> None:
        if not batch1:
            return
        flows = estimate_flow(model, np.stack(batch1), np.stack(batch2))
        for f in flows:
            i = state["count"]
            if args.flo:
                write_flo(os.path.join(args.out, name_of(i) + ".flo"), f)
            if two_pass:
                state["max"] = max(state["max"], _max_known_magnitude(f))
                if store is not None:  # without .flo files, keep the flow in a temporary file
                    store.write(np.ascontiguousarray(f, dtype=np.float32).tobytes())
            elif viz:
                colour(i, f)
            state["count"] += 1
        progress.update(len(batch1))
        batch1.clear()
        batch2.clear()

    def frame_label(k: int) -> str:
        return src.paths[k] if src.paths is not None else f"frame {k} of {args.source}"

    ok = False
    try:
        if two_pass and not args.flo:
            store = tempfile.TemporaryFile(dir=args.out, prefix=".fastflow-")
        prev = None
        for k, frame in enumerate(src):
            if state["shape"] is None:
                state["shape"], state["first"] = frame.shape[:2], frame_label(k)
                _size_note(device, *frame.shape[:2])
            elif frame.shape[:2] != state["shape"]:
                raise CLIError(f"{frame_label(k)} is {frame.shape[1]}x{frame.shape[0]}, but {state['first']} is "
                               f"{state['shape'][1]}x{state['shape'][0]}; all frames must have one size")
            frame = to_float255(frame) / np.float32(255.0)  # uint8 and 16-bit frames alike, as 0..1
            if prev is not None:
                batch1.append(prev)
                batch2.append(frame)
                if len(batch1) >= args.batch:
                    flush()
            prev = frame
        flush()
        progress.close()
        if state["count"] == 0:
            raise CLIError(f"{args.source} has fewer than 2 frames")
        if two_pass:
            fixed_scale = state["max"] if state["max"] > 0 else 1.0
            h, w = state["shape"]
            if store is not None:
                store.seek(0)
            recolour = _progress(state["count"], not args.quiet, "colour")
            for i in range(state["count"]):
                if store is not None:
                    f = np.frombuffer(store.read(h * w * 2 * 4), dtype=np.float32).reshape(h, w, 2)
                else:
                    f = read_flo(os.path.join(args.out, name_of(i) + ".flo"))
                colour(i, f)
                recolour.update(1)
            recolour.close()
        ok = True
    finally:
        progress.close()
        src.close()
        if store is not None:
            store.close()
        if writer is not None:
            writer.close()
        if not ok and created and os.path.isdir(args.out) and not os.listdir(args.out):
            os.rmdir(args.out)
    scale = ("per frame" if args.per_frame_scale else f"{fixed_scale:.3g} px = full colour") if viz else None
    print(f"wrote {state['count']} flow fields to {args.out}" + (f" (colour scale: {scale})" if scale else ""))
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
def _cpu_forward() -> str:
    """What the CPU forward of a float32 FlowNet2S runs on, in words."""
    from .model import _mkldnn_ok

    import torch

    if _mkldnn_ok(torch.float32):
        return "oneDNN convolutions on packed weights (LeakyReLU fused) + fastflow C++ prologue/output kernels"
    return "PyTorch channels_last convolutions (no oneDNN in this torch) + fastflow C++ prologue/output kernels"


def describe_checkpoint(path: str) -> dict:
    """What a checkpoint file holds: size, sha256, tensors, parameters, dtypes, and whether it is a
    FlowNet2-S state dict (raises CheckpointError naming the problem when it is not)."""
    import hashlib

    from .model import FlowNet2S, check_state_dict, load_checkpoint_state

    state = load_checkpoint_state(path)
    check_state_dict(FlowNet2S(), state, source=path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values()})
    return {
        "path": os.path.abspath(path),
        "bytes": os.path.getsize(path),
        "sha256": digest.hexdigest(),
        "tensors": len(state),
        "parameters": sum(v.numel() for v in state.values()),
        "dtypes": dtypes,
        "model": "FlowNet2-S (flownet2-pytorch FlowNet2S, batchNorm=False): loads into fastflow.FlowNet2S",
    }


def cmd_info(args) -> int:
    import torch

    from ._backend import build_info

    if args.checkpoint:
        if not os.path.isfile(args.checkpoint):
            raise CLIError(f"checkpoint not found: {args.checkpoint}")
        ck = describe_checkpoint(args.checkpoint)
        if args.json:
            print(json.dumps(ck, indent=1))
        else:
            print(f"{ck['path']}: {ck['bytes']:,} bytes, sha256 {ck['sha256']}")
            print(f"  {ck['tensors']} tensors, {ck['parameters']:,} parameters, {'/'.join(ck['dtypes'])}")
            print(f"  {ck['model']}")
        return 0
    info = build_info()
    # The CPU versions of the conv/deconv ops are host emulations of the CUDA kernels for tests;
    # the model's CPU forward does not use them.
    info["cpu_ops"] = [o.replace("(emulation)", "(CUDA kernel emulated for tests)") for o in info.get("cpu_ops", [])]
    info["cpu_forward"] = _cpu_forward()
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
    from ._backend import __version__

    p = argparse.ArgumentParser(prog="fastflow", description="FlowNet2-S optical flow, fast.")
    p.add_argument("--version", action="version", version=f"fastflow {__version__}")
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
    v.add_argument("source", help="video file (needs fastflow[video]) or folder of images (natural order: 2 before 10)")
    v.add_argument("--out", required=True, help="output folder (created if missing)")
    v.add_argument("--flo", action="store_true",
                   help="write one .flo per pair, named after its first frame (folders: NAME.flo; videos: "
                        "NNNNNN.flo, the first frame's index); the default if nothing else is asked")
    v.add_argument("--viz-frames", action="store_true", help="write a colour picture per pair, named like the .flo")
    v.add_argument("--viz-video", action="store_true", help="write flow.mp4, colour-coded (needs fastflow[video])")
    v.add_argument("--fps", type=float, default=None, help="frame rate of flow.mp4 (default: the source's, else 25)")
    v.add_argument("--per-frame-scale", action="store_true",
                   help="scale each colour picture to its own largest flow (default: one scale for the whole "
                        "video, its largest flow, or --max-flow)")
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

    i = sub.add_parser("info", help="how fastflow was built and which GPUs it sees; or what a checkpoint holds")
    i.add_argument("--json", action="store_true")
    i.add_argument("--checkpoint", help="check a downloaded checkpoint file: size, sha256, tensors, parameters, "
                                        "and whether it is FlowNet2-S")
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
