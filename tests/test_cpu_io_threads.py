"""The CPU prologue and output kernels (csrc/ops/normalize_pack/normalize_pack_cpu.cpp,
ops/upsample_flow/upsample_flow_cpu.cpp) on sizes big enough to be split over threads, odd widths
(vector-lane tails), strided inputs, against fastflow.reference in float64."""
import pytest
import torch

from conftest import rel_err
from fastflow import ops, reference


@pytest.mark.parametrize("b, h, w", [(1, 257, 511), (3, 96, 301), (2, 1, 70001)])
@pytest.mark.parametrize("channels", [6, 8])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.bfloat16, 5e-3), (torch.float16, 6e-4)])
def test_normalize_pack_threaded(b, h, w, channels, dtype, tol):
    torch.manual_seed(h * w + channels)
    pair = torch.rand(b, 3, 2, h, w) * 255
    got = ops.normalize_pack(pair, 255.0, channels, dtype)
    want = reference.normalize_pack(pair.double(), 255.0, channels, torch.float64)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(got, want) <= tol
    assert torch.all(got[:, 6:] == 0)
    # each batch item has its own means: normalised channels average to ~0 per item and colour
    means = got[:, :6].double().mean(dim=(2, 3)).view(b, 2, 3).mean(1)
    assert means.abs().max() < 1e-3


def test_normalize_pack_threaded_strided_and_bright():
    """A transposed (x-stride != 1) input with values near 255: the mean's summation must not drift."""
    base = 250 + torch.rand(2, 3, 2, 300, 260) * 5
    pair = base.transpose(3, 4).contiguous().transpose(3, 4)
    assert pair.stride(4) != 1
    got = ops.normalize_pack(pair, 255.0, 8, torch.float32)
    want = reference.normalize_pack(pair.double(), 255.0, 8, torch.float64)
    assert rel_err(got, want) <= 1e-5


@pytest.mark.parametrize("b, h, w", [(1, 112, 256), (3, 33, 97)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_upsample_flow_threaded(b, h, w, dtype):
    flow = (torch.randn(b, 2, h, w) * 3).to(dtype).contiguous(memory_format=torch.channels_last)
    got = ops.upsample_flow(flow, 20.0)
    want = reference.upsample_flow(flow.double(), 20.0)
    assert got.shape == (b, 2, 4 * h, 4 * w) and got.dtype == torch.float32
    assert rel_err(got, want) <= 1e-6


def test_same_result_on_any_thread_count(tmp_path):
    """FASTFLOW_CPU_IO_THREADS (read once per process) changes the split, never the numbers."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, sys\n"
        "from fastflow import ops\n"
        "g = torch.Generator().manual_seed(7)\n"
        "pair = torch.rand(2, 3, 2, 131, 257, generator=g) * 255\n"
        "flow = torch.randn(2, 2, 37, 53, generator=g)\n"
        "torch.save((ops.normalize_pack(pair, 255.0, 8, torch.bfloat16), ops.upsample_flow(flow, 20.0)), sys.argv[1])\n"
    )
    outs = {}
    for t in ("", "1", "3"):
        env = dict(os.environ, FASTFLOW_CPU_IO_THREADS=t, PYTHONPATH=os.pathsep.join(sys.path))
        path = tmp_path / f"out{t or 'default'}.pt"
        r = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True, timeout=300,
                           cwd=tmp_path)  # the installed package, not the source tree
        assert r.returncode == 0, r.stderr
        outs[t] = torch.load(path)
    for t in ("1", "3"):
        for a, b in zip(outs[""], outs[t]):
            assert torch.equal(a, b)
