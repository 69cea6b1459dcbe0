"""What every subcommand shares: the user-error type, the model options, output-path checks."""
from __future__ import annotations

import os
import sys

EXIT_USAGE = 2


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def add_model_args(sp) -> None:
    """--checkpoint / --random-weights, --device, --precision."""
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", help="FlowNet2-S checkpoint (.pth.tar); default: $FASTFLOW_CHECKPOINT")
    g.add_argument("--random-weights", action="store_true",
                   help="no checkpoint: PyTorch's default initialisation from a fixed seed, to try the command "
                        "(the flow is meaningless; outputs say so)")
    sp.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    sp.add_argument("--precision", choices=["fp32", "tf32", "fp16", "bf16"], default=None,
                    help="fp16/bf16: 16-bit model (on the CPU bf16 runs oneDNN bf16 convolutions, fp16 computes "
                         "in fp32); tf32 / fp32: float32 model (default: tf32 on CUDA, fp32 on the CPU, "
                         "which has no TF32)")


def load_model(args):
    """The model the options name (fastflow.load_model)."""
    from ..load import load_model as _load

    random = bool(getattr(args, "random_weights", False))
    return _load(None if random else args.checkpoint, args.device, args.precision, random_weights=random)


def random_label(args) -> str:
    """Appended to what a command says it wrote, so random-weight outputs are never taken for flow."""
    return " [random weights: the flow is meaningless]" if getattr(args, "random_weights", False) else ""


def model_label(args) -> str:
    """What produced the flow, for reports: the checkpoint path or 'random weights'."""
    from ..load import find_checkpoint

    return "random weights (untrained)" if getattr(args, "random_weights", False) else find_checkpoint(args.checkpoint)


def read_image(path: str):
    """``fastflow.images.read_image`` with its errors as CLI errors."""
    from ..images import read_image

    try:
        return read_image(path)
    except ValueError as e:
        raise CLIError(str(e)) from None


def write_png(path: str, rgb) -> None:
    from PIL import Image

    ensure_parent(path)
    Image.fromarray(rgb).save(path)


def ensure_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CLIError(f"output folder does not exist: {parent}")


def name_limit(folder: str) -> int:
    """The longest file name (bytes) the file system holding ``folder`` (or its nearest existing
    parent) allows."""
    folder = os.path.abspath(folder)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def check_name(name: str, folder: str) -> None:
    limit = name_limit(folder)
    if len(os.fsencode(name)) > limit:
        raise CLIError(f"output file name too long ({len(os.fsencode(name))} bytes, the file system allows "
                       f"{limit}): {name[:48]}...")


def check_output_file(path: str) -> None:
    """Fail before the network runs if ``path`` cannot be written."""
    ensure_parent(path)
    if os.path.isdir(path):
        raise CLIError(f"{path} is a folder; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    check_name(os.path.basename(path), parent)
    if not os.access(parent, os.W_OK):
        raise CLIError(f"cannot write to {parent} (permission denied)")


# Above about this many pixels at network size, a CPU forward takes many seconds: say so.
_CPU_NOTE_PIXELS = 4_000_000


def size_note(device, h: int, w: int) -> None:
    from ..api import network_size

    h64, w64 = network_size(h, w)
    if device.type == "cpu" and h64 * w64 > _CPU_NOTE_PIXELS:
        print(f"fastflow: note: {w}x{h} images run at {w64}x{h64} ({h64 * w64 / 1e6:.0f} megapixels); on the CPU "
              "that takes tens of seconds or more per pair (--device cuda, or smaller images, is faster)",
              file=sys.stderr, flush=True)
