"""The pytest stages: model_tests (tests/test_model_cuda.py, measured errors printed with -rA), op_tests
(one pytest per op file, -m cuda, --maxfail; a --redo call runs only the files the last call did not
finish) and all_tests (the whole suite). Counts come from each run's junit file, or from its -v lines
when it was killed before writing one."""
import os
import re
import time

from ..procs import ROOT, Proc, junit_counts, verbose_counts

OP_TEST_FILES = ("cuda_io_ops", "flow_head", "conv_lrelu", "deconv_lrelu", "reliability", "io", "tracking", "viz")
OP_TEST_WEIGHT = {"cuda_io_ops": 100, "flow_head": 110, "conv_lrelu": 200, "deconv_lrelu": 100}  # ~ CUDA tests each


class NoPytest(Exception):
    """The machine's Python has no pytest (no network to install it)."""


def run_pytest(s, name, files, deadline, marker="cuda", extra=()):
    """One pytest process: (Proc, counts, failed test ids, measured-error lines)."""
    if s.record["suite"]["modules"].get("pytest") is False:
        raise NoPytest()
    log = s.live(name)
    junit = os.path.join(s.logs, f"junit_{name}.xml")
    cmd = [s.py, "-m", "pytest", *files, "-v", "-rA", "--tb=short", "-p", "no:cacheprovider",
           "-o", "faulthandler_timeout=60", f"--junitxml={junit}", *extra]
    if marker:
        cmd += ["-m", marker]
    p = Proc(cmd, log, s.env)
    p.wait(deadline)
    text = p.text()
    s.settle(p)
    counts, failed = junit_counts(junit)
    if counts is None:
        counts, failed = verbose_counts(text)
    measured = [m.group(0).strip()[:200] for m in re.finditer(r"^.*rel err.*$", text, re.M)]
    return p, counts, failed, measured


def tests_status(counts, timed_out, rc):
    if counts["failed"] or counts["errors"]:
        return "failed"
    if timed_out:
        return "timed out"
    if rc not in (0, 5):
        return "failed"
    if counts["passed"] == 0:
        return "skipped"
    return "passed"


def model_tests(s, deadline):
    p, counts, failed, measured = run_pytest(s, "model_tests", [os.path.join(ROOT, "tests", "test_model_cuda.py")], deadline)
    status = tests_status(counts, p.timed_out, p.rc)
    note = f"{counts['passed']} passed, {counts['failed']} failed, {counts['errors']} errors, {counts['skipped']} skipped"
    if status == "skipped":
        note += " (no test ran: no GPU visible to PyTorch)"
    return status, note, {"counts": counts, "failed_tests": failed, "measured_errors": measured, "rc": p.rc}


def op_tests(s, deadline):
    """One pytest per op file; each file's outcome enters the record as soon as it is known, and a
    --redo call runs only the files the last call did not finish."""
    files = [(f, "cuda") for f in OP_TEST_FILES] + [("fuzz", None)]  # fuzz: CPU and CUDA both, unmarked
    per_file = dict(s.carried_files)
    total = dict.fromkeys(("passed", "failed", "skipped", "errors"), 0)

    def result():
        out = {"counts": dict(total), "failed_tests": [], "files": per_file}
        for d in per_file.values():
            for k in total:
                out["counts"][k] += d.get("counts", {}).get(k, 0)
            out["failed_tests"] += d.get("failed_tests", [])
        return out

    todo = [(f, m) for f, m in files if per_file.get(f, {}).get("status") not in ("passed", "failed", "skipped")]
    for i, (f, marker) in enumerate(todo):
        left = deadline - time.time()
        if left < 10:
            per_file[f] = {"status": "timed out", "note": "not started: stage time used up"}
            continue
        # a share of what is left by the file's size (x1.5 slack): a hung file cannot starve the rest
        weight = OP_TEST_WEIGHT.get(f, 5)
        share = max(20.0, 1.5 * left * weight / sum(OP_TEST_WEIGHT.get(g, 5) for g, _ in todo[i:]))
        p, counts, failed, _ = run_pytest(s, f"op_tests_{f}", [os.path.join(ROOT, "tests", f"test_{f}.py")],
                                          min(deadline, time.time() + share), marker, ("--maxfail=25",))
        per_file[f] = {"status": tests_status(counts, p.timed_out, p.rc), "counts": counts,
                       "failed_tests": failed, "seconds": p.seconds}
        s.record["stages"]["op_tests"]["result"] = result()  # a killed call keeps the files done
        s.save()
    statuses = [d["status"] for d in per_file.values()]
    status = next((st for st in ("failed", "timed out", "passed") if st in statuses), "skipped")
    res = result()
    c = res["counts"]
    note = f"{c['passed']} passed, {c['failed']} failed, {c['errors']} errors, {c['skipped']} skipped"
    if s.carried_files:
        note += f" ({len(s.carried_files)} files carried over)"
    return status, note, res


def all_tests(s, deadline):
    p, counts, failed, measured = run_pytest(s, "all_tests", [os.path.join(ROOT, "tests")], deadline, marker=None)
    status = tests_status(counts, p.timed_out, p.rc)
    return status, f"{counts['passed']} passed, {counts['failed']} failed", {
        "counts": counts, "failed_tests": failed, "measured_errors": measured, "rc": p.rc}
