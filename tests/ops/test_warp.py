"""fastflow.ops.warp (csrc/ops/warp/) against fastflow.reference.warp: every layout and padding, the
mask and non-finite flow, on the CPU version, the CUDA kernel through the SIMT runtime (marker simt)
and on a GPU (marker cuda, skipped without one). fastflow.warp's other layouts: tests/test_api.py."""
import pytest
import torch

from conftest import rel_err, requires_cuda
from _op_bounds import DTYPES, TOL, TOL_SIMT, seeded
from _simt_util import CUDA, DEVICES, on_device, simt_test
from fastflow import ops, reference
from fastflow.ops.warp import warp_op

# ---- CPU (a `device` parameter: also SIMT and CUDA) -----------------------------------------


def _flow(b, h, w, scale):
    return torch.randn(b, 2, h, w) * scale


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 7, 9), (2, 3, 16, 24), (1, 4, 1, 13)])
@pytest.mark.parametrize("padding", ["border", "zeros"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["nchw", "nhwc", "strided"])
def test_warp(shape, padding, dtype, layout):
    b, c, h, w = shape
    x = torch.randn(b, c, h, w).to(dtype)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = torch.randn(b, c, h, 2 * w).to(dtype)[..., ::2]
    flow = _flow(b, h, w, max(h, w) * 0.7)  # many samples land outside the image
    got = ops.warp(x, flow, padding)
    want = reference.warp(x, flow, padding)
    assert got.shape == x.shape and got.dtype == dtype
    if layout == "nhwc":
        assert got.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(got, want) <= TOL[dtype]


@pytest.mark.parametrize("device", DEVICES)
def test_warp_mask_and_special_values(device):
    b, c, h, w = 2, 3, 9, 11
    x = torch.randn(b, c, h, w)
    flow = _flow(b, h, w, 6.0)
    flow[0, 0, 0, 0] = float("nan")
    flow[1, 1, 2, 3] = float("inf")
    flow[1, 0, 4, 4] = 1e30
    flow[0, :, 5, 5] = torch.tensor([-2.0, 0.0])  # lands on x = 3, inside
    with on_device(device) as d:
        x, flow = x.to(d), flow.to(d)
        out, mask = ops.warp(x, flow, "zeros", return_mask=True)
        border = ops.warp(x, flow, "border")
    rout, rmask = reference.warp(x, flow, "zeros", return_mask=True)
    # the CPU version and the SIMT build (no FMA contraction) within 1e-6; CUDA within the fp32 bound
    assert rel_err(out, rout) <= (TOL[torch.float32] if device == "cuda" else 1e-6)
    assert torch.equal(mask, rmask)
    assert mask[0, 0, 0, 0] == 0 and out[0, :, 0, 0].eq(0).all()
    assert mask[0, 0, 5, 5] == 1
    assert torch.isnan(border[0, :, 0, 0]).all() and torch.isnan(border[1, :, 2, 3]).all()
    finite = torch.isfinite(flow).all(1, keepdim=True).expand_as(x)
    rb = reference.warp(x, flow, "border")
    torch.testing.assert_close(border[finite], rb[finite])


@pytest.mark.parametrize("device", DEVICES)
def test_warp_identity_and_shift(device):
    with on_device(device) as d:
        x = torch.randn(1, 2, 6, 8, device=d)
        torch.testing.assert_close(ops.warp(x, torch.zeros(1, 2, 6, 8, device=d)), x)
        flow = torch.zeros(1, 2, 6, 8, device=d)
        flow[:, 0] = 1.0  # sample one pixel to the right
        out = ops.warp(x, flow, "zeros")
        torch.testing.assert_close(out[..., :-1], x[..., 1:])
        assert out[..., -1].eq(0).all()
        torch.testing.assert_close(ops.warp(x, flow, "border")[..., -1], x[..., -1])


def test_warp_unbatched():
    x = torch.randn(3, 5, 6)
    flow = torch.randn(2, 5, 6)
    got = ops.warp(x, flow)
    assert got.shape == (3, 5, 6)
    torch.testing.assert_close(got, reference.warp(x[None], flow[None])[0])


@pytest.mark.parametrize(
    "x, flow, kw, match",
    [
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 5), {}, "does not match"),
        (torch.zeros(2, 3, 4, 4), torch.zeros(1, 2, 4, 4), {}, "does not match"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), {}, r"\(B, 2, H, W\)"),
        (torch.zeros(4), torch.zeros(1, 2, 4, 4), {}, r"need x as \(H, W, C\), \(C, H, W\)"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.bool), torch.zeros(1, 2, 4, 4), {}, "unsupported dtype"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4), {"padding": "reflect"}, "padding"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4), {"return_mask": True}, "zeros"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4, device="meta"), {}, "same device"),
    ],
)
def test_warp_rejects(x, flow, kw, match):
    with pytest.raises(ValueError, match=match):
        ops.warp(x, flow, **kw)


# ---- SIMT: the CUDA kernel on the CPU -------------------------------------------------------


@simt_test
@pytest.mark.parametrize("padding", ["border", "zeros"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_warp_simt(layout, dtype, padding):
    g = seeded(5)
    x = torch.randn(2, 5, 9, 13, generator=g).to(dtype)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    flow = torch.randn(2, 2, 9, 13, generator=g) * 4
    with ops.simt():
        got = ops.warp_nchw(x, flow, padding, return_mask=padding == "zeros")
    want = ops.warp_nchw(x, flow, padding, return_mask=padding == "zeros")  # the CPU version
    if padding == "zeros":
        assert torch.equal(got[1], want[1])
        got, want = got[0], want[0]
    assert got.is_contiguous(memory_format=torch.channels_last) == (layout == "nhwc")
    assert torch.isfinite(got).all() and rel_err(got, want) <= 1e-6
    assert rel_err(got.double(), reference.warp(x.double(), flow.double(), padding)) <= TOL_SIMT[dtype]


# ---- CUDA -----------------------------------------------------------------------------------


@requires_cuda
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


@requires_cuda
def test_warp_on_side_stream_cuda():
    s = torch.cuda.Stream()
    x = torch.randn(2, 3, 33, 65, device="cuda")
    flow = torch.randn(2, 2, 33, 65, device="cuda") * 4
    with torch.cuda.stream(s):
        out = ops.warp(x, flow)
    s.synchronize()
    assert rel_err(out, reference.warp(x, flow)) <= 1e-5


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_opcheck(device):
    torch.library.opcheck(warp_op, (torch.randn(2, 3, 5, 7, device=device), torch.randn(2, 2, 5, 7, device=device), True, True))
