"""A forecast (a model, not a measurement) of the fused CUDA forward's time on an H200/H100, per
layer and in total, from the plans (``plans``), the kernels' occupancy (``occupancy``) and a few
machine constants written down below with their sources. The GPU suite records it beside the
measured figures, so each GPU run checks the model and ``benchmarks/NOTES.md`` explains the gap.

Per implicit-GEMM launch: grid = M tiles x N tiles x Z x splits blocks; each SM runs
``blocks_per_sm`` of them at once, sharing its matrix rate, so the compute time is
``ceil(grid / (SMs x blocks_per_sm))`` rounds of ``blocks_per_sm`` blocks' issued FLOPs at the SM's
rate (partial tiles and K padding are issued work: ``mma_efficiency`` = useful / issued); the memory
time is the bytes the launch must move at the measured copy bandwidth; a launch takes the larger
of the two plus a graph node's fixed cost. Split-K adds its reduce (memory-bound on the fp32
partials). Flow heads, prologue and output upsample are counted as memory-bound.

What the model leaves out, on purpose: it assumes an SM reaches its mma.sync rate at any
occupancy, with no pipeline stalls, so occupancy enters only through wave quantisation. The gap
between a GPU record's measured time and this forecast is therefore the kernels' issue efficiency
(latency hiding, stalls), which is what a kernel change should close.
"""
from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Optional

from ..network import CONCAT, LAYERS, pad8
from .occupancy import ARCHS, occupancy
from .plans import IgemmLaunch, model_launches, plan_of

__all__ = ["CONSTANTS", "IGEMM_KERNELS", "LayerForecast", "forecast_layers", "forecast_forward"]

# Machine constants (H200 SXM; the H100's arithmetic rates). Each is a lead until a GPU run
# measures it; `benchmarks/NOTES.md` records the comparison.
CONSTANTS = {
    # dense tensor rates from NVIDIA's H100/H200 SXM datasheet (TFLOP/s, no sparsity)
    "peak_tflops": {"fp16": 989.0, "bf16": 989.0, "tf32": 494.0, "fp32": 67.0},
    # the share of the dense rate that warp-level mma.sync (m16n8k16 / m16n8k8) reaches on Hopper,
    # where the full rate needs wgmma: a lead from public microbenchmarks (~60-70%); FFMA: 1.0
    "mma_sync_fraction": {"fp16": 0.66, "bf16": 0.66, "tf32": 0.66, "fp32": 1.0},
    # device-to-device copy measured on an H200 of this workplace (KINDS.md, 2026-10-28): 4.3 TB/s
    "hbm_bytes_per_s": 4.3e12,
    # fixed cost of one kernel node in a replayed CUDA graph (a lead: ~1-3 us on Hopper)
    "node_seconds": 2.0e-6,
}

# Per tile config of the igemm kernels (csrc igemm.cuh TileConfig / KernelTraits): threads per
# block and dynamic shared memory (kStages x (BM + BN) rows x kRowBytes); tests check these
# against the header. Registers come from the build (ptxas), passed in by the caller.
IGEMM_STAGES = 4
IGEMM_ROW_BYTES = 64 + 16
IGEMM_KERNELS = {
    0: {"bm": 128, "bn": 128, "threads": 256, "smem": IGEMM_STAGES * (128 + 128) * IGEMM_ROW_BYTES},
    1: {"bm": 64, "bn": 64, "threads": 128, "smem": IGEMM_STAGES * (64 + 64) * IGEMM_ROW_BYTES},
}
_ELEM = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2}


class LayerForecast(NamedTuple):
    layer: str
    kind: str
    config: Optional[int]
    splits: int
    grid: int
    blocks_per_sm: int
    waves: float
    tail_efficiency: float     # grid / (full rounds x SMs x blocks_per_sm)
    mma_efficiency: float      # useful MACs / issued MACs
    gflop_useful: float
    gflop_issued: float
    mbytes: float
    compute_us: float
    memory_us: float
    time_us: float
    bound: str


def _conv_rows(l: IgemmLaunch) -> int:
    if l.deconv:
        return l.batch * l.height * l.width
    pad = (l.ksize - 1) // 2
    return l.batch * ((l.height + 2 * pad - l.ksize) // l.stride + 1) * ((l.width + 2 * pad - l.ksize) // l.stride + 1)


def _igemm(l: IgemmLaunch, precision: str, arch: str, regs: Dict[int, int], lib=None) -> List[LayerForecast]:
    a = ARCHS[arch]
    plan = plan_of(l, precision, a.sms, lib=lib)
    cfg = IGEMM_KERNELS[plan.config]
    occ = occupancy(arch, cfg["threads"], regs[plan.config], cfg["smem"])
    z = 4 if l.deconv else 1
    taps = 4 if l.deconv else l.ksize * l.ksize
    m, n = _conv_rows(l), l.cout
    tm, tn = -(-m // plan.bm), -(-n // plan.bn)
    grid = tm * tn * z * plan.splits
    useful = m * n * taps * l.cin * z
    issued = tm * tn * z * plan.bm * plan.bn * plan.k_tiles * plan.bk
    slots = a.sms * max(occ.blocks_per_sm, 1)
    rounds = math.ceil(grid / slots)
    rate = CONSTANTS["peak_tflops"][precision] * CONSTANTS["mma_sync_fraction"][precision] * 1e12 / a.sms
    per_block_flop = 2.0 * issued / (tm * tn * z * plan.splits)
    compute = rounds * max(occ.blocks_per_sm, 1) * per_block_flop / rate
    e = _ELEM[precision]
    nbytes = (l.batch * l.height * l.width * l.channels + n * taps * l.channels * z / (1 if l.deconv else 1)
              + m * z * n) * e
    if plan.splits > 1:
        nbytes += plan.splits * z * m * n * 4  # fp32 partials written (read again by the reduce)
    memory = nbytes / CONSTANTS["hbm_bytes_per_s"]
    t = max(compute, memory) + CONSTANTS["node_seconds"]
    out = [LayerForecast(l.layer, "deconv" if l.deconv else "conv", plan.config, plan.splits, grid,
                         occ.blocks_per_sm, grid / slots, grid / (rounds * slots), useful / issued,
                         2e-9 * useful, 2e-9 * issued, nbytes / 1e6, compute * 1e6, memory * 1e6, t * 1e6,
                         "compute" if compute >= memory else "memory")]
    if plan.splits > 1:
        rb = plan.splits * z * m * n * 4 + z * m * n * e
        rt = rb / CONSTANTS["hbm_bytes_per_s"] + CONSTANTS["node_seconds"]
        out.append(LayerForecast(l.layer + " (split-K reduce)", "reduce", None, 1, 0, 0, 0.0, 1.0, 1.0, 0.0, 0.0,
                                 rb / 1e6, 0.0, rb / CONSTANTS["hbm_bytes_per_s"] * 1e6, rt * 1e6, "memory"))
    return out


def _memory_only(name: str, kind: str, nbytes: float, flop: float = 0.0) -> LayerForecast:
    mem = nbytes / CONSTANTS["hbm_bytes_per_s"]
    t = mem + CONSTANTS["node_seconds"]
    return LayerForecast(name, kind, None, 1, 0, 0, 0.0, 1.0, 1.0, flop * 1e-9, flop * 1e-9, nbytes / 1e6, 0.0,
                         mem * 1e6, t * 1e6, "memory")


def forecast_layers(height: int, width: int, batch: int, precision: str, arch: str = "sm_90",
                    regs: Optional[Dict[int, int]] = None, lib=None) -> List[LayerForecast]:
    """Every kernel of one fused forward, in order, with its forecast. ``regs``: registers per
    thread of the igemm kernel of each tile config in this precision (from ptxas); default: the
    sm_90 build of the first H200 record's tree (config 0: 144, 1: 106; strict fp32: 128)."""
    if regs is None:
        regs = {0: 144, 1: 128 if precision == "fp32" else 106}
    e = _ELEM[precision]
    rows = [_memory_only("prologue", "prologue", batch * height * width * (6 * 4 + pad8(6) * e))]
    launches = {l.layer: l for l in model_launches(height, width, batch)}
    for layer in LAYERS:
        if layer.kind in ("conv", "deconv"):
            rows += _igemm(launches[layer.name], precision, arch, regs, lib)
        elif layer.kind == "flow":
            h, w = layer.input_size(height, width)
            src = CONCAT[layer.reads].padded if layer.reads in CONCAT else pad8(layer.cin)
            flop = 2.0 * batch * h * w * 2 * layer.cin * 9
            rows.append(_memory_only(layer.name, "flow head", batch * h * w * (src * e + 2 * 4 * 4), flop))
    rows.append(_memory_only("output upsample", "output", batch * (height // 4) * (width // 4) * 2 * 4
                             + batch * height * width * 2 * 4))
    return rows


def forecast_forward(height: int, width: int, batch: int, precision: str, arch: str = "sm_90",
                     regs: Optional[Dict[int, int]] = None, lib=None) -> dict:
    """The whole forward: total time, pairs/s and the rows."""
    rows = forecast_layers(height, width, batch, precision, arch, regs, lib)
    total = sum(r.time_us for r in rows)
    return {"height": height, "width": width, "batch": batch, "precision": precision, "arch": arch,
            "total_ms": total / 1e3, "pairs_per_s": batch / (total * 1e-6), "kernels": len(rows),
            "constants": CONSTANTS, "rows": [r._asdict() for r in rows]}
