"""The fused CUDA forward: only fastflow kernels (docs/design.md section 5): prologue -> 10
implicit-GEMM convs -> decoder (sub-pixel deconvs and flow heads writing into the concat buffers in
place) -> output kernel. Activations live in one arena per (batch, H, W, dtype); the network
between prologue and output kernel is captured once per shape in a CUDA graph and replayed. On CPU
tensors (the SIMT runtime, or the ops' host emulations) the same orchestration runs eagerly."""
from __future__ import annotations

import contextlib
from typing import Tuple

import torch

from .. import ops
from ..network import CONCATS, DECODER, ENCODER, FLOW_HEADS, LAYER, LAYERS, LRELU_SLOPE, pad8
from .plans import Entry, Plan, release

__all__ = ["precision_of", "get_plan", "make_entry", "run_network", "forward", "capture"]


def precision_of(model, dtype: torch.dtype) -> str:
    """The kernels' precision for a ``dtype`` model: fp16, bf16, else tf32 or fp32 (``model.allow_tf32``)."""
    if dtype == torch.float16:
        return "fp16"
    if dtype == torch.bfloat16:
        return "bf16"
    tf32 = torch.backends.cudnn.allow_tf32 if model.allow_tf32 is None else model.allow_tf32
    return "tf32" if tf32 else "fp32"

def get_plan(model, device: torch.device, dtype: torch.dtype) -> Plan:
    """The model's packed weights for the fused forward in ``dtype`` on ``device`` (cached)."""
    precision = precision_of(model, dtype)
    kind = ("fused", device, precision)
    signature = model._weights_signature()
    plan = model._plans.get(kind)
    if plan is not None and plan.matches(kind, signature, dtype):
        return plan
    # Plans packed from older weights (another dtype, or before load_state_dict) are dead weight.
    model._drop_stale_plans(signature)
    plan = Plan(kind, signature, dtype, precision)
    for name, cin, cout, k, s in ENCODER:
        m = getattr(model, name)[0]
        plan.params[name] = (ops.pack_conv_weight(m.weight.detach(), dtype, cin_padded=pad8(cin)), m.bias.detach().to(dtype).contiguous())
    for name, cin, cout in DECODER:
        m = getattr(model, name)[0]
        plan.params[name] = (ops.pack_deconv_weight(m.weight.detach(), dtype, cin_padded=pad8(cin)), m.bias.detach().to(dtype).contiguous())
    for pred, cin, up in FLOW_HEADS:
        m = getattr(model, pred)
        upw = getattr(model, up).weight.detach() if up else None
        plan.params[pred] = ops.pack_flow_head(m.weight.detach(), m.bias.detach(), upw, cin_padded=pad8(cin))
    model._plans[kind] = plan
    return plan

def make_entry(b: int, h: int, w: int, dtype: torch.dtype, device: torch.device) -> Entry:
    """Allocate the activation arena: every tensor the network writes, allocated once."""
    e = Entry()
    cl = torch.channels_last

    def buf(name, c, div, zero=False):
        # allocated channels_last (an NCHW tensor made contiguous would be a copy of
        # uninitialised memory: compute-sanitizer's initcheck found it on the first H200 run)
        t = torch.empty((b, c, h // div, w // div), dtype=dtype, device=device, memory_format=cl)
        if zero:
            t.zero_()
        e.bufs[name] = t
        return t

    buf("input", pad8(LAYER["conv1"].cin), 1)
    for layer in LAYERS:  # encoder outputs that are not part of a concat buffer
        if layer.kind == "conv" and layer.feeds is None:
            buf(layer.name, layer.cout, layer.out_scale)
    for c in CONCATS:
        # Padding channels are zeroed once here and never written again.
        buf(c.name, c.padded, c.scale, zero=True)
    return e

def run_network(plan: Plan, e: Entry) -> torch.Tensor:
    """prologue output (e.bufs['input']) -> flow2 (B, 2, H/4, W/4) float32, all fastflow kernels."""
    P = plan.params
    tf32 = plan.precision == "tf32"
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
    for (dec, _, _), concat, (pred, _, up) in zip(DECODER, CONCATS, FLOW_HEADS):
        nxt = bufs[concat.name]
        ops.flow_head(x, P[pred], out=nxt, out_channel_offset=LAYER[up].offset)
        wp, bias = P[dec]
        ops.deconv_lrelu(x, wp, bias, LRELU_SLOPE, out=nxt, out_channel_offset=LAYER[dec].offset, allow_tf32=tf32)
        x = nxt
    flow2, _ = ops.flow_head(x, P["predict_flow2"])
    return flow2

def forward(model, inputs: torch.Tensor, graph: bool) -> torch.Tensor:
    """The fastflow-kernels-only forward. On CUDA tensors the real thing; on CPU tensors the
    same arena, slices and op sequence through the ops' CPU versions (the conv/deconv ones are
    host emulations of the CUDA tiling), which is how CI checks this orchestration without a GPU."""
    b, _, _, h, w = inputs.shape
    dtype = model.conv1[0].weight.dtype
    device = inputs.device
    cuda = device.type == "cuda"
    with model._lock, (torch.cuda.device(device) if cuda else contextlib.nullcontext()):
        # Called inside the caller's own graph capture: launch eagerly into it (no nested
        # capture, no events across the capture boundary). Packing weights or zeroing a new
        # arena would be recorded instead of done, so those must exist already.
        capturing = cuda and torch.cuda.is_current_stream_capturing()
        shape = (b, h, w)
        if capturing:
            pkey = ("fused", device, precision_of(model, dtype))
            ready = model._plans.get(pkey)
            if ready is None or ready.signature != model._weights_signature() or shape not in ready.entries:
                raise RuntimeError(
                    "fastflow.FlowNet2S: run the model once outside graph capture at this shape and "
                    "precision before capturing it in your own CUDA graph")
        plan = get_plan(model, device, dtype)
        e = plan.entries.get(shape)
        if e is None:
            e = make_entry(b, h, w, dtype, device)
            plan.entries[shape] = e
        else:
            plan.entries.move_to_end(shape)
        bound = model.max_cached_shapes
        if not isinstance(bound, int) or bound < 1:
            raise ValueError(f"max_cached_shapes must be a positive int, got {bound!r}")
        while len(plan.entries) > bound:  # LRU; the bound may shrink
            release(plan.entries.popitem(last=False)[1])
        stream = torch.cuda.current_stream(device) if cuda else None
        # The arena is shared: work queued on another stream must finish before we overwrite it.
        if cuda and not capturing and e.last_event is not None and e.last_stream != stream:
            stream.wait_event(e.last_event)
        # Validated by forward(): launch directly, without the op dispatcher's ~20 us.
        ops._normalize_pack_impl(inputs if inputs.dtype == torch.float32 else inputs.float(), model.rgb_max, e.bufs["input"])
        if graph and cuda and not capturing:
            if e.graph is None:
                e.graph, e.flow2 = capture(plan, e, stream)
            e.graph.replay()
            flow2 = e.flow2
        else:
            flow2 = run_network(plan, e)
        out = ops._upsample_flow_impl(flow2, model.div_flow)
        if cuda and not capturing:
            ev = torch.cuda.Event()
            ev.record(stream)
            e.last_event, e.last_stream = ev, stream
        return out

def capture(plan: Plan, e: Entry, stream) -> Tuple["torch.cuda.CUDAGraph", torch.Tensor]:
    # One eager run first: the first launch of each kernel loads its module (CUDA lazy
    # loading) and raises shared-memory limits, which must not happen during capture; errors
    # also surface here rather than as a failed capture.
    side = torch.cuda.Stream(device=stream.device)
    side.wait_stream(stream)
    with torch.cuda.stream(side):
        run_network(plan, e)
    stream.wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    # thread_local: CUDA calls of other threads (a DataLoader's pin_memory, another model)
    # during this lazy capture must not invalidate it.
    with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
        flow2 = run_network(plan, e)
    stream.wait_stream(side)
    return graph, flow2
