"""Per-layer microbenchmark: fastflow's fused kernels vs cuDNN through PyTorch.

Every FlowNet2-S encoder conv, flow head and deconv (rows from fastflow.network), at one batch and
image size, in one precision, each on the kernel the fused forward runs for it: conv2d_lrelu,
flow_head (predict_flow + its 2->2 flow upsample, written into the next concat buffer), deconv_lrelu.
The cuDNN side is what an eager channels_last model runs: F.conv2d / conv_transpose2d without bias,
then a separate bias add and leaky_relu (flow heads: conv + bias, then the upsample), same dtype
(TF32 per the flags for fp32). fastflow writes into a channel slice of the concat buffer like the
fused forward does.
Timing: CUDA events around a CUDA graph of `--iters` back-to-back calls (after `--warmup` calls), replayed `--reps`
times; the median per call is reported in ms with the achieved TFLOP/s (useful MACs x 2).

    python benchmarks/bench_conv_layers.py --precision fp16 --batch 1 --height 384 --width 512
    python benchmarks/bench_conv_layers.py --precision tf32 --json results.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F

from fastflow import network, ops

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def layers(height: int, width: int):
    """(name, kind, Cin, Cx, Cout, k, stride, h, w, out channels, out offset) of every layer, kind
    "conv", "flow" or "deconv". Convs write their own tensor; deconvs and the flow heads' upsampled
    flow their slice of the padded concat buffer (predict_flow2, with no upsample: nothing)."""
    rows = []
    ups = {l.reads: l for l in network.LAYERS if l.kind == "flow_up"}
    for kind in ("conv", "flow", "deconv"):
        for l in network.LAYERS:
            if l.kind != kind:
                continue
            h, w = l.input_size(height, width) if kind == "conv" else (height // l.scale, width // l.scale)
            target = ups.get(l.name) if kind == "flow" else l if kind == "deconv" else None
            ctot, off = (network.CONCAT[target.feeds].padded, target.offset) if target else (l.cout, 0)
            rows.append((l.name, kind, l.cin, l.cin_padded, l.cout, l.kernel, l.stride, h, w, ctot, off))
    return rows


def time_ms(fn, warmup: int, iters: int, reps: int):
    """Median ms per call of ``fn`` and how it was timed. ``iters`` calls are captured in one CUDA
    graph and the graph is replayed between events, so the figure is the GPU's time, not the
    ~50-90 us of Python and dispatch per call that a plain loop measures once the kernels are
    faster than the host (the first H200 record's table was that: every layer 76-98 us for
    fastflow, 43-52 us for cuDNN, whatever its FLOPs). Falls back to the plain loop, and says so,
    if the op cannot be captured."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    how = "cuda graph"
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(iters):
                fn()
        run = graph.replay
        run()
    except RuntimeError as e:  # not capturable: time the launches, and say so in the row
        torch.cuda.synchronize()
        how = f"eager loop (capture failed: {str(e).splitlines()[0][:120]})"

        def run():
            for _ in range(iters):
                fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / iters)
    return statistics.median(times), how


def bench_layer(row, batch, prec, args):
    name, kind, cin, cx, cout, k, s, h, w, ctot, off = row
    dt = DTYPES[prec]
    dev = "cuda"
    x = torch.randn(batch, cx, h, w, device=dev, dtype=dt).contiguous(memory_format=torch.channels_last)
    x[:, cin:] = 0
    b = torch.randn(cout, device=dev, dtype=dt)
    tf32 = prec == "tf32"
    if kind == "conv":
        wt = torch.randn(cout, cx, k, k, device=dev, dtype=dt) / (cx * k * k) ** 0.5
        packed = ops.pack_conv_weight(wt, dt)
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        flops = network.conv_flops(batch, cin, cout, h, w, k, s)

        def ours():
            ops.conv2d_lrelu(x, packed, b, s, 0.1, out=out, out_channel_offset=off, allow_tf32=tf32)

        def cudnn():
            y = F.conv2d(x, wt, None, stride=s, padding=(k - 1) // 2)
            F.leaky_relu(y + b.view(1, -1, 1, 1), 0.1)
    elif kind == "flow":
        wt = torch.randn(2, cx, 3, 3, device=dev, dtype=dt) / (cx * 9) ** 0.5
        upw = torch.randn(2, 2, 4, 4, device=dev, dtype=dt) if ctot > 2 else None
        packed = ops.pack_flow_head(wt[:, :cin], b, upw, cin_padded=cx)
        ho, wo = (2 * h, 2 * w) if upw is not None else (h, w)
        flops = network.conv_flops(batch, cin, 2, h, w, 3, 1)
        flops += network.deconv_flops(batch, 2, 2, h, w) if upw is not None else 0.0

        def ours():
            if upw is None:
                ops.flow_head(x, packed)
            else:
                ops.flow_head(x, packed, out=out, out_channel_offset=off)

        def cudnn():
            flow = F.conv2d(x, wt, None, padding=1) + b.view(1, -1, 1, 1)
            if upw is not None:
                F.conv_transpose2d(flow, upw, None, stride=2, padding=1)
    else:
        wt = torch.randn(cx, cout, 4, 4, device=dev, dtype=dt) / (cx * 4) ** 0.5
        packed = ops.pack_deconv_weight(wt, dt)
        ho, wo = 2 * h, 2 * w
        flops = network.deconv_flops(batch, cin, cout, h, w)

        def ours():
            ops.deconv_lrelu(x, packed, b, 0.1, out=out, out_channel_offset=off, allow_tf32=tf32)

        def cudnn():
            y = F.conv_transpose2d(x, wt, None, stride=2, padding=1)
            F.leaky_relu(y + b.view(1, -1, 1, 1), 0.1)

    out = torch.empty(batch, ctot, ho, wo, device=dev, dtype=dt).contiguous(memory_format=torch.channels_last)
    ms_ours, how_ours = time_ms(ours, args.warmup, args.iters, args.reps)
    ms_cudnn, how_cudnn = time_ms(cudnn, args.warmup, args.iters, args.reps)
    return {
        "layer": name, "kind": kind, "precision": prec, "batch": batch, "height": args.height, "width": args.width,
        "in_hw": [h, w], "cin": cin, "cout": cout, "k": k, "stride": s, "gflop": flops / 1e9,
        "fastflow_ms": ms_ours, "cudnn_ms": ms_cudnn,
        "fastflow_tflops": flops / ms_ours / 1e9, "cudnn_tflops": flops / ms_cudnn / 1e9,
        "speedup": ms_cudnn / ms_ours, "timing": {"fastflow": how_ours, "cudnn": how_cudnn},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", choices=sorted(DTYPES), default="fp16")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_conv_layers: no CUDA GPU available; nothing to benchmark.")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
    torch.backends.cudnn.benchmark = True
    results = []
    print(f"{torch.cuda.get_device_name()}  {args.precision}  batch {args.batch}  {args.height}x{args.width}")
    print(f"{'layer':<14}{'GFLOP':>8}{'fastflow ms':>13}{'TFLOP/s':>9}{'cuDNN ms':>10}{'TFLOP/s':>9}{'speedup':>9}")
    with torch.no_grad():
        for row in layers(args.height, args.width):
            r = bench_layer(row, args.batch, args.precision, args)
            results.append(r)
            print(f"{r['layer']:<14}{r['gflop']:>8.2f}{r['fastflow_ms']:>13.4f}{r['fastflow_tflops']:>9.1f}"
                  f"{r['cudnn_ms']:>10.4f}{r['cudnn_tflops']:>9.1f}{r['speedup']:>9.2f}")
    tot_ours = sum(r["fastflow_ms"] for r in results)
    tot_cudnn = sum(r["cudnn_ms"] for r in results)
    print(f"{'total':<14}{sum(r['gflop'] for r in results):>8.2f}{tot_ours:>13.4f}{'':>9}{tot_cudnn:>10.4f}{'':>9}"
          f"{tot_cudnn / tot_ours:>9.2f}")
    if args.json:
        meta = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}
        with open(args.json, "w") as f:
            json.dump({**meta, "layers": results}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
