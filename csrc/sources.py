"""Which csrc/ files each extension compiles; shared by setup.py, csrc/simt/ and tests/test_build.py
(standard library only, cheap to import). Folders are searched recursively, so moving a kernel or
an op into a subfolder cannot silently drop it from the build:

- csrc/**/*.cu outside csrc/simt/: the op kernels. fastflow._C compiles them with nvcc (when found);
  fastflow._simt compiles the same files as host C++ against the SIMT runtime.
- csrc/**/*_cpu.cpp outside csrc/simt/ (csrc/ops/<op>/<op>_cpu.cpp, csrc/igemm/igemm_cpu.cpp): the
  CPU versions of the ops, fastflow._C only.
- csrc/simt/**/*.cpp: the SIMT host runtime, fastflow._simt only; csrc/simt/**/*.cu: its fixture
  kernels (deliberately buggy test material), fastflow._simt only.
- every other csrc/**/*.cpp (the module definition, each op's binding, host-side planning and
  validation): both extensions.
"""
from pathlib import Path

CSRC = Path(__file__).resolve().parent
SIMT = CSRC / "simt"
CPU_SUFFIX = "_cpu.cpp"  # the CPU version of an op: <op>_cpu.cpp beside its kernel


def _find(pattern, exclude=()):
    return sorted(p for p in CSRC.rglob(pattern) if not any(d in p.parents for d in exclude))


def _is_cpu(p: Path) -> bool:
    return p.name.endswith(CPU_SUFFIX)


def kernel_sources():
    """The op kernels (.cu), every folder but csrc/simt/."""
    return _find("*.cu", exclude=(SIMT,))


def kernel_headers():
    """The CUDA headers (.cuh) of the op kernels, every folder but csrc/simt/."""
    return _find("*.cuh", exclude=(SIMT,))


def shared_sources():
    """Host C++ compiled into both extensions."""
    return [p for p in _find("*.cpp", exclude=(SIMT,)) if not _is_cpu(p)]


def cpu_sources():
    """The CPU versions of the ops, fastflow._C only."""
    return [p for p in _find("*.cpp", exclude=(SIMT,)) if _is_cpu(p)]


def simt_runtime_sources():
    return sorted(SIMT.rglob("*.cpp"))


def simt_fixture_sources():
    return sorted(SIMT.rglob("*.cu"))


def c_sources():
    """The C++ sources of fastflow._C (nvcc objects come on top when CUDA is built)."""
    return shared_sources() + cpu_sources()


def simt_sources():
    """The C++ sources of fastflow._simt (the kernel objects of simt_kernel_sources come on top)."""
    return shared_sources() + simt_runtime_sources()


def simt_kernel_sources():
    """The kernel translation units fastflow._simt compiles as host code: op kernels and fixtures."""
    return kernel_sources() + simt_fixture_sources()


def object_name(src: Path) -> str:
    """A unique object file name for a source anywhere under csrc/ (ops/warp/warp_cpu.cpp ->
    ops_warp_warp_cpu.o)."""
    return "_".join(src.relative_to(CSRC).with_suffix("").parts) + ".o"
