"""Python wrappers of the fused ops: validate, allocate, call ``fastflow._C``.

Each op here has a reference with the same semantics in :mod:`fastflow.reference` (the fused
conv/deconv/flow-head ops take packed weights, their references the module's own). Tensors may
live on the CPU (C++ versions) or on a CUDA GPU (CUDA versions, launched on the current stream).
The ops are registered with ``torch.library.custom_op`` (namespace ``fastflow``) with fake
implementations, so ``torch.compile`` and CUDA-graph capture treat them as opaque ops.
Activations follow one convention: logical NCHW shapes in ``torch.channels_last`` memory.

Inside ``with fastflow.ops.simt():`` the ops given CPU tensors run their CUDA kernels instead, on
the CPU, through the SIMT host runtime ``fastflow._simt`` (csrc/simt/), which checks them for
shared-memory races, uninitialised and out-of-bounds accesses, barrier mistakes and more.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import subprocess
import threading
from typing import Dict, Iterator, Optional, Tuple, Union

import torch

from . import _backend
from .network import DECONV_TAPS, conv_flops, deconv_flops, pad8  # noqa: F401 (re-exported)

__all__ = [
    "normalize_pack",
    "upsample_flow",
    "warp",
    "pack_flow_head",
    "flow_head",
    "pack_conv_weight",
    "pack_deconv_weight",
    "conv2d_lrelu",
    "deconv_lrelu",
    "conv_flops",
    "deconv_flops",
    "DTYPE_CODES",
    "MEAN_SPLITS",
    "simt",
    "simt_active",
    "SimtError",
]

# The extension's dtype codes (csrc/common.h DType) by torch dtype, and the number of partial sums
# per (sample, colour) of normalize_pack's CUDA mean (csrc/ops.h kMeanSplits): read from fastflow._C,
# which fastflow._simt shares (tests/test_bindings.py).
DTYPE_CODES = {getattr(torch, name): code for name, code in _backend.load().DTYPE_CODES.items()}
MEAN_SPLITS = int(_backend.load().MEAN_SPLITS)


# ---------------------------------------------------------------------------------------------
# The SIMT backend: CUDA kernels on CPU tensors (fastflow._simt)
# ---------------------------------------------------------------------------------------------

SimtError = _backend.SimtError
# Multiprocessor count the host emulation and the SIMT runtime plan for (an H100), so CPU tests see
# the GPU's tile configs and split-K.
EMULATED_SMS = 132
# Opt-in shared memory per block the SIMT runtime reports (an H100's 227 KB).
SIMT_SMEM_OPTIN = 232448


class _SimtState(threading.local):
    active = False
    num_sms = EMULATED_SMS
    threads = 1


_SIMT = _SimtState()
# The runtime's tensor registry and configuration are process-wide: one SIMT op at a time.
_SIMT_LOCK = threading.Lock()


@contextlib.contextmanager
def simt(num_sms: int = EMULATED_SMS, threads: Optional[int] = None) -> Iterator[None]:
    """Run fastflow's CUDA kernels on CPU tensors, on the CPU, with checks (for tests and the curious).

    Inside the block (this thread only), every op of this module given CPU tensors launches its
    CUDA kernel through the SIMT host runtime ``fastflow._simt`` instead of running its CPU
    version: the same kernel sources, launchers and plans as on a GPU, each CUDA thread a fiber.
    ``fastflow.FlowNet2S`` in eval mode runs its fused CUDA forward this way on CPU input. A check
    that fails raises :class:`SimtError` naming the kernel, block, thread and address: shared-memory
    races between barriers, reads of uninitialised shared memory, use of a cp.async destination
    before its wait, shared- and global-memory accesses out of bounds (global: outside the tensors
    passed to the op), misaligned vector / ldmatrix / cp.async addresses, barrier divergence and
    deadlock, more than 48 KB of dynamic shared memory without the attribute, unrounded tf32 mma
    operands. Slow (a 64x128 forward takes seconds); new outputs are NaN-poisoned first.

    ``num_sms``: the multiprocessor count the plans (tile config, split-K) and the flow head tiling
    assume (default 132, as the CPU emulation). ``threads``: OS threads running independent blocks
    (default: up to 2, the CPU count). Raises ImportError when ``fastflow._simt`` was not built.
    """
    lib = _backend.load_simt()
    if not isinstance(num_sms, int) or not 1 <= num_sms <= 100000:
        raise ValueError(f"fastflow.ops.simt: num_sms must be an int in 1..100000, got {num_sms!r}")
    if threads is None:
        threads = max(1, min(2, os.cpu_count() or 1))
    if not isinstance(threads, int) or not 1 <= threads <= 256:
        raise ValueError(f"fastflow.ops.simt: threads must be an int in 1..256, got {threads!r}")
    del lib
    saved = (_SIMT.active, _SIMT.num_sms, _SIMT.threads)
    _SIMT.active, _SIMT.num_sms, _SIMT.threads = True, num_sms, threads
    try:
        yield
    finally:
        _SIMT.active, _SIMT.num_sms, _SIMT.threads = saved


def simt_active() -> bool:
    """Whether this thread is inside ``fastflow.ops.simt()`` (CPU tensors run the CUDA kernels)."""
    return _SIMT.active


def _simt_on(t: torch.Tensor) -> bool:
    return _SIMT.active and t.device.type == "cpu"


def _span_bytes(t: torch.Tensor) -> int:
    """Bytes from t's first element to just past its last (non-negative strides)."""
    if t.numel() == 0:
        return 0
    return (sum((n - 1) * s for n, s in zip(t.shape, t.stride())) + 1) * t.element_size()


_CODE_AT = re.compile(r" \[code (\S+?)\+0x([0-9a-f]+)\]")


def _symbolize(message: str, module_file: str) -> str:
    """Adds file:line (addr2line, when installed) to the runtime's "[code lib+0xoffset]" marks."""
    addr2line = shutil.which("addr2line")
    if not addr2line:
        return message

    def one(m: "re.Match") -> str:
        try:
            r = subprocess.run([addr2line, "-e", module_file, "-i", hex(int(m.group(2), 16) - 1)],
                               capture_output=True, text=True, timeout=10)
            lines = [ln for ln in r.stdout.splitlines() if ln and not ln.startswith("??")]
        except (OSError, subprocess.SubprocessError):
            lines = []
        locs = []
        for line in lines[:3]:  # the access, then the functions it was inlined into
            loc = line.split(" (discriminator")[0]
            locs.append("csrc/" + loc.split("/csrc/", 1)[1] if "/csrc/" in loc else loc)
        return f" [at {', inlined in '.join(locs)}]" if locs else m.group(0)

    return _CODE_AT.sub(one, message)


@contextlib.contextmanager
def _kernels(op: str, t: torch.Tensor, reads: Dict[str, Optional[torch.Tensor]],
             writes: Dict[str, Optional[torch.Tensor]]):
    """The extension to launch with: ``fastflow._C``, or inside ``simt()`` on CPU tensors
    ``fastflow._simt`` with the op's tensors registered (global accesses outside them, and writes
    to the ``reads``, are reported)."""
    if not _simt_on(t):
        yield _backend.load()
        return
    lib = _backend.load_simt()
    bufs = [(x.data_ptr(), _span_bytes(x), name, True) for name, x in writes.items() if x is not None]
    bufs += [(x.data_ptr(), _span_bytes(x), name, False) for name, x in reads.items() if x is not None]
    with _SIMT_LOCK:
        lib.configure(_SIMT.num_sms, SIMT_SMEM_OPTIN, _SIMT.threads)
        lib.set_buffers(bufs)
        try:
            yield lib
        except SimtError as e:
            raise SimtError(f"fastflow.{op}: " + _symbolize(str(e), lib.__file__)) from None
        finally:
            lib.set_buffers([])


def _empty(*shape, dtype: torch.dtype, like: torch.Tensor, memory_format=torch.contiguous_format) -> torch.Tensor:
    """torch.empty on like's device; NaN-filled under simt() so that unwritten elements show."""
    t = torch.empty(shape, dtype=dtype, device=like.device, memory_format=memory_format)
    if _simt_on(like):
        t.fill_(float("nan"))
    return t


def _device_args(t: torch.Tensor) -> Tuple[int, int]:
    """(device index or -1 for the CPU, current CUDA stream handle or 0); 0, 0 for the SIMT runtime."""
    if t.device.type == "cpu":
        return (0, 0) if _SIMT.active else (-1, 0)
    if t.device.type == "cuda":
        idx = t.device.index if t.device.index is not None else torch.cuda.current_device()
        return idx, torch.cuda.current_stream(idx).cuda_stream
    raise ValueError(f"fastflow ops run on CPU or CUDA tensors, got a tensor on {t.device}")


def _check_float(name: str, op: str, t: torch.Tensor) -> None:
    if t.dtype not in DTYPE_CODES:
        raise ValueError(
            f"fastflow.{op}: {name} must be float32, float16 or bfloat16, got {t.dtype}"
        )


def _check_tensor(name: str, op: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"fastflow.{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def _same_device(op: str, **tensors: torch.Tensor) -> None:
    devs = {n: t.device for n, t in tensors.items()}
    if len(set(devs.values())) > 1:
        desc = ", ".join(f"{n} on {d}" for n, d in devs.items())
        raise ValueError(f"fastflow.{op}: tensors must be on the same device, got {desc}")


# ---------------------------------------------------------------------------------------------
# normalize_pack
# ---------------------------------------------------------------------------------------------


def _normalize_pack_impl(pair: torch.Tensor, rgb_max: float, out: torch.Tensor) -> None:
    """The launch alone, for callers that validated already (the model's hot path skips the
    dispatcher): pair float32 (B, 3, 2, H, W), out contiguous channels_last (B, 6|8, H, W)."""
    b, _, _, h, w = pair.shape
    device, stream = _device_args(pair)
    ws = _empty(b * 3 * MEAN_SPLITS, dtype=torch.float32, like=pair) if device >= 0 else None
    with _kernels("normalize_pack", pair, {"pair": pair}, {"out": out, "partial": ws}) as lib:
        lib.normalize_pack(
            pair.data_ptr(), list(pair.stride()), b, h, w, out.data_ptr(), DTYPE_CODES[out.dtype], out.shape[1],
            float(rgb_max), 0 if ws is None else ws.data_ptr(), device, stream,
        )


_normalize_pack_op = torch.library.custom_op("fastflow::normalize_pack", mutates_args=("out",))(_normalize_pack_impl)


@_normalize_pack_op.register_fake
def _(pair, rgb_max, out):
    return None


def normalize_pack(
    pair: torch.Tensor,
    rgb_max: float = 255.0,
    channels: int = 6,
    dtype: torch.dtype = torch.float32,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``(B, 3, 2, H, W)`` RGB pair (0..rgb_max) -> ``(B, channels, H, W)`` normalised input, NHWC memory.

    Subtracts the per-sample, per-colour mean over both frames, divides by ``rgb_max`` and puts
    frame 0's RGB in channels 0..2, frame 1's in 3..5; ``channels=8`` appends two zero channels
    (the CUDA conv1 layout). Any H, W and strides; non-float32 input is converted to float32 first.
    ``out``: an existing contiguous channels_last ``(B, channels, H, W)`` tensor to write (its dtype
    wins over ``dtype``); it is returned.
    """
    op = "normalize_pack"
    _check_tensor("pair", op, pair)
    if pair.dim() != 5 or pair.shape[1] != 3 or pair.shape[2] != 2:
        raise ValueError(f"fastflow.{op}: expected a (B, 3, 2, H, W) image pair, got shape {tuple(pair.shape)}")
    if not pair.is_floating_point():
        raise ValueError(f"fastflow.{op}: the pair must be a floating-point tensor, got {pair.dtype}")
    if not (math.isfinite(rgb_max) and rgb_max > 0):
        raise ValueError(f"fastflow.{op}: rgb_max must be positive and finite, got {rgb_max}")
    b, _, _, h, w = pair.shape
    if out is None:
        if channels not in (6, 8):
            raise ValueError(f"fastflow.{op}: channels must be 6 or 8, got {channels}")
        if dtype not in DTYPE_CODES:
            raise ValueError(f"fastflow.{op}: dtype must be float32, float16 or bfloat16, got {dtype}")
        out = _empty(b, channels, h, w, dtype=dtype, like=pair, memory_format=torch.channels_last)
    else:
        _check_tensor("out", op, out)
        _check_float("out", op, out)
        if out.dim() != 4 or out.shape[0] != b or out.shape[1] not in (6, 8) or tuple(out.shape[2:]) != (h, w):
            raise ValueError(f"fastflow.{op}: out must be ({b}, 6 or 8, {h}, {w}), got {tuple(out.shape)}")
        if not out.is_contiguous(memory_format=torch.channels_last):
            raise ValueError(f"fastflow.{op}: out must be contiguous in channels_last memory")
        _same_device(op, pair=pair, out=out)
    if pair.dtype != torch.float32:
        pair = pair.float()
    if pair.is_cuda and b > 65535:
        raise ValueError(f"fastflow.{op}: batch {b} exceeds 65535")
    _normalize_pack_op(pair, float(rgb_max), out)
    return out


# ---------------------------------------------------------------------------------------------
# upsample_flow
# ---------------------------------------------------------------------------------------------


def _upsample_flow_impl(flow2: torch.Tensor, div_flow: float) -> torch.Tensor:
    """The launch alone (no validation, no dispatcher): flow2 (B, 2, h, w) float32/16-bit."""
    b, _, h, w = flow2.shape
    out = _empty(b, 2, 4 * h, 4 * w, dtype=torch.float32, like=flow2)
    device, stream = _device_args(flow2)
    with _kernels("upsample_flow", flow2, {"flow2": flow2}, {"out": out}) as lib:
        lib.upsample_flow(
            flow2.data_ptr(), DTYPE_CODES[flow2.dtype], list(flow2.stride()), b, h, w, float(div_flow), out.data_ptr(),
            device, stream,
        )
    return out


_upsample_flow_op = torch.library.custom_op("fastflow::upsample_flow", mutates_args=())(_upsample_flow_impl)


@_upsample_flow_op.register_fake
def _(flow2, div_flow):
    b, _, h, w = flow2.shape
    return flow2.new_empty((b, 2, 4 * h, 4 * w), dtype=torch.float32)


def upsample_flow(flow2: torch.Tensor, div_flow: float = 20.0) -> torch.Tensor:
    """``(B, 2, h, w)`` quarter-resolution flow -> ``(B, 2, 4h, 4w)`` float32 flow in pixels.

    ``flow2 * div_flow`` upsampled bilinearly x4 (align_corners=False): FlowNet2S's eval output.
    Any strides (NCHW or channels_last), float32/float16/bfloat16 input.
    """
    op = "upsample_flow"
    _check_tensor("flow2", op, flow2)
    if flow2.dim() != 4 or flow2.shape[1] != 2:
        raise ValueError(f"fastflow.{op}: expected flow of shape (B, 2, h, w), got {tuple(flow2.shape)}")
    _check_float("flow2", op, flow2)
    if flow2.is_cuda and flow2.shape[0] > 32767:
        raise ValueError(f"fastflow.{op}: batch {flow2.shape[0]} exceeds 32767")
    return _upsample_flow_op(flow2, float(div_flow))


# ---------------------------------------------------------------------------------------------
# warp
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("fastflow::warp", mutates_args=())
def _warp_op(x: torch.Tensor, flow: torch.Tensor, zeros: bool, with_mask: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = x.shape
    out = torch.empty_like(x)  # preserves channels_last
    mask = _empty(*((b, 1, h, w) if with_mask else (0,)), dtype=x.dtype, like=x)
    if _simt_on(x):
        out.fill_(float("nan"))
    device, stream = _device_args(x)
    with _kernels("warp", x, {"x": x, "flow": flow}, {"out": out, "mask": mask if with_mask else None}) as lib:
        lib.warp(
            x.data_ptr(), DTYPE_CODES[x.dtype], list(x.stride()), flow.data_ptr(), DTYPE_CODES[flow.dtype],
            list(flow.stride()), b, c, h, w, out.data_ptr(), list(out.stride()), mask.data_ptr() if with_mask else 0,
            zeros, device, stream,
        )
    return out, mask


@_warp_op.register_fake
def _(x, flow, zeros, with_mask):
    b, c, h, w = x.shape
    return torch.empty_like(x), x.new_empty((b, 1, h, w) if with_mask else (0,))


def warp(x, flow, padding: str = "border", return_mask: bool = False):
    """Backward bilinear warp: ``out[i, j] = x[i + v, j + u]`` with ``(u, v) = flow[i, j]`` in pixels.

    Takes what ``fastflow.estimate_flow`` takes and returns: numpy arrays or tensors, flow
    ``(H, W, 2)`` / ``(2, H, W)`` or batched ``(B, H, W, 2)`` / ``(B, 2, H, W)`` (a last dimension
    of 2 means channels-last), and ``x`` with the same height and width in ``(H, W, C)``, ``(C, H, W)``,
    ``(H, W)``, or batched ``(B, H, W, C)`` / ``(B, C, H, W)`` (any C; when both layouts fit, tensors
    are read channels-first, PyTorch's convention, and numpy arrays channels-last, and x follows the
    flow's layout). An unbatched flow applies to every image of a batch and vice versa.

    Returns ``x`` warped, of ``x``'s kind (numpy, or tensor on ``x``'s device), layout and dtype:
    float16/bfloat16/float32 compute in their own precision, float64 in float32, and integer images
    (uint8, uint16, ...) are computed in float32 and rounded back, clamped to the dtype's range.
    A numpy argument joins the other's device. ``padding="border"`` is flownet2-pytorch's Resample2d
    (edge taps clamped); ``"zeros"`` reads 0 outside the image and with ``return_mask=True`` also
    returns a mask in ``x``'s layout with one channel (1 where the sample is inside the image, else
    0; ``x``'s dtype). Non-finite flow gives NaN ("border") or 0 with mask 0 ("zeros"). No autograd
    history. Float ``(B, C, H, W)`` / ``(C, H, W)`` tensors take the op directly (``_warp_nchw``).
    """
    if (isinstance(x, torch.Tensor) and isinstance(flow, torch.Tensor) and x.dtype in DTYPE_CODES
            and flow.dtype in DTYPE_CODES and x.dim() == flow.dim() and x.dim() in (3, 4)
            and flow.shape[-3] == 2 and x.shape[-2:] == flow.shape[-2:]
            and (x.dim() == 3 or x.shape[0] == flow.shape[0])):
        return _warp_nchw(x, flow, padding, return_mask)
    return _warp_any_layout(x, flow, padding, return_mask)


def _warp_any_layout(x, flow, padding: str, return_mask: bool):
    import numpy as np

    op = "warp"
    for name, t in (("x", x), ("flow", flow)):
        if not isinstance(t, (np.ndarray, torch.Tensor)):
            raise TypeError(f"fastflow.{op}: {name} must be a numpy array or a torch.Tensor, got {type(t).__name__}")
    xs, fs = tuple(x.shape), tuple(flow.shape)
    if len(fs) not in (3, 4) or 2 not in (fs[-1], fs[-3]):
        raise ValueError(f"fastflow.{op}: flow must be (H, W, 2), (2, H, W), (B, H, W, 2) or (B, 2, H, W), got shape {fs}")
    # A last dimension of 2 means channels-last, unless only the channels-first reading fits x. When
    # both fit, a tensor flow is read channels-first (PyTorch's convention) and a numpy flow
    # channels-last (what estimate_flow returns for numpy images).
    flow_last = fs[-1] == 2
    if flow_last and fs[-3] == 2:
        def fits(hw):
            return xs == hw or (len(xs) in (3, 4) and hw in (xs[-3:-1], xs[-2:]))
        fits_l, fits_f = fits(fs[-3:-1]), fits(fs[-2:])
        flow_last = not fits_f or (fits_l and not isinstance(flow, torch.Tensor))
    hw = fs[-3:-1] if flow_last else fs[-2:]
    fits_last = len(xs) in (3, 4) and xs[-3:-1] == hw
    fits_first = len(xs) in (3, 4) and xs[-2:] == hw
    if len(xs) == 2 and xs == hw:
        x_layout = "hw"
    elif fits_last and (flow_last or not fits_first):
        x_layout = "last"
    elif fits_first:
        x_layout = "first"
    else:
        raise ValueError(
            f"fastflow.{op}: x of shape {xs} does not match flow of shape {fs}: need x as (H, W, C), (C, H, W), "
            f"(H, W) or a batch of those with H, W = {hw[0]}, {hw[1]}"
        )
    x_batched, flow_batched = len(xs) == 4, len(fs) == 4
    if x_batched and flow_batched and xs[0] != fs[0]:
        raise ValueError(f"fastflow.{op}: x's batch of {xs[0]} does not match flow's batch of {fs[0]} (shapes {xs} and {fs})")

    x_numpy = isinstance(x, np.ndarray)
    device = x.device if not x_numpy else (flow.device if isinstance(flow, torch.Tensor) else torch.device("cpu"))

    def as_tensor(a, name):
        if isinstance(a, np.ndarray):
            if a.dtype.kind not in "fiu":
                raise ValueError(f"fastflow.{op}: {name} has unsupported dtype {a.dtype}")
            a = torch.from_numpy(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("=")))
            return a.to(device)
        if a.dtype == torch.bool or a.is_complex():
            raise ValueError(f"fastflow.{op}: {name} has unsupported dtype {a.dtype}")
        if a.device != device:
            raise ValueError(f"fastflow.{op}: x and flow must be on the same device, got {device} and {a.device}")
        return a.detach()

    xt, ft = as_tensor(x, "x"), as_tensor(flow, "flow")
    out_dtype = xt.dtype
    if xt.dtype not in DTYPE_CODES:
        xt = xt.float()
    if ft.dtype not in DTYPE_CODES:
        ft = ft.float()
    if x_layout == "hw":
        xt = xt.unsqueeze(0)
    elif x_layout == "last":
        xt = xt.movedim(-1, -3)
    if flow_last:
        ft = ft.movedim(-1, -3)
    if not x_batched:
        xt = xt.unsqueeze(0)
    if not flow_batched:
        ft = ft.unsqueeze(0)
    b = max(xt.shape[0], ft.shape[0])
    xt, ft = xt.expand(b, *xt.shape[1:]), ft.expand(b, *ft.shape[1:])
    res = _warp_nchw(xt, ft, padding, return_mask)
    outs = list(res) if return_mask else [res]

    def back(t):
        if out_dtype != t.dtype:
            if not out_dtype.is_floating_point:
                info = torch.iinfo(out_dtype)
                t = t.float().round_().clamp_(info.min, info.max)
            t = t.to(out_dtype)
        if not (x_batched or flow_batched):
            t = t[0]
        if x_layout == "hw":
            t = t[..., 0, :, :]
        elif x_layout == "last":
            t = t.movedim(-3, -1)
        t = t.contiguous()
        return t.cpu().numpy() if x_numpy else t

    outs = [back(t) for t in outs]
    return tuple(outs) if return_mask else outs[0]


def _warp_nchw(
    x: torch.Tensor, flow: torch.Tensor, padding: str = "border", return_mask: bool = False
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """The warp op on tensors: ``out[b, :, i, j] = x[b, :, i + v, j + u]``, ``(u, v) = flow[b, :, i, j]``.

    x: ``(B, C, H, W)`` or ``(C, H, W)``, float32/float16/bfloat16, NCHW or channels_last (kept).
    flow: ``(B, 2, H, W)`` or ``(2, H, W)`` in pixels, on the same device. ``padding="border"`` is
    flownet2-pytorch's Resample2d (edge taps clamped); ``"zeros"`` reads 0 outside the image and
    with ``return_mask=True`` also returns a ``(B, 1, H, W)`` mask: 1 where the sample position is
    inside the image, else 0. Non-finite flow gives NaN ("border") or 0 with mask 0 ("zeros").
    The result carries no autograd history.
    """
    op = "warp"
    _check_tensor("x", op, x)
    _check_tensor("flow", op, flow)
    if padding not in ("border", "zeros"):
        raise ValueError(f"fastflow.{op}: padding must be 'border' or 'zeros', got {padding!r}")
    if return_mask and padding != "zeros":
        raise ValueError(f"fastflow.{op}: return_mask=True needs padding='zeros'")
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
        if flow.dim() == 3:
            flow = flow.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"fastflow.{op}: x must be (B, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"fastflow.{op}: flow must be (B, 2, H, W), got shape {tuple(flow.shape)}")
    b, _, h, w = x.shape
    if flow.shape[0] != b or flow.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"fastflow.{op}: flow {tuple(flow.shape)} does not match x {tuple(x.shape)} (need the same B, H, W)"
        )
    _check_float("x", op, x)
    _check_float("flow", op, flow)
    _same_device(op, x=x, flow=flow)
    out, mask = _warp_op(x, flow, padding == "zeros", bool(return_mask))
    if squeeze:
        out = out.squeeze(0)
        mask = mask.squeeze(0) if return_mask else mask
    return (out, mask) if return_mask else out


# ---------------------------------------------------------------------------------------------
# flow_head
# ---------------------------------------------------------------------------------------------


def _flow_head_layout(op: str, packed: torch.Tensor) -> Tuple[int, bool]:
    """(padded input channels Cp, has an upsample weight) from the packed length, see pack_flow_head."""
    n = packed.numel()
    if n >= 20 and (n - 2) % 18 == 0:
        return (n - 2) // 18, False
    if n >= 84 and (n - 66) % 18 == 0:
        return (n - 66) // 18, True
    raise ValueError(
        f"fastflow.{op}: packed has {n} elements, which is neither 18*Cp + 2 nor 18*Cp + 66; "
        "build it with fastflow.ops.pack_flow_head"
    )


def pack_flow_head(
    weight: torch.Tensor,
    bias: torch.Tensor,
    up_weight: Optional[torch.Tensor] = None,
    cin_padded: Optional[int] = None,
) -> torch.Tensor:
    """Pack a flow head's parameters for :func:`flow_head` (once per model; the values are exact).

    ``weight`` ``(2, Cin, 3, 3)`` and ``bias`` ``(2,)`` of ``predict_flowX``; ``up_weight``
    ``(2, 2, 4, 4)`` of ``upsampled_flowX_to_Y`` (ConvTranspose2d layout ``(Cin, Cout, kh, kw)``)
    or None for predict_flow2. ``cin_padded`` (default: Cin rounded up to a multiple of 8) is the
    channel count of the activation the head reads; the extra channels get zero weights.

    Returns a 1-D float32 tensor on the weights' device, ``18*Cp + 2`` elements, ``+ 64`` with an
    upsample weight: ``[0, 18*Cp)`` the conv weight as ``[ky*3 + kx][c][o]`` (tap, channel, output
    channel), then the bias, then ``up_weight`` flattened as is (csrc/flow_head_math.h).
    """
    op = "pack_flow_head"
    _check_tensor("weight", op, weight)
    _check_tensor("bias", op, bias)
    if weight.dim() != 4 or weight.shape[0] != 2 or weight.shape[2:] != (3, 3) or weight.shape[1] < 1:
        raise ValueError(f"fastflow.{op}: weight must be (2, Cin, 3, 3), got shape {tuple(weight.shape)}")
    if bias.shape != (2,):
        raise ValueError(f"fastflow.{op}: bias must be (2,), got shape {tuple(bias.shape)}")
    if not weight.is_floating_point() or not bias.is_floating_point():
        raise ValueError(f"fastflow.{op}: weight and bias must be floating point, got {weight.dtype} and {bias.dtype}")
    tensors = {"weight": weight, "bias": bias}
    if up_weight is not None:
        _check_tensor("up_weight", op, up_weight)
        if up_weight.shape != (2, 2, 4, 4):
            raise ValueError(f"fastflow.{op}: up_weight must be (2, 2, 4, 4), got shape {tuple(up_weight.shape)}")
        if not up_weight.is_floating_point():
            raise ValueError(f"fastflow.{op}: up_weight must be floating point, got {up_weight.dtype}")
        tensors["up_weight"] = up_weight
    _same_device(op, **tensors)
    cin = weight.shape[1]
    cp = -(-cin // 8) * 8 if cin_padded is None else int(cin_padded)
    if cp < cin:
        raise ValueError(f"fastflow.{op}: cin_padded={cp} is smaller than the weight's {cin} input channels")
    with torch.no_grad():
        w = torch.zeros((3, 3, cp, 2), dtype=torch.float32, device=weight.device)
        w[:, :, :cin] = weight.detach().float().permute(2, 3, 1, 0)
        parts = [w.reshape(-1), bias.detach().float().reshape(-1)]
        if up_weight is not None:
            parts.append(up_weight.detach().float().reshape(-1))
        return torch.cat(parts).contiguous()


@torch.library.custom_op("fastflow::flow_head", mutates_args=("out",))
def _flow_head_op(x: torch.Tensor, packed: torch.Tensor, out: Optional[torch.Tensor], out_channel_offset: int) -> torch.Tensor:
    b, c, h, w = x.shape
    _, has_up = _flow_head_layout("flow_head", packed)
    flow = _empty(b, 2, h, w, dtype=torch.float32, like=x, memory_format=torch.channels_last)
    device, stream = _device_args(x)
    with _kernels("flow_head", x, {"x": x, "packed": packed}, {"flow": flow, "out": out if has_up else None}) as lib:
        lib.flow_head(
            x.data_ptr(), DTYPE_CODES[x.dtype], list(x.stride()), b, c, h, w, packed.data_ptr(), has_up,
            flow.data_ptr(), out.data_ptr() if has_up else 0, list(out.stride()) if has_up else [],
            out.shape[1] if has_up else 0, int(out_channel_offset), device, stream,
        )
    return flow


@_flow_head_op.register_fake
def _(x, packed, out, out_channel_offset):
    b, _, h, w = x.shape
    return x.new_empty((b, 2, h, w), dtype=torch.float32).contiguous(memory_format=torch.channels_last)


def flow_head(
    x: torch.Tensor,
    packed: torch.Tensor,
    out: Optional[torch.Tensor] = None,
    out_channel_offset: int = 0,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """predict_flow (3x3 conv to 2 channels, + bias) and, when ``packed`` holds an upsample weight,
    the 2->2 ConvTranspose2d(k4, s2, p1) of that flow, in one op.

    x: ``(B, Cp, h, w)`` float32/float16/bfloat16 with channel stride 1 (channels_last; a channel
    slice of a wider channels_last buffer is fine); Cp must equal the ``cin_padded`` of ``packed``
    (from :func:`pack_flow_head`, float32, same device). Accumulation is float32 (strict fp32 for
    float32 input). Returns ``(flow, flow_up)``: ``flow`` ``(B, 2, h, w)`` float32 in channels_last
    memory; ``flow_up`` ``(B, 2, 2h, 2w)`` in x's dtype, or None without an upsample weight. With
    ``out`` (a channels_last ``(B, Ctot, 2h, 2w)`` buffer of x's dtype) the upsampled flow is written
    into channels ``[out_channel_offset, out_channel_offset + 2)`` and ``flow_up`` is that slice
    (a view of ``out``); without it a fresh channels_last tensor is returned. No autograd history.
    """
    op = "flow_head"
    _check_tensor("x", op, x)
    _check_tensor("packed", op, packed)
    if x.dim() != 4:
        raise ValueError(f"fastflow.{op}: x must be (B, C, h, w), got shape {tuple(x.shape)}")
    _check_float("x", op, x)
    if packed.dim() != 1 or packed.dtype != torch.float32 or not packed.is_contiguous():
        raise ValueError(
            f"fastflow.{op}: packed must be a contiguous 1-D float32 tensor from pack_flow_head, "
            f"got shape {tuple(packed.shape)} {packed.dtype}"
        )
    _same_device(op, x=x, packed=packed)
    cp, has_up = _flow_head_layout(op, packed)
    b, c, h, w = x.shape
    if c != cp:
        raise ValueError(f"fastflow.{op}: x has {c} channels but packed was built for cin_padded={cp}")
    if c > 1 and x.stride(1) != 1:
        raise ValueError(
            f"fastflow.{op}: x must have channel stride 1 (torch.channels_last), got strides {tuple(x.stride())}"
        )
    offset = int(out_channel_offset)
    if out is not None:
        _check_tensor("out", op, out)
        if not has_up:
            raise ValueError(f"fastflow.{op}: out was given but packed has no upsample weight (predict_flow2)")
        _same_device(op, x=x, out=out)
        if out.dtype != x.dtype:
            raise ValueError(f"fastflow.{op}: out must have x's dtype {x.dtype}, got {out.dtype}")
        if out.dim() != 4 or out.shape[0] != b or out.shape[2] != 2 * h or out.shape[3] != 2 * w:
            raise ValueError(
                f"fastflow.{op}: out must be (B, Ctot, 2h, 2w) = ({b}, Ctot, {2 * h}, {2 * w}), got {tuple(out.shape)}"
            )
        if offset < 0 or offset + 2 > out.shape[1]:
            raise ValueError(
                f"fastflow.{op}: out_channel_offset={offset} does not leave 2 channels in out's {out.shape[1]}"
            )
        if out.shape[1] > 1 and out.stride(1) != 1:
            raise ValueError(
                f"fastflow.{op}: out must have channel stride 1 (torch.channels_last), got strides {tuple(out.stride())}"
            )
    elif offset != 0:
        raise ValueError(f"fastflow.{op}: out_channel_offset={offset} needs an out buffer")
    elif has_up:
        out = _empty(b, 2, 2 * h, 2 * w, dtype=x.dtype, like=x, memory_format=torch.channels_last)
    flow = _flow_head_op(x, packed, out, offset)
    return flow, (out[:, offset : offset + 2] if has_up else None)


# ---------------------------------------------------------------------------------------------
# conv2d_lrelu / deconv_lrelu: implicit-GEMM conv + bias + LeakyReLU into a channel slice
# ---------------------------------------------------------------------------------------------

# DECONV_TAPS[a][t]: the ConvTranspose2d(k4, s2, p1) kernel row (column) of sub-pixel tap t at output
# parity a (fastflow.network; csrc/deconv_taps.h subpixel_tap is the kernels' copy).


def _padded_channels(op: str, cin: int, cin_padded: Optional[int]) -> int:
    cp = pad8(cin) if cin_padded is None else int(cin_padded)
    if cp < cin or cp % 8:
        raise ValueError(
            f"fastflow.{op}: cin_padded must be a multiple of 8 and >= the {cin} input channels, got {cin_padded}"
        )
    return cp


def pack_conv_weight(weight: torch.Tensor, dtype: torch.dtype, cin_padded: Optional[int] = None) -> torch.Tensor:
    """Conv2d weight ``(Cout, Cin, k, k)`` -> packed ``(Cout, k, k, Cin_p)`` contiguous, dtype ``dtype``.

    The layout is the kernel's GEMM B operand ``[N][K]`` with ``K = (ky, kx, c)``, channels fastest
    (OHWI). ``Cin_p`` (default: ``Cin`` rounded up to a multiple of 8) must equal the channel count of
    the NHWC input; channels ``Cin..Cin_p-1`` get zero weights, so zero-padded inputs (conv1's 6 -> 8,
    the decoder's 1026 -> 1032 concat buffers) read nothing from the padding. Pack once and cache.
    """
    op = "pack_conv_weight"
    _check_tensor("weight", op, weight)
    if weight.dim() != 4 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"fastflow.{op}: weight must be (Cout, Cin, k, k), got shape {tuple(weight.shape)}")
    cout, cin, k, _ = weight.shape
    if k % 2 == 0 or not 1 <= k <= 7:
        raise ValueError(f"fastflow.{op}: kernel size must be odd and in 1..7, got {k}")
    if dtype not in DTYPE_CODES:
        raise ValueError(f"fastflow.{op}: dtype must be float32, float16 or bfloat16, got {dtype}")
    cp = _padded_channels(op, cin, cin_padded)
    packed = torch.zeros((cout, k, k, cp), dtype=dtype, device=weight.device)
    packed[..., :cin] = weight.detach().permute(0, 2, 3, 1).to(dtype)
    return packed


def pack_deconv_weight(weight: torch.Tensor, dtype: torch.dtype, cin_padded: Optional[int] = None) -> torch.Tensor:
    """ConvTranspose2d(k4, s2, p1) weight ``(Cin, Cout, 4, 4)`` -> packed ``(4, Cout, 2, 2, Cin_p)``.

    ``packed[2a + c, co, ty, tx, ci] = weight[ci, co, DECONV_TAPS[a][ty], DECONV_TAPS[c][tx]]``: for each
    output sub-pixel phase (row parity a, column parity c) the 2x2 stride-1 conv whose tap ``ty``
    reads input row ``m + (0 if ty == 0 else (-1 if a == 0 else +1))`` (columns likewise), laid out
    as the GEMM B operand ``[phase][N][K]``, ``K = (ty, tx, ci)``. Padding channels get zero weights.
    """
    op = "pack_deconv_weight"
    _check_tensor("weight", op, weight)
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (4, 4):
        raise ValueError(f"fastflow.{op}: weight must be (Cin, Cout, 4, 4), got shape {tuple(weight.shape)}")
    if dtype not in DTYPE_CODES:
        raise ValueError(f"fastflow.{op}: dtype must be float32, float16 or bfloat16, got {dtype}")
    cin, cout = weight.shape[:2]
    cp = _padded_channels(op, cin, cin_padded)
    packed = torch.zeros((4, cout, 2, 2, cp), dtype=dtype, device=weight.device)
    w = weight.detach()
    for a in range(2):
        for c in range(2):
            for ty in range(2):
                for tx in range(2):
                    packed[2 * a + c, :, ty, tx, :cin] = w[:, :, DECONV_TAPS[a][ty], DECONV_TAPS[c][tx]].t().to(dtype)
    return packed


def _num_sms(t: torch.Tensor) -> int:
    if t.device.type == "cuda":
        idx = t.device.index if t.device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_properties(idx).multi_processor_count
    return _SIMT.num_sms if _SIMT.active else EMULATED_SMS


def _igemm_call(
    deconv: bool, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], out: torch.Tensor,
    cout: int, ksize: int, stride: int, slope: float, offset: int, allow_tf32: bool, split_k: int,
) -> None:
    """Plans the call (tile config, split-K), allocates the split-K workspace, runs _C."""
    if x.data_ptr() % 16 or weight.data_ptr() % 16:
        op = "deconv_lrelu" if deconv else "conv2d_lrelu"
        raise ValueError(f"fastflow.{op}: x and the packed weight must start at 16-byte aligned addresses")
    b, cx, h, w = x.shape
    # The fields of the extension's IgemmCall (csrc/igemm_call.h), by name.
    call = dict(
        x=x.data_ptr(), batch=b, height=h, width=w, channels=cx, pixel_stride=_pixel_stride(x),
        weight=weight.data_ptr(), bias=0 if bias is None else bias.data_ptr(), out_channels=cout, ksize=ksize,
        stride=stride, out=out.data_ptr(), out_total_channels=out.shape[1], out_offset=offset, slope=float(slope),
        dtype=DTYPE_CODES[x.dtype], allow_tf32=bool(allow_tf32), workspace=0, workspace_elems=0,
        num_sms=_num_sms(x), split_k=split_k,
    )
    C = _backend.load()
    ws_elems = C.igemm_plan(C.IgemmCall(**call), deconv).workspace_elems
    ws = _empty(ws_elems, dtype=torch.float32, like=x) if ws_elems > 0 else None
    if ws is not None:
        call.update(workspace=ws.data_ptr(), workspace_elems=ws_elems)
    device, stream = _device_args(x)
    op = "deconv_lrelu" if deconv else "conv2d_lrelu"
    with _kernels(op, x, {"x": x, "weight": weight, "bias": bias}, {"out": out, "workspace": ws}) as lib:
        # IgemmCall is module-local: the one of the extension that runs the call.
        (lib.deconv_lrelu if deconv else lib.conv2d_lrelu)(lib.IgemmCall(**call), device, stream)


@torch.library.custom_op("fastflow::conv2d_lrelu", mutates_args=("out",))
def _conv2d_lrelu_op(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], out: torch.Tensor, stride: int, slope: float,
    out_channel_offset: int, allow_tf32: bool, split_k: int,
) -> None:
    _igemm_call(False, x, weight, bias, out, weight.shape[0], weight.shape[1], stride, slope, out_channel_offset,
                allow_tf32, split_k)


@_conv2d_lrelu_op.register_fake
def _(x, weight, bias, out, stride, slope, out_channel_offset, allow_tf32, split_k):
    return None


@torch.library.custom_op("fastflow::deconv_lrelu", mutates_args=("out",))
def _deconv_lrelu_op(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], out: torch.Tensor, slope: float,
    out_channel_offset: int, allow_tf32: bool, split_k: int,
) -> None:
    _igemm_call(True, x, weight, bias, out, weight.shape[1], 4, 2, slope, out_channel_offset, allow_tf32, split_k)


@_deconv_lrelu_op.register_fake
def _(x, weight, bias, out, slope, out_channel_offset, allow_tf32, split_k):
    return None


def _pixel_stride(x: torch.Tensor) -> int:
    """Elements between neighbouring pixels of an NHWC-read tensor (size-1 dims have arbitrary
    strides in torch, so take the first dim that pins it down)."""
    b, c, h, w = x.shape
    if w > 1:
        return x.stride(3)
    if h > 1:
        return x.stride(2)
    return x.stride(0) if b > 1 else c


def _nhwc_view(x: torch.Tensor) -> bool:
    """True if x reads as NHWC with a pixel stride >= C, a multiple of 8: a contiguous channels_last
    tensor, or a leading channel slice of one (how a conv reads its part of a concat buffer)."""
    b, c, h, w = x.shape
    ps = _pixel_stride(x)
    return (
        (x.stride(1) == 1 or c == 1) and ps >= c and ps % 8 == 0
        and (x.stride(2) == w * ps or h == 1) and (x.stride(0) == h * w * ps or b == 1)
    )


def _igemm_args(
    op: str, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], cout: int, out_shape: Tuple[int, ...],
    out: Optional[torch.Tensor], out_channel_offset: int, allow_tf32: Optional[bool], split_k: Optional[int],
):
    """Shared validation of conv2d_lrelu / deconv_lrelu; returns (x, bias, out, allow_tf32, split_k)."""
    _same_device(op, x=x, weight=weight, **({} if bias is None else {"bias": bias}), **({} if out is None else {"out": out}))
    _device_args(x)
    if weight.dtype != x.dtype:
        raise ValueError(f"fastflow.{op}: packed weight dtype {weight.dtype} differs from x dtype {x.dtype}; repack it")
    if not weight.is_contiguous():
        raise ValueError(f"fastflow.{op}: the packed weight must be contiguous (use the pack function's output)")
    if bias is not None:
        _check_tensor("bias", op, bias)
        if bias.dim() != 1 or bias.shape[0] != cout:
            raise ValueError(f"fastflow.{op}: bias must be ({cout},), got shape {tuple(bias.shape)}")
        bias = bias.detach().to(x.dtype).contiguous()
    if not _nhwc_view(x):
        x = x.contiguous(memory_format=torch.channels_last)
    b, ho, wo = out_shape[0], out_shape[2], out_shape[3]
    off = int(out_channel_offset)
    if out is None:
        if off != 0:
            raise ValueError(f"fastflow.{op}: out_channel_offset={off} needs an out buffer")
        out = _empty(*out_shape, dtype=x.dtype, like=x, memory_format=torch.channels_last)
    else:
        _check_tensor("out", op, out)
        if out.dtype != x.dtype:
            raise ValueError(f"fastflow.{op}: out dtype {out.dtype} differs from x dtype {x.dtype}")
        if out.dim() != 4 or out.shape[0] != b or tuple(out.shape[2:]) != (ho, wo):
            raise ValueError(
                f"fastflow.{op}: out must be (B={b}, Ctot, {ho}, {wo}), got shape {tuple(out.shape)}"
            )
        if not out.is_contiguous(memory_format=torch.channels_last):
            raise ValueError(f"fastflow.{op}: out must be a contiguous channels_last (NHWC) tensor")
        if off < 0 or off + cout > out.shape[1]:
            raise ValueError(
                f"fastflow.{op}: channels [{off}, {off + cout}) do not fit in out's {out.shape[1]} channels"
            )
    if allow_tf32 is None:
        allow_tf32 = bool(torch.backends.cudnn.allow_tf32)
    if split_k is None:
        split_k = 0
    if int(split_k) < 0:
        raise ValueError(f"fastflow.{op}: split_k must be None (automatic) or >= 1, got {split_k}")
    return x, bias, out, bool(allow_tf32) and x.dtype == torch.float32, int(split_k)


def _check_igemm_x(op: str, x, packed_weight, hw: str) -> None:
    _check_tensor("x", op, x)
    _check_tensor("packed_weight", op, packed_weight)
    if x.dim() != 4:
        raise ValueError(f"fastflow.{op}: x must be (B, Cx, {hw}), got shape {tuple(x.shape)}")
    _check_float("x", op, x)


def _check_channels(op: str, x: torch.Tensor, cx: int) -> None:
    if x.shape[1] != cx or cx % 8:
        raise ValueError(
            f"fastflow.{op}: x has {x.shape[1]} channels, the packed weight expects {cx} (a multiple of 8)"
        )


def conv2d_lrelu(
    x: torch.Tensor,
    packed_weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    stride: int = 1,
    slope: float = 0.1,
    out: Optional[torch.Tensor] = None,
    out_channel_offset: int = 0,
    allow_tf32: Optional[bool] = None,
    *,
    split_k: Optional[int] = None,
) -> torch.Tensor:
    """Conv2d(k, stride, padding=(k-1)//2) + bias + LeakyReLU(slope) (slope 1.0: none), fused.

    x: ``(B, Cx, H, W)`` in channels_last memory (NHWC; other layouts are copied to it first),
    float32/float16/bfloat16, ``Cx`` a multiple of 8 (pad with zero channels). packed_weight:
    :func:`pack_conv_weight` output ``(Cout, k, k, Cx)`` in x's dtype. bias: ``(Cout,)`` or None
    (converted to x's dtype). Writes ``(B, Cout, Ho, Wo)``, ``Ho = (H - 1) // stride + 1``, into
    channels ``[out_channel_offset, +Cout)`` of ``out`` (a channels_last ``(B, Ctot, Ho, Wo)``
    buffer; other channels untouched) or a new tensor, and returns it. float32 uses TF32 tensor cores
    when ``allow_tf32`` (None: ``torch.backends.cudnn.allow_tf32``), else strict fp32. ``split_k``
    forces the number of K splits (None: the kernel's heuristic). On CPU tensors this runs a slow
    host emulation of the CUDA kernel's tiling (for tests).
    """
    op = "conv2d_lrelu"
    _check_igemm_x(op, x, packed_weight, "H, W")
    if packed_weight.dim() != 4 or packed_weight.shape[1] != packed_weight.shape[2]:
        raise ValueError(
            f"fastflow.{op}: packed_weight must be (Cout, k, k, Cx) from pack_conv_weight, got {tuple(packed_weight.shape)}"
        )
    cout, k, _, cx = packed_weight.shape
    if k % 2 == 0 or not 1 <= k <= 7:
        raise ValueError(f"fastflow.{op}: kernel size must be odd and in 1..7, got {k}")
    _check_channels(op, x, cx)
    if stride not in (1, 2):
        raise ValueError(f"fastflow.{op}: stride must be 1 or 2, got {stride}")
    b, _, h, w = x.shape
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    x, bias, out, tf32, split_k = _igemm_args(
        op, x, packed_weight, bias, cout, (b, cout, ho, wo), out, out_channel_offset, allow_tf32, split_k
    )
    _conv2d_lrelu_op(x, packed_weight, bias, out, int(stride), float(slope), int(out_channel_offset), tf32, split_k)
    return out


# deconv_lrelu's signature repeats conv2d_lrelu's (less the stride) on purpose: two public ops
# whose parameters read alike; the shared checks are _check_igemm_x, _check_channels, _igemm_args.
def deconv_lrelu(
    x: torch.Tensor,
    packed_weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    slope: float = 0.1,
    out: Optional[torch.Tensor] = None,
    out_channel_offset: int = 0,
    allow_tf32: Optional[bool] = None,
    *,
    split_k: Optional[int] = None,
) -> torch.Tensor:
    """ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU(slope): ``(B, Cx, h, w)`` -> ``(B, Cout, 2h, 2w)``.

    Four sub-pixel phases, each a 2x2 stride-1 conv over x, in one launch; the epilogue does the
    pixel shuffle. x: channels_last ``(B, Cx, h, w)`` (other layouts are copied), ``Cx`` a multiple of
    8. packed_weight: :func:`pack_deconv_weight` output ``(4, Cout, 2, 2, Cx)``. ``out``,
    ``out_channel_offset``, ``allow_tf32``, ``split_k`` and the CPU emulation as in :func:`conv2d_lrelu`.
    """
    op = "deconv_lrelu"
    _check_igemm_x(op, x, packed_weight, "h, w")
    if packed_weight.dim() != 5 or packed_weight.shape[0] != 4 or tuple(packed_weight.shape[2:4]) != (2, 2):
        raise ValueError(
            f"fastflow.{op}: packed_weight must be (4, Cout, 2, 2, Cx) from pack_deconv_weight, "
            f"got {tuple(packed_weight.shape)}"
        )
    cout, cx = packed_weight.shape[1], packed_weight.shape[4]
    _check_channels(op, x, cx)
    b, _, h, w = x.shape
    x, bias, out, tf32, split_k = _igemm_args(
        op, x, packed_weight, bias, cout, (b, cout, 2 * h, 2 * w), out, out_channel_offset, allow_tf32, split_k
    )
    _deconv_lrelu_op(x, packed_weight, bias, out, float(slope), int(out_channel_offset), tf32, split_k)
    return out
