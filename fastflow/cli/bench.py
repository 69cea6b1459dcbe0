"""``fastflow bench``: fastflow against the PyTorch reference (and eager fp16, torch.compile), one interleaved run."""
from __future__ import annotations

import json
import os

from ..precision import PRECISIONS
from ..util import parse_size
from ._common import CLIError


def register(sub) -> None:
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
    b.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..bench import bench_environment, format_table, rows_to_dicts, run_model_bench
    from ..load import find_checkpoint, resolve_device

    device = resolve_device(args.device)
    size = parse_size(args.size, 64) if args.size else ((448, 1024) if device.type == "cuda" else (384, 512))
    ckpt = find_checkpoint(args.checkpoint) if (args.checkpoint or os.environ.get("FASTFLOW_CHECKPOINT")) else None
    precisions = [p for p in (args.precision or "").split(",") if p]
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise CLIError(f"--precision takes a comma-separated list of fp32, tf32, fp16, bf16; got {bad[0]!r}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    env = bench_environment(device)
    where = env["device"] + ("" if device.type == "cuda" else f", {env['threads']} threads")
    log(f"fastflow bench: FlowNet2-S {size[0]}x{size[1]}, batch {args.batch}, on {where}; fastflow {env['fastflow']}"
        f" ({env['commit'] or 'commit unknown'}), torch {env['torch']}")
    if "cpu_paths" in env:
        log("fastflow CPU paths: " + "; ".join(f"{p}: {path}" for p, path in env["cpu_paths"].items()))
    rows = run_model_bench(size[0], size[1], args.batch, device, ckpt, warmup=args.warmup, repeats=args.repeats,
                           include_compile=args.compile, log=log, precisions=precisions or None)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(env, bench=rows_to_dicts(rows)), f, indent=1)
        print(f"wrote {args.json}")
    return 0
