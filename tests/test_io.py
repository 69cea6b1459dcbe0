"""Flow file I/O: .flo and KITTI .png round trips, OpenCV interop, corrupt files."""

import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import torch

from fastflow.io import (
    read_flo,
    read_flow,
    read_kitti_png,
    write_flo,
    write_flow,
    write_kitti_png,
)

SIZES = [(1, 1), (7, 13), (375, 1242)]


def random_flow(h, w, seed=0, scale=50.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((h, w, 2)) * scale).astype(np.float32)


def kitti_quantise(flow):
    """What a KITTI PNG can hold: multiples of 1/64, rounded to nearest, in [-512, 512 - 1/64]."""
    return (np.clip(np.rint(flow.astype(np.float64) * 64), -(2**15), 2**15 - 1) / 64).astype(np.float32)


def flo_bytes(width, height, payload=b"", magic=b"PIEH"):
    return magic + struct.pack("<ii", width, height) + payload


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels, filter_types, depth=16, idat_size=None):
    """Independent PNG encoder for tests: (H, W, 3) pixels, one filter type (0..4) per row."""
    h, w = pixels.shape[:2]
    dtype = ">u2" if depth == 16 else np.uint8
    bpp = 6 if depth == 16 else 3
    raw = np.ascontiguousarray(pixels, dtype=dtype).view(np.uint8).reshape(h, w * bpp).astype(np.int16)
    # Forward filters use only original bytes, so they vectorise over the whole image.
    left = np.zeros_like(raw)
    left[:, bpp:] = raw[:, :-bpp]
    up = np.zeros_like(raw)
    up[1:] = raw[:-1]
    upleft = np.zeros_like(raw)
    upleft[1:, bpp:] = raw[:-1, :-bpp]
    pa, pb, pc = np.abs(up - upleft), np.abs(left - upleft), np.abs(left + up - 2 * upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    ft = np.asarray(filter_types)[:, None]
    pred = np.select([ft == 1, ft == 2, ft == 3, ft == 4], [left, up, (left + up) >> 1, paeth], 0)
    rows = np.concatenate([ft.astype(np.uint8), ((raw - pred) & 0xFF).astype(np.uint8)], axis=1)
    stream = zlib.compress(rows.tobytes())
    idat_size = idat_size or len(stream)
    idats = b"".join(chunk(b"IDAT", stream[i : i + idat_size]) for i in range(0, len(stream), idat_size))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idats + chunk(b"IEND", b"")


def assert_rejected_in_little_memory(read, path, message):
    """``read(path)`` raises ValueError(message) for a header claiming an absurd size without
    allocating it: Python's traced allocations (numpy's included) peak under 10 MiB."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def kitti_pixels(h, w, seed=0):
    """(H, W, 3) uint16 KITTI pixels with about a third invalid, and the flow/valid they decode to."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 2**16, size=(h, w, 3), dtype=np.uint16)
    valid = rng.random((h, w)) > 0.3
    pixels[..., 2] = valid
    flow = (pixels[..., :2].astype(np.float32) - 2**15) / 64
    flow[~valid] = 0
    return pixels, flow, valid


# ------------------------------------------------------------------------------------- .flo


@pytest.mark.parametrize("h,w", SIZES)
def test_flo_round_trip(tmp_path, h, w):
    flow = random_flow(h, w)
    flow.flat[0] = -1e30
    flow.flat[-1] = 3.5e-20
    path = tmp_path / "a.flo"
    write_flo(path, flow)
    assert path.stat().st_size == 12 + h * w * 8
    back = read_flo(path)
    assert back.dtype == np.float32 and back.shape == (h, w, 2)
    np.testing.assert_array_equal(back, flow)
    assert back.flags.writeable


def test_flo_layout_is_interleaved_row_major(tmp_path):
    flow = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    path = tmp_path / "a.flo"
    write_flo(path, flow)
    data = path.read_bytes()
    assert data[:4] == b"PIEH" and struct.unpack("<f", data[:4])[0] == 202021.25
    assert struct.unpack("<ii", data[4:12]) == (3, 2)  # width, height
    assert struct.unpack("<12f", data[12:]) == tuple(range(12))


def test_flo_nan_inf_written_as_is(tmp_path):
    flow = np.array([[[np.nan, np.inf], [-np.inf, 1e10]]], dtype=np.float32)
    write_flo(tmp_path / "a.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "a.flo"), flow)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_write_flo_torch(tmp_path, dtype):
    flow = torch.randn(5, 9, 2).to(dtype)
    write_flo(tmp_path / "a.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "a.flo"), flow.float().numpy())


def test_write_flo_torch_requires_grad_and_noncontiguous(tmp_path):
    base = torch.randn(2, 6, 4, requires_grad=True)
    flow = base.permute(1, 2, 0)  # (6, 4, 2), non-contiguous
    write_flo(tmp_path / "a.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "a.flo"), flow.detach().numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_write_flo_cuda(tmp_path):
    flow = torch.randn(7, 13, 2, device="cuda")
    write_flow(tmp_path / "a.flo", flow)
    np.testing.assert_array_equal(read_flow(tmp_path / "a.flo"), flow.cpu().numpy())


def test_write_flo_float64_and_int(tmp_path):
    flow = np.array([[[1.25, -3]]], dtype=np.float64)
    write_flo(tmp_path / "a.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "a.flo"), flow)
    write_flo(tmp_path / "b.flo", np.array([[[1, -3]]]))
    np.testing.assert_array_equal(read_flo(tmp_path / "b.flo"), [[[1.0, -3.0]]])


@pytest.mark.parametrize("shape", [(2, 5, 7), (5, 7), (5, 7, 3), (1, 5, 7, 2), (0, 7, 2), (5, 0, 2)])
def test_write_flo_bad_shape(tmp_path, shape):
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        write_flo(tmp_path / "a.flo", np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        write_flo(tmp_path / "a.flo", torch.zeros(shape))


def test_write_flo_bad_dtype(tmp_path):
    with pytest.raises(TypeError):
        write_flo(tmp_path / "a.flo", np.zeros((2, 2, 2), bool))
    with pytest.raises(TypeError):
        write_flo(tmp_path / "a.flo", np.zeros((2, 2, 2), np.complex64))


def test_flo_opencv_interop(tmp_path):
    cv2 = pytest.importorskip("cv2")
    flow = random_flow(375, 1242, seed=1)
    cv2.writeOpticalFlow(str(tmp_path / "cv.flo"), flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "cv.flo"), flow)
    write_flo(tmp_path / "ours.flo", flow)
    np.testing.assert_array_equal(cv2.readOpticalFlow(str(tmp_path / "ours.flo")), flow)
    odd = random_flow(7, 13, seed=2)
    write_flo(tmp_path / "odd.flo", odd)
    np.testing.assert_array_equal(cv2.readOpticalFlow(str(tmp_path / "odd.flo")), odd)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "header"),
        (b"PIEH\x01\x00", "header"),
        (flo_bytes(1, 1, b"\0" * 8, magic=b"PIEX"), "magic"),
        (struct.pack("<f", 202021.0) + struct.pack("<ii", 1, 1) + b"\0" * 8, "magic"),
        (flo_bytes(0, 5), "invalid .flo size"),
        (flo_bytes(5, -1), "invalid .flo size"),
        (flo_bytes(3, 2, b"\0" * 44), "expected 48 bytes of flow data, file has 44"),
        (flo_bytes(3, 2, b"\0" * 49), "trailing"),
        (flo_bytes(3, 2, b"\0" * 48 + b"garbage"), "trailing"),
    ],
)
def test_flo_corrupt(tmp_path, content, message):
    path = tmp_path / "bad.flo"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_flo(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=message):
        read_flow(path)


def test_flo_truncated_real_file(tmp_path):
    path = tmp_path / "a.flo"
    write_flo(path, random_flow(7, 13))
    data = path.read_bytes()
    path.write_bytes(data[:-4])
    with pytest.raises(ValueError, match=f"expected {7 * 13 * 8} bytes of flow data, file has {7 * 13 * 8 - 4}"):
        read_flo(path)


@pytest.mark.parametrize("w,h", [(2**31 - 1, 2**31 - 1), (2**31 - 1, 1), (1, 2**31 - 1), (100000, 100000)])
def test_flo_absurd_size_does_not_allocate(tmp_path, w, h):
    path = tmp_path / "huge.flo"
    path.write_bytes(flo_bytes(w, h, b"\0" * 64))
    assert_rejected_in_little_memory(read_flo, path, "expected .* bytes of flow data, file has 64")


def test_missing_files(tmp_path):
    for name in ("nope.flo", "nope.png"):
        with pytest.raises(FileNotFoundError, match=name):
            read_flow(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        read_flo(tmp_path / "nope.flo")
    with pytest.raises(FileNotFoundError):
        read_kitti_png(tmp_path / "nope.png")


# ------------------------------------------------------------------------------- KITTI .png


@pytest.mark.parametrize("h,w", SIZES)
def test_kitti_round_trip(tmp_path, h, w):
    flow = random_flow(h, w, scale=100.0)
    path = tmp_path / "a.png"
    write_kitti_png(path, flow)
    back, valid = read_kitti_png(path)
    assert back.dtype == np.float32 and back.shape == (h, w, 2)
    assert valid.dtype == bool and valid.shape == (h, w) and valid.all()
    np.testing.assert_array_equal(back, kitti_quantise(flow))
    assert np.abs(back - flow).max() <= 1 / 128 + 1e-6


def test_kitti_exact_values_and_rounding(tmp_path):
    flow = np.array(
        [[[0.0, -0.0], [1.5, -2.25], [1 / 128 + 1e-4, -1 / 128 - 1e-4], [-512.0, 511.984375]]],
        dtype=np.float32,
    )
    write_kitti_png(tmp_path / "a.png", flow)
    back, _ = read_kitti_png(tmp_path / "a.png")
    expected = np.array([[[0, 0], [1.5, -2.25], [1 / 64, -1 / 64], [-512, 511.984375]]], np.float32)
    np.testing.assert_array_equal(back, expected)


def test_kitti_clips_out_of_range(tmp_path):
    flow = np.array([[[512.0, -512.5], [1e6, -1e6], [600.0, 0.0]]], dtype=np.float32)
    write_kitti_png(tmp_path / "a.png", flow)
    back, valid = read_kitti_png(tmp_path / "a.png")
    hi, lo = 512 - 1 / 64, -512.0
    np.testing.assert_array_equal(back, np.array([[[hi, lo], [hi, lo], [hi, 0]]], np.float32))
    assert valid.all()


def test_kitti_valid_mask(tmp_path):
    flow = random_flow(9, 11, scale=20)
    valid = np.random.default_rng(3).random((9, 11)) > 0.5
    write_kitti_png(tmp_path / "a.png", flow, valid)
    back, valid_back = read_kitti_png(tmp_path / "a.png")
    np.testing.assert_array_equal(valid_back, valid)
    np.testing.assert_array_equal(back[valid], kitti_quantise(flow)[valid])
    assert (back[~valid] == 0).all()


def test_kitti_default_valid_is_finite_flow(tmp_path):
    flow = np.ones((2, 3, 2), np.float32)
    flow[0, 0, 0] = np.nan
    flow[0, 1, 1] = np.inf
    flow[1, 2, 0] = 1e10
    write_kitti_png(tmp_path / "a.png", flow)
    back, valid = read_kitti_png(tmp_path / "a.png")
    np.testing.assert_array_equal(valid, [[False, False, True], [True, True, False]])
    np.testing.assert_array_equal(back[~valid], 0)
    np.testing.assert_array_equal(back[valid], 1)


def test_kitti_torch_inputs(tmp_path):
    flow = torch.randn(6, 5, 2, dtype=torch.float64) * 30
    valid = torch.rand(6, 5) > 0.5
    write_flow(tmp_path / "a.png", flow, valid)
    back, valid_back = read_flow(tmp_path / "a.png", return_valid=True)
    np.testing.assert_array_equal(valid_back, valid.numpy())
    np.testing.assert_array_equal(back[valid.numpy()], kitti_quantise(flow.numpy())[valid.numpy()])


def test_kitti_bad_inputs(tmp_path):
    flow = np.zeros((4, 5, 2), np.float32)
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        write_kitti_png(tmp_path / "a.png", np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"valid must have shape"):
        write_kitti_png(tmp_path / "a.png", flow, np.ones((5, 4), bool))
    flow[1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="1 pixels marked valid"):
        write_kitti_png(tmp_path / "a.png", flow, np.ones((4, 5), bool))


def test_kitti_large_file_uses_several_idat_chunks(tmp_path):
    # Noise barely compresses: > 1 MiB of IDAT data, split over several chunks by the writer.
    flow = random_flow(375, 1242, seed=5, scale=200)
    path = tmp_path / "a.png"
    write_kitti_png(path, flow)
    assert path.read_bytes().count(b"IDAT") > 1
    np.testing.assert_array_equal(read_kitti_png(path)[0], kitti_quantise(flow))


@pytest.mark.parametrize("filters", ["each", "random"])
def test_kitti_reads_all_png_filters(tmp_path, filters):
    """Files from other encoders (libpng picks filters adaptively): every row filter type."""
    h, w = 37, 23
    pixels, flow, valid = kitti_pixels(h, w, seed=7)
    if filters == "each":
        # Smooth data too, so Average/Paeth predictions differ from their neighbours' values.
        pixels[..., 0] = (np.add.outer(np.arange(h) * 300, np.arange(w) * 77) + 2**15).astype(np.uint16)
        flow[..., 0] = np.where(valid, (pixels[..., 0].astype(np.float32) - 2**15) / 64, 0)
        filter_types = np.arange(h) % 5
    else:
        filter_types = np.random.default_rng(8).integers(0, 5, h)
    path = tmp_path / "a.png"
    path.write_bytes(encode_png(pixels, filter_types, idat_size=100))
    back, valid_back = read_kitti_png(path)
    np.testing.assert_array_equal(valid_back, valid)
    np.testing.assert_array_equal(back, flow)


def test_kitti_opencv_reads_ours(tmp_path):
    cv2 = pytest.importorskip("cv2")
    flow = random_flow(375, 1242, seed=9, scale=100)
    valid = np.random.default_rng(9).random((375, 1242)) > 0.2
    path = tmp_path / "ours.png"
    write_kitti_png(path, flow, valid)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint16 and img.shape == (375, 1242, 3)
    # OpenCV returns BGR: channel 2 is the PNG's red channel, u.
    q = kitti_quantise(flow)
    np.testing.assert_array_equal(img[..., 0], valid)
    np.testing.assert_array_equal((img[..., 2][valid].astype(np.float64) - 2**15) / 64, q[..., 0][valid])
    np.testing.assert_array_equal((img[..., 1][valid].astype(np.float64) - 2**15) / 64, q[..., 1][valid])


@pytest.mark.parametrize("h,w", SIZES)
def test_kitti_reads_opencv(tmp_path, h, w):
    cv2 = pytest.importorskip("cv2")
    pixels, flow, valid = kitti_pixels(h, w, seed=h)
    path = tmp_path / "cv.png"
    assert cv2.imwrite(str(path), np.ascontiguousarray(pixels[..., ::-1]))  # RGB -> OpenCV's BGR
    back, valid_back = read_kitti_png(path)
    np.testing.assert_array_equal(valid_back, valid)
    np.testing.assert_array_equal(back, flow)


def test_kitti_opencv_decodes_all_filters_like_us(tmp_path):
    cv2 = pytest.importorskip("cv2")
    pixels, flow, _ = kitti_pixels(30, 40, seed=11)
    path = tmp_path / "a.png"
    path.write_bytes(encode_png(pixels, np.random.default_rng(11).integers(0, 5, 30)))
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1], pixels)
    np.testing.assert_array_equal(read_kitti_png(path)[0], flow)


def _valid_png():
    pixels, _, _ = kitti_pixels(8, 10)
    return encode_png(pixels, np.zeros(8, int))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: b"", "not a PNG"),
        (lambda: b"this is not an image\n" * 10, "not a PNG"),
        (lambda: b"PIEH" + b"\0" * 100, "not a PNG"),
        (lambda: _valid_png()[:40], "truncated"),
        (lambda: _valid_png()[: len(_valid_png()) // 2], "truncated"),
        (lambda: _valid_png()[:-12], "no IEND"),
        (lambda: _valid_png()[:8], "no IHDR"),
        (lambda: _valid_png()[:20] + b"X" + _valid_png()[21:], "CRC"),
        (lambda: encode_png(np.zeros((4, 4, 3), np.uint8), np.zeros(4, int), depth=8), "16-bit RGB"),
        (lambda: encode_png(np.zeros((4, 4, 3), np.uint16), np.full(4, 7)), "filter type"),
    ],
)
def test_kitti_corrupt(tmp_path, make, message):
    path = tmp_path / "bad.png"
    path.write_bytes(make())
    with pytest.raises(ValueError, match=message) as info:
        read_kitti_png(path)
    assert str(path) in str(info.value)


def test_kitti_corrupt_zlib_stream(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\x78\x9c garbage!") + chunk(b"IEND", b"")
    (tmp_path / "a.png").write_bytes(data)
    with pytest.raises(ValueError, match="corrupt"):
        read_kitti_png(tmp_path / "a.png")


def test_kitti_short_pixel_data(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0)
    stream = zlib.compress(b"\0" * (4 * 25 - 1))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    (tmp_path / "a.png").write_bytes(data)
    with pytest.raises(ValueError, match="expected 100 bytes of pixel data, got 99"):
        read_kitti_png(tmp_path / "a.png")


@pytest.mark.parametrize("w,h", [(2**31 - 1, 2**31 - 1), (2**31 - 1, 1), (100000, 100000)])
def test_kitti_absurd_size_does_not_allocate(tmp_path, monkeypatch, w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    # A zip bomb-ish stream: highly compressible zeros, far fewer than the header claims.
    stream = zlib.compress(b"\0" * 2**20, 9)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    (tmp_path / "a.png").write_bytes(data)
    inflaters, decompressobj = [], zlib.decompressobj
    monkeypatch.setattr(zlib, "decompressobj", lambda *a, **k: inflaters.append(a) or decompressobj(*a, **k))
    assert_rejected_in_little_memory(read_kitti_png, tmp_path / "a.png", "pixel data")
    assert not inflaters  # refused from the header and the stream's length: nothing was inflated


# ----------------------------------------------------------------------------- dispatching


def test_read_write_flow_dispatch(tmp_path):
    flow = random_flow(7, 13)
    write_flow(tmp_path / "a.flo", flow)
    assert (tmp_path / "a.flo").read_bytes()[:4] == b"PIEH"
    np.testing.assert_array_equal(read_flow(tmp_path / "a.flo"), flow)
    write_flow(str(tmp_path / "b.PNG"), flow)
    assert (tmp_path / "b.PNG").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(read_flow(str(tmp_path / "b.PNG")), kitti_quantise(flow))


def test_flo_return_valid(tmp_path):
    flow = np.zeros((2, 3, 2), np.float32)
    flow[0, 0, 1] = np.nan
    flow[0, 1, 0] = -np.inf
    flow[0, 2, 0] = 1e10  # Middlebury "unknown flow"
    flow[1, 0, 1] = -1e9
    flow[1, 1, 0] = 9.9e8
    write_flow(tmp_path / "a.flo", flow)
    back, valid = read_flow(tmp_path / "a.flo", return_valid=True)
    np.testing.assert_array_equal(back, flow)
    np.testing.assert_array_equal(valid, [[False, False, False], [False, True, True]])


def test_flo_write_with_valid_round_trips_mask(tmp_path):
    flow = random_flow(5, 6)
    valid = np.random.default_rng(4).random((5, 6)) > 0.5
    write_flow(tmp_path / "a.flo", flow, valid)
    back, valid_back = read_flow(tmp_path / "a.flo", return_valid=True)
    np.testing.assert_array_equal(valid_back, valid)
    np.testing.assert_array_equal(back[valid], flow[valid])
    assert (back[~valid] == 1e10).all()


@pytest.mark.parametrize("name", ["a.txt", "a", "a.flo.gz", "a.pfm"])
def test_unknown_extension(tmp_path, name):
    with pytest.raises(ValueError, match="extension"):
        write_flow(tmp_path / name, np.zeros((2, 2, 2), np.float32))
    (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ValueError, match="extension"):
        read_flow(tmp_path / name)
