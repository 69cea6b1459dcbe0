"""The implicit-GEMM launches of FlowNet2-S's fused CUDA forward, per layer, and the plans
(``fastflow._C.igemm_plan``: tile config, split-K, workspace) the kernels take for them.

A plan *class* is what decides which code path of the kernel runs: conv or sub-pixel deconv, the
tile config, split-K or not, one or several tiles along N and along M, the 16-byte output stores
or the scalar ones (and whether the last chunk of N is partial), an input read in place from a
concat buffer (pixel stride above its channels), channel padding of the input. A SIMT test case
that has the same class as a model layer runs the same branches of the kernel at a small size.
"""
from __future__ import annotations

from typing import Iterator, List, NamedTuple, Tuple

from ..network import CONCAT, LAYER, LAYERS, pad8

__all__ = ["IgemmLaunch", "PlanClass", "GPU_SMS", "SIZES", "BATCHES", "PRECISIONS", "model_launches", "plan_of",
           "plan_class", "model_plan_classes"]

# Multiprocessor counts of the GPUs the plans are enumerated for: H100/H200 SXM (132), A100 (108).
GPU_SMS = {"H100/H200": 132, "A100": 108}
SIZES = ((448, 1024), (384, 512))
BATCHES = (1, 16)
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
_ELEM_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2}
_DTYPE_NAME = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class IgemmLaunch(NamedTuple):
    """One conv2d_lrelu / deconv_lrelu launch of the fused forward (shapes as the kernel sees them)."""

    layer: str
    deconv: bool
    batch: int
    height: int        # input rows
    width: int         # input columns
    cin: int           # real input channels
    channels: int      # stored input channels (cin padded to a multiple of 8)
    pixel_stride: int  # elements between neighbouring input pixels (> channels: a concat slice)
    cout: int
    ksize: int         # conv k; deconv 4 (ConvTranspose2d k4 s2 p1)
    stride: int        # conv stride; deconv 2
    out_total: int     # channels of the output buffer
    out_offset: int    # first channel written


class PlanClass(NamedTuple):
    deconv: bool
    config: int
    split: bool
    n_tiles: bool       # more than one tile along N
    m_tiles: bool       # more than one tile along M
    vec_out: bool       # 16-byte output stores
    partial_chunk: bool  # N not a multiple of the store width (a scalar tail)
    strided_input: bool
    padded_input: bool

    def describe(self) -> str:
        kind = "deconv" if self.deconv else "conv"
        flags = [f for f, on in (("split-K", self.split), ("N tiles", self.n_tiles), ("M tiles", self.m_tiles),
                                 ("vector stores", self.vec_out), ("partial chunk", self.partial_chunk),
                                 ("strided input", self.strided_input), ("padded input", self.padded_input)) if on]
        return f"{kind} config {self.config}" + (": " + ", ".join(flags) if flags else "")


def model_launches(height: int, width: int, batch: int) -> List[IgemmLaunch]:
    """Every conv/deconv launch of the fused forward at ``height x width`` (multiples of 64), in
    execution order. An encoder conv reads its input where the fused forward stores it: a layer
    that feeds a concat buffer is read as that buffer's channel slice (its padded width is the
    pixel stride); outputs go to their own tensor or to their concat slice."""
    out = []
    for l in LAYERS:
        if l.kind not in ("conv", "deconv"):
            continue
        h, w = l.input_size(height, width)
        src = LAYER.get(l.reads)
        if l.kind == "conv" and src is not None and src.feeds is not None:
            stride_px = CONCAT[src.feeds].padded
        elif l.reads in CONCAT:
            stride_px = CONCAT[l.reads].padded
        else:
            stride_px = pad8(l.cin)
        total = CONCAT[l.feeds].padded if l.feeds else l.cout
        k, s = (l.kernel, l.stride) if l.kind == "conv" else (4, 2)
        out.append(IgemmLaunch(l.name, l.kind == "deconv", batch, h, w, l.cin, pad8(l.cin), stride_px, l.cout, k, s,
                               total, l.offset))
    return out


def plan_of(launch: IgemmLaunch, precision: str, num_sms: int, split_k: int = 0, lib=None):
    """The extension's IgemmPlan for ``launch`` (``split_k`` 0: the plan's own choice)."""
    from .. import _backend

    C = lib or _backend.load()
    codes = C.DTYPE_CODES
    call = C.IgemmCall(x=0, batch=launch.batch, height=launch.height, width=launch.width, channels=launch.channels,
                       pixel_stride=launch.pixel_stride, weight=0, bias=0, out_channels=launch.cout,
                       ksize=2 if launch.deconv else launch.ksize, stride=launch.stride, out=0,
                       out_total_channels=launch.out_total, out_offset=launch.out_offset, slope=0.1,
                       dtype=codes[_DTYPE_NAME[precision]], allow_tf32=precision == "tf32", workspace=0,
                       workspace_elems=0, num_sms=num_sms, split_k=split_k)
    return C.igemm_plan(call, launch.deconv)


def _rows(launch: IgemmLaunch) -> int:
    if launch.deconv:
        return launch.batch * launch.height * launch.width
    ho = (launch.height + 2 * ((launch.ksize - 1) // 2) - launch.ksize) // launch.stride + 1
    wo = (launch.width + 2 * ((launch.ksize - 1) // 2) - launch.ksize) // launch.stride + 1
    return launch.batch * ho * wo


def plan_class(launch: IgemmLaunch, precision: str, plan) -> PlanClass:
    """The class of ``launch`` run with ``plan`` in ``precision`` (output base 16-byte aligned, as
    every buffer PyTorch allocates is)."""
    vec = 16 // _ELEM_BYTES[precision]
    return PlanClass(
        deconv=launch.deconv, config=plan.config, split=plan.splits > 1,
        n_tiles=-(-launch.cout // plan.bn) > 1, m_tiles=-(-_rows(launch) // plan.bm) > 1,
        vec_out=launch.out_total % vec == 0 and launch.out_offset % vec == 0,
        partial_chunk=launch.cout % vec != 0,
        strided_input=launch.pixel_stride != launch.channels, padded_input=launch.cin != launch.channels)


def model_plan_classes(lib=None) -> Iterator[Tuple[PlanClass, str]]:
    """(class, where) for every launch of the model at SIZES x BATCHES x PRECISIONS on GPU_SMS."""
    for (h, w) in SIZES:
        for b in BATCHES:
            for gpu, sms in GPU_SMS.items():
                for prec in PRECISIONS:
                    for launch in model_launches(h, w, b):
                        cls = plan_class(launch, prec, plan_of(launch, prec, sms, lib=lib))
                        yield cls, f"{launch.layer} {h}x{w} B={b} {prec} on {gpu} ({sms} SMs)"
