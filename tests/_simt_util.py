"""Shared pieces of the SIMT tests (tests/test_simt_*.py, marker ``simt``).

The SIMT host runtime (``fastflow._simt``, csrc/simt/) runs the CUDA kernels on the CPU. It is
built by every install, so its absence fails these tests instead of skipping them, unless the
build was told to skip it (FASTFLOW_NO_SIMT=1).
"""
from __future__ import annotations

import os

import pytest
import torch

from fastflow import _backend, ops


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


@pytest.fixture(autouse=True)
def _require_simt():
    if _MISSING is not None and not _SKIP_OK:
        pytest.fail(f"fastflow._simt is missing: {_MISSING}")


def probe(kind: int, out_shape, out_dtype, a, b=None, c=None, n: int = 0, device: str = "cpu") -> torch.Tensor:
    """Runs ptx_probe `kind` (csrc/ptx_probe.h) on a GPU (device "cuda") or through the SIMT runtime."""
    t = a.to(device)
    args = [x.to(device).contiguous() if x is not None else None for x in (a, b, c)]
    out = torch.full(out_shape, -1, dtype=out_dtype, device=device)
    ptrs = [x.data_ptr() if x is not None else 0 for x in args]
    if device == "cpu":
        with ops.simt(), ops._kernels("ptx_probe", t, {"a": args[0], "b": args[1], "c": args[2]}, {"out": out}) as lib:
            lib.ptx_probe(kind, *ptrs, out.data_ptr(), n, 0, 0)
    else:
        lib = _backend.load()
        lib.ptx_probe(kind, *ptrs, out.data_ptr(), n, t.device.index or 0, torch.cuda.current_stream().cuda_stream)
        torch.cuda.synchronize()
    return out.cpu()


PROBE_LDMATRIX, PROBE_MMA_F16, PROBE_MMA_BF16, PROBE_MMA_TF32, PROBE_CVT_TF32, PROBE_CP_ASYNC = range(6)
