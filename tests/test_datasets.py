"""fastflow.datasets: each standard layout read back exactly as written (synthetic datasets with
known ground truth, tests/_flow_datasets.py), and bad or missing files named in the error."""
import os

import numpy as np
import pytest
from PIL import Image

from _flow_datasets import write_all, write_chairs, write_kitti, write_middlebury, write_motorcycle, write_sintel
from fastflow.datasets import DATASETS, DatasetError, load_dataset, read_rgb


def check_samples(ds, truths, final=False):
    assert [f.name for f in ds.files] == sorted(truths)
    for sample in ds:
        t = truths[sample.name]
        img1, img2 = (t.img1, t.img2) if not final else (np.clip(t.img1.astype(int) + 12, 0, 255), np.clip(t.img2.astype(int) + 12, 0, 255))
        np.testing.assert_array_equal(sample.img1, img1)
        np.testing.assert_array_equal(sample.img2, img2)
        np.testing.assert_array_equal(sample.valid, t.valid)
        np.testing.assert_array_equal(sample.flow[t.valid], t.flow[t.valid])
        assert np.all(sample.flow[~t.valid] == 0)
        assert set(sample.regions) == set(t.regions)
        for k, m in t.regions.items():
            np.testing.assert_array_equal(sample.regions[k], m & t.valid)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    d = tmp_path_factory.mktemp("datasets")
    return d, write_all(d)


@pytest.mark.parametrize("name,key", [("sintel-clean", "sintel"), ("sintel-final", "sintel"), ("kitti-2015", "kitti15"),
                                      ("kitti-2012", "kitti12"), ("middlebury", "middlebury")])
def test_layout_reads_back(roots, name, key):
    d, truths = roots
    ds = load_dataset(name, d / key)
    assert len(ds) == len(truths[key]) and ds.name == name
    check_samples(ds, truths[key], final=name == "sintel-final")
    # root may also be the training folder itself
    if (d / key / "training").is_dir():
        assert [f.name for f in load_dataset(name, d / key / "training").files] == [f.name for f in ds.files]


def test_sintel_groups_and_chained_frames(roots):
    d, truths = roots
    ds = load_dataset("sintel-clean", d / "sintel")
    assert [f.group for f in ds.files] == ["alley_1"] * 3 + ["market_2"] * 2
    a, b = ds[0], ds[1]  # frame_0002 is the second frame of pair 1 and the first of pair 2
    np.testing.assert_array_equal(a.img2, b.img1)
    assert a.regions["matched"].sum() + a.regions["unmatched"].sum() == a.valid.sum()
    assert a.regions["unmatched"].any() and a.regions["matched"].any()


def test_sintel_without_occlusions(tmp_path):
    truths = write_sintel(tmp_path, sequences=(("cave_2", 2),), occlusions=False)
    ds = load_dataset("sintel-final", tmp_path)
    assert len(ds) == 2 and ds[0].regions == {}
    assert any("occlusion" in n for n in ds.notes)
    assert sorted(truths) == [f.name for f in ds.files]


def test_kitti_2012_greyscale_image_0(tmp_path):
    truths = write_kitti(tmp_path, "2012", sizes=((40, 64),), noc=False)
    tr = tmp_path / "training"
    os.rename(tr / "colored_0", tr / "image_0")
    for f in (tr / "image_0").iterdir():  # KITTI 2012's image_0 is greyscale
        Image.fromarray(np.asarray(Image.open(f))[:, :, 1]).save(f)
    ds = load_dataset("kitti-2012", tmp_path)
    s = ds[0]
    assert s.img1.shape == (40, 64, 3) and s.img1.dtype == np.uint8
    np.testing.assert_array_equal(s.img1[..., 0], truths["000000"].img1[..., 1])
    assert s.regions == {} and any("noc" in n for n in ds.notes)


def test_chairs_split(roots):
    d, truths = roots
    val = load_dataset("chairs", d / "chairs")
    assert [f.name for f in val.files] == ["00002", "00003"]  # labels 1, 2, 2: 2 = validation
    assert any("val split" in n for n in val.notes)
    assert [f.name for f in load_dataset("chairs", d / "chairs", split="train").files] == ["00001"]
    everything = load_dataset("chairs", d / "chairs", split="all")
    check_samples(everything, truths["chairs"])
    # root may be the data folder itself: the split file one level up still applies
    assert [f.name for f in load_dataset("chairs", d / "chairs" / "data").files] == ["00002", "00003"]


def test_chairs_split_errors(tmp_path):
    write_chairs(tmp_path, n=2, labels=None)
    assert len(load_dataset("chairs", tmp_path)) == 2
    with pytest.raises(DatasetError, match="FlyingChairs_train_val.txt"):
        load_dataset("chairs", tmp_path, split="val")
    (tmp_path / "FlyingChairs_train_val.txt").write_text("1\n2\n2\n")
    with pytest.raises(DatasetError, match="lists 3 samples but .* holds 2"):
        load_dataset("chairs", tmp_path)


def test_limit(roots):
    d, _ = roots
    ds = load_dataset("sintel-clean", d / "sintel", limit=2)
    assert [f.name for f in ds.files] == ["alley_1/frame_0001", "alley_1/frame_0002"]
    with pytest.raises(DatasetError, match="limit"):
        load_dataset("sintel-clean", d / "sintel", limit=0)


def test_motorcycle_ground_truth_matches_the_photos(tmp_path):
    """The real stereo pair: warping the right image by the ground truth (-disparity, 0) must
    reproduce the left image far better than no motion does (checks the sign convention)."""
    import torch

    import fastflow

    t = write_motorcycle(tmp_path)
    s = load_dataset("middlebury", tmp_path)[0]
    assert s.name == "Motorcycle" and 0.5 < s.valid.mean() < 1 and np.all(s.flow[..., 0][s.valid] < 0)
    right = torch.from_numpy(s.img2.copy()).permute(2, 0, 1).float()
    warped = fastflow.warp(right, torch.from_numpy(s.flow).permute(2, 0, 1).contiguous()).permute(1, 2, 0).numpy()
    left = s.img1.astype(np.float32)
    err_gt = np.abs(warped - left).mean(-1)[s.valid].mean()
    err_zero = np.abs(s.img2.astype(np.float32) - left).mean(-1)[s.valid].mean()
    assert err_gt < 0.5 * err_zero, (err_gt, err_zero)
    np.testing.assert_array_equal(s.valid, t.valid)


# ------------------------------------------------------------------------------------- errors
def test_unknown_dataset_and_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'sintel'"):
        load_dataset("sintel", tmp_path)
    with pytest.raises(DatasetError, match="root not found"):
        load_dataset("chairs", tmp_path / "nope")
    with pytest.raises(DatasetError, match="chairs only"):
        load_dataset("middlebury", tmp_path, split="val")
    assert set(DATASETS) == {"sintel-clean", "sintel-final", "kitti-2015", "kitti-2012", "chairs", "middlebury"}


@pytest.mark.parametrize("name,expected", [("sintel-clean", "training/clean"), ("kitti-2015", "image_2"),
                                           ("kitti-2012", "colored_0"), ("chairs", "00001_flow.flo"),
                                           ("middlebury", "other-gt-flow")])
def test_wrong_layout_says_what_is_expected(tmp_path, name, expected):
    (tmp_path / "something").mkdir()
    with pytest.raises(DatasetError, match="does not look like") as e:
        load_dataset(name, tmp_path)
    assert expected in str(e.value).replace(os.sep, "/")


def test_missing_and_bad_files_are_named(tmp_path):
    write_sintel(tmp_path, sequences=(("alley_1", 2),))
    seq = tmp_path / "training" / "clean" / "alley_1"
    os.remove(seq / "frame_0003.png")
    with pytest.raises(DatasetError, match="missing second frame: .*frame_0003.png"):
        load_dataset("sintel-clean", tmp_path)
    assert len(load_dataset("sintel-clean", tmp_path, limit=1)) == 1  # the first pair is complete
    os.remove(tmp_path / "training" / "occlusions" / "alley_1" / "frame_0001.png")
    with pytest.raises(DatasetError, match="missing occlusion mask: .*frame_0001.png"):
        load_dataset("sintel-clean", tmp_path, limit=1)


def test_corrupt_files_are_named(tmp_path):
    write_middlebury(tmp_path, sequences=("A", "B", "C"))
    (tmp_path / "other-gt-flow" / "A" / "flow10.flo").write_bytes(b"PIEH" + b"\x01" * 9)
    (tmp_path / "other-data" / "B" / "frame11.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "other-data" / "C" / "frame10.png")
    ds = load_dataset("middlebury", tmp_path)
    with pytest.raises(DatasetError, match=r"flow10\.flo"):
        ds[0]
    with pytest.raises(DatasetError, match=r"cannot read image .*frame11\.png"):
        ds[1]
    with pytest.raises(DatasetError, match=r"frames differ in size: .*frame10\.png is 12x10"):
        ds[2]


def test_ground_truth_size_mismatch(tmp_path):
    write_chairs(tmp_path, n=1, labels=None)
    from fastflow.io import write_flow

    write_flow(tmp_path / "data" / "00001_flow.flo", np.zeros((20, 30, 2), np.float32))
    with pytest.raises(DatasetError, match=r"ground truth .*00001_flow\.flo is 30x20, but the frames"):
        load_dataset("chairs", tmp_path)[0]


def test_empty_dataset(tmp_path):
    (tmp_path / "other-gt-flow").mkdir()
    (tmp_path / "other-data").mkdir()
    with pytest.raises(DatasetError, match="no middlebury pairs"):
        load_dataset("middlebury", tmp_path)


def test_read_rgb_16bit_kept(tmp_path):
    img = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100)
    Image.fromarray(img).save(tmp_path / "g16.png")
    out = read_rgb(str(tmp_path / "g16.png"))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint16
    np.testing.assert_array_equal(out[..., 0], img)
    with pytest.raises(DatasetError, match="missing image"):
        read_rgb(str(tmp_path / "none.png"))


def test_corrupt_occlusion_mask_is_named(tmp_path):
    write_sintel(tmp_path, sequences=(("a", 1),))
    (tmp_path / "training" / "occlusions" / "a" / "frame_0001.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    with pytest.raises(DatasetError, match=r"cannot read occlusion mask .*frame_0001\.png"):
        load_dataset("sintel-clean", tmp_path)[0]
