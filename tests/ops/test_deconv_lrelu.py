"""fastflow.ops.deconv_lrelu: ConvTranspose2d(k4, s2, p1) + bias + LeakyReLU as 4 sub-pixel GEMMs
(kernels: csrc/igemm/, binding: csrc/ops/deconv_lrelu/).

CPU tests (CI) run the host emulation of the CUDA kernel's tiling; SIMT tests (marker simt) run the
CUDA kernels on the CPU through the SIMT runtime, every tile config x precision x split-K; CUDA
tests run the kernel on every FlowNet2-S decoder shape.
"""
import pytest
import torch

from fastflow import network, ops, reference
from fastflow.ops.deconv_lrelu import deconv_lrelu_op
from conftest import requires_cuda
from _igemm_util import (PRECISIONS, bit_exact_params, check_bit_exact, check_deconv, check_simt_case, decoder_inputs,
                         igemm_plan, layer_cases, simt_kernel_params)
from _simt_util import simt_test


# (Cin, Cout, h, w): odd and tiny sizes, Cout not a multiple of 8, a single input pixel.
AWKWARD = [(13, 37, 3, 5), (8, 2, 1, 1), (24, 70, 5, 2), (40, 129, 2, 7), (3, 9, 1, 4)]


# The two widest layers in two precisions only: their PyTorch CPU references dominate the time.
DECODER_CPU = layer_cases(decoder_inputs(128, 128), lambda layer: layer[1] >= 1000, ("fp32", "bf16"))


@pytest.mark.parametrize("layer,prec", DECODER_CPU)
def test_decoder_layers_emulated(layer, prec):
    _, cin, cx, cout, h, w = layer
    check_deconv(prec, 1, cin, cout, min(h, 3), min(w, 2), "cpu", cx=cx)


@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("shape", AWKWARD, ids=str)
def test_awkward_shapes_emulated(shape, prec):
    cin, cout, h, w = shape
    check_deconv(prec, 2, cin, cout, h, w, "cpu")


@pytest.mark.parametrize("split_k", [2, 5])
def test_forced_split_k_emulated(split_k):
    check_deconv("fp32", 2, 24, 10, 3, 4, "cpu", split_k=split_k)
    check_deconv("fp16", 1, 64, 16, 2, 3, "cpu", split_k=split_k, before=8, after=0)


@pytest.mark.parametrize("before,after", [(0, 0), (8, 8), (1, 6), (512, 2)])
def test_slices_emulated(before, after):
    check_deconv("bf16", 1, 16, 24, 3, 2, "cpu", before=before, after=after)


def test_plan_splits_deconv5_at_batch_1():
    name, cin, cx, cout, h, w = decoder_inputs(384, 512)[0]
    assert name == "deconv5"
    splits = igemm_plan(True, 1, h, w, cx, cout, 4, 2, 1, True, 132, 0)[4]
    assert splits > 1


@pytest.mark.parametrize("prec", ["fp32", "bf16"])
def test_big_tile_config_emulated(prec):
    """Enough low-res pixels for a full wave of 128x128 tiles over the 4 phases."""
    assert igemm_plan(True, 1, 66, 65, 8, 72, 4, 2, 2, True, ops.EMULATED_SMS, 0)[:3] == (0, 128, 128)
    check_deconv(prec, 1, 6, 72, 66, 65, "cpu", cx=8, before=8, after=0)


def test_pack_deconv_weight_layout():
    w = torch.randn(6, 5, 4, 4)
    p = ops.pack_deconv_weight(w, torch.float32)
    assert p.shape == (4, 5, 2, 2, 8) and p.is_contiguous()
    # phase (a=1, c=0), tap (ty=1, tx=0) -> kernel (ky=0, kx=1)
    assert torch.equal(p[2, :, 1, 0, :6], w[:, :, 0, 1].t())
    # phase (a=0, c=1), tap (ty=0, tx=1) -> kernel (ky=1, kx=0)
    assert torch.equal(p[1, :, 0, 1, :6], w[:, :, 1, 0].t())
    assert (p[..., 6:] == 0).all()


def test_no_activation_and_no_bias():
    x = torch.randn(1, 8, 3, 4).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 4, 4, 4)
    got = ops.deconv_lrelu(x, ops.pack_deconv_weight(w, torch.float32), None, slope=1.0, allow_tf32=False)
    torch.testing.assert_close(got, reference.deconv_lrelu(x, w, None, 1.0), rtol=1e-5, atol=1e-5)


def test_validation_errors():
    x = torch.randn(1, 8, 3, 3).contiguous(memory_format=torch.channels_last)
    p = ops.pack_deconv_weight(torch.randn(8, 4, 4, 4), torch.float32)
    with pytest.raises(ValueError, match="channels"):
        ops.deconv_lrelu(torch.randn(1, 16, 3, 3), p, None)
    with pytest.raises(ValueError, match=r"\(4, Cout, 2, 2, Cx\)"):
        ops.deconv_lrelu(x, torch.zeros(4, 4, 3, 3, 8), None)
    with pytest.raises(ValueError, match=r"\(B=1, Ctot, 6, 6\)"):
        ops.deconv_lrelu(x, p, None, out=torch.empty(1, 4, 3, 3).contiguous(memory_format=torch.channels_last))
    with pytest.raises(ValueError, match=r"\(Cin, Cout, 4, 4\)"):
        ops.pack_deconv_weight(torch.randn(8, 4, 3, 3), torch.float32)


def _opcheck_args(device, dtype):
    x = torch.randn(1, 16, 3, 2, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    w = ops.pack_deconv_weight(torch.randn(16, 6, 4, 4, device=device), dtype)
    b = torch.randn(6, device=device).to(dtype)
    out = torch.zeros(1, 10, 6, 4, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    return (x, w, b, out, 0.1, 3, False, 0)


def test_opcheck_cpu():
    torch.library.opcheck(deconv_lrelu_op, _opcheck_args("cpu", torch.float32))


@requires_cuda
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("size", [(384, 512), (448, 1024)], ids=str)
@pytest.mark.parametrize("index", range(4), ids=[d.name for d in network.LAYERS if d.kind == "deconv"])
def test_decoder_layers_cuda(index, size, batch, prec):
    # Written where the model writes it: after the skip connection's channels of the next concat
    # buffer (skip, deconv, flow 2, zero padding to a multiple of 8).
    name, cin, cx, cout, h, w = decoder_inputs(*size)[index]
    layer = network.LAYER[name]
    total = network.CONCAT[layer.feeds].padded
    check_deconv(prec, batch, cin, cout, h, w, "cuda", cx=cx, before=layer.offset, after=total - layer.offset - cout)


@requires_cuda
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("shape", AWKWARD, ids=str)
def test_awkward_shapes_cuda(shape, prec):
    cin, cout, h, w = shape
    check_deconv(prec, 2, cin, cout, h, w, "cuda")
    check_deconv(prec, 3, cin, cout, h + 17, w + 30, "cuda", before=8, after=0)


@requires_cuda
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("split_k", [1, 3, 8])
def test_forced_split_k_cuda(prec, split_k):
    check_deconv(prec, 1, 1024, 512, 6, 8, "cuda", split_k=split_k, before=512, after=8)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_opcheck_cuda(dtype):
    torch.library.opcheck(deconv_lrelu_op, _opcheck_args("cuda", dtype))


# ------------------------------------------------------------------ SIMT: the kernels on the CPU

# (kind, b, cin, cout, k, stride, h, w, num_sms) by the tile config the plan picks for them.
SIMT_CASES = {
    0: ("deconv", 1, 40, 72, 0, 0, 9, 11, 1),
    1: ("deconv", 2, 40, 20, 0, 0, 5, 6, 132),
}


@simt_test
@pytest.mark.parametrize("case, prec, split_k, config", simt_kernel_params(SIMT_CASES))
def test_kernels_simt(case, prec, split_k, config):
    check_simt_case(case, prec, split_k, config)


@simt_test
@pytest.mark.parametrize("config, prec", bit_exact_params(SIMT_CASES))
def test_bit_exact_against_host_emulation_simt(config, prec, monkeypatch):
    check_bit_exact(SIMT_CASES[config], config, prec, monkeypatch)
