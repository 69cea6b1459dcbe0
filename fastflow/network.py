"""The FlowNet2-S network as one table: every layer, where it reads, where it writes, its cost.

Everything that needs the network's shape reads it from here: the reference module
(:mod:`fastflow.reference` builds its layers and runs its forward from :data:`LAYERS`), the fused
forward's arena and concat offsets (:mod:`fastflow.model`), the FLOP counts (:mod:`fastflow.bench`,
:func:`fastflow.ops.conv_flops`), the per-layer tests and benchmarks. Pure Python, no torch, so
``import fastflow`` stays cheap.

The pipeline, in execution order (``scale``: the layer's input is at ``1/scale`` of the image):

- normalise: the ``(B, 3, 2, H, W)`` RGB pair -> ``"input"``, 6 channels (stored as 8 on the GPU)
- encoder: ten convolutions + LeakyReLU(0.1), ``conv1`` (1/1 -> 1/2) .. ``conv6_1`` (1/64)
- decoder, four stages coarse to fine: a flow head ``predict_flowN`` (3x3 conv to 2 channels, no
  activation), its 2->2 flow upsample ``upsampled_flowN_to_M`` (ConvTranspose2d k4 s2 p1, no bias)
  and a ``deconvM`` (ConvTranspose2d k4 s2 p1 + LeakyReLU) all write into the concat buffer
  ``concatM`` next to the encoder's skip output: ``[skip | deconv | flow_up]``; the next stage reads
  that buffer
- ``predict_flow2`` on ``concat2`` (1/4), then ``flow2 * div_flow`` upsampled bilinearly x4.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

__all__ = [
    "LRELU_SLOPE",
    "Layer",
    "Concat",
    "LAYERS",
    "LAYER",
    "CONCATS",
    "CONCAT",
    "ENCODER",
    "DECODER",
    "FLOW_HEADS",
    "pad8",
    "deconv_kernel_index",
    "DECONV_TAPS",
    "conv_flops",
    "deconv_flops",
    "flops_per_pair",
    "parameter_count",
]

LRELU_SLOPE = 0.1


def pad8(channels: int) -> int:
    """``channels`` rounded up to a multiple of 8: the stored channel count of every NHWC buffer and
    packed weight the CUDA kernels read (16-byte vector accesses in fp16/bf16)."""
    return (channels + 7) // 8 * 8


class Layer(NamedTuple):
    """One layer of FlowNet2-S (a module of :class:`fastflow.reference.FlowNet2S` of the same name).

    ``kind``: ``"conv"`` (encoder Conv2d + LeakyReLU), ``"deconv"`` (decoder ConvTranspose2d +
    LeakyReLU), ``"flow"`` (flow head: Conv2d to 2 channels, no activation), ``"flow_up"`` (the
    2->2 ConvTranspose2d flow upsample, no bias, no activation). ``scale``: the input is at
    ``1/scale`` of the image. ``reads``: the tensor it reads (``"input"``, a layer's name, or a
    concat's name). ``feeds``/``offset``: the concat buffer its output is stored in and at which
    channel, or ``None``/0 when the output is a tensor of its own.
    """

    name: str
    kind: str
    cin: int
    cout: int
    kernel: int
    stride: int
    padding: int
    scale: int
    reads: str
    feeds: Optional[str] = None
    offset: int = 0

    @property
    def transposed(self) -> bool:
        return self.kind in ("deconv", "flow_up")

    @property
    def bias(self) -> bool:
        return self.kind != "flow_up"

    @property
    def lrelu(self) -> bool:
        return self.kind in ("conv", "deconv")

    @property
    def cin_padded(self) -> int:
        """Input channels as the fused kernels store them (zero padding to a multiple of 8)."""
        return pad8(self.cin)

    @property
    def out_scale(self) -> int:
        """The output is at ``1/out_scale`` of the image."""
        return self.scale // 2 if self.transposed else self.scale * self.stride

    def parameters(self) -> int:
        """Number of weights and biases."""
        return self.cin * self.cout * self.kernel * self.kernel + (self.cout if self.bias else 0)

    def input_size(self, height: int, width: int) -> Tuple[int, int]:
        """The input's (h, w) for a ``height x width`` image: the encoder rounds up at every stride-2
        step; the decoder doubles the 1/64 map (so the sizes match for multiples of 64)."""
        if self.kind == "conv":
            return -(-height // self.scale), -(-width // self.scale)
        f = 64 // self.scale
        return -(-height // 64) * f, -(-width // 64) * f

    def flops(self, height: int, width: int, batch: int = 1) -> float:
        """2 x useful multiply-adds of this layer for ``batch`` image pairs of ``height x width``."""
        h, w = self.input_size(height, width)
        if self.transposed:
            return deconv_flops(batch, self.cin, self.cout, h, w)
        return conv_flops(batch, self.cin, self.cout, h, w, self.kernel, self.stride)


def _conv(name, cin, cout, k, s, scale, reads, feeds=None, offset=0) -> Layer:
    return Layer(name, "conv", cin, cout, k, s, (k - 1) // 2, scale, reads, feeds, offset)


def _decoder_stage(n: int, cin: int, reads: str, deconv_out: int, skip: int) -> Tuple[Layer, ...]:
    """Stage ``n`` (6..3) of the decoder, input at 1/2^n: flow head, its upsample and the deconv,
    both writing into concat ``n-1`` after its ``skip`` encoder channels."""
    scale, m = 2 ** n, n - 1
    concat = f"concat{m}"
    return (
        Layer(f"predict_flow{n}", "flow", cin, 2, 3, 1, 1, scale, reads),
        Layer(f"upsampled_flow{n}_to_{m}", "flow_up", 2, 2, 4, 2, 1, scale, f"predict_flow{n}", concat,
              skip + deconv_out),
        Layer(f"deconv{m}", "deconv", cin, deconv_out, 4, 2, 1, scale, reads, concat, skip),
    )


# Every layer, in the reference forward's execution order.
LAYERS: Tuple[Layer, ...] = (
    _conv("conv1", 6, 64, 7, 2, 1, "input"),
    _conv("conv2", 64, 128, 5, 2, 2, "conv1", "concat2"),
    _conv("conv3", 128, 256, 5, 2, 4, "conv2"),
    _conv("conv3_1", 256, 256, 3, 1, 8, "conv3", "concat3"),
    _conv("conv4", 256, 512, 3, 2, 8, "conv3_1"),
    _conv("conv4_1", 512, 512, 3, 1, 16, "conv4", "concat4"),
    _conv("conv5", 512, 512, 3, 2, 16, "conv4_1"),
    _conv("conv5_1", 512, 512, 3, 1, 32, "conv5", "concat5"),
    _conv("conv6", 512, 1024, 3, 2, 32, "conv5_1"),
    _conv("conv6_1", 1024, 1024, 3, 1, 64, "conv6"),
    *_decoder_stage(6, 1024, "conv6_1", 512, skip=512),
    *_decoder_stage(5, 1026, "concat5", 256, skip=512),
    *_decoder_stage(4, 770, "concat4", 128, skip=256),
    *_decoder_stage(3, 386, "concat3", 64, skip=128),
    Layer("predict_flow2", "flow", 194, 2, 3, 1, 1, 4, "concat2"),
)
LAYER: Dict[str, Layer] = {layer.name: layer for layer in LAYERS}


class Concat(NamedTuple):
    """A decoder concat buffer ``[skip | deconv | flow_up]`` at ``1/scale``: ``channels`` of data,
    stored as ``padded`` (zeros after the data) in the fused forward."""

    name: str
    skip: str
    skip_channels: int
    deconv: str
    deconv_channels: int
    flow_head: str  # the flow head whose upsampled flow lands here
    scale: int

    @property
    def channels(self) -> int:
        return self.skip_channels + self.deconv_channels + 2

    @property
    def padded(self) -> int:
        return pad8(self.channels)


def _concats() -> Tuple[Concat, ...]:
    out = []
    for name in ("concat5", "concat4", "concat3", "concat2"):
        parts = {layer.kind: layer for layer in LAYERS if layer.feeds == name}
        skip, dec, up = parts["conv"], parts["deconv"], parts["flow_up"]
        out.append(Concat(name, skip.name, skip.cout, dec.name, dec.cout, up.reads, skip.out_scale))
    return tuple(out)


# (name, skip producer, its channels, deconv producer, its channels, flow head, scale), coarse to fine:
# concat5 (1026 channels, 1032 stored), concat4 (770, 776), concat3 (386, 392), concat2 (194, 200).
CONCATS: Tuple[Concat, ...] = _concats()
CONCAT: Dict[str, Concat] = {c.name: c for c in CONCATS}

# Views in the shapes the rest of the code unpacks.
# (name, Cin, Cout, kernel, stride) of the ten encoder convolutions, in execution order.
ENCODER = tuple((l.name, l.cin, l.cout, l.kernel, l.stride) for l in LAYERS if l.kind == "conv")
# (name, Cin, Cout) of the four ConvTranspose2d(k4, s2, p1) + LeakyReLU decoder stages.
DECODER = tuple((l.name, l.cin, l.cout) for l in LAYERS if l.kind == "deconv")
# (predict_flow name, Cin, upsampled_flow name or None): the five flow heads, coarse to fine.
FLOW_HEADS = tuple(
    (l.name, l.cin, next((u.name for u in LAYERS if u.kind == "flow_up" and u.reads == l.name), None))
    for l in LAYERS if l.kind == "flow"
)


def deconv_kernel_index(parity: int, shift: int) -> int:
    """ConvTranspose2d(k4, s2, p1): the kernel row (column) that takes input row ``m + shift`` into
    output row ``2m + parity``. Output ``2m + a`` = ``2i - 1 + k`` for input ``i`` and tap ``k``, so
    ``k = a + 1 - 2 * shift``; only ``shift`` in {-1, 0} (a = 0) or {0, 1} (a = 1) give a tap in 0..3."""
    k = parity + 1 - 2 * shift
    if parity not in (0, 1) or not 0 <= k <= 3:
        raise ValueError(f"no ConvTranspose2d(k4, s2, p1) tap for parity {parity}, shift {shift}")
    return k


# The sub-pixel form of the deconvolution used by the kernels (csrc/common/deconv_taps.h is the C++ copy,
# exported as fastflow._C.DECONV_TAPS; tests/test_bindings.py checks they agree): for output parity
# a, tap t reads input row m (t = 0) or m - 1 / m + 1 (t = 1, a = 0 / 1); DECONV_TAPS[a][t] is that
# tap's ConvTranspose2d kernel index.
DECONV_TAPS = tuple(tuple(deconv_kernel_index(a, s) for s in (0, 2 * a - 1)) for a in (0, 1))


def conv_flops(batch: int, cin: int, cout: int, height: int, width: int, k: int, stride: int) -> float:
    """2 x multiply-adds of Conv2d(cin, cout, k, stride, padding=(k-1)//2) on a ``height x width`` input."""
    ho, wo = (height - 1) // stride + 1, (width - 1) // stride + 1
    return 2.0 * batch * ho * wo * cout * cin * k * k


def deconv_flops(batch: int, cin: int, cout: int, height: int, width: int) -> float:
    """2 x useful multiply-adds of ConvTranspose2d(cin, cout, 4, 2, 1) on a ``height x width`` input
    (4 of the 16 taps reach each output pixel)."""
    return 2.0 * batch * (2 * height) * (2 * width) * cout * cin * 4


def flops_per_pair(height: int, width: int) -> float:
    """2 x multiply-adds of one FlowNet2-S forward at ``height x width`` (convs, deconvs, flow heads
    and their upsamples; 73.68 GFLOP at 448 x 1024)."""
    return sum(layer.flops(height, width) for layer in LAYERS)


def parameter_count() -> int:
    """Weights and biases of FlowNet2-S: 38,676,506."""
    return sum(layer.parameters() for layer in LAYERS)
