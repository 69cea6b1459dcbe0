"""build: ``pip -v install`` of the tree for FASTFLOW_CUDA_ARCHS (sm_90 by default), in place when pip
cannot build a wheel; not rebuilt when the installed build matches the stamp of this machine's last
build (csrc tree, setup.py, archs), and never over an editable install of the tree."""
import hashlib
import json
import os
import re

from ..procs import ROOT, Proc, first_line, quick_output


def installed(s):
    """(extension file, mtime, build_info) of the fastflow that Python imports outside the tree."""
    code = ("import json, os, fastflow, fastflow._backend as b\n"
            "f = b.load().__file__\n"
            "print(json.dumps({'file': f, 'mtime': os.path.getmtime(f), 'info': fastflow.build_info()}))")
    rc, out = quick_output([s.py, "-c", code], 60, s.env)
    try:
        return json.loads(out.strip().splitlines()[-1]) if rc == 0 else None
    except (ValueError, IndexError):
        return None


def stamp_path(s):
    return os.path.join(s.work, "build_stamp.json")


def adopt_stamp(s):
    """The stamp of this machine's last build by the suite; an in-place build is put on PYTHONPATH."""
    try:
        with open(stamp_path(s)) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    if stamp.get("mode") == "inplace" and ROOT not in s.env.get("PYTHONPATH", "").split(os.pathsep):
        s.env["PYTHONPATH"] = ROOT + os.pathsep + s.env.get("PYTHONPATH", "")
    return stamp


def build_key(s):
    with open(os.path.join(ROOT, "setup.py"), "rb") as f:
        setup = hashlib.sha1(f.read()).hexdigest()
    return {"csrc_tree": s.record["csrc_tree"], "setup_py": setup, "archs": s.env["FASTFLOW_CUDA_ARCHS"]}


def can_build_wheel(s):
    code = ("import setuptools, importlib.util as u\n"
            "v = tuple(int(x) for x in setuptools.__version__.split('.')[:2])\n"
            "print(v >= (70, 1) or u.find_spec('wheel') is not None)")
    rc, out = quick_output([s.py, "-c", code], 60, s.env)
    return rc == 0 and out.strip().endswith("True")


def build(s, deadline):
    key = build_key(s)
    stamp = adopt_stamp(s)
    have = installed(s)
    if (have and stamp and have["info"].get("cuda_compiled")
            and {k: stamp.get(k) for k in (*key, "file", "mtime")} == dict(key, file=have["file"], mtime=have["mtime"])):
        return "passed", "installed build matches the csrc tree and setup.py: not rebuilt", {
            "rebuilt": False, "build_info": have["info"]}
    in_tree = have and os.path.realpath(have["file"]).startswith(os.path.realpath(ROOT) + os.sep)
    if in_tree and (stamp or {}).get("mode") != "inplace":
        # an editable (developer) install of this very tree: reinstalling would replace it
        return "skipped", f"fastflow is installed editable from this tree ({have['file']}): not rebuilt", {
            "rebuilt": False, "build_info": have["info"]}
    log = s.live("build")
    # the GPU machine needs the CUDA build only: no SIMT host build of the kernels (fastflow._simt)
    env = dict(s.env, FASTFLOW_BUILD_JOBS=str(os.cpu_count() or 1), FASTFLOW_NO_SIMT="1")
    mode = "pip"
    if not can_build_wheel(s):
        mode = "inplace"  # setuptools < 70.1 without `wheel`: no bdist_wheel, build next to the sources
    if mode == "pip":
        p = Proc([s.py, "-m", "pip", "install", "-v", "--no-build-isolation", "--no-deps", ROOT], log, env)
        p.wait(deadline)
        if p.rc not in (0, 124) and "fastflow build: " not in p.text():
            # pip refused before compiling anything (packaging, not the code): build in place
            s.settle(p)
            os.replace(os.path.join(s.logs, "build.log"), os.path.join(s.logs, "build_pip.log"))
            mode = "inplace"
    if mode == "inplace":
        p = Proc([s.py, "setup.py", "build_ext", "--inplace"], log, env, cwd=ROOT)
        p.wait(deadline)
        if p.rc == 0:
            s.env["PYTHONPATH"] = ROOT + os.pathsep + s.env.get("PYTHONPATH", "")
    text = p.text()
    s.settle(p)
    messages = [ln.strip() for ln in text.splitlines()
                if re.search(r"fastflow build:|warning|spill|[Ee]rror|ptxas", ln)
                and not re.search(r"Werror|byte-compiling is disabled|_BetaConfiguration|warnings\.warn", ln)][:60]
    result = {"rebuilt": True, "mode": mode, "messages": messages, "seconds": p.seconds}
    if p.timed_out:
        return "timed out", f"build not finished in {p.seconds:.0f} s", result
    if p.rc != 0:
        return "failed", f"build failed (rc {p.rc}): {first_line(text)}", result
    have = installed(s)
    if not have:
        return "failed", "built, but `import fastflow` fails outside the tree", result
    result["build_info"], result["extension"] = have["info"], have["file"]
    if not have["info"].get("cuda_compiled"):
        return "failed", "the build has no CUDA kernels (nvcc not found?)", result
    with open(stamp_path(s), "w") as f:
        json.dump(dict(key, file=have["file"], mtime=have["mtime"], mode=mode), f)
    return "passed", f"{mode} build, archs {have['info'].get('cuda_archs')}", result
