"""``fastflow extract INPUT... --out DIR``: flow for whole video datasets, resumable.

The argparse side only: everything else is the library's ``fastflow.extraction.extract``, whose
ValueError / FileNotFoundError / OSError (another run holding ``--out``) become one error line in
``fastflow.cli.main``. SIGINT / SIGTERM end with one line saying how to resume, exit 128 + signal."""
from __future__ import annotations

import sys

from ..extraction.options import FORMATS
from ._common import CLIError, add_model_args


def register(sub) -> None:
    p = sub.add_parser("extract", help="flow for whole video datasets, resumable (one machine, --workers, or --ray)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders of frames, or @list.txt (one path a line)")
    p.add_argument("--out", required=True, help="output folder: OUT/<input name>/ per input (one run at a time)")
    p.add_argument("--format", choices=FORMATS, default="flo",
                   help="flo (default), kitti (16-bit png), denseflow (mmaction2 flow_x/flow_y jpg), "
                        "npy (one float16 (N-1, H, W, 2) array per input)")
    p.add_argument("--bound", type=float, default=20.0, help="denseflow: flow in [-bound, bound] maps to 0..255 "
                                                              "(default 20)")
    p.add_argument("--rgb", action="store_true", help="also write the frames as img_00001.jpg (at --size)")
    p.add_argument("--step", type=int, default=1, help="pair frame i with frame i+STEP (default 1)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--size", help="run at HEIGHTxWIDTH (frames resized first; flow is in pixels of that size)")
    g.add_argument("--short-side", type=int, help="resize frames so the shorter side is this, keeping the aspect")
    p.add_argument("--batch", type=int, default=8, help="pairs per forward (default 8)")
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes, one model each (GPUs round robin); with --ray: Ray workers")
    p.add_argument("--ray", nargs="?", const=True, default=None, metavar="ADDRESS",
                   help="run on a Ray cluster (ADDRESS, or a local Ray when omitted); needs Ray: pip install '.[cluster]'")
    p.add_argument("--root", help="name outputs by their path relative to ROOT (keeps class folders)")
    p.add_argument("--overwrite", action="store_true", help="redo inputs finished earlier with other options")
    p.add_argument("--report", help="write the summary and per-input results as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..extraction import ExtractInterrupted, extract, format_summary

    if args.step < 1:
        raise CLIError(f"--step must be at least 1, got {args.step}")
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be at least 1, got {args.workers}")
    if args.ray is not None:
        from ..extraction.rayrun import import_ray

        import_ray()  # ImportError with the install hint, before the model loads
    try:
        summary = extract(args.inputs, args.out, checkpoint=None if args.random_weights else args.checkpoint,
                          random_weights=args.random_weights, format=args.format, step=args.step,
                          size=args.size, short_side=args.short_side, bound=args.bound, rgb=args.rgb,
                          batch=args.batch, device=args.device, precision=args.precision, workers=args.workers,
                          ray=args.ray, root=args.root, overwrite=args.overwrite, report=args.report,
                          progress=not args.quiet)
    except ExtractInterrupted as e:
        print(f"fastflow: {e}", file=sys.stderr, flush=True)
        return 128 + int(e.signum)
    print(format_summary(summary))
    if args.report:
        print(f"wrote {args.report}")
    return 1 if summary["failed"] else 0
