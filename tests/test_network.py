"""fastflow.network: the one layer table of FlowNet2-S, checked against the modules it builds."""
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from fastflow import network
from fastflow.network import CONCAT, CONCATS, LAYER, LAYERS
from fastflow.reference import FlowNet2S


def test_parameter_count_from_table_matches_module():
    sd = FlowNet2S().state_dict()
    assert network.parameter_count() == 38_676_506 == sum(v.numel() for v in sd.values())
    for layer in LAYERS:  # per layer: shapes as the table says
        prefix = f"{layer.name}.0." if layer.lrelu else f"{layer.name}."
        w = sd[prefix + "weight"]
        io = (layer.cin, layer.cout) if layer.transposed else (layer.cout, layer.cin)
        assert tuple(w.shape) == (*io, layer.kernel, layer.kernel), layer.name
        assert (prefix + "bias" in sd) == layer.bias, layer.name
        assert w.numel() + (sd[prefix + "bias"].numel() if layer.bias else 0) == layer.parameters()


def test_flops_from_table():
    assert abs(network.flops_per_pair(448, 1024) / 1e9 - 73.68) < 0.01
    assert network.flops_per_pair(448, 1024) == sum(layer.flops(448, 1024) for layer in LAYERS)
    # Batch and size scale it linearly.
    assert LAYER["conv3"].flops(128, 192, batch=3) == 3 * LAYER["conv3"].flops(128, 192)
    assert network.flops_per_pair(128, 256) * 4 == network.flops_per_pair(256, 512)


def test_table_is_consistent():
    """Every layer reads something that exists by then with the channels its Cin says; every concat
    is [skip | deconv | flow_up] without gaps; sizes halve down the encoder and double up the decoder."""
    channels = {"input": 6}
    scale = {"input": 1}
    for layer in LAYERS:
        assert layer.reads in channels, f"{layer.name} reads {layer.reads} before it exists"
        assert channels[layer.reads] == layer.cin, layer.name
        assert scale[layer.reads] == layer.scale, layer.name
        channels[layer.name], scale[layer.name] = layer.cout, layer.out_scale
        if layer.feeds and all(p.name in channels for p in LAYERS if p.feeds == layer.feeds):
            parts = sorted((p.offset, p.cout, p.out_scale) for p in LAYERS if p.feeds == layer.feeds)
            assert [o for o, _, _ in parts] == [0, parts[0][1], parts[0][1] + parts[1][1]], layer.feeds
            assert {s for _, _, s in parts} == {CONCAT[layer.feeds].scale}
            channels[layer.feeds] = sum(c for _, c, _ in parts)
            scale[layer.feeds] = CONCAT[layer.feeds].scale
    assert [(c.channels, c.padded) for c in CONCATS] == [(1026, 1032), (770, 776), (386, 392), (194, 200)]
    # FlowNet2-S's wiring: the encoder is a chain; at each decoder scale the flow head and the
    # deconvolution read the same tensor (conv6_1, then the previous concat buffer).
    enc = [l for l in LAYERS if l.kind == "conv"]
    assert [l.reads for l in enc] == ["input"] + [l.name for l in enc[:-1]]
    heads = {l.scale: l for l in LAYERS if l.kind == "flow"}
    assert [heads[s].reads for s in (64, 32, 16, 8, 4)] == ["conv6_1", "concat5", "concat4", "concat3", "concat2"]
    assert all(l.reads == heads[l.scale].reads for l in LAYERS if l.kind == "deconv")
    assert scale["predict_flow2"] == 4 and len(LAYERS) == 23


@pytest.mark.parametrize("parity", [0, 1])
def test_deconv_taps_match_conv_transpose(parity):
    """DECONV_TAPS[a][t]: the ConvTranspose2d(k4, s2, p1) tap that takes input row m + shift(t)
    into output row 2m + a, checked by transposed-convolving one-hot inputs."""
    shifts = (0, 2 * parity - 1)
    for t, shift in enumerate(shifts):
        k = network.DECONV_TAPS[parity][t]
        m = 3
        x = torch.zeros(1, 1, 8, 1, dtype=torch.float64)
        x[0, 0, m + shift, 0] = 1.0
        w = torch.zeros(1, 1, 4, 1, dtype=torch.float64)
        w[0, 0, k, 0] = 1.0
        y = F.conv_transpose2d(x, w, stride=(2, 1), padding=(1, 0))
        assert y[0, 0, 2 * m + parity, 0] == 1.0
    with pytest.raises(ValueError, match="no ConvTranspose2d"):
        network.deconv_kernel_index(0, 1)


def test_import_does_not_load_torch():
    code = "import sys, fastflow.network; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
