"""How the SIMT host build compiles the CUDA kernel sources; shared by setup.py and
csrc/simt/mutation_check.py (no dependencies beyond the standard library)."""
import subprocess
from pathlib import Path

SIMT = Path(__file__).resolve().parent
CSRC = SIMT.parent


def kernel_sources():
    """The kernel translation units of fastflow._simt: every csrc/*.cu plus the fixture kernels."""
    return sorted(CSRC.glob("*.cu")) + sorted(SIMT.glob("*.cu"))


def kernel_object_name(src: Path) -> str:
    return "_".join(src.relative_to(CSRC).with_suffix("").parts) + ".o"


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
