"""The fastflow command, run as a subprocess: outputs, and one-line errors with non-zero exits."""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch

import fastflow
from fastflow.io import read_flow


def run(*args, env=None):
    """The console script of the interpreter running the tests (not the first ``fastflow`` on PATH,
    which may be another install), run outside the source tree."""
    from _procs import command

    e = dict(os.environ)
    e.pop("FASTFLOW_CHECKPOINT", None)
    e.update(env or {})
    return subprocess.run([*command(), *map(str, args)], capture_output=True, text=True, env=e, timeout=300,
                          cwd=tempfile.gettempdir())


def assert_one_line_error(r, *needles):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fastflow: error:"), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory, weights):
    from PIL import Image

    from fastflow.samples import load_photo

    d = tmp_path_factory.mktemp("cli")
    img = load_photo()
    Image.fromarray(img[0:120, 0:200]).save(d / "a.png")
    Image.fromarray(img[3:123, 5:205]).save(d / "b.jpg")
    Image.fromarray(img[0:100, 0:200]).save(d / "small.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (d / "bad.mp4").write_text("not a video")
    (d / "one").mkdir()
    Image.fromarray(img[0:64, 0:64]).save(d / "one" / "f.png")
    ck = d / "FlowNet2-S_checkpoint.pth.tar"
    torch.save({"state_dict": weights, "epoch": 1, "best_EPE": np.float64(3.0)}, ck)
    frames = d / "frames"
    frames.mkdir()
    for i in range(4):
        Image.fromarray(img[i * 2 : i * 2 + 64, i * 3 : i * 3 + 96]).save(frames / f"f{i:03d}.png")
    return d, ck


def test_flow_writes_flo_and_viz(files, weights):
    d, ck = files
    r = run("flow", d / "a.png", d / "b.jpg", "--checkpoint", ck, "-o", d / "out.flo", "--viz", d / "out.png")
    assert r.returncode == 0, r.stderr
    flow = read_flow(d / "out.flo")
    assert flow.shape == (120, 200, 2)
    model = fastflow.FlowNet2S().eval()
    model.load_state_dict(weights)
    from PIL import Image

    want = fastflow.estimate_flow(model, Image.open(d / "a.png"), Image.open(d / "b.jpg"))
    np.testing.assert_allclose(flow, want, rtol=1e-4, atol=1e-4)
    viz = np.asarray(Image.open(d / "out.png"))
    assert viz.shape == (120, 200, 3)


def test_flow_kitti_png_and_env_checkpoint(files):
    d, ck = files
    r = run("flow", d / "a.png", d / "b.jpg", "-o", d / "out_kitti.png", env={"FASTFLOW_CHECKPOINT": str(ck)})
    assert r.returncode == 0, r.stderr
    flow, valid = read_flow(d / "out_kitti.png", return_valid=True)
    assert flow.shape == (120, 200, 2) and valid.all()


def test_missing_checkpoint_message(files):
    d, _ = files
    r = run("flow", d / "a.png", d / "b.jpg", "-o", d / "x.flo")
    assert_one_line_error(r, "FlowNet2-S_checkpoint.pth.tar", "--checkpoint")


@pytest.mark.parametrize(
    "args, needles",
    [
        (["flow", "{d}/nope.png", "{d}/b.jpg", "--checkpoint", "{ck}", "-o", "{d}/x.flo"], ["image not found"]),
        (["flow", "{d}/broken.png", "{d}/b.jpg", "--checkpoint", "{ck}", "-o", "{d}/x.flo"], ["cannot read image"]),
        (["flow", "{d}/a.png", "{d}/small.png", "--checkpoint", "{ck}", "-o", "{d}/x.flo"], ["differ in size"]),
        (["flow", "{d}/a.png", "{d}/b.jpg", "--checkpoint", "{d}/none.pth", "-o", "{d}/x.flo"], ["checkpoint not found"]),
        (["flow", "{d}/a.png", "{d}/b.jpg", "--checkpoint", "{d}/a.png", "-o", "{d}/x.flo"], ["cannot read"]),
        (["flow", "{d}/a.png", "{d}/b.jpg", "--checkpoint", "{ck}", "-o", "{d}/nodir/x.flo"], ["output folder does not exist"]),
        (["flow", "{d}/a.png", "{d}/b.jpg", "--checkpoint", "{ck}", "-o", "{d}/x.txt"], ["extension"]),
        (["flow", "{d}/a.png", "{d}/b.jpg", "--checkpoint", "{ck}"], ["nothing to write"]),
        (["video", "{d}/nothing", "--checkpoint", "{ck}", "--out", "{d}/v"], ["not found"]),
        (["video", "{d}/bad.mp4", "--checkpoint", "{ck}", "--out", "{d}/v"], ["cannot read video"]),
        (["video", "{d}/one", "--checkpoint", "{ck}", "--out", "{d}/v"], ["at least 2 frames"]),
        (["bench", "--size", "100x64"], ["multiples of 64"]),
        (["bench", "--device", "mps"], ["unsupported device"]),
        (["flow", "{d}/a.png", "{d}/b.jpg", "--checkpoint", "{ck}", "--viz", "{d}/v.png", "--max-flow", "0"], ["--max-flow"]),
    ],
)
def test_errors_are_one_line(files, args, needles):
    d, ck = files
    r = run(*[a.format(d=d, ck=ck) for a in args])
    assert_one_line_error(r, *needles)


def test_video_from_frame_folder(files):
    d, ck = files
    out = d / "vid"
    r = run("video", d / "frames", "--checkpoint", ck, "--out", out, "--flo", "--viz-frames", "--batch", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    flos = sorted(p for p in os.listdir(out) if p.endswith(".flo"))
    pngs = sorted(p for p in os.listdir(out) if p.endswith(".png"))
    assert flos == ["f000.flo", "f001.flo", "f002.flo"] and len(pngs) == 3  # named after each pair's first frame
    assert read_flow(out / "f002.flo").shape == (64, 96, 2)


def test_video_file_roundtrip(files):
    iio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    d, ck = files
    from fastflow.samples import load_photo

    img = load_photo()
    src = d / "clip.mp4"
    with iio.get_writer(src, fps=10, macro_block_size=1) as w:
        for i in range(3):
            w.append_data(img[i * 4 : i * 4 + 64, i * 4 : i * 4 + 128])
    out = d / "clipout"
    r = run("video", src, "--checkpoint", ck, "--out", out, "--viz-video", "--flo")
    assert r.returncode == 0, r.stderr
    assert sorted(p for p in os.listdir(out) if p.endswith(".flo")) == ["000000.flo", "000001.flo"]
    assert (out / "flow.mp4").stat().st_size > 0
    assert iio.get_reader(out / "flow.mp4").get_meta_data()["fps"] == pytest.approx(10)  # the source's fps
    assert "2/2" in r.stderr  # the progress bar, with its total


def test_bad_repeats_is_a_usage_error():
    r = run("bench", "--repeats", "0")
    assert r.returncode == 2 and "--repeats" in r.stderr and "Traceback" not in r.stderr


def test_info_and_bench():
    r = run("info", "--json")
    assert r.returncode == 0, r.stderr
    import json

    info = json.loads(r.stdout)
    assert {"version", "cuda_compiled", "cuda_archs", "nvcc_version", "cpu_ops", "torch"} <= set(info)
    r = run("bench", "--size", "64x128", "--repeats", "2", "--warmup", "1", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "fastflow" in r.stdout and "reference" in r.stdout and "random" in r.stdout


# --------------------------------------------------------------------- issue 15: images, video, info
def test_video_natural_order_names_fixed_scale(files, model):
    """1.png, 2.png, 10.png pair as 1->2->10; outputs named after the first frame; one colour scale."""
    from PIL import Image

    from fastflow.samples import load_photo

    d, ck = files
    img = load_photo()
    src = d / "natural"
    src.mkdir()
    crops = {n: img[k * 3 : k * 3 + 64, k * 5 : k * 5 + 80] for k, n in enumerate(["1", "2", "10"])}
    for n, c in crops.items():
        Image.fromarray(c).save(src / f"{n}.png")
    out = d / "natural_out"
    r = run("video", src, "--checkpoint", ck, "--out", out, "--flo", "--viz-frames")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["1.flo", "1.png", "2.flo", "2.png"]
    r2 = run("video", src, "--checkpoint", ck, "--out", d / "natural_png", "--viz-frames", "--quiet")  # no .flo kept
    assert r2.returncode == 0, r2.stderr
    assert sorted(os.listdir(d / "natural_png")) == ["1.png", "2.png"]
    for n in ("1.png", "2.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(out / n)), np.asarray(Image.open(d / "natural_png" / n)))
    f1, f2 = read_flow(out / "1.flo"), read_flow(out / "2.flo")
    np.testing.assert_allclose(f1, fastflow.estimate_flow(model, crops["1"], crops["2"]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(f2, fastflow.estimate_flow(model, crops["2"], crops["10"]), rtol=1e-4, atol=1e-4)
    scale = max(np.sqrt(f[..., 0].astype(np.float64) ** 2 + f[..., 1].astype(np.float64) ** 2).max() for f in (f1, f2))
    for name, f in (("1", f1), ("2", f2)):
        got = np.asarray(Image.open(out / f"{name}.png")).astype(int)
        want = fastflow.flow_to_color(f, max_flow=scale).astype(int)
        np.testing.assert_array_equal(got, want)
    assert "2/2" in r.stderr and "colour scale" in r.stdout


def test_video_errors_name_files_and_leave_no_folder(files):
    from PIL import Image

    d, ck = files
    mixed = d / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(mixed / "f1.png")
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(mixed / "f2.png")
    out = d / "mixed_out"
    r = run("video", mixed, "--checkpoint", ck, "--out", out, "--quiet")
    assert_one_line_error(r, "f2.png", "f1.png", "80x64")
    assert not out.exists()  # the folder it made is removed again
    r = run("video", d / "one", "--checkpoint", ck, "--out", d / "one_out")
    assert_one_line_error(r, "at least 2 frames")
    assert not (d / "one_out").exists()


def test_output_names_checked_before_the_network(files):
    from PIL import Image

    d, ck = files
    long = d / "longnames"
    long.mkdir()
    for ext in ("png", "jpg", "bmp"):  # one stem, three files: outputs keep the extension, 255 + 4 bytes
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(long / ("x" * 251 + "." + ext))
    # a file name of 300 characters: refused before the model is even loaded (no checkpoint needed)
    r = run("flow", d / "a.png", d / "b.jpg", "--checkpoint", d / "missing.pth", "-o", d / ("y" * 300 + ".flo"))
    assert_one_line_error(r, "too long")
    r = run("video", long, "--checkpoint", d / "missing.pth", "--out", d / "long_out", "--viz-frames")
    assert_one_line_error(r, "too long")
    assert not (d / "long_out").exists()


def test_flow_exif_16bit_and_greyscale_files(files, model):
    """Images read by the CLI follow the rules of fastflow.images: EXIF orientation applied,
    16-bit files scaled from 0..65535, greyscale L accepted as convert('RGB') makes it."""
    from PIL import Image

    d, ck = files
    a, b = (np.asarray(Image.open(d / n).convert("RGB")) for n in ("a.png", "b.jpg"))
    # a phone JPEG: sensor-orientation pixels + EXIF orientation 6, paired with an upright PNG
    im = Image.fromarray(np.rot90(a, 1).copy())
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(d / "a_rot.png", exif=exif)
    r = run("flow", d / "a_rot.png", d / "b.jpg", "--checkpoint", ck, "-o", d / "rot.flo")
    assert r.returncode == 0, r.stderr
    assert "120x200x2" in r.stdout
    np.testing.assert_allclose(read_flow(d / "rot.flo"), fastflow.estimate_flow(model, a, b), rtol=1e-4, atol=1e-4)
    # 16-bit greyscale PNGs and their 8-bit L copies give the same flow
    ga, gb = (np.asarray(Image.fromarray(x).convert("L")) for x in (a, b))
    Image.fromarray(ga.astype(np.uint16) * 257).save(d / "ga16.png")
    Image.fromarray(gb.astype(np.uint16) * 257).save(d / "gb16.png")
    Image.fromarray(ga).save(d / "ga8.png")
    Image.fromarray(gb).save(d / "gb8.png")
    r = run("flow", d / "ga16.png", d / "gb16.png", "--checkpoint", ck, "-o", d / "g16.flo")
    assert r.returncode == 0, r.stderr
    want = fastflow.estimate_flow(model, Image.open(d / "ga8.png"), Image.open(d / "gb8.png"))
    np.testing.assert_allclose(read_flow(d / "g16.flo"), want, rtol=1e-3, atol=1e-3)


def test_version_info_and_namespace(files):
    d, ck = files
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"fastflow {fastflow.__version__}"
    r = run("info")
    assert r.returncode == 0, r.stderr
    assert "cpu_forward" in r.stdout and "(emulation)" not in r.stdout
    r = run("info", "--checkpoint", ck)
    assert r.returncode == 0, r.stderr
    assert "38,676,506 parameters" in r.stdout and "42 tensors" in r.stdout and "sha256" in r.stdout
    r = run("info", "--checkpoint", d / "a.png")
    assert_one_line_error(r, "PNG image")
    code = "import fastflow; print(sorted(n for n in dir(fastflow) if not n.startswith('_')), hasattr(fastflow, 'annotations'), hasattr(fastflow, 'importlib'))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=120)
    assert p.stdout.strip().endswith("False False"), p.stdout + p.stderr


def test_large_cpu_pair_gets_a_note(capsys):
    from fastflow.cli._common import size_note

    size_note(torch.device("cpu"), 3000, 4000)
    err = capsys.readouterr().err
    assert "4000x3000" in err and "4032x3008" in err and "CPU" in err
    size_note(torch.device("cpu"), 256, 320)
    assert capsys.readouterr().err == ""


def test_video_folder_mixed_bit_depths_and_exif(files, model, tmp_path):
    """Frame folders follow fastflow.images too: a 16-bit frame is scaled (not read as 0..255), an
    EXIF-rotated frame is upright (run in-process through cli.main)."""
    from PIL import Image

    from fastflow import cli

    d, ck = files
    a = np.asarray(Image.open(d / "a.png").convert("RGB"))[:64, :96]
    b = np.asarray(Image.open(d / "b.jpg").convert("RGB"))[:64, :96]
    src = tmp_path / "frames"
    src.mkdir()
    Image.fromarray(a).save(src / "frame_8.png")
    import cv2

    cv2.imwrite(str(src / "frame_9.png"), (b.astype(np.uint16) * 257)[..., ::-1])  # 16-bit RGB
    rot = Image.fromarray(np.rot90(a, 1).copy())
    exif = rot.getexif()
    exif[0x0112] = 6
    rot.save(src / "frame_10.png", exif=exif)
    out = tmp_path / "out"
    assert cli.main(["video", str(src), "--checkpoint", str(ck), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    assert sorted(os.listdir(out)) == ["frame_8.flo", "frame_9.flo"]
    np.testing.assert_allclose(read_flow(out / "frame_8.flo"), fastflow.estimate_flow(model, a, b), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(read_flow(out / "frame_9.flo"), fastflow.estimate_flow(model, b, a), rtol=1e-4, atol=1e-4)
