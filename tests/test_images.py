"""fastflow.images: reading image files and frames, natural order, EXIF, 16-bit, the value-range rule."""
import numpy as np
import pytest
import torch
from PIL import Image

from fastflow.images import list_frames, natural_key, open_frames, read_image, to_float255


def rng_img(h, w, seed=0, dtype=np.uint8):
    r = np.random.default_rng(seed)
    hi = 256 if dtype == np.uint8 else 65536
    return r.integers(0, hi, size=(h, w, 3), dtype=np.int64).astype(dtype)


def test_natural_order(tmp_path):
    names = ["10.png", "2.png", "1.png", "frame_9.jpg", "frame_10.jpg", "Frame_11.jpg", "notes.txt", ".hidden.png"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()  # a folder named like an image is not a frame
    got = [p.split("/")[-1] for p in list_frames(str(tmp_path))]
    assert got == ["1.png", "2.png", "10.png", "frame_9.jpg", "frame_10.jpg", "Frame_11.jpg"]
    assert sorted(["a1b10", "a1b9", "a01b9"], key=natural_key) == ["a01b9", "a1b9", "a1b10"]
    with pytest.raises(ValueError, match="not a folder"):
        list_frames(str(tmp_path / "1.png"))


def test_read_uint8_rgb_and_modes(tmp_path):
    a = rng_img(37, 53, 1)
    Image.fromarray(a).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), a)
    # greyscale L, RGBA, palette, 1-bit: as convert("RGB") makes them
    for mode in ("L", "RGBA", "P", "1", "LA", "CMYK"):
        im = Image.fromarray(a).convert(mode)
        ext = "tif" if mode == "CMYK" else "png"
        im.save(tmp_path / f"{mode}.{ext}")
        got = read_image(tmp_path / f"{mode}.{ext}")
        want = np.asarray(Image.open(tmp_path / f"{mode}.{ext}").convert("RGB"))
        assert got.dtype == np.uint8 and got.shape == (37, 53, 3), mode
        np.testing.assert_array_equal(got, want)


def test_read_16bit_grey_not_clipped(tmp_path):
    g = np.random.default_rng(2).integers(0, 65536, size=(29, 41)).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    got = read_image(tmp_path / "g16.png")
    assert got.dtype == np.uint16 and got.shape == (29, 41, 3)
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], g)
    # PIL mode "I" (32-bit) holding 16-bit values is 16-bit too
    Image.fromarray(g.astype(np.int32)).save(tmp_path / "i32.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "i32.tif")[..., 1], g)


def test_read_16bit_rgb(tmp_path):
    cv2 = pytest.importorskip("cv2")
    a = rng_img(23, 31, 3, np.uint16)
    for ext in ("png", "tif"):
        cv2.imwrite(str(tmp_path / f"c.{ext}"), a[..., ::-1])
        got = read_image(tmp_path / f"c.{ext}")
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, a)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation(tmp_path, orientation):
    from PIL import ImageOps

    a = rng_img(24, 40, orientation)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.jpg", exif=exif, quality=100, subsampling=0)
    im.save(tmp_path / "o.png", exif=exif)
    for f in ("o.jpg", "o.png"):
        got = read_image(tmp_path / f)
        want = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / f)).convert("RGB"))
        assert got.shape == want.shape
        assert got.shape[:2] == ((40, 24) if orientation >= 5 else (24, 40))
        np.testing.assert_array_equal(got, want)
    # the PNG is lossless: check against a numpy rotation of the original too
    expect = {2: a[:, ::-1], 3: a[::-1, ::-1], 4: a[::-1], 5: a.transpose(1, 0, 2), 6: np.rot90(a, -1),
              7: a[::-1, ::-1].transpose(1, 0, 2), 8: np.rot90(a, 1)}[orientation]
    np.testing.assert_array_equal(read_image(tmp_path / "o.png"), expect)
    # the array path (16-bit RGB read through OpenCV) rotates the same way
    from fastflow.images import _apply_orientation

    np.testing.assert_array_equal(_apply_orientation(a, orientation), expect)


def test_exif_orientation_16bit(tmp_path):
    g = np.random.default_rng(5).integers(0, 65536, size=(12, 20)).astype(np.uint16)
    im = Image.fromarray(g)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "g.png", exif=exif)
    got = read_image(tmp_path / "g.png")
    assert got.dtype == np.uint16 and got.shape == (20, 12, 3)
    np.testing.assert_array_equal(got[..., 0], np.rot90(g, -1))


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="not found.*nope.png"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="folder"):
        read_image(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match="cannot read image .*bad.png"):
        read_image(tmp_path / "bad.png")
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match="f.tif.*float"):
        read_image(tmp_path / "f.tif")


def test_open_frames_folder(tmp_path):
    imgs = {n: rng_img(16, 24, i) for i, n in enumerate(["1", "2", "10", "3"])}
    for n, a in imgs.items():
        Image.fromarray(a).save(tmp_path / f"{n}.png")
    with open_frames(str(tmp_path)) as src:
        assert src.count == 4 and src.fps is None and src.names == ["1", "2", "3", "10"]
        got = list(src)
        assert len(got) == 4
        for n, a in zip(src.names, got):
            np.testing.assert_array_equal(a, imgs[n])
        assert len(list(src)) == 4  # a folder can be read twice
    with pytest.raises(ValueError, match="not found"):
        open_frames(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        open_frames(str(tmp_path / "empty"))


def test_open_frames_video(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg")
    frames = [np.full((32, 48, 3), 20 * i, np.uint8) for i in range(7)]
    iio.imwrite(tmp_path / "v.mp4", np.stack(frames), fps=10, codec="libx264", macro_block_size=1)
    src = open_frames(str(tmp_path / "v.mp4"))
    assert src.fps == pytest.approx(10.0) and src.names is None and src.count == 7
    got = list(src)
    assert len(got) == 7 and got[0].shape == (32, 48, 3) and got[0].dtype == np.uint8
    assert [int(round(g.mean())) for g in got] == pytest.approx([20 * i for i in range(7)], abs=3)
    src.close()
    (tmp_path / "bad.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="cannot read video .*bad.mp4"):
        open_frames(str(tmp_path / "bad.mp4"))


def test_to_float255_rule():
    a8 = rng_img(5, 7, 1)
    a16 = rng_img(5, 7, 2, np.uint16)
    np.testing.assert_array_equal(to_float255(a8), a8.astype(np.float32))
    np.testing.assert_allclose(to_float255(a16), a16 / 65535.0 * 255.0, rtol=1e-6)
    assert to_float255(np.full((2, 2, 3), 65535, np.uint16)).max() == pytest.approx(255.0)
    f = a8 / 255.0
    np.testing.assert_allclose(to_float255(f), a8, rtol=1e-6, atol=1e-4)
    # tensors: same values, same kind
    t8, t16 = torch.from_numpy(a8), torch.from_numpy(a16.astype(np.int32)).to(torch.uint16)
    assert torch.equal(to_float255(t8), torch.from_numpy(a8).float())
    torch.testing.assert_close(to_float255(t16), torch.from_numpy(to_float255(a16)))
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        torch.testing.assert_close(to_float255(torch.from_numpy(f).to(dt)), torch.from_numpy(a8).float(),
                                   atol=1.0, rtol=0.01)
    # NaN passes (its pair's flow becomes NaN); out-of-range floats are refused with how to fix it
    assert np.isnan(to_float255(np.array([np.nan, 0.5]))).sum() == 1
    for bad in (a8.astype(np.float32), -f, f + 0.1):
        with pytest.raises(ValueError, match=r"0\.\.1.*uint8 or divide by 255"):
            to_float255(bad, "img1")
        with pytest.raises(ValueError, match="img1"):
            to_float255(torch.from_numpy(bad), "img1")
    for bad in (a8.astype(np.int64), a8.astype(bool), torch.from_numpy(a8).long(), a8.astype(np.int16)):
        with pytest.raises(ValueError, match="unsupported dtype"):
            to_float255(bad)
