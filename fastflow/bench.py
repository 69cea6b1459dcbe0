"""The model benchmark behind ``fastflow bench``, ``benchmarks/`` and ``benchmarks/gpu_suite.sh``.

Every implementation runs in the same process on the same inputs: a real photograph (the
public-domain NASA "astronaut" picture shipped in ``fastflow/data``) cropped twice with a small
offset, so the pair has real texture and a known global motion.

Timing: every implementation is built and run once first (weight packing, compilation: the
compile time is reported apart), then warmed up until three consecutive runs agree within 10%
(at least ``warmup`` runs, at most ``warmup + 20`` or ~20 s). Then ``repeats`` rounds, each
running every implementation once, interleaved (the order rotates per round), rotating between
a few input tensors, synchronised (CUDA events on the GPU). A row gives the median, min, max and
interquartile range of its runs, and its speed-up over the first reference row is the median of
the per-round ratios (both timed in the same round, so a busy machine slows both). A wide spread
(IQR over 10% of the median) is flagged. Each row also gives the relative difference
``||out - ref|| / ||ref||`` from the reference fp32 output (TF32 off on the GPU).
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .precision import torch_tf32
from .network import flops_per_pair
from .samples import sample_pair
from .util import first_line

__all__ = ["BenchRow", "run_model_bench", "format_table", "bench_environment", "rows_to_dicts"]

@dataclass
class BenchRow:
    impl: str
    precision: str
    batch: int
    height: int
    width: int
    median_ms: float
    pairs_per_s: float
    tflops: float
    speedup_vs_reference: Optional[float] = None
    rel_diff: Optional[float] = None
    peak_mem_mb: Optional[float] = None
    min_ms: Optional[float] = None
    max_ms: Optional[float] = None
    iqr_ms: Optional[float] = None
    runs: int = 0
    warmup_runs: int = 0
    compile_s: Optional[float] = None
    wide_spread: bool = False
    extra: Dict[str, object] = field(default_factory=dict)


# A row whose interquartile range exceeds this fraction of its median is flagged.
WIDE_SPREAD = 0.10
_STABLE = 0.10  # warm-up ends when 3 consecutive runs are within 10% of each other
_WARMUP_EXTRA = 20
_WARMUP_MAX_S = 20.0


def _timed_call(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, cuda: bool) -> float:
    """Milliseconds of one synchronised call."""
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(x)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn(x)
    return (time.perf_counter() - t0) * 1e3


def _warm_up(fn, inputs: Sequence[torch.Tensor], warmup: int, cuda: bool) -> int:
    """Run fn until three consecutive runs agree within _STABLE (at least ``warmup`` runs, at most
    ``warmup + _WARMUP_EXTRA`` or ~_WARMUP_MAX_S seconds). Returns the number of runs."""
    times: List[float] = []
    t_end = time.perf_counter() + _WARMUP_MAX_S
    while True:
        times.append(_timed_call(fn, inputs[len(times) % len(inputs)], cuda))
        n = len(times)
        last = times[-3:]
        if n >= max(warmup, 3) and max(last) <= (1 + _STABLE) * min(last):
            return n
        if n >= warmup + _WARMUP_EXTRA or (n >= warmup and time.perf_counter() > t_end):
            return n


def _spread(times: Sequence[float]) -> Dict[str, float]:
    q = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "iqr_ms": q[2] - q[0]}


@contextlib.contextmanager
def _inductor_freezing():
    """Inductor freezing on (weights constant-folded and prepacked for oneDNN). It must be set on
    the config module: torch.compile(options={"freezing": True}) silently does not freeze."""
    import torch._inductor.config as cfg

    old = cfg.freezing
    cfg.freezing = True
    try:
        yield
    finally:
        cfg.freezing = old


def _candidates(device: torch.device, include_compile: bool):
    """(impl, precision, dtype, channels_last, tf32, compile, fastflow?) in report order; compile is
    None, "max-autotune" (CUDA) or "frozen" (CPU: inductor with freezing, default mode)."""
    if device.type == "cpu":
        rows = [
            ("reference", "fp32", torch.float32, False, None, None, False),  # PyTorch eager, defaults
            ("reference", "bf16", torch.bfloat16, True, None, None, False),  # the reference module in bf16, channels_last
        ]
        if include_compile:
            rows += [("inductor_frozen", "fp32", torch.float32, True, None, "frozen", False),
                     ("inductor_frozen", "bf16", torch.bfloat16, True, None, "frozen", False)]
        rows += [
            ("fastflow", "fp32", torch.float32, False, None, None, True),
            ("fastflow", "bf16", torch.bfloat16, False, None, None, True),
            ("fastflow", "fp16", torch.float16, False, None, None, True),  # computes in fp32 on the CPU
        ]
        return rows
    rows = [
        ("reference", "tf32", torch.float32, False, True, None, False),  # PyTorch defaults
        ("reference", "fp32", torch.float32, False, False, None, False),
        ("eager_fp16_cl", "fp16", torch.float16, True, None, None, False),
    ]
    if include_compile:
        rows.append(("torch_compile", "fp16", torch.float16, True, None, "max-autotune", False))
    rows += [
        ("fastflow", "fp32", torch.float32, False, False, None, True),
        ("fastflow", "tf32", torch.float32, False, True, None, True),
        ("fastflow", "fp16", torch.float16, False, None, None, True),
        ("fastflow", "bf16", torch.bfloat16, False, None, None, True),
    ]
    return rows


def _commit() -> Optional[str]:
    """The git commit of the fastflow source tree, when it is a checkout (else None)."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        r = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", "fastflow", "csrc"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    return r.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def _cpu_name() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> List[str]:
    """The CPU features that decide the CPU paths' speed (Linux; empty elsewhere)."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "avx512_vnni")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def bench_environment(device) -> Dict[str, object]:
    """What a benchmark record needs to be read later: versions, commit, the device."""
    from . import __version__

    device = torch.device(device)
    env: Dict[str, object] = {"fastflow": __version__, "commit": _commit(), "torch": torch.__version__,
                              "threads": torch.get_num_threads()}
    if device.type == "cuda":
        env["device"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    else:
        from .model.cpu import cpu_compute_dtype, cpu_isa_path

        env["device"] = f"CPU: {_cpu_name()}"
        env["cpu_count"] = os.cpu_count()
        env["cpu_flags"] = _cpu_flags()
        env["cpu_bf16_compute"] = str(cpu_compute_dtype(torch.bfloat16)).replace("torch.", "")
        env["cpu_paths"] = {p: cpu_isa_path(dt) for p, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16),
                                                              ("fp16", torch.float16))}
    return env


def run_model_bench(
    height: int,
    width: int,
    batch: int = 1,
    device="cpu",
    checkpoint: Optional[str] = None,
    warmup: int = 3,
    repeats: int = 10,
    include_compile: bool = False,
    only: Optional[Sequence[str]] = None,
    log: Callable[[str], None] = lambda s: None,
    precisions: Optional[Sequence[str]] = None,
) -> List[BenchRow]:
    """Benchmark fastflow against the reference (on CUDA also PyTorch eager fp16 and torch.compile;
    on the CPU PyTorch eager bf16 channels_last and, with ``include_compile``, frozen inductor).

    ``only``: impl names or ``impl:precision`` items to keep; ``precisions``: precisions to keep
    (the first reference row, the speed-up baseline, is always kept).
    """
    from .model import FlowNet2S

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    device = torch.device(device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    if checkpoint:
        base = FlowNet2S.from_checkpoint(checkpoint)
        log(f"weights: {checkpoint}")
    else:
        base = FlowNet2S().eval()
        log("weights: random (xavier init, seed 0); pass --checkpoint for the official ones")
    state = base.state_dict()
    inputs = [sample_pair(height, width, batch, device, variant=v) for v in range(3)]
    gflop = flops_per_pair(height, width) * batch / 1e9

    from .reference import FlowNet2S as Ref

    with torch.no_grad(), torch_tf32(False):
        oracle = Ref().to(device).eval()
        oracle.load_state_dict(state)
        ref_out = oracle(inputs[0]).float()
        del oracle

    cands = _candidates(device, include_compile)
    if not cuda and not include_compile:
        log("frozen inductor rows: pass --compile (compiles for ~20-60 s)")
    baseline_name = f"{cands[0][0]}:{cands[0][1]}"
    kept = []
    for c in cands:
        name = f"{c[0]}:{c[1]}"
        if only and c[0] not in only and name not in only:
            continue
        if precisions and c[1] not in precisions and name != baseline_name:
            continue
        kept.append(c)

    # Build every implementation and run it once (packing / compiling), then warm it up.
    live = []  # (row, call, tf32 context factory)
    freezing = _inductor_freezing() if (include_compile and not cuda) else contextlib.nullcontext()
    with freezing:
        for impl, precision, dtype, channels_last, tf32, compile_, is_fastflow in kept:
            if cuda:
                torch.cuda.synchronize()
                baseline = torch.cuda.memory_allocated(device)  # what earlier rows left alive
            try:
                model = (FlowNet2S() if is_fastflow else Ref()).to(device)
                model.load_state_dict(state)
                model = model.eval().to(dtype)
                if channels_last:
                    model = model.to(memory_format=torch.channels_last)
                fn = model
                if compile_ == "max-autotune":
                    fn = torch.compile(model, mode="max-autotune")
                elif compile_ == "frozen":
                    fn = torch.compile(model)

                def call(x, fn=fn, dtype=dtype, is_fastflow=is_fastflow):
                    if not is_fastflow:
                        x = x.to(dtype)
                    return fn(x)

                def tf(tf32=tf32):
                    return contextlib.nullcontext() if tf32 is None else torch_tf32(tf32)

                with torch.no_grad(), tf():
                    if cuda:
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats(device)
                    t0 = time.perf_counter()
                    out = call(inputs[0]).float()
                    if cuda:
                        torch.cuda.synchronize()
                    first_s = time.perf_counter() - t0
                    # Peak memory of this implementation alone, its weights included.
                    peak = (torch.cuda.max_memory_allocated(device) - baseline) / 2**20 if cuda else None
                    n_warm = _warm_up(call, inputs, warmup, cuda)
            except Exception as e:  # one failing backend must not hide the others' numbers
                what = "skipped" if compile_ else "failed"
                log(f"{impl} {precision}: {what}: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}")
                if compile_:
                    torch._dynamo.reset()
                continue
            diff = float((out - ref_out).norm() / ref_out.norm().clamp_min(1e-30))
            row = BenchRow(impl, precision, batch, height, width, 0.0, 0.0, 0.0, rel_diff=diff, peak_mem_mb=peak,
                           warmup_runs=n_warm, compile_s=first_s if compile_ else None)
            if compile_:
                log(f"{impl:>16} {precision:>5}: compiled in {first_s:.1f} s (first call), then {n_warm} warm-up runs")
            else:
                log(f"{impl:>16} {precision:>5}: ready ({n_warm} warm-up runs)")
            live.append((row, call, tf))
            del model, fn, out

        # Interleaved rounds: every implementation once per round, the order rotating.
        times: List[List[float]] = [[] for _ in live]
        failed = set()
        for r in range(repeats):
            x = inputs[r % len(inputs)]
            order = list(range(len(live)))
            k = r % max(1, len(order))
            for i in order[k:] + order[:k]:
                if i in failed:
                    continue
                row, call, tf = live[i]
                try:
                    with torch.no_grad(), tf():
                        times[i].append(_timed_call(call, x, cuda))
                except Exception as e:
                    log(f"{row.impl} {row.precision}: failed: {type(e).__name__}: {first_line(e)[:200]}")
                    failed.add(i)
    rows: List[BenchRow] = []
    base_times = None
    for i, (row, _, _) in enumerate(live):
        if i in failed or not times[i]:
            continue
        st = _spread(times[i])
        row.median_ms, row.min_ms, row.max_ms, row.iqr_ms = st["median_ms"], st["min_ms"], st["max_ms"], st["iqr_ms"]
        row.runs = len(times[i])
        row.pairs_per_s = batch * 1e3 / row.median_ms
        row.tflops = gflop / row.median_ms
        row.wide_spread = row.iqr_ms > WIDE_SPREAD * row.median_ms
        if base_times is None and row.impl == "reference":
            base_times = times[i]
        if base_times is not None:
            row.speedup_vs_reference = statistics.median(b / t for b, t in zip(base_times, times[i]))
        rows.append(row)
    del live
    if include_compile:
        torch._dynamo.reset()  # drop the compiled graphs and the weights they hold
    if cuda:
        torch.cuda.empty_cache()
    return rows


def format_table(rows: Sequence[BenchRow]) -> str:
    """The rows as a text table, then a warning line per row with a wide spread."""
    head = (f"{'backend':>16} {'prec':>5} {'batch':>5} {'size':>9} {'median ms':>10} {'min..max ms':>17} {'IQR':>5} "
            f"{'pairs/s':>8} {'TFLOP/s':>8} {'vs ref':>7} {'rel diff':>9} {'compile':>8}")
    lines = [head, "-" * len(head)]
    warn = []
    for r in rows:
        sp = f"{r.speedup_vs_reference:.2f}x" if r.speedup_vs_reference else "-"
        rng = f"{r.min_ms:.1f}..{r.max_ms:.1f}" if r.min_ms is not None else "-"
        iqr = f"{100 * r.iqr_ms / r.median_ms:.0f}%" if r.iqr_ms is not None and r.median_ms else "-"
        comp = f"{r.compile_s:.1f} s" if r.compile_s is not None else ""
        lines.append(
            f"{r.impl:>16} {r.precision:>5} {r.batch:>5} {f'{r.height}x{r.width}':>9} {r.median_ms:>10.3f} {rng:>17} "
            f"{iqr:>5} {r.pairs_per_s:>8.1f} {r.tflops:>8.3f} {sp:>7} {r.rel_diff:>9.2e} {comp:>8}"
        )
        if r.wide_spread:
            warn.append(f"warning: {r.impl} {r.precision}: wide spread (IQR {iqr} of the median over {r.runs} runs); "
                        "the machine may be busy: rerun with more --repeats on a quiet machine")
    if rows:
        lines.append("median of interleaved rounds; 'vs ref' = median per-round speed-up over the first reference row; "
                     "compile = first call of a compiled row, not in its median")
    return "\n".join(lines + warn)



def rows_to_dicts(rows: Sequence[BenchRow]) -> List[dict]:
    return [asdict(r) for r in rows]
