"""track_points: bilinear flow sampling, border clamping, layouts, batching, validation."""

import numpy as np
import pytest
import torch

from fastflow.tracking import track_points


def linear_flow(h, w):
    """(H, W, 2) flow that is affine in (x, y): bilinear interpolation reproduces it exactly."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([10 * y + x, -(y + 2 * x)], axis=-1)


def test_hand_computed_bilinear():
    # u = [[0, 4], [8, 20]], v = [[1, 1], [1, -3]] (H = W = 2), point (x, y) = (0.25, 0.5):
    # u: top 0.75*0 + 0.25*4 = 1, bottom 0.75*8 + 0.25*20 = 11, middle 0.5*1 + 0.5*11 = 6
    # v: top 1, bottom 0.75*1 + 0.25*(-3) = 0, middle 0.5
    flow = np.array([[[0, 1], [4, 1]], [[8, 1], [20, -3]]], dtype=np.float64)
    out = track_points(flow, np.array([[0.25, 0.5]]))
    np.testing.assert_array_equal(out, [[0.25 + 6, 0.5 + 0.5]])


def test_hand_computed_3x4():
    flow = np.zeros((3, 4, 2), np.float32)
    flow[1, 2] = [4.0, -8.0]  # one non-zero pixel at x = 2, y = 1
    # (2.5, 1.25): weights (1 - 0.5) * (1 - 0.25) = 0.375 on that pixel, 0 elsewhere non-zero.
    out = track_points(flow, np.array([[2.5, 1.25], [2.0, 1.0], [3.0, 2.0], [1.5, 0.5]], np.float32))
    np.testing.assert_allclose(
        out, [[2.5 + 1.5, 1.25 - 3.0], [6.0, -7.0], [3.0, 2.0], [1.5 + 1.0, 0.5 - 2.0]], rtol=0, atol=1e-6
    )


def test_linear_field_and_exact_pixels():
    h, w = 7, 13
    flow = linear_flow(h, w)
    rng = np.random.default_rng(0)
    pts = rng.uniform([0, 0], [w - 1, h - 1], size=(50, 2))
    pts[:4] = [[0, 0], [w - 1, h - 1], [w - 1, 0], [0, h - 1]]  # corners, incl. last row/column
    out = track_points(flow, pts)
    x, y = pts[:, 0], pts[:, 1]
    np.testing.assert_allclose(out, np.stack([x + 10 * y + x, y - (y + 2 * x)], -1), rtol=0, atol=1e-12)
    # Integer points get exactly their pixel's flow.
    ij = rng.integers([0, 0], [h, w], size=(30, 2))
    pts = ij[:, ::-1].astype(np.float64)
    np.testing.assert_array_equal(track_points(flow, pts), pts + flow[ij[:, 0], ij[:, 1]])


def test_constant_flow():
    flow = np.broadcast_to(np.array([3.0, -2.0], np.float32), (5, 6, 2))  # read-only view
    pts = np.array([[0, 0], [2.3, 4.9], [5, 4], [-10, 3], [100, -50]], np.float32)
    np.testing.assert_array_equal(track_points(flow, pts), pts + np.float32([3, -2]))


def test_points_outside_use_border_flow():
    h, w = 4, 5
    flow = linear_flow(h, w)
    pts = np.array([[-5.0, 1.0], [7.5, 2.0], [2.0, -3.0], [1.5, 10.0], [-1.0, -1.0], [99.0, 99.0]])
    # Sampling position clamped to [0, W-1] x [0, H-1]; the point itself is not clamped.
    clamped = np.stack([np.clip(pts[:, 0], 0, w - 1), np.clip(pts[:, 1], 0, h - 1)], -1)
    cx, cy = clamped[:, 0], clamped[:, 1]
    expected = pts + np.stack([10 * cy + cx, -(cy + 2 * cx)], -1)
    np.testing.assert_allclose(track_points(flow, pts), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("h,w", [(1, 1), (1, 6), (5, 1)])
def test_degenerate_sizes(h, w):
    flow = linear_flow(h, w)
    pts = np.array([[0.0, 0.0], [0.5, 0.5], [-2.0, 3.0], [w - 1, h - 1]])
    cx, cy = np.clip(pts[:, 0], 0, w - 1), np.clip(pts[:, 1], 0, h - 1)
    expected = pts + np.stack([10 * cy + cx, -(cy + 2 * cx)], -1)
    np.testing.assert_allclose(track_points(flow, pts), expected, rtol=0, atol=1e-12)


def test_numpy_and_torch_layouts_agree():
    rng = np.random.default_rng(1)
    flow = rng.standard_normal((9, 11, 2)).astype(np.float32)
    pts = rng.uniform(-2, 12, size=(40, 2)).astype(np.float32)
    ref = track_points(flow, pts)
    assert isinstance(ref, np.ndarray) and ref.dtype == np.float32 and ref.shape == (40, 2)
    flow_t, pts_t = torch.from_numpy(flow), torch.from_numpy(pts)
    for f in (flow_t, flow_t.permute(2, 0, 1), flow_t.permute(2, 0, 1).contiguous()):
        out = track_points(f, pts_t)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        np.testing.assert_array_equal(out.numpy(), ref)
    # Mixed kinds: the result follows the points.
    assert isinstance(track_points(flow_t, pts), np.ndarray)
    assert isinstance(track_points(flow, pts_t), torch.Tensor)
    np.testing.assert_array_equal(track_points(np.moveaxis(flow, -1, 0), pts), ref)


def test_batched():
    rng = np.random.default_rng(2)
    flow = rng.standard_normal((3, 2, 6, 8))  # (B, 2, H, W)
    pts = rng.uniform(-1, 9, size=(3, 10, 2))
    out = track_points(torch.from_numpy(flow), torch.from_numpy(pts))
    assert out.shape == (3, 10, 2) and out.dtype == torch.float64
    for b in range(3):
        np.testing.assert_array_equal(out[b].numpy(), track_points(np.moveaxis(flow[b], 0, -1), pts[b]))
    # Channels-last batch and NumPy give the same.
    np.testing.assert_array_equal(track_points(np.moveaxis(flow, 1, -1), pts), out.numpy())


def test_dtypes():
    flow = linear_flow(4, 5).astype(np.float32)
    pts_int = np.array([[1, 2], [3, 0]])
    out = track_points(flow, pts_int)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, pts_int + flow[pts_int[:, 1], pts_int[:, 0]])
    assert track_points(flow, pts_int.astype(np.float64)).dtype == np.float64
    assert track_points(torch.from_numpy(flow).half(), torch.tensor([[1.5, 2.5]]).half()).dtype == torch.float16
    assert track_points(np.zeros((2, 2, 2), np.int32), np.zeros((1, 2), np.int64)).dtype == np.float32


def test_empty_points():
    assert track_points(np.zeros((3, 4, 2)), np.zeros((0, 2))).shape == (0, 2)
    assert track_points(torch.zeros(2, 2, 3, 4), torch.zeros(2, 0, 2)).shape == (2, 0, 2)


def test_does_not_modify_inputs_and_ignores_grad():
    flow = torch.randn(2, 5, 6, requires_grad=True)
    pts = torch.tensor([[1.5, 2.5]], requires_grad=True)
    before = pts.detach().clone()
    out = track_points(flow, pts)
    assert not out.requires_grad
    assert torch.equal(pts.detach(), before)


@pytest.mark.parametrize(
    "flow_shape, pts_shape, message",
    [
        ((5, 6, 2), (4, 3), r"points must have shape \(N, 2\)"),
        ((5, 6, 2), (4,), r"points must have shape \(N, 2\)"),
        ((5, 6, 2), (1, 4, 2), r"points must have shape \(N, 2\)"),
        ((2, 2, 5, 6), (4, 2), r"points must have shape \(B, N, 2\)"),
        ((2, 2, 5, 6), (3, 4, 2), "batch size 3 does not match flow batch size 2"),
        ((5, 6), (4, 2), "flow must have shape"),
        ((5, 6, 3), (4, 2), "flow must have shape"),
        ((1, 1, 5, 6, 2), (4, 2), "flow must have shape"),
        ((0, 6, 2), (4, 2), "H, W >= 1"),
    ],
)
def test_bad_shapes(flow_shape, pts_shape, message):
    with pytest.raises(ValueError, match=message):
        track_points(np.zeros(flow_shape), np.zeros(pts_shape))
    with pytest.raises(ValueError, match=message):
        track_points(torch.zeros(flow_shape), torch.zeros(pts_shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_points(bad):
    pts = np.array([[1.0, 1.0], [bad, 0.0]])
    with pytest.raises(ValueError, match="finite"):
        track_points(np.zeros((3, 3, 2)), pts)
    with pytest.raises(ValueError, match="finite"):
        track_points(torch.zeros(3, 3, 2), torch.from_numpy(pts))


def test_device_mismatch():
    # The meta device stands in for a GPU: the check must fire before any computation.
    with pytest.raises(ValueError, match="device"):
        track_points(torch.zeros(3, 3, 2, device="meta"), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="NumPy"):
        track_points(np.zeros((3, 3, 2)), torch.zeros(1, 2, device="meta"))


def test_bad_dtype():
    with pytest.raises(TypeError):
        track_points(np.zeros((3, 3, 2), bool), np.zeros((1, 2)))
    with pytest.raises(TypeError):
        track_points(np.zeros((3, 3, 2)), np.zeros((1, 2), np.complex128))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda():
    flow = torch.randn(2, 2, 30, 40)
    pts = torch.rand(2, 25, 2) * 45 - 2
    out = track_points(flow.cuda(), pts.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), track_points(flow, pts), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="device"):
        track_points(flow.cuda(), pts)


def test_heatmap_warp_agrees_with_track_points():
    """Pose tracking both ways: a joint heatmap carried by fastflow.warp peaks where track_points
    moves the joint. Backward warp: warping frame-1 heatmaps into frame 2 uses the flow from frame 2
    to frame 1; track_points uses the forward flow (frame 1 -> 2)."""
    import fastflow

    h, w = 40, 56
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    joint = torch.tensor([[21.0, 13.0]])  # (x, y) in frame 1
    heat1 = torch.exp(-((xs - 21.0) ** 2 + (ys - 13.0) ** 2) / 4.0)[None, None]
    forward = torch.zeros(2, h, w)
    forward[0], forward[1] = 5.0, -3.0  # everything moves 5 right, 3 up
    moved = fastflow.track_points(forward, joint)
    torch.testing.assert_close(moved, torch.tensor([[26.0, 10.0]]))
    heat2 = fastflow.warp(heat1, -forward[None], padding="zeros")
    peak = torch.nonzero(heat2[0, 0] == heat2.max())[0]
    assert (int(peak[1]), int(peak[0])) == (26, 10)
