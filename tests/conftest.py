"""Shared test helpers: real-photo image pairs, relative errors, CUDA skips.

The suite tests the INSTALLED fastflow: ``python -m pytest`` run in the source folder puts that
folder first on ``sys.path``, where ``fastflow/`` is the uncompiled checkout, so it is dropped here
before anything imports fastflow; the header names the fastflow imported."""
import os
import re
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _ROOT]

import numpy as np
import pytest
import torch

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to PyTorch)")


def _imported_fastflow():
    """(the fastflow package folder imported, whether it holds the compiled extension)."""
    import glob

    import fastflow

    where = os.path.dirname(os.path.abspath(fastflow.__file__))
    return where, bool(glob.glob(os.path.join(where, "_C*")))


def pytest_report_header(config):
    import fastflow

    where, compiled = _imported_fastflow()
    return f"fastflow {fastflow.__version__} from {where} ({'compiled extension found' if compiled else 'NO compiled extension'})"


def pytest_sessionstart(session):
    where, compiled = _imported_fastflow()
    if not compiled:
        pytest.exit(f"fastflow imported from {where} has no compiled extension (fastflow._C): install it first "
                    f"(pip install '.[test]' in the source folder) and run the tests with that install's "
                    f"interpreter (python -m pytest)", returncode=4)


def _needs_cuda(item) -> bool:
    """A test that runs only on a GPU: it carries a skip-without-GPU condition (this file's
    ``requires_cuda`` or a module's own, reason "... CUDA GPU ..." / "GPU only"), or is
    parametrized with device "cuda"."""
    for mark in item.iter_markers("skipif"):
        if re.search(r"\bGPU\b", str(mark.kwargs.get("reason", ""))):
            return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(str(v) == "cuda" for k, v in params.items() if k == "device")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every CUDA test carries the ``cuda`` marker, so ``pytest -m cuda`` selects exactly them
    (before ``-m`` deselects anything: tryfirst)."""
    for item in items:
        if _needs_cuda(item):
            item.add_marker(pytest.mark.cuda)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 (docs/design.md section 7)."""
    out, ref = out.double(), ref.double()
    return float((out - ref).norm() / ref.norm().clamp_min(1e-300))


def motorcycle_pair(height: int, width: int, batch: int = 1, device="cpu") -> torch.Tensor:
    """``(B, 3, 2, H, W)`` float32 0..255 from scikit-image's Middlebury motorcycle stereo pair
    (real photographs with real disparity), resized to cover H x W and cropped; batch items are
    different crops. Falls back to fastflow's shipped photo when scikit-image is missing."""
    try:
        from skimage import data
    except ImportError:
        from fastflow.samples import sample_pair

        return sample_pair(height, width, batch, device)
    left, right, _ = data.stereo_motorcycle()
    img = torch.from_numpy(np.stack((left, right))).permute(0, 3, 1, 2).float()  # (2, 3, h, w)
    scale = max((height + 8 * batch) / img.shape[2], (width + 8 * batch) / img.shape[3])
    size = (int(np.ceil(img.shape[2] * scale)), int(np.ceil(img.shape[3] * scale)))
    img = torch.nn.functional.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)
    crops = [img[:, :, 8 * i : 8 * i + height, 8 * i : 8 * i + width] for i in range(batch)]
    pair = torch.stack([c.permute(1, 0, 2, 3) for c in crops])  # (B, 3, 2, H, W)
    return pair.clamp(0, 255).contiguous().to(device)


@pytest.fixture(scope="session")
def weights():
    """One random FlowNet2-S state dict (seeded), shared by the model tests."""
    from fastflow.reference import FlowNet2S

    torch.manual_seed(1234)
    return FlowNet2S().state_dict()


@pytest.fixture(scope="module")
def model(weights):
    """fastflow.FlowNet2S in eval mode with `weights` (one per test module)."""
    import fastflow

    m = fastflow.FlowNet2S().eval()
    m.load_state_dict(weights)
    return m
