"""fastflow.ops.conv2d_lrelu: NHWC implicit-GEMM conv + bias + LeakyReLU into a channel slice
(kernels: csrc/igemm/, binding: csrc/ops/conv2d_lrelu/).

CPU tests (CI) run the host emulation of the CUDA kernel's tiling (same plan, split-K and index
math) on small images; SIMT tests (marker simt) run the CUDA kernels on the CPU through the SIMT
runtime, every tile config x precision x split-K; CUDA tests run the kernels on every FlowNet2-S
conv shape.
"""
import pytest
import torch

from fastflow import _backend, ops, reference
from fastflow.ops import launch
from fastflow.ops.conv2d_lrelu import conv2d_lrelu_op
from conftest import requires_cuda
from _igemm_util import (PRECISIONS, SIMT_PRECISIONS, bit_exact_params, check_bit_exact, check_conv, check_simt_case,
                         encoder_inputs, flow_head_inputs, igemm_call, igemm_plan, layer_cases, simt_kernel_params,
                         simt_plan)
from _simt_util import simt_test


# (Cin, Cout, k, stride, H, W): sizes that are not multiples of any tile, odd sizes with stride 2,
# Cout = 2, k = 1/5/7, a single pixel.
AWKWARD = [
    (13, 37, 3, 1, 7, 9),
    (5, 2, 1, 1, 5, 3),
    (24, 70, 5, 2, 9, 7),
    (8, 17, 7, 2, 11, 13),
    (40, 129, 1, 2, 7, 5),
    (3, 9, 7, 1, 1, 1),
    (72, 2, 3, 1, 6, 5),
]


# ------------------------------------------------------------------ CPU: emulation of the kernels


# The two 1024-channel layers in two precisions only: their weights dominate the CPU time.
ENCODER_CPU = layer_cases(encoder_inputs(24, 32), lambda layer: layer[3] >= 1024, ("fp32", "fp16"))


@pytest.mark.parametrize("layer,prec", ENCODER_CPU)
def test_encoder_layers_emulated(layer, prec):
    _, cin, cx, cout, k, s, h, w = layer
    check_conv(prec, 1, cin, cout, k, s, h, w, "cpu", cx=cx)


@pytest.mark.parametrize("prec", ["fp32", "fp16"])
@pytest.mark.parametrize("head", flow_head_inputs(128, 128), ids=lambda l: l[0])
def test_flow_heads_emulated(head, prec):
    _, cin, cx, h, w = head
    check_conv(prec, 1, cin, 2, 3, 1, min(h, 6), min(w, 5), "cpu", cx=cx, before=1, after=0)


@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("shape", AWKWARD, ids=str)
def test_awkward_shapes_emulated(shape, prec):
    cin, cout, k, s, h, w = shape
    check_conv(prec, 2, cin, cout, k, s, h, w, "cpu")


@pytest.mark.parametrize("split_k", [2, 3, 7])
def test_forced_split_k_emulated(split_k):
    check_conv("fp32", 2, 20, 11, 3, 1, 5, 4, "cpu", split_k=split_k)
    check_conv("bf16", 1, 64, 24, 3, 2, 5, 7, "cpu", split_k=split_k, before=8, after=0)


@pytest.mark.parametrize("before,after", [(0, 0), (8, 8), (1, 6), (1027, 3)])
def test_slices_emulated(before, after):
    check_conv("fp16", 1, 16, 24, 3, 1, 4, 5, "cpu", before=before, after=after)


def test_plan_uses_split_k_for_deep_small_layers():
    """At batch 1, 384x512 on 132 SMs, conv5..conv6_1 are split along K, the big layers are not."""
    for name, cin, cx, cout, k, s, h, w in encoder_inputs(384, 512):
        for code in ops.DTYPE_CODES.values():
            config, bm, bn, bk, splits, ws = igemm_plan(False, 1, h, w, cx, cout, k, s, code, True, 132, 0)
            if name in ("conv5", "conv5_1", "conv6", "conv6_1"):
                assert splits > 1 and ws > 0, (name, code, splits)
            if name in ("conv1", "conv2", "conv3"):
                assert splits == 1 and ws == 0, (name, code, splits)
    # N <= 16 (predict_flow shapes) takes the 64x64 tile: the model runs its flow heads on ops.flow_head.
    assert igemm_plan(False, 1, 96, 128, 200, 2, 3, 1, 1, True, 132, 0)[:3] == (1, 64, 64)


@pytest.mark.parametrize("prec", ["fp32", "tf32", "fp16"])
def test_big_tile_config_emulated(prec):
    """Enough output pixels for a full wave of 128x128 tiles (kept cheap with a 1x1 kernel)."""
    assert igemm_plan(False, 1, 140, 141, 8, 72, 1, 1, 1, True, ops.EMULATED_SMS, 0)[:3] == (0, 128, 128)
    check_conv(prec, 1, 8, 72, 1, 1, 140, 141, "cpu", before=0, after=8)


def test_no_activation_and_no_bias():
    x = torch.randn(1, 8, 5, 6).contiguous(memory_format=torch.channels_last)
    w = torch.randn(4, 8, 3, 3)
    got = ops.conv2d_lrelu(x, ops.pack_conv_weight(w, torch.float32), None, 1, slope=1.0, allow_tf32=False)
    ref = reference.conv2d_lrelu(x, w, None, 1, 1.0)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_nchw_input_is_converted():
    x = torch.randn(2, 16, 5, 4)
    w, b = torch.randn(8, 16, 3, 3), torch.randn(8)
    got = ops.conv2d_lrelu(x, ops.pack_conv_weight(w, torch.float32), b, 2, allow_tf32=False)
    torch.testing.assert_close(got, reference.conv2d_lrelu(x, w, b, 2), rtol=1e-5, atol=1e-5)


def test_pack_conv_weight_layout():
    w = torch.randn(5, 6, 3, 3)
    p = ops.pack_conv_weight(w, torch.float16)
    assert p.shape == (5, 3, 3, 8) and p.dtype == torch.float16 and p.is_contiguous()
    assert torch.equal(p[..., :6], w.permute(0, 2, 3, 1).half())
    assert (p[..., 6:] == 0).all()
    assert ops.pack_conv_weight(w, torch.float32, cin_padded=16).shape == (5, 3, 3, 16)


def test_empty_batch():
    x = torch.randn(0, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    out = ops.conv2d_lrelu(x, ops.pack_conv_weight(torch.randn(3, 8, 3, 3), torch.float32), None, 1)
    assert out.shape == (0, 3, 4, 4)


def test_validation_errors():
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    p = ops.pack_conv_weight(torch.randn(4, 8, 3, 3), torch.float32)
    with pytest.raises(ValueError, match="channels"):
        ops.conv2d_lrelu(torch.randn(1, 16, 6, 6), p, None)
    with pytest.raises(ValueError, match="dtype"):
        ops.conv2d_lrelu(x.half(), p, None)
    with pytest.raises(ValueError, match="stride"):
        ops.conv2d_lrelu(x, p, None, stride=3)
    with pytest.raises(ValueError, match="bias"):
        ops.conv2d_lrelu(x, p, torch.randn(5))
    with pytest.raises(ValueError, match="channels_last"):
        ops.conv2d_lrelu(x, p, None, out=torch.empty(1, 4, 6, 6))
    with pytest.raises(ValueError, match="do not fit"):
        out = torch.empty(1, 6, 6, 6).contiguous(memory_format=torch.channels_last)
        ops.conv2d_lrelu(x, p, None, out=out, out_channel_offset=3)
    with pytest.raises(ValueError, match=r"\(B=1, Ctot, 3, 3\)"):
        ops.conv2d_lrelu(x, p, None, stride=2, out=torch.empty(1, 4, 6, 6).contiguous(memory_format=torch.channels_last))
    with pytest.raises(ValueError, match="kernel size"):
        ops.pack_conv_weight(torch.randn(4, 8, 2, 2), torch.float32)
    with pytest.raises(ValueError, match="cin_padded"):
        ops.pack_conv_weight(torch.randn(4, 8, 3, 3), torch.float32, cin_padded=12)


def _opcheck_args(device, dtype):
    x = torch.randn(1, 16, 5, 6, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    w = ops.pack_conv_weight(torch.randn(6, 16, 3, 3, device=device), dtype)
    b = torch.randn(6, device=device).to(dtype)
    out = torch.zeros(1, 10, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    return (x, w, b, out, 2, 0.1, 2, False, 0)


def test_opcheck_cpu():
    torch.library.opcheck(conv2d_lrelu_op, _opcheck_args("cpu", torch.float32))


# ------------------------------------------------------------------ CUDA: the kernels


@requires_cuda
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("layer", encoder_inputs(384, 512), ids=lambda l: l[0])
def test_encoder_layers_cuda(layer, batch, prec):
    _, cin, cx, cout, k, s, h, w = layer
    check_conv(prec, batch, cin, cout, k, s, h, w, "cuda", cx=cx, before=0, after=8)


@requires_cuda
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("layer", encoder_inputs(448, 1024)[::3], ids=lambda l: l[0])
def test_encoder_layers_sintel_cuda(layer, prec):
    _, cin, cx, cout, k, s, h, w = layer
    check_conv(prec, 1, cin, cout, k, s, h, w, "cuda", cx=cx)


@requires_cuda
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("head", flow_head_inputs(384, 512), ids=lambda l: l[0])
def test_flow_heads_cuda(head, batch, prec):
    _, cin, cx, h, w = head
    check_conv(prec, batch, cin, 2, 3, 1, h, w, "cuda", cx=cx, before=1, after=3)


@requires_cuda
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("shape", AWKWARD, ids=str)
def test_awkward_shapes_cuda(shape, prec):
    cin, cout, k, s, h, w = shape
    check_conv(prec, 2, cin, cout, k, s, h, w, "cuda")
    check_conv(prec, 3, cin, cout, k, s, h + 20, w + 31, "cuda", before=8, after=0)


@requires_cuda
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("split_k", [1, 2, 5, 16])
def test_forced_split_k_cuda(prec, split_k):
    check_conv(prec, 1, 512, 512, 3, 2, 24, 32, "cuda", split_k=split_k)
    check_conv(prec, 1, 256, 130, 3, 1, 7, 9, "cuda", split_k=split_k, before=1, after=0)


@requires_cuda
@pytest.mark.parametrize("before,after", [(0, 0), (8, 8), (1, 6), (512, 514), (4, 4)])
@pytest.mark.parametrize("prec", PRECISIONS)
def test_slices_cuda(before, after, prec):
    check_conv(prec, 2, 64, 128, 3, 1, 17, 23, "cuda", before=before, after=after)


@requires_cuda
def test_matches_emulation_plan_cuda():
    """The GPU result and the host emulation agree to fp32 rounding (same tiles and split-K)."""
    x = torch.randn(1, 512, 12, 16).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(512, 512, 3, 3) / 48, torch.randn(512)
    p = ops.pack_conv_weight(w, torch.float32)
    cpu = ops.conv2d_lrelu(x, p, b, 2, allow_tf32=False)
    gpu = ops.conv2d_lrelu(x.cuda(), p.cuda(), b.cuda(), 2, allow_tf32=False)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_opcheck_cuda(dtype):
    torch.library.opcheck(conv2d_lrelu_op, _opcheck_args("cuda", dtype))


@requires_cuda
def test_cuda_graph_capture():
    x = torch.randn(1, 512, 12, 16, device="cuda").half().contiguous(memory_format=torch.channels_last)
    p = ops.pack_conv_weight(torch.randn(512, 512, 3, 3, device="cuda") / 48, torch.float16)
    b = torch.randn(512, device="cuda").half()
    out = torch.empty(1, 1032, 6, 8, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    ops.conv2d_lrelu(x, p, b, 2, out=out)  # warm-up outside the graph
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        ops.conv2d_lrelu(x, p, b, 2, out=out)
    out.zero_()
    g.replay()
    torch.cuda.synchronize()
    ref = reference.conv2d_lrelu(x.float(), ops_unpack(p), b.float(), 2)
    torch.testing.assert_close(out[:, :512].float(), ref, rtol=2e-2, atol=2e-2)


def ops_unpack(p):
    return p.float().permute(0, 3, 1, 2)


def test_torch_compile_fullgraph_cpu():
    """The wrappers trace under torch.compile (fullgraph): no data_ptr() outside the custom ops."""
    x = torch.randn(1, 16, 6, 5).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(8, 16, 3, 3), torch.randn(8)
    wd = torch.randn(16, 8, 4, 4)
    p, pd = ops.pack_conv_weight(w, torch.float32), ops.pack_deconv_weight(wd, torch.float32)

    def f(x):
        buf = torch.zeros(1, 12, 6, 5).contiguous(memory_format=torch.channels_last)
        y = ops.conv2d_lrelu(x, p, b, 1, out=buf, out_channel_offset=2, allow_tf32=False)
        return y[:, 2:10] * 2, ops.deconv_lrelu(x, pd, None, allow_tf32=False)

    y, z = torch.compile(f, backend="aot_eager", fullgraph=True)(x)
    torch.testing.assert_close(y, 2 * reference.conv2d_lrelu(x, w, b, 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(z, reference.deconv_lrelu(x, wd, None), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ SIMT: the kernels on the CPU

# (kind, b, cin, cout, k, stride, h, w, num_sms): sizes chosen so that the plan picks the tile config
# (the key). The K depths give 1 to 9 k tiles per block (last pipeline stage 0..3), with and without
# split-K.
SIMT_CASES = {
    # 128x128 tile: N > 64 and (with 1 SM) at least a wave of blocks; M = 143 -> two M tiles.
    0: ("conv", 1, 16, 70, 3, 1, 11, 13, 1),
    # 64x64 tile: stride 2, odd sizes, N = 37.
    1: ("conv", 2, 24, 37, 3, 2, 9, 7, 132),
}


@simt_test
@pytest.mark.parametrize("case, prec, split_k, config", simt_kernel_params(SIMT_CASES))
def test_kernels_simt(case, prec, split_k, config):
    check_simt_case(case, prec, split_k, config)


@simt_test
@pytest.mark.parametrize("prec", SIMT_PRECISIONS)
def test_vector_epilogue_and_automatic_split_k_simt(prec):
    """Slice offset and width multiples of 8: the 16-byte output stores; a deep K with few tiles
    makes the plan choose split-K by itself (conv6-like layer)."""
    assert simt_plan("conv", 1, 256, 24, 3, 2, 5, 4, prec, 132, None)[4] > 1
    with ops.simt():
        check_conv(prec, 1, 256, 24, 3, 2, 5, 4, "cpu", before=8, after=8)


@simt_test
@pytest.mark.parametrize("config, prec", bit_exact_params(SIMT_CASES))
def test_bit_exact_against_host_emulation_simt(config, prec, monkeypatch):
    check_bit_exact(SIMT_CASES[config], config, prec, monkeypatch)


@simt_test
def test_global_bounds_check_covers_the_real_kernels_simt():
    """Registering a tensor one element shorter than the conv reads makes the runtime stop the launch
    and name the access, the kernel and the tensors."""
    x = torch.randn(1, 8, 5, 6).contiguous(memory_format=torch.channels_last)
    wt = ops.pack_conv_weight(torch.randn(8, 8, 3, 3), torch.float32)
    out = torch.zeros(1, 8, 5, 6).contiguous(memory_format=torch.channels_last)
    lib = _backend.load_simt()
    with ops.simt():
        with launch.SIMT_LOCK:
            lib.configure(132, ops.SIMT_SMEM_OPTIN, 1)
            lib.set_buffers([(out.data_ptr(), out.numel() * 4, "out", True),
                             (wt.data_ptr(), wt.numel() * 4, "weight", False),
                             (x.data_ptr(), x.numel() * 4 - 4, "x", False)])
            try:
                with pytest.raises(ops.SimtError, match=r"global memory out of bounds: read of .* by kernel "
                                                        r"igemm_kernel<1, .*block \(0,0,0\), thread \d+ .*`x`"):
                    call = igemm_call(lib, x=x.data_ptr(), height=5, width=6, weight=wt.data_ptr(),
                                      out=out.data_ptr(), slope=0.1)
                    lib.conv2d_lrelu(call, lib.igemm_plan(call, False), 0, 0)
            finally:
                lib.set_buffers([])
