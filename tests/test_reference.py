"""The reference model: flownet2-pytorch's FlowNet2S parameter names, shapes and semantics."""
import pytest
import torch
import torch.nn.functional as F

from fastflow import reference
from fastflow.reference import FlowNet2S

EXPECTED_SHAPES = {
    "conv1.0.weight": (64, 6, 7, 7), "conv2.0.weight": (128, 64, 5, 5), "conv3.0.weight": (256, 128, 5, 5),
    "conv3_1.0.weight": (256, 256, 3, 3), "conv4.0.weight": (512, 256, 3, 3), "conv4_1.0.weight": (512, 512, 3, 3),
    "conv5.0.weight": (512, 512, 3, 3), "conv5_1.0.weight": (512, 512, 3, 3), "conv6.0.weight": (1024, 512, 3, 3),
    "conv6_1.0.weight": (1024, 1024, 3, 3),
    "deconv5.0.weight": (1024, 512, 4, 4), "deconv4.0.weight": (1026, 256, 4, 4), "deconv3.0.weight": (770, 128, 4, 4),
    "deconv2.0.weight": (386, 64, 4, 4),
    "predict_flow6.weight": (2, 1024, 3, 3), "predict_flow5.weight": (2, 1026, 3, 3),
    "predict_flow4.weight": (2, 770, 3, 3), "predict_flow3.weight": (2, 386, 3, 3), "predict_flow2.weight": (2, 194, 3, 3),
    "upsampled_flow6_to_5.weight": (2, 2, 4, 4), "upsampled_flow5_to_4.weight": (2, 2, 4, 4),
    "upsampled_flow4_to_3.weight": (2, 2, 4, 4), "upsampled_flow3_to_2.weight": (2, 2, 4, 4),
}


def test_parameter_names_shapes_count():
    sd = FlowNet2S().state_dict()
    assert len(sd) == 42
    assert sum(v.numel() for v in sd.values()) == 38_676_506
    for k, shape in EXPECTED_SHAPES.items():
        assert tuple(sd[k].shape) == shape, k
        bias = k.replace("weight", "bias")
        if not k.startswith("upsampled"):
            assert tuple(sd[bias].shape) == (shape[1] if k.startswith("deconv") else shape[0],), bias
        else:
            assert bias not in sd
    assert set(sd) == set(EXPECTED_SHAPES) | {k.replace("weight", "bias") for k in EXPECTED_SHAPES if not k.startswith("upsampled")}


def test_eval_output_and_training_outputs():
    torch.manual_seed(0)
    m = FlowNet2S().eval()
    x = torch.rand(2, 3, 2, 128, 192) * 255
    with torch.no_grad():
        out = m(x)
    assert out.shape == (2, 2, 128, 192) and out.dtype == torch.float32
    m.train()
    with torch.no_grad():
        outs = m(x)
    assert [tuple(o.shape) for o in outs] == [(2, 2, 32, 48), (2, 2, 16, 24), (2, 2, 8, 12), (2, 2, 4, 6), (2, 2, 2, 3)]
    # The eval output is the upsampled flow2 * div_flow.
    torch.testing.assert_close(out, F.interpolate(outs[0] * 20.0, scale_factor=4, mode="bilinear"))


def test_normalisation_semantics():
    """Mean per sample and colour over both frames, then / rgb_max, frames stacked on channels."""
    x = torch.rand(2, 3, 2, 5, 7) * 255
    got = reference.normalize_pack(x)
    mean = x.reshape(2, 3, -1).mean(-1).view(2, 3, 1, 1)
    want = torch.cat(((x[:, :, 0] - mean) / 255, (x[:, :, 1] - mean) / 255), dim=1)
    torch.testing.assert_close(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last)
    got8 = reference.normalize_pack(x, channels=8)
    assert got8.shape == (2, 8, 5, 7) and torch.all(got8[:, 6:] == 0)


@pytest.mark.parametrize("shape", [(1, 3, 2, 64, 96), (2, 3, 2, 100, 64), (1, 6, 64, 64), (1, 2, 3, 64, 64), (0, 3, 2, 64, 64), (1, 3, 64, 64), (1, 3, 2, 64)])
def test_bad_input_shapes(shape):
    m = FlowNet2S().eval()
    with pytest.raises(ValueError, match=r"\(B, 3, 2, H, W\)|multiples of 64|empty batch"):
        m(torch.zeros(shape))


def test_flops():
    assert abs(reference.flops_per_pair(448, 1024) / 1e9 - 73.68) < 0.01
