"""GPU evidence without a GPU: per igemm kernel the registers, spills and shared memory of the
built sm_90 and sm_80 code (ptxas) and the resulting occupancy; per layer of FlowNet2-S the plan,
grid, waves, tail and mma efficiency; and a labelled forecast of the fused forward on an H200
(fastflow.perf.forecast), compared with a GPU record's measured figures when one is given.

    python benchmarks/gpu_report.py [--size 448x1024] [--batch 1,16] [--precision fp16,tf32,fp32]
                                    [--record benchmarks/results/X.json] [--json report.json]

Registers come from compiling the igemm kernel file with the installed nvcc (`-Xptxas -v`); without
nvcc the report says so and uses the figures of the last recorded build.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from fastflow.perf.forecast import CONSTANTS, IGEMM_KERNELS, forecast_forward
from fastflow.perf.occupancy import ARCHS, occupancy
from fastflow.util import parse_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = {"fp16": 0, "bf16": 1, "tf32": 2, "fp32": 3}  # csrc MathMode
# sm_90 ptxas figures of csrc tree 43205b9e (the first H200 record), used when nvcc is missing
FALLBACK_REGS = {(0, 0): 144, (1, 0): 106, (0, 1): 144, (1, 1): 106, (0, 2): 130, (1, 2): 106, (1, 3): 128}
# ptxas names the kernel mangled: igemm_kernel<cfg, (MathMode)m> -> ...igemm_kernelILi<cfg>ELNS_8MathModeE<m>E...
KERNEL_RE = re.compile(r"Compiling entry function '\S*igemm_kernelILi(\d+)ELNS_\d*MathModeE(\d)E")
USE_RE = re.compile(r"Used (\d+) registers")
SPILL_RE = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def igemm_source() -> str:
    found = sorted(glob.glob(os.path.join(ROOT, "csrc", "**", "igemm.cu"), recursive=True))
    if not found:
        raise FileNotFoundError("no csrc/**/igemm.cu in this tree")
    return found[0]


def ptxas_usage(arch: str):
    """{(config, mode): {"registers", "stack", "spill_stores", "spill_loads"}} of the igemm kernels
    built for ``arch`` (e.g. "sm_90"), or None without nvcc."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    src = igemm_source()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [nvcc, "-std=c++17", "-O3", f"-arch={arch}", "--expt-relaxed-constexpr", "-DFASTFLOW_WITH_CUDA=1",
               "-I", os.path.join(ROOT, "csrc"), "-I", os.path.dirname(src), "-c", src, "-o",
               os.path.join(tmp, "k.o"), "-Xptxas", "-v"]
        p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"nvcc failed on {src}: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
    out, key = {}, None
    for line in p.stderr.splitlines():
        m = KERNEL_RE.search(line)
        if m:
            key = (int(m.group(1)), int(m.group(2)))
            out[key] = {}
            continue
        if key is None:
            continue
        m = SPILL_RE.search(line)
        if m:
            out[key].update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = USE_RE.search(line)
        if m:
            out[key]["registers"] = int(m.group(1))
            key = None
    return out


def kernel_table(usage_by_arch):
    rows = []
    for arch, usage in usage_by_arch.items():
        for (cfg, mode), u in sorted((usage or {}).items()):
            k = IGEMM_KERNELS[cfg]
            occ = occupancy(arch, k["threads"], u["registers"], k["smem"])
            rows.append({"arch": arch, "kernel": f"igemm_kernel<{cfg}, {next(p for p, v in MODES.items() if v == mode)}>",
                         "tile": f"{k['bm']}x{k['bn']}", "threads": k["threads"], "registers": u["registers"],
                         "spill_bytes": u.get("spill_stores", 0) + u.get("spill_loads", 0), "stack": u.get("stack", 0),
                         "smem_bytes": k["smem"], "blocks_per_sm": occ.blocks_per_sm, "warps_per_sm": occ.warps_per_sm,
                         "occupancy": occ.occupancy, "limited_by": occ.limited_by})
    return rows


def measured(record_path):
    """{(precision, batch, h, w): median ms} of fastflow rows in a GPU record."""
    if not record_path:
        return {}
    with open(record_path) as f:
        rec = json.load(f)
    return {(r["precision"], r["batch"], r["height"], r["width"]): r["median_ms"]
            for r in rec.get("bench", []) if r.get("impl") == "fastflow"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="448x1024")
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--precision", default="fp16,tf32,fp32")
    ap.add_argument("--record", help="a GPU record (benchmarks/results/*.json) to compare the forecast with")
    ap.add_argument("--json", help="write everything here")
    ap.add_argument("--layers", action="store_true", help="print the per-layer table of each forecast")
    args = ap.parse_args(argv)
    try:
        h, w = parse_size(args.size, 64)
        batches = [int(b) for b in args.batch.split(",") if b]
    except ValueError as e:
        ap.error(str(e))
    precisions = [p for p in args.precision.split(",") if p]
    if any(p not in MODES for p in precisions) or any(b < 1 for b in batches):
        ap.error("--precision takes fp16,bf16,tf32,fp32; --batch positive integers")
    usage = {arch: ptxas_usage(arch) for arch in ("sm_90", "sm_80")}
    source = "ptxas (this tree)" if usage["sm_90"] is not None else "recorded sm_90 build of csrc 43205b9e (no nvcc here)"
    if usage["sm_90"] is None:
        usage = {"sm_90": {k: {"registers": v} for k, v in FALLBACK_REGS.items()}}
    kernels = kernel_table(usage)
    print(f"igemm kernels ({source}):")
    print(f"{'arch':>6} {'kernel':>24} {'tile':>8} {'thr':>4} {'regs':>5} {'spill':>6} {'smem':>7} {'blk/SM':>6} "
          f"{'warps':>6} {'occ':>5}  limited by")
    for k in kernels:
        print(f"{k['arch']:>6} {k['kernel']:>24} {k['tile']:>8} {k['threads']:>4} {k['registers']:>5} {k['spill_bytes']:>6} "
              f"{k['smem_bytes']:>7} {k['blocks_per_sm']:>6} {k['warps_per_sm']:>6} {k['occupancy']:>5.0%}  {k['limited_by']}")
    meas = measured(args.record)
    forecasts = []
    print(f"\nforecast (a model, not a measurement; constants in fastflow/perf/forecast.py) of the fused forward at "
          f"{h}x{w} on an H200:")
    for prec in precisions:
        mode = MODES[prec]
        regs = {cfg: usage["sm_90"].get((cfg, mode), usage["sm_90"].get((1, mode), {"registers": 128}))["registers"]
                for cfg in IGEMM_KERNELS}
        for b in batches:
            f = forecast_forward(h, w, b, prec, "sm_90", regs)
            got = meas.get((prec, b, h, w))
            f["measured_ms"] = got
            forecasts.append(f)
            gap = f"; measured {got:.3f} ms = {got / f['total_ms']:.2f}x the forecast" if got else ""
            print(f"  {prec:>5} B={b:<3} {f['total_ms']:8.3f} ms ({f['pairs_per_s']:,.0f} pairs/s, {f['kernels']} kernels){gap}")
            if args.layers:
                for r in f["rows"]:
                    if r["kind"] in ("conv", "deconv"):
                        print(f"      {r['layer']:>9} cfg {r['config']} split {r['splits']:>2} grid {r['grid']:>6} "
                              f"blk/SM {r['blocks_per_sm']} waves {r['waves']:6.2f} tail {r['tail_efficiency']:.2f} "
                              f"mma eff {r['mma_efficiency']:.2f} {r['time_us']:8.1f} us ({r['bound']})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"kernels": kernels, "register_source": source, "constants": CONSTANTS,
                       "archs": {k: v._asdict() for k, v in ARCHS.items()}, "forecasts": forecasts}, fh, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
