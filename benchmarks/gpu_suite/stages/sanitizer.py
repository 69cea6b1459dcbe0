"""sanitizer: compute-sanitizer memcheck + racecheck on a small forward (benchmarks/sanitize_forward.py),
in parallel; initcheck and synccheck beside them when the budget allows. Any tool's findings fail
the stage; compute-sanitizer refusing the machine's GPU is a skip, not a finding."""
import os
import re
import shutil
import time

from ..procs import BENCH, Proc, first_line, sanitizer_finding

SANITIZER_GRACE = 45  # --quick: seconds initcheck / synccheck may run on after memcheck and racecheck
# compute-sanitizer refusing the machine (seen on gVisor GPU machines), not a finding about fastflow
UNSUPPORTED = re.compile(r"Device not supported|Unable to find injection library|unsupported (device|driver)", re.I)


def sanitizer(s, deadline):
    if shutil.which("compute-sanitizer") is None:
        return "skipped", "compute-sanitizer not on PATH", {}
    tools = [t for t in s.args.sanitizers.split(",") if t]
    main = tools[:2]
    if s.args.quick and s.left() < 300:
        tools = main  # initcheck / synccheck only when the budget leaves room for them
    script = os.path.join(BENCH, "sanitize_forward.py")
    procs = {}
    for tool in tools:
        cmd = ["compute-sanitizer", "--tool", tool, "--error-exitcode", "3", "--print-limit", "20",
               s.py, script, "--size", s.args.sanitizer_size]
        procs[tool] = Proc(cmd, s.live(f"sanitizer_{tool}"), s.env)
    res, statuses = {}, []
    for tool in main:
        procs[tool].wait(deadline)
    # the extra tools must not hold the stage up for long once the main two are done
    extra_deadline = min(deadline, time.time() + SANITIZER_GRACE) if s.args.quick else deadline
    for tool, p in procs.items():
        p.wait(deadline if tool in main else extra_deadline)
        text = p.text()
        s.settle(p)
        summary = re.search(r"ERROR SUMMARY: (\d+) error", text)
        if p.timed_out:
            res[tool] = f"timed out after {p.seconds:.0f} s"
            st = "timed out"
        elif UNSUPPORTED.search(text) and "sanitize_forward: done" not in text:
            res[tool], st = f"not run: compute-sanitizer cannot use this machine's GPU ({first_line(text, 160)})", "skipped"
        elif p.rc == 0 and "sanitize_forward: done" in text:
            res[tool], st = "clean", "passed"
        else:
            res[tool], st = sanitizer_finding(text, p.rc), "failed"
        if summary:
            res[tool + "_errors"] = int(summary.group(1))
        res[tool + "_seconds"] = p.seconds
        # every tool's findings fail the stage; only an extra tool cut short by the --quick grace
        # (after memcheck and racecheck are done) is recorded without failing it
        if tool in main or st != "timed out":
            statuses.append(st)
    status = next((st for st in ("failed", "timed out") if st in statuses), "passed")
    if statuses and all(st == "skipped" for st in statuses):
        status = "skipped"  # e.g. gVisor machines: "Device not supported" (not fastflow's fault)
    note = ", ".join(f"{t}: {res[t]}" for t in procs)
    return status, note[:400], {"tools": res}
