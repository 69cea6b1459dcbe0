"""``fastflow track`` as a subprocess: outputs for detections and for propagation, one-line errors."""
import json

import numpy as np
import pytest
from PIL import Image

from fastflow.track.synthetic import make_sequence

from test_cli import assert_one_line_error, run


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A frame folder of a fresh synthetic scene, its COCO keypoint detections, a mask of object 1."""
    d = tmp_path_factory.mktemp("track")
    s = make_sequence(int(np.random.default_rng().integers(10_000)), n_frames=10)
    (d / "frames").mkdir()
    for k, f in enumerate(s.frames):
        Image.fromarray(f).save(d / "frames" / f"{k}.png")
    coco = [{"image_id": k, "bbox": det["box"].tolist(), "score": det["score"], "category_id": 1,
             "keypoints": det["keypoints"].ravel().tolist()}
            for k, ds in enumerate(s.detections(keypoints=True)) for det in ds]
    (d / "dets.json").write_text(json.dumps(coco))
    Image.fromarray(((s.labels[0] == 1) * 255).astype(np.uint8)).save(d / "mask.png")
    return d, s


def test_detections_with_dis(clip):
    d, s = clip
    r = run("track", d / "frames", "--detections", d / "dets.json", "--flow", "dis", "--mot", d / "t.txt",
            "--json", d / "t.json", "--overlay", d / "ov", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "tracked 10 frames" in r.stdout and "track ids" in r.stdout
    rows = np.loadtxt(d / "t.txt", delimiter=",").reshape(-1, 10)
    assert set(rows[:, 0].astype(int)) <= set(range(1, 11)) and len(rows) >= 10
    pj = json.loads((d / "t.json").read_text())
    assert all("track_id" in a and len(a["keypoints"]) == 51 for a in pj["annotations"])
    assert len(list((d / "ov").iterdir())) == 10


def test_propagation_with_model_random_weights(clip):
    d, s = clip
    box = ",".join(f"{v:.1f}" for v in s.box_in_image(1, 0))
    r = run("track", d / "frames", "--boxes", box, "--points", "20,30", "--mask", d / "mask.png", "--random-weights",
            "--device", "cpu", "--json", d / "p.json", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "[random weights: the flow is meaningless]" in r.stdout
    assert len(json.loads((d / "p.json").read_text())["frames"]) == 10


def test_errors_are_one_line(clip, tmp_path):
    d, s = clip
    assert_one_line_error(run("track", d / "frames", "--flow", "dis", "--mot", tmp_path / "x.txt"), "nothing to track")
    assert_one_line_error(run("track", d / "frames", "--flow", "dis", "--boxes", "1,2,3", "--mot", tmp_path / "x.txt"),
                          "4 comma-separated")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 25, "bbox": [1, 1, 5, 5]}]))
    assert_one_line_error(run("track", d / "frames", "--detections", bad, "--flow", "dis", "--mot", tmp_path / "x.txt"),
                          "frame 25", "10 frames")
    assert_one_line_error(run("track", d / "frames", "--boxes", "500,500,10,10", "--flow", "dis", "--json",
                              tmp_path / "x.json"), "outside the 128x96 image")
    Image.fromarray(s.frames[0][:40]).save(tmp_path / "odd.png")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(s.frames[0]).save(mixed / "0.png")
    Image.fromarray(s.frames[1][:40]).save(mixed / "1.png")
    assert_one_line_error(run("track", mixed, "--points", "5,5", "--flow", "dis", "--json", tmp_path / "x.json", "--quiet"),
                          "frame 1 is 128x40")
    assert not (tmp_path / "x.json").exists()
