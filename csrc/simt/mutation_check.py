"""Mutation check of the SIMT tests: does `pytest -m simt` notice a deleted barrier, a wrong
cp.async wait depth or a dropped tile offset anywhere in csrc/?

    python csrc/simt/mutation_check.py [--list] [--only SUBSTRING] [--jobs N] [--decrease] [--json OUT]

Enumerates the mutations of every kernel source of the project (csrc/**/*.cu, *.cuh; the fixture
kernels in csrc/simt/fixtures.cu are deliberately buggy test material and not mutated):
  - each `__syncthreads();` statement deleted;
  - each `cp_async_wait<D>()` call with the depth raised to D + 1 (one group too few waited);
  - each block tile origin `m0 + ` / `n0 + ` dropped from an index (the block writes tile 0);
  - with --decrease also D - 1 (waits for more than needed: semantically equivalent, slower; these
    are expected to survive and are reported apart).
For each, it builds fastflow._simt from a mutated copy of csrc/ into a temporary directory
(objects of untouched translation units are reused), puts it beside a copy of the fastflow package
and runs the SIMT tests of the mutated file (see TESTS) against that copy with -x. A mutation is
"caught" when those tests fail. Prints one line per mutation and a summary; exit status 1 if a
deleted barrier or a raised depth survived. It needs fastflow/_C*.so in the source tree (python
setup.py build_ext --inplace), the normal build's compiler and pybind11, and
takes minutes per mutation on 2 cores (the runtime's checks, not timing, decide).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

SIMT = Path(__file__).resolve().parent
CSRC = SIMT.parent
ROOT = CSRC.parent
sys.path.insert(0, str(SIMT))
import simt_build  # noqa: E402
import sources  # noqa: E402  (csrc/sources.py, on the path simt_build set)

# The SIMT tests that exercise each kernel source, by its path under csrc/ (a mutation elsewhere in
# the file's kernels can only show there; `pytest -m simt` runs them all).
IGEMM_TESTS = ["tests/ops/test_conv2d_lrelu.py", "tests/ops/test_deconv_lrelu.py", "tests/test_simt_plan_coverage.py",
               "-m", "simt"]
TESTS = {
    "igemm/igemm.cuh": IGEMM_TESTS,
    "igemm/igemm.cu": IGEMM_TESTS,
    "igemm/ptx.cuh": ["tests/test_simt_ptx.py", *IGEMM_TESTS],
    "ops/flow_head/flow_head.cu": ["tests/ops/test_flow_head.py", "-m", "simt"],
    "ops/normalize_pack/normalize_pack.cu": ["tests/ops/test_normalize_pack.py", "-m", "simt"],
    "ops/upsample_flow/upsample_flow.cu": ["tests/ops/test_upsample_flow.py", "-m", "simt"],
    "ops/warp/warp.cu": ["tests/ops/test_warp.py", "-m", "simt"],
    "ptx_probe/ptx_probe.cu": ["tests/test_simt_ptx.py"],
}

BARRIER = re.compile(r"__syncthreads\(\);")
WAIT = re.compile(r"cp_async_wait<([^<>()]+)>\(\)")
# A block's tile origin dropped from a row or column index (`n0 + c` -> `c`): the block then
# overwrites tile 0's rows/columns and leaves its own unwritten, which only a launch with several
# tiles along that axis shows (tests/test_simt_plan_coverage.py runs one per model plan class).
TILE_OFFSET = re.compile(r"\b([mn]0) \+ ")


@dataclass
class Mutation:
    path: Path  # relative to csrc/
    line: int
    kind: str  # "delete barrier", "drop tile offset m0|n0", "wait depth +1", "wait depth -1"
    old: str
    new: str
    expect_caught: bool

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: `{self.old.strip()}` -> `{self.new.strip() or '(deleted)'}`"


def _code_part(line: str) -> str:
    return line.split("//", 1)[0]


def enumerate_mutations(decrease: bool):
    files = sources.kernel_sources() + sources.kernel_headers()
    out = []
    for f in files:
        rel = f.relative_to(CSRC)
        for i, line in enumerate(f.read_text().splitlines(), 1):
            code = _code_part(line)
            if "#define" in code:
                continue
            for m in BARRIER.finditer(code):
                out.append(Mutation(rel, i, "delete barrier", line, line[: m.start()] + line[m.end():], True))
            for m in TILE_OFFSET.finditer(code):
                out.append(Mutation(rel, i, f"drop tile offset {m.group(1)}", line,
                                    line[: m.start()] + line[m.end():], True))
            for m in WAIT.finditer(code):
                depth = m.group(1)
                up = line[: m.start(1)] + f"({depth}) + 1" + line[m.end(1):]
                out.append(Mutation(rel, i, "wait depth +1", line, up, True))
                if decrease and depth.strip() != "0":
                    down = line[: m.start(1)] + f"({depth}) - 1" + line[m.end(1):]
                    out.append(Mutation(rel, i, "wait depth -1", line, down, False))
    return out


def _includes(src: Path, header: Path) -> bool:
    """Whether kernel source `src` is `header` (relative to csrc/) or includes it directly."""
    text = src.read_text()
    return (src.relative_to(CSRC) == header or f'"{header.as_posix()}"' in text or f'"{header.name}"' in text
            or f'"../{header.name}"' in text)


class Builder:
    """Builds fastflow._simt from a (mutated) copy of csrc/ with the flags of the real build."""

    def __init__(self, work: Path, jobs: int):
        self.work, self.jobs = work, jobs
        self.cxx = os.environ.get("CXX", "g++")
        self.kflags = simt_build.kernel_flags(self.cxx)
        import pybind11

        self.pyflags = ["-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden", "-DFASTFLOW_SIMT=1",
                        "-I", pybind11.get_include(), "-I", sysconfig.get_paths()["include"]]
        self.base_objs = work / "base_objs"
        self.base_objs.mkdir(parents=True, exist_ok=True)
        self.suffix = sysconfig.get_config_var("EXT_SUFFIX")

    def _cc(self, args):
        r = subprocess.run([self.cxx, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-3000:])

    def build_base(self, src_root: Path):
        """Objects of every translation unit of the unmutated tree (reused by each mutation)."""
        jobs = [(s, self.base_objs / simt_build.kernel_object_name(s), True) for s in simt_build.kernel_sources()]
        for s in sources.simt_sources():
            jobs.append((s, self.base_objs / ("host_" + sources.object_name(s)), False))
        self._compile_all(src_root, jobs)

    def _compile_all(self, src_root: Path, jobs):
        def one(job):
            src, obj, kernel = job
            src = src_root / src.relative_to(CSRC)
            flags = ([*self.kflags] if kernel else [*self.pyflags, "-I", str(src_root)])
            if kernel:  # point the include paths at the (mutated) copy
                flags = [str(src_root / Path(f).relative_to(CSRC)) if f.startswith(str(CSRC)) else f for f in flags]
            self._cc([*flags, "-c", str(src), "-o", str(obj)])

        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(one, jobs))

    def build_mutant(self, m: Mutation, out_dir: Path) -> Path:
        src_root = out_dir / "csrc"
        shutil.copytree(CSRC, src_root, ignore=shutil.ignore_patterns("__pycache__"))
        target = src_root / m.path
        lines = target.read_text().splitlines(keepends=True)
        assert lines[m.line - 1].rstrip("\n") == m.old, f"{m.path}:{m.line} changed since enumeration"
        lines[m.line - 1] = m.new + "\n"
        target.write_text("".join(lines))
        objs = {o.name: o for o in self.base_objs.glob("*.o")}
        rebuild = [s for s in simt_build.kernel_sources() if _includes(s, m.path)]
        jobs = []
        for s in rebuild:
            obj = out_dir / simt_build.kernel_object_name(s)
            objs[obj.name] = obj
            jobs.append((s, obj, True))
        self._compile_all(src_root, jobs)
        so = out_dir / ("_simt" + self.suffix)
        self._cc(["-shared", *[str(o) for o in objs.values()], "-o", str(so)])
        return so


def run_tests(so: Path, m: Mutation, pkg_copy: Path) -> tuple:
    shutil.copy2(so, pkg_copy / "fastflow" / so.name)
    args = TESTS.get(m.path.as_posix(), ["-m", "simt", "tests"])
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args]
    env = dict(os.environ, PYTHONPATH=str(pkg_copy))
    t0 = time.time()
    r = subprocess.run(cmd, cwd=pkg_copy, env=env, capture_output=True, text=True)
    tail = [ln for ln in r.stdout.splitlines() if ln.startswith(("FAILED", "E ")) or " passed" in ln or " failed" in ln]
    return r.returncode, time.time() - t0, tail[:3]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="only list the mutations")
    ap.add_argument("--only", action="append", default=[], help="run mutations whose name contains this")
    ap.add_argument("--decrease", action="store_true", help="also lower wait depths (equivalent mutants)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    muts = enumerate_mutations(args.decrease)
    if args.only:
        muts = [m for m in muts if any(s in m.name for s in args.only)]
    if args.list:
        for m in muts:
            print(m.name)
        print(f"{len(muts)} mutations")
        return 0
    if not list((ROOT / "fastflow").glob("_C*.so")):
        # The package copy needs the source tree's own fastflow._C (the tests plan conv/deconv calls
        # with it); without one, another installed fastflow's could be imported instead.
        print("fastflow/_C*.so is missing from the source tree: build it in place first "
              "(python setup.py build_ext --inplace)")
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="ff_mutation_") as tmp:
        work = Path(tmp)
        pkg = work / "pkg"
        shutil.copytree(ROOT / "fastflow", pkg / "fastflow", ignore=shutil.ignore_patterns("__pycache__", "_simt*.so"))
        shutil.copytree(ROOT / "tests", pkg / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(ROOT / "pyproject.toml", pkg / "pyproject.toml")
        builder = Builder(work, args.jobs)
        print(f"building the unmutated objects ({len(simt_build.kernel_sources())} kernel sources) ...", flush=True)
        builder.build_base(CSRC)
        # The unmutated build must pass the tests the mutations use, from the package copy.
        base = work / "base"
        base.mkdir()
        so = base / ("_simt" + builder.suffix)
        builder._cc(["-shared", *[str(o) for o in builder.base_objs.glob("*.o")], "-o", str(so)])
        for files in sorted({m.path.as_posix() for m in muts}):
            probe_m = next(m for m in muts if m.path.as_posix() == files)
            rc, secs, tail = run_tests(so, probe_m, pkg)
            print(f"unmutated: {' '.join(TESTS.get(files, ['-m', 'simt']))}: exit {rc} ({secs:.0f} s)", flush=True)
            if rc != 0:
                print("the unmutated build fails these tests; fix that first:", *tail, sep="\n  ")
                return 2
        where = subprocess.run([sys.executable, "-c", "import fastflow._simt as s; print(s.__file__)"], cwd=pkg,
                               env=dict(os.environ, PYTHONPATH=str(pkg)), capture_output=True, text=True).stdout
        if not where.startswith(str(pkg)):
            print(f"the package copy is not the one imported ({where.strip()}); cannot test mutants")
            return 2
        for i, m in enumerate(muts, 1):
            d = work / f"m{i}"
            d.mkdir()
            t0 = time.time()
            try:
                so = builder.build_mutant(m, d)
                rc, secs, tail = run_tests(so, m, pkg)
                status = "caught" if rc == 1 else "survived" if rc == 0 else f"error (pytest exit {rc})"
            except RuntimeError as e:
                status, secs, tail = "build failed", 0.0, [str(e).splitlines()[-1] if str(e) else ""]
            shutil.rmtree(d, ignore_errors=True)
            results.append({"mutation": m.name, "expect_caught": m.expect_caught, "status": status,
                            "seconds": round(time.time() - t0, 1), "evidence": tail})
            print(f"[{i}/{len(muts)}] {status:9s} {m.name} ({time.time() - t0:.0f} s)"
                  + (f"\n      {tail[0][:200]}" if tail and status == "caught" else ""), flush=True)
    must = [r for r in results if r["expect_caught"]]
    missed = [r for r in must if r["status"] != "caught"]
    equiv = [r for r in results if not r["expect_caught"]]
    print(f"\n{len(must) - len(missed)} of {len(must)} barrier deletions / raised wait depths / dropped tile offsets caught"
          + (f"; {sum(r['status'] == 'survived' for r in equiv)} of {len(equiv)} lowered depths (equivalent) "
             "survived, as expected" if equiv else ""))
    for r in missed:
        print(f"  NOT CAUGHT: {r['mutation']} ({r['status']})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
