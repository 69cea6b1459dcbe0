"""``fastflow extract`` under attack (issue 20): the user's own files, damaged videos, changed inputs,
two runs on one output folder, SIGTERM / SIGINT / SIGKILL with worker processes, a worker killed
mid-input, a script without a ``__main__`` guard, Ray from the source tree, and the messages a
newcomer meets. Kill, signal and concurrency cases start real processes (``_procs.Run``: own process
group, a token in the environment) and check nothing is left. Tiny frames, random weights."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import fastflow
from _procs import Run, wait_for_file

iio2 = pytest.importorskip("imageio.v2")
pytest.importorskip("imageio_ffmpeg")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD_DIR = ".fastflow-done"


def _frames(n, h=64, w=64, seed=0):
    from fastflow.samples import load_photo

    img = load_photo()
    rng = np.random.default_rng(seed)
    y0, x0 = int(rng.integers(0, 60)), int(rng.integers(0, 60))
    return [np.ascontiguousarray(img[y0 + 2 * k: y0 + 2 * k + h, x0 + 3 * k: x0 + 3 * k + w]) for k in range(n)]


def _folder(path, n, seed=0):
    from PIL import Image

    path.mkdir(parents=True)
    for k, f in enumerate(_frames(n, seed=seed)):
        Image.fromarray(f).save(path / f"{k:03d}.png")
    return path


def _video(path, n, seed=0, **kw):
    with iio2.get_writer(path, fps=10, macro_block_size=1, **kw) as w:
        for f in _frames(n, seed=seed):
            w.append_data(f)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory, weights):
    d = tmp_path_factory.mktemp("safety")
    ck = d / "FlowNet2-S_checkpoint.pth.tar"
    torch.save({"state_dict": weights, "epoch": 1, "best_EPE": np.float64(3.0)}, ck)
    model = fastflow.FlowNet2S().eval()
    model.load_state_dict(weights)
    inputs = [_folder(d / f"in{i}", 4, seed=i) for i in range(6)]
    return {"dir": d, "ck": ck, "model": model, "inputs": inputs, "clip": _video(d / "clip.mp4", 4)}


def _env(**kw):
    return {k: str(v) for k, v in kw.items()}


# ------------------------------------------------------------------- item 8: the user's own files
def test_foreign_files_are_reported_not_deleted(data, tmp_path):
    out = tmp_path / "out"
    mine = out / "in0"
    mine.mkdir(parents=True)
    (mine / "img_00001.jpg").write_bytes(b"my own RGB frame")
    (mine / "poster.png").write_bytes(b"my poster")
    s = fastflow.extract(data["inputs"][0], out, model=data["model"], format="denseflow", rgb=True)
    assert s["failed"] == 1, s
    reason = s["results"][0]["reason"]
    assert "fastflow did not write" in reason and "img_00001.jpg" in reason and "another --out" in reason
    assert (mine / "img_00001.jpg").read_bytes() == b"my own RGB frame"
    assert (mine / "poster.png").read_bytes() == b"my poster"


def test_finished_folder_keeps_a_dropped_in_file(data, tmp_path):
    out = tmp_path / "out"
    s = fastflow.extract(data["inputs"][0], out, model=data["model"], format="kitti")
    assert s["done"] == 1
    (out / "in0" / "thumbnail.png").write_bytes(b"thumb")
    s = fastflow.extract(data["inputs"][0], out, model=data["model"], format="kitti")
    assert (s["skipped"], s["done"]) == (1, 0), s
    assert (out / "in0" / "thumbnail.png").read_bytes() == b"thumb"
    # a file of its own removed: redone, the foreign file still kept
    os.remove(out / "in0" / "001.png")
    s = fastflow.extract(data["inputs"][0], out, model=data["model"], format="kitti")
    assert s["done"] == 1 and (out / "in0" / "001.png").exists()
    assert (out / "in0" / "thumbnail.png").read_bytes() == b"thumb"


def test_unfinished_input_clears_only_its_own_files(data, tmp_path):
    """An input killed mid-way leaves files it listed in its journal: the rerun removes and redoes
    those and keeps a file the user put there meanwhile."""
    out = tmp_path / "out"
    args = [data["inputs"][1], "--out", out, "--checkpoint", data["ck"], "--device", "cpu", "--batch", "1"]
    r = Run("extract", *args, env=_env(_FASTFLOW_TEST_KILL_AFTER_PAIRS=2))
    rc, _, err = r.wait()
    assert rc == -signal.SIGKILL, err
    assert sorted(os.listdir(out / "in1")) == ["000.flo", "001.flo"]
    (out / "in1" / "notes.txt").write_text("mine")  # put there between the runs
    s = fastflow.extract(data["inputs"][1], out, checkpoint=str(data["ck"]), device="cpu", batch=1)
    assert s["done"] == 1, s
    assert sorted(os.listdir(out / "in1")) == ["000.flo", "001.flo", "002.flo", "notes.txt"]
    assert (out / "in1" / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------- item 9: damaged videos
def _truncated_faststart_mp4(d):
    p = _video(d / "full.mp4", 40, output_params=["-movflags", "+faststart"])
    raw = p.read_bytes()
    (d / "trunc.mp4").write_bytes(raw[: len(raw) // 4])
    return d / "trunc.mp4"


def _mjpg_avi(d, n=20):
    return _video(d / "m.avi", n, codec="mjpeg", output_params=["-q:v", "3"])


def _truncated_avi(d):
    raw = _mjpg_avi(d).read_bytes()
    (d / "trunc.avi").write_bytes(raw[: int(len(raw) * 0.93)])
    return d / "trunc.avi"


def _garbled_avi(d):
    raw = bytearray(_mjpg_avi(d).read_bytes())
    soi = [i for i in range(len(raw) - 3) if raw[i:i + 3] == b"\xff\xd8\xff"]
    for k in (10, 11):  # the JPEG data of frames 10 and 11 zeroed: the decoder drops them
        raw[soi[k]: soi[k + 1] - 8] = bytes(soi[k + 1] - 8 - soi[k])
    (d / "garbled.avi").write_bytes(bytes(raw))
    return d / "garbled.avi"


@pytest.mark.parametrize("make", [_truncated_faststart_mp4, _truncated_avi, _garbled_avi])
def test_damaged_videos_fail_not_renumbered(data, tmp_path, make):
    src = make(tmp_path)
    s = fastflow.extract(src, tmp_path / "out", model=data["model"], batch=4)
    r = s["results"][0]
    assert r["status"] == "failed", r
    # the decoded count against the container's, or ffmpeg's own decoding error
    assert ("decoded" in r["reason"] and "container" in r["reason"]) or "cannot read video" in r["reason"], r["reason"]
    name = src.stem
    assert not (tmp_path / "out" / RECORD_DIR / f"{name}.json").exists()
    assert not (tmp_path / "out" / name).exists()


def test_frame_size_change_midway_fails_the_input(data, tmp_path):
    """An MJPG AVI whose frames change size midway (two clips of 64x48 and 80x64 joined without
    re-encoding): ffmpeg rescaled the second part to the first's size unnoticed; now the input
    fails naming both sizes, with no record and no files (issue 20, item 9)."""
    import subprocess

    import imageio_ffmpeg

    ff = imageio_ffmpeg.get_ffmpeg_exe()
    for name, size in (("a", "64x48"), ("b", "80x64")):
        subprocess.run([ff, "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=10", "-frames:v", "5",
                        "-c:v", "mjpeg", str(tmp_path / f"{name}.avi")], check=True)
    (tmp_path / "list.txt").write_text(f"file '{tmp_path / 'a.avi'}'\nfile '{tmp_path / 'b.avi'}'\n")
    joined = tmp_path / "joined.avi"
    subprocess.run([ff, "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(tmp_path / "list.txt"), "-c",
                    "copy", str(joined)], check=True)
    s = fastflow.extract([joined, tmp_path / "a.avi"], tmp_path / "out", model=data["model"], batch=4)
    by = {r["name"]: r for r in s["results"]}
    assert by["a"]["status"] == "done" and by["joined"]["status"] == "failed", by
    assert "frame size changes midway (64x48 -> 80x64)" in by["joined"]["reason"], by["joined"]["reason"]
    assert not (tmp_path / "out" / RECORD_DIR / "joined.json").exists() and not (tmp_path / "out" / "joined").exists()


def test_intact_avi_is_done(data, tmp_path):
    s = fastflow.extract(_mjpg_avi(tmp_path, 6), tmp_path / "out", model=data["model"], format="npy")
    assert s["done"] == 1 and s["pairs"] == 5, s


# ------------------------------------------------------------------- item 10: the input's identity
def test_changed_input_is_redone(data, tmp_path):
    clip = _video(tmp_path / "v.mp4", 4, seed=1)
    out = tmp_path / "out"
    s = fastflow.extract(clip, out, model=data["model"], format="npy")
    assert s["done"] == 1
    first = np.load(out / "v" / "flow.npy")
    rec = json.loads((out / RECORD_DIR / "v.json").read_text())
    ident = rec["input_identity"]
    assert ident["bytes"] == clip.stat().st_size and ident["frames"] == 4 and ident["sha256_head_tail"]
    _video(tmp_path / "v2.mp4", 5, seed=2)
    os.replace(tmp_path / "v2.mp4", clip)
    s = fastflow.extract(clip, out, model=data["model"], format="npy")
    r = s["results"][0]
    assert r["status"] == "done" and "changed since" in (r["reason"] or ""), r
    assert np.load(out / "v" / "flow.npy").shape[0] == 4 != first.shape[0]


# --------------------------------------------------------------- item 11: two runs on one folder
def test_second_run_is_refused_and_a_stale_lock_taken_over(data, tmp_path, capfd):
    out = tmp_path / "out"
    marker = tmp_path / "paused"
    args = ["--out", out, "--checkpoint", data["ck"], "--device", "cpu", "--batch", "1", "--quiet"]
    a = Run("extract", *data["inputs"][:2], *args,
            env=_env(_FASTFLOW_TEST_PAUSE_AFTER_PAIRS=1, _FASTFLOW_TEST_PAUSE_FILE=marker))
    try:
        wait_for_file(marker, a)
        rc, outp, err = Run("extract", *data["inputs"][2:4], *args).wait()
        assert rc == 2, (rc, outp, err)
        line = err.strip().splitlines()
        assert len(line) == 1 and line[0].startswith("fastflow: error:"), err
        assert f"pid {a.p.pid}" in line[0] and "in use" in line[0], line[0]
        assert not (out / "in2").exists()
    finally:
        a.signal(signal.SIGKILL)
    a.wait()
    a.assert_all_gone()
    # the holder is dead: its lock is stale, the next run takes it over and resumes
    assert (out / ".fastflow-lock").exists()
    s = fastflow.extract(data["inputs"][:2], out, checkpoint=str(data["ck"]), device="cpu", batch=1)
    assert s["done"] == 2, s
    assert "stale" in capfd.readouterr().err
    assert not (out / ".fastflow-lock").exists()


# --------------------------------------------- items 1, 12, 13: workers, signals, a killed worker
def _paused_two_worker_run(data, tmp_path):
    """`fastflow extract --workers 2` paused after its first pair: (the Run, its output folder)."""
    out = tmp_path / "out"
    marker = tmp_path / "paused"
    r = Run("extract", *data["inputs"], "--out", out, "--checkpoint", data["ck"], "--device", "cpu",
            "--workers", "2", "--batch", "1",
            env=_env(_FASTFLOW_TEST_PAUSE_AFTER_PAIRS=1, _FASTFLOW_TEST_PAUSE_FILE=marker))
    wait_for_file(marker, r)
    return r, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_workers_and_says_how_to_resume(data, tmp_path, sig):
    r, out = _paused_two_worker_run(data, tmp_path)
    t0 = time.monotonic()
    r.signal(sig)
    rc, outp, err = r.wait(timeout=30)
    assert time.monotonic() - t0 < 10, "stopping took too long"
    assert rc == 128 + sig, (rc, err)
    assert "interrupted" in err and "rerun the same command to resume" in err, err
    assert "Traceback" not in err, err
    r.assert_all_gone()
    assert not (out / ".fastflow-lock").exists()


def test_sigkill_of_the_parent_takes_the_workers_with_it(data, tmp_path):
    r, out = _paused_two_worker_run(data, tmp_path)
    os.kill(r.p.pid, signal.SIGKILL)
    rc, _, _ = r.wait(timeout=30)
    assert rc == -signal.SIGKILL
    r.assert_all_gone(within=10)


def test_a_killed_worker_is_replaced_and_its_input_retried(data, tmp_path):
    out = tmp_path / "out"
    r = Run("extract", *data["inputs"][:3], "--out", out, "--checkpoint", data["ck"], "--device", "cpu",
            "--workers", "2", "--batch", "1", "--quiet", "--report", tmp_path / "rep.json",
            env=_env(_FASTFLOW_TEST_KILL_AFTER_PAIRS=2, _FASTFLOW_TEST_KILL_ONCE=tmp_path / "once"))
    rc, outp, err = r.wait()
    assert rc == 0 and "3 done" in outp, (outp, err)
    assert (tmp_path / "once").exists()  # a worker did die
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert [x["status"] for x in rep["results"]] == ["done"] * 3
    for i in range(3):
        assert sorted(os.listdir(out / f"in{i}")) == ["000.flo", "001.flo", "002.flo"]
    r.assert_all_gone()


# --------------------------------------------------------- item 3: a script without a main guard
def test_workers_from_a_script_without_main_guard(data, tmp_path):
    script = tmp_path / "noguard.py"
    script.write_text(textwrap.dedent(f"""
        import fastflow
        s = fastflow.extract({[str(p) for p in data["inputs"][:3]]!r}, {str(tmp_path / "out")!r},
                             checkpoint={str(data["ck"])!r}, device="cpu", workers=2, batch=2)
        print("RESULT", s["done"], s["failed"])
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 0 and "RESULT 3 0" in r.stdout, r.stderr[-3000:]
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------------- item 2: Ray from the source root
def test_ray_from_the_source_tree_root_and_sigterm(data, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    marker = tmp_path / "paused"
    # the driver runs in the repository root, where fastflow/ is the uncompiled source tree
    r = Run("extract", *data["inputs"][:3], "--out", out, "--checkpoint", data["ck"], "--ray", "--workers", "2",
            "--batch", "1", "--quiet", cwd=REPO,
            env=_env(_FASTFLOW_TEST_PAUSE_AFTER_PAIRS=3, _FASTFLOW_TEST_PAUSE_FILE=marker))
    wait_for_file(marker, r, timeout=120)
    assert json.loads(open(marker).read())["fastflow"] == os.path.dirname(fastflow.__file__)
    r.signal(signal.SIGTERM)
    rc, outp, err = r.wait(timeout=60)
    assert rc == 128 + signal.SIGTERM, (rc, err)
    assert "SIGTERM received" not in err and "interrupted" in err, err
    assert "core_worker.cc" not in err, err
    r.assert_all_gone(within=20)


# ------------------------------------------------------------------------ item 7: messages, records
def test_newcomer_messages(data, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    s = fastflow.extract(text, tmp_path / "o1", model=data["model"])
    reason = s["results"][0]["reason"]
    assert "not a video" in reason and str(text) in reason and "backend" not in reason, reason
    empty = tmp_path / "videos"
    empty.mkdir()
    (empty / "a.mp4").write_bytes(b"")
    s = fastflow.extract(empty, tmp_path / "o2", model=data["model"])
    reason = s["results"][0]["reason"]
    assert s["failed"] == 1 and re.search(r"holds no image files.*a\.mp4.*video files.*@list", reason), reason
    assert not (tmp_path / "o2").exists()  # no empty output folder left behind
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder") as e:
        fastflow.extract(data["inputs"][0], blocker / "sub", model=data["model"])
    assert "Errno" not in str(e.value)


def test_unusable_record_folder_is_named_before_any_flow(data, tmp_path):
    """OUT/.fastflow-done a file (or unwritable): one error naming it, before any flow is computed
    (it named OUT/<input> "Not a directory"; issue 20, item 14)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".fastflow-done").write_text("a file where the records go")
    calls = []
    model = data["model"]
    real = model.forward
    model.forward = lambda x: calls.append(1) or real(x)
    try:
        with pytest.raises(ValueError, match=r"\.fastflow-done exists and is not a folder") as e:
            fastflow.extract(data["inputs"][0], out, model=model)
    finally:
        del model.forward
    assert str(out / ".fastflow-done") in str(e.value) and not calls
    assert sorted(p.name for p in out.iterdir()) == [".fastflow-done"]


def test_summary_grammar_and_cpu_precision_record(data, tmp_path):
    from fastflow.extraction import format_summary

    one = _folder(tmp_path / "two", 2)
    s = fastflow.extract(one, tmp_path / "out", checkpoint=str(data["ck"]), device="cpu", precision="tf32")
    assert s["pairs"] == 1
    text = format_summary(s)
    assert "1 input:" in text and "1 pair " in text and "1 pairs" not in text, text
    rec = json.loads((tmp_path / "out" / RECORD_DIR / "two.json").read_text())
    assert rec["options"]["precision"] == "fp32"  # tf32 is a GPU format: a CPU runs fp32


def test_model_and_checkpoint_runs_agree_on_settings(data, tmp_path):
    """Issue 19: with a model passed in, the record stored "float32"; a rerun from the checkpoint
    of the same weights called the settings changed."""
    s = fastflow.extract(data["inputs"][0], tmp_path, model=data["model"])
    assert s["done"] == 1
    s = fastflow.extract(data["inputs"][0], tmp_path, checkpoint=str(data["ck"]), device="cpu")
    assert s["skipped"] == 1, s["results"]


def test_random_weights_are_labelled(data, tmp_path):
    r = Run("extract", data["inputs"][0], "--out", tmp_path, "--random-weights", "--device", "cpu", "--quiet")
    rc, outp, err = r.wait()
    assert rc == 0 and "random weights" in outp + err, (outp, err)
    rec = json.loads((tmp_path / RECORD_DIR / "in0.json").read_text())
    assert rec["options"]["weights"].startswith("random")
