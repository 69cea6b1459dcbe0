"""flow_to_color: the Middlebury colour wheel, layouts, normalisation, unknown flow."""

import math

import numpy as np
import pytest
import torch

from fastflow.viz import flow_to_color, make_color_wheel


def reference_color(u, v, maxrad):
    """Scalar transcription of Baker et al.'s computeColor for one pixel (independent of viz.py).

    One deliberate change, shared with viz.py: the wheel interpolation is written c0 + f * (c1 - c0),
    which keeps a channel that is 255 at both ends at exactly 255 (the original (1 - f) * c0 + f * c1
    can give 254.99999 -> 254).
    """
    if not (math.isfinite(u) and math.isfinite(v)) or abs(u) >= 1e9 or abs(v) >= 1e9:
        return (0, 0, 0)
    wheel = make_color_wheel()
    fu, fv = u / maxrad, v / maxrad
    rad = math.hypot(u, v) / maxrad
    a = math.atan2(-fv, -fu) / math.pi
    fk = (a + 1) / 2 * (len(wheel) - 1)
    k0 = int(math.floor(fk))
    k1 = (k0 + 1) % len(wheel)
    f = fk - k0
    out = []
    for ch in range(3):
        c0, c1 = wheel[k0, ch] / 255, wheel[k1, ch] / 255
        col = c0 + f * (c1 - c0)
        col = 1 - rad * (1 - col) if rad <= 1 else col * 0.75
        out.append(int(math.floor(255 * col)))
    return tuple(out)


def test_color_wheel():
    wheel = make_color_wheel()
    assert wheel.shape == (55, 3) and wheel.dtype == np.uint8
    # Segment starts: red, yellow, green, cyan, blue, magenta.
    starts = {0: (255, 0, 0), 15: (255, 255, 0), 21: (0, 255, 0), 25: (0, 255, 255), 36: (0, 0, 255), 49: (255, 0, 255)}
    for k, rgb in starts.items():
        assert tuple(wheel[k]) == rgb
    assert tuple(wheel[1]) == (255, 17, 0)  # floor(255 / 15)
    assert tuple(wheel[54]) == (255, 0, 43)  # 255 - floor(255 * 5 / 6)


@pytest.mark.parametrize(
    "u, v, rgb",
    [
        (1.0, 0.0, (255, 0, 0)),  # right: red (wheel entry 0)
        (-1.0, 0.0, (0, 209, 255)),  # left: wheel entry 27
        (0.0, 1.0, (255, 229, 0)),  # down (+v): halfway between entries 13 and 14
        (0.0, -1.0, (88, 0, 255)),  # up: halfway between entries 40 and 41
        (0.5, 0.0, (255, 127, 127)),  # half radius: halfway to white
        (0.0, 0.0, (255, 255, 255)),  # no motion: white
    ],
)
def test_known_colours(u, v, rgb):
    # The unit-radius pixel sets the normalisation; the tested pixel sits beside it.
    flow = np.array([[[1.0, 0.0], [u, v]]])
    assert tuple(flow_to_color(flow)[0, 1]) == rgb
    assert tuple(flow_to_color(flow * 7.0)[0, 1]) == rgb  # scale-invariant by default
    assert tuple(flow_to_color(np.array([[[u, v]]]) * 3.0, max_flow=3.0)[0, 0]) == rgb


def test_zero_flow_is_white():
    out = flow_to_color(np.zeros((4, 5, 2), np.float32))
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    assert (out == 255).all()


def test_beyond_max_flow_is_darkened():
    flow = np.array([[[4.0, 0.0], [-4.0, 0.0]]])
    out = flow_to_color(flow, max_flow=2.0)
    assert tuple(out[0, 0]) == (191, 0, 0)  # floor(255 * 0.75)
    assert tuple(out[0, 1]) == (0, math.floor(209 / 255 * 0.75 * 255), 191)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_scalar_reference(seed):
    rng = np.random.default_rng(seed)
    flow = rng.standard_normal((9, 11, 2)) * 10
    # Exact wheel directions and axis-aligned flow too.
    angles = np.linspace(-np.pi, np.pi, 11)
    flow[0, :, 0], flow[0, :, 1] = 5 * np.cos(angles), 5 * np.sin(angles)
    flow[1, :4] = [[3, 0], [-3, 0], [0, 3], [0, -3]]
    flow[2, 0] = np.nan
    flow[2, 1] = [np.inf, 0]
    flow[2, 2] = [0, 2e9]
    out = flow_to_color(flow)
    known = np.all(np.abs(flow) < 1e9, axis=-1)
    maxrad = np.hypot(flow[..., 0], flow[..., 1])[known].max()
    for i in range(flow.shape[0]):
        for j in range(flow.shape[1]):
            assert tuple(out[i, j]) == reference_color(*flow[i, j], maxrad), (i, j)
    out = flow_to_color(flow, max_flow=6.0)
    for i in range(flow.shape[0]):
        for j in range(flow.shape[1]):
            assert tuple(out[i, j]) == reference_color(*flow[i, j], 6.0), (i, j)


def test_numpy_and_torch_agree_exactly():
    rng = np.random.default_rng(2)
    flow = (rng.standard_normal((3, 20, 30, 2)) * 15).astype(np.float32)
    flow[0, 3, 4] = np.nan
    flow[1, 5, 6, 1] = -np.inf
    out_np = flow_to_color(flow)
    out_t = flow_to_color(torch.from_numpy(flow))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.uint8 and out_t.shape == (3, 20, 30, 3)
    np.testing.assert_array_equal(out_np, out_t.numpy())
    np.testing.assert_array_equal(flow_to_color(flow, 4.0), flow_to_color(torch.from_numpy(flow), 4.0).numpy())


def test_batch_is_normalised_per_image():
    flow = np.random.default_rng(3).standard_normal((6, 7, 2))
    batch = np.stack([flow, 10 * flow])
    out = flow_to_color(batch)
    np.testing.assert_array_equal(out[0], flow_to_color(flow))
    np.testing.assert_array_equal(out[1], flow_to_color(10 * flow))
    # Extra leading dimensions work the same way.
    np.testing.assert_array_equal(flow_to_color(batch[None])[0], out)


def test_max_flow_fixed_normalisation():
    flow = np.random.default_rng(4).standard_normal((10, 12, 2)) * 5
    # Dividing by a power of two is exact, so both must give identical pixels.
    np.testing.assert_array_equal(flow_to_color(flow, max_flow=8.0), flow_to_color(flow / 8.0, max_flow=1.0))
    biggest = np.hypot(flow[..., 0], flow[..., 1]).max()
    np.testing.assert_array_equal(flow_to_color(flow, max_flow=biggest), flow_to_color(flow))
    # With a fixed scale the colours do not depend on the rest of the image.
    np.testing.assert_array_equal(flow_to_color(flow, 8.0)[:5], flow_to_color(flow[:5], 8.0))


def test_largest_flow_is_saturated_not_darkened():
    # |(3, 4)| = 5 exactly, and (0.1, 0.2)-like directions whose norm rounds: none may exceed 1.
    rng = np.random.default_rng(5)
    for _ in range(20):
        flow = rng.standard_normal((1, 1, 2))
        out = flow_to_color(flow)[0, 0]
        assert out.max() == 255  # saturated wheel colours keep one channel at 255


def test_channels_first():
    rng = np.random.default_rng(6)
    flow = rng.standard_normal((2, 2, 5, 7)).astype(np.float32)  # (B, 2, H, W)
    expected = flow_to_color(np.moveaxis(flow, 1, -1))  # (B, H, W, 3)
    out = flow_to_color(flow)
    assert out.shape == (2, 3, 5, 7)
    np.testing.assert_array_equal(out, np.moveaxis(expected, -1, 1))
    out_t = flow_to_color(torch.from_numpy(flow))
    assert out_t.shape == (2, 3, 5, 7) and out_t.is_contiguous()
    np.testing.assert_array_equal(out_t.numpy(), out)
    single = flow_to_color(torch.from_numpy(flow[1]))  # (2, H, W) -> (3, H, W)
    np.testing.assert_array_equal(single.numpy(), out[1])


def test_ambiguous_layout_is_channels_last():
    flow = np.random.default_rng(7).standard_normal((2, 5, 2))
    assert flow_to_color(flow).shape == (2, 5, 3)


def test_unknown_flow_is_black():
    flow = np.ones((3, 4, 2))
    flow[0, 0] = [np.nan, 0]
    flow[0, 1] = [0, np.inf]
    flow[0, 2] = [-np.inf, -np.inf]
    flow[0, 3] = [1e10, 0]  # Middlebury "unknown flow"
    flow[1, 0] = [2.0, 0]
    out = flow_to_color(flow)
    assert (out[0] == 0).all()
    # Unknown pixels do not take part in the normalisation.
    assert tuple(out[1, 0]) == (255, 0, 0)
    t = flow_to_color(torch.from_numpy(flow))
    np.testing.assert_array_equal(t.numpy(), out)
    all_nan = flow_to_color(np.full((2, 2, 2), np.nan))
    assert (all_nan == 0).all()


def test_dtypes_and_grad():
    flow = torch.randn(1, 2, 4, 6, requires_grad=True)
    ref = flow_to_color(flow.detach().double())
    np.testing.assert_array_equal(flow_to_color(flow).numpy(), ref.numpy())
    assert flow_to_color(flow.half()).dtype == torch.uint8
    assert flow_to_color(flow.bfloat16()).shape == (1, 3, 4, 6)
    ints = np.array([[[3, 4], [0, 0]]], dtype=np.int32)
    np.testing.assert_array_equal(flow_to_color(ints), flow_to_color(ints.astype(np.float64)))


def test_empty_image():
    assert flow_to_color(np.zeros((0, 5, 2))).shape == (0, 5, 3)
    assert flow_to_color(torch.zeros(2, 2, 0, 3)).shape == (2, 3, 0, 3)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (3, 5, 7), (2,), (5, 2), (1, 3, 5, 7)])
def test_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, 2\)"):
        flow_to_color(np.zeros(shape))
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, 2\)"):
        flow_to_color(torch.zeros(shape))


@pytest.mark.parametrize("max_flow", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_max_flow(max_flow):
    with pytest.raises(ValueError, match="max_flow"):
        flow_to_color(np.zeros((2, 2, 2)), max_flow=max_flow)


def test_bad_dtype():
    with pytest.raises(TypeError):
        flow_to_color(np.zeros((2, 2, 2), bool))
    with pytest.raises(TypeError):
        flow_to_color(torch.zeros(2, 2, 2, dtype=torch.complex64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    flow = torch.randn(2, 2, 40, 50) * 10
    flow[0, 0, 1, 1] = float("nan")
    out = flow_to_color(flow.cuda())
    assert out.device.type == "cuda" and out.dtype == torch.uint8
    # CUDA's float64 atan2 may differ from the CPU's in the last bit, which can move a floor()
    # by one at an exact boundary; anything more is a real difference.
    diff = (out.cpu().int() - flow_to_color(flow).int()).abs()
    assert diff.max() <= 1 and (diff == 0).float().mean() > 0.999
