"""fastflow.ops.normalize_pack (csrc/ops/normalize_pack/) against fastflow.reference.normalize_pack on
awkward sizes with fresh random inputs: the CPU version, the CUDA kernels through the SIMT runtime
(marker simt) and on a GPU (marker cuda, skipped without one)."""
import pytest
import torch

from conftest import rel_err, requires_cuda
from _op_bounds import DTYPES, TOL, TOL_SIMT, seeded
from _simt_util import CUDA, simt_test
from fastflow import ops, reference
from fastflow.ops.normalize_pack import normalize_pack_op

# ---- CPU ------------------------------------------------------------------------------------


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
    assert rel_err(got, want) <= TOL[dtype]
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


# ---- SIMT: the CUDA kernels on the CPU ------------------------------------------------------


@simt_test
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels", [6, 8])
def test_normalize_pack_simt(channels, dtype):
    g = seeded(channels)
    pair = torch.rand(2, 3, 2, 11, 37, generator=g) * 255
    pair = pair.transpose(3, 4).contiguous().transpose(3, 4)  # strided (W-major) input
    with ops.simt():
        got = ops.normalize_pack(pair, 255.0, channels=channels, dtype=dtype)
    x = pair.double() / 255.0
    x = x - x.mean(dim=(2, 3, 4), keepdim=True)
    want = torch.cat((x[:, :, 0], x[:, :, 1]), 1)
    assert rel_err(got[:, :6], want) <= TOL_SIMT[dtype]
    if channels == 8:
        assert (got[:, 6:] == 0).all()


# ---- CUDA -----------------------------------------------------------------------------------


@requires_cuda
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


@requires_cuda
def test_normalize_pack_cuda_strided():
    base = torch.rand(3, 2, 5, 11, 34, device="cuda") * 255
    pair = base.permute(0, 2, 1, 3, 4)[:, :3, :, :, ::2]
    assert rel_err(ops.normalize_pack(pair, 100.0, 8, torch.float16), reference.normalize_pack(pair, 100.0, 8, torch.float16)) <= 1e-3


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_opcheck(device):
    pair = torch.rand(2, 3, 2, 5, 7, device=device) * 255
    out = torch.empty(2, 8, 5, 7, device=device).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(normalize_pack_op, (pair, 255.0, out))
