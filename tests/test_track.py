"""fastflow.track: the forward-backward check, propagation of points / boxes / masks, tracking by
detection (IoU, OKS, Hungarian, lifecycle) on synthetic videos with exact flow, scored with
py-motmetrics; DIS flow measured; the model path for plumbing; formats; bad input."""
import json

import numpy as np
import pytest

from fastflow.track import (FB_ALPHA, FB_BETA, Detection, Tracker, box_grid, dis_flow, fb_check, iou_matrix,
                            oks_matrix, propagate, track_detections, track_video)
from fastflow.track.associate import COCO_SIGMAS, assign
from fastflow.track.evaluate import mot_metrics, tracks_by_frame
from fastflow.track.formats import read_detections, write_mot, write_posetrack
from fastflow.track.synthetic import make_sequence

SEEDS = [int(s) for s in np.random.default_rng().integers(0, 10_000, 3)]  # fresh scenes every run


@pytest.fixture(scope="module", params=SEEDS)
def seq(request):
    return make_sequence(request.param)


def counting(fn):
    calls = []

    def wrapped(a, b):
        calls.append(1)
        return fn(a, b)

    wrapped.calls = calls
    return wrapped


# ------------------------------------------------------------------------------------------ the check
def test_fb_check_formula():
    rng = np.random.default_rng()
    h, w = 12, 15
    u = rng.uniform(-2, 2, 2)
    fwd = np.broadcast_to(u, (h, w, 2)).astype(np.float64)
    delta = rng.normal(0, 0.6, (h, w, 2))
    bwd = -u + delta  # backward flow off by delta at every pixel
    pts = rng.integers([3, 3], [w - 4, h - 4], (40, 2)) - u  # integer after moving
    new, ok = fb_check(fwd, bwd, pts)
    np.testing.assert_allclose(new, pts + u)
    at = new.round().astype(int)
    wb = bwd[at[:, 1], at[:, 0]]
    want = ((u + wb) ** 2).sum(1) < FB_ALPHA * ((u ** 2).sum() + (wb ** 2).sum(1)) + FB_BETA
    np.testing.assert_array_equal(ok, want)
    assert 0 < want.sum() < len(want)  # both outcomes occur
    # No backward flow: no check; NaN flow or leaving the image: lost.
    assert fb_check(fwd, None, pts)[1].all()
    bad = fwd.copy()
    bad[..., 0] = np.nan
    assert not fb_check(bad, bwd, pts)[1].any()
    assert not fb_check(fwd + [w, 0], -fwd, pts)[1].any()


def test_colour_check_catches_what_a_consistent_flow_hides():
    """A flow consistent both ways (so the forward-backward check passes everywhere) that carries points
    onto a patch of another colour: only the optional colour check flags them, and only them."""
    rng = np.random.default_rng()
    h, w = 30, 40
    img0 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img1 = np.roll(img0, 2, axis=1)  # everything moves 2 px right...
    img1[10:20, 20:30] = 255 - img1[10:20, 20:30]  # ...but here something else appears
    fwd = np.broadcast_to(np.float64([2.0, 0.0]), (h, w, 2))
    pts = np.stack(np.meshgrid(np.arange(3.0, w - 4), np.arange(1.0, h - 1)), -1).reshape(-1, 2)
    new, ok = fb_check(fwd, -fwd, pts)
    assert ok.all()
    inside = (new[:, 0] >= 20) & (new[:, 0] <= 29) & (new[:, 1] >= 10) & (new[:, 1] <= 19)
    diff = np.abs(img0[pts[:, 1].astype(int), pts[:, 0].astype(int)].astype(float)
                  - img1[new[:, 1].astype(int), new[:, 0].astype(int)]).mean(1)
    _, ok = fb_check(fwd, -fwd, pts, images=(img0, img1), max_colour_diff=20)
    np.testing.assert_array_equal(ok, diff <= 20)
    assert not ok[inside & (diff > 20)].any() and ok[~inside].all()


def test_fb_check_catches_points_going_behind_an_occluder(seq):
    """Points on object 1, which passes behind object 2: with exact flow every point is flagged lost no
    later than the frame it is first hidden, and none is flagged while it is still visible away from
    the occluder's edge."""
    o = seq._by_id[1]
    local = box_grid((0, 0, o.w, o.h), 6, 0.15)
    pts0, vis0 = seq.points(1, local, 0)
    assert vis0.all()
    first_hidden = np.full(len(local), -1)
    flagged = np.full(len(local), -1)
    for r in propagate(seq.frames, seq.exact_flow, points=pts0):
        _, vis = seq.points(1, local, r.index)
        first_hidden[(first_hidden < 0) & ~vis] = r.index
        flagged[(flagged < 0) & ~r.visible] = r.index
        # A point still tracked is where the object's point truly is.
        true_pts, _ = seq.points(1, local, r.index)
        live = r.visible
        np.testing.assert_allclose(r.points[live], true_pts[live], atol=1e-6)
    assert (first_hidden >= 0).all(), "the scene should hide every point of object 1"
    assert (flagged >= 0).all() and (flagged <= first_hidden).all(), (flagged, first_hidden)
    assert (flagged >= first_hidden - 1).all()  # not flagged long before: bilinear mixing at the edge at most


def test_points_leaving_the_image_are_lost(seq):
    o = seq._by_id[3]  # moves down-right out of the frame
    pts0, _ = seq.points(3, box_grid((0, 0, o.w, o.h), 4, 0.2), 0)
    last = list(propagate(seq.frames, seq.exact_flow, points=pts0))[-1]
    true_last, vis = seq.points(3, box_grid((0, 0, o.w, o.h), 4, 0.2), seq.n_frames - 1)
    outside = (true_last[:, 0] > seq.width - 1) | (true_last[:, 1] > seq.height - 1)
    assert outside.any()
    assert not last.visible[outside].any()


def test_box_follows_and_is_lost_behind_occluder(seq):
    box0 = seq.box_in_image(1, 0)
    frames = list(propagate(seq.frames, seq.exact_flow, boxes=[box0], check=True))
    lost_at = next((r.index for r in frames if r.box_lost[0]), None)
    assert lost_at is not None, "object 1 goes fully behind object 2: its box must be lost"
    for r in frames[:lost_at]:
        assert iou_matrix(r.boxes, seq.box_in_image(1, r.index)[None])[0, 0] > 0.9
    assert seq.visibility(1, lost_at) < 0.6  # lost because hidden, not before


def test_mask_follows_and_loses_the_hidden_part(seq):
    """Object 1's mask carried with exact flow: within 2 pixels of the truth's edges (a mask on the pixel
    grid cannot hold sub-pixel edges exactly) while the object moves and goes behind object 2; once the
    object is fully hidden at most a 1-pixel sliver at the occluder's edge is left, gone the frame
    after (the hidden part drops out instead of sticking to the occluder)."""
    from scipy.ndimage import binary_dilation, binary_erosion

    SQUARE = np.ones((3, 3), bool)  # 2 pixels in any direction, diagonals too
    frames = propagate(seq.frames, seq.exact_flow, masks=(seq.labels[0] == 1)[None])
    hidden_at = None
    for r in frames:
        truth, m = seq.labels[r.index] == 1, r.masks[0]
        if hidden_at is not None:
            assert not m.any()  # the frame after: nothing left
            break
        if not truth.any():
            hidden_at = r.index
            assert m.sum() <= np.ceil(seq._by_id[1].h) + 1, m.sum()  # at most a 1-pixel sliver at the edge
            continue
        assert not (m & ~binary_dilation(truth, SQUARE, iterations=2)).any(), r.index
        assert not (binary_erosion(truth, SQUARE, iterations=2) & ~m).any(), r.index
    else:
        pytest.fail("object 1 is never fully hidden")


# ------------------------------------------------------------------------------------------ association
def test_iou_oks_assign_by_hand():
    a = np.array([[0, 0, 10, 10], [20, 20, 10, 10]])
    b = np.array([[5, 0, 10, 10], [100, 100, 5, 5]])
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0], [0, 0]])
    rng = np.random.default_rng()
    kp = np.c_[rng.uniform(0, 50, (17, 2)), np.full(17, 2.0)]
    moved = kp.copy()
    d = rng.uniform(0.5, 3)
    moved[:, 0] += d
    area = 400.0
    want = np.exp(-d ** 2 / (2 * area * (2 * COCO_SIGMAS) ** 2)).mean()
    np.testing.assert_allclose(oks_matrix([kp, moved], [kp], [area]), [[1.0], [want]])
    hidden = kp.copy()
    hidden[:, 2] = 0
    assert np.isnan(oks_matrix([hidden], [kp], [area])[0, 0])
    assert assign(np.array([[0.9, 0.8], [0.85, 0.1]]), 0.3) == [(0, 1), (1, 0)]  # global optimum, not greedy
    assert assign(np.array([[0.2]]), 0.3) == []


def _gap_lengths(dets, obj):
    """Longest run of frames without a detection of obj, between two frames with one."""
    seen = [k for k, ds in enumerate(dets) if any(d["object"] == obj for d in ds)]
    return max((b - a - 1 for a, b in zip(seen, seen[1:])), default=0)


# Scenes where exact flow still switches ids (found by the random scenes of this file in CI and in
# a 61-scene sweep: ~2% of scenes): an object passing behind another while it leaves the frame, the
# front track losing its points and the back track taking the front object's detection. Known
# limitation of the tracker (issue 23 stays open for it); strict: fixing it makes these fail.
KNOWN_SWITCH_SCENES = {6945: 0.1, 6250: 0.0}  # seed -> detector miss rate that shows it
# The no-switch claim is checked on these fixed scenes (random scenes would fail ~2% of the time
# on the limitation above, which the strict xfail below pins instead of hiding).
EXACT_FLOW_SCENES = [11, 97, 256, 1024, 2024, 3141, 4096, 5000, 7777, 9001]


@pytest.mark.parametrize("scene", EXACT_FLOW_SCENES)
def test_exact_flow_keeps_every_id(scene):
    """Noisy detections (1 px jitter, 10% missed), exact flow: no id switch through the crossing, the
    occlusions and the misses (all shorter than the patience), every object one id."""
    seq = make_sequence(scene)
    dets = seq.detections(jitter=1.0, miss=0.1, seed=seq.n_frames)
    patience = 12
    assert 3 <= _gap_lengths(dets, 1) < patience  # the full occlusion of object 1 is in the scene
    results = list(track_detections(seq.frames, seq.exact_flow, dets, patience=patience))
    m = mot_metrics(seq.ground_truth(), tracks_by_frame(results))
    print(f"exact flow: MOTA {m['mota']:.3f} IDF1 {m['idf1']:.3f} switches {m['num_switches']:.0f}")
    assert m["num_switches"] == 0
    assert m["mota"] > 0.8 and m["idf1"] > 0.85
    # One id per object: as many ids as objects, each object's matches all under one id (motmetrics).
    assert len({t.id for _, tracks in results for t in tracks}) == m["num_unique_objects"]
    assert any(not t.detected for _, tracks in results for t in tracks)  # misses were filled along the flow


@pytest.mark.xfail(strict=True, reason="known limitation: an id switch when an object passes behind another "
                                      "while leaving the frame (KNOWN_SWITCH_SCENES)")
@pytest.mark.parametrize("scene", sorted(KNOWN_SWITCH_SCENES))
def test_known_id_switch_scenes(scene):
    seq = make_sequence(scene)
    dets = seq.detections(jitter=1.0, miss=KNOWN_SWITCH_SCENES[scene], seed=seq.n_frames)
    results = list(track_detections(seq.frames, seq.exact_flow, dets, patience=12))
    assert mot_metrics(seq.ground_truth(), tracks_by_frame(results))["num_switches"] == 0


def test_pose_tracking_with_oks(seq):
    dets = seq.detections(jitter=0.5, seed=1, keypoints=True)
    results = list(track_detections(seq.frames, seq.exact_flow, dets))
    m = mot_metrics(seq.ground_truth(), tracks_by_frame(results))
    assert m["num_switches"] == 0
    kps = [t.keypoints for _, tr in results for t in tr]
    assert all(k is not None and k.shape == (17, 3) for k in kps)


def test_dis_flow_measured(seq):
    """DIS: figures reported, only sanity asserted (README and benchmarks/track_quality.py report them)."""
    dets = seq.detections(jitter=1.0, miss=0.1, seed=seq.n_frames)
    m = mot_metrics(seq.ground_truth(), tracks_by_frame(track_detections(seq.frames, dis_flow(), dets)))
    print(f"DIS flow: MOTA {m['mota']:.3f} IDF1 {m['idf1']:.3f} switches {m['num_switches']:.0f}")
    assert m["mota"] > 0.5


def test_flow_source_batching_and_no_check():
    s = make_sequence(int(np.random.default_rng().integers(10_000)), n_frames=9)
    f = counting(s.exact_flow)
    assert len(list(propagate(s.frames, f, points=[[10, 10]], batch=3))) == 9
    assert len(f.calls) == 2 * 8
    g = counting(s.exact_flow)
    list(propagate(s.frames, g, points=[[10, 10]], check=False))
    assert len(g.calls) == 8


def test_model_path_plumbing():
    """FlowNet2-S (random weights: no official weights here) as the flow source, batched: runs, shapes
    right. Says nothing about quality."""
    import fastflow

    model = fastflow.load_model(device="cpu", random_weights=True)
    s = make_sequence(0, height=64, width=96, n_frames=4)
    out = list(propagate(s.frames, model, points=[[20, 20], [50, 30]], boxes=[[10, 10, 20, 20]], batch=2))
    assert [r.index for r in out] == [0, 1, 2, 3]
    assert out[-1].points.shape == (2, 2) and out[-1].boxes.shape == (1, 4)
    dets = s.detections()
    res = list(track_detections(s.frames, model, dets, batch=3))
    assert len(res) == 4


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (none visible to PyTorch)")
@pytest.mark.parametrize("precision", ["fp16", "bf16", "tf32"])
def test_model_path_cuda(precision):
    """The same plumbing with the model on a GPU in each precision: flow comes back to numpy on the host."""
    import fastflow

    model = fastflow.load_model(device="cuda", precision=precision, random_weights=True)
    s = make_sequence(1, height=64, width=96, n_frames=5)
    out = list(propagate(s.frames, model, points=[[20, 20]], boxes=[[10, 10, 20, 20]], batch=4))
    assert len(out) == 5 and np.isfinite(out[-1].boxes).all()
    assert len(list(track_detections(s.frames, model, s.detections(), batch=2))) == 5


# ------------------------------------------------------------------------------------------ formats
def test_formats_round_trip(tmp_path):
    s = make_sequence(int(np.random.default_rng().integers(10_000)), n_frames=12)
    dets = s.detections(keypoints=True)
    coco = [{"image_id": k, "bbox": d["box"].tolist(), "score": d["score"], "category_id": 1,
             "keypoints": d["keypoints"].ravel().tolist()} for k, ds in enumerate(dets) for d in ds]
    (tmp_path / "d.json").write_text(json.dumps(coco))
    back = read_detections(str(tmp_path / "d.json"), n_frames=12)
    assert [len(x) for x in back] == [len(x) for x in dets]
    np.testing.assert_allclose(back[3][0]["keypoints"], dets[3][0]["keypoints"])
    # Dataset style, matched to a folder's frame names.
    names = [f"f{k}" for k in range(12)]
    ds = {"images": [{"id": 100 + k, "file_name": f"f{k}.png"} for k in range(12)],
          "annotations": [{"image_id": 100 + c["image_id"], **{k: v for k, v in c.items() if k != "image_id"}} for c in coco]}
    (tmp_path / "ds.json").write_text(json.dumps(ds))
    assert [len(x) for x in read_detections(str(tmp_path / "ds.json"), 12, names)] == [len(x) for x in dets]
    res = list(track_detections(s.frames, s.exact_flow, back))
    n = write_mot(str(tmp_path / "t.txt"), res)
    rows = np.loadtxt(tmp_path / "t.txt", delimiter=",").reshape(-1, 10)
    assert len(rows) == n == sum(len(t) for _, t in res) and rows[:, 0].min() == 1
    mot_back = read_detections(str(tmp_path / "t.txt"), 12)
    assert [len(x) for x in mot_back] == [len(t) for _, t in res]
    write_posetrack(str(tmp_path / "p.json"), res, names)
    pj = json.loads((tmp_path / "p.json").read_text())
    assert {a["track_id"] for a in pj["annotations"]} == {t.id for _, tr in res for t in tr}
    assert len(pj["annotations"][0]["keypoints"]) == 51


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input(tmp_path):
    s = make_sequence(int(np.random.default_rng().integers(10_000)), n_frames=6)
    frames = list(s.frames)
    with pytest.raises(ValueError, match="empty video"):
        list(propagate([], s.exact_flow, points=[[1, 1]]))
    small = frames[:3] + [frames[3][:50]] + frames[4:]
    with pytest.raises(ValueError, match="frame 3 is 128x50"):
        list(propagate(small, s.exact_flow, points=[[1, 1]]))
    with pytest.raises(ValueError, match=r"boxes\[1\].*outside the 128x96 image"):
        list(propagate(frames, s.exact_flow, boxes=[[1, 1, 5, 5], [200, 10, 5, 5]]))
    with pytest.raises(ValueError, match=r"points\[0\]"):
        list(propagate(frames, s.exact_flow, points=[[-3, 1]]))
    with pytest.raises(ValueError, match="frame 2 detection.*outside"):
        dets = s.detections()
        dets[2] = [{"box": [500, 500, 10, 10]}]
        list(track_detections(frames, s.exact_flow, dets))
    with pytest.raises(ValueError, match="do not belong to this video"):
        list(track_detections(frames, s.exact_flow, s.detections() + [[]]))
    with pytest.raises(ValueError, match="do not belong to this video"):
        list(track_detections(frames, s.exact_flow, s.detections()[:4]))
    with pytest.raises(ValueError, match="shape"):
        list(propagate(frames, lambda a, b: np.zeros((4, 4, 2)), points=[[1, 1]]))
    p = tmp_path / "d.json"
    p.write_text(json.dumps([{"image_id": 9, "bbox": [1, 1, 4, 4]}]))
    with pytest.raises(ValueError, match="frame 9.*6 frames"):
        read_detections(str(p), n_frames=6)
    p.write_text(json.dumps([{"image_id": 0, "bbox": [1, 1, 4, 4], "keypoints": [1, 2]}]))
    with pytest.raises(ValueError, match="multiple of 3"):
        read_detections(str(p))
    p.write_text(json.dumps({"images": [{"id": 1, "file_name": "other.png"}], "annotations": []}))
    with pytest.raises(ValueError, match="'other.png'.*not a frame"):
        read_detections(str(p), 6, [f"f{k}" for k in range(6)])
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON file"):
        read_detections(str(p))
    with pytest.raises(ValueError, match="nothing to track"):
        track_video(frames, s.exact_flow)
    with pytest.raises(TypeError, match="callable"):
        list(propagate(frames, 3, points=[[1, 1]]))


def test_track_video_writes_files_and_overlay(tmp_path):
    from PIL import Image

    s = make_sequence(int(np.random.default_rng().integers(10_000)), n_frames=8)
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, f in enumerate(s.frames):
        Image.fromarray(f).save(folder / f"{k}.png")
    dets = s.detections()
    out = track_video(str(folder), s.exact_flow, detections=dets, mot=str(tmp_path / "t.txt"),
                      json_path=str(tmp_path / "t.json"), overlay=str(tmp_path / "ov"), overlay_scale=2)
    assert out["frames"] == 8 and out["ids"] >= 3
    assert sorted(p.name for p in (tmp_path / "ov").iterdir())[:2] == ["0.png", "1.png"]
    assert Image.open(tmp_path / "ov" / "3.png").size == (256, 192)
    o = s._by_id[1]
    out = track_video(str(folder), s.exact_flow, points=s.points(1, [[o.w / 2, o.h / 2]], 0)[0],
                      boxes=[s.box_in_image(1, 0)], masks=(s.labels[0] == 1)[None], json_path=str(tmp_path / "p.json"),
                      overlay=str(tmp_path / "pov"))
    pj = json.loads((tmp_path / "p.json").read_text())
    assert len(pj["frames"]) == 8 and pj["frames"][0]["file_name"] == "0"
    hidden = any(not s.points(1, [[o.w / 2, o.h / 2]], k)[1][0] for k in range(8))
    assert out["points_lost"] == int(hidden)


def test_tracker_lifecycle_patience():
    """A detection seen once then never again: its track fills `patience` frames along the flow, then ends."""
    h, w = 40, 60
    zero = np.zeros((h, w, 2), np.float32)
    tr = Tracker((h, w), patience=3)
    out = tr.step(None, None, [Detection(np.array([10.0, 10, 12, 12]))])
    assert [t.detected for t in out] == [True]
    counts = []
    for _ in range(6):
        out = tr.step(zero, zero, [])
        counts.append(len(out))
    assert counts == [1, 1, 1, 0, 0, 0]
    out = tr.step(zero, zero, [Detection(np.array([10.0, 10, 12, 12]))])
    assert [t.id for t in out] == [2]  # a new track: the old one had ended


def test_video_file_and_detections_that_stop_early(tmp_path):
    """A results list ends at its last detection: on a video the later frames have none (no error);
    a file that lists its images must cover every frame."""
    iio = pytest.importorskip("imageio.v2")
    s = make_sequence(int(np.random.default_rng().integers(10_000)), n_frames=8)
    video = str(tmp_path / "clip.mp4")
    with iio.get_writer(video, fps=10, macro_block_size=1) as wr:
        for f in s.frames:
            wr.append_data(f)
    dets = s.detections()
    coco = [{"image_id": k, "bbox": d["box"].tolist(), "score": d["score"]} for k, ds in enumerate(dets[:5]) for d in ds]
    (tmp_path / "r.json").write_text(json.dumps(coco))
    out = track_video(video, dis_flow(), detections=str(tmp_path / "r.json"), mot=str(tmp_path / "t.txt"))
    assert out["frames"] == 8
    ds = {"images": [{"id": k, "file_name": f"{k}.png"} for k in range(5)],
          "annotations": [dict(c) for c in coco]}
    (tmp_path / "ds.json").write_text(json.dumps(ds))
    with pytest.raises(ValueError, match="do not belong to this video"):
        track_video(video, dis_flow(), detections=str(tmp_path / "ds.json"), mot=str(tmp_path / "t.txt"))
