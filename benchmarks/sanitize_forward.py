"""A small fused forward (and each op once) for compute-sanitizer: memcheck, racecheck, initcheck,
synccheck. Eager kernels (no graph) first, so a report names the kernel; then one graph replay.

    compute-sanitizer --tool memcheck python benchmarks/sanitize_forward.py [--size 64x128] [--dtypes fp16,fp32]

Kept small: under racecheck every shared-memory access is tracked (10-100x slower). ``--device cpu``
runs the same calls on the CPU versions of the ops (a check of this script, not of the kernels).
"""
import argparse
import sys

DTYPES = ("fp32", "fp16", "bf16")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="64x128", help="HxW of the forward, multiples of 64")
    ap.add_argument("--dtypes", default="fp16,fp32", help=f"comma-separated subset of {','.join(DTYPES)}")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = ap.parse_args(argv)
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size must be HxW, got {args.size!r}")
    if h <= 0 or w <= 0 or h % 64 or w % 64:
        ap.error(f"--size must be positive multiples of 64, got {args.size}")
    dtypes = [d for d in args.dtypes.split(",") if d]
    if not dtypes or any(d not in DTYPES for d in dtypes):
        ap.error(f"--dtypes must name some of {','.join(DTYPES)}, got {args.dtypes!r}")

    import torch

    import fastflow
    from fastflow import ops

    torch.manual_seed(0)
    dev = torch.device(args.device)
    pair = torch.rand(1, 3, 2, h, w, device=dev) * 255
    x = torch.randn(2, 3, 33, 47, device=dev)
    flow = torch.randn(2, 2, 33, 47, device=dev) * 5
    ops.warp(x, flow, "zeros", return_mask=True)
    ops.warp(x.half().contiguous(memory_format=torch.channels_last), flow, "border")
    ops.upsample_flow(torch.randn(1, 2, 9, 13, device=dev))
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    for name in dtypes:
        model = fastflow.FlowNet2S().to(dev).eval().to(table[name])
        with torch.no_grad():
            if dev.type == "cuda":
                model.use_cuda_graph = False
                model(pair)
                model.use_cuda_graph = True
                model(pair)
            else:
                model._forward_fused(pair, graph=False)
        print(f"sanitize_forward: {name} {h}x{w} done", flush=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    print("sanitize_forward: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
