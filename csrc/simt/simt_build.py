"""How the SIMT host build compiles the CUDA kernel sources; shared by setup.py and
csrc/simt/mutation_check.py (no dependencies beyond the standard library)."""
import subprocess
import sys
from pathlib import Path

SIMT = Path(__file__).resolve().parent
CSRC = SIMT.parent
sys.path.insert(0, str(CSRC))
import sources  # noqa: E402  (csrc/sources.py: which files each extension compiles)


def kernel_sources():
    """The kernel translation units of fastflow._simt: every op kernel (csrc/**/*.cu outside
    csrc/simt/) plus the fixture kernels."""
    return sources.simt_kernel_sources()


def kernel_object_name(src: Path) -> str:
    return sources.object_name(src)


def kernel_flags(cxx: str):
    """Host C++ with the CUDA stand-ins force-included and every load and store instrumented
    (-fsanitize=thread callbacks, implemented by the runtime; libtsan is never linked). -O1 keeps
    the build quick; no FP contraction, so results do not depend on the host's FMA."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    # Only the load/store callbacks are wanted, not the function entry/exit ones.
    tsan_param = (["-mllvm", "-tsan-instrument-func-entry-exit=0"] if "clang" in version
                  else ["--param=tsan-instrument-func-entry-exit=0"])
    return [
        "-x", "c++", "-std=c++17", "-O1", "-g1", "-fPIC", "-fvisibility=hidden", "-fno-strict-aliasing",
        "-ffp-contract=off", "-fsanitize=thread", *tsan_param, "-DFASTFLOW_SIMT=1",
        "-include", str(SIMT / "host_cuda.h"), "-I", str(CSRC), "-I", str(SIMT / "include"),
    ]
