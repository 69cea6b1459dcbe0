"""fastflow.ops.upsample_flow (csrc/ops/upsample_flow/) against fastflow.reference.upsample_flow on
awkward sizes: the CPU version, the CUDA kernel through the SIMT runtime (marker simt) and on a GPU
(marker cuda, skipped without one)."""
import pytest
import torch
import torch.nn.functional as F

from conftest import rel_err, requires_cuda
from _op_bounds import DTYPES, seeded
from _simt_util import CUDA, simt_test
from fastflow import ops, reference
from fastflow.ops.upsample_flow import upsample_flow_op


# ---- CPU ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (2, 24, 32), (1, 1, 9)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample_flow(shape, dtype, channels_last):
    b, h, w = shape
    flow = (torch.randn(b, 2, h, w) * 3).to(dtype)
    if channels_last:
        flow = flow.contiguous(memory_format=torch.channels_last)
    got = ops.upsample_flow(flow, 20.0)
    want = reference.upsample_flow(flow, 20.0)
    assert got.shape == (b, 2, 4 * h, 4 * w) and got.dtype == torch.float32
    assert rel_err(got, want) <= 1e-6


def test_upsample_flow_noncontiguous_and_bad():
    big = torch.randn(2, 5, 9, 12)
    flow = big[:, 1:3, :, ::2]
    assert rel_err(ops.upsample_flow(flow, 2.5), reference.upsample_flow(flow, 2.5)) <= 1e-6
    with pytest.raises(ValueError, match=r"\(B, 2, h, w\)"):
        ops.upsample_flow(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        ops.upsample_flow(torch.zeros(1, 2, 4, 4, dtype=torch.float64))


# ---- SIMT: the CUDA kernel on the CPU -------------------------------------------------------


@simt_test
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_upsample_flow_simt(dtype):
    g = seeded(3)
    flow2 = torch.randn(2, 2, 5, 7, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    with ops.simt():
        got = ops.upsample_flow(flow2, 20.0)
    want = F.interpolate(flow2.double() * 20.0, scale_factor=4, mode="bilinear", align_corners=False)
    assert got.dtype == torch.float32 and rel_err(got, want) <= 1e-6


# ---- CUDA -----------------------------------------------------------------------------------


@requires_cuda
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (2, 112, 256), (16, 96, 128)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample_flow_cuda(shape, dtype, channels_last):
    b, h, w = shape
    flow = (torch.randn(b, 2, h, w, device="cuda") * 3).to(dtype)
    if channels_last:
        flow = flow.contiguous(memory_format=torch.channels_last)
    got = ops.upsample_flow(flow, 20.0)
    assert rel_err(got, reference.upsample_flow(flow, 20.0)) <= 1e-6


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_opcheck(device):
    torch.library.opcheck(upsample_flow_op, (torch.randn(2, 2, 3, 5, device=device), 20.0))
