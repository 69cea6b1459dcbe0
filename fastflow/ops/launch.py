"""How every op of :mod:`fastflow.ops` launches: the extension to call (``fastflow._C``, or inside
:func:`simt` on CPU tensors ``fastflow._simt`` with the op's tensors registered), device and
stream arguments, output allocation, and the argument checks the ops share.

Inside ``with fastflow.ops.simt():`` the ops given CPU tensors run their CUDA kernels instead, on
the CPU, through the SIMT host runtime ``fastflow._simt`` (csrc/simt/), which checks them for
shared-memory races, uninitialised and out-of-bounds accesses, barrier mistakes and more.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
from typing import Dict, Iterator, Optional, Tuple

import torch

from .. import _backend

# The extension's dtype codes (csrc/common/common.h DType) by torch dtype, and the number of
# partial sums per (sample, colour) of normalize_pack's CUDA mean (kMeanSplits in
# csrc/ops/normalize_pack/normalize_pack.h): read from fastflow._C, which fastflow._simt shares
# (tests/test_bindings.py).
DTYPE_CODES = {getattr(torch, name): code for name, code in _backend.load().DTYPE_CODES.items()}
MEAN_SPLITS = int(_backend.load().MEAN_SPLITS)

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
SIMT_LOCK = threading.Lock()


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


def simt_on(t: torch.Tensor) -> bool:
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
def kernels(op: str, t: torch.Tensor, reads: Dict[str, Optional[torch.Tensor]],
             writes: Dict[str, Optional[torch.Tensor]]):
    """The extension to launch with: ``fastflow._C``, or inside ``simt()`` on CPU tensors
    ``fastflow._simt`` with the op's tensors registered (global accesses outside them, and writes
    to the ``reads``, are reported)."""
    if not simt_on(t):
        yield _backend.load()
        return
    lib = _backend.load_simt()
    bufs = [(x.data_ptr(), _span_bytes(x), name, True) for name, x in writes.items() if x is not None]
    bufs += [(x.data_ptr(), _span_bytes(x), name, False) for name, x in reads.items() if x is not None]
    with SIMT_LOCK:
        lib.configure(_SIMT.num_sms, SIMT_SMEM_OPTIN, _SIMT.threads)
        lib.set_buffers(bufs)
        try:
            yield lib
        except SimtError as e:
            raise SimtError(f"fastflow.{op}: " + _symbolize(str(e), lib.__file__)) from None
        finally:
            lib.set_buffers([])


def empty(*shape, dtype: torch.dtype, like: torch.Tensor, memory_format=torch.contiguous_format) -> torch.Tensor:
    """torch.empty on like's device; NaN-filled under simt() so that unwritten elements show."""
    t = torch.empty(shape, dtype=dtype, device=like.device, memory_format=memory_format)
    if simt_on(like):
        t.fill_(float("nan"))
    return t


def device_args(t: torch.Tensor) -> Tuple[int, int]:
    """(device index or -1 for the CPU, current CUDA stream handle or 0); 0, 0 for the SIMT runtime."""
    if t.device.type == "cpu":
        return (0, 0) if _SIMT.active else (-1, 0)
    if t.device.type == "cuda":
        idx = t.device.index if t.device.index is not None else torch.cuda.current_device()
        return idx, torch.cuda.current_stream(idx).cuda_stream
    raise ValueError(f"fastflow ops run on CPU or CUDA tensors, got a tensor on {t.device}")


def check_float(name: str, op: str, t: torch.Tensor) -> None:
    if t.dtype not in DTYPE_CODES:
        raise ValueError(
            f"fastflow.{op}: {name} must be float32, float16 or bfloat16, got {t.dtype}"
        )


def check_tensor(name: str, op: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"fastflow.{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def same_device(op: str, **tensors: torch.Tensor) -> None:
    devs = {n: t.device for n, t in tensors.items()}
    if len(set(devs.values())) > 1:
        desc = ", ".join(f"{n} on {d}" for n, d in devs.items())
        raise ValueError(f"fastflow.{op}: tensors must be on the same device, got {desc}")


def num_sms(t: torch.Tensor) -> int:
    """Multiprocessors the conv/deconv plans fill: the GPU's, the SIMT run's, or the emulated H100's."""
    if t.device.type == "cuda":
        idx = t.device.index if t.device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_properties(idx).multi_processor_count
    return _SIMT.num_sms if _SIMT.active else EMULATED_SMS
