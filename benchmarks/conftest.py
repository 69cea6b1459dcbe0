"""Benchmark configuration: FASTFLOW_BENCH_SIZE (HxW, default 384x512 on CPU / 448x1024 on GPU),
FASTFLOW_BENCH_BATCH (default 1), FASTFLOW_BENCH_DEVICE (default cuda if available)."""
import os
import sys

import pytest
import torch

# As tests/conftest.py: `python -m pytest benchmarks` in the source folder puts that folder first on
# sys.path, where fastflow/ is the uncompiled checkout; benchmark the installed package instead.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _ROOT]


@pytest.fixture(scope="session")
def bench_cfg():
    device = torch.device(os.environ.get("FASTFLOW_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))
    default = "448x1024" if device.type == "cuda" else "384x512"
    h, w = (int(v) for v in os.environ.get("FASTFLOW_BENCH_SIZE", default).split("x"))
    return {"device": device, "h": h, "w": w, "batch": int(os.environ.get("FASTFLOW_BENCH_BATCH", "1"))}


def synced(fn, device):
    """fn followed by a device synchronisation, so pytest-benchmark times finished work."""
    if device.type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run
