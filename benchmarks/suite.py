"""The GPU suite behind gpu_suite.sh: tests, compute-sanitizer, benchmarks -> one JSON record.

Stages (each can be skipped; each writes its part to OUTDIR/parts/ so a suite split over several
device calls still ends in one record): tests, sanitizer (a small forward under memcheck,
racecheck, initcheck, synccheck), sanitize_tests (the CUDA op tests under the same tools; slow, not
in the default list), bench, layers (per-layer table). The record's format is
DESIGN.md section 8, plus the build info and the per-layer table.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from treehash import tree_hash  # noqa: E402


def sh(cmd, timeout, **kw):
    t0 = time.time()
    try:
        if subprocess.run(["which", cmd[0]], capture_output=True).returncode != 0 and not os.path.exists(cmd[0]):
            return 127, f"{cmd[0]}: not found", 0.0
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=kw.pop("cwd", "/tmp"), **kw)
        return r.returncode, r.stdout + r.stderr, time.time() - t0
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + f"\n[timed out after {timeout} s]", time.time() - t0


def part(outdir, name, data=None):
    path = os.path.join(outdir, "parts", name + ".json")
    if data is None:
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        return None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    return data


def stage_tests(outdir, timeout):
    junit = os.path.join(outdir, "junit.xml")
    rc, out, dt = sh([sys.executable, "-m", "pytest", os.path.join(ROOT, "tests"), "-q", "-rfEs", "-p", "no:cacheprovider",
                      f"--junitxml={junit}"], timeout)
    with open(os.path.join(outdir, "tests.log"), "w") as f:
        f.write(out)
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    failures = []
    if os.path.exists(junit):
        for case in ET.parse(junit).getroot().iter("testcase"):
            kinds = {c.tag for c in case}
            if "failure" in kinds or "error" in kinds:
                counts["failed" if "failure" in kinds else "errors"] += 1
                failures.append(f"{case.get('classname')}::{case.get('name')}")
            elif "skipped" in kinds:
                counts["skipped"] += 1
            else:
                counts["passed"] += 1
    measured = re.findall(r"rel err[^\n]*", out)
    return {"tests": counts, "tests_failed": failures[:50], "tests_rc": rc, "tests_seconds": round(dt, 1),
            "tests_measured_errors": measured[:100]}


def stage_sanitizer(outdir, timeout, tools):
    res = {}
    script = os.path.join(HERE, "sanitize_forward.py")
    for tool in tools:
        rc, out, dt = sh(["compute-sanitizer", "--tool", tool, "--error-exitcode", "3", "--print-limit", "20",
                          sys.executable, script], timeout)
        with open(os.path.join(outdir, f"sanitizer_{tool}.log"), "w") as f:
            f.write(out)
        summary = re.search(r"ERROR SUMMARY: (\d+) error", out)
        if rc == 0 and "sanitize_forward: done" in out:
            res[tool] = "clean"
        else:
            first = next((ln.strip() for ln in out.splitlines() if "=========" in ln and ("Invalid" in ln or "Race" in ln
                          or "Uninitialized" in ln or "error" in ln.lower())), None)
            res[tool] = first or (f"rc={rc}: " + " | ".join(out.strip().splitlines()[-3:]))[:400]
        if summary:
            res[tool + "_errors"] = int(summary.group(1))
        res[tool + "_seconds"] = round(dt, 1)
    return {"sanitizer": res}


def stage_sanitize_tests(outdir, timeout, tools, tests):
    """compute-sanitizer over the CUDA op tests themselves (slow: small shapes only by default)."""
    res = {}
    for tool in tools:
        rc, out, dt = sh(["compute-sanitizer", "--tool", tool, "--error-exitcode", "3", "--print-limit", "20",
                          sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests], timeout, cwd=ROOT)
        with open(os.path.join(outdir, f"sanitizer_tests_{tool}.log"), "w") as f:
            f.write(out)
        passed = re.search(r"(\d+) passed", out)
        if rc == 0:
            res[tool] = "clean"
        else:
            first = next((ln.strip() for ln in out.splitlines() if ln.startswith("=========") and "ERROR SUMMARY" not in ln), None)
            res[tool] = (first or " | ".join(out.strip().splitlines()[-3:]))[:400]
        res[tool + "_tests_passed"] = int(passed.group(1)) if passed else 0
        res[tool + "_seconds"] = round(dt, 1)
    return {"sanitizer_op_tests": res}


def stage_bench(outdir, configs, include_compile, repeats):
    import torch

    from fastflow.bench import rows_to_dicts, run_model_bench

    rows = []
    for (b, h, w) in configs:
        comp = include_compile and b == 1
        print(f"bench: batch {b} {h}x{w} (torch.compile: {comp})", flush=True)
        rs = run_model_bench(h, w, b, "cuda", warmup=5, repeats=repeats, include_compile=comp,
                             log=lambda s: print("  " + s, flush=True))
        rows += rows_to_dicts(rs)
        torch.cuda.empty_cache()
    # ratios the performance issue asks for, computed in this run
    return {"bench": rows}


# Dense tensor-core / FMA peaks of an H100 SXM (TFLOP/s), for "% of peak" in the per-layer table.
PEAK_TFLOPS = {"fp16": 989.0, "bf16": 989.0, "tf32": 494.0, "fp32": 67.0}


def stage_layers(outdir, precisions=("fp16", "tf32"), size=(448, 1024), batch=1):
    """Per-layer table (benchmarks/bench_conv_layers.py): fastflow vs cuDNN, ms, TFLOP/s, % of peak."""
    rows = []
    for prec in precisions:
        path = os.path.join(outdir, f"layers_{prec}.json")
        rc, out, _ = sh([sys.executable, os.path.join(HERE, "bench_conv_layers.py"), "--precision", prec,
                         "--batch", str(batch), "--height", str(size[0]), "--width", str(size[1]), "--json", path], 600)
        with open(os.path.join(outdir, f"layers_{prec}.log"), "w") as f:
            f.write(out)
        if rc != 0 or not os.path.exists(path):
            rows.append({"precision": prec, "error": " | ".join(out.strip().splitlines()[-3:])[:400]})
            continue
        with open(path) as f:
            for r in json.load(f)["layers"]:
                r["fastflow_pct_of_peak"] = 100.0 * r["fastflow_tflops"] / PEAK_TFLOPS[prec]
                rows.append(r)
    return {"layers": rows}


def targets(rows):
    """The performance issue's targets, evaluated on this run's rows (None where a row is missing)."""
    def ms(impl, prec, b, h=448, w=1024):
        for r in rows:
            if (r["impl"], r["precision"], r["batch"], r["height"], r["width"]) == (impl, prec, b, h, w):
                return r
        return None

    f16, comp = ms("fastflow", "fp16", 1), ms("torch_compile", "fp16", 1)
    f16b16 = ms("fastflow", "fp16", 16)
    tf, ref_tf = ms("fastflow", "tf32", 1), ms("reference", "tf32", 1)
    f32, ref_32 = ms("fastflow", "fp32", 1), ms("reference", "fp32", 1)
    out = {
        "fp16_b1_448x1024_ms": f16 and f16["median_ms"], "target_fp16_b1_ms": 0.25,
        "fp16_b1_vs_torch_compile": f16 and comp and comp["median_ms"] / f16["median_ms"], "target_vs_compile": 3.0,
        "fp16_b16_pairs_per_s": f16b16 and f16b16["pairs_per_s"], "target_b16_pairs_per_s": 6000,
        "tf32_vs_reference_defaults": tf and ref_tf and ref_tf["median_ms"] / tf["median_ms"], "target_tf32": 1.5,
        "fp32_vs_reference_tf32_off": f32 and ref_32 and ref_32["median_ms"] / f32["median_ms"], "target_fp32": 1.0,
        "fp16_b1_peak_mem_mb": f16 and f16["peak_mem_mb"], "target_peak_mem_mb": 200,
    }
    return out


def env_info():
    import torch

    import fastflow

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    info = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "build_info": fastflow.build_info()}
    rc, out, _ = sh(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], 30)
    info["driver"] = out.strip().splitlines()[0] if rc == 0 and out.strip() else "unknown"
    commit = os.environ.get("FASTFLOW_COMMIT")
    if not commit:
        rc, out, _ = sh(["git", "rev-parse", "HEAD"], 30, cwd=ROOT)
        commit = out.strip() if rc == 0 else "unknown"
    info["commit"] = commit
    info["csrc_tree"] = tree_hash(os.path.join(ROOT, "csrc"))
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="where the record and suite_logs.tar.gz go")
    ap.add_argument("--work", default=os.environ.get("FASTFLOW_SUITE_WORK", "/tmp/fastflow_suite"),
                    help="logs and per-stage parts (kept between calls while the machine stays up)")
    ap.add_argument("--stages", default="tests,sanitizer,bench,layers")
    ap.add_argument("--sanitizers", default="memcheck,racecheck,initcheck,synccheck")
    ap.add_argument("--compile", action="store_true", help="include torch.compile max-autotune at batch 1")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--configs", default="1x448x1024,16x448x1024,1x384x512,16x384x512")
    ap.add_argument("--test-timeout", type=int, default=400)
    ap.add_argument("--sanitize-tests", default="tests/test_cuda_io_ops.py,tests/test_flow_head.py,tests/test_conv_lrelu.py,"
                    "tests/test_deconv_lrelu.py", help="op test files the sanitize_tests stage runs (-k 'cuda and not 448')")
    ap.add_argument("--sanitizer-timeout", type=int, default=240)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    out_dir, args.out = args.out, args.work  # stages write into the work folder
    stages = [s for s in args.stages.split(",") if s]
    if "tests" in stages:
        print(json.dumps(part(args.out, "tests", stage_tests(args.out, args.test_timeout))["tests"]), flush=True)
    if "sanitizer" in stages:
        print(json.dumps(part(args.out, "sanitizer", stage_sanitizer(args.out, args.sanitizer_timeout, args.sanitizers.split(",")))), flush=True)
    if "sanitize_tests" in stages:
        tests = [t for t in args.sanitize_tests.split(",") if t] + ["-k", "cuda and not 448 and not 1024"]
        part(args.out, "sanitize_tests", stage_sanitize_tests(args.out, 4 * args.sanitizer_timeout, args.sanitizers.split(","), tests))
    if "bench" in stages:
        configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
        part(args.out, "bench", stage_bench(args.out, configs, args.compile, args.repeats))
    if "layers" in stages:
        part(args.out, "layers", stage_layers(args.out))
    record = env_info()
    for name in ("tests", "sanitizer", "sanitize_tests", "bench", "layers"):
        p = part(args.out, name)
        if p:
            record.update(p)
    record.setdefault("tests", {"passed": 0, "failed": 0, "skipped": 0})
    if record.get("bench"):
        record["targets"] = targets(record["bench"])
    record["date"] = datetime.date.today().isoformat()
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", record["gpu"]).strip("-")
    name = f"{record['date']}-{gpu}-{record['commit'][:8]}.json"
    # Few files come back from a device run: the record plus one archive of every log.
    with open(os.path.join(out_dir, name), "w") as f:
        json.dump(record, f, indent=1)
    with tarfile.open(os.path.join(out_dir, "suite_logs.tar.gz"), "w:gz") as tar:
        tar.add(args.work, arcname="suite_logs")
    print(f"record: {os.path.join(out_dir, name)}")
    if "bench" in record:
        from fastflow.bench import BenchRow, format_table

        print(format_table([BenchRow(**r) for r in record["bench"]]))


if __name__ == "__main__":
    main()
