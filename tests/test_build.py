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


def _load_sources(csrc: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_ff_sources_copy", csrc / "sources.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not (ROOT / "csrc" / "sources.py").exists(), reason="needs the source tree")
def test_source_lists_search_subfolders(tmp_path):
    """csrc/sources.py (what setup.py compiles) finds kernels and C++ in subfolders at any depth, keeps
    the CPU versions (*_cpu.cpp) out of fastflow._simt and the SIMT runtime and its fixture kernels out
    of fastflow._C."""
    csrc = tmp_path / "csrc"
    csrc.mkdir()
    shutil.copy(ROOT / "csrc" / "sources.py", csrc / "sources.py")
    files = ["bindings.cpp", "top.cu", "decoder/deconv/deep.cu", "decoder/plan.cpp", "ops/op/op_cpu.cpp",
             "ops/sub/deep/op2_cpu.cpp", "simt/runtime.cpp", "simt/extra/more.cpp", "simt/fixtures.cu", "kernels/k.cuh"]
    for f in files:
        (csrc / f).parent.mkdir(parents=True, exist_ok=True)
        (csrc / f).write_text("// test\n")
    s = _load_sources(csrc)

    def rel(paths):
        return [p.relative_to(csrc).as_posix() for p in paths]

    assert rel(s.kernel_sources()) == ["decoder/deconv/deep.cu", "top.cu"]
    assert rel(s.kernel_headers()) == ["kernels/k.cuh"]
    assert rel(s.c_sources()) == ["bindings.cpp", "decoder/plan.cpp", "ops/op/op_cpu.cpp", "ops/sub/deep/op2_cpu.cpp"]
    assert rel(s.simt_sources()) == ["bindings.cpp", "decoder/plan.cpp", "simt/extra/more.cpp", "simt/runtime.cpp"]
    assert rel(s.simt_kernel_sources()) == ["decoder/deconv/deep.cu", "top.cu", "simt/fixtures.cu"]
    # Object names stay unique across folders.
    objs = [s.object_name(p) for p in s.kernel_sources() + s.c_sources() + s.simt_sources()]
    assert "decoder_deconv_deep.o" in objs and "ops_sub_deep_op2_cpu.o" in objs


@pytest.mark.skipif(not (ROOT / "csrc" / "sources.py").exists(), reason="needs the source tree")
def test_source_lists_of_this_tree():
    """Every .cu/.cpp of the real csrc/ is in exactly the extensions it belongs to."""
    s = _load_sources(ROOT / "csrc")
    csrc = ROOT / "csrc"
    every_cu = set(csrc.rglob("*.cu"))
    assert set(s.kernel_sources()) | set(s.simt_fixture_sources()) == every_cu
    assert set(s.c_sources()) | set(s.simt_runtime_sources()) == set(csrc.rglob("*.cpp"))
    assert not any("simt" in p.relative_to(csrc).parts for p in s.c_sources() + s.kernel_sources())
    assert csrc / "bindings.cpp" in s.c_sources() and csrc / "bindings.cpp" in s.simt_sources()
    # One folder per op: kernel, CPU version (fastflow._C only) and binding (both extensions).
    for op in ("normalize_pack", "upsample_flow", "warp", "flow_head"):
        d = csrc / "ops" / op
        assert d / f"{op}.cu" in s.kernel_sources() and d / f"{op}_cpu.cpp" in s.cpu_sources(), op
        assert d / f"{op}_bind.cpp" in s.c_sources() and d / f"{op}_bind.cpp" in s.simt_sources(), op
    for op in ("conv2d_lrelu", "deconv_lrelu"):  # kernels and CPU emulation: the shared csrc/igemm/
        assert csrc / "ops" / op / f"{op}_bind.cpp" in s.simt_sources(), op
    assert not any(p.name.endswith("_cpu.cpp") for p in s.simt_sources())


@pytest.mark.skipif(not (ROOT / "setup.py").exists(), reason="needs the source tree")
def test_cuda_dirs_cover_target_layouts(tmp_path, monkeypatch):
    """setup.py finds cuda_runtime.h / libcudart_static.a in the top level or any targets/<triple>/
    (x86_64-linux, sbsa-linux, aarch64-linux), lib64 or lib."""
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "cuda_dirs")
    ns = {"os": os, "Path": Path}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "setup.py", "exec"), ns)
    top = tmp_path / "cuda"
    for d in ("targets/sbsa-linux/lib", "targets/aarch64-linux/include", "lib64"):
        (top / d).mkdir(parents=True)
    dirs = ns["cuda_dirs"](top, ("lib64", "lib"))
    assert top / "lib64" in dirs and top / "targets" / "sbsa-linux" / "lib" in dirs
    assert top / "targets" / "aarch64-linux" / "include" in ns["cuda_dirs"](top, ("include",))
    assert dirs[0] == top / "lib64"  # the top level first


def test_suite_tests_the_install_even_from_the_source_root():
    """Issue 20 item 4: ``python -m pytest`` in the source folder (the README's command) must test the
    installed fastflow, not the uncompiled checkout that folder puts first on sys.path; the header says
    which fastflow was imported."""
    import subprocess
    import sys

    import fastflow

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-p", "no:cacheprovider",
                        os.path.join("tests", "test_network.py")], cwd=root, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    want = os.path.dirname(os.path.abspath(fastflow.__file__))
    assert f"from {want} (compiled extension found)" in r.stdout, r.stdout[:2000]
