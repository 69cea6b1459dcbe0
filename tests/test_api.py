"""estimate_flow: any image size, numpy / PIL / tensor input, batches, clear errors."""
import numpy as np
import pytest
import torch

import fastflow
from fastflow.api import network_size


def _photos(h, w):
    from fastflow.samples import load_photo

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


# ------------------------------------------- warp / track_points / flow_to_color on estimate_flow's output
def test_warp_takes_estimate_flow_output(model):
    """(H, W, 2) numpy flow and an (H, W, 3) uint8 image, as estimate_flow and PIL give them (issue 15, point 4)."""
    from fastflow import ops

    a, b = _photos(70, 90)
    flow = fastflow.estimate_flow(model, a, b)
    warped = fastflow.warp(b, flow)
    assert isinstance(warped, np.ndarray) and warped.dtype == np.uint8 and warped.shape == (70, 90, 3)
    # the same as the tensor op on (B, C, H, W) float, rounded back to uint8
    want = ops.warp(torch.from_numpy(b).permute(2, 0, 1)[None].float(), torch.from_numpy(flow).permute(2, 0, 1)[None])
    want = want[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(warped, want)
    # tensors, channels-first image with a channels-last flow tensor from estimate_flow on tensors
    ft = fastflow.estimate_flow(model, torch.from_numpy(a), torch.from_numpy(b))
    bt = torch.from_numpy(b).permute(2, 0, 1).float() / 255
    got = fastflow.warp(bt, ft, padding="zeros", return_mask=True)
    assert got[0].shape == (3, 70, 90) and got[0].dtype == torch.float32 and got[1].shape == (1, 70, 90)
    border = fastflow.warp(bt, ft)
    assert border.shape == (3, 70, 90)
    torch.testing.assert_close(border * 255, torch.from_numpy(want).permute(2, 0, 1).float(), atol=0.51, rtol=0)


def test_warp_layouts_and_dtypes():
    rng = np.random.default_rng(11)
    h, w = 13, 17
    flow = (rng.standard_normal((2, h, w, 2)) * 3).astype(np.float32)
    imgs = rng.random((2, h, w, 5))
    ref = torch.stack([fastflow.ops.warp(torch.from_numpy(imgs[i]).permute(2, 0, 1).float(),
                                         torch.from_numpy(flow[i]).permute(2, 0, 1)) for i in range(2)])
    # batched channels-last numpy float64 in -> float64 channels-last out
    out = fastflow.warp(imgs, flow)
    assert out.dtype == np.float64 and out.shape == (2, h, w, 5)
    np.testing.assert_allclose(out, ref.permute(0, 2, 3, 1).numpy(), rtol=1e-6, atol=1e-6)
    # channels-first tensors, flow channels-last: x's layout wins for the output
    out_t = fastflow.warp(torch.from_numpy(imgs).permute(0, 3, 1, 2).half(), torch.from_numpy(flow))
    assert out_t.dtype == torch.float16 and out_t.shape == (2, 5, h, w)
    torch.testing.assert_close(out_t.float(), ref, atol=2e-3, rtol=2e-3)
    # uint16 greyscale (H, W) with an unbatched channels-first flow
    g = (imgs[0, ..., 0] * 65535).astype(np.uint16)
    out_g = fastflow.warp(g, flow[0].transpose(2, 0, 1))
    assert out_g.dtype == np.uint16 and out_g.shape == (h, w)
    want_g = fastflow.ops.warp(torch.from_numpy(g.astype(np.float32))[None], torch.from_numpy(flow[0]).permute(2, 0, 1))[0]
    np.testing.assert_array_equal(out_g, want_g.round().numpy().astype(np.uint16))
    # an unbatched flow applies to every image of a batch; masks follow x's layout
    out_b, mask = fastflow.warp(imgs.astype(np.float32), flow[0], padding="zeros", return_mask=True)
    assert out_b.shape == (2, h, w, 5) and mask.shape == (2, h, w, 1) and set(np.unique(mask)) <= {0.0, 1.0}


def test_warp_errors_show_the_callers_shapes():
    with pytest.raises(ValueError, match=r"x of shape \(10, 12, 3\) does not match flow of shape \(10, 13, 2\)"):
        fastflow.warp(np.zeros((10, 12, 3), np.uint8), np.zeros((10, 13, 2), np.float32))
    with pytest.raises(ValueError, match=r"flow must be \(H, W, 2\).*got shape \(10, 12, 3\)"):
        fastflow.warp(np.zeros((10, 12, 3), np.uint8), np.zeros((10, 12, 3), np.float32))
    with pytest.raises(ValueError, match=r"batch of 3 does not match flow's batch of 2"):
        fastflow.warp(np.zeros((3, 10, 12, 3)), np.zeros((2, 10, 12, 2)))
    with pytest.raises(TypeError, match="numpy array or a torch.Tensor"):
        fastflow.warp([[1, 2]], np.zeros((1, 2, 2)))


def test_track_points_and_flow_to_color_take_estimate_flow_output(model):
    a, b = _photos(64, 96)
    flow = fastflow.estimate_flow(model, a, b)
    ft = fastflow.estimate_flow(model, torch.from_numpy(np.stack([a, a])), torch.from_numpy(np.stack([b, b])))
    pts = np.array([[3.0, 5.0], [90.5, 60.25]])
    got = fastflow.track_points(flow, pts)
    assert isinstance(got, np.ndarray) and got.shape == (2, 2)
    np.testing.assert_allclose(got[0], pts[0] + flow[5, 3], rtol=1e-5)
    got_t = fastflow.track_points(ft, torch.from_numpy(np.stack([pts, pts])))
    assert isinstance(got_t, torch.Tensor) and got_t.shape == (2, 2, 2)
    np.testing.assert_allclose(got_t[1].numpy(), got, rtol=1e-4, atol=1e-4)
    col = fastflow.flow_to_color(flow)
    assert isinstance(col, np.ndarray) and col.shape == (64, 96, 3) and col.dtype == np.uint8
    col_t = fastflow.flow_to_color(ft)
    assert isinstance(col_t, torch.Tensor) and col_t.shape == (2, 64, 96, 3)
    np.testing.assert_array_equal(col_t[0].numpy(), col)
    np.testing.assert_array_equal(fastflow.flow_to_color(ft.permute(0, 3, 1, 2))[1].permute(1, 2, 0).numpy(), col)


def test_warp_width_two_channels_first_tensors():
    """A channels-first flow whose width is 2 is still read channels-first when only that fits x."""
    x = torch.rand(1, 3, 5, 2)
    flow = torch.rand(1, 2, 5, 2)
    torch.testing.assert_close(fastflow.warp(x, flow), fastflow.ops.warp_nchw(x, flow))
    torch.testing.assert_close(fastflow.warp(x[0].numpy(), flow[0].numpy()), fastflow.ops.warp_nchw(x[0], flow[0]).numpy())


def test_warp_ambiguous_layout_tensor_first_numpy_last():
    """Shapes that read both ways (C == 2 == W, H == 2): tensors are taken channels-first (PyTorch's
    convention, the op's NCHW contract), numpy arrays channels-last (estimate_flow's output)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 1, 2, generator=g)
    flow = torch.randn(1, 2, 1, 2, generator=g) * 0.7
    torch.testing.assert_close(fastflow.warp(x, flow), fastflow.reference.warp(x, flow, "border"))
    got, mask = fastflow.warp(x, flow, "zeros", return_mask=True)
    want, want_mask = fastflow.reference.warp(x, flow, "zeros", return_mask=True)
    torch.testing.assert_close(got, want)
    assert torch.equal(mask, want_mask)
    xn, fn = x[0].permute(1, 2, 0).numpy(), flow[0].permute(1, 2, 0).numpy()  # (H, W, C): (1, 2, 2)
    xn, fn = np.ascontiguousarray(np.swapaxes(xn, 0, 1)), np.ascontiguousarray(np.swapaxes(fn, 0, 1))  # (2, 1, 2)
    out = fastflow.warp(xn, fn)
    want_hwc = fastflow.ops.warp_nchw(torch.from_numpy(xn).permute(2, 0, 1)[None].contiguous(),
                                       torch.from_numpy(fn).permute(2, 0, 1)[None].contiguous())[0].permute(1, 2, 0)
    np.testing.assert_allclose(out, want_hwc.numpy(), rtol=1e-6, atol=1e-6)


def test_numpy_channels_first_is_taken(model):
    """Issue 20 item 6: the README promises channels-first numpy too, (3, H, W) and (B, 3, H, W);
    the flow comes back as for channels-last input."""
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    b = np.roll(a, 2, axis=1)
    want = fastflow.estimate_flow(model, a, b)
    got = fastflow.estimate_flow(model, np.ascontiguousarray(a.transpose(2, 0, 1)), b.transpose(2, 0, 1))
    assert isinstance(got, np.ndarray) and got.shape == (70, 90, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    batch = fastflow.estimate_flow(model, np.stack([a.transpose(2, 0, 1)] * 2), np.stack([b.transpose(2, 0, 1)] * 2))
    assert batch.shape == (2, 70, 90, 2)
    np.testing.assert_allclose(batch[1], want, rtol=1e-5, atol=1e-5)


def test_warp_of_read_image_gives_no_warning(tmp_path):
    """Issue 20 item 6: the README's warp(read_image(...), flow) printed PyTorch's 'NumPy array is
    not writable' warning (read_image returned read-only arrays)."""
    import warnings

    from PIL import Image

    from fastflow.images import read_image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fastflow.warp(img, np.zeros((20, 30, 2), np.float32))
    np.testing.assert_array_equal(out, img)


def test_autocast_is_named_not_silent(model):
    """Issue 20 item 6: torch.autocast around estimate_flow ran fp32 silently. fastflow's model runs
    in its own precision; under autocast it says so (once per call) and gives the fp32 result."""
    a = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    want = fastflow.estimate_flow(model, a, a)
    with pytest.warns(UserWarning, match=r"autocast.*no effect.*precision"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fastflow.estimate_flow(model, a, a)
    np.testing.assert_array_equal(got, want)
