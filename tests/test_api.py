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
        (np.zeros((64,), np.uint8), np.zeros((64,), np.uint8), ValueError, r"\(H, W, 3\)"),
        (np.zeros((64, 64, 2), np.uint8), np.zeros((64, 64, 2), np.uint8), ValueError, "3 colour channels"),
        (np.zeros((8, 8, 3), np.int64), np.zeros((8, 8, 3), np.int64), ValueError, "uint8.*uint16.*float"),
        (np.full((8, 8, 3), 200.0), np.full((8, 8, 3), 200.0), ValueError, "0..1.*divide by 255"),
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
    be = (a / 255).astype(">f4"), (b / 255).astype(">f4")
    m = fastflow.FlowNet2S().eval()
    m.load_state_dict(weights)
    np.testing.assert_allclose(fastflow.estimate_flow(m, *be), fastflow.estimate_flow(m, a, b), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ value ranges (issue 15, point 2)
def test_value_ranges_give_the_same_flow(model):
    """uint8 0..255, uint16 0..65535 and float 0..1 of the same picture give the same flow, in numpy,
    tensors and PIL; 16-bit is scaled, not clipped and not read as 0..255."""
    from PIL import Image

    a, b = _photos(70, 90)
    want = fastflow.estimate_flow(model, a, b)
    a16, b16 = (x.astype(np.uint16) * 257 for x in (a, b))  # 257 * v maps 0..255 onto 0..65535 exactly
    np.testing.assert_allclose(fastflow.estimate_flow(model, a16, b16), want, rtol=1e-4, atol=1e-4)
    t16 = [torch.from_numpy(x.astype(np.int32)).to(torch.uint16) for x in (a16, b16)]
    np.testing.assert_allclose(fastflow.estimate_flow(model, *t16).numpy(), want, rtol=1e-4, atol=1e-4)
    for dt in (np.float32, np.float64):
        np.testing.assert_allclose(fastflow.estimate_flow(model, (a / 255).astype(dt), (b / 255).astype(dt)), want,
                                   rtol=1e-4, atol=1e-4)
    ft = [torch.from_numpy(x).permute(2, 0, 1).float() / 255 for x in (a, b)]
    np.testing.assert_allclose(fastflow.estimate_flow(model, *ft).numpy(), want, rtol=1e-4, atol=1e-4)
    # 16-bit greyscale PIL (I;16) = the uint16 array, not clipped to white
    g1, g2 = (x.mean(axis=2).astype(np.uint16) * 257 for x in (a, b))
    pil16 = [Image.fromarray(g) for g in (g1, g2)]
    assert pil16[0].mode.startswith("I;16")
    want_g = fastflow.estimate_flow(model, g1, g2)
    np.testing.assert_allclose(fastflow.estimate_flow(model, *pil16), want_g, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fastflow.estimate_flow(model, (g1 // 257).astype(np.uint8), (g2 // 257).astype(np.uint8)),
                               want_g, rtol=1e-3, atol=1e-3)


def test_greyscale_rgba_palette_pil_as_convert_rgb(model):
    from PIL import Image

    a, b = _photos(64, 80)
    for mode in ("L", "RGBA", "P", "LA"):
        pa, pb = (Image.fromarray(x).convert(mode) for x in (a, b))
        want = fastflow.estimate_flow(model, np.asarray(pa.convert("RGB")), np.asarray(pb.convert("RGB")))
        np.testing.assert_allclose(fastflow.estimate_flow(model, pa, pb), want, rtol=1e-5, atol=1e-5)
    # a 2-D greyscale array is the L image
    la, lb = (np.asarray(Image.fromarray(x).convert("L")) for x in (a, b))
    want = fastflow.estimate_flow(model, Image.fromarray(la), Image.fromarray(lb))
    np.testing.assert_allclose(fastflow.estimate_flow(model, la, lb), want, rtol=1e-5, atol=1e-5)


def test_float_out_of_range_is_refused_with_the_fix(model):
    a, b = _photos(64, 64)
    with pytest.raises(ValueError, match=r"img1: float images must hold values in 0\.\.1.*divide by 255"):
        fastflow.estimate_flow(model, a.astype(np.float32), b.astype(np.float32))
    with pytest.raises(ValueError, match="img2"):
        fastflow.estimate_flow(model, torch.rand(64, 64, 3), torch.rand(64, 64, 3) * 1.5)
    # NaN is not a range error: it makes the flow NaN (README)
    x = (a / 255).astype(np.float32)
    x[3, 3, 0] = np.nan
    assert np.isnan(fastflow.estimate_flow(model, x, (b / 255).astype(np.float32))).all()


def test_pil_exif_orientation_applied(model):
    """A phone picture (EXIF orientation 6) is upright for estimate_flow, as when read from its file."""
    from PIL import Image

    a, b = _photos(64, 96)
    want = fastflow.estimate_flow(model, np.rot90(a, -1).copy(), np.rot90(b, -1).copy())
    pa, pb = Image.fromarray(a), Image.fromarray(b)
    for im in (pa, pb):
        ex = im.getexif()
        ex[0x0112] = 6
        im.info["exif"] = ex.tobytes()
    flow = fastflow.estimate_flow(model, pa, pb)
    assert flow.shape == (96, 64, 2)
    np.testing.assert_allclose(flow, want, rtol=1e-5, atol=1e-5)
