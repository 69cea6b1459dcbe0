"""Shared pieces of the SIMT tests (tests/test_simt_*.py and the "simt" cases of tests/ops/, marker
``simt``).

The SIMT host runtime (``fastflow._simt``, csrc/simt/) runs the CUDA kernels on the CPU. It is
built by every install, so its absence fails these tests instead of skipping them, unless the
build was told to skip it (FASTFLOW_NO_SIMT=1).
"""
from __future__ import annotations

import contextlib
import os

import pytest
import torch

from conftest import requires_cuda
from fastflow import _backend, ops
from fastflow.ops import launch


def _simt_missing_reason():
    try:
        _backend.load_simt()
        return None
    except ImportError as e:
        return str(e)


_MISSING = _simt_missing_reason()
_SKIP_OK = os.environ.get("FASTFLOW_NO_SIMT", "") not in ("", "0")

# Apply to every SIMT test module: pytestmark = simt_marks
simt_marks = [pytest.mark.simt] + (
    [pytest.mark.skipif(_SKIP_OK and _MISSING is not None, reason=f"FASTFLOW_NO_SIMT set: {_MISSING}")]
)


def require_simt():
    """Fails the calling test when fastflow._simt is missing (unless FASTFLOW_NO_SIMT is set, when
    simt_marks skip it)."""
    if _MISSING is not None and not _SKIP_OK:
        pytest.fail(f"fastflow._simt is missing: {_MISSING}")


@pytest.fixture(autouse=True)
def _require_simt():
    require_simt()


def simt_test(fn):
    """Marks one test of a mixed module (tests/ops/) as a SIMT test: marker ``simt``, the
    FASTFLOW_NO_SIMT skip, and it fails when fastflow._simt is missing."""
    for mark in simt_marks:
        fn = mark(fn)
    return fn


# The `device` parameter of device-generic op tests (tests/ops/): the C++ CPU version, the CUDA
# kernels on the CPU through the SIMT runtime (marker simt), a GPU (marker cuda, skipped without one).
SIMT = pytest.param("simt", marks=simt_marks)
CUDA = pytest.param("cuda", marks=requires_cuda)
DEVICES = ["cpu", SIMT, CUDA]


@contextlib.contextmanager
def on_device(device: str, **simt_kwargs):
    """Yields the torch device of an op test's tensors: "cpu" and "cuda" as they are; "simt" yields
    "cpu" with the block inside ``ops.simt(**simt_kwargs)`` (the CUDA kernels run on the CPU)."""
    if device == "simt":
        require_simt()
        with ops.simt(**simt_kwargs):
            yield "cpu"
    else:
        yield device


def probe(kind: int, out_shape, out_dtype, a, b=None, c=None, n: int = 0, device: str = "cpu") -> torch.Tensor:
    """Runs ptx_probe `kind` (csrc/ptx_probe/ptx_probe.h) on a GPU (device "cuda") or through the SIMT runtime."""
    t = a.to(device)
    args = [x.to(device).contiguous() if x is not None else None for x in (a, b, c)]
    out = torch.full(out_shape, -1, dtype=out_dtype, device=device)
    ptrs = [x.data_ptr() if x is not None else 0 for x in args]
    if device == "cpu":
        with ops.simt(), launch.kernels("ptx_probe", t, {"a": args[0], "b": args[1], "c": args[2]}, {"out": out}) as lib:
            lib.ptx_probe(kind, *ptrs, out.data_ptr(), n, 0, 0)
    else:
        lib = _backend.load()
        lib.ptx_probe(kind, *ptrs, out.data_ptr(), n, t.device.index or 0, torch.cuda.current_stream().cuda_stream)
        torch.cuda.synchronize()
    return out.cpu()


PROBE_LDMATRIX, PROBE_MMA_F16, PROBE_MMA_BF16, PROBE_MMA_TF32, PROBE_CVT_TF32, PROBE_CP_ASYNC = range(6)
