"""The extension builds and works without nvcc (CPU-only), as on a machine without CUDA."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "setup.py").exists(), reason="needs the source tree")
def test_cpu_only_build(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns("build", "*.so", ".git", "__pycache__", "*.egg-info", "tests", "benchmarks"))
    env = dict(os.environ, FASTFLOW_NO_CUDA="1", PATH=os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "nvcc").exists()))
    env.pop("CUDA_HOME", None)
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=src, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CPU-only" in r.stdout + r.stderr
    assert "nvcc" not in " ".join(ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("fastflow build: nvcc "))
    code = (
        "import torch, fastflow\n"
        "info = fastflow.build_info()\n"
        "assert info['cuda_compiled'] is False and info['cuda_ops'] == [], info\n"
        "from fastflow import ops, reference\n"
        "x = torch.rand(1, 3, 2, 5, 7) * 255\n"
        "assert torch.allclose(ops.normalize_pack(x), reference.normalize_pack(x), atol=1e-6)\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
