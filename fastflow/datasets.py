"""Readers for the standard optical-flow benchmark layouts, from folders the user already has.

=================  ==========================================================================
name               layout under ``root`` (``root`` may also be the ``training`` folder itself)
=================  ==========================================================================
``sintel-clean``   MPI-Sintel: ``training/clean/<seq>/frame_NNNN.png``, ground truth
``sintel-final``   ``training/flow/<seq>/frame_NNNN.flo`` (frame N to N+1), optional occlusion
                   masks ``training/occlusions/<seq>/frame_NNNN.png`` (white = occluded)
``kitti-2015``     ``training/image_2/NNNNNN_10.png`` and ``_11.png``, ground truth
                   ``training/flow_occ/NNNNNN_10.png`` (16-bit, with validity), optional
                   ``training/flow_noc/``
``kitti-2012``     the same with ``training/colored_0/`` (or greyscale ``image_0/``)
``chairs``         FlyingChairs: ``data/NNNNN_img1.ppm``, ``NNNNN_img2.ppm``, ``NNNNN_flow.flo``;
                   ``FlyingChairs_train_val.txt`` (1 = train, 2 = validation) selects the split
``middlebury``     ``other-data/<Seq>/frame10.png``, ``frame11.png`` (or ``other-data-gray``),
                   ground truth ``other-gt-flow/<Seq>/flow10.flo`` (unknown flow = invalid)
=================  ==========================================================================

:func:`load_dataset` scans a layout into a :class:`FlowDataset`; indexing it reads one
:class:`FlowSample` (images, ground truth, validity and region masks). Missing folders or files
and unreadable or mismatched files raise :class:`DatasetError` (a ``ValueError``) naming the path.
NumPy and Pillow only; no torch.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from .util import first_line

__all__ = ["DATASETS", "DatasetError", "SampleFiles", "FlowSample", "FlowDataset", "load_dataset", "read_rgb"]

#: Dataset names accepted by :func:`load_dataset` (and ``fastflow validate --dataset``).
DATASETS = ("sintel-clean", "sintel-final", "kitti-2015", "kitti-2012", "chairs", "middlebury")

CHAIRS_SPLIT_FILE = "FlyingChairs_train_val.txt"


class DatasetError(ValueError):
    """A dataset folder or file is missing, unreadable or inconsistent (the message names it)."""


@dataclass(frozen=True)
class SampleFiles:
    """The files of one image pair. ``group`` is the sequence (Sintel, Middlebury) or ``""``."""

    name: str
    group: str
    img1: str
    img2: str
    flow: str
    flow_noc: Optional[str] = None  # KITTI: ground truth on non-occluded pixels only
    occlusions: Optional[str] = None  # Sintel: white = occluded (visible in one frame only)


@dataclass
class FlowSample:
    """One loaded pair.

    ``img1``, ``img2``: ``(H, W, 3)`` RGB, uint8 (uint16 for 16-bit files).
    ``flow``: ``(H, W, 2)`` float32 ground truth (u, v) in pixels, 0 where invalid.
    ``valid``: ``(H, W)`` bool, pixels with ground truth.
    ``regions``: extra ``(H, W)`` bool masks, subsets of ``valid``: ``matched`` / ``unmatched``
    (Sintel with occlusion masks), ``noc`` (KITTI with ``flow_noc``).
    """

    files: SampleFiles
    img1: np.ndarray
    img2: np.ndarray
    flow: np.ndarray
    valid: np.ndarray
    regions: Dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.files.name

    @property
    def group(self) -> str:
        return self.files.group


# --------------------------------------------------------------------------------------------
# File readers
# --------------------------------------------------------------------------------------------


def _require_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise DatasetError(f"missing {what}: {path}")
    return path




def read_rgb(path: str) -> np.ndarray:
    """An image file as ``(H, W, 3)`` RGB through :func:`fastflow.images.read_image`: uint8, or
    uint16 for 16-bit files (``estimate_flow`` scales those). Raises DatasetError naming the file."""
    from .images import read_image

    _require_file(path, "image")
    try:
        img = read_image(path)
    except ValueError as e:
        msg = first_line(e)
        raise DatasetError(msg if path in msg else f"cannot read image {path}: {msg}") from None
    return img


def _read_gt(path: str):
    from .io import read_flow

    _require_file(path, "ground-truth flow")
    try:
        flow, valid = read_flow(path, return_valid=True)
    except (ValueError, OSError) as e:
        msg = first_line(e)
        raise DatasetError(msg if os.path.basename(path) in msg else f"cannot read flow {path}: {msg}") from None
    flow = np.where(valid[..., None], flow, np.float32(0))
    return flow.astype(np.float32, copy=False), valid


def _read_mask(path: str, what: str) -> np.ndarray:
    _require_file(path, what)
    try:
        from PIL import Image

        with Image.open(path) as im:
            m = np.asarray(im.convert("L"))
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # Pillow's errors for bad or truncated files
        raise DatasetError(f"cannot read {what} {path}: {first_line(e)}") from None
    return m > 127


def _check_shapes(files: SampleFiles, img1, img2, flow) -> None:
    if img1.shape != img2.shape:
        raise DatasetError(
            f"frames differ in size: {files.img1} is {img1.shape[1]}x{img1.shape[0]}, "
            f"{files.img2} is {img2.shape[1]}x{img2.shape[0]}"
        )
    if flow.shape[:2] != img1.shape[:2]:
        raise DatasetError(
            f"ground truth {files.flow} is {flow.shape[1]}x{flow.shape[0]}, "
            f"but the frames ({files.img1}) are {img1.shape[1]}x{img1.shape[0]}"
        )


def load_sample(files: SampleFiles) -> FlowSample:
    """Read one pair's images, ground truth and masks."""
    img1, img2 = read_rgb(files.img1), read_rgb(files.img2)
    flow, valid = _read_gt(files.flow)
    _check_shapes(files, img1, img2, flow)
    regions = {}
    if files.occlusions is not None:
        occ = _read_mask(files.occlusions, "occlusion mask")
        if occ.shape != valid.shape:
            raise DatasetError(f"occlusion mask {files.occlusions} is {occ.shape[1]}x{occ.shape[0]}, "
                               f"the flow is {valid.shape[1]}x{valid.shape[0]}")
        regions["matched"] = valid & ~occ
        regions["unmatched"] = valid & occ
    if files.flow_noc is not None:
        _, noc = _read_gt(files.flow_noc)
        if noc.shape != valid.shape:
            raise DatasetError(f"{files.flow_noc} is {noc.shape[1]}x{noc.shape[0]}, "
                               f"{files.flow} is {valid.shape[1]}x{valid.shape[0]}")
        regions["noc"] = valid & noc
    return FlowSample(files, img1, img2, flow, valid, regions)


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------


def _listdir(path: str) -> List[str]:
    try:
        return sorted(os.listdir(path))
    except OSError as e:
        raise DatasetError(f"cannot list {path}: {first_line(e)}") from None


def _training_dir(root: str, needed: List[str]) -> Optional[str]:
    """``root/training`` or ``root`` itself, whichever holds the ``needed`` subfolders (or None)."""
    for cand in (os.path.join(root, "training"), root):
        if all(os.path.isdir(os.path.join(cand, n)) for n in needed):
            return cand
    return None


def _not_layout(root: str, what: str, *examples) -> DatasetError:
    paths = " and ".join(os.path.join(root, *parts) for parts in examples)
    return DatasetError(f"{root} does not look like {what}: expected {paths}")


def _optional_dir(path: str, missing_note: str):
    """(path, []) if the folder exists, else (None, [missing_note])."""
    return (path, []) if os.path.isdir(path) else (None, [missing_note])


def _sintel(root: str, passname: str):
    train = _training_dir(root, [passname, "flow"])
    if train is None:
        raise _not_layout(root, f"MPI-Sintel ({passname} pass)", ("training", passname, "<sequence>", "frame_0001.png"),
                          ("training", "flow", "<sequence>", "frame_0001.flo"))
    occ_dir, notes = _optional_dir(os.path.join(train, "occlusions"),
                                   f"no {os.path.join(train, 'occlusions')}: matched/unmatched EPE not computed")
    files = []
    for seq in _listdir(os.path.join(train, "flow")):
        seq_dir = os.path.join(train, "flow", seq)
        if not os.path.isdir(seq_dir):
            continue
        for fname in _listdir(seq_dir):
            m = re.fullmatch(r"frame_(\d+)\.flo", fname)
            if not m:
                continue
            k, width = int(m.group(1)), len(m.group(1))
            img = os.path.join(train, passname, seq, "frame_{:0{w}d}.png")
            files.append(SampleFiles(
                name=f"{seq}/frame_{m.group(1)}", group=seq,
                img1=img.format(k, w=width), img2=img.format(k + 1, w=width),
                flow=os.path.join(seq_dir, fname),
                occlusions=os.path.join(occ_dir, seq, f"frame_{m.group(1)}.png") if occ_dir else None))
    return files, notes


def _kitti(root: str, year: str):
    image_dirs = ["image_2"] if year == "2015" else ["colored_0", "image_0"]
    for image_dir in image_dirs:
        train = _training_dir(root, [image_dir, "flow_occ"])
        if train is not None:
            break
    else:
        raise _not_layout(root, f"KITTI {year}", ("training", image_dirs[0], "000000_10.png"),
                          ("training", "flow_occ", "000000_10.png"))
    noc_dir, notes = _optional_dir(os.path.join(train, "flow_noc"),
                                   f"no {os.path.join(train, 'flow_noc')}: non-occluded (noc) EPE not computed")
    files = []
    for fname in _listdir(os.path.join(train, "flow_occ")):
        m = re.fullmatch(r"(\d+)_10\.png", fname)
        if not m:
            continue
        idx = m.group(1)
        files.append(SampleFiles(
            name=idx, group="",
            img1=os.path.join(train, image_dir, f"{idx}_10.png"), img2=os.path.join(train, image_dir, f"{idx}_11.png"),
            flow=os.path.join(train, "flow_occ", fname),
            flow_noc=os.path.join(noc_dir, fname) if noc_dir else None))
    return files, notes


def _chairs(root: str, split: Optional[str]):
    data = os.path.join(root, "data")
    if not os.path.isdir(data):
        data = root
    flows = [f for f in _listdir(data) if re.fullmatch(r"\d+_flow\.flo", f)]
    if not flows:
        raise _not_layout(root, "FlyingChairs", ("data", "00001_img1.ppm"), ("data", "00001_img2.ppm"),
                          ("data", "00001_flow.flo"))
    flows.sort(key=lambda f: int(f.split("_")[0]))
    split_file = next((p for p in (os.path.join(root, CHAIRS_SPLIT_FILE), os.path.join(data, CHAIRS_SPLIT_FILE),
                                   os.path.join(os.path.dirname(os.path.abspath(root)), CHAIRS_SPLIT_FILE))
                       if os.path.isfile(p)), None)
    notes = []
    if split is None:
        split = "val" if split_file else "all"
    if split not in ("val", "train", "all"):
        raise DatasetError(f"unknown FlyingChairs split {split!r} (use val, train or all)")
    if split != "all":
        if split_file is None:
            raise DatasetError(f"FlyingChairs split {split!r} needs {CHAIRS_SPLIT_FILE} in {root}")
        try:
            with open(split_file) as f:
                labels = [int(t) for t in f.read().split()]
        except (OSError, ValueError) as e:
            raise DatasetError(f"cannot read {split_file}: {first_line(e)}") from None
        if len(labels) != len(flows):
            raise DatasetError(f"{split_file} lists {len(labels)} samples but {data} holds {len(flows)} flow files")
        want = 2 if split == "val" else 1
        flows = [f for f, lab in zip(flows, labels) if lab == want]
        notes.append(f"FlyingChairs {split} split ({len(flows)} pairs) from {split_file}")
    files = []
    for fname in flows:
        idx = fname.split("_")[0]
        files.append(SampleFiles(name=idx, group="", img1=os.path.join(data, f"{idx}_img1.ppm"),
                                 img2=os.path.join(data, f"{idx}_img2.ppm"), flow=os.path.join(data, fname)))
    return files, notes


def _middlebury(root: str):
    gt_dir = os.path.join(root, "other-gt-flow")
    img_dir = os.path.join(root, "other-data")
    if not os.path.isdir(img_dir):
        img_dir = os.path.join(root, "other-data-gray")
    if not os.path.isdir(gt_dir) or not os.path.isdir(img_dir):
        raise _not_layout(root, "Middlebury", ("other-data", "<Sequence>", "frame10.png"),
                          ("other-gt-flow", "<Sequence>", "flow10.flo"))
    files = []
    for seq in _listdir(gt_dir):
        flo = os.path.join(gt_dir, seq, "flow10.flo")
        if not os.path.isdir(os.path.join(gt_dir, seq)) or not os.path.isfile(flo):
            continue
        files.append(SampleFiles(name=seq, group=seq, img1=os.path.join(img_dir, seq, "frame10.png"),
                                 img2=os.path.join(img_dir, seq, "frame11.png"), flow=flo))
    return files, []


class FlowDataset:
    """The pairs of one dataset: ``len(ds)``, ``ds[i]`` -> :class:`FlowSample` (read on access),
    ``ds.files`` (the :class:`SampleFiles`), ``ds.notes`` (what was found or left out)."""

    def __init__(self, name: str, root: str, files: List[SampleFiles], notes: List[str]):
        self.name, self.root, self.files, self.notes = name, root, files, notes

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> FlowSample:
        return load_sample(self.files[i])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"FlowDataset({self.name!r}, {self.root!r}, {len(self)} pairs)"


def load_dataset(name: str, root, limit: Optional[int] = None, split: Optional[str] = None) -> FlowDataset:
    """Scan ``root`` for dataset ``name`` (one of :data:`DATASETS`).

    ``limit``: keep the first ``limit`` pairs (in sorted order). ``split`` (FlyingChairs only):
    ``"val"`` (default when ``FlyingChairs_train_val.txt`` is found), ``"train"`` or ``"all"``.
    Every listed pair's files are checked to exist now, so a missing frame is named before any
    work starts; file contents are read on access.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DatasetError(f"dataset root not found (or not a folder): {root}")
    if split is not None and name != "chairs":
        raise DatasetError(f"--split applies to chairs only, not {name}")
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be at least 1, got {limit}")
    if name.startswith("sintel-"):
        files, notes = _sintel(root, name.split("-")[1])
    elif name.startswith("kitti-"):
        files, notes = _kitti(root, name.split("-")[1])
    elif name == "chairs":
        files, notes = _chairs(root, split)
    else:
        files, notes = _middlebury(root)
    if not files:
        raise DatasetError(f"no {name} pairs with ground truth found under {root}")
    if limit is not None:
        files = files[:limit]
    for f in files:
        _require_file(f.img1, "first frame")
        _require_file(f.img2, "second frame")
        for path, what in ((f.occlusions, "occlusion mask"), (f.flow_noc, "flow_noc ground truth")):
            if path is not None:
                _require_file(path, what)
    return FlowDataset(name, root, files, notes)
