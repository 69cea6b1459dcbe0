"""fastflow.FlowNet2S: the reference model's parameters with a fused forward.

The module subclasses :class:`fastflow.reference.FlowNet2S`, so ``state_dict`` keys, shapes,
initialisation and training behaviour are identical; only the eval-mode forward differs:

- CPU: the C++ prologue (normalise + pack into channels_last), oneDNN convolutions on weights
  packed once with LeakyReLU fused, and the C++ output kernel (``flow2 * div_flow``, bilinear
  x4). float32: the reference's numbers within float32 rounding; bfloat16: bf16 convolutions;
  float16: computed in float32 (``cpu_compute_dtype``).
- CUDA: only fastflow kernels (docs/design.md section 5): prologue -> 10 implicit-GEMM convs -> decoder
  (sub-pixel deconvs and flow heads writing into the concat buffers in place) -> output kernel.
  Activations live in one arena per (batch, H, W, dtype); the network between prologue and
  output kernel is captured once per shape in a CUDA graph and replayed.

The fused forward's output carries no autograd history. Training mode runs the reference forward.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import operator
import os
import threading
import warnings
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from . import _backend, ops
from .checkpoint import CheckpointError, check_state_dict, load_checkpoint_state
# The decoder's concat buffers (name, encoder producer, its channels, deconv producer, its channels,
# flow head whose upsampled flow lands here, scale divisor). The fused forward stores their channels
# padded to a multiple of 8 (zeros) so every kernel can use 16-byte accesses.
from .network import CONCATS as _CONCATS
from .network import DECODER, ENCODER, FLOW_HEADS, LAYER, LAYERS, LRELU_SLOPE, deconv_kernel_index
from .network import pad8 as _pad8
from .reference import check_pair_input
from .reference import FlowNet2S as _ReferenceFlowNet2S

__all__ = ["FlowNet2S", "CheckpointError", "load_checkpoint_state", "cpu_compute_dtype", "cpu_forward_description"]

_VERSION = operator.attrgetter("_version")
_WARNED_NO_CUDA = False


def _mkldnn_ok(dtype: torch.dtype) -> bool:
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
    if _mkldnn_ok(torch.float32):
        return "oneDNN convolutions on packed weights (LeakyReLU fused) + fastflow C++ prologue/output kernels"
    return "PyTorch channels_last convolutions (no oneDNN in this torch) + fastflow C++ prologue/output kernels"


def _cpu_has_bf16_instructions() -> bool:
    """AMX or AVX512-BF16 on x86 (without them oneDNN emulates bf16, 2.5x slower than fp32);
    elsewhere oneDNN's own bf16 check decides."""
    import platform

    if platform.machine().lower() not in _X86:
        return True
    return any(bool(getattr(torch.cpu, f, lambda: False)()) for f in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


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
    if mode == "fp32" or not _mkldnn_ok(torch.bfloat16):
        return torch.float32
    return torch.bfloat16 if mode == "bf16" or _cpu_has_bf16_instructions() else torch.float32


def _cpu_layers(model: torch.nn.Module, input_shape, dtype: torch.dtype = torch.float32) -> Dict[str, object]:
    """One callable per layer for the CPU forward, NHWC (channels_last) in and out, computing in
    ``dtype`` (see cpu_compute_dtype; weights are converted once here).

    With oneDNN (float32 or bfloat16), weights are reordered once into oneDNN's blocked layout and
    each conv/deconv runs with LeakyReLU fused into its epilogue: reordering ~155 MB of weights on
    every call is what dominates PyTorch's own CPU forward at 1/32 and 1/64 resolution. A torch
    without oneDNN uses channels_last PyTorch convolutions.
    """
    b, _, h, w = input_shape
    cl = torch.channels_last
    fused = _mkldnn_ok(dtype)
    layers: Dict[str, object] = {}
    # Input channels of the layers that read a concat buffer, padded with zeros (weights and
    # buffer) where that helps: oneDNN's AMX bf16 kernels run ic=386 at ~350 GFLOP/s, ic=416 at
    # ~2000 (benchmarks/NOTES.md).
    layers["concat_channels"] = {c[0]: _cpu_concat_channels(c[2] + c[4] + 2, dtype) for c in _CONCATS}

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
    sources = ["conv6_1"] + [c[0] for c in _CONCATS]  # what each decoder stage reads
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


def _cpu_concat_channels(c: int, dtype: torch.dtype) -> int:
    """Stored channels of a CPU concat buffer holding ``c``: a multiple of 32 for bf16 (AMX tiles
    take K in pairs of 16), unpadded for float32 (its kernels do not care; padding would only add
    FLOPs)."""
    return (c + 31) // 32 * 32 if dtype == torch.bfloat16 else c


def _decoder_stage_cpu(layer, x: torch.Tensor, skip: torch.Tensor, flow_up: torch.Tensor, dec: str,
                       channels: int) -> torch.Tensor:
    """One decoder concat buffer (B, channels, h, w) channels_last: [skip | dec(x) | flow_up | zeros];
    the deconvolution writes its slice in place."""
    b, ce, h, w = skip.shape
    out = torch.empty((b, channels, h, w), dtype=skip.dtype, memory_format=torch.channels_last)
    out[:, :ce].copy_(skip)
    cd = _DECODER_COUT[dec]
    layer[dec](x, out[:, ce : ce + cd])
    out[:, ce + cd : ce + cd + 2].copy_(flow_up)
    if channels > ce + cd + 2:
        out[:, ce + cd + 2 :].zero_()
    return out


_DECODER_COUT = {name: cout for name, _, cout in DECODER}


class _Plan:
    """Packed weights of one (device, dtype, precision) and the arenas/graphs that use them."""

    def __init__(self, key):
        self.key = key
        self.params: Dict[str, object] = {}
        self.entries: "collections.OrderedDict[tuple, _Entry]" = collections.OrderedDict()


class _Entry:
    """Activation arena (and CUDA graph) for one (batch, H, W)."""

    def __init__(self):
        self.bufs: Dict[str, torch.Tensor] = {}
        self.graph = None
        self.flow2: Optional[torch.Tensor] = None
        self.last_event = None
        self.last_stream = None


def _invalidate_after_load(module, incompatible_keys) -> None:
    module.invalidate_cache()


def _release_plan(plan: _Plan) -> None:
    """_release for every arena of a plan, and the same for its packed weights (allocated on the
    stream that packed them, possibly read last by another)."""
    streams = {e.last_stream for e in plan.entries.values() if e.last_stream is not None}
    for e in plan.entries.values():
        _release(e)
    for s in streams:
        for v in plan.params.values():
            for t in v if isinstance(v, tuple) else (v,):
                if isinstance(t, torch.Tensor) and t.is_cuda:
                    t.record_stream(s)


def _release(e: _Entry) -> None:
    """Before an arena is dropped: its memory returns to the allocator of the stream that created
    it; if another stream used it last, make the allocator wait for that stream's work."""
    if e.last_stream is not None:
        for t in e.bufs.values():
            t.record_stream(e.last_stream)


def _tracing(inputs) -> bool:
    """True while a graph is being captured rather than run: torch.jit.trace/script, ONNX export,
    torch.compile / torch.export (Dynamo), or a tensor subclass (FakeTensor, functional or proxy
    tensors) as input."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and (compiler.is_compiling() or getattr(compiler, "is_exporting", lambda: False)()):
        return True
    if torch.onnx.is_in_onnx_export():
        return True
    return isinstance(inputs, torch.Tensor) and type(inputs) is not torch.Tensor


class FlowNet2S(_ReferenceFlowNet2S):
    """FlowNet2-S with fastflow's fused inference forward; a drop-in for the reference module.

    Input ``(B, 3, 2, H, W)`` float RGB 0..``rgb_max`` (H, W multiples of 64; frame index on dim 2);
    eval output ``(B, 2, H, W)`` float32 flow in pixels. Precision follows the module's dtype:
    ``.half()`` / ``.bfloat16()`` run 16-bit kernels with fp32 accumulation; float32 runs TF32 when
    the ``allow_tf32`` attribute is True, strict fp32 when it is False, and while it is None (the
    default) follows ``torch.backends.cudnn.allow_tf32`` (PyTorch's default for convolutions: True);
    ``fastflow.precision.apply(model, "fp32")`` sets all of it without touching process-wide state. The input may stay float32 in every mode. On the CPU (see ``cpu_compute_dtype``):
    bfloat16 runs oneDNN's bf16 convolutions on weights packed once (AMX / AVX512-BF16 where
    present), activations bf16 channels_last; float16 computes in float32 (CPUs have no fast fp16
    convolutions; the fp16 weights widen exactly, so it is at fp32's speed and within fp16
    tolerance), as does bfloat16 where oneDNN has no bf16 support.

    Packed weights are rebuilt automatically after ``load_state_dict``, ``.to()``/``.half()``/...,
    and in-place parameter updates; after assigning a new ``nn.Parameter`` object to a submodule,
    call ``invalidate_cache()``.

    Attributes: ``use_cuda_graph`` (default True; False runs the CUDA kernels eagerly, for
    debugging) and ``max_cached_shapes`` (graphs/arenas kept per precision, default 8, LRU).
    """

    def __init__(self, rgb_max: float = 255.0, div_flow: float = 20.0):
        # Parameters are always normal tensors, even when built inside torch.inference_mode():
        # inference tensors have no version counter and refuse in-place loads after the block.
        with torch.inference_mode(False):
            super().__init__(rgb_max=rgb_max, div_flow=div_flow)
        self.use_cuda_graph = True
        self.max_cached_shapes = 8
        self.allow_tf32: Optional[bool] = None  # float32 on CUDA: None follows PyTorch's switch
        self._param_list = None
        self._plans: Dict[tuple, _Plan] = {}
        self._lock = threading.RLock()
        self.register_load_state_dict_post_hook(_invalidate_after_load)

    # Caches, the lock and CUDA graphs are per process: copies and pickles start without them.
    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state.update(_lock=None, _plans={}, _param_list=None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_checkpoint(cls, path, map_location="cpu", trusted: bool = False, **kwargs) -> "FlowNet2S":
        """Build a model from a FlowNet2-S checkpoint file, in eval mode on ``map_location``.

        Accepts the official ``FlowNet2-S_checkpoint.pth.tar`` (``{'state_dict', 'epoch',
        'best_EPE'}``), a bare state dict, and ``module.``-prefixed keys. Raises CheckpointError
        (a ValueError) naming missing, unexpected or mis-shaped keys.
        """
        state = load_checkpoint_state(path, trusted=trusted)
        model = cls(**kwargs)
        check_state_dict(model, state, source=os.fspath(path))
        model.load_state_dict(state)
        return model.to(map_location).eval()

    def invalidate_cache(self) -> None:
        """Drop packed weights, arenas and CUDA graphs (done automatically on load_state_dict and
        whenever a parameter changes)."""
        with self._lock:
            for plan in self._plans.values():
                _release_plan(plan)
            self._plans = {}
            self._param_list = None

    def _drop_stale_plans(self, signature: tuple) -> None:
        """Plans packed from other weights (another dtype or device, or before a reload) are dead
        weight: ~155 MB of packed copies each."""
        for k in [k for k, p in self._plans.items() if p.key[-1] != signature]:
            _release_plan(self._plans.pop(k))

    def _weights_signature(self) -> tuple:
        # data_ptr catches .to()/.half(); _version catches in-place updates (copy_, optimiser steps).
        # The parameter list is cached (walking the module tree costs ~100 us a call); _apply
        # (.to, .cuda, .half, ...) and load_state_dict refresh it.
        params = self._param_list  # one read: _apply may clear it from another thread
        if params is None:
            params = self._param_list = list(self.parameters())
        try:
            versions = tuple(map(_VERSION, params))
        except RuntimeError:  # an inference tensor (load_state_dict(assign=True) inside inference_mode)
            versions = tuple(-1 if p.is_inference() else p._version for p in params)
        return versions + tuple(map(torch.Tensor.data_ptr, params))

    def _apply(self, fn, *args, **kwargs):
        self._param_list = None
        with torch.inference_mode(False):  # .to()/.half()/.cuda() inside inference_mode: normal tensors
            return super()._apply(fn, *args, **kwargs)

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: torch.Tensor):
        if self.training or _tracing(inputs):
            # Training, and tracing / exporting / compiling (torch.jit.trace, torch.onnx.export,
            # torch.export, torch.compile, FakeTensor inputs): the plain reference forward,
            # so the captured graph is the reference's graph of standard PyTorch ops.
            return super().forward(inputs)
        check_pair_input(inputs)
        param = self.conv1[0].weight
        if inputs.device != param.device:
            raise ValueError(
                f"input is on {inputs.device} but the model is on {param.device}; move one of them "
                "(e.g. model.cuda() and inputs.cuda())"
            )
        if param.dtype not in ops.DTYPE_CODES:
            raise ValueError(f"fastflow.FlowNet2S runs float32, float16 or bfloat16 weights, not {param.dtype}")
        # Cached packed weights and arenas are created and written in place outside inference
        # mode, so they work in any mix of inference_mode / no_grad / plain calls.
        with torch.inference_mode(False), torch.no_grad():
            if inputs.device.type == "cuda":
                return self._forward_cuda(inputs)
            if inputs.device.type == "cpu":
                if ops.simt_active():  # the fused CUDA forward, its kernels run on the CPU (ops.simt)
                    return self._forward_fused(inputs, graph=False)
                return self._forward_cpu(inputs)
        raise ValueError(f"fastflow.FlowNet2S runs on CPU or CUDA, not {inputs.device}")

    # ------------------------------------------------------------------ CPU
    def _cpu_plan(self, input_shape) -> _Plan:
        p = self.conv1[0].weight
        compute = cpu_compute_dtype(p.dtype)
        key = ("cpu", p.dtype, compute, self._weights_signature())
        plan = self._plans.get("cpu")
        if plan is None or plan.key != key:
            self._drop_stale_plans(key[-1])
            plan = _Plan(key)
            plan.params = _cpu_layers(self, input_shape, compute)
            self._plans["cpu"] = plan
        return plan

    def _forward_cpu(self, inputs: torch.Tensor) -> torch.Tensor:
        b, _, _, h, w = inputs.shape
        with self._lock:
            plan = self._cpu_plan((b, 6, h, w))
        layer = plan.params
        dtype = plan.key[2]  # the compute dtype the weights were packed in
        x = ops.normalize_pack(inputs, self.rgb_max, channels=6, dtype=dtype)
        outs = {}
        for name, *_ in ENCODER:
            x = outs[name] = layer[name](x)
        for (dec, _, _), (cname, enc, *_), (pred, _, up) in zip(DECODER, _CONCATS, FLOW_HEADS):
            flow_up = layer[up](layer[pred](x))
            x = _decoder_stage_cpu(layer, x, outs[enc], flow_up, dec, layer["concat_channels"][cname])
        return ops.upsample_flow(layer["predict_flow2"](x), self.div_flow)

    # ------------------------------------------------------------------ CUDA
    def _cuda_precision(self, dtype: torch.dtype) -> str:
        if dtype == torch.float16:
            return "fp16"
        if dtype == torch.bfloat16:
            return "bf16"
        tf32 = torch.backends.cudnn.allow_tf32 if self.allow_tf32 is None else self.allow_tf32
        return "tf32" if tf32 else "fp32"

    def _fused_plan(self, device: torch.device, dtype: torch.dtype) -> _Plan:
        precision = self._cuda_precision(dtype)
        pkey = ("fused", device, precision)
        key = (pkey, self._weights_signature())
        plan = self._plans.get(pkey)
        if plan is not None and plan.key == key:
            return plan
        # Plans packed from older weights (another dtype, or before load_state_dict) are dead weight.
        self._drop_stale_plans(key[-1])
        plan = _Plan(key)
        plan.params["precision"] = precision
        for name, cin, cout, k, s in ENCODER:
            m = getattr(self, name)[0]
            plan.params[name] = (ops.pack_conv_weight(m.weight.detach(), dtype, cin_padded=_pad8(cin)), m.bias.detach().to(dtype).contiguous())
        for name, cin, cout in DECODER:
            m = getattr(self, name)[0]
            plan.params[name] = (ops.pack_deconv_weight(m.weight.detach(), dtype, cin_padded=_pad8(cin)), m.bias.detach().to(dtype).contiguous())
        for pred, cin, up in FLOW_HEADS:
            m = getattr(self, pred)
            upw = getattr(self, up).weight.detach() if up else None
            plan.params[pred] = ops.pack_flow_head(m.weight.detach(), m.bias.detach(), upw, cin_padded=_pad8(cin))
        self._plans[pkey] = plan
        return plan

    def _make_entry(self, b: int, h: int, w: int, dtype: torch.dtype, device: torch.device) -> _Entry:
        """Allocate the activation arena: every tensor the network writes, allocated once."""
        e = _Entry()
        cl = torch.channels_last

        def buf(name, c, div, zero=False):
            # allocated channels_last (an NCHW tensor made contiguous would be a copy of
            # uninitialised memory: compute-sanitizer's initcheck found it on the first H200 run)
            t = (torch.zeros if zero else torch.empty)(
                (b, c, h // div, w // div), dtype=dtype, device=device, memory_format=cl)
            e.bufs[name] = t
            return t

        buf("input", _pad8(LAYER["conv1"].cin), 1)
        for layer in LAYERS:  # encoder outputs that are not part of a concat buffer
            if layer.kind == "conv" and layer.feeds is None:
                buf(layer.name, layer.cout, layer.out_scale)
        for cname, _, ce, _, cd, _, div in _CONCATS:
            # Padding channels are zeroed once here and never written again.
            buf(cname, _pad8(ce + cd + 2), div, zero=True)
        return e

    def _run_network(self, plan: _Plan, e: _Entry) -> torch.Tensor:
        """prologue output (e.bufs['input']) -> flow2 (B, 2, H/4, W/4) float32, all fastflow kernels."""
        P = plan.params
        tf32 = P["precision"] == "tf32"
        bufs = e.bufs
        # Where each encoder conv reads and writes: a layer's output lives in its own buffer or at
        # channel 0 of the concat buffer it feeds (the skip connection), read as that slice.
        def stored(name):
            layer = LAYER.get(name)
            if layer is None or layer.feeds is None:
                return bufs[name]
            return bufs[layer.feeds][:, layer.offset : layer.offset + layer.cout]

        sources = {name: stored(LAYER[name].reads) for name, *_ in ENCODER}
        targets = {name: LAYER[name].feeds or name for name, *_ in ENCODER}
        for name, _, _, _, s in ENCODER:
            wp, bias = P[name]
            ops.conv2d_lrelu(sources[name], wp, bias, s, LRELU_SLOPE, out=bufs[targets[name]],
                             out_channel_offset=LAYER[name].offset, allow_tf32=tf32)
        x = bufs["conv6_1"]
        for (dec, _, _), (cname, *_), (pred, _, up) in zip(DECODER, _CONCATS, FLOW_HEADS):
            nxt = bufs[cname]
            ops.flow_head(x, P[pred], out=nxt, out_channel_offset=LAYER[up].offset)
            wp, bias = P[dec]
            ops.deconv_lrelu(x, wp, bias, LRELU_SLOPE, out=nxt, out_channel_offset=LAYER[dec].offset, allow_tf32=tf32)
            x = nxt
        flow2, _ = ops.flow_head(x, P["predict_flow2"])
        return flow2

    def _forward_cuda(self, inputs: torch.Tensor) -> torch.Tensor:
        if not _backend.cuda_compiled():
            # Installed where nvcc was missing: still give the right answer, at PyTorch's speed.
            global _WARNED_NO_CUDA
            if not _WARNED_NO_CUDA:
                warnings.warn(
                    "fastflow was built without CUDA kernels (no nvcc at install time); FlowNet2S runs the "
                    "PyTorch reference forward on the GPU. Reinstall with nvcc on PATH (or CUDA_HOME set) "
                    "for the fused kernels.", RuntimeWarning, stacklevel=3)
                _WARNED_NO_CUDA = True
            return super().forward(inputs.to(self.conv1[0].weight.dtype)).float()
        return self._forward_fused(inputs, self.use_cuda_graph)

    def _forward_fused(self, inputs: torch.Tensor, graph: bool) -> torch.Tensor:
        """The fastflow-kernels-only forward. On CUDA tensors the real thing; on CPU tensors the
        same arena, slices and op sequence through the ops' CPU versions (the conv/deconv ones are
        host emulations of the CUDA tiling), which is how CI checks this orchestration without a GPU."""
        b, _, _, h, w = inputs.shape
        dtype = self.conv1[0].weight.dtype
        device = inputs.device
        cuda = device.type == "cuda"
        with self._lock, (torch.cuda.device(device) if cuda else contextlib.nullcontext()):
            # Called inside the caller's own graph capture: launch eagerly into it (no nested
            # capture, no events across the capture boundary). Packing weights or zeroing a new
            # arena would be recorded instead of done, so those must exist already.
            capturing = cuda and torch.cuda.is_current_stream_capturing()
            shape = (b, h, w)
            if capturing:
                pkey = ("fused", device, self._cuda_precision(dtype))
                ready = self._plans.get(pkey)
                if ready is None or ready.key[-1] != self._weights_signature() or shape not in ready.entries:
                    raise RuntimeError(
                        "fastflow.FlowNet2S: run the model once outside graph capture at this shape and "
                        "precision before capturing it in your own CUDA graph")
            plan = self._fused_plan(device, dtype)
            e = plan.entries.get(shape)
            if e is None:
                e = self._make_entry(b, h, w, dtype, device)
                plan.entries[shape] = e
            else:
                plan.entries.move_to_end(shape)
            bound = self.max_cached_shapes
            if not isinstance(bound, int) or bound < 1:
                raise ValueError(f"max_cached_shapes must be a positive int, got {bound!r}")
            while len(plan.entries) > bound:  # LRU; the bound may shrink
                _release(plan.entries.popitem(last=False)[1])
            stream = torch.cuda.current_stream(device) if cuda else None
            # The arena is shared: work queued on another stream must finish before we overwrite it.
            if cuda and not capturing and e.last_event is not None and e.last_stream != stream:
                stream.wait_event(e.last_event)
            # Validated by forward(): launch directly, without the op dispatcher's ~20 us.
            ops._normalize_pack_impl(inputs if inputs.dtype == torch.float32 else inputs.float(), self.rgb_max, e.bufs["input"])
            if graph and cuda and not capturing:
                if e.graph is None:
                    e.graph, e.flow2 = self._capture(plan, e, stream)
                e.graph.replay()
                flow2 = e.flow2
            else:
                flow2 = self._run_network(plan, e)
            out = ops._upsample_flow_impl(flow2, self.div_flow)
            if cuda and not capturing:
                ev = torch.cuda.Event()
                ev.record(stream)
                e.last_event, e.last_stream = ev, stream
            return out

    def _capture(self, plan: _Plan, e: _Entry, stream) -> Tuple["torch.cuda.CUDAGraph", torch.Tensor]:
        # One eager run first: the first launch of each kernel loads its module (CUDA lazy
        # loading) and raises shared-memory limits, which must not happen during capture; errors
        # also surface here rather than as a failed capture.
        side = torch.cuda.Stream(device=stream.device)
        side.wait_stream(stream)
        with torch.cuda.stream(side):
            self._run_network(plan, e)
        stream.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls of other threads (a DataLoader's pin_memory, another model)
        # during this lazy capture must not invalidate it.
        with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
            flow2 = self._run_network(plan, e)
        stream.wait_stream(side)
        return graph, flow2

