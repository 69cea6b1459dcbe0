"""fastflow.validate and `fastflow validate`: the metrics on known flows (synthetic datasets in every
layout, ground truth known by construction), a random-weight FlowNet2-S end to end (numbers checked
against estimate_flow), the precision comparison on the CPU (and CUDA where present), the JSON."""
import json

import numpy as np
import pytest
import torch

import fastflow
from _flow_datasets import Oracle, write_all, write_middlebury, write_motorcycle
from conftest import requires_cuda
from fastflow.datasets import DatasetError
from fastflow.validation import end_point_error, format_report, outlier_mask, supported_precisions, validate
from test_cli import assert_one_line_error, run

LAYOUTS = [("sintel-clean", "sintel"), ("sintel-final", "sintel"), ("kitti-2015", "kitti15"),
           ("kitti-2012", "kitti12"), ("chairs", "chairs"), ("middlebury", "middlebury")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("validate")
    truths = write_all(d)
    truths["chairs"] = {k: v for k, v in truths["chairs"].items() if k != "00001"}  # the validation split
    truths["middlebury"]["Motorcycle"] = write_motorcycle(d / "middlebury", scale=8)
    return d, truths


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, weights):
    path = tmp_path_factory.mktemp("ckpt") / "FlowNet2-S_checkpoint.pth.tar"
    torch.save({"state_dict": weights, "epoch": 1, "best_EPE": 3.0}, path)
    return path


# ------------------------------------------------------------------------------------ metrics
def test_end_point_error_and_outliers():
    gt = np.zeros((2, 3, 2), np.float32)
    gt[0, 0] = (100, 0)  # |gt| = 100: an error of 4 is 4% of it
    pred = gt.copy()
    pred[..., 0] += 3.0  # EPE exactly 3: not an outlier (strictly above 3 px counts)
    pred[0, 0] = (104, 0)
    pred[1, 2] = (3, 4)  # EPE 5
    epe = end_point_error(pred, gt)
    np.testing.assert_allclose(epe, [[4, 3, 3], [3, 3, 5]])
    np.testing.assert_array_equal(outlier_mask(epe, gt), [[False, False, False], [False, False, True]])
    assert end_point_error(gt, gt).max() == 0
    with pytest.raises(ValueError, match="must both be"):
        end_point_error(pred[..., :1], gt[..., :1])


@pytest.mark.parametrize("name,key", LAYOUTS)
def test_true_flow_scores_zero_on_every_layout(data, name, key):
    d, truths = data
    oracle = Oracle(truths[key])
    res = validate(oracle, name, d / key)
    r = res["results"]["custom"]
    assert res["pairs"] == len(truths[key]) == oracle.calls
    assert r["epe"] == 0 and r["fl_all"] == 0 and r["nonfinite_pixels"] == 0
    assert all(v["epe"] == 0 for v in r["regions"].values())
    expect_regions = {"sintel": {"matched", "unmatched"}, "kitti15": {"noc"}, "kitti12": {"noc"}}.get(key, set())
    assert set(r["regions"]) == expect_regions
    assert r["pixels"] == sum(int(t.valid.sum()) for t in truths[key].values())
    assert len(r["per_sample"]) == res["pairs"]
    json.dumps(res, allow_nan=False)  # JSON-ready
    assert name in format_report(res)


def test_known_offset_gives_its_epe(data):
    d, truths = data
    res = validate(Oracle(truths["chairs"], error=lambda t: np.float32([0.6, 0.8])), "chairs", d / "chairs")
    r = res["results"]["custom"]
    assert r["epe"] == pytest.approx(1.0, abs=1e-6) and r["fl_all"] == 0
    res = validate(Oracle(truths["chairs"], error=lambda t: np.float32([-3.0, 4.0])), "chairs", d / "chairs")
    r = res["results"]["custom"]
    assert r["epe"] == pytest.approx(5.0, abs=1e-6) and r["fl_all"] == 100  # the flows are far below 100 px
    assert all(s["epe"] == pytest.approx(5.0, abs=1e-6) for s in r["per_sample"])


def test_kitti_fl_and_averages_match_an_independent_count(data):
    """Error 5 px on the left half, 1 px on the right: Fl-all is the share of valid left-half pixels
    with |gt| < 100 (all of them here); the pixel-weighted and per-image EPE differ by sparsity."""
    d, truths = data
    t15 = truths["kitti15"]

    def error(t):
        e = np.zeros(t.flow.shape, np.float32)
        w = t.flow.shape[1]
        e[:, : w // 2, 0] = 5.0
        e[:, w // 2 :, 1] = 1.0
        return e

    r = validate(Oracle(t15, error=error), "kitti-2015", d / "kitti15")["results"]["custom"]
    epes, outs, per_image, noc_epes = [], [], [], []
    for t in t15.values():
        e = np.sqrt((error(t).astype(np.float64) ** 2).sum(-1))
        mag = np.sqrt((t.flow.astype(np.float64) ** 2).sum(-1))
        epes.append(e[t.valid])
        outs.append(((e > 3) & (e > 0.05 * mag))[t.valid])
        per_image.append(e[t.valid].mean())
        noc_epes.append(e[t.regions["noc"]])
    assert r["epe"] == pytest.approx(np.concatenate(epes).mean(), rel=1e-9)
    assert r["epe_image_mean"] == pytest.approx(np.mean(per_image), rel=1e-9)
    assert r["fl_all"] == pytest.approx(100 * np.concatenate(outs).mean(), rel=1e-9)
    assert 30 < r["fl_all"] < 70
    assert r["regions"]["noc"]["epe"] == pytest.approx(np.concatenate(noc_epes).mean(), rel=1e-9)


def test_sintel_matched_unmatched_and_per_sequence(data):
    d, truths = data
    err = lambda t: np.where(t.regions["unmatched"][..., None], np.float32([1.2, 1.6]), np.float32(0))  # 2 px
    res = validate(Oracle(truths["sintel"], error=err), "sintel-final", d / "sintel")
    r = res["results"]["custom"]
    assert r["regions"]["matched"]["epe"] == 0
    assert r["regions"]["unmatched"]["epe"] == pytest.approx(2.0, rel=1e-6)
    occ = np.concatenate([t.regions["unmatched"].ravel() for t in truths["sintel"].values()])
    assert r["epe"] == pytest.approx(2.0 * occ.mean(), rel=1e-6)
    groups = r["per_group"]
    assert set(groups) == {"alley_1", "market_2"} and groups["alley_1"]["pairs"] == 3
    for g, e in groups.items():
        occ_g = np.concatenate([t.regions["unmatched"].ravel() for n, t in truths["sintel"].items() if n.startswith(g)])
        assert e["epe"] == pytest.approx(2.0 * occ_g.mean(), rel=1e-6) and e["unmatched"] == pytest.approx(2.0)
    assert "per sequence" in format_report(res)


def test_unreadable_pair_is_named_when_reached(tmp_path):
    truths = write_middlebury(tmp_path, sequences=("A", "B", "C", "D", "E", "F"))
    (tmp_path / "other-data" / "E" / "frame10.png").write_bytes(b"not an image")
    oracle = Oracle(truths)
    with pytest.raises(DatasetError, match=r"cannot read image .*E.frame10\.png"):
        validate(oracle, "middlebury", tmp_path)
    assert oracle.calls == 4  # the pairs before it ran, in order


def test_limit_and_custom_flow_shape_checked(data):
    d, truths = data
    assert validate(Oracle(truths["sintel"]), "sintel-clean", d / "sintel", limit=2)["pairs"] == 2
    with pytest.raises(ValueError, match=r"returned flow of shape \(3, 3, 2\)"):
        validate(lambda a, b: np.zeros((3, 3, 2)), "chairs", d / "chairs")
    with pytest.raises(ValueError, match="root"):
        validate(Oracle(truths["chairs"]), "chairs")
    with pytest.raises(ValueError, match="compare_precisions"):
        validate(Oracle(truths["chairs"]), "chairs", d / "chairs", compare_precisions=True)


# ------------------------------------------------------------------------------ real network
def test_model_epe_matches_estimate_flow(data, model):
    """A random-weight FlowNet2S on KITTI-2012 layout frames of awkward sizes: every number equals
    the EPE of estimate_flow's output computed here."""
    d, truths = data
    res = validate(model, "kitti-2012", d / "kitti12", precision="fp32")
    assert res["precisions"] == ["fp32"] and res["sizes"][0]["network"] == [64, 64]
    r = res["results"]["fp32"]
    per = {}
    for name, t in truths["kitti12"].items():
        flow = fastflow.estimate_flow(model, t.img1, t.img2)
        per[name] = np.sqrt(((flow.astype(np.float64) - t.flow) ** 2).sum(-1))[t.valid].mean()
    assert r["epe_image_mean"] == pytest.approx(np.mean(list(per.values())), rel=1e-5)
    for s in r["per_sample"]:
        assert s["epe"] == pytest.approx(per[s["name"]], rel=1e-5)
    assert r["time"]["ms_per_pair_median"] > 0 and r["nonfinite_pixels"] == 0
    # tf32 asked for on a CPU runs fp32
    assert list(validate(model, "kitti-2012", d / "kitti12", limit=1)["results"]) == ["fp32"]


def test_compare_precisions_cpu(data, model):
    d, truths = data
    res = validate(model, "middlebury", d / "middlebury", compare_precisions=True)
    assert res["precisions"] == supported_precisions("cpu") == ["fp32", "bf16", "fp16"]
    fp32, bf16, fp16 = (res["results"][p] for p in ("fp32", "bf16", "fp16"))
    assert fp32["vs_fp32"] == {"epe": 0.0, "max": 0.0}
    single = validate(model, "middlebury", d / "middlebury", precision="fp32")["results"]["fp32"]
    assert fp32["epe"] == pytest.approx(single["epe"], rel=1e-6)
    for r in (bf16, fp16):  # 16-bit flow differs from fp32, but little
        assert 0 < r["vs_fp32"]["epe"] < 0.05 * fp32["epe"] and r["vs_fp32"]["max"] >= r["vs_fp32"]["epe"]
        assert r["epe"] == pytest.approx(fp32["epe"], rel=0.05)
    # the bf16 row is bf16: the same as validating a bfloat16 model directly
    alone = validate(model, "middlebury", d / "middlebury", precision="bf16")["results"]["bf16"]
    assert alone["epe"] == pytest.approx(bf16["epe"], rel=1e-6)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is untouched
    text = format_report(res)
    assert "vs fp32" in text and "bf16" in text and "Motorcycle" in text
    with pytest.raises(ValueError, match="unknown precision"):
        validate(model, "chairs", d / "chairs", precision="int8")


@requires_cuda
def test_compare_precisions_cuda(data, model):
    d, truths = data
    m = fastflow.FlowNet2S().eval()
    m.load_state_dict(model.state_dict())
    res = validate(m.cuda(), "kitti-2015", d / "kitti15", compare_precisions=True)
    assert res["precisions"][:3] == ["fp32", "tf32", "fp16"]
    cpu = validate(model, "kitti-2015", d / "kitti15", precision="fp32")["results"]["fp32"]
    assert res["results"]["fp32"]["epe"] == pytest.approx(cpu["epe"], rel=1e-3)
    for p in res["precisions"][1:]:
        r = res["results"][p]
        assert np.isfinite(r["epe"]) and 0 <= r["vs_fp32"]["epe"] < 0.05 * cpu["epe"]


def test_fastflow_validate_is_the_function(data):
    """fastflow.validate is the function (the package is fastflow.validation), also once the
    package is imported."""
    import fastflow.validation as package

    d, truths = data
    assert fastflow.validate is package.validate and callable(fastflow.validate)
    assert fastflow.validate(Oracle(truths["chairs"]), "chairs", d / "chairs")["results"]["custom"]["epe"] == 0


def _chairs_copy(d, tmp_path, edit):
    """The chairs set copied, with ``edit(index, flow, valid) -> (flow, valid)`` applied to each
    ground-truth file (written with unknown-flow markers where not valid)."""
    import shutil

    from fastflow.io import read_flow, write_flow

    root = tmp_path / "chairs"
    shutil.copytree(d / "chairs", root)
    for i, f in enumerate(sorted((root / "data").glob("*_flow.flo"))):
        flow = read_flow(str(f)).copy()
        flow, valid = edit(i, flow, np.ones(flow.shape[:2], bool))
        write_flow(str(f), flow, valid=valid)
    return root


def test_crop_report_of_frames_already_multiples_of_64(data):
    """--crop on frames that are already multiples of 64 says they run as is, not 'centre-cropped
    to' their own size (issue 20, item 7)."""
    d, truths = data
    res = validate(Oracle(truths["chairs"]), "chairs", d / "chairs")
    res["crop"] = True  # the report of a --crop run on two frame sizes (this set's frames are under 64 px)
    res["sizes"] = [{"frame": [256, 320], "network": [256, 320], "pairs": 1},
                    {"frame": [260, 330], "network": [256, 320], "pairs": 1}]
    report = format_report(res)
    assert "1 pair of 256x320: run as is" in report
    assert "1 pair of 260x330: centre-cropped to 256x320" in report


def test_no_valid_ground_truth_is_an_error(data, tmp_path):
    """Every pixel unknown: an error naming the dataset, not an EPE of NaN and success."""
    d, _ = data
    root = _chairs_copy(d, tmp_path, lambda i, f, v: (f, np.zeros_like(v)))
    with pytest.raises(ValueError, match="none of the 3 pairs has valid ground truth"):
        validate(lambda a, b: np.zeros(a.shape[:2] + (2,), np.float32), "chairs", root, split="all")
    r = run("validate", "--dataset", "chairs", "--root", root, "--split", "all", "--random-weights", "--device", "cpu",
            "--quiet")
    assert_one_line_error(r, "none of the 3 pairs has valid ground truth")


def test_unscored_pairs_and_implausible_ground_truth_are_reported(data, tmp_path):
    """A pair with no valid ground truth is named and not counted as scored; ground truth of 1e8 px
    (under the 1e9 unknown marker) is not scored and is warned about."""
    d, _ = data

    def edit(i, flow, valid):
        if i == 0:
            valid[:] = False
        if i == 1:
            flow[:5, :7] = 1e8
        return flow, valid

    root = _chairs_copy(d, tmp_path, edit)
    res = validate(lambda a, b: np.zeros(a.shape[:2] + (2,), np.float32), "chairs", root, split="all")
    r = res["results"]["custom"]
    assert res["pairs"] == 3 and res["pairs_scored"] == 2 and r["pixels"] == 2 * 48 * 64 - 35
    assert 0 < r["epe"] < 10  # the 1e8 px pixels are not scored (zero flow: EPE = |gt| of the rest)
    report = format_report(res)
    assert "3 pairs (2 scored)" in report
    assert "1 of 3 pairs have no valid ground truth and are not scored: 00001" in report
    assert "35 ground-truth pixels in 1 pair are longer than 4 frame diagonals" in report and "00002" in report


# ------------------------------------------------------------------------------------ command# ------------------------------------------------------------------------------------ command
def test_command_end_to_end_json(data, checkpoint, model, tmp_path):
    d, truths = data
    out = tmp_path / "res.json"
    r = run("validate", "--dataset", "middlebury", "--root", d / "middlebury", "--checkpoint", checkpoint,
            "--device", "cpu", "--compare-precisions", "--json", out)
    assert r.returncode == 0, r.stderr
    assert "Motorcycle" in r.stdout and "vs fp32" in r.stdout and "3/3" in r.stderr  # table; progress bar
    res = json.loads(out.read_text())
    assert res["dataset"] == "middlebury" and res["pairs"] == 3 and res["model"] == str(checkpoint)
    assert res["precisions"] == ["fp32", "bf16", "fp16"]
    for p in res["precisions"]:
        e = res["results"][p]
        assert set(e) >= {"epe", "epe_image_mean", "fl_all", "regions", "vs_fp32", "time", "per_group", "per_sample"}
        assert len(e["per_sample"]) == 3 and np.isfinite(e["epe"])
    assert {tuple(s["frame"]) for s in res["sizes"]} == {(42, 58), (62, 92)}
    api = validate(model, "middlebury", d / "middlebury", precision="fp32")["results"]["fp32"]  # the same numbers
    assert res["results"]["fp32"]["epe"] == pytest.approx(api["epe"], rel=1e-6)
    assert res["results"]["fp32"]["per_group"]["Motorcycle"]["epe"] == pytest.approx(api["per_group"]["Motorcycle"]["epe"], rel=1e-6)


def test_command_single_precision_kitti(data, checkpoint):
    d, _ = data
    r = run("validate", "--dataset", "kitti-2015", "--root", d / "kitti15", "--checkpoint", checkpoint,
            "--device", "cpu", "--limit", "1", "--quiet", "--precision", "tf32")
    assert r.returncode == 0, r.stderr
    assert "Fl-all" in r.stdout and "1 pair from" in r.stdout and "no TF32 on a CPU" in r.stdout
    assert r.stderr.strip() == ""


@pytest.mark.parametrize("args,needles", [
    (["--dataset", "chairs", "--root", "{d}/nope"], ["dataset root not found", "nope"]),
    (["--dataset", "sintel-clean", "--root", "{d}/chairs"], ["does not look like MPI-Sintel"]),
    (["--dataset", "middlebury", "--root", "{d}/broken"], ["missing second frame", "frame11.png"]),
    (["--dataset", "middlebury", "--root", "{d}/corrupt", "--quiet"], ["flow10.flo", "truncated"]),
    (["--dataset", "chairs", "--root", "{d}/chairs", "--limit", "0"], ["--limit must be at least 1"]),
    (["--dataset", "chairs", "--root", "{d}/chairs", "--crop", "--quiet"], ["is 64x48", "at least 64x64"]),
    (["--dataset", "chairs", "--root", "{d}/chairs", "--checkpoint", "{d}/none.pth"], ["checkpoint not found"]),
])
def test_command_errors_are_one_line(data, checkpoint, args, needles):
    d, _ = data
    broken, corrupt = d / "broken", d / "corrupt"
    if not broken.exists():
        write_middlebury(broken, sequences=("X",))
        (broken / "other-data" / "X" / "frame11.png").unlink()
        write_middlebury(corrupt, sequences=("A", "B"))
        flo = corrupt / "other-gt-flow" / "B" / "flow10.flo"
        flo.write_bytes(flo.read_bytes()[:-8])
    args = [a.format(d=d) for a in args]
    if "--checkpoint" not in args:
        args += ["--checkpoint", str(checkpoint)]
    r = run("validate", *args)
    assert_one_line_error(r, *needles)


def test_non_finite_flow_is_counted_and_json_stays_strict(data):
    from fastflow.validation import json_safe

    d, _ = data
    res = validate(lambda a, b: np.full(a.shape[:2] + (2,), np.nan, np.float32), "chairs", d / "chairs")
    r = res["results"]["custom"]
    assert np.isnan(r["epe"]) and r["nonfinite_pixels"] == 2 * 48 * 64
    assert "non-finite flow at 6144 pixels" in format_report(res)
    assert json.loads(json.dumps(json_safe(res), allow_nan=False))["results"]["custom"]["epe"] is None
    # a precision whose flow is NaN on one pair shows NaN against fp32 too, its max included
    from fastflow.validation.metrics import Stats

    st = Stats()
    ds = fastflow.datasets.load_dataset("chairs", d / "chairs")
    for i, s in enumerate(ds):
        bad = s.flow + (np.nan if i == 0 else 0.5)
        st.add(s, bad, 0.01, s.flow)
    vs = st.summary(with_vs=True)["vs_fp32"]
    assert np.isnan(vs["epe"]) and np.isnan(vs["max"])


def test_import_is_cheap_and_help_lists_the_options():
    import subprocess
    import sys

    code = "import sys, fastflow.validation, fastflow.datasets, fastflow.cli; fastflow.validate; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
    r = run("validate", "--help")
    assert r.returncode == 0
    for opt in ("--dataset", "--root", "--checkpoint", "--precision", "--compare-precisions", "--limit", "--json"):
        assert opt in r.stdout


def test_reference_module_and_checkpoint_path_give_the_same_epe(data, model, checkpoint):
    from fastflow.reference import FlowNet2S as Reference

    d, _ = data
    ref = Reference().eval()
    ref.load_state_dict(model.state_dict())
    a = validate(model, "chairs", d / "chairs", precision="fp32")["results"]["fp32"]["epe"]
    b = validate(ref, "chairs", d / "chairs", precision="fp32")
    c = validate(str(checkpoint), "chairs", d / "chairs", device="cpu")
    assert b["model"] == "fastflow.reference.FlowNet2S" and c["model"] == str(checkpoint)
    assert b["results"]["fp32"]["epe"] == pytest.approx(a, rel=1e-5)
    assert c["results"]["fp32"]["epe"] == pytest.approx(a, rel=1e-5)


def test_crop_is_flownet2_pytorchs_protocol(tmp_path, model):
    """--crop: frames and ground truth centre-cropped to the largest multiples of 64 (100x140 ->
    64x128 at rows 18.., columns 6..), no resizing; the EPE is that of the crop alone."""
    from _flow_datasets import write_chairs

    truths = write_chairs(tmp_path, n=2, size=(100, 140), labels=None)
    res = validate(model, "chairs", tmp_path, precision="fp32", crop=True)
    assert res["crop"] and res["sizes"] == [{"frame": [100, 140], "network": [64, 128], "pairs": 2}]
    want = []
    for t in truths.values():
        a, b, gt = (x[18:82, 6:134] for x in (t.img1, t.img2, t.flow))
        flow = fastflow.estimate_flow(model, a, b)
        want.append(np.sqrt(((flow.astype(np.float64) - gt) ** 2).sum(-1)).mean())
    assert res["results"]["fp32"]["epe"] == pytest.approx(np.mean(want), rel=1e-5)
    assert "centre-cropped to 64x128" in format_report(res)
    write_chairs(tmp_path / "small", n=1, size=(48, 64), labels=None)
    with pytest.raises(ValueError, match="is 64x48; cropping needs frames of at least 64x64"):
        validate(model, "chairs", tmp_path / "small", crop=True)
