"""Per-layer profile of fastflow's CPU forward, fp32 and bf16 side by side, against the CPU's
practical matmul peaks (torch.mm 2048^3 in fp32 and bf16).

    python benchmarks/cpu_layers.py [--size 384x512] [--batch 1] [--repeats 15] [--threads 2]

Each round runs the whole layer sequence once per precision (interleaved); a layer's figure is
its median over the rounds. FLOPs count the useful multiply-adds (unpadded channels), 2 per MAC.
A deconv row includes building its concat buffer (the deconvolution writes its slice in place; the
skip connection and the upsampled flow are copied in). The sum of the layers is close to, but not,
the model's time (no Python-level forward around it).
"""
import argparse
import statistics
import time

import torch

import fastflow
from fastflow.samples import sample_pair
from fastflow.model import cpu as model_cpu
from fastflow.network import DECODER, ENCODER, FLOW_HEADS


def layer_flops(h, w, batch):
    """{layer: FLOPs} for one forward at h x w."""
    f = {}
    for name, cin, cout, k, s in ENCODER:
        h, w = (h + s - 1) // s, (w + s - 1) // s
        f[name] = 2 * batch * h * w * cout * cin * k * k
    for (dec, dcin, dcout), (pred, pcin, up) in zip(DECODER + ((None, 0, 0),), FLOW_HEADS):
        f[pred] = 2 * batch * h * w * 2 * pcin * 9
        if up is not None:
            f[up] = 2 * batch * h * w * 16 * 2 * 2
            f[dec] = 2 * batch * h * w * 16 * dcin * dcout
        h, w = 2 * h, 2 * w
    return f


def run_layers(model, x, dtype, clock):
    """One forward through the model's own CPU forward (``fastflow.model.cpu.run``), each step
    timed; returns {layer: ms}."""
    b, _, _, h, w = x.shape
    plan = model._cpu_plan((b, 6, h, w))
    T = {}

    def timed(name, fn, *a):
        t0 = clock()
        r = fn(*a)
        T[name] = (clock() - t0) * 1e3
        return r

    model_cpu.run(plan.params, x, model.rgb_max, model.div_flow, plan.compute_dtype, on_layer=timed)
    return T


def mm_peak(dtype, clock, n=2048, repeats=7):
    """GFLOP/s of the best of ``repeats`` torch.mm n^3 (the practical peak the layers are held to)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        torch.mm(a, b)
        best = min(best, clock() - t0)
    return 2 * n**3 / best / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="384x512")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time (all threads summed); steadier on a shared machine, "
                         "equal to wall time only with --threads 1 on an otherwise idle core")
    args = ap.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    torch.manual_seed(0)
    state = fastflow.FlowNet2S().state_dict()
    models = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        m = fastflow.FlowNet2S().eval()
        m.load_state_dict(state)
        models[name] = (m.to(dt), dt)
    x = sample_pair(h, w, args.batch)
    times = {k: {} for k in models}
    with torch.no_grad():
        for m, dt in models.values():
            for _ in range(3):
                run_layers(m, x, dt, clock)
        for _ in range(args.repeats):
            for k, (m, dt) in models.items():
                for layer, ms in run_layers(m, x, dt, clock).items():
                    times[k].setdefault(layer, []).append(ms)
    flops = layer_flops(h, w, args.batch)
    peaks = {"fp32": mm_peak(torch.float32, clock), "bf16": mm_peak(torch.bfloat16, clock)}
    print(f"FlowNet2-S CPU layers, {h}x{w} batch {args.batch}, {torch.get_num_threads()} threads, "
          f"bf16 computes in {model_cpu.cpu_compute_dtype(torch.bfloat16)}; medians of {args.repeats} interleaved rounds, "
          f"{args.clock} clock")
    print(f"torch.mm 2048^3 peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    print(f"| layer | GFLOP | fp32 ms | fp32 GFLOP/s | bf16 ms | bf16 GFLOP/s | bf16 % of mm peak |")
    print("|---|---|---|---|---|---|---|")
    tot = {k: 0.0 for k in models}
    for layer in times["fp32"]:
        med = {k: statistics.median(times[k][layer]) for k in models}
        for k in models:
            tot[k] += med[k]
        g = flops.get(layer)
        if g:
            rate = {k: g / med[k] / 1e6 for k in models}
            print(f"| {layer} | {g / 1e9:.3f} | {med['fp32']:.2f} | {rate['fp32']:.0f} | {med['bf16']:.2f} | "
                  f"{rate['bf16']:.0f} | {100 * rate['bf16'] / peaks['bf16']:.0f}% |")
        else:
            print(f"| {layer} | - | {med['fp32']:.2f} | - | {med['bf16']:.2f} | - | - |")
    g = sum(flops.values())
    print(f"| **sum** | {g / 1e9:.2f} | {tot['fp32']:.1f} | {g / tot['fp32'] / 1e6:.0f} | {tot['bf16']:.1f} | "
          f"{g / tot['bf16'] / 1e6:.0f} | {100 * g / tot['bf16'] / 1e6 / peaks['bf16']:.0f}% |")


if __name__ == "__main__":
    main()
