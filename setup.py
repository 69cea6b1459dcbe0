"""Build of fastflow._C and fastflow._simt: torch-free pybind11 extensions (docs/design.md section 4).

Which csrc/ files go into which extension is decided in csrc/sources.py (recursive globs).

fastflow._C: the C++ sources (bindings + CPU ops) are always built. When nvcc is found
(CUDA_HOME/bin/nvcc or PATH) and FASTFLOW_NO_CUDA is not set, every op kernel (csrc/**/*.cu outside
csrc/simt/) is compiled by nvcc for the architectures in FASTFLOW_CUDA_ARCHS (default "80;86;89;90",
plus PTX of the newest so later GPUs can JIT it) and linked with the static CUDA runtime, so
importing needs neither a GPU nor a driver. nvcc jobs run in parallel (FASTFLOW_BUILD_JOBS,
default: the CPU count).

fastflow._simt: the same CUDA kernel sources (plus the fixture kernels csrc/simt/*.cu) compiled by
the system C++ compiler as host code against the SIMT runtime (csrc/simt/*.cpp), which runs them on
the CPU with race, bounds and barrier checks. No CUDA toolkit needed; built by every install
(FASTFLOW_NO_SIMT=1 skips it; a compiler without -fsanitize=thread instrumentation makes the build
skip it with a message).
"""
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension
from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
SIMT = CSRC / "simt"
DEFAULT_ARCHS = "80;86;89;90"

sys.path.insert(0, str(CSRC))
sys.path.insert(0, str(SIMT))
import simt_build  # noqa: E402  (the SIMT kernel sources and flags, shared with mutation_check.py)
import sources  # noqa: E402  (which csrc/ files each extension compiles)


def log(msg: str) -> None:
    print(f"fastflow build: {msg}", flush=True)


def find_nvcc():
    if os.environ.get("FASTFLOW_NO_CUDA", "") not in ("", "0"):
        log("FASTFLOW_NO_CUDA is set: building the CPU-only extension")
        return None
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]) / "bin" / "nvcc")
    which = shutil.which("nvcc")
    if which:
        candidates.append(Path(which))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    log("nvcc not found (set CUDA_HOME or put nvcc on PATH): building the CPU-only extension")
    return None


def cuda_dirs(top: Path, names):
    """Candidate folders `names` of a CUDA toolkit at `top`: the top level first, then every
    targets/<triple>/ (x86_64-linux, sbsa-linux, aarch64-linux, ...), the host's own triple first."""
    host = {"x86_64": "x86_64-linux", "aarch64": "sbsa-linux", "arm64": "sbsa-linux"}.get(os.uname().machine, "")
    targets = sorted((top / "targets").glob("*"), key=lambda t: (t.name != host, t.name))
    return [base / n for base in (top, *targets) for n in names]


def cuda_layout(nvcc: str):
    """(version, include dir, library dir) of the toolkit behind `nvcc` (which may be a wrapper)."""
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"V(\d+\.\d+\.\d+)", out) or re.search(r"release (\d+\.\d+)", out)
    version = m.group(1) if m else "unknown"
    dry = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull], capture_output=True, text=True)
    top = None
    for line in (dry.stdout + dry.stderr).splitlines():
        m = re.match(r"#\$ TOP=(.*)$", line.strip())
        if m:
            top = Path(m.group(1)).resolve()
    if top is None:
        top = Path(nvcc).resolve().parent.parent
    incs = [d for d in cuda_dirs(top, ("include",)) if (d / "cuda_runtime.h").exists()]
    libs = [d for d in cuda_dirs(top, ("lib64", "lib")) if (d / "libcudart_static.a").exists()]
    if not incs or not libs:
        raise RuntimeError(f"fastflow build: found nvcc at {nvcc} but not cuda_runtime.h / libcudart_static.a under {top}")
    return version, str(incs[0]), str(libs[0])


def gencode_flags(archs: str):
    """'80;86;90' -> -gencode flags for each SASS target plus PTX of the newest."""
    items = [a.strip() for a in archs.replace(",", ";").split(";") if a.strip()]
    if not items:
        raise RuntimeError("FASTFLOW_CUDA_ARCHS is empty")
    flags = []
    for a in items:
        if not re.fullmatch(r"\d+[af]?", a):
            raise RuntimeError(f"FASTFLOW_CUDA_ARCHS entry {a!r} is not like 80, 90 or 90a")
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    newest = max(items, key=lambda a: int(re.match(r"\d+", a).group(0)))
    if not newest.endswith(("a", "f")):  # arch-specific features have no forward-compatible PTX
        flags += ["-gencode", f"arch=compute_{newest},code=compute_{newest}"]
    return items, flags


def jobs() -> int:
    return max(1, int(os.environ.get("FASTFLOW_BUILD_JOBS", os.cpu_count() or 1)))


def run_compile(name: str, cmd) -> None:
    log(f"compile {name}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.stdout.strip() or r.stderr.strip():
        print(r.stdout + r.stderr, flush=True)
    if r.returncode != 0:
        raise RuntimeError(f"compilation of {name} failed:\n" + " ".join(cmd))


class BuildExt(build_ext):
    def build_extensions(self):
        # Always link the extensions anew: setuptools skips an extension whose .so in build/ is newer
        # than its C++ sources, which kept a CPU-only _C (no FASTFLOW_WITH_CUDA, no kernel objects)
        # when the same tree was rebuilt with nvcc. The kernel objects are compiled on every build.
        self.force = True
        for ext in list(self.extensions):
            if ext.name == "fastflow._simt":
                self.prepare_simt(ext)
            else:
                self.prepare_c(ext)
        super().build_extensions()

    def build_extension(self, ext):
        # Both extensions compile bindings.cpp (with different macros): separate object directories.
        base = self.build_temp
        self.build_temp = os.path.join(base, ext.name.rsplit(".", 1)[-1])
        try:
            super().build_extension(ext)
        finally:
            self.build_temp = base

    def prepare_simt(self, ext):
        if os.environ.get("FASTFLOW_NO_SIMT", "") not in ("", "0"):
            log("FASTFLOW_NO_SIMT is set: not building fastflow._simt")
            self.extensions.remove(ext)
            return
        cxx = (getattr(self.compiler, "compiler_cxx", None) or ["c++"])[0]
        out_dir = Path(self.build_temp) / "simt"
        out_dir.mkdir(parents=True, exist_ok=True)

        def one(src: Path) -> str:
            obj = out_dir / simt_build.kernel_object_name(src)
            run_compile(f"{src.relative_to(ROOT)} (SIMT host build)",
                        [cxx, *flags, "-c", str(src), "-o", str(obj)])
            return str(obj)

        try:
            flags = simt_build.kernel_flags(cxx)
            with ThreadPoolExecutor(max_workers=jobs()) as pool:
                ext.extra_objects += list(pool.map(one, simt_build.kernel_sources()))
        except (RuntimeError, OSError) as e:
            log(f"not building fastflow._simt (the SIMT host runtime): {e}")
            self.extensions.remove(ext)

    def prepare_c(self, ext):
        nvcc = find_nvcc()
        archs = ""
        version = ""
        if nvcc is not None:
            version, inc, libdir = cuda_layout(nvcc)
            archs = os.environ.get("FASTFLOW_CUDA_ARCHS", DEFAULT_ARCHS)
            items, gencode = gencode_flags(archs)
            log(f"nvcc {version} at {nvcc}; CUDA archs {';'.join(items)} (+PTX)")
            objects = self.compile_cuda(nvcc, gencode, inc)
            ext.extra_objects += objects
            ext.include_dirs.append(inc)
            ext.library_dirs.append(libdir)
            ext.libraries += ["cudart_static", "rt", "pthread", "dl"]
            ext.define_macros.append(("FASTFLOW_WITH_CUDA", "1"))
        ext.define_macros += [("FASTFLOW_CUDA_ARCHS", f'"{archs}"'), ("FASTFLOW_NVCC_VERSION", f'"{version}"')]

    def compile_cuda(self, nvcc, gencode, inc):
        kernels = sources.kernel_sources()
        out_dir = Path(self.build_temp) / "cuda"
        out_dir.mkdir(parents=True, exist_ok=True)
        extra = os.environ.get("FASTFLOW_NVCC_FLAGS", "").split()

        def one(src: Path) -> str:
            obj = out_dir / sources.object_name(src)
            run_compile(f"{src.relative_to(ROOT)} (nvcc)", [
                nvcc, "-c", str(src), "-o", str(obj), "-std=c++17", "-O3", "-I", str(CSRC), "-I", inc,
                "-Xcompiler", "-fPIC", "--expt-relaxed-constexpr", "-DFASTFLOW_WITH_CUDA=1",
                "-Xptxas", "-warn-spills", "-Werror", "cross-execution-space-call", *gencode, *extra])
            return str(obj)

        with ThreadPoolExecutor(max_workers=jobs()) as pool:
            return list(pool.map(one, kernels))


def rel(paths):
    return sorted(str(p.relative_to(ROOT)) for p in paths)


# The C++ sources of each extension compile in parallel (FASTFLOW_BUILD_JOBS, default: CPU count).
ParallelCompile("FASTFLOW_BUILD_JOBS", default=0).install()

ext_c = Pybind11Extension(
    "fastflow._C",
    rel(sources.c_sources()),
    include_dirs=[str(CSRC)],
    cxx_std=17,
    extra_compile_args=["-O3"],
)
# The same bindings (CUDA ops only), the SIMT runtime, and the kernel objects of prepare_simt.
ext_simt = Pybind11Extension(
    "fastflow._simt",
    rel(sources.simt_sources()),
    include_dirs=[str(CSRC)],
    define_macros=[("FASTFLOW_SIMT", "1")],
    cxx_std=17,
    extra_compile_args=["-O2"],
)

setup(ext_modules=[ext_c, ext_simt], cmdclass={"build_ext": BuildExt})
