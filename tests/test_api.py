"""estimate_flow: any image size, numpy / PIL / tensor input, batches, clear errors."""
import numpy as np
import pytest
import torch

import fastflow
from fastflow.api import network_size


@pytest.fixture(scope="module")
def model(weights):
    m = fastflow.FlowNet2S().eval()
    m.load_state_dict(weights)
    return m


def _photos(h, w):
    from fastflow.bench import load_photo

    img = load_photo()
    return img[10 : 10 + h, 20 : 20 + w].copy(), img[13 : 13 + h, 25 : 25 + w].copy()


def test_network_size():
    assert network_size(375, 1242) == (384, 1216)
    assert network_size(436, 1024) == (448, 1024)
    assert network_size(10, 20) == (64, 64)
    assert network_size(96, 160) == (128, 192)  # halves round up


def test_numpy_any_size_matches_manual_resize(model):
    a, b = _photos(100, 150)
    flow = fastflow.estimate_flow(model, a, b)
    assert isinstance(flow, np.ndarray) and flow.shape == (100, 150, 2) and flow.dtype == np.float32
    # Manual pipeline: resize to 128x128, run, resize back and rescale u by 150/128, v by 100/128.
    pair = torch.stack((torch.from_numpy(a), torch.from_numpy(b))).permute(0, 3, 1, 2).float()
    pair = torch.nn.functional.interpolate(pair, size=(128, 128), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        f = model(pair.permute(1, 0, 2, 3)[None].contiguous())
    f = torch.nn.functional.interpolate(f, size=(100, 150), mode="bilinear", align_corners=False)
    f[:, 0] *= 150 / 128
    f[:, 1] *= 100 / 128
    np.testing.assert_allclose(flow, f[0].permute(1, 2, 0).numpy(), rtol=1e-4, atol=1e-4)


def test_pil_tensor_and_batch(model):
    from PIL import Image

    a, b = _photos(64, 128)
    ref = fastflow.estimate_flow(model, a, b)
    np.testing.assert_allclose(fastflow.estimate_flow(model, Image.fromarray(a), Image.fromarray(b)), ref, rtol=1e-5, atol=1e-5)
    t = fastflow.estimate_flow(model, torch.from_numpy(a), torch.from_numpy(b))
    assert isinstance(t, torch.Tensor) and t.shape == (64, 128, 2)
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-5, atol=1e-5)
    chw = fastflow.estimate_flow(model, torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1))
    np.testing.assert_allclose(chw.numpy(), ref, rtol=1e-5, atol=1e-5)
    batch = fastflow.estimate_flow(model, np.stack([a, b]), np.stack([b, a]))
    assert batch.shape == (2, 64, 128, 2)
    np.testing.assert_allclose(batch[0], ref, rtol=1e-4, atol=1e-4)


def test_training_model_is_restored(model):
    a, b = _photos(64, 64)
    model.train()
    try:
        assert fastflow.estimate_flow(model, a, b).shape == (64, 64, 2)
        assert model.training
    finally:
        model.eval()


@pytest.mark.parametrize(
    "img1, img2, err, match",
    [
        (np.zeros((64, 64, 3), np.uint8), np.zeros((64, 65, 3), np.uint8), ValueError, "differ in size"),
        (np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8), ValueError, r"\(H, W, 3\)"),
        (np.zeros((64, 64, 4), np.uint8), np.zeros((64, 64, 4), np.uint8), ValueError, "3 colour channels"),
        (np.zeros((0, 64, 3), np.uint8), np.zeros((0, 64, 3), np.uint8), ValueError, "empty"),
        (np.zeros((8, 8, 3), bool), np.zeros((8, 8, 3), bool), ValueError, "dtype"),
        ("a.png", "b.png", TypeError, "numpy array"),
    ],
)
def test_errors(model, img1, img2, err, match):
    with pytest.raises(err, match=match):
        fastflow.estimate_flow(model, img1, img2)


def test_reference_model_in_16_bit_and_big_endian_input(weights):
    ref = fastflow.reference.FlowNet2S().eval()
    ref.load_state_dict(weights)
    a, b = _photos(64, 64)
    flow = fastflow.estimate_flow(ref.bfloat16(), a, b)
    assert flow.shape == (64, 64, 2) and flow.dtype == np.float32
    be = a.astype(">f4"), b.astype(">f4")
    m = fastflow.FlowNet2S().eval()
    m.load_state_dict(weights)
    np.testing.assert_allclose(fastflow.estimate_flow(m, *be), fastflow.estimate_flow(m, a, b), rtol=1e-5, atol=1e-5)
