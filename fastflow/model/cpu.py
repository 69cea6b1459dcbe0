"""The CPU forward: oneDNN convolutions on weights packed once (LeakyReLU fused), bf16 where the
CPU has bf16 instructions, between fastflow's C++ prologue and output kernels."""
from __future__ import annotations

import functools
import os
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

from .. import ops
from ..network import CONCATS, DECODER, ENCODER, FLOW_HEADS, LRELU_SLOPE, deconv_kernel_index

__all__ = ["mkldnn_ok", "cpu_has_bf16_instructions", "cpu_compute_dtype", "cpu_isa_path", "cpu_forward_description", "build_layers",
           "concat_channels", "decoder_stage", "run"]


def mkldnn_ok(dtype: torch.dtype) -> bool:
    """oneDNN convolutions on prepacked weights exist for ``dtype`` in this torch on this CPU."""
    if not (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and hasattr(torch.ops.mkldnn, "_convolution_transpose_pointwise")):
        return False
    if dtype == torch.float32:
        return True
    if dtype == torch.bfloat16:
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check is not None and check())
    return False


_X86 = ("x86_64", "amd64", "i386", "i686", "x86")


@functools.lru_cache(maxsize=None)
def cpu_forward_description() -> str:
    """What the CPU forward of a float32 FlowNet2S runs on, in words (``fastflow info``)."""
    if mkldnn_ok(torch.float32):
        return "oneDNN convolutions on packed weights (LeakyReLU fused) + fastflow C++ prologue/output kernels"
    return "PyTorch channels_last convolutions (no oneDNN in this torch) + fastflow C++ prologue/output kernels"


def cpu_has_bf16_instructions() -> bool:
    """AMX or AVX512-BF16 on x86 (without them oneDNN emulates bf16, 2.5x slower than fp32);
    elsewhere oneDNN's own bf16 check decides."""
    import platform

    if platform.machine().lower() not in _X86:
        return True
    return any(bool(getattr(torch.cpu, f, lambda: False)()) for f in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def cpu_isa_path(dtype: torch.dtype) -> str:
    """Which instructions the CPU forward of a ``dtype`` model runs on, in words: oneDNN bf16 on AMX
    or on AVX512-BF16, or float32 (and why), as ``fastflow bench`` prints in its header. oneDNN's
    own cap (``ONEDNN_MAX_CPU_ISA``, e.g. ``AVX512_CORE_BF16`` to leave AMX unused) is honoured."""
    if not mkldnn_ok(torch.float32):
        return "PyTorch channels_last convolutions (no oneDNN in this torch)"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    capped = f" (ONEDNN_MAX_CPU_ISA={cap})" if cap else ""
    if cpu_compute_dtype(dtype) == torch.float32:
        why = {torch.float32: "", torch.float16: ": fp16 computes in float32 on a CPU"}.get(
            dtype, ": no bf16 instructions or FASTFLOW_CPU_BF16=fp32")
        return f"oneDNN float32{capped}{why}"
    amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()) and (not cap or "AMX" in cap or cap == "ALL")
    return f"oneDNN bf16 on {'AMX' if amx else 'AVX512-BF16'}{capped}"


def cpu_compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the CPU forward of a ``dtype`` model computes in.

    bfloat16 runs oneDNN's bf16 convolutions when the CPU has bf16 instructions (AMX or
    AVX512-BF16 on x86) and oneDNN supports bf16 here; otherwise it computes in float32 (bf16
    emulated in software is ~2.5x slower than fp32). float16 always computes in float32: few CPUs
    have fast fp16 convolutions (PyTorch's own fp16 CPU path is 25-40x slower than fp32), and the
    fp16 weights widen to fp32 exactly, so the result is at least as accurate as an fp16 forward.
    ``FASTFLOW_CPU_BF16=fp32`` forces float32 for bfloat16 models, ``=bf16`` forces oneDNN bf16
    wherever oneDNN supports it (default ``auto``).
    """
    if dtype != torch.bfloat16:
        return torch.float32
    mode = os.environ.get("FASTFLOW_CPU_BF16", "auto").strip().lower() or "auto"
    if mode not in ("auto", "bf16", "fp32"):
        raise ValueError(f"FASTFLOW_CPU_BF16 must be auto, bf16 or fp32, got {mode!r}")
    if mode == "fp32" or not mkldnn_ok(torch.bfloat16):
        return torch.float32
    return torch.bfloat16 if mode == "bf16" or cpu_has_bf16_instructions() else torch.float32


def build_layers(model: torch.nn.Module, input_shape, dtype: torch.dtype = torch.float32) -> Dict[str, object]:
    """One callable per layer for the CPU forward, NHWC (channels_last) in and out, computing in
    ``dtype`` (see cpu_compute_dtype; weights are converted once here).

    With oneDNN (float32 or bfloat16), weights are reordered once into oneDNN's blocked layout and
    each conv/deconv runs with LeakyReLU fused into its epilogue: reordering ~155 MB of weights on
    every call is what dominates PyTorch's own CPU forward at 1/32 and 1/64 resolution. A torch
    without oneDNN uses channels_last PyTorch convolutions.
    """
    b, _, h, w = input_shape
    cl = torch.channels_last
    fused = mkldnn_ok(dtype)
    layers: Dict[str, object] = {}
    # Input channels of the layers that read a concat buffer, padded with zeros (weights and
    # buffer) where that helps: oneDNN's AMX bf16 kernels run ic=386 at ~350 GFLOP/s, ic=416 at
    # ~2000 (benchmarks/NOTES.md).
    layers["concat_channels"] = {c.name: concat_channels(c.channels, dtype) for c in CONCATS}

    def prep(weight, bias, cin_dim=1, cin=None):
        weight = weight.detach().to(dtype)
        if cin is not None and cin > weight.shape[cin_dim]:
            pad = [0, 0] * (weight.dim() - 1 - cin_dim) + [0, cin - weight.shape[cin_dim]]
            weight = F.pad(weight, pad)
        return weight, None if bias is None else bias.detach().to(dtype)

    def conv(weight, bias, k, s, slope, size, p=None):
        p = (k - 1) // 2 if p is None else p
        weight, bias = prep(weight, bias, 1, size[1])
        if fused:
            try:
                packed = torch._C._nn.mkldnn_reorder_conv2d_weight(weight.to_mkldnn(), [p, p], [s, s], [1, 1], 1, list(size))
                attr, scalars = ("leaky_relu", [slope]) if slope != 1.0 else ("none", [])
                return lambda x: torch.ops.mkldnn._convolution_pointwise(x, packed, bias, [p, p], [s, s], [1, 1], 1, attr, scalars, "")
            except (RuntimeError, NotImplementedError):
                pass
        wcl = weight.contiguous(memory_format=cl)
        if slope == 1.0:
            return lambda x: F.conv2d(x, wcl, bias, stride=s, padding=p)
        return lambda x: F.leaky_relu_(F.conv2d(x, wcl, bias, stride=s, padding=p), slope)

    def deconv(weight, bias, slope, size):
        weight, bias = prep(weight, bias, 0, size[1])
        if fused:
            try:
                packed = torch.ops.mkldnn._reorder_convolution_transpose_weight(weight, [1, 1], [0, 0], [2, 2], [1, 1], 1, list(size))
                attr, scalars = ("leaky_relu", [slope]) if slope != 1.0 else ("none", [])
                return lambda x: torch.ops.mkldnn._convolution_transpose_pointwise(
                    x, packed, bias, [1, 1], [0, 0], [2, 2], [1, 1], 1, attr, scalars, "")
            except (RuntimeError, NotImplementedError):
                pass
        wcl = weight.contiguous(memory_format=cl)
        if slope == 1.0:
            return lambda x: F.conv_transpose2d(x, wcl, bias, stride=2, padding=1)
        return lambda x: F.leaky_relu_(F.conv_transpose2d(x, wcl, bias, stride=2, padding=1), slope)

    def deconv_into(weight, bias, slope, size):
        """fn(x, out): the decoder's ConvTranspose2d(k4, s2, p1) + LeakyReLU written into ``out``
        (a channel slice of the concat buffer). With oneDNN it runs sub-pixel: one 2x2 convolution
        (padding 1) with 4 * Cout outputs, one group per output parity, whose results are
        interleaved into ``out``; this replaces oneDNN's strided deconvolution (1.2-1.6x faster
        on the 1/16 and 1/8 decoder stages, NOTES.md) and the concat's copy of the deconv output."""
        if fused:
            wp, bp = prep(weight, bias, 0, size[1])
            cout = wp.shape[1]
            # out[2m+a, 2n+c] = sum_{i,j} x[m-1+a+i, n-1+c+j] * w[:, :, k(a, a-1+i), k(c, c-1+j)]
            # with k = network.deconv_kernel_index (= 3-a-2i, 3-c-2j)
            taps = [[deconv_kernel_index(a, a - 1 + i) for i in (0, 1)] for a in (0, 1)]
            sub = torch.cat([wp[:, :, taps[a]][:, :, :, taps[c]].transpose(0, 1)
                             for a in (0, 1) for c in (0, 1)]).contiguous()
            y_of = conv(sub, bp.repeat(4), 2, 1, slope, size, p=1)

            def run(x, out):
                y = y_of(x)
                h, w = x.shape[2], x.shape[3]
                for g, (a, c) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                    out[:, :, a::2, c::2].copy_(y[:, g * cout : (g + 1) * cout, a : a + h, c : c + w])
                return out

            return run
        plain = deconv(weight, bias, slope, size)
        return lambda x, out: out.copy_(plain(x))

    for name, cin, _, k, s in ENCODER:
        m = getattr(model, name)[0]
        layers[name] = conv(m.weight, m.bias, k, s, LRELU_SLOPE, (b, cin, h, w))
        h, w = (h + s - 1) // s, (w + s - 1) // s
    sources = ["conv6_1"] + [c.name for c in CONCATS]  # what each decoder stage reads
    for (dec, _, _), (pred, _, up), src in zip(DECODER + ((None, 0, 0),), FLOW_HEADS, sources):
        cin = layers["concat_channels"].get(src, 1024)
        m = getattr(model, pred)
        layers[pred] = conv(m.weight, m.bias, 3, 1, 1.0, (b, cin, h, w))
        if up is not None:
            layers[up] = deconv(getattr(model, up).weight, None, 1.0, (b, 2, h, w))
            m = getattr(model, dec)[0]
            layers[dec] = deconv_into(m.weight, m.bias, LRELU_SLOPE, (b, cin, h, w))
        h, w = 2 * h, 2 * w
    return layers


def concat_channels(c: int, dtype: torch.dtype) -> int:
    """Stored channels of a CPU concat buffer holding ``c``: a multiple of 32 for bf16 (AMX tiles
    take K in pairs of 16), unpadded for float32 (its kernels do not care; padding would only add
    FLOPs)."""
    return (c + 31) // 32 * 32 if dtype == torch.bfloat16 else c


def decoder_stage(layer, x: torch.Tensor, skip: torch.Tensor, flow_up: torch.Tensor, dec: str,
                       channels: int) -> torch.Tensor:
    """One decoder concat buffer (B, channels, h, w) channels_last: [skip | dec(x) | flow_up | zeros];
    the deconvolution writes its slice in place."""
    b, ce, h, w = skip.shape
    out = torch.empty((b, channels, h, w), dtype=skip.dtype, memory_format=torch.channels_last)
    out[:, :ce].copy_(skip)
    cd = DECODER_COUT[dec]
    layer[dec](x, out[:, ce : ce + cd])
    out[:, ce + cd : ce + cd + 2].copy_(flow_up)
    if channels > ce + cd + 2:
        out[:, ce + cd + 2 :].zero_()
    return out


DECODER_COUT = {name: cout for name, _, cout in DECODER}


def run(layers: Dict[str, object], inputs: torch.Tensor, rgb_max: float, div_flow: float, dtype: torch.dtype,
        on_layer: Optional[Callable] = None) -> torch.Tensor:
    """The CPU forward through ``layers`` (:func:`build_layers`, computing in ``dtype``):
    (B, 3, 2, H, W) pair -> (B, 2, H, W) float32 flow. ``on_layer(name, fn, *args)``, when given,
    runs each step (benchmarks/cpu_layers.py times them); by default each step is just called."""
    call = on_layer or (lambda name, fn, *args: fn(*args))
    x = call("prologue", ops.normalize_pack, inputs, rgb_max, 6, dtype)
    outs = {}
    for name, *_ in ENCODER:
        x = outs[name] = call(name, layers[name], x)
    for (dec, _, _), concat, (pred, _, up) in zip(DECODER, CONCATS, FLOW_HEADS):
        flow_up = call(up, layers[up], call(pred, layers[pred], x))
        x = call(dec, decoder_stage, layers, x, outs[concat.skip], flow_up, dec, layers["concat_channels"][concat.name])
    flow2 = call("predict_flow2", layers["predict_flow2"], x)
    return call("output", ops.upsample_flow, flow2, div_flow)
