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
    """The installed console script (or ``python -m fastflow.cli``), run outside the source tree."""
    e = dict(os.environ)
    e.pop("FASTFLOW_CHECKPOINT", None)
    e.update(env or {})
    exe = shutil.which("fastflow")
    cmd = [exe] if exe else [sys.executable, "-m", "fastflow.cli"]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, env=e, timeout=300,
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

    from fastflow.bench import load_photo

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
    assert flos == ["000000.flo", "000001.flo", "000002.flo"] and len(pngs) == 3
    assert read_flow(out / "000002.flo").shape == (64, 96, 2)


def test_video_file_roundtrip(files):
    iio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    d, ck = files
    from fastflow.bench import load_photo

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
    assert "pairs" in r.stderr  # the progress bar


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
