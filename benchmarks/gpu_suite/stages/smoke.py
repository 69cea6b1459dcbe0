"""smoke: benchmarks/smoke_cuda.py, every op and layer shape in four precisions against the reference,
then the model. Without a GPU: the CPU versions at tiny sizes, then (when the build has the SIMT host
runtime) the CUDA kernels themselves on the CPU for a share of the stage's time."""
import os
import re
import time

from ..procs import BENCH, Proc, first_line
from .build import installed

SMOKE_SIMT_SHARE = 45  # dry run: seconds of the smoke stage for the SIMT part (when the build has it)


def smoke_run(s, name, args, deadline):
    """One smoke_cuda.py process: (Proc, its CASE lines as {name: "ok ..." | "FAIL ..."}, log text)."""
    p = Proc([s.py, os.path.join(BENCH, "smoke_cuda.py"), *args], s.live(name), s.env)
    p.wait(deadline)
    text = p.text()
    s.settle(p)
    cases = {m.group(1): m.group(2) + " " + m.group(3).strip()
             for m in re.finditer(r"^CASE (.+?): (ok|FAIL) (.*)$", text, re.M)}
    return p, cases, text


def has_simt(s):
    have = installed(s)
    return bool(have and have["info"].get("simt"))


def smoke(s, deadline):
    if s.has_gpu:
        p, cases, text = smoke_run(s, "smoke", ["--device", "cuda"], deadline)
        simt = None
    else:
        # the CPU versions of the ops; then, when the build has the SIMT host runtime, the CUDA
        # kernels themselves on the CPU (io, flow head, fp16 convs) for what is left of the stage's
        # time, at most SMOKE_SIMT_SHARE s: cut short there, it does not fail the stage
        p, cases, text = smoke_run(s, "smoke", ["--device", "cpu", "--tiny"], deadline)
        simt = None
        share = min(SMOKE_SIMT_SHARE, deadline - time.time())
        if not p.timed_out and share > 20 and has_simt(s):
            q, simt_cases, _ = smoke_run(s, "smoke_simt", ["--simt", "--tiny", "--only", "io,flow_head,conv,deconv",
                                                           "--precisions", "fp16"], time.time() + share)
            cases.update(simt_cases)
            simt = {"cases": len(simt_cases), "rc": q.rc, "cut_short": q.timed_out}
    failed = sum(v.startswith("FAIL") for v in cases.values())
    result = {"device": "cuda" if s.has_gpu else "cpu", "passed": len(cases) - failed, "failed": failed,
              "cases": cases}
    note_simt = ""
    if simt is not None:
        result["simt"] = simt
        note_simt = f" (+{simt['cases']} through the SIMT runtime{', cut short at its time share' if simt['cut_short'] else ''})"
        if simt["rc"] not in (0, 124) and not any(v.startswith("FAIL") for k, v in cases.items() if k.endswith(" simt")):
            failed += 1  # died without a FAIL line: count it
            result["failed"] = failed
    if p.timed_out:
        return "timed out", f"{len(cases)} cases done before the timeout, {failed} failed", result
    if not cases:
        return "failed", f"no case ran (rc {p.rc}): {first_line(text)}", result
    if p.rc != 0 or failed:
        bad = [k for k, v in cases.items() if v.startswith("FAIL")][:3]
        return "failed", f"{failed} of {len(cases)} cases failed (rc {p.rc}): {'; '.join(bad)}{note_simt}", result
    plain = len(cases) - (simt["cases"] if simt else 0)
    return "passed", f"{plain} cases on {result['device']}{note_simt}", result
