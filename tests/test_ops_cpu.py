"""CPU versions of the fused ops against fastflow.reference on awkward sizes, fresh random inputs."""
import pytest
import torch

from conftest import rel_err
from fastflow import ops, reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _tol(dtype):
    # fp32: docs/design.md section 7's 1e-5. 16-bit outputs: one rounding of each element
    # (2^-11 / 2^-8 relative).
    return {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 7, 13), (2, 64, 96), (1, 33, 1)])
@pytest.mark.parametrize("channels", [6, 8])
@pytest.mark.parametrize("dtype", DTYPES)
def test_normalize_pack(shape, channels, dtype):
    b, h, w = shape
    pair = torch.rand(b, 3, 2, h, w) * 255
    got = ops.normalize_pack(pair, 255.0, channels, dtype)
    want = reference.normalize_pack(pair, 255.0, channels, dtype)
    assert got.shape == (b, channels, h, w) and got.dtype == dtype
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(got, want) <= _tol(dtype)
    assert torch.all(got[:, 6:] == 0)


def test_normalize_pack_strided_and_out():
    base = torch.rand(3, 2, 5, 11, 17) * 255  # a permuted, non-contiguous (B, 3, 2, H, W) view
    pair = base.permute(0, 2, 1, 3, 4)[:, :3, :, :, ::2]
    assert not pair.is_contiguous()
    out = torch.full((3, 8, 11, 9), float("nan")).contiguous(memory_format=torch.channels_last)
    got = ops.normalize_pack(pair, 100.0, out=out)
    assert got is out
    assert rel_err(out, reference.normalize_pack(pair, 100.0, 8)) <= 1e-6
    # float64 input is accepted (converted to float32 first)
    assert rel_err(ops.normalize_pack(pair.double()), reference.normalize_pack(pair)) <= 1e-6


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(1, 3, 64, 64), r"\(B, 3, 2, H, W\)"),
        (torch.zeros(1, 4, 2, 8, 8), r"\(B, 3, 2, H, W\)"),
        (torch.zeros(1, 3, 2, 8, 8, dtype=torch.uint8), "floating-point"),
    ],
)
def test_normalize_pack_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        ops.normalize_pack(bad)


def test_normalize_pack_rejects_args():
    with pytest.raises(ValueError, match="channels"):
        ops.normalize_pack(torch.zeros(1, 3, 2, 8, 8), channels=7)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="rgb_max"):
            ops.normalize_pack(torch.zeros(1, 3, 2, 8, 8), rgb_max=bad)
    with pytest.raises(ValueError, match="out must be"):
        ops.normalize_pack(torch.zeros(1, 3, 2, 8, 8), out=torch.zeros(1, 8, 8, 9))


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
    assert rel_err(got, want) <= _tol(dtype)


def test_warp_mask_and_special_values():
    b, c, h, w = 2, 3, 9, 11
    x = torch.randn(b, c, h, w)
    flow = _flow(b, h, w, 6.0)
    flow[0, 0, 0, 0] = float("nan")
    flow[1, 1, 2, 3] = float("inf")
    flow[1, 0, 4, 4] = 1e30
    flow[0, :, 5, 5] = torch.tensor([-2.0, 0.0])  # lands on x = 3, inside
    out, mask = ops.warp(x, flow, "zeros", return_mask=True)
    rout, rmask = reference.warp(x, flow, "zeros", return_mask=True)
    assert rel_err(out, rout) <= 1e-6
    assert torch.equal(mask, rmask)
    assert mask[0, 0, 0, 0] == 0 and out[0, :, 0, 0].eq(0).all()
    assert mask[0, 0, 5, 5] == 1
    border = ops.warp(x, flow, "border")
    assert torch.isnan(border[0, :, 0, 0]).all() and torch.isnan(border[1, :, 2, 3]).all()
    finite = torch.isfinite(flow).all(1, keepdim=True).expand_as(x)
    rb = reference.warp(x, flow, "border")
    torch.testing.assert_close(border[finite], rb[finite])


def test_warp_identity_and_shift():
    x = torch.randn(1, 2, 6, 8)
    torch.testing.assert_close(ops.warp(x, torch.zeros(1, 2, 6, 8)), x)
    flow = torch.zeros(1, 2, 6, 8)
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


def test_opcheck():
    pair = torch.rand(2, 3, 2, 5, 7) * 255
    out = torch.empty(2, 8, 5, 7).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(ops._normalize_pack_op, (pair, 255.0, out))
    torch.library.opcheck(ops._upsample_flow_op, (torch.randn(2, 2, 3, 5), 20.0))
    torch.library.opcheck(ops._warp_op, (torch.randn(2, 3, 5, 7), torch.randn(2, 2, 5, 7), True, True))
