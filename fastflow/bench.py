"""The model benchmark behind ``fastflow bench``, ``benchmarks/`` and ``benchmarks/gpu_suite.sh``.

Every implementation runs in the same process on the same inputs: a real photograph (the
public-domain NASA "astronaut" picture shipped in ``fastflow/data``) cropped twice with a small
offset, so the pair has real texture and a known global motion. Timings: warm-up, then the
median of ``repeats`` runs, synchronised (CUDA events on the GPU), rotating between a few input
tensors so no run reuses the previous one's cache state. Each row also gives the relative
difference ``||out - ref|| / ||ref||`` from the reference fp32 output (TF32 off on the GPU).
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from .reference import flops_per_pair

__all__ = ["sample_pair", "BenchRow", "run_model_bench", "format_table", "tf32_mode"]

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
# The pair's second frame is the crop shifted by this many pixels (x, y): true flow is -shift.
PAIR_SHIFT = (6, 4)


def load_photo() -> np.ndarray:
    """The shipped photograph as an (H, W, 3) uint8 array."""
    from PIL import Image

    with Image.open(os.path.join(_DATA, "astronaut.jpg")) as im:
        return np.asarray(im.convert("RGB"))


def sample_pair(height: int, width: int, batch: int = 1, device="cpu", variant: int = 0) -> torch.Tensor:
    """``(batch, 3, 2, height, width)`` float32 RGB 0..255 pair made from the shipped photograph.

    The photo is resized to cover ``height x width`` plus a margin, then cropped twice, the second
    crop shifted by PAIR_SHIFT; ``variant`` moves both crops (for rotating inputs), batch items
    use different crop positions.
    """
    img = torch.from_numpy(load_photo().copy()).permute(2, 0, 1).float()[None]
    dx, dy = PAIR_SHIFT
    margin = 8 * (batch + variant) + max(dx, dy) + 1
    scale = max((height + margin) / img.shape[2], (width + margin) / img.shape[3])
    size = (int(np.ceil(img.shape[2] * scale)), int(np.ceil(img.shape[3] * scale)))
    img = torch.nn.functional.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    pairs = []
    for i in range(batch):
        o = 8 * (i + variant) % max(1, margin - max(dx, dy))
        f0 = img[:, o : o + height, o : o + width]
        f1 = img[:, o + dy : o + dy + height, o + dx : o + dx + width]
        pairs.append(torch.stack((f0, f1), dim=1))
    return torch.stack(pairs).clamp_(0, 255).contiguous().to(device)


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
    extra: Dict[str, object] = field(default_factory=dict)


def _time(fn: Callable[[torch.Tensor], torch.Tensor], inputs: Sequence[torch.Tensor], warmup: int, repeats: int, cuda: bool) -> float:
    """Median milliseconds of fn over rotating inputs."""
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    times = []
    if cuda:
        torch.cuda.synchronize()
        for i in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(inputs[i % len(inputs)])
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for i in range(repeats):
            t0 = time.perf_counter()
            fn(inputs[i % len(inputs)])
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@contextlib.contextmanager
def tf32_mode(enabled: bool):
    """Context manager: TF32 for PyTorch matmuls and convolutions (and the fused forward) on/off."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _candidates(device: torch.device, include_compile: bool):
    """(impl, precision, dtype, channels_last, tf32, compile, fastflow?) in report order."""
    if device.type == "cpu":
        return [("reference", "fp32", torch.float32, False, None, False, False),
                ("fastflow", "fp32", torch.float32, False, None, False, True)]
    rows = [
        ("reference", "tf32", torch.float32, False, True, False, False),  # PyTorch defaults
        ("reference", "fp32", torch.float32, False, False, False, False),
        ("eager_fp16_cl", "fp16", torch.float16, True, None, False, False),
    ]
    if include_compile:
        rows.append(("torch_compile", "fp16", torch.float16, True, None, True, False))
    rows += [
        ("fastflow", "fp32", torch.float32, False, False, False, True),
        ("fastflow", "tf32", torch.float32, False, True, False, True),
        ("fastflow", "fp16", torch.float16, False, None, False, True),
        ("fastflow", "bf16", torch.bfloat16, False, None, False, True),
    ]
    return rows


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
) -> List[BenchRow]:
    """Benchmark fastflow against the reference (and on CUDA, PyTorch eager fp16 and torch.compile)."""
    from .model import FlowNet2S

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

    with torch.no_grad(), tf32_mode(False):
        oracle = Ref().to(device).eval()
        oracle.load_state_dict(state)
        ref_out = oracle(inputs[0]).float()
        del oracle
    rows: List[BenchRow] = []
    ref_ms = None
    for impl, precision, dtype, channels_last, tf32, compile_, is_fastflow in _candidates(device, include_compile):
        if only and impl not in only and f"{impl}:{precision}" not in only:
            continue
        if cuda:
            torch.cuda.synchronize()
            baseline = torch.cuda.memory_allocated(device)  # what earlier rows left alive
        model = (FlowNet2S() if is_fastflow else Ref()).to(device)
        model.load_state_dict(state)
        model = model.eval().to(dtype)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        fn = model
        if compile_:
            fn = torch.compile(model, mode="max-autotune")

        def call(x, fn=fn, dtype=dtype, is_fastflow=is_fastflow):
            return fn(x if is_fastflow else x.to(dtype))

        tf = contextlib.nullcontext() if tf32 is None else tf32_mode(tf32)
        try:
            with torch.no_grad(), tf:
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats(device)
                out = call(inputs[0]).float()
                ms = _time(call, inputs, warmup, repeats, cuda)
                # Peak memory of this implementation alone, its weights included.
                peak = (torch.cuda.max_memory_allocated(device) - baseline) / 2**20 if cuda else None
        except Exception as e:  # one failing backend must not hide the others' numbers
            log(f"{impl} {precision}: failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            continue
        diff = float((out - ref_out).norm() / ref_out.norm().clamp_min(1e-30))
        row = BenchRow(impl, precision, batch, height, width, ms, batch * 1e3 / ms, gflop / ms, rel_diff=diff, peak_mem_mb=peak)
        if impl == "reference" and ref_ms is None:
            ref_ms = ms
        rows.append(row)
        log(f"{impl:>14} {precision:>5}: {ms:9.3f} ms")
        del model, fn, call
        if compile_:
            torch._dynamo.reset()  # drop the compiled graph and the weights it holds
        if cuda:
            torch.cuda.empty_cache()
    for row in rows:
        if ref_ms:
            row.speedup_vs_reference = ref_ms / row.median_ms
    return rows


def format_table(rows: Sequence[BenchRow]) -> str:
    head = f"{'backend':>14} {'prec':>5} {'batch':>5} {'size':>9} {'median ms':>10} {'pairs/s':>9} {'TFLOP/s':>8} {'vs ref':>7} {'rel diff':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        sp = f"{r.speedup_vs_reference:.2f}x" if r.speedup_vs_reference else "-"
        lines.append(
            f"{r.impl:>14} {r.precision:>5} {r.batch:>5} {f'{r.height}x{r.width}':>9} {r.median_ms:>10.3f} "
            f"{r.pairs_per_s:>9.1f} {r.tflops:>8.3f} {sp:>7} {r.rel_diff:>9.2e}"
        )
    return "\n".join(lines)


def rows_to_dicts(rows: Sequence[BenchRow]) -> List[dict]:
    return [asdict(r) for r in rows]
