"""Precisions, in one place: the names ``fp32 | tf32 | fp16 | bf16``, what each means on a CPU and
on CUDA, which a device supports, and how to run a model in one without process-wide state.

=========  ===========================================  =============================================
name       CUDA (fastflow kernels)                      CPU (oneDNN forward)
=========  ===========================================  =============================================
``fp32``   float32 weights, strict fp32 FFMA kernels     float32
``tf32``   float32 weights, TF32 tensor-core kernels     float32 (TF32 is a GPU format: same as fp32)
``fp16``   float16 weights, fp16 ``mma`` (fp32 accum.)   computes in float32 (no fast fp16 convolutions)
``bf16``   bfloat16 weights, bf16 ``mma`` (fp32 accum.)  oneDNN bf16 where the CPU has bf16 instructions
=========  ===========================================  =============================================

A float32 :class:`fastflow.FlowNet2S` picks fp32 or tf32 from its ``allow_tf32`` attribute, which
:func:`apply` sets; left at ``None`` (a freshly built module) it follows PyTorch's own switch,
``torch.backends.cudnn.allow_tf32``, as a drop-in for the reference module must.
"""
from __future__ import annotations

import contextlib
from typing import List, Optional

__all__ = ["PRECISIONS", "check", "dtype_of", "supported", "default", "resolve", "apply", "of", "torch_tf32"]

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
_DTYPE_NAMES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}

# torch is imported where it is used: `fastflow validate --help` and friends stay quick.


def check(name: str) -> str:
    """``name`` if it is one of :data:`PRECISIONS`, else a ValueError naming the choices."""
    if name not in _DTYPE_NAMES:
        raise ValueError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    return name


def dtype_of(name: str):
    """The parameter dtype (a ``torch.dtype``) of a model in precision ``name`` (tf32 and fp32 are
    both float32)."""
    import torch

    return getattr(torch, _DTYPE_NAMES[check(name)])


def supported(device) -> List[str]:
    """The precisions fastflow runs on ``device``, fp32 first: ``fp32, bf16, fp16`` on a CPU (no
    TF32 there), ``fp32, tf32, fp16`` and ``bf16`` (where the GPU supports it) on CUDA."""
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        return ["fp32", "bf16", "fp16"]
    out = ["fp32", "tf32", "fp16"]
    with torch.cuda.device(device):
        if torch.cuda.is_bf16_supported():
            out.append("bf16")
    return out


def default(device) -> str:
    """``tf32`` on CUDA (PyTorch's default for convolutions), ``fp32`` on a CPU."""
    import torch

    return "tf32" if torch.device(device).type == "cuda" else "fp32"


def resolve(name: Optional[str], device) -> str:
    """What ``name`` (None: :func:`default`) runs as on ``device``: tf32 on a CPU is fp32; a
    precision the device cannot run is a ValueError."""
    import torch

    device = torch.device(device)
    name = default(device) if name is None else check(name)
    if name == "tf32" and device.type == "cpu":
        return "fp32"
    if name not in supported(device):
        raise ValueError(f"precision {name} is not supported on {device}")
    return name


def apply(model, name: str):
    """Cast ``model`` to precision ``name`` in place and return it. On a fastflow model the fp32 /
    tf32 choice is stored on the model (``allow_tf32``), so nothing process-wide changes."""
    model = model.to(dtype_of(name))
    if hasattr(model, "allow_tf32"):
        model.allow_tf32 = {"fp32": False, "tf32": True}.get(name)
    return model


def of(model) -> str:
    """The precision name ``model`` runs in on CUDA: from its parameters' dtype and, for float32,
    its ``allow_tf32`` (or PyTorch's switch when that is None or absent)."""
    import torch

    dt = next(model.parameters()).dtype
    if dt == torch.float16:
        return "fp16"
    if dt == torch.bfloat16:
        return "bf16"
    tf32 = getattr(model, "allow_tf32", None)
    if tf32 is None:
        tf32 = torch.backends.cudnn.allow_tf32
    return "tf32" if tf32 else "fp32"


@contextlib.contextmanager
def torch_tf32(enabled: bool):
    """PyTorch's own TF32 switches (matmuls and cuDNN convolutions) set for the block, then
    restored: for plain PyTorch modules such as the reference, which read only those."""
    import torch

    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
