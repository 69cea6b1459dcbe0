"""``fastflow extract``: every format against estimate_flow, denseflow quantisation, resume after a
kill mid-input, bad inputs, changed options, --workers 2, and --ray on a local Ray."""
import json
import os
import shutil
import signal

import numpy as np
import pytest
import torch

import fastflow
import fastflow.extraction
import fastflow.extraction.writer
from fastflow.extraction import RECORD_DIR, quantize_flow, resize_frame
from fastflow.images import open_frames
from fastflow.io import read_flow
from test_cli import assert_one_line_error
from test_cli import run as run_cli

iio = pytest.importorskip("imageio.v2")
pytest.importorskip("imageio_ffmpeg")


def frames_of(path, size=None):
    """The frames extract feeds the model (8-bit, resized to ``size``)."""
    src = open_frames(str(path))
    try:
        frames = list(src)
    finally:
        src.close()
    return [resize_frame(f, size or f.shape[:2]) for f in frames]


def tree(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory, weights):
    """Small awkward-sized inputs: two frame folders, a video, and bad inputs; a random-weight
    checkpoint and the model it holds."""
    from PIL import Image

    from fastflow.samples import load_photo

    d = tmp_path_factory.mktemp("extract")
    rng = np.random.default_rng(7)
    img = load_photo()
    a = d / "walk"  # 5 frames, 70x90, natural order (f2 before f10)
    a.mkdir()
    for k, name in enumerate(["f1", "f2", "f10", "f11", "f20"]):
        y, x = int(rng.integers(0, 40)), int(rng.integers(0, 60))
        Image.fromarray(img[y : y + 70, x : x + 90]).save(a / f"{name}.png")
    b = d / "run"  # 4 jpg frames, 66x100
    b.mkdir()
    for k in range(4):
        Image.fromarray(img[20 + 3 * k : 86 + 3 * k, 10 + 2 * k : 110 + 2 * k]).save(b / f"{k:03d}.jpg", quality=92)
    clip = d / "clip.mp4"  # 4 frames, 64x96
    with iio.get_writer(clip, fps=10, macro_block_size=1) as w:
        for k in range(4):
            w.append_data(img[k * 4 : k * 4 + 64, k * 5 : k * 5 + 96])
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    one = d / "single"
    one.mkdir()
    Image.fromarray(img[:70, :90]).save(one / "0.png")
    mixed = d / "mixed"
    mixed.mkdir()
    Image.fromarray(img[:70, :90]).save(mixed / "0.png")
    Image.fromarray(img[:70, :90]).save(mixed / "1.png")
    Image.fromarray(img[:72, :90]).save(mixed / "2.png")
    ck = d / "FlowNet2-S_checkpoint.pth.tar"
    torch.save({"state_dict": weights, "epoch": 1, "best_EPE": np.float64(3.0)}, ck)
    model = fastflow.FlowNet2S().eval()
    model.load_state_dict(weights)
    return {"dir": d, "walk": a, "run": b, "clip": clip, "ck": ck, "model": model}


_EXPECTED = {}


def expected(model, path, step=1, size=None):
    """estimate_flow on each pair of the frames extract reads (cached per module's model)."""
    key = (id(model), str(path), step, size)
    if key not in _EXPECTED:
        fr = frames_of(path, size)
        _EXPECTED[key] = [fastflow.estimate_flow(model, fr[i], fr[i + step]) for i in range(len(fr) - step)], fr
    return _EXPECTED[key]


@pytest.mark.parametrize("fmt", ["flo", "kitti", "npy", "denseflow"])
def test_formats_match_estimate_flow(data, tmp_path, fmt, monkeypatch):
    model = data["model"]
    # a batch's files written by 3 threads (the resume test's subprocess runs the 1-thread default
    # of a 2-core machine)
    monkeypatch.setattr(fastflow.extraction.writer, "ENCODER_THREADS", 3)
    bound = 40.0
    # the checkpoint path once (flo), the loaded model for the other formats
    src = {"checkpoint": str(data["ck"])} if fmt == "flo" else {"model": model}
    s = fastflow.extract([data["walk"], data["clip"]], tmp_path, format=fmt, batch=3, bound=bound,
                         rgb=(fmt == "denseflow"), **src)
    assert (s["done"], s["failed"], s["skipped"], s["frames"], s["pairs"]) == (2, 0, 0, 9, 7), s
    for path, name, stems in [(data["walk"], "walk", ["f1", "f2", "f10", "f11"]),
                              (data["clip"], "clip", ["00001", "00002", "00003"])]:
        want, fr = expected(model, path)
        out = tmp_path / name
        files = sorted(os.listdir(out))
        if fmt == "flo":
            assert files == sorted(f"{s}.flo" for s in stems)
            for st, w in zip(stems, want):
                np.testing.assert_allclose(read_flow(out / f"{st}.flo"), w, rtol=1e-4, atol=1e-4)
        elif fmt == "kitti":
            assert files == sorted(f"{s}.png" for s in stems)
            for st, w in zip(stems, want):
                got, valid = read_flow(out / f"{st}.png", return_valid=True)
                assert valid.all()
                np.testing.assert_allclose(got, w, rtol=0, atol=1 / 128 + 1e-3)  # 1/64-pixel steps
        elif fmt == "npy":
            assert files == ["flow.npy"]
            got = np.load(out / "flow.npy")
            assert got.dtype == np.float16 and got.shape == (len(want), *want[0].shape)
            np.testing.assert_allclose(got.astype(np.float32), np.stack(want), rtol=2e-3, atol=1e-3)
        else:
            from PIL import Image

            n = len(want)
            assert files == sorted([f"flow_x_{i:05d}.jpg" for i in range(1, n + 1)]
                                   + [f"flow_y_{i:05d}.jpg" for i in range(1, n + 1)]
                                   + [f"img_{i:05d}.jpg" for i in range(1, n + 2)])
            for i, w in enumerate(want, 1):
                qx, qy = quantize_flow(w, bound)
                for c, q in (("x", qx), ("y", qy)):
                    got = np.asarray(Image.open(out / f"flow_{c}_{i:05d}.jpg"))
                    assert got.shape == w.shape[:2] and got.dtype == np.uint8
                    diff = np.abs(got.astype(int) - q.astype(int))
                    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 4, (c, i, diff.mean(), diff.max())
                    # decoded values map back to the flow within the quantisation step and JPEG error
                    back = got.astype(np.float32) * (2 * bound / 255) - bound
                    inside = np.abs(w[..., "xy".index(c)]) < bound - 1
                    assert np.median(np.abs(back - w[..., "xy".index(c)])[inside]) < 2 * bound / 255
            for i, f in enumerate(fr, 1):
                got = np.asarray(Image.open(out / f"img_{i:05d}.jpg")).astype(int)
                assert got.shape == f.shape and np.abs(got - f).mean() < 3
        rec = json.loads((tmp_path / RECORD_DIR / f"{name}.json").read_text())
        assert rec["frames"] == len(fr) and rec["pairs"] == len(want) and rec["options"]["format"] == fmt
        assert rec["fastflow"] == fastflow.__version__


def test_denseflow_quantisation():
    bound = 15.0
    u = np.array([-1e6, -bound, -bound / 2, 0.0, bound / 2, bound, bound + 0.01, np.nan, np.inf, -np.inf], np.float32)
    x, y = quantize_flow(np.stack([u, -u], axis=-1)[None], bound)
    want = np.clip(np.rint((np.nan_to_num(u.astype(np.float64), nan=0.0, posinf=1e6, neginf=-1e6) + bound) * 255 / (2 * bound)), 0, 255)
    np.testing.assert_array_equal(x[0], want.astype(np.uint8))
    assert list(x[0][:7]) == [0, 0, 64, 128, 191, 255, 255] and x[0][7] == 128
    rng = np.random.default_rng(0)
    flow = rng.uniform(-30, 30, size=(7, 11, 2)).astype(np.float32)
    qx, qy = quantize_flow(flow, bound)
    inside = np.abs(flow) < bound
    back = np.stack([qx, qy], -1).astype(np.float32) * (2 * bound / 255) - bound
    assert np.abs(back - flow)[inside].max() <= bound / 255 + 1e-5  # half a step
    assert (qx[flow[..., 0] >= bound] == 255).all() and (qy[flow[..., 1] <= -bound] == 0).all()


def test_step_size_and_short_side(data, tmp_path):
    model = data["model"]
    s = fastflow.extract(data["walk"], tmp_path / "a", model=model, format="npy", step=2, size="48x80")
    assert s["done"] == 1 and s["pairs"] == 3
    want, _ = expected(model, data["walk"], step=2, size=(48, 80))
    got = np.load(tmp_path / "a" / "walk" / "flow.npy").astype(np.float32)
    assert got.shape == (3, 48, 80, 2)
    np.testing.assert_allclose(got, np.stack(want), rtol=2e-3, atol=1e-3)
    s = fastflow.extract(data["run"], tmp_path / "b", model=model, format="flo", short_side=50, step=3)
    assert s["done"] == 1 and s["pairs"] == 1
    want, _ = expected(model, data["run"], step=3, size=(50, 76))  # 66x100 -> 50x76
    np.testing.assert_allclose(read_flow(tmp_path / "b" / "run" / "000.flo"), want[0], rtol=1e-4, atol=1e-4)
    # a step longer than the input: the input fails with the reason
    s = fastflow.extract(data["clip"], tmp_path / "c", model=model, step=4)
    assert s["failed"] == 1 and "need at least 5 for step 4" in s["results"][0]["reason"]


def test_resume_after_kill_matches_uninterrupted_run(data, tmp_path):
    ck = data["ck"]
    lst = tmp_path / "inputs.txt"
    lst.write_text(f"# three inputs\n{data['walk']}\n\n{data['clip']}\n{data['run']}\n")
    args = [f"@{lst}", "--checkpoint", ck, "--format", "denseflow", "--rgb", "--batch", "2", "--device", "cpu"]
    out = tmp_path / "resumed"
    # killed (SIGKILL) right after the 6th pair is written: walk (4 pairs) finished, clip half done
    r = run_cli("extract", *args, "--out", out, env={"_FASTFLOW_TEST_KILL_AFTER_PAIRS": "6"})
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert (out / RECORD_DIR / "walk.json").exists() and not (out / RECORD_DIR / "clip.json").exists()
    partial = sorted(os.listdir(out / "clip"))
    assert "flow_x_00002.jpg" in partial and "flow_x_00003.jpg" not in partial, partial
    assert not (out / "run").exists()
    r = run_cli("extract", *args, "--out", out, "--report", tmp_path / "rep.json")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert [x["status"] for x in rep["results"]] == ["skipped", "done", "done"]
    assert (rep["done"], rep["skipped"], rep["failed"]) == (2, 1, 0)
    # the uninterrupted run, also in a fresh process (same threads, so bitwise the same arithmetic)
    ref = tmp_path / "uninterrupted"
    r = run_cli("extract", *args, "--out", ref, "--quiet")
    assert r.returncode == 0 and "3 done" in r.stdout, r.stderr
    got, want = tree(out), tree(ref)
    assert sorted(got) == sorted(want)
    assert not any(".fastflow-tmp" in p for p in got)
    for p in want:
        assert got[p] == want[p], p


def test_bad_inputs_are_reported_and_skipped(data, tmp_path):
    d = data["dir"]
    out = tmp_path / "out"
    rep = tmp_path / "report.json"
    r = run_cli("extract", data["clip"], d / "corrupt.mp4", d / "single", d / "mixed", d / "missing.mp4",
                "--out", out, "--checkpoint", data["ck"], "--report", rep, "--quiet")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "5 inputs: 1 done, 0 skipped (finished earlier), 4 failed" in r.stdout
    res = {x["name"]: x for x in json.loads(rep.read_text())["results"]}
    assert res["clip"]["status"] == "done" and res["clip"]["pairs"] == 3
    assert "cannot read video" in res["corrupt"]["reason"]
    assert res["single"]["reason"].startswith("1 frame; need at least 2")
    assert "frame 3 (2) is 90x72, the first was 90x70" in res["mixed"]["reason"]
    assert "not found" in res["missing"]["reason"]
    for name in ("corrupt", "single", "mixed", "missing"):
        assert res[name]["status"] == "failed"
        assert not (out / name).exists() and not (out / RECORD_DIR / f"{name}.json").exists()
        assert f"failed: {res[name]['input']}: {res[name]['reason']}" in r.stdout


def test_changed_options_are_reported_then_overwritten(data, tmp_path):
    model = data["model"]
    s = fastflow.extract(data["clip"], tmp_path, model=model, format="flo")
    assert s["done"] == 1
    s = fastflow.extract(data["clip"], tmp_path, model=model, format="flo")
    assert (s["done"], s["skipped"], s["pairs"]) == (0, 1, 0)
    os.remove(tmp_path / "clip" / "00002.flo")  # a finished input missing a file is redone
    s = fastflow.extract(data["clip"], tmp_path, model=model, format="flo")
    assert (s["done"], s["skipped"], s["pairs"]) == (1, 0, 3)
    s = fastflow.extract(data["clip"], tmp_path, model=model, format="kitti", step=2)
    assert s["failed"] == 1
    assert "other options (format flo -> kitti, step 1 -> 2)" in s["results"][0]["reason"]
    assert sorted(os.listdir(tmp_path / "clip")) == ["00001.flo", "00002.flo", "00003.flo"]  # untouched
    s = fastflow.extract(data["clip"], tmp_path, model=model, format="kitti", step=2, overwrite=True)
    assert s["done"] == 1 and sorted(os.listdir(tmp_path / "clip")) == ["00001.png", "00002.png"]
    other = fastflow.FlowNet2S().eval()  # other weights are another option too
    s = fastflow.extract(data["clip"], tmp_path, model=other, format="kitti", step=2)
    assert s["failed"] == 1 and "weights" in s["results"][0]["reason"]


def test_input_names_lists_and_root(data, tmp_path):
    d = tmp_path / "videos"
    (d / "ClassA").mkdir(parents=True)
    (d / "ClassB").mkdir(parents=True)
    shutil.copy(data["clip"], d / "ClassA" / "v1.mp4")
    shutil.copy(data["clip"], d / "ClassB" / "v1.mp4")
    with pytest.raises(ValueError, match="same folder"):
        fastflow.extract([d / "ClassA" / "v1.mp4", d / "ClassB" / "v1.mp4"], tmp_path / "o", model=data["model"])
    s = fastflow.extract([d / "ClassA" / "v1.mp4", d / "ClassB" / "v1.mp4"], tmp_path / "o", model=data["model"],
                         root=d, format="denseflow")
    assert s["done"] == 2
    for c in ("ClassA", "ClassB"):
        assert sorted(os.listdir(tmp_path / "o" / c / "v1"))[:2] == ["flow_x_00001.jpg", "flow_x_00002.jpg"]
        assert (tmp_path / "o" / RECORD_DIR / c / "v1.json").exists()
    with pytest.raises(ValueError, match="input folder itself"):
        fastflow.extract(data["walk"], data["dir"], model=data["model"])
    # frames a.png and a.jpg: their .flo files would collide, their numbered denseflow files do not
    dup = tmp_path / "dup"
    dup.mkdir()
    for f in sorted(os.listdir(data["walk"]))[:2]:
        shutil.copy(data["walk"] / f, dup / f)
    shutil.copy(data["walk"] / "f2.png", dup / "f1.jpg")
    s = fastflow.extract(dup, tmp_path / "d1", model=data["model"], format="flo")
    assert s["failed"] == 1 and "two frames are named 'f1'" in s["results"][0]["reason"]
    s = fastflow.extract(dup, tmp_path / "d2", model=data["model"], format="denseflow")
    assert s["done"] == 1 and s["pairs"] == 2


def test_cli_user_errors_are_one_line(data, tmp_path):
    fake = tmp_path / "noray"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('no ray here')\n")
    cases = [
        (["extract", data["clip"], "--out", tmp_path / "o", "--checkpoint", data["ck"], "--ray"],
         {"PYTHONPATH": str(fake)}, "pip install '.[cluster]'"),
        (["extract", data["clip"], "--out", tmp_path / "o"], None, "no checkpoint given"),
        (["extract", data["clip"], "--out", tmp_path / "o", "--checkpoint", data["ck"], "--size", "64"], None,
         "HEIGHTxWIDTH"),
        (["extract", data["clip"], "--out", tmp_path / "o", "--checkpoint", data["ck"], "--step", "0"], None, "--step"),
        (["extract", f"@{tmp_path / 'nolist.txt'}", "--out", tmp_path / "o", "--checkpoint", data["ck"]], None,
         "cannot read the input list"),
        (["extract", data["clip"], "--out", tmp_path / "o", "--checkpoint", data["ck"], "--report", tmp_path], None,
         "is a folder"),
        (["extract", data["clip"], "--out", tmp_path / "o", "--checkpoint", data["ck"], "--bound", "-1",
          "--format", "denseflow"], None, "bound must be a positive number"),
    ]
    for args, env, needle in cases:
        r = run_cli(*args, env=env)
        assert r.returncode == 2
        assert_one_line_error(r, needle)


def test_api_name_is_the_function():
    import fastflow.extraction  # noqa: F401 - importing the module must not shadow the function

    assert callable(fastflow.extract) and fastflow.extract.__name__ == "extract"


def test_workers_2(data, tmp_path):
    s = fastflow.extract([data["walk"], data["clip"], data["run"]], tmp_path, checkpoint=str(data["ck"]),
                         workers=2, device="cpu", format="flo", batch=2)
    assert (s["done"], s["failed"], s["pairs"]) == (3, 0, 10), s
    for path, name, first in [(data["walk"], "walk", "f1"), (data["clip"], "clip", "00001"),
                              (data["run"], "run", "000")]:
        want, _ = expected(data["model"], path)
        np.testing.assert_allclose(read_flow(tmp_path / name / f"{first}.flo"), want[0], rtol=1e-4, atol=1e-4)
        assert len(os.listdir(tmp_path / name)) == len(want)


def test_ray_local_cluster(data, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    # the first worker process is killed (SIGKILL) after its 2nd pair; Ray restarts it and retries
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("_FASTFLOW_TEST_KILL_AFTER_PAIRS", "2")
    monkeypatch.setenv("_FASTFLOW_TEST_KILL_ONCE", str(marker))
    where = tmp_path / "where.json"  # each worker writes the fastflow package it imported
    monkeypatch.setenv("_FASTFLOW_TEST_PAUSE_AFTER_PAIRS", "1")
    monkeypatch.setenv("_FASTFLOW_TEST_PAUSE_FILE", str(where))
    monkeypatch.setenv("_FASTFLOW_TEST_PAUSE_SECONDS", "0")
    # The driver runs in the source tree's root (as the README has users do), where fastflow/ is the
    # uncompiled checkout: the workers must still import the installed package. extract starts the
    # local Ray itself (and shuts it down).
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert os.path.isdir("fastflow") and not ray.is_initialized()
    s = fastflow.extract([data["walk"], data["clip"], data["dir"] / "corrupt.mp4"], tmp_path / "out",
                         checkpoint=str(data["ck"]), ray=True, workers=2, format="npy", batch=1)
    assert not ray.is_initialized()
    assert marker.exists()  # a worker did die mid-input
    assert json.loads(where.read_text())["fastflow"] == os.path.dirname(fastflow.__file__)
    assert (s["done"], s["failed"], s["pairs"]) == (2, 1, 7), s
    assert "cannot read video" in s["results"][2]["reason"]
    for path, name in [(data["walk"], "walk"), (data["clip"], "clip")]:
        want, _ = expected(data["model"], path)
        assert os.listdir(tmp_path / "out" / name) == ["flow.npy"]
        got = np.load(tmp_path / "out" / name / "flow.npy").astype(np.float32)
        np.testing.assert_allclose(got, np.stack(want), rtol=2e-3, atol=1e-3)


def test_progress_line_on_a_terminal():
    import io

    from fastflow.extraction import Job
    from fastflow.extraction.progress import Progress as _Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    p = _Progress(3, 1, True, stream=out)
    p.start_input(Job("walk", "walk", "/o"), 5)
    p.add_pairs(3)
    p.input_done({"input": "walk", "name": "walk", "status": "done", "reason": None})
    p.input_done({"input": "bad.mp4", "name": "bad", "status": "failed", "reason": "cannot read video"})
    p.close()
    text = out.getvalue()
    assert "walk 0/4 pairs" in text and "walk: done\n" in text and "bad.mp4: failed: cannot read video\n" in text
    assert "2/3 inputs" in text and "3 pairs" in text and "pairs/s" in text  # tqdm's bar
    assert text.endswith("\n") and "\r" in text
    quiet = Tty()
    p = _Progress(1, 1, False, stream=quiet)
    p.add_pairs(2)
    p.input_done({"input": "x", "name": "x", "status": "done", "reason": None})
    p.close()
    assert quiet.getvalue() == ""
