"""CUDA versions of normalize_pack, upsample_flow and warp against the reference (skip without a GPU)."""
import pytest
import torch

from conftest import rel_err, requires_cuda
from fastflow import ops, reference

pytestmark = requires_cuda
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 7, 13), (2, 448, 1024), (1, 383, 511)])
@pytest.mark.parametrize("channels", [6, 8])
@pytest.mark.parametrize("dtype", DTYPES)
def test_normalize_pack_cuda(shape, channels, dtype):
    b, h, w = shape
    pair = torch.rand(b, 3, 2, h, w, device="cuda") * 255
    out = torch.full((b, channels, h, w), float("nan"), dtype=dtype, device="cuda").contiguous(memory_format=torch.channels_last)
    ops.normalize_pack(pair, 255.0, out=out)
    want = reference.normalize_pack(pair, 255.0, channels, dtype)
    assert not torch.isnan(out).any()
    assert rel_err(out, want) <= TOL[dtype]
    # bit-identical to the CPU version's float32 result up to the mean's summation order
    cpu = ops.normalize_pack(pair.cpu(), 255.0, channels, dtype)
    assert rel_err(out.cpu(), cpu) <= TOL[dtype]


def test_normalize_pack_cuda_strided():
    base = torch.rand(3, 2, 5, 11, 34, device="cuda") * 255
    pair = base.permute(0, 2, 1, 3, 4)[:, :3, :, :, ::2]
    assert rel_err(ops.normalize_pack(pair, 100.0, 8, torch.float16), reference.normalize_pack(pair, 100.0, 8, torch.float16)) <= 1e-3


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


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 7, 9), (2, 64, 96, 128), (1, 2, 448, 1024)])
@pytest.mark.parametrize("padding", ["border", "zeros"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_warp_cuda(shape, padding, dtype, layout):
    b, c, h, w = shape
    x = torch.randn(b, c, h, w, device="cuda").to(dtype)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    flow = torch.randn(b, 2, h, w, device="cuda") * max(h, w) * 0.3
    kw = {"return_mask": True} if padding == "zeros" else {}
    got = ops.warp(x, flow, padding, **kw)
    want = reference.warp(x, flow, padding, **kw)
    if kw:
        assert torch.equal(got[1], want[1])
        got, want = got[0], want[0]
    assert rel_err(got, want) <= TOL[dtype]
    cpu = ops.warp(x.cpu(), flow.cpu(), padding, **kw)
    cpu = cpu[0] if kw else cpu
    assert rel_err(got.cpu(), cpu) <= TOL[dtype]


def test_ops_on_side_stream_and_second_call():
    s = torch.cuda.Stream()
    x = torch.randn(2, 3, 33, 65, device="cuda")
    flow = torch.randn(2, 2, 33, 65, device="cuda") * 4
    with torch.cuda.stream(s):
        out = ops.warp(x, flow)
    s.synchronize()
    assert rel_err(out, reference.warp(x, flow)) <= 1e-5


def test_cuda_opcheck():
    pair = torch.rand(2, 3, 2, 5, 7, device="cuda") * 255
    out = torch.empty(2, 8, 5, 7, device="cuda").contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(ops._normalize_pack_op, (pair, 255.0, out))
    torch.library.opcheck(ops._upsample_flow_op, (torch.randn(2, 2, 3, 5, device="cuda"), 20.0))
    torch.library.opcheck(ops._warp_op, (torch.randn(2, 3, 5, 7, device="cuda"), torch.randn(2, 2, 5, 7, device="cuda"), True, True))
